//! `teleport db configure create`: the arguments, the CA pin fetched from
//! the proxy, and the file; the configuration text is
//! [`config::db_configure::render`]'s.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use config::db_configure::DbConfigure;

/// Flags of `teleport db configure create`.
#[derive(clap::Args, Debug, Clone)]
pub struct DbConfigureCreate {
    /// Where to write: `file` (/etc/teleport.yaml), `stdout`, or `file:///path`.
    #[arg(long, short = 'o', default_value = "stdout")]
    pub output: String,
    /// Proxy address (host:port; a host alone tries 443, then 3080) the agent joins through.
    #[arg(long)]
    pub proxy: String,
    /// Join token: a file holding it, or the token itself.
    #[arg(long, default_value = "/tmp/token")]
    pub token: String,
    /// CA pin(s) of the cluster (`tctl status` prints it); fetched from the
    /// proxy when not given.
    #[arg(long = "ca-pin")]
    pub ca_pin: Vec<String>,
    /// Data directory of the agent.
    #[arg(long = "data-dir", default_value = config::DEFAULT_DATA_DIR)]
    pub data_dir: String,
    /// Node name (the host name when absent).
    #[arg(long = "node-name")]
    pub node_name: Option<String>,
    /// Regions to discover Azure Cache for Redis / Redis Enterprise in
    /// (comma-separated; `*` for all).
    #[arg(long = "azure-redis-discovery")]
    pub azure_redis_discovery: Vec<String>,
    /// Subscription(s) to discover in (`*`, the default, for all).
    #[arg(long = "azure-subscription")]
    pub azure_subscription: Vec<String>,
    /// Resource group(s) to discover in (`*`, the default, for all).
    #[arg(long = "azure-resource-group")]
    pub azure_resource_group: Vec<String>,
    /// Azure tags a discovered database must carry, `k=v[,k2=v2]`.
    #[arg(long = "azure-tags")]
    pub azure_tags: Vec<String>,
    /// Name of a database to serve.
    #[arg(long)]
    pub name: Option<String>,
    /// Its protocol (redis, the default).
    #[arg(long)]
    pub protocol: Option<String>,
    /// Its address, host:port.
    #[arg(long)]
    pub uri: Option<String>,
    /// Static labels of the database of --name, `k=v[,k2=v2]`.
    #[arg(long)]
    pub labels: Vec<String>,
}

impl DbConfigureCreate {
    fn request(&self, hostname: &str) -> DbConfigure {
        DbConfigure {
            proxy: self.proxy.trim().to_string(),
            token: self.token.clone(),
            ca_pins: self.ca_pin.clone(),
            data_dir: self.data_dir.clone(),
            nodename: self
                .node_name
                .clone()
                .unwrap_or_else(|| hostname.to_string()),
            azure_redis_discovery: self.azure_redis_discovery.clone(),
            azure_subscription: self.azure_subscription.clone(),
            azure_resource_group: self.azure_resource_group.clone(),
            azure_tags: self.azure_tags.clone(),
            name: self.name.clone(),
            protocol: self.protocol.clone(),
            uri: self.uri.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// How the pin was learnt.
enum Pin {
    /// Over TLS this host trusts.
    Verified(String),
    /// From whatever answered (trust on first use), and why its
    /// certificate was not trusted.
    Unverified(String, String),
}

/// Longest wait for one answer of the proxy.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The host CA pin the proxy at `addr` serves (`/v1/webapi/host-ca`).
async fn fetch_pin(addr: &str) -> Result<Pin, String> {
    let fetch = |insecure: bool| async move {
        let trust = tokio::time::timeout(
            PING_TIMEOUT,
            agent::join::trust_cluster(addr, &[], insecure),
        )
        .await
        .map_err(|_| format!("no answer within {}s", PING_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
        let pem = trust
            .host_ca_pems
            .first()
            .ok_or("the proxy sent no host CA")?;
        pki::ca_pin_from_cert_pem(pem).map_err(|e| format!("the proxy sent a bad host CA: {e}"))
    };
    match fetch(false).await {
        Ok(pin) => Ok(Pin::Verified(pin)),
        Err(why) => fetch(true).await.map(|pin| Pin::Unverified(pin, why)),
    }
}

/// Fills in the CA pin from the proxy when none was given (and the proxy's
/// port when none was), telling the user on stderr what was done.
fn pin_from_proxy(req: &mut DbConfigure) -> Result<()> {
    if !req.ca_pins.is_empty() || req.proxy.is_empty() {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut failures = Vec::new();
    for addr in client::discover::candidates(&req.proxy) {
        match rt.block_on(fetch_pin(&addr)) {
            Ok(pin) => {
                let pin = match pin {
                    Pin::Verified(pin) => {
                        eprintln!("The CA pin {pin} of the cluster behind {addr} is in the configuration (teleport.ca_pin).");
                        pin
                    }
                    Pin::Unverified(pin, why) => {
                        let why = why.lines().next().unwrap_or_default();
                        eprintln!("The CA pin {pin} was read from the proxy at {addr} without verifying it ({why}): compare it with the CA pin `tctl status` prints before starting the agent.");
                        pin
                    }
                };
                req.ca_pins = vec![pin];
                req.proxy = addr;
                return Ok(());
            }
            Err(e) => failures.push(format!("{addr}: {e}")),
        }
    }
    eprintln!(
        "warning: the proxy could not be reached ({}), so the configuration has no teleport.ca_pin: add --ca-pin with the pin `tctl status` prints; without it the agent trusts the cluster only if the proxy's certificate is valid for this host's CA roots.",
        failures.join("; ")
    );
    Ok(())
}

/// Write (or print) the configuration.
pub fn run(f: &DbConfigureCreate) -> Result<()> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let target: Option<PathBuf> = match f.output.as_str() {
        "stdout" => None,
        "file" => Some(PathBuf::from("/etc/teleport.yaml")),
        other => match other.strip_prefix("file://") {
            Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
            _ => bail!("-o/--output must be file, stdout or file:///path, not {other:?}"),
        },
    };
    if let Some(path) = target.as_ref().filter(|p| p.exists()) {
        bail!(
            "{} already exists: remove it or choose another file with -o file:///path",
            path.display()
        );
    }
    let mut req = f.request(&hostname);
    // The flags are checked before the proxy is asked anything.
    config::db_configure::render(&req)?;
    pin_from_proxy(&mut req)?;
    let text = config::db_configure::render(&req)?;
    match target {
        None => print!("{text}"),
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
            println!(
                "Wrote config to file {:?}. Now you can start the server. Happy Teleporting!",
                path.display().to_string()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        f: DbConfigureCreate,
    }

    #[test]
    fn flags_reach_the_request() {
        let f = T::parse_from([
            "t",
            "--proxy= p:3080 ",
            "--azure-redis-discovery=eastus",
            "--azure-tags=env=dev",
            "--name=cache",
            "--uri=c:6380",
            "--labels",
            "env=dev,team=x",
        ])
        .f;
        let req = f.request("vm1");
        assert_eq!(req.proxy, "p:3080");
        assert_eq!(req.nodename, "vm1");
        assert_eq!(req.data_dir, config::DEFAULT_DATA_DIR);
        assert_eq!(req.token, "/tmp/token");
        assert_eq!(req.labels, vec!["env=dev,team=x"]);
        assert_eq!(req.azure_tags, vec!["env=dev"]);
        assert_eq!(req.name.as_deref(), Some("cache"));
        let cfg = config::parse(&config::db_configure::render(&req).unwrap(), "t").unwrap();
        assert_eq!(cfg.db_service.databases[0].static_labels["team"], "x");
    }
}
