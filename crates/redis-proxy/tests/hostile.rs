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
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), user.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        // The engine ended (no panic: the join handle carries a result).
        let _ = tokio::time::timeout(Duration::from_secs(5), engine)
            .await
            .unwrap()
            .unwrap();
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
