//! `curl https://PROXY/scripts/install.sh | bash` installs the proxy's binaries.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use e2e::*;

fn sh(script: &str, env: &[(&str, &Path)]) -> std::process::Output {
    let mut c = Command::new("bash");
    c.args(["-c", script]);
    for (k, v) in env {
        c.env(k, v);
    }
    output(c, None).unwrap()
}

fn node_with_trusted_cert(tmp: &Path) -> (Node, std::path::PathBuf) {
    let cert = tmp.join("web.pem");
    let key = tmp.join("web.key");
    ok(sh(
        &format!(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout {} -out {} 2>&1",
            key.display(),
            cert.display()
        ),
        &[],
    ))
    .unwrap();
    let node = Node::start_with_keypair(
        &tmp.join("node"),
        "install.example",
        &Storage::Sqlite,
        Some((&cert, &key)),
    )
    .unwrap();
    (node, cert)
}

#[test]
fn install_script_installs_verified_binaries() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, cert) = node_with_trusted_cert(tmp.path());
    let dest = tmp.path().join("bin");
    // As the guide: curl the script and pipe it to bash (no -k: the cert is trusted).
    let out = sh(
        &format!(
            "curl -fsSL https://{}/scripts/install.sh | bash",
            node.web_addr
        ),
        &[("CURL_CA_BUNDLE", &cert), ("TELEPORT_INSTALL_DIR", &dest)],
    );
    let text = ok(out).unwrap();
    assert!(text.contains("installed into"), "{text}");
    for b in ["teleport", "tsh", "tctl"] {
        let installed = std::fs::read(dest.join(b)).unwrap();
        let original = std::fs::read(bin(b).unwrap()).unwrap();
        assert!(installed == original, "{b} differs from the proxy's binary");
        let v = ok(output(
            {
                let mut c = Command::new(dest.join(b));
                c.arg("version");
                c
            },
            None,
        )
        .unwrap())
        .unwrap();
        assert!(v.starts_with("Teleport v"), "{v}");
    }
}

#[test]
fn install_script_refuses_other_platforms() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, cert) = node_with_trusted_cert(tmp.path());
    let fake = tmp.path().join("fake");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(
        fake.join("uname"),
        "#!/bin/sh\n[ \"$1\" = -s ] && echo Darwin || echo arm64\n",
    )
    .unwrap();
    ok(sh(&format!("chmod +x {}/uname", fake.display()), &[])).unwrap();
    let dest = tmp.path().join("bin");
    let out = sh(
        &format!(
            "curl -fsSL https://{}/scripts/install.sh | PATH={}:$PATH bash",
            node.web_addr,
            fake.display()
        ),
        &[("CURL_CA_BUNDLE", &cert), ("TELEPORT_INSTALL_DIR", &dest)],
    );
    let err = fails(out).unwrap();
    assert!(
        err.contains("supports Linux") && err.contains("Darwin"),
        "{err}"
    );
    assert!(!dest.exists());
}

#[test]
fn binaries_route_refuses_unknown_names_and_traversal() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, cert) = node_with_trusted_cert(tmp.path());
    for path in [
        "/webapi/binaries/evil",
        "/webapi/binaries/..%2F..%2F..%2Fetc%2Fpasswd",
        "/webapi/binaries/%2Fetc%2Fpasswd",
        "/webapi/binaries/teleport?os=darwin&arch=arm64",
        "/webapi/binaries/tsh?arch=riscv64",
    ] {
        let out = sh(
            &format!(
                "curl -s -o /dev/stdout -w '\\n%{{http_code}}' 'https://{}{path}'",
                node.web_addr
            ),
            &[("CURL_CA_BUNDLE", &cert)],
        );
        let text = ok(out).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        assert_eq!(code, "404", "{path}: {text}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(json["error"]["message"].is_string(), "{path}: {body}");
        assert!(!body.contains("root:"), "{path}");
    }
}
