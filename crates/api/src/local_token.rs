//! The local managed-identity token: the contract between `tsh`'s local Azure proxy, which hands
//! it to Azure tools as their access token and signs it (ES256) with the app session key, and
//! the app agent's Azure handler, which verifies it with the public key of the session
//! certificate. Serde types only: signing and verifying live in `pki::local_token`.

use serde::{Deserialize, Serialize};

/// The issuer of every local token.
pub const ISSUER: &str = "teleport";
/// Tenant used when the session's tenant is unknown.
pub const ZERO_TENANT: &str = "00000000-0000-0000-0000-000000000000";
/// Longest lifetime of a local token, in seconds.
pub const MAX_LIFETIME_SECS: i64 = 3600;

/// Claims of a local token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalTokenClaims {
    /// Audience: the resource the client asked for (e.g. `https://management.core.windows.net/`).
    pub aud: String,
    /// Expiry, Unix seconds: `min(now + 1h, app certificate expiry)`.
    pub exp: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds.
    pub nbf: i64,
    /// Issuer, always [`ISSUER`].
    pub iss: String,
    /// The Azure identity (resource ID) of the session.
    pub sub: String,
    /// Same as `sub`, under the claim name Entra ID uses for managed identities.
    pub xms_mirid: String,
    /// Tenant ID, or [`ZERO_TENANT`].
    pub tid: String,
}

impl LocalTokenClaims {
    /// The claims of a token for `resource` issued at `now` (Unix seconds) for the Azure
    /// `identity` of a session whose certificate expires at `cert_expiry` (Unix seconds): it
    /// lives [`MAX_LIFETIME_SECS`] at most, and never beyond the certificate.
    pub fn new(
        resource: &str,
        identity: &str,
        tenant: Option<&str>,
        cert_expiry: i64,
        now: i64,
    ) -> Self {
        Self {
            aud: resource.to_owned(),
            exp: now.saturating_add(MAX_LIFETIME_SECS).min(cert_expiry),
            iat: now,
            nbf: now,
            iss: ISSUER.to_owned(),
            sub: identity.to_owned(),
            xms_mirid: identity.to_owned(),
            tid: tenant
                .filter(|t| !t.is_empty())
                .unwrap_or(ZERO_TENANT)
                .to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetime_capped_by_the_hour_and_the_certificate() {
        let c = LocalTokenClaims::new("r", "i", Some("t"), 1_000_000, 1000);
        assert_eq!(c.exp - c.iat, MAX_LIFETIME_SECS);
        assert_eq!((c.tid.as_str(), c.iss.as_str()), ("t", ISSUER));
        assert_eq!((c.sub.as_str(), c.xms_mirid.as_str()), ("i", "i"));
        let c = LocalTokenClaims::new("r", "i", Some(""), 1600, 1000);
        assert_eq!((c.exp, c.nbf), (1600, 1000));
        assert_eq!(c.tid, ZERO_TENANT);
    }
}
