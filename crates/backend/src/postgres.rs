//! The high-availability backend: PostgreSQL shared by several `teleport` processes.
//!
//! Schema (created if absent, under an advisory lock so that processes starting together do not
//! race): `kv(key bytea PRIMARY KEY, value bytea, expires timestamptz, revision text)`. Keys are
//! stored as their UTF-8 bytes, so `bytea` ordering (memcmp) matches the other backends.
//!
//! Every write is one autocommit statement, so it is atomic without client-side transactions:
//! `create` is `INSERT .. ON CONFLICT DO UPDATE .. WHERE <old row expired>`, `update` and
//! `compare_and_swap` are `UPDATE .. WHERE key = $k AND <live> [AND value = $expected]`. Under
//! READ COMMITTED a concurrent `UPDATE` re-checks its `WHERE` against the row committed by the
//! winner, so exactly one of several racing CAS succeeds, whatever process issued them.
//!
//! Change feed: an `AFTER INSERT OR UPDATE OR DELETE` row trigger on `kv` calls
//! `pg_notify('teleport_kv', json)` with `{"op":"P"|"D","key":<hex>,"revision":..}` and, when
//! key and value are small enough to fit the 8000-byte NOTIFY payload, `"value":<hex>` and
//! `"expires":<µs since epoch>`. Notifications are delivered at commit, in commit order, to every
//! listening session, so each process sees the writes of all processes (its own included) on a
//! dedicated LISTEN connection. For a large value the listener reads the row; if its revision
//! moved on (a later write, whose own notification follows) or it is gone, that Put is skipped.
//! If the LISTEN connection drops, it is re-established with backoff; changes committed while it
//! was down are not replayed (a warning is logged). Because the payload hex-encodes the key,
//! keys are limited to about 3900 bytes on this backend.
//!
//! The query connection is re-established on the next call after it is lost; the failed call
//! returns [`BackendError::Unavailable`].

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, Mutex};
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Notification, Row};

use crate::{
    from_micros, prepare, same_key, sweep_while_alive, Backend, BackendError, Event, Item, Tasks,
    WATCH_CAPACITY,
};

const CHANNEL: &str = "teleport_kv";

/// Arbitrary constant identifying the schema-migration advisory lock.
const SCHEMA_LOCK: i64 = 0x7465_6c65_6b76;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS kv (
    key bytea PRIMARY KEY,
    value bytea NOT NULL,
    expires timestamptz NULL,
    revision text NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires) WHERE expires IS NOT NULL;
CREATE OR REPLACE FUNCTION teleport_kv_notify() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    payload text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        payload := json_build_object('op', 'D', 'key', encode(OLD.key, 'hex'))::text;
    ELSIF octet_length(NEW.key) + octet_length(NEW.value) <= 3600 THEN
        payload := json_build_object(
            'op', 'P',
            'key', encode(NEW.key, 'hex'),
            'value', encode(NEW.value, 'hex'),
            'expires', (extract(epoch FROM NEW.expires) * 1000000)::bigint,
            'revision', NEW.revision)::text;
    ELSE
        payload := json_build_object(
            'op', 'P', 'key', encode(NEW.key, 'hex'), 'revision', NEW.revision)::text;
    END IF;
    PERFORM pg_notify('teleport_kv', payload);
    RETURN NULL;
END
$fn$;
DROP TRIGGER IF EXISTS teleport_kv_notify ON kv;
CREATE TRIGGER teleport_kv_notify AFTER INSERT OR UPDATE OR DELETE ON kv
    FOR EACH ROW EXECUTE FUNCTION teleport_kv_notify();
"#;

const LIVE: &str = "(expires IS NULL OR expires > $now)";

pub struct PostgresBackend {
    inner: Arc<Inner>,
    tasks: Tasks,
}

struct Inner {
    config: Config,
    client: Mutex<Option<Arc<Client>>>,
    events: broadcast::Sender<Event>,
}

fn pg_err(e: tokio_postgres::Error) -> BackendError {
    match e.as_db_error() {
        Some(db) => BackendError::Storage(format!("postgres: {db}")),
        None if e.is_closed() => BackendError::Unavailable(format!("postgres: {e}")),
        None => {
            // Connection-level failures (refused, reset, TLS ...) carry an io source.
            let io = std::error::Error::source(&e)
                .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
            if io {
                BackendError::Unavailable(format!("postgres: {e}"))
            } else {
                BackendError::Storage(format!("postgres: {e}"))
            }
        }
    }
}

/// Replaces `$now` in a statement by the given parameter number.
fn with_now(sql: &str, n: usize) -> String {
    sql.replace("$now", &format!("${n}"))
}

fn row_to_item(row: &Row) -> Result<Item, BackendError> {
    let key: Vec<u8> = row
        .try_get(0)
        .map_err(|e| BackendError::Storage(format!("postgres: bad key column: {e}")))?;
    let key = String::from_utf8(key)
        .map_err(|_| BackendError::Storage("postgres: stored key is not UTF-8".into()))?;
    let value = row
        .try_get(1)
        .map_err(|e| BackendError::Storage(format!("postgres: bad value of {key:?}: {e}")))?;
    let expires = row
        .try_get(2)
        .map_err(|e| BackendError::Storage(format!("postgres: bad expiry of {key:?}: {e}")))?;
    let revision = row
        .try_get(3)
        .map_err(|e| BackendError::Storage(format!("postgres: bad revision of {key:?}: {e}")))?;
    Ok(Item {
        key,
        value,
        expires,
        revision,
    })
}

async fn connect(config: &Config) -> Result<Client, BackendError> {
    let (client, conn) = config.connect(NoTls).await.map_err(pg_err)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "postgres backend: connection closed");
        }
    });
    Ok(client)
}

async fn ensure_schema(config: &Config) -> Result<(), BackendError> {
    let mut client = connect(config).await?;
    let tx = client.transaction().await.map_err(pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(pg_err)?;
    tx.batch_execute(SCHEMA).await.map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)
}

/// A session that LISTENs to the change channel.
struct Listener {
    _client: Client,
    notifications: mpsc::UnboundedReceiver<Notification>,
}

async fn listen(config: &Config) -> Result<Listener, BackendError> {
    let (client, mut conn) = config.connect(NoTls).await.map_err(pg_err)?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "postgres backend: change feed connection lost");
                    return;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(pg_err)?;
    Ok(Listener {
        _client: client,
        notifications: rx,
    })
}

#[derive(serde::Deserialize)]
struct Payload {
    op: String,
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    expires: Option<i64>,
    #[serde(default)]
    revision: Option<String>,
}

impl Inner {
    /// The query client, reconnecting if the previous connection was lost.
    async fn client(&self) -> Result<Arc<Client>, BackendError> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        *guard = None;
        let c = Arc::new(connect(&self.config).await?);
        *guard = Some(Arc::clone(&c));
        Ok(c)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, BackendError> {
        self.client()
            .await?
            .query(sql, params)
            .await
            .map_err(pg_err)
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, BackendError> {
        self.client()
            .await?
            .execute(sql, params)
            .await
            .map_err(pg_err)
    }

    /// Writes `item` by `sql`, whose parameters are the item's key, value, expiry and revision
    /// ($1 to $4), then `more`; returns how many rows it changed.
    async fn write(
        &self,
        sql: &str,
        item: &Item,
        more: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, BackendError> {
        let key = item.key.as_bytes();
        let mut params: Vec<&(dyn ToSql + Sync)> =
            vec![&key, &item.value, &item.expires, &item.revision];
        params.extend_from_slice(more);
        self.execute(sql, &params).await
    }

    async fn get(&self, key: &str) -> Result<Option<Item>, BackendError> {
        let sql = with_now(
            &format!("SELECT key, value, expires, revision FROM kv WHERE key = $1 AND {LIVE}"),
            2,
        );
        let now = SystemTime::now();
        let rows = self.query(&sql, &[&key.as_bytes(), &now]).await?;
        rows.first().map(row_to_item).transpose()
    }

    async fn sweep(&self) -> Result<(), BackendError> {
        // The trigger notifies the deletions.
        let now = SystemTime::now();
        self.execute("DELETE FROM kv WHERE expires <= $1", &[&now])
            .await
            .map(|_| ())
    }

    /// Turns one notification into an event.
    async fn dispatch(&self, payload: &str) -> Result<(), BackendError> {
        let p: Payload = serde_json::from_str(payload)
            .map_err(|e| BackendError::Storage(format!("bad change notification: {e}")))?;
        let key = hex::decode(&p.key)
            .ok()
            .and_then(|k| String::from_utf8(k).ok())
            .ok_or_else(|| BackendError::Storage("bad key in change notification".into()))?;
        let event = match (p.op.as_str(), p.value) {
            ("D", _) => Event::delete(key),
            ("P", Some(value)) => Event::put(Item {
                value: hex::decode(value).map_err(|_| {
                    BackendError::Storage(format!("bad value in change notification of {key:?}"))
                })?,
                expires: p.expires.map(from_micros),
                revision: p.revision.unwrap_or_default(),
                key,
            }),
            ("P", None) => match self.get(&key).await? {
                Some(item) if Some(&item.revision) == p.revision.as_ref() => Event::put(item),
                // Superseded: the later change has its own notification.
                _ => return Ok(()),
            },
            (op, _) => {
                return Err(BackendError::Storage(format!(
                    "unknown operation {op:?} in change notification"
                )))
            }
        };
        let _ = self.events.send(event);
        Ok(())
    }
}

/// Forwards notifications to watchers, re-establishing the LISTEN session when it drops.
async fn feed(config: Config, weak: Weak<Inner>, mut listener: Listener) {
    let mut backoff = Duration::from_millis(100);
    loop {
        while let Some(n) = listener.notifications.recv().await {
            let Some(inner) = weak.upgrade() else { return };
            if let Err(e) = inner.dispatch(n.payload()).await {
                tracing::warn!(error = %e, "postgres backend: change notification dropped");
            }
            backoff = Duration::from_millis(100);
        }
        tracing::warn!("postgres backend: change feed disconnected, reconnecting; changes made meanwhile are not replayed");
        loop {
            if weak.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            match listen(&config).await {
                Ok(l) => {
                    listener = l;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "postgres backend: change feed reconnect failed")
                }
            }
        }
    }
}

impl PostgresBackend {
    /// Connects, creates the schema if absent and starts the change feed and expiry sweeper.
    /// `conn_string` is `postgres://user[:password]@host:port/db` or `host=.. user=.. dbname=..`.
    pub async fn new(conn_string: &str) -> Result<Self, BackendError> {
        let config: Config = conn_string.parse().map_err(|e| {
            BackendError::BadParameter(format!("invalid PostgreSQL connection string: {e}"))
        })?;
        ensure_schema(&config).await?;
        let client = connect(&config).await?;
        // LISTEN before returning, so that a watcher taken now misses nothing that follows.
        let listener = listen(&config).await?;
        let (events, _) = broadcast::channel(WATCH_CAPACITY);
        let inner = Arc::new(Inner {
            config: config.clone(),
            client: Mutex::new(Some(Arc::new(client))),
            events,
        });
        let tasks = Tasks::default();
        tasks.push(tokio::spawn(feed(config, Arc::downgrade(&inner), listener)));
        let sweeper = sweep_while_alive(Arc::downgrade(&inner), "postgres", |inner| async move {
            inner.sweep().await
        });
        tasks.push(tokio::spawn(sweeper));
        Ok(PostgresBackend { inner, tasks })
    }
}

#[async_trait::async_trait]
impl Backend for PostgresBackend {
    async fn get(&self, key: &str) -> Result<Item, BackendError> {
        self.inner
            .get(key)
            .await?
            .ok_or_else(|| BackendError::NotFound(key.to_string()))
    }

    async fn create(&self, item: Item) -> Result<Item, BackendError> {
        let item = prepare(item);
        let now = SystemTime::now();
        let sql = "INSERT INTO kv (key, value, expires, revision) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO UPDATE
                 SET value = EXCLUDED.value, expires = EXCLUDED.expires, revision = EXCLUDED.revision
                 WHERE kv.expires IS NOT NULL AND kv.expires <= $5";
        let n = self.inner.write(sql, &item, &[&now]).await?;
        if n == 0 {
            return Err(BackendError::AlreadyExists(item.key));
        }
        Ok(item)
    }

    async fn put(&self, item: Item) -> Result<Item, BackendError> {
        let item = prepare(item);
        let sql = "INSERT INTO kv (key, value, expires, revision) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO UPDATE
                 SET value = EXCLUDED.value, expires = EXCLUDED.expires, revision = EXCLUDED.revision";
        self.inner.write(sql, &item, &[]).await?;
        Ok(item)
    }

    async fn put_many(&self, items: Vec<Item>) -> Result<(), BackendError> {
        // One statement per chunk (atomic on its own), the last write of a
        // key winning as with successive puts.
        let mut latest: std::collections::BTreeMap<String, Item> =
            std::collections::BTreeMap::new();
        for item in items {
            let item = prepare(item);
            latest.insert(item.key.clone(), item);
        }
        let items: Vec<Item> = latest.into_values().collect();
        for chunk in items.chunks(1000) {
            let keys: Vec<&[u8]> = chunk.iter().map(|i| i.key.as_bytes()).collect();
            let values: Vec<&[u8]> = chunk.iter().map(|i| i.value.as_slice()).collect();
            let expires: Vec<Option<SystemTime>> = chunk.iter().map(|i| i.expires).collect();
            let revisions: Vec<&str> = chunk.iter().map(|i| i.revision.as_str()).collect();
            self.inner
                .execute(
                    "INSERT INTO kv (key, value, expires, revision)
                     SELECT * FROM UNNEST($1::bytea[], $2::bytea[], $3::timestamptz[], $4::text[])
                     ON CONFLICT (key) DO UPDATE
                     SET value = EXCLUDED.value, expires = EXCLUDED.expires, revision = EXCLUDED.revision",
                    &[&keys, &values, &expires, &revisions],
                )
                .await?;
        }
        Ok(())
    }

    async fn update(&self, item: Item) -> Result<Item, BackendError> {
        let item = prepare(item);
        let now = SystemTime::now();
        let sql = with_now(
            &format!(
                "UPDATE kv SET value = $2, expires = $3, revision = $4 WHERE key = $1 AND {LIVE}"
            ),
            5,
        );
        let n = self.inner.write(&sql, &item, &[&now]).await?;
        if n == 0 {
            return Err(BackendError::NotFound(item.key));
        }
        Ok(item)
    }

    async fn compare_and_swap(&self, expected: &Item, replace: Item) -> Result<Item, BackendError> {
        same_key(expected, &replace)?;
        let item = prepare(replace);
        let now = SystemTime::now();
        let sql = with_now(
            &format!(
                "UPDATE kv SET value = $2, expires = $3, revision = $4
                 WHERE key = $1 AND value = $5 AND {LIVE}"
            ),
            6,
        );
        let n = self
            .inner
            .write(&sql, &item, &[&expected.value, &now])
            .await?;
        if n == 0 {
            return Err(match self.inner.get(&item.key).await? {
                Some(_) => BackendError::CompareFailed(item.key),
                None => BackendError::NotFound(item.key),
            });
        }
        Ok(item)
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        let now = SystemTime::now();
        let sql = with_now(&format!("DELETE FROM kv WHERE key = $1 AND {LIVE}"), 2);
        let n = self.inner.execute(&sql, &[&key.as_bytes(), &now]).await?;
        if n == 0 {
            return Err(BackendError::NotFound(key.to_string()));
        }
        Ok(())
    }

    async fn get_range(
        &self,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<Item>, BackendError> {
        let now = SystemTime::now();
        // PostgreSQL reads LIMIT NULL as "no limit".
        let limit: Option<i64> = (limit != 0).then(|| i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = if end.is_empty() {
            let sql = with_now(
                &format!(
                    "SELECT key, value, expires, revision FROM kv
                     WHERE key >= $1 AND {LIVE} ORDER BY key LIMIT $2"
                ),
                3,
            );
            self.inner
                .query(&sql, &[&start.as_bytes(), &limit, &now])
                .await?
        } else {
            let sql = with_now(
                &format!(
                    "SELECT key, value, expires, revision FROM kv
                     WHERE key >= $1 AND key < $2 AND {LIVE} ORDER BY key LIMIT $3"
                ),
                4,
            );
            self.inner
                .query(&sql, &[&start.as_bytes(), &end.as_bytes(), &limit, &now])
                .await?
        };
        rows.iter().map(row_to_item).collect()
    }

    async fn delete_range(&self, start: &str, end: &str) -> Result<(), BackendError> {
        if end.is_empty() {
            self.inner
                .execute("DELETE FROM kv WHERE key >= $1", &[&start.as_bytes()])
                .await?;
        } else {
            self.inner
                .execute(
                    "DELETE FROM kv WHERE key >= $1 AND key < $2",
                    &[&start.as_bytes(), &end.as_bytes()],
                )
                .await?;
        }
        Ok(())
    }

    fn watch(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    async fn close(&self) -> Result<(), BackendError> {
        self.tasks.abort_all();
        *self.inner.client.lock().await = None;
        Ok(())
    }
}
