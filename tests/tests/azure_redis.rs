//! Azure Cache for Redis discovery by a database agent on the emulator's VM:
//! what the matchers select appears in `tsh db ls`; and its access keys
//! rotated under open sessions.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// The fixture's secondary key of my-redis.
const MY_REDIS_SECONDARY: &str = "c2Vjb25kYXJ5LWtleS1vZi1teS1yZWRpcw==";

/// A `tsh proxy db --tunnel` process; killed on drop.
struct Tunnel {
    child: Child,
    port: u16,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tunnel(home: &Path) -> Tunnel {
    let port = free_port();
    let mut child = Command::new(bin("tsh").unwrap())
        .env("TELEPORT_HOME", home)
        .args(["proxy", "db", "--tunnel", "--port", &port.to_string()])
        .arg("my-azure-redis")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("Started authenticated tunnel"), "{line}");
    Tunnel {
        child,
        port,
        _stdout: stdout,
    }
}

/// A client connection through the tunnel, as redis-cli keeps one.
struct Session(TcpStream);

impl Session {
    fn open(port: u16) -> Session {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Session(s)
    }

    /// One command; its reply's first line, or a short bulk string's text.
    fn call(&mut self, args: &[&str]) -> String {
        let mut b = format!("*{}\r\n", args.len());
        for a in args {
            b.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.0.write_all(b.as_bytes()).unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if self.0.read(&mut byte).unwrap() == 0 {
                return format!("closed after {:?}", String::from_utf8_lossy(&line));
            }
            line.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&line).trim_end().to_string();
        match head.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => {
                let mut body = vec![0u8; n + 2];
                self.0.read_exact(&mut body).unwrap();
                String::from_utf8_lossy(&body[..n]).to_string()
            }
            None => head,
        }
    }
}

/// redis-benchmark through the tunnel with 10 concurrent clients, each
/// sending `SELECT 0` (a command that moves a session off the agent's shared
/// Redis connection to one of its own: 10 backend logins at once). Returns
/// its output; panics when it fails or a reply was an error.
fn bench_own_connections(port: u16, w: &e2e::redis::AzureRedis) -> String {
    let mut bench = Command::new("/usr/bin/redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", "10", "-n", "200", "-q", "SELECT", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = poll(
        Duration::from_secs(120),
        "redis-benchmark to finish",
        || bench.try_wait().unwrap(),
    );
    if status.is_err() {
        let _ = bench.kill();
    }
    let out = bench.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        status.unwrap().success() && !text.contains("ERR") && !text.contains("Error"),
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
    let t = tunnel(&alice);

    // The cache takes only the secondary key; listKeys lists the primary
    // first. Nothing has connected yet: every backend login is a new one.
    w.redis.set_password(MY_REDIS_SECONDARY).unwrap();
    bench_own_connections(t.port, &w);

    // Sessions open across the rotations: one on the agent's shared
    // connection, one on a connection of its own.
    let mut shared = Session::open(t.port);
    assert_eq!(shared.call(&["SET", "k", "before"]), "+OK");
    let mut own = Session::open(t.port);
    assert_eq!(own.call(&["SELECT", "0"]), "+OK");
    assert_eq!(own.call(&["GET", "k"]), "before");

    let az = Az::login(&w.emu);
    let keys = az.regenerate("Primary");
    assert_ne!(keys["primaryKey"], e2e::redis::MY_REDIS_PRIMARY);
    assert_eq!(keys["secondaryKey"], MY_REDIS_SECONDARY);
    assert_eq!(shared.call(&["GET", "k"]), "before");
    assert_eq!(own.call(&["SET", "k", "after-primary"]), "+OK");
    let mut fresh = Session::open(t.port);
    assert_eq!(fresh.call(&["SELECT", "0"]), "+OK");
    assert_eq!(fresh.call(&["GET", "k"]), "after-primary");

    // The key the agent uses is regenerated: new connections are refused
    // it, and the agent fetches the keys again, once.
    let listed = w.emu.request_count("my-redis/listKeys");
    let keys = az.regenerate("Secondary");
    assert_ne!(keys["secondaryKey"], MY_REDIS_SECONDARY);
    assert_eq!(shared.call(&["GET", "k"]), "after-primary");
    assert_eq!(own.call(&["SET", "k", "after-secondary"]), "+OK");
    bench_own_connections(t.port, &w);
    assert_eq!(w.emu.request_count("my-redis/listKeys"), listed + 1);
    let mut fresh = Session::open(t.port);
    assert_eq!(fresh.call(&["SELECT", "0"]), "+OK");
    assert_eq!(fresh.call(&["GET", "k"]), "after-secondary");
    assert_eq!(shared.call(&["GET", "k"]), "after-secondary");
}
