//! `teleport.yaml`, configuration version v3.
//!
//! The shape follows Teleport's file so that the guides' configurations load
//! verbatim: YAML 1.1 booleans (`yes`, `no`, `on`, `off`) are accepted where a
//! flag is expected, durations use Go syntax (`1m0s`), and sections for
//! services this build does not run yet are parsed and reported, not refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

pub mod db_configure;
pub mod flags;

pub use flags::StartFlags;

/// Errors reading or checking a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read config file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or has a field of the wrong type.
    #[error("failed to parse config file {path}: {message}")]
    Parse {
        /// File path (or `<inline>`).
        path: String,
        /// What went wrong, with line and column when known.
        message: String,
    },
    /// The file parsed but makes no sense.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A command-line flag that sets configuration is wrong (the message
    /// names the flag).
    #[error("{0}")]
    Flag(String),
}

/// A boolean that also accepts YAML 1.1 spellings, as Teleport's files use them.
fn de_flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    match Flag::deserialize(d)? {
        Flag::Bool(b) => Ok(b),
        Flag::Text(s) => match s.to_ascii_lowercase().as_str() {
            "yes" | "y" | "on" | "true" | "1" => Ok(true),
            "no" | "n" | "off" | "false" | "0" | "" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "expected a boolean (yes/no, true/false, on/off), got {other:?}"
            ))),
        },
    }
}

/// An optional scalar read as text (`off`, `false` and `no` are YAML 1.1 booleans).
fn de_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Bool(bool),
        Text(String),
    }
    Ok(Option::<Text>::deserialize(d)?.map(|t| match t {
        Text::Bool(b) => if b { "on" } else { "off" }.to_string(),
        Text::Text(s) => s,
    }))
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Must be `v3` (or absent, which Teleport reads as v1; we accept v3 only).
    #[serde(default)]
    pub version: Option<String>,
    /// Process-wide settings.
    #[serde(default)]
    pub teleport: TeleportSection,
    /// Auth service.
    #[serde(default)]
    pub auth_service: AuthService,
    /// Proxy service.
    #[serde(default)]
    pub proxy_service: ProxyService,
    /// SSH service (not available in this build).
    #[serde(default)]
    pub ssh_service: Toggle,
    /// Application service.
    #[serde(default)]
    pub app_service: AppService,
    /// Database service.
    #[serde(default)]
    pub db_service: DbService,
    /// Kubernetes service (not available: refused when enabled).
    #[serde(default)]
    pub kubernetes_service: Toggle,
    /// Windows desktop service (not available: refused when enabled).
    #[serde(default)]
    pub windows_desktop_service: Toggle,
    /// Discovery service (not available as a separate service: the database
    /// service discovers Azure databases itself; refused when enabled).
    #[serde(default)]
    pub discovery_service: Toggle,
}

/// The `teleport:` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TeleportSection {
    /// Name of this node; defaults to the host name.
    #[serde(default)]
    pub nodename: Option<String>,
    /// Where state lives; default `/var/lib/teleport`.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// How an agent joins the cluster.
    #[serde(default)]
    pub join_params: Option<JoinParams>,
    /// Legacy single auth token (path or value).
    #[serde(default)]
    pub auth_token: Option<String>,
    /// Address of the auth service for agents.
    #[serde(default)]
    pub auth_server: Option<String>,
    /// Address list form.
    #[serde(default)]
    pub auth_servers: Vec<String>,
    /// Address of the proxy service for agents.
    #[serde(default)]
    pub proxy_server: Option<String>,
    /// CA pin(s) an agent trusts.
    #[serde(default)]
    pub ca_pin: Option<StringOrList>,
    /// Cluster state storage.
    #[serde(default)]
    pub storage: Option<Storage>,
    /// Log settings.
    #[serde(default)]
    pub log: Option<LogConfig>,
    /// Threads running the process's event loop (this build's own setting).
    /// Default 1: one event loop, as Redis and twemproxy run, which costs
    /// the least CPU per proxied command; storage, password hashing and other
    /// blocking work run on a separate pool either way. Raise it on a host
    /// where one process serves more sessions than one core can carry.
    #[serde(default)]
    pub worker_threads: Option<usize>,
}

/// A single string or a list of strings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum StringOrList {
    /// One value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl StringOrList {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s.clone()],
            StringOrList::Many(v) => v.clone(),
        }
    }
}

/// `join_params`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JoinParams {
    /// Token name, a path to a file holding it, or (azure) the token resource name.
    #[serde(default)]
    pub token_name: String,
    /// `token` or `azure`.
    #[serde(default)]
    pub method: String,
    /// Azure join settings.
    #[serde(default)]
    pub azure: Option<AzureJoinParams>,
}

/// `join_params.azure`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AzureJoinParams {
    /// Client ID of the user-assigned identity to use.
    #[serde(default)]
    pub client_id: Option<String>,
}

/// `storage`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// `sqlite` (default, also `dir`) or `postgresql`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// PostgreSQL connection string.
    #[serde(default)]
    pub conn_string: Option<String>,
    /// Audit events location(s), accepted for compatibility.
    #[serde(default)]
    pub audit_events_uri: Option<StringOrList>,
}

/// `log`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `stderr`, `stdout` or a file path.
    #[serde(default)]
    pub output: Option<String>,
    /// `DEBUG`, `INFO`, `WARN`, `ERROR`.
    #[serde(default)]
    pub severity: Option<String>,
    /// Format settings, accepted and ignored (logs are text).
    #[serde(default)]
    pub format: Option<LogFormat>,
}

/// `log.format`, Teleport's keys; this build writes text logs and ignores it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogFormat {
    /// `text` or `json`.
    #[serde(default)]
    pub output: Option<String>,
    /// Fields added to each line.
    #[serde(default)]
    pub extra_fields: Vec<String>,
}

/// A service section that only has `enabled`: the services this build does
/// not have (`ssh_service` may be enabled, as the Azure join guide does: the
/// agent joins and says the SSH service is not available).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    /// Whether the service runs.
    #[serde(default, deserialize_with = "de_flag")]
    pub enabled: bool,
}

/// `auth_service`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthService {
    /// Whether the auth service runs.
    #[serde(default, deserialize_with = "de_flag")]
    pub enabled: bool,
    /// Listen address, default `0.0.0.0:3025`.
    #[serde(default)]
    pub listen_addr: Option<String>,
    /// Cluster name, default the node name.
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// Static tokens `"roles:value"`.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Authentication preferences: local users with passwords, no second
    /// factor (anything else is refused rather than silently not enforced).
    #[serde(default)]
    pub authentication: Option<Authentication>,
    /// Proxy listener mode, accepted for compatibility.
    #[serde(default)]
    pub proxy_listener_mode: Option<String>,
    /// Azure join settings.
    #[serde(default)]
    pub azure_join: Option<AzureJoinServer>,
}

/// `auth_service.authentication`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Authentication {
    /// `local` (the only type this build has).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// `off` (this build has no second factor).
    #[serde(default, deserialize_with = "de_text")]
    pub second_factor: Option<String>,
}

/// `auth_service.azure_join`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AzureJoinServer {
    /// A PEM file of extra trusted roots for attested documents.
    #[serde(default)]
    pub trust_bundle_path: Option<PathBuf>,
}

/// `proxy_service`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyService {
    /// Whether the proxy runs.
    #[serde(default, deserialize_with = "de_flag")]
    pub enabled: bool,
    /// The one TLS port, default `0.0.0.0:3080`.
    #[serde(default)]
    pub web_listen_addr: Option<String>,
    /// Public address(es) users reach the proxy at.
    #[serde(default)]
    pub public_addr: Option<StringOrList>,
    /// Separate tunnel listener (the web port also serves tunnels by ALPN).
    #[serde(default)]
    pub tunnel_listen_addr: Option<String>,
    /// TLS key pairs for the web port.
    #[serde(default)]
    pub https_keypairs: Vec<KeyPairFiles>,
    /// ACME settings: refused when enabled (not supported).
    #[serde(default)]
    pub acme: Option<Acme>,
    /// Rate limit of the join routes per client address (default: a burst
    /// of 50, then 5 a second).
    #[serde(default)]
    pub join_rate_limit: Option<RateLimit>,
    /// Rate limit of password logins and password setting per client
    /// address (default: a burst of 30, then 1 a second).
    #[serde(default)]
    pub login_rate_limit: Option<RateLimit>,
}

/// `proxy_service.acme`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    /// Whether to get certificates from an ACME CA (not supported).
    #[serde(default, deserialize_with = "de_flag")]
    pub enabled: bool,
    /// Account e-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Directory URL.
    #[serde(default)]
    pub uri: Option<String>,
}

/// `proxy_service.join_rate_limit` (token joins, Azure challenges and
/// joins) and `proxy_service.login_rate_limit` (password logins, setting a
/// password): requests a client address may make: `burst` at once, then
/// `average` per `period` (a Go duration, default `1s`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests at once.
    pub burst: u32,
    /// Requests per `period` after the burst.
    pub average: u32,
    /// The period of `average`.
    #[serde(default = "one_second")]
    pub period: String,
}

fn one_second() -> String {
    "1s".to_string()
}

/// One `https_keypairs` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPairFiles {
    /// PEM private key file.
    pub key_file: PathBuf,
    /// PEM certificate chain file.
    pub cert_file: PathBuf,
}

/// `app_service`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppService {
    /// Whether the app service runs.
    #[serde(default, deserialize_with = "de_flag")]
    pub enabled: bool,
    /// Static apps.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

/// One app of `app_service.apps`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// App name.
    pub name: String,
    /// Backend URI (not needed for cloud apps).
    #[serde(default)]
    pub uri: Option<String>,
    /// Public address.
    #[serde(default)]
    pub public_addr: Option<String>,
    /// `Azure` for the Azure CLI app.
    #[serde(default)]
    pub cloud: Option<String>,
    /// Static labels.
    #[serde(default, deserialize_with = "resources::unique_keys")]
    pub labels: BTreeMap<String, String>,
    /// Dynamic labels.
    #[serde(default)]
    pub commands: Vec<CommandLabelConfig>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
}

/// One dynamic label command.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandLabelConfig {
    /// Label name.
    pub name: String,
    /// argv.
    pub command: Vec<String>,
    /// Go duration, e.g. `1m0s`.
    #[serde(default)]
    pub period: Option<String>,
}

/// `db_service`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DbService {
    /// Whether the database service runs.
    #[serde(default, deserialize_with = "de_flag")]
    pub enabled: bool,
    /// Static databases.
    #[serde(default)]
    pub databases: Vec<DbConfig>,
    /// Azure matchers.
    #[serde(default)]
    pub azure: Vec<AzureMatcher>,
    /// `redis_connection_sharing` (default yes): the plain key commands of
    /// every session of a Redis database go over one shared connection
    /// until a session needs per-connection state; `no` gives every
    /// session a Redis connection of its own, as Teleport does.
    #[serde(default = "yes", deserialize_with = "de_flag")]
    pub redis_connection_sharing: bool,
}

fn yes() -> bool {
    true
}

impl Default for DbService {
    fn default() -> Self {
        DbService {
            enabled: false,
            databases: Vec::new(),
            azure: Vec::new(),
            redis_connection_sharing: true,
        }
    }
}

/// One database of `db_service.databases`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DbConfig {
    /// Database name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// `redis`, `postgres`, ...
    pub protocol: String,
    /// `host:port` (or a URL).
    pub uri: String,
    /// Static labels.
    #[serde(default, deserialize_with = "resources::unique_keys")]
    pub static_labels: BTreeMap<String, String>,
    /// Dynamic labels.
    #[serde(default)]
    pub dynamic_labels: Vec<CommandLabelConfig>,
    /// TLS to the database.
    #[serde(default)]
    pub tls: Option<DbTlsConfig>,
    /// Azure settings.
    #[serde(default)]
    pub azure: Option<DbAzureConfig>,
}

/// `db_service.azure[]`: which Azure databases to discover.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AzureMatcher {
    /// `redis` (Azure Cache for Redis and Redis Enterprise).
    #[serde(default)]
    pub types: Vec<String>,
    /// Subscription IDs, `*` for every subscription the agent can see.
    #[serde(default)]
    pub subscriptions: Vec<String>,
    /// Resource groups, `*` for all.
    #[serde(default)]
    pub resource_groups: Vec<String>,
    /// Regions (`eastus` or `East US`), `*` for all.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Tags a resource must have (`*` matches any value).
    #[serde(default, deserialize_with = "resources::unique_keys")]
    pub tags: BTreeMap<String, StringOrList>,
}

/// `databases[].tls`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DbTlsConfig {
    /// `verify-full` (default), `verify-ca`, `insecure`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Name to verify instead of the host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Extra CA (PEM file).
    #[serde(default)]
    pub ca_cert_file: Option<PathBuf>,
}

/// `databases[].azure`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DbAzureConfig {
    /// ARM resource ID of the cache.
    #[serde(default)]
    pub resource_id: Option<String>,
    /// Redis Enterprise with the OSS cluster policy.
    #[serde(default)]
    pub is_cluster_mode: bool,
}

/// Parse a configuration from text. `origin` names the source in errors.
pub fn parse(text: &str, origin: &str) -> Result<FileConfig, ConfigError> {
    // Every section refuses unknown keys (a misspelt key would otherwise fall back to a
    // default without a word); the error names the line, the key's path and the valid keys.
    let cfg: FileConfig = resources::parse_yaml_of(text).map_err(|e| ConfigError::Parse {
        path: origin.to_string(),
        message: match (e.line, e.column) {
            (Some(line), Some(column)) => format!("line {line}, column {column}: {}", e.message),
            (Some(line), None) => format!("line {line}: {}", e.message),
            _ => e.message,
        },
    })?;
    match cfg.version.as_deref() {
        Some("v3") => {}
        Some(other) => {
            return Err(ConfigError::Invalid(format!(
                "unsupported config version {other:?}: this build reads version v3"
            )))
        }
        None => {
            return Err(ConfigError::Invalid(
                "the config file has no version: add `version: v3` at the top".into(),
            ))
        }
    }
    cfg.check()?;
    Ok(cfg)
}

/// Read and parse a configuration file.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/teleport";
/// Default auth listen address.
pub const DEFAULT_AUTH_ADDR: &str = "0.0.0.0:3025";
/// Default proxy web address.
pub const DEFAULT_WEB_ADDR: &str = "0.0.0.0:3080";

impl FileConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if let Some(addr) = &self.auth_service.listen_addr {
            parse_addr(addr, 3025)?;
        }
        if let Some(addr) = &self.proxy_service.web_listen_addr {
            parse_addr(addr, 3080)?;
        }
        if let Some(storage) = &self.teleport.storage {
            match storage.kind.as_str() {
                "" | "sqlite" | "dir" => {}
                "postgresql" | "postgres" => {
                    if storage.conn_string.as_deref().unwrap_or("").is_empty() {
                        return Err(ConfigError::Invalid(
                            "storage type postgresql needs conn_string".into(),
                        ));
                    }
                }
                other => {
                    return Err(ConfigError::Invalid(format!(
                        "unsupported storage type {other:?}: use sqlite or postgresql"
                    )))
                }
            }
        }
        for (key, limit) in [
            ("join_rate_limit", &self.proxy_service.join_rate_limit),
            ("login_rate_limit", &self.proxy_service.login_rate_limit),
        ] {
            if limit
                .as_ref()
                .is_some_and(|l| l.burst == 0 || l.average == 0)
            {
                return Err(ConfigError::Invalid(format!(
                    "proxy_service.{key}: burst and average must be at least 1"
                )));
            }
        }
        if let Some(a) = &self.auth_service.authentication {
            if let Some(kind) = a.kind.as_deref().filter(|k| *k != "local") {
                return Err(ConfigError::Invalid(format!(
                    "auth_service.authentication.type {kind:?} is not supported: this build has local users only (type: local)"
                )));
            }
            if let Some(sf) = a
                .second_factor
                .as_deref()
                .filter(|s| !matches!(s.to_ascii_lowercase().as_str(), "off" | "no" | "false"))
            {
                return Err(ConfigError::Invalid(format!(
                    "auth_service.authentication.second_factor {sf:?} is not supported: this build has no second factor, so it could not be enforced; set second_factor: off"
                )));
            }
        }
        if self.proxy_service.acme.as_ref().is_some_and(|a| a.enabled) {
            return Err(ConfigError::Invalid(
                "proxy_service.acme is not supported by this build: give the proxy a certificate with https_keypairs, or set acme.enabled: no".into(),
            ));
        }
        for (section, on) in [
            ("kubernetes_service", self.kubernetes_service.enabled),
            (
                "windows_desktop_service",
                self.windows_desktop_service.enabled,
            ),
            ("discovery_service", self.discovery_service.enabled),
        ] {
            if on {
                return Err(ConfigError::Invalid(format!(
                    "{section} is not available in this build: remove the section or set enabled: no{}",
                    if section == "discovery_service" {
                        " (the database service discovers Azure databases itself: db_service.azure)"
                    } else {
                        ""
                    }
                )));
            }
        }
        // Values of a closed set: a misspelt one would select nothing (a matcher that
        // discovers no database) or fall back to a default.
        if let Some(sev) = self
            .teleport
            .log
            .as_ref()
            .and_then(|l| l.severity.as_deref())
        {
            if !matches!(
                sev.to_ascii_lowercase().as_str(),
                "trace" | "debug" | "info" | "warn" | "warning" | "error"
            ) {
                return Err(ConfigError::Invalid(format!(
                    "teleport.log.severity {sev:?} is not a log level (DEBUG, INFO, WARN or ERROR)"
                )));
            }
        }
        for (i, m) in self.db_service.azure.iter().enumerate() {
            if let Some(t) = m.types.iter().find(|t| t.as_str() != "redis") {
                return Err(ConfigError::Invalid(format!(
                    "db_service.azure[{i}].types: {t:?} is not supported by this build (supported: redis, for Azure Cache for Redis and Redis Enterprise)"
                )));
            }
        }
        for t in &self.auth_service.tokens {
            if !t.contains(':') {
                return Err(ConfigError::Invalid(format!(
                    "static token {t:?} must have the form \"roles:token\""
                )));
            }
        }
        Ok(())
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.teleport
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    /// The node name: configured, else the host name.
    pub fn nodename(&self) -> String {
        if let Some(n) = &self.teleport.nodename {
            return n.clone();
        }
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    }

    /// The auth listen address.
    pub fn auth_listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr(
            self.auth_service
                .listen_addr
                .as_deref()
                .unwrap_or(DEFAULT_AUTH_ADDR),
            3025,
        )
    }

    /// The proxy web listen address.
    pub fn web_listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr(
            self.proxy_service
                .web_listen_addr
                .as_deref()
                .unwrap_or(DEFAULT_WEB_ADDR),
            3080,
        )
    }
}

/// Parse `host:port` (or `host`, taking `default_port`) into a socket address.
/// Host names resolve through the system resolver.
pub fn parse_addr(addr: &str, default_port: u16) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    let with_port = if addr
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        addr.to_string()
    } else {
        format!("{addr}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| ConfigError::Invalid(format!("bad address {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| ConfigError::Invalid(format!("address {addr:?} resolves to nothing")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GUIDE: &str = r#"
version: v3
teleport:
  join_params:
    token_name: "/tmp/token"
    method: token
  proxy_server: "teleport.example.com:443"
auth_service:
  enabled: off
proxy_service:
  enabled: false
ssh_service:
  enabled: no
app_service:
  enabled: true
  apps:
  - name: azure-cli
    cloud: Azure
"#;

    #[test]
    fn loads_the_guide_file() {
        let cfg = parse(GUIDE, "guide").unwrap();
        assert!(!cfg.auth_service.enabled);
        assert!(!cfg.proxy_service.enabled);
        assert!(!cfg.ssh_service.enabled);
        assert!(cfg.app_service.enabled);
        assert_eq!(cfg.app_service.apps[0].cloud.as_deref(), Some("Azure"));
        assert_eq!(cfg.teleport.join_params.unwrap().token_name, "/tmp/token");
    }

    #[test]
    fn join_rate_limit_is_read_and_checked() {
        assert!(parse(GUIDE, "guide")
            .unwrap()
            .proxy_service
            .join_rate_limit
            .is_none());
        let cfg = parse(
            "version: v3\nproxy_service:\n  join_rate_limit:\n    burst: 10\n    average: 1\n    period: 20s\n",
            "x",
        )
        .unwrap();
        let l = cfg.proxy_service.join_rate_limit.unwrap();
        assert_eq!((l.burst, l.average, l.period.as_str()), (10, 1, "20s"));
        let l = parse(
            "version: v3\nproxy_service:\n  join_rate_limit: {burst: 3, average: 2}\n",
            "x",
        )
        .unwrap()
        .proxy_service
        .join_rate_limit
        .unwrap();
        assert_eq!(l.period, "1s");
        let err = parse(
            "version: v3\nproxy_service:\n  join_rate_limit: {burst: 0, average: 2}\n",
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("join_rate_limit"), "{err}");
        let err = parse(
            "version: v3\nproxy_service:\n  login_rate_limit: {burst: 3, average: 0}\n",
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("login_rate_limit"), "{err}");
    }

    #[test]
    fn worker_threads_is_read_and_checked() {
        assert_eq!(parse(GUIDE, "guide").unwrap().teleport.worker_threads, None);
        let cfg = parse("version: v3\nteleport:\n  worker_threads: 4\n", "x").unwrap();
        assert_eq!(cfg.teleport.worker_threads, Some(4));
        let err = parse("version: v3\nteleport:\n  worker_threads: -1\n", "x").unwrap_err();
        assert!(err.to_string().contains("worker_threads"), "{err}");
    }

    #[test]
    fn every_example_configuration_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            if !text.lines().any(|l| l == "version: v3") {
                continue; // not a teleport.yaml (token, emulator fixture)
            }
            let cfg = load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if path.ends_with("teleport-ha.yaml") {
                assert_eq!(cfg.teleport.worker_threads, Some(4));
                let l = cfg.proxy_service.join_rate_limit.as_ref().unwrap();
                assert_eq!((l.burst, l.average, l.period.as_str()), (200, 20, "1s"));
                let l = cfg.proxy_service.login_rate_limit.as_ref().unwrap();
                assert_eq!((l.burst, l.average, l.period.as_str()), (100, 5, "1s"));
            }
            seen += 1;
        }
        assert!(seen >= 3, "{seen} example configurations");
    }

    #[test]
    fn flow_style_yaml_loads() {
        let cfg = parse("{version: v3, ssh_service: {enabled: yes}}\n", "x").unwrap();
        assert!(cfg.ssh_service.enabled);
    }

    #[test]
    fn a_repeated_label_or_tag_is_refused() {
        let err = parse(
            "version: v3\napp_service:\n  apps:\n  - name: a\n    uri: http://a\n    labels:\n      env: dev\n      env: prod\n",
            "x",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("app_service.apps[0].labels: duplicate key `env`"),
            "{err}"
        );
        let err = parse(
            "version: v3\ndb_service:\n  azure:\n  - types: [redis]\n    tags: {env: dev, env: prod}\n",
            "x",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("db_service.azure[0].tags: duplicate key `env`"),
            "{err}"
        );
    }

    #[test]
    fn closed_values_are_checked() {
        let err = parse("version: v3\nteleport:\n  log:\n    severity: INFOO\n", "x").unwrap_err();
        assert!(
            err.to_string().contains("teleport.log.severity \"INFOO\""),
            "{err}"
        );
        parse(
            "version: v3\nteleport:\n  log:\n    severity: warning\n",
            "x",
        )
        .unwrap();
        let err = parse(
            "version: v3\ndb_service:\n  azure:\n  - types: [rediss]\n",
            "x",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("db_service.azure[0].types: \"rediss\""),
            "{err}"
        );
    }

    #[test]
    fn yes_is_true() {
        let cfg = parse("version: v3\nssh_service:\n  enabled: yes\n", "x").unwrap();
        assert!(cfg.ssh_service.enabled);
    }

    #[test]
    fn redis_connection_sharing_is_on_unless_turned_off() {
        let on = parse("version: v3\ndb_service:\n  enabled: yes\n", "x").unwrap();
        assert!(on.db_service.redis_connection_sharing);
        let off = parse(
            "version: v3\ndb_service:\n  enabled: yes\n  redis_connection_sharing: no\n",
            "x",
        )
        .unwrap();
        assert!(!off.db_service.redis_connection_sharing);
        let err = parse(
            "version: v3\ndb_service:\n  redis_connection_sharing: sometimes\n",
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("expected a boolean"), "{err}");
    }

    #[test]
    fn bad_flag_is_an_error() {
        let err = parse("version: v3\nssh_service:\n  enabled: maybe\n", "x").unwrap_err();
        assert!(err.to_string().contains("expected a boolean"), "{err}");
    }

    #[test]
    fn version_is_required() {
        let err = parse("teleport: {}\n", "x").unwrap_err();
        assert!(err.to_string().contains("version: v3"), "{err}");
        let err = parse("version: v2\n", "x").unwrap_err();
        assert!(err.to_string().contains("v2"), "{err}");
    }

    #[test]
    fn unknown_top_level_key_is_refused_with_line() {
        let err = parse("version: v3\nproxy_servce:\n  enabled: yes\n", "f.yaml").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("proxy_servce") && msg.contains("line"),
            "{msg}"
        );
    }

    /// A file that sets every key this build reads.
    const FULL: &str = r#"
version: v3
teleport:
  nodename: node-1
  data_dir: /var/lib/teleport
  join_params:
    token_name: /tmp/token
    method: azure
    azure:
      client_id: 6a2f5c0e-1b3d-4e8f-9a7b-0c1d2e3f4a01
  auth_token: /tmp/token
  auth_server: 127.0.0.1:3025
  auth_servers: [127.0.0.1:3025]
  proxy_server: teleport.example.com:443
  ca_pin: sha256:abcd
  storage:
    type: postgresql
    conn_string: postgres://teleport@db/teleport
    audit_events_uri: [postgresql://teleport@db/audit]
  log:
    output: stderr
    severity: INFO
    format:
      output: text
      extra_fields: [level, timestamp]
  worker_threads: 2
auth_service:
  enabled: yes
  listen_addr: 127.0.0.1:3025
  cluster_name: example.com
  tokens: ["app:abcd"]
  authentication:
    type: local
    second_factor: off
  proxy_listener_mode: multiplex
  azure_join:
    trust_bundle_path: /etc/teleport/roots.pem
proxy_service:
  enabled: yes
  web_listen_addr: 127.0.0.1:3080
  public_addr: teleport.example.com:3080
  tunnel_listen_addr: 0.0.0.0:3024
  https_keypairs:
  - key_file: /etc/teleport/key.pem
    cert_file: /etc/teleport/cert.pem
  acme:
    enabled: no
    email: admin@example.com
    uri: https://acme.example.com/directory
  join_rate_limit: {burst: 10, average: 1, period: 1s}
  login_rate_limit: {burst: 10, average: 1, period: 1s}
ssh_service:
  enabled: no
app_service:
  enabled: yes
  apps:
  - name: grafana
    uri: http://localhost:3000
    public_addr: grafana.example.com
    cloud: Azure
    labels: {env: prod}
    commands:
    - name: arch
      command: [uname, -p]
      period: 1m0s
    description: Grafana
db_service:
  enabled: yes
  databases:
  - name: orders
    description: Orders cache
    protocol: redis
    uri: rediss://orders.redis.cache.windows.net:6380
    static_labels: {env: prod}
    dynamic_labels:
    - name: arch
      command: [uname, -p]
      period: 1m0s
    tls:
      mode: verify-full
      server_name: orders.redis.cache.windows.net
      ca_cert_file: /etc/teleport/ca.pem
    azure:
      resource_id: /subscriptions/0/resourceGroups/g/providers/Microsoft.Cache/Redis/orders
      is_cluster_mode: true
  azure:
  - types: [redis]
    subscriptions: ['*']
    resource_groups: ['*']
    regions: [eastus]
    tags: {'*': '*'}
  redis_connection_sharing: yes
kubernetes_service:
  enabled: no
windows_desktop_service:
  enabled: no
discovery_service:
  enabled: no
"#;

    /// Mappings whose keys are names the user chooses.
    const FREE: [&str; 3] = [
        "app_service.apps[*].labels",
        "db_service.databases[*].static_labels",
        "db_service.azure[*].tags",
    ];

    #[test]
    fn every_section_refuses_unknown_keys_with_path_line_and_valid_keys() {
        use resources::probe;
        parse(FULL, "full.yaml").unwrap();
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(FULL).unwrap();
        let mut failures = Vec::new();
        let mut refused = 0;
        for p in probe::probes(&doc, &FREE) {
            let text = serde_yaml_ng::to_string(&p.doc).unwrap();
            let result = parse(&text, "full.yaml");
            if p.free {
                if let Err(e) = result {
                    failures.push(format!("`{}` takes any key, but: {e}", p.path));
                }
                continue;
            }
            refused += 1;
            let message = match result {
                Ok(_) => {
                    failures.push(format!("`{}` was accepted", p.path));
                    continue;
                }
                Err(ConfigError::Parse { path, message }) if path == "full.yaml" => message,
                Err(e) => {
                    failures.push(format!("`{}`: {e}", p.path));
                    continue;
                }
            };
            if let Some(problem) = probe::check_refusal(&p, &message) {
                failures.push(problem);
            }
            let line = probe::line_of(&text, &p.key).unwrap();
            if !message.starts_with(&format!("line {line}, column ")) {
                failures.push(format!("`{}` is at line {line}: {message}", p.path));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(refused >= 56, "{refused} refusals checked");
    }

    #[test]
    fn the_issue_typos_are_refused() {
        for (text, want) in [
            (
                "version: v3\nauth_service:\n  enabled: yes\n  listen_adr: 127.0.0.1:0\n",
                "failed to parse config file t.yaml: line 4, column 3: unknown key `auth_service.listen_adr` (did you mean `listen_addr`?); the valid keys in `auth_service` are: enabled, listen_addr, ",
            ),
            (
                "version: v3\napp_service:\n  enabled: yes\n  apps:\n  - name: azure-cli\n    clod: Azure\n",
                "failed to parse config file t.yaml: line 6, column 5: unknown key `app_service.apps[0].clod` (did you mean `cloud`?)",
            ),
            (
                "version: v3\nteleport:\n  nodenam: x\n",
                "failed to parse config file t.yaml: line 3, column 3: unknown key `teleport.nodenam` (did you mean `nodename`?)",
            ),
            (
                "version: v3\nproxy_servce:\n  enabled: yes\n",
                "failed to parse config file t.yaml: line 2, column 1: unknown key `proxy_servce` (did you mean `proxy_service`?); the valid keys at the top level are: version, teleport, ",
            ),
        ] {
            let err = parse(text, "t.yaml").unwrap_err().to_string();
            assert!(err.starts_with(want), "{err}");
        }
    }

    #[test]
    fn settings_that_could_not_be_honoured_are_refused() {
        for (text, want) in [
            (
                "version: v3\nauth_service:\n  authentication:\n    type: local\n    second_factor: on\n",
                "second_factor",
            ),
            (
                "version: v3\nauth_service:\n  authentication:\n    type: github\n",
                "local users only",
            ),
            (
                "version: v3\nproxy_service:\n  acme:\n    enabled: yes\n    email: a@example.com\n",
                "https_keypairs",
            ),
            (
                "version: v3\nkubernetes_service:\n  enabled: yes\n",
                "kubernetes_service is not available",
            ),
            (
                "version: v3\ndiscovery_service:\n  enabled: yes\n",
                "db_service.azure",
            ),
        ] {
            let err = parse(text, "t.yaml").unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let ok = "version: v3\nauth_service:\n  authentication:\n    type: local\n    second_factor: off\nproxy_service:\n  acme: {enabled: no}\nkubernetes_service: {enabled: no}\n";
        parse(ok, "t.yaml").unwrap();
    }

    #[test]
    fn postgres_needs_conn_string() {
        let err = parse(
            "version: v3\nteleport:\n  storage:\n    type: postgresql\n",
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("conn_string"));
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("127.0.0.1", 3080).unwrap().port(), 3080);
        assert_eq!(parse_addr("127.0.0.1:99", 3080).unwrap().port(), 99);
        assert!(parse_addr("127.0.0.1:notaport:x", 1).is_err());
    }
}
