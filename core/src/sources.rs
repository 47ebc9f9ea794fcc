//! The source registry: write key → source, with per-source counters, cached in memory.

use crate::domain::WriteKey;
use crate::storage::{EventStore, SourceRow, StorageError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Per-source ingest counters, exported on `/metrics`.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Messages received (valid or not).
    pub received: AtomicU64,
    /// Stored and conforming to the plan.
    pub accepted: AtomicU64,
    /// Stored with violations, processed.
    pub flagged: AtomicU64,
    /// Stored with violations, not processed (plan policy).
    pub blocked: AtomicU64,
    /// Not messages at all (400s), kept in `rejected_messages`.
    pub rejected: AtomicU64,
    /// Dropped as a repeat of a messageId seen within 24 h.
    pub deduplicated: AtomicU64,
    /// Refused (429) by the source's rate limit, not stored.
    pub rate_limited: AtomicU64,
}

impl SourceCounters {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A source as request handlers see it.
#[derive(Debug)]
pub struct Source {
    /// Database id.
    pub id: i64,
    /// Name, e.g. `web`.
    pub name: String,
    /// Counters.
    pub counters: SourceCounters,
}

/// The in-memory registry.
#[derive(Default)]
pub struct Sources {
    by_key: RwLock<HashMap<String, Arc<Source>>>,
}

impl Sources {
    /// Loads every source from the store.
    pub async fn load(store: &dyn EventStore) -> Result<Sources, StorageError> {
        let sources = Sources::default();
        for row in store.sources().await? {
            sources.insert(row);
        }
        Ok(sources)
    }

    /// Adds or replaces a source in the cache.
    pub fn insert(&self, row: SourceRow) {
        let mut map = self.by_key.write().unwrap_or_else(|e| e.into_inner());
        let existing = map
            .iter()
            .find(|(_, s)| s.id == row.id)
            .map(|(k, _)| k.clone());
        if let Some(old_key) = existing {
            map.remove(&old_key);
        }
        map.insert(
            row.write_key,
            Arc::new(Source {
                id: row.id,
                name: row.name,
                counters: SourceCounters::default(),
            }),
        );
    }

    /// The source owning this write key.
    pub fn get(&self, key: &WriteKey) -> Option<Arc<Source>> {
        self.by_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key.as_ref())
            .cloned()
    }

    /// Every source, by name.
    pub fn all(&self) -> Vec<Arc<Source>> {
        let mut v: Vec<_> = self
            .by_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// A source by name.
    pub fn by_name(&self, name: &str) -> Option<Arc<Source>> {
        self.all().into_iter().find(|s| s.name == name)
    }
}
