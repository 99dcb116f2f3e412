//! The user's roles as agents re-check them on every session: fetched from
//! the auth service and reused briefly, so role changes apply within
//! [`ROLE_TTL`] without a request per session.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use resources::Role;
use tokio::sync::Mutex;

/// How long fetched roles are reused.
pub const ROLE_TTL: Duration = Duration::from_secs(10);

/// When a role-name list was fetched, and its roles.
type Fetched = (Instant, Vec<Role>);

/// Roles fetched per role-name list, with when they were fetched.
#[derive(Default)]
pub struct RoleCache {
    entries: Mutex<HashMap<Vec<String>, Fetched>>,
}

impl RoleCache {
    /// The roles `names`, from the cache when fetched less than
    /// [`ROLE_TTL`] ago, else from `fetch` (failures are not cached).
    pub async fn get<F, Fut>(&self, names: &[String], fetch: F) -> Result<Vec<Role>, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<Role>, String>>,
    {
        let key = names.to_vec();
        if let Some((at, roles)) = self.entries.lock().await.get(&key) {
            if at.elapsed() < ROLE_TTL {
                return Ok(roles.clone());
            }
        }
        let roles = fetch().await?;
        self.entries
            .lock()
            .await
            .insert(key, (Instant::now(), roles.clone()));
        Ok(roles)
    }
}
