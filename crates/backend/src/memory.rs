//! An in-memory backend for tests: a sorted map behind a mutex.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::broadcast;

use crate::{
    prepare, same_key, sweep_while_alive, Backend, BackendError, Event, Item, Tasks, WATCH_CAPACITY,
};

pub struct MemoryBackend {
    inner: Arc<Inner>,
    tasks: Tasks,
}

struct Inner {
    items: Mutex<BTreeMap<String, Item>>,
    events: broadcast::Sender<Event>,
}

impl Inner {
    fn lock(&self) -> Result<MutexGuard<'_, BTreeMap<String, Item>>, BackendError> {
        self.items
            .lock()
            .map_err(|_| BackendError::Storage("memory backend lock is poisoned".into()))
    }

    fn emit(&self, e: Event) {
        // No receivers is not an error.
        let _ = self.events.send(e);
    }

    fn sweep(&self) -> Result<(), BackendError> {
        let now = SystemTime::now();
        let mut items = self.lock()?;
        let expired: Vec<String> = items
            .values()
            .filter(|i| i.is_expired_at(now))
            .map(|i| i.key.clone())
            .collect();
        for key in expired {
            items.remove(&key);
            self.emit(Event::delete(key));
        }
        Ok(())
    }
}

impl MemoryBackend {
    /// A new empty backend. Starts the expiry sweeper when called within a tokio runtime
    /// (otherwise expired items are still invisible, only not removed).
    #[allow(clippy::unused_async)]
    pub async fn new() -> Self {
        let (events, _) = broadcast::channel(WATCH_CAPACITY);
        let inner = Arc::new(Inner {
            items: Mutex::new(BTreeMap::new()),
            events,
        });
        let tasks = Tasks::default();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let sweeper = sweep_while_alive(Arc::downgrade(&inner), "memory", |inner| async move {
                inner.sweep()
            });
            tasks.push(rt.spawn(sweeper));
        }
        MemoryBackend { inner, tasks }
    }

    fn live<'a>(items: &'a BTreeMap<String, Item>, key: &str, now: SystemTime) -> Option<&'a Item> {
        items.get(key).filter(|i| !i.is_expired_at(now))
    }

    fn store(&self, items: &mut BTreeMap<String, Item>, item: Item) -> Item {
        let item = prepare(item);
        items.insert(item.key.clone(), item.clone());
        self.inner.emit(Event::put(item.clone()));
        item
    }
}

fn range_bounds<'a>(start: &'a str, end: &'a str) -> Option<(Bound<&'a str>, Bound<&'a str>)> {
    if end.is_empty() {
        Some((Bound::Included(start), Bound::Unbounded))
    } else if start < end {
        Some((Bound::Included(start), Bound::Excluded(end)))
    } else {
        // BTreeMap::range panics on inverted bounds; the range is empty anyway.
        None
    }
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    async fn get(&self, key: &str) -> Result<Item, BackendError> {
        let items = self.inner.lock()?;
        Self::live(&items, key, SystemTime::now())
            .cloned()
            .ok_or_else(|| BackendError::NotFound(key.to_string()))
    }

    async fn create(&self, item: Item) -> Result<Item, BackendError> {
        let mut items = self.inner.lock()?;
        if Self::live(&items, &item.key, SystemTime::now()).is_some() {
            return Err(BackendError::AlreadyExists(item.key));
        }
        Ok(self.store(&mut items, item))
    }

    async fn put(&self, item: Item) -> Result<Item, BackendError> {
        let mut items = self.inner.lock()?;
        Ok(self.store(&mut items, item))
    }

    async fn update(&self, item: Item) -> Result<Item, BackendError> {
        let mut items = self.inner.lock()?;
        if Self::live(&items, &item.key, SystemTime::now()).is_none() {
            return Err(BackendError::NotFound(item.key));
        }
        Ok(self.store(&mut items, item))
    }

    async fn compare_and_swap(&self, expected: &Item, replace: Item) -> Result<Item, BackendError> {
        same_key(expected, &replace)?;
        let mut items = self.inner.lock()?;
        match Self::live(&items, &expected.key, SystemTime::now()) {
            None => Err(BackendError::NotFound(expected.key.clone())),
            Some(cur) if cur.value != expected.value => {
                Err(BackendError::CompareFailed(expected.key.clone()))
            }
            Some(_) => Ok(self.store(&mut items, replace)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        let mut items = self.inner.lock()?;
        if Self::live(&items, key, SystemTime::now()).is_none() {
            return Err(BackendError::NotFound(key.to_string()));
        }
        items.remove(key);
        self.inner.emit(Event::delete(key));
        Ok(())
    }

    async fn get_range(
        &self,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<Item>, BackendError> {
        let items = self.inner.lock()?;
        let Some(bounds) = range_bounds(start, end) else {
            return Ok(Vec::new());
        };
        let now = SystemTime::now();
        let limit = if limit == 0 { usize::MAX } else { limit };
        Ok(items
            .range::<str, _>(bounds)
            .map(|(_, i)| i)
            .filter(|i| !i.is_expired_at(now))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn delete_range(&self, start: &str, end: &str) -> Result<(), BackendError> {
        let mut items = self.inner.lock()?;
        let Some(bounds) = range_bounds(start, end) else {
            return Ok(());
        };
        let keys: Vec<String> = items
            .range::<str, _>(bounds)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            items.remove(&key);
            self.inner.emit(Event::delete(key));
        }
        Ok(())
    }

    fn watch(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    async fn close(&self) -> Result<(), BackendError> {
        self.tasks.abort_all();
        Ok(())
    }
}
