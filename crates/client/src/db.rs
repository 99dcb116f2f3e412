//! Database sessions on the client: the database certificate under the
//! profile and the local proxy that carries a Redis client's connections to
//! the cluster: mutual TLS with the database certificate, all local
//! connections as streams of one connection on ALPN `teleport-redis-mux`
//! (up to [`MUX_MAX_STREAMS`] each), or one TLS connection per local
//! connection on ALPN `teleport-redis` when the proxy does not multiplex.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use crate::{ClientError, Credentials, Profile, ProfileStore, Result};

/// ALPN protocol of Redis sessions at the proxy.
pub use api::alpn::REDIS as ALPN_REDIS;

/// ALPN protocol of multiplexed Redis sessions at the proxy, preferred.
pub use api::alpn::REDIS_MUX as ALPN_REDIS_MUX;

/// Sessions carried by one multiplexed connection; the proxy allows as many
/// (its `DB_MUX_MAX_STREAMS`). A further local connection opens another.
pub const MUX_MAX_STREAMS: usize = 1000;

/// Where a database session's files live:
/// `keys/<proxy>/<user>-db/<cluster>/<db>.{crt,key}`.
#[derive(Debug, Clone)]
pub struct DbPaths {
    /// Directory of the user's database certificates for the cluster.
    pub dir: PathBuf,
    /// Certificate.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

impl ProfileStore {
    /// Paths of a database session of `profile`; refused when a name cannot be a path
    /// component ([`crate::profile::path_component`]).
    pub fn db_paths(&self, profile: &Profile, db: &str) -> Result<DbPaths> {
        crate::profile::check_profile_names(profile)?;
        crate::profile::path_component("database name", db)?;
        let dir = self
            .dir()
            .join("keys")
            .join(profile.name())
            .join(format!("{}-db", profile.user))
            .join(&profile.cluster);
        Ok(DbPaths {
            cert: dir.join(format!("{db}.crt")),
            key: dir.join(format!("{db}.key")),
            dir,
        })
    }

    /// Store a database session's key and certificate.
    pub fn save_db(
        &self,
        profile: &Profile,
        db: &str,
        key_pem: &str,
        cert_pem: &str,
    ) -> Result<DbPaths> {
        let paths = self.db_paths(profile, db)?;
        crate::profile::write_private(&paths.key, key_pem.as_bytes())?;
        crate::profile::write_private(&paths.cert, cert_pem.as_bytes())?;
        Ok(paths)
    }

    /// The stored session for `db`, if its certificate is still valid for
    /// at least a minute.
    pub fn load_db(&self, profile: &Profile, db: &str, ca_pems: &[String]) -> Option<Credentials> {
        let paths = self.db_paths(profile, db).ok()?;
        let cert = std::fs::read_to_string(&paths.cert).ok()?;
        let key = std::fs::read_to_string(&paths.key).ok()?;
        let creds = Credentials {
            key_pem: key,
            cert_pem: cert,
            ca_pems: ca_pems.to_vec(),
        };
        let id = crate::identity_of(&creds).ok()?;
        let fresh = id.expires - time::OffsetDateTime::now_utc() > time::Duration::minutes(1);
        let routed = id
            .route_to_database
            .as_ref()
            .is_some_and(|r| r.service_name == db);
        (fresh && routed).then_some(creds)
    }

    /// Databases with a stored session of `profile`.
    pub fn db_sessions(&self, profile: &Profile) -> Vec<String> {
        let Ok(DbPaths { dir, .. }) = self.db_paths(profile, "x") else {
            return Vec::new();
        };
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out: Vec<String> = rd
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                (p.extension().and_then(|x| x.to_str()) == Some("crt"))
                    .then(|| p.file_stem()?.to_str().map(str::to_string))
                    .flatten()
            })
            .collect();
        out.sort();
        out
    }

    /// Remove the stored session of `db`.
    pub fn remove_db(&self, profile: &Profile, db: &str) -> bool {
        let Ok(paths) = self.db_paths(profile, db) else {
            return false;
        };
        let existed = paths.cert.exists();
        let _ = std::fs::remove_file(&paths.cert);
        let _ = std::fs::remove_file(&paths.key);
        existed
    }
}

/// Opens TLS connections to the proxy with a database certificate.
#[derive(Clone)]
pub struct DbDialer {
    addr: String,
    server_name: rustls::pki_types::ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    timeout: std::time::Duration,
    reuse_silent: std::time::Duration,
}

impl DbDialer {
    /// A dialer for the proxy at `proxy_addr` (`host:port`) that asks for
    /// multiplexed sessions.
    pub fn new(proxy_addr: &str, db: &Credentials, insecure: bool) -> Result<DbDialer> {
        Self::with_protocols(proxy_addr, db, insecure, true)
    }

    /// A dialer that asks for multiplexed sessions only if `multiplex`,
    /// else for one TLS connection per session (as a client that predates
    /// multiplexing does).
    pub fn with_protocols(
        proxy_addr: &str,
        db: &Credentials,
        insecure: bool,
        multiplex: bool,
    ) -> Result<DbDialer> {
        let alpn: &[&[u8]] = if multiplex {
            &[ALPN_REDIS_MUX, ALPN_REDIS]
        } else {
            &[ALPN_REDIS]
        };
        let mut roots = crate::system_roots();
        roots.extend(db.ca_pems.iter().cloned());
        let tls = pki::tls::proxy_client_config(
            Some(&db.cert_pem),
            Some(&db.key_pem),
            &roots,
            insecure,
            alpn,
        )
        .map_err(|e| ClientError::Local(format!("TLS setup failed: {e}")))?;
        let base = crate::base_url(proxy_addr);
        let addr = base.trim_start_matches("https://").to_string();
        let host = match addr.rsplit_once(':') {
            Some((h, _)) => h.trim_matches(['[', ']']).to_string(),
            None => addr.clone(),
        };
        let server_name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|e| ClientError::Local(format!("proxy address {proxy_addr:?}: {e}")))?;
        Ok(DbDialer {
            addr,
            server_name,
            connector: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            timeout: std::time::Duration::from_secs(10),
            reuse_silent: MUX_REUSE_SILENT,
        })
    }

    /// How long a multiplexed connection may have received nothing and
    /// still take new sessions ([`MUX_REUSE_SILENT`] unless set).
    pub fn with_reuse_silent(mut self, silent: std::time::Duration) -> DbDialer {
        self.reuse_silent = silent;
        self
    }

    /// How long a dial (TCP and TLS) may take; 10 s unless set.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> DbDialer {
        self.timeout = timeout;
        self
    }

    /// One TLS connection to the proxy.
    pub async fn dial(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let dial = async {
            let tcp = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| ClientError::Local(format!("connecting to {}: {e}", self.addr)))?;
            let _ = tcp.set_nodelay(true);
            // One connection carries every session of a local tunnel for as
            // long as it runs: notice a peer that vanished (a laptop
            // changing networks) within about a minute, so new sessions
            // dial again.
            let _ = tunnel::set_keepalive(&tcp);
            self.connector
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(|e| match crate::find_tls_failure(&e) {
                    Some((crate::TlsFailure::UntrustedServer, detail)) => {
                        ClientError::UntrustedProxy {
                            addr: self.addr.clone(),
                            detail,
                        }
                    }
                    Some((crate::TlsFailure::CertificateExpired, _)) => {
                        ClientError::SessionExpired {
                            expired_at: None,
                            login: None,
                        }
                    }
                    None => ClientError::Local(format!("TLS to the proxy failed: {e}")),
                })
        };
        tokio::time::timeout(self.timeout, dial)
            .await
            .map_err(|_| {
                ClientError::Local(format!(
                    "connecting to the proxy at {}: no answer within {:?}",
                    self.addr, self.timeout
                ))
            })?
    }
}

/// A multiplexed connection that has received nothing for this long takes
/// no new sessions: they go over a new connection (one TLS handshake, what
/// every session costs without multiplexing), while the sessions already on
/// it stay there. A connection that silently leads nowhere (a laptop that
/// changed networks, a hung proxy) would otherwise swallow new sessions
/// until TCP gives up on it. Connections in use hear replies all the time.
pub const MUX_REUSE_SILENT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a local connection goes: a stream of a multiplexed connection
/// (kept open by the handle for as long as the stream is), or a TLS
/// connection of its own.
enum Upstream {
    Mux(tunnel::TunnelStream, tunnel::MuxClient),
    Direct(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The connections to the proxy that local connections share.
struct Carrier {
    dialer: DbDialer,
    state: tokio::sync::Mutex<CarrierState>,
}

#[derive(Default)]
struct CarrierState {
    /// Multiplexed connections that take new sessions, oldest first.
    /// Closed ones, and ones silent for longer than the dialer's
    /// `reuse_silent`, are dropped on the next connect (their sessions keep
    /// them open).
    muxes: Vec<tunnel::MuxClient>,
    /// The last failed dial: connections that waited for it fail with its
    /// error instead of each dialing (and timing out) in turn.
    failed: Option<(tokio::time::Instant, String)>,
}

/// How long a failed dial answers the connections that queued behind it.
const FAILED_DIAL_SHARED_FOR: std::time::Duration = std::time::Duration::from_secs(1);

impl Carrier {
    /// A session for one local connection: a stream on the first
    /// multiplexed connection with room, else a new connection (which is
    /// multiplexed when the proxy chose `teleport-redis-mux`).
    async fn connect(&self) -> Result<Upstream> {
        // Held across the dial, so that a burst of connections opens one
        // multiplexed connection rather than one each.
        let mut state = self.state.lock().await;
        let fresh = self.dialer.reuse_silent;
        state
            .muxes
            .retain(|m| !m.is_closed() && m.silent_for() <= fresh);
        for m in state.muxes.iter() {
            if let Ok(Some(stream)) = m.try_open().await {
                return Ok(Upstream::Mux(stream, m.clone()));
            }
        }
        if let Some((at, e)) = &state.failed {
            if at.elapsed() < FAILED_DIAL_SHARED_FOR {
                return Err(ClientError::Local(e.clone()));
            }
        }
        let tls = match self.dialer.dial().await {
            Ok(t) => {
                state.failed = None;
                t
            }
            Err(e) => {
                state.failed = Some((tokio::time::Instant::now(), e.to_string()));
                return Err(e);
            }
        };
        if tls.get_ref().1.alpn_protocol() != Some(ALPN_REDIS_MUX) {
            return Ok(Upstream::Direct(Box::new(tls)));
        }
        let cfg = tunnel::TunnelConfig {
            max_streams: MUX_MAX_STREAMS,
            ..tunnel::TunnelConfig::default()
        };
        let mux = tunnel::MuxClient::start(tls, &cfg);
        let stream = mux
            .try_open()
            .await
            .map_err(|e| ClientError::Local(format!("connection to the proxy: {e}")))?
            .ok_or_else(|| ClientError::Local("connection to the proxy has no room".into()))?;
        state.muxes.push(mux.clone());
        Ok(Upstream::Mux(stream, mux))
    }
}

/// A local authenticated tunnel: plain TCP on a loopback port, each
/// connection carried to the proxy with the database certificate (see the
/// module documentation for how).
pub struct LocalTunnel {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl LocalTunnel {
    /// Listen on `127.0.0.1:port` (0: any free port).
    pub async fn start(dialer: DbDialer, port: u16) -> Result<LocalTunnel> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| ClientError::Local(format!("listening on 127.0.0.1:{port}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ClientError::Local(e.to_string()))?;
        let carrier = Arc::new(Carrier {
            dialer,
            state: Default::default(),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut local, peer)) = listener.accept().await else {
                    continue;
                };
                let _ = local.set_nodelay(true);
                let carrier = carrier.clone();
                tokio::spawn(async move {
                    let copied = match carrier.connect().await {
                        Ok(Upstream::Mux(mut remote, _connection)) => {
                            tokio::io::copy_bidirectional(&mut local, &mut remote).await
                        }
                        Ok(Upstream::Direct(mut remote)) => {
                            tokio::io::copy_bidirectional(&mut local, &mut *remote).await
                        }
                        Err(e) => {
                            use tokio::io::AsyncWriteExt;
                            tracing::warn!(%peer, error = %e, "database tunnel connection failed");
                            let msg = e.to_string().replace(['\r', '\n'], " ");
                            let _ = local
                                .write_all(format!("-ERR Teleport: {msg}\r\n").as_bytes())
                                .await;
                            return;
                        }
                    };
                    if let Err(e) = copied {
                        tracing::debug!(%peer, error = %e, "database tunnel connection ended");
                    }
                });
            }
        });
        Ok(LocalTunnel { addr, task })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for LocalTunnel {
    fn drop(&mut self) {
        self.task.abort();
    }
}
