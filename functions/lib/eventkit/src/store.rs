//! An append-only event store on one DynamoDB table.
//!
//! Layout (see `infra/template.yaml`): partition key `streamId` (S), sort key `version` (N).
//! - Each event is one item at `(streamId, version)`; versions start at 1, without gaps.
//! - Each event also owns a guard item at `(guard_key(stream, source, id), 0)` holding its
//!   [`RawEvent::content_digest`]. An event id is unique only within one stream and one
//!   source: the same id in another stream, or from another source, is another event. So
//!   a producer cannot silence an event of some other order by reusing its id, nor claim
//!   ahead an id one of the saga's (derived, predictable) decisions will use.
//! - Guard items carry neither `timeBucket` nor `source`, so the readers of the table's
//!   stream skip them: [`crate::stream::inserted_events`] (the projector and the outbox)
//!   takes only items with a `timeBucket`, and the outbox's filter takes only items whose
//!   `source` is the saga.
//! - The sparse GSI `byTime` (`timeBucket` = UTC day, `timeKey` = recorded time, stream and
//!   version) lists every event in global time order for replays and "state as of T".
//! - The sparse GSI `unpublished` (`unpublished` = one of [`UNPUBLISHED_SHARDS`] shard keys,
//!   `timeKey`) lists the events still to be published, when the store is built
//!   [`EventStore::marking_unpublished`] for a source: each event of that source is written
//!   with the mark in the same transaction as itself, so "stored" implies "marked"; whoever
//!   publishes it clears the mark ([`EventStore::clear_unpublished`]) and whoever sweeps
//!   lists what stays marked ([`EventStore::unpublished_before`]). See
//!   [Unpublished events](#unpublished-events).
//!
//! An append is one `TransactWriteItems`: a condition that the expected version exists,
//! and a condition per new version that it does not; so two writers at the same version
//! cannot both win, and the loser gets [`StoreError::Conflict`] to reload and retry.
//!
//! # Why an event is stored once, and a different one under its id never
//!
//! Each guard is put with `attribute_not_exists(streamId)` in the same transaction as its
//! event, so an event and its guard exist together or not at all. When a guard is already
//! there the append learns its digest from the cancellation itself (the guard's Put asks for
//! `ReturnValuesOnConditionCheckFailure = ALL_OLD`; TransactWriteItems then returns "the item
//! which caused the transaction to get cancelled" in that item's `CancellationReason`:
//! https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html),
//! or from a consistent read of the guard when no item came back. The same digest is a
//! redelivery: skipped, the rest is appended. Another digest is
//! [`StoreError::ConflictingDuplicate`]: nothing is written, since merging or dropping either
//! event would lose a fact. A guard the transaction could not check because another
//! transaction held it (`TransactionConflict`) says nothing about duplicates: it is a lost
//! race, a [`StoreError::Conflict`].
//!
//! # Unpublished events
//!
//! A transactional outbox read from the table's stream loses an event when the stream gives
//! up on its record (retries exhausted, or the 24-hour stream retention passed). The mark
//! makes the table itself the outbox: an event is unpublished for as long as its item has
//! the `unpublished` attribute, whatever happened to its stream record. The index holds only
//! marked items (a sparse index: "Take advantage of sparse indexes",
//! https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-indexes-general-sparse-indexes.html),
//! so it stays as small as the backlog; it projects keys only, since a sweep reads the few
//! events it finds from the table. The mark's value spreads streams over
//! [`UNPUBLISHED_SHARDS`] partition keys by a hash of the stream id, so no single index
//! partition takes every write, while one stream's events stay in one shard in time order.
//! Clearing is an UpdateItem `REMOVE unpublished` conditioned on the mark being there: the
//! condition makes a second clear (a redelivery, or a sweep racing the stream) a no-op, and
//! stops UpdateItem from creating an item at a version that was never appended ("Update
//! expressions", REMOVE, and "Condition expressions",
//! https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.UpdateExpressions.html#Expressions.UpdateExpressions.REMOVE).
//! BatchWriteItem cannot do this (it only puts and deletes whole items, without conditions),
//! so each published event costs one UpdateItem.
//!
//! Guards written before they were scoped (`$event#<id>`) are not consulted: the saga, the
//! store's one writer, also recognises a redelivery in the stream it reads.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::dynamo::attr::{get_s, n, s};
use crate::dynamo::{transact_write_detailed, DetailedTransaction, DynamoError, ItemCancellation};
use crate::envelope::{format_time, Envelope, EventData, EventMetadata, RawEvent};
use crate::error::{DecodeError, HandlerError};
use crate::event_set::EventSet;

/// TransactWriteItems takes 100 items: one version check plus two items per event.
pub const MAX_EVENTS_PER_APPEND: usize = 49;
const GUARD_PREFIX: &str = "$event#";
/// The guard's copy of the event's content digest.
const DIGEST: &str = "contentDigest";
const TIME_INDEX: &str = "byTime";
/// The sparse GSI of unpublished events, and its partition key attribute.
pub const UNPUBLISHED_INDEX: &str = "unpublished";
const UNPUBLISHED: &str = "unpublished";
/// How many partition keys the `unpublished` index spreads its marks over. A sweep queries
/// each one; eight keeps any one index partition far from its write limit while a sweep
/// stays eight small queries.
pub const UNPUBLISHED_SHARDS: u32 = 8;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Someone else appended first: reload the stream and decide again.
    #[error("version conflict on {stream_id}: expected version {expected}, stream is at {actual}")]
    Conflict {
        stream_id: String,
        expected: u64,
        actual: u64,
    },
    /// An event with the id, stream and source of a stored one but other content (type,
    /// schema version or payload): not a redelivery, and not to be dropped as one.
    #[error("event {event_id} from {event_source} is stored in {stream_id} with other content")]
    ConflictingDuplicate {
        stream_id: String,
        event_source: String,
        event_id: String,
    },
    #[error("{count} events in one append; at most {max}")]
    TooManyEvents { count: usize, max: usize },
    #[error("stored event {stream_id}@{version} is unreadable: {message}")]
    Corrupt {
        stream_id: String,
        version: u64,
        message: String,
    },
    #[error("event store: {0}")]
    Dynamo(#[from] DynamoError),
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => HandlerError::transient("version-conflict", e),
            StoreError::Dynamo(e) => e.into(),
            StoreError::ConflictingDuplicate { .. } => {
                HandlerError::permanent("conflicting-duplicate", e)
            }
            StoreError::TooManyEvents { .. } => HandlerError::permanent("too-many-events", e),
            StoreError::Corrupt { .. } => HandlerError::permanent("corrupt-event", e),
        }
    }
}

/// An event as stored: type, schema version, metadata and payload as written, so that old
/// events can be upcast when read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    pub stream_id: String,
    pub version: u64,
    pub event_id: String,
    pub event_type: String,
    pub source: String,
    pub schema_version: u32,
    pub metadata: EventMetadata,
    pub data: Value,
    pub recorded_at: String,
    pub time_bucket: String,
    pub time_key: String,
}

impl StoredEvent {
    /// `event` as the store keeps it at `version` of `stream_id`, recorded at `now`
    /// (also for in-memory stores and tests, so they hold exactly what the table holds).
    pub fn new(stream_id: &str, version: u64, event: &RawEvent, now: &DateTime<Utc>) -> Self {
        let recorded_at = format_time(now);
        StoredEvent {
            stream_id: stream_id.to_string(),
            version,
            event_id: event.metadata.event_id.clone(),
            event_type: event.detail_type.clone(),
            source: event.source.clone(),
            schema_version: event.metadata.schema_version,
            metadata: event.metadata.clone(),
            data: event.data.clone(),
            time_bucket: day_bucket(now),
            time_key: format!("{recorded_at}#{stream_id}#{version:020}"),
            recorded_at,
        }
    }

    pub fn to_raw(&self) -> RawEvent {
        RawEvent {
            source: self.source.clone(),
            detail_type: self.event_type.clone(),
            metadata: self.metadata.clone(),
            data: self.data.clone(),
        }
    }

    /// The typed event, upcast to the current schema (not validated again: it was when it
    /// was taken in).
    pub fn decode<T: EventData>(&self) -> Result<Envelope<T>, DecodeError> {
        self.to_raw().decode_stored()
    }

    /// The event as a member of the closed set `E`, upcast, not validated again.
    pub fn event<E: EventSet>(&self) -> Result<Envelope<E>, DecodeError> {
        E::stored_envelope(&self.to_raw())
    }
}

/// An append is one transaction: [`StoreError::TooManyEvents`] beyond what it can hold.
/// Checked the same way by the in-memory store (`testing::MemoryEventStore`).
pub(crate) fn check_append_size(events: &[RawEvent]) -> Result<(), StoreError> {
    if events.len() > MAX_EVENTS_PER_APPEND {
        return Err(StoreError::TooManyEvents {
            count: events.len(),
            max: MAX_EVENTS_PER_APPEND,
        });
    }
    Ok(())
}

/// The partition key of the guard item of event `event_id` from `event_source` in
/// `stream_id`. Event ids and sources hold no `#` ([`crate::ids`] limits event ids to
/// `A-Z a-z 0-9 - _ . : @`; sources are the owners' names), so no two triples share a key.
pub fn guard_key(stream_id: &str, event_source: &str, event_id: &str) -> String {
    format!("{GUARD_PREFIX}{stream_id}#{event_source}#{event_id}")
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The stream's version after the append.
    pub version: u64,
    /// Events written now.
    pub written: Vec<String>,
    /// Events skipped because they were already stored (same stream, source, id and digest).
    pub already_stored: Vec<String>,
}

/// Where a paginated time-range read goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeCursor {
    bucket: String,
    after: Option<(String, String, u64)>,
}

/// One page of a time-range read.
#[derive(Debug, Clone)]
pub struct TimePage {
    pub events: Vec<StoredEvent>,
    pub next: Option<TimeCursor>,
}

#[derive(Clone, Debug)]
pub struct EventStore {
    client: Client,
    table: String,
    /// The source whose events are written marked unpublished, if any.
    marked_source: Option<String>,
}

/// The shard key of `stream_id`'s marks in the `unpublished` index: `outbox#<n>`, n from a
/// hash of the stream id (stable across processes and releases: SHA-256, not `Hash`).
pub fn unpublished_shard(stream_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(stream_id.as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % UNPUBLISHED_SHARDS;
    format!("outbox#{n}")
}

/// Every shard key of the `unpublished` index.
pub fn unpublished_shards() -> Vec<String> {
    (0..UNPUBLISHED_SHARDS)
        .map(|n| format!("outbox#{n}"))
        .collect()
}

/// An event still marked unpublished, as the `unpublished` index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub stream_id: String,
    pub version: u64,
    /// When the event was recorded (the `timeKey`'s leading timestamp).
    pub recorded_at: DateTime<Utc>,
    /// The index's sort key, to page on after this mark.
    pub time_key: String,
}

impl EventStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        EventStore {
            client,
            table: table.into(),
            marked_source: None,
        }
    }

    /// A store that writes every event of `source` marked unpublished (see the module doc),
    /// for an outbox to publish and clear. Events of other sources are written unmarked.
    pub fn marking_unpublished(mut self, source: impl Into<String>) -> Self {
        self.marked_source = Some(source.into());
        self
    }

    /// The item of `event` at `version`: the [`StoredEvent`], with the unpublished mark if
    /// its source is the marked one.
    fn event_item(
        &self,
        stream_id: &str,
        version: u64,
        event: &RawEvent,
        now: &DateTime<Utc>,
    ) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let stored = StoredEvent::new(stream_id, version, event, now);
        let mut item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(&stored).map_err(|e| StoreError::Corrupt {
                stream_id: stream_id.to_string(),
                version,
                message: e.to_string(),
            })?;
        if self.marked_source.as_deref() == Some(event.source.as_str()) {
            item.insert(UNPUBLISHED.to_string(), s(unpublished_shard(stream_id)));
        }
        Ok(item)
    }

    /// At most `limit` events of `shard` (see [`unpublished_shards`]) still marked and
    /// recorded before `before`, oldest first, after mark `after` (the last of the previous
    /// page). The index is eventually consistent: a mark cleared a moment ago can still be
    /// listed, so a sweep may publish an event twice (under its stored id) but never miss
    /// one that stays marked. Paging on, rather than asking again, keeps a sweep from
    /// meeting the marks it just cleared.
    pub async fn unpublished_before(
        &self,
        shard: &str,
        before: DateTime<Utc>,
        after: Option<&Mark>,
        limit: i32,
    ) -> Result<Vec<Mark>, StoreError> {
        let start = after.map(|m| {
            HashMap::from([
                (UNPUBLISHED.to_string(), s(shard)),
                ("timeKey".to_string(), s(&m.time_key)),
                ("streamId".to_string(), s(&m.stream_id)),
                ("version".to_string(), n(m.version)),
            ])
        });
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(UNPUBLISHED_INDEX)
            .key_condition_expression("#u = :shard AND timeKey < :before")
            .expression_attribute_names("#u", UNPUBLISHED)
            .expression_attribute_values(":shard", s(shard))
            .expression_attribute_values(":before", s(format_time(&before)))
            .limit(limit.max(1))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| StoreError::Dynamo(DynamoError::from_sdk(&e)))?;
        out.items().iter().map(mark_from_key).collect()
    }

    /// The event at `version` of `stream_id`, read consistently (`None` if there is none).
    pub async fn read_event(
        &self,
        stream_id: &str,
        version: u64,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("streamId = :s AND version = :v")
            .expression_attribute_values(":s", s(stream_id))
            .expression_attribute_values(":v", n(version))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::Dynamo(DynamoError::from_sdk(&e)))?;
        out.items()
            .first()
            .map(|item| from_item(item.clone()))
            .transpose()
    }

    /// Clears the unpublished mark of the event at `version` of `stream_id`, once its
    /// publication was accepted. Clearing a mark that is not there (cleared already, or no
    /// such event) does nothing.
    pub async fn clear_unpublished(&self, stream_id: &str, version: u64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("streamId", s(stream_id))
            .key("version", n(version))
            .update_expression("REMOVE #u")
            .condition_expression("attribute_exists(#u)")
            .expression_attribute_names("#u", UNPUBLISHED)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(StoreError::Dynamo(DynamoError::from_sdk(&e))),
        }
    }

    /// Appends `events` after `expected_version` (0 for a new stream). Events already stored
    /// in this stream (same source, id and content digest) are skipped; the rest are written
    /// atomically or not at all. One with the source and id of a stored event but another
    /// digest fails the whole append with [`StoreError::ConflictingDuplicate`].
    pub async fn append(
        &self,
        stream_id: &str,
        expected_version: u64,
        events: &[RawEvent],
    ) -> Result<Appended, StoreError> {
        check_append_size(events)?;
        let mut remaining: Vec<&RawEvent> = events.iter().collect();
        let mut already_stored = Vec::new();
        loop {
            if remaining.is_empty() {
                return Ok(Appended {
                    version: expected_version,
                    written: vec![],
                    already_stored,
                });
            }
            match self
                .try_append(stream_id, expected_version, &remaining)
                .await?
            {
                AppendAttempt::Written => {
                    return Ok(Appended {
                        version: expected_version + remaining.len() as u64,
                        written: remaining
                            .iter()
                            .map(|e| e.metadata.event_id.clone())
                            .collect(),
                        already_stored,
                    })
                }
                AppendAttempt::Duplicates(indices) => {
                    // Drop the stored ones and try the rest at the same expected version.
                    let mut kept = Vec::new();
                    for (i, e) in remaining.into_iter().enumerate() {
                        if indices.contains(&i) {
                            already_stored.push(e.metadata.event_id.clone());
                        } else {
                            kept.push(e);
                        }
                    }
                    remaining = kept;
                }
                AppendAttempt::VersionTaken => {
                    return Err(StoreError::Conflict {
                        stream_id: stream_id.to_string(),
                        expected: expected_version,
                        actual: self.current_version(stream_id).await?,
                    })
                }
            }
        }
    }

    async fn try_append(
        &self,
        stream_id: &str,
        expected_version: u64,
        events: &[&RawEvent],
    ) -> Result<AppendAttempt, StoreError> {
        let now = Utc::now();
        let mut items = Vec::with_capacity(events.len() * 2 + 1);
        // Items are laid out as [version check?, (event, guard) per event]; remember where
        // each event starts to read the cancellation reasons back.
        let offset = if expected_version > 0 {
            items.push(
                TransactWriteItem::builder()
                    .condition_check(
                        ConditionCheck::builder()
                            .table_name(&self.table)
                            .key("streamId", s(stream_id))
                            .key("version", n(expected_version))
                            .condition_expression("attribute_exists(streamId)")
                            .build()
                            .map_err(|e| {
                                StoreError::Dynamo(DynamoError::Rejected(e.to_string()))
                            })?,
                    )
                    .build(),
            );
            1
        } else {
            0
        };
        for (i, event) in events.iter().enumerate() {
            let version = expected_version + 1 + i as u64;
            let item = self.event_item(stream_id, version, event, &now)?;
            items.push(put(&self.table, item)?);
            items.push(put_guard(
                &self.table,
                guard_item(stream_id, version, event),
            )?);
        }
        let reasons = match transact_write_detailed(&self.client, items)
            .await
            .map_err(StoreError::Dynamo)?
        {
            DetailedTransaction::Committed => return Ok(AppendAttempt::Written),
            DetailedTransaction::Cancelled(reasons) => reasons,
        };
        let mut guards = read_guards(&reasons, offset, events.len())?;
        for (guard, event) in guards.iter_mut().zip(events) {
            if let Guard::Stored(digest @ None) = guard {
                *digest = Some(self.stored_digest(stream_id, event).await?);
            }
        }
        decide(stream_id, events, &guards)
    }

    /// The digest in `event`'s guard, read consistently: for when a cancellation did not
    /// return the guard. A Query rather than a GetItem, so the writer needs no other grant
    /// than the ones reading a stream takes.
    async fn stored_digest(&self, stream_id: &str, event: &RawEvent) -> Result<String, StoreError> {
        let key = guard_key(stream_id, &event.source, &event.metadata.event_id);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("streamId = :s AND version = :v")
            .expression_attribute_values(":s", s(&key))
            .expression_attribute_values(":v", n(0))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::Dynamo(DynamoError::from_sdk(&e)))?;
        match out.items().first() {
            Some(guard) => guard_digest(&key, guard),
            // Guards are never removed: one that failed a condition is there; retry.
            None => Err(StoreError::Dynamo(DynamoError::Unavailable(format!(
                "guard {key} failed its condition but reads as absent"
            )))),
        }
    }

    /// The stream's last version (0 when it has no events).
    pub async fn current_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("streamId = :s")
            .expression_attribute_values(":s", s(stream_id))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .projection_expression("version")
            .send()
            .await
            .map_err(|e| StoreError::Dynamo(DynamoError::from_sdk(&e)))?;
        Ok(out
            .items()
            .first()
            .and_then(|i| i.get("version"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Every event of the stream from `from_version` (inclusive), in version order.
    pub async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("streamId = :s AND version >= :v")
                .expression_attribute_values(":s", s(stream_id))
                .expression_attribute_values(":v", n(from_version.max(1)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::Dynamo(DynamoError::from_sdk(&e)))?;
            for item in out.items() {
                events.push(from_item(item.clone())?);
            }
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(events);
            }
        }
    }

    /// One page (at most `limit` events) of every event recorded in `[from, to)`, in global
    /// time order. Pass the returned cursor back to go on; `None` means the end.
    pub async fn read_time_range(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cursor: Option<TimeCursor>,
        limit: i32,
    ) -> Result<TimePage, StoreError> {
        let last_bucket = day_bucket(&to);
        let mut cursor = cursor.unwrap_or(TimeCursor {
            bucket: day_bucket(&from),
            after: None,
        });
        let (from_key, to_key) = (format_time(&from), format_time(&to));
        let mut events = Vec::new();
        while cursor.bucket <= last_bucket && from < to {
            let start = cursor.after.as_ref().map(|(key, stream, version)| {
                HashMap::from([
                    ("timeBucket".to_string(), s(&cursor.bucket)),
                    ("timeKey".to_string(), s(key)),
                    ("streamId".to_string(), s(stream)),
                    ("version".to_string(), n(*version)),
                ])
            });
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(TIME_INDEX)
                .key_condition_expression("timeBucket = :b AND timeKey BETWEEN :from AND :to")
                .expression_attribute_values(":b", s(&cursor.bucket))
                .expression_attribute_values(":from", s(&from_key))
                // `to` itself is excluded: every key at `to` sorts after the bare timestamp.
                .expression_attribute_values(":to", s(&to_key))
                .limit(limit.max(1) - events.len() as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::Dynamo(DynamoError::from_sdk(&e)))?;
            for item in out.items() {
                events.push(from_item(item.clone())?);
            }
            cursor.after = out.last_evaluated_key().map(|key| {
                let text = |k: &str| {
                    key.get(k)
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default()
                };
                let version = key
                    .get("version")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                (text("timeKey"), text("streamId"), version)
            });
            if cursor.after.is_none() {
                cursor.bucket = next_day(&cursor.bucket);
            }
            if events.len() as i32 >= limit.max(1) {
                break;
            }
        }
        let more = cursor.bucket <= last_bucket && from < to;
        Ok(TimePage {
            events,
            next: more.then_some(cursor),
        })
    }

    /// Every event recorded in `[from, to)`, in global time order (all pages).
    pub async fn read_all_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.read_time_range(from, to, cursor, 500).await?;
            all.extend(page.events);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum AppendAttempt {
    Written,
    Duplicates(Vec<usize>),
    VersionTaken,
}

/// What a cancelled append says of one event's guard.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Guard {
    /// Not why the append was cancelled.
    Free,
    /// Already stored, with this digest (`None`: the cancellation did not return it).
    Stored(Option<String>),
    /// Another transaction held it: a race, not a duplicate.
    Contended,
}

/// Each event's guard, from the reasons of a cancelled append laid out as
/// `[version check?, (event, guard) per event]` with the first event at `offset`. A reason
/// that no retry at the same version can fix or that a retry later can (throttling, a
/// validation error) is that error, whichever item it is on.
fn read_guards(
    reasons: &[ItemCancellation],
    offset: usize,
    events: usize,
) -> Result<Vec<Guard>, StoreError> {
    for reason in reasons {
        match reason.failure() {
            None | Some("ConditionalCheckFailed" | "TransactionConflict") => {}
            Some(code @ "ValidationError") => {
                return Err(StoreError::Dynamo(DynamoError::Rejected(format!(
                    "append cancelled: {code}"
                ))))
            }
            Some(code) => {
                return Err(StoreError::Dynamo(DynamoError::Unavailable(format!(
                    "append cancelled: {code}"
                ))))
            }
        }
    }
    (0..events)
        .map(|i| {
            let Some(reason) = reasons.get(offset + 2 * i + 1) else {
                return Ok(Guard::Free);
            };
            Ok(match reason.failure() {
                Some("ConditionalCheckFailed") => Guard::Stored(match &reason.item {
                    Some(stored) => Some(guard_digest(
                        get_s(stored, "streamId").unwrap_or("a guard"),
                        stored,
                    )?),
                    None => None,
                }),
                Some("TransactionConflict") => Guard::Contended,
                _ => Guard::Free,
            })
        })
        .collect()
}

/// What a cancelled append means, once every stored guard's digest is known: a stored
/// guard with another digest refuses the append, stored ones with the same digest are
/// skipped, and anything else (a taken or missing version, a contended item) is a race.
fn decide(
    stream_id: &str,
    events: &[&RawEvent],
    guards: &[Guard],
) -> Result<AppendAttempt, StoreError> {
    let mut duplicates = Vec::new();
    for (i, (event, guard)) in events.iter().zip(guards).enumerate() {
        if let Guard::Stored(digest) = guard {
            if digest.as_deref() != Some(event.content_digest().as_str()) {
                return Err(StoreError::ConflictingDuplicate {
                    stream_id: stream_id.to_string(),
                    event_source: event.source.clone(),
                    event_id: event.metadata.event_id.clone(),
                });
            }
            duplicates.push(i);
        }
    }
    if duplicates.is_empty() {
        Ok(AppendAttempt::VersionTaken)
    } else {
        Ok(AppendAttempt::Duplicates(duplicates))
    }
}

/// The guard item of `event`, stored at `version` of `stream_id`. No `timeBucket` and no
/// `source` attribute: see the module doc for who skips guards by that.
fn guard_item(stream_id: &str, version: u64, event: &RawEvent) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            "streamId".to_string(),
            s(guard_key(
                stream_id,
                &event.source,
                &event.metadata.event_id,
            )),
        ),
        ("version".to_string(), n(0)),
        ("storedIn".to_string(), s(stream_id)),
        ("storedAt".to_string(), n(version)),
        ("eventSource".to_string(), s(&event.source)),
        ("eventId".to_string(), s(&event.metadata.event_id)),
        (DIGEST.to_string(), s(event.content_digest())),
    ])
}

fn guard_digest(key: &str, guard: &HashMap<String, AttributeValue>) -> Result<String, StoreError> {
    get_s(guard, DIGEST).map(str::to_string).ok_or_else(|| {
        StoreError::Dynamo(DynamoError::Unreadable(format!("{key} has no {DIGEST}")))
    })
}

fn from_item(item: HashMap<String, AttributeValue>) -> Result<StoredEvent, StoreError> {
    let stream_id = item
        .get("streamId")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    let version = item
        .get("version")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt {
        stream_id,
        version,
        message: e.to_string(),
    })
}

/// A key of the `unpublished` index (KEYS_ONLY: table keys and `timeKey`) as a [`Mark`].
fn mark_from_key(key: &HashMap<String, AttributeValue>) -> Result<Mark, StoreError> {
    let stream_id = get_s(key, "streamId").unwrap_or_default().to_string();
    let version = crate::dynamo::attr::get_n(key, "version").unwrap_or(0);
    let time_key = get_s(key, "timeKey").unwrap_or_default().to_string();
    let recorded_at = time_key
        .split('#')
        .next()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    match recorded_at {
        Some(recorded_at) if !stream_id.is_empty() && version > 0 => Ok(Mark {
            stream_id,
            version,
            recorded_at,
            time_key,
        }),
        _ => Err(StoreError::Corrupt {
            stream_id,
            version,
            message: "an unpublished mark without a readable key and timeKey".into(),
        }),
    }
}

fn put(
    table: &str,
    item: HashMap<String, AttributeValue>,
) -> Result<TransactWriteItem, StoreError> {
    put_with(table, item, ReturnValuesOnConditionCheckFailure::None)
}

/// A guard's Put returns the stored guard when its condition fails, so a cancelled append
/// knows the stored digest without another read.
fn put_guard(
    table: &str,
    item: HashMap<String, AttributeValue>,
) -> Result<TransactWriteItem, StoreError> {
    put_with(table, item, ReturnValuesOnConditionCheckFailure::AllOld)
}

fn put_with(
    table: &str,
    item: HashMap<String, AttributeValue>,
    on_failure: ReturnValuesOnConditionCheckFailure,
) -> Result<TransactWriteItem, StoreError> {
    Ok(TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(streamId)")
                .return_values_on_condition_check_failure(on_failure)
                .build()
                .map_err(|e| StoreError::Dynamo(DynamoError::Rejected(e.to_string())))?,
        )
        .build())
}

fn day_bucket(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

fn next_day(bucket: &str) -> String {
    match chrono::NaiveDate::parse_from_str(bucket, "%Y-%m-%d") {
        Ok(day) => (day.and_time(NaiveTime::MIN).and_utc() + Duration::days(1))
            .format("%Y-%m-%d")
            .to_string(),
        // Unreachable for cursors this module made; end the scan rather than loop.
        Err(_) => "9999-12-31~".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(source: &str, id: &str, n: u32) -> RawEvent {
        RawEvent {
            source: source.into(),
            detail_type: "Counted".into(),
            metadata: EventMetadata {
                event_id: id.into(),
                schema_version: 1,
                correlation_id: "c".into(),
                causation_id: None,
                occurred_at: Utc::now(),
            },
            data: serde_json::json!({ "n": n }),
        }
    }

    fn ok() -> ItemCancellation {
        ItemCancellation {
            code: Some("None".into()),
            item: None,
        }
    }

    fn failed(code: &str, item: Option<HashMap<String, AttributeValue>>) -> ItemCancellation {
        ItemCancellation {
            code: Some(code.into()),
            item,
        }
    }

    /// Reads a cancelled append at version 1 (version check at 0, then event/guard pairs),
    /// with digests as the cancellation returned them.
    fn outcome(
        events: &[RawEvent],
        reasons: Vec<ItemCancellation>,
    ) -> Result<AppendAttempt, StoreError> {
        let events: Vec<&RawEvent> = events.iter().collect();
        let guards = read_guards(&reasons, 1, events.len())?;
        decide("order#a", &events, &guards)
    }

    #[test]
    fn guards_are_keyed_by_stream_source_and_id() {
        assert_eq!(
            guard_key("order#a", "orderflow.shop", "e1"),
            "$event#order#a#orderflow.shop#e1"
        );
        let e = event("orderflow.shop", "e1", 1);
        assert_ne!(
            guard_item("order#a", 1, &e)["streamId"],
            guard_item("order#b", 1, &e)["streamId"]
        );
        assert_ne!(
            guard_item("order#a", 1, &e)["streamId"],
            guard_item("order#a", 1, &event("orderflow.payment", "e1", 1))["streamId"]
        );
    }

    #[test]
    fn a_guard_holds_the_events_digest_and_nothing_the_stream_readers_take() {
        let e = event("orderflow.saga", "e1", 1);
        let guard = guard_item("order#a", 3, &e);
        assert_eq!(
            guard,
            HashMap::from([
                ("streamId".into(), s("$event#order#a#orderflow.saga#e1")),
                ("version".into(), n(0)),
                ("storedIn".into(), s("order#a")),
                ("storedAt".into(), n(3)),
                ("eventSource".into(), s("orderflow.saga")),
                ("eventId".into(), s("e1")),
                ("contentDigest".into(), s(e.content_digest())),
            ])
        );
        // The projector takes items with a timeBucket; the outbox's filter, items whose
        // `source` is the saga: a saga decision's guard must have neither.
        assert!(!guard.contains_key("timeBucket") && !guard.contains_key("source"));
        let image: serde_dynamo::Item = guard.into();
        let record = serde_json::json!({
            "eventID": "1", "eventName": "INSERT", "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
            "dynamodb": {"Keys": {}, "NewImage": image, "SequenceNumber": "1",
                         "SizeBytes": 1, "StreamViewType": "NEW_IMAGE"}
        });
        let batch = serde_json::from_value(serde_json::json!({ "Records": [record] })).unwrap();
        assert!(crate::stream::inserted_events(batch).is_empty());
    }

    #[test]
    fn a_stored_guard_with_the_same_digest_is_a_duplicate() {
        let events = [event("shop", "e1", 1), event("shop", "e2", 2)];
        let stored = guard_item("order#a", 1, &events[0]);
        let reasons = vec![
            ok(),
            ok(),
            failed("ConditionalCheckFailed", Some(stored)),
            ok(),
            ok(),
        ];
        assert_eq!(
            outcome(&events, reasons),
            Ok(AppendAttempt::Duplicates(vec![0]))
        );
    }

    #[test]
    fn a_stored_guard_with_another_digest_is_a_conflicting_duplicate() {
        let events = [event("shop", "e1", 1)];
        let stored = guard_item("order#a", 1, &event("shop", "e1", 2));
        let reasons = vec![ok(), ok(), failed("ConditionalCheckFailed", Some(stored))];
        assert_eq!(
            outcome(&events, reasons),
            Err(StoreError::ConflictingDuplicate {
                stream_id: "order#a".into(),
                event_source: "shop".into(),
                event_id: "e1".into(),
            })
        );
    }

    #[test]
    fn a_stored_guard_the_cancellation_did_not_return_is_read_before_deciding() {
        let reasons = vec![ok(), ok(), failed("ConditionalCheckFailed", None)];
        assert_eq!(
            read_guards(&reasons, 1, 1),
            Ok(vec![Guard::Stored(None)]),
            "its digest is looked up (consistent read) before `decide`"
        );
    }

    #[test]
    fn a_contended_guard_is_a_lost_race_not_a_duplicate() {
        let events = [event("shop", "e1", 1)];
        let reasons = vec![
            ok(),
            failed("TransactionConflict", None),
            failed("TransactionConflict", None),
        ];
        assert_eq!(outcome(&events, reasons), Ok(AppendAttempt::VersionTaken));
        let reasons = vec![failed("ConditionalCheckFailed", None), ok(), ok()];
        assert_eq!(
            outcome(&events, reasons),
            Ok(AppendAttempt::VersionTaken),
            "the expected version is missing"
        );
    }

    #[test]
    fn a_throttled_or_invalid_item_is_that_error_not_a_duplicate() {
        let events = [event("shop", "e1", 1)];
        let reasons = vec![ok(), ok(), failed("ThrottlingError", None)];
        assert!(matches!(
            outcome(&events, reasons),
            Err(StoreError::Dynamo(DynamoError::Unavailable(_)))
        ));
        let reasons = vec![ok(), failed("ValidationError", None), ok()];
        assert!(matches!(
            outcome(&events, reasons),
            Err(StoreError::Dynamo(DynamoError::Rejected(_)))
        ));
    }

    #[test]
    fn a_conflicting_duplicate_is_permanent() {
        let err = HandlerError::from(StoreError::ConflictingDuplicate {
            stream_id: "order#a".into(),
            event_source: "shop".into(),
            event_id: "e1".into(),
        });
        assert!(err.is_permanent());
        assert_eq!(err.reason, "conflicting-duplicate");
    }

    fn offline_store() -> EventStore {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        EventStore::new(Client::from_conf(config), "events")
    }

    #[test]
    fn only_the_marked_sources_events_are_written_marked_unpublished() {
        let store = offline_store().marking_unpublished("orderflow.saga");
        let now = Utc::now();
        let saga = event("orderflow.saga", "d1", 1);
        let decision = store.event_item("order#a", 2, &saga, &now).unwrap();
        assert_eq!(
            decision.get("unpublished"),
            Some(&s(unpublished_shard("order#a")))
        );
        assert!(
            decision.contains_key("timeKey"),
            "the index's sort key is there"
        );
        let fact = store
            .event_item("order#a", 1, &event("orderflow.payment", "f1", 1), &now)
            .unwrap();
        assert!(!fact.contains_key("unpublished"));
        // Without the option nothing is marked, and a marked item still reads as the event.
        let plain = offline_store()
            .event_item("order#a", 2, &saga, &now)
            .unwrap();
        assert!(!plain.contains_key("unpublished"));
        let read = from_item(decision).unwrap();
        assert_eq!(read, from_item(plain).unwrap());
    }

    #[test]
    fn a_stream_keeps_one_shard_and_streams_spread_over_all_of_them() {
        assert_eq!(unpublished_shard("order#a"), unpublished_shard("order#a"));
        let shards = unpublished_shards();
        assert_eq!(shards.len(), UNPUBLISHED_SHARDS as usize);
        let used: std::collections::HashSet<String> = (0..200)
            .map(|i| unpublished_shard(&format!("order#o{i}")))
            .collect();
        assert!(used.iter().all(|s| shards.contains(s)));
        assert_eq!(used.len(), shards.len(), "200 orders use every shard");
    }

    #[test]
    fn an_index_key_reads_as_a_mark() {
        let t = Utc::now();
        let stored = StoredEvent::new("order#a", 3, &event("s", "e", 0), &t);
        let key = HashMap::from([
            ("streamId".to_string(), s("order#a")),
            ("version".to_string(), n(3)),
            ("unpublished".to_string(), s(unpublished_shard("order#a"))),
            ("timeKey".to_string(), s(&stored.time_key)),
        ]);
        let mark = mark_from_key(&key).unwrap();
        assert_eq!((mark.stream_id.as_str(), mark.version), ("order#a", 3));
        assert_eq!(mark.recorded_at.timestamp_millis(), t.timestamp_millis());
        let mut broken = key.clone();
        broken.remove("timeKey");
        assert!(matches!(
            mark_from_key(&broken),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn time_keys_sort_in_time_then_stream_then_version() {
        let t = Utc::now();
        let mut e = event("s", "e", 0);
        e.metadata.occurred_at = t;
        let a = StoredEvent::new("order#1", 2, &e, &t);
        let b = StoredEvent::new("order#1", 10, &e, &t);
        assert!(a.time_key < b.time_key, "versions compare numerically");
        let later = StoredEvent::new("order#0", 1, &e, &(t + Duration::milliseconds(1)));
        assert!(b.time_key < later.time_key);
        assert_eq!(next_day("2026-12-31"), "2027-01-01");
    }
}
