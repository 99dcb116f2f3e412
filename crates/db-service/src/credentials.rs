//! How the database agent authenticates to Azure Redis itself, so users never
//! hold a Redis password.
//!
//! * Access keys: `listKeys` on the cache (Azure Cache for Redis) or the
//!   database (Redis Enterprise), the primary key else the secondary. The key
//!   is kept until the server refuses it (`WRONGPASS`: keys were rotated),
//!   then fetched again (Teleport instead calls `listKeys` for every new
//!   connection, which ARM throttles).
//! * Microsoft Entra ID, for caches whose access keys are disabled (Azure
//!   Managed Redis's default): a token for `https://redis.azure.com/.default`
//!   from the agent's credential chain, sent as `AUTH <object-id> <token>`
//!   (the object ID is the token's `oid` claim). The engine re-sends `AUTH`
//!   with a fresh token on open connections before the token expires.
//!
//! Which one a database uses is read from the resource itself
//! (`disableAccessKeyAuthentication`, `accessKeysAuthentication`) on first
//! use and again after a refusal.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use azure_core::credentials::TokenCredential;
use azure_mint::arm::ArmClient;
use redis_proxy::{CredentialProvider, Credentials};
use resources::Database;
use tokio::sync::Mutex;

use crate::session::{CredentialSource, NoCredentials};

/// The Entra ID scope of Azure Redis data-plane tokens.
pub const REDIS_SCOPE: &str = "https://redis.azure.com/.default";

/// Tokens are renewed when less than this part of their life is left.
const TOKEN_REUSE_FRACTION: u32 = 4;

/// Credentials for the Azure databases an agent serves.
pub struct AzureCredentialSource {
    arm: Arc<ArmClient>,
    tokens: Arc<dyn TokenCredential>,
    /// One provider per resource, so its cache survives URI changes.
    providers: std::sync::Mutex<HashMap<String, Arc<AzureRedisCredentials>>>,
}

impl AzureCredentialSource {
    /// `arm` lists keys and reads resources; `tokens` mints Entra tokens
    /// (the agent's DefaultAzureCredential chain).
    pub fn new(arm: Arc<ArmClient>, tokens: Arc<dyn TokenCredential>) -> Self {
        AzureCredentialSource {
            arm,
            tokens,
            providers: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

impl CredentialSource for AzureCredentialSource {
    fn provider(&self, db: &Database) -> Arc<dyn CredentialProvider> {
        let Some(azure) = db.spec.azure.as_ref().filter(|a| !a.resource_id.is_empty()) else {
            return NoCredentials.provider(db);
        };
        let Ok(mut providers) = self.providers.lock() else {
            return NoCredentials.provider(db);
        };
        providers
            .entry(azure.resource_id.clone())
            .or_insert_with(|| {
                Arc::new(AzureRedisCredentials {
                    db_name: db.metadata.name.clone(),
                    resource_id: azure.resource_id.clone(),
                    enterprise: azure.is_enterprise,
                    arm: self.arm.clone(),
                    tokens: self.tokens.clone(),
                    state: Mutex::new(State::default()),
                })
            })
            .clone()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    AccessKey,
    Entra,
}

#[derive(Default)]
struct State {
    mode: Option<Mode>,
    cached: Option<(Credentials, Option<SystemTime>)>,
}

/// Access key or Entra credentials of one Azure Redis resource.
pub struct AzureRedisCredentials {
    db_name: String,
    resource_id: String,
    enterprise: bool,
    arm: Arc<ArmClient>,
    tokens: Arc<dyn TokenCredential>,
    state: Mutex<State>,
}

impl AzureRedisCredentials {
    /// Whether the resource refuses access keys. A resource that cannot be
    /// read is taken to accept them (then `listKeys` reports the problem).
    async fn mode(&self) -> Mode {
        let disabled = if self.enterprise {
            self.arm
                .get_redis_enterprise_database(&self.resource_id)
                .await
                .map(|d| d.properties.access_keys_disabled())
        } else {
            self.arm
                .get_redis(&self.resource_id)
                .await
                .map(|r| r.properties.disable_access_key_authentication)
        };
        match disabled {
            Ok(true) => Mode::Entra,
            Ok(false) => Mode::AccessKey,
            Err(e) => {
                tracing::debug!(db = %self.db_name, error = %e, "reading the Azure Redis resource failed; using access keys");
                Mode::AccessKey
            }
        }
    }

    async fn access_key(&self) -> Result<Credentials, String> {
        let keys = if self.enterprise {
            self.arm.redis_enterprise_keys(&self.resource_id).await
        } else {
            self.arm.redis_keys(&self.resource_id).await
        };
        let keys = keys.map_err(|e| match &e {
            azure_mint::Error::Arm(a) if a.is_authorization_failed() || a.status == 403 => {
                list_keys_denied(&self.db_name)
            }
            _ => format!("{}: {e}", list_keys_denied(&self.db_name)),
        })?;
        let key = keys.preferred().ok_or_else(|| {
            format!(
                "missing keys: Azure returned no access key for Azure Redis {:?}",
                self.db_name
            )
        })?;
        Ok(Credentials::password(None, key))
    }

    async fn entra_token(&self) -> Result<(Credentials, SystemTime), String> {
        let token = self
            .tokens
            .get_token(&[REDIS_SCOPE], None)
            .await
            .map_err(|e| {
                format!(
                    "getting a Microsoft Entra token for Azure Redis {:?}: {e}",
                    self.db_name
                )
            })?;
        let secret = token.token.secret().to_string();
        let object_id = object_id_of(&secret).ok_or_else(|| {
            format!(
                "the Microsoft Entra token for Azure Redis {:?} has no oid claim",
                self.db_name
            )
        })?;
        let expires = azure_mint::credential::to_token(&token).expires_on;
        let valid_for = expires
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Ok((
            Credentials {
                username: Some(object_id),
                password: secret,
                valid_for: Some(valid_for),
            },
            expires,
        ))
    }
}

/// Teleport's text when the agent may not list a database's keys.
pub fn list_keys_denied(db: &str) -> String {
    format!(
        "Failed to get token for Azure Redis {db:?}. Please make sure the database agent has the \"listKeys\" permission to the database."
    )
}

/// The `oid` claim of a JWT (not verified: the token is the agent's own,
/// straight from Entra ID).
pub fn object_id_of(jwt: &str) -> Option<String> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["oid"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[async_trait::async_trait]
impl CredentialProvider for AzureRedisCredentials {
    async fn credentials(&self) -> Result<Credentials, String> {
        let mut state = self.state.lock().await;
        if let Some((creds, expires)) = &state.cached {
            let fresh = match (expires, creds.valid_for) {
                (None, _) => true,
                (Some(at), Some(life)) => at
                    .duration_since(SystemTime::now())
                    .is_ok_and(|left| left > life / TOKEN_REUSE_FRACTION),
                (Some(_), None) => false,
            };
            if fresh {
                let mut c = creds.clone();
                if let Some(at) = expires {
                    c.valid_for = Some(at.duration_since(SystemTime::now()).unwrap_or_default());
                }
                return Ok(c);
            }
        }
        let mode = match state.mode {
            Some(m) => m,
            None => {
                let m = self.mode().await;
                state.mode = Some(m);
                m
            }
        };
        let (creds, expires) = match mode {
            Mode::AccessKey => (self.access_key().await?, None),
            Mode::Entra => {
                let (c, at) = self.entra_token().await?;
                (c, Some(at))
            }
        };
        state.cached = Some((creds.clone(), expires));
        Ok(creds)
    }

    async fn invalidate(&self, rejected: &Credentials) {
        let mut state = self.state.lock().await;
        if state
            .cached
            .as_ref()
            .is_some_and(|(c, _)| c.password == rejected.password)
        {
            tracing::info!(db = %self.db_name, "Azure Redis refused the agent's credentials; fetching new ones");
            *state = State::default();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn oid_claim() {
        use base64::Engine;
        let enc = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let jwt = format!(
            "{}.{}.sig",
            enc(&serde_json::json!({"alg": "RS256"})),
            enc(&serde_json::json!({"oid": "1234-abcd", "aud": "https://redis.azure.com"}))
        );
        assert_eq!(object_id_of(&jwt).as_deref(), Some("1234-abcd"));
        let no_oid = format!("a.{}.c", enc(&serde_json::json!({"sub": "x"})));
        assert_eq!(object_id_of(&no_oid), None);
        assert_eq!(object_id_of("not a jwt"), None);
        assert_eq!(object_id_of("a.!!!.c"), None);
    }

    #[test]
    fn denied_text_is_teleports() {
        assert_eq!(
            list_keys_denied("my-azure-redis"),
            "Failed to get token for Azure Redis \"my-azure-redis\". Please make sure the database agent has the \"listKeys\" permission to the database."
        );
    }
}
