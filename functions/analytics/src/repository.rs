//! The analytics table: counters, and a marker per counted event, written together.
//!
//! # Why each event is counted exactly once
//!
//! Why one transaction instead of the usual idempotency step followed by the update: the
//! two-step way has a window between its steps that a crash (timeout, OOM, a lost
//! response) can fall into. Mark first, then count, and a crash in between loses the count
//! for good (the redelivery sees the mark and skips). Count first, then mark (or take an
//! "in progress" lock that expires), and a crash in between counts the redelivery a second
//! time. Counters are not idempotent (`ADD` is not a `SET`), so neither window is
//! harmless. In one `TransactWriteItems` the marker and the counters commit together or not
//! at all: whatever crashes when, an event is either fully counted with its marker, or not
//! at all and free to be retried. There is no window left, and it costs one round trip.
//!
//! A chunk of a batch's events shares that round trip: one transaction holds every event's
//! marker and the sum of *that chunk's* counter additions ([`crate::batch`]; a batch is a few
//! such chunks, one after the other, [`crate::service`]). It stays exactly once per event,
//! because it is all or nothing for the whole chunk: if any marker exists, the transaction
//! is cancelled and writes nothing, DynamoDB names the markers whose condition failed
//! ([`Applied::Duplicates`]), and the caller writes the others again without them. A
//! redelivered event therefore adds zero, and the others of its chunk add once, in the
//! transaction that commits. No chunk's additions include another chunk's events, so what
//! becomes of one chunk (committed, cancelled, never started) changes nothing for another.
//!
//! # Why an id only stands for the same event
//!
//! Event ids are the producers' choice, and the shop front can reuse one (by mistake, or
//! computing a derived id in advance). A marker is therefore keyed by source and event id
//! ([`marker_key`]): another producer's id is never this one's. It also records the event's
//! content digest (`Envelope::content_digest`), and an event whose marker exists is only a
//! duplicate if its digest is the recorded one ([`CounterStore::recheck`]); another event
//! from the same source under the same id is refused as a conflicting duplicate, counted
//! neither time it comes.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};
use eventkit::dynamo::attr::{get_s, n, s};
use eventkit::dynamo::{transact_write, Transaction};
use eventkit::{DynamoError, HandlerError};

use crate::batch::TransactionPlan;
use crate::counters::{CounterKey, CounterUpdate};

/// How long a marker keeps a redelivery from being counted again: longer than every way the
/// same event can come back. EventBridge retries for at most 24 hours; a queue keeps a
/// message 4 days and its DLQ 14 (`MessageRetentionPeriod` in infra/template.yaml), and a
/// message redriven from the DLQ spends up to 4 more days in the queue: 22 days end to end,
/// so 35 leave two weeks for an operator to redrive late. `orderflow replay --to-bus`
/// refuses events older than [`REPLAY_HORIZON`], which this covers with a day to spare.
///
/// The expiry counts from when the marker is written ([`Marker::counted_at`]), never from
/// the sender's `occurredAt`: that is the sender's word, and an expiry computed from an old
/// one could lie in the past, where DynamoDB may delete the marker at once, or, more than
/// five years back, not at all ("Items with an expiration time older than five years in the
/// past are not deleted", Using time to live (TTL) in DynamoDB, Before you start,
/// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/time-to-live-ttl-before-you-start.html).
pub const MARKER_TTL: Duration = Duration::from_secs(35 * 24 * 3600);

/// The oldest stored event a replay to the bus may publish again: a day less than
/// [`MARKER_TTL`], because analytics may have counted an event a little before the store
/// recorded it.
pub const REPLAY_HORIZON: Duration = Duration::from_secs(34 * 24 * 3600);

/// The "already counted" record of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The source the event came from: ids are the producer's, so a marker only stands for
    /// the same id *from the same producer*; another producer's reuse of the id is counted.
    pub source: &'static str,
    pub event_id: String,
    pub detail_type: &'static str,
    /// The event's content digest (`Envelope::content_digest`): what tells a redelivery of
    /// this event from another event reusing its id.
    pub digest: String,
    pub counted_at: DateTime<Utc>,
}

impl Marker {
    pub fn key(&self) -> CounterKey {
        marker_key(self.source, &self.event_id)
    }

    /// Epoch seconds at which DynamoDB's TTL may delete the marker.
    pub fn expires_at(&self) -> i64 {
        self.counted_at.timestamp() + MARKER_TTL.as_secs() as i64
    }
}

/// `seen#<source>#<eventId>`, `-`. Neither part holds `#` (ids cannot), so no two pairs
/// share a key.
pub fn marker_key(source: &str, event_id: &str) -> CounterKey {
    CounterKey {
        pk: format!("seen#{source}#{event_id}"),
        sk: "-".into(),
    }
}

/// What the marker of an event that came again records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The same content (or a marker from before digests were kept): a redelivery.
    Same,
    /// Another event from the same source under the same id, with this digest.
    Other { digest: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Every marker was written and the counters moved.
    Counted,
    /// Nothing was written: the markers at these indexes of the plan's `markers` exist
    /// already (their events were counted before). Never empty. The other events are not
    /// counted yet; DynamoDB may not name every failed condition, so a retry without these
    /// can still find more.
    Duplicates(Vec<usize>),
}

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// Another transaction touched the same items at the same time (e.g. a counter of a
    /// busy hour, or a concurrent copy of an event). Retrying resolves it. Holds the
    /// per-item cancellation reasons, markers first.
    #[error("analytics table: transaction conflict: transaction cancelled: {0:?}")]
    Conflict(Vec<Option<String>>),
    /// The marker of `recheck` is gone (expired, or never written).
    #[error("analytics table: no marker for event {0}")]
    NoMarker(String),
    #[error("analytics table: {0}")]
    Dynamo(#[from] DynamoError),
}

impl From<RepositoryError> for HandlerError {
    fn from(e: RepositoryError) -> Self {
        match e {
            RepositoryError::Conflict(_) => HandlerError::transient("transaction-conflict", e),
            RepositoryError::Dynamo(dynamo) if dynamo.is_permanent() => dynamo.into(),
            RepositoryError::Dynamo(_) | RepositoryError::NoMarker(_) => {
                HandlerError::transient("analytics-table", e)
            }
        }
    }
}

/// The analytics table, as the handler needs it.
#[async_trait]
pub trait CounterStore: Send + Sync {
    /// Writes the plan's markers and applies its counter updates, atomically, unless one of
    /// the markers exists.
    async fn apply_once(&self, plan: &TransactionPlan) -> Result<Applied, RepositoryError>;

    /// What the existing marker of `marker`'s event records: the same event (then it also
    /// notes on it that the event came again, for operators and tests to see redeliveries)
    /// or another one. Counters are not touched.
    async fn recheck(&self, marker: &Marker) -> Result<Recorded, RepositoryError>;
}

/// The DynamoDB adapter.
pub struct DynamoCounterStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoCounterStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoCounterStore {
            client,
            table: table.into(),
        }
    }

    fn marker_put(&self, marker: &Marker) -> Result<TransactWriteItem, DynamoError> {
        let key = marker.key();
        let put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(key.pk))
            .item("sk", s(key.sk))
            .item("expiresAt", n(marker.expires_at()))
            .item("detailType", s(marker.detail_type))
            .item("digest", s(&marker.digest))
            .item(
                "countedAt",
                s(eventkit::envelope::format_time(&marker.counted_at)),
            )
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| DynamoError::Rejected(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn counter_update(&self, update: &CounterUpdate) -> Result<TransactWriteItem, DynamoError> {
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut adds = Vec::with_capacity(update.add.len());
        for (i, (attribute, amount)) in update.add.iter().enumerate() {
            names.insert(format!("#a{i}"), attribute.to_string());
            values.insert(format!(":a{i}"), n(amount));
            adds.push(format!("#a{i} :a{i}"));
        }
        let built = Update::builder()
            .table_name(&self.table)
            .key("pk", s(&update.key.pk))
            .key("sk", s(&update.key.sk))
            .update_expression(format!("ADD {}", adds.join(", ")))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| DynamoError::Rejected(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(built).build())
    }
}

#[async_trait]
impl CounterStore for DynamoCounterStore {
    async fn apply_once(&self, plan: &TransactionPlan) -> Result<Applied, RepositoryError> {
        // The markers go first: `classify` reads the reasons at their indexes.
        let mut items = Vec::with_capacity(plan.items());
        for marker in &plan.markers {
            items.push(self.marker_put(marker)?);
        }
        for update in &plan.counters {
            items.push(self.counter_update(update)?);
        }
        let codes = match transact_write(&self.client, items).await? {
            Transaction::Committed => return Ok(Applied::Counted),
            Transaction::Cancelled(codes) => codes,
        };
        let reasons: Vec<Option<&str>> = codes.iter().map(Option::as_deref).collect();
        match classify(&reasons, plan.markers.len()) {
            Cancelled::MarkersExist(indexes) => Ok(Applied::Duplicates(indexes)),
            Cancelled::Conflict => Err(RepositoryError::Conflict(codes)),
            Cancelled::Other => {
                Err(DynamoError::Unavailable(format!("transaction cancelled: {codes:?}")).into())
            }
        }
    }

    async fn recheck(&self, marker: &Marker) -> Result<Recorded, RepositoryError> {
        let key = marker.key();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key.pk))
            .key("sk", s(key.sk))
            .update_expression("ADD duplicates :one")
            // `attribute_exists`: never recreate a marker TTL has removed, it would have no
            // `expiresAt` and stay forever. The digest: only the same event is noted as a
            // redelivery; markers from before digests were kept have none to compare.
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(digest) OR digest = :digest)",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":digest", s(&marker.digest))
            // The stored marker comes back with a failed condition, so telling "gone" from
            // "another event" takes no second round trip.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Recorded::Same),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    match failed.item() {
                        Some(item) => Ok(Recorded::Other {
                            digest: get_s(item, "digest").unwrap_or_default().to_string(),
                        }),
                        None => Err(RepositoryError::NoMarker(marker.event_id.clone())),
                    }
                }
                _ => Err(DynamoError::from_sdk(&e).into()),
            },
        }
    }
}

/// Why a transaction was cancelled, from its per-item reason codes (markers first).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cancelled {
    /// The `attribute_not_exists` of the markers at these indexes failed: their events were
    /// counted before.
    MarkersExist(Vec<usize>),
    /// A concurrent transaction on one of the items.
    Conflict,
    Other,
}

/// `markers`: how many of the codes are the markers'.
fn classify(codes: &[Option<&str>], markers: usize) -> Cancelled {
    // A failed marker condition settles it for that event, whatever else failed alongside:
    // the event is counted and retrying it would only find the marker again. The rest are
    // retried without it, which also sorts out a conflict that came with it.
    let existing: Vec<usize> = codes
        .iter()
        .take(markers)
        .enumerate()
        .filter(|(_, code)| **code == Some("ConditionalCheckFailed"))
        .map(|(i, _)| i)
        .collect();
    if !existing.is_empty() {
        Cancelled::MarkersExist(existing)
    } else if codes.contains(&Some("TransactionConflict")) {
        Cancelled::Conflict
    } else {
        Cancelled::Other
    }
}

/// The table in memory, with the DynamoDB adapter's conditions and limits: markers are
/// written only if absent, markers and counters change together or not at all, and a
/// transaction of more than 100 items, naming an item twice, or with a key over 2 KB is
/// refused as DynamoDB refuses it.
#[cfg(any(test, feature = "testing"))]
pub mod memory {
    use super::*;
    use crate::batch::MAX_TRANSACTION_ITEMS;
    use eventkit::testing::{lock, MemoryTable};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Mutex;

    /// DynamoDB's limit on a partition key ("Partition key length: 2048 bytes").
    const MAX_PARTITION_KEY: usize = 2048;

    /// A marker item as the DynamoDB adapter writes it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct StoredMarker {
        pub detail_type: &'static str,
        pub digest: String,
        pub expires_at: i64,
        pub duplicates: u64,
    }

    #[derive(Default)]
    pub struct MemoryCounterStore {
        /// Keyed by the marker's `pk`.
        pub markers: MemoryTable<StoredMarker>,
        /// Keyed by `<pk> <sk>`; attribute -> value.
        pub counters: MemoryTable<BTreeMap<&'static str, u128>>,
        /// Every transaction asked for, committed or not, as its event ids.
        transactions: Mutex<Vec<Vec<String>>>,
        conflicts_left: Mutex<u32>,
        /// Name at most this many failed marker conditions per cancellation.
        duplicates_named: Mutex<Option<usize>>,
    }

    impl MemoryCounterStore {
        /// The next `n` transactions are cancelled as `TransactionConflict`, writing nothing.
        pub fn conflict_next(&self, n: u32) {
            *lock(&self.conflicts_left) = n;
        }

        /// Cancellations name only the first `n` existing markers (DynamoDB does not promise
        /// to evaluate every condition of a cancelled transaction).
        pub fn name_duplicates_at_most(&self, n: usize) {
            *lock(&self.duplicates_named) = Some(n);
        }

        /// The transactions asked for so far, each as its events' ids.
        pub fn transactions(&self) -> Vec<Vec<String>> {
            lock(&self.transactions).clone()
        }

        /// A counter's value (0 when the item or attribute is missing).
        pub fn counter(&self, pk: &str, sk: &str, attribute: &str) -> u128 {
            self.counters
                .get(&format!("{pk} {sk}"))
                .and_then(|item| item.get(attribute).copied())
                .unwrap_or(0)
        }

        fn refusal(plan: &TransactionPlan) -> Option<String> {
            if plan.items() > MAX_TRANSACTION_ITEMS {
                return Some(format!("{} items in one transaction", plan.items()));
            }
            let keys: Vec<CounterKey> = plan
                .markers
                .iter()
                .map(Marker::key)
                .chain(plan.counters.iter().map(|c| c.key.clone()))
                .collect();
            if keys.iter().any(|k| k.pk.len() > MAX_PARTITION_KEY) {
                return Some("partition key over 2048 bytes".into());
            }
            let distinct: BTreeSet<&CounterKey> = keys.iter().collect();
            (distinct.len() < keys.len())
                .then(|| "multiple operations on one item in a transaction".into())
        }
    }

    #[async_trait]
    impl CounterStore for MemoryCounterStore {
        async fn apply_once(&self, plan: &TransactionPlan) -> Result<Applied, RepositoryError> {
            lock(&self.transactions)
                .push(plan.markers.iter().map(|m| m.event_id.clone()).collect());
            if let Some(why) = Self::refusal(plan) {
                return Err(DynamoError::Rejected(why).into());
            }
            {
                let mut left = lock(&self.conflicts_left);
                if *left > 0 {
                    *left -= 1;
                    let mut codes = vec![Some("None".to_string()); plan.items()];
                    if let Some(last) = codes.last_mut() {
                        *last = Some("TransactionConflict".into());
                    }
                    return Err(RepositoryError::Conflict(codes));
                }
            }
            let existing: Vec<usize> = plan
                .markers
                .iter()
                .enumerate()
                .filter(|(_, m)| self.markers.get(&m.key().pk).is_some())
                .map(|(i, _)| i)
                .take(lock(&self.duplicates_named).unwrap_or(usize::MAX))
                .collect();
            if !existing.is_empty() {
                return Ok(Applied::Duplicates(existing));
            }
            // Checked above and nothing awaits in between, so this is all or nothing, like
            // the transaction.
            for marker in &plan.markers {
                self.markers.put(
                    &marker.key().pk,
                    StoredMarker {
                        detail_type: marker.detail_type,
                        digest: marker.digest.clone(),
                        expires_at: marker.expires_at(),
                        duplicates: 0,
                    },
                );
            }
            for update in &plan.counters {
                let key = format!("{} {}", update.key.pk, update.key.sk);
                let mut item = self.counters.get(&key).unwrap_or_default();
                for (attribute, amount) in &update.add {
                    *item.entry(*attribute).or_default() += amount;
                }
                self.counters.put(&key, item);
            }
            Ok(Applied::Counted)
        }

        async fn recheck(&self, marker: &Marker) -> Result<Recorded, RepositoryError> {
            let pk = marker.key().pk;
            let same = self.markers.update_if(&pk, |m| {
                let same = m.digest == marker.digest;
                if same {
                    m.duplicates += 1;
                }
                same
            });
            match (same, self.markers.get(&pk)) {
                (Some(_), _) => Ok(Recorded::Same),
                (None, Some(stored)) => Ok(Recorded::Other {
                    digest: stored.digest,
                }),
                (None, None) => Err(RepositoryError::NoMarker(marker.event_id.clone())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_keyed_by_source_and_event_id_and_outlives_the_dlq() {
        let marker = Marker {
            source: "orderflow.orders",
            event_id: "e-1".into(),
            detail_type: "OrderPlaced",
            digest: "d".into(),
            counted_at: "2026-11-21T10:00:00Z".parse().unwrap(),
        };
        assert_eq!(
            marker.key(),
            CounterKey {
                pk: "seen#orderflow.orders#e-1".into(),
                sk: "-".into()
            }
        );
        let expected: DateTime<Utc> = "2026-12-26T10:00:00Z".parse().unwrap();
        assert_eq!(marker.expires_at(), expected.timestamp());
        let dlq_retention = 14 * 86_400;
        let queue_retention = 4 * 86_400;
        assert!(
            REPLAY_HORIZON.as_secs() > dlq_retention + 2 * queue_retention
                && REPLAY_HORIZON < MARKER_TTL,
            "a marker outlives every way an event comes back"
        );
        let other_producer = Marker {
            source: "orderflow.payment",
            ..marker.clone()
        };
        assert_ne!(other_producer.key(), marker.key());
    }

    #[test]
    fn cancellation_reasons_name_the_markers_that_exist() {
        let failed = Some("ConditionalCheckFailed");
        let none = Some("None");
        let conflict = Some("TransactionConflict");
        // given reasons for 3 markers then 2 counters
        assert_eq!(
            classify(&[none, failed, failed, none, none], 3),
            Cancelled::MarkersExist(vec![1, 2])
        );
        // a failed marker settles its event even alongside a conflict
        assert_eq!(
            classify(&[failed, none, none, conflict, none], 3),
            Cancelled::MarkersExist(vec![0])
        );
        // a counter's position never names an event
        assert_eq!(
            classify(&[none, none, none, failed, none], 3),
            Cancelled::Other
        );
    }

    #[test]
    fn cancellation_reasons_tell_conflicts_from_other_failures() {
        assert_eq!(
            classify(&[Some("None"), Some("TransactionConflict")], 1),
            Cancelled::Conflict
        );
        assert_eq!(
            classify(&[Some("TransactionConflict"), Some("None")], 1),
            Cancelled::Conflict
        );
        assert_eq!(
            classify(&[Some("None"), Some("ValidationError")], 1),
            Cancelled::Other
        );
        assert_eq!(classify(&[None, None], 1), Cancelled::Other);
        assert_eq!(classify(&[], 0), Cancelled::Other);
    }
}
