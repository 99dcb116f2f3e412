//! The database service of an agent ([`DbService`]): the databases it
//! serves (configured and discovered in Azure), their heartbeats, and the
//! Redis sessions the proxy opens to them ([`session`]).

pub mod credentials;
pub mod discovery;
pub mod session;

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::RwLock;

use resources::{CommandLabel, Database, DatabaseAzure, DatabaseTls};

/// Errors of `db_service` configuration.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A database entry is invalid.
    #[error("db_service.databases: {0}")]
    Config(String),
}

/// Build database resources from `db_service.databases`.
pub fn databases_from_config(cfg: &config::DbService) -> Result<Vec<Database>, DbError> {
    let mut out = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for d in &cfg.databases {
        if !names.insert(d.name.clone()) {
            return Err(DbError::Config(format!(
                "database {:?} is listed twice",
                d.name
            )));
        }
        let mut db = Database::new(d.name.clone(), d.protocol.clone(), d.uri.clone());
        db.metadata.description = d.description.clone().unwrap_or_default();
        db.metadata.labels = d.static_labels.clone();
        if let Some(tls) = &d.tls {
            let ca_cert = match &tls.ca_cert_file {
                Some(p) => std::fs::read_to_string(p).map_err(|e| {
                    DbError::Config(format!(
                        "database {:?}: ca_cert_file {}: {e}",
                        d.name,
                        p.display()
                    ))
                })?,
                None => String::new(),
            };
            db.spec.tls = Some(DatabaseTls {
                mode: tls.mode.clone().unwrap_or_else(|| "verify-full".into()),
                server_name: tls.server_name.clone().unwrap_or_default(),
                ca_cert,
            });
        }
        if let Some(az) = &d.azure {
            let resource_id = az.resource_id.clone().unwrap_or_default();
            let enterprise = resource_id
                .to_ascii_lowercase()
                .contains("/providers/microsoft.cache/redisenterprise/");
            db.spec.azure = Some(DatabaseAzure {
                name: String::new(),
                is_enterprise: az.is_cluster_mode || enterprise,
                resource_id,
            });
        }
        for c in &d.dynamic_labels {
            let label =
                CommandLabel::every(c.command.clone(), c.period.as_deref()).map_err(|e| {
                    DbError::Config(format!(
                        "database {:?}: label {:?}: period: {e}",
                        d.name, c.name
                    ))
                })?;
            db.spec.dynamic_labels.insert(c.name.clone(), label);
        }
        db.validate().map_err(|e| DbError::Config(e.to_string()))?;
        out.push(db);
    }
    Ok(out)
}

/// Announce every database now.
pub async fn heartbeat_once(
    api: &client::ApiClient,
    dbs: &[Database],
) -> Result<(), client::ClientError> {
    for db in dbs {
        let hb = api::inventory::Heartbeat {
            kind: "db".into(),
            app: None,
            db: Some(db.clone()),
            features: vec![api::inventory::FEATURE_DB_MUX.into()],
        };
        let _: serde_json::Value = api.post("/v1/auth/heartbeat", &hb).await?;
    }
    Ok(())
}

/// Refresh dynamic labels once (commands run like the app service's).
pub async fn refresh_labels(dbs: &mut [Database]) {
    for db in dbs.iter_mut() {
        for label in db.spec.dynamic_labels.values_mut() {
            label.result = agent::labels::run_command(&label.command).await;
        }
    }
}

/// The database service of an agent: the databases of
/// `db_service.databases` and those discovered in Azure
/// (`db_service.azure`), announced every [`agent::HEARTBEAT_INTERVAL`], and
/// the sessions the proxy opens to them.
pub struct DbService {
    /// What is announced now: the static databases, then the discovered ones.
    dbs: Arc<RwLock<Vec<Database>>>,
    static_names: BTreeSet<String>,
    matchers: Vec<config::AzureMatcher>,
    arm: Arc<azure_mint::arm::ArmClient>,
    sessions: Arc<session::DbSessions>,
}

impl DbService {
    /// The database service `cfg` describes, or `None` when it is not
    /// enabled. Azure is reached through the DefaultAzureCredential chain
    /// (environment, workload identity, managed identity), as the Redis
    /// guide describes: ARM for discovery and access keys, Entra tokens for
    /// the caches whose keys are disabled.
    pub fn from_config(
        cfg: &config::FileConfig,
        ctx: &agent::Context,
    ) -> Result<Option<Arc<dyn agent::Service>>, agent::AgentError> {
        if !cfg.db_service.enabled {
            return Ok(None);
        }
        let failed = |message: String| agent::AgentError::Service {
            service: "db_service",
            message,
        };
        let initial = databases_from_config(&cfg.db_service).map_err(|e| failed(e.to_string()))?;
        let static_names = initial.iter().map(|d| d.metadata.name.clone()).collect();
        let dbs = Arc::new(RwLock::new(initial));
        let http = azure_mint::http::HttpConfig::from_env();
        let cloud = azure_mint::Cloud::default();
        let chain: Arc<dyn azure_core::credentials::TokenCredential> =
            Arc::new(azure_mint::credential::DefaultChain::from_env(&http, cloud));
        let arm = Arc::new(
            azure_mint::arm::ArmClient::with_credential(&http, cloud, chain.clone())
                .map_err(|e| failed(format!("Azure ARM client: {e}")))?,
        );
        let creds: Arc<dyn session::CredentialSource> =
            Arc::new(credentials::AzureCredentialSource::new(arm.clone(), chain));
        let sessions = session::DbSessions::new(
            dbs.clone(),
            ctx.cluster.clone(),
            ctx.audit.clone(),
            creds,
            ctx.host_id.clone(),
        )
        .with_connection_sharing(cfg.db_service.redis_connection_sharing);
        Ok(Some(Arc::new(DbService {
            dbs,
            static_names,
            matchers: cfg.db_service.azure.clone(),
            arm,
            sessions: Arc::new(sessions),
        })))
    }

    /// One heartbeat: discovery (discovered databases follow Azure: ones
    /// that vanish stop being announced and expire from the cluster),
    /// dynamic labels, then the announcement.
    async fn heartbeat(&self, ctx: &agent::Context) -> Result<(), agent::ClusterError> {
        let mut current = self.dbs.read().await.clone();
        if !self.matchers.is_empty() {
            match discovery::discover(&self.arm, &self.matchers).await {
                Ok(found) => {
                    current.retain(|d| self.static_names.contains(&d.metadata.name));
                    current.extend(
                        found
                            .into_iter()
                            .filter(|d| !self.static_names.contains(&d.metadata.name)),
                    );
                }
                Err(e) => tracing::warn!(error = %e, "Azure Redis discovery failed"),
            }
        }
        refresh_labels(&mut current).await;
        *self.dbs.write().await = current.clone();
        let api = ctx.api().await?;
        heartbeat_once(&api, &current).await
    }
}

#[async_trait::async_trait]
impl agent::Service for DbService {
    fn name(&self) -> &'static str {
        "db_service"
    }

    async fn run(
        self: Arc<Self>,
        ctx: agent::Context,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(agent::HEARTBEAT_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = self.heartbeat(&ctx).await {
                tracing::warn!(error = %e, "database heartbeat failed");
            }
        }
    }

    fn accepts(&self, target: &agent::StreamTarget) -> bool {
        matches!(target, agent::StreamTarget::Db { .. })
    }

    async fn serve(self: Arc<Self>, target: agent::StreamTarget, stream: tunnel::TunnelStream) {
        if let agent::StreamTarget::Db { cert } = target {
            self.sessions.clone().serve(cert, stream).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn guide_databases_convert() {
        let cfg = config::parse(
            "version: v3\ndb_service:\n  enabled: yes\n  databases:\n  - name: my-azure-redis\n    protocol: redis\n    uri: my-redis.redis.cache.windows.net:6380\n    static_labels:\n      env: dev\n    azure:\n      resource_id: /subscriptions/0/resourceGroups/g/providers/Microsoft.Cache/Redis/my-redis\n",
            "t",
        )
        .unwrap();
        let dbs = databases_from_config(&cfg.db_service).unwrap();
        assert_eq!(dbs[0].spec.protocol, "redis");
        assert_eq!(dbs[0].all_labels()["env"], "dev");
        assert!(dbs[0]
            .spec
            .azure
            .as_ref()
            .unwrap()
            .resource_id
            .ends_with("my-redis"));
        let bad = config::parse(
            "version: v3\ndb_service:\n  enabled: yes\n  databases:\n  - name: x\n    protocol: redis\n    uri: \"\"\n",
            "t",
        )
        .unwrap();
        assert!(databases_from_config(&bad.db_service).is_err());
    }
}
