//! Stream open + 1 KiB echo round trip over the tunnel, against the same
//! echo over an already open plain TCP connection.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tunnel::{connector_fn, handler_fn, AgentTunnel, AsyncReadWrite, TunnelServer, TunnelStream};

fn main() {
    divan::main();
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn echo_loop<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[divan::bench]
fn tunnel_open_and_echo_1k(bencher: divan::Bencher) {
    let rt = runtime();
    let server = TunnelServer::new();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let srv = server.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let srv = srv.clone();
                // Without it, Nagle and delayed ACKs add ~40 ms per dial.
                sock.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let agent = tunnel::AgentInfo {
                        server_id: "bench".into(),
                        cluster: "c".into(),
                        roles: vec![],
                    };
                    let _ = srv.serve_agent(sock, agent).await;
                });
            }
        });
        let connector = connector_fn(move || async move {
            let sock = TcpStream::connect(addr).await?;
            sock.set_nodelay(true)?;
            Ok(Box::new(sock) as Box<dyn AsyncReadWrite>)
        });
        let handler = handler_fn(|_target: Vec<u8>, stream: TunnelStream| echo_loop(stream));
        let agent = AgentTunnel::new(connector, handler);
        tokio::spawn(agent.run(std::future::pending()));
        server
            .wait_connected("bench", Duration::from_secs(10))
            .await
            .unwrap();
    });
    let payload = vec![7u8; 1024];
    bencher.bench_local(|| {
        rt.block_on(async {
            let mut s = server.dial("bench", b"echo").await.unwrap();
            s.write_all(&payload).await.unwrap();
            let mut back = vec![0u8; payload.len()];
            s.read_exact(&mut back).await.unwrap();
        })
    });
}

#[divan::bench]
fn plain_tcp_echo_1k(bencher: divan::Bencher) {
    let rt = runtime();
    let mut client = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                sock.set_nodelay(true).unwrap();
                tokio::spawn(echo_loop(sock));
            }
        });
        let c = TcpStream::connect(addr).await.unwrap();
        c.set_nodelay(true).unwrap();
        c
    });
    let payload = vec![7u8; 1024];
    bencher.bench_local(|| {
        rt.block_on(async {
            client.write_all(&payload).await.unwrap();
            let mut back = vec![0u8; payload.len()];
            client.read_exact(&mut back).await.unwrap();
        })
    });
}
