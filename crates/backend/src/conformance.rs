//! The contract every [`Backend`] must meet, as async test cases.
//!
//! Each case takes a fresh, empty backend and panics on a violation. [`ALL`] lists the case names;
//! this crate runs every case against memory, sqlite and PostgreSQL (see `src/tests.rs`). Run with
//! a multi-threaded runtime: the concurrency cases spawn tasks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::broadcast;

use crate::{get_prefix, prefix_end, Backend, BackendError, Event, EventKind, Item};

/// The names of all cases, in the order the functions appear below.
pub const ALL: &[&str] = &[
    "crud",
    "compare_and_swap",
    "ranges",
    "values",
    "expiry",
    "expiry_sweep_emits_delete",
    "watch",
    "concurrent_cas",
    "concurrent_create",
    "unicode_keys",
    "put_many",
];

const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `check` every 20ms until it returns true; panics after [`DEADLINE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next event about `key`, skipping others; panics after [`DEADLINE`].
pub async fn next_event_for(rx: &mut broadcast::Receiver<Event>, key: &str) -> Event {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for an event about {key:?}"))
            .expect("watch channel failed");
        if ev.item.key == key {
            return ev;
        }
    }
}

fn keys(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.key.as_str()).collect()
}

pub async fn crud(b: Arc<dyn Backend>) {
    assert!(matches!(b.get("a").await, Err(BackendError::NotFound(k)) if k == "a"));

    let created = b.create(Item::new("a", "1")).await.unwrap();
    assert_eq!(created.key, "a");
    assert_eq!(created.value, b"1");
    assert!(!created.revision.is_empty(), "revision must be set");
    assert_eq!(b.get("a").await.unwrap(), created);
    assert!(matches!(
        b.create(Item::new("a", "2")).await,
        Err(BackendError::AlreadyExists(k)) if k == "a"
    ));
    assert_eq!(b.get("a").await.unwrap().value, b"1");

    let put = b.put(Item::new("a", "3")).await.unwrap();
    assert_ne!(
        put.revision, created.revision,
        "every write gets a new revision"
    );
    assert_eq!(b.get("a").await.unwrap(), put);
    let put_new = b.put(Item::new("b", "x")).await.unwrap();
    assert_eq!(b.get("b").await.unwrap(), put_new);

    let updated = b.update(Item::new("a", "4")).await.unwrap();
    assert_ne!(updated.revision, put.revision);
    assert_eq!(b.get("a").await.unwrap(), updated);
    assert!(matches!(
        b.update(Item::new("missing", "x")).await,
        Err(BackendError::NotFound(k)) if k == "missing"
    ));
    assert!(b.get("missing").await.unwrap_err().is_not_found());

    b.delete("a").await.unwrap();
    assert!(b.get("a").await.unwrap_err().is_not_found());
    assert!(matches!(b.delete("a").await, Err(BackendError::NotFound(k)) if k == "a"));
    // A deleted key can be created again.
    b.create(Item::new("a", "5")).await.unwrap();
    assert_eq!(b.get("a").await.unwrap().value, b"5");
}

pub async fn compare_and_swap(b: Arc<dyn Backend>) {
    let missing = Item::new("k", "v1");
    assert!(matches!(
        b.compare_and_swap(&missing, Item::new("k", "v2")).await,
        Err(BackendError::NotFound(_))
    ));

    let v1 = b.put(Item::new("k", "v1")).await.unwrap();
    let wrong = Item::new("k", "other");
    assert!(matches!(
        b.compare_and_swap(&wrong, Item::new("k", "v2")).await,
        Err(BackendError::CompareFailed(k)) if k == "k"
    ));
    assert_eq!(b.get("k").await.unwrap(), v1);

    // Only the value is compared: a stale revision in `expected` does not matter.
    let mut expected = v1.clone();
    expected.revision = "stale".into();
    let v2 = b
        .compare_and_swap(&expected, Item::new("k", "v2"))
        .await
        .unwrap();
    assert_eq!(v2.value, b"v2");
    assert_ne!(v2.revision, v1.revision);
    assert_eq!(b.get("k").await.unwrap(), v2);

    // The old value no longer matches.
    assert!(matches!(
        b.compare_and_swap(&v1, Item::new("k", "v3")).await,
        Err(BackendError::CompareFailed(_))
    ));
    assert!(matches!(
        b.compare_and_swap(&v2, Item::new("other", "v3")).await,
        Err(BackendError::BadParameter(_))
    ));
}

pub async fn ranges(b: Arc<dyn Backend>) {
    for k in ["b/1", "a/3", "a", "a/1", "a0", "a/2", "a/"] {
        b.put(Item::new(k, k)).await.unwrap();
    }
    let all = b.get_range("", "", 0).await.unwrap();
    assert_eq!(keys(&all), ["a", "a/", "a/1", "a/2", "a/3", "a0", "b/1"]);
    assert!(all.iter().all(|i| i.value == i.key.as_bytes()));

    // Half-open bounds.
    let r = b.get_range("a/1", "a/3", 0).await.unwrap();
    assert_eq!(keys(&r), ["a/1", "a/2"]);
    let r = b.get_range("a/1", "", 0).await.unwrap();
    assert_eq!(keys(&r), ["a/1", "a/2", "a/3", "a0", "b/1"]);
    // Limit.
    let r = b.get_range("a/", &prefix_end("a/"), 2).await.unwrap();
    assert_eq!(keys(&r), ["a/", "a/1"]);
    let r = b.get_range("", "", 1).await.unwrap();
    assert_eq!(keys(&r), ["a"]);
    // Empty and inverted ranges.
    assert!(b.get_range("a/2", "a/2", 0).await.unwrap().is_empty());
    assert!(b.get_range("b", "a", 0).await.unwrap().is_empty());
    assert!(b.get_range("c", "", 0).await.unwrap().is_empty());

    // Prefixes.
    let p = get_prefix(&*b, "a/").await.unwrap();
    assert_eq!(keys(&p), ["a/", "a/1", "a/2", "a/3"]);
    let p = get_prefix(&*b, "a").await.unwrap();
    assert_eq!(keys(&p), ["a", "a/", "a/1", "a/2", "a/3", "a0"]);
    assert_eq!(get_prefix(&*b, "").await.unwrap().len(), 7);
    assert!(get_prefix(&*b, "zz").await.unwrap().is_empty());

    // Range deletes.
    b.delete_range("b", "a").await.unwrap();
    b.delete_range("a/", &prefix_end("a/")).await.unwrap();
    let r = b.get_range("", "", 0).await.unwrap();
    assert_eq!(keys(&r), ["a", "a0", "b/1"]);
    b.delete_range("a0", "").await.unwrap();
    let r = b.get_range("", "", 0).await.unwrap();
    assert_eq!(keys(&r), ["a"]);
}

pub async fn values(b: Arc<dyn Backend>) {
    let empty = b.put(Item::new("empty", Vec::new())).await.unwrap();
    assert_eq!(b.get("empty").await.unwrap(), empty);
    let bytes: Vec<u8> = (0..=255u8).collect();
    b.put(Item::new("binary", bytes.clone())).await.unwrap();
    assert_eq!(b.get("binary").await.unwrap().value, bytes);
    let big = vec![7u8; 256 * 1024];
    b.put(Item::new("big", big.clone())).await.unwrap();
    assert_eq!(b.get("big").await.unwrap().value, big);

    // Expiry precision: what a write returns is what a read returns.
    let far = SystemTime::now() + Duration::from_nanos(3_600_000_000_123);
    let stored = b.put(Item::new("exp", "v").with_expiry(far)).await.unwrap();
    let expires = stored.expires.unwrap();
    assert!(expires <= far && far.duration_since(expires).unwrap() < Duration::from_micros(1));
    assert_eq!(b.get("exp").await.unwrap(), stored);
}

pub async fn expiry(b: Arc<dyn Backend>) {
    let past = SystemTime::now() - Duration::from_secs(1);
    b.put(Item::new("past", "v").with_expiry(past))
        .await
        .unwrap();
    assert!(b.get("past").await.unwrap_err().is_not_found());

    let soon = SystemTime::now() + Duration::from_millis(150);
    b.put(Item::new("soon", "v").with_expiry(soon))
        .await
        .unwrap();
    b.put(Item::new("stays", "v")).await.unwrap();
    assert_eq!(b.get("soon").await.unwrap().value, b"v");
    assert!(matches!(
        b.create(Item::new("soon", "w")).await,
        Err(BackendError::AlreadyExists(_))
    ));

    eventually("the item to expire", || async {
        b.get("soon").await.is_err_and(|e| e.is_not_found())
    })
    .await;
    assert_eq!(keys(&b.get_range("", "", 0).await.unwrap()), ["stays"]);
    assert!(b
        .update(Item::new("soon", "w"))
        .await
        .unwrap_err()
        .is_not_found());
    assert!(b
        .compare_and_swap(&Item::new("soon", "v"), Item::new("soon", "w"))
        .await
        .unwrap_err()
        .is_not_found());
    assert!(b.delete("past").await.unwrap_err().is_not_found());
    // An expired item does not block create.
    b.create(Item::new("soon", "again")).await.unwrap();
    assert_eq!(b.get("soon").await.unwrap().value, b"again");
}

pub async fn expiry_sweep_emits_delete(b: Arc<dyn Backend>) {
    let mut rx = b.watch();
    let soon = SystemTime::now() + Duration::from_millis(100);
    b.put(Item::new("ttl", "v").with_expiry(soon))
        .await
        .unwrap();
    let put = next_event_for(&mut rx, "ttl").await;
    assert_eq!(put.kind, EventKind::Put);
    let del = next_event_for(&mut rx, "ttl").await;
    assert_eq!(del.kind, EventKind::Delete);
    assert!(b.get("ttl").await.unwrap_err().is_not_found());
}

pub async fn watch(b: Arc<dyn Backend>) {
    let mut rx = b.watch();
    let put = b.put(Item::new("w/1", "one")).await.unwrap();
    let ev = next_event_for(&mut rx, "w/1").await;
    assert_eq!(ev.kind, EventKind::Put);
    assert_eq!(ev.item, put);

    let created = b.create(Item::new("w/2", "two")).await.unwrap();
    let ev = next_event_for(&mut rx, "w/2").await;
    assert_eq!((ev.kind, ev.item), (EventKind::Put, created));

    let updated = b.update(Item::new("w/1", "uno")).await.unwrap();
    let ev = next_event_for(&mut rx, "w/1").await;
    assert_eq!((ev.kind, ev.item), (EventKind::Put, updated.clone()));

    let swapped = b
        .compare_and_swap(&updated, Item::new("w/1", "eins"))
        .await
        .unwrap();
    let ev = next_event_for(&mut rx, "w/1").await;
    assert_eq!((ev.kind, ev.item), (EventKind::Put, swapped));

    b.delete("w/1").await.unwrap();
    let ev = next_event_for(&mut rx, "w/1").await;
    assert_eq!(ev.kind, EventKind::Delete);
    assert_eq!(ev.item.key, "w/1");

    // Failed writes emit nothing; the next event is the range delete of w/2.
    assert!(b.delete("w/1").await.is_err());
    assert!(b.create(Item::new("w/2", "x")).await.is_err());
    b.delete_range("w/", &prefix_end("w/")).await.unwrap();
    let ev = rx.recv().await.unwrap();
    assert_eq!((ev.kind, ev.item.key.as_str()), (EventKind::Delete, "w/2"));

    // A second watcher sees the same feed.
    let mut rx2 = b.watch();
    b.put(Item::new("w/3", "three")).await.unwrap();
    assert_eq!(next_event_for(&mut rx, "w/3").await.item.value, b"three");
    assert_eq!(next_event_for(&mut rx2, "w/3").await.item.value, b"three");
}

/// Runs `write(t)` for eight tasks `t` at once and returns the items of those that won; a
/// loser must fail as `lost` says it may.
async fn race<W, F>(write: W, lost: fn(&BackendError) -> bool) -> Vec<Item>
where
    W: Fn(usize) -> F,
    F: std::future::Future<Output = Result<Item, BackendError>> + Send + 'static,
{
    const TASKS: usize = 8;
    let handles: Vec<_> = (0..TASKS).map(|t| tokio::spawn(write(t))).collect();
    let mut winners = Vec::new();
    for h in handles {
        match h.await.unwrap() {
            Ok(item) => winners.push(item),
            Err(e) if lost(&e) => {}
            Err(e) => panic!("unexpected error of a write that lost a race: {e}"),
        }
    }
    winners
}

pub async fn concurrent_cas(b: Arc<dyn Backend>) {
    const ROUNDS: usize = 5;
    let mut current = b.put(Item::new("cas", "start")).await.unwrap();
    for round in 0..ROUNDS {
        let write = |t| {
            let b = Arc::clone(&b);
            let expected = current.clone();
            async move {
                let replace = Item::new("cas", format!("r{round}-t{t}"));
                b.compare_and_swap(&expected, replace).await
            }
        };
        let lost = |e: &BackendError| matches!(e, BackendError::CompareFailed(_));
        let mut winners = race(write, lost).await;
        assert_eq!(winners.len(), 1, "round {round}: exactly one CAS must win");
        current = winners.remove(0);
        assert_eq!(b.get("cas").await.unwrap(), current);
    }
}

pub async fn concurrent_create(b: Arc<dyn Backend>) {
    for round in 0..3 {
        let key = format!("create/{round}");
        let write = |t| {
            let b = Arc::clone(&b);
            let key = key.clone();
            async move { b.create(Item::new(key, format!("t{t}"))).await }
        };
        let lost = |e: &BackendError| matches!(e, BackendError::AlreadyExists(_));
        let winners = race(write, lost).await;
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one create must win"
        );
        assert_eq!(b.get(&key).await.unwrap(), winners[0]);
    }
}

pub async fn unicode_keys(b: Arc<dyn Backend>) {
    let names = [
        "ключ/z",
        "ключ/ä",
        "ключ/日本",
        "ключ/😀",
        "ключ/a b",
        "ключ/\u{7f}",
    ];
    for k in names {
        b.put(Item::new(k, k)).await.unwrap();
        assert_eq!(b.get(k).await.unwrap().value, k.as_bytes());
    }
    b.put(Item::new("ключа", "outside")).await.unwrap();
    b.put(Item::new("ключ", "outside")).await.unwrap();
    let mut expected: Vec<&str> = names.to_vec();
    expected.sort(); // str ordering is byte ordering
    let got = get_prefix(&*b, "ключ/").await.unwrap();
    assert_eq!(keys(&got), expected);
    // A prefix ending in a multi-byte char.
    let got = get_prefix(&*b, "ключ/日").await.unwrap();
    assert_eq!(keys(&got), ["ключ/日本"]);
    let got = get_prefix(&*b, "ключ").await.unwrap();
    assert_eq!(got.len(), names.len() + 2);
    b.delete("ключ/😀").await.unwrap();
    assert!(b.get("ключ/😀").await.unwrap_err().is_not_found());
}

pub async fn put_many(b: Arc<dyn Backend>) {
    let mut rx = b.watch();
    b.put(Item::new("m/0", "old")).await.unwrap();
    let _ = next_event_for(&mut rx, "m/0").await;
    let mut items: Vec<Item> = (0..1500)
        .map(|i| Item::new(format!("m/{i}"), format!("v{i}")))
        .collect();
    let mut expiring = Item::new("m/expiring", "soon");
    expiring.expires = Some(SystemTime::now() + Duration::from_secs(3600));
    items.push(expiring);
    b.put_many(items).await.unwrap();
    let all = get_prefix(b.as_ref(), "m/").await.unwrap();
    assert_eq!(all.len(), 1501);
    assert_eq!(b.get("m/0").await.unwrap().value, b"v0", "replaced");
    assert_eq!(b.get("m/1499").await.unwrap().value, b"v1499");
    assert!(b.get("m/expiring").await.unwrap().expires.is_some());
    // Each item is announced like a put.
    let ev = next_event_for(&mut rx, "m/1499").await;
    assert_eq!(ev.kind, EventKind::Put);
    assert_eq!(ev.item.value, b"v1499");
    // Nothing to do is fine.
    b.put_many(Vec::new()).await.unwrap();
}
