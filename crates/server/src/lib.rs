//! The cluster's server process: the auth service (its mutual-TLS listener,
//! the backend, the CAs, the local admin identity) and, when enabled, the
//! proxy on the web port, as `teleport.yaml` describes them. `bins/teleport`
//! parses arguments and calls [`run`]; agents are `crates/agent`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

pub mod systemd;

/// Name of the admin identity file in the data directory (read by tctl).
pub const ADMIN_IDENTITY: &str = "admin-identity.pem";

/// Why the server process could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// `teleport.yaml` asks for something that cannot run.
    #[error("{0}")]
    Config(String),
    /// An address of the configuration could not be bound.
    #[error("cannot listen on {addr} ({key}): {source}")]
    Listen {
        /// The configuration key of the address.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A file could not be read or written.
    #[error("{context} {}: {source}", path.display())]
    File {
        /// What was being done.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The storage could not be opened.
    #[error("opening storage: {0}")]
    Storage(#[from] backend::BackendError),
    /// The auth service could not start.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// Certificates or TLS settings could not be made.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// The configuration could not be read.
    #[error(transparent)]
    Settings(#[from] config::ConfigError),
    /// The proxy could not be set up.
    #[error(transparent)]
    Proxy(#[from] proxy::ProxyError),
    /// A private file (the admin identity) could not be written.
    #[error(transparent)]
    PrivateFile(#[from] pki::private_file::WriteError),
}

type Result<T, E = ServerError> = std::result::Result<T, E>;

/// Runs the auth service (and the proxy, when `proxy_service` is enabled)
/// until `shutdown` completes. `ready` is called once every listener is
/// bound, with the cluster's name.
pub async fn run(
    cfg: &config::FileConfig,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(&str),
) -> Result<()> {
    let data_dir = cfg.data_dir();
    let nodename = cfg.nodename();
    let web_listener = if cfg.proxy_service.enabled {
        let addr = cfg.web_listen_addr()?;
        Some(bind("proxy_service.web_listen_addr", addr).await?)
    } else {
        None
    };
    let proxy_public = match &web_listener {
        Some(l) => Some(public_addr(cfg, local_addr(l)?)),
        None => None,
    };

    let backend = backend::open(&storage_config(cfg)?).await?;
    let cluster_name = cfg
        .auth_service
        .cluster_name
        .clone()
        .unwrap_or_else(|| nodename.clone());
    let auth = auth::AuthServer::init(
        backend.clone(),
        auth::AuthConfig {
            cluster_name,
            static_tokens: cfg.auth_service.tokens.clone(),
            proxy_public_addr: proxy_public.clone(),
            azure_join_trust_bundle: cfg
                .auth_service
                .azure_join
                .as_ref()
                .and_then(|a| a.trust_bundle_path.clone()),
            ..Default::default()
        },
    )
    .await?;

    // The local administrator identity, for tctl on this host.
    let admin = auth.admin_identity_pem()?;
    let admin_path = data_dir.join(ADMIN_IDENTITY);
    pki::private_file::write(&admin_path, admin.as_bytes())?;

    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = Vec::new();

    // Auth listener: the authenticated API over mutual TLS.
    let auth_listener = bind("auth_service.listen_addr", cfg.auth_listen_addr()?).await?;
    let (cert, key) = auth.server_keypair(
        &nodename,
        resources::SystemRole::Auth,
        vec![nodename.clone()],
    )?;
    let auth_tls = pki::tls::server_config(
        &cert,
        &key,
        &[
            auth.user_ca().cert_pem().to_string(),
            auth.host_ca().cert_pem().to_string(),
        ],
        pki::tls::ClientAuth::Required,
        &[b"h2", b"http/1.1"],
    )?;
    tracing::info!(addr = %local_addr(&auth_listener)?, cluster = %auth.cluster_name(), "auth service is listening");
    {
        let mut stop = stop_tx.subscribe();
        let router = auth::http::router(auth.clone());
        tasks.push(tokio::spawn(auth::serve::serve_tls(
            auth_listener,
            Arc::new(auth_tls),
            router,
            async move {
                let _ = stop.recv().await;
            },
        )));
    }

    if let (Some(listener), Some(public)) = (web_listener, proxy_public) {
        let (cert_pem, key_pem) = match cfg.proxy_service.https_keypairs.first() {
            Some(kp) => (read(&kp.cert_file)?, read(&kp.key_file)?),
            None => {
                let host = public
                    .rsplit_once(':')
                    .map(|(h, _)| h.to_string())
                    .unwrap_or(public.clone());
                tracing::warn!("no https_keypairs configured: using a self-signed certificate (clients need --insecure)");
                pki::self_signed_server_cert(&[host, "localhost".into(), nodename.clone()])?
            }
        };
        let proxy = Arc::new(proxy::Proxy::new(
            auth.clone(),
            proxy::ProxyConfig {
                join_limit: rate_limit(
                    "join_rate_limit",
                    cfg.proxy_service.join_rate_limit.as_ref(),
                    proxy::limit::Limit::JOIN_DEFAULT,
                )?,
                login_limit: rate_limit(
                    "login_rate_limit",
                    cfg.proxy_service.login_rate_limit.as_ref(),
                    proxy::limit::Limit::LOGIN_DEFAULT,
                )?,
                public_addr: public.clone(),
                cert_pem,
                key_pem,
                binaries_dir: std::env::current_exe()
                    .ok()
                    .and_then(|p| p.parent().map(|d| d.to_path_buf())),
            },
        )?);
        tracing::info!(addr = %local_addr(&listener)?, public_addr = %public, "proxy web service is listening");
        let mut stop = stop_tx.subscribe();
        tasks.push(tokio::spawn(proxy.serve(listener, async move {
            let _ = stop.recv().await;
        })));
    }

    ready(auth.cluster_name());
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(());
    for t in tasks {
        let _ = t.await;
    }
    if let Err(e) = backend.close().await {
        tracing::warn!(error = %e, "closing storage");
    }
    Ok(())
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { key, addr, source })
}

fn local_addr(l: &TcpListener) -> Result<SocketAddr> {
    l.local_addr()
        .map_err(|e| ServerError::Config(format!("reading a listener's address: {e}")))
}

fn read(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ServerError::File {
        context: "reading",
        path: path.to_path_buf(),
        source,
    })
}

/// The storage `teleport.storage` describes (sqlite in the data dir by
/// default).
fn storage_config(cfg: &config::FileConfig) -> Result<backend::StorageConfig> {
    let storage = cfg.teleport.storage.clone().unwrap_or_default();
    Ok(match storage.kind.as_str() {
        "" | "sqlite" | "dir" => backend::StorageConfig::Sqlite {
            path: cfg.data_dir().join("backend").join("sqlite.db"),
        },
        "postgresql" | "postgres" => backend::StorageConfig::Postgres {
            conn_string: storage.conn_string.ok_or_else(|| {
                ServerError::Config("storage type postgresql needs conn_string".into())
            })?,
        },
        other => {
            return Err(ServerError::Config(format!(
                "unsupported storage type {other:?}"
            )))
        }
    })
}

/// The proxy's public address: `proxy_service.public_addr`, else the bound
/// address (with the node name when bound to every interface).
fn public_addr(cfg: &config::FileConfig, bound: SocketAddr) -> String {
    if let Some(p) = cfg
        .proxy_service
        .public_addr
        .as_ref()
        .and_then(|p| p.to_vec().into_iter().next())
    {
        return p;
    }
    if bound.ip().is_unspecified() {
        format!("{}:{}", cfg.nodename(), bound.port())
    } else {
        bound.to_string()
    }
}

/// `proxy_service.<key>` as a rate, or `default` when it is not set.
fn rate_limit(
    key: &str,
    configured: Option<&config::RateLimit>,
    default: proxy::limit::Limit,
) -> Result<proxy::limit::Limit> {
    let Some(l) = configured else {
        return Ok(default);
    };
    let period = resources::parse_go_duration(&l.period)
        .map_err(|e| ServerError::Config(format!("proxy_service.{key}.period: {e}")))?;
    if period.is_zero() {
        return Err(ServerError::Config(format!(
            "proxy_service.{key}.period must be more than zero"
        )));
    }
    Ok(proxy::limit::Limit {
        burst: l.burst,
        per_sec: f64::from(l.average) / period.as_secs_f64(),
    })
}
