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
        "azure" => bail!("the azure join method is not available in this build yet"),
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

    if cfg.app_service.enabled {
        let host = proxy
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| proxy.clone());
        let apps = app_service::apps_from_config(&cfg.app_service, &host)?;
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
        tracing::warn!(
            "the database service is not available in this build yet; db_service is ignored"
        );
    }

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
