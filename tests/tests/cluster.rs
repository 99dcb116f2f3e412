//! The cluster core, end to end: real teleport, tctl and tsh processes.
#![allow(clippy::unwrap_used)]

use e2e::*;

const PASSWORD: &str = "correct horse battery staple";

fn login(node: &Node, home: &std::path::Path, user: &str, password: &str) -> std::process::Output {
    tsh_login(node, home, user, password).unwrap()
}

/// The audited `user.login` events, from `tctl events ls`.
fn login_events(node: &Node) -> Vec<serde_json::Value> {
    let out = ok(node
        .tctl(&["events", "ls", "--type=user.login", "--format=json"])
        .unwrap())
    .unwrap();
    serde_json::from_str(&out).unwrap()
}

#[test]
fn login_status_and_logout() {
    let (tmp, node) = sqlite_node("example.com").unwrap();
    let status = ok(node.tctl(&["status"]).unwrap()).unwrap();
    assert!(status.contains("Cluster      example.com"), "{status}");
    let pin = status.lines().find(|l| l.starts_with("CA pin")).unwrap();
    let hex = pin.split("sha256:").nth(1).unwrap().trim();
    assert_eq!(hex.len(), 64, "{pin}");

    add_user(&node, "alice", "access,editor", PASSWORD).unwrap();
    let home = tmp.path().join("home");
    let out = ok(login(&node, &home, "alice", PASSWORD)).unwrap();
    assert!(out.contains("Logged in as:       alice"), "{out}");

    let text = ok(tsh(&home, &["status"], None).unwrap()).unwrap();
    assert!(
        text.contains("> Profile URL:        https://127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("Roles:              access, editor"),
        "{text}"
    );
    assert!(text.contains("[valid for "), "{text}");

    let json: serde_json::Value =
        serde_json::from_str(&ok(tsh(&home, &["status", "-f", "json"], None).unwrap()).unwrap())
            .unwrap();
    assert_eq!(json["active"]["username"], "alice");
    assert_eq!(json["active"]["cluster"], "example.com");
    assert_eq!(
        json["active"]["roles"],
        serde_json::json!(["access", "editor"])
    );

    // tctl elsewhere works from the tsh profile (editor may read the status).
    let via_profile = ok(tctl_as(&home, &["status"]).unwrap()).unwrap();
    assert!(via_profile.contains(pin), "{via_profile}");

    ok(tsh(&home, &["logout"], None).unwrap()).unwrap();
    let err = fails(tsh(&home, &["status"], None).unwrap()).unwrap();
    assert!(err.contains("Not logged in."), "{err}");
}

#[test]
fn wrong_passwords_are_refused_audited_and_lock_the_account() {
    let (tmp, node) = sqlite_node("lock.example").unwrap();
    add_user(&node, "bob", "access", PASSWORD).unwrap();
    let home = tmp.path().join("home");
    for _ in 0..5 {
        let err = fails(login(&node, &home, "bob", "not the password")).unwrap();
        assert!(err.contains("invalid user name or password"), "{err}");
    }
    let err = fails(login(&node, &home, "bob", PASSWORD)).unwrap();
    assert!(err.contains("locked until"), "{err}");
    let events = login_events(&node);
    assert_eq!(events.len(), 6, "{events:?}");
    assert!(events
        .iter()
        .all(|e| e["code"] == "T1000W" && e["user"] == "bob"));
}

#[test]
fn password_requests_are_rate_limited_per_address() {
    let (tmp, mut node) = sqlite_node("rate.example").unwrap();
    // 4 password requests at once, then one a minute.
    node.restart_with_config(|c| {
        c.replace(
            "proxy_service:\n",
            "proxy_service:\n  login_rate_limit: {burst: 4, average: 1, period: 1m}\n",
        )
    })
    .unwrap();
    // Setting bob's password is one.
    add_user(&node, "bob", "access", PASSWORD).unwrap();
    let home = tmp.path().join("home");
    // Guesses at many user names (no account locks): three are judged...
    for user in ["carol", "dave", "erin"] {
        let err = fails(login(&node, &home, user, "guess")).unwrap();
        assert!(err.contains("invalid user name or password"), "{err}");
    }
    // ...then the address is refused, the right password too, before any
    // password is hashed or attempt recorded.
    for user in ["frank", "bob"] {
        let pw = if user == "bob" { PASSWORD } else { "guess" };
        let err = fails(login(&node, &home, user, pw)).unwrap();
        assert!(
            err.contains("too many login requests from 127.0.0.1: try again in"),
            "{err}"
        );
    }
    let events = login_events(&node);
    assert_eq!(events.len(), 3, "{events:?}");
}

#[test]
fn resources_create_get_and_remove() {
    let (tmp, node) = sqlite_node("res.example").unwrap();
    let role = tmp.path().join("role.yaml");
    let out = ok(create_from(&node, &role, "kind: role\nversion: v5\nmetadata:\n  name: azure-cli-access\nspec:\n  allow:\n    app_labels:\n      '*': '*'\n    azure_identities:\n      - '{{internal.azure_identities}}'\n").unwrap()).unwrap();
    assert!(
        out.contains("role \"azure-cli-access\" has been created"),
        "{out}"
    );
    let err = fails(node.tctl(&["create", role.to_str().unwrap()]).unwrap()).unwrap();
    assert!(err.contains("use -f or --force flag to overwrite"), "{err}");
    let out = ok(node
        .tctl(&["create", "-f", role.to_str().unwrap()])
        .unwrap())
    .unwrap();
    assert!(out.contains("has been updated"), "{out}");
    let got = ok(node.tctl(&["get", "role/azure-cli-access"]).unwrap()).unwrap();
    assert!(got.contains("{{internal.azure_identities}}"), "{got}");

    // Bad input: the error names the document and the line.
    let bad = tmp.path().join("bad.yaml");
    let err = fails(create_from(&node, &bad, "kind: role\nversion: v7\nmetadata:\n  name: ok\nspec: {}\n---\nkind: role\nversion: v7\nmetadata:\n  name: broken\nspec:\n  allow:\n    logins: {a: [}\n").unwrap()).unwrap();
    assert!(err.contains("document 2") && err.contains("line"), "{err}");
    let err = fails(node.tctl(&["get", "role/ok"]).unwrap()).unwrap();
    assert!(err.contains("not found"), "{err}");

    let wildcard = tmp.path().join("wild.yaml");
    let err = fails(create_from(&node, &wildcard, "kind: role\nversion: v7\nmetadata:\n  name: wild\nspec:\n  allow:\n    azure_identities: ['*']\n").unwrap()).unwrap();
    assert!(
        err.contains("wildcard matcher is not allowed in allow.azure_identities"),
        "{err}"
    );

    ok(node.tctl(&["rm", "role/azure-cli-access"]).unwrap()).unwrap();
    let err = fails(node.tctl(&["rm", "role/azure-cli-access"]).unwrap()).unwrap();
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn azure_identities_reach_the_certificate() {
    let (tmp, node) = sqlite_node("az.example").unwrap();
    add_user(&node, "carol", "access", PASSWORD).unwrap();
    let err = fails(
        node.tctl(&["users", "update", "carol", "--set-azure-identities", "*"])
            .unwrap(),
    )
    .unwrap();
    assert!(
        err.contains("Azure identity cannot be a wildcard."),
        "{err}"
    );
    let err = fails(node.tctl(&["users", "update", "carol"]).unwrap()).unwrap();
    assert!(
        err.contains("Nothing to update. Please provide at least one --set flag."),
        "{err}"
    );
    let id1 = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1";
    let id2 = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id2";
    let out = ok(node
        .tctl(&[
            "users",
            "update",
            "carol",
            "--set-azure-identities",
            &format!("{id2},{id1}"),
        ])
        .unwrap())
    .unwrap();
    assert!(out.contains("User carol has been updated:"), "{out}");
    let home = tmp.path().join("home");
    ok(login(&node, &home, "carol", PASSWORD)).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&ok(tsh(&home, &["status", "-f", "json"], None).unwrap()).unwrap())
            .unwrap();
    assert_eq!(
        json["active"]["azure_identities"],
        serde_json::json!([id1, id2])
    );
}

#[test]
fn identity_files_and_tokens() {
    let (tmp, node) = sqlite_node("id.example").unwrap();
    add_user(&node, "bot", "editor", PASSWORD).unwrap();
    let file = tmp.path().join("bot.pem");
    let out = sign_identity(&node, "bot", &file, "1h").unwrap();
    assert!(out.contains("written to"), "{out}");
    let empty_home = tmp.path().join("nohome");
    let status =
        ok(tsh(&empty_home, &["status", "-i", file.to_str().unwrap()], None).unwrap()).unwrap();
    assert!(status.contains("Logged in as:       bot"), "{status}");
    let remote = ok(tctl_as(
        &empty_home,
        &[
            "-i",
            file.to_str().unwrap(),
            "--auth-server",
            &node.web_addr,
            "--insecure",
            "tokens",
            "add",
            "--type=app",
            "--ttl=1h",
            "--format=text",
        ],
    )
    .unwrap())
    .unwrap();
    let token = remote.trim();
    assert_eq!(token.len(), 32, "{remote}");
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    let list = ok(node.tctl(&["tokens", "ls"]).unwrap()).unwrap();
    assert!(list.contains(token) && list.contains("App"), "{list}");
    ok(node.tctl(&["tokens", "rm", token]).unwrap()).unwrap();
    let list = ok(node.tctl(&["tokens", "ls"]).unwrap()).unwrap();
    assert!(!list.contains(token), "{list}");
    // Without any identity the API refuses.
    let err = fails(
        tctl_as(
            &empty_home,
            &["--auth-server", &node.web_addr, "--insecure", "status"],
        )
        .unwrap(),
    )
    .unwrap();
    assert!(err.contains("not logged in"), "{err}");
}

#[test]
fn anonymous_callers_are_refused() {
    let (_tmp, node) = sqlite_node("anon.example").unwrap();
    let rt = runtime().unwrap();
    rt.block_on(async {
        let c = client::ApiClient::new(&node.web_addr, None, true).unwrap();
        let err = c.status().await.unwrap_err();
        assert_eq!(err.status(), Some(403), "{err}");
        assert!(err.to_string().contains("client certificate"), "{err}");
        // The auth listener demands a certificate during the handshake.
        let c = client::ApiClient::new(&node.auth_addr, None, true).unwrap();
        let err = c.status().await.unwrap_err();
        assert_eq!(err.status(), None, "{err}");
    });
}

#[test]
fn sigterm_stops_cleanly() {
    let (_tmp, mut node) = sqlite_node("stop.example").unwrap();
    let status = node.stop().unwrap();
    assert!(status.success(), "{status}:\n{}", node.log());
}

#[test]
fn two_processes_share_one_postgres_cluster() {
    let pair = PostgresPair::start("e2e_ha", "ha.example").unwrap();
    let pin_a = ok(pair.a.tctl(&["status"]).unwrap()).unwrap();
    let pin_b = ok(pair.b.tctl(&["status"]).unwrap()).unwrap();
    assert_eq!(pin_a, pin_b);
    add_user(&pair.a, "dave", "access", PASSWORD).unwrap();
    let home = pair.tmp.path().join("home");
    let out = ok(login(&pair.b, &home, "dave", PASSWORD)).unwrap();
    assert!(out.contains("Logged in as:       dave"), "{out}");
}
