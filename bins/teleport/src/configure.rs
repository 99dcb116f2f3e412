//! `teleport db configure create`: a Database Service configuration with
//! Azure Redis discovery, as the Redis guide writes it.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};

/// Flags of `teleport db configure create`.
#[derive(clap::Args, Debug, Clone)]
pub struct DbConfigureCreate {
    /// Where to write: `file` (/etc/teleport.yaml), `stdout`, or `file:///path`.
    #[arg(long, short = 'o', default_value = "stdout")]
    pub output: String,
    /// Proxy address (host:port) the agent joins through.
    #[arg(long)]
    pub proxy: String,
    /// Join token: a file holding it, or the token itself.
    #[arg(long, default_value = "/tmp/token")]
    pub token: String,
    /// CA pin(s) of the cluster (`tctl status` prints it).
    #[arg(long = "ca-pin")]
    pub ca_pin: Vec<String>,
    /// Data directory of the agent.
    #[arg(long = "data-dir", default_value = "/var/lib/teleport")]
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
    /// Azure tags a resource must have, `k=v[,k2=v2]`.
    #[arg(long = "azure-tags")]
    pub azure_tags: Vec<String>,
    /// Labels narrowing discovery, `k=v[,k2=v2]`: resources must carry
    /// these Azure tags (same as --azure-tags).
    #[arg(long)]
    pub labels: Vec<String>,
}

fn split_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_pairs(values: &[String], flag: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in split_list(values) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("--{flag}: {item:?} is not key=value"))?;
        if k.trim().is_empty() {
            bail!("--{flag}: {item:?} has an empty key");
        }
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(out)
}

/// YAML scalar, quoted (JSON strings are valid YAML).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn q_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| q(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The configuration text.
pub fn render(f: &DbConfigureCreate, hostname: &str) -> Result<String> {
    if f.proxy.trim().is_empty() {
        bail!("--proxy is required (the proxy's host:port)");
    }
    let regions = split_list(&f.azure_redis_discovery);
    if regions.is_empty() {
        bail!("--azure-redis-discovery is required: the regions to discover Azure Redis in (e.g. eastus), or * for all");
    }
    let subs = match split_list(&f.azure_subscription) {
        v if v.is_empty() => vec!["*".to_string()],
        v => v,
    };
    let groups = match split_list(&f.azure_resource_group) {
        v if v.is_empty() => vec!["*".to_string()],
        v => v,
    };
    let mut tags = parse_pairs(&f.azure_tags, "azure-tags")?;
    tags.extend(parse_pairs(&f.labels, "labels")?);
    if tags.is_empty() {
        tags.push(("*".into(), "*".into()));
    }
    let node = f.node_name.clone().unwrap_or_else(|| hostname.to_string());
    let mut y = String::new();
    y.push_str("version: v3\n");
    y.push_str("teleport:\n");
    y.push_str(&format!("  nodename: {}\n", q(&node)));
    y.push_str(&format!("  data_dir: {}\n", q(&f.data_dir)));
    y.push_str("  join_params:\n");
    y.push_str(&format!("    token_name: {}\n", q(&f.token)));
    y.push_str("    method: token\n");
    y.push_str(&format!("  proxy_server: {}\n", q(f.proxy.trim())));
    let pins = split_list(&f.ca_pin);
    if !pins.is_empty() {
        y.push_str(&format!("  ca_pin: {}\n", q_list(&pins)));
    }
    y.push_str("  log:\n    output: stderr\n    severity: INFO\n");
    y.push_str("auth_service:\n  enabled: \"no\"\n");
    y.push_str("ssh_service:\n  enabled: \"no\"\n");
    y.push_str("proxy_service:\n  enabled: \"no\"\n");
    y.push_str("db_service:\n  enabled: \"yes\"\n");
    y.push_str("  azure:\n");
    y.push_str("  - types: [\"redis\"]\n");
    y.push_str(&format!("    regions: {}\n", q_list(&regions)));
    y.push_str(&format!("    subscriptions: {}\n", q_list(&subs)));
    y.push_str(&format!("    resource_groups: {}\n", q_list(&groups)));
    y.push_str("    tags:\n");
    for (k, v) in &tags {
        y.push_str(&format!("      {}: {}\n", q(k), q(v)));
    }
    // What is written must be what the agent reads.
    config::parse(&y, "generated configuration")
        .map_err(|e| anyhow!("the generated configuration does not parse: {e}"))?;
    Ok(y)
}

/// Write (or print) the configuration; returns the message for the user.
pub fn run(f: &DbConfigureCreate) -> Result<()> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let text = render(f, &hostname)?;
    let target: Option<PathBuf> = match f.output.as_str() {
        "stdout" => None,
        "file" => Some(PathBuf::from("/etc/teleport.yaml")),
        other => match other.strip_prefix("file://") {
            Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
            _ => bail!("-o/--output must be file, stdout or file:///path, not {other:?}"),
        },
    };
    match target {
        None => print!("{text}"),
        Some(path) => {
            if path.exists() {
                bail!(
                    "{} already exists: remove it or choose another file with -o file:///path",
                    path.display()
                );
            }
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

    fn flags(args: &[&str]) -> DbConfigureCreate {
        let mut all = vec!["t"];
        all.extend_from_slice(args);
        T::parse_from(all).f
    }

    #[test]
    fn guide_command_renders_discovery() {
        let f = flags(&[
            "-o",
            "file",
            "--proxy=tele.example.com:443",
            "--token=/tmp/token",
            "--azure-redis-discovery=eastus",
        ]);
        let text = render(&f, "vm1").unwrap();
        let cfg = config::parse(&text, "t").unwrap();
        assert!(cfg.db_service.enabled);
        assert!(!cfg.auth_service.enabled);
        let m = &cfg.db_service.azure[0];
        assert_eq!(m.types, vec!["redis"]);
        assert_eq!(m.regions, vec!["eastus"]);
        assert_eq!(m.subscriptions, vec!["*"]);
        assert_eq!(m.resource_groups, vec!["*"]);
        assert_eq!(
            cfg.teleport.proxy_server.as_deref(),
            Some("tele.example.com:443")
        );
        assert_eq!(
            cfg.teleport.join_params.unwrap().token_name,
            "/tmp/token".to_string()
        );
    }

    #[test]
    fn scopes_and_errors() {
        let f = flags(&[
            "--proxy=p:3080",
            "--azure-redis-discovery=*",
            "--azure-resource-group=my-resource-group",
            "--azure-subscription=sub-1,sub-2",
            "--labels=env=dev",
        ]);
        let cfg = config::parse(&render(&f, "h").unwrap(), "t").unwrap();
        let m = &cfg.db_service.azure[0];
        assert_eq!(m.regions, vec!["*"]);
        assert_eq!(m.resource_groups, vec!["my-resource-group"]);
        assert_eq!(m.subscriptions, vec!["sub-1", "sub-2"]);
        assert_eq!(m.tags["env"].to_vec(), vec!["dev"]);
        let none = flags(&["--proxy=p:1"]);
        assert!(render(&none, "h")
            .unwrap_err()
            .to_string()
            .contains("--azure-redis-discovery is required"));
        let bad = flags(&[
            "--proxy=p:1",
            "--azure-redis-discovery=eastus",
            "--labels=x",
        ]);
        assert!(render(&bad, "h")
            .unwrap_err()
            .to_string()
            .contains("key=value"));
        // Odd characters stay data, not YAML structure.
        let odd = flags(&[
            "--proxy=p:1",
            "--azure-redis-discovery=eastus",
            "--labels=a: b=c\ndef",
        ]);
        let cfg = config::parse(&render(&odd, "h").unwrap(), "t").unwrap();
        assert_eq!(
            cfg.db_service.azure[0].tags["a: b"].to_vec(),
            vec!["c\ndef"]
        );
    }
}
