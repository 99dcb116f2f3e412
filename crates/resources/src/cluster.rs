//! Cluster name and certificate authorities.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Metadata, ResourceError};

/// The cluster's name and id (`kind: cluster_name`, version v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterName {
    /// Always `cluster_name`.
    pub kind: String,
    /// Always `v2`.
    pub version: String,
    /// `metadata.name` is `cluster-name`.
    pub metadata: Metadata,
    /// Name and id.
    #[serde(default)]
    pub spec: ClusterNameSpec,
}

/// `spec:` of a cluster name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterNameSpec {
    /// The cluster name.
    #[serde(default)]
    pub cluster_name: String,
    /// A unique id chosen at first start.
    #[serde(default)]
    pub cluster_id: String,
}

impl ClusterName {
    /// The resource as Teleport stores it (`metadata.name: cluster-name`).
    pub fn new(cluster_name: impl Into<String>, cluster_id: impl Into<String>) -> Self {
        Self {
            kind: crate::KIND_CLUSTER_NAME.to_string(),
            version: "v2".to_string(),
            metadata: Metadata::named("cluster-name"),
            spec: ClusterNameSpec {
                cluster_name: cluster_name.into(),
                cluster_id: cluster_id.into(),
            },
        }
    }

    /// Kind, version and cluster name checks.
    pub fn validate(&self) -> Result<(), ResourceError> {
        crate::check_header(&self.kind, &self.version, crate::KIND_CLUSTER_NAME, "v2")?;
        if self.spec.cluster_name.is_empty() {
            return Err(ResourceError::Missing("spec.cluster_name"));
        }
        Ok(())
    }
}

/// Which certificates a CA signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaType {
    /// User certificates.
    User,
    /// Host certificates.
    Host,
    /// Database service client certificates.
    Db,
    /// JWT signing keys (app access tokens).
    Jwt,
}

impl CaType {
    /// `user`, `host`, `db` or `jwt`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Host => "host",
            Self::Db => "db",
            Self::Jwt => "jwt",
        }
    }
}

impl fmt::Display for CaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A certificate authority (`kind: cert_authority`, version v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertAuthority {
    /// Always `cert_authority`.
    pub kind: String,
    /// Always `v2`.
    pub version: String,
    /// `metadata.name` is the cluster name.
    pub metadata: Metadata,
    /// Type and keys.
    pub spec: CertAuthoritySpec,
}

/// `spec:` of a certificate authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertAuthoritySpec {
    /// The cluster this CA belongs to.
    #[serde(default)]
    pub cluster_name: String,
    /// Which certificates it signs.
    #[serde(rename = "type")]
    pub ca_type: CaType,
    /// Current keys.
    #[serde(default)]
    pub active_keys: CaKeySet,
}

/// Key material of a CA.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaKeySet {
    /// X.509 certificates and keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<TlsKeyPair>,
    /// JWT signing keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt: Vec<JwtKeyPair>,
}

/// A CA certificate and (when not exported) its key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsKeyPair {
    /// Certificate (PEM).
    pub cert: String,
    /// Private key (PEM); absent when exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A JWT public key and (when not exported) its private key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyPair {
    /// Public key (PEM).
    pub public_key: String,
    /// Private key (PEM); absent when exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
}

impl CertAuthority {
    /// Kind, version, name and key checks.
    pub fn validate(&self) -> Result<(), ResourceError> {
        crate::check_header(&self.kind, &self.version, crate::KIND_CERT_AUTHORITY, "v2")?;
        if self.metadata.name.is_empty() {
            return Err(ResourceError::Missing("metadata.name"));
        }
        if self.spec.cluster_name.is_empty() {
            return Err(ResourceError::Missing("spec.cluster_name"));
        }
        if self
            .spec
            .active_keys
            .tls
            .iter()
            .any(|k| k.cert.trim().is_empty())
        {
            return Err(ResourceError::Missing("spec.active_keys.tls[].cert"));
        }
        Ok(())
    }

    /// A copy with every private key removed, for export.
    pub fn without_secrets(&self) -> Self {
        let mut out = self.clone();
        for k in &mut out.spec.active_keys.tls {
            k.key = None;
        }
        for k in &mut out.spec.active_keys.jwt {
            k.private_key = None;
        }
        out
    }
}
