//! Teleport resources: kind/version/metadata/spec documents (roles, users, tokens, apps,
//! databases, cluster name, certificate authorities), their YAML/JSON codec and their
//! structural validation. Pure: no I/O.
//!
//! The entry points are [`parse_resources`] (multi-document YAML or JSON, as `tctl create`
//! reads it) and the [`Resource`] enum.

mod app;
mod cluster;
mod duration;
mod error;
mod labels;
mod metadata;
mod parse;
mod role;
pub mod served;
mod strict;
mod token;
mod user;

pub use app::{
    App, AppSpec, CommandLabel, Database, DatabaseAzure, DatabaseSpec, DatabaseTls, APP_CLOUDS,
    DB_TLS_MODES,
};
pub use cluster::{
    CaKeySet, CaType, CertAuthority, CertAuthoritySpec, ClusterName, ClusterNameSpec, JwtKeyPair,
    TlsKeyPair,
};
pub use duration::{format_go_duration, parse_go_duration, Duration};
pub use error::{ParseError, ResourceError};
pub use labels::{labels_serde, unique_keys, Labels};
pub use metadata::Metadata;
pub use parse::{
    parse_kind_ref, parse_resource, parse_resource_of, parse_resources, parse_yaml_of, Resource,
};
pub use role::{
    Role, RoleConditions, RoleOptions, RoleSpec, Rule, DEFAULT_MAX_SESSION_TTL,
    DEFAULT_ROLE_VERSION, SUPPORTED_ROLE_VERSIONS, WILDCARD,
};
pub use strict::did_you_mean;
#[doc(hidden)]
pub use strict::probe;
pub use token::{AzureJoinSpec, AzureRule, JoinMethod, ProvisionToken, SystemRole, TokenSpec};
pub use user::{trait_names, CreatedBy, CreatedByUser, User, UserSpec};

use std::sync::LazyLock;

/// `kind` of roles.
pub const KIND_ROLE: &str = "role";
/// `kind` of users.
pub const KIND_USER: &str = "user";
/// `kind` of provision tokens.
pub const KIND_TOKEN: &str = "token";
/// `kind` of applications.
pub const KIND_APP: &str = "app";
/// `kind` of databases.
pub const KIND_DB: &str = "db";
/// `kind` of the cluster name.
pub const KIND_CLUSTER_NAME: &str = "cluster_name";
/// `kind` of certificate authorities.
pub const KIND_CERT_AUTHORITY: &str = "cert_authority";

/// Every kind [`parse_resources`] accepts.
pub const KINDS: [&str; 7] = [
    KIND_ROLE,
    KIND_USER,
    KIND_TOKEN,
    KIND_APP,
    KIND_DB,
    KIND_CLUSTER_NAME,
    KIND_CERT_AUTHORITY,
];

/// Checks a fixed kind and version.
pub(crate) fn check_header(
    kind: &str,
    version: &str,
    want_kind: &'static str,
    want_version: &'static str,
) -> Result<(), ResourceError> {
    if kind != want_kind {
        return Err(ResourceError::BadParameter(format!(
            "expected kind {want_kind:?}, got {kind:?}"
        )));
    }
    if version != want_version {
        return Err(ResourceError::UnsupportedVersion {
            kind: want_kind.to_string(),
            version: version.to_string(),
        });
    }
    Ok(())
}

static AZURE_IDENTITY_RE: LazyLock<Option<regex::Regex>> = LazyLock::new(|| {
    regex::Regex::new(
        r"(?i)^/subscriptions/([a-f0-9-]+)/resourceGroups/([0-9a-z_-]+)/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/([0-9a-z_-]+)$",
    )
    .ok()
});

/// Whether `identity` is the full resource id of a user-assigned managed identity
/// (`/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>`),
/// compared case-insensitively.
pub fn is_valid_azure_identity(identity: &str) -> bool {
    AZURE_IDENTITY_RE
        .as_ref()
        .is_some_and(|re| re.is_match(identity))
}

#[cfg(test)]
mod every_key_tests;
#[cfg(test)]
mod tests;
