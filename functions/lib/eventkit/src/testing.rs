//! In-memory adapters of eventkit's ports, shipped as real code for other crates' unit tests
//! (enable the `testing` feature as a dev-dependency), and a reader of the SAM template's
//! rules so a function's tests can check its routes against the deployed patterns.
//!
//! The adapters keep the conditions of the real services: the idempotency store takes a
//! lock only once, honouring expiry and in-progress expiry as the DynamoDB condition does;
//! the bus can be told to fail, as PutEvents does when throttled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::dynamo::{DynamoError, FirstWrite};
use crate::envelope::Envelope;
use crate::event_set::EventSet;
use crate::idempotency::{Idempotency, IdempotencyRecord, IdempotencyStore, Lock};
use crate::lambda::Invocation;
use crate::publisher::{FailedEntry, Publish, PublishError};
use crate::routes::{event_pattern, Route};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock has already failed; go on with its data.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An event bus in memory: records what is published, in order, and fails on demand.
pub struct MemoryBus<E> {
    published: Mutex<Vec<Envelope<E>>>,
    failures_left: Mutex<u32>,
}

impl<E: EventSet> Default for MemoryBus<E> {
    fn default() -> Self {
        MemoryBus {
            published: Mutex::new(Vec::new()),
            failures_left: Mutex::new(0),
        }
    }
}

impl<E: EventSet> MemoryBus<E> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every envelope published so far, in order.
    pub fn published(&self) -> Vec<Envelope<E>> {
        lock(&self.published).clone()
    }

    /// The payloads published so far, in order.
    pub fn events(&self) -> Vec<E> {
        lock(&self.published)
            .iter()
            .map(|e| e.data.clone())
            .collect()
    }

    /// The next `n` publish calls fail as if every entry was throttled, publishing nothing.
    pub fn fail_next(&self, n: u32) {
        *lock(&self.failures_left) = n;
    }

    pub fn clear(&self) {
        lock(&self.published).clear();
    }
}

#[async_trait]
impl<E: EventSet> Publish<E> for MemoryBus<E> {
    async fn publish(&self, events: &[Envelope<E>]) -> Result<(), PublishError> {
        {
            let mut left = lock(&self.failures_left);
            if *left > 0 {
                *left -= 1;
                return Err(PublishError::NotPublished {
                    attempts: 1,
                    failed: events
                        .iter()
                        .map(|e| FailedEntry {
                            event_id: e.metadata.event_id.clone(),
                            detail_type: crate::Payload::detail_type(&e.data).to_string(),
                            error: "ThrottlingException: failing on purpose (MemoryBus)".into(),
                        })
                        .collect(),
                });
            }
        }
        lock(&self.published).extend(events.iter().cloned());
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct StoredRecord {
    completed: bool,
    expires_at: i64,
    in_progress_until_ms: i64,
    validation: String,
    data: Option<String>,
}

/// Idempotency records in memory, with the DynamoDB adapter's conditions.
#[derive(Default)]
pub struct MemoryIdempotencyStore {
    records: Mutex<BTreeMap<String, StoredRecord>>,
}

impl MemoryIdempotencyStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The keys that have a record (completed or in progress).
    pub fn keys(&self) -> Vec<String> {
        lock(&self.records).keys().cloned().collect()
    }
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotencyStore {
    async fn acquire(
        &self,
        key: &str,
        lock_asked: &Lock,
    ) -> Result<Option<IdempotencyRecord>, DynamoError> {
        let mut records = lock(&self.records);
        if let Some(r) = records.get(key) {
            if lock_asked.is_held_by(r.completed, r.expires_at, r.in_progress_until_ms) {
                return Ok(Some(IdempotencyRecord {
                    completed: r.completed,
                    validation: Some(r.validation.clone()),
                    data: r.data.clone(),
                }));
            }
        }
        records.insert(
            key.to_string(),
            StoredRecord {
                completed: false,
                expires_at: lock_asked.expires_at,
                in_progress_until_ms: lock_asked.in_progress_until_ms,
                validation: lock_asked.validation.clone(),
                data: None,
            },
        );
        Ok(None)
    }

    async fn complete(
        &self,
        key: &str,
        validation: &str,
        data: &str,
        expires_at: i64,
    ) -> Result<(), DynamoError> {
        lock(&self.records).insert(
            key.to_string(),
            StoredRecord {
                completed: true,
                expires_at,
                in_progress_until_ms: 0,
                validation: validation.to_string(),
                data: Some(data.to_string()),
            },
        );
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), DynamoError> {
        lock(&self.records).remove(key);
        Ok(())
    }
}

impl Idempotency {
    /// Idempotency over a fresh in-memory store.
    pub fn in_memory(scope: impl Into<String>) -> Self {
        Idempotency::with_store(MemoryIdempotencyStore::new(), scope)
    }
}

/// A table in memory, keyed by one string, for repository adapters in tests: first writer
/// wins, like a put with `attribute_not_exists(key)`.
pub struct MemoryTable<V> {
    items: Mutex<BTreeMap<String, V>>,
}

impl<V> Default for MemoryTable<V> {
    fn default() -> Self {
        MemoryTable {
            items: Mutex::new(BTreeMap::new()),
        }
    }
}

impl<V: Clone> MemoryTable<V> {
    /// Stores `value` at `key` unless something is there; that is returned instead.
    pub fn first_write(&self, key: &str, value: V) -> FirstWrite<V> {
        let mut items = lock(&self.items);
        match items.get(key) {
            Some(existing) => FirstWrite::Existing(existing.clone()),
            None => {
                items.insert(key.to_string(), value);
                FirstWrite::Written
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        lock(&self.items).get(key).cloned()
    }

    pub fn put(&self, key: &str, value: V) {
        lock(&self.items).insert(key.to_string(), value);
    }

    /// Changes the item at `key` if `change` says so (a conditional update): returns the
    /// item after the change, or `None` when there is no item or the condition failed.
    pub fn update_if(&self, key: &str, change: impl FnOnce(&mut V) -> bool) -> Option<V> {
        let mut items = lock(&self.items);
        let item = items.get_mut(key)?;
        let mut changed = item.clone();
        if change(&mut changed) {
            *item = changed.clone();
            Some(changed)
        } else {
            None
        }
    }

    pub fn remove(&self, key: &str) -> Option<V> {
        lock(&self.items).remove(key)
    }

    /// Every item, by key.
    pub fn items(&self) -> BTreeMap<String, V> {
        lock(&self.items).clone()
    }
}

/// An invocation with plenty of time left.
pub fn invocation() -> Invocation {
    Invocation::with_remaining(Duration::from_secs(30))
}

/// `infra/template.yaml`, from the workspace root.
pub fn template_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../infra/template.yaml")
}

/// The `EventPattern` of the rule `logical_id` in the SAM template, as JSON.
pub fn rule_pattern(logical_id: &str) -> Result<Value, String> {
    let path = template_path();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let template: serde_norway::Value =
        serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let rule = &template["Resources"][logical_id];
    if rule["Type"].as_str() != Some("AWS::Events::Rule") {
        return Err(format!("{logical_id} is not an AWS::Events::Rule in the template"));
    }
    let pattern = &rule["Properties"]["EventPattern"];
    serde_json::to_value(pattern).map_err(|e| format!("{logical_id}: EventPattern: {e}"))
}

/// Fails unless the template's rule `logical_id` matches exactly `routes`' pattern.
pub fn assert_rule_matches_routes(logical_id: &str, routes: &[Route]) {
    let expected = event_pattern(routes);
    let actual = rule_pattern(logical_id).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        actual,
        expected,
        "infra/template.yaml rule {logical_id} does not match the function's routes; \
         its EventPattern should be:\n{}",
        serde_json::to_string_pretty(&expected).unwrap_or_default()
    );
}
