//! Applications (`kind: app`) and databases (`kind: db`), both version v3.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::labels::string_list;
use crate::{Duration, Metadata, ResourceError};

/// A dynamic label: a command run periodically whose output is the label value.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandLabel {
    /// Command and arguments.
    #[serde(default, deserialize_with = "string_list::deserialize")]
    pub command: Vec<String>,
    /// How often to run it.
    #[serde(default)]
    pub period: Duration,
    /// The last output (trimmed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub result: String,
}

impl CommandLabel {
    /// How often a label runs when its configuration names no period.
    pub const DEFAULT_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

    /// A label that runs `command` every `period` (a Go duration such as `30s`;
    /// [`Self::DEFAULT_PERIOD`] when `None`), with no result yet.
    pub fn every(command: Vec<String>, period: Option<&str>) -> Result<Self, ResourceError> {
        let period = match period {
            Some(p) => crate::parse_go_duration(p)?,
            None => Self::DEFAULT_PERIOD,
        };
        Ok(Self {
            command,
            period: Duration(period),
            result: String::new(),
        })
    }
}

/// Static labels overridden by dynamic label results with the same key.
fn merge_labels(
    metadata: &Metadata,
    dynamic: &BTreeMap<String, CommandLabel>,
) -> BTreeMap<String, String> {
    let mut out = metadata.labels.clone();
    for (k, v) in dynamic {
        out.insert(k.clone(), v.result.clone());
    }
    out
}

/// Cloud providers an app may front.
pub const APP_CLOUDS: [&str; 3] = ["AWS", "Azure", "GCP"];

/// An application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// Always `app`.
    pub kind: String,
    /// Always `v3`.
    pub version: String,
    /// Name and static labels.
    pub metadata: Metadata,
    /// Address and options.
    #[serde(default)]
    pub spec: AppSpec,
}

/// `spec:` of an app.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    /// Internal address (`cloud://Azure` for the Azure CLI app).
    #[serde(default)]
    pub uri: String,
    /// Public address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub public_addr: String,
    /// Cloud API this app fronts (`Azure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    /// Skip TLS verification of the upstream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// Dynamic labels.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::unique_keys"
    )]
    pub dynamic_labels: BTreeMap<String, CommandLabel>,
}

impl App {
    /// An app with a name and URI.
    pub fn new(name: impl Into<String>, uri: impl Into<String>) -> Self {
        Self {
            kind: crate::KIND_APP.to_string(),
            version: "v3".to_string(),
            metadata: Metadata::named(name),
            spec: AppSpec {
                uri: uri.into(),
                ..AppSpec::default()
            },
        }
    }

    /// Static labels with dynamic label results overriding by key.
    pub fn all_labels(&self) -> BTreeMap<String, String> {
        merge_labels(&self.metadata, &self.spec.dynamic_labels)
    }

    /// Whether this app fronts the Azure API.
    pub fn is_azure_cloud(&self) -> bool {
        self.spec.cloud.as_deref() == Some("Azure")
    }

    /// Fills defaults (a cloud app without a URI gets `cloud://<cloud>`), then validates.
    pub fn check_and_set_defaults(&mut self) -> Result<(), ResourceError> {
        if self.spec.uri.is_empty() {
            if let Some(cloud) = &self.spec.cloud {
                self.spec.uri = format!("cloud://{cloud}");
            }
        }
        self.validate()
    }

    /// Kind, version, name, URI and cloud checks.
    pub fn validate(&self) -> Result<(), ResourceError> {
        crate::check_header(&self.kind, &self.version, crate::KIND_APP, "v3")?;
        if self.metadata.name.is_empty() {
            return Err(ResourceError::Missing("metadata.name"));
        }
        if let Some(cloud) = &self.spec.cloud {
            if !APP_CLOUDS.contains(&cloud.as_str()) {
                return Err(ResourceError::BadParameter(format!(
                    "app {:?} has unsupported cloud {cloud:?} (supported: {})",
                    self.metadata.name,
                    APP_CLOUDS.join(", ")
                )));
            }
        } else if self.spec.uri.is_empty() {
            return Err(ResourceError::BadParameter(format!(
                "app {:?} URI is empty",
                self.metadata.name
            )));
        }
        Ok(())
    }
}

/// A database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// Always `db`.
    pub kind: String,
    /// Always `v3`.
    pub version: String,
    /// Name and static labels.
    pub metadata: Metadata,
    /// Protocol, address, TLS and cloud settings.
    #[serde(default)]
    pub spec: DatabaseSpec,
}

/// `spec:` of a database.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSpec {
    /// `redis`, `postgres`, ...
    #[serde(default)]
    pub protocol: String,
    /// `host:port` (or a URI).
    #[serde(default)]
    pub uri: String,
    /// CA certificate (PEM) to verify the database (legacy; prefer `tls.ca_cert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// TLS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<DatabaseTls>,
    /// Azure settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<DatabaseAzure>,
    /// Dynamic labels.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::unique_keys"
    )]
    pub dynamic_labels: BTreeMap<String, CommandLabel>,
}

/// TLS verification modes of a database connection.
pub const DB_TLS_MODES: [&str; 3] = ["verify-full", "verify-ca", "insecure"];

/// `spec.tls:` of a database.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseTls {
    /// `verify-full` (default), `verify-ca` or `insecure`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// Server name to verify.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_name: String,
    /// CA certificate (PEM).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_cert: String,
}

/// `spec.azure:` of a database.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseAzure {
    /// Azure resource name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Full Azure resource id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_id: String,
    /// Redis Enterprise (vs Azure Cache for Redis).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_enterprise: bool,
}

impl Database {
    /// A database with a name, protocol and URI.
    pub fn new(
        name: impl Into<String>,
        protocol: impl Into<String>,
        uri: impl Into<String>,
    ) -> Self {
        Self {
            kind: crate::KIND_DB.to_string(),
            version: "v3".to_string(),
            metadata: Metadata::named(name),
            spec: DatabaseSpec {
                protocol: protocol.into(),
                uri: uri.into(),
                ..DatabaseSpec::default()
            },
        }
    }

    /// Static labels with dynamic label results overriding by key.
    pub fn all_labels(&self) -> BTreeMap<String, String> {
        merge_labels(&self.metadata, &self.spec.dynamic_labels)
    }

    /// An Azure database (Azure Cache for Redis or Redis Enterprise).
    pub fn is_azure(&self) -> bool {
        self.spec
            .azure
            .as_ref()
            .is_some_and(|a| !a.resource_id.is_empty() || !a.name.is_empty())
    }

    /// The database user a session uses when none is asked for: Redis'
    /// `default` user; other protocols have none.
    pub fn default_db_user(&self) -> Option<&'static str> {
        (self.spec.protocol == "redis").then_some("default")
    }

    /// Whether sessions may use `db_user` on this database, apart from RBAC:
    /// Azure Cache for Redis only knows the `default` user (access keys and
    /// Teleport's own credentials authenticate as it).
    pub fn check_db_user(&self, db_user: &str) -> Result<(), String> {
        if self.spec.protocol == "redis" && self.is_azure() && db_user != "default" {
            return Err(
                "access denied to non-default db user: Azure Cache for Redis requires authentication as default user \"default\""
                    .to_string(),
            );
        }
        Ok(())
    }

    /// Redis Cluster mode: the URI asks for it with `?mode=cluster`
    /// (`rediss://host:10000?mode=cluster`, Azure Redis Enterprise with the
    /// OSS cluster policy), as in Teleport.
    pub fn redis_cluster_mode(&self) -> bool {
        self.spec.protocol == "redis"
            && self.spec.uri.split_once('?').is_some_and(|(_, q)| {
                q.split('&')
                    .any(|kv| kv.eq_ignore_ascii_case("mode=cluster"))
            })
    }

    /// `host` and `port` of the URI (`host:port`, `rediss://host:port`, ...).
    pub fn host_port(&self) -> Option<(String, u16)> {
        let uri = self.spec.uri.as_str();
        let rest = uri.split_once("://").map(|(_, r)| r).unwrap_or(uri);
        let rest = rest.split(['/', '?']).next().unwrap_or(rest);
        let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
        let (host, port) = if let Some(stripped) = rest.strip_prefix('[') {
            let (h, p) = stripped.split_once(']')?;
            (h.to_string(), p.strip_prefix(':').unwrap_or(""))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p),
                None => (rest.to_string(), ""),
            }
        };
        if host.is_empty() {
            return None;
        }
        let port = if port.is_empty() {
            if self.spec.protocol == "redis" {
                6379
            } else {
                return None;
            }
        } else {
            port.parse().ok()?
        };
        Some((host, port))
    }

    /// Kind, version, name, protocol, URI and TLS mode checks.
    pub fn validate(&self) -> Result<(), ResourceError> {
        crate::check_header(&self.kind, &self.version, crate::KIND_DB, "v3")?;
        if self.metadata.name.is_empty() {
            return Err(ResourceError::Missing("metadata.name"));
        }
        if self.spec.protocol.is_empty() {
            return Err(ResourceError::BadParameter(format!(
                "database {:?} protocol is empty",
                self.metadata.name
            )));
        }
        if self.spec.uri.is_empty() {
            return Err(ResourceError::BadParameter(format!(
                "database {:?} URI is empty",
                self.metadata.name
            )));
        }
        if let Some(tls) = &self.spec.tls {
            if !tls.mode.is_empty() && !DB_TLS_MODES.contains(&tls.mode.as_str()) {
                return Err(ResourceError::BadParameter(format!(
                    "database {:?} has invalid TLS mode {:?} (supported: {})",
                    self.metadata.name,
                    tls.mode,
                    DB_TLS_MODES.join(", ")
                )));
            }
        }
        Ok(())
    }
}
