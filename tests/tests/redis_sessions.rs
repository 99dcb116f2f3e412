//! The Redis guide end to end: `teleport db configure create`, Azure Redis
//! discovery on the emulator, `tsh db ls`, `tsh db connect` running the real
//! redis-cli through the proxy, the reverse tunnel and the agent's engine to
//! a real TLS redis-server the emulated cache points at; keys rotated while
//! sessions continue; refusals; RESP3; a hostile client.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::redis::{redis_benchmark, AzureRedis, Resp, Tunnel};
use e2e::*;

struct Cluster {
    w: AzureRedis,
    _tmp: tempfile::TempDir,
}

impl std::ops::Deref for Cluster {
    type Target = AzureRedis;
    fn deref(&self) -> &AzureRedis {
        &self.w
    }
}

impl Cluster {
    fn login(&self, user: &str, roles: &str, extra: &[&str]) -> PathBuf {
        self.w.login(user, roles, extra).unwrap()
    }

    fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        events_of(&self.w, kind)
    }

    fn tmp(&self) -> &Path {
        &self.w.dir
    }

    /// An identity file for alice from `tctl auth sign --ttl=<ttl>`, as the
    /// tsh flags that use it.
    fn signed_identity(&self, file: &str, ttl: &str) -> Vec<String> {
        let path = self.tmp().join(file);
        ok(self
            .node
            .tctl(&[
                "auth",
                "sign",
                "--user=alice",
                "--out",
                path.to_str().unwrap(),
                &format!("--ttl={ttl}"),
            ])
            .unwrap())
        .unwrap();
        vec![
            "-i".into(),
            path.display().to_string(),
            "--proxy".into(),
            self.node.web_addr.clone(),
            "--insecure".into(),
        ]
    }
}

fn cluster() -> Cluster {
    let (tmp, w) = world(e2e::redis::Extras::default());
    Cluster { w, _tmp: tmp }
}

/// The guide's world with `extras`, in a temporary directory.
fn world(extras: e2e::redis::Extras) -> (tempfile::TempDir, AzureRedis) {
    let tmp = tempfile::tempdir().unwrap();
    let w = AzureRedis::start_with(tmp.path(), extras).unwrap();
    (tmp, w)
}

fn stdout_of(out: std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// `tsh db connect` with redis-cli arguments.
fn connect(home: &Path, args: &[&str]) -> String {
    let mut all = vec!["db", "connect", "my-azure-redis", "--"];
    all.extend_from_slice(args);
    stdout_of(tsh(home, &all, None).unwrap())
}

fn tunnel(home: &Path) -> Tunnel {
    tunnel_to(home, "my-azure-redis")
}

fn tunnel_to(home: &Path, db: &str) -> Tunnel {
    tunnel_with(home, &[], db)
}

/// `tsh [global...] proxy db --tunnel --port N db`.
fn tunnel_with(home: &Path, global: &[&str], db: &str) -> Tunnel {
    Tunnel::start(home, global, db).unwrap()
}

/// A raw RESP connection to `port`.
fn raw_to(port: u16) -> Resp {
    Resp::connect(port, Duration::from_secs(20)).unwrap()
}

#[test]
fn guide_walk_with_redis_cli() {
    let c = cluster();
    let alice = c.login("alice", "access", &["--db-users=*", "--db-names=*"]);
    let listed = c.wait_listed(&alice).unwrap();
    assert!(listed.contains("Azure Redis server in East US"), "{listed}");
    assert!(listed.contains("[*]"), "{listed}");

    // tsh db connect logs in by itself and needs no AUTH.
    let out = connect(&alice, &["SET", "greeting", "hello"]);
    assert!(out.contains("OK"), "{out}\n{}", c.agent.log());
    let out = connect(&alice, &["GET", "greeting"]);
    assert!(out.contains("hello"), "{out}");
    // It reached the real server.
    let direct = stdout_of(c.redis.cli(&["GET", "greeting"]).unwrap());
    assert!(direct.contains("hello"), "{direct}");
    // Interactive-style input on stdin, AUTH from the user answered locally.
    let out = stdout_of(
        tsh(
            &alice,
            &["db", "connect", "my-azure-redis"],
            Some("AUTH whatever\nINCR counter\nINCR counter\n"),
        )
        .unwrap(),
    );
    assert!(out.contains("OK") && out.contains('2'), "{out}");
    // RESP3 from redis-cli -3.
    let out = connect(&alice, &["-3", "HELLO", "3"]);
    assert!(out.contains("proto 3"), "{out}\n{}", c.agent.log());
    connect(&alice, &["HSET", "h3", "field", "value"]);
    let out = connect(&alice, &["-3", "HGETALL", "h3"]);
    assert!(out.contains("field") && out.contains("value"), "{out}");

    // Audit: start, every command (AUTH redacted), end.
    let queries = poll(Duration::from_secs(20), "query events", || {
        let q = c.events("db.session.query");
        q.iter()
            .any(|e| e["db_query"] == "INCR counter")
            .then_some(q)
    })
    .unwrap();
    assert!(queries.iter().any(|e| e["db_query"] == "SET greeting hello"
        && e["user"] == "alice"
        && e["code"] == "TDB02I"));
    assert!(
        queries.iter().any(|e| e["db_query"] == "AUTH ******"),
        "{queries:?}"
    );
    assert!(!format!("{queries:?}").contains("whatever"));
    let starts = c.events("db.session.start");
    assert!(starts.iter().any(|e| e["code"] == "TDB00I"
        && e["db_service"] == "my-azure-redis"
        && e["db_user"] == "default"));
    let ends = poll(Duration::from_secs(20), "end events", || {
        let e = c.events("db.session.end");
        (e.len() >= 4).then_some(e)
    })
    .unwrap();
    assert!(ends.iter().all(|e| e["code"] == "TDB01I"));

    // Keys rotated in Azure and in the server while a session continues.
    let t = tunnel(&alice);
    let mut open = raw_to(t.port);
    assert_eq!(open.call(&["SET", "k", "before"]).unwrap(), "+OK");
    let (new_primary, _) = c.emu.rotate_redis_keys("my-redis").unwrap();
    c.redis.set_password(&new_primary).unwrap();
    assert_eq!(open.call(&["GET", "k"]).unwrap(), "before");
    // A new session's key commands go over the agent's shared Redis
    // connection, authenticated before the rotation.
    let listed = c.emu.request_count("my-redis/listKeys");
    let mut fresh = raw_to(t.port);
    assert_eq!(fresh.call(&["SET", "k", "after"]).unwrap(), "+OK");
    assert_eq!(c.emu.request_count("my-redis/listKeys"), listed);
    // SELECT needs a Redis connection of the session's own: the agent's
    // cached key is refused (WRONGPASS), it fetches the new one and retries.
    assert_eq!(fresh.call(&["SELECT", "0"]).unwrap(), "+OK");
    assert_eq!(c.emu.request_count("my-redis/listKeys"), listed + 1);
    assert_eq!(open.call(&["GET", "k"]).unwrap(), "after");
    // A pipeline through the tunnel keeps its order.
    let mut p = String::new();
    for i in 0..200 {
        p.push_str(&format!(
            "*3\r\n$3\r\nSET\r\n${}\r\np{i}\r\n$1\r\nv\r\n",
            format!("p{i}").len()
        ));
    }
    fresh.0.write_all(p.as_bytes()).unwrap();
    for _ in 0..200 {
        assert_eq!(fresh.reply().unwrap(), "+OK");
    }
    // greeting, counter, h3, k and the 200 pipelined keys.
    assert_eq!(fresh.call(&["DBSIZE"]).unwrap(), ":204");

    // A hostile byte stream ends that session with a Teleport error, and
    // the agent keeps serving.
    let mut bad = raw_to(t.port);
    bad.0
        .write_all(b"*2\r\n$3\r\nGET\r\n$99999999999999\r\n")
        .unwrap();
    let reply = bad.reply().unwrap();
    assert!(reply.starts_with("-ERR Teleport: "), "{reply}");
    let mut junk = raw_to(t.port);
    junk.0
        .write_all(&[0xff, 0x00, 0x2a, 0x2d, 0x31, 0x0d, 0x0a, 0x01])
        .unwrap();
    let reply = junk.reply().unwrap();
    assert!(reply.starts_with("-ERR Teleport: "), "{reply}");
    assert_eq!(raw_to(t.port).call(&["GET", "k"]).unwrap(), "after");

    // A client library as applications use it: redis-py names itself with
    // CLIENT SETINFO on every connection (here with a client name too) and,
    // from redis-py 8, starts with HELLO 3. Its sessions still share the
    // agent's Redis connections (one per protocol) instead of opening one
    // each.
    let before = connections_received(&c.redis);
    let script = "import redis, sys\n\
        port = int(sys.argv[1])\n\
        clients = [redis.Redis(host='127.0.0.1', port=port, protocol=2 + i % 2, client_name=f'app-{i}') for i in range(8)]\n\
        for i, r in enumerate(clients):\n    r.set(f'py-{i}', i)\n\
        text = lambda v: v.decode() if isinstance(v, bytes) else v\n\
        print(','.join(text(r.get(f'py-{i}')) + text(r.client_getname()) for i, r in enumerate(clients)))\n";
    let out = Command::new(python())
        .args(["-c", script, &t.port.to_string()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0app-0,1app-1,2app-2,3app-3,4app-4,5app-5,6app-6,7app-7",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The second count's own redis-cli connection, and at most a new shared
    // one per protocol (eight of the sessions' own without sharing).
    let opened = connections_received(&c.redis) - before;
    assert!(opened <= 3, "{opened} connections for 8 redis-py sessions");
    poll(
        Duration::from_secs(20),
        "redis-py's SETINFO audited",
        || {
            c.events("db.session.query")
                .iter()
                .any(|e| {
                    e["user"] == "alice"
                        && e["db_query"]
                            .as_str()
                            .is_some_and(|q| q.starts_with("CLIENT SETINFO LIB-NAME redis-py"))
                })
                .then_some(())
        },
    )
    .unwrap();
    drop(t);
    sessions_with_and_without_multiplexing(&alice);

    // Logout removes the certificate; connect logs in again.
    let out = stdout_of(tsh(&alice, &["db", "logout", "my-azure-redis"], None).unwrap());
    assert!(
        out.contains("Logged out of database my-azure-redis"),
        "{out}"
    );
    assert!(connect(&alice, &["GET", "k"]).contains("after"));

    // Everything again with an identity file made by tctl auth sign.
    let bot = c.tmp().join("bot-home");
    let flags = c.signed_identity("alice.pem", "1h");
    let global: Vec<&str> = flags.iter().map(String::as_str).collect();
    let with_id = |args: &[&str]| {
        let mut all = global.to_vec();
        all.extend_from_slice(args);
        stdout_of(tsh(&bot, &all, None).unwrap())
    };
    assert!(with_id(&["db", "ls"]).contains("my-azure-redis"));
    assert!(with_id(&["db", "login", "my-azure-redis"]).contains("has been saved"));
    let out = with_id(&["db", "connect", "my-azure-redis", "--", "GET", "k"]);
    assert!(out.contains("after"), "{out}");
    let t = tunnel_with(&bot, &global, "my-azure-redis");
    assert_eq!(raw_to(t.port).call(&["GET", "k"]).unwrap(), "after");
    drop(t);
    let out = with_id(&["db", "logout"]);
    assert!(
        out.contains("Logged out of database my-azure-redis"),
        "{out}"
    );

    // The proxy sees a certificate when a multiplexed connection is made;
    // a session opened on it after the certificate expired is refused by
    // the agent.
    let short_home = c.tmp().join("short-home");
    let short_flags = c.signed_identity("short.pem", "5s");
    let short_global: Vec<&str> = short_flags.iter().map(String::as_str).collect();
    let mut login = short_global.clone();
    login.extend_from_slice(&["db", "login", "my-azure-redis"]);
    let out = stdout_of(tsh(&short_home, &login, None).unwrap());
    assert!(out.contains("has been saved"), "{out}");
    let t = tunnel_with(&short_home, &short_global, "my-azure-redis");
    assert_eq!(raw_to(t.port).call(&["PING"]).unwrap(), "+PONG");
    let refused = poll(
        Duration::from_secs(30),
        "the expired certificate refused",
        || {
            let reply = raw_to(t.port).call(&["PING"]).unwrap();
            (reply != "+PONG").then_some(reply)
        },
    )
    .unwrap();
    assert!(
        refused.contains("ERR Teleport: the database certificate expired at"),
        "{refused}"
    );
}

/// tsh's local proxy carries its connections as streams of one
/// multiplexed connection to the proxy; a client that offers only one TLS
/// connection per session (an older tsh) is served as well.
fn sessions_with_and_without_multiplexing(home: &Path) {
    use client::db::{DbDialer, LocalTunnel, ALPN_REDIS, ALPN_REDIS_MUX};
    let store = client::ProfileStore::at(home);
    let (profile, creds) = store.current().unwrap();
    let db = store
        .load_db(&profile, "my-azure-redis", &creds.ca_pems)
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for multiplex in [true, false] {
        let dialer =
            DbDialer::with_protocols(&profile.web_proxy_addr, &db, true, multiplex).unwrap();
        let probe = dialer.clone();
        let chosen = rt.block_on(async move {
            let tls = probe.dial().await.unwrap();
            // A long-lived connection must notice a vanished proxy.
            let sock = socket2::SockRef::from(tls.get_ref().0);
            assert!(sock.keepalive().unwrap());
            assert_eq!(
                sock.tcp_user_timeout().unwrap(),
                Some(Duration::from_secs(30))
            );
            tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
        });
        let want = if multiplex {
            ALPN_REDIS_MUX
        } else {
            ALPN_REDIS
        };
        assert_eq!(chosen.as_deref(), Some(want));
        let local = rt.block_on(LocalTunnel::start(dialer, 0)).unwrap();
        // Several sessions at once, each with its own state (SELECT) and
        // its own replies.
        let port = local.addr().port();
        let mut sessions: Vec<Resp> = (0..8).map(|_| raw_to(port)).collect();
        for (i, s) in sessions.iter_mut().enumerate() {
            assert_eq!(s.call(&["SELECT", &(i % 4).to_string()]).unwrap(), "+OK");
            assert_eq!(
                s.call(&["SET", &format!("mux-{multiplex}-{i}"), "v"])
                    .unwrap(),
                "+OK"
            );
        }
        for (i, s) in sessions.iter_mut().enumerate() {
            let visible = s
                .call(&["EXISTS", &format!("mux-{multiplex}-{}", (i + 4) % 8)])
                .unwrap();
            // Sessions i and i+4 share database i % 4.
            assert_eq!(visible, ":1", "session {i}");
            let other = s
                .call(&["EXISTS", &format!("mux-{multiplex}-{}", (i + 1) % 8)])
                .unwrap();
            assert_eq!(other, ":0", "session {i}");
        }
        for (i, s) in sessions.iter_mut().enumerate() {
            assert_eq!(
                s.call(&["DEL", &format!("mux-{multiplex}-{i}")]).unwrap(),
                ":1"
            );
        }
        drop(sessions);
        drop(local);
    }

    // A proxy that never answers: connections queued behind a dial share
    // its failure instead of each waiting out a timeout of its own.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in silent.incoming().flatten() {
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(c);
            }
        });
    }
    let dialer = DbDialer::with_protocols(&silent_addr, &db, true, true)
        .unwrap()
        .with_timeout(Duration::from_millis(500));
    let local = rt.block_on(LocalTunnel::start(dialer, 0)).unwrap();
    let mut waiting: Vec<Resp> = (0..5).map(|_| raw_to(local.addr().port())).collect();
    for c in waiting.iter_mut() {
        c.send(&["PING"]).unwrap();
    }
    for c in waiting.iter_mut() {
        let reply = c.reply().unwrap();
        assert!(
            reply.starts_with("-ERR Teleport: connecting to the proxy at"),
            "{reply}"
        );
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);

    // A multiplexed connection that has heard nothing for a while takes no
    // new sessions: a path that went dead without closing (here a relay
    // that stops passing bytes) does not swallow them.
    let relay = Relay::start(&profile.web_proxy_addr);
    let dialer = DbDialer::with_protocols(&relay.addr, &db, true, true)
        .unwrap()
        .with_reuse_silent(Duration::from_millis(300));
    let local = rt.block_on(LocalTunnel::start(dialer, 0)).unwrap();
    let port = local.addr().port();
    let mut first = raw_to(port);
    assert_eq!(first.call(&["PING"]).unwrap(), "+PONG");
    let mut second = raw_to(port);
    assert_eq!(second.call(&["PING"]).unwrap(), "+PONG");
    assert_eq!(relay.connections(), 1, "a busy connection is shared");
    relay.freeze();
    // Longer than the connection may be silent and still take sessions.
    std::thread::sleep(Duration::from_millis(400));
    let mut third = raw_to(port);
    assert_eq!(third.call(&["PING"]).unwrap(), "+PONG");
    assert_eq!(relay.connections(), 2);
}

/// A TCP relay whose connections can be made to stop passing bytes while
/// staying open (a path that died without closing).
struct Relay {
    addr: String,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    flags: std::sync::Arc<std::sync::Mutex<Vec<std::sync::Arc<std::sync::atomic::AtomicBool>>>>,
}

impl Relay {
    fn start(target: &str) -> Relay {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let count = Arc::new(AtomicUsize::new(0));
        let flags: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let target = target.to_string();
        let (c, f) = (count.clone(), flags.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let frozen = Arc::new(AtomicBool::new(false));
                f.lock().unwrap().push(frozen.clone());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let frozen = frozen.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            if !frozen.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
            }
        });
        Relay { addr, count, flags }
    }

    fn connections(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The connections so far stop passing bytes.
    fn freeze(&self) {
        for f in self.flags.lock().unwrap().iter() {
            f.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[test]
fn refusals() {
    let c = cluster();
    // A user whose roles do not cover the cache's labels.
    ok(create_from(&c.node, &c.tmp().join("prod-only.yaml"), "kind: role\nversion: v7\nmetadata:\n  name: prod-only\nspec:\n  allow:\n    db_labels:\n      env: prod\n    db_users: ['*']\n").unwrap()).unwrap();
    let dev = c.tmp().join("dev-redis.yaml");
    ok(create_from(&c.node, &dev, "kind: role\nversion: v7\nmetadata:\n  name: dev-redis\nspec:\n  allow:\n    db_labels:\n      env: dev\n    db_users: ['*']\n").unwrap()).unwrap();
    let bob = c.login("bob", "prod-only", &[]);
    let carol = c.login("carol", "dev-redis", &[]);
    c.wait_listed(&carol).unwrap();
    let out = stdout_of(tsh(&bob, &["db", "login", "my-azure-redis"], None).unwrap());
    assert!(out.contains("access to db denied"), "{out}");
    let out = ok(tsh(&bob, &["db", "ls"], None).unwrap()).unwrap();
    assert!(!out.contains("my-azure-redis"), "{out}");

    // Azure Cache for Redis only knows the default user.
    let out = stdout_of(
        tsh(
            &carol,
            &["db", "login", "my-azure-redis", "--db-user=carol"],
            None,
        )
        .unwrap(),
    );
    assert!(
        out.contains("access denied to non-default db user: Azure Cache for Redis requires authentication as default user \"default\""),
        "{out}"
    );

    // Access is checked again by the agent with the roles as they are now.
    let out = stdout_of(tsh(&carol, &["db", "login", "my-azure-redis"], None).unwrap());
    assert!(out.contains("has been saved"), "{out}");
    assert!(connect(&carol, &["PING"]).contains("PONG"));
    std::fs::write(
        &dev,
        "kind: role\nversion: v7\nmetadata:\n  name: dev-redis\nspec:\n  allow:\n    db_labels:\n      env: dev\n    db_users: ['*']\n  deny:\n    db_labels:\n      '*': '*'\n",
    )
    .unwrap();
    ok(c.node
        .tctl(&["create", "-f", dev.to_str().unwrap()])
        .unwrap())
    .unwrap();
    let refused = poll(Duration::from_secs(30), "the agent to refuse", || {
        let out = connect(&carol, &["PING"]);
        out.contains("ERR Teleport: access to db denied")
            .then_some(out)
    })
    .unwrap();
    assert!(!refused.contains("PONG"), "{refused}");
    // The agent sends its events in batches, after the session's reply.
    poll(
        Duration::from_secs(10),
        "the refused session's event",
        || {
            c.events("db.session.start")
                .iter()
                .any(|e| e["code"] == "TDB00W" && e["user"] == "carol")
                .then_some(())
        },
    )
    .unwrap();
}

/// Connections the server has accepted since it started (`INFO stats`).
fn connections_received(server: &e2e::redis::RedisTls) -> u64 {
    let out = stdout_of(server.cli(&["INFO", "stats"]).unwrap());
    out.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no total_connections_received in {out}"))
}

/// The Python of the az CLI's virtualenv, where `cargo xtask test`
/// installs redis-py too.
fn python() -> PathBuf {
    let az = match std::env::var_os("AZ_CLI") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/az-venv/bin/az"),
    };
    let p = az.parent().unwrap().join("python");
    assert!(
        p.exists(),
        "Python with redis-py is missing: cargo xtask test installs it ({})",
        p.display()
    );
    p
}

/// Calls of AUTH the server has seen (`INFO commandstats`).
fn auth_calls(server: &e2e::redis::RedisTls) -> u64 {
    let out = stdout_of(server.cli(&["INFO", "commandstats"]).unwrap());
    out.lines()
        .find_map(|l| l.strip_prefix("cmdstat_auth:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn events_of(w: &AzureRedis, kind: &str) -> Vec<serde_json::Value> {
    let out = ok(w
        .node
        .tctl(&["events", "ls", &format!("--type={kind}"), "--format=json"])
        .unwrap())
    .unwrap();
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn entra_id_for_caches_without_access_keys() {
    let (_tmp, w) = world(e2e::redis::Extras {
        entra: true,
        ..Default::default()
    });
    // Entra tokens that expire quickly, so renewal happens during the test.
    w.emu.set_token_lifetime(Duration::from_secs(20));
    let server = w.entra.as_ref().unwrap();
    let alice = w
        .login("alice", "access", &["--db-users=*", "--db-names=*"])
        .unwrap();
    let listed = w.wait_listed_db(&alice, "entra-redis").unwrap();
    assert!(listed.contains("my-azure-redis"), "{listed}");

    // The agent logs in as its managed identity's object ID with a token:
    // no access key exists for this cache and none is asked for.
    let mut all = vec!["db", "connect", "entra-redis", "--", "ACL", "WHOAMI"];
    let out = stdout_of(tsh(&alice, &all, None).unwrap());
    assert!(
        out.contains(e2e::redis::AGENT_OBJECT_ID),
        "{out}\n{}",
        w.agent.log()
    );
    all.truncate(4);
    all.extend_from_slice(&["SET", "from", "entra"]);
    assert!(stdout_of(tsh(&alice, &all, None).unwrap()).contains("OK"));
    assert_eq!(w.emu.request_count("entra-redis/listKeys"), 0);

    // An open session outlives its token: the agent sends AUTH with a new
    // token before the old one expires, and the session goes on.
    let t = tunnel_to(&alice, "entra-redis");
    let mut open = raw_to(t.port);
    assert_eq!(open.call(&["GET", "from"]).unwrap(), "entra");
    let id = open.call(&["CLIENT", "ID"]).unwrap();
    let id = id.trim_start_matches(':');
    let before = auth_calls(server);
    // This very connection's last command becomes the engine's AUTH (the
    // client stays idle meanwhile).
    let line = poll(Duration::from_secs(60), "re-authentication", || {
        let out = stdout_of(server.cli(&["CLIENT", "LIST", "ID", id]).unwrap());
        out.contains("cmd=auth").then_some(out)
    })
    .map_err(|e| format!("{e}\n{}", w.agent.log()))
    .unwrap();
    assert!(
        line.contains(&format!("user={}", e2e::redis::AGENT_OBJECT_ID)),
        "{line}"
    );
    assert!(auth_calls(server) > before);
    assert_eq!(open.call(&["PING"]).unwrap(), "+PONG");
    assert_eq!(
        open.call(&["ACL", "WHOAMI"]).unwrap(),
        e2e::redis::AGENT_OBJECT_ID
    );
    assert_eq!(open.call(&["GET", "from"]).unwrap(), "entra");
    // The engine's AUTH is not the user's: not audited as a query.
    // Events arrive in batches, after the replies.
    let queries = poll(Duration::from_secs(20), "query events", || {
        let q = events_of(&w, "db.session.query");
        q.iter().any(|e| e["db_query"] == "GET from").then_some(q)
    })
    .unwrap();
    assert!(
        queries.iter().all(|e| e["db_query"] != "AUTH ******"),
        "{queries:?}"
    );
}

#[test]
fn redis_enterprise_oss_cluster() {
    let (_tmp, w) = world(e2e::redis::Extras {
        enterprise: true,
        ..Default::default()
    });
    let nodes = w.enterprise.as_ref().unwrap();
    let alice = w
        .login("alice", "access", &["--db-users=*", "--db-names=*"])
        .unwrap();
    const DB: &str = "my-azure-redis-enterprise";
    let listed = w.wait_listed_db(&alice, DB).unwrap();
    assert!(
        listed.contains("Azure Redis Enterprise server in East US"),
        "{listed}"
    );
    let connect = |args: &[&str]| {
        let mut all = vec!["db", "connect", DB, "--"];
        all.extend_from_slice(args);
        stdout_of(tsh(&alice, &all, None).unwrap())
    };
    // Plain redis-cli (no -c) reaches keys on every shard.
    let out = connect(&["MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5"]);
    assert!(out.contains("OK"), "{out}\n{}", w.agent.log());
    let out = connect(&["MGET", "a", "b", "c", "d", "e", "nosuch"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1", "2", "3", "4", "5", ""],
        "{out}"
    );
    for i in 0..3 {
        let n: u64 = nodes
            .node_cli(i, &["DBSIZE"])
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(n > 0, "node {i} holds none of the keys");
    }
    assert_eq!(connect(&["DBSIZE"]).trim(), "5");
    // redis-cli --scan walks every shard.
    let out = connect(&["--scan"]);
    let mut keys: Vec<&str> = out.lines().collect();
    keys.sort_unstable();
    assert_eq!(keys, ["a", "b", "c", "d", "e"], "{out}");
    let out = connect(&["-3", "HELLO", "3"]);
    assert!(out.contains("proto 3"), "{out}");
    let out = connect(&["MULTI"]);
    assert!(out.contains("ERR Teleport: "), "{out}");
    // Recorded as Teleport's db.session.query.failed.
    let failed = poll(Duration::from_secs(20), "failed query events", || {
        let f = events_of(&w, "db.session.query.failed");
        f.iter().any(|e| e["db_query"] == "MULTI").then_some(f)
    })
    .unwrap();
    assert!(
        failed.iter().any(|e| e["code"] == "TDB02W"
            && e["user"] == "alice"
            && e["error"] == "MULTI is not supported in cluster mode"),
        "{failed:?}"
    );
    let out = connect(&["AUTH", "admin", "x"]);
    assert!(
        out.contains("ERR Teleport: this session is for database user \"default\""),
        "{out}"
    );

    // A pipelined session through a tunnel, and a slot moving under it.
    let t = tunnel_to(&alice, DB);
    let mut raw = raw_to(t.port);
    let mut p = String::new();
    for i in 0..300 {
        let k = format!("key:{i}");
        p.push_str(&format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n$1\r\nv\r\n",
            k.len()
        ));
    }
    raw.0.write_all(p.as_bytes()).unwrap();
    for _ in 0..300 {
        assert_eq!(raw.reply().unwrap(), "+OK");
    }
    assert_eq!(nodes.total_keys().unwrap(), 305);
    let slot: u16 = nodes
        .node_cli(0, &["CLUSTER", "KEYSLOT", "moved-key"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let owner = match slot {
        0..=5460 => 0,
        5461..=10922 => 1,
        _ => 2,
    };
    let target = (owner + 1) % 3;
    let target_id = nodes.node_cli(target, &["CLUSTER", "MYID"]).unwrap();
    for i in 0..3 {
        let out = nodes
            .node_cli(
                i,
                &[
                    "CLUSTER",
                    "SETSLOT",
                    &slot.to_string(),
                    "NODE",
                    target_id.trim(),
                ],
            )
            .unwrap();
        assert!(out.contains("OK"), "{out}");
    }
    // The session's map is stale: MOVED is followed inside the agent.
    assert_eq!(raw.call(&["SET", "moved-key", "here"]).unwrap(), "+OK");
    assert_eq!(raw.call(&["GET", "moved-key"]).unwrap(), "here");
    assert_eq!(
        nodes
            .node_cli(target, &["GET", "moved-key"])
            .unwrap()
            .trim(),
        "here"
    );

    // Garbage ends only that session.
    let mut bad = raw_to(t.port);
    bad.0.write_all(b"*1\r\n$-7\r\n").unwrap();
    assert!(bad.reply().unwrap().starts_with("-ERR Teleport: "));
    assert_eq!(raw.call(&["GET", "a"]).unwrap(), "1");
}

/// redis-benchmark's default suite through `tsh proxy db --tunnel`: its
/// first test, `PING_INLINE`, sends inline commands (as telnet, `nc` and
/// health checks do), which the engine reads as Redis does: inline
/// commands typed on a raw connection are answered and audited like arrays
/// (`AUTH` redacted; `AUTH` or `HELLO ... AUTH` as another user refused
/// alike), and every test of the suite completes without an error reply.
#[test]
fn redis_benchmark_default_suite_through_the_tunnel() {
    let c = cluster();
    let alice = c.login("alice", "access", &["--db-users=*", "--db-names=*"]);
    c.wait_listed(&alice).unwrap();
    let t = tunnel(&alice);
    // Typed by hand: inline commands, quoting and AUTH (first: the audit
    // log lists the oldest events first).
    let mut raw = raw_to(t.port);
    raw.0
        .write_all(b"SET inline \"typed by hand\"\r\nGET inline\r\nAUTH typed-secret\n")
        .unwrap();
    assert_eq!(raw.reply().unwrap(), "+OK");
    assert_eq!(raw.reply().unwrap(), "typed by hand");
    assert_eq!(raw.reply().unwrap(), "+OK");
    let queries = poll(Duration::from_secs(20), "inline query events", || {
        let q = c.events("db.session.query");
        (q.iter()
            .any(|e| e["db_query"] == "SET inline typed by hand")
            && q.iter().any(|e| e["db_query"] == "AUTH ******"))
        .then_some(q)
    })
    .unwrap();
    assert!(
        queries.iter().any(|e| e["db_query"] == "GET inline"),
        "{queries:?}"
    );
    assert!(!format!("{queries:?}").contains("typed-secret"));
    // AUTH as another user than the session's is refused, in HELLO as in
    // AUTH, and the session goes on as it was (RESP2).
    let auth = raw.call(&["AUTH", "other", "pw"]).unwrap();
    assert!(
        auth.starts_with("-ERR Teleport: this session is for database user \"default\""),
        "{auth}"
    );
    assert_eq!(
        raw.call(&["HELLO", "3", "AUTH", "other", "pw"]).unwrap(),
        auth
    );
    raw.0.write_all(b"HELLO 3 AUTH other pw\r\n").unwrap();
    assert_eq!(raw.reply().unwrap(), auth);
    assert_eq!(raw.call(&["GET", "no-such-key"]).unwrap(), "(nil)");

    let args = ["-q", "-n", "200", "-c", "10"];
    let out = redis_benchmark(t.port, &args, Duration::from_secs(180)).unwrap();
    let (stdout, stderr) = (out.stdout, out.stderr);
    assert!(
        out.success,
        "redis-benchmark: {stdout}\n{stderr}\n{}",
        c.agent.log()
    );
    for test in [
        "PING_INLINE",
        "PING_MBULK",
        "SET",
        "GET",
        "INCR",
        "LRANGE_100",
        "MSET",
    ] {
        assert!(
            stdout.contains(&format!("{test}: ")) || stdout.contains(&format!("{test} (")),
            "{test} missing: {stdout}\n{stderr}"
        );
    }
    assert!(
        !stdout.contains("ERR") && !stderr.contains("ERR"),
        "{stdout}\n{stderr}"
    );
}
