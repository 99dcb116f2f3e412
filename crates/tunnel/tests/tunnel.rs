//! End-to-end tests of the tunnel over TCP loopback.
#![allow(clippy::unwrap_used)]

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tunnel::{
    connector_fn, handler_fn, AgentInfo, AgentTunnel, AsyncReadWrite, TunnelConfig, TunnelError,
    TunnelServer, TunnelState, TunnelStream,
};

const WAIT: Duration = Duration::from_secs(10);

fn info(id: &str) -> AgentInfo {
    AgentInfo {
        server_id: id.to_string(),
        cluster: "example.com".into(),
        roles: vec!["App".into()],
    }
}

/// Reads up to and including `\n`, one byte at a time (so nothing past the
/// line is consumed).
async fn read_line<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<String> {
    let mut out = Vec::new();
    loop {
        let mut b = [0u8; 1];
        r.read_exact(&mut b).await?;
        if b[0] == b'\n' {
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.push(b[0]);
        if out.len() > 8192 {
            return Err(io::Error::other("line too long"));
        }
    }
}

/// A test proxy: accepts TCP, reads the agent's server ID from a first line
/// (standing in for the verified certificate) and serves the tunnel.
/// Aborting the handle drops the listener and every connection.
fn start_proxy(server: TunnelServer, listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((mut sock, _)) = accepted else { continue };
                    let server = server.clone();
                    conns.spawn(async move {
                        let Ok(id) = read_line(&mut sock).await else { return };
                        let _ = server.serve_agent(sock, info(&id)).await;
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    })
}

/// An agent whose handler answers `<name>|<target>\n` and then echoes.
struct Agent {
    state: watch::Receiver<TunnelState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Agent {
    fn start(addr: SocketAddr, id: &str, name: &str, config: TunnelConfig) -> Agent {
        let id = id.to_string();
        let connector = connector_fn(move || {
            let id = id.clone();
            async move {
                let mut sock = TcpStream::connect(addr).await?;
                sock.write_all(format!("{id}\n").as_bytes()).await?;
                Ok(Box::new(sock) as Box<dyn AsyncReadWrite>)
            }
        });
        let name = name.to_string();
        let handler = handler_fn(move |target: Vec<u8>, mut stream: TunnelStream| {
            let name = name.clone();
            async move {
                let hello = format!("{name}|{}\n", String::from_utf8_lossy(&target));
                if stream.write_all(hello.as_bytes()).await.is_err() {
                    return;
                }
                let (mut r, mut w) = tokio::io::split(stream);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            }
        });
        let tunnel = AgentTunnel::new(connector, handler).with_config(config);
        let state = tunnel.state();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tunnel.run(async move {
            let _ = stopped.await;
        }));
        Agent {
            state,
            stop: Some(stop),
            task,
        }
    }

    /// Waits at most [`WAIT`] for the agent's state to satisfy `reached`; `what` names it.
    async fn wait_state(&self, what: &str, reached: impl FnMut(&TunnelState) -> bool) {
        let mut state = self.state.clone();
        let waited = tokio::time::timeout(WAIT, state.wait_for(reached)).await;
        assert!(waited.is_ok(), "the agent did not reach {what} in {WAIT:?}");
        waited.unwrap().unwrap();
    }

    /// Starts an agent `node-1` with `config` dialling `addr`, waits for `reached` (see
    /// [`Agent::wait_state`]) and stops it.
    async fn reaches(
        addr: SocketAddr,
        config: TunnelConfig,
        what: &str,
        reached: impl FnMut(&TunnelState) -> bool,
    ) {
        let agent = Agent::start(addr, "node-1", "one", config);
        agent.wait_state(what, reached).await;
        agent.shutdown().await;
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("run did not end after shutdown")
            .unwrap();
        assert_eq!(*self.state.borrow(), TunnelState::Stopped);
    }
}

/// Dials, checks the greeting, echoes `payload`; returns the agent's name.
async fn echo(server: &TunnelServer, id: &str, target: &str, payload: Vec<u8>) -> String {
    let stream = server.dial(id, target.as_bytes()).await.unwrap();
    echo_on(stream, target, payload).await.unwrap()
}

/// Like `echo`, for polling while registrations change: `None` when the dial
/// or the stream fails (a dial can reach a connection whose agent has just
/// gone, before the proxy has read its end). Wrong bytes still fail the test.
async fn try_echo(server: &TunnelServer, id: &str) -> Option<String> {
    let stream = server.dial(id, b"x").await.ok()?;
    echo_on(stream, "x", b"ping".to_vec()).await.ok()
}

/// Checks the greeting and the echo of `payload`; an I/O error is returned,
/// wrong content panics.
async fn echo_on(mut stream: TunnelStream, target: &str, payload: Vec<u8>) -> io::Result<String> {
    let hello = read_line(&mut stream).await?;
    let (name, got_target) = hello.split_once('|').unwrap();
    assert_eq!(got_target, target);
    let name = name.to_string();
    // Both halves in this task: a yamux stream keeps one waker for its
    // outgoing frames, so halves driven by two tasks can miss a wake-up (the
    // product drives each stream from one task too).
    let (mut r, mut w) = tokio::io::split(stream);
    let expected = payload.clone();
    let writer = async {
        w.write_all(&payload).await?;
        w.shutdown().await
    };
    let mut back = Vec::new();
    let reader = r.read_to_end(&mut back);
    let (wrote, read) = tokio::join!(writer, reader);
    wrote?;
    read?;
    if back.len() < expected.len() && expected.starts_with(&back) {
        // The far end went away mid-echo: an I/O failure, not wrong bytes.
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("echo for {target} cut at {} bytes", back.len()),
        ));
    }
    assert_eq!(back.len(), expected.len(), "length of echo for {target}");
    assert!(back == expected, "echo differs for {target}");
    Ok(name)
}

/// Polls `f` until it is true or the deadline passes.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn proxy() -> (TunnelServer, SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = TunnelServer::new();
    let task = start_proxy(server.clone(), listener);
    (server, addr, task)
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (j.wrapping_mul(31) ^ i.wrapping_mul(7)) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_streams_echo_distinct_payloads() {
    let (server, addr, _proxy) = proxy().await;
    let agent = Agent::start(addr, "node-1", "one", TunnelConfig::default());
    server.wait_connected("node-1", WAIT).await.unwrap();

    let mut tasks = JoinSet::new();
    for i in 0..100usize {
        let server = server.clone();
        let len = if i == 0 { 1024 * 1024 } else { 1 + i * 997 };
        tasks.spawn(async move {
            let target = format!(r#"{{"kind":"app","name":"app-{i}"}}"#);
            let name = echo(&server, "node-1", &target, payload(i, len)).await;
            assert_eq!(name, "one");
        });
    }
    let mut done = 0;
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
        done += 1;
    }
    assert_eq!(done, 100);
    // Streams were released: the same connection keeps working.
    echo(&server, "node-1", "again", payload(7, 10)).await;
    agent.shutdown().await;
}

#[tokio::test]
async fn unknown_server_id_is_not_connected() {
    let (server, _addr, _proxy) = proxy().await;
    let err = server.dial("nope", b"{}").await.unwrap_err();
    assert!(
        matches!(err, TunnelError::NotConnected(ref id) if id == "nope"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "agent nope is not connected to this proxy");
    let err = server
        .wait_connected("nope", Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, TunnelError::WaitTimeout(_)), "{err:?}");
    assert!(server.connected().is_empty());
}

#[tokio::test]
async fn oversized_target_is_refused_by_dial() {
    let (server, addr, _proxy) = proxy().await;
    let agent = Agent::start(addr, "node-1", "one", TunnelConfig::default());
    server.wait_connected("node-1", WAIT).await.unwrap();
    let err = server.dial("node-1", &[b'x'; 4097]).await.unwrap_err();
    assert!(matches!(err, TunnelError::TargetTooLarge(4097)), "{err:?}");
    // The largest allowed target goes through intact.
    let target = "t".repeat(4096);
    echo(&server, "node-1", &target, b"ok".to_vec()).await;
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reconnects_after_proxy_restart() {
    let (server, addr, proxy_task) = proxy().await;
    let agent = Agent::start(addr, "node-1", "one", TunnelConfig::default());
    server.wait_connected("node-1", WAIT).await.unwrap();
    echo(&server, "node-1", "before", payload(1, 1000)).await;

    // The proxy goes away: listener and connections dropped.
    proxy_task.abort();
    let _ = proxy_task.await;
    agent
        .wait_state("a lost connection", |s| {
            !matches!(s, TunnelState::Connected(1))
        })
        .await;

    // A new proxy process on the same port.
    let listener = {
        let deadline = Instant::now() + WAIT;
        loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "rebind {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    };
    let server2 = TunnelServer::new();
    let _proxy2 = start_proxy(server2.clone(), listener);
    server2.wait_connected("node-1", WAIT).await.unwrap();
    assert_eq!(
        echo(&server2, "node-1", "after", payload(2, 5000)).await,
        "one"
    );
    assert!(matches!(*agent.state.borrow(), TunnelState::Connected(n) if n >= 2));
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_and_a_newer_connection_replaces_the_older() {
    let (server, addr, _proxy) = proxy().await;
    let a = Agent::start(addr, "node-a", "a1", TunnelConfig::default());
    let b = Agent::start(addr, "node-b", "b", TunnelConfig::default());
    server.wait_connected("node-a", WAIT).await.unwrap();
    server.wait_connected("node-b", WAIT).await.unwrap();
    let ids: Vec<String> = server
        .connected()
        .into_iter()
        .map(|i| i.server_id)
        .collect();
    assert_eq!(ids, vec!["node-a", "node-b"]);
    assert_eq!(echo(&server, "node-a", "x", b"1".to_vec()).await, "a1");
    assert_eq!(echo(&server, "node-b", "x", b"2".to_vec()).await, "b");

    // A second connection with the same server ID takes the dials.
    let a2 = Agent::start(addr, "node-a", "a2", TunnelConfig::default());
    eventually("dials to reach a2", || async {
        try_echo(&server, "node-a").await.as_deref() == Some("a2")
    })
    .await;
    assert_eq!(server.connected().len(), 2);
    assert_eq!(echo(&server, "node-b", "x", b"4".to_vec()).await, "b");

    // When it ends only its own registration goes: the older one serves again.
    a2.shutdown().await;
    eventually("dials to fall back to a1", || async {
        try_echo(&server, "node-a").await.as_deref() == Some("a1")
    })
    .await;

    a.shutdown().await;
    eventually("node-a to disconnect", || async {
        !server.is_connected("node-a")
    })
    .await;
    assert!(matches!(
        server.dial("node-a", b"x").await,
        Err(TunnelError::NotConnected(_))
    ));
    assert_eq!(echo(&server, "node-b", "x", b"6".to_vec()).await, "b");
    b.shutdown().await;
}

#[tokio::test]
async fn agent_shutdown_ends_run_and_unregisters() {
    let (server, addr, _proxy) = proxy().await;
    let agent = Agent::start(addr, "node-1", "one", TunnelConfig::default());
    server.wait_connected("node-1", WAIT).await.unwrap();
    agent.shutdown().await;
    eventually("the proxy to notice", || async {
        !server.is_connected("node-1")
    })
    .await;
}

#[tokio::test]
async fn shutdown_ends_run_while_backing_off() {
    // Nothing listens on this port.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let config = TunnelConfig {
        backoff_min: Duration::from_secs(30),
        ..TunnelConfig::default()
    };
    Agent::reaches(addr, config, "backoff", |s| *s == TunnelState::Backoff).await;
}

#[tokio::test]
async fn agent_notices_a_silent_proxy_and_reconnects() {
    // Accepts TCP and never answers: only the keepalive can tell.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let config = TunnelConfig {
        keepalive_interval: Duration::from_millis(100),
        keepalive_timeout: Duration::from_millis(200),
        ..TunnelConfig::default()
    };
    let reconnected = |s: &TunnelState| matches!(s, TunnelState::Connected(n) if *n >= 2);
    let what = "a reconnection after unanswered keepalives";
    Agent::reaches(addr, config, what, reconnected).await;
}

#[tokio::test]
async fn keepalives_keep_a_quiet_connection_up() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = TunnelServer::with_config(TunnelConfig {
        agent_idle_timeout: Duration::from_millis(1000),
        ..TunnelConfig::default()
    });
    let _proxy = start_proxy(server.clone(), listener);
    let config = TunnelConfig {
        keepalive_interval: Duration::from_millis(50),
        keepalive_timeout: Duration::from_millis(2000),
        ..TunnelConfig::default()
    };
    let agent = Agent::start(addr, "node-1", "one", config);
    server.wait_connected("node-1", WAIT).await.unwrap();
    // Several idle timeouts pass; the pings keep the first connection.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(3000) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(*agent.state.borrow(), TunnelState::Connected(1));
    echo(&server, "node-1", "x", b"still here".to_vec()).await;
    agent.shutdown().await;
}
