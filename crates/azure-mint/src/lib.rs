//! Everything that talks to Azure: credentials on the official `azure_identity` crate, a token cache,
//! the IMDS and ARM clients, cloud endpoints and the Azure host allow-list.
//!
//! All outbound HTTP honours `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY` and `SSL_CERT_FILE`
//! ([`http::HttpConfig::from_env`]).

#![forbid(unsafe_code)]

pub mod aia;
pub mod arm;
pub mod authority;
pub mod cache;
pub mod cloud;
pub mod credential;
pub mod entra;
pub mod error;
pub mod http;
pub mod imds;

pub use cache::{FetchToken, Token, TokenCache};
pub use cloud::{is_azure_endpoint, Cloud};
pub use error::{ArmError, Error};
