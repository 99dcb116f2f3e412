//! Arbitrary client bytes never crash the engine and never hang it.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use redis_proxy::{run, SessionOptions};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A fake backend answering `+OK` to every complete command it receives.
async fn fake_backend(mut s: tokio::io::DuplexStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut parser = redis_proxy::resp::CommandParser::default();
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        while let Ok(Some((_, len))) = parser.parse(&buf, &Default::default()) {
            buf.drain(..len);
            if s.write_all(b"+OK\r\n").await.is_err() {
                return;
            }
        }
    }
}

/// Everything the engine sends the user until it closes the connection, and
/// how the engine ended; each within 5 s.
async fn until_the_end(
    user: &mut tokio::io::DuplexStream,
    engine: tokio::task::JoinHandle<Result<(), redis_proxy::EngineError>>,
) -> (Vec<u8>, Result<(), redis_proxy::EngineError>) {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), user.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), engine)
        .await
        .unwrap()
        .unwrap();
    (out, result)
}

fn session(input: Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (client, mut user) = tokio::io::duplex(1 << 16);
        let (server, backend) = tokio::io::duplex(1 << 16);
        tokio::spawn(fake_backend(backend));
        let opts = SessionOptions {
            drain_timeout: Duration::from_millis(200),
            ..Default::default()
        };
        let (cr, cw) = tokio::io::split(client);
        let engine = tokio::spawn(run(cr, cw, server, opts, |_| {}));
        user.write_all(&input).await.unwrap();
        user.shutdown().await.unwrap();
        // The engine ended (no panic: the join handle carries a result).
        let (out, _) = until_the_end(&mut user, engine).await;
        // Whatever came back is valid RESP.
        let mut rest = &out[..];
        while !rest.is_empty() {
            let (_, n) = redis_proxy::resp::parse(rest, &Default::default())
                .unwrap()
                .unwrap();
            rest = &rest[n..];
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        session(input);
    }

    #[test]
    fn resp_shaped_noise(parts in proptest::collection::vec(
        prop_oneof![
            Just(b"*1\r\n$4\r\nPING\r\n".to_vec()),
            Just(b"*2\r\n$4\r\nAUTH\r\n$1\r\nx\r\n".to_vec()),
            Just(b"*1\r\n$5\r\nRESET\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"*".to_vec()),
            Just(b"$".to_vec()),
            Just(b"-1\r\n".to_vec()),
            Just(b"99999999999999999999\r\n".to_vec()),
            // Inline commands and their quoting.
            Just(b"PING\r\n".to_vec()),
            Just(b"AUTH x y\n".to_vec()),
            Just(b"HELLO 3 AUTH u p\r\n".to_vec()),
            Just(b"ECHO \"a\\x4".to_vec()),
            Just(b"'q'".to_vec()),
            Just(b"\"".to_vec()),
            Just(b" \t\x0b".to_vec()),
            Just(b"\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..8),
        ],
        0..30,
    )) {
        session(parts.concat());
    }
}

/// An HTTP request sent to the engine (a web page posting to a local
/// tunnel: cross-protocol scripting) is refused at its `POST` or `Host:`
/// line, as Redis refuses it, and nothing from it or after it reaches the
/// server, whether or not the server would have refused it itself.
#[test]
fn http_requests_never_reach_the_server() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for (request, replies_before) in [
            (&b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nFLUSHALL\r\n"[..], 0),
            (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nFLUSHALL\r\n", 1),
            (b"*1\r\n$4\r\nPOST\r\n*1\r\n$8\r\nFLUSHALL\r\n", 0),
        ] {
            let (client, mut user) = tokio::io::duplex(1 << 16);
            let (server, mut backend) = tokio::io::duplex(1 << 16);
            let opts = SessionOptions {
                drain_timeout: Duration::from_millis(500),
                ..Default::default()
            };
            // The backend answers what it gets and records it.
            let recorder = tokio::spawn(async move {
                let mut got = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut parser = redis_proxy::resp::CommandParser::default();
                let mut pending = Vec::new();
                loop {
                    match backend.read(&mut chunk).await {
                        Ok(0) | Err(_) => return got,
                        Ok(n) => pending.extend_from_slice(&chunk[..n]),
                    }
                    while let Ok(Some((args, len))) = parser.parse(&pending, &Default::default()) {
                        got.push(String::from_utf8_lossy(&pending[args[0].clone()]).into_owned());
                        pending.drain(..len);
                        if backend.write_all(b"-ERR wrong number of arguments\r\n").await.is_err() {
                            return got;
                        }
                    }
                }
            });
            let (cr, cw) = tokio::io::split(client);
            let engine = tokio::spawn(run(cr, cw, server, opts, |_| {}));
            user.write_all(request).await.unwrap();
            let (out, result) = until_the_end(&mut user, engine).await;
            assert!(result.is_err(), "{result:?}");
            let text = String::from_utf8_lossy(&out);
            assert_eq!(text.matches("\r\n").count(), replies_before + 1, "{text}");
            assert!(
                text.ends_with("-ERR Teleport: Protocol error: this looks like HTTP (POST or Host:), not Redis: connection closed (cross-protocol scripting?)\r\n"),
                "{text}"
            );
            let got = recorder.await.unwrap();
            assert_eq!(got.len(), replies_before, "{got:?}");
            assert!(!got.iter().any(|c| c == "FLUSHALL" || c.eq_ignore_ascii_case("post")));
        }
    });
}
