//! Cluster mode against a real 3-master TLS Redis Cluster, driven by
//! redis-cli (without -c), redis-benchmark and a raw RESP client.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use redis_proxy::cluster::key_slot;
use redis_proxy::{CredentialProvider, Credentials, Frame, SessionOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const PW: &str = "cluster-s3cret";

async fn setup() -> (RedisCluster, Arc<TestCreds>, Proxy) {
    let cluster = RedisCluster::start(PW).await;
    let creds = TestCreds::new(PW);
    let proxy =
        Proxy::start_cluster(cluster.backend(creds.clone()), SessionOptions::default()).await;
    (cluster, creds, proxy)
}

/// A key whose slot is served (initially) by node `node`, with a prefix.
fn key_on(cluster: &RedisCluster, node: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| cluster.node_of_slot(key_slot(k.as_bytes())) == node)
        .unwrap()
}

fn int(f: &Frame) -> i64 {
    match f {
        Frame::Integer(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

#[tokio::test]
async fn redis_cli_and_pipelines_reach_every_node() {
    let (cluster, creds, proxy) = setup().await;
    for i in 0..12 {
        let key = format!("cli:{i}");
        let value = format!("value {i}");
        assert_eq!(proxy.cli(&["SET", &key, &value]).await.trim(), "OK");
        assert_eq!(proxy.cli(&["GET", &key]).await.trim(), value);
    }
    // 1,000 SETs in one write, then 1,000 GETs in one write: replies in order.
    let lookups = creds.calls();
    let mut c = proxy.conn().await;
    let mut batch = Vec::new();
    for i in 0..1000 {
        batch.extend(Frame::command(["SET", &format!("key:{i}"), &format!("v{i}")]).to_bytes());
    }
    c.raw(&batch).await;
    for _ in 0..1000 {
        assert_eq!(c.read().await, simple("OK"));
    }
    let mut batch = Vec::new();
    for i in 0..1000 {
        batch.extend(Frame::command(["GET", &format!("key:{i}")]).to_bytes());
        if i % 100 == 0 {
            // Keyless and local answers keep their place.
            batch.extend(Frame::command(["PING"]).to_bytes());
            batch.extend(Frame::command(["AUTH", "ignored"]).to_bytes());
        }
    }
    c.raw(&batch).await;
    for i in 0..1000 {
        assert_eq!(c.read().await, bulk(&format!("v{i}")));
        if i % 100 == 0 {
            assert_eq!(c.read().await, simple("PONG"));
            assert_eq!(c.read().await, simple("OK"));
        }
    }
    // Every master got keys.
    for i in 0..3 {
        assert!(int(&cluster.call(i, &["DBSIZE"]).await) > 250, "node {i}");
    }
    assert_eq!(int(&c.call(&["DBSIZE"]).await), 1012);
    // Audit: one event per client command, AUTH redacted.
    let events = proxy.events();
    assert_eq!(events.iter().filter(|e| e.name == "GET").count(), 1012);
    assert!(events
        .iter()
        .filter(|e| e.name == "AUTH")
        .all(|e| e.args == ["******"]));
    // Three node connections (one credential lookup each): the seed's
    // connection also serves the seed's slots.
    assert_eq!(creds.calls() - lookups, 3);
}

#[tokio::test]
async fn tls_to_redirected_addresses_uses_the_seed_name() {
    let cluster = RedisCluster::start(PW).await;
    // The cluster reports nodes by IP address; the certificate only names
    // localhost.
    let Frame::Array(ranges) = cluster.call(0, &["CLUSTER", "SLOTS"]).await else {
        panic!("CLUSTER SLOTS")
    };
    for r in &ranges {
        let Frame::Array(items) = r else { panic!() };
        let Frame::Array(master) = &items[2] else {
            panic!()
        };
        assert_eq!(master[0], bulk("127.0.0.1"));
    }
    let seed = cluster.backend(TestCreds::new(PW));
    let node = seed.node("127.0.0.1", cluster.ports[2]);
    assert_eq!(node.server_name(), "localhost");
    assert_eq!(node.host(), "127.0.0.1");
    assert!(node.connect().await.is_ok());
    // Without the seed's name, 127.0.0.1 is refused.
    let by_ip = redis_proxy::Backend::new(
        "127.0.0.1",
        cluster.ports[2],
        Some(tls_trusting(&cluster.ca_der)),
        TestCreds::new(PW),
    );
    assert!(matches!(
        by_ip.connect().await,
        Err(redis_proxy::EngineError::Tls(
            redis_proxy::TlsError::Handshake(_)
        ))
    ));
    // Through the engine: keys on every node.
    let proxy = Proxy::start_cluster(seed, SessionOptions::default()).await;
    let mut c = proxy.conn().await;
    for node in 0..3 {
        let key = key_on(&cluster, node, "tls");
        assert_eq!(c.call(&["SET", &key, "x"]).await, simple("OK"));
        assert_eq!(cluster.call(node, &["GET", &key]).await, bulk("x"));
    }
    // A seed whose certificate does not match: the session starts with an error.
    let wrong = redis_proxy::Backend::new(
        "127.0.0.1",
        cluster.ports[0],
        Some(tls_trusting(&cluster.ca_der)),
        TestCreds::new(PW),
    );
    let bad = Proxy::start_cluster(wrong, SessionOptions::default()).await;
    assert_tls_to_the_database_fails(&bad).await;
}

/// Moves `slot` (and `keys`) from node `src` to node `dst`.
async fn migrate_slot(cluster: &RedisCluster, slot: u16, src: usize, dst: usize, keys: &[&str]) {
    let s = slot.to_string();
    let ok = simple("OK");
    let (src_id, dst_id) = (cluster.ids[src].clone(), cluster.ids[dst].clone());
    assert_eq!(
        cluster
            .call(dst, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &src_id])
            .await,
        ok
    );
    assert_eq!(
        cluster
            .call(src, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &dst_id])
            .await,
        ok
    );
    if !keys.is_empty() {
        migrate_keys(cluster, src, dst, keys).await;
    }
}

/// Moves `keys` (of a slot being migrated) from node `src` to node `dst`.
async fn migrate_keys(cluster: &RedisCluster, src: usize, dst: usize, keys: &[&str]) {
    let port = cluster.ports[dst].to_string();
    let mut args = vec![
        "MIGRATE",
        "127.0.0.1",
        &port,
        "",
        "0",
        "5000",
        "AUTH",
        PW,
        "KEYS",
    ];
    args.extend(keys);
    assert_eq!(cluster.call(src, &args).await, simple("OK"));
}

async fn finish_slot(cluster: &RedisCluster, slot: u16, dst: usize) {
    let s = slot.to_string();
    let dst_id = cluster.ids[dst].clone();
    for i in [dst, (dst + 1) % 3, (dst + 2) % 3] {
        assert_eq!(
            cluster
                .call(i, &["CLUSTER", "SETSLOT", &s, "NODE", &dst_id])
                .await,
            simple("OK")
        );
    }
}

#[tokio::test]
async fn moved_slot_is_followed_mid_session() {
    let (cluster, _creds, proxy) = setup().await;
    let mut c = proxy.conn().await;
    let key = key_on(&cluster, 1, "moving");
    let slot = key_slot(key.as_bytes());
    let counter = format!("{{{key}}}:counter");
    assert_eq!(c.call(&["SET", &key, "v1"]).await, simple("OK"));
    assert_eq!(c.call(&["SET", &counter, "0"]).await, simple("OK"));
    migrate_slot(&cluster, slot, 1, 2, &[&key, &counter]).await;
    finish_slot(&cluster, slot, 2).await;
    assert_eq!(
        cluster.call(1, &["GET", &key]).await,
        Frame::Error(format!("MOVED {slot} 127.0.0.1:{}", cluster.ports[2]).into())
    );
    let rejected = cluster.cmdstat(1, "get", "rejected_calls").await;
    // The engine still thinks node 1 has the slot: MOVED, then node 2.
    assert_eq!(c.call(&["GET", &key]).await, bulk("v1"));
    assert_eq!(
        cluster.cmdstat(1, "get", "rejected_calls").await,
        rejected + 1
    );
    // A pipeline for that slot: in order, straight to the new owner.
    let mut batch = Vec::new();
    for _ in 0..50 {
        batch.extend(Frame::command(["INCR", &counter]).to_bytes());
    }
    c.raw(&batch).await;
    for i in 1..=50 {
        assert_eq!(c.read().await, Frame::Integer(i));
    }
    assert_eq!(cluster.call(2, &["GET", &counter]).await, bulk("50"));
    assert_eq!(c.call(&["GET", &key]).await, bulk("v1"));
    assert_eq!(
        cluster.cmdstat(1, "get", "rejected_calls").await,
        rejected + 1
    );
    assert_eq!(cluster.cmdstat(1, "incr", "rejected_calls").await, 0);
    // A session started after the move reads the new map at once.
    assert_eq!(proxy.cli(&["GET", &key]).await.trim(), "v1");
}

#[tokio::test]
async fn ask_during_a_migration() {
    let (cluster, _creds, proxy) = setup().await;
    let mut c = proxy.conn().await;
    let tag = key_on(&cluster, 0, "ask");
    let slot = key_slot(tag.as_bytes());
    let (stays, moves, fresh) = (
        format!("{{{tag}}}:stays"),
        format!("{{{tag}}}:moves"),
        format!("{{{tag}}}:fresh"),
    );
    assert_eq!(c.call(&["SET", &stays, "a"]).await, simple("OK"));
    assert_eq!(c.call(&["SET", &moves, "b"]).await, simple("OK"));
    migrate_slot(&cluster, slot, 0, 1, &[&moves]).await;
    let asking = cluster.calls(1, "asking").await;
    // The key that moved: -ASK from node 0, then ASKING + GET on node 1.
    assert_eq!(c.call(&["GET", &moves]).await, bulk("b"));
    // The key that did not: node 0 still answers.
    assert_eq!(c.call(&["GET", &stays]).await, bulk("a"));
    // A new key in a migrating slot goes to the importing node.
    assert_eq!(c.call(&["SET", &fresh, "c"]).await, simple("OK"));
    assert_eq!(cluster.calls(1, "asking").await, asking + 2);
    assert_eq!(c.call(&["GET", &moves]).await, bulk("b"));
    assert_eq!(
        cluster.calls(1, "asking").await,
        asking + 3,
        "ASK does not change the map"
    );
    // Finish the migration: MOVED from then on.
    migrate_keys(&cluster, 0, 1, &[&stays]).await;
    finish_slot(&cluster, slot, 1).await;
    let mget = c.call(&["MGET", &stays, &moves, &fresh]).await;
    assert_eq!(mget, Frame::Array(vec![bulk("a"), bulk("b"), bulk("c")]));
}

#[tokio::test]
async fn multi_key_and_cluster_wide_commands() {
    let (cluster, _creds, proxy) = setup().await;
    let mut c = proxy.conn().await;
    let keys: Vec<String> = (0..3)
        .flat_map(|n| (0..3).map(move |i| (n, i)))
        .map(|(n, i)| key_on(&cluster, n, &format!("multi{i}-")))
        .collect();
    let mut mset = vec!["MSET".to_string()];
    for k in &keys {
        mset.push(k.clone());
        mset.push(format!("val-{k}"));
    }
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(c.call(&mset).await, simple("OK"));
    let mut mget = vec!["MGET".to_string(), "missing".to_string()];
    mget.extend(keys.iter().cloned());
    let mget: Vec<&str> = mget.iter().map(String::as_str).collect();
    let Frame::Array(values) = c.call(&mget).await else {
        panic!("MGET")
    };
    assert_eq!(values[0], Frame::NullBulk);
    for (k, v) in keys.iter().zip(&values[1..]) {
        assert_eq!(*v, bulk(&format!("val-{k}")));
    }
    let mut exists = vec!["EXISTS", "missing", keys[0].as_str(), keys[0].as_str()];
    exists.extend(keys.iter().skip(5).map(String::as_str));
    assert_eq!(c.call(&exists).await, Frame::Integer(6));
    assert_eq!(c.call(&["DBSIZE"]).await, Frame::Integer(9));
    let Frame::Array(mut all) = c.call(&["KEYS", "multi*"]).await else {
        panic!("KEYS")
    };
    all.sort_by_key(|f| format!("{f:?}"));
    let mut want: Vec<Frame> = keys.iter().map(|k| bulk(k)).collect();
    want.sort_by_key(|f| format!("{f:?}"));
    assert_eq!(all, want);
    let mut del = vec!["DEL", "missing"];
    del.extend(keys.iter().take(4).map(String::as_str));
    assert_eq!(c.call(&del).await, Frame::Integer(4));
    assert_eq!(c.call(&["DBSIZE"]).await, Frame::Integer(5));
    // Atomic multi-key commands need one slot.
    for cmd in [
        vec!["MSETNX", keys[0].as_str(), "1", keys[8].as_str(), "2"],
        vec!["SUNION", keys[0].as_str(), keys[8].as_str()],
        vec!["RENAME", keys[5].as_str(), keys[8].as_str()],
    ] {
        assert_eq!(
            error_text(&c.call(&cmd).await),
            "ERR Teleport: CROSSSLOT Keys in request don't hash to the same slot (cluster mode)"
        );
    }
    // With a hash tag they work.
    assert_eq!(c.call(&["SADD", "{t}a", "1", "2"]).await, Frame::Integer(2));
    assert_eq!(c.call(&["SADD", "{t}b", "2", "3"]).await, Frame::Integer(2));
    assert_eq!(
        c.call(&["SUNIONSTORE", "{t}c", "{t}a", "{t}b"]).await,
        Frame::Integer(3)
    );
    assert_eq!(
        c.call(&["EVAL", "return redis.call('SCARD', KEYS[1])", "1", "{t}c"])
            .await,
        Frame::Integer(3)
    );
    assert_eq!(c.call(&["FLUSHALL"]).await, simple("OK"));
    assert_eq!(c.call(&["DBSIZE"]).await, Frame::Integer(0));
    for i in 0..3 {
        assert_eq!(cluster.call(i, &["DBSIZE"]).await, Frame::Integer(0));
    }
}

#[tokio::test]
async fn unsupported_commands_are_refused() {
    let (_cluster, _creds, proxy) = setup().await;
    let mut c = proxy.conn().await;
    let mut batch = Vec::new();
    let cases: &[(&[&str], &str)] = &[
        (&["MULTI"], "MULTI"),
        (&["EXEC"], "EXEC"),
        (&["WATCH", "k"], "WATCH"),
        (&["SUBSCRIBE", "news"], "SUBSCRIBE"),
        (&["MONITOR"], "MONITOR"),
        (&["RESET"], "RESET"),
        (&["SELECT", "1"], "SELECT of a database other than 0"),
        (&["CLIENT", "REPLY", "OFF"], "CLIENT REPLY"),
        (&["CLUSTER", "FAILOVER"], "CLUSTER FAILOVER"),
    ];
    for (cmd, _) in cases {
        batch.extend(Frame::command(*cmd).to_bytes());
        batch.extend(Frame::command(["PING"]).to_bytes());
    }
    c.raw(&batch).await;
    for (_, what) in cases {
        assert_eq!(
            error_text(&c.read().await),
            format!("ERR Teleport: {what} is not supported in cluster mode")
        );
        assert_eq!(c.read().await, simple("PONG"));
    }
    assert_eq!(c.call(&["SELECT", "0"]).await, simple("OK"));
    assert_eq!(c.call(&["AUTH", "user", "secret"]).await, simple("OK"));
    let Frame::Bulk(info) = c.call(&["CLUSTER", "INFO"]).await else {
        panic!("CLUSTER INFO")
    };
    assert!(String::from_utf8_lossy(&info).contains("cluster_state:ok"));
    assert_eq!(c.call(&["SET", "after", "1"]).await, simple("OK"));
    assert!(proxy
        .cli(&["CLUSTER", "NODES"])
        .await
        .contains("myself,master"));
    // QUIT: +OK, then the session ends.
    assert_eq!(c.call(&["QUIT"]).await, simple("OK"));
    assert_eq!(c.try_read().await, None);
    let queries = proxy.queries();
    assert!(
        queries.contains(&"AUTH ****** ******".to_string()),
        "{queries:?}"
    );
    assert!(queries.contains(&"MULTI".to_string()), "{queries:?}");
}

#[tokio::test]
async fn hello_3_gives_resp3_replies_on_every_node() {
    let (cluster, _creds, proxy) = setup().await;
    let mut c = proxy.conn().await;
    // A connection to node 2 exists before HELLO, node 1's is opened after.
    let k2 = key_on(&cluster, 2, "h");
    assert_eq!(c.call(&["HSET", &k2, "f", "v"]).await, Frame::Integer(1));
    let hello = c.call(&["HELLO", "3", "AUTH", "default", "whatever"]).await;
    let Frame::Map(fields) = hello else {
        panic!("HELLO 3 answered {hello:?}")
    };
    assert!(
        fields.contains(&(bulk("proto"), Frame::Integer(3))),
        "{fields:?}"
    );
    for node in [2, 0, 1] {
        let key = key_on(&cluster, node, "h");
        if node != 2 {
            assert_eq!(c.call(&["HSET", &key, "f", "v"]).await, Frame::Integer(1));
        }
        assert_eq!(
            c.call(&["HGETALL", &key]).await,
            Frame::Map(vec![(bulk("f"), bulk("v"))]),
            "node {node}"
        );
        assert_eq!(
            c.call(&["GET", &key_on(&cluster, node, "none")]).await,
            Frame::Null
        );
    }
    let k0 = key_on(&cluster, 0, "h");
    assert_eq!(
        c.call(&["MGET", "nothing-here", &k0]).await,
        Frame::Array(vec![Frame::Null, Frame::Null])
    );
    assert!(!proxy
        .events()
        .iter()
        .any(|e| e.query().contains("whatever")));
    // redis-cli -3 sends HELLO 3 when it connects.
    let out = proxy.cli(&["-3", "HGETALL", &k2]).await;
    assert!(out.contains("f") && out.contains("v"), "{out}");
    // Back to RESP2.
    assert!(matches!(c.call(&["HELLO", "2"]).await, Frame::Array(_)));
    assert_eq!(c.call(&["GET", "nothing"]).await, Frame::NullBulk);
}

#[tokio::test]
async fn hostile_bytes_end_the_session_and_the_service_goes_on() {
    let (_cluster, _creds, proxy) = setup().await;
    assert_garbage_ends_connections(&proxy).await;
    // Replies to commands before the garbage come first.
    let mut c = proxy.conn().await;
    let mut bytes = Frame::command(["SET", "before", "1"]).to_bytes();
    bytes.extend(Frame::command(["GET", "before"]).to_bytes());
    bytes.extend_from_slice(b"*2\r\n:1\r\n");
    c.raw(&bytes).await;
    assert_eq!(c.read().await, simple("OK"));
    assert_eq!(c.read().await, bulk("1"));
    assert!(error_text(&c.read().await).starts_with("ERR Teleport: Protocol error: expected '$'"));
    assert_eq!(c.try_read().await, None);
    // Pseudo-random bytes and RESP-shaped noise: the session ends, whatever
    // comes back is RESP.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces: [&[u8]; 8] = [
        b"*1\r\n$4\r\nPING\r\n",
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n",
        b"*1\r\n$5\r\nMULTI\r\n",
        b"\r\n",
        b"*",
        b"$-1\r\n",
        b"99999999999999999999\r\n",
    ];
    for _ in 0..20 {
        let mut input = Vec::new();
        for _ in 0..(next() % 12) {
            match next() % 3 {
                0 => input.extend((0..next() % 6).map(|_| next() as u8)),
                _ => input.extend_from_slice(pieces[(next() % 8) as usize]),
            }
        }
        let mut c = proxy.conn().await;
        c.raw(&input).await;
        c.stream.shutdown().await.unwrap();
        while c.try_read().await.is_some() {}
    }
    assert_eq!(proxy.cli(&["PING"]).await.trim(), "PONG");
    assert_eq!(proxy.cli(&["GET", "before"]).await.trim(), "1");
}

#[tokio::test]
async fn limits_apply_to_client_commands() {
    let cluster = RedisCluster::start(PW).await;
    let proxy = Proxy::start_cluster(cluster.backend(TestCreds::new(PW)), bulk_limited()).await;
    assert_bulk_limited(&proxy).await;
}

#[tokio::test]
async fn node_failure_is_an_error_for_its_commands_only() {
    let (mut cluster, _creds, proxy) = setup().await;
    let mut c = proxy.conn().await;
    let keys: Vec<String> = (0..3).map(|n| key_on(&cluster, n, "fail")).collect();
    for k in &keys {
        assert_eq!(c.call(&["SET", k, "1"]).await, simple("OK"));
    }
    cluster.kill(2);
    for _ in 0..2 {
        let e = error_text(&c.call(&["GET", &keys[2]]).await);
        assert!(e.starts_with("ERR Teleport: "), "{e}");
        assert_eq!(c.call(&["GET", &keys[0]]).await, bulk("1"));
        assert_eq!(c.call(&["GET", &keys[1]]).await, bulk("1"));
    }
}

/// Credentials valid for a short time, counting lookups.
struct Expiring {
    password: Mutex<String>,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl CredentialProvider for Expiring {
    async fn credentials(&self) -> Result<Credentials, redis_proxy::CredentialError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Credentials {
            username: None,
            password: self.password.lock().unwrap().clone(),
            valid_for: Some(Duration::from_millis(800)),
        })
    }
}

#[tokio::test]
async fn expiring_credentials_are_renewed_on_every_node_connection() {
    let cluster = RedisCluster::start(PW).await;
    let creds = Arc::new(Expiring {
        password: Mutex::new(PW.into()),
        calls: AtomicUsize::new(0),
    });
    let proxy =
        Proxy::start_cluster(cluster.backend(creds.clone()), SessionOptions::default()).await;
    let mut c = proxy.conn().await;
    let keys: Vec<String> = (0..3).map(|n| key_on(&cluster, n, "re")).collect();
    for k in &keys {
        assert_eq!(c.call(&["SET", k, "1"]).await, simple("OK"));
    }
    // The seed's connection serves node 0: three connections.
    assert!(creds.calls.load(Ordering::SeqCst) >= 3);
    let mut base = Vec::new();
    for i in 0..3 {
        base.push(cluster.calls(i, "auth").await);
    }
    // Each later INFO connection adds its own AUTH: subtract those.
    let deadline = Instant::now() + WAIT;
    let mut reads = 0;
    loop {
        reads += 1;
        let mut renewed = 0;
        for (i, b) in base.iter().enumerate() {
            if cluster.calls(i, "auth").await > b + reads {
                renewed += 1;
            }
        }
        if renewed == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no re-authentication on every node"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(creds.calls.load(Ordering::SeqCst) >= 6);
    for k in &keys {
        assert_eq!(c.call(&["INCR", k]).await, Frame::Integer(2));
    }
    // Credentials the cluster refuses: the node connections end, and the
    // commands get Teleport errors instead of hanging.
    *creds.password.lock().unwrap() = "wrong".into();
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = c.call(&["GET", &keys[1]]).await;
        if let Frame::Error(e) = &reply {
            let e = String::from_utf8_lossy(e);
            assert!(e.starts_with("ERR Teleport: "), "{e}");
            break;
        }
        assert_eq!(reply, bulk("2"));
        assert!(Instant::now() < deadline, "wrong credentials never noticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_benchmark_through_cluster_mode() {
    let (_cluster, _creds, proxy) = setup().await;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("/usr/bin/redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &proxy.port.to_string()])
            .args(["-t", "set,get", "-n", "20000", "-c", "4", "-P", "16"])
            .args(["-r", "10000", "--csv"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{text}");
    eprintln!("{text}");
    assert!(int(&proxy.conn().await.call(&["DBSIZE"]).await) > 1000);
}

/// Callers spawn sessions: the session future must be `Send`.
#[allow(dead_code)]
fn session_future_is_send(seed: redis_proxy::Backend, stream: tokio::net::TcpStream) {
    fn send<T: Send>(_: T) {}
    send(async move {
        redis_proxy::serve_cluster_session(stream, &seed, SessionOptions::default(), |_| {}).await
    });
}

/// `redis-benchmark --cluster` direct to the nodes and through cluster mode.
/// Ignored by default; run with `cargo test --release -p redis-proxy --test
/// cluster -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn redis_benchmark_direct_vs_cluster_mode() {
    let (cluster, _creds, proxy) = setup().await;
    let run = |args: Vec<String>, clients: u32, pipeline: u32| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        redis_benchmark(&args, clients, pipeline)
            .await
            .into_iter()
            .map(|f| (f[0].clone(), f[1].parse::<f64>().unwrap()))
            .collect::<Vec<_>>()
    };
    let ca = cluster
        .dir
        .path()
        .join("ca.pem")
        .to_string_lossy()
        .into_owned();
    let direct: Vec<String> = [
        "--cluster",
        "-h",
        "127.0.0.1",
        "-p",
        &cluster.ports[0].to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(
        ["--tls", "--cacert", &ca, "-a", PW]
            .iter()
            .map(|s| s.to_string()),
    )
    .collect();
    let proxied: Vec<String> = vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        proxy.port.to_string(),
    ];
    for (c, p) in [(1, 1), (50, 1), (50, 16)] {
        let d = run(direct.clone(), c, p).await;
        let x = run(proxied.clone(), c, p).await;
        for ((name, drps), (_, xrps)) in d.iter().zip(&x) {
            println!(
                "-c {c:>2} -P {p:>2} {name}: direct cluster {drps:.0} rps | cluster mode {xrps:.0} rps | ratio {:.2}",
                xrps / drps
            );
        }
    }
}

#[tokio::test]
async fn scan_walks_every_master() {
    let (cluster, _creds, proxy) = setup().await;
    let mut c = proxy.conn().await;
    let mut want = std::collections::BTreeSet::new();
    for i in 0..300 {
        let key = format!("scan:{i}");
        assert_eq!(c.call(&["SET", &key, "v"]).await, simple("OK"));
        want.insert(key);
    }
    assert_eq!(c.call(&["SET", "other", "v"]).await, simple("OK"));
    for i in 0..3 {
        assert!(int(&cluster.call(i, &["DBSIZE"]).await) > 50, "node {i}");
    }
    // redis-cli --scan follows the cursor to its end.
    let out = proxy.cli(&["--scan", "--pattern", "scan:*"]).await;
    let got: std::collections::BTreeSet<String> = out.lines().map(str::to_string).collect();
    assert_eq!(got, want);
    // By hand, with COUNT: cursors are numbers, the last is 0, every
    // master is visited (its position is in the low bits).
    let mut cursor = "0".to_string();
    let mut seen = std::collections::BTreeSet::new();
    let mut positions = std::collections::BTreeSet::new();
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 10_000, "scan did not end");
        let Frame::Array(items) = c
            .call(&["SCAN", &cursor, "MATCH", "scan:*", "COUNT", "50"])
            .await
        else {
            panic!("SCAN reply is not an array");
        };
        let [Frame::Bulk(next), Frame::Array(keys)] = items.as_slice() else {
            panic!("unexpected SCAN reply {items:?}");
        };
        for k in keys {
            let Frame::Bulk(k) = k else {
                panic!("key {k:?}")
            };
            seen.insert(String::from_utf8(k.to_vec()).unwrap());
        }
        cursor = String::from_utf8(next.to_vec()).unwrap();
        let n: u64 = cursor.parse().unwrap();
        if n == 0 {
            break;
        }
        positions.insert(n & 1023);
    }
    assert_eq!(seen, want);
    assert!(positions.len() >= 2, "{positions:?}");
    // A cursor naming no node, and one that is not a number.
    let bad = (1u64 << 10 | 7).to_string();
    match c.call(&["SCAN", &bad]).await {
        Frame::Error(e) => assert!(
            String::from_utf8_lossy(&e).contains("Teleport: invalid cursor"),
            "{e:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.call(&["SCAN", "x"]).await,
        Frame::Error("ERR invalid cursor".into())
    );
    assert_eq!(c.call(&["PING"]).await, simple("PONG"));
}

/// `AUTH` and `HELLO ... AUTH` naming another user than the session's are
/// refused alike in cluster mode too; inline commands are routed like
/// arrays (to their key's node), audited with `AUTH` redacted.
#[tokio::test]
async fn hello_auth_refused_as_auth_is_and_inline_commands_routed() {
    let cluster = RedisCluster::start(PW).await;
    let opts = SessionOptions {
        db_user: Some("default".into()),
        ..SessionOptions::default()
    };
    let proxy = Proxy::start_cluster(cluster.backend(TestCreds::new(PW)), opts).await;
    let mut c = proxy.conn().await;
    let auth = auth_as_other_is_refused(&mut c).await;
    let hello = error_text(
        &c.call(&["HELLO", "3", "AUTH", "other", "pw", "SETNAME", "x"])
            .await,
    );
    assert_eq!(hello, auth);
    c.raw(b"HELLO 3 auth other pw\r\n").await;
    assert_eq!(error_text(&c.read().await), auth);
    // Nothing changed: RESP2 still.
    assert_eq!(c.call(&["GET", "none"]).await, Frame::NullBulk);
    // Inline commands, one per node, and inline AUTH.
    let mut inline = Vec::new();
    for node in 0..3 {
        let key = key_on(&cluster, node, "inline");
        inline.extend_from_slice(format!("SET {key} \"v {node}\"\r\nGET '{key}'\n").as_bytes());
    }
    inline.extend_from_slice(b"AUTH hunter2\r\n");
    c.raw(&inline).await;
    for node in 0..3 {
        assert_eq!(c.read().await, simple("OK"));
        assert_eq!(c.read().await, bulk(&format!("v {node}")));
    }
    assert_eq!(c.read().await, simple("OK"));
    for node in 0..3 {
        let key = key_on(&cluster, node, "inline");
        assert_eq!(
            cluster.call(node, &["GET", &key]).await,
            bulk(&format!("v {node}"))
        );
    }
    assert!(matches!(
        c.call(&["HELLO", "3", "AUTH", "default", "pw"]).await,
        Frame::Map(_)
    ));
    assert_eq!(
        proxy.refused_queries(),
        [
            "AUTH ****** ******",
            "HELLO 3 AUTH ****** ****** SETNAME x",
            "HELLO 3 auth ****** ******"
        ]
    );
    let queries = proxy.queries();
    assert!(queries.contains(&"AUTH ******".to_string()), "{queries:?}");
    assert!(!format!("{:?}", proxy.events()).contains("hunter2"));
}
