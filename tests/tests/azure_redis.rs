//! Azure Cache for Redis discovery by a database agent on the emulator's VM:
//! what the matchers select appears in `tsh db ls`; and its access keys
//! rotated under open sessions.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use e2e::redis::{redis_benchmark, Resp, Tunnel};
use e2e::*;

const PASSWORD: &str = "correct horse battery staple";

#[test]
fn discovered_caches_appear_in_tsh_db_ls() {
    let (tmp, node) = sqlite_node("redis.example").unwrap();
    let (_rt, emu) = start_emulator().unwrap();
    let token = join_token(&node, "db").unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, token.trim()).unwrap();
    let mut env = loopback_direct(emu.env(None));
    // The VM's user-assigned identity, as the guide's managed-identity setup.
    env.push((
        "AZURE_CLIENT_ID".into(),
        "6a2f5c0e-1b3d-4e8f-9a7b-0c1d2e3f4a01".into(),
    ));
    let config = token_agent_config(
        "redis-agent",
        &node.web_addr,
        &ca_pin(&node).unwrap(),
        &token_file,
    ) + "db_service:\n  enabled: yes\n  azure:\n  - types: [\"redis\"]\n    regions: [\"East US\"]\n    subscriptions: [\"*\"]\n    resource_groups: [\"*\"]\n";
    let agent = Agent::start_with_env(&tmp.path().join("agent"), &config, &env).unwrap();
    add_user_with(&node, "alice", "access", ALL_DATABASE_USERS, PASSWORD).unwrap();
    let home = tmp.path().join("alice");
    ok(tsh_login(&node, &home, "alice", PASSWORD).unwrap()).unwrap();
    // -v: the labels discovery adds (region, ...) are listed only verbose, as in Teleport.
    let listed = poll(Duration::from_secs(60), "the discovered cache", || {
        let out = ok(tsh(&home, &["db", "ls", "-v"], None).unwrap()).unwrap();
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

/// The fixture's secondary key of my-redis.
const MY_REDIS_SECONDARY: &str = "c2Vjb25kYXJ5LWtleS1vZi1teS1yZWRpcw==";

/// redis-benchmark through the tunnel with 10 concurrent clients, each
/// sending `SELECT 0` (a command that moves a session off the agent's shared
/// Redis connection to one of its own: 10 backend logins at once). Returns
/// its output; panics when it fails or a reply was an error.
fn bench_own_connections(port: u16, w: &e2e::redis::AzureRedis) -> String {
    let args = ["-c", "10", "-n", "200", "-q", "SELECT", "0"];
    let out = redis_benchmark(port, &args, Duration::from_secs(120)).unwrap();
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        out.success && !text.contains("ERR") && !text.contains("Error"),
        "redis-benchmark: {text}\n{}",
        w.agent.log()
    );
    assert!(text.contains("requests per second"), "{text}");
    text
}

/// The az CLI from the test virtualenv, logged in as the agent VM's
/// identity (Redis Cache Contributor on my-resource-group), as an operator.
struct Az {
    bin: PathBuf,
    env: Vec<(String, String)>,
    config: tempfile::TempDir,
}

impl Az {
    fn login(emu: &azure_emulator::EmulatorHandle) -> Az {
        let bin = std::env::var_os("AZ_CLI")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/az-venv/bin/az")
            });
        assert!(
            bin.exists(),
            "the az CLI is missing: cargo xtask test installs it ({})",
            bin.display()
        );
        let az = Az {
            bin,
            env: emu.env(None),
            config: tempfile::tempdir().unwrap(),
        };
        az.json(&[
            "login",
            "--identity",
            "--resource-id",
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/teleport-azure",
        ]);
        az
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args).args(["--output", "json"]);
        for k in ["http_proxy", "https_proxy", "AZURE_CLIENT_ID"] {
            cmd.env_remove(k);
        }
        let out = cmd
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AZURE_CONFIG_DIR", self.config.path())
            .env("AZURE_CORE_COLLECT_TELEMETRY", "0")
            .env("AZURE_CORE_ONLY_SHOW_ERRORS", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "az {args:?}: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `az redis regenerate-keys` for my-redis; the new keys.
    fn regenerate(&self, key_type: &str) -> serde_json::Value {
        self.json(&[
            "redis",
            "regenerate-keys",
            "--name",
            "my-redis",
            "--resource-group",
            "my-resource-group",
            "--key-type",
            key_type,
        ])
    }
}

/// Keys rotated as an operator does, with sessions open through the tunnel.
/// First the state of issue 16's finding 10: the cache takes only the
/// secondary key while listKeys still lists the old primary first, and ten
/// concurrent clients each need a Redis connection of their own. Then `az
/// redis regenerate-keys` (which the emulator applies to the redis-server
/// behind my-redis, as Azure does to the cache): the primary, then the
/// secondary, which the agent uses by then. Open sessions go on, and new
/// ones get in.
#[test]
fn key_rotation_with_sessions_open() {
    let tmp = tempfile::tempdir().unwrap();
    let w = e2e::redis::AzureRedis::start(tmp.path(), false).unwrap();
    let alice = w
        .login("alice", "access", &["--db-users=*", "--db-names=*"])
        .unwrap();
    w.wait_listed(&alice).unwrap();
    let t = Tunnel::start(&alice, &[], "my-azure-redis").unwrap();

    // The cache takes only the secondary key; listKeys lists the primary
    // first. Nothing has connected yet: every backend login is a new one.
    w.redis.set_password(MY_REDIS_SECONDARY).unwrap();
    bench_own_connections(t.port, &w);

    // Sessions open across the rotations: one on the agent's shared
    // connection, one on a connection of its own.
    let mut shared = Resp::connect(t.port, Duration::from_secs(30)).unwrap();
    assert_eq!(shared.call(&["SET", "k", "before"]).unwrap(), "+OK");
    let mut own = Resp::connect(t.port, Duration::from_secs(30)).unwrap();
    assert_eq!(own.call(&["SELECT", "0"]).unwrap(), "+OK");
    assert_eq!(own.call(&["GET", "k"]).unwrap(), "before");

    let az = Az::login(&w.emu);
    let keys = az.regenerate("Primary");
    assert_ne!(keys["primaryKey"], e2e::redis::MY_REDIS_PRIMARY);
    assert_eq!(keys["secondaryKey"], MY_REDIS_SECONDARY);
    assert_eq!(shared.call(&["GET", "k"]).unwrap(), "before");
    assert_eq!(own.call(&["SET", "k", "after-primary"]).unwrap(), "+OK");
    let mut fresh = Resp::connect(t.port, Duration::from_secs(30)).unwrap();
    assert_eq!(fresh.call(&["SELECT", "0"]).unwrap(), "+OK");
    assert_eq!(fresh.call(&["GET", "k"]).unwrap(), "after-primary");

    // The key the agent uses is regenerated: new connections are refused
    // it, and the agent fetches the keys again, once.
    let listed = w.emu.request_count("my-redis/listKeys");
    let keys = az.regenerate("Secondary");
    assert_ne!(keys["secondaryKey"], MY_REDIS_SECONDARY);
    assert_eq!(shared.call(&["GET", "k"]).unwrap(), "after-primary");
    assert_eq!(own.call(&["SET", "k", "after-secondary"]).unwrap(), "+OK");
    bench_own_connections(t.port, &w);
    assert_eq!(w.emu.request_count("my-redis/listKeys"), listed + 1);
    let mut fresh = Resp::connect(t.port, Duration::from_secs(30)).unwrap();
    assert_eq!(fresh.call(&["SELECT", "0"]).unwrap(), "+OK");
    assert_eq!(fresh.call(&["GET", "k"]).unwrap(), "after-secondary");
    assert_eq!(shared.call(&["GET", "k"]).unwrap(), "after-secondary");
}
