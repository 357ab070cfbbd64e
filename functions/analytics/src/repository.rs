//! The analytics table: counters, and a marker per counted event, written together.
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

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use eventkit::dynamo::attr::{n, s};
use eventkit::dynamo::{transact_write, Transaction};
use eventkit::{DynamoError, HandlerError};

use crate::counters::{CounterKey, CounterUpdate};

/// How long a marker keeps a redelivery from being counted again. Longer than any way the
/// same event can come back: EventBridge retries for at most an hour, the queue keeps a
/// message for 4 days; producers re-publish within minutes.
pub const MARKER_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The "already counted" record of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub event_id: String,
    pub detail_type: &'static str,
    pub counted_at: DateTime<Utc>,
}

impl Marker {
    pub fn key(&self) -> CounterKey {
        marker_key(&self.event_id)
    }

    /// Epoch seconds at which DynamoDB's TTL may delete the marker.
    pub fn expires_at(&self) -> i64 {
        self.counted_at.timestamp() + MARKER_TTL.as_secs() as i64
    }
}

/// `seen#<eventId>`, `-`.
pub fn marker_key(event_id: &str) -> CounterKey {
    CounterKey {
        pk: format!("seen#{event_id}"),
        sk: "-".into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The marker was written and the counters moved.
    Counted,
    /// The marker was there already: nothing was written.
    AlreadyCounted,
}

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// Another transaction touched the same items at the same time (e.g. a counter of a
    /// busy hour, or a concurrent copy of this event). Retrying resolves it. Holds the
    /// per-item cancellation reasons, marker first.
    #[error("analytics table: transaction conflict: transaction cancelled: {0:?}")]
    Conflict(Vec<Option<String>>),
    /// The marker of `note_duplicate` is gone (expired, or never written).
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
    /// Applies `updates` and writes `marker`, atomically, unless the marker exists.
    async fn apply_once(
        &self,
        marker: &Marker,
        updates: &[CounterUpdate],
    ) -> Result<Applied, RepositoryError>;

    /// Best effort: notes on an existing marker that the event came again. Only for
    /// operators (and tests) to see redeliveries; counters are not touched.
    async fn note_duplicate(&self, event_id: &str) -> Result<(), RepositoryError>;
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
    async fn apply_once(
        &self,
        marker: &Marker,
        updates: &[CounterUpdate],
    ) -> Result<Applied, RepositoryError> {
        // The marker goes first: `classify` reads its cancellation reason at index 0.
        let mut items = Vec::with_capacity(updates.len() + 1);
        items.push(self.marker_put(marker)?);
        for update in updates {
            items.push(self.counter_update(update)?);
        }
        let codes = match transact_write(&self.client, items).await? {
            Transaction::Committed => return Ok(Applied::Counted),
            Transaction::Cancelled(codes) => codes,
        };
        let reasons: Vec<Option<&str>> = codes.iter().map(Option::as_deref).collect();
        match classify(&reasons) {
            Cancelled::MarkerExists => Ok(Applied::AlreadyCounted),
            Cancelled::Conflict => Err(RepositoryError::Conflict(codes)),
            Cancelled::Other => {
                Err(DynamoError::Unavailable(format!("transaction cancelled: {codes:?}")).into())
            }
        }
    }

    async fn note_duplicate(&self, event_id: &str) -> Result<(), RepositoryError> {
        let key = marker_key(event_id);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key.pk))
            .key("sk", s(key.sk))
            .update_expression("ADD duplicates :one")
            // Never recreate a marker TTL has removed: it would have no `expiresAt` and
            // stay forever.
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => {
                    Err(RepositoryError::NoMarker(event_id.to_string()))
                }
                _ => Err(DynamoError::from_sdk(&e).into()),
            },
        }
    }
}

/// Why a transaction was cancelled, from its per-item reason codes (marker first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancelled {
    /// The marker's `attribute_not_exists` failed: the event was counted before.
    MarkerExists,
    /// A concurrent transaction on one of the items.
    Conflict,
    Other,
}

fn classify(codes: &[Option<&str>]) -> Cancelled {
    // A failed marker condition settles it, whatever else failed alongside: the event is
    // counted and retrying would only find the marker again.
    if codes.first().copied().flatten() == Some("ConditionalCheckFailed") {
        Cancelled::MarkerExists
    } else if codes.contains(&Some("TransactionConflict")) {
        Cancelled::Conflict
    } else {
        Cancelled::Other
    }
}

/// The table in memory, with the DynamoDB adapter's conditions: the marker is written only
/// if absent, and marker and counters change together or not at all.
#[cfg(test)]
pub(crate) mod memory {
    use super::*;
    use eventkit::testing::MemoryTable;
    use eventkit::FirstWrite;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// A marker item as the DynamoDB adapter writes it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct StoredMarker {
        pub detail_type: &'static str,
        pub expires_at: i64,
        pub duplicates: u64,
    }

    #[derive(Default)]
    pub struct MemoryCounterStore {
        /// Keyed by the marker's `pk`.
        pub markers: MemoryTable<StoredMarker>,
        /// Keyed by `<pk> <sk>`; attribute -> value.
        pub counters: MemoryTable<BTreeMap<&'static str, u64>>,
        conflicts_left: Mutex<u32>,
    }

    impl MemoryCounterStore {
        /// The next `n` transactions are cancelled as `TransactionConflict`, writing nothing.
        pub fn conflict_next(&self, n: u32) {
            *self.conflicts_left.lock().unwrap() = n;
        }

        /// A counter's value (0 when the item or attribute is missing).
        pub fn counter(&self, pk: &str, sk: &str, attribute: &str) -> u64 {
            self.counters
                .get(&format!("{pk} {sk}"))
                .and_then(|item| item.get(attribute).copied())
                .unwrap_or(0)
        }
    }

    #[async_trait]
    impl CounterStore for MemoryCounterStore {
        async fn apply_once(
            &self,
            marker: &Marker,
            updates: &[CounterUpdate],
        ) -> Result<Applied, RepositoryError> {
            {
                let mut left = self.conflicts_left.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    return Err(RepositoryError::Conflict(vec![
                        Some("None".into()),
                        Some("TransactionConflict".into()),
                    ]));
                }
            }
            let stored = StoredMarker {
                detail_type: marker.detail_type,
                expires_at: marker.expires_at(),
                duplicates: 0,
            };
            // Counter additions cannot fail once the marker is in, so writing the marker
            // first and then the counters is all or nothing, like the transaction.
            if let FirstWrite::Existing(_) = self.markers.first_write(&marker.key().pk, stored) {
                return Ok(Applied::AlreadyCounted);
            }
            for update in updates {
                let key = format!("{} {}", update.key.pk, update.key.sk);
                self.counters.first_write(&key, BTreeMap::new());
                self.counters.update_if(&key, |item| {
                    for (attribute, amount) in &update.add {
                        *item.entry(attribute).or_default() += amount;
                    }
                    true
                });
            }
            Ok(Applied::Counted)
        }

        async fn note_duplicate(&self, event_id: &str) -> Result<(), RepositoryError> {
            self.markers
                .update_if(&marker_key(event_id).pk, |m| {
                    m.duplicates += 1;
                    true
                })
                .map(drop)
                .ok_or_else(|| RepositoryError::NoMarker(event_id.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_keyed_by_event_id_and_expires_after_a_week() {
        let marker = Marker {
            event_id: "e-1".into(),
            detail_type: "OrderPlaced",
            counted_at: "2026-11-21T10:00:00Z".parse().unwrap(),
        };
        assert_eq!(
            marker.key(),
            CounterKey {
                pk: "seen#e-1".into(),
                sk: "-".into()
            }
        );
        let expected: DateTime<Utc> = "2026-11-28T10:00:00Z".parse().unwrap();
        assert_eq!(marker.expires_at(), expected.timestamp());
    }

    #[test]
    fn cancellation_reasons_tell_duplicates_from_conflicts() {
        assert_eq!(
            classify(&[Some("ConditionalCheckFailed"), Some("None")]),
            Cancelled::MarkerExists
        );
        assert_eq!(
            classify(&[Some("ConditionalCheckFailed"), Some("TransactionConflict")]),
            Cancelled::MarkerExists
        );
        assert_eq!(
            classify(&[Some("None"), Some("TransactionConflict")]),
            Cancelled::Conflict
        );
        assert_eq!(
            classify(&[Some("TransactionConflict"), Some("None")]),
            Cancelled::Conflict
        );
        assert_eq!(
            classify(&[Some("None"), Some("ValidationError")]),
            Cancelled::Other
        );
        assert_eq!(classify(&[]), Cancelled::Other);
    }
}
