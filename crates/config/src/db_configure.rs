//! `teleport db configure create`: the text of a Database Service
//! configuration, as Teleport's command writes it: Azure Redis discovery
//! (`--azure-redis-discovery`, narrowed by `--azure-tags`) and/or one
//! database (`--name`, `--protocol`, `--uri`) with static labels
//! (`--labels`). The binary parses the arguments, fetches the CA pin and
//! writes the file; everything here is pure.

use crate::flags::{parse_ca_pins, parse_labels, parse_pairs, split_list};
use crate::ConfigError;

/// The flags of `teleport db configure create`, as given (repeatable flags
/// may hold comma-separated values).
#[derive(Debug, Clone, Default)]
pub struct DbConfigure {
    /// `--proxy`: the proxy's `host:port` the agent joins through.
    pub proxy: String,
    /// `--token`: a join token, or a file holding it.
    pub token: String,
    /// `--ca-pin`: the cluster's CA pin(s).
    pub ca_pins: Vec<String>,
    /// `--data-dir`.
    pub data_dir: String,
    /// `--node-name`, else the host name.
    pub nodename: String,
    /// `--azure-redis-discovery`: regions (`*` for all).
    pub azure_redis_discovery: Vec<String>,
    /// `--azure-subscription` (`*`, the default, for all).
    pub azure_subscription: Vec<String>,
    /// `--azure-resource-group` (`*`, the default, for all).
    pub azure_resource_group: Vec<String>,
    /// `--azure-tags=k=v[,k2=v2]`: the Azure tags a discovered database must carry.
    pub azure_tags: Vec<String>,
    /// `--name`: a database to serve.
    pub name: Option<String>,
    /// `--protocol` of that database (`redis`, the default: the one this build proxies).
    pub protocol: Option<String>,
    /// `--uri` of that database (`host:port`).
    pub uri: Option<String>,
    /// `--labels=k=v[,k2=v2]`: static labels of that database.
    pub labels: Vec<String>,
}

fn flag_error(message: impl Into<String>) -> ConfigError {
    ConfigError::Flag(message.into())
}

/// A YAML scalar, double-quoted (a JSON string is one), so that what the
/// user typed stays data.
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn q_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| q(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// `*` when nothing was given.
fn or_all(values: &[String]) -> Vec<String> {
    match split_list(values) {
        v if v.is_empty() => vec!["*".to_string()],
        v => v,
    }
}

/// The configuration text for `f`; it parses as the agent will read it.
pub fn render(f: &DbConfigure) -> Result<String, ConfigError> {
    if f.proxy.trim().is_empty() {
        return Err(flag_error("--proxy is required (the proxy's host:port)"));
    }
    let regions = split_list(&f.azure_redis_discovery);
    let database = static_database(f)?;
    if regions.is_empty() && database.is_none() {
        return Err(flag_error(
            "nothing to serve: give --azure-redis-discovery=REGIONS to discover Azure Redis (e.g. eastus, or * for all), or a database with --name and --uri",
        ));
    }
    let tags = parse_pairs(&f.azure_tags, "azure-tags")?;
    if regions.is_empty() && !tags.is_empty() {
        return Err(flag_error(
            "--azure-tags narrows Azure discovery: give --azure-redis-discovery=REGIONS too",
        ));
    }
    let pins = parse_ca_pins(&f.ca_pins)?;
    let mut y = String::new();
    y.push_str("version: v3\n");
    y.push_str("teleport:\n");
    y.push_str(&format!("  nodename: {}\n", q(&f.nodename)));
    y.push_str(&format!("  data_dir: {}\n", q(&f.data_dir)));
    y.push_str("  join_params:\n");
    y.push_str(&format!("    token_name: {}\n", q(&f.token)));
    y.push_str("    method: token\n");
    y.push_str(&format!("  proxy_server: {}\n", q(f.proxy.trim())));
    if !pins.is_empty() {
        y.push_str(&format!("  ca_pin: {}\n", q_list(&pins)));
    }
    y.push_str("  log:\n    output: stderr\n    severity: INFO\n");
    y.push_str("auth_service:\n  enabled: \"no\"\n");
    y.push_str("ssh_service:\n  enabled: \"no\"\n");
    y.push_str("proxy_service:\n  enabled: \"no\"\n");
    y.push_str("db_service:\n  enabled: \"yes\"\n");
    if let Some(db) = &database {
        y.push_str("  databases:\n");
        y.push_str(&format!("  - name: {}\n", q(&db.name)));
        y.push_str(&format!("    protocol: {}\n", q(&db.protocol)));
        y.push_str(&format!("    uri: {}\n", q(&db.uri)));
        if !db.labels.is_empty() {
            y.push_str("    static_labels:\n");
            for (k, v) in &db.labels {
                y.push_str(&format!("      {}: {}\n", q(k), q(v)));
            }
        }
    }
    if !regions.is_empty() {
        y.push_str("  azure:\n");
        y.push_str("  - types: [\"redis\"]\n");
        y.push_str(&format!("    regions: {}\n", q_list(&regions)));
        y.push_str(&format!(
            "    subscriptions: {}\n",
            q_list(&or_all(&f.azure_subscription))
        ));
        y.push_str(&format!(
            "    resource_groups: {}\n",
            q_list(&or_all(&f.azure_resource_group))
        ));
        y.push_str("    tags:\n");
        if tags.is_empty() {
            y.push_str("      \"*\": \"*\"\n");
        }
        for (k, v) in &tags {
            y.push_str(&format!("      {}: {}\n", q(k), q(v)));
        }
    }
    // What is written must be what the agent reads.
    crate::parse(&y, "generated configuration").map_err(|e| {
        flag_error(format!(
            "the generated configuration does not load: {e}; check the flags' values"
        ))
    })?;
    Ok(y)
}

struct StaticDatabase {
    name: String,
    protocol: String,
    uri: String,
    labels: std::collections::BTreeMap<String, String>,
}

/// The database of `--name`/`--protocol`/`--uri`/`--labels`, if any.
fn static_database(f: &DbConfigure) -> Result<Option<StaticDatabase>, ConfigError> {
    let labels = parse_labels(&f.labels, "labels")?;
    let Some(name) = f.name.as_deref().map(str::trim) else {
        if !labels.is_empty() {
            return Err(flag_error(
                "--labels sets the static labels of the database given with --name and --uri (as Teleport); discovered Azure databases are labelled with their Azure tags, and --azure-tags selects them by tag",
            ));
        }
        for (flag, given) in [("--protocol", &f.protocol), ("--uri", &f.uri)] {
            if given.is_some() {
                return Err(flag_error(format!(
                    "{flag} needs --name, the name of the database to serve"
                )));
            }
        }
        return Ok(None);
    };
    if name.is_empty() {
        return Err(flag_error("--name is empty"));
    }
    let uri = f.uri.as_deref().map(str::trim).unwrap_or("");
    if uri.is_empty() {
        return Err(flag_error(format!(
            "--name {name:?} needs --uri, the database's host:port (e.g. example.redis.cache.windows.net:6380)"
        )));
    }
    let protocol = f.protocol.as_deref().map(str::trim).unwrap_or("redis");
    if protocol != "redis" {
        return Err(flag_error(format!(
            "--protocol {protocol:?} is not supported: this build proxies redis"
        )));
    }
    Ok(Some(StaticDatabase {
        name: name.to_string(),
        protocol: protocol.to_string(),
        uri: uri.to_string(),
        labels,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The guide's command with `edit` applied.
    fn flags(edit: impl FnOnce(&mut DbConfigure)) -> DbConfigure {
        let mut f = DbConfigure {
            proxy: "tele.example.com:443".into(),
            token: "/tmp/token".into(),
            data_dir: "/var/lib/teleport".into(),
            nodename: "vm1".into(),
            azure_redis_discovery: vec!["eastus".into()],
            ..DbConfigure::default()
        };
        edit(&mut f);
        f
    }

    fn v(s: &str) -> Vec<String> {
        vec![s.to_string()]
    }

    #[test]
    fn guide_command_renders_discovery() {
        let text = render(&flags(|_| {})).unwrap();
        let cfg = crate::parse(&text, "t").unwrap();
        assert!(cfg.db_service.enabled);
        assert!(!cfg.auth_service.enabled);
        assert!(cfg.db_service.databases.is_empty());
        let m = &cfg.db_service.azure[0];
        assert_eq!(m.types, vec!["redis"]);
        assert_eq!(m.regions, vec!["eastus"]);
        assert_eq!(m.subscriptions, vec!["*"]);
        assert_eq!(m.resource_groups, vec!["*"]);
        assert_eq!(m.tags["*"].to_vec(), vec!["*"]);
        assert_eq!(
            cfg.teleport.proxy_server.as_deref(),
            Some("tele.example.com:443")
        );
        assert_eq!(cfg.teleport.nodename.as_deref(), Some("vm1"));
        assert_eq!(
            cfg.teleport.join_params.unwrap().token_name,
            "/tmp/token".to_string()
        );
        assert_eq!(cfg.teleport.ca_pin, None);
    }

    #[test]
    fn scopes_and_errors() {
        let f = flags(|f| {
            f.proxy = "p:3080".into();
            f.azure_redis_discovery = v("*");
            f.azure_resource_group = v("my-resource-group");
            f.azure_subscription = v("sub-1,sub-2");
            f.azure_tags = v("env=dev");
        });
        let cfg = crate::parse(&render(&f).unwrap(), "t").unwrap();
        let m = &cfg.db_service.azure[0];
        assert_eq!(m.regions, vec!["*"]);
        assert_eq!(m.resource_groups, vec!["my-resource-group"]);
        assert_eq!(m.subscriptions, vec!["sub-1", "sub-2"]);
        assert_eq!(m.tags["env"].to_vec(), vec!["dev"]);
        assert!(!m.tags.contains_key("*"));
        let none = flags(|f| f.azure_redis_discovery.clear());
        assert!(render(&none)
            .unwrap_err()
            .to_string()
            .contains("--azure-redis-discovery=REGIONS"));
        let bad = flags(|f| f.azure_tags = v("x"));
        assert!(render(&bad).unwrap_err().to_string().contains("key=value"));
        let no_proxy = flags(|f| f.proxy = " ".into());
        assert!(render(&no_proxy)
            .unwrap_err()
            .to_string()
            .contains("--proxy is required"));
        // Odd characters in Azure tags stay data, not YAML structure.
        let odd = flags(|f| f.azure_tags = v("a: b=c\ndef"));
        let cfg = crate::parse(&render(&odd).unwrap(), "t").unwrap();
        assert_eq!(
            cfg.db_service.azure[0].tags["a: b"].to_vec(),
            vec!["c\ndef"]
        );
    }

    #[test]
    fn labels_are_the_static_labels_of_the_named_database() {
        let pin = format!("sha256:{}", "ab".repeat(32));
        let f = flags(|f| {
            f.azure_redis_discovery.clear();
            f.name = Some("cache".into());
            f.uri = Some("cache.redis.cache.windows.net:6380".into());
            f.labels = vec!["env=dev,team=x".into(), "tier=1".into()];
            f.ca_pins = vec![pin.clone()];
        });
        let cfg = crate::parse(&render(&f).unwrap(), "t").unwrap();
        assert!(cfg.db_service.azure.is_empty());
        let db = &cfg.db_service.databases[0];
        assert_eq!(
            (db.name.as_str(), db.protocol.as_str(), db.uri.as_str()),
            ("cache", "redis", "cache.redis.cache.windows.net:6380")
        );
        let labels: Vec<(&str, &str)> = db
            .static_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(labels, vec![("env", "dev"), ("team", "x"), ("tier", "1")]);
        assert_eq!(cfg.teleport.ca_pin.unwrap().to_vec(), vec![pin.clone()]);
        // Both a database and discovery.
        let both = flags(|f| {
            f.name = Some("cache".into());
            f.uri = Some("c:6380".into());
        });
        let cfg = crate::parse(&render(&both).unwrap(), "t").unwrap();
        assert_eq!(
            (cfg.db_service.databases.len(), cfg.db_service.azure.len()),
            (1, 1)
        );
        for (edit, want) in [
            (
                Box::new(|f: &mut DbConfigure| f.labels = v("env=dev"))
                    as Box<dyn Fn(&mut DbConfigure)>,
                "--labels sets the static labels of the database given with --name",
            ),
            (Box::new(|f| f.name = Some("cache".into())), "needs --uri"),
            (
                Box::new(|f| f.uri = Some("c:1".into())),
                "--uri needs --name",
            ),
            (
                Box::new(|f| {
                    f.name = Some("pg".into());
                    f.uri = Some("pg:5432".into());
                    f.protocol = Some("postgres".into());
                }),
                "this build proxies redis",
            ),
            (
                Box::new(|f| {
                    f.name = Some("c".into());
                    f.uri = Some("c:1".into());
                    f.labels = v("env=a,env=b");
                }),
                "given twice",
            ),
            (Box::new(|f| f.ca_pins = v("sha256:zz")), "64 hex digits"),
            (
                Box::new(|f| {
                    f.azure_redis_discovery.clear();
                    f.name = Some("c".into());
                    f.uri = Some("c:1".into());
                    f.azure_tags = v("env=dev");
                }),
                "--azure-tags narrows Azure discovery",
            ),
        ] {
            let err = render(&flags(|f| edit(f))).unwrap_err().to_string();
            assert!(err.contains(want), "{err} (want {want})");
        }
    }
}
