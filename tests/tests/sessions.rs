//! Sessions and trust, end to end through the binaries: re-login to a proxy
//! with a self-signed certificate, an expired session (renewed on the spot
//! on a terminal), and the Azure
//! identities one may assume.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::*;

const PASSWORD: &str = "correct horse battery staple";
const ID1: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1";
const ID2: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id2";

/// `tsh login --proxy=... --user=user` plus `extra`, the password on stdin.
fn plain_login(node: &Node, home: &Path, user: &str, extra: &[&str]) -> std::process::Output {
    let proxy = format!("--proxy={}", node.web_addr);
    let user = format!("--user={user}");
    let mut args = vec!["login", proxy.as_str(), user.as_str()];
    args.extend_from_slice(extra);
    tsh(home, &args, Some(&format!("{PASSWORD}\n"))).unwrap()
}

/// The refusal of an untrusted proxy says why and names --insecure.
fn assert_untrusted(err: &str) {
    assert!(err.contains("not trusted"), "{err}");
    assert!(err.contains("self-signed"), "{err}");
    assert!(err.contains("--insecure"), "{err}");
    assert!(!err.contains("Enter password"), "{err}");
}

#[test]
fn relogin_to_a_self_signed_proxy_keeps_insecure() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("node"), "trust.example", &Storage::Sqlite).unwrap();
    add_user(&node, "alice", "access", PASSWORD).unwrap();
    let home = tmp.path().join("home");

    // No profile: the self-signed proxy is refused, with what to do.
    assert_untrusted(&fails(plain_login(&node, &home, "alice", &[])).unwrap());

    ok(plain_login(&node, &home, "alice", &["--insecure"])).unwrap();
    // Signing in again without the flag: the profile of this proxy keeps it.
    let out = ok(plain_login(&node, &home, "alice", &[])).unwrap();
    assert!(out.contains("Logged in as:       alice"), "{out}");
    // Proxy and user from the current profile alone.
    let out = ok(tsh(&home, &["login"], Some(&format!("{PASSWORD}\n"))).unwrap()).unwrap();
    assert!(out.contains("Logged in as:       alice"), "{out}");
    let yaml = std::fs::read_to_string(home.join("127.0.0.1.yaml")).unwrap();
    assert!(yaml.contains("insecure: true"), "{yaml}");
    ok(tsh(&home, &["apps", "ls"], None).unwrap()).unwrap();

    // After logout nothing is remembered: refused again, never trusted silently.
    ok(tsh(&home, &["logout"], None).unwrap()).unwrap();
    assert_untrusted(&fails(plain_login(&node, &home, "alice", &[])).unwrap());
    assert!(!home.join("127.0.0.1.yaml").exists());
}

/// Polls `tsh status` until it reports the session expired; its stderr.
fn wait_for_expiry(home: &Path, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let out = tsh(home, &["status"], None).unwrap();
        if !out.status.success() {
            return String::from_utf8_lossy(&out.stderr).to_string();
        }
        assert!(
            start.elapsed() < limit,
            "the session did not expire within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_expired_session_says_so_and_how_to_log_in_again() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("node"), "expiry.example", &Storage::Sqlite).unwrap();
    let ids = format!("--azure-identities={ID1}");
    add_user_with(&node, "alice", "access", &[&ids], PASSWORD).unwrap();
    let home = tmp.path().join("home");
    ok(plain_login(
        &node,
        &home,
        "alice",
        &["--insecure", "--ttl", "3s"],
    ))
    .unwrap();
    // The same profile's identity, for the cluster's own verdict below.
    let (_, creds) = client::ProfileStore::at(&home).current().unwrap();

    let relogin = format!(
        "tsh login --proxy={} --user=alice --insecure",
        node.web_addr
    );
    let status = wait_for_expiry(&home, Duration::from_secs(60));
    assert!(status.contains("Active profile expired"), "{status}");
    assert!(status.contains("your session has expired"), "{status}");
    assert!(status.contains(&relogin), "{status}");

    for args in [
        &["apps", "ls"][..],
        &["db", "ls"],
        &["az", "account", "show"],
        &["apps", "login", "azure-cli"],
        &["apps", "login", "azure-cli", "--list-identities"],
        &["db", "connect", "redis"],
        &["db", "login", "redis"],
        &["proxy", "azure"],
        &["clusters"],
        &["apps", "config"],
    ] {
        let err = fails(tsh(&home, args, None).unwrap()).unwrap();
        assert!(err.contains("your session has expired"), "{args:?}: {err}");
        assert!(err.contains(&relogin), "{args:?}: {err}");
        assert!(!err.contains("CertificateExpired"), "{args:?}: {err}");
    }
    // Logging out needs no live session.
    ok(tsh(&home, &["apps", "logout"], None).unwrap()).unwrap();

    // The cluster refuses the expired certificate with a TLS alert: the
    // client reads it as an expired session too, not as a raw TLS error.
    // The cluster compares whole seconds: poll past the certificate's last one.
    let rt = runtime().unwrap();
    let start = Instant::now();
    let err = loop {
        let res = rt.block_on(async {
            client::ApiClient::new(&node.web_addr, Some(&creds), true)
                .unwrap()
                .with_login_hint(relogin.clone())
                .get::<serde_json::Value>("/v1/auth/apps")
                .await
        });
        match res {
            Err(e) => break e,
            Ok(_) => assert!(start.elapsed() < Duration::from_secs(10), "still accepted"),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        matches!(err, client::ClientError::SessionExpired { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&relogin), "{err}");

    // On a terminal, tsh logs in again on the spot (asking for the
    // password) and runs the command, as Teleport does. `script` gives tsh
    // a terminal and types the password into it.
    let out = Command::new("script")
        .args([
            "-qec",
            &format!("{} apps ls", bin("tsh").unwrap().display()),
            "/dev/null",
        ])
        .env("TELEPORT_HOME", &home)
        .env_remove("COLUMNS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(format!("{PASSWORD}\n").as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("your session has expired"), "{text}");
    assert!(text.contains("Logging in again."), "{text}");
    assert!(
        text.contains("Enter password for Teleport user alice"),
        "{text}"
    );
    assert!(text.contains("Application"), "{text}");
    // The renewed session serves commands without a terminal too.
    ok(tsh(&home, &["apps", "ls"], None).unwrap()).unwrap();

    // Logging in again (the remembered --insecure included) brings it back.
    ok(plain_login(&node, &home, "alice", &[])).unwrap();
    ok(tsh(&home, &["apps", "ls"], None).unwrap()).unwrap();
}

#[test]
fn azure_identities_are_listed_without_a_login_attempt() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("node"), "ids.example", &Storage::Sqlite).unwrap();
    let ids = format!("--azure-identities={ID2},{ID1}");
    add_user_with(&node, "carol", "access", &[&ids], PASSWORD).unwrap();
    let home = tmp.path().join("home");
    ok(plain_login(&node, &home, "carol", &["--insecure"])).unwrap();

    let out = ok(tsh(
        &home,
        &["apps", "login", "azure-cli", "--list-identities"],
        None,
    )
    .unwrap())
    .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Available Azure identities:", "{out}");
    let rows: Vec<Vec<&str>> = lines[3..5]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows, [vec!["id1", ID1], vec!["id2", ID2]], "{out}");
    assert!(
        out.contains("tsh apps login azure-cli --azure-identity <name>"),
        "{out}"
    );
    // No app session was asked for.
    assert!(!home.join("keys/127.0.0.1/carol-app").exists());

    // Listing and choosing do not go together.
    let err = fails(
        tsh(
            &home,
            &[
                "apps",
                "login",
                "azure-cli",
                "--list-identities",
                "--azure-identity",
                "id1",
            ],
            None,
        )
        .unwrap(),
    )
    .unwrap();
    assert!(err.contains("cannot be used with"), "{err}");
}
