//! Text a hostile or compromised proxy sends never reaches the user's
//! terminal raw: tsh and tctl print error messages and resource listings with
//! their control characters escaped.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the hostile server puts in its answers: a colour change, a window
/// title, a bell, a screen clear and an 8-bit CSI.
const HOSTILE: &str = "\u{1b}[31mred\u{1b}]0;owned\u{7}\u{1b}[2J\r\u{9b}2J";

/// A TLS server on loopback that answers every request: a role listing whose
/// names are hostile for `/v1/auth/resources/role`, an error with a hostile
/// message for anything else.
struct Hostile {
    // Its accept loop and connections end when the runtime is dropped.
    _rt: tokio::runtime::Runtime,
    addr: String,
}

impl Hostile {
    fn start() -> Hostile {
        // Served on a thread of its own while the test waits for the CLIs.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (cert, key) = pki::self_signed_server_cert(&["localhost".into()]).unwrap();
        let config =
            pki::tls::server_config(&cert, &key, &[], pki::tls::ClientAuth::None, &[b"http/1.1"])
                .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let (status, body) = if head.starts_with("GET /v1/auth/resources/role ") {
                        let item = serde_json::json!({
                            "kind": "role", "version": "v7",
                            "metadata": {"name": HOSTILE, "labels": {HOSTILE: HOSTILE}},
                        });
                        ("200 OK", serde_json::json!([item]))
                    } else {
                        (
                            "500 Internal Server Error",
                            serde_json::json!({"error": {"message": format!("denied {HOSTILE}\nsecond line")}}),
                        )
                    };
                    let body = body.to_string();
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Hostile { _rt: rt, addr }
    }
}

/// No control character but line feeds (and the tab) reaches the terminal;
/// the hostile text is shown escaped.
fn assert_escaped(what: &str, text: &str) {
    assert_no_control(what, text);
    assert!(text.contains("\\u{1b}[31mred"), "{what}: {text:?}");
}

/// No control character but line feeds (and the tab) is in `text`.
fn assert_no_control(what: &str, text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{what} printed control characters: {text:?}"
    );
}

#[test]
fn tsh_escapes_a_proxy_error() {
    let server = Hostile::start();
    let home = tempfile::tempdir().unwrap();
    let out = tsh(
        home.path(),
        &[
            "login",
            &format!("--proxy={}", server.addr),
            "--insecure",
            "--user=alice",
        ],
        Some("password\n"),
    )
    .unwrap();
    let err = fails(out).unwrap();
    assert_escaped("tsh login", &err);
    assert!(err.contains("ERROR: denied "), "{err:?}");
    assert!(err.contains("\nsecond line"), "{err:?}");
}

/// An identity file the hostile server's clients can present (tctl -i).
fn identity(dir: &std::path::Path) -> std::path::PathBuf {
    let (cert, key) = pki::self_signed_server_cert(&["alice".into()]).unwrap();
    let path = dir.join("identity.pem");
    std::fs::write(&path, format!("{key}{cert}{cert}")).unwrap();
    path
}

/// `tctl -i IDENTITY --auth-server=SERVER --insecure args...`, with an identity
/// file the hostile server accepts.
fn hostile_tctl(server: &Hostile, args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    let id = identity(home.path());
    let auth = format!("--auth-server={}", server.addr);
    let mut all = vec!["-i", id.to_str().unwrap(), &auth, "--insecure"];
    all.extend_from_slice(args);
    tctl_as(home.path(), &all).unwrap()
}

#[test]
fn tctl_escapes_an_error_from_the_server() {
    let server = Hostile::start();
    let err = fails(hostile_tctl(&server, &["status"])).unwrap();
    assert_escaped("tctl status", &err);
    assert!(err.contains("ERROR: denied "), "{err:?}");
}

#[test]
fn tctl_escapes_listings_from_the_server() {
    let server = Hostile::start();
    let text = ok(hostile_tctl(&server, &["get", "roles", "--format=text"])).unwrap();
    assert_escaped("tctl get roles --format=text", &text);
    for format in ["json", "yaml"] {
        let format = format!("--format={format}");
        let out = ok(hostile_tctl(&server, &["get", "roles", &format])).unwrap();
        assert_no_control(&format!("tctl get roles {format}"), &out);
        assert!(out.contains("red"), "{out:?}");
    }
}

/// The certificate a hostile proxy had signed names the user and roles: `tsh
/// status` prints each field on its one line, escaped, so it can neither send
/// escape sequences nor add a line of its own ("Roles: admin").
#[test]
fn tsh_status_prints_certificate_fields_escaped() {
    let home = tempfile::tempdir().unwrap();
    let ca = pki::CertAuthority::generate("hostile.example", pki::CaType::User).unwrap();
    let key = pki::generate_key().unwrap();
    let identity = pki::Identity {
        username: format!("alice{HOSTILE}\n  Roles:              admin"),
        groups: vec![format!("access{HOSTILE}")],
        logins: vec!["root\n  Kubernetes:         enabled".into()],
        teleport_cluster: "hostile.example".into(),
        expires: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ..Default::default()
    };
    let cert_pem = ca.sign_identity(&identity, &key.public_key_der).unwrap();
    let profile = client::Profile {
        web_proxy_addr: "127.0.0.1:3080".into(),
        user: "alice".into(),
        cluster: "hostile.example".into(),
        insecure: true,
    };
    let creds = client::Credentials {
        key_pem: key.private_key_pem,
        cert_pem,
        ca_pems: vec![ca.cert_pem().to_string()],
    };
    client::ProfileStore::at(home.path())
        .save(&profile, &creds)
        .unwrap();
    let out = ok(tsh(home.path(), &["status"], None).unwrap()).unwrap();
    assert_escaped("tsh status", &out);
    assert!(
        !out.lines()
            .any(|l| l.trim_start().starts_with("Roles:              admin")
                || l.trim_start().starts_with("Kubernetes:         enabled")),
        "a field added a line: {out}"
    );
    assert!(out.contains("Logged in as:       alice"), "{out}");
}

/// An agent pointed at a hostile proxy prints the proxy's refusal escaped.
#[test]
fn teleport_escapes_an_error_from_the_proxy() {
    let server = Hostile::start();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    let pin = format!("sha256:{}", "0".repeat(64));
    let config = token_agent_config("agent-one", &server.addr, &pin, &token)
        + r#"app_service:
  enabled: true
  apps:
  - name: grafana
    uri: "http://localhost:3000"
"#;
    let mut agent = Agent::start(&dir.path().join("agent"), &config).unwrap();
    agent.wait_exit(std::time::Duration::from_secs(60)).unwrap();
    let log = agent.log();
    assert!(
        log.contains("ERROR: reaching the proxy failed: denied "),
        "{log:?}"
    );
    assert_escaped("teleport start", &log);
}
