//! Given the order's stream, when a fact is handled, then the stream holds these events.
//! The store is eventkit's `MemoryEventStore`, with the event store's conditions: an append
//! at a stale version is a conflict, and an event is stored once per stream and source.

use contracts::OrderConfirmed;
use eventkit::envelope::derived_event_id;
use eventkit::testing::{assert_rule_matches_routes, invocation, MemoryEventStore};

use super::*;
use crate::fixtures::*;

struct Saga {
    streams: Arc<MemoryEventStore>,
    service: SagaService,
}

fn saga() -> Saga {
    let streams = MemoryEventStore::new();
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
        self.streams
            .stream(&order_stream(ORDER))
            .iter()
            .map(|e| e.event::<Event>().unwrap())
            .collect()
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
async fn missing_stock_cancels_and_refunds_the_payment() {
    let saga = given(&[event(placed()), event(paid())]).await;
    saga.when(&event(out_of_stock())).await.unwrap();
    assert_eq!(
        saga.events()[3..],
        [cancelled("out-of-stock"), refund_requested("out-of-stock")]
    );
}

#[tokio::test]
async fn fraud_stops_a_confirmed_order_then_cancels_it_with_both_compensations() {
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
        [fraud().into(), stop_requested("fraud-suspected")]
    );
    saga.when(&event(shipment_cancelled("fraud-suspected")))
        .await
        .unwrap();
    assert_eq!(
        saga.events()[7..],
        [
            shipment_cancelled("fraud-suspected").into(),
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
    saga.streams
        .seed(
            &order_stream(ORDER),
            &[
                old.to_raw(),
                event(cleared()).to_raw(),
                event(paid()).to_raw(),
            ],
        )
        .unwrap();
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
    saga.streams.seed(&order_stream(ORDER), &[broken]).unwrap();
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
        let streams = MemoryEventStore::new();
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
        saga.streams
            .seed(
                &stream,
                &[event(placed()).to_raw(), event(cleared()).to_raw()],
            )
            .unwrap();
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
            .seed(&order_stream(ORDER), &[event(reserved()).to_raw()])
            .unwrap();
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
        saga.streams
            .seed(
                &stream,
                &[
                    event(cleared()).to_raw(),
                    event(paid()).to_raw(),
                    event(reserved()).to_raw(),
                ],
            )
            .unwrap();
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
        saga.streams
            .seed(
                &order_stream(ORDER),
                &[
                    reservation.to_raw(),
                    Envelope::caused_by(&reservation.metadata, ORDER, confirmed()).to_raw(),
                ],
            )
            .unwrap();
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

/// One order, one OrderPlaced; an event id means one content per stream and source.
mod duplicates {
    use super::*;

    fn conflicting(result: Result<Handled, HandlerError>) -> HandlerError {
        let err = result.unwrap_err();
        assert!(err.is_permanent(), "{err}");
        assert_eq!(err.reason, "conflicting-duplicate", "{err}");
        err
    }

    #[tokio::test]
    async fn an_order_placed_resent_under_another_id_is_a_duplicate_warm_or_cold() {
        for memory in [KNOWN_ORDERS, 0] {
            let streams = MemoryEventStore::new();
            let service = SagaService::with_memory(streams.clone(), memory);
            let first = event(placed());
            service.handle(first.clone(), invocation()).await.unwrap();
            let resent = event(placed());
            assert_eq!(
                service.handle(resent, invocation()).await.unwrap(),
                Handled::Duplicate,
                "memory {memory}"
            );
            let stored: Vec<Envelope<Event>> = streams
                .stream(&order_stream(ORDER))
                .iter()
                .map(|e| e.event::<Event>().unwrap())
                .collect();
            assert_eq!(stored, vec![first], "nothing appended (memory {memory})");
        }
    }

    #[tokio::test]
    async fn an_order_placed_with_other_content_for_a_placed_order_is_refused_warm_or_cold() {
        for memory in [KNOWN_ORDERS, 0] {
            let streams = MemoryEventStore::new();
            let service = SagaService::with_memory(streams.clone(), memory);
            service.handle(event(placed()), invocation()).await.unwrap();
            let other = service
                .handle(event(placed_again_otherwise()), invocation())
                .await;
            conflicting(other);
            assert_eq!(
                streams.stream(&order_stream(ORDER)).len(),
                1,
                "nothing appended (memory {memory})"
            );
        }
    }

    #[tokio::test]
    async fn a_later_order_placed_is_refused_even_after_the_order_is_confirmed() {
        let saga = given(&[
            event(placed()),
            event(cleared()),
            event(paid()),
            event(reserved()),
        ])
        .await;
        let before = saga.stream();
        conflicting(saga.when(&event(placed_again_otherwise())).await);
        assert_eq!(saga.stream(), before);
        assert_eq!(
            saga.when(&event(placed())).await.unwrap(),
            Handled::Duplicate
        );
        assert_eq!(saga.stream(), before);
    }

    #[tokio::test]
    async fn an_order_placed_reusing_another_orders_event_id_starts_its_own_order() {
        let saga = given(&[event(placed())]).await;
        let other_order = OrderPlaced {
            order_id: "ord-8".into(),
            ..placed()
        };
        let mut reused = event(other_order.clone());
        reused.metadata = saga.stream()[0].metadata.clone();
        assert_eq!(saga.when(&reused).await.unwrap(), Handled::Processed);
        let stored: Vec<Envelope<Event>> = saga
            .streams
            .stream(&order_stream("ord-8"))
            .iter()
            .map(|e| e.event::<Event>().unwrap())
            .collect();
        assert_eq!(stored, vec![reused]);
        assert_eq!(saga.events(), vec![Event::from(placed())], "A untouched");
    }

    #[tokio::test]
    async fn the_same_event_id_from_another_source_is_another_fact() {
        let saga = given(&[event(placed()), event(cleared()), event(paid())]).await;
        let payment_id = saga.stream()[2].metadata.clone();
        let mut reservation = event(reserved());
        reservation.metadata = payment_id;
        assert_eq!(saga.when(&reservation).await.unwrap(), Handled::Processed);
        assert_eq!(saga.events()[3..], [reserved().into(), confirmed()]);
    }

    #[tokio::test]
    async fn a_remembered_id_with_other_content_is_refused_without_a_request() {
        let payment = event(paid());
        let saga = given(&[event(placed()), payment.clone()]).await;
        let (before, requests) = (saga.stream(), saga.streams.requests());
        let mut altered = payment.clone();
        altered.data = PaymentProcessed {
            amount: 1,
            ..paid()
        }
        .into();
        conflicting(saga.when(&altered).await);
        assert_eq!(saga.stream(), before);
        assert_eq!(saga.streams.requests(), requests);
    }

    #[tokio::test]
    async fn an_id_another_instance_stored_with_other_content_is_refused_by_the_store() {
        let saga = given(&[event(placed()), event(cleared())]).await;
        let payment = event(paid());
        // Another instance stored this payment id with other content; this one does not know.
        let mut stored_elsewhere = payment.to_raw();
        stored_elsewhere.data["amount"] = serde_json::json!(1);
        saga.streams
            .seed(&order_stream(ORDER), &[stored_elsewhere.clone()])
            .unwrap();
        conflicting(saga.when(&payment).await);
        let last = saga.streams.stream(&order_stream(ORDER)).pop().unwrap();
        assert_eq!(last.to_raw(), stored_elsewhere, "nothing appended after it");
        assert_eq!(
            saga.streams.requests(),
            (1, 3),
            "caught up once, then refused"
        );
    }

    /// The store compares digests of events as written; the saga, of events as it reads
    /// them (upcast). A copy written in an older form is the same event.
    #[tokio::test]
    async fn a_copy_stored_in_an_older_form_is_a_duplicate_not_a_conflict() {
        let saga = given(&[event(placed()), event(cleared())]).await;
        let payment = event(paid());
        let mut older_form = payment.to_raw();
        older_form.data["note"] = serde_json::json!("a field this code no longer reads");
        saga.streams
            .seed(&order_stream(ORDER), &[older_form])
            .unwrap();
        assert_eq!(saga.when(&payment).await.unwrap(), Handled::Duplicate);
        assert_eq!(saga.events().len(), 3, "nothing appended");
    }

    #[tokio::test]
    async fn a_price_mismatch_cancels_with_its_reason_and_releases_the_stock() {
        let saga = given(&[event(placed()), event(reserved())]).await;
        saga.when(&event(price_mismatch())).await.unwrap();
        assert_eq!(
            saga.events()[2..],
            [
                price_mismatch().into(),
                cancelled("price-mismatch"),
                release_requested("price-mismatch")
            ]
        );
    }
}

#[tokio::test]
async fn a_deadline_after_the_order_ended_is_not_recorded_and_one_before_cancels() {
    let shipped = given(&[
        event(placed()),
        event(cleared()),
        event(paid()),
        event(reserved()),
        event(shipped()),
    ])
    .await;
    let before = shipped.events();
    assert_eq!(
        shipped.when(&event(deadline())).await.unwrap(),
        Handled::Ignored
    );
    assert_eq!(shipped.events(), before, "nothing appended");

    let pending = given(&[event(placed()), event(paid())]).await;
    assert_eq!(
        pending.when(&event(deadline())).await.unwrap(),
        Handled::Processed
    );
    assert_eq!(
        pending.events()[2..],
        [
            deadline().into(),
            cancelled(contracts::DEADLINE_EXCEEDED),
            refund_requested(contracts::DEADLINE_EXCEEDED)
        ]
    );
}
