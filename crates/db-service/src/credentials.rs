//! How the database agent authenticates to Azure Redis itself, so users never
//! hold a Redis password.
//!
//! * Access keys: `listKeys` on the cache (Azure Cache for Redis) or the
//!   database (Redis Enterprise), the primary key else the secondary. One
//!   state per resource, shared by every connection of the agent, remembers
//!   the key that works and the keys the server refused (`WRONGPASS`: keys
//!   were rotated). When the key in use is refused, the first connection to
//!   ask fetches the keys again while the others wait for its answer (one
//!   `listKeys` per rotation however many connections were refused), and the
//!   first listed key not refused since is used by all: so a cache that
//!   accepts only the secondary key while `listKeys` still lists the old
//!   primary first is reached on every connection. Teleport instead calls
//!   `listKeys` for every new connection, which ARM throttles.
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
use std::time::{Duration, Instant, SystemTime};

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

/// Why the agent has no credentials for an Azure Redis database. The
/// session's client gets the text (`-ERR Teleport: failed to get database
/// credentials: ...`).
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// ARM refused `listKeys` (authorization failed, 403): Teleport's text
    /// ([`list_keys_denied`]).
    #[error("{}", list_keys_denied(.db))]
    ListKeysDenied {
        /// The database.
        db: String,
        /// ARM's refusal.
        #[source]
        source: azure_mint::Error,
    },
    /// `listKeys` failed otherwise.
    #[error("{}: {source}", list_keys_denied(.db))]
    ListKeys {
        /// The database.
        db: String,
        /// What failed.
        source: azure_mint::Error,
    },
    /// `listKeys` listed no usable key.
    #[error("missing keys: Azure returned no access key for Azure Redis {0:?}")]
    NoKeys(String),
    /// The credential chain gave no Entra token.
    #[error("getting a Microsoft Entra token for Azure Redis {db:?}: {source}")]
    EntraToken {
        /// The database.
        db: String,
        /// The chain's error.
        source: azure_core::Error,
    },
    /// The Entra token does not say whose it is.
    #[error("the Microsoft Entra token for Azure Redis {0:?} has no oid claim")]
    NoObjectId(String),
}

impl CredentialError {
    /// Whether Azure refused the agent (a missing role assignment), as
    /// opposed to a failure that retrying may get past.
    pub fn is_denied(&self) -> bool {
        matches!(self, CredentialError::ListKeysDenied { .. })
    }
}

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

/// What every connection to one resource shares. Behind an async mutex held
/// across the ARM calls, so fetches are single-flight: callers that arrive
/// during a fetch wait for it and take its answer.
#[derive(Default)]
struct State {
    /// Access keys or Entra tokens; read again after a refusal.
    mode: Option<Mode>,
    /// Entra ID: the token and when it expires.
    token: Option<(Credentials, SystemTime)>,
    /// Access keys.
    keys: Keys,
}

/// How long after a `listKeys` that brought nothing new (every key it lists
/// refused) the keys are not fetched again: a cache that refuses every key
/// costs one ARM call per this period, not one per connection attempt.
const REFETCH_UNCHANGED_AFTER: Duration = Duration::from_secs(5);

/// The access keys of one resource as the agent knows them.
#[derive(Default)]
struct Keys {
    /// What `listKeys` last returned (primary first), without empty keys.
    listed: Vec<String>,
    /// Listed keys the server refused since they were fetched.
    refused: Vec<String>,
    /// The key every new connection uses; `None` after a refusal.
    current: Option<String>,
    /// When `listKeys` last returned the keys it had returned before.
    unchanged_at: Option<Instant>,
}

impl Keys {
    /// The key to use without asking Azure: the one in use, else the first
    /// listed key not refused (the secondary after the primary).
    fn pick(&mut self) -> Option<String> {
        if self.current.is_none() {
            self.current = self
                .listed
                .iter()
                .find(|k| !self.refused.contains(k))
                .cloned();
        }
        self.current.clone()
    }

    /// Whether to call `listKeys` now that no known key is left to try.
    fn may_fetch(&self, now: Instant) -> bool {
        self.listed.is_empty()
            || self
                .unchanged_at
                .is_none_or(|at| now.duration_since(at) >= REFETCH_UNCHANGED_AFTER)
    }

    /// Takes a fresh `listKeys` answer: refusals of keys no longer listed
    /// are forgotten, those of keys still listed kept (Azure may list a
    /// key the cache no longer takes first).
    fn take_listed(&mut self, listed: Vec<String>, now: Instant) {
        self.unchanged_at = (listed == self.listed).then_some(now);
        self.refused.retain(|k| listed.contains(k));
        self.listed = listed;
        self.current = None;
    }

    /// Every listed key was refused and no fetch is due: start over from
    /// the first (a key may take a moment to reach the cache after a
    /// regeneration; each connection still stops at a key it saw refused).
    fn restart(&mut self) -> Option<String> {
        self.refused.clear();
        self.current = self.listed.first().cloned();
        self.current.clone()
    }

    /// The server refused `key`: remember it, and stop handing it out.
    /// Returns whether it was the key in use (a refusal of an older key,
    /// from a connection that asked before the last change, changes
    /// nothing else).
    fn refuse(&mut self, key: &str) -> bool {
        if self.listed.iter().any(|k| k == key) && !self.refused.iter().any(|k| k == key) {
            self.refused.push(key.to_string());
        }
        if self.current.as_deref() == Some(key) {
            self.current = None;
            true
        } else {
            false
        }
    }
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

    /// The keys `listKeys` returns, primary first, empty ones left out.
    async fn list_keys(&self) -> Result<Vec<String>, CredentialError> {
        let keys = if self.enterprise {
            self.arm.redis_enterprise_keys(&self.resource_id).await
        } else {
            self.arm.redis_keys(&self.resource_id).await
        };
        let keys = keys.map_err(|source| {
            let db = self.db_name.clone();
            match &source {
                azure_mint::Error::Arm(a) if a.is_authorization_failed() || a.status == 403 => {
                    CredentialError::ListKeysDenied { db, source }
                }
                _ => CredentialError::ListKeys { db, source },
            }
        })?;
        let mut listed: Vec<String> = Vec::with_capacity(2);
        for key in [keys.primary_key, keys.secondary_key].into_iter().flatten() {
            if !key.is_empty() && !listed.contains(&key) {
                listed.push(key);
            }
        }
        if listed.is_empty() {
            return Err(CredentialError::NoKeys(self.db_name.clone()));
        }
        Ok(listed)
    }

    async fn entra_token(&self) -> Result<(Credentials, SystemTime), CredentialError> {
        let token = self
            .tokens
            .get_token(&[REDIS_SCOPE], None)
            .await
            .map_err(|source| CredentialError::EntraToken {
                db: self.db_name.clone(),
                source,
            })?;
        let secret = token.token.secret().to_string();
        let object_id = object_id_of(&secret)
            .ok_or_else(|| CredentialError::NoObjectId(self.db_name.clone()))?;
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
    // Our own token from Entra, read (not verified) for the user name Redis
    // expects beside it.
    let claims: serde_json::Map<String, serde_json::Value> =
        jsonwebtoken::dangerous::insecure_decode_claims(jwt).ok()?;
    claims
        .get("oid")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl AzureRedisCredentials {
    /// The credentials for a new connection (what
    /// [`CredentialProvider::credentials`] hands the engine): the access key
    /// in use, or an Entra token with enough life left, fetched when there
    /// is none.
    pub async fn current(&self) -> Result<Credentials, CredentialError> {
        let mut state = self.state.lock().await;
        let state = &mut *state;
        if state.mode == Some(Mode::AccessKey) {
            if let Some(key) = state.keys.pick() {
                return Ok(Credentials::password(None, key));
            }
        }
        let now = Instant::now();
        let fetch = match state.mode {
            None => true,
            Some(Mode::AccessKey) => state.keys.may_fetch(now),
            Some(Mode::Entra) => false,
        };
        if fetch {
            // First use, or every known key was refused: the keys may have
            // been disabled rather than regenerated.
            let mode = self.mode().await;
            state.mode = Some(mode);
            if mode == Mode::AccessKey {
                let listed = self.list_keys().await?;
                state.keys.take_listed(listed, now);
            }
        }
        match state.mode {
            Some(Mode::AccessKey) | None => {
                let key = match state.keys.pick() {
                    Some(key) => Some(key),
                    None => state.keys.restart(),
                };
                key.map(|k| Credentials::password(None, k))
                    .ok_or_else(|| CredentialError::NoKeys(self.db_name.clone()))
            }
            Some(Mode::Entra) => {
                if let Some((creds, expires)) = &state.token {
                    let fresh = creds.valid_for.is_some_and(|life| {
                        expires
                            .duration_since(SystemTime::now())
                            .is_ok_and(|left| left > life / TOKEN_REUSE_FRACTION)
                    });
                    if fresh {
                        let mut c = creds.clone();
                        c.valid_for = Some(
                            expires
                                .duration_since(SystemTime::now())
                                .unwrap_or_default(),
                        );
                        return Ok(c);
                    }
                }
                let (creds, expires) = self.entra_token().await?;
                state.token = Some((creds.clone(), expires));
                Ok(creds)
            }
        }
    }
}

#[async_trait::async_trait]
impl CredentialProvider for AzureRedisCredentials {
    /// [`AzureRedisCredentials::current`], its error kept as the engine's
    /// error's source.
    async fn credentials(&self) -> Result<Credentials, redis_proxy::CredentialError> {
        Ok(self.current().await?)
    }

    async fn invalidate(&self, rejected: &Credentials) {
        let mut state = self.state.lock().await;
        let token_refused = state
            .token
            .as_ref()
            .is_some_and(|(c, _)| c.password == rejected.password);
        if token_refused {
            tracing::info!(db = %self.db_name, "Azure Redis refused the agent's Microsoft Entra token; getting a new one");
            state.token = None;
            // Access keys may have been turned back on.
            state.mode = None;
        } else if state.keys.refuse(&rejected.password) {
            tracing::info!(db = %self.db_name, "Azure Redis refused the agent's access key; trying the other, then fetching the keys again");
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

    fn keys(listed: &[&str]) -> Vec<String> {
        listed.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn refused_keys_are_skipped_until_listed_no_more() {
        let now = Instant::now();
        let mut k = Keys::default();
        assert!(k.may_fetch(now), "nothing fetched yet");
        k.take_listed(keys(&["p1", "s1"]), now);
        assert_eq!(k.pick().as_deref(), Some("p1"));
        // A refusal of a key not in use changes nothing.
        assert!(!k.refuse("old"));
        assert_eq!(k.pick().as_deref(), Some("p1"));
        // The primary refused: the secondary, without asking Azure.
        assert!(k.refuse("p1"));
        assert_eq!(k.pick().as_deref(), Some("s1"));
        // A late refusal of the primary from another connection: no change.
        assert!(!k.refuse("p1"));
        assert_eq!(k.pick().as_deref(), Some("s1"));
        // Both refused: fetch. Azure lists the refused primary first still:
        // it is skipped.
        assert!(k.refuse("s1"));
        assert_eq!(k.pick(), None);
        assert!(k.may_fetch(now));
        k.take_listed(keys(&["p1", "s2"]), now);
        assert_eq!(k.pick().as_deref(), Some("s2"));
        // Listed no more: forgotten.
        k.take_listed(keys(&["p2", "s2"]), now);
        assert_eq!(k.refused, Vec::<String>::new());
        assert_eq!(k.pick().as_deref(), Some("p2"));
    }

    #[test]
    fn a_cache_refusing_every_key_is_not_asked_about_on_every_connection() {
        let t0 = Instant::now();
        let mut k = Keys::default();
        k.take_listed(keys(&["p", "s"]), t0);
        k.refuse("p");
        k.refuse("s");
        // The same keys again: no new fetch for a while; start over from
        // the first listed key instead.
        k.take_listed(keys(&["p", "s"]), t0);
        assert_eq!(k.pick(), None);
        assert!(!k.may_fetch(t0 + Duration::from_secs(1)));
        assert_eq!(k.restart().as_deref(), Some("p"));
        assert!(k.refused.is_empty());
        assert!(k.may_fetch(t0 + REFETCH_UNCHANGED_AFTER));
        // New keys lift the pause.
        k.take_listed(keys(&["p3", "s"]), t0);
        k.refuse("p3");
        k.refuse("s");
        assert!(k.may_fetch(t0));
    }

    #[test]
    fn denied_text_is_teleports() {
        assert_eq!(
            list_keys_denied("my-azure-redis"),
            "Failed to get token for Azure Redis \"my-azure-redis\". Please make sure the database agent has the \"listKeys\" permission to the database."
        );
    }
}
