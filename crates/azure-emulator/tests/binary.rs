//! The `azure-emulator` binary prints the client environment and stops on SIGTERM.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn prints_exports_and_serves_until_stopped() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/azure-emulator.yaml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_azure-emulator"))
        .arg("--fixture")
        .arg(&fixture)
        .args(["--vm", "other-vm"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut env = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.len() < 5 && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let rest = line.strip_prefix("export ").unwrap();
        let (k, v) = rest.split_once('=').unwrap();
        env.push((k.to_string(), v.trim_matches('"').to_string()));
    }
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let proxy = get("HTTPS_PROXY");
    assert!(proxy.starts_with("http://other-vm:x@127.0.0.1:"), "{proxy}");
    assert_eq!(get("HTTP_PROXY"), proxy);
    let ca = get("SSL_CERT_FILE");
    assert_eq!(get("REQUESTS_CA_BUNDLE"), ca);
    assert!(std::fs::read_to_string(&ca)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));

    // It serves: a TCP connection to the proxy port succeeds.
    let addr = proxy.rsplit('@').next().unwrap().to_string();
    assert!(std::net::TcpStream::connect(&addr).is_ok());

    // SIGTERM stops it.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("azure-emulator did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
