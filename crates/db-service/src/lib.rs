//! The database service: the databases an agent serves and the heartbeats
//! that register them. (Proxying Redis sessions and Azure discovery come
//! with the Redis engine.)

pub mod credentials;
pub mod discovery;
pub mod session;

use std::time::Duration;

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
            let period = match &c.period {
                Some(p) => resources::parse_go_duration(p).map_err(|e| {
                    DbError::Config(format!(
                        "database {:?}: label {:?}: period: {e}",
                        d.name, c.name
                    ))
                })?,
                None => Duration::from_secs(60),
            };
            db.spec.dynamic_labels.insert(
                c.name.clone(),
                CommandLabel {
                    command: c.command.clone(),
                    period: resources::Duration(period),
                    result: String::new(),
                },
            );
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
        let hb = auth::agents::Heartbeat {
            kind: "db".into(),
            app: None,
            db: Some(db.clone()),
            features: vec![auth::agents::FEATURE_DB_MUX.into()],
        };
        let _: serde_json::Value = api.post("/v1/auth/heartbeat", &hb).await?;
    }
    Ok(())
}

/// Refresh dynamic labels once (commands run like the app service's).
pub async fn refresh_labels(dbs: &mut [Database]) {
    for db in dbs.iter_mut() {
        for label in db.spec.dynamic_labels.values_mut() {
            label.result = app_service::run_label_command(&label.command).await;
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
