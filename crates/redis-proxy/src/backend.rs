//! Connections to the Redis server: TCP or TLS (SNI = host), authenticated by
//! the engine itself with credentials from a [`CredentialProvider`].

use crate::resp::{self, Frame, Limits};
use crate::{AuthError, EngineError, ReplyError, TlsError};
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
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: String,
    /// For credentials that expire (Microsoft Entra tokens): how long the
    /// server accepts them. Open connections are re-authenticated with fresh
    /// credentials before then. `None`: they do not expire (access keys).
    pub valid_for: Option<Duration>,
}

impl Credentials {
    /// A password (and optional user) that does not expire.
    pub fn password(username: Option<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username,
            password: password.into(),
            valid_for: None,
        }
    }

    /// The `AUTH` command for these credentials (`None` when the password is
    /// empty: nothing to send).
    pub fn auth_command(&self) -> Option<Vec<u8>> {
        if self.password.is_empty() {
            return None;
        }
        let cmd = match &self.username {
            Some(u) => Frame::command([b"AUTH".as_slice(), u.as_bytes(), self.password.as_bytes()]),
            None => Frame::command([b"AUTH".as_slice(), self.password.as_bytes()]),
        };
        Some(cmd.to_bytes())
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"******")
            .field("valid_for", &self.valid_for)
            .finish()
    }
}

/// Source of backend credentials (Azure access keys, Entra tokens, static).
/// Called for every new backend connection, and again after each `WRONGPASS`
/// (rotated keys) once [`CredentialProvider::invalidate`] was told which
/// credentials were refused: the connection retries while the provider hands
/// out credentials not yet refused on it. One provider serves all the
/// connections to a database, so it is where a fallback (to the other key)
/// is decided once for all of them.
/// Why a provider has no credentials: its own error (listing keys refused,
/// no token), kept as the source of [`EngineError::Credentials`].
pub type CredentialError = Box<dyn std::error::Error + Send + Sync>;

#[async_trait::async_trait]
pub trait CredentialProvider: Send + Sync {
    async fn credentials(&self) -> Result<Credentials, CredentialError>;

    /// The server refused `rejected` (`WRONGPASS`): forget it, so the next
    /// [`CredentialProvider::credentials`] call fetches fresh ones.
    async fn invalidate(&self, _rejected: &Credentials) {}
}

/// A fixed password (and optional username).
pub struct StaticCredentials(pub Credentials);

#[async_trait::async_trait]
impl CredentialProvider for StaticCredentials {
    async fn credentials(&self) -> Result<Credentials, CredentialError> {
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
    /// The TLS server name (SNI and certificate check); `host` unless this
    /// is another node of the same cluster (see [`Backend::node`]).
    server_name: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    credentials: Arc<dyn CredentialProvider>,
    connect_timeout: Duration,
    /// The connection sessions share (see [`crate::shared`]); clones share
    /// it too.
    pub(crate) shared: Arc<crate::shared::SharedSlot>,
}

/// rustls client configuration trusting `roots` (aws-lc-rs provider).
pub fn tls_config(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, EngineError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
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
        let host = host.into();
        Backend {
            server_name: host.clone(),
            host,
            port,
            tls,
            credentials,
            connect_timeout: Duration::from_secs(10),
            shared: Arc::default(),
        }
    }

    /// Another node of the same cluster at `host:port` (e.g. an IP address
    /// from `CLUSTER SLOTS` or a `MOVED` redirection), with the same TLS
    /// configuration and credentials. The TLS server name sent and verified
    /// stays the one of this backend: cluster nodes present the
    /// certificate of the configured host name.
    pub fn node(&self, host: &str, port: u16) -> Backend {
        Backend {
            host: host.to_string(),
            port,
            shared: Arc::default(),
            ..self.clone()
        }
    }

    /// The host connected to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port connected to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS server name (SNI and certificate verification).
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    async fn open(&self) -> Result<BackendStream, EngineError> {
        let addr = (self.host.as_str(), self.port);
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
            .and_then(|r| r)
            .map_err(|source| EngineError::Connect {
                addr: format!("{}:{}", self.host, self.port),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let Some(cfg) = &self.tls else {
            return Ok(BackendStream::Plain(tcp));
        };
        let name = ServerName::try_from(self.server_name.clone()).map_err(TlsError::ServerName)?;
        let tls = tokio::time::timeout(
            self.connect_timeout,
            tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| TlsError::Timeout)?
        .map_err(TlsError::Handshake)?;
        Ok(BackendStream::Tls(Box::new(tls)))
    }

    /// The provider of this backend's credentials.
    pub(crate) fn credential_provider(&self) -> Arc<dyn CredentialProvider> {
        self.credentials.clone()
    }

    /// The credentials for a new AUTH (asks the provider).
    pub async fn credentials(&self) -> Result<Credentials, EngineError> {
        self.credentials
            .credentials()
            .await
            .map_err(EngineError::Credentials)
    }

    /// Opens an authenticated connection. A `WRONGPASS` answer is reported
    /// to the provider ([`CredentialProvider::invalidate`]) and the engine
    /// asks it again, retrying on the same connection while it hands out
    /// credentials not yet refused there (at most [`AUTH_ATTEMPTS`] times).
    pub async fn connect(&self) -> Result<BackendStream, EngineError> {
        Ok(self.connect_authenticated().await?.stream)
    }

    /// Like [`Backend::connect`], also telling when the connection must be
    /// authenticated again (credentials that expire).
    pub async fn connect_authenticated(&self) -> Result<Connected, EngineError> {
        let mut stream = self.open().await?;
        let mut buf = BytesMut::with_capacity(512);
        // The passwords refused on this connection, and the last refusal.
        let mut refused: Vec<String> = Vec::new();
        let mut last_refusal = String::new();
        for _ in 0..AUTH_ATTEMPTS {
            let creds = self.credentials().await?;
            if refused.contains(&creds.password) {
                // The provider has nothing new to offer.
                break;
            }
            let Some(cmd) = creds.auth_command() else {
                return Ok(Connected {
                    stream,
                    reauth_at: None,
                });
            };
            stream.write_all(&cmd).await.map_err(EngineError::Backend)?;
            let reply = read_frame(&mut stream, &mut buf).await?;
            match reply {
                Frame::Simple(_) => {
                    return Ok(Connected {
                        stream,
                        reauth_at: creds.valid_for.map(reauth_deadline),
                    })
                }
                Frame::Error(e) if e.starts_with(b"WRONGPASS") => {
                    tracing::info!(host = %self.host, "backend refused the password, asking the provider again");
                    self.credentials.invalidate(&creds).await;
                    last_refusal = String::from_utf8_lossy(&e).into_owned();
                    refused.push(creds.password);
                }
                Frame::Error(e) | Frame::BlobError(e) => {
                    return Err(AuthError::Refused(String::from_utf8_lossy(&e).into_owned()).into())
                }
                other => return Err(AuthError::UnexpectedReply(format!("{other:?}")).into()),
            }
        }
        Err(if last_refusal.is_empty() {
            AuthError::NoNewCredentials
        } else {
            AuthError::Refused(last_refusal)
        }
        .into())
    }
}

/// How many `AUTH` a new connection sends before giving up: the key in use,
/// then what the provider hands out after each `WRONGPASS` (after a rotation
/// a provider may still list a refused key first, then the one that works).
pub const AUTH_ATTEMPTS: usize = 4;

/// An authenticated backend connection.
pub struct Connected {
    /// The stream.
    pub stream: BackendStream,
    /// When to send `AUTH` again with fresh credentials (they expire).
    pub reauth_at: Option<tokio::time::Instant>,
}

/// When credentials valid for `valid_for` from now must be replaced: a
/// quarter of their life early, at most five minutes early.
pub fn reauth_deadline(valid_for: Duration) -> tokio::time::Instant {
    let margin = (valid_for / 4).min(Duration::from_secs(300));
    tokio::time::Instant::now() + valid_for.saturating_sub(margin)
}

async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<Frame, EngineError> {
    read_reply(stream, buf).await.map(|(f, _)| f)
}

/// Sends `cmds` (`n` whole commands) on a connection with nothing else
/// outstanding and reads their `n` replies: each parsed, and as the bytes
/// that carried it.
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    cmds: &[u8],
    n: usize,
) -> Result<Vec<(Frame, bytes::Bytes)>, EngineError> {
    stream.write_all(cmds).await.map_err(EngineError::Backend)?;
    stream.flush().await.map_err(EngineError::Backend)?;
    let mut buf = BytesMut::new();
    let mut replies = Vec::with_capacity(n);
    for _ in 0..n {
        replies.push(read_reply(stream, &mut buf).await?);
    }
    Ok(replies)
}

/// Reads one reply: parsed, and as the bytes that carried it.
async fn read_reply<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<(Frame, bytes::Bytes), EngineError> {
    let limits = Limits::default();
    loop {
        if let Some((f, n)) = resp::parse(buf, &limits).map_err(ReplyError::Malformed)? {
            return Ok((f, buf.split_to(n).freeze()));
        }
        if stream.read_buf(buf).await.map_err(EngineError::Backend)? == 0 {
            return Err(EngineError::Backend(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
    }
}
