//! Given the order's stream, when a fact is handled, then the stream holds these events.
//! The store is a memory copy with the event store's conditions: an append at a stale
//! version is a conflict, and an event id is stored once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use contracts::OrderConfirmed;
use eventkit::envelope::derived_event_id;
use eventkit::testing::{assert_rule_matches_routes, invocation, lock};
use eventkit::DynamoError;

use super::*;
use crate::fixtures::*;

/// Order streams in memory, with the event store's append semantics.
#[derive(Default)]
struct MemoryStreams {
    streams: Mutex<BTreeMap<String, Vec<StoredEvent>>>,
    /// Appended by another writer just before the next append, which then loses the race.
    racing: Mutex<Option<Vec<RawEvent>>>,
    failures_left: Mutex<u32>,
    /// Requests made, as the table would count them.
    reads: AtomicU32,
    appends: AtomicU32,
}

impl MemoryStreams {
    /// Writes `events` after the stream's last version, as the first writer would.
    fn seed(&self, stream_id: &str, events: &[RawEvent]) {
        self.write(stream_id, None, events).unwrap();
    }

    fn race_next_append_with(&self, events: Vec<RawEvent>) {
        *lock(&self.racing) = Some(events);
    }

    fn fail_next(&self, n: u32) {
        *lock(&self.failures_left) = n;
    }

    /// (reads, appends) so far.
    fn requests(&self) -> (u32, u32) {
        (
            self.reads.load(Ordering::SeqCst),
            self.appends.load(Ordering::SeqCst),
        )
    }

    /// Skips stored ids first, then checks the version, as `EventStore::append` does.
    fn write(
        &self,
        stream_id: &str,
        expected: Option<u64>,
        events: &[RawEvent],
    ) -> Result<Appended, StoreError> {
        let mut streams = lock(&self.streams);
        let stored = |id: &str| streams.values().flatten().any(|e| e.event_id == id);
        let (already, fresh): (Vec<&RawEvent>, Vec<&RawEvent>) =
            events.iter().partition(|e| stored(&e.metadata.event_id));
        let already_stored = already
            .iter()
            .map(|e| e.metadata.event_id.clone())
            .collect();
        let stream = streams.entry(stream_id.to_string()).or_default();
        let current = stream.len() as u64;
        let expected = expected.unwrap_or(current);
        if fresh.is_empty() {
            return Ok(Appended {
                version: expected,
                written: vec![],
                already_stored,
            });
        }
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
        }
        Ok(Appended {
            version: expected + fresh.len() as u64,
            written: fresh.iter().map(|e| e.metadata.event_id.clone()).collect(),
            already_stored,
        })
    }
}

#[async_trait]
impl OrderStreams for MemoryStreams {
    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(lock(&self.streams)
            .get(stream_id)
            .map(|s| {
                s.iter()
                    .filter(|e| e.version >= from_version)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn append(
        &self,
        stream_id: &str,
        expected_version: u64,
        events: &[RawEvent],
    ) -> Result<Appended, StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        if let Some(racing) = lock(&self.racing).take() {
            self.seed(stream_id, &racing);
        }
        {
            let mut left = lock(&self.failures_left);
            if *left > 0 {
                *left -= 1;
                return Err(StoreError::Dynamo(DynamoError::Unavailable(
                    "ProvisionedThroughputExceededException: failing on purpose".into(),
                )));
            }
        }
        self.write(stream_id, Some(expected_version), events)
    }
}

struct Saga {
    streams: Arc<MemoryStreams>,
    service: SagaService,
}

fn saga() -> Saga {
    let streams = Arc::new(MemoryStreams::default());
    Saga {
        service: SagaService::new(streams.clone()),
        streams,
    }
}

async fn given(facts: &[Envelope<Event>]) -> Saga {
    let saga = saga();
    for fact in facts {
        saga.when(fact).await.unwrap();
    }
    saga
}

impl Saga {
    async fn when(&self, fact: &Envelope<Event>) -> Result<Handled, HandlerError> {
        self.service.handle(fact.clone(), invocation()).await
    }

    /// The order's stream, as envelopes.
    fn stream(&self) -> Vec<Envelope<Event>> {
        lock(&self.streams.streams)
            .get(&order_stream(ORDER))
            .map(|s| s.iter().map(|e| e.event::<Event>().unwrap()).collect())
            .unwrap_or_default()
    }

    fn events(&self) -> Vec<Event> {
        self.stream().into_iter().map(|e| e.data).collect()
    }
}

#[test]
fn routes_match_the_template() {
    assert_rule_matches_routes("OrdersRule", ROUTES);
}

#[tokio::test]
async fn an_order_placed_is_stored_and_waits_for_its_results() {
    let saga = saga();
    assert_eq!(
        saga.when(&event(placed())).await.unwrap(),
        Handled::Processed
    );
    assert_eq!(saga.events(), vec![Event::from(placed())]);
}

#[tokio::test]
async fn paid_and_reserved_confirm_the_order() {
    let saga = given(&[event(placed()), event(cleared()), event(paid())]).await;
    assert_eq!(
        saga.when(&event(reserved())).await.unwrap(),
        Handled::Processed
    );
    assert_eq!(
        saga.events(),
        vec![
            placed().into(),
            cleared().into(),
            paid().into(),
            reserved().into(),
            confirmed()
        ]
    );
}

#[tokio::test]
async fn decisions_are_correlated_and_have_the_ids_they_always_had() {
    let reservation = event(reserved());
    let saga = given(&[
        event(placed()),
        event(cleared()),
        event(paid()),
        reservation.clone(),
    ])
    .await;
    let decision = saga.stream().pop().unwrap();
    assert_eq!(decision.data, confirmed());
    assert_eq!(
        decision.metadata.event_id,
        derived_event_id(
            &reservation.metadata.event_id,
            OrderConfirmed::DETAIL_TYPE,
            ORDER
        ),
        "derived from the fact's id, the type and the order id"
    );
    assert_eq!(
        decision.metadata.causation_id.as_deref(),
        Some(reservation.metadata.event_id.as_str())
    );
    assert_eq!(
        decision.metadata.correlation_id,
        reservation.metadata.correlation_id
    );
    assert_eq!(decision.source, contracts::sources::SAGA);
}

#[tokio::test]
async fn a_failed_payment_cancels_and_releases_the_reservation() {
    let saga = given(&[event(placed()), event(reserved())]).await;
    saga.when(&event(payment_failed())).await.unwrap();
    assert_eq!(
        saga.events()[3..],
        [
            cancelled("payment-failed"),
            release_requested("payment-failed")
        ]
    );
}

#[tokio::test]
async fn a_price_mismatch_cancels_with_its_own_reason_and_releases_the_reservation() {
    let saga = given(&[event(placed()), event(reserved())]).await;
    let mut failed = payment_failed();
    failed.reason = "price-mismatch".into();
    saga.when(&event(failed)).await.unwrap();
    assert_eq!(
        saga.events()[3..],
        [
            cancelled("price-mismatch"),
            release_requested("price-mismatch")
        ]
    );
}

#[tokio::test]
async fn the_same_order_placed_under_a_new_event_id_is_a_duplicate() {
    let saga = given(&[event(placed())]).await;
    assert_eq!(
        saga.when(&event(placed())).await.unwrap(),
        Handled::Duplicate
    );
    assert_eq!(saga.events(), [Event::OrderPlaced(placed())]);
}

#[tokio::test]
async fn a_second_order_placed_with_other_content_is_refused_and_the_first_stands() {
    let saga = given(&[event(placed()), event(paid())]).await;
    let mut other = placed();
    other.customer_email = "mallory@example.com".into();
    for second in [event(other.clone()), {
        // the same event id as the first, other content
        let mut reused = event(other);
        reused.metadata = saga.stream()[0].metadata.clone();
        reused
    }] {
        let err = saga.when(&second).await.unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.reason, "conflicting-duplicate");
    }
    assert_eq!(
        saga.events(),
        [
            Event::OrderPlaced(placed()),
            Event::PaymentProcessed(paid())
        ]
    );
    // and what the saga decides later is about the first order
    saga.when(&event(reserved())).await.unwrap();
    saga.when(&event(cleared())).await.unwrap();
    assert!(saga.events().contains(&confirmed()));
}

#[tokio::test]
async fn missing_stock_cancels_and_refunds_the_payment() {
    let saga = given(&[event(placed()), event(paid())]).await;
    saga.when(&event(out_of_stock())).await.unwrap();
    assert_eq!(
        saga.events()[3..],
        [cancelled("out-of-stock"), refund_requested("out-of-stock")]
    );
}

#[tokio::test]
async fn fraud_cancels_a_confirmed_order_with_both_compensations() {
    let saga = given(&[
        event(placed()),
        event(cleared()),
        event(paid()),
        event(reserved()),
    ])
    .await;
    saga.when(&event(fraud())).await.unwrap();
    assert_eq!(
        saga.events()[5..],
        [
            fraud().into(),
            cancelled("fraud-suspected"),
            refund_requested("fraud-suspected"),
            release_requested("fraud-suspected")
        ]
    );
}

#[tokio::test]
async fn shipping_is_recorded_and_decides_nothing() {
    let saga = given(&[
        event(placed()),
        event(cleared()),
        event(paid()),
        event(reserved()),
    ])
    .await;
    assert_eq!(
        saga.when(&event(shipped())).await.unwrap(),
        Handled::Processed
    );
    assert_eq!(saga.events()[5..], [shipped().into()]);
}

#[tokio::test]
async fn completed_compensations_are_recorded_and_decide_nothing() {
    let saga = given(&[event(placed()), event(paid()), event(out_of_stock())]).await;
    saga.when(&event(refunded())).await.unwrap();
    assert_eq!(
        saga.events()[5..],
        [refunded().into()],
        "after the decisions"
    );
    let saga = given(&[event(placed()), event(reserved()), event(payment_failed())]).await;
    saga.when(&event(released())).await.unwrap();
    assert_eq!(saga.events()[5..], [released().into()]);
}

#[tokio::test]
async fn a_redelivered_fact_is_a_duplicate_and_changes_nothing() {
    let reservation = event(reserved());
    let saga = given(&[
        event(placed()),
        event(cleared()),
        event(paid()),
        reservation.clone(),
    ])
    .await;
    let before = saga.stream();
    assert_eq!(saga.when(&reservation).await.unwrap(), Handled::Duplicate);
    assert_eq!(saga.stream(), before);
}

#[tokio::test]
async fn a_lost_race_reloads_the_stream_and_decides_again() {
    let saga = given(&[event(placed()), event(cleared())]).await;
    // While the payment result is being decided on, another invocation stores the
    // reservation (which alone decided nothing).
    saga.streams
        .race_next_append_with(vec![event(reserved()).to_raw()]);
    assert_eq!(saga.when(&event(paid())).await.unwrap(), Handled::Processed);
    assert_eq!(
        saga.events(),
        vec![
            placed().into(),
            cleared().into(),
            reserved().into(),
            paid().into(),
            confirmed()
        ]
    );
}

#[tokio::test]
async fn the_same_fact_in_two_invocations_at_once_is_stored_once() {
    let saga = given(&[event(placed()), event(cleared()), event(paid())]).await;
    let reservation = event(reserved());
    let copy_stored_first = [
        reservation.to_raw(),
        Envelope::caused_by(&reservation.metadata, ORDER, confirmed()).to_raw(),
    ];
    saga.streams
        .race_next_append_with(copy_stored_first.to_vec());
    assert_eq!(saga.when(&reservation).await.unwrap(), Handled::Duplicate);
    assert_eq!(
        saga.events(),
        vec![
            placed().into(),
            cleared().into(),
            paid().into(),
            reserved().into(),
            confirmed()
        ]
    );
}

#[tokio::test]
async fn a_failed_append_is_retried_by_redelivery_with_the_same_decision_ids() {
    let saga = given(&[event(placed()), event(cleared()), event(paid())]).await;
    let reservation = event(reserved());
    saga.streams.fail_next(1);
    let err = saga.when(&reservation).await.unwrap_err();
    assert!(!err.is_permanent(), "{err}");
    assert_eq!(saga.events().len(), 3, "nothing stored");
    assert_eq!(saga.when(&reservation).await.unwrap(), Handled::Processed);
    let decision = saga.stream().pop().unwrap();
    assert_eq!(decision.data, confirmed());
    assert_eq!(
        decision.metadata.event_id,
        Envelope::caused_by(&reservation.metadata, ORDER, confirmed())
            .metadata
            .event_id
    );
}

/// Validation runs once, at intake. An OrderPlaced stored before today's rules (its
/// total does not add up, its customer id holds a `#`) is still part of the order.
#[tokio::test]
async fn a_stored_order_that_fails_todays_validation_still_folds() {
    let mut old = placed();
    old.total = 1;
    old.customer_id = "legacy#42".into();
    let old = event(old);
    assert_eq!(
        take_in::<Event>(ROUTES, &old.to_raw())
            .unwrap_err()
            .reason(),
        "invalid-data",
        "today it would be refused at intake"
    );
    let saga = saga();
    saga.streams.seed(
        &order_stream(ORDER),
        &[
            old.to_raw(),
            event(cleared()).to_raw(),
            event(paid()).to_raw(),
        ],
    );
    assert_eq!(
        saga.when(&event(reserved())).await.unwrap(),
        Handled::Processed
    );
    let Some(Event::OrderConfirmed(confirmation)) = saga.events().pop() else {
        panic!("not confirmed: {:?}", saga.events());
    };
    assert_eq!(confirmation.total, 1);
    assert_eq!(confirmation.customer_id, "legacy#42");
}

#[tokio::test]
async fn an_undecodable_stored_event_makes_the_stream_corrupt() {
    let saga = saga();
    let mut broken = event(placed()).to_raw();
    broken.data = serde_json::json!({"orderId": ORDER});
    saga.streams.seed(&order_stream(ORDER), &[broken]);
    let err = saga.when(&event(paid())).await.unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(err.reason, "corrupt-stream");
}

#[tokio::test]
async fn an_event_the_saga_does_not_take_in_is_not_routed() {
    let saga = saga();
    let err = saga.when(&event(confirmed())).await.unwrap_err();
    assert_eq!(err.reason, "not-routed");
    assert!(saga.events().is_empty());
}

#[test]
fn a_batch_runs_one_orders_facts_in_turn() {
    assert_eq!(order_of(&event(paid()).to_raw()), Some(ORDER.to_string()));
    assert_eq!(order_of(&event(confirmed()).to_raw()), None, "not routed");
    let mut forged = event(paid()).to_raw();
    forged.source = contracts::sources::ORDERS.into();
    assert_eq!(order_of(&forged), None, "untrusted source");
}

/// Requests per order: the reads a warm instance saves.
mod reads {
    use super::*;

    /// An order's happy path: placed, cleared, paid, reserved (confirmed), shipped.
    fn happy_path() -> Vec<Envelope<Event>> {
        vec![
            event(placed()),
            event(cleared()),
            event(paid()),
            event(reserved()),
            event(shipped()),
        ]
    }

    #[tokio::test]
    async fn without_memory_every_fact_reads_the_stream() {
        let streams = Arc::new(MemoryStreams::default());
        let service = SagaService::with_memory(streams.clone(), 0);
        for fact in happy_path() {
            service.handle(fact, invocation()).await.unwrap();
        }
        assert_eq!(streams.requests(), (4, 5), "all but OrderPlaced read");
    }

    #[tokio::test]
    async fn a_warm_instance_appends_an_orders_facts_without_reading() {
        let saga = given(&happy_path()).await;
        assert_eq!(saga.streams.requests(), (0, 5), "(reads, appends)");
        assert_eq!(saga.events()[4], confirmed());
        assert_eq!(saga.events()[5], shipped().into());
    }

    #[tokio::test]
    async fn an_order_this_instance_has_not_seen_is_read_once() {
        let saga = saga();
        let stream = order_stream(ORDER);
        saga.streams.seed(
            &stream,
            &[event(placed()).to_raw(), event(cleared()).to_raw()],
        );
        saga.when(&event(paid())).await.unwrap();
        saga.when(&event(reserved())).await.unwrap();
        assert_eq!(saga.streams.requests(), (1, 2));
        assert_eq!(saga.events().last(), Some(&confirmed()));
    }

    #[tokio::test]
    async fn a_stale_memory_loses_the_append_catches_up_and_decides_on_the_whole_stream() {
        let saga = given(&[event(placed()), event(cleared())]).await;
        // Another instance stores the reservation; this one does not see it.
        saga.streams
            .seed(&order_stream(ORDER), &[event(reserved()).to_raw()]);
        assert_eq!(saga.when(&event(paid())).await.unwrap(), Handled::Processed);
        assert_eq!(
            saga.events(),
            vec![
                placed().into(),
                cleared().into(),
                reserved().into(),
                paid().into(),
                confirmed()
            ]
        );
        assert_eq!(saga.streams.requests(), (1, 4), "one lost append, one read");
        // Caught up: the next fact neither reads nor conflicts.
        saga.when(&event(shipped())).await.unwrap();
        assert_eq!(saga.streams.requests(), (1, 5));
    }

    #[tokio::test]
    async fn an_order_placed_after_its_results_reads_when_its_append_loses() {
        let saga = saga();
        let stream = order_stream(ORDER);
        saga.streams.seed(
            &stream,
            &[
                event(cleared()).to_raw(),
                event(paid()).to_raw(),
                event(reserved()).to_raw(),
            ],
        );
        assert_eq!(
            saga.when(&event(placed())).await.unwrap(),
            Handled::Processed
        );
        assert_eq!(saga.events()[3..], [placed().into(), confirmed()]);
        assert_eq!(saga.streams.requests(), (1, 2));
    }

    #[tokio::test]
    async fn a_remembered_fact_is_a_duplicate_without_a_request() {
        let reservation = event(reserved());
        let saga = given(&[
            event(placed()),
            event(cleared()),
            event(paid()),
            reservation.clone(),
        ])
        .await;
        let (before, requests) = (saga.stream(), saga.streams.requests());
        assert_eq!(saga.when(&reservation).await.unwrap(), Handled::Duplicate);
        assert_eq!(saga.stream(), before);
        assert_eq!(saga.streams.requests(), requests);
    }

    #[tokio::test]
    async fn a_fact_another_instance_stored_is_a_duplicate_and_the_order_is_read_again() {
        let saga = given(&[event(placed()), event(cleared()), event(paid())]).await;
        let reservation = event(reserved());
        // Another instance handled the same fact and decided; this one does not know.
        saga.streams.seed(
            &order_stream(ORDER),
            &[
                reservation.to_raw(),
                Envelope::caused_by(&reservation.metadata, ORDER, confirmed()).to_raw(),
            ],
        );
        assert_eq!(saga.when(&reservation).await.unwrap(), Handled::Duplicate);
        assert_eq!(saga.events().len(), 5, "nothing decided twice");
        // Nothing of the order is trusted any more: the next fact reads the whole stream,
        // and finds the order confirmed (so shipping decides nothing).
        assert_eq!(saga.streams.requests(), (0, 4));
        saga.when(&event(shipped())).await.unwrap();
        assert_eq!(saga.streams.requests(), (1, 5));
        assert_eq!(saga.events()[5..], [shipped().into()]);
    }

    #[tokio::test]
    async fn a_failed_append_is_forgotten_and_read_again() {
        let saga = given(&[event(placed()), event(cleared()), event(paid())]).await;
        saga.streams.fail_next(1);
        saga.when(&event(reserved())).await.unwrap_err();
        saga.when(&event(reserved())).await.unwrap();
        assert_eq!(saga.streams.requests(), (1, 5));
        assert_eq!(saga.events().last(), Some(&confirmed()));
    }
}
