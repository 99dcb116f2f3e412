//! Typed errors. Each says where it came from and whether retrying may help.

use std::time::Duration;

/// An error body ARM returned (`{"error":{"code","message"}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmError {
    /// HTTP status.
    pub status: u16,
    /// ARM error code (`AuthorizationFailed`, `ResourceNotFound`, ...); empty when the body had none.
    pub code: String,
    /// ARM's message.
    pub message: String,
}

impl ArmError {
    /// The caller lacks a role for the action.
    pub fn is_authorization_failed(&self) -> bool {
        self.code == "AuthorizationFailed"
    }

    /// The resource, group or subscription does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status == 404
            || matches!(
                self.code.as_str(),
                "ResourceNotFound" | "ResourceGroupNotFound" | "SubscriptionNotFound"
            )
    }

    /// The token was refused (bad, expired, wrong audience).
    pub fn is_authentication_failed(&self) -> bool {
        self.status == 401
    }
}

impl std::fmt::Display for ArmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

/// Errors of azure-mint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// HTTP client setup failed (bad proxy URL, unreadable CA file, ...).
    #[error("HTTP client setup: {0}")]
    Config(String),
    /// The request could not be sent or the response not read (retrying may help).
    #[error("{service} request failed: {message}")]
    Transport {
        /// `IMDS`, `ARM`, `Entra ID`.
        service: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The IMDS answered with an error status.
    #[error("IMDS returned HTTP {status}: {message}")]
    Imds {
        /// HTTP status.
        status: u16,
        /// `error_description` or the body.
        message: String,
    },
    /// ARM answered with an error.
    #[error("ARM error {0}")]
    Arm(ArmError),
    /// ARM kept throttling us.
    #[error("ARM throttled the request (429); retry after {retry_after:?}")]
    Throttled {
        /// What `Retry-After` said.
        retry_after: Option<Duration>,
    },
    /// A response that does not have the documented shape (truncated, hostile, wrong type).
    #[error("malformed {service} response: {message}")]
    Malformed {
        /// Which service.
        service: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A credential could not get a token.
    #[error("{0}")]
    Credential(String),
    /// Bad input from our caller.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Throttled { .. } => true,
            Error::Imds { status, .. } => matches!(status, 404 | 410 | 429 | 500..=599),
            Error::Arm(e) => e.status >= 500,
            _ => false,
        }
    }

    /// The ARM error, when this is one.
    pub fn arm(&self) -> Option<&ArmError> {
        match self {
            Error::Arm(e) => Some(e),
            _ => None,
        }
    }
}
