//! Roles (`kind: role`, versions v3..v8).

use serde::{Deserialize, Serialize};

use crate::labels::{labels_serde, string_list, Labels};
use crate::{Duration, Metadata, ResourceError};

/// Role versions this implementation reads. They share one schema.
pub const SUPPORTED_ROLE_VERSIONS: [&str; 6] = ["v3", "v4", "v5", "v6", "v7", "v8"];

/// The default role version for new roles.
pub const DEFAULT_ROLE_VERSION: &str = "v7";

/// Wildcard used in selectors and lists.
pub const WILDCARD: &str = "*";

/// Default `max_session_ttl` when a role does not set it: 30 hours.
pub const DEFAULT_MAX_SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 3600);

/// A role: who may do what, as `allow` and `deny` conditions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Always `role`.
    pub kind: String,
    /// One of [`SUPPORTED_ROLE_VERSIONS`].
    pub version: String,
    /// Name, labels, expiry.
    pub metadata: Metadata,
    /// Options and conditions.
    #[serde(default)]
    pub spec: RoleSpec,
}

/// `spec:` of a role.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Session options.
    #[serde(default)]
    pub options: RoleOptions,
    /// What the role grants.
    #[serde(default)]
    pub allow: RoleConditions,
    /// What the role forbids; deny always wins.
    #[serde(default)]
    pub deny: RoleConditions,
}

/// `spec.options:` of a role. Unknown options are refused.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleOptions {
    /// Longest certificate lifetime this role allows (default 30h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_session_ttl: Option<Duration>,
    /// Whether SSH agent forwarding is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_agent: Option<bool>,
    /// Idle timeout for sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_idle_timeout: Option<Duration>,
    /// Whether sessions end when the certificate expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_expired_cert: Option<bool>,
}

impl RoleOptions {
    /// The effective `max_session_ttl`: the configured value, or 30h when absent or zero.
    pub fn max_session_ttl(&self) -> std::time::Duration {
        match self.max_session_ttl {
            Some(d) if !d.0.is_zero() => d.0,
            _ => DEFAULT_MAX_SESSION_TTL,
        }
    }
}

/// A rule of the admin API: verbs allowed (or denied) on resource kinds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Resource kinds (`role`, `user`, `token`, ... or `*`).
    #[serde(default, deserialize_with = "string_list::deserialize")]
    pub resources: Vec<String>,
    /// Verbs (`list`, `read`, `create`, `update`, `delete`, ... or `*`).
    #[serde(default, deserialize_with = "string_list::deserialize")]
    pub verbs: Vec<String>,
    /// A `where` condition (stored; not evaluated by this implementation).
    #[serde(rename = "where", default, skip_serializing_if = "Option::is_none")]
    pub r#where: Option<String>,
}

/// `allow:` or `deny:` conditions of a role. Unknown fields are refused: a dropped
/// `deny` key would be a dropped denial.
///
/// Selector fields are `Option`: `None` means the field is absent (v3 roles then get
/// defaults), `Some(empty)` an explicit `{}` that matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConditions {
    /// SSH logins.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_list::deserialize"
    )]
    pub logins: Vec<String>,
    /// Namespaces (stored only).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_list::deserialize"
    )]
    pub namespaces: Vec<String>,
    /// Application label selector.
    #[serde(
        default,
        with = "labels_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub app_labels: Option<Labels>,
    /// Database label selector.
    #[serde(
        default,
        with = "labels_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub db_labels: Option<Labels>,
    /// SSH node label selector.
    #[serde(
        default,
        with = "labels_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_labels: Option<Labels>,
    /// Kubernetes cluster label selector.
    #[serde(
        default,
        with = "labels_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub kubernetes_labels: Option<Labels>,
    /// Application label expression (stored only; see the rbac crate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_labels_expression: Option<String>,
    /// Database label expression (stored only; see the rbac crate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_labels_expression: Option<String>,
    /// Database users.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_list::deserialize"
    )]
    pub db_users: Vec<String>,
    /// Database names.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_list::deserialize"
    )]
    pub db_names: Vec<String>,
    /// Database roles.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_list::deserialize"
    )]
    pub db_roles: Vec<String>,
    /// Azure managed identity resource ids.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_list::deserialize"
    )]
    pub azure_identities: Vec<String>,
    /// AWS role ARNs.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_list::deserialize"
    )]
    pub aws_role_arns: Vec<String>,
    /// GCP service accounts.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_list::deserialize"
    )]
    pub gcp_service_accounts: Vec<String>,
    /// Kubernetes groups.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_list::deserialize"
    )]
    pub kubernetes_groups: Vec<String>,
    /// Kubernetes users.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_list::deserialize"
    )]
    pub kubernetes_users: Vec<String>,
    /// Windows desktop logins.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_list::deserialize"
    )]
    pub windows_desktop_logins: Vec<String>,
    /// Admin API rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

impl Role {
    /// A role with the given name, the default version and an empty spec.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            kind: crate::KIND_ROLE.to_string(),
            version: DEFAULT_ROLE_VERSION.to_string(),
            metadata: Metadata::named(name),
            spec: RoleSpec::default(),
        }
    }

    /// Checks `kind` and `version` only.
    pub fn check_version(&self) -> Result<(), ResourceError> {
        if self.kind != crate::KIND_ROLE {
            return Err(ResourceError::BadParameter(format!(
                "expected kind \"role\", got {:?}",
                self.kind
            )));
        }
        if !SUPPORTED_ROLE_VERSIONS.contains(&self.version.as_str()) {
            return Err(ResourceError::UnsupportedRoleVersion(self.version.clone()));
        }
        Ok(())
    }

    /// Structural validation: kind, version and name. RBAC-level checks (wildcards,
    /// regexes, templates) live in `rbac::validate_role`.
    pub fn validate(&self) -> Result<(), ResourceError> {
        self.check_version()?;
        if self.metadata.name.is_empty() {
            return Err(ResourceError::Missing("metadata.name"));
        }
        Ok(())
    }

    /// Fills the version defaults Teleport applies when a role is created:
    /// in v3, absent `allow.app_labels`, `allow.db_labels` and `allow.kubernetes_labels`
    /// become `{'*': '*'}`, and absent `allow.node_labels` becomes `{'*': '*'}` when
    /// `allow.logins` is non-empty (else `{}`). v4+ roles are left as they are (absent
    /// selectors match nothing). Idempotent.
    pub fn set_defaults(&mut self) {
        if self.version != "v3" {
            return;
        }
        let allow = &mut self.spec.allow;
        let wildcard = || Labels::from([(WILDCARD.to_string(), vec![WILDCARD.to_string()])]);
        if allow.app_labels.is_none() {
            allow.app_labels = Some(wildcard());
        }
        if allow.db_labels.is_none() {
            allow.db_labels = Some(wildcard());
        }
        if allow.kubernetes_labels.is_none() {
            allow.kubernetes_labels = Some(wildcard());
        }
        if allow.node_labels.is_none() {
            allow.node_labels = Some(if allow.logins.is_empty() {
                Labels::new()
            } else {
                wildcard()
            });
        }
    }
}
