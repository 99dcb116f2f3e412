//! The proxy service: one TLS port for everything users and agents reach.
//!
//! Connections are routed by the ALPN protocol the client offers, read from
//! the ClientHello before the handshake completes (so each protocol can have
//! its own TLS settings): `http/1.1` and `h2` reach the web API and the
//! authenticated API; the protocols later services add (`teleport-reversetunnel`,
//! `teleport-redis`, ...) are refused with a log line until they exist.

pub mod install;
pub mod limit;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api::alpn;
use api::tunnel::StreamTarget;
use auth::AuthServer;
use tokio::net::TcpListener;

/// Errors starting the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// TLS material could not be used.
    #[error("proxy TLS setup failed: {0}")]
    Tls(String),
}

/// Settings of the proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Address users reach (host:port), for ping answers and links.
    pub public_addr: String,
    /// Web certificate chain (PEM).
    pub cert_pem: String,
    /// Web private key (PEM).
    pub key_pem: String,
    /// Directory of the binaries the install script serves (the proxy's own).
    pub binaries_dir: Option<std::path::PathBuf>,
    /// Rate limit of the join routes per client address
    /// (`proxy_service.join_rate_limit`).
    pub join_limit: limit::Limit,
    /// Rate limit of password logins and password setting per client
    /// address (`proxy_service.login_rate_limit`).
    pub login_limit: limit::Limit,
}

/// Where a connection goes, by the ALPN protocols offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The web API and app sessions' HTTP (no ALPN, `http/1.1`, `h2`).
    Http,
    /// Agents' and tctl's cluster API and reverse tunnels.
    Cluster,
    /// An app session (`teleport-app`).
    App,
    /// A database session (`teleport-redis`, the multiplexed variant).
    Db,
    /// Nothing served here; the first protocol offered (peer text, shown
    /// escaped).
    Unsupported(String),
}

/// Why the first bytes of a connection are not a ClientHello.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// The bytes are not TLS records.
    #[error("not TLS: {0}")]
    Records(#[source] std::io::Error),
    /// The records do not hold a ClientHello rustls accepts.
    #[error("not a TLS ClientHello: {0}")]
    NotClientHello(#[source] rustls::Error),
}

fn route(alpn: Option<Vec<Vec<u8>>>) -> Route {
    let Some(list) = alpn else {
        return Route::Http;
    };
    if list.is_empty() {
        return Route::Http;
    }
    if list
        .iter()
        .any(|p| p.as_slice() == alpn::CLUSTER || p.as_slice() == alpn::REVERSE_TUNNEL)
    {
        return Route::Cluster;
    }
    if list.iter().any(|p| p.as_slice() == alpn::APP) {
        return Route::App;
    }
    if list
        .iter()
        .any(|p| p.as_slice() == alpn::REDIS || p.as_slice() == alpn::REDIS_MUX)
    {
        return Route::Db;
    }
    if list.iter().any(|p| alpn::HTTP.contains(&p.as_slice())) {
        return Route::Http;
    }
    Route::Unsupported(String::from_utf8_lossy(&list[0]).to_string())
}

/// The route a ClientHello asks for, from the first bytes a client sends (TLS records): the
/// part of the listener that reads peer bytes before any handshake, as a pure function (the fuzz
/// target drives it). `Ok(None)` when more bytes are needed.
pub fn client_hello_route(mut records: &[u8]) -> Result<Option<Route>, HelloError> {
    let mut acceptor = rustls::server::Acceptor::default();
    while !records.is_empty() {
        let n = acceptor
            .read_tls(&mut records)
            .map_err(HelloError::Records)?;
        if n == 0 {
            break;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let alpn = accepted
                    .client_hello()
                    .alpn()
                    .map(|it| it.map(<[u8]>::to_vec).collect::<Vec<_>>());
                return Ok(Some(route(alpn)));
            }
            Ok(None) => {}
            Err((e, _alert)) => return Err(HelloError::NotClientHello(e)),
        }
    }
    Ok(None)
}

/// What a session stream goes to an agent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionKind {
    /// An app session (`teleport-app`).
    App,
    /// One database session.
    Db,
    /// A multiplexed database connection, relayed whole.
    DbMux,
}

impl SessionKind {
    /// The kind of registered servers that serve it.
    fn servers(self) -> &'static str {
        match self {
            SessionKind::App => "app",
            SessionKind::Db | SessionKind::DbMux => "db",
        }
    }

    /// What it is called in messages.
    fn what(self) -> &'static str {
        match self {
            SessionKind::App => "app",
            SessionKind::Db | SessionKind::DbMux => "database",
        }
    }

    /// The tunnel stream's target for a session of this kind.
    fn target(self, name: &str, cert: Vec<u8>) -> StreamTarget {
        match self {
            SessionKind::App => StreamTarget::App {
                name: name.to_string(),
                cert,
            },
            SessionKind::Db => StreamTarget::Db { cert },
            SessionKind::DbMux => StreamTarget::DbMux { cert },
        }
    }
}

/// Why the proxy refused a session or could not open it. The text reaches
/// the client (a Redis error, or the app's JSON error body), so each says
/// what to do.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    /// The connection's certificate is not one for this kind of session.
    #[error("{0}")]
    WrongCertificate(&'static str),
    /// The connection presented no certificate.
    #[error("no client certificate")]
    NoCertificate,
    /// The database certificate expired after the connection was made.
    #[error("the database certificate expired at {expires}: run tsh db login {db}")]
    Expired {
        expires: time::OffsetDateTime,
        db: String,
    },
    /// The registered servers could not be read.
    #[error("listing {what} servers: {source}")]
    Listing {
        what: &'static str,
        source: auth::AuthError,
    },
    /// No agent announces the app or database.
    #[error("{what} {name:?} is not served by any agent")]
    NotServed { what: &'static str, name: String },
    /// No agent of the database takes a whole multiplexed connection.
    #[error("no agent serving {what} {name:?} takes multiplexed connections (agents older than this proxy)")]
    NoMuxAgent { what: &'static str, name: String },
    /// The agents serving it are not connected to this proxy.
    #[error("the agent {host} serving {name:?} is not connected to this proxy")]
    NotConnected { host: String, name: String },
    /// Opening the stream through the tunnel failed.
    #[error(transparent)]
    Tunnel(#[from] tunnel::TunnelError),
}

/// What a database connection's certificate allows.
struct DbSession {
    cert_der: Vec<u8>,
    db: String,
    expires: time::OffsetDateTime,
}

impl DbSession {
    fn of(conn: &rustls::ServerConnection) -> Result<DbSession, SessionError> {
        let (db, expires) = session_route(
            conn,
            |id| id.route_to_database.map(|r| (r.service_name, id.expires)),
            "a database session needs a database certificate: run tsh db login <db>",
            "this certificate is not for a database: run tsh db login <db>",
        )?;
        Ok(DbSession {
            cert_der: peer_cert(conn)?,
            db,
            expires,
        })
    }

    /// Refuses new sessions once the certificate has expired (the TLS
    /// handshake checked it only when the connection was made).
    fn check_current(&self) -> Result<(), SessionError> {
        if time::OffsetDateTime::now_utc() >= self.expires {
            return Err(SessionError::Expired {
                expires: self.expires,
                db: self.db.clone(),
            });
        }
        Ok(())
    }
}

/// The agents to dial for a session stream of `kind` to the app or database
/// `name`, from the registered servers of its kind. A multiplexed connection (`db-mux`) goes only to agents that
/// announced they take one: an agent older than this proxy would drop the
/// stream, and with it every session on the connection, so without such an
/// agent the caller serves the connection session by session instead.
fn agents_for(
    servers: Vec<api::inventory::ServerEntry>,
    kind: SessionKind,
    name: &str,
) -> Result<Vec<String>, SessionError> {
    let what = kind.what();
    let serving: Vec<api::inventory::ServerEntry> = servers
        .into_iter()
        .filter(|s| {
            let served = match (&s.app, &s.db) {
                (Some(a), _) => &a.metadata.name,
                (None, Some(d)) => &d.metadata.name,
                (None, None) => return false,
            };
            served == name
        })
        .collect();
    if serving.is_empty() {
        return Err(SessionError::NotServed {
            what,
            name: name.to_string(),
        });
    }
    if kind != SessionKind::DbMux {
        return Ok(serving.into_iter().map(|s| s.host_id).collect());
    }
    let capable: Vec<String> = serving
        .iter()
        .filter(|s| s.has_feature(api::inventory::FEATURE_DB_MUX))
        .map(|s| s.host_id.clone())
        .collect();
    if capable.is_empty() {
        return Err(SessionError::NoMuxAgent {
            what,
            name: name.to_string(),
        });
    }
    Ok(capable)
}

/// Splices a database client (a connection or a stream of a multiplexed
/// one) to the agent's tunnel stream, or refuses it with a Redis error.
async fn splice_db<S>(
    mut client: S,
    opened: Result<tunnel::TunnelStream, SessionError>,
    peer: SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    match opened {
        Ok(mut upstream) => {
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(%peer, error = %e, "database session ended");
            }
        }
        Err(e) => {
            tracing::info!(%peer, error = %e, "database session refused");
            let clean: String = e.to_string().replace(['\r', '\n'], " ");
            let _ = client
                .write_all(format!("-ERR Teleport: {clean}\r\n").as_bytes())
                .await;
            let _ = client.shutdown().await;
        }
    }
}

/// The client's certificate (DER) on a connection.
/// What `route` takes from the session certificate of a connection: one that is not a user's
/// is refused with `no_user`, one `route` takes nothing from with `no_route` (what to run).
fn session_route<T>(
    conn: &rustls::ServerConnection,
    route: impl FnOnce(pki::Identity) -> Option<T>,
    no_user: &'static str,
    no_route: &'static str,
) -> Result<T, SessionError> {
    let auth::Caller::User(id) = auth::serve::caller_of(conn) else {
        return Err(SessionError::WrongCertificate(no_user));
    };
    route(*id).ok_or(SessionError::WrongCertificate(no_route))
}

fn peer_cert(conn: &rustls::ServerConnection) -> Result<Vec<u8>, SessionError> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or(SessionError::NoCertificate)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A running proxy's request handling, shared by its connections.
pub struct Proxy {
    http_tls: Arc<rustls::ServerConfig>,
    cluster_tls: Arc<rustls::ServerConfig>,
    router: axum::Router,
    tunnel: tunnel::TunnelServer,
    auth: Arc<AuthServer>,
    id: String,
}

impl Proxy {
    /// Build the proxy in front of `auth`.
    pub fn new(auth: Arc<AuthServer>, cfg: ProxyConfig) -> Result<Proxy, ProxyError> {
        let client_cas = vec![
            auth.user_ca().cert_pem().to_string(),
            auth.host_ca().cert_pem().to_string(),
        ];
        let http_tls = pki::tls::server_config(
            &cfg.cert_pem,
            &cfg.key_pem,
            &client_cas,
            pki::tls::ClientAuth::Optional,
            &[
                alpn::HTTP[0],
                alpn::HTTP[1],
                alpn::APP,
                alpn::REDIS_MUX,
                alpn::REDIS,
            ],
        )
        .map_err(|e| ProxyError::Tls(e.to_string()))?;
        let host = cfg
            .public_addr
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| cfg.public_addr.clone());
        let (cluster_cert, cluster_key) = auth
            .server_keypair("proxy", resources::SystemRole::Proxy, vec![host])
            .map_err(|e| ProxyError::Tls(e.to_string()))?;
        let cluster_tls = pki::tls::server_config(
            &cluster_cert,
            &cluster_key,
            &client_cas,
            pki::tls::ClientAuth::Optional,
            &[alpn::CLUSTER, alpn::REVERSE_TUNNEL],
        )
        .map_err(|e| ProxyError::Tls(e.to_string()))?;
        let router = web::router(
            auth.clone(),
            cfg.public_addr.clone(),
            cfg.join_limit,
            cfg.login_limit,
        )
        .merge(install::router(
            cfg.binaries_dir.clone(),
            cfg.public_addr.clone(),
        ))
        .merge(auth::http::router(auth.clone()));
        Ok(Proxy {
            http_tls: Arc::new(http_tls),
            cluster_tls: Arc::new(cluster_tls),
            tunnel: tunnel::TunnelServer::new(),
            auth,
            id: cfg.public_addr.clone(),
            router,
        })
    }

    /// Accept connections until `shutdown` completes.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        // Announce this proxy so that agents open a tunnel to it too.
        let announcer = {
            let this = self.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = this.auth.record_proxy(&this.id, &this.id).await {
                        tracing::warn!(error = %e, "announcing the proxy");
                    }
                    tokio::time::sleep(Duration::from_secs(20)).await;
                }
            })
        };
        let _announcer = AbortOnDrop(announcer);
        // Connections count against their address until they present a
        // client certificate (web API clients without one: for their life).
        let unauthenticated = auth::serve::UnauthenticatedConnections::default();
        tokio::pin!(shutdown);
        while let Some((tcp, peer, guard)) = unauthenticated.accept(&listener, &mut shutdown).await
        {
            let this = self.clone();
            tokio::spawn(async move {
                let handled = this.clone().handle(tcp, peer, guard);
                if tokio::time::timeout(auth::serve::HANDSHAKE_TIMEOUT, handled)
                    .await
                    .is_err()
                {
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            });
        }
    }

    /// Read the ClientHello, pick the route, finish the handshake and hand
    /// the connection over. Returns once the connection is handed over;
    /// `guard` counts it as unauthenticated until then, and for its life on
    /// the web API when the client presented no certificate.
    async fn handle(
        self: Arc<Self>,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        guard: auth::serve::ConnectionGuard,
    ) {
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
        let start = match acceptor.await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "bad ClientHello");
                return;
            }
        };
        let alpn = start
            .client_hello()
            .alpn()
            .map(|it| it.map(|p| p.to_vec()).collect::<Vec<_>>());
        let tls = match route(alpn) {
            Route::Http | Route::App | Route::Db => self.http_tls.clone(),
            Route::Cluster => self.cluster_tls.clone(),
            Route::Unsupported(proto) => {
                tracing::warn!(%peer, protocol = %proto, "ALPN protocol not served by this proxy");
                return;
            }
        };
        match start.into_stream(tls).await {
            Ok(tls) => {
                let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                if alpn.as_deref() == Some(alpn::REVERSE_TUNNEL) {
                    tokio::spawn(self.clone().serve_tunnel(tls, peer));
                } else if alpn.as_deref() == Some(alpn::APP) {
                    tokio::spawn(self.clone().serve_app(tls, peer));
                } else if alpn.as_deref() == Some(alpn::REDIS) {
                    tokio::spawn(self.clone().serve_db(tls, peer));
                } else if alpn.as_deref() == Some(alpn::REDIS_MUX) {
                    tokio::spawn(self.clone().serve_db_mux(tls, peer));
                } else {
                    let router = self.router.clone();
                    let guard = (!auth::serve::is_authenticated(tls.get_ref().1)).then_some(guard);
                    tokio::spawn(async move {
                        auth::serve::serve_connection(tls, router, peer).await;
                        drop(guard);
                    });
                }
            }
            Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        }
    }

    /// An app session: check the app certificate, find an agent serving the
    /// app through this proxy's tunnels, and splice the connection to it.
    async fn serve_app(
        self: Arc<Self>,
        mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        peer: SocketAddr,
    ) {
        use tokio::io::AsyncWriteExt;
        match self.open_app_stream(&tls).await {
            Ok(mut upstream) => {
                if let Err(e) = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await {
                    tracing::debug!(%peer, error = %e, "app session ended");
                }
            }
            Err(e) => {
                tracing::info!(%peer, error = %e, "app session refused");
                let body = serde_json::to_string(&api::ErrorBody {
                    error: api::ErrorDetail {
                        message: e.to_string(),
                    },
                })
                .unwrap_or_default();
                let resp = format!(
                    "HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    body.len(),
                    body
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            }
        }
    }

    async fn open_app_stream(
        &self,
        tls: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    ) -> Result<tunnel::TunnelStream, SessionError> {
        let conn = tls.get_ref().1;
        let app = session_route(
            conn,
            |id| id.route_to_app.map(|r| r.name),
            "an app session needs an app certificate: run tsh apps login",
            "this certificate is not for an app: run tsh apps login <app>",
        )?;
        self.dial_session(peer_cert(conn)?, SessionKind::App, &app)
            .await
    }

    /// Opens a session stream of `kind` for the client of `conn` to the
    /// first agent serving `name` that is reachable through this proxy's
    /// tunnels, passing the client's certificate along. The error is the
    /// last agent's.
    async fn dial_session(
        &self,
        cert_der: Vec<u8>,
        kind: SessionKind,
        name: &str,
    ) -> Result<tunnel::TunnelStream, SessionError> {
        let servers =
            self.auth
                .servers(kind.servers())
                .await
                .map_err(|source| SessionError::Listing {
                    what: kind.what(),
                    source,
                })?;
        let agents = agents_for(servers, kind, name)?;
        let target = kind.target(name, cert_der).header();
        let mut last = None;
        for host in &agents {
            if !self.tunnel.is_connected(host) {
                last = Some(SessionError::NotConnected {
                    host: host.clone(),
                    name: name.to_string(),
                });
                continue;
            }
            match self.tunnel.dial(host, &target).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e.into()),
            }
        }
        // agents_for returns at least one agent.
        Err(last.unwrap_or(SessionError::NotServed {
            what: kind.what(),
            name: name.to_string(),
        }))
    }

    /// A database session: check the database certificate, find an agent
    /// serving the database through this proxy's tunnels, and splice the
    /// connection to it. Refusals reach the client as a Redis error.
    async fn serve_db(
        self: Arc<Self>,
        tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        peer: SocketAddr,
    ) {
        let opened = self.open_db_stream(&tls).await;
        splice_db(tls, opened, peer).await;
    }

    async fn open_db_stream(
        &self,
        tls: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    ) -> Result<tunnel::TunnelStream, SessionError> {
        let session = DbSession::of(tls.get_ref().1)?;
        self.dial_session(session.cert_der, SessionKind::Db, &session.db)
            .await
    }

    /// Multiplexed database sessions: the certificate is checked once for
    /// the connection, which then goes to an agent of the database as one
    /// tunnel stream (`db-mux`; the agent checks every session it carries,
    /// expiry included). Without a reachable agent, every stream the client
    /// opens is a session of its own, spliced like [`Proxy::serve_db`]'s
    /// connection or refused with the reason; a stream opened after the
    /// certificate expired is refused.
    async fn serve_db_mux(
        self: Arc<Self>,
        tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        peer: SocketAddr,
    ) {
        // A client that vanished without closing is noticed, ending its
        // sessions.
        let _ = tunnel::set_keepalive(tls.get_ref().0);
        let session = DbSession::of(tls.get_ref().1);
        // The whole connection goes to one agent as one tunnel stream: the
        // agent takes the sessions apart (and checks each against the
        // certificate), the proxy relays bytes in batches instead of
        // handling every session's frames on both sides.
        if let Ok(s) = &session {
            if s.check_current().is_ok() {
                match self
                    .dial_session(s.cert_der.clone(), SessionKind::DbMux, &s.db)
                    .await
                {
                    Ok(mut upstream) => {
                        let mut tls = tls;
                        if let Err(e) = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await
                        {
                            tracing::debug!(%peer, error = %e, "multiplexed database connection ended");
                        }
                        return;
                    }
                    // Served below, session by session: each gets the
                    // reason, and later ones try again.
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "no agent for a multiplexed database connection")
                    }
                }
            }
        }
        // A refused certificate refuses every session on the connection,
        // each with the reason as a Redis error.
        let session: Arc<Result<DbSession, SessionError>> = Arc::new(session);
        let proxy = self.clone();
        let result = tunnel::serve_mux(tls, &tunnel::db_mux_config(), move |stream| {
            let proxy = proxy.clone();
            let session = session.clone();
            tokio::spawn(async move {
                let opened = match session.as_ref() {
                    Ok(s) => match s.check_current() {
                        Ok(()) => {
                            proxy
                                .dial_session(s.cert_der.clone(), SessionKind::Db, &s.db)
                                .await
                        }
                        Err(e) => Err(e),
                    },
                    // The same refusal for every session on the connection
                    // (`DbSession::of` refuses only certificates).
                    Err(SessionError::WrongCertificate(m)) => {
                        Err(SessionError::WrongCertificate(m))
                    }
                    Err(_) => Err(SessionError::NoCertificate),
                };
                splice_db(stream, opened, peer).await;
            });
        })
        .await;
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "multiplexed database connection ended");
        }
    }

    /// The reverse tunnel server: agents connected to this proxy.
    pub fn tunnel(&self) -> &tunnel::TunnelServer {
        &self.tunnel
    }

    async fn serve_tunnel(
        self: Arc<Self>,
        tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        peer: SocketAddr,
    ) {
        let caller = auth::serve::caller_of(tls.get_ref().1);
        let auth::Caller::Host(id) = caller else {
            tracing::warn!(%peer, "reverse tunnel refused: the client has no host certificate");
            return;
        };
        let info = tunnel::AgentInfo {
            server_id: id.username.clone(),
            cluster: id.teleport_cluster.clone(),
            roles: id.groups.clone(),
        };
        tracing::info!(%peer, server_id = %info.server_id, "agent connected through the reverse tunnel");
        let server_id = info.server_id.clone();
        let registration = tokio::spawn(self.clone().keep_registered(server_id.clone()));
        if let Err(e) = self.tunnel.serve_agent(tls, info).await {
            tracing::info!(%peer, %server_id, error = %e, "reverse tunnel closed");
        }
        registration.abort();
    }

    /// While an agent is connected, check that streams to it work and record
    /// it in the inventory (`tunnels/<server>/<proxy>`, short expiry).
    async fn keep_registered(self: Arc<Self>, server_id: String) {
        loop {
            match self.ping_agent(&server_id).await {
                Ok(()) => {
                    if let Err(e) = self.auth.record_tunnel(&server_id, &self.id).await {
                        tracing::warn!(error = %e, "recording the tunnel");
                    }
                }
                Err(e) => tracing::debug!(%server_id, error = %e, "tunnel ping failed"),
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }

    /// Open a stream to the agent and exchange a ping.
    pub async fn ping_agent(&self, server_id: &str) -> Result<(), tunnel::TunnelError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = self
            .tunnel
            .dial(server_id, &StreamTarget::Ping.header())
            .await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .map_err(|_| tunnel::TunnelError::DialTimeout(server_id.to_string()))??;
        let _ = s.shutdown().await;
        if &buf != b"pong" {
            return Err(tunnel::TunnelError::Protocol("bad ping answer".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_alpn() {
        assert_eq!(route(None), Route::Http);
        assert_eq!(route(Some(vec![b"http/1.1".to_vec()])), Route::Http);
        assert_eq!(
            route(Some(vec![b"teleport-redis".to_vec(), b"h2".to_vec()])),
            Route::Db
        );
        assert_eq!(route(Some(vec![alpn::REDIS.to_vec()])), Route::Db);
        assert_eq!(route(Some(vec![alpn::REDIS_MUX.to_vec()])), Route::Db);
        assert_eq!(
            route(Some(vec![b"teleport-postgres".to_vec()])),
            Route::Unsupported("teleport-postgres".into())
        );
        assert_eq!(
            route(Some(vec![b"http/1.1".to_vec(), alpn::CLUSTER.to_vec()])),
            Route::Cluster
        );
        assert_eq!(route(Some(vec![alpn::APP.to_vec()])), Route::App);
    }

    /// The first bytes a rustls client sends, offering `alpn`.
    fn client_hello(alpn: &[&[u8]]) -> Vec<u8> {
        let mut cfg = rustls::ClientConfig::builder_with_provider(pki::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from("proxy.example.com").unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn routes_client_hello_bytes() {
        let route_of = |alpn: &[&[u8]]| client_hello_route(&client_hello(alpn)).unwrap();
        assert_eq!(route_of(&[]), Some(Route::Http));
        assert_eq!(route_of(&[alpn::CLUSTER]), Some(Route::Cluster));
        assert_eq!(route_of(&[alpn::APP]), Some(Route::App));
        assert_eq!(route_of(&[alpn::REDIS_MUX]), Some(Route::Db));
        assert_eq!(
            route_of(&[b"teleport-postgres"]),
            Some(Route::Unsupported("teleport-postgres".into()))
        );
        // A ClientHello cut short needs more bytes; anything else is refused.
        let hello = client_hello(&[alpn::APP]);
        assert!(matches!(
            client_hello_route(&hello[..hello.len() - 1]),
            Ok(None)
        ));
        assert!(matches!(
            client_hello_route(b"GET / HTTP/1.1\r\n\r\n"),
            Err(HelloError::Records(_) | HelloError::NotClientHello(_))
        ));
    }

    fn entry(host: &str, db: &str, features: &[&str]) -> auth::agents::ServerEntry {
        auth::agents::ServerEntry {
            host_id: host.into(),
            hostname: host.into(),
            app: None,
            db: Some(resources::Database::new(db, "redis", "rediss://x:6380")),
            features: features.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn multiplexed_connections_go_only_to_agents_that_announce_them() {
        let mux = auth::agents::FEATURE_DB_MUX;
        // An upgraded agent and one from before multiplexing serve the same
        // database: single sessions may go to either, a multiplexed
        // connection only to the upgraded one.
        let servers = vec![
            entry("old", "cache", &[]),
            entry("new", "cache", &[mux]),
            entry("other", "elsewhere", &[mux]),
        ];
        assert_eq!(
            agents_for(servers.clone(), SessionKind::Db, "cache").unwrap(),
            vec!["old".to_string(), "new".to_string()]
        );
        assert_eq!(
            agents_for(servers.clone(), SessionKind::DbMux, "cache").unwrap(),
            vec!["new".to_string()]
        );
        // Only old agents: the caller falls back to single sessions.
        let old_only = vec![
            entry("old", "cache", &[]),
            entry("new", "elsewhere", &[mux]),
        ];
        let err = agents_for(old_only.clone(), SessionKind::DbMux, "cache").unwrap_err();
        assert!(matches!(err, SessionError::NoMuxAgent { .. }), "{err}");
        assert!(err.to_string().contains("multiplexed"), "{err}");
        assert_eq!(
            agents_for(old_only, SessionKind::Db, "cache").unwrap(),
            vec!["old".to_string()]
        );
        let err = agents_for(servers, SessionKind::DbMux, "missing").unwrap_err();
        assert_eq!(
            err.to_string(),
            "database \"missing\" is not served by any agent"
        );
    }

    #[test]
    fn an_old_agents_heartbeat_announces_no_features() {
        // What an agent from before `features` sends.
        let hb: auth::agents::Heartbeat = serde_json::from_value(serde_json::json!({
            "kind": "db",
            "db": resources::Database::new("cache", "redis", "rediss://x:6380"),
        }))
        .unwrap();
        assert!(hb.features.is_empty());
    }
}
