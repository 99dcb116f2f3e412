//! RS256 JSON Web Tokens as Entra ID issues them: signing, verification, JWKS.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::Error;

/// An RSA-2048 signing key with its key ID.
pub struct Signer {
    key: KeyPair,
    kid: String,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenProblem {
    /// Not a JWT, bad signature, unknown key.
    Invalid,
    /// Past `exp`.
    Expired,
}

impl Signer {
    /// Generates a fresh RSA-2048 key.
    pub fn generate() -> Result<Self, Error> {
        let key = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| Error::Crypto("RSA key generation failed".into()))?;
        let pkcs8 = key
            .as_der()
            .map_err(|_| Error::Crypto("RSA key encoding failed".into()))?
            .as_ref()
            .to_vec();
        let n = key
            .public_key()
            .modulus()
            .big_endian_without_leading_zero()
            .to_vec();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &n);
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..20]);
        Ok(Self { key, kid, pkcs8 })
    }

    /// The key ID put in token headers and the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key, PKCS#8 DER.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// Signs `msg` with RSASSA-PKCS1-v1_5 SHA-256.
    pub fn sign_raw(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
            .map_err(|_| Error::Crypto("RSA signing failed".into()))?;
        Ok(sig)
    }

    /// A signed JWT carrying `claims`.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String, Error> {
        let header = json!({"typ": "JWT", "alg": "RS256", "x5t": self.kid, "kid": self.kid});
        let head = URL_SAFE_NO_PAD.encode(header.to_string());
        let body = URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string());
        let signing_input = format!("{head}.{body}");
        let sig = self.sign_raw(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// Verifies a token signed by this key and not expired at `now`; returns its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Map<String, Value>, TokenProblem> {
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenProblem::Invalid);
        };
        let header: Value = decode_part(head).ok_or(TokenProblem::Invalid)?;
        if header.get("alg").and_then(Value::as_str) != Some("RS256")
            || header.get("kid").and_then(Value::as_str) != Some(self.kid.as_str())
        {
            return Err(TokenProblem::Invalid);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenProblem::Invalid)?;
        let public = UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            self.key.public_key().as_ref(),
        );
        public
            .verify(format!("{head}.{body}").as_bytes(), &sig)
            .map_err(|_| TokenProblem::Invalid)?;
        let claims: Value = decode_part(body).ok_or(TokenProblem::Invalid)?;
        let Value::Object(claims) = claims else {
            return Err(TokenProblem::Invalid);
        };
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(TokenProblem::Invalid)?;
        if exp <= now {
            return Err(TokenProblem::Expired);
        }
        Ok(claims)
    }

    /// The JWKS document holding this key.
    pub fn jwks(&self, issuer: &str) -> Value {
        let public = self.key.public_key();
        json!({"keys": [{
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
            "issuer": issuer,
        }]})
    }
}

/// Decodes one base64url JSON part of a JWT without checking anything.
pub fn decode_part(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The claims of a JWT, unverified.
pub fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    let body = token.split('.').nth(1)?;
    match decode_part(body)? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let s = Signer::generate().unwrap();
        let mut claims = Map::new();
        claims.insert("exp".into(), json!(2000));
        claims.insert("oid".into(), json!("x"));
        let t = s.sign(&claims).unwrap();
        assert_eq!(s.verify(&t, 1000).unwrap()["oid"], "x");
        assert_eq!(s.verify(&t, 3000), Err(TokenProblem::Expired));
        let mut tampered = t.clone();
        tampered.push('A');
        assert_eq!(s.verify(&tampered, 1000), Err(TokenProblem::Invalid));
        assert_eq!(s.verify("a.b", 1000), Err(TokenProblem::Invalid));
        assert_eq!(s.verify("..", 1000), Err(TokenProblem::Invalid));
        assert_eq!(unverified_claims(&t).unwrap()["oid"], "x");
    }
}
