//! RS256 JSON Web Tokens as Entra ID issues them: signing and verification on `jsonwebtoken`,
//! and the JWKS document.
//!
//! `exp` is checked here rather than by `jsonwebtoken`'s `Validation`, which reads the system
//! clock and so cannot check a token at the `now` a caller (or a test) gives.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Map, Value};

use crate::Error;

/// An RSA-2048 signing key with its key ID.
pub struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    n: Vec<u8>,
    e: Vec<u8>,
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
        // aws-lc-rs named as jsonwebtoken's backend, so that it can never panic for want of one.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let key = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| Error::Crypto("RSA key generation failed".into()))?;
        let pkcs8 = key
            .as_der()
            .map_err(|_| Error::Crypto("RSA key encoding failed".into()))?;
        // jsonwebtoken signs with a PKCS#1 `RSAPrivateKey`: the OCTET STRING of the PKCS#8
        // `PrivateKeyInfo` (version, algorithm, privateKey).
        let pkcs1 = crate::der::read(pkcs8.as_ref())
            .and_then(|(_, info, _)| crate::der::read_all(info))
            .and_then(|parts| match parts.get(2) {
                Some((0x04, inner)) => Some(inner.to_vec()),
                _ => None,
            })
            .ok_or_else(|| Error::Crypto("RSA key encoding failed".into()))?;
        let public = key.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &n);
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..20]);
        Ok(Self {
            encoding: EncodingKey::from_rsa_der(&pkcs1),
            decoding: DecodingKey::from_rsa_raw_components(&n, &e),
            kid,
            n,
            e,
        })
    }

    /// The key ID put in token headers and the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A signed JWT (RS256, `kid` and `x5t` naming this key) carrying `claims`.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String, Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.x5t = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| Error::Crypto(format!("RSA signing failed: {e}")))
    }

    /// Verifies a token signed by this key (RS256 only) and not expired at `now`; returns its
    /// claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Map<String, Value>, TokenProblem> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        // Every audience is served here (ARM checks none).
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &validation)
            .map_err(|_| TokenProblem::Invalid)?;
        if data.header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(TokenProblem::Invalid);
        }
        let exp = data
            .claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(TokenProblem::Invalid)?;
        if exp <= now {
            return Err(TokenProblem::Expired);
        }
        Ok(data.claims)
    }

    /// The JWKS document holding this key.
    pub fn jwks(&self, issuer: &str) -> Value {
        json!({"keys": [{
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.n),
            "e": URL_SAFE_NO_PAD.encode(&self.e),
            "issuer": issuer,
        }]})
    }
}

/// The claims of a JWT, unverified.
pub fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    jsonwebtoken::dangerous::insecure_decode_claims(token).ok()
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
        let header = jsonwebtoken::decode_header(&t).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), Some(s.kid()));
        assert_eq!(header.x5t.as_deref(), Some(s.kid()));
        assert_eq!(s.verify(&t, 1000).unwrap()["oid"], "x");
        assert_eq!(s.verify(&t, 3000), Err(TokenProblem::Expired));
        let mut tampered = t.clone();
        tampered.push('A');
        assert_eq!(s.verify(&tampered, 1000), Err(TokenProblem::Invalid));
        assert_eq!(s.verify("a.b", 1000), Err(TokenProblem::Invalid));
        assert_eq!(s.verify("..", 1000), Err(TokenProblem::Invalid));
        assert_eq!(unverified_claims(&t).unwrap()["oid"], "x");
        // Another key of the emulator's (another run) does not verify it.
        let other = Signer::generate().unwrap();
        assert_eq!(other.verify(&t, 1000), Err(TokenProblem::Invalid));
        // The JWKS key verifies it, as a relying party would.
        let jwks = s.jwks("iss");
        let key = &jwks["keys"][0];
        let decoding = DecodingKey::from_rsa_components(
            key["n"].as_str().unwrap(),
            key["e"].as_str().unwrap(),
        )
        .unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.validate_aud = false;
        jsonwebtoken::decode::<Map<String, Value>>(&t, &decoding, &v).unwrap();
    }

    #[test]
    fn other_algorithms_refused() {
        let s = Signer::generate().unwrap();
        let body = URL_SAFE_NO_PAD.encode(r#"{"exp":2000}"#);
        for header in [
            format!(r#"{{"alg":"none","kid":"{}"}}"#, s.kid()),
            format!(r#"{{"alg":"HS256","kid":"{}"}}"#, s.kid()),
        ] {
            let head = URL_SAFE_NO_PAD.encode(header);
            let input = format!("{head}.{body}");
            // HS256 keyed with the public modulus: the classic confusion.
            let mac = aws_lc_rs::hmac::sign(
                &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &s.n),
                input.as_bytes(),
            );
            let t = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
            assert_eq!(s.verify(&t, 1000), Err(TokenProblem::Invalid));
            assert_eq!(
                s.verify(&format!("{input}."), 1000),
                Err(TokenProblem::Invalid)
            );
        }
    }
}
