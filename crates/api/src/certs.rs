//! Certificate requests and answers: what tsh asks the auth service for
//! (app and database session certificates), what tctl asks for (join
//! tokens), and what agents renew with.

use serde::{Deserialize, Serialize};

/// `POST /v1/auth/certs/app`: an app session certificate (`tsh apps login`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppCertRequest {
    /// App name.
    pub app: String,
    /// Full Azure identity resource ID (Azure apps).
    #[serde(default)]
    pub azure_identity: String,
    /// Public key to certify (SPKI DER, base64).
    pub public_key: String,
}

/// The app certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppCertResponse {
    /// Certificate (PEM).
    pub tls_cert: String,
    /// The app as registered.
    pub app: resources::App,
    /// Session ID.
    pub session_id: String,
}

/// `POST /v1/auth/certs/db`: a database certificate (`tsh db login`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DbCertRequest {
    /// Database name (as `tsh db ls` shows it).
    pub database: String,
    /// Database user; the protocol's default (`default` for Redis) when empty.
    #[serde(default)]
    pub db_user: String,
    /// Database name inside the server (not used by Redis).
    #[serde(default)]
    pub db_name: String,
    /// Public key to certify (SPKI DER, base64).
    pub public_key: String,
}

/// The database certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DbCertResponse {
    /// Certificate (PEM), issued by the user CA.
    pub tls_cert: String,
    /// The database as registered.
    pub database: resources::Database,
    /// The database user the certificate carries.
    pub db_user: String,
}

/// `POST /v1/auth/tokens`: a provision token (`tctl tokens add`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRequest {
    /// System roles, comma separated (`app,db`).
    pub roles: String,
    /// Validity in seconds.
    pub ttl_seconds: u64,
    /// The token's value; generated when absent.
    #[serde(default)]
    pub value: Option<String>,
}

/// `POST /v1/auth/hosts/renew`: new host certificates for an agent's new key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewRequest {
    /// Public key to certify (SPKI DER, base64).
    pub public_key: String,
}
