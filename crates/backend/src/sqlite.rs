//! The embedded default backend: one SQLite file (WAL mode), one connection, one process.
//!
//! Schema: `kv(key TEXT PRIMARY KEY, value BLOB, expires INTEGER NULL, revision TEXT)`, with
//! `expires` in microseconds since the Unix epoch. Keys compare with SQLite's BINARY collation
//! (memcmp), the same order as the other backends. All database work runs on tokio's blocking
//! pool; the connection mutex serializes it, and events are sent while it is held, so the change
//! feed follows commit order.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, OptionalExtension, ToSql, Transaction, TransactionBehavior};
use tokio::sync::broadcast;

use crate::{
    from_micros, prepare, same_key, sweep_while_alive, to_micros, Backend, BackendError, Event,
    Item, Tasks, WATCH_CAPACITY,
};

/// The file name used when the configured path is a directory.
pub const DEFAULT_FILE_NAME: &str = "sqlite.db";

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL,
    expires INTEGER NULL,
    revision TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires) WHERE expires IS NOT NULL;";

const LIVE: &str = "(expires IS NULL OR expires > ?)";

pub struct SqliteBackend {
    inner: Arc<Inner>,
    path: PathBuf,
    tasks: Tasks,
}

struct Inner {
    conn: Mutex<Connection>,
    events: broadcast::Sender<Event>,
}

fn db_err(e: rusqlite::Error) -> BackendError {
    BackendError::Storage(format!("sqlite: {e}"))
}

fn now_micros() -> i64 {
    to_micros(SystemTime::now())
}

type Sender = broadcast::Sender<Event>;

impl Inner {
    /// Runs `f` with the connection on the blocking pool.
    async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Sender) -> Result<T, BackendError> + Send + 'static,
    {
        let inner = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut conn = inner
                .conn
                .lock()
                .map_err(|_| BackendError::Storage("sqlite connection lock is poisoned".into()))?;
            f(&mut conn, &inner.events)
        })
        .await
        .map_err(|e| BackendError::Storage(format!("sqlite task failed: {e}")))?
    }
}

fn emit(events: &Sender, e: Event) {
    let _ = events.send(e);
}

fn row_to_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let expires: Option<i64> = row.get(2)?;
    Ok(Item {
        key: row.get(0)?,
        value: row.get(1)?,
        expires: expires.map(from_micros),
        revision: row.get(3)?,
    })
}

fn key_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<String> {
    row.get(0)
}

fn live_exists(conn: &Connection, key: &str, now: i64) -> Result<bool, BackendError> {
    conn.query_row(
        &format!("SELECT 1 FROM kv WHERE key = ? AND {LIVE}"),
        params![key, now],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
    .map_err(db_err)
}

fn upsert(conn: &Connection, item: &Item) -> Result<(), BackendError> {
    // Cached: audit batches insert hundreds of rows in a row.
    conn.prepare_cached(
        "INSERT INTO kv (key, value, expires, revision) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET value = ?2, expires = ?3, revision = ?4",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            item.key,
            item.value,
            item.expires.map(to_micros),
            item.revision
        ])
    })
    .map(|_| ())
    .map_err(db_err)
}

/// Resolves the configured path: a directory means `<dir>/sqlite.db`.
fn db_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(DEFAULT_FILE_NAME)
    } else {
        path.to_path_buf()
    }
}

fn open_connection(file: &Path) -> Result<Connection, BackendError> {
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            BackendError::Storage(format!("cannot create directory {}: {e}", parent.display()))
        })?;
    }
    // The database holds secrets (CA keys): create it readable by the owner only.
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(file).map_err(|e| {
        BackendError::Storage(format!("cannot open database file {}: {e}", file.display()))
    })?;

    let conn = Connection::open(file).map_err(db_err)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(db_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(file = %file.display(), mode, "sqlite: WAL mode is not available");
    }
    conn.execute_batch("PRAGMA synchronous = FULL;")
        .map_err(db_err)?;
    conn.execute_batch(SCHEMA).map_err(db_err)?;
    Ok(conn)
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path`; if `path` is an existing directory,
    /// the file `<path>/sqlite.db`. Must be called within a tokio runtime.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, BackendError> {
        let file = db_file(path.as_ref());
        let f = file.clone();
        let conn = tokio::task::spawn_blocking(move || open_connection(&f))
            .await
            .map_err(|e| BackendError::Storage(format!("sqlite task failed: {e}")))??;
        let (events, _) = broadcast::channel(WATCH_CAPACITY);
        let inner = Arc::new(Inner {
            conn: Mutex::new(conn),
            events,
        });
        let tasks = Tasks::default();
        let sweeper = sweep_while_alive(Arc::downgrade(&inner), "sqlite", |inner| async move {
            inner.run(sweep).await
        });
        tasks.push(tokio::spawn(sweeper));
        Ok(SqliteBackend {
            inner,
            path: file,
            tasks,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens a write transaction, taking the database's write lock at once.
fn write_tx(conn: &mut Connection) -> Result<Transaction<'_>, BackendError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)
}

/// Deletes, in one transaction, the rows that `sql` (a `DELETE … RETURNING key`) deletes with
/// `args`, then emits a delete event for each.
fn delete_where(
    conn: &mut Connection,
    events: &Sender,
    sql: &str,
    args: &[&dyn ToSql],
) -> Result<(), BackendError> {
    let tx = write_tx(conn)?;
    let keys = {
        let mut stmt = tx.prepare(sql).map_err(db_err)?;
        let rows = stmt.query_map(args, key_of).map_err(db_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err)?
    };
    tx.commit().map_err(db_err)?;
    for key in keys {
        emit(events, Event::delete(key));
    }
    Ok(())
}

fn sweep(conn: &mut Connection, events: &Sender) -> Result<(), BackendError> {
    let sql = "DELETE FROM kv WHERE expires IS NOT NULL AND expires <= ? RETURNING key";
    delete_where(conn, events, sql, params![now_micros()])
}

#[async_trait::async_trait]
impl Backend for SqliteBackend {
    async fn get(&self, key: &str) -> Result<Item, BackendError> {
        let key = key.to_string();
        self.inner
            .run(move |conn, _| {
                conn.query_row(
                    &format!(
                        "SELECT key, value, expires, revision FROM kv WHERE key = ? AND {LIVE}"
                    ),
                    params![key, now_micros()],
                    row_to_item,
                )
                .optional()
                .map_err(db_err)?
                .ok_or(BackendError::NotFound(key))
            })
            .await
    }

    async fn create(&self, item: Item) -> Result<Item, BackendError> {
        let item = prepare(item);
        self.inner
            .run(move |conn, events| {
                let tx = write_tx(conn)?;
                if live_exists(&tx, &item.key, now_micros())? {
                    return Err(BackendError::AlreadyExists(item.key));
                }
                upsert(&tx, &item)?;
                tx.commit().map_err(db_err)?;
                emit(events, Event::put(item.clone()));
                Ok(item)
            })
            .await
    }

    async fn put(&self, item: Item) -> Result<Item, BackendError> {
        let item = prepare(item);
        self.inner
            .run(move |conn, events| {
                upsert(conn, &item)?;
                emit(events, Event::put(item.clone()));
                Ok(item)
            })
            .await
    }

    async fn put_many(&self, items: Vec<Item>) -> Result<(), BackendError> {
        if items.is_empty() {
            return Ok(());
        }
        let items: Vec<Item> = items.into_iter().map(prepare).collect();
        self.inner
            .run(move |conn, events| {
                // One transaction: one sync for the whole batch.
                let tx = conn.transaction().map_err(db_err)?;
                for item in &items {
                    upsert(&tx, item)?;
                }
                tx.commit().map_err(db_err)?;
                for item in items {
                    emit(events, Event::put(item));
                }
                Ok(())
            })
            .await
    }

    async fn update(&self, item: Item) -> Result<Item, BackendError> {
        let item = prepare(item);
        self.inner
            .run(move |conn, events| {
                let n = conn
                    .execute(
                        &format!(
                            "UPDATE kv SET value = ?, expires = ?, revision = ? WHERE key = ? AND {LIVE}"
                        ),
                        params![
                            item.value,
                            item.expires.map(to_micros),
                            item.revision,
                            item.key,
                            now_micros()
                        ],
                    )
                    .map_err(db_err)?;
                if n == 0 {
                    return Err(BackendError::NotFound(item.key));
                }
                emit(events, Event::put(item.clone()));
                Ok(item)
            })
            .await
    }

    async fn compare_and_swap(&self, expected: &Item, replace: Item) -> Result<Item, BackendError> {
        same_key(expected, &replace)?;
        let item = prepare(replace);
        let old_value = expected.value.clone();
        self.inner
            .run(move |conn, events| {
                let tx = write_tx(conn)?;
                let now = now_micros();
                let n = tx
                    .execute(
                        &format!(
                            "UPDATE kv SET value = ?, expires = ?, revision = ?
                             WHERE key = ? AND value = ? AND {LIVE}"
                        ),
                        params![
                            item.value,
                            item.expires.map(to_micros),
                            item.revision,
                            item.key,
                            old_value,
                            now
                        ],
                    )
                    .map_err(db_err)?;
                if n == 0 {
                    return Err(if live_exists(&tx, &item.key, now)? {
                        BackendError::CompareFailed(item.key)
                    } else {
                        BackendError::NotFound(item.key)
                    });
                }
                tx.commit().map_err(db_err)?;
                emit(events, Event::put(item.clone()));
                Ok(item)
            })
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        let key = key.to_string();
        self.inner
            .run(move |conn, events| {
                let n = conn
                    .execute(
                        &format!("DELETE FROM kv WHERE key = ? AND {LIVE}"),
                        params![key, now_micros()],
                    )
                    .map_err(db_err)?;
                if n == 0 {
                    return Err(BackendError::NotFound(key));
                }
                emit(events, Event::delete(key));
                Ok(())
            })
            .await
    }

    async fn get_range(
        &self,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<Item>, BackendError> {
        let (start, end) = (start.to_string(), end.to_string());
        // SQLite reads a negative LIMIT as "no limit".
        let limit = if limit == 0 {
            -1
        } else {
            i64::try_from(limit).unwrap_or(i64::MAX)
        };
        self.inner
            .run(move |conn, _| {
                let now = now_micros();
                let mut stmt;
                let rows = if end.is_empty() {
                    stmt = conn
                        .prepare(&format!(
                            "SELECT key, value, expires, revision FROM kv
                             WHERE key >= ? AND {LIVE} ORDER BY key LIMIT ?"
                        ))
                        .map_err(db_err)?;
                    stmt.query_map(params![start, now, limit], row_to_item)
                } else {
                    stmt = conn
                        .prepare(&format!(
                            "SELECT key, value, expires, revision FROM kv
                             WHERE key >= ? AND key < ? AND {LIVE} ORDER BY key LIMIT ?"
                        ))
                        .map_err(db_err)?;
                    stmt.query_map(params![start, end, now, limit], row_to_item)
                }
                .map_err(db_err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
            })
            .await
    }

    async fn delete_range(&self, start: &str, end: &str) -> Result<(), BackendError> {
        let (start, end) = (start.to_string(), end.to_string());
        self.inner
            .run(move |conn, events| {
                if end.is_empty() {
                    let sql = "DELETE FROM kv WHERE key >= ? RETURNING key";
                    delete_where(conn, events, sql, params![start])
                } else {
                    let sql = "DELETE FROM kv WHERE key >= ? AND key < ? RETURNING key";
                    delete_where(conn, events, sql, params![start, end])
                }
            })
            .await
    }

    fn watch(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    async fn close(&self) -> Result<(), BackendError> {
        self.tasks.abort_all();
        Ok(())
    }
}
