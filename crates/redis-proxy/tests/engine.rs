//! The engine against a real TLS redis-server with requirepass, driven by
//! redis-cli and by a raw RESP client.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use redis_proxy::{Frame, SessionOptions};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

const PW: &str = "s3cret-primary-key";

async fn setup() -> (RedisServer, std::sync::Arc<TestCreds>, Proxy) {
    let server = RedisServer::start_tls(PW);
    let creds = TestCreds::new(PW);
    let proxy = Proxy::start(server.backend(creds.clone()), SessionOptions::default()).await;
    (server, creds, proxy)
}

#[tokio::test]
async fn redis_cli_set_get_over_tls_backend() {
    let (_server, creds, proxy) = setup().await;
    assert_eq!(
        proxy.cli(&["SET", "greeting", "hello world"]).await.trim(),
        "OK"
    );
    assert_eq!(proxy.cli(&["GET", "greeting"]).await.trim(), "hello world");
    // redis-cli -a sends AUTH first: answered locally, the session still works.
    let out = proxy
        .cli(&["--no-auth-warning", "-a", "anything", "GET", "greeting"])
        .await;
    assert_eq!(out.trim(), "hello world");
    assert_eq!(
        creds.calls(),
        1,
        "the three sessions' key commands share one backend connection"
    );
    let events = proxy.events();
    let set = events.iter().find(|e| e.name == "SET").unwrap();
    assert_eq!(set.query(), "SET greeting hello world");
    assert!(events
        .iter()
        .any(|e| e.name == "AUTH" && e.args == ["******"]));
}

/// A proxy for `server` whose sessions have connections of their own (no
/// sharing): what the server itself answers.
async fn unshared(server: &RedisServer) -> Proxy {
    let own = SessionOptions {
        share_backend: false,
        ..SessionOptions::default()
    };
    Proxy::start(server.backend(TestCreds::new(PW)), own).await
}

fn pipeline(cmds: &[&[&str]]) -> Vec<u8> {
    cmds.iter()
        .flat_map(|c| Frame::command(*c).to_bytes())
        .collect()
}

/// `CLIENT LIST` lines (asked through `admin`, which this moves to a
/// connection of its own).
async fn client_list(admin: &mut Conn) -> Vec<String> {
    let Frame::Bulk(list) = admin.call(&["CLIENT", "LIST"]).await else {
        panic!("CLIENT LIST")
    };
    String::from_utf8_lossy(&list)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Key commands of every session go over one backend connection; the first
/// command that needs per-connection state moves its session to a
/// connection of its own, after the replies before it and with nothing
/// lost or reordered.
#[tokio::test]
async fn sessions_share_a_connection_until_they_need_their_own() {
    let (_server, creds, proxy) = setup().await;
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    // Two pipelines at once: each session gets its own replies, in order.
    let incrs = |key: &str| pipeline(&vec![&["INCR", key][..]; 500]);
    a.raw(&incrs("a")).await;
    b.raw(&incrs("b")).await;
    for i in 1..=500 {
        assert_eq!(a.read().await, Frame::Integer(i));
        assert_eq!(b.read().await, Frame::Integer(i));
    }
    assert_eq!(creds.calls(), 1, "one shared connection");
    // One write: shared commands, a local AUTH, then SELECT and more.
    a.raw(&pipeline(&[
        &["SET", "x", "1"],
        &["AUTH", "whatever"],
        &["SELECT", "1"],
        &["GET", "x"],
        &["SET", "x", "2"],
        &["SELECT", "0"],
        &["GET", "x"],
    ]))
    .await;
    for want in [
        simple("OK"),
        simple("OK"),
        simple("OK"),
        Frame::NullBulk,
        simple("OK"),
        simple("OK"),
        bulk("1"),
    ] {
        assert_eq!(a.read().await, want);
    }
    assert_eq!(creds.calls(), 2, "a connection of its own for a");
    // b is still on the shared connection and sees a's writes.
    assert_eq!(b.call(&["GET", "x"]).await, bulk("1"));
    let mut admin = proxy.conn().await;
    let clients = client_list(&mut admin).await;
    assert_eq!(clients.len(), 3, "shared, a's and admin's: {clients:#?}");
    // MULTI moves b; its transaction works as on any connection.
    assert_eq!(b.call(&["MULTI"]).await, simple("OK"));
    assert_eq!(b.call(&["INCR", "b"]).await, simple("QUEUED"));
    assert_eq!(
        b.call(&["EXEC"]).await,
        Frame::Array(vec![Frame::Integer(501)])
    );
    assert_eq!(client_list(&mut admin).await.len(), 4);
    // Bytes that are not a command are the session engine's to refuse.
    let mut c = proxy.conn().await;
    assert_eq!(c.call(&["GET", "x"]).await, bulk("1"));
    c.raw(b"GET 'x\r\n").await;
    assert!(error_text(&c.read().await).starts_with("ERR Teleport: Protocol error"));
    assert_eq!(c.try_read().await, None);
    // Every command was audited once, in order (the refused bytes are
    // not a command).
    let names: Vec<String> = proxy
        .events()
        .into_iter()
        .filter(|e| e.args.first().map(String::as_str) == Some("x"))
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["SET", "GET", "SET", "GET", "GET", "GET"]);
}

/// What client libraries send when they connect (redis-py, Jedis and
/// node-redis name themselves with `CLIENT SETINFO`) is answered on the
/// shared connection as the server itself answers it, so their sessions
/// keep sharing; a session that moves takes its settings along.
#[tokio::test]
async fn connection_setup_commands_keep_sessions_shared() {
    let (server, creds, proxy) = setup().await;
    // The server's own answers, through a session of its own.
    let direct = unshared(&server).await;
    let mut d = direct.conn().await;
    let lib_name = &["client", "setinfo", "lib-name", "redis-py"][..];
    let lib_ver = &["CLIENT", "SETINFO", "LIB-VER", "5.0.1"][..];
    let bad_name = &["CLIENT", "SETNAME", "two words"][..];
    // What redis-py 8 asks of RESP3 connections (known to Redis Enterprise
    // and Azure Managed Redis, not to redis-server 7).
    let maint = &[
        "client",
        "maint_notifications",
        "ON",
        "moving-endpoint-type",
        "internal-ip",
    ][..];
    let want_maint = d.call(maint).await;
    let want_name = d.call(lib_name).await;
    let want_ver = d.call(lib_ver).await;
    let want_bad = d.call(bad_name).await;
    assert!(
        matches!(want_bad, Frame::Error(_)),
        "redis-server refuses spaces: {want_bad:?}"
    );

    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    for s in [&mut a, &mut b] {
        assert_eq!(s.call(lib_name).await, want_name);
        assert_eq!(s.call(lib_ver).await, want_ver);
        assert_eq!(s.call(maint).await, want_maint);
    }
    a.raw(&pipeline(&[
        &["CLIENT", "SETNAME", "app-a"],
        &["SET", "k", "1"],
        &["client", "getname"],
        &["GET", "k"],
    ]))
    .await;
    for want in [simple("OK"), simple("OK"), bulk("app-a"), bulk("1")] {
        assert_eq!(a.read().await, want);
    }
    assert_eq!(b.call(&["CLIENT", "GETNAME"]).await, Frame::NullBulk);
    assert_eq!(creds.calls(), 1, "both sessions still share");
    // A name the server refuses: its own error, from a connection of the
    // session's own.
    assert_eq!(b.call(bad_name).await, want_bad);
    assert_eq!(creds.calls(), 2);
    // A session that moves has its name (and library) on its own
    // connection: now the server answers GETNAME.
    assert_eq!(a.call(&["SELECT", "0"]).await, simple("OK"));
    assert_eq!(creds.calls(), 3);
    assert_eq!(a.call(&["CLIENT", "GETNAME"]).await, bulk("app-a"));
    let clients = client_list(&mut a).await;
    let mine: Vec<&String> = clients
        .iter()
        .filter(|l| l.contains(" name=app-a "))
        .collect();
    assert_eq!(mine.len(), 1, "{clients:#?}");
    if want_name == simple("OK") {
        // Redis 7.2 and later keep the library too.
        assert!(mine[0].contains("lib-name=redis-py"), "{clients:#?}");
        assert!(mine[0].contains("lib-ver=5.0.1"), "{clients:#?}");
    }
    // The answered commands are audited like the others.
    let events = proxy.events();
    assert!(events
        .iter()
        .any(|e| e.name == "CLIENT" && e.query() == "CLIENT SETNAME app-a"));
    assert_eq!(
        events
            .iter()
            .filter(|e| e.name == "CLIENT" && e.args.first().map(String::as_str) == Some("setinfo"))
            .count(),
        2
    );
}

/// Sessions that switch to RESP3 with `HELLO 3` (redis-py 8, go-redis 9,
/// Lettuce do on connecting) share a RESP3 connection; each session gets
/// replies in its own protocol, in order, and keeps RESP3 when it moves to
/// a connection of its own.
#[tokio::test]
async fn resp3_sessions_share_a_resp3_connection() {
    let (_server, creds, proxy) = setup().await;
    let mut two = proxy.conn().await;
    assert_eq!(
        two.call(&["ZADD", "z", "1.5", "m"]).await,
        Frame::Integer(1)
    );
    let is_hello3 = |f: &Frame| match f {
        Frame::Map(pairs) => pairs.contains(&(bulk("proto"), Frame::Integer(3))),
        _ => false,
    };
    let mut three = proxy.conn().await;
    let mut other = proxy.conn().await;
    for s in [&mut three, &mut other] {
        let hello = s.call(&["HELLO", "3"]).await;
        assert!(is_hello3(&hello), "{hello:?}");
    }
    // The same command, each session in its protocol.
    assert_eq!(two.call(&["ZSCORE", "z", "m"]).await, bulk("1.5"));
    assert_eq!(three.call(&["ZSCORE", "z", "m"]).await, Frame::Double(1.5));
    assert_eq!(other.call(&["ZSCORE", "z", "m"]).await, Frame::Double(1.5));
    assert_eq!(three.call(&["CLIENT", "GETNAME"]).await, Frame::Null);
    assert_eq!(two.call(&["CLIENT", "GETNAME"]).await, Frame::NullBulk);
    assert_eq!(
        creds.calls(),
        2,
        "one shared connection per protocol for three sessions"
    );
    // HELLO 3 inside a pipeline: the replies before it in RESP2, after it
    // in RESP3.
    let mut p = proxy.conn().await;
    p.raw(&pipeline(&[
        &["ZSCORE", "z", "m"],
        &["HELLO", "3"],
        &["ZSCORE", "z", "m"],
        &["HELLO", "3"],
    ]))
    .await;
    assert_eq!(p.read().await, bulk("1.5"));
    assert!(is_hello3(&p.read().await));
    assert_eq!(p.read().await, Frame::Double(1.5));
    assert!(is_hello3(&p.read().await));
    assert_eq!(creds.calls(), 2);
    // go-redis sends its name (and a password, when given one) in HELLO.
    let mut named = proxy.conn().await;
    let hello = named
        .call(&["HELLO", "3", "AUTH", "default", "anything", "SETNAME", "n3"])
        .await;
    assert!(is_hello3(&hello), "{hello:?}");
    assert_eq!(named.call(&["CLIENT", "GETNAME"]).await, bulk("n3"));
    assert_eq!(creds.calls(), 2);
    // A RESP3 session that moves keeps RESP3 and its name.
    assert_eq!(three.call(&["CLIENT", "SETNAME", "r3"]).await, simple("OK"));
    assert_eq!(three.call(&["SELECT", "0"]).await, simple("OK"));
    assert_eq!(creds.calls(), 3);
    assert_eq!(three.call(&["ZSCORE", "z", "m"]).await, Frame::Double(1.5));
    assert_eq!(three.call(&["CLIENT", "GETNAME"]).await, bulk("r3"));
    // HELLO 2 (or HELLO with options) is the server's to answer.
    let hello2 = other.call(&["HELLO", "2"]).await;
    assert!(matches!(hello2, Frame::Array(_)), "{hello2:?}");
    assert_eq!(other.call(&["ZSCORE", "z", "m"]).await, bulk("1.5"));
    assert_eq!(creds.calls(), 4);
}

/// Differential: random sessions of key commands, connection settings,
/// protocol switches and commands that need a connection of the session's
/// own, as pipelines or one at a time, get the same replies through the
/// shared connection as through connections of their own (each run on keys
/// of its own; `HELLO` replies compared without the connection `id`).
#[tokio::test]
async fn shared_sessions_answer_as_sessions_of_their_own() {
    let (server, _creds, shared) = setup().await;
    let alone = unshared(&server).await;
    const POOL: &[&[&str]] = &[
        &["SET", "K", "v"],
        &["GET", "K"],
        &["INCR", "C"],
        &["DEL", "K"],
        &["ZADD", "Z", "1.5", "m"],
        &["ZSCORE", "Z", "m"],
        &["PING"],
        &["ECHO", "hi"],
        &["CLIENT", "SETNAME", "n1"],
        &["client", "getname"],
        &["CLIENT", "SETINFO", "LIB-NAME", "lib"],
        &["CLIENT", "SETNAME", "bad name"],
        &[
            "CLIENT",
            "MAINT_NOTIFICATIONS",
            "ON",
            "moving-endpoint-type",
            "none",
        ],
        &["HELLO", "3"],
        &["HELLO", "3", "SETNAME", "n2"],
        &["AUTH", "default", "x"],
        &["SELECT", "0"],
        &["HELLO", "2"],
    ];
    // Connection ids differ by design; everything else must not.
    fn normalized(f: Frame) -> Frame {
        match f {
            Frame::Map(pairs) => Frame::Map(
                pairs
                    .into_iter()
                    .filter(|(k, _)| *k != bulk("id"))
                    .collect(),
            ),
            // HELLO in RESP2: a flat list of names and values.
            Frame::Array(mut items) if items.first() == Some(&bulk("server")) => {
                if let Some(at) = (0..items.len())
                    .step_by(2)
                    .find(|&i| items[i] == bulk("id"))
                {
                    items.drain(at..(at + 2).min(items.len()));
                }
                Frame::Array(items)
            }
            other => other,
        }
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) as usize) % n
    };
    for round in 0..300 {
        let len = 1 + next(12);
        let cmds: Vec<&[&str]> = (0..len).map(|_| POOL[next(POOL.len())]).collect();
        let pipelined = next(2) == 0;
        let mut replies = Vec::new();
        for (proxy, prefix) in [(&shared, "s"), (&alone, "o")] {
            let mut c = proxy.conn().await;
            let keyed: Vec<Vec<String>> = cmds
                .iter()
                .map(|cmd| {
                    cmd.iter()
                        .map(|a| match *a {
                            "K" | "C" | "Z" => format!("{prefix}{round}:{a}"),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .collect();
            let mut got = Vec::new();
            if pipelined {
                let mut bytes = Vec::new();
                for cmd in &keyed {
                    bytes.extend_from_slice(&Frame::command(cmd).to_bytes());
                }
                c.raw(&bytes).await;
                for _ in &keyed {
                    got.push(normalized(c.read().await));
                }
            } else {
                for cmd in &keyed {
                    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
                    got.push(normalized(c.call(&args).await));
                }
            }
            replies.push(got);
        }
        assert_eq!(
            replies[0], replies[1],
            "round {round}, pipelined {pipelined}: {cmds:?}"
        );
    }
}

/// Hostile input on the shared path: random mixes of valid commands,
/// connection-setup calls, protocol switches, truncated and malformed
/// frames never crash or hang the engine, never produce a partial reply,
/// and leave it serving the next session.
#[tokio::test]
async fn hostile_bytes_on_the_shared_path() {
    let (_server, _creds, proxy) = setup().await;
    let pieces: Vec<Vec<u8>> = vec![
        Frame::command(["SET", "h", "v"]).to_bytes(),
        Frame::command(["GET", "h"]).to_bytes(),
        Frame::command(["HELLO", "3"]).to_bytes(),
        Frame::command(["HELLO", "3", "SETNAME"]).to_bytes(),
        Frame::command(["HELLO", "3", "AUTH", "u"]).to_bytes(),
        Frame::command(["CLIENT", "SETNAME", "x"]).to_bytes(),
        Frame::command(["CLIENT", "SETINFO", "LIB-VER"]).to_bytes(),
        Frame::command(["CLIENT"]).to_bytes(),
        Frame::command(["AUTH"]).to_bytes(),
        b"*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$-1\r\n".to_vec(),
        b"*2\r\n$5\r\nHELLO\r\n:3\r\n".to_vec(),
        b"*-1\r\n".to_vec(),
        b"*1\r\n$0\r\n\r\n".to_vec(),
        b"*0\r\n".to_vec(),
        b"HELLO 3\r\n".to_vec(),
        b"$99999999999\r\n".to_vec(),
        b"*2\r\n$3\r\nGET\r\n$5\r\nab".to_vec(),
        b"\r\n\r\n".to_vec(),
        vec![0xff, 0x00, b'*', b'-', b'2', b'\r'],
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed as usize) % n
    };
    for round in 0..150 {
        let mut input = Vec::new();
        for _ in 0..1 + next(6) {
            input.extend_from_slice(&pieces[next(pieces.len())]);
        }
        let mut c = proxy.conn().await;
        c.raw(&input).await;
        c.stream.shutdown().await.unwrap();
        // Whole replies, then the end: try_read fails on a partial frame
        // and on silence.
        let mut replies = 0;
        while c.try_read().await.is_some() {
            replies += 1;
            assert!(replies < 100, "round {round}: endless replies");
        }
        let mut fresh = proxy.conn().await;
        assert_eq!(
            fresh.call(&["PING"]).await,
            simple("PONG"),
            "round {round}: {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

/// Without sharing, every session has a connection of its own from the
/// start, as in Teleport.
#[tokio::test]
async fn sessions_without_sharing_have_connections_of_their_own() {
    let server = RedisServer::start_tls(PW);
    let creds = TestCreds::new(PW);
    let opts = SessionOptions {
        share_backend: false,
        ..SessionOptions::default()
    };
    let proxy = Proxy::start(server.backend(creds.clone()), opts).await;
    let mut sessions = Vec::new();
    for i in 0..3 {
        let mut c = proxy.conn().await;
        assert_eq!(c.call(&["SET", &format!("k{i}"), "v"]).await, simple("OK"));
        sessions.push(c);
    }
    assert_eq!(creds.calls(), 3);
    assert_eq!(client_list(&mut sessions[0]).await.len(), 3);
}

/// When the shared connection fails, a session with nothing outstanding on
/// it goes on over a new one.
#[tokio::test]
async fn sessions_go_on_after_the_shared_connection_fails() {
    let (_server, creds, proxy) = setup().await;
    let mut idle = proxy.conn().await;
    assert_eq!(idle.call(&["SET", "k", "v"]).await, simple("OK"));
    let mut admin = proxy.conn().await;
    assert_eq!(
        admin
            .call(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
            .await,
        Frame::Integer(1),
        "the shared connection"
    );
    // Sessions started before the engine noticed may end with an error
    // (as on a connection of their own); a later one works.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut fresh = proxy.conn().await;
        fresh.send(&["GET", "k"]).await;
        match fresh.read().await {
            Frame::Bulk(v) if v == "v" => break,
            Frame::Error(e) => assert!(
                String::from_utf8_lossy(&e).starts_with("ERR Teleport: database connection error"),
                "{e:?}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new shared connection"
        );
    }
    assert_eq!(idle.call(&["GET", "k"]).await, bulk("v"));
    assert_eq!(creds.calls(), 3, "first, admin's own, second shared");

    // When no new shared connection can be had, a session hears why
    // instead of being hung up on.
    assert_eq!(
        admin
            .call(&["CONFIG", "SET", "requirepass", "rotated"])
            .await,
        simple("OK")
    );
    assert_eq!(
        admin
            .call(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
            .await,
        Frame::Integer(1)
    );
    // Once the engine has seen the shared connection go (new sessions
    // then fail to connect), the idle session's next command needs a new
    // one.
    loop {
        let mut fresh = proxy.conn().await;
        fresh.send(&["PING"]).await;
        if let Frame::Error(_) = fresh.read().await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the engine did not notice"
        );
    }
    let e = error_text(&idle.call(&["GET", "k"]).await);
    assert!(
        e.starts_with("ERR Teleport: database connection error"),
        "{e}"
    );
}

#[tokio::test]
async fn pipeline_of_1000_commands_keeps_order() {
    let (_server, _creds, proxy) = setup().await;
    let mut c = proxy.conn().await;
    let mut batch = Vec::new();
    for _ in 0..1000 {
        batch.extend(Frame::command(["INCR", "counter"]).to_bytes());
    }
    c.raw(&batch).await;
    for i in 1..=1000 {
        assert_eq!(c.read().await, Frame::Integer(i));
    }
    assert_eq!(proxy.events().len(), 1000);

    // redis-cli --pipe, a mass insert of 1,000 commands.
    let mut input = Vec::new();
    for i in 0..1000 {
        input
            .extend(Frame::command(["SET", &format!("key:{i}"), &format!("value {i}")]).to_bytes());
    }
    let mut child = tokio::process::Command::new("/usr/bin/redis-cli")
        .args(["-h", "127.0.0.1", "-p", &proxy.port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&input).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("errors: 0, replies: 1000"),
        "{:?} {text} {err}",
        out.status
    );
    assert_eq!(proxy.cli(&["GET", "key:999"]).await.trim(), "value 999");
}

#[tokio::test]
async fn hello_3_gives_resp3_replies() {
    let (_server, _creds, proxy) = setup().await;
    let mut c = proxy.conn().await;
    let hello = c.call(&["HELLO", "3"]).await;
    let Frame::Map(fields) = hello else {
        panic!("HELLO 3 answered {hello:?}")
    };
    assert!(
        fields.contains(&(bulk("proto"), Frame::Integer(3))),
        "{fields:?}"
    );
    assert_eq!(
        c.call(&["HSET", "h", "field", "value"]).await,
        Frame::Integer(1)
    );
    assert_eq!(
        c.call(&["HGETALL", "h"]).await,
        Frame::Map(vec![(bulk("field"), bulk("value"))])
    );
    assert_eq!(c.call(&["SADD", "s", "m"]).await, Frame::Integer(1));
    assert_eq!(
        c.call(&["SMEMBERS", "s"]).await,
        Frame::Set(vec![bulk("m")])
    );
    assert_eq!(c.call(&["GET", "missing"]).await, Frame::Null);

    // redis-cli -3 (HELLO 3 at connect) prints a map.
    let out = proxy.cli(&["-3", "HGETALL", "h"]).await;
    assert!(out.contains("field") && out.contains("value"), "{out}");
    let out = proxy.cli(&["-3", "HELLO", "3"]).await;
    assert!(out.contains("proto 3"), "{out}");
}

#[tokio::test]
async fn multi_exec_on_the_pinned_connection() {
    let (_server, _creds, proxy) = setup().await;
    let mut c = proxy.conn().await;
    assert_eq!(c.call(&["MULTI"]).await, simple("OK"));
    assert_eq!(c.call(&["SET", "a", "1"]).await, simple("QUEUED"));
    assert_eq!(c.call(&["INCR", "a"]).await, simple("QUEUED"));
    assert_eq!(
        c.call(&["EXEC"]).await,
        Frame::Array(vec![simple("OK"), Frame::Integer(2)])
    );
    // WATCH + a concurrent change aborts the transaction.
    assert_eq!(c.call(&["WATCH", "a"]).await, simple("OK"));
    assert_eq!(proxy.cli(&["SET", "a", "changed"]).await.trim(), "OK");
    assert_eq!(c.call(&["MULTI"]).await, simple("OK"));
    assert_eq!(c.call(&["INCR", "a"]).await, simple("QUEUED"));
    assert_eq!(c.call(&["EXEC"]).await, Frame::NullArray);
}

#[tokio::test]
async fn subscribe_and_publish() {
    let (_server, _creds, proxy) = setup().await;
    let mut sub = proxy.conn().await;
    sub.send(&["SUBSCRIBE", "news", "sport"]).await;
    assert_eq!(
        sub.read().await,
        Frame::Array(vec![bulk("subscribe"), bulk("news"), Frame::Integer(1)])
    );
    assert_eq!(
        sub.read().await,
        Frame::Array(vec![bulk("subscribe"), bulk("sport"), Frame::Integer(2)])
    );
    assert_eq!(proxy.cli(&["PUBLISH", "news", "extra"]).await.trim(), "1");
    assert_eq!(
        sub.read().await,
        Frame::Array(vec![bulk("message"), bulk("news"), bulk("extra")])
    );
    sub.send(&["PSUBSCRIBE", "w*"]).await;
    assert_eq!(
        sub.read().await,
        Frame::Array(vec![bulk("psubscribe"), bulk("w*"), Frame::Integer(3)])
    );
    assert_eq!(proxy.cli(&["PUBLISH", "weather", "rain"]).await.trim(), "1");
    assert_eq!(
        sub.read().await,
        Frame::Array(vec![
            bulk("pmessage"),
            bulk("w*"),
            bulk("weather"),
            bulk("rain")
        ])
    );

    // RESP3: the message is a push frame.
    let mut sub3 = proxy.conn().await;
    assert!(matches!(sub3.call(&["HELLO", "3"]).await, Frame::Map(_)));
    sub3.send(&["SUBSCRIBE", "news"]).await;
    assert_eq!(
        sub3.read().await,
        Frame::Push(vec![bulk("subscribe"), bulk("news"), Frame::Integer(1)])
    );
    assert_eq!(proxy.cli(&["PUBLISH", "news", "again"]).await.trim(), "2");
    assert_eq!(
        sub3.read().await,
        Frame::Push(vec![bulk("message"), bulk("news"), bulk("again")])
    );
    assert_eq!(
        sub.read().await,
        Frame::Array(vec![bulk("message"), bulk("news"), bulk("again")])
    );
    assert_eq!(sub3.call(&["PING"]).await, simple("PONG"));
}

#[tokio::test]
async fn wrongpass_after_rotation_is_retried_transparently() {
    let (_server, creds, proxy) = setup().await;
    let mut old = proxy.conn().await;
    assert_eq!(old.call(&["SET", "k", "v"]).await, simple("OK"));
    // The key is rotated on the server; the provider's cache is stale once.
    const NEW: &str = "rotated-secondary-key";
    assert_eq!(
        old.call(&["CONFIG", "SET", "requirepass", NEW]).await,
        simple("OK")
    );
    *creds.current.lock().unwrap() = NEW.into();
    *creds.stale.lock().unwrap() = Some(PW.into());
    let before = creds.calls();
    let mut fresh = proxy.conn().await;
    // On the shared connection, authenticated before the rotation.
    assert_eq!(fresh.call(&["GET", "k"]).await, bulk("v"));
    assert_eq!(creds.calls(), before);
    // SELECT needs a connection of the session's own: a new AUTH, refused
    // once.
    assert_eq!(fresh.call(&["SELECT", "0"]).await, simple("OK"));
    assert_eq!(fresh.call(&["GET", "k"]).await, bulk("v"));
    assert_eq!(creds.calls() - before, 2, "asked again after WRONGPASS");
    // The open session goes on.
    assert_eq!(old.call(&["GET", "k"]).await, bulk("v"));
    // The rotated password was not audited.
    let config = proxy
        .events()
        .into_iter()
        .find(|e| e.name == "CONFIG")
        .unwrap();
    assert_eq!(config.args, ["SET", "requirepass", "******"]);

    // Wrong twice: a Teleport error when the session needs a connection,
    // then the session ends.
    *creds.current.lock().unwrap() = "wrong".into();
    let mut denied = proxy.conn().await;
    denied.send(&["SELECT", "0"]).await;
    let e = error_text(&denied.read().await);
    assert!(
        e.starts_with("ERR Teleport: database authentication failed: WRONGPASS"),
        "{e}"
    );
    assert_eq!(denied.try_read().await, None);
}

/// Each way of failing to reach the database is a kind of its own, with
/// its source: callers match on it, never on text.
#[tokio::test]
async fn backend_failures_are_typed() {
    use redis_proxy::{AuthError, EngineError, TlsError};
    let server = RedisServer::start_tls(PW);
    // Nothing listens: the address and the OS error.
    let port = free_port();
    let closed = redis_proxy::Backend::new("127.0.0.1", port, None, TestCreds::new(PW));
    match closed.connect().await {
        Err(EngineError::Connect { addr, source }) => {
            assert_eq!(addr, format!("127.0.0.1:{port}"));
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    // A certificate this client does not trust: the handshake fails.
    let untrusting = redis_proxy::Backend::new(
        "localhost",
        server.port,
        Some(redis_proxy::tls_config(rustls::RootCertStore::empty()).unwrap()),
        TestCreds::new(PW),
    );
    assert!(matches!(
        untrusting.connect().await,
        Err(EngineError::Tls(TlsError::Handshake(_)))
    ));
    // Every password refused: the database's own refusal.
    let wrong = server.backend(TestCreds::new("wrong"));
    match wrong.connect().await {
        Err(EngineError::Auth(AuthError::Refused(text))) => {
            assert!(text.starts_with("WRONGPASS"), "{text}")
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn garbage_closes_the_session_with_an_error() {
    let (_server, _creds, proxy) = setup().await;
    assert_garbage_ends_connections(&proxy).await;
    // Replies to what came before the garbage are delivered first.
    let mut c = proxy.conn().await;
    let mut bytes = Frame::command(["PING"]).to_bytes();
    bytes.extend_from_slice(b"*2\r\n:1\r\n");
    c.raw(&bytes).await;
    assert_eq!(c.read().await, simple("PONG"));
    assert!(error_text(&c.read().await).starts_with("ERR Teleport: Protocol error: expected '$'"));
    assert_eq!(c.try_read().await, None);
    // The service goes on.
    assert_eq!(proxy.cli(&["PING"]).await.trim(), "PONG");
}

#[tokio::test]
async fn configured_limits_apply_to_clients() {
    let server = RedisServer::start_tls(PW);
    let proxy = Proxy::start(server.backend(TestCreds::new(PW)), bulk_limited()).await;
    assert_bulk_limited(&proxy).await;
}

#[tokio::test]
async fn auth_is_local_and_redacted_in_order() {
    let (_server, _creds, proxy) = setup().await;
    let mut c = proxy.conn().await;
    // One write: the local AUTH answer keeps its place between backend replies.
    let mut batch = Vec::new();
    for cmd in [
        &["SET", "a", "1"][..],
        &["AUTH", "hunter2"],
        &["GET", "a"],
        &["AUTH", "default", "hunter2"],
        &["RESET"],
        &["CLIENT", "REPLY", "OFF"],
        &["INCR", "a"],
    ] {
        batch.extend(Frame::command(cmd).to_bytes());
    }
    c.raw(&batch).await;
    assert_eq!(c.read().await, simple("OK"));
    assert_eq!(c.read().await, simple("OK"));
    assert_eq!(c.read().await, bulk("1"));
    assert_eq!(c.read().await, simple("OK"));
    assert_eq!(
        error_text(&c.read().await),
        "ERR Teleport: RESET is not supported"
    );
    assert_eq!(
        error_text(&c.read().await),
        "ERR Teleport: CLIENT REPLY is not supported"
    );
    assert_eq!(c.read().await, Frame::Integer(2));
    // HELLO with AUTH: the credentials are dropped, the rest is forwarded.
    let hello = c
        .call(&["HELLO", "3", "AUTH", "default", "hunter2", "SETNAME", "me"])
        .await;
    assert!(matches!(hello, Frame::Map(_)), "{hello:?}");
    assert_eq!(c.call(&["CLIENT", "GETNAME"]).await, bulk("me"));

    let events = proxy.events();
    // Only the engine's own refusals are marked refused.
    let refused: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| e.refused.clone().map(|r| (e.query(), r)))
        .collect();
    assert_eq!(
        refused,
        [
            ("RESET".to_string(), "RESET is not supported".to_string()),
            (
                "CLIENT REPLY OFF".to_string(),
                "CLIENT REPLY is not supported".to_string()
            )
        ]
    );
    let queries: Vec<String> = events.iter().map(|e| e.query()).collect();
    assert!(
        queries.iter().all(|q| !q.contains("hunter2")),
        "{queries:?}"
    );
    assert!(queries.contains(&"AUTH ******".to_string()), "{queries:?}");
    assert!(
        queries.contains(&"AUTH ****** ******".to_string()),
        "{queries:?}"
    );
    assert!(
        queries.contains(&"HELLO 3 AUTH ****** ****** SETNAME me".to_string()),
        "{queries:?}"
    );
    assert_eq!(events.len(), 9);
}

#[tokio::test]
async fn plain_backend_without_password_and_user_auth() {
    let server = RedisServer::start_plain();
    let proxy = Proxy::start(
        server.backend(TestCreds::new("")),
        SessionOptions::default(),
    )
    .await;
    assert_eq!(proxy.cli(&["SET", "p", "q"]).await.trim(), "OK");
    // An ACL user: the engine sends AUTH <user> <password>.
    assert_eq!(
        proxy
            .cli(&["ACL", "SETUSER", "app", "on", ">apppw", "~*", "+@all"])
            .await
            .trim(),
        "OK"
    );
    let creds = std::sync::Arc::new(TestCreds {
        username: Some("app".into()),
        current: std::sync::Mutex::new("apppw".into()),
        stale: std::sync::Mutex::new(None),
        calls: Default::default(),
    });
    let as_app = Proxy::start(server.backend(creds), SessionOptions::default()).await;
    assert_eq!(as_app.cli(&["ACL", "WHOAMI"]).await.trim(), "app");
    assert_eq!(as_app.cli(&["GET", "p"]).await.trim(), "q");
}

#[tokio::test]
async fn tls_name_is_verified() {
    let server = RedisServer::start_tls(PW);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(
            server.ca_der.clone(),
        ))
        .unwrap();
    let tls = redis_proxy::tls_config(roots).unwrap();
    // The certificate is for localhost, not 127.0.0.1.
    let backend =
        redis_proxy::Backend::new("127.0.0.1", server.port, Some(tls), TestCreds::new(PW));
    let proxy = Proxy::start(backend, SessionOptions::default()).await;
    assert_tls_to_the_database_fails(&proxy).await;
}

#[tokio::test]
async fn large_values_and_long_replies_stream_through() {
    let (_server, _creds, proxy) = setup().await;
    let mut c = proxy.conn().await;
    let big = "v".repeat(3 * 1024 * 1024);
    assert_eq!(c.call(&["SET", "big", &big]).await, simple("OK"));
    assert_eq!(c.call(&["GET", "big"]).await, bulk(&big));
    // A 100,000-element reply arrives in many reads, then a local answer
    // must still come after it, not inside it.
    let mut batch = Vec::new();
    for chunk in 0..100 {
        let mut cmd = vec!["RPUSH".to_string(), "list".to_string()];
        cmd.extend((0..1000).map(|i| format!("item-{}", chunk * 1000 + i)));
        batch.extend(Frame::command(&cmd).to_bytes());
    }
    c.raw(&batch).await;
    for chunk in 0..100 {
        assert_eq!(c.read().await, Frame::Integer((chunk + 1) * 1000));
    }
    let mut batch = Frame::command(["LRANGE", "list", "0", "-1"]).to_bytes();
    batch.extend(Frame::command(["AUTH", "x"]).to_bytes());
    c.raw(&batch).await;
    let Frame::Array(items) = c.read().await else {
        panic!("LRANGE")
    };
    assert_eq!(items.len(), 100_000);
    assert_eq!(items[99_999], bulk("item-99999"));
    assert_eq!(c.read().await, simple("OK"));
}

/// Credentials that expire quickly, like Microsoft Entra tokens: a user
/// whose password is a fresh "token" per call.
struct ExpiringCreds {
    calls: std::sync::atomic::AtomicUsize,
    valid_for: std::time::Duration,
}

#[async_trait::async_trait]
impl redis_proxy::CredentialProvider for ExpiringCreds {
    async fn credentials(&self) -> Result<redis_proxy::Credentials, redis_proxy::CredentialError> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(redis_proxy::Credentials {
            username: Some("entra-object-id".into()),
            password: format!("token-{n}"),
            valid_for: Some(self.valid_for),
        })
    }
}

fn auth_calls(info: &Frame) -> u64 {
    let Frame::Bulk(text) = info else {
        panic!("INFO answered {info:?}")
    };
    let text = String::from_utf8_lossy(text);
    text.lines()
        .find_map(|l| l.strip_prefix("cmdstat_auth:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A TLS redis-server with an "Entra" user that takes any token (the
/// server cannot check JWTs), an admin session with the server's password,
/// and a proxy whose credentials are tokens valid for 1.2 s.
struct Entra {
    _server: RedisServer,
    _admin_proxy: Proxy,
    admin: Conn,
    creds: std::sync::Arc<ExpiringCreds>,
    proxy: Proxy,
}

impl Entra {
    async fn start() -> Entra {
        let server = RedisServer::start_tls(PW);
        let admin_proxy = Proxy::start(
            server.backend(TestCreds::new(PW)),
            SessionOptions::default(),
        )
        .await;
        let mut admin = admin_proxy.conn().await;
        assert_eq!(
            admin
                .call(&[
                    "ACL",
                    "SETUSER",
                    "entra-object-id",
                    "on",
                    "nopass",
                    "~*",
                    "&*",
                    "+@all"
                ])
                .await,
            simple("OK")
        );
        let creds = std::sync::Arc::new(ExpiringCreds {
            calls: Default::default(),
            valid_for: std::time::Duration::from_millis(1200),
        });
        let proxy = Proxy::start(server.backend(creds.clone()), SessionOptions::default()).await;
        Entra {
            _server: server,
            _admin_proxy: admin_proxy,
            admin,
            creds,
            proxy,
        }
    }
}

#[tokio::test]
async fn renewal_waits_for_an_open_transaction() {
    // The server and the admin proxy stay bound: they live for the test.
    let Entra {
        _server,
        _admin_proxy,
        admin: _,
        creds,
        proxy,
    } = Entra::start().await;
    let mut c = proxy.conn().await;
    assert_eq!(c.call(&["MULTI"]).await, simple("OK"));
    let fetched = creds.calls.load(std::sync::atomic::Ordering::SeqCst);
    // Let the renewal come due (at 900 ms) while the transaction is open: a
    // time-based behaviour, so the test waits out the time.
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    assert_eq!(c.call(&["SET", "tx", "1"]).await, simple("QUEUED"));
    // EXEC answers for the client's commands only (an engine AUTH queued in
    // the transaction would add its own +OK).
    assert_eq!(c.call(&["EXEC"]).await, Frame::Array(vec![simple("OK")]));
    // Renewed once the transaction is over.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while creds.calls.load(std::sync::atomic::Ordering::SeqCst) == fetched {
        assert!(
            std::time::Instant::now() < deadline,
            "not renewed after EXEC"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(c.call(&["GET", "tx"]).await, bulk("1"));
}

/// `CLIENT LIST` lines of the connections subscribed to something.
async fn subscribed_clients(admin: &mut Conn) -> Vec<String> {
    let Frame::Bulk(list) = admin.call(&["CLIENT", "LIST"]).await else {
        panic!("CLIENT LIST")
    };
    String::from_utf8_lossy(&list)
        .lines()
        .filter(|l| l.contains(" sub=1 "))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn subscribers_are_renewed_in_resp2_and_resp3() {
    // The server and the admin proxy stay bound: they live for the test.
    let Entra {
        _server,
        _admin_proxy,
        mut admin,
        creds: _,
        proxy,
    } = Entra::start().await;

    // A RESP2 subscriber (Redis refuses AUTH on such a connection, so the
    // engine switches the backend to RESP3 and translates). Replies keep
    // their order in a pipeline.
    let mut sub = proxy.conn().await;
    sub.raw(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n*1\r\n$4\r\nPING\r\n")
        .await;
    assert_eq!(
        sub.read().await,
        Frame::Array(vec![bulk("subscribe"), bulk("news"), Frame::Integer(1)])
    );
    assert_eq!(sub.read().await, Frame::Array(vec![bulk("pong"), bulk("")]));
    // RESP2's rules for a subscribed connection still hold.
    assert_eq!(
        sub.call(&["PING"]).await,
        Frame::Array(vec![bulk("pong"), bulk("")])
    );
    assert_eq!(
        sub.call(&["PING", "hi"]).await,
        Frame::Array(vec![bulk("pong"), bulk("hi")])
    );
    let e = error_text(&sub.call(&["GET", "k"]).await);
    assert!(e.starts_with("ERR Can't execute 'get'"), "{e}");
    // A RESP3 subscriber.
    let mut sub3 = proxy.conn().await;
    assert!(matches!(sub3.call(&["HELLO", "3"]).await, Frame::Map(_)));
    sub3.send(&["SUBSCRIBE", "news"]).await;
    assert_eq!(
        sub3.read().await,
        Frame::Push(vec![bulk("subscribe"), bulk("news"), Frame::Integer(1)])
    );

    // Both subscribed connections send AUTH again before the credentials
    // expire (AUTH becomes their last command).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let subscribed = subscribed_clients(&mut admin).await;
        assert_eq!(subscribed.len(), 2, "{subscribed:?}");
        if subscribed.iter().all(|l| l.contains(" cmd=auth ")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "subscribers not re-authenticated: {subscribed:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Messages still arrive in each protocol's shape, and no reply to the
    // engine's AUTH reached a client.
    assert_eq!(
        admin.call(&["PUBLISH", "news", "later"]).await,
        Frame::Integer(2)
    );
    assert_eq!(
        sub.read().await,
        Frame::Array(vec![bulk("message"), bulk("news"), bulk("later")])
    );
    assert_eq!(
        sub3.read().await,
        Frame::Push(vec![bulk("message"), bulk("news"), bulk("later")])
    );
    assert_eq!(
        sub.call(&["PING"]).await,
        Frame::Array(vec![bulk("pong"), bulk("")])
    );
    assert_eq!(sub3.call(&["PING"]).await, simple("PONG"));
    assert_eq!(sub3.call(&["ACL", "WHOAMI"]).await, bulk("entra-object-id"));

    // The last UNSUBSCRIBE takes the RESP2 session back to plain RESP2.
    sub.send(&["UNSUBSCRIBE"]).await;
    assert_eq!(
        sub.read().await,
        Frame::Array(vec![bulk("unsubscribe"), bulk("news"), Frame::Integer(0)])
    );
    assert_eq!(
        admin.call(&["HSET", "h", "f", "v"]).await,
        Frame::Integer(1)
    );
    assert_eq!(
        sub.call(&["HGETALL", "h"]).await,
        Frame::Array(vec![bulk("f"), bulk("v")])
    );
    assert_eq!(sub.call(&["PING"]).await, simple("PONG"));
    // The engine's protocol switches and AUTHs are not the user's commands:
    // the one HELLO audited is the RESP3 client's.
    let events = proxy.events();
    assert!(events.iter().all(|e| e.name != "AUTH"));
    let hellos: Vec<_> = events.iter().filter(|e| e.name == "HELLO").collect();
    assert_eq!(hellos.len(), 1, "{hellos:?}");
}

/// Sessions of a cache reached with Entra tokens share one connection too:
/// the engine renews its token in place, between batches, and a refused
/// renewal reaches the sessions as an error.
#[tokio::test]
async fn expiring_credentials_are_renewed_on_the_shared_connection() {
    // The server and the admin proxy stay bound: they live for the test.
    let Entra {
        _server,
        _admin_proxy,
        mut admin,
        creds,
        proxy,
    } = Entra::start().await;
    // The ids of the connections logged in with tokens.
    async fn token_connections(admin: &mut Conn) -> Vec<String> {
        let Frame::Bulk(list) = admin.call(&["CLIENT", "LIST"]).await else {
            panic!("CLIENT LIST")
        };
        String::from_utf8_lossy(&list)
            .lines()
            .filter(|l| l.contains(" user=entra-object-id "))
            .filter_map(|l| l.split(' ').next().map(str::to_string))
            .collect()
    }
    let mut a = proxy.conn().await;
    let mut b = proxy.conn().await;
    assert_eq!(a.call(&["SET", "k", "0"]).await, simple("OK"));
    assert_eq!(b.call(&["GET", "k"]).await, bulk("0"));
    let shared = token_connections(&mut admin).await;
    assert_eq!(shared.len(), 1, "{shared:?}");
    let before = auth_calls(&admin.call(&["INFO", "commandstats"]).await);
    // Both sessions busy through several token lifetimes (1.2 s each).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut n = 0;
    while creds.calls.load(std::sync::atomic::Ordering::SeqCst) < 5 {
        for s in [&mut a, &mut b] {
            let mut batch = Vec::new();
            for _ in 0..20 {
                batch.extend_from_slice(b"*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n");
            }
            s.raw(&batch).await;
            for _ in 0..20 {
                n += 1;
                assert_eq!(s.read().await, Frame::Integer(n));
            }
        }
        assert!(std::time::Instant::now() < deadline, "no renewal");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Still that one connection, renewed in place (no reply to the
    // engine's AUTH reached a session: the counts above are exact).
    assert_eq!(token_connections(&mut admin).await, shared);
    let after = auth_calls(&admin.call(&["INFO", "commandstats"]).await);
    assert!(
        after >= before + 3,
        "AUTH on the shared connection: {before} -> {after}"
    );
    assert!(proxy.events().iter().all(|e| e.name != "AUTH"));
    // A refused renewal: the sessions hear it.
    let e = first_error_once_tokens_are_refused(&mut admin, &mut a, &["GET", "k"]).await;
    assert!(
        e.starts_with("ERR Teleport: database connection error"),
        "{e}"
    );
}

#[tokio::test]
async fn expiring_credentials_are_renewed_on_open_connections() {
    // The server and the admin proxy stay bound: they live for the test.
    let Entra {
        _server,
        _admin_proxy,
        mut admin,
        creds,
        proxy,
    } = Entra::start().await;
    let mut c = proxy.conn().await;
    assert_eq!(c.call(&["SET", "k", "0"]).await, simple("OK"));
    let before = auth_calls(&admin.call(&["INFO", "commandstats"]).await);
    // Keep the session busy with pipelines while the credentials expire:
    // every reply still arrives in order and none is the engine's AUTH.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut rounds = 0;
    loop {
        let mut batch = Vec::new();
        for _ in 0..50 {
            batch.extend_from_slice(b"*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n");
        }
        c.raw(&batch).await;
        for i in 1..=50 {
            assert_eq!(c.read().await, Frame::Integer(rounds * 50 + i));
        }
        rounds += 1;
        let calls = creds.calls.load(std::sync::atomic::Ordering::SeqCst);
        if calls >= 3 && rounds >= 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no re-authentication");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // An idle session is renewed too.
    let idle_before = auth_calls(&admin.call(&["INFO", "commandstats"]).await);
    let idle_deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while auth_calls(&admin.call(&["INFO", "commandstats"]).await) <= idle_before {
        assert!(
            std::time::Instant::now() < idle_deadline,
            "idle session not renewed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let after = auth_calls(&admin.call(&["INFO", "commandstats"]).await);
    assert!(
        after >= before + 2,
        "AUTH sent again on the open connection: {before} -> {after}"
    );
    assert_eq!(c.call(&["ACL", "WHOAMI"]).await, bulk("entra-object-id"));
    // Not audited: re-authentication is the engine's, not the user's.
    assert!(proxy.events().iter().all(|e| e.name != "AUTH"));

    // A refused renewal ends the session with a Teleport error.
    let e = first_error_once_tokens_are_refused(&mut admin, &mut c, &["PING"]).await;
    assert!(e.starts_with("ERR Teleport: "), "{e}");
}

/// Turns the token user off, then sends `cmd` on `c` until the answer is
/// an error (a renewal was refused, the next comes within a token's life);
/// that error's text.
async fn first_error_once_tokens_are_refused(
    admin: &mut Conn,
    c: &mut Conn,
    cmd: &[&str],
) -> String {
    assert_eq!(
        admin
            .call(&["ACL", "SETUSER", "entra-object-id", "off"])
            .await,
        simple("OK")
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match c.call(cmd).await {
            f @ Frame::Error(_) => return error_text(&f),
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
        assert!(std::time::Instant::now() < deadline, "no refusal");
    }
}

#[tokio::test]
async fn client_auth_may_only_name_the_sessions_user() {
    let server = RedisServer::start_tls(PW);
    let opts = SessionOptions {
        db_user: Some("default".into()),
        ..SessionOptions::default()
    };
    let proxy = Proxy::start(server.backend(TestCreds::new(PW)), opts).await;
    let mut c = proxy.conn().await;
    // The password is not checked (the engine authenticates itself).
    assert_eq!(c.call(&["AUTH", "anything"]).await, simple("OK"));
    assert_eq!(c.call(&["AUTH", "default", "anything"]).await, simple("OK"));
    let e = error_text(&c.call(&["AUTH", "admin", "anything"]).await);
    assert!(
        e.starts_with("ERR Teleport: this session is for database user \"default\""),
        "{e}"
    );
    let e = error_text(&c.call(&["AUTH"]).await);
    assert!(e.contains("wrong number of arguments"), "{e}");
    // The session goes on as before.
    assert_eq!(c.call(&["PING"]).await, simple("PONG"));

    let alice = SessionOptions {
        db_user: Some("alice".into()),
        ..SessionOptions::default()
    };
    let proxy = Proxy::start(server.backend(TestCreds::new(PW)), alice).await;
    let mut c = proxy.conn().await;
    let e = error_text(&c.call(&["AUTH", "anything"]).await);
    assert!(e.contains("AUTH as \"default\" is not allowed"), "{e}");
    assert_eq!(c.call(&["AUTH", "alice", "x"]).await, simple("OK"));
}

/// `AUTH` and `HELLO ... AUTH` naming another user than the session's are
/// refused alike (same error, nothing changed: protocol and name stay), on
/// the shared connection and on a connection of the session's own; the
/// session's own user is accepted in both.
#[tokio::test]
async fn hello_auth_as_another_user_is_refused_as_auth_is() {
    let server = RedisServer::start_tls(PW);
    for share in [true, false] {
        let opts = SessionOptions {
            db_user: Some("default".into()),
            share_backend: share,
            ..SessionOptions::default()
        };
        let proxy = Proxy::start(server.backend(TestCreds::new(PW)), opts).await;
        let mut c = proxy.conn().await;
        let auth = auth_as_other_is_refused(&mut c).await;
        for hello in [
            &["HELLO", "3", "AUTH", "other", "pw"][..],
            &["HELLO", "3", "AUTH", "other", "pw", "SETNAME", "x"],
            &["HELLO", "2", "SETNAME", "x", "auth", "other", "pw"],
            &["HELLO", "3", "AUTH", "default", "pw", "AUTH", "other", "pw"],
        ] {
            let e = error_text(&c.call(hello).await);
            assert_eq!(e, auth, "share {share}: {hello:?}");
        }
        // Inline, as a client typing it would send it.
        c.raw(b"HELLO 3 AUTH other pw\r\n").await;
        assert_eq!(error_text(&c.read().await), auth);
        // Nothing changed: no name, still RESP2.
        assert_eq!(c.call(&["CLIENT", "GETNAME"]).await, Frame::NullBulk);
        assert_eq!(c.call(&["GET", "none"]).await, Frame::NullBulk);
        // The session's own user is accepted.
        let hello = c
            .call(&["HELLO", "3", "AUTH", "default", "pw", "SETNAME", "me"])
            .await;
        assert!(matches!(hello, Frame::Map(_)), "share {share}: {hello:?}");
        assert_eq!(c.call(&["GET", "none"]).await, Frame::Null);
        assert_eq!(c.call(&["CLIENT", "GETNAME"]).await, bulk("me"));
        // Audited as refused by the engine, secrets redacted.
        assert_eq!(
            proxy.refused_queries(),
            [
                "AUTH ****** ******",
                "HELLO 3 AUTH ****** ******",
                "HELLO 3 AUTH ****** ****** SETNAME x",
                "HELLO 2 SETNAME x auth ****** ******",
                "HELLO 3 AUTH ****** ****** AUTH ****** ******",
                "HELLO 3 AUTH ****** ******",
            ],
            "share {share}"
        );
    }
}

/// Inline commands (telnet, nc, health checks, redis-benchmark's
/// `PING_INLINE`) are served like arrays on both paths: answered, audited
/// as arrays are, `AUTH` answered locally and redacted.
#[tokio::test]
async fn inline_commands_are_served_and_audited_like_arrays() {
    let server = RedisServer::start_tls(PW);
    for share in [true, false] {
        let opts = SessionOptions {
            db_user: Some("default".into()),
            share_backend: share,
            ..SessionOptions::default()
        };
        let proxy = Proxy::start(server.backend(TestCreds::new(PW)), opts).await;
        let mut c = proxy.conn().await;
        c.raw(b"PING\r\n\r\nAUTH hunter2\r\nAUTH other hunter2\nSET il \"a b\\x21\"\r\nGET il\r\n")
            .await;
        assert_eq!(c.read().await, simple("PONG"));
        assert_eq!(c.read().await, simple("OK"));
        assert!(error_text(&c.read().await).contains("AUTH as \"other\" is not allowed"));
        assert_eq!(c.read().await, simple("OK"));
        assert_eq!(c.read().await, bulk("a b!"));
        // Inline and RESP mixed in one write, then a command that needs a
        // connection of the session's own.
        let mut mixed = Frame::command(["INCR", "ic"]).to_bytes();
        mixed.extend_from_slice(b"INCR ic\r\nSELECT 0\r\nINCR ic\r\n");
        c.raw(&mixed).await;
        for want in [
            Frame::Integer(1),
            Frame::Integer(2),
            simple("OK"),
            Frame::Integer(3),
        ] {
            assert_eq!(c.read().await, want, "share {share}");
        }
        assert_eq!(c.call(&["DEL", "ic"]).await, Frame::Integer(1));
        // redis-cli reads commands from stdin as lines too.
        let queries = proxy.queries();
        assert_eq!(
            queries,
            [
                "PING",
                "AUTH ******",
                "AUTH ****** ******",
                "SET il a b!",
                "GET il",
                "INCR ic",
                "INCR ic",
                "SELECT 0",
                "INCR ic",
                "DEL ic",
            ],
            "share {share}"
        );
        assert!(!format!("{:?}", proxy.events()).contains("hunter2"));
    }
}

/// Differential: random inline input (quoting, escapes, `\xHH`, blanks,
/// blank lines, `\n` or `\r\n`, unbalanced quotes, RESP mixed in) gets the
/// same replies through the engine, on the shared connection and on
/// connections of their own, as from redis-server directly; protocol
/// errors end all three after the same replies (the engine's error text
/// carries its `Teleport: ` prefix). Redis's 64 KiB limit on an inline line
/// too.
#[tokio::test]
async fn inline_commands_answer_as_redis_answers_them() {
    let server = RedisServer::start_plain();
    let shared = Proxy::start(
        server.backend(TestCreds::new("")),
        SessionOptions::default(),
    )
    .await;
    let alone = Proxy::start(
        server.backend(TestCreds::new("")),
        SessionOptions {
            share_backend: false,
            ..SessionOptions::default()
        },
    )
    .await;
    // Key prefixes per target (none a hex digit: `\x4` may precede one).
    let targets = [(server.port, "r"), (shared.port, "s"), (alone.port, "o")];
    const SENTINEL: &str = "end-of-round";
    /// Replies until the sentinel's, or the end of the connection.
    async fn replies(port: u16, input: &[u8]) -> Vec<Frame> {
        until_closed(
            port,
            &[input, &Frame::command(["ECHO", SENTINEL]).to_bytes()].concat(),
        )
        .await
    }
    /// Replies with `tag` (a target's key prefix, which Redis quotes in
    /// some errors) written as `#`.
    async fn tagged(port: u16, input: &[u8], tag: &str) -> Vec<Frame> {
        let mut got = replies(port, input).await;
        for f in &mut got {
            if let Frame::Error(e) = f {
                *f = Frame::Error(
                    String::from_utf8_lossy(e)
                        .replace(tag, "#")
                        .into_bytes()
                        .into(),
                );
            }
        }
        got
    }
    async fn until_closed(port: u16, input: &[u8]) -> Vec<Frame> {
        let mut c = Conn::connect(port).await;
        let bytes = input.to_vec();
        c.raw(&bytes).await;
        let mut got = Vec::new();
        while let Some(f) = c.try_read().await {
            if f == bulk(SENTINEL) {
                return got;
            }
            got.push(match f {
                Frame::Error(e) => Frame::Error(
                    String::from_utf8_lossy(&e)
                        .replacen("ERR Teleport: Protocol error", "ERR Protocol error", 1)
                        .into_bytes()
                        .into(),
                ),
                other => other,
            });
        }
        got.push(simple("<closed>"));
        got
    }

    let mut seed: u64 = 0x5851_f42d_4c95_7f2d;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) as usize) % n
    };
    const NAMES: &[(&str, usize, bool)] = &[
        // name, arguments after it, whether the first is a key
        ("PING", 0, false),
        ("PING", 1, false),
        ("ECHO", 1, false),
        ("echo", 2, false),
        ("SET", 2, true),
        ("GET", 1, true),
        ("APPEND", 2, true),
        ("STRLEN", 1, true),
        ("EXISTS", 1, true),
        ("NOPE", 2, false),
    ];
    const VALUE_BYTES: &[u8] = b"ab z\t\"'\\\xc3\xa9\x01\x7f\xffnx0";
    let mut failures = 0;
    for round in 0..150 {
        // One session: the same structure rendered with a key prefix per
        // target.
        let lines = 1 + next(8);
        let mut plan = Vec::new();
        for _ in 0..lines {
            let (name, n, keyed) = NAMES[next(NAMES.len())];
            let mut words: Vec<(Vec<u8>, bool)> = vec![(name.as_bytes().to_vec(), false)];
            for i in 0..n {
                if i == 0 && keyed {
                    words.push((b"K".to_vec(), true));
                } else {
                    let len = next(6);
                    let v: Vec<u8> = (0..len)
                        .map(|_| VALUE_BYTES[next(VALUE_BYTES.len())])
                        .collect();
                    words.push((v, false));
                }
            }
            let style: Vec<usize> = words.iter().map(|_| next(4)).collect();
            let seps: Vec<usize> = words.iter().map(|_| next(5)).collect();
            plan.push((words, style, seps, next(12), next(2), next(10)));
        }
        let render = |prefix: &str| {
            let mut out = Vec::new();
            for (words, style, seps, broken, crlf, extra) in &plan {
                if *extra == 0 {
                    out.extend_from_slice(b"  \r\n");
                }
                if *extra == 1 {
                    out.extend(Frame::command(["ECHO", "resp"]).to_bytes());
                }
                for (i, ((w, key), (st, sep))) in
                    words.iter().zip(style.iter().zip(seps)).enumerate()
                {
                    out.extend_from_slice(match (i, sep) {
                        (0, 0) => &b"\x0b "[..],
                        (0, _) => b"",
                        (_, 0) => b"\t",
                        (_, 1) => b"  ",
                        _ => b" ",
                    });
                    let w: Vec<u8> = if *key {
                        format!("{prefix}{round}:k").into_bytes()
                    } else {
                        w.clone()
                    };
                    let bare =
                        !w.is_empty() && w.iter().all(|b| b.is_ascii_alphanumeric() || *b >= 0x80);
                    match st {
                        0 if bare => out.extend_from_slice(&w),
                        0 | 1 => {
                            out.push(b'"');
                            for &b in &w {
                                match b {
                                    b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                                    b'\t' => out.extend_from_slice(b"\\t"),
                                    b' '..=b'~' => out.push(b),
                                    _ => out.extend_from_slice(format!("\\x{b:02X}").as_bytes()),
                                }
                            }
                            out.push(b'"');
                        }
                        2 => {
                            out.push(b'\'');
                            for &b in &w {
                                if b == b'\'' {
                                    out.extend_from_slice(b"\\'");
                                } else {
                                    out.push(b);
                                }
                            }
                            out.push(b'\'');
                        }
                        _ => {
                            // Escapes Redis reads in double quotes.
                            out.extend_from_slice(b"\"\\n\\r\\a\\b\\q\\x4");
                            out.extend_from_slice(
                                &w.iter()
                                    .filter(|b| b.is_ascii_alphanumeric())
                                    .copied()
                                    .collect::<Vec<u8>>(),
                            );
                            out.push(b'"');
                        }
                    }
                }
                match broken {
                    0 => out.extend_from_slice(b" \"open"),
                    1 => out.extend_from_slice(b" 'a'b"),
                    2 => out.extend_from_slice(b" \"a\"b"),
                    _ => {}
                }
                out.extend_from_slice(if *crlf == 0 { b"\r\n" } else { b"\n" });
            }
            out
        };
        let mut answers = Vec::new();
        for (port, prefix) in targets {
            answers.push(tagged(port, &render(prefix), &format!("{prefix}{round}")).await);
        }
        if answers[0] != answers[1] || answers[0] != answers[2] {
            failures += 1;
            eprintln!(
                "round {round}: {:?}\n direct {:?}\n shared {:?}\n own    {:?}",
                String::from_utf8_lossy(&render("r")),
                answers[0],
                answers[1],
                answers[2]
            );
        }
    }
    assert_eq!(failures, 0, "inline sessions answered differently");

    // Redis's limit: a line of 64 KiB is taken, one byte more without a
    // newline is a protocol error.
    let mut longest = b"ECHO ".to_vec();
    longest.resize(64 * 1024, b'a');
    longest.push(b'\n');
    let direct = replies(server.port, &longest).await;
    assert_eq!(direct.len(), 1);
    assert_eq!(replies(shared.port, &longest).await, direct);
    assert_eq!(replies(alone.port, &longest).await, direct);
    let mut too_long = vec![b'a'; 64 * 1024 + 1];
    too_long[..5].copy_from_slice(b"ECHO ");
    let want = [
        Frame::Error("ERR Protocol error: too big inline request".into()),
        simple("<closed>"),
    ];
    for port in [server.port, shared.port, alone.port] {
        assert_eq!(until_closed(port, &too_long).await, want);
    }
}

/// An HTTP request (a web page posting to a local tunnel) is refused at
/// its `POST` or `Host:` line on both paths, as Redis refuses it; what
/// follows never runs.
#[tokio::test]
async fn http_requests_are_refused_before_anything_after_them_runs() {
    let server = RedisServer::start_tls(PW);
    for share in [true, false] {
        let opts = SessionOptions {
            share_backend: share,
            ..SessionOptions::default()
        };
        let proxy = Proxy::start(server.backend(TestCreds::new(PW)), opts).await;
        for request in [
            &b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nSET pwned 1\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nSET pwned 1\r\n",
        ] {
            let mut c = proxy.conn().await;
            c.raw(request).await;
            let mut last = None;
            while let Some(f) = c.try_read().await {
                last = Some(f);
            }
            let e = error_text(&last.unwrap());
            assert!(
                e.starts_with("ERR Teleport: Protocol error: this looks like HTTP"),
                "{e}"
            );
        }
        let mut c = proxy.conn().await;
        assert_eq!(c.call(&["EXISTS", "pwned"]).await, Frame::Integer(0));
    }
}
