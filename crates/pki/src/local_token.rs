//! Signing and verifying the local managed-identity token ([`api::local_token`]): a compact JWS,
//! ES256, signed by `tsh`'s local Azure proxy with the app session key and verified by the app
//! agent with the public key of the session certificate. JWS on `jsonwebtoken`.
//!
//! The times are checked here rather than by `jsonwebtoken`'s `Validation`, which reads the
//! system clock (no clock can be given, so tests and replays at a fixed time are impossible) and
//! has one leeway for both `exp` and `nbf`, where the contract has none on `exp` and a minute on
//! `nbf`.

use api::local_token::{LocalTokenClaims, ISSUER};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::PrivateKeyDer;

/// Clock skew tolerated on `nbf` when verifying.
pub const LEEWAY_SECS: i64 = 60;
/// Longest token accepted by the verifier (bytes).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a local token was refused, or could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LocalTokenError {
    /// Not three base64url parts, bad JSON, claims missing, or too long.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header names another algorithm than ES256.
    #[error("unsupported token algorithm {0} (expected ES256)")]
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
    /// The signing key could not be loaded, or signing failed.
    #[error("invalid signing key: {0}")]
    Key(String),
}

/// Selects aws-lc-rs as jsonwebtoken's crypto backend for the process. jsonwebtoken picks it from
/// its cargo features on its own, but panics when it cannot (both backends enabled by some
/// other crate of the build); naming it keeps that from ever happening. Idempotent.
pub fn use_aws_lc_for_jwt() {
    // Err means a provider is already installed: the same one, or one chosen on purpose.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

/// Signs local tokens with an app session key (ECDSA P-256).
pub struct LocalTokenSigner {
    key: EncodingKey,
    public_key_der: Vec<u8>,
    public_point: Vec<u8>,
}

impl std::fmt::Debug for LocalTokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTokenSigner")
            .field("public_key_der", &hex::encode(&self.public_key_der))
            .finish_non_exhaustive()
    }
}

impl LocalTokenSigner {
    /// Loads an ECDSA P-256 private key (PKCS#8 or SEC1 PEM).
    pub fn from_pem(pem: &str) -> Result<Self, LocalTokenError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| LocalTokenError::Key(e.to_string()))?;
        let pair =
            EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_der())
                .map_err(|e| LocalTokenError::Key(format!("not an ECDSA P-256 key: {e}")))?;
        // jsonwebtoken takes PKCS#8 only; a SEC1 key is rewrapped.
        let pkcs8 = pair
            .to_pkcs8v1()
            .map_err(|_| LocalTokenError::Key("cannot encode the key as PKCS#8".into()))?;
        let public_key_der = pair
            .public_key()
            .as_der()
            .map_err(|_| LocalTokenError::Key("cannot encode the public key".into()))?
            .as_ref()
            .to_vec();
        Ok(Self {
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            public_key_der,
            public_point: pair.public_key().as_ref().to_vec(),
        })
    }

    /// The public key, DER `SubjectPublicKeyInfo`.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }

    /// The uncompressed public point (what [`verify_local_token`] accepts too).
    pub fn public_point(&self) -> &[u8] {
        &self.public_point
    }

    /// The signed token (`{"typ":"JWT","alg":"ES256"}`) carrying `claims`.
    pub fn sign(&self, claims: &LocalTokenClaims) -> Result<String, LocalTokenError> {
        use_aws_lc_for_jwt();
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &self.key)
            .map_err(|e| LocalTokenError::Key(format!("signing failed: {e}")))
    }
}

/// Verifies a local token now: see [`verify_local_token_at`].
pub fn verify_local_token(
    jwt: &str,
    public_key: &[u8],
) -> Result<LocalTokenClaims, LocalTokenError> {
    verify_local_token_at(
        jwt,
        public_key,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    )
}

/// Verifies a local token at `now` (Unix seconds): ES256 only, signature with `public_key` (DER
/// `SubjectPublicKeyInfo`, or an uncompressed SEC1 point), `iss` [`ISSUER`], `exp` (no leeway)
/// and `nbf` ([`LEEWAY_SECS`]). The audience is returned in the claims; checking it is the
/// caller's business.
pub fn verify_local_token_at(
    jwt: &str,
    public_key: &[u8],
    now: i64,
) -> Result<LocalTokenClaims, LocalTokenError> {
    if jwt.len() > MAX_TOKEN_LEN {
        return Err(LocalTokenError::Malformed("too long".into()));
    }
    use_aws_lc_for_jwt();
    // The header alone first, to name a refused algorithm (one jsonwebtoken does not know,
    // such as `none`, fails to parse).
    let header = jsonwebtoken::decode_header(jwt).map_err(|e| match e.kind() {
        ErrorKind::Json(j) if j.classify() == serde_json::error::Category::Data => {
            LocalTokenError::Algorithm(format!("({j})"))
        }
        _ => LocalTokenError::Malformed(format!("header: {e}")),
    })?;
    if header.alg != Algorithm::ES256 {
        return Err(LocalTokenError::Algorithm(format!("{:?}", header.alg)));
    }
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_required_spec_claims(&["exp", "nbf", "iss"]);
    validation.set_issuer(&[ISSUER]);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<LocalTokenClaims>(
        jwt,
        &DecodingKey::from_ec_der(public_key),
        &validation,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => LocalTokenError::Signature,
        ErrorKind::InvalidAlgorithm => LocalTokenError::Algorithm(format!("{:?}", header.alg)),
        ErrorKind::InvalidIssuer => LocalTokenError::Issuer(
            // The signature verified: the claims are ours to quote.
            jsonwebtoken::dangerous::insecure_decode_claims::<LocalTokenClaims>(jwt)
                .map(|c| c.iss)
                .unwrap_or_default(),
        ),
        _ => LocalTokenError::Malformed(e.to_string()),
    })?
    .claims;
    if claims.exp <= now {
        return Err(LocalTokenError::Expired);
    }
    if claims.nbf > now.saturating_add(LEEWAY_SECS) {
        return Err(LocalTokenError::NotYetValid);
    }
    Ok(claims)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use api::local_token::ZERO_TENANT;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    const NOW: i64 = 1_780_000_000;

    fn signer() -> (LocalTokenSigner, Vec<u8>) {
        let k = crate::generate_key().unwrap();
        (
            LocalTokenSigner::from_pem(&k.private_key_pem).unwrap(),
            k.public_key_der,
        )
    }

    fn claims() -> LocalTokenClaims {
        LocalTokenClaims::new(
            "https://management.core.windows.net/",
            "/subscriptions/x/id",
            None,
            NOW + 600,
            NOW,
        )
    }

    /// A token with the given header and claims JSON, signed by `sign` over the signing input.
    fn forge(header: &str, claims: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let sig = sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    #[test]
    fn sign_then_verify() {
        let (s, spki) = signer();
        assert_eq!(s.public_key_der(), spki.as_slice());
        let c = claims();
        assert_eq!(c.exp, NOW + 600);
        assert_eq!(c.tid, ZERO_TENANT);
        let jwt = s.sign(&c).unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(
            (header.alg, header.typ.as_deref()),
            (Algorithm::ES256, Some("JWT"))
        );
        assert_eq!(verify_local_token_at(&jwt, &spki, NOW).unwrap(), c);
        assert_eq!(
            verify_local_token_at(&jwt, s.public_point(), NOW).unwrap(),
            c
        );
        // The live clock: a token made now verifies now.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let live = s
            .sign(&LocalTokenClaims::new("r", "i", None, now + 60, now))
            .unwrap();
        assert_eq!(verify_local_token(&live, &spki).unwrap().aud, "r");
        assert!(format!("{s:?}").contains(&hex::encode(&spki)));
    }

    #[test]
    fn sec1_keys_sign_too() {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let sec1 =
            aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::EcPrivateKeyRfc5915Der>::as_der(
                &pair.private_key(),
            )
            .unwrap();
        let pem = format!(
            "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(sec1.as_ref())
        );
        let s = LocalTokenSigner::from_pem(&pem).unwrap();
        assert_eq!(s.public_point(), pair.public_key().as_ref());
        let jwt = s.sign(&claims()).unwrap();
        assert_eq!(
            verify_local_token_at(&jwt, s.public_key_der(), NOW).unwrap(),
            claims()
        );
    }

    #[test]
    fn bad_keys_refused() {
        assert!(matches!(
            LocalTokenSigner::from_pem("nope"),
            Err(LocalTokenError::Key(_))
        ));
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der =
            aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der.as_ref())
        );
        assert!(matches!(
            LocalTokenSigner::from_pem(&pem),
            Err(LocalTokenError::Key(_))
        ));
    }

    #[test]
    fn wrong_key_and_tampering_refused() {
        let (s, spki) = signer();
        let c = claims();
        let jwt = s.sign(&c).unwrap();
        let (_, other) = signer();
        assert_eq!(
            verify_local_token_at(&jwt, &other, NOW),
            Err(LocalTokenError::Signature)
        );
        assert_eq!(
            verify_local_token_at(&jwt, b"not a key", NOW),
            Err(LocalTokenError::Signature)
        );
        // Claims swapped under the same signature.
        let mut parts: Vec<&str> = jwt.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&LocalTokenClaims {
                aud: "x".into(),
                ..c.clone()
            })
            .unwrap(),
        );
        parts[1] = &forged;
        assert_eq!(
            verify_local_token_at(&parts.join("."), &spki, NOW),
            Err(LocalTokenError::Signature)
        );
        // The signature cut short, or bit-flipped.
        let (head, sig) = jwt.rsplit_once('.').unwrap();
        assert!(verify_local_token_at(&format!("{head}.{}", &sig[..10]), &spki, NOW).is_err());
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw[5] ^= 1;
        let flipped = format!("{head}.{}", URL_SAFE_NO_PAD.encode(raw));
        assert_eq!(
            verify_local_token_at(&flipped, &spki, NOW),
            Err(LocalTokenError::Signature)
        );
    }

    #[test]
    fn algorithm_confusion_refused() {
        let (s, spki) = signer();
        let body = serde_json::to_string(&claims()).unwrap();
        // alg none, with an empty or a real signature.
        for sig in [vec![], b"x".to_vec()] {
            let jwt = forge(r#"{"alg":"none","typ":"JWT"}"#, &body, |_| sig.clone());
            let e = verify_local_token_at(&jwt, &spki, NOW);
            assert!(matches!(e, Err(LocalTokenError::Algorithm(_))), "{e:?}");
        }
        // HS256 keyed with the public key (the classic confusion), both key forms.
        for key in [spki.as_slice(), s.public_point()] {
            let jwt = forge(r#"{"alg":"HS256","typ":"JWT"}"#, &body, |input| {
                aws_lc_rs::hmac::sign(
                    &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
                    input,
                )
                .as_ref()
                .to_vec()
            });
            assert_eq!(
                verify_local_token_at(&jwt, key, NOW),
                Err(LocalTokenError::Algorithm("HS256".into()))
            );
        }
        // Another ECDSA algorithm, and a header without alg.
        let jwt = forge(r#"{"alg":"ES384"}"#, &body, |_| vec![0; 96]);
        assert_eq!(
            verify_local_token_at(&jwt, &spki, NOW),
            Err(LocalTokenError::Algorithm("ES384".into()))
        );
        let jwt = forge(r#"{"typ":"JWT"}"#, &body, |_| vec![0; 64]);
        assert!(verify_local_token_at(&jwt, &spki, NOW).is_err());
        // A critical header extension nobody understands, validly signed.
        let pair = {
            let k = crate::generate_key().unwrap();
            let der = PrivateKeyDer::from_pem_slice(k.private_key_pem.as_bytes()).unwrap();
            (
                EcdsaKeyPair::from_private_key_der(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    der.secret_der(),
                )
                .unwrap(),
                k.public_key_der,
            )
        };
        let jwt = forge(
            r#"{"alg":"ES256","crit":["exp"],"exp":1}"#,
            &body,
            |input| {
                pair.0
                    .sign(&aws_lc_rs::rand::SystemRandom::new(), input)
                    .unwrap()
                    .as_ref()
                    .to_vec()
            },
        );
        assert!(matches!(
            verify_local_token_at(&jwt, &pair.1, NOW),
            Err(LocalTokenError::Malformed(_))
        ));
        // The same signer without crit verifies (the forge is right).
        let jwt = forge(r#"{"alg":"ES256"}"#, &body, |input| {
            pair.0
                .sign(&aws_lc_rs::rand::SystemRandom::new(), input)
                .unwrap()
                .as_ref()
                .to_vec()
        });
        assert_eq!(verify_local_token_at(&jwt, &pair.1, NOW).unwrap(), claims());
    }

    #[test]
    fn times_and_issuer_checked() {
        let (s, spki) = signer();
        let c = claims();
        let jwt = s.sign(&c).unwrap();
        // exp: no leeway.
        assert!(verify_local_token_at(&jwt, &spki, c.exp - 1).is_ok());
        assert_eq!(
            verify_local_token_at(&jwt, &spki, c.exp),
            Err(LocalTokenError::Expired)
        );
        assert_eq!(
            verify_local_token_at(&jwt, &spki, NOW + 7200),
            Err(LocalTokenError::Expired)
        );
        // nbf: a minute of leeway.
        assert!(verify_local_token_at(&jwt, &spki, c.nbf - LEEWAY_SECS).is_ok());
        assert_eq!(
            verify_local_token_at(&jwt, &spki, c.nbf - LEEWAY_SECS - 1),
            Err(LocalTokenError::NotYetValid)
        );
        // Another issuer, validly signed.
        let other = s
            .sign(&LocalTokenClaims {
                iss: "https://sts.windows.net/t/".into(),
                ..c.clone()
            })
            .unwrap();
        assert_eq!(
            verify_local_token_at(&other, &spki, NOW),
            Err(LocalTokenError::Issuer("https://sts.windows.net/t/".into()))
        );
        // Claims of the wrong shape, validly signed: no exp, or a string audience list.
        let pem = crate::generate_key().unwrap();
        let pair = EcdsaKeyPair::from_private_key_der(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            PrivateKeyDer::from_pem_slice(pem.private_key_pem.as_bytes())
                .unwrap()
                .secret_der(),
        )
        .unwrap();
        let sign = |input: &[u8]| {
            pair.sign(&aws_lc_rs::rand::SystemRandom::new(), input)
                .unwrap()
                .as_ref()
                .to_vec()
        };
        let mut v = serde_json::to_value(&c).unwrap();
        v.as_object_mut().unwrap().remove("exp");
        let jwt = forge(r#"{"alg":"ES256"}"#, &v.to_string(), sign);
        assert!(matches!(
            verify_local_token_at(&jwt, &pem.public_key_der, NOW),
            Err(LocalTokenError::Malformed(_))
        ));
        let mut v = serde_json::to_value(&c).unwrap();
        v["aud"] = serde_json::json!(["a", "b"]);
        let jwt = forge(r#"{"alg":"ES256"}"#, &v.to_string(), sign);
        assert!(matches!(
            verify_local_token_at(&jwt, &pem.public_key_der, NOW),
            Err(LocalTokenError::Malformed(_))
        ));
    }

    #[test]
    fn garbage_refused() {
        let (_, spki) = signer();
        for t in ["", "a.b", "a.b.c.d", "!!.??.**", "..", "e30.e30."] {
            let e = verify_local_token_at(t, &spki, NOW);
            assert!(
                matches!(
                    e,
                    Err(LocalTokenError::Malformed(_) | LocalTokenError::Algorithm(_))
                ),
                "{t:?}: {e:?}"
            );
        }
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            verify_local_token_at(&long, &spki, NOW),
            Err(LocalTokenError::Malformed("too long".into()))
        );
    }
}
