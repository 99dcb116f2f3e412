//! Users (`kind: user`, version v2).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::labels::{string_list, traits_serde};
use crate::{Metadata, ResourceError};

/// Well-known trait names, set by `tctl users add/update` and read by role templates
/// as `{{internal.<name>}}`.
pub mod trait_names {
    /// SSH logins.
    pub const LOGINS: &str = "logins";
    /// Windows desktop logins.
    pub const WINDOWS_LOGINS: &str = "windows_logins";
    /// Kubernetes groups.
    pub const KUBERNETES_GROUPS: &str = "kubernetes_groups";
    /// Kubernetes users.
    pub const KUBERNETES_USERS: &str = "kubernetes_users";
    /// Database names.
    pub const DB_NAMES: &str = "db_names";
    /// Database users.
    pub const DB_USERS: &str = "db_users";
    /// Database roles.
    pub const DB_ROLES: &str = "db_roles";
    /// AWS role ARNs.
    pub const AWS_ROLE_ARNS: &str = "aws_role_arns";
    /// Azure managed identities.
    pub const AZURE_IDENTITIES: &str = "azure_identities";
    /// GCP service accounts.
    pub const GCP_SERVICE_ACCOUNTS: &str = "gcp_service_accounts";
    /// JWT trait.
    pub const JWT: &str = "jwt";

    /// The names allowed after `internal.` in role templates.
    pub const INTERNAL: [&str; 11] = [
        LOGINS,
        WINDOWS_LOGINS,
        KUBERNETES_GROUPS,
        KUBERNETES_USERS,
        DB_NAMES,
        DB_USERS,
        DB_ROLES,
        AWS_ROLE_ARNS,
        AZURE_IDENTITIES,
        GCP_SERVICE_ACCOUNTS,
        JWT,
    ];
}

/// A Teleport user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Always `user`.
    pub kind: String,
    /// Always `v2`.
    pub version: String,
    /// Name (the user name), labels, expiry.
    pub metadata: Metadata,
    /// Roles and traits.
    #[serde(default)]
    pub spec: UserSpec,
}

/// `spec:` of a user.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// Role names.
    #[serde(default, deserialize_with = "string_list::deserialize")]
    pub roles: Vec<String>,
    /// Traits: logins, db_users, azure_identities, and any external ones.
    #[serde(
        default,
        deserialize_with = "traits_serde::deserialize",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub traits: BTreeMap<String, Vec<String>>,
    /// Who created the user and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<CreatedBy>,
}

/// `spec.created_by:` of a user.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatedBy {
    /// Creation time.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub time: Option<OffsetDateTime>,
    /// The creating user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<CreatedByUser>,
}

/// The user named in `created_by`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatedByUser {
    /// User name.
    #[serde(default)]
    pub name: String,
}

impl User {
    /// A user with a name and roles.
    pub fn new(name: impl Into<String>, roles: Vec<String>) -> Self {
        Self {
            kind: crate::KIND_USER.to_string(),
            version: "v2".to_string(),
            metadata: Metadata::named(name),
            spec: UserSpec {
                roles,
                ..UserSpec::default()
            },
        }
    }

    /// The values of one trait (empty when unset).
    pub fn trait_values(&self, name: &str) -> &[String] {
        self.spec.traits.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Kind, version and name checks.
    pub fn validate(&self) -> Result<(), ResourceError> {
        crate::check_header(&self.kind, &self.version, crate::KIND_USER, "v2")?;
        if self.metadata.name.is_empty() {
            return Err(ResourceError::Missing("metadata.name"));
        }
        Ok(())
    }
}
