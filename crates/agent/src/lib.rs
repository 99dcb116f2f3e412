//! Agent mode: join the cluster, keep the host certificate fresh, and run
//! the enabled agent services.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use join::AgentIdentity;
use tokio::sync::RwLock;

fn proxy_addr(cfg: &config::FileConfig) -> Result<String> {
    cfg.teleport
        .proxy_server
        .clone()
        .or_else(|| cfg.teleport.auth_server.clone())
        .or_else(|| cfg.teleport.auth_servers.first().cloned())
        .ok_or_else(|| {
            anyhow!("teleport.proxy_server must be set for an agent (the proxy's host:port)")
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
    let nodename = cfg.nodename();
    let trust = join::trust_cluster(proxy, &pins, insecure)
        .await
        .map_err(|e| {
            if pins.is_empty() && !insecure {
                anyhow!("{e}; set teleport.ca_pin to the pin `tctl status` prints")
            } else {
                anyhow!("{e}")
            }
        })?;
    let identity = match method {
        "token" => {
            if token_name.is_empty() {
                bail!("join_params.token_name must be set (a token or a file holding it)");
            }
            let token = join::read_token(&token_name)?;
            join::join_with_token(proxy, &trust, &token, &host_id, &nodename, roles).await?
        }
        "azure" => {
            if token_name.is_empty() {
                bail!("join_params.token_name must name the token resource (join_method: azure)");
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
        other => bail!("unsupported join method {other:?}: use token or azure"),
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

pub async fn run(
    cfg: &config::FileConfig,
    insecure: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let roles = agent_roles(cfg);
    if roles.is_empty() {
        bail!("no service is enabled: enable auth_service/proxy_service, or an agent service (app_service, db_service)");
    }
    let proxy = proxy_addr(cfg)?;
    std::fs::create_dir_all(cfg.data_dir()).context("creating the data dir")?;
    let identity = Arc::new(RwLock::new(
        obtain_identity(cfg, &proxy, &roles, insecure).await?,
    ));
    if roles == ["Node"] {
        tracing::warn!(
            "only ssh_service is enabled and the SSH service is not available in this build: the agent has joined the cluster and keeps its certificates fresh, but serves nothing yet"
        );
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();

    // Renew the host certificate at half its remaining life.
    {
        let identity = identity.clone();
        let proxy = proxy.clone();
        let data_dir = cfg.data_dir();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
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
        }));
    }

    let mut services = Services::default();
    if cfg.app_service.enabled {
        let host = proxy
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| proxy.clone());
        let apps = app_service::apps_from_config(&cfg.app_service, &host)?;
        let cluster: Arc<dyn app_service::azure::Cluster> = Arc::new(AgentCluster {
            proxy: proxy.clone(),
            identity: identity.clone(),
            client: tokio::sync::Mutex::new(None),
        });
        for app in apps.iter().filter(|a| a.is_azure_cloud()) {
            let http = azure_mint::http::HttpConfig::from_env();
            let minter = azure_mint::credential::IdentityMinter::new(
                azure_mint::credential::MintStrategy::Vm,
                http.clone(),
                azure_mint::Cloud::default(),
            );
            let tokens = Arc::new(azure_mint::TokenCache::new(Arc::new(minter)));
            let client = http
                .forwarding_client()
                .map_err(|e| anyhow!("Azure HTTP client: {e}"))?;
            services.azure.insert(
                app.metadata.name.clone(),
                Arc::new(app_service::azure::AzureHandler::new(
                    app.clone(),
                    cluster.clone(),
                    tokens,
                    client,
                )),
            );
        }
        let set = app_service::AppSet::new(apps);
        set.refresh_all().await;
        {
            let set = set.clone();
            let stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move { set.run_labels(stop).await }));
        }
        let identity = identity.clone();
        let proxy = proxy.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(app_service::HEARTBEAT_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let id = identity.read().await.clone();
                let api = match join::cluster_client(&proxy, &id.trust(), Some(&id)) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "heartbeat client");
                        continue;
                    }
                };
                let apps = set.snapshot().await;
                match app_service::heartbeat_once(&api, &apps).await {
                    Ok(()) => {
                        tracing::debug!(apps = ?app_service::describe(&apps), "apps announced")
                    }
                    Err(e) => tracing::warn!(error = %e, "app heartbeat failed"),
                }
            }
        }));
    }
    if cfg.db_service.enabled {
        let initial = db_service::databases_from_config(&cfg.db_service)?;
        let static_names: std::collections::BTreeSet<String> =
            initial.iter().map(|d| d.metadata.name.clone()).collect();
        let dbs = Arc::new(RwLock::new(initial));
        let matchers = cfg.db_service.azure.clone();
        // Azure through the DefaultAzureCredential chain (environment,
        // workload identity, managed identity), as the Redis guide describes:
        // ARM for discovery and access keys, Entra tokens for the caches
        // whose keys are disabled.
        let http = azure_mint::http::HttpConfig::from_env();
        let cloud = azure_mint::Cloud::default();
        let chain: Arc<dyn azure_core::credentials::TokenCredential> =
            Arc::new(azure_mint::credential::DefaultChain::from_env(&http, cloud));
        let arm = Arc::new(
            azure_mint::arm::ArmClient::new(
                &http,
                cloud,
                Arc::new(azure_mint::arm::CredentialBearer::new(chain.clone(), cloud)),
            )
            .map_err(|e| anyhow!("Azure ARM client: {e}"))?,
        );
        let cluster: Arc<dyn db_service::session::Cluster> = Arc::new(AgentCluster {
            proxy: proxy.clone(),
            identity: identity.clone(),
            client: tokio::sync::Mutex::new(None),
        });
        let sink = db_service::session::AuditSink::start(cluster.clone());
        let creds: Arc<dyn db_service::session::CredentialSource> = Arc::new(
            db_service::credentials::AzureCredentialSource::new(arm.clone(), chain.clone()),
        );
        services.db = Some(Arc::new(
            db_service::session::DbSessions::new(
                dbs.clone(),
                cluster,
                sink,
                creds,
                identity.read().await.host_id.clone(),
            )
            .with_connection_sharing(cfg.db_service.redis_connection_sharing),
        ));
        let identity = identity.clone();
        let proxy = proxy.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(app_service::HEARTBEAT_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let mut current = dbs.read().await.clone();
                if !matchers.is_empty() {
                    // Discovered databases follow Azure: ones that vanish stop
                    // being announced and expire from the cluster.
                    match db_service::discovery::discover(&arm, &matchers).await {
                        Ok(found) => {
                            current.retain(|d| static_names.contains(&d.metadata.name));
                            current.extend(
                                found
                                    .into_iter()
                                    .filter(|d| !static_names.contains(&d.metadata.name)),
                            );
                        }
                        Err(e) => tracing::warn!(error = %e, "Azure Redis discovery failed"),
                    }
                }
                db_service::refresh_labels(&mut current).await;
                *dbs.write().await = current.clone();
                let id = identity.read().await.clone();
                let result = match join::cluster_client(&proxy, &id.trust(), Some(&id)) {
                    Ok(api) => db_service::heartbeat_once(&api, &current)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "database heartbeat failed");
                }
            }
        }));
    }

    // Reverse tunnels: one to the configured proxy, and one to every other
    // proxy of the cluster as they announce themselves.
    {
        let services = Arc::new(std::mem::take(&mut services));
        let identity = identity.clone();
        let proxy = proxy.clone();
        let stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            run_tunnels(proxy, identity, services, stop).await;
        }));
    }

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Keep a tunnel to every proxy: the configured one at once, the others as
/// the cluster lists them (checked every 10 s).
async fn run_tunnels(
    proxy: String,
    identity: Arc<RwLock<AgentIdentity>>,
    services: Arc<Services>,
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
        let listed: Result<Vec<auth::agents::ProxyEntry>, String> =
            match join::cluster_client(&proxy, &id.trust(), Some(&id)) {
                Ok(api) => api.get("/v1/auth/proxies").await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
        match listed {
            Ok(list) => {
                for p in list {
                    if dialled.insert(p.addr.clone()) {
                        tracing::info!(proxy = %p.addr, "opening a reverse tunnel to another proxy");
                        handles.push(spawn_tunnel(
                            p.addr,
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

fn spawn_tunnel(
    addr: String,
    identity: Arc<RwLock<AgentIdentity>>,
    services: Arc<Services>,
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
            handle_stream(&services, target, stream).await;
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

/// What the agent serves through the tunnel.
#[derive(Default)]
struct Services {
    /// Azure apps by name.
    azure: std::collections::HashMap<String, Arc<app_service::azure::AzureHandler>>,
    /// Database sessions (db_service).
    db: Option<Arc<db_service::session::DbSessions>>,
}

/// One database session, or its refusal when this agent serves no
/// databases (or the proxy sent no certificate).
async fn serve_db_session(
    db: Option<Arc<db_service::session::DbSessions>>,
    cert: Vec<u8>,
    mut stream: tunnel::TunnelStream,
) {
    use tokio::io::AsyncWriteExt;
    match db {
        Some(db) => db.serve(cert, stream).await,
        None => {
            tracing::warn!("the proxy asked for a database session this agent does not serve");
            let _ = stream
                .write_all(b"-ERR Teleport: this agent does not serve databases\r\n")
                .await;
            let _ = stream.shutdown().await;
        }
    }
}

/// The auth service as the Azure handler needs it, through the proxy.
struct AgentCluster {
    proxy: String,
    identity: Arc<RwLock<AgentIdentity>>,
    /// A client for the current certificate (connections are reused).
    client: tokio::sync::Mutex<Option<(String, Arc<client::ApiClient>)>>,
}

impl AgentCluster {
    async fn api(&self) -> Result<Arc<client::ApiClient>, String> {
        let id = self.identity.read().await.clone();
        let mut cached = self.client.lock().await;
        if let Some((cert, api)) = cached.as_ref() {
            if *cert == id.cert_pem {
                return Ok(api.clone());
            }
        }
        let api = Arc::new(
            join::cluster_client(&self.proxy, &id.trust(), Some(&id)).map_err(|e| e.to_string())?,
        );
        *cached = Some((id.cert_pem.clone(), api.clone()));
        Ok(api)
    }
}

#[async_trait::async_trait]
impl app_service::azure::Cluster for AgentCluster {
    async fn roles(&self, names: &[String]) -> Result<Vec<resources::Role>, String> {
        self.api()
            .await?
            .post("/v1/auth/agent/roles", &names)
            .await
            .map_err(|e| e.to_string())
    }

    async fn audit(&self, event: serde_json::Value) {
        let result: Result<serde_json::Value, String> = match self.api().await {
            Ok(api) => api
                .post("/v1/auth/agent/events", &event)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "sending an audit event failed");
        }
    }
}

#[async_trait::async_trait]
impl db_service::session::Cluster for AgentCluster {
    async fn roles(&self, names: &[String]) -> Result<Vec<resources::Role>, String> {
        app_service::azure::Cluster::roles(self, names).await
    }

    async fn audit_batch(&self, body: Vec<u8>) -> Result<(), String> {
        let _: serde_json::Value = self
            .api()
            .await?
            .post_json_text("/v1/auth/agent/events", body)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// What the proxy asks for on a tunnel stream, parsed from its target header (which the tunnel
/// refuses beyond `tunnel::MAX_TARGET_LEN` bytes before reading it).
#[derive(Debug, PartialEq, Eq)]
enum StreamTarget {
    /// A keepalive probe.
    Ping,
    /// An app session: the app's name and the user's certificate (DER).
    App { name: String, cert: Vec<u8> },
    /// One database session of the user's certificate.
    Db { cert: Vec<u8> },
    /// A user's multiplexed database connection.
    DbMux { cert: Vec<u8> },
}

impl StreamTarget {
    /// Parses `{"kind": K, "name": N, "cert": base64 DER}`: a JSON object with only those keys,
    /// a known kind, and for sessions a certificate and (apps) a resource name. Anything else
    /// is refused with the reason.
    fn parse(bytes: &[u8]) -> std::result::Result<StreamTarget, String> {
        use base64::Engine;
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let serde_json::Value::Object(fields) = value else {
            return Err("not a JSON object".into());
        };
        if let Some(k) = fields
            .keys()
            .find(|k| !matches!(k.as_str(), "kind" | "name" | "cert"))
        {
            return Err(format!("unknown field {k:?}"));
        }
        let text = |key: &str| match fields.get(key) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("{key:?} is not a string")),
        };
        let kind = text("kind")?.ok_or("no \"kind\"")?;
        let name = text("name")?;
        let cert = || -> std::result::Result<Vec<u8>, String> {
            let b64 = text("cert")?.ok_or("no \"cert\" (the user's certificate)")?;
            let der = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("\"cert\" is not base64: {e}"))?;
            if der.is_empty() {
                return Err("\"cert\" is empty".into());
            }
            Ok(der)
        };
        match kind {
            "ping" => Ok(StreamTarget::Ping),
            "app" => {
                let name = name.ok_or("no \"name\" (the app)")?;
                let ok = !name.is_empty()
                    && name.len() <= 253
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                if !ok {
                    return Err(format!("{name:?} is not an app name"));
                }
                Ok(StreamTarget::App {
                    name: name.to_string(),
                    cert: cert()?,
                })
            }
            "db" => Ok(StreamTarget::Db { cert: cert()? }),
            "db-mux" => Ok(StreamTarget::DbMux { cert: cert()? }),
            other => Err(format!("unknown kind {other:?}")),
        }
    }
}

/// Streams the proxy opens through the tunnel, by target kind.
async fn handle_stream(services: &Services, target: Vec<u8>, mut stream: tunnel::TunnelStream) {
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
        StreamTarget::App { name, cert } => match services.azure.get(&name) {
            Some(handler) => handler.clone().serve(cert, stream).await,
            None => {
                tracing::warn!(app = %name, "the proxy asked for an app this agent does not serve");
                let _ = stream.shutdown().await;
            }
        },
        StreamTarget::DbMux { cert } => {
            // A user's whole multiplexed connection (see `proxy::ALPN_REDIS_MUX`):
            // every stream the client opens on it is a session of that
            // certificate's.
            let db = services.db.clone();
            let result = tunnel::serve_mux(stream, &proxy::db_mux_config(), move |session| {
                tokio::spawn(serve_db_session(db.clone(), cert.clone(), session));
            })
            .await;
            if let Err(e) = result {
                tracing::debug!(error = %e, "multiplexed database connection ended");
            }
        }
        StreamTarget::Db { cert } => {
            serve_db_session(services.db.clone(), cert, stream).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::StreamTarget;

    /// The target header is the proxy's, but it is still parsed into what it must be: known
    /// kinds with the fields they need, nothing else.
    #[test]
    fn stream_targets_are_parsed_strictly() {
        assert_eq!(
            StreamTarget::parse(br#"{"kind":"ping"}"#),
            Ok(StreamTarget::Ping)
        );
        assert_eq!(
            StreamTarget::parse(br#"{"kind":"app","name":"azure-cli","cert":"AQI="}"#),
            Ok(StreamTarget::App {
                name: "azure-cli".into(),
                cert: vec![1, 2]
            })
        );
        assert_eq!(
            StreamTarget::parse(br#"{"kind":"db-mux","name":"cache","cert":"AQI="}"#),
            Ok(StreamTarget::DbMux { cert: vec![1, 2] })
        );
        assert_eq!(
            StreamTarget::parse(br#"{"kind":"db","name":"cache","cert":"AQI="}"#),
            Ok(StreamTarget::Db { cert: vec![1, 2] })
        );
        for bad in [
            &br#"{"kind":"shell","cert":"AQI="}"#[..],
            br#"{"kind":"app","name":"azure-cli"}"#,
            br#"{"kind":"app","name":"../x","cert":"AQI="}"#,
            br#"{"kind":"app","name":"","cert":"AQI="}"#,
            br#"{"kind":"app","name":"a","cert":"not base64!"}"#,
            br#"{"kind":"db","cert":""}"#,
            br#"{"kind":"db"}"#,
            br#"{"kind":"db","cert":1}"#,
            br#"{"kind":"ping","extra":1}"#,
            br#"{"kind":7}"#,
            br#"["ping"]"#,
            br#"{}"#,
            b"",
            b"\xff\xfe",
        ] {
            assert!(
                StreamTarget::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
