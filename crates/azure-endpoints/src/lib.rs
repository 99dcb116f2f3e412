//! What an Azure endpoint is, without talking to one: the Azure clouds and their endpoints
//! ([`cloud`]), the Azure host allow-list ([`cloud::is_azure_endpoint`]) and the parsing of
//! client-named addresses before anything is dialled ([`authority`]).
//!
//! Pure: no I/O and no Azure SDK, so that the client side (`tsh`, `tctl` through `msi-proxy`) can
//! check Azure hosts without linking `azure_core`. `azure-mint`, which does talk to Azure,
//! re-exports both modules.

#![forbid(unsafe_code)]

pub mod authority;
pub mod cloud;

pub use cloud::{is_azure_endpoint, Cloud};
