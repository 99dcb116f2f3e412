//! Agents join with a token and register apps; users see what RBAC allows.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::*;

const PASSWORD: &str = "correct horse battery staple";

fn agent_config(
    node: &Node,
    pin: &str,
    token_file: &std::path::Path,
    label_file: &std::path::Path,
) -> String {
    format!(
        r#"version: v3
teleport:
  nodename: agent-one
  data_dir: "{{data_dir}}"
  proxy_server: "{proxy}"
  ca_pin: "{pin}"
  join_params:
    token_name: "{token}"
    method: token
auth_service:
  enabled: off
proxy_service:
  enabled: false
ssh_service:
  enabled: no
app_service:
  enabled: true
  apps:
  - name: azure-cli
    cloud: Azure
  - name: grafana
    uri: "http://localhost:3000"
    labels:
      env: "prod"
      group: "metrics"
  - name: prometheus
    uri: "http://localhost:9090"
    labels:
      env: "dev"
      group: "metrics"
    commands:
    - name: "arch"
      command: ["cat", "{labels}"]
      period: 1s
"#,
        proxy = node.web_addr,
        token = token_file.display(),
        labels = label_file.display(),
    )
}

/// Starts an app agent in `dir/agent` that joins `node` with a fresh app
/// token; its `arch` dynamic label reads `dir/arch`, written with `arch`.
fn start_app_agent(node: &Node, dir: &std::path::Path, arch: &str) -> Agent {
    let token = join_token(node, "app").unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{}\n", token.trim())).unwrap();
    let label_file = dir.join("arch");
    std::fs::write(&label_file, format!("{arch}\n")).unwrap();
    let pin = ca_pin(node).unwrap();
    Agent::start(
        &dir.join("agent"),
        &agent_config(node, &pin, &token_file, &label_file),
    )
    .unwrap()
}

fn apps_ls(home: &std::path::Path) -> String {
    ok(tsh(home, &["apps", "ls"], None).unwrap()).unwrap()
}

#[test]
fn token_join_registers_apps_filtered_by_rbac() {
    let (tmp, node) = sqlite_node("agents.example").unwrap();
    let agent = start_app_agent(&node, tmp.path(), "x86_64");
    let label_file = tmp.path().join("arch");

    // The seed's role: metrics apps except production ones.
    let role = tmp.path().join("dev.yaml");
    std::fs::write(&role, "kind: role\nversion: v5\nmetadata:\n  name: dev\nspec:\n  allow:\n    app_labels:\n      group: \"metrics\"\n  deny:\n    app_labels:\n      env: \"prod\"\n").unwrap();
    ok(node.tctl(&["create", role.to_str().unwrap()]).unwrap()).unwrap();
    add_user(&node, "admin", "access", PASSWORD).unwrap();
    add_user(&node, "dev", "dev", PASSWORD).unwrap();
    let admin_home = tmp.path().join("admin");
    let dev_home = tmp.path().join("dev");
    for (home, user) in [(&admin_home, "admin"), (&dev_home, "dev")] {
        ok(tsh_login(&node, home, user, PASSWORD).unwrap()).unwrap();
    }

    let all = poll(Duration::from_secs(60), "the agent's apps", || {
        let out = apps_ls(&admin_home);
        out.contains("prometheus").then_some(out)
    })
    .map_err(|e| format!("{e}\nagent log:\n{}", agent.log()))
    .unwrap();
    assert!(
        all.contains("azure-cli") && all.contains("grafana"),
        "{all}"
    );
    assert!(
        all.lines()
            .next()
            .unwrap()
            .starts_with("Application Description Type"),
        "{all}"
    );
    assert!(all.contains("arch=x86_64"), "{all}");

    let dev = apps_ls(&dev_home);
    assert!(dev.contains("prometheus"), "{dev}");
    assert!(!dev.contains("grafana"), "prod is denied: {dev}");
    assert!(!dev.contains("azure-cli"), "no group label: {dev}");

    // Dynamic labels follow their command.
    std::fs::write(&label_file, "aarch64\n").unwrap();
    poll(Duration::from_secs(60), "the new dynamic label", || {
        apps_ls(&admin_home).contains("arch=aarch64").then_some(())
    })
    .unwrap();
    // A command prints what it likes: the agent sends it as one line without
    // control characters (the auth service refuses those in labels), so the
    // app stays listed with the new value and no escape sequence reaches a
    // terminal.
    std::fs::write(&label_file, "\u{1b}]0;owned\u{7}arm\n64\n").unwrap();
    poll(Duration::from_secs(60), "the cleaned dynamic label", || {
        apps_ls(&admin_home)
            .contains("arch=\u{fffd}]0;owned\u{fffd}arm 64")
            .then_some(())
    })
    .map_err(|e| format!("{e}\n{}\nagent log:\n{}", apps_ls(&admin_home), agent.log()))
    .unwrap();

    // The join is audited.
    let events = ok(node
        .tctl(&["events", "ls", "--type=instance.join", "--format=json"])
        .unwrap())
    .unwrap();
    assert!(events.contains("TJ002I"), "{events}");
}

#[test]
fn bad_joins_are_refused_clearly() {
    let (tmp, node) = sqlite_node("refuse.example").unwrap();
    let pin = ca_pin(&node).unwrap();
    let label_file = tmp.path().join("arch");
    std::fs::write(&label_file, "x\n").unwrap();

    // Unknown token.
    let token_file = tmp.path().join("token");
    // An agent in `dir` with the CA pin `pin` and the token file's token:
    // it exits, saying `why`.
    let refused = |dir: &str, pin: &str, why: &str| {
        let config = agent_config(&node, pin, &token_file, &label_file);
        let mut agent = Agent::start(&tmp.path().join(dir), &config).unwrap();
        let status = agent.wait_exit(Duration::from_secs(30)).unwrap();
        assert!(agent.log().contains(why), "{}", agent.log());
        status
    };
    std::fs::write(&token_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let status = refused("a1", &pin, "does not exist or has expired");
    assert!(!status.success());

    // A token for another role.
    let db_token = join_token(&node, "db").unwrap();
    std::fs::write(&token_file, db_token.trim()).unwrap();
    refused("a2", &pin, "does not allow joining as App");

    // A wrong CA pin: the agent does not even send its token.
    let app_token = join_token(&node, "app").unwrap();
    std::fs::write(&token_file, app_token.trim()).unwrap();
    let wrong = format!("sha256:{}", "0".repeat(64));
    refused("a3", &wrong, "does not match teleport.ca_pin");

    let events = ok(node
        .tctl(&["events", "ls", "--type=instance.join", "--format=json"])
        .unwrap())
    .unwrap();
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    assert_eq!(events.as_array().unwrap().len(), 2, "{events}");
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["code"] == "TJ002E"));
}

#[test]
fn agents_reconnect_when_the_proxy_comes_back() {
    let (tmp, mut node) = sqlite_node("tunnel.example").unwrap();
    let agent = start_app_agent(&node, tmp.path(), "x");
    let host_id = poll(Duration::from_secs(30), "the agent's host id", || {
        std::fs::read_to_string(tmp.path().join("agent/data/host_uuid"))
            .ok()
            .filter(|id| !id.trim().is_empty())
    })
    .unwrap();
    let listed = |node: &Node| {
        let out = ok(node.tctl(&["inventory", "ls", "--format=json"]).unwrap()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .any(|e| e["server_id"] == host_id.trim())
    };
    poll(Duration::from_secs(30), "the tunnel", || {
        listed(&node).then_some(())
    })
    .map_err(|e| format!("{e}\n{}", agent.log()))
    .unwrap();

    // The proxy dies and comes back: the agent reconnects by itself, and the
    // proxy reaches it through a fresh tunnel.
    node.restart().unwrap();
    let since = std::time::Instant::now();
    poll(
        Duration::from_secs(60),
        "the tunnel after the restart",
        || {
            let out = ok(node.tctl(&["inventory", "ls", "--format=json"]).unwrap()).unwrap();
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            let fresh = v.as_array().unwrap().iter().any(|e| {
                e["server_id"] == host_id.trim()
                    && time_since(e["last_seen"].as_str().unwrap_or(""))
                        < since.elapsed().as_secs_f64() + 0.05
            });
            // A record from just before the restart can look fresh: the
            // agent's second connection must be there too.
            (fresh && agent.log().contains("Connected(2)")).then_some(())
        },
    )
    .map_err(|e| format!("{e}\n{}", agent.log()))
    .unwrap();
}

/// Seconds since an RFC 3339 time, via `date`.
fn time_since(rfc3339: &str) -> f64 {
    let out = std::process::Command::new("date")
        .args(["-d", rfc3339, "+%s.%N"])
        .output()
        .unwrap();
    let then: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    now - then
}

#[test]
fn database_agents_register_for_tsh_db_ls() {
    let (tmp, node) = sqlite_node("db.example").unwrap();
    let token = join_token(&node, "db").unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, token.trim()).unwrap();
    let pin = ca_pin(&node).unwrap();
    let config = format!(
        "version: v3\nteleport:\n  nodename: db-agent\n  data_dir: \"{{data_dir}}\"\n  proxy_server: \"{}\"\n  ca_pin: \"{pin}\"\n  join_params:\n    token_name: \"{}\"\n    method: token\nauth_service:\n  enabled: no\nproxy_service:\n  enabled: no\nssh_service:\n  enabled: no\ndb_service:\n  enabled: yes\n  databases:\n  - name: my-azure-redis\n    description: Azure Cache for Redis\n    protocol: redis\n    uri: my-redis.redis.cache.windows.net:6380\n    static_labels:\n      env: dev\n  - name: prod-redis\n    protocol: redis\n    uri: prod.redis.cache.windows.net:6380\n    static_labels:\n      env: prod\n",
        node.web_addr,
        token_file.display()
    );
    let agent = Agent::start(&tmp.path().join("agent"), &config).unwrap();
    // The Redis guide's user.
    add_user_with(&node, "alice", "access", ALL_DATABASE_USERS, PASSWORD).unwrap();
    let role = tmp.path().join("dev-db.yaml");
    std::fs::write(&role, "kind: role\nversion: v7\nmetadata:\n  name: dev-db\nspec:\n  allow:\n    db_labels:\n      env: dev\n    db_users: [default]\n").unwrap();
    ok(node.tctl(&["create", role.to_str().unwrap()]).unwrap()).unwrap();
    add_user(&node, "bob", "dev-db", PASSWORD).unwrap();
    let (alice, bob) = (tmp.path().join("alice"), tmp.path().join("bob"));
    for (home, user) in [(&alice, "alice"), (&bob, "bob")] {
        ok(tsh_login(&node, home, user, PASSWORD).unwrap()).unwrap();
    }
    let all = poll(Duration::from_secs(60), "the databases", || {
        let out = ok(tsh(&alice, &["db", "ls"], None).unwrap()).unwrap();
        out.contains("prod-redis").then_some(out)
    })
    .map_err(|e| format!("{e}\n{}", agent.log()))
    .unwrap();
    assert!(all.lines().next().unwrap().starts_with("Name"), "{all}");
    assert!(
        all.contains("Allowed Users") && all.contains("[*]"),
        "{all}"
    );
    assert!(
        all.contains("my-azure-redis") && all.contains("env=dev"),
        "{all}"
    );
    let dev = ok(tsh(&bob, &["db", "ls"], None).unwrap()).unwrap();
    assert!(
        dev.contains("my-azure-redis") && !dev.contains("prod-redis"),
        "{dev}"
    );
    assert!(dev.contains("[default]"), "{dev}");
}

#[test]
fn agents_keep_a_tunnel_to_every_proxy() {
    let db = TempDatabase::create("e2e_proxies").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let storage = Storage::Postgres(db.conn_string.clone());
    let a = Node::start(&tmp.path().join("a"), "many.example", &storage).unwrap();
    let b = Node::start(&tmp.path().join("b"), "many.example", &storage).unwrap();
    // The agent only knows proxy A; it finds B through the cluster.
    let agent = start_app_agent(&a, tmp.path(), "x");
    let proxies = poll(Duration::from_secs(60), "tunnels to both proxies", || {
        let out = ok(b.tctl(&["inventory", "ls", "--format=json"]).unwrap()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut p: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["proxy"].as_str().unwrap_or_default().to_string())
            .collect();
        p.sort();
        p.dedup();
        (p.len() == 2).then_some(p)
    })
    .map_err(|e| format!("{e}\n{}", agent.log()))
    .unwrap();
    assert!(
        proxies.contains(&a.web_addr) && proxies.contains(&b.web_addr),
        "{proxies:?}"
    );
}

/// Posts a token join request with a bogus token: the status the proxy
/// answers (the token's refusal, or 429 when rate-limited) and its message.
fn bogus_join(rt: &tokio::runtime::Runtime, api: &client::ApiClient) -> (u16, String) {
    let body = serde_json::json!({
        "token": "no-such-token",
        "host_id": "flooder",
        "node_name": "flooder",
        "roles": ["App"],
        "public_key": "",
    });
    match rt.block_on(api.post::<serde_json::Value, _>("/v1/webapi/host/credentials", &body)) {
        Ok(v) => panic!("a bogus token joined: {v}"),
        Err(e) => (e.status().unwrap_or(0), e.to_string()),
    }
}

#[test]
fn a_join_flood_is_rate_limited_and_agents_retry() {
    let (tmp, mut node) = sqlite_node("flood.example").unwrap();
    // 10 join requests at once, then one per 20 s: slow enough that no
    // request refills while the test floods or the agent starts.
    let text = std::fs::read_to_string(&node.config).unwrap().replace(
        "proxy_service:\n",
        "proxy_service:\n  join_rate_limit:\n    burst: 10\n    average: 1\n    period: 20s\n",
    );
    std::fs::write(&node.config, text).unwrap();
    node.restart().unwrap();
    let rt = runtime().unwrap();
    let api = client::ApiClient::new(&node.web_addr, None, true).unwrap();
    // A flood from one address: the first requests are judged (bad token),
    // then the proxy refuses them before they reach the auth service.
    let started = std::time::Instant::now();
    let answers: Vec<(u16, String)> = (0..25).map(|_| bogus_join(&rt, &api)).collect();
    let refills = (started.elapsed().as_secs_f64() / 20.0).floor() as usize;
    assert!(
        answers.iter().all(|(s, _)| (400..500).contains(s)),
        "{answers:?}"
    );
    let judged = answers.iter().filter(|(s, _)| *s != 429).count();
    assert!(
        (10..=10 + refills).contains(&judged),
        "{judged} judged: {answers:?}"
    );
    // The first refusal comes right after the burst.
    let (status, message) = &answers[10];
    assert_eq!(*status, 429, "{message}");
    assert!(
        message.starts_with("too many join requests from 127.0.0.1: try again in "),
        "{message}"
    );
    // Refused requests never reached the auth service: one audited
    // refusal per judged request.
    let events = ok(node
        .tctl(&["events", "ls", "--type=instance.join", "--format=json"])
        .unwrap())
    .unwrap();
    assert_eq!(events.matches("TJ002E").count(), judged, "{events}");

    // An agent joining from the same address now is refused, waits and
    // tries again, and joins once the address's next request is due.
    let agent = start_app_agent(&node, tmp.path(), "x86_64");
    poll(Duration::from_secs(90), "the agent's join", || {
        agent.log().contains("Joined cluster").then_some(())
    })
    .map_err(|e| format!("{e}\n{}", agent.log()))
    .unwrap();
    let log = agent.log();
    assert!(
        log.contains("the proxy is rate-limiting join requests; trying again"),
        "{log}"
    );
}

/// An agent may not ask for names it does not hold: not the cluster-internal
/// name every agent checks the proxy by (with it, an App agent could serve
/// `teleport-cluster` and collect other agents' join tokens), not another
/// host's; and a certificate it does get cannot pose as the proxy.
#[test]
fn agents_cannot_ask_for_names_they_do_not_hold() {
    use base64::Engine;
    let (_tmp, node) = sqlite_node("names.example").unwrap();
    let token = join_token(&node, "app").unwrap();
    let rt = runtime().unwrap();
    let api = client::ApiClient::new(&node.web_addr, None, true).unwrap();
    let key = pki::generate_key().unwrap();
    let cluster_local = pki::tls::cluster_server_name("names.example");
    let join = |host_id: &str, dns_names: Vec<String>| {
        let body = serde_json::json!({
            "token": token.trim(),
            "host_id": host_id,
            "node_name": host_id,
            "roles": ["App"],
            "public_key": base64::engine::general_purpose::STANDARD.encode(&key.public_key_der),
            "dns_names": dns_names,
        });
        rt.block_on(api.post::<serde_json::Value, _>("/v1/webapi/host/credentials", &body))
    };
    for (host_id, names) in [
        ("agent-1", vec![cluster_local.clone()]),
        ("agent-1", vec!["localhost".to_string()]),
        (cluster_local.as_str(), vec![]),
    ] {
        let err = join(host_id, names.clone()).unwrap_err();
        assert_eq!(err.status(), Some(400), "{host_id} {names:?}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains("reserved for the cluster's own servers"),
            "{msg}"
        );
    }
    // A proper join: the certificate is an App agent's (which clients that
    // trust the host CA refuse as a server: pki's tls tests).
    let certs = join("agent-1", vec![]).unwrap();
    let ident = pki::Identity::from_cert_pem(certs["tls_cert"].as_str().unwrap()).unwrap();
    assert_eq!(ident.system_role.as_deref(), Some("App"));
    assert_eq!(ident.username, "agent-1");
}
