//! A misspelt key is refused, never dropped: `teleport start` with a typo in a section of
//! `teleport.yaml` does not start on a default, and `tctl create` with a typo in a role's
//! `deny` creates nothing (a dropped denial would be a hole).
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{bin, create_from, fails, sqlite_node};

#[test]
fn teleport_start_refuses_a_typo_in_a_section() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("teleport.yaml");
    std::fs::write(
        &config,
        format!(
            "version: v3\nteleport:\n  nodename: typo\n  data_dir: {}\nauth_service:\n  enabled: yes\n  listen_adr: 127.0.0.1:0\nproxy_service:\n  enabled: no\n",
            tmp.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(bin("teleport").unwrap())
        .args(["start", "-c"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It must exit on its own; one that started on the default address is stopped here.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut s, &mut stderr);
    }
    let status = status.unwrap_or_else(|| panic!("teleport started despite the typo: {stderr}"));
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "failed to parse config file {}: line 7, column 3: unknown key `auth_service.listen_adr` (did you mean `listen_addr`?)",
            config.display()
        )),
        "{stderr}"
    );
}

#[test]
fn tctl_create_refuses_a_typo_in_a_denial() {
    let (tmp, node) = sqlite_node("typo.example").unwrap();
    let role = tmp.path().join("role.yaml");
    let err = fails(create_from(&node, &role, "kind: role\nversion: v5\nmetadata:\n  name: no-azure-identities\nspec:\n  allow:\n    app_labels:\n      '*': '*'\n  deny:\n    azure_identitie:\n      - '*'\n").unwrap()).unwrap();
    assert!(
        err.contains("document 1, line 10, column 5: unknown key `spec.deny.azure_identitie` (did you mean `azure_identities`?)"),
        "{err}"
    );
    let err = fails(node.tctl(&["get", "role/no-azure-identities"]).unwrap()).unwrap();
    assert!(err.contains("not found"), "{err}");
}
