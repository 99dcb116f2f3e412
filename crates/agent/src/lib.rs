//! An agent: it joins the cluster, keeps its host certificate fresh, keeps a
//! reverse tunnel to every proxy, and runs its services (apps, databases;
//! SSH next), each a [`Service`] that heartbeats what it serves and takes
//! the tunnel streams the proxy opens for it. The agent answers pings and
//! takes multiplexed database connections apart itself; everything a
//! service needs from the auth service goes through its [`Context`] (the
//! current identity's client, the [`Cluster`] with cached roles, the
//! [`AuditSink`]).
//!
//! `bins/teleport` parses arguments and calls [`Agent::run`] with the
//! services it links; tests run an agent in-process the same way.

pub mod audit;
mod azure_join;
pub mod cluster;
pub mod join;
pub mod labels;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use api::tunnel::StreamTarget;
use tokio::sync::RwLock;

pub use audit::AuditSink;
pub use cluster::{Cluster, ClusterError, RoleCache};
pub use join::{AgentIdentity, JoinError};

/// How often services announce what they serve; the auth service forgets a
/// server 45 s after its last heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);

/// Why an agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// `teleport.yaml` does not describe an agent that can run.
    #[error("{0}")]
    Config(String),
    /// Joining the cluster failed.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// Local state could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// A service could not be set up from its configuration.
    #[error("{service}: {message}")]
    Service {
        /// The service (`app_service`, `db_service`).
        service: &'static str,
        /// What is wrong.
        message: String,
    },
}

type Result<T, E = AgentError> = std::result::Result<T, E>;

fn proxy_addr(cfg: &config::FileConfig) -> Result<String> {
    cfg.teleport
        .proxy_server
        .clone()
        .or_else(|| cfg.teleport.auth_server.clone())
        .or_else(|| cfg.teleport.auth_servers.first().cloned())
        .ok_or_else(|| {
            AgentError::Config(
                "teleport.proxy_server (teleport start --auth-server) must be set for an agent: the proxy's host:port".into(),
            )
        })
}

fn agent_roles(cfg: &config::FileConfig) -> Vec<String> {
    let mut roles = Vec::new();
    if cfg.app_service.enabled {
        roles.push("App".to_string());
    }
    if cfg.db_service.enabled {
        roles.push("Db".to_string());
    }
    if cfg.ssh_service.enabled {
        roles.push("Node".to_string());
    }
    roles
}

async fn obtain_identity(
    cfg: &config::FileConfig,
    proxy: &str,
    roles: &[String],
    insecure: bool,
) -> Result<AgentIdentity> {
    let data_dir = cfg.data_dir();
    if let Some(id) = AgentIdentity::load(&data_dir) {
        if id.usable_for(roles) {
            tracing::info!(host_id = %id.host_id, cluster = %id.cluster_name, "using the stored agent identity");
            return Ok(id);
        }
    }
    let params = cfg.teleport.join_params.clone().unwrap_or_default();
    let token_name = if params.token_name.is_empty() {
        cfg.teleport.auth_token.clone().unwrap_or_default()
    } else {
        params.token_name.clone()
    };
    let method = if params.method.is_empty() {
        "token"
    } else {
        params.method.as_str()
    };
    let pins = cfg
        .teleport
        .ca_pin
        .as_ref()
        .map(|p| p.to_vec())
        .unwrap_or_default();
    let host_id = join::host_id(&data_dir)?;
    let config = |m: &str| AgentError::Config(m.to_string());
    let nodename = cfg.nodename();
    let trust = join::trust_cluster(proxy, &pins, insecure).await?;
    let identity = match method {
        "token" => {
            if token_name.is_empty() {
                return Err(config(
                    "join_params.token_name (teleport start --token) must be set: a token or a file holding it",
                ));
            }
            let token = join::read_token(&token_name)?;
            join::join_with_token(proxy, &trust, &token, &host_id, &nodename, roles).await?
        }
        "azure" => {
            if token_name.is_empty() {
                return Err(config(
                    "join_params.token_name must name the token resource (join_method: azure)",
                ));
            }
            let client_id = params.azure.as_ref().and_then(|a| a.client_id.as_deref());
            join::join_with_azure(
                proxy,
                &trust,
                token_name.trim(),
                client_id,
                &host_id,
                &nodename,
                roles,
            )
            .await?
        }
        other => {
            return Err(config(&format!(
                "unsupported join method {other:?}: use token or azure"
            )))
        }
    };
    identity.save(&data_dir)?;
    tracing::info!(host_id = %identity.host_id, cluster = %identity.cluster_name, roles = ?roles, "joined the cluster");
    eprintln!(
        "Joined cluster {} as {} ({}).",
        identity.cluster_name,
        identity.host_id,
        roles.join(",")
    );
    Ok(identity)
}

/// What a service is given when the agent starts it.
#[derive(Clone)]
pub struct Context {
    /// The proxy the agent was configured with (`host:port`).
    pub proxy: String,
    /// The agent's host ID.
    pub host_id: String,
    /// The auth service: roles (cached for [`cluster::ROLE_TTL`]) and audit.
    pub cluster: Arc<dyn Cluster>,
    /// Where services queue audit events.
    pub audit: AuditSink,
    link: Arc<ClusterLink>,
}

impl Context {
    /// The proxy's host name, without the port (apps' public addresses are
    /// made under it).
    pub fn proxy_host(&self) -> &str {
        self.proxy
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&self.proxy)
    }

    /// A client of the auth service (through the proxy) with the current
    /// host certificate; connections are reused until the certificate is
    /// renewed.
    pub async fn api(&self) -> Result<Arc<client::ApiClient>, ClusterError> {
        self.link.api().await
    }
}

/// One of an agent's services.
#[async_trait::async_trait]
pub trait Service: Send + Sync + 'static {
    /// Its name in logs (`app_service`, `db_service`).
    fn name(&self) -> &'static str;
    /// Background work (heartbeats, labels, discovery) until `stop` changes.
    async fn run(self: Arc<Self>, ctx: Context, stop: tokio::sync::watch::Receiver<bool>);
    /// Whether a stream for `target` is this service's (apps by name,
    /// database sessions).
    fn accepts(&self, target: &StreamTarget) -> bool;
    /// Serve a stream the proxy opened; called only for targets the service
    /// [`accepts`](Service::accepts).
    async fn serve(self: Arc<Self>, target: StreamTarget, stream: tunnel::TunnelStream);
}

/// Makes a service from the configuration once the agent has joined, or
/// nothing when the service is not enabled.
pub type ServiceFactory =
    Box<dyn FnOnce(&config::FileConfig, &Context) -> Result<Option<Arc<dyn Service>>> + Send>;

/// An agent to run: its configuration and the services it may start.
pub struct Agent {
    cfg: config::FileConfig,
    insecure: bool,
    factories: Vec<ServiceFactory>,
}

impl Agent {
    /// An agent for `cfg`; `insecure` trusts whatever host CA the proxy
    /// presents when no `ca_pin` is set (tests only).
    pub fn new(cfg: config::FileConfig, insecure: bool) -> Agent {
        Agent {
            cfg,
            insecure,
            factories: Vec::new(),
        }
    }

    /// Adds a service (started when its factory says it is enabled).
    pub fn service(mut self, factory: ServiceFactory) -> Agent {
        self.factories.push(factory);
        self
    }

    /// Joins (or loads the stored identity), starts the services and the
    /// tunnels, and runs until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let cfg = &self.cfg;
        let roles = agent_roles(cfg);
        if roles.is_empty() {
            return Err(AgentError::Config("no service is enabled: enable auth_service/proxy_service, or an agent service (app_service, db_service; teleport start --roles=app,db)".into()));
        }
        let proxy = proxy_addr(cfg)?;
        std::fs::create_dir_all(cfg.data_dir()).map_err(|source| AgentError::Io {
            context: "creating the data dir",
            source,
        })?;
        let identity = Arc::new(RwLock::new(
            obtain_identity(cfg, &proxy, &roles, self.insecure).await?,
        ));
        if roles == ["Node"] {
            tracing::warn!(
                "only ssh_service is enabled and the SSH service is not available in this build: the agent has joined the cluster and keeps its certificates fresh, but serves nothing yet"
            );
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = vec![tokio::spawn(renew_forever(
            identity.clone(),
            proxy.clone(),
            cfg.data_dir(),
            stop_rx.clone(),
        ))];

        let link = Arc::new(ClusterLink {
            proxy: proxy.clone(),
            identity: identity.clone(),
            client: tokio::sync::Mutex::new(None),
        });
        let cluster: Arc<dyn Cluster> = Arc::new(CachedCluster {
            link: link.clone(),
            roles: RoleCache::default(),
        });
        let ctx = Context {
            proxy: proxy.clone(),
            host_id: identity.read().await.host_id.clone(),
            audit: AuditSink::start(cluster.clone()),
            cluster,
            link,
        };
        let mut services: Vec<Arc<dyn Service>> = Vec::new();
        for factory in self.factories {
            if let Some(service) = factory(cfg, &ctx)? {
                services.push(service);
            }
        }
        for service in &services {
            tracing::info!(service = service.name(), "starting");
            tasks.push(tokio::spawn(
                service.clone().run(ctx.clone(), stop_rx.clone()),
            ));
        }
        let services = Arc::new(services);
        tasks.push(tokio::spawn(run_tunnels(
            proxy, identity, services, stop_rx,
        )));

        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    }
}

/// Renews the host certificate at half its remaining life, saving each new
/// one, until `stop` changes.
async fn renew_forever(
    identity: Arc<RwLock<AgentIdentity>>,
    proxy: String,
    data_dir: std::path::PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let wait = identity.read().await.renew_in();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        let current = identity.read().await.clone();
        match join::renew(&proxy, &current).await {
            Ok(new) => {
                if let Err(e) = new.save(&data_dir) {
                    tracing::warn!(error = %e, "saving the renewed identity");
                }
                *identity.write().await = new;
                tracing::info!("host certificate renewed");
            }
            Err(e) => {
                tracing::warn!(error = %e, "host certificate renewal failed; retrying in 30s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// Keep a tunnel to every proxy: the configured one at once, the others as
/// the cluster lists them (checked every 10 s).
async fn run_tunnels(
    proxy: String,
    identity: Arc<RwLock<AgentIdentity>>,
    services: Arc<Vec<Arc<dyn Service>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut dialled = std::collections::BTreeSet::new();
    let mut handles = Vec::new();
    dialled.insert(proxy.clone());
    handles.push(spawn_tunnel(
        proxy.clone(),
        identity.clone(),
        services.clone(),
        stop.clone(),
    ));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = stop.changed() => break,
        }
        let id = identity.read().await.clone();
        let listed: Result<Vec<api::inventory::ProxyEntry>, JoinError> =
            match join::cluster_client(&proxy, &id.trust(), Some(&id)) {
                Ok(api) => api
                    .get("/v1/auth/proxies")
                    .await
                    .map_err(JoinError::at(join::JoinStep::ListProxies)),
                Err(e) => Err(e),
            };
        match listed {
            Ok(list) => {
                for p in list {
                    let addr = match proxy_dial_addr(&p) {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "the cluster listed a proxy address this agent will not dial");
                            continue;
                        }
                    };
                    if dialled.insert(addr.clone()) {
                        tracing::info!(proxy = %addr, "opening a reverse tunnel to another proxy");
                        handles.push(spawn_tunnel(
                            addr,
                            identity.clone(),
                            services.clone(),
                            stop.clone(),
                        ));
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "listing proxies"),
        }
    }
    for h in handles {
        let _ = h.await;
    }
}

/// The address to dial for a proxy the cluster lists: its `addr` parsed as
/// `host:port` (a DNS name or IP address and a port, nothing else), never
/// dialled as the text the auth service sent.
fn proxy_dial_addr(p: &api::inventory::ProxyEntry) -> Result<String, ProxyAddrError> {
    let authority = azure_mint::authority::Authority::parse(&p.addr)?;
    match authority.port() {
        Some(_) => Ok(authority.to_string()),
        None => Err(ProxyAddrError::NoPort(authority.to_string())),
    }
}

/// Why a listed proxy address is not dialled.
#[derive(Debug, thiserror::Error)]
enum ProxyAddrError {
    /// Not a `host:port`.
    #[error("proxy address: {0}")]
    Invalid(#[from] azure_mint::authority::AddressError),
    /// A host without the port to dial.
    #[error("proxy address {0:?} has no port")]
    NoPort(String),
}

fn spawn_tunnel(
    addr: String,
    identity: Arc<RwLock<AgentIdentity>>,
    services: Arc<Vec<Arc<dyn Service>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let connect_addr = addr.clone();
    let connector = tunnel::connector_fn(move || {
        let identity = identity.clone();
        let addr = connect_addr.clone();
        async move {
            let id = identity.read().await.clone();
            let s = join::dial_tunnel(&addr, &id).await?;
            Ok(Box::new(s) as Box<dyn tunnel::AsyncReadWrite>)
        }
    });
    let handler = tunnel::handler_fn(move |target: Vec<u8>, stream: tunnel::TunnelStream| {
        let services = services.clone();
        async move {
            handle_stream(services, target, stream).await;
        }
    });
    let agent_tunnel = tunnel::AgentTunnel::new(connector, handler);
    let mut state = agent_tunnel.state();
    tokio::spawn(async move {
        let log_addr = addr.clone();
        let logger = tokio::spawn(async move {
            while state.changed().await.is_ok() {
                let s = *state.borrow();
                tracing::info!(proxy = %log_addr, state = ?s, "reverse tunnel");
            }
        });
        agent_tunnel
            .run(async move {
                let _ = stop.changed().await;
            })
            .await;
        let _ = logger.await;
    })
}

/// The agent's connection to the auth service, through the proxy, with the
/// current host certificate.
struct ClusterLink {
    proxy: String,
    identity: Arc<RwLock<AgentIdentity>>,
    /// A client for the current certificate (connections are reused).
    client: tokio::sync::Mutex<Option<(String, Arc<client::ApiClient>)>>,
}

impl ClusterLink {
    async fn api(&self) -> Result<Arc<client::ApiClient>, ClusterError> {
        let id = self.identity.read().await.clone();
        let mut cached = self.client.lock().await;
        if let Some((cert, api)) = cached.as_ref() {
            if *cert == id.cert_pem {
                return Ok(api.clone());
            }
        }
        let api = Arc::new(
            join::cluster_client(&self.proxy, &id.trust(), Some(&id))
                .map_err(|e| ClusterError::Local(e.to_string()))?,
        );
        *cached = Some((id.cert_pem.clone(), api.clone()));
        Ok(api)
    }
}

/// The auth service as services see it, with roles cached.
struct CachedCluster {
    link: Arc<ClusterLink>,
    roles: RoleCache,
}

#[async_trait::async_trait]
impl Cluster for CachedCluster {
    async fn roles(&self, names: &[String]) -> Result<Vec<resources::Role>, ClusterError> {
        self.roles
            .get(names, || async {
                self.link
                    .api()
                    .await?
                    .post("/v1/auth/agent/roles", &names)
                    .await
            })
            .await
    }

    async fn audit_batch(&self, body: Vec<u8>) -> Result<(), ClusterError> {
        let _: serde_json::Value = self
            .link
            .api()
            .await?
            .post_json_text("/v1/auth/agent/events", body)
            .await?;
        Ok(())
    }
}

/// The service that takes `target`, if any.
fn service_for<'a>(
    services: &'a [Arc<dyn Service>],
    target: &StreamTarget,
) -> Option<&'a Arc<dyn Service>> {
    services.iter().find(|s| s.accepts(target))
}

/// One database session, or its refusal when no service takes it.
async fn serve_db_session(
    services: Arc<Vec<Arc<dyn Service>>>,
    cert: Vec<u8>,
    mut stream: tunnel::TunnelStream,
) {
    use tokio::io::AsyncWriteExt;
    let target = StreamTarget::Db { cert };
    match service_for(&services, &target) {
        Some(service) => service.clone().serve(target, stream).await,
        None => {
            tracing::warn!("the proxy asked for a database session this agent does not serve");
            let _ = stream
                .write_all(b"-ERR Teleport: this agent does not serve databases\r\n")
                .await;
            let _ = stream.shutdown().await;
        }
    }
}

/// Streams the proxy opens through the tunnel, by target.
async fn handle_stream(
    services: Arc<Vec<Arc<dyn Service>>>,
    target: Vec<u8>,
    mut stream: tunnel::TunnelStream,
) {
    use tokio::io::AsyncWriteExt;
    let target = match StreamTarget::parse(&target) {
        Ok(t) => t,
        Err(why) => {
            tracing::warn!("the proxy asked for something this agent does not serve: {why}");
            let _ = stream.shutdown().await;
            return;
        }
    };
    match target {
        StreamTarget::Ping => {
            let _ = stream.write_all(b"pong").await;
            let _ = stream.shutdown().await;
        }
        StreamTarget::DbMux { cert } => {
            // A user's whole multiplexed connection (`api::alpn::REDIS_MUX`):
            // every stream the client opens on it is a session of that
            // certificate's.
            let result = tunnel::serve_mux(stream, &tunnel::db_mux_config(), move |session| {
                tokio::spawn(serve_db_session(services.clone(), cert.clone(), session));
            })
            .await;
            if let Err(e) = result {
                tracing::debug!(error = %e, "multiplexed database connection ended");
            }
        }
        StreamTarget::Db { cert } => serve_db_session(services, cert, stream).await,
        target => match service_for(&services, &target) {
            Some(service) => service.clone().serve(target, stream).await,
            None => {
                tracing::warn!(target = ?target.kind(), "the proxy asked for something this agent does not serve");
                let _ = stream.shutdown().await;
            }
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Proxy addresses from the cluster are parsed before they are dialled.
    #[test]
    fn listed_proxies_are_dialled_only_as_host_and_port() {
        let entry = |addr: &str| api::inventory::ProxyEntry {
            id: addr.to_string(),
            addr: addr.to_string(),
        };
        assert_eq!(
            proxy_dial_addr(&entry("proxy-2.example.com:3080")).unwrap(),
            "proxy-2.example.com:3080"
        );
        assert_eq!(
            proxy_dial_addr(&entry("127.0.0.1:3080")).unwrap(),
            "127.0.0.1:3080"
        );
        for bad in [
            "proxy.example.com",
            "evil.com:443@proxy.example.com:3080",
            "proxy.example.com:3080/path",
            "proxy example.com:3080",
            "proxy.example.com:0",
            "",
        ] {
            assert!(proxy_dial_addr(&entry(bad)).is_err(), "{bad:?}");
        }
    }
}
