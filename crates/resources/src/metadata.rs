//! Resource metadata shared by every kind.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// `metadata:` of a resource: name, description, labels, expiry and revision.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Resource name (for a token: the token value itself).
    #[serde(default)]
    pub name: String,
    /// Free-form description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Static labels.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::unique_keys"
    )]
    pub labels: BTreeMap<String, String>,
    /// When the resource expires (RFC 3339).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires: Option<OffsetDateTime>,
    /// Storage revision, set by the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

impl Metadata {
    /// Metadata with only a name.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Whether the resource has expired at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}
