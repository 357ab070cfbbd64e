//! In-memory adapters of eventkit's ports, shipped as real code for other crates' unit tests
//! (enable the `testing` feature as a dev-dependency), and a reader of the SAM template's
//! rules so a function's tests can check its routes against the deployed patterns.
//!
//! The adapters keep the conditions of the real services: the idempotency store takes a
//! lock only once, honouring expiry and in-progress expiry as the DynamoDB condition does;
//! the bus can be told to fail, as PutEvents does when throttled; the event store checks the
//! expected version and keeps each (stream, source, event id) once, refusing another
//! content under it, as the DynamoDB store does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
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
use crate::store::{check_append_size, guard_key, Appended, StoreError, StoredEvent};
use crate::RawEvent;

/// Locks `mutex` even if a test panicked while holding it (that test has already failed;
/// the others go on with its data). For in-memory adapters in other crates too.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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

/// The event store in memory, with [`crate::EventStore`]'s conditions: an append at any
/// version but the stream's is a [`StoreError::Conflict`]; an event whose stream, source and
/// id are stored is skipped when its content digest is the stored one and refuses the whole
/// append ([`StoreError::ConflictingDuplicate`]) when it is not. It also plays the other
/// writer of a race, fails on demand and counts requests, as the table would bill them.
#[derive(Default)]
pub struct MemoryEventStore {
    streams: Mutex<BTreeMap<String, Vec<StoredEvent>>>,
    /// By [`guard_key`]: the stored event's content digest.
    guards: Mutex<BTreeMap<String, String>>,
    /// Appended by another writer just before the next append, which then loses the race.
    racing: Mutex<Option<Vec<RawEvent>>>,
    failures_left: Mutex<u32>,
    reads: AtomicU32,
    appends: AtomicU32,
}

impl MemoryEventStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Appends `events` after the stream's last version, as the first writer would (not
    /// counted as a request; stored ones are skipped as by `append`).
    pub fn seed(&self, stream_id: &str, events: &[RawEvent]) -> Result<Appended, StoreError> {
        let current = self.version_of(stream_id);
        self.write(stream_id, current, events)
    }

    /// The next `append` first lets another writer append `events` (with [`Self::seed`]).
    pub fn race_next_append_with(&self, events: Vec<RawEvent>) {
        *lock(&self.racing) = Some(events);
    }

    /// The next `n` appends fail as if DynamoDB throttled them, writing nothing.
    pub fn fail_next(&self, n: u32) {
        *lock(&self.failures_left) = n;
    }

    /// (reads, appends) so far.
    pub fn requests(&self) -> (u32, u32) {
        (
            self.reads.load(Ordering::SeqCst),
            self.appends.load(Ordering::SeqCst),
        )
    }

    /// The digest the guard of (stream, source, event id) holds, if it exists.
    pub fn guard(&self, stream_id: &str, event_source: &str, event_id: &str) -> Option<String> {
        lock(&self.guards)
            .get(&guard_key(stream_id, event_source, event_id))
            .cloned()
    }

    /// Every event of `stream_id`, in version order.
    pub fn stream(&self, stream_id: &str) -> Vec<StoredEvent> {
        lock(&self.streams)
            .get(stream_id)
            .cloned()
            .unwrap_or_default()
    }

    pub async fn append(
        &self,
        stream_id: &str,
        expected_version: u64,
        events: &[RawEvent],
    ) -> Result<Appended, StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        if let Some(racing) = lock(&self.racing).take() {
            self.seed(stream_id, &racing)?;
        }
        {
            let mut left = lock(&self.failures_left);
            if *left > 0 {
                *left -= 1;
                return Err(StoreError::Dynamo(DynamoError::Unavailable(
                    "ProvisionedThroughputExceededException: failing on purpose \
                     (MemoryEventStore)"
                        .into(),
                )));
            }
        }
        self.write(stream_id, expected_version, events)
    }

    pub async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .stream(stream_id)
            .into_iter()
            .filter(|e| e.version >= from_version)
            .collect())
    }

    pub async fn current_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.version_of(stream_id))
    }

    fn version_of(&self, stream_id: &str) -> u64 {
        lock(&self.streams)
            .get(stream_id)
            .and_then(|s| s.last())
            .map_or(0, |e| e.version)
    }

    /// The guards first, then the version, as a cancelled transaction is read by
    /// `EventStore::append`.
    fn write(
        &self,
        stream_id: &str,
        expected: u64,
        events: &[RawEvent],
    ) -> Result<Appended, StoreError> {
        check_append_size(events)?;
        let mut streams = lock(&self.streams);
        let mut guards = lock(&self.guards);
        let mut fresh = Vec::new();
        let mut already_stored = Vec::new();
        for event in events {
            let key = guard_key(stream_id, &event.source, &event.metadata.event_id);
            match guards.get(&key) {
                Some(digest) if *digest == event.content_digest() => {
                    already_stored.push(event.metadata.event_id.clone())
                }
                Some(_) => {
                    return Err(StoreError::ConflictingDuplicate {
                        stream_id: stream_id.to_string(),
                        event_source: event.source.clone(),
                        event_id: event.metadata.event_id.clone(),
                    })
                }
                None => fresh.push(event),
            }
        }
        if fresh.is_empty() {
            return Ok(Appended {
                version: expected,
                written: vec![],
                already_stored,
            });
        }
        let stream = streams.entry(stream_id.to_string()).or_default();
        let current = stream.last().map_or(0, |e| e.version);
        if current != expected {
            return Err(StoreError::Conflict {
                stream_id: stream_id.to_string(),
                expected,
                actual: current,
            });
        }
        let now = chrono::Utc::now();
        for (i, event) in fresh.iter().enumerate() {
            let version = expected + 1 + i as u64;
            stream.push(StoredEvent::new(stream_id, version, event, &now));
            guards.insert(
                guard_key(stream_id, &event.source, &event.metadata.event_id),
                event.content_digest(),
            );
        }
        Ok(Appended {
            version: expected + fresh.len() as u64,
            written: fresh.iter().map(|e| e.metadata.event_id.clone()).collect(),
            already_stored,
        })
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
        return Err(format!(
            "{logical_id} is not an AWS::Events::Rule in the template"
        ));
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

#[cfg(test)]
mod tests {
    //! The in-memory adapters must behave like the real ones, or the tests built on them
    //! prove nothing: the idempotency conditions, checked through `Idempotency::run`.
    use super::*;
    use crate::idempotency::{IdempotencyError, Outcome};

    async fn run(
        idem: &Idempotency,
        key: &str,
        payload: &str,
        in_progress_for: Duration,
        result: Result<u32, &'static str>,
    ) -> Result<Outcome<u32>, IdempotencyError<&'static str>> {
        idem.run(key, payload, in_progress_for, || async move { result })
            .await
    }

    #[tokio::test]
    async fn work_runs_once_per_key_and_duplicates_get_its_result() {
        let idem = Idempotency::in_memory("svc");
        let long = Duration::from_secs(30);
        assert_eq!(
            run(&idem, "k", "p", long, Ok(1)).await.unwrap(),
            Outcome::Executed(1)
        );
        assert_eq!(
            run(&idem, "k", "p", long, Ok(2)).await.unwrap(),
            Outcome::Duplicate(1)
        );
        assert!(matches!(
            run(&idem, "k", "other payload", long, Ok(3)).await,
            Err(IdempotencyError::PayloadMismatch(_))
        ));
        assert_eq!(
            run(&idem, "k2", "p", long, Ok(4)).await.unwrap(),
            Outcome::Executed(4)
        );
    }

    #[tokio::test]
    async fn failed_work_releases_the_key_for_a_retry() {
        let idem = Idempotency::in_memory("svc");
        let long = Duration::from_secs(30);
        assert!(matches!(
            run(&idem, "k", "p", long, Err("boom")).await,
            Err(IdempotencyError::Work("boom"))
        ));
        assert_eq!(
            run(&idem, "k", "p", long, Ok(5)).await.unwrap(),
            Outcome::Executed(5)
        );
    }

    #[tokio::test]
    async fn an_in_progress_lock_holds_until_its_run_would_have_timed_out() {
        let store = MemoryIdempotencyStore::new();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let lock = |in_progress_until_ms| Lock {
            validation: "v".into(),
            expires_at: now_ms / 1000 + 3600,
            in_progress_until_ms,
            now_ms,
        };
        assert_eq!(store.acquire("k", &lock(now_ms + 10_000)).await, Ok(None));
        let held = store.acquire("k", &lock(now_ms + 10_000)).await.unwrap();
        assert!(held.is_some_and(|r| !r.completed));
        // A run that died: its in-progress time is over, the next caller takes the key.
        assert_eq!(store.acquire("dead", &lock(now_ms - 1)).await, Ok(None));
        assert_eq!(
            store.acquire("dead", &lock(now_ms + 10_000)).await,
            Ok(None)
        );
    }

    #[tokio::test]
    async fn the_bus_fails_on_demand_and_then_publishes() {
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Ping {
            n: u32,
        }
        impl crate::EventData for Ping {
            const DETAIL_TYPE: &'static str = "Ping";
            const SOURCE: &'static str = "test";
        }
        #[derive(Debug, Clone, PartialEq)]
        struct Pings(Ping);
        impl crate::Payload for Pings {
            fn detail_type(&self) -> &'static str {
                "Ping"
            }
            fn source(&self) -> &'static str {
                "test"
            }
            fn schema_version(&self) -> u32 {
                1
            }
            fn to_data(&self) -> Value {
                crate::Payload::to_data(&self.0)
            }
        }
        impl EventSet for Pings {
            const ROUTES: &'static [Route] = &[<Ping as crate::EventData>::ROUTE];
            fn decode(raw: &crate::RawEvent) -> Result<Self, crate::DecodeError> {
                raw.decode::<Ping>().map(|e| Pings(e.data))
            }
            fn decode_stored(raw: &crate::RawEvent) -> Result<Self, crate::DecodeError> {
                raw.decode_stored::<Ping>().map(|e| Pings(e.data))
            }
        }
        let bus = MemoryBus::<Pings>::new();
        let event = Envelope::new(Pings(Ping { n: 1 }));
        bus.fail_next(1);
        assert!(bus.publish(std::slice::from_ref(&event)).await.is_err());
        assert!(bus.events().is_empty());
        bus.publish(std::slice::from_ref(&event)).await.unwrap();
        assert_eq!(bus.events(), vec![Pings(Ping { n: 1 })]);
    }

    fn raw(source: &str, id: &str, n: u32) -> RawEvent {
        RawEvent {
            source: source.into(),
            detail_type: "Counted".into(),
            metadata: crate::EventMetadata {
                event_id: id.into(),
                schema_version: 1,
                correlation_id: "corr".into(),
                causation_id: None,
                occurred_at: chrono::Utc::now(),
            },
            data: serde_json::json!({ "n": n }),
        }
    }

    fn raws(stored: &[StoredEvent]) -> Vec<RawEvent> {
        stored.iter().map(StoredEvent::to_raw).collect()
    }

    #[tokio::test]
    async fn the_memory_store_keeps_an_id_once_per_stream_and_source() {
        let store = MemoryEventStore::default();
        let (a, b) = (raw("shop", "e1", 1), raw("shop", "e1", 2));
        store
            .append("order#a", 0, std::slice::from_ref(&a))
            .await
            .unwrap();
        // The same id in another stream, or from another source, is another event.
        store
            .append("order#b", 0, std::slice::from_ref(&b))
            .await
            .unwrap();
        let other_source = raw("payments", "e1", 1);
        store
            .append("order#a", 1, std::slice::from_ref(&other_source))
            .await
            .unwrap();
        assert_eq!(
            raws(&store.stream("order#a")),
            vec![a.clone(), other_source]
        );
        assert_eq!(raws(&store.stream("order#b")), vec![b]);
        assert_eq!(
            store.guard("order#a", "shop", "e1"),
            Some(a.content_digest())
        );
    }

    #[tokio::test]
    async fn the_memory_store_skips_a_redelivery_and_refuses_other_content_under_its_id() {
        let store = MemoryEventStore::default();
        let first = raw("shop", "e1", 1);
        store
            .append("order#a", 0, std::slice::from_ref(&first))
            .await
            .unwrap();
        let mut redelivered = first.clone();
        redelivered.metadata.occurred_at += chrono::Duration::seconds(5);
        let again = store
            .append("order#a", 1, &[redelivered, raw("shop", "e2", 2)])
            .await
            .unwrap();
        assert_eq!(
            again,
            Appended {
                version: 2,
                written: vec!["e2".into()],
                already_stored: vec!["e1".into()],
            }
        );
        let err = store
            .append("order#a", 2, &[raw("shop", "e3", 3), raw("shop", "e1", 9)])
            .await
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::ConflictingDuplicate {
                stream_id: "order#a".into(),
                event_source: "shop".into(),
                event_id: "e1".into(),
            }
        );
        assert_eq!(store.stream("order#a").len(), 2, "nothing of it written");
        assert_eq!(
            store.append("order#a", 1, &[raw("shop", "e4", 4)]).await,
            Err(StoreError::Conflict {
                stream_id: "order#a".into(),
                expected: 1,
                actual: 2,
            })
        );
    }

    #[test]
    fn the_first_writer_wins_in_a_memory_table() {
        let table = MemoryTable::default();
        assert_eq!(table.first_write("k", 1), FirstWrite::Written);
        assert_eq!(table.first_write("k", 2), FirstWrite::Existing(1));
        assert_eq!(table.update_if("k", |v| *v == 2), None);
        assert_eq!(
            table.update_if("k", |v| std::mem::replace(v, 3) == 1),
            Some(3)
        );
        assert_eq!(table.get("k"), Some(3));
    }
}
