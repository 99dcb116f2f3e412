//! The application service: the apps an agent serves, their dynamic labels,
//! and the heartbeats that register them with the cluster.

pub mod azure;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use resources::{App, CommandLabel};
use tokio::sync::RwLock;

/// Errors of the app service configuration.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// An app in `app_service.apps` is invalid.
    #[error("app_service.apps: {0}")]
    Config(String),
}

/// Build the app resources from `app_service.apps`. Apps without a public
/// address get `<name>.<proxy host>`.
pub fn apps_from_config(cfg: &config::AppService, proxy_host: &str) -> Result<Vec<App>, AppError> {
    let mut out = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for a in &cfg.apps {
        if !names.insert(a.name.clone()) {
            return Err(AppError::Config(format!(
                "app {:?} is listed twice",
                a.name
            )));
        }
        let mut app = App::new(a.name.clone(), a.uri.clone().unwrap_or_default());
        app.metadata.labels = a.labels.clone();
        app.metadata.description = a.description.clone().unwrap_or_default();
        app.spec.cloud = a.cloud.clone();
        app.spec.public_addr = a
            .public_addr
            .clone()
            .unwrap_or_else(|| format!("{}.{}", a.name, proxy_host));
        for c in &a.commands {
            if c.command.is_empty() {
                return Err(AppError::Config(format!(
                    "app {:?}: dynamic label {:?} has an empty command",
                    a.name, c.name
                )));
            }
            let label =
                CommandLabel::every(c.command.clone(), c.period.as_deref()).map_err(|e| {
                    AppError::Config(format!("app {:?}: label {:?}: period: {e}", a.name, c.name))
                })?;
            if label.period.0 < Duration::from_secs(1) {
                return Err(AppError::Config(format!(
                    "app {:?}: label {:?}: period must be at least 1s",
                    a.name, c.name
                )));
            }
            app.spec.dynamic_labels.insert(c.name.clone(), label);
        }
        app.check_and_set_defaults()
            .map_err(|e| AppError::Config(e.to_string()))?;
        // The auth service refuses a heartbeat whose text it would not show
        // users: say so at start, naming the app, rather than in every heartbeat.
        app.check_served_text()
            .map_err(|e| AppError::Config(format!("app {:?}: {e}", a.name)))?;
        out.push(app);
    }
    Ok(out)
}

/// The apps with their current dynamic label values.
#[derive(Clone)]
pub struct AppSet {
    apps: Arc<RwLock<Vec<App>>>,
}

impl AppSet {
    /// Wrap configured apps.
    pub fn new(apps: Vec<App>) -> AppSet {
        AppSet {
            apps: Arc::new(RwLock::new(apps)),
        }
    }

    /// A snapshot.
    pub async fn snapshot(&self) -> Vec<App> {
        self.apps.read().await.clone()
    }

    /// Every dynamic label now: the index of its app, its key and itself.
    async fn labels(&self) -> Vec<(usize, String, CommandLabel)> {
        let apps = self.apps.read().await;
        apps.iter()
            .enumerate()
            .flat_map(|(i, a)| {
                a.spec
                    .dynamic_labels
                    .iter()
                    .map(move |(k, v)| (i, k.clone(), v.clone()))
            })
            .collect()
    }

    /// Run every dynamic label once now.
    pub async fn refresh_all(&self) {
        for (i, key, label) in self.labels().await {
            let result = agent::labels::run_command(&label.command).await;
            self.set_label(i, &key, result).await;
        }
    }

    async fn set_label(&self, index: usize, key: &str, result: String) {
        let mut apps = self.apps.write().await;
        if let Some(l) = apps
            .get_mut(index)
            .and_then(|a| a.spec.dynamic_labels.get_mut(key))
        {
            l.result = result;
        }
    }

    /// Keep each dynamic label fresh on its own period, until `stop` fires.
    pub async fn run_labels(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tasks = Vec::new();
        for (
            i,
            key,
            CommandLabel {
                command: argv,
                period,
                ..
            },
        ) in self.labels().await
        {
            let set = self.clone();
            let mut stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(period.0);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let r = agent::labels::run_command(&argv).await;
                            set.set_label(i, &key, r).await;
                        }
                        _ = stop.changed() => return,
                    }
                }
            }));
        }
        let _ = stop.changed().await;
        for t in tasks {
            t.abort();
        }
    }
}

/// Announce every app now.
pub async fn heartbeat_once(
    api: &client::ApiClient,
    apps: &[App],
) -> Result<(), client::ClientError> {
    for app in apps {
        let hb = api::inventory::Heartbeat {
            kind: "app".into(),
            app: Some(app.clone()),
            db: None,
            features: Vec::new(),
        };
        let _: serde_json::Value = api.post("/v1/auth/heartbeat", &hb).await?;
    }
    Ok(())
}

/// Labels of every app, for logs.
pub fn describe(apps: &[App]) -> BTreeMap<String, BTreeMap<String, String>> {
    apps.iter()
        .map(|a| (a.metadata.name.clone(), a.all_labels()))
        .collect()
}

/// The app service of an agent: the apps of `app_service.apps`, announced
/// every [`agent::HEARTBEAT_INTERVAL`], and the Azure handlers of the Azure
/// apps among them.
pub struct AppService {
    set: AppSet,
    azure: HashMap<String, Arc<azure::AzureHandler>>,
}

impl AppService {
    /// The app service `cfg` describes, or `None` when it is not enabled.
    /// Azure apps mint tokens with the VM's managed identities (IMDS)
    /// through the environment's proxy settings.
    pub fn from_config(
        cfg: &config::FileConfig,
        ctx: &agent::Context,
    ) -> Result<Option<Arc<dyn agent::Service>>, agent::AgentError> {
        if !cfg.app_service.enabled {
            return Ok(None);
        }
        let failed = |message: String| agent::AgentError::Service {
            service: "app_service",
            message,
        };
        let apps = apps_from_config(&cfg.app_service, ctx.proxy_host())
            .map_err(|e| failed(e.to_string()))?;
        let mut azure = HashMap::new();
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
                .map_err(|e| failed(format!("Azure HTTP client: {e}")))?;
            azure.insert(
                app.metadata.name.clone(),
                Arc::new(azure::AzureHandler::new(
                    app.clone(),
                    ctx.cluster.clone(),
                    ctx.audit.clone(),
                    tokens,
                    client,
                )),
            );
        }
        Ok(Some(Arc::new(AppService {
            set: AppSet::new(apps),
            azure,
        })))
    }
}

#[async_trait::async_trait]
impl agent::Service for AppService {
    fn name(&self) -> &'static str {
        "app_service"
    }

    async fn run(
        self: Arc<Self>,
        ctx: agent::Context,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        self.set.refresh_all().await;
        let labels = {
            let set = self.set.clone();
            let stop = stop.clone();
            tokio::spawn(async move { set.run_labels(stop).await })
        };
        let mut tick = tokio::time::interval(agent::HEARTBEAT_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let apps = self.set.snapshot().await;
            let result = match ctx.api().await {
                Ok(api) => heartbeat_once(&api, &apps).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => tracing::debug!(apps = ?describe(&apps), "apps announced"),
                Err(e) => tracing::warn!(error = %e, "app heartbeat failed"),
            }
        }
        let _ = labels.await;
    }

    fn accepts(&self, target: &agent::StreamTarget) -> bool {
        matches!(target, agent::StreamTarget::App { name, .. } if self.azure.contains_key(name))
    }

    async fn serve(self: Arc<Self>, target: agent::StreamTarget, stream: tunnel::TunnelStream) {
        if let agent::StreamTarget::App { name, cert } = target {
            if let Some(handler) = self.azure.get(&name) {
                handler.clone().serve(cert, stream).await;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> config::AppService {
        config::parse(&format!("version: v3\napp_service:\n{yaml}"), "t")
            .unwrap()
            .app_service
    }

    #[test]
    fn guide_apps_convert() {
        let c = cfg("  enabled: yes\n  apps:\n  - name: azure-cli\n    cloud: Azure\n  - name: grafana\n    uri: http://localhost:3000\n    labels:\n      env: prod\n      group: metrics\n    commands:\n    - name: arch\n      command: [uname, -p]\n      period: 1m0s\n");
        let apps = apps_from_config(&c, "proxy.example.com").unwrap();
        assert_eq!(apps[0].spec.uri, "cloud://Azure");
        assert!(apps[0].is_azure_cloud());
        assert_eq!(apps[0].spec.public_addr, "azure-cli.proxy.example.com");
        let arch = &apps[1].spec.dynamic_labels["arch"];
        assert_eq!(arch.period.0, Duration::from_secs(60));
        assert_eq!(apps[1].all_labels()["group"], "metrics");
    }

    #[test]
    fn bad_apps_are_refused() {
        let c = cfg("  enabled: yes\n  apps:\n  - name: a\n    uri: http://x\n  - name: a\n    uri: http://y\n");
        assert!(apps_from_config(&c, "p")
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let c = cfg("  enabled: yes\n  apps:\n  - name: a\n    uri: http://x\n    commands:\n    - name: l\n      command: [date]\n      period: 10ms\n");
        assert!(apps_from_config(&c, "p").is_err());
        let c = cfg("  enabled: yes\n  apps:\n  - name: a\n");
        assert!(apps_from_config(&c, "p")
            .unwrap_err()
            .to_string()
            .contains("URI is empty"));
        // Text the auth service would refuse in heartbeats is refused at start.
        for bad in [
            "    labels:\n      env: \"dev\\e[31m\"\n",
            "    description: \"a\\nb\"\n",
            "    commands:\n    - name: \"k\\a\"\n      command: [date]\n",
        ] {
            let c = cfg(&format!(
                "  enabled: yes\n  apps:\n  - name: a\n    uri: http://x\n{bad}"
            ));
            let err = apps_from_config(&c, "p").unwrap_err().to_string();
            assert!(err.contains("control character"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn label_commands_run() {
        assert_eq!(
            agent::labels::run_command(&["echo".into(), " hi ".into()]).await,
            "hi"
        );
        // A command's output is a label value the auth service takes: one
        // line without control characters.
        let shown = agent::labels::run_command(&[
            "sh".into(),
            "-c".into(),
            "printf '\\033]0;owned\\007\\033[31mred\\r\\nline 2\\n\\n'".into(),
        ])
        .await;
        assert_eq!(shown, "\u{fffd}]0;owned\u{fffd}\u{fffd}[31mred line 2");
        resources::served::check_label("arch", &shown).unwrap();
        assert!(agent::labels::run_command(&["false".into()])
            .await
            .starts_with("<error"));
        assert!(agent::labels::run_command(&["/nonexistent/x".into()])
            .await
            .starts_with("<error"));
        let c = cfg("  enabled: yes\n  apps:\n  - name: a\n    uri: http://x\n    commands:\n    - name: arch\n      command: [echo, x86]\n      period: 1s\n");
        let set = AppSet::new(apps_from_config(&c, "p").unwrap());
        set.refresh_all().await;
        assert_eq!(set.snapshot().await[0].all_labels()["arch"], "x86");
    }
}
