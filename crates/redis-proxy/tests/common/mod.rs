//! Test harness: a TLS redis-server with requirepass on a free port (killed on
//! drop), the engine behind a local TCP listener, and a raw RESP client.
#![allow(clippy::unwrap_used, dead_code)]

use bytes::BytesMut;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use redis_proxy::{
    resp, Backend, CommandEvent, CredentialProvider, Credentials, Frame, SessionOptions,
};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const WAIT: Duration = Duration::from_secs(15);
/// How long a test cluster may take to form (two cores shared with other
/// tests).
pub const FORM_WAIT: Duration = Duration::from_secs(60);

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A fresh CA and a server certificate for `localhost` only (no IP address),
/// written as `ca.pem`, `server.pem`, `server.key` in `dir`. Returns the CA
/// as PEM and DER.
pub fn write_certs(dir: &std::path::Path) -> (String, Vec<u8>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL clients (redis-cli, redis-benchmark) take a
    // leaf whose issuer equals its subject for self-signed.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "redis-proxy test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let ca_pem = ca.pem();
    let ca_der = ca.der().to_vec();
    std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    (ca_pem, ca_der)
}

/// rustls client configuration trusting one CA.
pub fn tls_trusting(ca_der: &[u8]) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(ca_der.to_vec()))
        .unwrap();
    redis_proxy::tls_config(roots).unwrap()
}

pub struct RedisServer {
    child: Child,
    pub port: u16,
    pub tls: bool,
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    pub dir: tempfile::TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    /// TLS-only redis-server (`--port 0`) requiring `password`, certificate
    /// for `localhost` from a fresh CA.
    pub fn start_tls(password: &str) -> RedisServer {
        Self::start(password, true)
    }

    /// Plain TCP redis-server without a password.
    pub fn start_plain() -> RedisServer {
        Self::start("", false)
    }

    fn start(password: &str, tls: bool) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, ca_der) = write_certs(dir.path());
        let deadline = Instant::now() + WAIT;
        // Parallel tests may be handed the same free port; the loser's
        // redis-server exits, so a port answering proves nothing. Ready is
        // our own server's log line; a server that exited is tried again
        // on another port.
        for _ in 0..5 {
            let port = free_port();
            let log = dir.path().join(format!("redis-{port}.log"));
            let mut cmd = Command::new("/usr/bin/redis-server");
            cmd.args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ]);
            cmd.arg("--dir").arg(dir.path());
            cmd.arg("--logfile").arg(&log);
            if tls {
                let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
                cmd.args(["--port", "0", "--tls-port", &port.to_string()]);
                cmd.args([
                    "--tls-cert-file",
                    &p("server.pem"),
                    "--tls-key-file",
                    &p("server.key"),
                ]);
                cmd.args([
                    "--tls-ca-cert-file",
                    &p("ca.pem"),
                    "--tls-auth-clients",
                    "no",
                ]);
            } else {
                cmd.args(["--port", &port.to_string()]);
            }
            if !password.is_empty() {
                cmd.args(["--requirepass", password]);
            }
            let mut child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            loop {
                if std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("Ready to accept connections")
                {
                    return RedisServer {
                        child,
                        port,
                        tls,
                        ca_pem,
                        ca_der,
                        dir,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "redis-server did not start on {port}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("redis-server could not take any of five free ports");
    }

    pub fn backend(&self, creds: Arc<dyn CredentialProvider>) -> Backend {
        let tls = self.tls.then(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(rustls_pki_types::CertificateDer::from(self.ca_der.clone()))
                .unwrap();
            redis_proxy::tls_config(roots).unwrap()
        });
        Backend::new("localhost", self.port, tls, creds)
    }
}

/// Credentials that can be rotated; `stale` is returned once (a cache that
/// has not seen the rotation yet), then `current`.
pub struct TestCreds {
    pub username: Option<String>,
    pub current: Mutex<String>,
    pub stale: Mutex<Option<String>>,
    pub calls: AtomicUsize,
}

impl TestCreds {
    pub fn new(password: &str) -> Arc<TestCreds> {
        Arc::new(TestCreds {
            username: None,
            current: Mutex::new(password.into()),
            stale: Mutex::new(None),
            calls: AtomicUsize::new(0),
        })
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl CredentialProvider for TestCreds {
    async fn credentials(&self) -> Result<Credentials, redis_proxy::CredentialError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let password = match self.stale.lock().unwrap().take() {
            Some(s) => s,
            None => self.current.lock().unwrap().clone(),
        };
        Ok(Credentials {
            username: self.username.clone(),
            password,
            valid_for: None,
        })
    }
}

/// The engine behind a local TCP listener.
pub struct Proxy {
    pub port: u16,
    pub events: Arc<Mutex<Vec<CommandEvent>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(backend: Backend, opts: SessionOptions) -> Proxy {
        Self::start_mode(backend, opts, false).await
    }

    /// The engine in cluster mode ([`redis_proxy::serve_cluster_session`]).
    pub async fn start_cluster(seed: Backend, opts: SessionOptions) -> Proxy {
        Self::start_mode(seed, opts, true).await
    }

    async fn start_mode(backend: Backend, opts: SessionOptions, cluster: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let backend = backend.clone();
                let ev = ev.clone();
                let opts = opts.clone();
                tokio::spawn(async move {
                    let audit = |e| ev.lock().unwrap().push(e);
                    let result = if cluster {
                        redis_proxy::serve_cluster_session(stream, &backend, opts, audit).await
                    } else {
                        redis_proxy::serve_session(stream, &backend, opts, audit).await
                    };
                    if let Err(e) = result {
                        eprintln!("session ended: {e}");
                    }
                });
            }
        });
        Proxy { port, events, task }
    }

    pub fn events(&self) -> Vec<CommandEvent> {
        self.events.lock().unwrap().clone()
    }

    /// The audited queries (secrets redacted), in order.
    pub fn queries(&self) -> Vec<String> {
        self.events().iter().map(CommandEvent::query).collect()
    }

    /// The audited queries the engine refused itself, in order.
    pub fn refused_queries(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e.refused.is_some())
            .map(CommandEvent::query)
            .collect()
    }

    pub async fn conn(&self) -> Conn {
        Conn::connect(self.port).await
    }

    /// Runs redis-cli against the proxy and returns its stdout.
    pub async fn cli(&self, args: &[&str]) -> String {
        tool_stdout(
            tokio::process::Command::new("/usr/bin/redis-cli")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(args),
        )
        .await
    }
}

/// Runs a tool (killed if the test gives up on it), asserts it succeeded and
/// returns its stdout.
pub async fn tool_stdout(cmd: &mut tokio::process::Command) -> String {
    let what = format!("{:?}", cmd.as_std());
    let out = cmd.kill_on_drop(true).output().await.unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `redis-benchmark` of SET and GET (random keys) with `args` (target and
/// credentials), `clients` clients and `pipeline` commands a request: the rows
/// of its CSV output, fields unquoted, without the header row.
pub async fn redis_benchmark(args: &[&str], clients: u32, pipeline: u32) -> Vec<Vec<String>> {
    let out = tool_stdout(
        tokio::process::Command::new("/usr/bin/redis-benchmark")
            .args(args)
            .args(["-t", "set,get", "-r", "10000", "--csv"])
            .args(["-n", if clients == 1 { "20000" } else { "200000" }])
            .args(["-c", &clients.to_string()])
            .args(["-P", &pipeline.to_string()]),
    )
    .await;
    out.lines()
        .filter(|l| l.starts_with('"') && !l.starts_with("\"test\""))
        .map(|l| {
            l.split(',')
                .map(|c| c.trim_matches('"').to_string())
                .collect()
        })
        .collect()
}

/// Protocol garbage, each on a connection of its own: an unbalanced quote in
/// an inline command, binary noise, bad lengths, absurd sizes. Every one is
/// answered with a protocol error, then the connection ends.
pub async fn assert_garbage_ends_connections(proxy: &Proxy) {
    for unbalanced in [&b"GET \"x\r\n"[..], b"GET 'x\r\n"] {
        let mut c = proxy.conn().await;
        c.raw(unbalanced).await;
        assert_eq!(
            error_text(&c.read().await),
            "ERR Teleport: Protocol error: unbalanced quotes in request",
            "{unbalanced:?}"
        );
        assert_eq!(c.try_read().await, None);
    }
    for noise in [
        &b"\x00\xff\xfe\r\n\x01"[..],
        b"*1\r\n$-5\r\n",
        b"*99999999999999\r\n",
        b"*1\r\n$999999999999\r\n",
        b"*1\r\n$3\r\nabcde\r\n",
        b"*1\nfoo",
    ] {
        let mut c = proxy.conn().await;
        c.raw(noise).await;
        let e = error_text(&c.read().await);
        assert!(
            e.starts_with("ERR Teleport: Protocol error"),
            "{noise:?}: {e}"
        );
        assert_eq!(c.try_read().await, None);
    }
}

/// A raw RESP client.
pub struct Conn {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    pub async fn connect(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, args: &[&str]) {
        self.stream
            .write_all(&Frame::command(args).to_bytes())
            .await
            .unwrap();
    }

    pub async fn raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next frame, or `None` at end of stream.
    pub async fn try_read(&mut self) -> Option<Frame> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some((f, n)) = resp::parse(&self.buf, &Default::default()).unwrap() {
                    let _ = self.buf.split_to(n);
                    return Some(f);
                }
                if self.stream.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                    assert!(
                        self.buf.is_empty(),
                        "partial frame at close: {:?}",
                        self.buf
                    );
                    return None;
                }
            }
        })
        .await
        .expect("reply in time")
    }

    pub async fn read(&mut self) -> Frame {
        self.try_read().await.expect("a frame before end of stream")
    }

    pub async fn call(&mut self, args: &[&str]) -> Frame {
        self.send(args).await;
        self.read().await
    }
}

/// A new connection to a proxy whose backend's TLS certificate does not
/// verify: the engine's error, then the end of the connection.
pub async fn assert_tls_to_the_database_fails(proxy: &Proxy) {
    let mut c = proxy.conn().await;
    let e = error_text(&c.read().await);
    assert!(
        e.starts_with("ERR Teleport: TLS to the database failed"),
        "{e}"
    );
    assert_eq!(c.try_read().await, None);
}

/// Session options with a 1024-byte limit on a client's bulk strings.
pub fn bulk_limited() -> SessionOptions {
    SessionOptions {
        limits: redis_proxy::Limits {
            max_bulk_len: 1024,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Under [`bulk_limited`]: a bulk of 1024 bytes is served, one of 1025 ends
/// the connection with the engine's error.
pub async fn assert_bulk_limited(proxy: &Proxy) {
    let mut c = proxy.conn().await;
    assert_eq!(c.call(&["SET", "k", &"x".repeat(1024)]).await, simple("OK"));
    c.send(&["SET", "k", &"x".repeat(1025)]).await;
    assert_eq!(
        error_text(&c.read().await),
        "ERR Teleport: Protocol error: bulk length 1025 exceeds the limit of 1024 bytes"
    );
    assert_eq!(c.try_read().await, None);
}

/// `AUTH other pw` in a session for the database user `default`: refused by
/// the engine; its error text.
pub async fn auth_as_other_is_refused(c: &mut Conn) -> String {
    let auth = error_text(&c.call(&["AUTH", "other", "pw"]).await);
    assert!(
        auth.starts_with(
            "ERR Teleport: this session is for database user \"default\"; AUTH as \"other\""
        ),
        "{auth}"
    );
    auth
}

pub fn simple(s: &str) -> Frame {
    Frame::Simple(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

pub fn bulk(s: &str) -> Frame {
    Frame::Bulk(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

pub fn error_text(f: &Frame) -> String {
    match f {
        Frame::Error(e) => String::from_utf8_lossy(e).into_owned(),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A 3-master TLS Redis Cluster (`--port 0`, TLS on the client, cluster bus
/// and replication ports) requiring a password, on free ports, with
/// certificates for `localhost` only: nodes report themselves as
/// `127.0.0.1`, so following them needs the seed's TLS name. Killed on drop.
pub struct RedisCluster {
    children: Vec<Option<Child>>,
    pub ports: Vec<u16>,
    pub ids: Vec<String>,
    pub password: String,
    pub ca_der: Vec<u8>,
    pub dir: tempfile::TempDir,
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Slot ranges of the three masters.
pub const CLUSTER_RANGES: [(u16, u16); 3] = [(0, 5460), (5461, 10922), (10923, 16383)];

impl RedisCluster {
    pub async fn start(password: &str) -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let (_, ca_der) = write_certs(dir.path());
        let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
        let mut used = std::collections::HashSet::new();
        let mut port = || loop {
            let p = free_port();
            if used.insert(p) {
                return p;
            }
        };
        let mut children = Vec::new();
        let mut ports = Vec::new();
        let mut buses = Vec::new();
        for i in 0..3 {
            let (tls_port, bus) = (port(), port());
            let mut cmd = Command::new("/usr/bin/redis-server");
            cmd.args(["--bind", "127.0.0.1", "--port", "0"])
                .args(["--tls-port", &tls_port.to_string()])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-port", &bus.to_string()])
                .args(["--cluster-config-file", &p(&format!("nodes-{i}.conf"))])
                .args(["--cluster-announce-ip", "127.0.0.1"])
                .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
                .args(["--tls-cert-file", &p("server.pem")])
                .args(["--tls-key-file", &p("server.key")])
                .args(["--tls-ca-cert-file", &p("ca.pem")])
                .args(["--tls-auth-clients", "no"])
                .args(["--requirepass", password, "--masterauth", password])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path());
            let child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            children.push(Some(child));
            ports.push(tls_port);
            buses.push(bus);
        }
        let mut cluster = RedisCluster {
            children,
            ports,
            ids: Vec::new(),
            password: password.to_string(),
            ca_der,
            dir,
        };
        let deadline = Instant::now() + WAIT;
        for &port in &cluster.ports {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "redis-server did not start on {port}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        for (i, (lo, hi)) in CLUSTER_RANGES.into_iter().enumerate() {
            let Frame::Bulk(id) = cluster.call(i, &["CLUSTER", "MYID"]).await else {
                panic!("CLUSTER MYID")
            };
            cluster.ids.push(String::from_utf8_lossy(&id).into_owned());
            let r = cluster
                .call(
                    i,
                    &["CLUSTER", "ADDSLOTSRANGE", &lo.to_string(), &hi.to_string()],
                )
                .await;
            assert_eq!(r, simple("OK"));
        }
        // MEET again every few seconds until the nodes know each other: on
        // a busy machine a handshake may time out, and Redis does not retry
        // it by itself.
        let deadline = Instant::now() + FORM_WAIT;
        loop {
            for (port, bus) in cluster.ports.iter().zip(&buses).skip(1) {
                let (port, bus) = (port.to_string(), bus.to_string());
                let r = cluster
                    .call(0, &["CLUSTER", "MEET", "127.0.0.1", &port, &bus])
                    .await;
                assert_eq!(r, simple("OK"));
            }
            let round = Instant::now() + Duration::from_secs(5);
            while Instant::now() < round && !cluster.is_ok().await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if cluster.is_ok().await {
                return cluster;
            }
            assert!(Instant::now() < deadline, "the cluster did not form");
        }
    }

    /// Polls until every node reports `cluster_state:ok` and knows all
    /// three masters.
    pub async fn wait_ok(&self) {
        let deadline = Instant::now() + WAIT;
        while !self.is_ok().await {
            assert!(Instant::now() < deadline, "the cluster is not ok");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether every node reports `cluster_state:ok` and knows all three
    /// masters.
    async fn is_ok(&self) -> bool {
        let mut ok = true;
        for i in 0..3 {
            let info = self.call(i, &["CLUSTER", "INFO"]).await;
            let text = text(&info);
            ok &= text.contains("cluster_state:ok") && text.contains("cluster_known_nodes:3");
            if let Frame::Array(ranges) = self.call(i, &["CLUSTER", "SLOTS"]).await {
                ok &= ranges.len() == 3;
            } else {
                ok = false;
            }
        }
        ok
    }

    /// The engine's seed: the first node, by host name.
    pub fn backend(&self, creds: Arc<dyn CredentialProvider>) -> Backend {
        Backend::new(
            "localhost",
            self.ports[0],
            Some(tls_trusting(&self.ca_der)),
            creds,
        )
    }

    /// One command sent straight to node `i` (a new connection).
    pub async fn call(&self, i: usize, args: &[&str]) -> Frame {
        let creds = Arc::new(redis_proxy::StaticCredentials(Credentials::password(
            None,
            self.password.clone(),
        )));
        let backend = Backend::new(
            "localhost",
            self.ports[i],
            Some(tls_trusting(&self.ca_der)),
            creds,
        );
        let mut stream = backend.connect().await.unwrap();
        stream
            .write_all(&Frame::command(args).to_bytes())
            .await
            .unwrap();
        let mut buf = BytesMut::new();
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some((f, _)) = resp::parse(&buf, &Default::default()).unwrap() {
                    return f;
                }
                assert!(stream.read_buf(&mut buf).await.unwrap() > 0, "node closed");
            }
        })
        .await
        .unwrap()
    }

    /// The node serving `slot` (initial layout).
    pub fn node_of_slot(&self, slot: u16) -> usize {
        CLUSTER_RANGES
            .iter()
            .position(|&(lo, hi)| (lo..=hi).contains(&slot))
            .unwrap()
    }

    /// `cmdstat_<name>:calls=` of node `i`.
    pub async fn calls(&self, i: usize, name: &str) -> u64 {
        self.cmdstat(i, name, "calls").await
    }

    /// A field of `cmdstat_<name>` (`calls`, `rejected_calls`, ...) of node `i`.
    pub async fn cmdstat(&self, i: usize, name: &str, field: &str) -> u64 {
        let info = self.call(i, &["INFO", "commandstats"]).await;
        let key = format!("cmdstat_{name}:");
        let Some(line) = text(&info)
            .lines()
            .find_map(|l| l.strip_prefix(&key).map(str::to_string))
        else {
            return 0;
        };
        line.split(',')
            .find_map(|kv| kv.strip_prefix(field)?.strip_prefix('='))
            .map(|n| n.parse().unwrap())
            .unwrap_or(0)
    }

    /// Stops node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The text of a bulk, simple or verbatim string reply.
pub fn text(f: &Frame) -> String {
    match f {
        Frame::Bulk(b) | Frame::Simple(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Verbatim { data, .. } => String::from_utf8_lossy(data).into_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}
