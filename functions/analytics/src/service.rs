//! Handles a batch of events for the analytics function: in chunks of a few transactions'
//! worth, while the invocation has time.
//!
//! Exactly once per event (its source and id, its content checked) without the idempotency
//! layer: each event's marker and its counters are written in the same transaction (see
//! [`crate::repository`]), so there is no step between "remember" and "count" for a crash
//! to fall into. A batch is cut into chunks of at most [`CHUNK_ITEMS`] items
//! ([`crate::batch::chunks`]), one transaction each, run one after the other.
//!
//! # Why chunks keep it exactly once
//!
//! Each event is in exactly one chunk, and a chunk's transaction holds that event's marker
//! together with counter additions summed over *its own* events only
//! ([`TransactionPlan::of`]). So every argument of [`crate::repository`] holds per chunk: a
//! chunk's markers and its additions commit together or not at all, whatever happens to the
//! chunks before or after it. A crash or a timeout between two chunks leaves the first
//! counted with its markers and the second not written at all; the redelivery finds the
//! first chunk's markers (duplicates, adding nothing) and counts the rest once. Answers are
//! given per event, so a chunk that committed is reported done even when a later one fails
//! or is not started.
//!
//! # Why chunks, and the time budget
//!
//! A batch of 100 events in one transaction is one long request on the hot counter items
//! (the hour's and the day's, which every concurrent invocation also updates): DynamoDB
//! cancels a transaction when another one is writing one of its items ("There is an ongoing
//! `TransactWriteItems` operation that conflicts with a concurrent `TransactWriteItems`
//! request", TransactionCanceledException, Amazon DynamoDB API Reference,
//! https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html),
//! and a cancelled transaction of 100 events sends 100 events back to SQS, each a receive
//! towards the queue's `maxReceiveCount`. Small chunks are short requests, a conflict costs
//! only its chunk (retried here first, [`CONFLICT_RETRIES`]), and between chunks the
//! handler checks the invocation's time budget ([`Invocation::has_time_to_start`]): a chunk
//! is started only if it can finish; the rest is answered [`eventkit::not_started`]
//! (transient) and comes back in a later batch, while what was counted stays counted. The
//! price is a few more requests: the shared counters are written once per chunk, not once
//! per batch; capacity is the same (2 write units per item either way).
//!
//! # What each transaction's answer leads to
//!
//! - committed: every event of the chunk is counted once;
//! - cancelled because some markers exist: nothing was written; those events were counted
//!   before, if their marker's digest is theirs ([`came_again`]: a redelivery, a duplicate),
//!   or another event of their source took the id first (a conflicting duplicate, refused
//!   for good and never counted); the rest is written once more without them. If that is
//!   cancelled for duplicates too (a copy counted concurrently, or DynamoDB named only
//!   some), those are duplicates as well and the rest goes back to SQS rather than into a
//!   third transaction;
//! - cancelled by a conflict: nothing was written; the chunk is tried again, whole, after a
//!   short backoff, up to [`CONFLICT_RETRIES`] times while the invocation has time to start
//!   it (nothing was written, so another try cannot count anything twice); then it fails
//!   as below;
//! - failed: nothing was written; every event of the chunk fails transiently and SQS
//!   redelivers it, to be counted (once) then;
//! - refused as it can never succeed (a key over DynamoDB's limits): nothing was written; the
//!   chunk's events are tried one by one, so that only the offending one is dead-lettered.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use contracts::{Event, Payload};
use eventkit::metrics::EventTypeCounts;
use eventkit::{BatchResults, Envelope, Handled, HandlerError, Invocation, RetryPolicy};

use crate::batch::{chunks, split_at_indexes, Counting, TransactionPlan, MAX_TRANSACTION_ITEMS};
use crate::counters::plan;
use crate::repository::{
    Applied, CounterStore, DynamoCounterStore, Marker, Recorded, RepositoryError,
};

/// Transactions per chunk when markers turn out to exist: the first, and one without the
/// duplicates it named.
const ATTEMPTS: usize = 2;

/// At most this many items (markers plus distinct counters) in one transaction: a quarter
/// of DynamoDB's limit ([`MAX_TRANSACTION_ITEMS`]). A chunk of one hour's events is ~23
/// events, so a batch of 50 is two or three short transactions instead of one long one;
/// see the module documentation for why.
pub const CHUNK_ITEMS: usize = 25;

/// How often a chunk cancelled by a transaction conflict is tried in all in the invocation
/// (`max_attempts`) before its events go back to SQS, and how long to wait in between: the conflicting
/// transaction is another invocation's on the same hot counter, finished within
/// milliseconds, and jittered waits keep the two from colliding again ([`RetryPolicy`]).
pub const CONFLICT_RETRIES: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_delay: std::time::Duration::from_millis(25),
    max_delay: std::time::Duration::from_millis(400),
};

pub struct AnalyticsService {
    store: Arc<dyn CounterStore>,
    /// Items per transaction ([`CHUNK_ITEMS`]).
    chunk_items: usize,
    /// Retries of a chunk cancelled by a conflict ([`CONFLICT_RETRIES`]).
    conflict_retries: RetryPolicy,
    /// Where the per-type counts go as EMF metrics (the dashboard's orders placed, shipped,
    /// cancelled); None in tests.
    metrics_namespace: Option<String>,
}

/// What became of a chunk: a result per event, and events to try again one by one.
struct ChunkOutcome<'a> {
    results: BatchResults,
    alone: Vec<&'a Counting>,
}

impl AnalyticsService {
    /// Reads `ANALYTICS_TABLE` and the EMF namespace (`POWERTOOLS_METRICS_NAMESPACE`).
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        let table = eventkit::aws::required_env("ANALYTICS_TABLE")?;
        let namespace = eventkit::aws::required_env(eventkit::lambda::METRICS_NAMESPACE_VAR)?;
        let service = AnalyticsService::new(Arc::new(DynamoCounterStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            table,
        )));
        Ok(AnalyticsService {
            metrics_namespace: Some(namespace),
            ..service
        })
    }

    pub fn new(store: Arc<dyn CounterStore>) -> Self {
        AnalyticsService {
            store,
            chunk_items: CHUNK_ITEMS,
            conflict_retries: CONFLICT_RETRIES,
            metrics_namespace: None,
        }
    }

    /// Transactions of at most `items` items (1 to DynamoDB's 100).
    pub fn with_chunk_items(mut self, items: usize) -> Self {
        self.chunk_items = items.clamp(1, MAX_TRANSACTION_ITEMS);
        self
    }

    /// How a chunk cancelled by a conflict is retried (tests retry without waiting).
    pub fn with_conflict_retries(mut self, policy: RetryPolicy) -> Self {
        self.conflict_retries = policy;
        self
    }

    /// Counts a batch's events (each event id once in it, as eventkit hands them over),
    /// exactly once per event id, and answers for every one. A chunk is only started while
    /// `invocation` has time to start one; the events of the chunks not started are answered
    /// [`eventkit::not_started`].
    pub async fn handle_batch(
        &self,
        events: Vec<Envelope<Event>>,
        invocation: Invocation,
    ) -> BatchResults {
        let now = Utc::now();
        let countings: Vec<Counting> = events.iter().map(|e| counting(e, now)).collect();
        let mut results = BatchResults::with_capacity(countings.len());
        let mut work: VecDeque<Vec<&Counting>> = chunks(&countings, self.chunk_items).into();
        while let Some(chunk) = work.pop_front() {
            if !invocation.has_time_to_start() {
                let left: Vec<&Counting> =
                    chunk.into_iter().chain(work.drain(..).flatten()).collect();
                tracing::warn!(
                    events = left.len(),
                    remaining_ms = invocation.remaining().as_millis() as u64,
                    "the invocation's time ran short; leaving the events not counted yet to SQS"
                );
                results.extend(answer(&left, Err(eventkit::not_started())));
                break;
            }
            let outcome = self.count_chunk(chunk, &invocation).await;
            results.extend(outcome.results);
            work.extend(outcome.alone.into_iter().map(|event| vec![event]));
        }
        if let Some(namespace) = &self.metrics_namespace {
            counted_by_type(&countings, &results).emit(namespace, "analytics");
        }
        results
    }

    /// One chunk: see the module documentation for what each answer of the store leads to.
    async fn count_chunk<'a>(
        &self,
        chunk: Vec<&'a Counting>,
        invocation: &Invocation,
    ) -> ChunkOutcome<'a> {
        let mut results = BatchResults::new();
        let mut pending = chunk;
        let mut attempt = 0;
        let mut conflicts = 0;
        while attempt < ATTEMPTS {
            attempt += 1;
            let plan = TransactionPlan::of(&pending);
            match self.store.apply_once(&plan).await {
                Ok(Applied::Counted) => {
                    tracing::info!(
                        events = pending.len(),
                        counters = plan.counters.len(),
                        attempt,
                        "events counted"
                    );
                    results.extend(answer(&pending, Ok(Handled::Processed)));
                    return ChunkOutcome {
                        results,
                        alone: Vec::new(),
                    };
                }
                Ok(Applied::Duplicates(indexes)) => {
                    let (duplicates, rest) = split_at_indexes(pending, &indexes);
                    for duplicate in &duplicates {
                        let recorded = self.store.recheck(&duplicate.marker).await;
                        let result = came_again(&duplicate.marker, recorded);
                        results.push((duplicate.event_id().to_string(), result));
                    }
                    pending = rest;
                    if pending.is_empty() {
                        break;
                    }
                }
                Err(RepositoryError::Conflict(codes))
                    if self.conflict_retries.allows_another(conflicts + 1)
                        && invocation.has_time_to_start() =>
                {
                    // Nothing was written: the same transaction again cannot count twice.
                    conflicts += 1;
                    tracing::info!(
                        events = pending.len(),
                        conflicts,
                        ?codes,
                        "transaction conflict; trying the chunk again"
                    );
                    tokio::time::sleep(self.conflict_retries.delay(conflicts)).await;
                    attempt -= 1;
                }
                Err(e) => {
                    let error = HandlerError::from(e);
                    if error.is_permanent() && pending.len() > 1 {
                        tracing::warn!(events = pending.len(), error = %error,
                            "the batch's transaction was refused; counting its events one by one");
                        return ChunkOutcome {
                            results,
                            alone: pending,
                        };
                    }
                    tracing::warn!(events = pending.len(), error = %error, "events not counted");
                    results.extend(answer(&pending, Err(error)));
                    return ChunkOutcome {
                        results,
                        alone: Vec::new(),
                    };
                }
            }
        }
        if !pending.is_empty() {
            tracing::warn!(
                events = pending.len(),
                "duplicates found twice in a row; leaving the rest to SQS"
            );
            let error = HandlerError::transient(
                "duplicates-in-flight",
                "the transaction was cancelled twice for already counted events",
            );
            results.extend(answer(&pending, Err(error)));
        }
        ChunkOutcome {
            results,
            alone: Vec::new(),
        }
    }
}

/// What an event whose marker exists gets, from what its marker records. Nothing is counted
/// either way: a redelivery was counted before, and an event reusing another's id must not
/// add to (or be taken for) the first one's counts. A marker that could not be read back
/// leaves the event to SQS, whose redelivery finds the marker again.
fn came_again(
    marker: &Marker,
    recorded: Result<Recorded, RepositoryError>,
) -> Result<Handled, HandlerError> {
    match recorded {
        Ok(Recorded::Same) => Ok(Handled::Duplicate),
        Ok(Recorded::Other { digest }) => {
            tracing::warn!(event_id = %marker.event_id, source = marker.source,
                "another event of this source was counted under this id; not counting this one");
            Err(HandlerError::permanent(
                "conflicting-duplicate",
                format!(
                    "event {} from {} was counted before with other content \
                     (digest {} here, {} recorded): not counted",
                    marker.event_id,
                    marker.source,
                    short(&marker.digest),
                    short(&digest)
                ),
            ))
        }
        Err(e) => {
            tracing::warn!(event_id = %marker.event_id, error = %e,
                "counted before, but its marker could not be checked");
            Err(e.into())
        }
    }
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// `event`'s marker and counter updates, counted at `now`.
fn counting(event: &Envelope<Event>, now: DateTime<Utc>) -> Counting {
    Counting {
        updates: plan(event),
        marker: Marker {
            source: event.data.source(),
            detail_type: event.data.detail_type(),
            event_id: event.metadata.event_id.clone(),
            digest: event.content_digest(),
            counted_at: now,
        },
    }
}

/// The events of the batch this invocation counted (not duplicates, not failures), by type:
/// each event id is counted by exactly one invocation, so these sum to exactly-once totals.
fn counted_by_type(countings: &[Counting], results: &BatchResults) -> EventTypeCounts {
    let counted: std::collections::HashSet<&str> = results
        .iter()
        .filter(|(_, result)| matches!(result, Ok(Handled::Processed)))
        .map(|(id, _)| id.as_str())
        .collect();
    let mut counts = EventTypeCounts::default();
    for counting in countings.iter().filter(|c| counted.contains(c.event_id())) {
        counts.add(counting.marker.detail_type);
    }
    counts
}

/// The same `result` for each of `events`.
fn answer(events: &[&Counting], result: Result<Handled, HandlerError>) -> BatchResults {
    events
        .iter()
        .map(|e| (e.event_id().to_string(), result.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{AMOUNT, COUNT, ORDERS, REFUNDED, REFUNDS};
    use crate::repository::memory::MemoryCounterStore;
    use crate::repository::MARKER_TTL;
    use crate::ROUTES;
    use contracts::*;
    use eventkit::testing::invocation;
    use eventkit::{take_in, FailureKind, RawEvent};
    use serde_json::{json, Value};
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

    const HOUR: &str = "counts#2026-11-21T10";
    const DAY: &str = "revenue#2026-11-21";

    /// Conflicts retried at once: tests never wait.
    const NO_WAIT: RetryPolicy = RetryPolicy {
        base_delay: std::time::Duration::ZERO,
        max_delay: std::time::Duration::ZERO,
        ..CONFLICT_RETRIES
    };

    fn service() -> (Arc<MemoryCounterStore>, AnalyticsService) {
        let store = Arc::new(MemoryCounterStore::default());
        let service = AnalyticsService::new(store.clone()).with_conflict_retries(NO_WAIT);
        (store, service)
    }

    /// A store whose every transaction takes `step_ms` of the test's clock.
    struct SlowStore {
        inner: Arc<MemoryCounterStore>,
        now: Arc<AtomicU64>,
        step_ms: u64,
    }

    #[async_trait::async_trait]
    impl CounterStore for SlowStore {
        async fn apply_once(&self, plan: &TransactionPlan) -> Result<Applied, RepositoryError> {
            self.now.fetch_add(self.step_ms, SeqCst);
            self.inner.apply_once(plan).await
        }
        async fn recheck(&self, marker: &Marker) -> Result<Recorded, RepositoryError> {
            self.inner.recheck(marker).await
        }
    }

    /// A service over a store whose transactions take `step_ms` each, and an invocation with
    /// `remaining_ms` left, both on one clock the transactions move.
    fn slow_service(
        step_ms: u64,
        remaining_ms: u64,
    ) -> (Arc<MemoryCounterStore>, AnalyticsService, Invocation) {
        let inner = Arc::new(MemoryCounterStore::default());
        let now = Arc::new(AtomicU64::new(1_000_000));
        let read = now.clone();
        let clock: eventkit::Clock = Arc::new(move || read.load(SeqCst));
        let store = SlowStore {
            inner: inner.clone(),
            now,
            step_ms,
        };
        let service = AnalyticsService::new(Arc::new(store)).with_conflict_retries(NO_WAIT);
        let invocation =
            Invocation::with_remaining_on(std::time::Duration::from_millis(remaining_ms), clock);
        (inner, service, invocation)
    }

    /// `data` as an event that happened at `occurred_at`.
    fn event_at(occurred_at: &str, data: impl Into<Event>) -> Envelope<Event> {
        let mut event = Envelope::new(data.into());
        event.metadata.occurred_at = occurred_at.parse().unwrap();
        event
    }

    fn currency(code: &str) -> Currency {
        Currency::try_from(code.to_string()).unwrap()
    }

    fn processed(amount: u64, code: &str) -> PaymentProcessed {
        PaymentProcessed {
            order_id: "ord-1".into(),
            payment_id: "pay_1".into(),
            amount,
            currency: currency(code),
        }
    }

    fn refunded(amount: u64, code: &str) -> PaymentRefunded {
        PaymentRefunded {
            order_id: "ord-1".into(),
            payment_id: "pay_1".into(),
            amount,
            currency: currency(code),
        }
    }

    /// One event of every type in the contracts.
    fn one_of_each() -> Vec<Event> {
        let (order, email) = (String::from("ord-1"), String::from("ada@example.com"));
        let lines = vec![StockLine {
            sku: "MUG".into(),
            quantity: 1,
        }];
        vec![
            OrderPlaced {
                order_id: order.clone(),
                customer_id: "cus-1".into(),
                customer_email: email.clone(),
                currency: currency("EUR"),
                lines: vec![OrderLine {
                    sku: "MUG".into(),
                    quantity: 1,
                    unit_price: 1250,
                }],
                total: 1250,
                payment_token: "tok_visa".into(),
                shipping_address: None,
            }
            .into(),
            CustomerRegistered {
                customer_id: "cus-1".into(),
                email: email.clone(),
                name: "Ada".into(),
            }
            .into(),
            processed(1250, "EUR").into(),
            PaymentFailed {
                order_id: order.clone(),
                payment_id: "pay_1".into(),
                amount: 1250,
                currency: currency("EUR"),
                reason: "card-declined".into(),
            }
            .into(),
            RefundPaymentRequested {
                order_id: order.clone(),
                reason: "out-of-stock".into(),
            }
            .into(),
            refunded(1250, "EUR").into(),
            InventoryReserved {
                order_id: order.clone(),
                reservation_id: "res_1".into(),
                lines: lines.clone(),
            }
            .into(),
            InventoryOutOfStock {
                order_id: order.clone(),
                shortages: vec![Shortage {
                    sku: "MUG".into(),
                    requested: 2,
                    available: 1,
                }],
            }
            .into(),
            ReleaseInventoryRequested {
                order_id: order.clone(),
                reason: "payment-failed".into(),
            }
            .into(),
            InventoryReleased {
                order_id: order.clone(),
                reservation_id: "res_1".into(),
                lines: lines.clone(),
            }
            .into(),
            OrderConfirmed {
                order_id: order.clone(),
                customer_id: "cus-1".into(),
                customer_email: email.clone(),
                total: 1250,
                currency: currency("EUR"),
                payment_id: "pay_1".into(),
                reservation_id: "res_1".into(),
                lines,
            }
            .into(),
            OrderCancelled {
                order_id: order.clone(),
                customer_id: "cus-1".into(),
                customer_email: email.clone(),
                reason: "out-of-stock".into(),
            }
            .into(),
            OrderShipped {
                order_id: order.clone(),
                shipment_id: "shp_1".into(),
                carrier: "DHL".into(),
                tracking_number: "JD1".into(),
                customer_email: email.clone(),
            }
            .into(),
            FraudSuspected {
                order_id: order.clone(),
                reason: "velocity".into(),
                score: 90,
                pattern: None,
            }
            .into(),
            contracts::FraudCleared {
                order_id: order.clone(),
                customer_id: "cus-1".into(),
                rule: contracts::FraudRule {
                    min_orders: 5,
                    window_seconds: 60,
                    min_locations: 2,
                },
                orders_in_window: 1,
                locations_in_window: 1,
            }
            .into(),
            EmailSent {
                cause_event_id: "e-0".into(),
                template: "welcome".into(),
                to: email,
                subject: "Welcome".into(),
                message_id: "ses-1".into(),
                order_id: None,
            }
            .into(),
            contracts::OrderDeadlineReached {
                order_id: "ord-1".into(),
            }
            .into(),
            contracts::OrderCancelRequested {
                order_id: "ord-1".into(),
                reason: "customer-request".into(),
            }
            .into(),
            contracts::CancelShipmentRequested {
                order_id: "ord-1".into(),
                reason: "fraud-suspected".into(),
            }
            .into(),
            contracts::ShipmentCancelled {
                order_id: "ord-1".into(),
                reason: "fraud-suspected".into(),
            }
            .into(),
        ]
    }

    fn raw(source: &str, detail_type: &str, data: Value) -> RawEvent {
        RawEvent::from_eventbridge_json(json!({
            "id": "e-1", "source": source, "detail-type": detail_type,
            "time": "2026-11-21T10:30:00Z", "detail": {"data": data}
        }))
        .unwrap()
    }

    #[test]
    fn the_samples_cover_every_routed_type() {
        let mut sampled: Vec<_> = one_of_each().iter().map(Payload::detail_type).collect();
        let mut routed: Vec<_> = ROUTES.iter().map(|r| r.detail_type).collect();
        sampled.sort_unstable();
        routed.sort_unstable();
        assert_eq!(sampled, routed);
    }

    /// The results by event id, errors as their kind and reason (comparable as a whole).
    fn summary(results: BatchResults) -> BTreeMap<String, Result<Handled, (FailureKind, String)>> {
        results
            .into_iter()
            .map(|(id, r)| (id, r.map_err(|e| (e.kind, e.reason))))
            .collect()
    }

    /// The marker of the event `id` (from whichever source).
    fn marker_of(store: &MemoryCounterStore, id: &str) -> crate::repository::memory::StoredMarker {
        let suffix = format!("#{id}");
        let mut found: Vec<_> = store
            .markers
            .items()
            .into_iter()
            .filter(|(key, _)| key.ends_with(&suffix))
            .map(|(_, marker)| marker)
            .collect();
        assert_eq!(found.len(), 1, "one marker for {id}");
        found.remove(0)
    }

    fn ids(events: &[Envelope<Event>]) -> Vec<String> {
        events.iter().map(|e| e.metadata.event_id.clone()).collect()
    }

    /// `ids` each with `result`.
    fn each(
        ids: &[String],
        result: Result<Handled, (FailureKind, &str)>,
    ) -> BTreeMap<String, Result<Handled, (FailureKind, String)>> {
        ids.iter()
            .map(|id| (id.clone(), result.map_err(|(k, r)| (k, r.to_string()))))
            .collect()
    }

    fn orders(n: usize) -> Vec<Envelope<Event>> {
        (0..n)
            .map(|i| event_at("2026-11-21T10:30:00Z", processed(100 + i as u64, "EUR")))
            .collect()
    }

    #[tokio::test]
    async fn every_routed_type_is_counted_once_in_its_hour_even_when_delivered_twice() {
        let (store, service) = service();
        for data in one_of_each() {
            let detail_type = data.detail_type();
            let event = event_at("2026-11-21T10:30:00Z", data);
            let id = event.metadata.event_id.clone();

            let first = service
                .handle_batch(vec![event.clone()], invocation())
                .await;
            let again = service
                .handle_batch(vec![event.clone()], invocation())
                .await;

            assert_eq!(
                (summary(first), summary(again)),
                (
                    each(std::slice::from_ref(&id), Ok(Handled::Processed)),
                    each(std::slice::from_ref(&id), Ok(Handled::Duplicate))
                ),
                "{detail_type}"
            );
            assert_eq!(store.counter(HOUR, detail_type, COUNT), 1, "{detail_type}");
            let marker = marker_of(&store, &id);
            assert_eq!(
                (marker.detail_type, marker.duplicates),
                (detail_type, 1),
                "{detail_type}"
            );
        }
    }

    #[tokio::test]
    async fn a_payment_delivered_twice_adds_to_revenue_once() {
        let (store, service) = service();
        let payment = event_at("2026-11-21T10:30:00Z", processed(1234, "XTS"));

        service
            .handle_batch(vec![payment.clone()], invocation())
            .await;
        let again = service
            .handle_batch(vec![payment.clone()], invocation())
            .await;

        assert_eq!(
            summary(again),
            each(&ids(std::slice::from_ref(&payment)), Ok(Handled::Duplicate))
        );
        assert_eq!(store.counter(DAY, "XTS", AMOUNT), 1234);
        assert_eq!(store.counter(DAY, "XTS", ORDERS), 1);
        assert_eq!(store.counter(HOUR, "PaymentProcessed", COUNT), 1);
        let marker = marker_of(&store, &payment.metadata.event_id);
        let expiry = Utc::now().timestamp() + MARKER_TTL.as_secs() as i64;
        assert!((expiry - 5..=expiry).contains(&marker.expires_at));
        assert_eq!(marker.duplicates, 1);
    }

    #[tokio::test]
    async fn another_payment_reusing_a_counted_id_is_refused_and_adds_nothing() {
        // given a payment counted
        let (store, service) = service();
        let first = event_at("2026-11-21T10:30:00Z", processed(1234, "XTS"));
        service
            .handle_batch(vec![first.clone()], invocation())
            .await;

        // when another payment of the same source comes under the same id
        let mut reused = event_at("2026-11-21T10:30:00Z", processed(9999, "XTS"));
        reused.metadata = first.metadata.clone();
        let results = service
            .handle_batch(vec![reused.clone()], invocation())
            .await;

        // then it is refused for good and nothing is counted, nor noted as a redelivery
        assert_eq!(
            summary(results),
            each(
                &ids(std::slice::from_ref(&reused)),
                Err((FailureKind::Permanent, "conflicting-duplicate"))
            )
        );
        assert_eq!(store.counter(DAY, "XTS", AMOUNT), 1234);
        assert_eq!(store.counter(DAY, "XTS", ORDERS), 1);
        assert_eq!(store.counter(HOUR, "PaymentProcessed", COUNT), 1);
        let marker = marker_of(&store, &first.metadata.event_id);
        assert_eq!(
            marker.digest,
            first.content_digest(),
            "the first one stands"
        );
        assert_eq!(marker.duplicates, 0);

        // and a true redelivery of the first is still a plain duplicate
        let again = service
            .handle_batch(vec![first.clone()], invocation())
            .await;
        assert_eq!(
            summary(again),
            each(&ids(std::slice::from_ref(&first)), Ok(Handled::Duplicate))
        );
        assert_eq!(store.counter(DAY, "XTS", AMOUNT), 1234);
    }

    #[tokio::test]
    async fn an_id_another_source_used_first_is_counted_on_its_own() {
        // given an order the shop front sent under an id it chose
        let (store, service) = service();
        let order = event_at("2026-11-21T10:30:00Z", one_of_each().remove(0));
        service
            .handle_batch(vec![order.clone()], invocation())
            .await;

        // when the payment service's event comes with that same id
        let mut payment = event_at("2026-11-21T10:30:00Z", processed(1234, "XTS"));
        payment.metadata.event_id = order.metadata.event_id.clone();
        let results = service
            .handle_batch(vec![payment.clone()], invocation())
            .await;

        // then the shop front's id does not suppress the payment: revenue counts it
        assert_eq!(
            summary(results),
            each(&ids(std::slice::from_ref(&payment)), Ok(Handled::Processed))
        );
        assert_eq!(store.counter(DAY, "XTS", AMOUNT), 1234);
        assert_eq!(store.counter(HOUR, "OrderPlaced", COUNT), 1);
        assert_eq!(store.markers.items().len(), 2, "one marker per source");
    }

    #[tokio::test]
    async fn a_marker_expires_from_when_it_was_counted_whatever_the_sender_says() {
        // given a payment whose sender claims it happened years ago
        let (store, service) = service();
        let old = event_at("2001-01-01T00:00:00Z", processed(5, "XTS"));

        // when it is counted
        let before = Utc::now().timestamp();
        service.handle_batch(vec![old.clone()], invocation()).await;
        let after = Utc::now().timestamp();

        // then its marker lives MARKER_TTL from now, not from 2001 (an expiry in the past
        // would let DynamoDB delete it at once, or keep it for ever past five years)
        let marker = marker_of(&store, &old.metadata.event_id);
        let ttl = MARKER_TTL.as_secs() as i64;
        assert!((before + ttl..=after + ttl).contains(&marker.expires_at));
        assert_eq!(marker.digest, old.content_digest());
    }

    #[test]
    fn a_marker_that_cannot_be_checked_leaves_the_event_to_sqs() {
        let marker = counting(&orders(1).remove(0), Utc::now()).marker;
        let gone = came_again(&marker, Err(RepositoryError::NoMarker("e".into())));
        let err = gone.unwrap_err();
        assert!(!err.is_permanent(), "{err}");
        assert!(matches!(
            came_again(&marker, Ok(Recorded::Same)),
            Ok(Handled::Duplicate)
        ));
    }

    #[test]
    fn the_metrics_count_what_this_invocation_counted_and_nothing_else() {
        let now = Utc::now();
        let events = [
            event_at("2026-11-21T10:30:00Z", processed(1, "EUR")),
            event_at("2026-11-21T10:30:00Z", processed(2, "EUR")),
            event_at("2026-11-21T10:30:00Z", refunded(1, "EUR")),
            event_at("2026-11-21T10:30:00Z", processed(3, "EUR")),
        ];
        let countings: Vec<Counting> = events.iter().map(|e| counting(e, now)).collect();
        let ids = ids(&events);
        let results: BatchResults = vec![
            (ids[0].clone(), Ok(Handled::Processed)),
            (ids[1].clone(), Ok(Handled::Duplicate)),
            (ids[2].clone(), Ok(Handled::Processed)),
            (
                ids[3].clone(),
                Err(HandlerError::transient("conflict", "try again")),
            ),
        ];

        let docs = counted_by_type(&countings, &results).to_emf("Orderflow", "analytics", 0);

        let counts: Vec<(Value, Value)> = docs
            .iter()
            .map(|d| (d["eventType"].clone(), d["events"].clone()))
            .collect();
        assert_eq!(
            counts,
            vec![
                (json!("PaymentProcessed"), json!(1)),
                (json!("PaymentRefunded"), json!(1))
            ]
        );
    }

    #[tokio::test]
    async fn a_batch_is_counted_in_one_transaction() {
        // given a batch of payments, refunds and other events across days and currencies
        let (store, service) = service();
        let batch = vec![
            event_at("2026-11-21T00:00:00Z", processed(100, "EUR")),
            event_at("2026-11-21T23:59:59Z", processed(250, "EUR")),
            event_at("2026-11-21T12:00:00Z", processed(999, "XTS")),
            event_at("2026-11-22T00:00:00Z", processed(7, "EUR")),
            event_at("2026-11-21T18:00:00Z", refunded(40, "EUR")),
            event_at("2026-11-21T10:30:00Z", one_of_each().remove(0)),
        ];

        // when it is handled
        let results = service.handle_batch(batch.clone(), invocation()).await;

        // then every event is counted, by one transaction
        assert_eq!(summary(results), each(&ids(&batch), Ok(Handled::Processed)));
        assert_eq!(store.transactions(), vec![ids(&batch)]);
        let day = |pk: &str, sk: &str| {
            [AMOUNT, ORDERS, REFUNDED, REFUNDS].map(|a| store.counter(pk, sk, a))
        };
        assert_eq!(day(DAY, "EUR"), [350, 2, 40, 1]);
        assert_eq!(day(DAY, "XTS"), [999, 1, 0, 0]);
        assert_eq!(day("revenue#2026-11-22", "EUR"), [7, 1, 0, 0]);
        assert_eq!(store.counter(HOUR, "OrderPlaced", COUNT), 1);
        assert_eq!(
            store.counter("counts#2026-11-21T23", "PaymentProcessed", COUNT),
            1
        );
    }

    #[tokio::test]
    async fn a_batch_with_a_counted_event_counts_the_others_once_and_that_one_not_again() {
        // given an event counted before, redelivered with new ones
        let (store, service) = service();
        let batch = orders(4);
        service
            .handle_batch(vec![batch[2].clone()], invocation())
            .await;

        // when the batch is handled
        let results = service.handle_batch(batch.clone(), invocation()).await;

        // then the redelivery is a duplicate, the others are counted, in a second transaction
        let mut expected = each(&ids(&batch), Ok(Handled::Processed));
        expected.insert(ids(&batch)[2].clone(), Ok(Handled::Duplicate));
        assert_eq!(summary(results), expected);
        let others = vec![
            ids(&batch)[0].clone(),
            ids(&batch)[1].clone(),
            ids(&batch)[3].clone(),
        ];
        assert_eq!(
            store.transactions(),
            vec![vec![ids(&batch)[2].clone()], ids(&batch), others]
        );
        assert_eq!(store.counter(HOUR, "PaymentProcessed", COUNT), 4);
        assert_eq!(store.counter(DAY, "EUR", AMOUNT), 100 + 101 + 102 + 103);
        assert_eq!(store.counter(DAY, "EUR", ORDERS), 4);
        let marker = marker_of(&store, &ids(&batch)[2]);
        assert_eq!(marker.duplicates, 1);
    }

    #[tokio::test]
    async fn a_batch_redelivered_whole_counts_nothing() {
        let (store, service) = service();
        let batch = orders(3);
        service.handle_batch(batch.clone(), invocation()).await;

        let again = service.handle_batch(batch.clone(), invocation()).await;

        assert_eq!(summary(again), each(&ids(&batch), Ok(Handled::Duplicate)));
        assert_eq!(store.transactions(), vec![ids(&batch), ids(&batch)]);
        assert_eq!(store.counter(DAY, "EUR", ORDERS), 3);
    }

    #[tokio::test]
    async fn duplicates_named_twice_in_a_row_leave_the_rest_to_sqs() {
        // given two counted events in a batch, and a store that names one duplicate at a time
        let (store, service) = service();
        let batch = orders(4);
        service
            .handle_batch(vec![batch[0].clone(), batch[1].clone()], invocation())
            .await;
        store.name_duplicates_at_most(1);

        // when the batch is handled
        let results = service.handle_batch(batch.clone(), invocation()).await;

        // then both are duplicates after two transactions, and the rest is retried by SQS
        let all = ids(&batch);
        let mut expected = each(
            &all[2..],
            Err((FailureKind::Transient, "duplicates-in-flight")),
        );
        expected.extend(each(&all[..2], Ok(Handled::Duplicate)));
        assert_eq!(summary(results), expected);
        assert_eq!(store.transactions().len(), 3);
        assert_eq!(store.counter(DAY, "EUR", ORDERS), 2);

        // and the redelivery of the rest counts it once
        let retried = service
            .handle_batch(batch[2..].to_vec(), invocation())
            .await;
        assert_eq!(summary(retried), each(&all[2..], Ok(Handled::Processed)));
        assert_eq!(store.counter(DAY, "EUR", ORDERS), 4);
    }

    #[tokio::test]
    async fn a_batch_is_counted_in_chunks_of_a_few_transactions_worth() {
        // given 150 payments of one hour and currency: 2 counters shared by all
        let (store, service) = service();
        let batch = orders(150);

        // when the batch is handled
        let results = service.handle_batch(batch.clone(), invocation()).await;

        // then each transaction holds 23 markers and the 2 counters: CHUNK_ITEMS items
        assert_eq!(summary(results), each(&ids(&batch), Ok(Handled::Processed)));
        let all = ids(&batch);
        let expected: Vec<Vec<String>> = all.chunks(CHUNK_ITEMS - 2).map(<[_]>::to_vec).collect();
        assert_eq!(store.transactions(), expected);
        assert_eq!(store.transactions().len(), 7);
        assert_eq!(store.counter(DAY, "EUR", ORDERS), 150);
        assert_eq!(
            store.counter(DAY, "EUR", AMOUNT),
            (0..150u128).map(|i| 100 + i).sum::<u128>()
        );
        assert_eq!(store.counter(HOUR, "PaymentProcessed", COUNT), 150);
    }

    #[tokio::test]
    async fn chunks_may_be_as_large_as_dynamodb_allows() {
        let (store, service) = service();
        let service = service.with_chunk_items(1_000);
        let batch = orders(150);
        service.handle_batch(batch.clone(), invocation()).await;
        let all = ids(&batch);
        assert_eq!(
            store.transactions(),
            vec![all[..98].to_vec(), all[98..].to_vec()],
            "100 items at most"
        );
    }

    #[tokio::test]
    async fn a_conflicting_chunk_is_tried_again_and_counted_once() {
        // given a batch whose first transaction conflicts
        let (store, service) = service();
        let batch = orders(30);
        store.conflict_next(1);

        // when the batch is handled
        let results = service.handle_batch(batch.clone(), invocation()).await;

        // then the first chunk is tried again at once, and every event counted once
        assert_eq!(summary(results), each(&ids(&batch), Ok(Handled::Processed)));
        let all = ids(&batch);
        assert_eq!(
            store.transactions(),
            vec![all[..23].to_vec(), all[..23].to_vec(), all[23..].to_vec()]
        );
        assert_eq!(store.counter(DAY, "EUR", ORDERS), 30);
    }

    #[tokio::test]
    async fn a_chunk_conflicting_past_its_retries_goes_back_to_sqs_and_counts_once_later() {
        // given a batch whose first chunk conflicts on every try
        let (store, service) = service();
        let batch = orders(30);
        store.conflict_next(CONFLICT_RETRIES.max_attempts);

        // when the batch is handled
        let results = service.handle_batch(batch.clone(), invocation()).await;

        // then the first chunk's events are retried by SQS, the second chunk's counted
        let all = ids(&batch);
        let mut expected = each(
            &all[..23],
            Err((FailureKind::Transient, "transaction-conflict")),
        );
        expected.extend(each(&all[23..], Ok(Handled::Processed)));
        assert_eq!(summary(results), expected);
        assert_eq!(
            store.transactions().len(),
            CONFLICT_RETRIES.max_attempts as usize + 1
        );
        assert_eq!(store.counter(DAY, "EUR", ORDERS), 7);

        // and their redelivery counts them once
        let retried = service.handle_batch(batch.clone(), invocation()).await;
        let mut expected = each(&all[..23], Ok(Handled::Processed));
        expected.extend(each(&all[23..], Ok(Handled::Duplicate)));
        assert_eq!(summary(retried), expected);
        assert_eq!(store.counter(DAY, "EUR", ORDERS), 30);
        assert_eq!(store.counter(HOUR, "PaymentProcessed", COUNT), 30);
    }

    #[tokio::test]
    async fn a_conflict_is_not_tried_again_without_time_to_finish_it() {
        // given 10 s left (a 2 s margin) and a transaction that takes 9 s and conflicts
        let (store, service, invocation) = slow_service(9_000, 10_000);
        store.conflict_next(1);
        let batch = orders(5);

        // when the batch is handled
        let results = service.handle_batch(batch.clone(), invocation).await;

        // then the chunk goes back to SQS instead of a second try
        assert_eq!(
            summary(results),
            each(
                &ids(&batch),
                Err((FailureKind::Transient, "transaction-conflict"))
            )
        );
        assert_eq!(store.transactions().len(), 1);
    }

    #[tokio::test]
    async fn a_batch_whose_time_runs_out_counts_the_chunks_it_started_and_leaves_the_rest() {
        // given 10 s left (a 2 s margin), 5 chunks of 23 payments, 3 s per transaction
        let (store, service, invocation) = slow_service(3_000, 10_000);
        let batch = orders(5 * 23);

        // when the batch is handled
        let results = service.handle_batch(batch.clone(), invocation).await;

        // then chunks started with 10, 7 and 4 s left are counted; with 1 s left none starts
        let all = ids(&batch);
        let mut expected = each(&all[..69], Ok(Handled::Processed));
        expected.extend(each(
            &all[69..],
            Err((FailureKind::Transient, eventkit::NOT_STARTED)),
        ));
        assert_eq!(summary(results), expected);
        assert_eq!(store.transactions().len(), 3);
        assert_eq!(store.counter(DAY, "EUR", ORDERS), 69);

        // and the redelivery of the whole batch counts the rest once, the others not again
        let again = service
            .handle_batch(batch.clone(), eventkit::testing::invocation())
            .await;
        let mut expected = each(&all[..69], Ok(Handled::Duplicate));
        expected.extend(each(&all[69..], Ok(Handled::Processed)));
        assert_eq!(summary(again), expected);
        assert_eq!(store.counter(DAY, "EUR", ORDERS), 115);
        assert_eq!(store.counter(HOUR, "PaymentProcessed", COUNT), 115);
    }

    #[tokio::test]
    async fn a_batch_with_its_deadline_near_starts_no_transaction() {
        let (store, service, invocation) = slow_service(3_000, 900);
        let batch = orders(3);
        let results = service.handle_batch(batch.clone(), invocation).await;
        assert_eq!(
            summary(results),
            each(
                &ids(&batch),
                Err((FailureKind::Transient, eventkit::NOT_STARTED))
            )
        );
        assert!(store.transactions().is_empty());
    }

    #[tokio::test]
    async fn an_event_dynamodb_refuses_is_dead_lettered_alone() {
        // given a batch with an event whose id is too long for a key
        let (store, service) = service();
        let mut batch = orders(3);
        batch[1].metadata.event_id = "e".repeat(3000);

        // when the batch is handled
        let results = service.handle_batch(batch.clone(), invocation()).await;

        // then only that event fails, permanently; the others are counted
        let all = ids(&batch);
        let mut expected = each(&all, Ok(Handled::Processed));
        expected.insert(
            all[1].clone(),
            Err((FailureKind::Permanent, "dynamodb-rejected".to_string())),
        );
        assert_eq!(summary(results), expected);
        assert_eq!(store.transactions().len(), 4, "the batch, then each alone");
        assert_eq!(store.counter(DAY, "EUR", ORDERS), 2);
    }

    #[test]
    fn a_poison_payment_is_refused_at_intake_naming_the_field() {
        let payment = |amount: Value, code: &str| json!({"orderId": "o-1", "paymentId": "pay_1", "amount": amount, "currency": code});
        for (detail_type, data, path) in [
            (
                "PaymentProcessed",
                payment(json!("1234"), "EUR"),
                "data.amount",
            ),
            ("PaymentProcessed", payment(json!(-1), "EUR"), "data.amount"),
            (
                "PaymentProcessed",
                payment(json!(1), "euro"),
                "data.currency",
            ),
            ("PaymentRefunded", json!({"orderId": "o-1"}), "data"),
        ] {
            let err =
                take_in::<Event>(ROUTES, &raw("orderflow.payment", detail_type, data)).unwrap_err();
            assert_eq!(err.reason(), "invalid-data", "{detail_type}: {err}");
            assert!(err.to_string().contains(&format!("`{path}`")), "{err}");
        }
    }

    #[test]
    fn unknown_types_and_forged_sources_are_refused_at_intake() {
        let unknown = take_in::<Event>(
            ROUTES,
            &raw("orderflow.returns", "ReturnRequested", json!(42)),
        );
        assert_eq!(unknown.unwrap_err().reason(), "not-routed");
        let empty = take_in::<Event>(ROUTES, &raw("orderflow.payment", "", json!({})));
        assert_eq!(empty.unwrap_err().reason(), "not-routed");
        let forged = take_in::<Event>(
            ROUTES,
            &raw(
                "acme.payment",
                "PaymentProcessed",
                json!({"orderId": "o-1", "paymentId": "p", "amount": 1, "currency": "EUR"}),
            ),
        );
        assert_eq!(forged.unwrap_err().reason(), "untrusted-source");
    }
}
