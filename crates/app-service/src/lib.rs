//! The application service: the apps an agent serves, their dynamic labels,
//! and the heartbeats that register them with the cluster.

pub mod azure;
pub mod roles;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use resources::{App, CommandLabel};
use tokio::sync::RwLock;

/// How often apps are announced (registrations live 45 s).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// Longest a dynamic label command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

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
            let period = match &c.period {
                Some(p) => resources::parse_go_duration(p).map_err(|e| {
                    AppError::Config(format!("app {:?}: label {:?}: period: {e}", a.name, c.name))
                })?,
                None => Duration::from_secs(60),
            };
            if period < Duration::from_secs(1) {
                return Err(AppError::Config(format!(
                    "app {:?}: label {:?}: period must be at least 1s",
                    a.name, c.name
                )));
            }
            app.spec.dynamic_labels.insert(
                c.name.clone(),
                CommandLabel {
                    command: c.command.clone(),
                    period: resources::Duration(period),
                    result: String::new(),
                },
            );
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

/// Run one dynamic label command: its standard output as one clean line
/// ([`resources::served::label_from_output`]: trimmed, line breaks as spaces,
/// no control characters, at most 256 characters), or `<error: ...>` as
/// Teleport shows a failed command. The output is whatever the command
/// prints, so it is cleaned here rather than refused whole by the auth
/// service, which takes no control characters in labels.
pub async fn run_label_command(argv: &[String]) -> String {
    let Some((prog, args)) = argv.split_first() else {
        return "<error: empty command>".into();
    };
    let child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(COMMAND_TIMEOUT, child).await {
        Ok(Ok(out)) if out.status.success() => {
            resources::served::label_from_output(&String::from_utf8_lossy(&out.stdout))
        }
        Ok(Ok(out)) => format!("<error: exit status {}>", out.status),
        Ok(Err(e)) => resources::served::label_from_output(&format!("<error: {e}>")),
        Err(_) => "<error: timed out>".into(),
    }
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

    /// Run every dynamic label once now.
    pub async fn refresh_all(&self) {
        let work: Vec<(usize, String, Vec<String>)> = {
            let apps = self.apps.read().await;
            apps.iter()
                .enumerate()
                .flat_map(|(i, a)| {
                    a.spec
                        .dynamic_labels
                        .iter()
                        .map(move |(k, v)| (i, k.clone(), v.command.clone()))
                })
                .collect()
        };
        for (i, key, argv) in work {
            let result = run_label_command(&argv).await;
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
        let labels: Vec<(usize, String, Vec<String>, Duration)> = {
            let apps = self.apps.read().await;
            apps.iter()
                .enumerate()
                .flat_map(|(i, a)| {
                    a.spec
                        .dynamic_labels
                        .iter()
                        .map(move |(k, v)| (i, k.clone(), v.command.clone(), v.period.0))
                })
                .collect()
        };
        let mut tasks = Vec::new();
        for (i, key, argv, period) in labels {
            let set = self.clone();
            let mut stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let r = run_label_command(&argv).await;
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
        let hb = auth::agents::Heartbeat {
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
            run_label_command(&["echo".into(), " hi ".into()]).await,
            "hi"
        );
        // A command's output is a label value the auth service takes: one
        // line without control characters.
        let shown = run_label_command(&[
            "sh".into(),
            "-c".into(),
            "printf '\\033]0;owned\\007\\033[31mred\\r\\nline 2\\n\\n'".into(),
        ])
        .await;
        assert_eq!(shown, "\u{fffd}]0;owned\u{fffd}\u{fffd}[31mred line 2");
        resources::served::check_label("arch", &shown).unwrap();
        assert!(run_label_command(&["false".into()])
            .await
            .starts_with("<error"));
        assert!(run_label_command(&["/nonexistent/x".into()])
            .await
            .starts_with("<error"));
        let c = cfg("  enabled: yes\n  apps:\n  - name: a\n    uri: http://x\n    commands:\n    - name: arch\n      command: [echo, x86]\n      period: 1s\n");
        let set = AppSet::new(apps_from_config(&c, "p").unwrap());
        set.refresh_all().await;
        assert_eq!(set.snapshot().await[0].all_labels()["arch"], "x86");
    }
}
