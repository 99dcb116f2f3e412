//! Joining a cluster, agent side: trusting the cluster through
//! `teleport.ca_pin`, the token join, the agent's stored identity, and its
//! authenticated client.
//!
//! Trust: the agent fetches the host CA from the proxy and accepts it only if
//! its pin (`sha256:<hex of SPKI>`, what `tctl status` prints) is one of the
//! configured pins. Every later call to the proxy uses ALPN
//! `teleport-cluster`, where the proxy presents a host-CA certificate that the
//! agent verifies against that CA, so the token never travels over an
//! unverified channel.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::azure_join::join_with_azure;

use base64::Engine;
use client::ApiClient;
use serde::{Deserialize, Serialize};

/// File in the data dir holding the agent's identity.
pub const IDENTITY_FILE: &str = "agent-identity.json";
/// File in the data dir holding the agent's host ID.
pub const HOST_UUID_FILE: &str = "host_uuid";

/// Errors of joining.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// A step of joining that the cluster refused or could not serve.
    #[error("{step} failed: {source}")]
    Cluster {
        /// What the agent was doing.
        step: JoinStep,
        /// The cluster's answer or the connection's failure.
        #[source]
        source: client::ClientError,
    },
    /// The proxy could not be reached with a verified certificate and no
    /// pin is configured to trust its host CA instead.
    #[error("{0}; set teleport.ca_pin (teleport start --ca-pin) to the pin `tctl status` prints")]
    Unpinned(#[source] client::ClientError),
    /// The host CA the proxy sent is not a certificate.
    #[error("the proxy sent a bad host CA: {0}")]
    BadHostCa(#[source] pki::PkiError),
    /// The proxy's CA does not match `teleport.ca_pin`.
    #[error("the cluster's host CA pin {got} does not match teleport.ca_pin ({want}, or --ca-pin's): check the pin `tctl status` prints")]
    PinMismatch {
        /// Pin of the CA the proxy presented.
        got: String,
        /// Configured pins.
        want: String,
    },
    /// Local configuration or state is wrong.
    #[error("{0}")]
    Local(String),
}

/// The steps of joining and staying joined that ask the cluster something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinStep {
    /// Fetching the host CA from the proxy, or dialling it.
    ReachProxy,
    /// `POST /v1/webapi/host/credentials` with a token.
    TokenJoin,
    /// `POST /v1/webapi/host/azure/challenge`.
    AzureChallenge,
    /// `POST /v1/webapi/host/azure/credentials`.
    AzureJoin,
    /// `GET /v1/auth/proxies`, to keep a tunnel to each proxy.
    ListProxies,
    /// `POST /v1/auth/hosts/renew`, the host certificate's renewal.
    Renew,
}

impl std::fmt::Display for JoinStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JoinStep::ReachProxy => "reaching the proxy",
            JoinStep::TokenJoin => "joining the cluster",
            JoinStep::AzureChallenge => "getting an Azure join challenge",
            JoinStep::AzureJoin => "joining the cluster with the Azure method",
            JoinStep::ListProxies => "listing the cluster's proxies",
            JoinStep::Renew => "renewing the host certificate",
        })
    }
}

impl JoinError {
    /// `source` as the failure of `step`.
    pub fn at(step: JoinStep) -> impl FnOnce(client::ClientError) -> JoinError {
        move |source| JoinError::Cluster { step, source }
    }
}

/// Result alias.
pub type Result<T, E = JoinError> = std::result::Result<T, E>;

/// The cluster as the agent trusts it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterTrust {
    /// Cluster name.
    pub cluster_name: String,
    /// Host CA certificates (PEM).
    pub host_ca_pems: Vec<String>,
}

/// What an agent keeps in its data dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentIdentity {
    /// Host ID (certificate CN).
    pub host_id: String,
    /// Private key PEM.
    pub key_pem: String,
    /// Host certificate PEM.
    pub cert_pem: String,
    /// Host CA certificates.
    pub host_ca_pems: Vec<String>,
    /// User CA certificates (to verify users' certificates).
    pub user_ca_pems: Vec<String>,
    /// Cluster name.
    pub cluster_name: String,
    /// System roles in the certificate.
    pub roles: Vec<String>,
}

#[derive(Deserialize)]
struct HostCaAnswer {
    cluster_name: String,
    host_ca: String,
}

/// Fetch the host CA from the proxy and check it against `pins`. With no
/// pins, the proxy's web certificate must be valid for the system roots (or
/// `insecure` set, which trusts whatever answers: tests only).
pub async fn trust_cluster(proxy: &str, pins: &[String], insecure: bool) -> Result<ClusterTrust> {
    let unverified = !pins.is_empty() || insecure;
    let reach = |source| {
        if unverified {
            JoinError::Cluster {
                step: JoinStep::ReachProxy,
                source,
            }
        } else {
            JoinError::Unpinned(source)
        }
    };
    let web = ApiClient::new(proxy, None, unverified).map_err(reach)?;
    let answer: HostCaAnswer = web.get("/v1/webapi/host-ca").await.map_err(reach)?;
    let got = pki::ca_pin_from_cert_pem(&answer.host_ca).map_err(JoinError::BadHostCa)?;
    if !pins.is_empty() && !pins.iter().any(|p| p.trim() == got) {
        return Err(JoinError::PinMismatch {
            got,
            want: pins.join(", "),
        });
    }
    if pins.is_empty() {
        tracing::warn!(pin = %got, "no teleport.ca_pin configured: trusting the host CA the proxy presented");
    }
    Ok(ClusterTrust {
        cluster_name: answer.cluster_name,
        host_ca_pems: vec![answer.host_ca],
    })
}

/// A client of the proxy over ALPN `teleport-cluster`, verified against the
/// host CA, presenting `identity` when given.
pub fn cluster_client(
    proxy: &str,
    trust: &ClusterTrust,
    identity: Option<&AgentIdentity>,
) -> Result<ApiClient> {
    let tls = pki::tls::cluster_client_config(
        identity.map(|i| i.cert_pem.as_str()),
        identity.map(|i| i.key_pem.as_str()),
        &trust.host_ca_pems,
        &trust.cluster_name,
        &[api::alpn::CLUSTER],
    )
    .map_err(|e| JoinError::Local(format!("TLS setup: {e}")))?;
    ApiClient::with_tls(proxy, tls).map_err(JoinError::at(JoinStep::ReachProxy))
}

/// `join_params.token_name`: a path to a file holding the token, or the token.
pub fn read_token(token_name: &str) -> Result<String> {
    let p = Path::new(token_name);
    if token_name.starts_with('/') || token_name.starts_with("./") {
        let text = std::fs::read_to_string(p).map_err(|e| {
            JoinError::Local(format!("cannot read the join token file {token_name}: {e}"))
        })?;
        let t = text.trim().to_string();
        if t.is_empty() {
            return Err(JoinError::Local(format!(
                "the join token file {token_name} is empty"
            )));
        }
        return Ok(t);
    }
    Ok(token_name.trim().to_string())
}

/// The agent's host ID, made once and kept in the data dir.
pub fn host_id(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(HOST_UUID_FILE);
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_string();
        if !s.is_empty() {
            return Ok(s);
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    std::fs::create_dir_all(data_dir)
        .map_err(|e| JoinError::Local(format!("creating {}: {e}", data_dir.display())))?;
    // Whole or not at all: a reader (or a crash) never sees an empty ID.
    pki::private_file::write(&path, id.as_bytes())
        .map_err(|e| JoinError::Local(format!("writing {}: {e}", path.display())))?;
    Ok(id)
}

/// Join with a provision token: certify a fresh key for `roles`.
/// How long a join request keeps trying while the proxy rate-limits join
/// requests from this address.
const JOIN_RETRY_FOR: Duration = Duration::from_secs(120);

/// Posts a join request; while the proxy answers 429 (too many join
/// requests from this address: a scale set behind one NAT joining at
/// once), waits with backoff and jitter and tries again, for up to
/// [`JOIN_RETRY_FOR`]. Other answers are returned as they are.
pub(crate) async fn post_join<T, B>(api: &ApiClient, path: &str, body: &B) -> client::Result<T>
where
    T: serde::de::DeserializeOwned,
    B: Serialize,
{
    let deadline = tokio::time::Instant::now() + JOIN_RETRY_FOR;
    let mut backoff = Duration::from_millis(500);
    loop {
        match api.post(path, body).await {
            Err(e) if e.status() == Some(429) => {
                // Half the backoff fixed, half random, so agents refused
                // together do not come back together.
                let jitter = rand::random_range(0..=backoff.as_millis() as u64 / 2);
                let wait = backoff / 2 + Duration::from_millis(jitter);
                if tokio::time::Instant::now() + wait > deadline {
                    return Err(e);
                }
                tracing::warn!(error = %e, ?wait, "the proxy is rate-limiting join requests; trying again");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_secs(16));
            }
            other => return other,
        }
    }
}

pub async fn join_with_token(
    proxy: &str,
    trust: &ClusterTrust,
    token: &str,
    host_id: &str,
    node_name: &str,
    roles: &[String],
) -> Result<AgentIdentity> {
    let key = pki::generate_key().map_err(|e| JoinError::Local(e.to_string()))?;
    let api = cluster_client(proxy, trust, None)?;
    let req = api::join::RegisterRequest {
        token: token.to_string(),
        host_id: host_id.to_string(),
        node_name: node_name.to_string(),
        roles: roles.to_vec(),
        public_key: base64::engine::general_purpose::STANDARD.encode(&key.public_key_der),
        dns_names: vec![],
    };
    let certs: api::join::HostCerts = post_join(&api, "/v1/webapi/host/credentials", &req)
        .await
        .map_err(JoinError::at(JoinStep::TokenJoin))?;
    Ok(identity_from(host_id, key.private_key_pem, certs, roles))
}

pub(crate) fn identity_from(
    host_id: &str,
    key_pem: String,
    certs: api::join::HostCerts,
    roles: &[String],
) -> AgentIdentity {
    AgentIdentity {
        host_id: host_id.to_string(),
        key_pem,
        cert_pem: certs.tls_cert,
        host_ca_pems: certs.host_ca_certs,
        user_ca_pems: certs.user_ca_certs,
        cluster_name: certs.cluster_name,
        roles: roles.to_vec(),
    }
}

/// Renew the host certificate with a fresh key.
pub async fn renew(proxy: &str, identity: &AgentIdentity) -> Result<AgentIdentity> {
    let trust = ClusterTrust {
        cluster_name: identity.cluster_name.clone(),
        host_ca_pems: identity.host_ca_pems.clone(),
    };
    let api = cluster_client(proxy, &trust, Some(identity))?;
    let key = pki::generate_key().map_err(|e| JoinError::Local(e.to_string()))?;
    let certs: api::join::HostCerts = api
        .post(
            "/v1/auth/hosts/renew",
            &api::certs::RenewRequest {
                public_key: base64::engine::general_purpose::STANDARD.encode(&key.public_key_der),
            },
        )
        .await
        .map_err(JoinError::at(JoinStep::Renew))?;
    Ok(identity_from(
        &identity.host_id,
        key.private_key_pem,
        certs,
        &identity.roles,
    ))
}

impl AgentIdentity {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(IDENTITY_FILE)
    }

    /// Load a stored identity, if any.
    pub fn load(data_dir: &Path) -> Option<AgentIdentity> {
        let text = std::fs::read_to_string(Self::path(data_dir)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Store it (0600).
    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| JoinError::Local(e.to_string()))?;
        pki::private_file::write(&Self::path(data_dir), &text)
            .map_err(|e| JoinError::Local(e.to_string()))
    }

    /// When the certificate expires.
    pub fn expires(&self) -> Option<time::OffsetDateTime> {
        pki::cert_not_after(&self.cert_pem).ok()
    }

    /// Usable: not expired, for `cluster`, with all of `roles`.
    pub fn usable_for(&self, roles: &[String]) -> bool {
        let fresh = self
            .expires()
            .is_some_and(|e| e > time::OffsetDateTime::now_utc() + time::Duration::minutes(5));
        fresh && roles.iter().all(|r| self.roles.contains(r))
    }

    /// Time until the certificate should be renewed (half its remaining life).
    pub fn renew_in(&self) -> Duration {
        let left = self
            .expires()
            .map(|e| e - time::OffsetDateTime::now_utc())
            .unwrap_or(time::Duration::ZERO);
        Duration::from_secs((left.whole_seconds().max(0) / 2) as u64).max(Duration::from_secs(30))
    }

    /// The trust this identity carries.
    pub fn trust(&self) -> ClusterTrust {
        ClusterTrust {
            cluster_name: self.cluster_name.clone(),
            host_ca_pems: self.host_ca_pems.clone(),
        }
    }
}

/// Dial the proxy's reverse tunnel: TCP (no delay), then mutual TLS with the
/// host certificate, ALPN `teleport-reversetunnel`, verified against the host CA.
pub async fn dial_tunnel(
    proxy: &str,
    identity: &AgentIdentity,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tls = pki::tls::cluster_client_config(
        Some(&identity.cert_pem),
        Some(&identity.key_pem),
        &identity.host_ca_pems,
        &identity.cluster_name,
        &[api::alpn::REVERSE_TUNNEL],
    )
    .map_err(std::io::Error::other)?;
    let addr = client::base_url(proxy)
        .trim_start_matches("https://")
        .to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls_pki_types::ServerName::try_from(pki::tls::cluster_server_name(
        &identity.cluster_name,
    ))
    .map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(name, tcp)
        .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn token_from_file_or_value() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "abc123\n").unwrap();
        assert_eq!(read_token(f.to_str().unwrap()).unwrap(), "abc123");
        assert_eq!(read_token("xyz").unwrap(), "xyz");
        let missing = dir.path().join("missing");
        let err = read_token(missing.to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("cannot read the join token file"));
        std::fs::write(&f, "\n").unwrap();
        assert!(read_token(f.to_str().unwrap()).is_err());
    }

    /// A proxy that cannot be reached: without a pin the error says to set
    /// one; with a pin (or --insecure) it names the step that failed.
    #[tokio::test]
    async fn an_unreachable_proxy_is_named_by_step_and_pin() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let proxy = format!("127.0.0.1:{port}");
        let err = trust_cluster(&proxy, &[], false).await.unwrap_err();
        assert!(matches!(err, JoinError::Unpinned(_)), "{err:?}");
        assert!(err.to_string().contains("set teleport.ca_pin"), "{err}");
        let pins = ["sha256:00".to_string()];
        let err = trust_cluster(&proxy, &pins, false).await.unwrap_err();
        assert!(
            matches!(
                err,
                JoinError::Cluster {
                    step: JoinStep::ReachProxy,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("reaching the proxy failed: "),
            "{err}"
        );
    }

    #[test]
    fn host_id_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = host_id(dir.path()).unwrap();
        let b = host_id(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 36);
    }
}
