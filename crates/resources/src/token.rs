//! Provision tokens (`kind: token`, version v2), including the Azure join method.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::labels::{labels_serde, string_list, Labels};
use crate::{Metadata, ResourceError};

/// A role a joining agent may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SystemRole {
    /// Auth service.
    Auth,
    /// Proxy service.
    Proxy,
    /// SSH node.
    Node,
    /// Application service.
    App,
    /// Database service.
    Db,
    /// Kubernetes service.
    Kube,
    /// Machine ID bot.
    Bot,
    /// Instance (any services).
    Instance,
    /// Discovery service.
    Discovery,
    /// Windows desktop service.
    WindowsDesktop,
}

impl SystemRole {
    /// Every system role.
    pub const ALL: [SystemRole; 10] = [
        Self::Auth,
        Self::Proxy,
        Self::Node,
        Self::App,
        Self::Db,
        Self::Kube,
        Self::Bot,
        Self::Instance,
        Self::Discovery,
        Self::WindowsDesktop,
    ];

    /// Teleport's spelling (`Node`, `App`, `Db`, `WindowsDesktop`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "Auth",
            Self::Proxy => "Proxy",
            Self::Node => "Node",
            Self::App => "App",
            Self::Db => "Db",
            Self::Kube => "Kube",
            Self::Bot => "Bot",
            Self::Instance => "Instance",
            Self::Discovery => "Discovery",
            Self::WindowsDesktop => "WindowsDesktop",
        }
    }

    /// Parses a comma-separated list (`app,db`, as `tctl tokens add --type` takes it).
    /// Duplicates are dropped; an empty list is an error.
    pub fn parse_list(list: &str) -> Result<Vec<SystemRole>, ResourceError> {
        let mut out = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let role: SystemRole = part.parse()?;
            if !out.contains(&role) {
                out.push(role);
            }
        }
        if out.is_empty() {
            return Err(ResourceError::BadParameter(
                "at least one role is required (for example --type=node,app,db)".to_string(),
            ));
        }
        Ok(out)
    }
}

impl FromStr for SystemRole {
    type Err = ResourceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .trim()
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .collect::<String>()
            .to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().to_ascii_lowercase() == norm)
            .ok_or_else(|| ResourceError::BadParameter(format!("{s:?} is not a valid role")))
    }
}

/// How an agent proves it may use a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum JoinMethod {
    /// The token value is a shared secret.
    #[default]
    Token,
    /// Azure attested data plus a managed identity token.
    Azure,
}

impl JoinMethod {
    /// `token` or `azure`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Azure => "azure",
        }
    }
}

impl FromStr for JoinMethod {
    type Err = ResourceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "token" => Ok(Self::Token),
            "azure" => Ok(Self::Azure),
            _ => Err(ResourceError::BadParameter(format!(
                "join method {s:?} is not supported (supported: token, azure)"
            ))),
        }
    }
}

/// `Display`, `Serialize` and `Deserialize` of enums written as their `as_str()` and read
/// with their `FromStr` (so that a bad value gets its `FromStr` error).
macro_rules! text_enum_impls {
    ($($t:ty),+) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )+};
}

text_enum_impls!(SystemRole, JoinMethod);

/// A provision token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionToken {
    /// Always `token`.
    pub kind: String,
    /// Always `v2`.
    pub version: String,
    /// `metadata.name` is the token value; `metadata.expires` its expiry.
    pub metadata: Metadata,
    /// Roles, join method, allow rules.
    #[serde(default)]
    pub spec: TokenSpec,
}

/// `spec:` of a token.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Roles an agent joining with this token gets.
    #[serde(default)]
    pub roles: Vec<SystemRole>,
    /// How the agent proves itself.
    #[serde(default)]
    pub join_method: JoinMethod,
    /// Azure allow rules (required for the `azure` join method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureJoinSpec>,
    /// Labels suggested for resources joined with this token.
    #[serde(
        default,
        with = "labels_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub suggested_labels: Option<Labels>,
    /// Bot name, for `Bot` tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_name: Option<String>,
}

/// `spec.azure:` of a token.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureJoinSpec {
    /// A joining VM must match one of these rules.
    #[serde(default)]
    pub allow: Vec<AzureRule>,
}

/// One Azure allow rule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureRule {
    /// Subscription id (required, compared exactly).
    #[serde(default)]
    pub subscription: String,
    /// Resource groups (empty = any; compared case-insensitively).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_list::deserialize"
    )]
    pub resource_groups: Vec<String>,
    /// Tenant id (optional; compared exactly when set).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tenant: String,
}

impl ProvisionToken {
    /// A token with a value, roles and the `token` join method.
    pub fn new(value: impl Into<String>, roles: Vec<SystemRole>) -> Self {
        Self {
            kind: crate::KIND_TOKEN.to_string(),
            version: "v2".to_string(),
            metadata: Metadata::named(value),
            spec: TokenSpec {
                roles,
                ..TokenSpec::default()
            },
        }
    }

    /// Checks kind, version, name, roles and the join method configuration.
    pub fn validate(&self) -> Result<(), ResourceError> {
        crate::check_header(&self.kind, &self.version, crate::KIND_TOKEN, "v2")?;
        if self.metadata.name.is_empty() {
            return Err(ResourceError::Missing("metadata.name"));
        }
        if self.spec.roles.is_empty() {
            return Err(ResourceError::BadParameter(
                "provisioning token is missing roles".to_string(),
            ));
        }
        if self.spec.join_method == JoinMethod::Azure {
            let azure = self.spec.azure.as_ref().ok_or_else(|| {
                ResourceError::BadParameter(
                    "\"azure\" configuration must be provided for the join method \"azure\""
                        .to_string(),
                )
            })?;
            if azure.allow.is_empty() {
                return Err(ResourceError::BadParameter(
                    "the \"azure\" join method requires defined azure allow rules".to_string(),
                ));
            }
            if azure.allow.iter().any(|r| r.subscription.trim().is_empty()) {
                return Err(ResourceError::BadParameter(
                    "the \"azure\" join method requires azure allow rules with non-empty subscription"
                        .to_string(),
                ));
            }
        }
        Ok(())
    }

    /// The roles as Teleport lists them (`App,Db`).
    pub fn roles_string(&self) -> String {
        self.spec
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}
