//! Verifying Entra ID access tokens: OIDC discovery and JWKS per tenant, cached and refreshed when
//! a token names an unknown `kid`; RS256 tokens verified with `jsonwebtoken`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::http::HttpConfig;
use crate::imds::get_capped;
use crate::Error;

/// Where tenants' OIDC documents live.
pub const LOGIN_BASE: &str = "https://login.microsoftonline.com";
/// The audience of ARM tokens.
pub const ARM_AUDIENCE: &str = "https://management.azure.com/";
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 60;
/// Keys are refetched at most this often when a token names an unknown `kid`.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);
/// Keys older than this are refetched.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(24 * 3600);
const MAX_BODY: usize = 1 << 20;
/// Tenants whose keys are kept (the cache is emptied beyond).
pub const MAX_TENANTS: usize = 1024;

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or claims missing.
    #[error("the access token is malformed: {0}")]
    Malformed(String),
    /// Signature, algorithm or key problems.
    #[error("the access token signature does not verify: {0}")]
    Signature(String),
    /// Wrong issuer.
    #[error("the access token was issued by {got:?}, expected {want:?}")]
    Issuer {
        /// `iss` of the token.
        got: String,
        /// The tenant's v1 issuer.
        want: String,
    },
    /// Wrong audience.
    #[error("the access token is for {0:?}, not https://management.azure.com/: request it from IMDS with resource=https://management.azure.com/")]
    Audience(String),
    /// Expired or not yet valid.
    #[error("the access token is {0}")]
    Time(String),
    /// The keys could not be fetched.
    #[error("cannot fetch the signing keys of tenant {tenant}: {source}")]
    Keys {
        /// Tenant.
        tenant: String,
        /// The fetch error.
        #[source]
        source: Error,
    },
}

#[derive(Clone)]
struct RsaKey {
    n: Vec<u8>,
    e: Vec<u8>,
}

struct TenantKeys {
    keys: HashMap<String, RsaKey>,
    fetched: Instant,
}

/// Per-tenant signing keys, fetched through OIDC discovery and cached.
pub struct JwksCache {
    http: reqwest::Client,
    base: String,
    tenants: Mutex<HashMap<String, TenantKeys>>,
    fetch_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Claims of a verified access token.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// Tenant (`tid`).
    pub tenant: String,
    /// All claims.
    pub claims: Map<String, Value>,
}

impl VerifiedToken {
    /// A string claim.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// An ARM access token taken apart, its issuer checked, before the signing key is looked up:
/// the part of [`JwksCache::verify_arm_token`] that needs no network (and what the fuzz target
/// drives).
#[derive(Debug, Clone)]
pub struct ArmToken<'a> {
    /// `kid` of the header: which of the tenant's keys signed it.
    pub kid: String,
    /// `tid` of the claims, checked with [`tenant_id_ok`].
    pub tenant: String,
    /// The claims as sent, not yet verified: only quoted in errors.
    unverified: Map<String, Value>,
    token: &'a str,
}

impl<'a> ArmToken<'a> {
    /// Reads a JWT without verifying it: `alg` RS256, a `kid`, a valid `tid`, `iss` the
    /// tenant's v1 issuer.
    pub fn parse(token: &'a str) -> Result<Self, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            // An algorithm jsonwebtoken does not know (`none`), or a header field of the wrong
            // type.
            ErrorKind::Json(j) if j.classify() == serde_json::error::Category::Data => {
                TokenError::Signature(format!("only RS256 is accepted ({j})"))
            }
            _ => TokenError::Malformed(format!("not a JWT: {e}")),
        })?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::Signature("only RS256 is accepted".into()));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Malformed("no kid in the header".into()))?;
        let unverified: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| TokenError::Malformed("the claims are not a JSON object".into()))?;
        let tenant = unverified
            .get("tid")
            .and_then(Value::as_str)
            .filter(|t| tenant_id_ok(t))
            .ok_or_else(|| TokenError::Malformed("no valid tid claim".into()))?
            .to_string();
        let want_iss = format!("https://sts.windows.net/{tenant}/");
        let iss = unverified
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if iss != want_iss {
            return Err(TokenError::Issuer {
                got: iss.to_string(),
                want: want_iss,
            });
        }
        Ok(Self {
            kid,
            tenant,
            unverified,
            token,
        })
    }

    /// Verifies the token with the RSA key `n`/`e` (big-endian bytes): RS256 signature, the
    /// audience, and `exp`/`nbf` with one minute of leeway at `now` (seconds since the epoch).
    pub fn verify(self, n: &[u8], e: &[u8], now: i64) -> Result<VerifiedToken, TokenError> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[ARM_AUDIENCE, ARM_AUDIENCE.trim_end_matches('/')]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        // Times are checked below, at `now`: jsonwebtoken reads the system clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let key = DecodingKey::from_rsa_raw_components(n, e);
        // aws-lc-rs named as jsonwebtoken's backend, so that it can never panic for want of one.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let claims = match jsonwebtoken::decode::<Map<String, Value>>(self.token, &key, &validation)
        {
            Ok(data) => data.claims,
            Err(err) => {
                let audience = || {
                    TokenError::Audience(
                        self.unverified
                            .get("aud")
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                    )
                };
                return Err(match err.kind() {
                    ErrorKind::InvalidAudience => audience(),
                    ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c)
                        if c == "aud" =>
                    {
                        audience()
                    }
                    ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
                        TokenError::Malformed(format!("no valid {c} claim"))
                    }
                    ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) => {
                        TokenError::Malformed(err.to_string())
                    }
                    _ => TokenError::Signature("RS256 verification failed".into()),
                });
            }
        };
        let exp = num_claim(&claims, "exp")
            .ok_or_else(|| TokenError::Malformed("no exp claim".into()))?;
        if now > exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Time(
                "expired: get a fresh one from IMDS".into(),
            ));
        }
        if let Some(nbf) = num_claim(&claims, "nbf") {
            if now.saturating_add(LEEWAY_SECS) < nbf {
                return Err(TokenError::Time(
                    "not valid yet: check the clock of the auth service".into(),
                ));
            }
        }
        Ok(VerifiedToken {
            tenant: self.tenant,
            claims,
        })
    }
}

/// `true` for a tenant ID that is safe in a URL path (a GUID or a domain-like name).
pub fn tenant_id_ok(tid: &str) -> bool {
    !tid.is_empty()
        && tid.len() <= 64
        && tid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !tid.starts_with('.')
}

fn num_claim(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    match claims.get(name) {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        _ => None,
    }
}

impl JwksCache {
    /// A cache fetching from `login.microsoftonline.com` with `config`'s proxy and CAs.
    pub fn new(config: &HttpConfig) -> Result<Self, Error> {
        let mut config = config.clone();
        config.timeout.get_or_insert(Duration::from_secs(10));
        Ok(Self {
            http: config.client()?,
            base: LOGIN_BASE.to_string(),
            tenants: Mutex::new(HashMap::new()),
            fetch_lock: tokio::sync::Mutex::new(()),
        })
    }

    async fn get_json(&self, url: &str) -> Result<Value, Error> {
        let body = get_capped(&self.http, url, MAX_BODY, "Entra ID").await?;
        serde_json::from_slice(&body).map_err(|e| Error::Malformed {
            service: "Entra ID",
            message: format!("{url}: not JSON: {e}"),
        })
    }

    async fn fetch_keys(&self, tenant: &str) -> Result<HashMap<String, RsaKey>, Error> {
        let discovery = self
            .get_json(&format!(
                "{}/{tenant}/.well-known/openid-configuration",
                self.base
            ))
            .await?;
        let jwks_uri = discovery
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Malformed {
                service: "Entra ID",
                message: "the OIDC configuration has no jwks_uri".into(),
            })?;
        let host_ok = url::Url::parse(jwks_uri)
            .ok()
            .filter(|u| u.scheme() == "https")
            .and_then(|u| u.host_str().map(crate::cloud::is_azure_endpoint))
            .unwrap_or(false);
        if !host_ok {
            return Err(Error::Malformed {
                service: "Entra ID",
                message: format!("jwks_uri {jwks_uri:?} is not an Azure endpoint"),
            });
        }
        let jwks = self.get_json(jwks_uri).await?;
        let mut keys = HashMap::new();
        for k in jwks
            .get("keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let s = |name: &str| k.get(name).and_then(Value::as_str);
            if s("kty") != Some("RSA") {
                continue;
            }
            let (Some(kid), Some(n), Some(e)) = (s("kid"), s("n"), s("e")) else {
                continue;
            };
            let (Ok(n), Ok(e)) = (URL_SAFE_NO_PAD.decode(n), URL_SAFE_NO_PAD.decode(e)) else {
                continue;
            };
            keys.insert(kid.to_string(), RsaKey { n, e });
        }
        Ok(keys)
    }

    fn cached(&self, tenant: &str, kid: &str) -> (Option<RsaKey>, bool) {
        let Ok(map) = self.tenants.lock() else {
            return (None, true);
        };
        match map.get(tenant) {
            Some(t) => {
                let age = t.fetched.elapsed();
                if age >= MAX_KEY_AGE {
                    (None, true)
                } else {
                    (t.keys.get(kid).cloned(), age >= MIN_REFRESH)
                }
            }
            None => (None, true),
        }
    }

    async fn key(&self, tenant: &str, kid: &str) -> Result<RsaKey, TokenError> {
        if let (Some(k), _) = self.cached(tenant, kid) {
            return Ok(k);
        }
        let _guard = self.fetch_lock.lock().await;
        // Another task may have refreshed while we waited.
        let (hit, may_refresh) = self.cached(tenant, kid);
        if let Some(k) = hit {
            return Ok(k);
        }
        if !may_refresh {
            return Err(TokenError::Signature(format!(
                "no signing key {kid:?} for tenant {tenant}"
            )));
        }
        let keys = self
            .fetch_keys(tenant)
            .await
            .map_err(|source| TokenError::Keys {
                tenant: tenant.to_string(),
                source,
            })?;
        let found = keys.get(kid).cloned();
        if let Ok(mut map) = self.tenants.lock() {
            if map.len() >= MAX_TENANTS && !map.contains_key(tenant) {
                map.clear();
            }
            map.insert(
                tenant.to_string(),
                TenantKeys {
                    keys,
                    fetched: Instant::now(),
                },
            );
        }
        found.ok_or_else(|| {
            TokenError::Signature(format!("no signing key {kid:?} for tenant {tenant}"))
        })
    }

    /// Verifies an ARM access token (`aud` `https://management.azure.com/`, with or without the
    /// trailing slash) issued by its tenant's v1 issuer `https://sts.windows.net/<tid>/`, RS256,
    /// `exp`/`nbf` with one minute of leeway, at `now` (seconds since the epoch).
    pub async fn verify_arm_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<VerifiedToken, TokenError> {
        let parsed = ArmToken::parse(token)?;
        let key = self.key(&parsed.tenant, &parsed.kid).await?;
        parsed.verify(&key.n, &key.e, now)
    }

    /// How many tenants have cached keys.
    pub fn cached_tenants(&self) -> usize {
        self.tenants.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::imds::{ImdsClient, ManagedIdentityId};

    const CLIENT: &str = "6a2f5c0e-1b3d-4e8f-9a7b-0c1d2e3f4a01";

    /// A token signed with `key` (RS256) from header and claims JSON.
    fn signed_token(
        key: &aws_lc_rs::signature::RsaKeyPair,
        header: &serde_json::Value,
        claims: &serde_json::Value,
    ) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; key.public_modulus_len()];
        key.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            signed.as_bytes(),
            &mut sig,
        )
        .unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&sig))
    }

    #[test]
    fn arm_token_checks_without_network() {
        use aws_lc_rs::signature::KeyPair as _;
        let key =
            aws_lc_rs::signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let n = key
            .public_key()
            .modulus()
            .big_endian_without_leading_zero()
            .to_vec();
        let e = key
            .public_key()
            .exponent()
            .big_endian_without_leading_zero()
            .to_vec();
        let tid = "11111111-2222-3333-4444-555555555555";
        let header = serde_json::json!({"alg": "RS256", "kid": "k1"});
        let claims = serde_json::json!({
            "aud": "https://management.azure.com", "tid": tid,
            "iss": format!("https://sts.windows.net/{tid}/"), "exp": 2000, "nbf": 1000,
        });
        let token = signed_token(&key, &header, &claims);
        let t = ArmToken::parse(&token).unwrap();
        assert_eq!((t.kid.as_str(), t.tenant.as_str()), ("k1", tid));
        assert_eq!(t.clone().verify(&n, &e, 1500).unwrap().tenant, tid);
        // Time, with a minute of leeway each way.
        assert!(t.clone().verify(&n, &e, 2060).is_ok());
        assert!(matches!(
            t.clone().verify(&n, &e, 2061),
            Err(TokenError::Time(_))
        ));
        assert!(matches!(t.verify(&n, &e, 939), Err(TokenError::Time(_))));
        // Another key, another audience, another issuer, no kid.
        let other =
            aws_lc_rs::signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let forged = signed_token(&other, &header, &claims);
        let e2 = ArmToken::parse(&forged).unwrap().verify(&n, &e, 1500);
        assert!(matches!(e2, Err(TokenError::Signature(_))), "{e2:?}");
        let mut c = claims.clone();
        c["aud"] = serde_json::json!(["https://vault.azure.net"]);
        let r = ArmToken::parse(&signed_token(&key, &header, &c))
            .unwrap()
            .verify(&n, &e, 1500);
        assert!(matches!(r, Err(TokenError::Audience(_))), "{r:?}");
        let mut c = claims.clone();
        c["iss"] = serde_json::json!("https://sts.windows.net/other/");
        let wrong_issuer = signed_token(&key, &header, &c);
        let r = ArmToken::parse(&wrong_issuer);
        assert!(matches!(r, Err(TokenError::Issuer { .. })), "{r:?}");
        let no_kid = signed_token(&key, &serde_json::json!({"alg": "RS256"}), &claims);
        let r = ArmToken::parse(&no_kid);
        assert!(matches!(r, Err(TokenError::Malformed(_))), "{r:?}");
    }

    #[test]
    fn arm_token_refusals() {
        use aws_lc_rs::signature::KeyPair as _;
        let key =
            aws_lc_rs::signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let public = key.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        let tid = "11111111-2222-3333-4444-555555555555";
        let header = serde_json::json!({"alg": "RS256", "kid": "k1"});
        let claims = serde_json::json!({
            "aud": "https://management.azure.com/", "tid": tid,
            "iss": format!("https://sts.windows.net/{tid}/"), "exp": 2000,
        });
        let verify = |h: &serde_json::Value, c: &serde_json::Value| {
            ArmToken::parse(&signed_token(&key, h, c)).and_then(|t| t.verify(&n, &e, 1500))
        };
        assert!(verify(&header, &claims).is_ok());
        // HS256 keyed with the public key (either form), signed as such.
        for secret in [public.as_ref().to_vec(), n.clone()] {
            let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"k1"}"#);
            let input = format!("{h}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
            let mac = aws_lc_rs::hmac::sign(
                &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret),
                input.as_bytes(),
            );
            let jwt = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
            let r = ArmToken::parse(&jwt);
            assert!(matches!(r, Err(TokenError::Signature(_))), "{r:?}");
        }
        // PS256 (the same key family): refused by name too.
        let r = verify(&serde_json::json!({"alg": "PS256", "kid": "k1"}), &claims);
        assert!(matches!(r, Err(TokenError::Signature(_))), "{r:?}");
        // Audience missing, of the wrong type, or another one in a list.
        for aud in [
            None,
            Some(serde_json::json!(1234)),
            Some(serde_json::json!(["https://vault.azure.net"])),
            Some(serde_json::json!("https://management.azure.com.evil/")),
        ] {
            let mut c = claims.clone();
            match aud {
                Some(a) => c["aud"] = a,
                None => {
                    c.as_object_mut().unwrap().remove("aud");
                }
            }
            let r = verify(&header, &c);
            assert!(matches!(r, Err(TokenError::Audience(_))), "{r:?}");
        }
        // Both spellings of the ARM audience, alone or in a list.
        for aud in [
            serde_json::json!("https://management.azure.com"),
            serde_json::json!(["x", "https://management.azure.com/"]),
        ] {
            let mut c = claims.clone();
            c["aud"] = aud;
            assert!(verify(&header, &c).is_ok());
        }
        // No exp; a critical header nobody understands.
        let mut c = claims.clone();
        c.as_object_mut().unwrap().remove("exp");
        let r = verify(&header, &c);
        assert!(matches!(r, Err(TokenError::Malformed(_))), "{r:?}");
        let r = verify(
            &serde_json::json!({"alg": "RS256", "kid": "k1", "crit": ["x"], "x": 1}),
            &claims,
        );
        assert!(r.is_err(), "{r:?}");
    }

    #[tokio::test]
    async fn verifies_with_cached_keys() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/azure-emulator.yaml");
        let emu = azure_emulator::Emulator::start_fixture(&fixture)
            .await
            .unwrap();
        let http = HttpConfig::with_proxy(emu.proxy_url(None), emu.ca_pem().as_bytes().to_vec());
        let imds = ImdsClient::new(&http).unwrap();
        let id = ManagedIdentityId::ClientId(CLIENT.into());
        let arm = imds.token(ARM_AUDIENCE, &id).await.unwrap();
        let cache = JwksCache::new(&http).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let v = cache
            .verify_arm_token(&arm.access_token, now)
            .await
            .unwrap();
        assert_eq!(v.tenant, "11111111-2222-3333-4444-555555555555");
        assert!(v.str_claim("xms_az_rid").is_some());
        cache
            .verify_arm_token(&arm.access_token, now)
            .await
            .unwrap();
        assert_eq!(emu.request_count("discovery/keys"), 1, "keys are cached");
        assert_eq!(cache.cached_tenants(), 1);

        // Expired (beyond the minute of leeway) and not yet valid.
        let e = cache
            .verify_arm_token(&arm.access_token, arm.expires_on + 61)
            .await;
        assert!(matches!(e, Err(TokenError::Time(_))), "{e:?}");
        let e = cache.verify_arm_token(&arm.access_token, now - 3600).await;
        assert!(matches!(e, Err(TokenError::Time(_))), "{e:?}");

        // Another audience.
        let vault = imds.token("https://vault.azure.net", &id).await.unwrap();
        let e = cache.verify_arm_token(&vault.access_token, now).await;
        assert!(matches!(e, Err(TokenError::Audience(_))), "{e:?}");

        // An unknown kid triggers one refetch (rate-limited), then fails.
        let mut parts: Vec<String> = arm.access_token.split('.').map(str::to_string).collect();
        parts[0] = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"unknown"}"#);
        let forged = parts.join(".");
        let e = cache.verify_arm_token(&forged, now).await;
        assert!(matches!(e, Err(TokenError::Signature(_))), "{e:?}");
        assert_eq!(
            emu.request_count("discovery/keys"),
            1,
            "refetch is rate-limited"
        );

        // alg none, garbage.
        parts[0] = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let e = cache.verify_arm_token(&parts.join("."), now).await;
        assert!(matches!(e, Err(TokenError::Signature(_))), "{e:?}");
        let e = cache.verify_arm_token("a.b", now).await;
        assert!(matches!(e, Err(TokenError::Malformed(_))), "{e:?}");
    }
}
