//! One incoming fact for the saga: know the order's stream, decide, append.
//!
//! The saga reads a standard SQS queue, so facts of one order can arrive in any order and
//! be handled by parallel invocations at the same moment. Consistency per order comes from
//! the event store, not from the queue: every append names the version it was decided on,
//! and a writer that lost the race to another one catches up with the stream and decides
//! again (the aggregate accepts facts in any order). After [`CONFLICT_RETRY`] runs out the
//! message goes back to SQS and is retried later, like any transient failure.
//!
//! # Reading the stream only when needed
//!
//! Each of an order's facts used to cost a full read of its stream (a Query) before its
//! append. A warm instance now remembers, for the last [`KNOWN_ORDERS`] orders it handled,
//! the state it folded, the version it was at and the event ids in it ([`Known`]), and
//! appends the next fact at that version without reading. It learns nothing it has not
//! written or read itself, so what it remembers is the stream's true prefix, possibly
//! short of events another instance appended since:
//! - if it is short, the append at the remembered version loses on the store's version
//!   condition ([`StoreError::Conflict`]); the service then reads only the events after
//!   that version, folds them in and decides again, which is the conflict loop there has
//!   always been (a stale memory costs what a race costs, never a wrong decision);
//! - an `OrderPlaced` nothing is known of starts from the empty stream without reading:
//!   it is nearly always an order's first event (the other facts are answers to it), and
//!   if it is not, the append at version 0 loses in the same way.
//!
//! Why a memory across invocations rather than one read per batch (grouping a batch's
//! facts by order): the batch processor already runs one order's facts one after the
//! other ([`order_of`] is its sequence key), so with the memory the second fact of an order
//! in a batch reads nothing either, and so do the facts of later batches that reach the
//! same instance; a per-batch read would still cost one Query per batch an order appears
//! in. Each fact is still its own append, so one fact's failure holds back no other.
//!
//! # Why exactly-once holds
//!
//! The fact and its decisions are one atomic append, and the store keeps an event once per
//! stream and source (its guard items, which hold the event's content digest). A
//! redelivered fact is found in the stream (read, or remembered with its digest) and
//! decides nothing; one that raced its own copy, or whose stored copy the instance has not
//! seen, loses the append (the guards are stored with the same digest) and decides nothing
//! either. Decision ids derive from the fact's id, so a fact handled again after a failed
//! append produces the same decisions with the same ids; and since the guards are scoped by
//! source, nobody but the saga can take the id of one of its decisions ahead of it. The
//! memory cannot weaken this: an append is decided on a remembered version, and the store
//! refuses it unless that is still the stream's version, i.e. unless the remembered state
//! is the whole stream. Whatever the outcome of an append other than a complete write (an
//! error, events already stored, a lost race), the memory of that order is dropped or
//! caught up from the store before it is used again.
//!
//! # One order, one OrderPlaced
//!
//! Payment and inventory act on the first `OrderPlaced` of an order id they see, and so do
//! the aggregate and the read model. A later `OrderPlaced` for a placed order is therefore
//! never appended: with the first one's content digest (a resend under a new event id) it
//! is a duplicate; with any other content it is a *conflicting duplicate*, dead-lettered
//! (`conflicting-duplicate`) for a person to look at, since the order the services act on
//! is not the one it describes. The same holds for any fact whose event id is stored with
//! other content: it is not a redelivery, and dropping it silently would hide it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use contracts::{
    order_stream, Event, EventData, FraudCleared, FraudSuspected, InventoryOutOfStock,
    InventoryReleased, InventoryReserved, OrderCancelRequested, OrderCancelled,
    OrderDeadlineReached, OrderPlaced, OrderShipped, PaymentFailed, PaymentProcessed,
    PaymentRefunded, ShipmentCancelled, DEADLINE_EXCEEDED,
};
use eventkit::store::Appended;
use eventkit::{
    take_in, DecodeError, Envelope, EventStore, Handled, HandlerError, Invocation, RawEvent,
    RetryPolicy, Route, StoreError, StoredEvent,
};

use crate::aggregate::Order;

/// How many orders a warm instance remembers (least recently used ones are forgotten
/// first). An order's state is a few KB at most, so this stays far below the function's
/// memory; a load run's orders each live for seconds, far fewer than this at once.
pub const KNOWN_ORDERS: usize = 4096;

/// The facts the saga takes in, each from the source that owns it: the results of the
/// services it coordinates and the order itself. `OrdersRule` in `infra/template.yaml`
/// routes exactly these (checked by `routes_match_the_template`).
pub const ROUTES: &[Route] = &[
    OrderPlaced::ROUTE,
    PaymentProcessed::ROUTE,
    PaymentFailed::ROUTE,
    PaymentRefunded::ROUTE,
    InventoryReserved::ROUTE,
    InventoryOutOfStock::ROUTE,
    InventoryReleased::ROUTE,
    FraudSuspected::ROUTE,
    FraudCleared::ROUTE,
    OrderShipped::ROUTE,
    ShipmentCancelled::ROUTE,
    OrderDeadlineReached::ROUTE,
    OrderCancelRequested::ROUTE,
];

/// In-process retries after losing an append to a concurrent writer. Jittered, so writers
/// that collided once spread out; the whole schedule stays well inside the function's
/// timeout (10 s), after which SQS redelivers.
pub const CONFLICT_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 8,
    base_delay: Duration::from_millis(20),
    max_delay: Duration::from_millis(640),
};

/// The order streams the saga reads and appends to: the event store, or a memory copy in
/// tests. An append must fail with [`StoreError::Conflict`] when `expected_version` is not
/// the stream's version, skip events stored in the stream with the same source, id and
/// content digest, and fail with [`StoreError::ConflictingDuplicate`] for one stored with
/// another digest.
#[async_trait]
pub trait OrderStreams: Send + Sync {
    /// The stream's events from `from_version` (inclusive) on, in version order.
    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    async fn append(
        &self,
        stream_id: &str,
        expected_version: u64,
        events: &[RawEvent],
    ) -> Result<Appended, StoreError>;
}

#[async_trait]
impl OrderStreams for EventStore {
    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        EventStore::read_stream(self, stream_id, from_version).await
    }

    async fn append(
        &self,
        stream_id: &str,
        expected_version: u64,
        events: &[RawEvent],
    ) -> Result<Appended, StoreError> {
        EventStore::append(self, stream_id, expected_version, events).await
    }
}

#[cfg(any(test, feature = "testing"))]
/// The saga's port over eventkit's in-memory event store, which keeps the DynamoDB store's
/// conditions (a stale version is a conflict; an event is kept once per stream and source,
/// other content under its id refused).
#[async_trait]
impl OrderStreams for eventkit::testing::MemoryEventStore {
    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        eventkit::testing::MemoryEventStore::read_stream(self, stream_id, from_version).await
    }

    async fn append(
        &self,
        stream_id: &str,
        expected_version: u64,
        events: &[RawEvent],
    ) -> Result<Appended, StoreError> {
        eventkit::testing::MemoryEventStore::append(self, stream_id, expected_version, events).await
    }
}

/// EMF metric: orders cancelled `deadline-exceeded` (alarm `OrdersTimedOutAlarm`).
pub const ORDERS_TIMED_OUT: &str = "ordersTimedOut";
/// EMF metric: confirmed orders shipped after a stop was asked for (alarm
/// `ShippedDespiteCancelAlarm`: a person looks at the suspicion).
pub const SHIPPED_DESPITE_CANCEL: &str = "shippedDespiteCancel";

pub struct SagaService {
    streams: Arc<dyn OrderStreams>,
    /// Where [`ORDERS_TIMED_OUT`] and [`SHIPPED_DESPITE_CANCEL`] go; `None`: not counted.
    metrics_namespace: Option<String>,
    /// By stream id; see the module doc for why it can be trusted.
    known: quick_cache::sync::Cache<String, Known>,
    remember: bool,
}

/// What the saga knows of an order's stream: the events up to `version`, folded, and the
/// content digest of each by (source, event id), as the store's guards hold them. Only ever
/// a prefix of the stored stream (events are never removed or changed).
#[derive(Debug, Clone, Default)]
struct Known {
    version: u64,
    order: Order,
    digests: HashMap<(String, String), String>,
    /// The digest of the order's first `OrderPlaced`, the one the order is.
    placed: Option<String>,
}

/// What is known of a fact before deciding on it.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    New,
    /// Stored already, with this content: decide nothing.
    Duplicate,
    /// Its id, or its order's `OrderPlaced`, is stored with other content.
    Conflicting(String),
}

impl Known {
    /// Folds in stored events that follow `version`.
    fn catch_up(&mut self, stored: &[StoredEvent]) -> Result<(), HandlerError> {
        for (event, envelope) in stored.iter().zip(history(stored)?) {
            let digest = envelope.content_digest();
            self.fold(
                &envelope.data,
                &envelope.source,
                &envelope.metadata.event_id,
                digest,
            );
            self.version = event.version;
        }
        Ok(())
    }

    /// Folds in `events`, just written in one append after `version`.
    fn written(&mut self, facts_and_decisions: &[Event], events: &[RawEvent]) {
        for (data, raw) in facts_and_decisions.iter().zip(events) {
            self.fold(
                data,
                &raw.source,
                &raw.metadata.event_id,
                raw.content_digest(),
            );
        }
        self.version += events.len() as u64;
    }

    fn fold(&mut self, data: &Event, source: &str, event_id: &str, digest: String) {
        self.order.apply(data);
        if matches!(data, Event::OrderPlaced(_)) && self.placed.is_none() {
            self.placed = Some(digest.clone());
        }
        self.digests
            .insert((source.to_string(), event_id.to_string()), digest);
    }

    /// Whether `fact` (with content digest `digest`) is already in the known stream.
    fn seen(&self, fact: &Envelope<Event>, digest: &str) -> Seen {
        let key = (fact.source.clone(), fact.metadata.event_id.clone());
        let stored = match (self.digests.get(&key), &fact.data, &self.placed) {
            (Some(stored), _, _) => stored,
            (None, Event::OrderPlaced(_), Some(placed)) => placed,
            (None, _, _) => return Seen::New,
        };
        if stored == digest {
            Seen::Duplicate
        } else if self.digests.contains_key(&key) {
            Seen::Conflicting(format!(
                "event {} from {} is stored with other content",
                key.1, key.0
            ))
        } else {
            Seen::Conflicting(format!(
                "the order is placed already, with other content than OrderPlaced {}",
                key.1
            ))
        }
    }
}

/// The order a routed fact is about; `None` for anything the saga does not take in.
fn fact_order(event: &Event) -> Option<&str> {
    match event {
        Event::OrderPlaced(OrderPlaced { order_id, .. })
        | Event::PaymentProcessed(PaymentProcessed { order_id, .. })
        | Event::PaymentFailed(PaymentFailed { order_id, .. })
        | Event::PaymentRefunded(PaymentRefunded { order_id, .. })
        | Event::InventoryReserved(InventoryReserved { order_id, .. })
        | Event::InventoryOutOfStock(InventoryOutOfStock { order_id, .. })
        | Event::InventoryReleased(InventoryReleased { order_id, .. })
        | Event::FraudSuspected(FraudSuspected { order_id, .. })
        | Event::FraudCleared(FraudCleared { order_id, .. })
        | Event::OrderShipped(OrderShipped { order_id, .. })
        | Event::ShipmentCancelled(ShipmentCancelled { order_id, .. })
        | Event::OrderDeadlineReached(OrderDeadlineReached { order_id })
        | Event::OrderCancelRequested(OrderCancelRequested { order_id, .. }) => Some(order_id),
        _ => None,
    }
}

/// The order a message belongs to: the saga's batches run one order's facts one after the
/// other, so they do not conflict with each other within an invocation.
pub fn order_of(event: &RawEvent) -> Option<String> {
    let fact = take_in::<Event>(ROUTES, event).ok()?;
    fact_order(&fact.data).map(str::to_string)
}

impl SagaService {
    /// Reads `EVENT_STORE_TABLE`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        let table = eventkit::aws::required_env("EVENT_STORE_TABLE")?;
        let namespace = eventkit::aws::required_env(eventkit::lambda::METRICS_NAMESPACE_VAR)?;
        // Decisions are stored marked unpublished, in their append's transaction, so the
        // outbox's sweep publishes any the stream relay never did (functions/outbox).
        Ok(SagaService::new(Arc::new(
            EventStore::new(aws_sdk_dynamodb::Client::new(aws), table)
                .marking_unpublished(contracts::sources::SAGA),
        ))
        .counting_in(namespace))
    }

    /// Counts the outcomes alarms watch as EMF metrics in `namespace`.
    pub fn counting_in(mut self, namespace: impl Into<String>) -> Self {
        self.metrics_namespace = Some(namespace.into());
        self
    }

    pub fn new(streams: Arc<dyn OrderStreams>) -> Self {
        SagaService::with_memory(streams, KNOWN_ORDERS)
    }

    /// A service that remembers at most `orders` orders between facts (0: none, every fact
    /// but an `OrderPlaced` reads its stream).
    pub fn with_memory(streams: Arc<dyn OrderStreams>, orders: usize) -> Self {
        SagaService {
            streams,
            metrics_namespace: None,
            known: quick_cache::sync::Cache::new(orders.max(1)),
            remember: orders > 0,
        }
    }

    /// Records the fact in the order's stream together with the decisions it leads to, in
    /// one atomic append.
    pub async fn handle(
        &self,
        fact: Envelope<Event>,
        _invocation: Invocation,
    ) -> Result<Handled, HandlerError> {
        let Some(order_id) = fact_order(&fact.data) else {
            return Err(DecodeError::not_routed(&fact.data).into());
        };
        let stream = order_stream(order_id);
        let digest = fact.content_digest();
        let mut known = match self.recall(&stream) {
            Some(known) => known,
            // The order's first event, as far as anyone can tell: see the module doc.
            None if matches!(fact.data, Event::OrderPlaced(_)) => Known::default(),
            None => self.read_after(&stream, Known::default()).await?,
        };
        let mut attempt = 0;
        let mut caught_up_on_conflict = false;
        loop {
            attempt += 1;
            match known.seen(&fact, &digest) {
                Seen::New => {}
                Seen::Duplicate => {
                    self.remember(&stream, known);
                    return Ok(Handled::Duplicate);
                }
                Seen::Conflicting(message) => {
                    self.remember(&stream, known);
                    return Err(HandlerError::permanent(
                        "conflicting-duplicate",
                        format!("{stream}: {message}"),
                    ));
                }
            }
            if known.order.is_moot(&fact.data) {
                // What is known is a true prefix, and an ended order stays ended: however
                // stale, it is right that this can change nothing.
                tracing::info!(stream = %stream, fact = eventkit::Payload::detail_type(&fact.data),
                    "the order has ended; not recorded");
                self.remember(&stream, known);
                return Ok(Handled::Ignored);
            }
            let decisions = known.order.handle(&fact.data);
            let mut batch = Vec::with_capacity(1 + decisions.len());
            batch.push(fact.to_raw());
            // The order id is the discriminator: the ids stay what they have always been.
            batch.extend(
                decisions
                    .iter()
                    .map(|d| Envelope::caused_by(&fact.metadata, order_id, d.clone()).to_raw()),
            );
            match self.streams.append(&stream, known.version, &batch).await {
                Ok(appended) => {
                    if appended.written.len() == batch.len() {
                        let mut events = Vec::with_capacity(batch.len());
                        events.push(fact.data.clone());
                        events.extend(decisions);
                        known.written(&events, &batch);
                        self.count_outcomes(&fact.data, &events[1..], &known.order);
                        self.remember(&stream, known);
                    } else {
                        // Some events were stored already, by a writer this instance has
                        // not seen: what it knows of the order is no longer the whole stream.
                        self.forget(&stream);
                    }
                    if appended.written.is_empty() {
                        return Ok(Handled::Duplicate);
                    }
                    let decided: Vec<&str> =
                        batch[1..].iter().map(|e| e.detail_type.as_str()).collect();
                    tracing::info!(stream = %stream, version = appended.version, ?decided,
                        conflicts = attempt - 1, "order updated");
                    return Ok(Handled::Processed);
                }
                Err(StoreError::Conflict { .. }) if CONFLICT_RETRY.allows_another(attempt) => {
                    tracing::info!(stream = %stream, attempt, "concurrent append; catching up");
                    tokio::time::sleep(CONFLICT_RETRY.delay(attempt)).await;
                    // What is known is still a true prefix: only the newer events are read.
                    known = self.read_after(&stream, known).await?;
                }
                // The stored copy is in the stream: judged there once more, by the digest of
                // its upcast envelope as the fact's is (a copy stored under an older schema
                // version hashes otherwise as written, yet is the same event).
                Err(StoreError::ConflictingDuplicate { .. }) if !caught_up_on_conflict => {
                    caught_up_on_conflict = true;
                    known = self.read_after(&stream, known).await?;
                }
                Err(e) => {
                    // An append that timed out may still have been written.
                    self.forget(&stream);
                    return Err(e.into());
                }
            }
        }
    }

    /// Counts what an alarm watches, once per appended decision: an order its deadline
    /// cancelled, and one that shipped although a stop had been asked for. (An append that
    /// raced another writer's copy counts nothing: that writer counted it.)
    fn count_outcomes(&self, fact: &Event, decisions: &[Event], order: &Order) {
        let Some(namespace) = &self.metrics_namespace else {
            return;
        };
        let timed_out = decisions.iter().any(|d| {
            matches!(d, Event::OrderCancelled(OrderCancelled { reason, .. }) if reason == DEADLINE_EXCEEDED)
        });
        if timed_out {
            tracing::warn!(order_id = ?fact.order_id(), "order cancelled by its deadline");
            eventkit::metrics::emit_count(namespace, "orders", ORDERS_TIMED_OUT, 1);
        }
        if matches!(fact, Event::OrderShipped(_)) && order.shipped_despite_cancel() {
            tracing::error!(order_id = ?fact.order_id(),
                "order shipped before the stop reached shipping: the suspicion is recorded, nothing was refunded");
            eventkit::metrics::emit_count(namespace, "orders", SHIPPED_DESPITE_CANCEL, 1);
        }
    }

    fn recall(&self, stream: &str) -> Option<Known> {
        if self.remember {
            self.known.get(stream)
        } else {
            None
        }
    }

    fn remember(&self, stream: &str, known: Known) {
        if self.remember {
            self.known.insert(stream.to_string(), known);
        }
    }

    fn forget(&self, stream: &str) {
        self.known.remove(stream);
    }

    /// `known` caught up with the events stored after it.
    async fn read_after(&self, stream: &str, mut known: Known) -> Result<Known, HandlerError> {
        let newer = self.streams.read_stream(stream, known.version + 1).await;
        let newer = newer.inspect_err(|_| self.forget(stream))?;
        known
            .catch_up(&newer)
            .inspect_err(|_| self.forget(stream))?;
        Ok(known)
    }
}

/// The stored stream as events: upcast, not validated again (a rule tightened since an
/// event was taken in must not make its order unreadable). Only an event that does not
/// decode at all makes the stream corrupt.
fn history(stored: &[StoredEvent]) -> Result<Vec<Envelope<Event>>, HandlerError> {
    stored
        .iter()
        .map(StoredEvent::event::<Event>)
        .collect::<Result<_, _>>()
        .map_err(|e| HandlerError::permanent("corrupt-stream", e))
}

#[cfg(test)]
mod tests;
