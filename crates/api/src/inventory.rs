//! What agents announce (heartbeats) and what the cluster lists of them:
//! the contract between agents, the auth service and the proxies.

use resources::{App, Database};
use serde::{Deserialize, Serialize};

/// A heartbeat: an agent announces one app or database it serves
/// (`POST /v1/auth/agent/heartbeat`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    /// `app` or `db`.
    pub kind: String,
    /// The app (for `app`).
    #[serde(default)]
    pub app: Option<App>,
    /// The database (for `db`).
    #[serde(default)]
    pub db: Option<Database>,
    /// What the agent can do beyond the basics of its kind, so that a
    /// proxy newer than the agent uses only what the agent knows (agents
    /// from before a feature announce nothing): [`FEATURE_DB_MUX`].
    #[serde(default)]
    pub features: Vec<String>,
}

/// A database agent that takes a client's whole multiplexed connection as
/// one tunnel stream (`db-mux`) and serves each session on it.
pub const FEATURE_DB_MUX: &str = "db-mux";

/// A registered server: a resource and the agent serving it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerEntry {
    /// Agent host ID.
    pub host_id: String,
    /// Agent node name.
    pub hostname: String,
    /// The app, for app servers.
    #[serde(default)]
    pub app: Option<App>,
    /// The database, for database servers.
    #[serde(default)]
    pub db: Option<Database>,
    /// What the agent announced it can do ([`Heartbeat::features`]).
    #[serde(default)]
    pub features: Vec<String>,
}

impl ServerEntry {
    /// Whether the agent announced `feature`.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

/// One agent connected to a proxy through the reverse tunnel
/// (`tctl inventory ls`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TunnelEntry {
    /// Agent host ID.
    pub server_id: String,
    /// Proxy it is connected to.
    pub proxy: String,
    /// When the proxy last reached it through the tunnel (RFC 3339).
    pub last_seen: String,
}

/// A proxy of the cluster, as agents find it (`GET /v1/auth/proxies`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyEntry {
    /// Proxy ID (its public address).
    pub id: String,
    /// Address agents dial.
    pub addr: String,
}

/// Whether `s` may name an agent or what it serves (host IDs, apps and
/// databases in heartbeats): 1 to 253 letters, digits, `-`, `_` and `.`.
pub fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
