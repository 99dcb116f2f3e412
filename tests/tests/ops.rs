//! The guides' operational commands: versions, discovery endpoints, systemd.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use e2e::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[test]
fn every_binary_prints_its_version_line() {
    for b in ["tsh", "tctl", "teleport"] {
        let out = ok(output(
            {
                let mut c = Command::new(bin(b).unwrap());
                c.arg("version");
                c
            },
            None,
        )
        .unwrap())
        .unwrap();
        let line = out.trim();
        assert!(
            line.starts_with(&format!("Teleport v{VERSION} git:")),
            "{b}: {line}"
        );
        assert!(line.contains(" rustc 1."), "{b}: {line}");
    }
}

fn curl(url: &str) -> String {
    ok(output(
        {
            let mut c = Command::new("curl");
            c.args(["-sSk", "--fail", url]);
            c
        },
        None,
    )
    .unwrap())
    .unwrap()
}

#[test]
fn discovery_endpoints_answer_without_authentication() {
    let (_tmp, node) = sqlite_node("ops.example").unwrap();
    for path in [
        "/v1/webapi/ping",
        "/webapi/ping",
        "/v1/webapi/find",
        "/webapi/find",
    ] {
        let body: serde_json::Value =
            serde_json::from_str(&curl(&format!("https://{}{path}", node.web_addr))).unwrap();
        assert_eq!(body["server_version"], VERSION, "{path}");
        assert_eq!(body["cluster_name"], "ops.example", "{path}");
        assert_eq!(
            body["proxy"]["public_addr"],
            node.web_addr.as_str(),
            "{path}"
        );
        assert!(body["min_client_version"].is_string());
        assert_eq!(body["auth"]["type"], "local");
    }
    let v = curl(&format!(
        "https://{}/v1/webapi/automaticupgrades/channel/default/version",
        node.web_addr
    ));
    assert_eq!(v, format!("v{VERSION}"));
    let c = curl(&format!(
        "https://{}/v1/webapi/automaticupgrades/channel/default/critical",
        node.web_addr
    ));
    assert_eq!(c, "no");
}

#[test]
fn systemd_unit_has_teleports_shape_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let teleport = bin("teleport").unwrap();
    let printed = ok(output(
        {
            let mut c = Command::new(&teleport);
            c.args(["install", "systemd"]);
            c
        },
        None,
    )
    .unwrap())
    .unwrap();
    for line in [
        "Type=simple",
        "Restart=always",
        "RestartSec=5",
        "EnvironmentFile=-/etc/default/teleport",
        "ExecStart=/usr/local/bin/teleport start --config /etc/teleport.yaml --pid-file=/run/teleport.pid",
        "LimitNOFILE=524288",
        "WantedBy=multi-user.target",
    ] {
        assert!(printed.lines().any(|l| l == line), "missing {line:?} in\n{printed}");
    }
    let unit = tmp.path().join("teleport.service");
    ok(output(
        {
            let mut c = Command::new(&teleport);
            c.args([
                "install",
                "systemd",
                "--fd-limit=1024",
                "--pid-file=/run/t.pid",
                "-o",
            ])
            .arg(&unit)
            .arg("--teleport-path")
            .arg(&teleport);
            c
        },
        None,
    )
    .unwrap())
    .unwrap();
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains("LimitNOFILE=1024") && text.contains("PIDFile=/run/t.pid"),
        "{text}"
    );
    // systemd's own checker (cargo xtask test installs it when missing).
    let verify = output(
        {
            let mut c = Command::new("systemd-analyze");
            c.arg("verify").arg(&unit);
            c
        },
        None,
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&verify.stderr);
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("teleport.service"))
        .collect();
    assert!(
        verify.status.success() && about_unit.is_empty(),
        "systemd-analyze: {stderr}"
    );
}

#[test]
fn sighup_does_not_stop_the_service() {
    let (_tmp, mut node) = sqlite_node("hup.example").unwrap();
    let pid = node.pid().unwrap().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    poll(
        std::time::Duration::from_secs(10),
        "the HUP log line",
        || node.log().contains("SIGHUP received").then_some(()),
    )
    .unwrap();
    ok(node.tctl(&["status"]).unwrap()).unwrap();
    assert!(node.stop().unwrap().success());
}

/// `tctl get roles | head -1`: when the reader of a CLI's output goes away
/// before the CLI writes, the CLI ends quietly (status 0, nothing on
/// standard error) instead of panicking on the broken pipe.
#[test]
fn clis_end_quietly_when_their_output_closes() {
    let (tmp, node) = sqlite_node("pipe.example").unwrap();
    let home = tmp.path().join("home");
    add_user(&node, "alice", "access", "correct horse battery staple").unwrap();
    ok(tsh(
        &home,
        &[
            "login",
            "--proxy",
            &node.web_addr,
            "--user",
            "alice",
            "--insecure",
        ],
        Some("correct horse battery staple\n"),
    )
    .unwrap())
    .unwrap();
    let tctl = |args: &[&str]| {
        let mut c = Command::new(bin("tctl").unwrap());
        c.arg("-c").arg(&node.config).args(args);
        c
    };
    let tsh_cmd = |args: &[&str]| {
        let mut c = Command::new(bin("tsh").unwrap());
        c.env("TELEPORT_HOME", &home).args(args);
        c
    };
    for mut cmd in [
        tctl(&["get", "roles"]),
        tctl(&["status"]),
        tctl(&["events", "ls"]),
        tctl(&["users", "ls"]),
        tsh_cmd(&["status"]),
    ] {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Close the reading end before the command can have written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{what}: {:?} {stderr}", out.status);
        assert!(stderr.trim().is_empty(), "{what}: {stderr}");
    }
}

/// Slow clients hold nothing for long: a TLS client that never finishes
/// its request headers is closed (it was held forever), and one address
/// cannot hold more than a bounded number of unauthenticated connections,
/// on the proxy's port and on the auth port.
#[test]
fn slow_and_many_unauthenticated_clients_are_bounded() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_tmp, node) = sqlite_node("slow.example").unwrap();
    let rt = runtime().unwrap();
    rt.block_on(async {
        // Half a request head over TLS, then silence.
        let config = pki::tls::client_config(None, None, &[], true, &[b"http/1.1"]).unwrap();
        let tcp = tokio::net::TcpStream::connect(&node.web_addr)
            .await
            .unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(b"GET /webapi/ping HTTP/1.1\r\nhost: localhost\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(60), tls.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "a client that never finished its headers was held"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(15),
            "closed too early: {took:?}"
        );

        // Connections that never say anything count against their address
        // until they authenticate: past the bound, the next one is closed at once.
        for addr in [&node.web_addr, &node.auth_addr] {
            let mut held = Vec::new();
            for _ in 0..256 {
                held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            }
            let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut buf = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf)).await;
            assert!(
                matches!(read, Ok(Ok(0)) | Ok(Err(_))),
                "{addr}: connection 257 was kept: {read:?}"
            );
            drop(held);
        }
    });
}
