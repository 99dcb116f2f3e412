//! `redis-benchmark` direct to the TLS redis-server and through the engine, in
//! the same run. Ignored by default; run with
//! `cargo test --release -p redis-proxy --test bench -- --ignored --nocapture`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use redis_proxy::SessionOptions;

const PW: &str = "bench-password";

async fn benchmark(args: &[&str], clients: u32, pipeline: u32) -> Vec<(String, f64, f64)> {
    let rows = tokio::time::timeout(
        std::time::Duration::from_secs(90),
        redis_benchmark(args, clients, pipeline),
    )
    .await
    .expect("redis-benchmark in 90 s");
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...
    rows.into_iter()
        .map(|f| (f[0].clone(), f[1].parse().unwrap(), f[4].parse().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn redis_benchmark_direct_vs_proxied() {
    let server = RedisServer::start_tls(PW);
    let proxy = Proxy::start(
        server.backend(TestCreds::new(PW)),
        SessionOptions::default(),
    )
    .await;
    // One backend connection per session from the start (as Teleport).
    let own = Proxy::start(
        server.backend(TestCreds::new(PW)),
        SessionOptions {
            share_backend: false,
            ..SessionOptions::default()
        },
    )
    .await;
    let ca = server
        .dir
        .path()
        .join("ca.pem")
        .to_string_lossy()
        .into_owned();
    let port = server.port.to_string();
    let direct = [
        "-h",
        "localhost",
        "-p",
        &port,
        "--tls",
        "--cacert",
        &ca,
        "-a",
        PW,
    ];
    let pport = proxy.port.to_string();
    let proxied = ["-h", "127.0.0.1", "-p", &pport];
    let oport = own.port.to_string();
    let unshared = ["-h", "127.0.0.1", "-p", &oport];
    for (c, p) in [(1, 1), (50, 1), (50, 16)] {
        let d = benchmark(&direct, c, p).await;
        let x = benchmark(&proxied, c, p).await;
        let o = benchmark(&unshared, c, p).await;
        for (((name, drps, dp50), (_, xrps, xp50)), (_, orps, op50)) in d.iter().zip(&x).zip(&o) {
            println!(
                "-c {c:>2} -P {p:>2} {name}: direct TLS {drps:.0} rps p50 {dp50:.3} ms | shared {xrps:.0} rps ({:.2}), p50 +{:.0} us | own connections {orps:.0} rps ({:.2}), p50 +{:.0} us",
                xrps / drps,
                (xp50 - dp50) * 1000.0,
                orps / drps,
                (op50 - dp50) * 1000.0
            );
        }
    }
}
