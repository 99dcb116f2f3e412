//! Runs the conformance suite against every backend, plus backend-specific and audit tests.
//!
//! PostgreSQL tests need the server at 127.0.0.1:5432 (trust auth, user `postgres`); each test
//! creates its own database `bk_<random>` and drops it afterwards, also when the test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use crate::{conformance, open, Backend, EventKind, Item, MemoryBackend, StorageConfig};

const PG_HOST: &str = "127.0.0.1";
const PG_PORT: u16 = 5432;

pub(crate) struct Harness {
    pub backend: Arc<dyn Backend>,
    // Dropped after `backend` (fields drop in declaration order).
    _guard: Box<dyn Any + Send>,
}

pub(crate) async fn memory() -> Harness {
    Harness {
        backend: open(&StorageConfig::Memory).await.unwrap(),
        _guard: Box::new(()),
    }
}

pub(crate) async fn sqlite() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig::Sqlite {
        path: dir.path().join("data").join("backend.db"),
    };
    Harness {
        backend: open(&cfg).await.unwrap(),
        _guard: Box::new(dir),
    }
}

pub(crate) async fn postgres() -> Harness {
    let db = TestDb::create().await;
    let backend = open(&StorageConfig::Postgres {
        conn_string: db.url(),
    })
    .await
    .unwrap();
    Harness {
        backend,
        _guard: Box::new(db),
    }
}

/// A scratch PostgreSQL database, dropped (with its connections) when this is dropped.
pub(crate) struct TestDb {
    pub name: String,
}

fn admin_conn() -> String {
    format!("host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres")
}

async fn admin_client() -> tokio_postgres::Client {
    let (client, conn) = match tokio_postgres::connect(&admin_conn(), tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL is required for the backend tests and is unreachable at \
             {PG_HOST}:{PG_PORT} as user postgres (trust auth): {e}"
        ),
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("bk_{}", hex::encode(rand::random::<[u8; 8]>()));
        admin_client()
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        TestDb { name }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@{PG_HOST}:{PG_PORT}/{}", self.name)
    }

    pub fn key_value(&self) -> String {
        format!(
            "host={PG_HOST} port={PG_PORT} user=postgres dbname={}",
            self.name
        )
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime (even a single-threaded one): use a fresh thread.
        let res = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&admin_conn(), tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: cannot drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

macro_rules! suite {
    ($harness:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let h = $harness().await;
                crate::conformance::$case(Arc::clone(&h.backend)).await;
                h.backend.close().await.unwrap();
            }
        )*

        #[test]
        fn suite_is_complete() {
            let ran = [$(stringify!($case)),*];
            assert_eq!(ran.as_slice(), crate::conformance::ALL);
        }
    };
}

macro_rules! all_cases {
    ($harness:path) => {
        suite!($harness;
            crud,
            compare_and_swap,
            ranges,
            values,
            expiry,
            expiry_sweep_emits_delete,
            watch,
            concurrent_cas,
            concurrent_create,
            unicode_keys,
            put_many,
        );
    };
}

mod memory_conformance {
    use super::*;
    all_cases!(super::memory);
}

mod sqlite_conformance {
    use super::*;
    all_cases!(super::sqlite);
}

mod postgres_conformance {
    use super::*;
    all_cases!(super::postgres);
}

#[test]
fn prefix_end_cases() {
    use crate::prefix_end;
    assert_eq!(prefix_end("a/"), "a0");
    assert_eq!(prefix_end("abc"), "abd");
    assert_eq!(prefix_end(""), "");
    assert_eq!(prefix_end("日"), "旦");
    assert_eq!(prefix_end("a\u{D7FF}"), "a\u{E000}");
    assert_eq!(prefix_end("a\u{10FFFF}"), "b");
    assert_eq!(prefix_end("\u{10FFFF}\u{10FFFF}"), "");
    for p in ["a/", "x\u{7f}", "ключ", "😀"] {
        let end = prefix_end(p);
        assert!(p < end.as_str());
        assert!(format!("{p}\u{10FFFF}\u{10FFFF}").as_str() < end.as_str());
    }
}

#[test]
fn micros_round_trip() {
    use crate::{from_micros, to_micros};
    use std::time::UNIX_EPOCH;
    for m in [0i64, 1, -1, 1_700_000_000_123_456, -86_400_000_001] {
        assert_eq!(to_micros(from_micros(m)), m);
    }
    let t = UNIX_EPOCH - Duration::from_nanos(1500);
    assert_eq!(to_micros(t), -2);
}

#[test]
fn storage_config_debug_hides_conn_string() {
    let cfg = StorageConfig::Postgres {
        conn_string: "postgres://u:secret@h/db".into(),
    };
    assert!(!format!("{cfg:?}").contains("secret"));
}

#[tokio::test]
async fn sqlite_persists_and_accepts_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = crate::SqliteBackend::open(dir.path()).await.unwrap();
        assert_eq!(b.path(), dir.path().join("sqlite.db"));
        b.put(Item::new("k", "v")).await.unwrap();
        b.close().await.unwrap();
    }
    let b = crate::SqliteBackend::open(dir.path().join("sqlite.db"))
        .await
        .unwrap();
    assert_eq!(b.get("k").await.unwrap().value, b"v");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(b.path()).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "database file must not be group/world readable"
        );
    }
}

#[tokio::test]
async fn sqlite_bad_stored_data_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.db");
    let b = crate::SqliteBackend::open(&file).await.unwrap();
    let conn = rusqlite::Connection::open(&file).unwrap();
    conn.execute(
        "INSERT INTO kv (key, value, expires, revision) VALUES ('bad', 'text, not blob', 'x', 1)",
        [],
    )
    .unwrap();
    drop(conn);
    assert!(matches!(
        b.get("bad").await,
        Err(crate::BackendError::Storage(_)) | Err(crate::BackendError::NotFound(_))
    ));
    assert!(b.get_range("", "", 0).await.is_err());
}

/// Two backends on one database stand for two `teleport` processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_processes_share_state_and_feed() {
    let db = TestDb::create().await;
    let a = crate::PostgresBackend::new(&db.url()).await.unwrap();
    let b = crate::PostgresBackend::new(&db.key_value()).await.unwrap();
    let mut a_rx = a.watch();

    // A put through B is seen by A's watch and get, promptly.
    let started = std::time::Instant::now();
    let put = b.put(Item::new("shared/1", "from b")).await.unwrap();
    let ev = conformance::next_event_for(&mut a_rx, "shared/1").await;
    assert!(started.elapsed() < Duration::from_secs(2), "feed too slow");
    assert_eq!((ev.kind, ev.item), (EventKind::Put, put.clone()));
    assert_eq!(a.get("shared/1").await.unwrap(), put);

    // A large value travels by key and is read back by the watcher.
    let big = b
        .put(Item::new("shared/big", vec![1u8; 100_000]))
        .await
        .unwrap();
    let ev = conformance::next_event_for(&mut a_rx, "shared/big").await;
    assert_eq!((ev.kind, ev.item), (EventKind::Put, big));

    b.delete("shared/1").await.unwrap();
    let ev = conformance::next_event_for(&mut a_rx, "shared/1").await;
    assert_eq!(ev.kind, EventKind::Delete);
    assert!(a.get("shared/1").await.unwrap_err().is_not_found());

    // CAS races across the two processes: exactly one winner per round.
    let a: Arc<dyn Backend> = Arc::new(a);
    let b: Arc<dyn Backend> = Arc::new(b);
    let mut current = a.put(Item::new("shared/cas", "0")).await.unwrap();
    for round in 0..5 {
        let mut handles = Vec::new();
        for t in 0..6 {
            let backend = Arc::clone(if t % 2 == 0 { &a } else { &b });
            let expected = current.clone();
            handles.push(tokio::spawn(async move {
                backend
                    .compare_and_swap(&expected, Item::new("shared/cas", format!("{round}-{t}")))
                    .await
            }));
        }
        let mut winners = Vec::new();
        for h in handles {
            match h.await.unwrap() {
                Ok(i) => winners.push(i),
                Err(crate::BackendError::CompareFailed(_)) => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}");
        current = winners.remove(0);
        assert_eq!(b.get("shared/cas").await.unwrap(), current);
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn postgres_unreachable_is_an_error() {
    // Port 1 on localhost: nothing listens there.
    let err = crate::PostgresBackend::new("postgres://postgres@127.0.0.1:1/none")
        .await
        .err()
        .expect("connecting to a closed port must fail");
    assert!(err.is_retryable(), "{err}");
    let err = crate::PostgresBackend::new("not a ://connection string=")
        .await
        .err()
        .expect("a bad connection string must fail");
    assert!(matches!(err, crate::BackendError::BadParameter(_)), "{err}");
}

/// The query connection is re-established after it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reconnects() {
    let db = TestDb::create().await;
    let b = crate::PostgresBackend::new(&db.url()).await.unwrap();
    let mut rx = b.watch();
    b.put(Item::new("k", "1")).await.unwrap();
    let admin = admin_client().await;
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&db.name],
        )
        .await
        .unwrap();
    // The first call after the kill may fail (reported, not a panic); later ones succeed.
    let mut ok = false;
    for _ in 0..100 {
        if b.get("k").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "backend did not reconnect");
    // The change feed comes back too.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        b.put(Item::new("k", "2")).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            Ok(Ok(ev)) if ev.item.value == b"2" => break,
            _ => assert!(
                std::time::Instant::now() < deadline,
                "change feed did not reconnect"
            ),
        }
    }
}

mod audit {
    use super::*;
    use crate::audit::AuditLog;
    use serde_json::json;
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    async fn emit_and_search(b: Arc<dyn Backend>) {
        let log = AuditLog::new(b);
        let t0 = OffsetDateTime::parse("2026-11-23T10:00:00Z", &Rfc3339).unwrap();
        let at = |s: i64| (t0 + time::Duration::seconds(s)).format(&Rfc3339).unwrap();
        // Emitted out of order; the store returns time order.
        log.emit(
            json!({"event": "app.session.start", "code": "T2007I", "time": at(20), "user": "bob"}),
        )
        .await
        .unwrap();
        log.emit(json!({"event": "user.login", "code": "T1000I", "time": at(10), "user": "alice", "success": true}))
            .await
            .unwrap();
        log.emit(json!({"event": "user.login", "code": "T1000W", "time": at(30), "user": "eve", "success": false, "uid": "fixed-uid"}))
            .await
            .unwrap();

        let all = log
            .search(t0, t0 + time::Duration::seconds(60), &[], 0)
            .await
            .unwrap();
        let users: Vec<_> = all.iter().map(|e| e["user"].as_str().unwrap()).collect();
        assert_eq!(users, ["alice", "bob", "eve"]);
        assert!(all
            .iter()
            .all(|e| e["uid"].is_string() && e["time"].is_string()));
        assert_eq!(all[2]["uid"], "fixed-uid");

        let logins = log
            .search(
                t0,
                t0 + time::Duration::seconds(60),
                &["user.login".to_string()],
                0,
            )
            .await
            .unwrap();
        assert_eq!(logins.len(), 2);
        assert_eq!(logins[1]["code"], "T1000W");

        let limited = log
            .search(t0, t0 + time::Duration::seconds(60), &[], 2)
            .await
            .unwrap();
        assert_eq!(limited.len(), 2);

        // A grouped event (one stored item, emitted with others in one
        // write) reads back as one event per query, each with its own uid.
        log.emit_many(vec![
            json!({"event": "db.session.query", "code": "TDB02I", "time": at(100), "user": "carol",
                   "uid": "g", "db_queries": ["SET k v", "GET k", "AUTH ******"]}),
            json!({"event": "db.session.end", "code": "TDB01I", "time": at(101), "user": "carol"}),
        ])
        .await
        .unwrap();
        let window = t0 + time::Duration::seconds(100)..=t0 + time::Duration::seconds(101);
        let queries = log
            .search(
                *window.start(),
                *window.end(),
                &["db.session.query".to_string()],
                0,
            )
            .await
            .unwrap();
        let q: Vec<_> = queries
            .iter()
            .map(|e| e["db_query"].as_str().unwrap())
            .collect();
        assert_eq!(q, ["SET k v", "GET k", "AUTH ******"]);
        let uids: Vec<_> = queries.iter().map(|e| e["uid"].as_str().unwrap()).collect();
        assert_eq!(uids, ["g-0", "g-1", "g-2"]);
        assert!(queries
            .iter()
            .all(|e| e["user"] == "carol" && e.get("db_queries").is_none()));
        let two = log
            .search(*window.start(), *window.end(), &[], 2)
            .await
            .unwrap();
        assert_eq!(two.len(), 2, "the limit counts expanded events");
        assert_eq!(
            log.search(*window.start(), *window.end(), &[], 0)
                .await
                .unwrap()
                .len(),
            4
        );

        // Bounds are inclusive on both ends.
        let seconds = |from: i64, to: i64| {
            let (from, to) = (
                t0 + time::Duration::seconds(from),
                t0 + time::Duration::seconds(to),
            );
            let log = &log;
            async move { log.search(from, to, &[], 0).await.unwrap() }
        };
        assert_eq!(seconds(10, 20).await.len(), 2);
        assert!(seconds(31, 99).await.is_empty());

        // Defaults: uid and time are added, time is now.
        let before = OffsetDateTime::now_utc();
        log.emit(json!({"event": "instance.join", "code": "TJ002I"}))
            .await
            .unwrap();
        let recent = log
            .search(
                before - time::Duration::seconds(1),
                OffsetDateTime::now_utc(),
                &[],
                0,
            )
            .await
            .unwrap();
        assert_eq!(recent.len(), 1);
        let time = OffsetDateTime::parse(recent[0]["time"].as_str().unwrap(), &Rfc3339).unwrap();
        assert_eq!(time.offset(), time::UtcOffset::UTC);
        assert!(recent[0]["time"].as_str().unwrap().ends_with('Z'));

        assert!(log.emit(json!(["not", "an", "object"])).await.is_err());
        assert!(log
            .emit(json!({"event": "x", "time": "yesterday"}))
            .await
            .is_err());
    }

    async fn search_pages(b: Arc<dyn Backend>) {
        let log = AuditLog::new(Arc::clone(&b));
        let t0 = OffsetDateTime::parse("2026-01-01T00:00:00Z", &Rfc3339).unwrap();
        for i in 0..1200i64 {
            let kind = if i % 3 == 0 {
                "db.session.query"
            } else {
                "app.session.request"
            };
            let t = (t0 + time::Duration::milliseconds(i))
                .format(&Rfc3339)
                .unwrap();
            log.emit(json!({"event": kind, "time": t, "n": i}))
                .await
                .unwrap();
        }
        // A corrupt entry is skipped, not fatal.
        b.put(Item::new(
            format!("{}2026-01-01T00:00:00.000500000Z/zz", crate::audit::PREFIX),
            "not json",
        ))
        .await
        .unwrap();
        let end = t0 + time::Duration::seconds(2);
        let all = log.search(t0, end, &[], 0).await.unwrap();
        assert_eq!(all.len(), 1200);
        let ns: Vec<i64> = all.iter().map(|e| e["n"].as_i64().unwrap()).collect();
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "time order");
        let q = log
            .search(t0, end, &["db.session.query".to_string()], 0)
            .await
            .unwrap();
        assert_eq!(q.len(), 400);
        let q = log
            .search(t0, end, &["db.session.query".to_string()], 350)
            .await
            .unwrap();
        assert_eq!(q.len(), 350);
        assert_eq!(q[349]["n"], 349 * 3);
    }

    #[tokio::test]
    async fn memory_emit_and_search() {
        emit_and_search(Arc::new(MemoryBackend::new().await)).await;
    }

    #[tokio::test]
    async fn sqlite_emit_and_search() {
        let h = sqlite().await;
        emit_and_search(Arc::clone(&h.backend)).await;
    }

    #[tokio::test]
    async fn memory_search_pages() {
        search_pages(memory().await.backend).await;
    }

    #[tokio::test]
    async fn sqlite_search_pages() {
        let h = sqlite().await;
        search_pages(Arc::clone(&h.backend)).await;
    }
}
