//! The auth service as an agent's services see it: the current definitions
//! of a user's roles (cached briefly) and the audit log.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use resources::Role;
use tokio::sync::Mutex;

/// Why a call to the auth service failed: the server's answer (with its
/// status), the transport, or local state.
pub type ClusterError = client::ClientError;

/// What services need from the auth service.
#[async_trait::async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// Current definitions of these roles.
    async fn roles(&self, names: &[String]) -> Result<Vec<Role>, ClusterError>;
    /// Record audit events (in order): `body` is a JSON array of event
    /// objects. Services queue events through [`crate::AuditSink`] instead
    /// of calling this.
    async fn audit_batch(&self, body: Vec<u8>) -> Result<(), ClusterError>;
}

/// How long fetched roles are reused: role changes apply to sessions within
/// this time without a request per session.
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
    pub async fn get<F, Fut, E>(&self, names: &[String], fetch: F) -> Result<Vec<Role>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<Role>, E>>,
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
