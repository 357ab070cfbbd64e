//! One incoming fact for the saga: load the order's stream, decide, append.
//!
//! The saga reads a standard SQS queue, so facts of one order can arrive in any order and
//! be handled by parallel invocations at the same moment. Consistency per order comes from
//! the event store, not from the queue: every append names the version it was decided on,
//! and a writer that lost the race to another one reloads the stream and decides again
//! (the aggregate accepts facts in any order). After [`CONFLICT_RETRY`] runs out the
//! message goes back to SQS and is retried later, like any transient failure.
//!
//! Exactly once: the fact and its decisions are one atomic append, and the store keeps an
//! event id once. A redelivered fact finds its id in the stream and decides nothing; one
//! that raced its own copy loses the append (the ids are stored) and decides nothing
//! either. Decision ids derive from the fact's id, so a fact handled again after a failed
//! append produces the same decisions with the same ids.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use contracts::{
    order_stream, Event, EventData, FraudCleared, FraudSuspected, InventoryOutOfStock,
    InventoryReleased, InventoryReserved, OrderPlaced, OrderShipped, PaymentFailed,
    PaymentProcessed, PaymentRefunded,
};
use eventkit::store::Appended;
use eventkit::{
    take_in, DecodeError, Envelope, EventStore, Handled, HandlerError, Invocation, RawEvent,
    RetryPolicy, Route, StoreError, StoredEvent,
};

use crate::aggregate::Order;

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
/// the stream's version, and skip events whose id is already stored.
#[async_trait]
pub trait OrderStreams: Send + Sync {
    async fn read_stream(&self, stream_id: &str) -> Result<Vec<StoredEvent>, StoreError>;
    async fn append(
        &self,
        stream_id: &str,
        expected_version: u64,
        events: &[RawEvent],
    ) -> Result<Appended, StoreError>;
}

#[async_trait]
impl OrderStreams for EventStore {
    async fn read_stream(&self, stream_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        EventStore::read_stream(self, stream_id, 1).await
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

pub struct SagaService {
    streams: Arc<dyn OrderStreams>,
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
        | Event::OrderShipped(OrderShipped { order_id, .. }) => Some(order_id),
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
        Ok(SagaService::new(Arc::new(EventStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            table,
        ))))
    }

    pub fn new(streams: Arc<dyn OrderStreams>) -> Self {
        SagaService { streams }
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
        let mut attempt = 0;
        loop {
            attempt += 1;
            let stored = self.streams.read_stream(&stream).await?;
            if stored.iter().any(|e| e.event_id == fact.metadata.event_id) {
                return Ok(Handled::Duplicate);
            }
            let expected = stored.last().map_or(0, |e| e.version);
            let order = Order::replay(&history(&stored)?);
            let decisions = order.handle(&fact.data);
            let mut batch = Vec::with_capacity(1 + decisions.len());
            batch.push(fact.to_raw());
            // The order id is the discriminator: the ids stay what they have always been.
            batch.extend(
                decisions
                    .into_iter()
                    .map(|d| Envelope::caused_by(&fact.metadata, order_id, d).to_raw()),
            );
            match self.streams.append(&stream, expected, &batch).await {
                Ok(appended) => {
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
                    tracing::info!(stream = %stream, attempt, "concurrent append; reloading");
                    tokio::time::sleep(CONFLICT_RETRY.delay(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The stored stream as events: upcast, not validated again (a rule tightened since an
/// event was taken in must not make its order unreadable). Only an event that does not
/// decode at all makes the stream corrupt.
fn history(stored: &[StoredEvent]) -> Result<Vec<Event>, HandlerError> {
    stored
        .iter()
        .map(|e| e.event::<Event>().map(|envelope| envelope.data))
        .collect::<Result<_, _>>()
        .map_err(|e| HandlerError::permanent("corrupt-stream", e))
}

#[cfg(test)]
mod tests;
