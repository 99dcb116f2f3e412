//! The Instance Metadata Service client: managed-identity tokens, attested documents, instance metadata.
//!
//! Every request carries `Metadata: true`; 404, 410, 429 and 5xx answers and transport errors are
//! retried with exponential backoff, as Azure's guidance for IMDS says.

use std::time::Duration;

use serde_json::Value;

use crate::http::HttpConfig;
use crate::Error;

/// The IMDS base URL.
pub const IMDS_BASE: &str = "http://169.254.169.254";
/// api-version used for tokens.
pub const TOKEN_API_VERSION: &str = "2018-02-01";
/// api-version used for attested documents and instance metadata.
pub const METADATA_API_VERSION: &str = "2021-02-01";
const MAX_BODY: usize = 1 << 20;

/// Which managed identity a token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagedIdentityId {
    /// The system-assigned identity (or the only user-assigned one).
    System,
    /// A user-assigned identity by client ID.
    ClientId(String),
    /// A user-assigned identity by object (principal) ID.
    ObjectId(String),
    /// A user-assigned identity by resource ID.
    ResourceId(String),
}

/// Retry policy.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub max_attempts: u32,
    /// First backoff.
    pub base_delay: Duration,
    /// Longest backoff.
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl Retry {
    /// The backoff before attempt `attempt` (1-based retry number).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// A managed-identity token as IMDS returns it.
#[derive(Clone, PartialEq, Eq)]
pub struct ImdsToken {
    /// The JWT.
    pub access_token: String,
    /// Expiry, seconds since the epoch.
    pub expires_on: i64,
    /// The resource (audience).
    pub resource: String,
    /// Client ID of the identity.
    pub client_id: Option<String>,
}

impl std::fmt::Debug for ImdsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImdsToken")
            .field("expires_on", &self.expires_on)
            .field("resource", &self.resource)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// An attested document (`{"encoding":"pkcs7","signature":"<base64 DER>"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedDocument {
    /// `pkcs7`.
    pub encoding: String,
    /// Base64 of the PKCS#7 SignedData DER.
    pub signature: String,
}

/// The compute part of `/metadata/instance`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceCompute {
    /// VM name.
    pub name: String,
    /// VM unique ID.
    pub vm_id: String,
    /// Subscription.
    pub subscription_id: String,
    /// Resource group.
    pub resource_group_name: String,
    /// Resource ID.
    pub resource_id: String,
    /// Region.
    pub location: String,
}

/// The IMDS client.
#[derive(Debug, Clone)]
pub struct ImdsClient {
    http: reqwest::Client,
    base: String,
    retry: Retry,
}

fn malformed(message: impl Into<String>) -> Error {
    Error::Malformed {
        service: "IMDS",
        message: message.into(),
    }
}

fn str_field(v: &Value, key: &str) -> Result<String, Error> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(malformed(format!("field {key:?} is not a string"))),
        None => Err(malformed(format!("field {key:?} is missing"))),
    }
}

/// A number IMDS may send as a string (real IMDS does) or as a number.
fn int_field(v: &Value, key: &str) -> Result<i64, Error> {
    match v.get(key) {
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| malformed(format!("field {key:?} is not a number"))),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| malformed(format!("field {key:?} is not an integer"))),
        Some(_) => Err(malformed(format!("field {key:?} is not a number"))),
        None => Err(malformed(format!("field {key:?} is missing"))),
    }
}

/// GETs `url` and reads its body ([`read_capped`]); an answer other than 2xx is a
/// transport error of `service`.
pub(crate) async fn get_capped(
    http: &reqwest::Client,
    url: &str,
    limit: usize,
    service: &'static str,
) -> Result<Vec<u8>, Error> {
    let resp = http.get(url).send().await.map_err(|e| Error::Transport {
        service,
        message: e.to_string(),
    })?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(Error::Transport {
            service,
            message: format!("{url} answered HTTP {status}"),
        });
    }
    read_capped(resp, limit, service).await
}

/// Reads a body up to `limit` bytes; a larger declared length is refused before any of it
/// is read.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
    service: &'static str,
) -> Result<Vec<u8>, Error> {
    let too_large = || Error::Malformed {
        service,
        message: format!("response larger than {limit} bytes"),
    };
    if resp.content_length().is_some_and(|l| l > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(Error::Transport {
                    service,
                    message: format!("reading the response: {e}"),
                })
            }
        }
    }
}

impl ImdsClient {
    /// A client for the real IMDS address.
    pub fn new(config: &HttpConfig) -> Result<Self, Error> {
        Ok(Self {
            http: config.client()?,
            base: IMDS_BASE.to_string(),
            retry: Retry::default(),
        })
    }

    /// Uses another base URL (e.g. `AZURE_POD_IDENTITY_AUTHORITY_HOST`).
    pub fn with_base(mut self, base: impl Into<String>) -> Self {
        self.base = base.into().trim_end_matches('/').to_string();
        self
    }

    /// Uses another retry policy.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    async fn get_json(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, Error> {
        let url = format!("{}{path}", self.base);
        let attempts = self.retry.max_attempts.max(1);
        let mut last = None;
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(self.retry.delay(attempt - 1)).await;
            }
            let sent = self
                .http
                .get(&url)
                .query(query)
                .header("Metadata", "true")
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    last = Some(Error::Transport {
                        service: "IMDS",
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let body = match read_capped(resp, MAX_BODY, "IMDS").await {
                Ok(b) => b,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            if (200..300).contains(&status) {
                return serde_json::from_slice(&body)
                    .map_err(|e| malformed(format!("not JSON: {e}")));
            }
            let err = Error::Imds {
                status,
                message: imds_error_message(&body),
            };
            if !err.is_retryable() {
                return Err(err);
            }
            tracing::debug!(status, attempt, "IMDS request failed; retrying");
            last = Some(err);
        }
        Err(last.unwrap_or_else(|| malformed("no attempt made")))
    }

    /// A token for `resource` (a v1 resource such as `https://management.azure.com/`).
    pub async fn token(&self, resource: &str, id: &ManagedIdentityId) -> Result<ImdsToken, Error> {
        if resource.is_empty() {
            return Err(Error::InvalidArgument("empty resource".into()));
        }
        let mut query = vec![("api-version", TOKEN_API_VERSION), ("resource", resource)];
        match id {
            ManagedIdentityId::System => {}
            ManagedIdentityId::ClientId(c) => query.push(("client_id", c)),
            ManagedIdentityId::ObjectId(o) => query.push(("object_id", o)),
            ManagedIdentityId::ResourceId(r) => query.push(("msi_res_id", r)),
        }
        let v = self
            .get_json("/metadata/identity/oauth2/token", &query)
            .await?;
        let access_token = str_field(&v, "access_token")?;
        if access_token.is_empty() {
            return Err(malformed("empty access_token"));
        }
        Ok(ImdsToken {
            access_token,
            expires_on: int_field(&v, "expires_on")?,
            resource: str_field(&v, "resource").unwrap_or_else(|_| resource.to_string()),
            client_id: str_field(&v, "client_id").ok(),
        })
    }

    /// The attested document bound to `nonce` (at most 32 characters, as IMDS requires).
    pub async fn attested_document(&self, nonce: &str) -> Result<AttestedDocument, Error> {
        if nonce.is_empty() || nonce.len() > 32 {
            return Err(Error::InvalidArgument(format!(
                "IMDS nonces are 1 to 32 characters, got {}",
                nonce.len()
            )));
        }
        let v = self
            .get_json(
                "/metadata/attested/document",
                &[
                    ("api-version", METADATA_API_VERSION),
                    ("format", "json"),
                    ("nonce", nonce),
                ],
            )
            .await?;
        let encoding = str_field(&v, "encoding")?;
        let signature = str_field(&v, "signature")?;
        if !encoding.eq_ignore_ascii_case("pkcs7") {
            return Err(malformed(format!("unexpected encoding {encoding:?}")));
        }
        Ok(AttestedDocument {
            encoding,
            signature,
        })
    }

    /// The VM's compute metadata.
    pub async fn instance(&self) -> Result<InstanceCompute, Error> {
        let v = self
            .get_json(
                "/metadata/instance",
                &[("api-version", METADATA_API_VERSION), ("format", "json")],
            )
            .await?;
        let c = v
            .get("compute")
            .ok_or_else(|| malformed("no compute section"))?;
        Ok(InstanceCompute {
            name: str_field(c, "name")?,
            vm_id: str_field(c, "vmId")?,
            subscription_id: str_field(c, "subscriptionId")?,
            resource_group_name: str_field(c, "resourceGroupName")?,
            resource_id: str_field(c, "resourceId").unwrap_or_default(),
            location: str_field(c, "location").unwrap_or_default(),
        })
    }
}

fn imds_error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(d) = v.get("error_description").and_then(Value::as_str) {
            return d.to_string();
        }
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            return e.to_string();
        }
    }
    let text = String::from_utf8_lossy(body);
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let r = Retry {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(r.delay(1), Duration::from_millis(100));
        assert_eq!(r.delay(2), Duration::from_millis(200));
        assert_eq!(r.delay(5), Duration::from_secs(1));
        assert_eq!(r.delay(64), Duration::from_secs(1));
    }

    #[test]
    fn numbers_as_strings_or_numbers() {
        let v = serde_json::json!({"a": "12", "b": 13, "c": true, "d": "x"});
        assert_eq!(int_field(&v, "a").ok(), Some(12));
        assert_eq!(int_field(&v, "b").ok(), Some(13));
        assert!(int_field(&v, "c").is_err());
        assert!(int_field(&v, "d").is_err());
        assert!(int_field(&v, "e").is_err());
    }
}
