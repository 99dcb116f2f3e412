//! The local managed-identity token: a compact JWS (ES256) signed with the app session key.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::PrivateKeyDer;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The issuer of every local token.
pub const ISSUER: &str = "teleport";
/// Tenant used when the session's tenant is unknown.
pub const ZERO_TENANT: &str = "00000000-0000-0000-0000-000000000000";
/// Longest lifetime of a local token.
pub const MAX_TOKEN_LIFETIME: time::Duration = time::Duration::hours(1);
/// Clock skew tolerated on `nbf`/`iat` when verifying.
const LEEWAY_SECS: i64 = 60;
/// Longest token accepted by the verifier (bytes).
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Claims of a local token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
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

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts, bad JSON, or too long.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header names another algorithm than ES256.
    #[error("unsupported token algorithm {0:?} (expected ES256)")]
    Algorithm(String),
    /// The signature does not verify with the given key.
    #[error("invalid token signature")]
    Signature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not [`ISSUER`].
    #[error("unexpected token issuer {0:?}")]
    Issuer(String),
    /// The signing key could not be loaded.
    #[error("invalid signing key: {0}")]
    Key(String),
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
}

/// Signs local tokens with the app session key.
pub(crate) struct TokenSigner {
    key: EcdsaKeyPair,
    public_key_der: Vec<u8>,
    rng: SystemRandom,
}

impl TokenSigner {
    /// Loads an ECDSA P-256 private key (PKCS#8 or SEC1 PEM).
    pub(crate) fn from_pem(pem: &str) -> Result<Self, TokenError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| TokenError::Key(e.to_string()))?;
        let key =
            EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_der())
                .map_err(|e| TokenError::Key(format!("not an ECDSA P-256 key: {e}")))?;
        let public_key_der = pki::public_key_der_from_private_pem(pem)
            .map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(Self {
            key,
            public_key_der,
            rng: SystemRandom::new(),
        })
    }

    /// The public key, DER `SubjectPublicKeyInfo`.
    pub(crate) fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }

    /// The uncompressed public point (what the verifier accepts too).
    pub(crate) fn public_point(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    pub(crate) fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let header = Header {
            alg: "ES256".into(),
            typ: Some("JWT".into()),
        };
        let header = serde_json::to_vec(&header).map_err(|e| TokenError::Key(e.to_string()))?;
        let body = serde_json::to_vec(claims).map_err(|e| TokenError::Key(e.to_string()))?;
        let mut out = URL_SAFE_NO_PAD.encode(header);
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(body));
        let sig = self
            .key
            .sign(&self.rng, out.as_bytes())
            .map_err(|_| TokenError::Key("signing failed".into()))?;
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
        Ok(out)
    }
}

/// Builds the claims of a token for `resource` issued now.
pub(crate) fn claims_for(
    resource: &str,
    identity: &str,
    tenant: Option<&str>,
    cert_expiry: OffsetDateTime,
    now: OffsetDateTime,
) -> Claims {
    let now_s = now.unix_timestamp();
    let exp = (now + MAX_TOKEN_LIFETIME)
        .unix_timestamp()
        .min(cert_expiry.unix_timestamp());
    Claims {
        aud: resource.to_owned(),
        exp,
        iat: now_s,
        nbf: now_s,
        iss: ISSUER.to_owned(),
        sub: identity.to_owned(),
        xms_mirid: identity.to_owned(),
        tid: tenant
            .filter(|t| !t.is_empty())
            .unwrap_or(ZERO_TENANT)
            .to_owned(),
    }
}

/// Verifies a local token: ES256 signature with `public_key_der` (DER `SubjectPublicKeyInfo`,
/// or an uncompressed SEC1 point), `iss`, `exp` (no leeway) and `nbf` (60 s leeway).
/// The audience is returned in the claims; checking it is the caller's business.
pub fn verify_local_token(jwt: &str, public_key_der: &[u8]) -> Result<Claims, TokenError> {
    verify_at(jwt, public_key_der, OffsetDateTime::now_utc())
}

pub(crate) fn verify_at(
    jwt: &str,
    public_key_der: &[u8],
    now: OffsetDateTime,
) -> Result<Claims, TokenError> {
    if jwt.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("too long".into()));
    }
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("expected three parts".into()));
    };
    let decode = |p: &str| {
        URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|e| TokenError::Malformed(e.to_string()))
    };
    let header: Header = serde_json::from_slice(&decode(h)?)
        .map_err(|e| TokenError::Malformed(format!("header: {e}")))?;
    if header.alg != "ES256" {
        return Err(TokenError::Algorithm(header.alg));
    }
    let sig = decode(s)?;
    let signed_len = h.len() + 1 + c.len();
    let signed = jwt
        .get(..signed_len)
        .ok_or_else(|| TokenError::Malformed("truncated".into()))?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_key_der)
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| TokenError::Signature)?;
    let claims: Claims = serde_json::from_slice(&decode(c)?)
        .map_err(|e| TokenError::Malformed(format!("claims: {e}")))?;
    if claims.iss != ISSUER {
        return Err(TokenError::Issuer(claims.iss));
    }
    let now = now.unix_timestamp();
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    if claims.nbf > now + LEEWAY_SECS {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn signer() -> (TokenSigner, Vec<u8>) {
        let k = pki::generate_key().unwrap();
        (
            TokenSigner::from_pem(&k.private_key_pem).unwrap(),
            k.public_key_der,
        )
    }

    #[test]
    fn sign_and_verify() {
        let (s, spki) = signer();
        assert_eq!(s.public_key_der(), spki.as_slice());
        let now = OffsetDateTime::now_utc();
        let c = claims_for(
            "https://management.core.windows.net/",
            "/subscriptions/x/id",
            None,
            now + time::Duration::minutes(10),
            now,
        );
        assert_eq!(c.exp, (now + time::Duration::minutes(10)).unix_timestamp());
        assert_eq!(c.tid, ZERO_TENANT);
        let jwt = s.sign(&c).unwrap();
        assert_eq!(verify_local_token(&jwt, &spki).unwrap(), c);
        assert_eq!(verify_local_token(&jwt, s.public_point()).unwrap(), c);

        // another key
        let (_, other) = signer();
        assert_eq!(verify_local_token(&jwt, &other), Err(TokenError::Signature));
        // tampered claims
        let mut parts: Vec<&str> = jwt.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                aud: "x".into(),
                ..c.clone()
            })
            .unwrap(),
        );
        parts[1] = &forged;
        assert_eq!(
            verify_local_token(&parts.join("."), &spki),
            Err(TokenError::Signature)
        );
        // expiry
        assert_eq!(
            verify_at(&jwt, &spki, now + time::Duration::hours(2)),
            Err(TokenError::Expired)
        );
        assert!(verify_local_token("a.b", &spki).is_err());
        assert!(verify_local_token("", &spki).is_err());
        assert!(verify_local_token("!!.??.**", &spki).is_err());
    }

    #[test]
    fn lifetime_capped_at_one_hour() {
        let now = OffsetDateTime::now_utc();
        let c = claims_for("r", "i", Some("t"), now + time::Duration::days(1), now);
        assert_eq!(c.exp - c.iat, 3600);
        assert_eq!(c.tid, "t");
    }

    #[test]
    fn alg_none_refused() {
        let (_, spki) = signer();
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let jwt = format!("{h}.e30.");
        assert_eq!(
            verify_local_token(&jwt, &spki),
            Err(TokenError::Algorithm("none".into()))
        );
    }
}
