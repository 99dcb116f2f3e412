//! tctl as a Teleport administrator uses it: identity files against a
//! self-signed proxy, the local admin identity's errors, join tokens with a
//! ready-to-run agent command, registered servers, status and formats.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use e2e::*;

const PASSWORD: &str = "correct horse battery staple";

/// `tctl -i FILE --auth-server ADDR args...` as a user without a profile.
fn tctl_with_identity(home: &Path, file: &Path, addr: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["-i", file.to_str().unwrap(), "--auth-server", addr];
    all.extend_from_slice(args);
    tctl_as(home, &all).unwrap()
}

#[test]
fn identity_file_trusts_the_cluster_ca_it_carries() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(&tmp.path().join("a"), "a.example", &Storage::Sqlite).unwrap();
    let b = Node::start(&tmp.path().join("b"), "b.example", &Storage::Sqlite).unwrap();
    add_user(&a, "bot", "editor", PASSWORD).unwrap();
    let file = tmp.path().join("bot.pem");
    sign_identity(&a, "bot", &file, "1h").unwrap();
    let home = tmp.path().join("nohome");
    // The proxy's web certificate is self-signed: no --insecure needed, the
    // file's host CA vouches for the proxy.
    let status = ok(tctl_with_identity(&home, &file, &a.web_addr, &["status"])).unwrap();
    assert!(status.contains("a.example"), "{status}");
    let users = ok(tctl_with_identity(
        &home,
        &file,
        &a.web_addr,
        &["users", "ls"],
    ))
    .unwrap();
    assert!(users.contains("bot"), "{users}");
    // The auth port too.
    let status = ok(tctl_with_identity(&home, &file, &a.auth_addr, &["status"])).unwrap();
    assert!(status.contains("a.example"), "{status}");
    // Another cluster's proxy is not trusted by this file.
    let err = fails(tctl_with_identity(&home, &file, &b.web_addr, &["status"])).unwrap();
    assert!(!err.contains("b.example"), "{err}");
    assert!(err.contains("invalid peer certificate"), "{err}");
    // --insecure still skips the check.
    let status = ok(tctl_with_identity(
        &home,
        &file,
        &a.web_addr,
        &["--insecure", "status"],
    ))
    .unwrap();
    assert!(status.contains("a.example"), "{status}");
}

#[test]
fn unreadable_admin_identity_says_permission_denied() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("node"), "perm.example", &Storage::Sqlite).unwrap();
    // A copy of the auth host's config whose data dir holds an unreadable
    // copy of the admin identity.
    let data = tmp.path().join("copy-data");
    std::fs::create_dir_all(&data).unwrap();
    let id = data.join("admin-identity.pem");
    std::fs::copy(node.dir.join("data").join("admin-identity.pem"), &id).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o000)).unwrap();
    let config = std::fs::read_to_string(&node.config).unwrap().replace(
        &node.dir.join("data").display().to_string(),
        &data.display().to_string(),
    );
    let config_path = tmp.path().join("copy.yaml");
    std::fs::write(&config_path, config).unwrap();
    if std::fs::read(&id).is_ok() {
        // Root reads any file: the mapping from PermissionDenied is
        // unit-tested in tctl (connect::tests).
        eprintln!("running as root: file permissions do not deny reads, skipping");
        return;
    }
    let mut cmd = std::process::Command::new(bin("tctl").unwrap());
    cmd.arg("-c").arg(&config_path).arg("status");
    let err = fails(output(cmd, None).unwrap()).unwrap();
    assert!(err.contains("permission denied"), "{err}");
    assert!(err.contains(&id.display().to_string()), "{err}");
    assert!(!err.contains("running on this host"), "{err}");
}

#[test]
fn tokens_add_prints_the_agent_command() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("node"), "tok.example", &Storage::Sqlite).unwrap();
    let pin = ca_pin(&node).unwrap();
    let out = ok(node
        .tctl(&["tokens", "add", "--type=app", "--ttl=1h"])
        .unwrap())
    .unwrap();
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("The invite token: "))
        .unwrap()
        .trim()
        .to_string();
    assert!(out.contains("This token will expire in 1 hour."), "{out}");
    let command = format!(
        "> teleport start \\\n   --roles=app \\\n   --token={token} \\\n   --ca-pin={pin} \\\n   --auth-server={}\n",
        node.web_addr
    );
    assert!(out.contains(&command), "{out}");
    assert!(
        out.contains("  - This invitation token will expire in 1 hour.\n"),
        "{out}"
    );
    let list = ok(node.tctl(&["tokens", "ls"]).unwrap()).unwrap();
    assert!(list.contains(&token), "{list}");
    // Database tokens: Teleport's configure-then-start pair.
    let out = ok(node
        .tctl(&["tokens", "add", "--type=db", "--ttl=90m"])
        .unwrap())
    .unwrap();
    assert!(out.contains("> teleport db configure create \\\n"), "{out}");
    assert!(
        out.contains(&format!("   --proxy={} \\\n", node.web_addr)),
        "{out}"
    );
    assert!(out.contains("expire in 1 hour 30 minutes."), "{out}");
    // A wrong type lists the valid ones.
    let err = fails(node.tctl(&["tokens", "add", "--type=ap"]).unwrap()).unwrap();
    assert!(
        err.contains("valid types: auth, proxy, node, app, db"),
        "{err}"
    );
    // Formats are checked by the parser.
    let err = fails(
        node.tctl(&["tokens", "add", "--type=app", "--format=bogus"])
            .unwrap(),
    )
    .unwrap();
    assert!(err.contains("invalid value 'bogus'"), "{err}");
    assert!(err.contains("text, json, yaml"), "{err}");
}

/// The app and database an agent of `registered_servers_are_listed` serves.
const SERVICES: &str = r#"app_service:
  enabled: yes
  apps:
  - name: grafana
    uri: "http://localhost:3000"
    labels:
      env: prod
db_service:
  enabled: yes
  databases:
  - name: prod-redis
    protocol: redis
    uri: prod.redis.cache.windows.net:6380
    static_labels:
      env: prod
"#;

#[test]
fn registered_servers_are_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("node"), "srv.example", &Storage::Sqlite).unwrap();
    let agent = start_token_agent(&node, tmp.path(), "app,db", "both-agent", SERVICES).unwrap();
    let apps = poll(Duration::from_secs(60), "the app in tctl apps ls", || {
        let out = ok(node.tctl(&["apps", "ls"]).unwrap()).ok()?;
        out.contains("grafana").then_some(out)
    })
    .map_err(|e| format!("{e}\n{}", agent.log()))
    .unwrap();
    let header = apps.lines().next().unwrap();
    assert!(
        header.starts_with("Host") && header.contains("Public Address") && header.contains("URI"),
        "{apps}"
    );
    assert!(
        apps.contains("http://localhost:3000") && apps.contains("env=prod"),
        "{apps}"
    );
    let dbs = poll(
        Duration::from_secs(60),
        "the database in tctl db ls",
        || {
            let out = ok(node.tctl(&["db", "ls"]).unwrap()).ok()?;
            out.contains("prod-redis").then_some(out)
        },
    )
    .unwrap();
    assert!(
        dbs.contains("redis") && dbs.contains("prod.redis.cache.windows.net:6380"),
        "{dbs}"
    );

    // The resources behind them.
    let json: serde_json::Value = serde_json::from_str(
        &ok(node.tctl(&["get", "app_server", "--format=json"]).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(json[0]["kind"], "app_server", "{json}");
    assert_eq!(json[0]["metadata"]["name"], "grafana", "{json}");
    assert_eq!(
        json[0]["spec"]["app"]["spec"]["uri"], "http://localhost:3000",
        "{json}"
    );
    let yaml = ok(node.tctl(&["get", "db_server/prod-redis"]).unwrap()).unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(doc["kind"].as_str(), Some("db_server"), "{yaml}");
    assert_eq!(
        doc["spec"]["database"]["metadata"]["name"].as_str(),
        Some("prod-redis"),
        "{yaml}"
    );
    let err = fails(node.tctl(&["get", "db_server/nope"]).unwrap()).unwrap();
    assert!(err.contains("not found"), "{err}");
    let listed: serde_json::Value =
        serde_json::from_str(&ok(node.tctl(&["db", "ls", "--format=json"]).unwrap()).unwrap())
            .unwrap();
    assert_eq!(listed[0]["kind"], "db_server", "{listed}");

    // Everything that can be backed up.
    let all: serde_json::Value =
        serde_json::from_str(&ok(node.tctl(&["get", "all", "--format=json"]).unwrap()).unwrap())
            .unwrap();
    let kinds: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    for k in ["cluster_name", "cert_authority", "role", "token"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let err = fails(node.tctl(&["apps", "ls", "--format=bogus"]).unwrap()).unwrap();
    assert!(err.contains("invalid value 'bogus'"), "{err}");

    // Listing every agent's servers is an administrator's right, not a user's.
    add_user(&node, "alice", "access", PASSWORD).unwrap();
    let file = tmp.path().join("alice.pem");
    sign_identity(&node, "alice", &file, "1h").unwrap();
    let home = tmp.path().join("alice-home");
    for args in [["apps", "ls"], ["db", "ls"]] {
        let err = fails(tctl_with_identity(&home, &file, &node.web_addr, &args)).unwrap();
        assert!(err.contains("access denied"), "{args:?}: {err}");
    }
}

#[test]
fn status_shows_rotation_state_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("node"), "st.example", &Storage::Sqlite).unwrap();
    let text = ok(node.tctl(&["status"]).unwrap()).unwrap();
    assert!(text.contains("Host CA      never updated"), "{text}");
    assert!(text.contains("User CA      never updated"), "{text}");
    let pin = ca_pin(&node).unwrap();
    assert!(pin.starts_with("sha256:"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(node.tctl(&["status", "--format=json"]).unwrap()).unwrap())
            .unwrap();
    assert_eq!(json["cluster_name"], "st.example");
    assert_eq!(json["ca_pin"], pin.as_str());
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&ok(node.tctl(&["status", "--format=yaml"]).unwrap()).unwrap())
            .unwrap();
    assert_eq!(yaml["ca_pin"].as_str(), Some(pin.as_str()));
    for args in [
        &["status", "--format=bogus"][..],
        &["users", "ls", "--format=xml"],
        &["tokens", "ls", "--format=table"],
    ] {
        let err = fails(node.tctl(args).unwrap()).unwrap();
        assert!(err.contains("invalid value"), "{args:?}: {err}");
    }
    for args in [
        &["users", "ls", "--format=yaml"][..],
        &["tokens", "ls", "--format=json"],
        &["events", "ls", "--format=yaml"],
        &["inventory", "ls", "--format=yaml"],
    ] {
        ok(node.tctl(args).unwrap()).unwrap();
    }
}

/// `tctl -c <config> args...` on `node` with `EDITOR=editor`.
fn tctl_editing(node: &Node, editor: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(bin("tctl").unwrap());
    cmd.arg("-c")
        .arg(&node.config)
        .env_remove("VISUAL")
        .env("EDITOR", editor)
        .args(args);
    output(cmd, None).unwrap()
}

#[test]
fn edit_saves_what_the_editor_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("node"), "edit.example", &Storage::Sqlite).unwrap();
    let role = tmp.path().join("dev-db.yaml");
    std::fs::write(
        &role,
        "kind: role\nversion: v7\nmetadata:\n  name: dev-db\nspec:\n  allow:\n    db_labels:\n      env: dev\n    db_users: [default]\n",
    )
    .unwrap();
    ok(node.tctl(&["create", role.to_str().unwrap()]).unwrap()).unwrap();
    // An editor that changes the label.
    let script = tmp.path().join("editor.sh");
    std::fs::write(&script, "#!/bin/sh\nsed -i 's/- dev$/- staging/' \"$1\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = ok(tctl_editing(
        &node,
        script.to_str().unwrap(),
        &["edit", "role/dev-db"],
    ))
    .unwrap();
    assert!(out.contains("role \"dev-db\" has been updated"), "{out}");
    let got = ok(node.tctl(&["get", "role/dev-db"]).unwrap()).unwrap();
    assert!(
        got.contains("- staging") && !got.contains("- dev\n"),
        "{got}"
    );
    // An editor that changes nothing saves nothing.
    let out = ok(tctl_editing(&node, "true", &["edit", "role/dev-db"])).unwrap();
    assert!(out.contains("no changes made"), "{out}");
    // Renaming is refused.
    let rename = tmp.path().join("rename.sh");
    std::fs::write(
        &rename,
        "#!/bin/sh\nsed -i 's/name: dev-db/name: other/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&rename, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = fails(tctl_editing(
        &node,
        rename.to_str().unwrap(),
        &["edit", "role/dev-db"],
    ))
    .unwrap();
    assert!(
        err.contains("cannot change a resource's kind or name"),
        "{err}"
    );
    let err = fails(node.tctl(&["get", "role/other"]).unwrap()).unwrap();
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn an_expired_identity_says_how_to_renew_it() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("node"), "exp.example", &Storage::Sqlite).unwrap();
    add_user(&node, "bot", "editor", PASSWORD).unwrap();
    let file = tmp.path().join("bot.pem");
    sign_identity(&node, "bot", &file, "2s").unwrap();
    let home = tmp.path().join("nohome");
    let err = poll(Duration::from_secs(20), "the identity to expire", || {
        fails(tctl_with_identity(
            &home,
            &file,
            &node.web_addr,
            &["users", "ls"],
        ))
        .ok()
    })
    .unwrap();
    assert!(err.contains("expired"), "{err}");
    assert!(
        err.contains(&format!(
            "tctl auth sign --user=bot --out={}",
            file.display()
        )),
        "{err}"
    );
    assert!(!err.contains("CertificateExpired"), "{err}");
    // A tsh profile that expired: tctl names the tsh login to run.
    let home = tmp.path().join("home");
    let proxy = format!("--proxy={}", node.web_addr);
    ok(tsh(
        &home,
        &["login", &proxy, "--user=bot", "--insecure", "--ttl=2s"],
        Some(&format!("{PASSWORD}\n")),
    )
    .unwrap())
    .unwrap();
    let err = poll(Duration::from_secs(20), "the session to expire", || {
        fails(tctl_as(&home, &["users", "ls"]).unwrap()).ok()
    })
    .unwrap();
    assert!(
        err.contains(&format!(
            "tsh login --proxy={} --user=bot --insecure",
            node.web_addr
        )),
        "{err}"
    );
}

#[test]
fn version_flag_and_commands_this_build_lacks() {
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(bin("tctl").unwrap());
        cmd.args(args).env_remove("TELEPORT_CONFIG_FILE");
        output(cmd, None).unwrap()
    };
    let flag = ok(run(&["--version"])).unwrap();
    let sub = ok(run(&["version"])).unwrap();
    assert!(flag.starts_with("Teleport v"), "{flag}");
    assert_eq!(flag, sub);
    // Teleport's `tctl nodes ...`: one line saying why, not a parser error.
    for args in [&["nodes", "ls"][..], &["nodes", "add", "--roles=node"][..]] {
        let err = fails(run(args)).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("no SSH service"), "{err}");
        assert!(err.contains("tctl apps ls"), "{err}");
    }
}
