//! Error types of the resources crate.

use std::fmt;

/// An invalid resource, field or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// A resource kind this crate does not know.
    #[error("unsupported resource kind {0:?}")]
    UnsupportedKind(String),
    /// A role version outside v3..v8.
    #[error("role version {0:?} is not supported")]
    UnsupportedRoleVersion(String),
    /// A resource version that is not the one its kind uses.
    #[error("{kind} version {version:?} is not supported")]
    UnsupportedVersion {
        /// Resource kind.
        kind: String,
        /// Version found.
        version: String,
    },
    /// A required field is missing or empty.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A malformed Go duration string.
    #[error("invalid duration {input:?}: {reason}")]
    InvalidDuration {
        /// The text that failed.
        input: String,
        /// Why it failed.
        reason: &'static str,
    },
    /// Any other invalid value; the text says which and why.
    #[error("{0}")]
    BadParameter(String),
    /// Encoding a resource failed.
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// A failure to parse a resource file, pointing at the document and position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based index of the document (YAML `---` section or JSON array item).
    pub document: usize,
    /// 1-based line in the whole input, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What went wrong, with the field path when known (`spec.allow.app_labels: ...`).
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.document)?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
            if let Some(column) = self.column {
                write!(f, ", column {column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ParseError {}
