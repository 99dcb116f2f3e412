//! Everything that talks to Azure: credentials on the official `azure_identity` crate, a token cache,
//! the IMDS and ARM clients, cloud endpoints and the Azure host allow-list.
//!
//! All outbound HTTP honours `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY` and `SSL_CERT_FILE`
//! ([`http::HttpConfig::from_env`]).

#![forbid(unsafe_code)]

pub mod aia;
pub mod arm;
pub mod cache;
pub mod credential;
pub mod entra;
pub mod error;
pub mod http;
pub mod imds;

/// Cloud endpoints, the Azure host allow-list and client-named addresses live in the SDK-free
/// `azure-endpoints` crate; re-exported so that `azure_mint::cloud` and `azure_mint::authority`
/// keep naming them.
pub use azure_endpoints::{authority, cloud};

pub use cache::{FetchToken, Token, TokenCache};
pub use cloud::{is_azure_endpoint, Cloud};
pub use error::{ArmError, Error};
