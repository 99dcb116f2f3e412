//! An agent run in-process against a cluster run in-process (`server::run`):
//! it joins with a token, hands its services a working `Context` (roles
//! read from the auth service through the proxy), and stops when asked.

use std::sync::Arc;
use std::time::Duration;

use agent::{Agent, AgentError, Context, Service, StreamTarget};
use tokio::sync::{mpsc, oneshot, watch};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A service that reports what its context gave it.
struct Probe {
    report: mpsc::UnboundedSender<Result<Vec<String>, String>>,
}

#[async_trait::async_trait]
impl Service for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }

    async fn run(self: Arc<Self>, ctx: Context, mut stop: watch::Receiver<bool>) {
        // The auth service's preset role, read the way sessions re-check
        // access (through the proxy, with the host certificate).
        let roles = ctx
            .cluster
            .roles(&["access".to_string()])
            .await
            .map(|r| r.into_iter().map(|r| r.metadata.name).collect())
            .map_err(|e| e.to_string());
        let _ = self.report.send(roles);
        let _ = stop.changed().await;
        let _ = self.report.send(Err("stopped".into()));
    }

    fn accepts(&self, target: &StreamTarget) -> bool {
        matches!(target, StreamTarget::App { name, .. } if name == "probe")
    }

    async fn serve(self: Arc<Self>, _target: StreamTarget, _stream: tunnel::TunnelStream) {}
}

#[tokio::test]
async fn an_agent_joins_and_runs_its_services_in_process() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (auth_port, web_port) = (free_port(), free_port());
    let cluster_yaml = format!(
        "version: v3\nteleport:\n  nodename: auth-host\n  data_dir: {}\nauth_service:\n  enabled: yes\n  cluster_name: in-process\n  listen_addr: 127.0.0.1:{auth_port}\n  tokens: [\"app:probe-token\"]\nproxy_service:\n  enabled: yes\n  web_listen_addr: 127.0.0.1:{web_port}\n  public_addr: 127.0.0.1:{web_port}\n",
        dir.path().join("cluster").display()
    );
    let cluster_cfg = config::parse(&cluster_yaml, "cluster").unwrap_or_else(|e| panic!("{e}"));
    let (cluster_stop, cluster_stopped) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = oneshot::channel::<String>();
    let cluster = tokio::spawn(async move {
        server::run(
            &cluster_cfg,
            async move {
                let _ = cluster_stopped.await;
            },
            move |name| {
                let _ = ready_tx.send(name.to_string());
            },
        )
        .await
    });
    let name = tokio::time::timeout(Duration::from_secs(30), ready_rx)
        .await
        .unwrap_or_else(|_| panic!("the cluster did not start"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(name, "in-process");

    let agent_yaml = format!(
        "version: v3\nteleport:\n  nodename: probe-host\n  data_dir: {}\n  proxy_server: 127.0.0.1:{web_port}\n  join_params:\n    method: token\n    token_name: probe-token\nauth_service:\n  enabled: no\nproxy_service:\n  enabled: no\napp_service:\n  enabled: yes\n",
        dir.path().join("agent").display()
    );
    let agent_cfg = config::parse(&agent_yaml, "agent").unwrap_or_else(|e| panic!("{e}"));
    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let (agent_stop, agent_stopped) = oneshot::channel::<()>();
    let agent = tokio::spawn(
        Agent::new(agent_cfg, true)
            .service(Box::new(move |_cfg, _ctx| {
                Ok::<_, AgentError>(Some(
                    Arc::new(Probe { report: report_tx }) as Arc<dyn Service>
                ))
            }))
            .run(async move {
                let _ = agent_stopped.await;
            }),
    );

    let first = tokio::time::timeout(Duration::from_secs(60), reports.recv())
        .await
        .unwrap_or_else(|_| panic!("the service was not started"));
    assert_eq!(first, Some(Ok(vec!["access".to_string()])));
    assert!(
        dir.path()
            .join("agent")
            .join(agent::join::IDENTITY_FILE)
            .is_file(),
        "the joined identity is stored"
    );

    let _ = agent_stop.send(());
    let stopped = tokio::time::timeout(Duration::from_secs(30), reports.recv())
        .await
        .unwrap_or_else(|_| panic!("the service was not stopped"));
    assert_eq!(stopped, Some(Err("stopped".to_string())));
    let result = tokio::time::timeout(Duration::from_secs(30), agent)
        .await
        .unwrap_or_else(|_| panic!("the agent did not stop"));
    assert!(matches!(result, Ok(Ok(()))), "{result:?}");

    let _ = cluster_stop.send(());
    let result = tokio::time::timeout(Duration::from_secs(30), cluster)
        .await
        .unwrap_or_else(|_| panic!("the cluster did not stop"));
    assert!(matches!(result, Ok(Ok(()))), "{result:?}");
}

/// A configuration that enables no agent service is refused before any
/// network call.
#[tokio::test]
async fn an_agent_with_nothing_to_serve_is_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let yaml = format!(
        "version: v3\nteleport:\n  data_dir: {}\n  proxy_server: 127.0.0.1:1\nauth_service:\n  enabled: no\nproxy_service:\n  enabled: no\n",
        dir.path().display()
    );
    let cfg = config::parse(&yaml, "agent").unwrap_or_else(|e| panic!("{e}"));
    let err = Agent::new(cfg, true)
        .run(std::future::pending())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("no service is enabled"), "{err}");
}
