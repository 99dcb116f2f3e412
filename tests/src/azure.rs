//! The Azure app service agent of the guides, and requests through it as `tsh` sends them.

use std::path::Path;

use crate::{ca_pin, loopback_direct, token_agent_config, Agent, Node, Result};

/// The app service agent serving `azure-cli`, joining `node` with `token`, with the emulator's
/// environment `env` (it runs on the emulator's default VM).
pub fn start_azure_agent(
    dir: &Path,
    node: &Node,
    token: &str,
    env: Vec<(String, String)>,
) -> Result<Agent> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let token_file = dir.join("token");
    std::fs::write(&token_file, token).map_err(|e| e.to_string())?;
    let config = token_agent_config("azure-agent", &node.web_addr, &ca_pin(node)?, &token_file)
        + "app_service:\n  enabled: true\n  apps:\n  - name: azure-cli\n    cloud: Azure\n";
    Agent::start_with_env(dir, &config, &loopback_direct(env))
}

/// `GET https://host/subscriptions` with the bearer `token`, through `upstream` (the proxy's
/// app session): its status and body.
pub fn get_subscriptions(
    rt: &tokio::runtime::Runtime,
    upstream: &msi_proxy::AppUpstream,
    host: &str,
    token: &str,
) -> Result<(u16, String)> {
    use msi_proxy::Upstream;
    let req = http::Request::builder()
        .method("GET")
        .uri(format!(
            "https://{host}/subscriptions?api-version=2022-12-01"
        ))
        .header("host", host)
        .header("authorization", format!("Bearer {token}"))
        .body(bytes::Bytes::new())
        .map_err(|e| e.to_string())?;
    let resp = rt
        .block_on(upstream.forward(req))
        .map_err(|e| format!("{e:?}"))?;
    Ok((
        resp.status().as_u16(),
        String::from_utf8_lossy(resp.body()).to_string(),
    ))
}
