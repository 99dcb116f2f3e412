//! The `azure-emulator` binary prints the client environment (a `NO_PROXY` that keeps loopback off
//! its proxy, the attestation root's file) and stops on SIGTERM.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROOT_VAR: &str = "AZURE_EMULATOR_ATTESTATION_ROOT";

/// Starts the binary with `args` and reads its `export K="V"` lines up to the attestation root's.
fn start(args: &[&str]) -> (Child, Vec<(String, String)>) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/azure-emulator.yaml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_azure-emulator"))
        .arg("--fixture")
        .arg(&fixture)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut env = Vec::new();
    while !env.iter().any(|(k, _)| k == ROOT_VAR) {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            panic!("azure-emulator ended its output early: {env:?}");
        };
        let rest = line.strip_prefix("export ").unwrap();
        let (k, v) = rest.split_once('=').unwrap();
        env.push((k.to_string(), v.trim_matches('"').to_string()));
    }
    (child, env)
}

fn get(env: &[(String, String)], k: &str) -> String {
    env.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {k} in {env:?}"))
}

fn stop(mut child: Child) {
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

/// The self-signed CA certificate in the PEM file at `path`.
fn root_of(path: &str) -> Vec<u8> {
    let pem = std::fs::read(path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents).unwrap();
    assert!(cert.is_ca());
    assert_eq!(cert.subject(), cert.issuer());
    pem.contents.clone()
}

#[test]
fn prints_exports_and_serves_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let wanted = dir.path().join("root.pem");
    let (child, env) = start(&[
        "--vm",
        "other-vm",
        "--attestation-root",
        wanted.to_str().unwrap(),
    ]);
    let proxy = get(&env, "HTTPS_PROXY");
    assert!(proxy.starts_with("http://other-vm:x@127.0.0.1:"), "{proxy}");
    assert_eq!(get(&env, "HTTP_PROXY"), proxy);
    let ca = get(&env, "SSL_CERT_FILE");
    assert_eq!(get(&env, "REQUESTS_CA_BUNDLE"), ca);
    assert!(std::fs::read_to_string(&ca)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    // Loopback (a cluster, a redis-server) is reached directly, not through the proxy, which
    // serves only the Azure hosts it emulates.
    for var in ["NO_PROXY", "no_proxy"] {
        let list = get(&env, var);
        let hosts: Vec<&str> = list.split(',').map(str::trim).collect();
        for h in ["127.0.0.1", "localhost", "::1"] {
            assert!(hosts.contains(&h), "{var}={list:?}");
        }
    }
    // The attestation root, where it was asked for.
    assert_eq!(get(&env, ROOT_VAR), wanted.display().to_string());
    root_of(&get(&env, ROOT_VAR));

    // It serves: a TCP connection to the proxy port succeeds.
    let addr = proxy.rsplit('@').next().unwrap().to_string();
    assert!(std::net::TcpStream::connect(&addr).is_ok());
    stop(child);
}

#[test]
fn attestation_root_in_the_state_directory_by_default() {
    let (child, env) = start(&[]);
    let path = get(&env, ROOT_VAR);
    // Beside the TLS CA, in the emulator's own directory.
    let ca = get(&env, "SSL_CERT_FILE");
    assert_eq!(Path::new(&path).parent(), Path::new(&ca).parent());
    let root = root_of(&path);
    // The TLS CA is another certificate.
    let ca_pem = std::fs::read(&ca).unwrap();
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(&ca_pem).unwrap();
    assert_ne!(ca_pem.contents, root);
    stop(child);
    // Its state directory goes with it.
    assert!(!Path::new(&path).exists());
}
