//! The Azure join method end to end, as the guide walks it: `tctl create -f token.yaml` with
//! `join_method: azure`, agents on the emulator's VMs with `join_params.method: azure`. The
//! emulator runs in this process; the auth service and the agents reach it through
//! `HTTPS_PROXY`/`HTTP_PROXY` and trust it through `SSL_CERT_FILE`; `NO_PROXY` keeps the
//! cluster's own 127.0.0.1 traffic direct.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use e2e::*;

const SUB: &str = "00000000-0000-0000-0000-000000000000";
const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const TELEPORT_AZURE_CLIENT: &str = "6a2f5c0e-1b3d-4e8f-9a7b-0c1d2e3f4a01";
const OTHER_IDENTITY_CLIENT: &str = "0e6192a4-5f71-4c23-9ebf-4a5b6c7d8e05";

struct Cluster {
    _rt: tokio::runtime::Runtime,
    emu: azure_emulator::EmulatorHandle,
    node: Node,
    pin: String,
}

/// The emulator's environment for `vm`, with the cluster's loopback traffic kept direct.
fn azure_env(emu: &azure_emulator::EmulatorHandle, vm: Option<&str>) -> Vec<(String, String)> {
    loopback_direct(emu.try_env(vm).unwrap())
}

fn cluster(dir: &Path) -> Cluster {
    let (rt, emu) = start_emulator().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let bundle = dir.join("azure-attestation-root.pem");
    std::fs::write(&bundle, emu.attestation_root_pem().unwrap()).unwrap();
    let node = Node::start_with_env(
        &dir.join("node"),
        "azure.example",
        &Storage::Sqlite,
        None,
        &azure_env(&emu, None),
        &format!(
            "  azure_join:\n    trust_bundle_path: {}\n",
            bundle.display()
        ),
    )
    .unwrap();
    let pin = ca_pin(&node).unwrap();
    Cluster {
        _rt: rt,
        emu,
        node,
        pin,
    }
}

/// `tctl create -f` a token of the guide's shape with one allow rule.
fn create_token(c: &Cluster, dir: &Path, name: &str, rule: &str) {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &file,
        format!(
            "# token.yaml\nkind: token\nversion: v2\nmetadata:\n  name: {name}\nspec:\n  roles: [Node]\n  join_method: azure\n  azure:\n    allow:\n{rule}"
        ),
    )
    .unwrap();
    ok(c.node
        .tctl(&["create", "-f", file.to_str().unwrap()])
        .unwrap())
    .unwrap();
}

/// An agent on `vm` joining with the token `token` and the identity `client_id`.
fn start_agent(c: &Cluster, dir: &Path, vm: Option<&str>, token: &str, client_id: &str) -> Agent {
    let config = format!(
        r#"version: v3
teleport:
  nodename: {token}-agent
  data_dir: "{{data_dir}}"
  proxy_server: "{proxy}"
  ca_pin: "{pin}"
  join_params:
    token_name: {token}
    method: azure
    azure:
      client_id: {client_id}
auth_service:
  enabled: no
proxy_service:
  enabled: no
ssh_service:
  enabled: yes
"#,
        proxy = c.node.web_addr,
        pin = c.pin,
    );
    Agent::start_with_env(dir, &config, &azure_env(&c.emu, vm)).unwrap()
}

fn join_events(c: &Cluster) -> String {
    ok(c.node
        .tctl(&["events", "ls", "--type=instance.join", "--format=json"])
        .unwrap())
    .unwrap()
}

#[test]
fn agents_on_allowed_vms_join() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cluster(tmp.path());
    let tokens = [
        (
            "azure-token",
            format!("      - subscription: 11111111-1111-1111-1111-111111111111\n      - subscription: {SUB}\n        resource_groups: [\"group1\", \"my-resource-group\"]\n"),
        ),
        // The resource group written with another case still matches.
        (
            "azure-token-case",
            format!("      - subscription: {SUB}\n        resource_groups: [\"My-Resource-GROUP\"]\n        tenant: {TENANT}\n"),
        ),
    ];
    for (name, rules) in &tokens {
        create_token(&c, tmp.path(), name, rules);
    }
    let agents = [("a1", "azure-token"), ("a2", "azure-token-case")].map(|(dir, token)| {
        start_agent(
            &c,
            &tmp.path().join(dir),
            None,
            token,
            TELEPORT_AZURE_CLIENT,
        )
    });
    for agent in &agents {
        poll(Duration::from_secs(60), "the Azure join", || {
            agent
                .log()
                .contains("Joined cluster azure.example")
                .then_some(())
        })
        .map_err(|e| {
            format!(
                "{e}\nagent log:\n{}\nnode log:\n{}",
                agent.log(),
                c.node.log()
            )
        })
        .unwrap();
    }
    let events = join_events(&c);
    assert!(events.contains("TJ002I"), "{events}");
    assert!(events.contains("\"azure\""), "{events}");
    assert!(!events.contains("TJ002E"), "{events}");
}

#[test]
fn agents_outside_the_rules_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cluster(tmp.path());
    let tokens = [
        (
            "azure-token",
            format!("      - subscription: {SUB}\n        resource_groups: [\"my-resource-group\"]\n"),
        ),
        (
            "other-subscription",
            "      - subscription: 33333333-3333-3333-3333-333333333333\n".to_string(),
        ),
        (
            "other-tenant",
            format!("      - subscription: {SUB}\n        tenant: 99999999-9999-9999-9999-999999999999\n"),
        ),
    ];
    for (name, rules) in &tokens {
        create_token(&c, tmp.path(), name, rules);
    }
    let mut agents = [
        // A VM in another resource group.
        ("b1", Some("other-vm"), "azure-token", OTHER_IDENTITY_CLIENT),
        ("b2", None, "other-subscription", TELEPORT_AZURE_CLIENT),
        ("b3", None, "other-tenant", TELEPORT_AZURE_CLIENT),
    ]
    .map(|(dir, vm, token, client)| start_agent(&c, &tmp.path().join(dir), vm, token, client));
    for agent in &mut agents {
        let status = agent.wait_exit(Duration::from_secs(60)).unwrap();
        assert!(!status.success());
        let log = agent.log();
        assert!(log.contains("matches no allow rule"), "{log}");
        assert!(!log.contains("Joined cluster"), "{log}");
    }
    assert!(agents[0]
        .log()
        .contains("resource group other-resource-group"));
    assert!(agents[2].log().contains(&format!("tenant {TENANT}")));
    let events = join_events(&c);
    assert!(events.contains("TJ002E"), "{events}");
    assert!(events.contains("matches no allow rule"), "{events}");
    assert!(!events.contains("TJ002I"), "{events}");
}

/// The Azure join guide's `/etc/teleport.yaml`, verbatim but for the host
/// names, the client ID and a data dir of the test's own: no `ca_pin`, so the
/// agent trusts the proxy's publicly trusted certificate (here: one the test
/// makes and adds to `SSL_CERT_FILE`), and only `ssh_service` enabled.
#[test]
fn the_guides_config_joins_and_says_ssh_is_unavailable() {
    let tmp = tempfile::tempdir().unwrap();
    let (_rt, emu) = start_emulator().unwrap();
    // A certificate for the proxy from a CA the agent's system bundle trusts.
    let web_ca = pki::CertAuthority::generate("web-ca", pki::CaType::Host).unwrap();
    let (leaf, leaf_key) = web_ca
        .issue_server_cert(&["127.0.0.1".to_string()])
        .unwrap();
    let (cert, key) = (tmp.path().join("web.pem"), tmp.path().join("web.key"));
    std::fs::write(&cert, leaf).unwrap();
    std::fs::write(&key, leaf_key).unwrap();
    let root_bundle = tmp.path().join("attestation-root.pem");
    std::fs::write(&root_bundle, emu.attestation_root_pem().unwrap()).unwrap();
    let node = Node::start_with_env(
        &tmp.path().join("node"),
        "guide.example",
        &Storage::Sqlite,
        Some((&cert, &key)),
        &azure_env(&emu, None),
        &format!(
            "  azure_join:\n    trust_bundle_path: {}\n",
            root_bundle.display()
        ),
    )
    .unwrap();
    let token = tmp.path().join("token.yaml");
    std::fs::write(&token, format!("kind: token\nversion: v2\nmetadata:\n  name: azure-token\nspec:\n  roles: [Node]\n  join_method: azure\n  azure:\n    allow:\n      - subscription: {SUB}\n        resource_groups: [\"my-resource-group\"]\n")).unwrap();
    ok(node
        .tctl(&["create", "-f", token.to_str().unwrap()])
        .unwrap())
    .unwrap();

    // The agent trusts Azure's (emulated) hosts and the proxy's certificate.
    let mut env = azure_env(&emu, None);
    let emu_ca = env
        .iter()
        .find(|(k, _)| k == "SSL_CERT_FILE")
        .unwrap()
        .1
        .clone();
    let bundle = tmp.path().join("bundle.pem");
    std::fs::write(
        &bundle,
        format!(
            "{}{}",
            std::fs::read_to_string(&emu_ca).unwrap(),
            web_ca.cert_pem()
        ),
    )
    .unwrap();
    for (k, v) in env.iter_mut() {
        if k == "SSL_CERT_FILE" || k == "REQUESTS_CA_BUNDLE" {
            *v = bundle.display().to_string();
        }
    }
    let config = format!(
        "# /etc/teleport.yaml\nversion: v3\nteleport:\n  data_dir: \"{{data_dir}}\"\n  join_params:\n    token_name: azure-token\n    method: azure\n    azure:\n      # client_id is the client ID of the managed identity created in Step 1.\n      client_id: {TELEPORT_AZURE_CLIENT}\n  proxy_server: {}\nssh_service:\n  enabled: yes\nauth_service:\n  enabled: no\nproxy_service:\n  enabled: no\n",
        node.web_addr
    );
    let agent = Agent::start_with_env(&tmp.path().join("agent"), &config, &env).unwrap();
    poll(Duration::from_secs(60), "the guide's agent to join", || {
        agent
            .log()
            .contains("Joined cluster guide.example")
            .then_some(())
    })
    .map_err(|e| format!("{e}\n{}", agent.log()))
    .unwrap();
    let ssh_lines = poll(Duration::from_secs(30), "the SSH notice", || {
        let n = agent
            .log()
            .matches("SSH service is not available in this build")
            .count();
        (n > 0).then_some(n)
    })
    .unwrap();
    assert_eq!(
        ssh_lines,
        2,
        "one notice at start, one saying the agent is idle:\n{}",
        agent.log()
    );
    drop(agent);
    drop(node);
    drop(emu);
}
