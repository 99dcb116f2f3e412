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

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
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
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        let port = free_port();
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
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = RedisServer {
            child,
            port,
            tls,
            ca_pem,
            ca_der,
            dir,
        };
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        server
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
    async fn credentials(&self) -> Result<Credentials, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let password = match self.stale.lock().unwrap().take() {
            Some(s) => s,
            None => self.current.lock().unwrap().clone(),
        };
        Ok(Credentials {
            username: self.username.clone(),
            password,
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
                    if let Err(e) = redis_proxy::serve_session(stream, &backend, opts, |e| {
                        ev.lock().unwrap().push(e)
                    })
                    .await
                    {
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

    pub async fn conn(&self) -> Conn {
        Conn::connect(self.port).await
    }

    /// Runs redis-cli against the proxy and returns its stdout.
    pub async fn cli(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::new("/usr/bin/redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
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
