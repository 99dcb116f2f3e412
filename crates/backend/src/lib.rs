//! The cluster's key/value storage.
//!
//! A [`Backend`] stores [`Item`]s under string keys, ordered by the keys' bytes (UTF-8 order, which
//! is also code point order). It supports point reads and writes, conditional writes
//! ([`Backend::create`], [`Backend::update`], [`Backend::compare_and_swap`]), half-open range reads
//! and deletes, expiry, and a change feed ([`Backend::watch`]).
//!
//! Three implementations share one contract, checked by one conformance suite
//! (`conformance`, compiled for tests or with the `conformance` feature):
//!
//! - [`SqliteBackend`]: embedded default, one file, single process.
//! - [`PostgresBackend`]: high availability, several processes on one database; the change feed
//!   carries the writes of every process (LISTEN/NOTIFY fed by a trigger, see [`postgres`]).
//! - [`MemoryBackend`]: for tests.
//!
//! Invariants shared by all implementations:
//!
//! - An item whose `expires` is at or before now is invisible to every read and conditional write,
//!   as if absent. A background sweeper removes such items about once a second and emits a
//!   [`EventKind::Delete`] event for each.
//! - Every successful write sets a fresh, opaque `revision`, and returns the item as stored
//!   (expiry truncated to whole microseconds, the precision all backends keep).
//! - Ranges are `[start, end)`; an empty `end` means "no upper bound".
//! - Stored data that cannot be decoded is reported as [`BackendError::Storage`], never a panic.
//!
//! [`audit::AuditLog`] stores audit events on top of any backend.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod audit;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod memory;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod tests;

pub use memory::MemoryBackend;
pub use postgres::PostgresBackend;
pub use sqlite::SqliteBackend;

/// How often expired items are removed (and their `Delete` events emitted).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How many events a slow watcher may fall behind before it gets `RecvError::Lagged`.
pub const WATCH_CAPACITY: usize = 4096;

/// One stored value.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub key: String,
    pub value: Vec<u8>,
    /// After this instant the item is treated as absent.
    pub expires: Option<SystemTime>,
    /// Set by the backend on every write; opaque. Ignored on input.
    pub revision: String,
}

impl Item {
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Item {
            key: key.into(),
            value: value.into(),
            expires: None,
            revision: String::new(),
        }
    }

    pub fn with_expiry(mut self, expires: SystemTime) -> Self {
        self.expires = Some(expires);
        self
    }

    /// Whether the item is expired at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    Put,
    Delete,
}

/// A change in the backend. For `Delete` only `item.key` is meaningful.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: EventKind,
    pub item: Item,
}

impl Event {
    pub(crate) fn put(item: Item) -> Self {
        Event {
            kind: EventKind::Put,
            item,
        }
    }

    pub(crate) fn delete(key: impl Into<String>) -> Self {
        Event {
            kind: EventKind::Delete,
            item: Item::new(key, Vec::new()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("key {0:?} is not found")]
    NotFound(String),
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    #[error("compare failed for key {0:?}: it was changed concurrently")]
    CompareFailed(String),
    /// The caller passed something the backend cannot accept.
    #[error("bad parameter: {0}")]
    BadParameter(String),
    /// The database rejected an operation or returned data that cannot be decoded.
    #[error("storage error: {0}")]
    Storage(String),
    /// The database cannot be reached (connection lost, refused ...); a retry may succeed.
    #[error("storage is unavailable: {0}; check that the database is reachable, the operation may be retried")]
    Unavailable(String),
}

impl BackendError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound(_))
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BackendError::Unavailable(_))
    }
}

#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The live item at `key`; `NotFound` if absent or expired.
    async fn get(&self, key: &str) -> Result<Item, BackendError>;
    /// Stores `item` only if no live item exists at its key (`AlreadyExists` otherwise).
    async fn create(&self, item: Item) -> Result<Item, BackendError>;
    /// Stores `item`, replacing any existing one.
    async fn put(&self, item: Item) -> Result<Item, BackendError>;
    /// Stores every item of `items` (as [`Backend::put`] does), in one
    /// transaction where the store has them: all or none.
    async fn put_many(&self, items: Vec<Item>) -> Result<(), BackendError> {
        for item in items {
            self.put(item).await?;
        }
        Ok(())
    }
    /// Replaces the live item at `item.key`; `NotFound` if there is none.
    async fn update(&self, item: Item) -> Result<Item, BackendError>;
    /// Replaces the live item at `expected.key` with `replace` if its value equals
    /// `expected.value`: `CompareFailed` if the value differs, `NotFound` if absent. The two
    /// keys must be equal (`BadParameter` otherwise).
    async fn compare_and_swap(&self, expected: &Item, replace: Item) -> Result<Item, BackendError>;
    /// Removes the live item at `key`; `NotFound` if there is none.
    async fn delete(&self, key: &str) -> Result<(), BackendError>;
    /// Live items with `start <= key < end` (no upper bound if `end` is empty), sorted by key,
    /// at most `limit` of them (0: no limit).
    async fn get_range(
        &self,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<Item>, BackendError>;
    /// Removes every item with `start <= key < end` (no upper bound if `end` is empty).
    async fn delete_range(&self, start: &str, end: &str) -> Result<(), BackendError>;
    /// A receiver of every change made from now on (for PostgreSQL: by any process).
    fn watch(&self) -> tokio::sync::broadcast::Receiver<Event>;
    /// Stops background tasks. Further calls may fail.
    async fn close(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

/// The exclusive end of the range of keys starting with `prefix`: the smallest string greater
/// than every string with that prefix. Empty (meaning "no upper bound") for an empty prefix.
pub fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 {
            // Skip the surrogate range, which holds no chars.
            0xD7FF => Some('\u{E000}'),
            c => char::from_u32(c + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return chars.into_iter().collect();
        }
        // `last` was char::MAX: carry into the previous char.
    }
    String::new()
}

/// All live items whose key starts with `prefix`, sorted by key.
pub async fn get_prefix(b: &dyn Backend, prefix: &str) -> Result<Vec<Item>, BackendError> {
    b.get_range(prefix, &prefix_end(prefix), 0).await
}

/// Which backend to open.
#[derive(Clone, PartialEq)]
pub enum StorageConfig {
    Memory,
    /// `path` is the database file; if it is an existing directory, the file is
    /// `<path>/sqlite.db` (as Teleport's `path` setting for its lite backend).
    Sqlite {
        path: PathBuf,
    },
    /// A libpq connection string: `postgres://user@host:5432/db` or `host=... user=... dbname=...`.
    Postgres {
        conn_string: String,
    },
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageConfig::Memory => f.write_str("Memory"),
            StorageConfig::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            // The connection string may carry a password.
            StorageConfig::Postgres { .. } => f
                .debug_struct("Postgres")
                .field("conn_string", &"<redacted>")
                .finish(),
        }
    }
}

/// Opens the configured backend. Must be called within a tokio runtime.
pub async fn open(cfg: &StorageConfig) -> Result<Arc<dyn Backend>, BackendError> {
    Ok(match cfg {
        StorageConfig::Memory => Arc::new(MemoryBackend::new().await),
        StorageConfig::Sqlite { path } => Arc::new(SqliteBackend::open(path).await?),
        StorageConfig::Postgres { conn_string } => {
            Arc::new(PostgresBackend::new(conn_string).await?)
        }
    })
}

/// A fresh random revision, formatted as a version 4 UUID.
pub(crate) fn new_revision() -> String {
    new_uuid()
}

/// A random version 4 UUID in its usual text form.
pub(crate) fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Microseconds since the Unix epoch, floored, saturating at the i64 bounds.
pub(crate) fn to_micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let m = d.as_micros() + u128::from(d.subsec_nanos() % 1000 != 0);
            i64::try_from(m).map(|m| -m).unwrap_or(i64::MIN)
        }
    }
}

/// The inverse of [`to_micros`], saturating where `SystemTime` cannot go.
pub(crate) fn from_micros(m: i64) -> SystemTime {
    let d = Duration::from_micros(m.unsigned_abs());
    let t = if m >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    };
    t.unwrap_or(UNIX_EPOCH)
}

/// Prepares an item for storage: truncates the expiry to microseconds, sets a new revision.
pub(crate) fn prepare(mut item: Item) -> Item {
    item.expires = item.expires.map(|e| from_micros(to_micros(e)));
    item.revision = new_revision();
    item
}

/// Refuses a compare-and-swap whose replacement is another key's.
pub(crate) fn same_key(expected: &Item, replace: &Item) -> Result<(), BackendError> {
    if expected.key == replace.key {
        return Ok(());
    }
    Err(BackendError::BadParameter(format!(
        "compare and swap keys differ: {:?} and {:?}",
        expected.key, replace.key
    )))
}

/// A backend's expiry sweeper: runs `sweep` on the backend's state every [`SWEEP_INTERVAL`]
/// while the state lives (held weakly between runs); a failure is logged as `name`'s.
pub(crate) async fn sweep_while_alive<T, F, Fut>(state: std::sync::Weak<T>, name: &str, sweep: F)
where
    F: Fn(std::sync::Arc<T>) -> Fut,
    Fut: std::future::Future<Output = Result<(), BackendError>>,
{
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else { return };
        if let Err(e) = sweep(state).await {
            tracing::warn!(error = %e, "{name} backend: expiry sweep failed");
        }
    }
}

/// Aborts its background tasks when dropped.
#[derive(Default)]
pub(crate) struct Tasks(std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>);

impl Tasks {
    pub(crate) fn push(&self, h: tokio::task::JoinHandle<()>) {
        match self.0.lock() {
            Ok(mut v) => v.push(h),
            Err(_) => h.abort(),
        }
    }

    pub(crate) fn abort_all(&self) {
        let handles = match self.0.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        for h in handles {
            h.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.abort_all();
    }
}
