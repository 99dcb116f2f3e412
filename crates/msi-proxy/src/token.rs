//! The local managed-identity token this proxy hands out. Its claims are the contract in
//! [`api::local_token`], shared with the app agent that verifies them; the ES256 JWS (signing
//! with the app session key, verifying) is [`pki::local_token`]. This module only names them
//! for the proxy and builds the claims from its clock.

use time::OffsetDateTime;

pub use api::local_token::{LocalTokenClaims as Claims, ISSUER, ZERO_TENANT};
pub(crate) use pki::local_token::LocalTokenSigner as TokenSigner;
pub use pki::local_token::{verify_local_token, LocalTokenError as TokenError};

/// Builds the claims of a token for `resource` issued now: it expires an hour from `now`, or
/// with the app certificate if that is sooner.
pub(crate) fn claims_for(
    resource: &str,
    identity: &str,
    tenant: Option<&str>,
    cert_expiry: OffsetDateTime,
    now: OffsetDateTime,
) -> Claims {
    Claims::new(
        resource,
        identity,
        tenant,
        cert_expiry.unix_timestamp(),
        now.unix_timestamp(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signed_claims_verify() {
        let k = pki::generate_key().unwrap();
        let s = TokenSigner::from_pem(&k.private_key_pem).unwrap();
        let now = OffsetDateTime::now_utc();
        let c = claims_for(
            "https://management.core.windows.net/",
            "/subscriptions/x/id",
            None,
            now + time::Duration::minutes(10),
            now,
        );
        assert_eq!(c.exp, (now + time::Duration::minutes(10)).unix_timestamp());
        assert_eq!((c.tid.as_str(), c.iss.as_str()), (ZERO_TENANT, ISSUER));
        let jwt = s.sign(&c).unwrap();
        assert_eq!(verify_local_token(&jwt, &k.public_key_der).unwrap(), c);
        assert_eq!(verify_local_token(&jwt, s.public_point()).unwrap(), c);
        let other = pki::generate_key().unwrap();
        assert_eq!(
            verify_local_token(&jwt, &other.public_key_der),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn lifetime_capped_at_one_hour() {
        let now = OffsetDateTime::now_utc();
        let c = claims_for("r", "i", Some("t"), now + time::Duration::days(1), now);
        assert_eq!(c.exp - c.iat, 3600);
        assert_eq!(c.tid, "t");
    }
}
