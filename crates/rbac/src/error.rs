//! Error types of the rbac crate.

use std::fmt;

/// A role that cannot be used: bad version, forbidden wildcard, bad selector or regex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RbacError {
    /// A role version outside v3..v8.
    #[error("role version {0:?} is not supported")]
    UnsupportedVersion(String),
    /// An invalid role field; the text is Teleport's wording where it has one.
    #[error("{0}")]
    BadParameter(String),
    /// A `^...$` label value that is not a valid regular expression.
    #[error("invalid regular expression {pattern:?}: {reason}")]
    InvalidRegex {
        /// The pattern as written.
        pattern: String,
        /// The compiler's complaint.
        reason: String,
    },
}

impl From<resources::ResourceError> for RbacError {
    fn from(e: resources::ResourceError) -> Self {
        match e {
            resources::ResourceError::UnsupportedRoleVersion(v) => Self::UnsupportedVersion(v),
            other => Self::BadParameter(other.to_string()),
        }
    }
}

/// A template that cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The trait is missing or expands to nothing; callers drop the entry silently.
    #[error("{0}")]
    NotFound(String),
    /// The template is malformed or uses an unsupported variable or function.
    #[error("{0}")]
    BadParameter(String),
}

impl TemplateError {
    /// Whether this is the "trait missing" case (the entry is dropped without a warning).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }
}

/// What kind of refusal an [`AccessError`] is, so callers can map it to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessErrorKind {
    /// Forbidden (HTTP 403).
    AccessDenied,
    /// Nothing to grant, e.g. no Azure identities assigned (HTTP 404).
    NotFound,
    /// A role could not be evaluated, e.g. an invalid regex after trait expansion
    /// (HTTP 400). Never grants access.
    BadParameter,
}

/// A refused access decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessError {
    /// The refusal kind.
    pub kind: AccessErrorKind,
    /// The message shown to the user (Teleport's wording).
    pub message: String,
}

impl AccessError {
    /// An access-denied refusal.
    pub fn denied(message: impl Into<String>) -> Self {
        Self {
            kind: AccessErrorKind::AccessDenied,
            message: message.into(),
        }
    }

    /// A not-found refusal.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            kind: AccessErrorKind::NotFound,
            message: message.into(),
        }
    }

    /// A refusal caused by a role that could not be evaluated.
    pub fn bad_parameter(message: impl Into<String>) -> Self {
        Self {
            kind: AccessErrorKind::BadParameter,
            message: message.into(),
        }
    }

    /// Whether this is an access-denied refusal.
    pub fn is_access_denied(&self) -> bool {
        self.kind == AccessErrorKind::AccessDenied
    }

    /// Whether this is a not-found refusal.
    pub fn is_not_found(&self) -> bool {
        self.kind == AccessErrorKind::NotFound
    }
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AccessError {}

impl From<RbacError> for AccessError {
    fn from(e: RbacError) -> Self {
        Self::bad_parameter(e.to_string())
    }
}
