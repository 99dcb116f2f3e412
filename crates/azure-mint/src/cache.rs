//! A token cache keyed by (identity, scope): tokens are refreshed before they expire, concurrent
//! requests for one key make a single fetch, and failures are not cached.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::Error;

/// An access token.
#[derive(Clone)]
pub struct Token {
    /// The bearer token.
    pub secret: Arc<str>,
    /// When it expires.
    pub expires_on: SystemTime,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("secret", &"<redacted>")
            .field("expires_on", &self.expires_on)
            .finish()
    }
}

impl Token {
    /// A token expiring `lifetime` from now.
    pub fn new(secret: impl Into<Arc<str>>, expires_on: SystemTime) -> Self {
        Self {
            secret: secret.into(),
            expires_on,
        }
    }

    fn remaining(&self) -> Duration {
        self.expires_on
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }
}

/// Fetches a token for (identity, scope).
#[async_trait::async_trait]
pub trait FetchToken: Send + Sync {
    /// Fetches a fresh token.
    async fn fetch(&self, identity: &str, scope: &str) -> Result<Token, Error>;
}

struct Entry {
    token: Token,
    /// After this instant the token is refreshed.
    refresh_at: Instant,
    /// After this instant the token is unusable.
    expires_at: Instant,
}

#[derive(Default)]
struct Slot {
    current: RwLock<Option<Entry>>,
    fetching: tokio::sync::Mutex<()>,
}

impl Slot {
    fn fresh(&self, now: Instant) -> Option<Token> {
        let guard = self.current.read().ok()?;
        let entry = guard.as_ref()?;
        (now < entry.refresh_at).then(|| entry.token.clone())
    }

    fn usable(&self, now: Instant) -> Option<Token> {
        let guard = self.current.read().ok()?;
        let entry = guard.as_ref()?;
        (now < entry.expires_at).then(|| entry.token.clone())
    }
}

type Slots = HashMap<String, HashMap<String, Arc<Slot>>>;

/// The cache.
pub struct TokenCache {
    fetcher: Arc<dyn FetchToken>,
    slots: RwLock<Slots>,
    refresh_before: Duration,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("refresh_before", &self.refresh_before)
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache over `fetcher` refreshing tokens 5 minutes before expiry (or at half their lifetime,
    /// whichever comes later, for short-lived tokens).
    pub fn new(fetcher: Arc<dyn FetchToken>) -> Self {
        Self::with_refresh_before(fetcher, Duration::from_secs(300))
    }

    /// A cache refreshing tokens `refresh_before` their expiry.
    pub fn with_refresh_before(fetcher: Arc<dyn FetchToken>, refresh_before: Duration) -> Self {
        Self {
            fetcher,
            slots: RwLock::new(HashMap::new()),
            refresh_before,
        }
    }

    fn slot(&self, identity: &str, scope: &str) -> Option<Arc<Slot>> {
        let slots = self.slots.read().ok()?;
        slots.get(identity)?.get(scope).cloned()
    }

    /// The cached token if it is not due for refresh: the cache-hit path, no allocation, no await.
    pub fn get_cached(&self, identity: &str, scope: &str) -> Option<Token> {
        let slots = self.slots.read().ok()?;
        slots.get(identity)?.get(scope)?.fresh(Instant::now())
    }

    /// A token for (identity, scope): cached, or fetched once for all concurrent callers.
    pub async fn get(&self, identity: &str, scope: &str) -> Result<Token, Error> {
        if let Some(token) = self.get_cached(identity, scope) {
            return Ok(token);
        }
        let slot = match self.slot(identity, scope) {
            Some(slot) => slot,
            None => {
                let mut slots = self
                    .slots
                    .write()
                    .map_err(|_| Error::Credential("token cache lock poisoned".into()))?;
                slots
                    .entry(identity.to_string())
                    .or_default()
                    .entry(scope.to_string())
                    .or_default()
                    .clone()
            }
        };
        let _fetching = slot.fetching.lock().await;
        // Someone else may have fetched while we waited.
        if let Some(token) = slot.fresh(Instant::now()) {
            return Ok(token);
        }
        match self.fetcher.fetch(identity, scope).await {
            Ok(token) => {
                let now = Instant::now();
                let remaining = token.remaining();
                let margin = self.refresh_before.min(remaining / 2);
                let entry = Entry {
                    token: token.clone(),
                    refresh_at: now + remaining.saturating_sub(margin),
                    expires_at: now + remaining,
                };
                if let Ok(mut current) = slot.current.write() {
                    *current = Some(entry);
                }
                Ok(token)
            }
            Err(e) => {
                // Not cached; a still-valid older token is better than an error.
                if let Some(token) = slot.usable(Instant::now()) {
                    tracing::warn!(error = %e, "token refresh failed; using the current token until it expires");
                    return Ok(token);
                }
                // Scopes come from clients: one that never yields a token
                // leaves nothing behind, so the map cannot grow with them.
                self.forget(identity, scope, &slot);
                Err(e)
            }
        }
    }

    /// Removes the slot of (identity, scope) when it is `slot` and holds no usable token.
    fn forget(&self, identity: &str, scope: &str, slot: &Arc<Slot>) {
        if slot.usable(Instant::now()).is_some() {
            return;
        }
        let Ok(mut slots) = self.slots.write() else {
            return;
        };
        let Some(scopes) = slots.get_mut(identity) else {
            return;
        };
        if scopes.get(scope).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            scopes.remove(scope);
        }
        if scopes.is_empty() {
            slots.remove(identity);
        }
    }

    /// How many (identity, scope) slots are held.
    #[cfg(test)]
    fn slot_count(&self) -> usize {
        self.slots
            .read()
            .map(|s| s.values().map(HashMap::len).sum())
            .unwrap_or(0)
    }

    /// Drops the cached token of (identity, scope), e.g. after the service refused it.
    pub fn invalidate(&self, identity: &str, scope: &str) {
        if let Some(slot) = self.slot(identity, scope) {
            if let Ok(mut current) = slot.current.write() {
                *current = None;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        calls: AtomicUsize,
        lifetime: Duration,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl FetchToken for Counting {
        async fn fetch(&self, identity: &str, scope: &str) -> Result<Token, Error> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.fail.load(Ordering::SeqCst) {
                return Err(Error::Credential("boom".into()));
            }
            Ok(Token::new(
                format!("{identity}|{scope}|{n}"),
                SystemTime::now() + self.lifetime,
            ))
        }
    }

    fn counting(lifetime: Duration) -> Arc<Counting> {
        Arc::new(Counting {
            calls: AtomicUsize::new(0),
            lifetime,
            fail: std::sync::atomic::AtomicBool::new(false),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousand_concurrent_requests_make_one_fetch() {
        let fetcher = counting(Duration::from_secs(3600));
        let cache = Arc::new(TokenCache::new(fetcher.clone()));
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get("id-a", "https://management.azure.com/.default")
                    .await
            }));
        }
        for t in tasks {
            let token = t.await.unwrap().unwrap();
            assert_eq!(
                &*token.secret,
                "id-a|https://management.azure.com/.default|0"
            );
        }
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 1);
        // Other keys are fetched separately.
        cache
            .get("id-b", "https://management.azure.com/.default")
            .await
            .unwrap();
        cache
            .get("id-a", "https://vault.azure.net/.default")
            .await
            .unwrap();
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn refreshes_before_expiry() {
        // 2 s tokens with a 5 min margin: refreshed after half their lifetime.
        let fetcher = counting(Duration::from_secs(2));
        let cache = TokenCache::new(fetcher.clone());
        let first = cache.get("i", "s").await.unwrap();
        assert_eq!(&*cache.get("i", "s").await.unwrap().secret, &*first.secret);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let second = cache.get("i", "s").await.unwrap();
        assert_ne!(&*second.secret, &*first.secret);
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let fetcher = counting(Duration::from_secs(3600));
        fetcher.fail.store(true, Ordering::SeqCst);
        let cache = TokenCache::new(fetcher.clone());
        assert!(cache.get("i", "s").await.is_err());
        assert!(cache.get("i", "s").await.is_err());
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 2);
        fetcher.fail.store(false, Ordering::SeqCst);
        assert!(cache.get("i", "s").await.is_ok());
        assert!(cache.get_cached("i", "s").is_some());
        cache.invalidate("i", "s");
        assert!(cache.get_cached("i", "s").is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scopes_that_fail_leave_nothing_behind() {
        let fetcher = counting(Duration::from_secs(3600));
        let cache = Arc::new(TokenCache::new(fetcher.clone()));
        cache.get("i", "good").await.unwrap();
        fetcher.fail.store(true, Ordering::SeqCst);
        let mut tasks = Vec::new();
        for n in 0..200 {
            // Two callers per scope: one waits on the other's fetch.
            for _ in 0..2 {
                let cache = cache.clone();
                tasks.push(tokio::spawn(async move {
                    cache.get("i", &format!("https://bogus-{n}/.default")).await
                }));
            }
        }
        for t in tasks {
            assert!(t.await.unwrap().is_err());
        }
        assert_eq!(cache.slot_count(), 1, "only the scope that has a token");
        // A scope with a token is kept; once it has none and fails, it goes.
        assert!(cache.get("i", "good").await.is_ok());
        assert_eq!(cache.slot_count(), 1);
        cache.invalidate("i", "good");
        assert!(cache.get("i", "good").await.is_err());
        assert_eq!(cache.slot_count(), 0);
    }
}
