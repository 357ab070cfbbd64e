//! One incoming event for the saga: load the order's stream, apply, decide, append.
//!
//! The saga reads a standard SQS queue, so facts of one order can arrive in any order and
//! be handled by parallel invocations at the same moment. Consistency per order comes from
//! the event store, not from the queue: every append names the version it was decided on,
//! and a writer that lost the race to another one reloads the stream and decides again
//! (the aggregate accepts facts in any order). After [`CONFLICT_RETRY`] runs out the
//! message goes back to SQS and is retried later, like any transient failure.

use std::time::Duration;

use eventkit::{EventStore, Handled, HandlerError, RawEvent, RetryPolicy, StoreError};

use crate::aggregate::{Fact, Order};

/// In-process retries after losing an append to a concurrent writer. Jittered, so writers
/// that collided once spread out; the whole schedule stays well inside the function's
/// timeout (10 s), after which SQS redelivers.
pub const CONFLICT_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 8,
    base_delay: Duration::from_millis(20),
    max_delay: Duration::from_millis(640),
};

pub struct SagaService {
    store: EventStore,
}

/// The stream of one order.
pub fn stream_id(order_id: &str) -> String {
    format!("order#{order_id}")
}

/// The order a fact belongs to: the saga's batches run one order's facts one after the
/// other, so they do not conflict with each other within an invocation.
pub fn order_of(event: &RawEvent) -> Option<String> {
    Fact::from_event(event)
        .ok()
        .flatten()
        .map(|fact| fact.order_id().to_string())
}

impl SagaService {
    /// Reads `EVENT_STORE_TABLE`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        let table = eventkit::aws::required_env("EVENT_STORE_TABLE")?;
        Ok(SagaService::new(EventStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            table,
        )))
    }

    pub fn new(store: EventStore) -> Self {
        SagaService { store }
    }

    /// Records the fact in the order's stream together with the decisions it leads to, in
    /// one atomic append. The fact's event id makes a redelivery a no-op: the store keeps
    /// one copy of an event id, and a stream that already holds it decides nothing again.
    pub async fn handle(&self, event: RawEvent) -> Result<Handled, HandlerError> {
        let Some(fact) = Fact::from_event(&event)? else {
            return Ok(Handled::Ignored);
        };
        let stream = stream_id(fact.order_id());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let stored = self.store.read_stream(&stream, 1).await?;
            let raws: Vec<RawEvent> = stored.iter().map(|e| e.to_raw()).collect();
            let mut order = Order::from_events(stored.iter().map(|e| e.version).zip(raws.iter()))
                .map_err(|e| HandlerError::permanent("corrupt-stream", e))?;
            if order.has_seen(&event.metadata.event_id) {
                return Ok(Handled::Duplicate);
            }
            let expected = order.version;
            order.apply(&event)?;
            let decisions = order.handle(&event.metadata);
            let mut batch = Vec::with_capacity(1 + decisions.len());
            batch.push(event.clone());
            batch.extend(decisions);
            match self.store.append(&stream, expected, &batch).await {
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
