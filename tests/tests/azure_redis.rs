//! Azure Cache for Redis discovery by a database agent on the emulator's VM:
//! what the matchers select appears in `tsh db ls`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::*;

const PASSWORD: &str = "correct horse battery staple";

#[test]
fn discovered_caches_appear_in_tsh_db_ls() {
    let tmp = tempfile::tempdir().unwrap();
    let (_rt, emu) = start_emulator().unwrap();
    let node = Node::start(&tmp.path().join("node"), "redis.example", &Storage::Sqlite).unwrap();
    let token = ok(node
        .tctl(&["tokens", "add", "--type=db", "--ttl=1h", "--format=text"])
        .unwrap())
    .unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, token.trim()).unwrap();
    let mut env = loopback_direct(emu.env(None));
    // The VM's user-assigned identity, as the guide's managed-identity setup.
    env.push((
        "AZURE_CLIENT_ID".into(),
        "6a2f5c0e-1b3d-4e8f-9a7b-0c1d2e3f4a01".into(),
    ));
    let config = format!(
        "version: v3\nteleport:\n  nodename: redis-agent\n  data_dir: \"{{data_dir}}\"\n  proxy_server: \"{}\"\n  ca_pin: \"{}\"\n  join_params:\n    token_name: \"{}\"\n    method: token\nauth_service:\n  enabled: no\nproxy_service:\n  enabled: no\nssh_service:\n  enabled: no\ndb_service:\n  enabled: yes\n  azure:\n  - types: [\"redis\"]\n    regions: [\"East US\"]\n    subscriptions: [\"*\"]\n    resource_groups: [\"*\"]\n",
        node.web_addr,
        ca_pin(&node).unwrap(),
        token_file.display()
    );
    let agent = Agent::start_with_env(&tmp.path().join("agent"), &config, &env).unwrap();
    let out = ok(node
        .tctl(&[
            "users",
            "add",
            "--roles=access",
            "--db-users=*",
            "--db-names=*",
            "alice",
        ])
        .unwrap())
    .unwrap();
    set_password(&node.web_addr, &invite_token(&out).unwrap(), PASSWORD).unwrap();
    let home = tmp.path().join("alice");
    ok(tsh(
        &home,
        &[
            "login",
            &format!("--proxy={}", node.web_addr),
            "--user=alice",
            "--insecure",
        ],
        Some(&format!("{PASSWORD}\n")),
    )
    .unwrap())
    .unwrap();
    let listed = poll(Duration::from_secs(60), "the discovered cache", || {
        let out = ok(tsh(&home, &["db", "ls"], None).unwrap()).unwrap();
        out.contains("my-redis").then_some(out)
    })
    .map_err(|e| format!("{e}\n{}", agent.log()))
    .unwrap();
    assert!(listed.contains("region=eastus"), "{listed}");
    assert!(listed.contains("Azure Redis server in East US"), "{listed}");
    assert!(!listed.contains("other-redis"), "{listed}");
    drop(agent);
    drop(node);
    drop(emu);
}
