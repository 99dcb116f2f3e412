//! Wire types of the cluster's HTTP APIs, shared by the servers (auth, proxy)
//! and the clients (tsh, tctl). JSON over HTTPS; mutual TLS where a caller
//! must be identified.
//!
//! Routes (all also reachable with a `/v1` prefix where Teleport has one):
//! - public, on the proxy: `GET /webapi/ping`, `GET /webapi/find`,
//!   `POST /v1/webapi/ssh/certs` (password login), `GET /web/invite/{token}`,
//!   `POST /v1/webapi/users/password/token` (set a password from an invite);
//! - authenticated by client certificate, on the auth listener and on the
//!   proxy: everything under [`AUTH_PREFIX`].

pub mod alpn;
pub mod audit;
pub mod certs;
pub mod http;
pub mod inventory;
pub mod join;
pub mod local_token;
pub mod names;
pub mod output;
pub mod tunnel;

use serde::{Deserialize, Serialize};

/// Prefix of the authenticated API.
pub const AUTH_PREFIX: &str = "/v1/auth";

/// The version this build reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Answer of `/webapi/ping` and `/webapi/find`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PingResponse {
    /// Authentication settings a client needs before login.
    pub auth: AuthSettings,
    /// Proxy addresses.
    pub proxy: ProxySettings,
    /// Server version, without a leading `v`.
    pub server_version: String,
    /// Oldest client version the server accepts.
    pub min_client_version: String,
    /// Name of the cluster.
    pub cluster_name: String,
    /// Whether automatic upgrades are offered.
    #[serde(default)]
    pub automatic_upgrades: bool,
}

/// Authentication part of the ping answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuthSettings {
    /// `local`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `off`, `otp`, `webauthn`, `on`.
    pub second_factor: String,
    /// Whether local (password) users may log in.
    pub local_auth_enabled: bool,
}

/// Proxy part of the ping answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ProxySettings {
    /// Web address users reach.
    pub public_addr: String,
    /// Whether every protocol is multiplexed on the web port (always true here).
    pub tls_routing_enabled: bool,
    /// Address agents dial for the reverse tunnel.
    #[serde(default)]
    pub tunnel_public_addr: String,
}

/// `POST /v1/webapi/ssh/certs`: password login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    /// User name.
    pub user: String,
    /// Password.
    pub pass: String,
    /// Public key (SPKI DER, base64 standard) to certify.
    pub tls_pub_key: String,
    /// Requested validity in seconds (capped by the roles).
    #[serde(default)]
    pub ttl_seconds: u64,
}

/// Certificates handed to a client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertsResponse {
    /// User name.
    pub username: String,
    /// The X.509 certificate (PEM).
    pub tls_cert: String,
    /// Host CA certificates (PEM): trust these for cluster servers.
    pub host_ca_certs: Vec<String>,
    /// Cluster name.
    pub cluster_name: String,
}

/// `POST /v1/webapi/users/password/token`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetPasswordRequest {
    /// Invite (reset) token from the URL.
    pub token: String,
    /// New password.
    pub password: String,
}

/// Error body of every route.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Error detail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Human readable message.
    pub message: String,
}

/// `GET /v1/auth/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Cluster name.
    pub cluster_name: String,
    /// Server version.
    pub version: String,
    /// Certificate authorities.
    pub cas: Vec<CaStatus>,
    /// Pin of the host CA: `sha256:<hex>`.
    pub ca_pin: String,
}

/// One CA of the status answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaStatus {
    /// `user`, `host`, `db`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Pin of that CA.
    pub pin: String,
    /// Certificate (PEM).
    pub cert: String,
}

/// `POST /v1/auth/users`: create a user; the answer holds the invite.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateUserResponse {
    /// Token of the invite link.
    pub invite_token: String,
    /// The whole invite URL.
    pub invite_url: String,
    /// How long the link is valid, in seconds.
    pub ttl_seconds: u64,
}

/// `POST /v1/auth/resources?force=bool`: create or overwrite resources.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpsertResult {
    /// `created` or `updated`.
    pub action: String,
}

/// `POST /v1/auth/certs/user`: sign a certificate for a user (tctl auth sign).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignUserRequest {
    /// User name.
    pub user: String,
    /// Public key, SPKI DER base64.
    pub tls_pub_key: String,
    /// Validity in seconds.
    pub ttl_seconds: u64,
}

/// `GET /v1/auth/events` query.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct EventsQuery {
    /// Start, RFC 3339 (default: 24 hours ago).
    #[serde(default)]
    pub from: Option<String>,
    /// End, RFC 3339 (default: now).
    #[serde(default)]
    pub to: Option<String>,
    /// Comma separated event types.
    #[serde(default)]
    pub types: Option<String>,
    /// Maximum number of events.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `Teleport v<version> git:<commit> rustc <version>`, as every binary prints it.
pub fn version_line() -> String {
    format!(
        "Teleport v{} git:{} rustc {}",
        VERSION,
        env!("BUILD_GIT_COMMIT"),
        env!("BUILD_RUSTC_VERSION")
    )
}
