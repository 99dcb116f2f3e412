//! Connections to the Redis server: TCP or TLS (SNI = host), authenticated by
//! the engine itself with credentials from a [`CredentialProvider`].

use crate::resp::{self, Frame, Limits};
use crate::EngineError;
use bytes::BytesMut;
use rustls_pki_types::ServerName;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// What the engine sends as `AUTH`: `AUTH <username> <password>` or, without
/// a username, `AUTH <password>`. An empty password means "send no AUTH".
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"******")
            .finish()
    }
}

/// Source of backend credentials (Azure access keys, Entra tokens, static).
/// Called for every new backend connection, and once more after the server
/// answers `WRONGPASS` (rotated keys), so implementations that cache must
/// refresh on the second call.
#[async_trait::async_trait]
pub trait CredentialProvider: Send + Sync {
    async fn credentials(&self) -> Result<Credentials, String>;
}

/// A fixed password (and optional username).
pub struct StaticCredentials(pub Credentials);

#[async_trait::async_trait]
impl CredentialProvider for StaticCredentials {
    async fn credentials(&self) -> Result<Credentials, String> {
        Ok(self.0.clone())
    }
}

/// The backend stream: plain TCP or rustls.
pub enum BackendStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for BackendStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BackendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_flush(cx),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connection factory for one Redis server.
#[derive(Clone)]
pub struct Backend {
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    credentials: Arc<dyn CredentialProvider>,
    connect_timeout: Duration,
}

/// rustls client configuration trusting `roots` (aws-lc-rs provider).
pub fn tls_config(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, EngineError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EngineError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

impl Backend {
    /// `tls`: `None` for plain TCP, else the client configuration (see
    /// [`tls_config`]); the server name sent (SNI) and verified is `host`.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        tls: Option<Arc<rustls::ClientConfig>>,
        credentials: Arc<dyn CredentialProvider>,
    ) -> Self {
        Backend {
            host: host.into(),
            port,
            tls,
            credentials,
            connect_timeout: Duration::from_secs(10),
        }
    }

    async fn open(&self) -> Result<BackendStream, EngineError> {
        let addr = (self.host.as_str(), self.port);
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| EngineError::Connect(format!("{}:{}: timed out", self.host, self.port)))?
            .map_err(|e| EngineError::Connect(format!("{}:{}: {e}", self.host, self.port)))?;
        let _ = tcp.set_nodelay(true);
        let Some(cfg) = &self.tls else {
            return Ok(BackendStream::Plain(tcp));
        };
        let name =
            ServerName::try_from(self.host.clone()).map_err(|e| EngineError::Tls(e.to_string()))?;
        let tls = tokio::time::timeout(
            self.connect_timeout,
            tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| EngineError::Tls("handshake timed out".into()))?
        .map_err(|e| EngineError::Tls(e.to_string()))?;
        Ok(BackendStream::Tls(Box::new(tls)))
    }

    /// Opens an authenticated connection. A `WRONGPASS` answer makes the
    /// engine ask the provider again and retry once on the same connection.
    pub async fn connect(&self) -> Result<BackendStream, EngineError> {
        let mut stream = self.open().await?;
        let mut buf = BytesMut::with_capacity(512);
        for attempt in 0..2 {
            let creds = self
                .credentials
                .credentials()
                .await
                .map_err(EngineError::Credentials)?;
            if creds.password.is_empty() {
                return Ok(stream);
            }
            let cmd = match &creds.username {
                Some(u) => {
                    Frame::command([b"AUTH".as_slice(), u.as_bytes(), creds.password.as_bytes()])
                }
                None => Frame::command([b"AUTH".as_slice(), creds.password.as_bytes()]),
            };
            stream
                .write_all(&cmd.to_bytes())
                .await
                .map_err(EngineError::Backend)?;
            let reply = read_frame(&mut stream, &mut buf).await?;
            match reply {
                Frame::Simple(_) => return Ok(stream),
                Frame::Error(e) if e.starts_with(b"WRONGPASS") && attempt == 0 => {
                    tracing::info!(host = %self.host, "backend refused the password, asking the provider again");
                }
                Frame::Error(e) | Frame::BlobError(e) => {
                    return Err(EngineError::Auth(String::from_utf8_lossy(&e).into_owned()))
                }
                other => {
                    return Err(EngineError::Auth(format!(
                        "unexpected AUTH reply {other:?}"
                    )))
                }
            }
        }
        Err(EngineError::Auth(
            "WRONGPASS after refreshing credentials".into(),
        ))
    }
}

async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<Frame, EngineError> {
    let limits = Limits::default();
    loop {
        if let Some((f, n)) =
            resp::parse(buf, &limits).map_err(|e| EngineError::BackendProtocol(e.to_string()))?
        {
            let _ = buf.split_to(n);
            return Ok(f);
        }
        if stream.read_buf(buf).await.map_err(EngineError::Backend)? == 0 {
            return Err(EngineError::Backend(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
    }
}
