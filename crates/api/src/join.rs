//! Wire types of agents joining the cluster (`/v1/webapi/host/...` on the proxy).

use serde::{Deserialize, Serialize};

/// `POST /v1/webapi/host/credentials`: join with a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The token value (never logged).
    pub token: String,
    /// Agent's host ID (a UUID it keeps in its data dir).
    pub host_id: String,
    /// Agent's node name.
    pub node_name: String,
    /// System roles asked for (`App`, `Db`, `Node`, ...).
    pub roles: Vec<String>,
    /// Public key to certify (SPKI DER, base64).
    pub public_key: String,
    /// Names asked for the certificate. The auth service sets an agent's
    /// names itself (its host ID and node name); anything else is refused.
    #[serde(default)]
    pub dns_names: Vec<String>,
}

/// Host credentials handed to an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostCerts {
    /// Host certificate (PEM).
    pub tls_cert: String,
    /// Host CA (PEM): the agent's trust anchor for cluster servers.
    pub host_ca_certs: Vec<String>,
    /// User CA (PEM): what user certificates are signed by.
    pub user_ca_certs: Vec<String>,
    /// Cluster name.
    pub cluster_name: String,
}

/// Answer of `POST /v1/webapi/host/azure/challenge`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AzureChallenge {
    /// 24 random bytes, base64url without padding (32 characters: IMDS's nonce limit).
    pub challenge: String,
}

/// `POST /v1/webapi/host/azure/credentials`: join with the Azure method.
#[derive(Clone, Serialize, Deserialize)]
pub struct AzureRegisterRequest {
    /// Name of the `join_method: azure` token resource (not a secret).
    pub token: String,
    /// Agent's host ID.
    pub host_id: String,
    /// Agent's node name.
    pub node_name: String,
    /// System roles asked for.
    pub roles: Vec<String>,
    /// Public key to certify (SPKI DER, base64).
    pub public_key: String,
    /// Names asked for the certificate. The auth service sets an agent's
    /// names itself (its host ID and node name); anything else is refused.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// The challenge the auth service handed out, used as the IMDS nonce.
    pub challenge: String,
    /// The attested document exactly as IMDS returned it (`{"encoding":"pkcs7","signature":...}`).
    pub attested_data: String,
    /// Intermediate CA certificates (DER, base64) fetched through the signer's AIA URLs.
    #[serde(default)]
    pub intermediates: Vec<String>,
    /// A managed-identity access token for `https://management.azure.com/`.
    pub access_token: String,
}

impl std::fmt::Debug for AzureRegisterRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureRegisterRequest")
            .field("token", &self.token)
            .field("host_id", &self.host_id)
            .field("node_name", &self.node_name)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}
