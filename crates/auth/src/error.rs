//! Errors of the auth service and their HTTP mapping.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error of the auth service. The message is what the caller sees.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller may not do this.
    #[error("{0}")]
    AccessDenied(String),
    /// The request is malformed.
    #[error("{0}")]
    BadParameter(String),
    /// A concurrent change won; the caller may retry.
    #[error("{0}")]
    CompareFailed(String),
    /// The account is locked or a limit was hit.
    #[error("{0}")]
    LimitExceeded(String),
    /// Something broke on our side (storage, signing).
    #[error("internal error: {0}")]
    Internal(String),
}

impl AuthError {
    /// HTTP status for the error.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::NotFound(_) => StatusCode::NOT_FOUND,
            AuthError::AlreadyExists(_) => StatusCode::CONFLICT,
            AuthError::AccessDenied(_) => StatusCode::FORBIDDEN,
            AuthError::BadParameter(_) => StatusCode::BAD_REQUEST,
            AuthError::CompareFailed(_) => StatusCode::PRECONDITION_FAILED,
            AuthError::LimitExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            AuthError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<backend::BackendError> for AuthError {
    fn from(e: backend::BackendError) -> Self {
        match e {
            backend::BackendError::NotFound(k) => AuthError::NotFound(format!("{k} is not found")),
            backend::BackendError::AlreadyExists(k) => {
                AuthError::AlreadyExists(format!("{k} already exists"))
            }
            backend::BackendError::CompareFailed(k) => {
                AuthError::CompareFailed(format!("{k} was changed concurrently, try again"))
            }
            other => AuthError::Internal(other.to_string()),
        }
    }
}

/// A backend error, with its "not found" told as `message` (the caller's words for what is
/// missing, not the storage key): for `map_err` on a lookup.
pub(crate) fn not_found_as(message: String) -> impl FnOnce(backend::BackendError) -> AuthError {
    move |e| match e {
        backend::BackendError::NotFound(_) => AuthError::NotFound(message),
        e => e.into(),
    }
}

/// A backend error, with its "already exists" told as `message`: for `map_err` on a create.
pub(crate) fn exists_as(message: String) -> impl FnOnce(backend::BackendError) -> AuthError {
    move |e| match e {
        backend::BackendError::AlreadyExists(_) => AuthError::AlreadyExists(message),
        e => e.into(),
    }
}

impl From<pki::PkiError> for AuthError {
    fn from(e: pki::PkiError) -> Self {
        AuthError::Internal(format!("certificate authority: {e}"))
    }
}

impl From<serde_json::Error> for AuthError {
    fn from(e: serde_json::Error) -> Self {
        AuthError::Internal(format!("stored data is corrupt: {e}"))
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = api::ErrorBody {
            error: api::ErrorDetail {
                message: self.to_string(),
            },
        };
        (status, Json(body)).into_response()
    }
}

/// Result alias.
pub type Result<T, E = AuthError> = std::result::Result<T, E>;
