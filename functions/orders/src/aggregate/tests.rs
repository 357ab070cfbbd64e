//! Given the order's past events, when a fact arrives, then these decisions.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::*;
use crate::fixtures::*;
use contracts::Payload;
use eventkit::Envelope;

/// A scenario: the stream so far, and what each new fact decides. Like the service, it
/// records an event id once: a redelivered fact is not handled again.
struct Scenario {
    order: Order,
    stream: Vec<Event>,
    seen: HashSet<String>,
}

fn given(events: Vec<Envelope<Event>>) -> Scenario {
    let mut scenario = Scenario {
        order: Order::default(),
        stream: Vec::new(),
        seen: HashSet::new(),
    };
    for e in events {
        scenario.when(e);
    }
    scenario
}

impl Scenario {
    /// Takes the decisions for the fact, then applies the fact and the decisions, as the
    /// stream will hold them; returns the decisions.
    fn when(&mut self, fact: Envelope<Event>) -> Vec<Event> {
        if !self.seen.insert(fact.metadata.event_id.clone()) {
            return Vec::new();
        }
        let decisions = self.order.handle(&fact.data);
        for e in std::iter::once(&fact.data).chain(&decisions) {
            self.order.apply(e);
            self.stream.push(e.clone());
        }
        decisions
    }
}

#[test]
fn paid_reserved_and_cleared_confirms() {
    let mut s = given(vec![event(placed()), event(cleared()), event(paid())]);
    assert_eq!(s.when(event(reserved())), vec![confirmed()]);
    assert_eq!(s.order.status, OrderStatus::Confirmed);
}

#[test]
fn confirmation_waits_for_the_fraud_verdict() {
    let mut s = given(vec![event(placed()), event(paid()), event(reserved())]);
    assert_eq!(s.order.status, OrderStatus::Pending);
    assert_eq!(s.when(event(cleared())), vec![confirmed()]);
}

#[test]
fn a_suspicion_before_the_results_cancels_without_confirming() {
    let mut s = given(vec![event(placed()), event(fraud())]);
    assert_eq!(
        s.order.status,
        OrderStatus::Cancelled {
            reason: "fraud-suspected".into()
        }
    );
    assert_eq!(
        s.when(event(paid())),
        vec![refund_requested("fraud-suspected")]
    );
    assert_eq!(
        s.when(event(reserved())),
        vec![release_requested("fraud-suspected")]
    );
    assert!(
        s.when(event(cleared())).is_empty(),
        "a clearance never undoes a suspicion"
    );
    assert!(!s.stream.contains(&confirmed()));
}

#[test]
fn confirmation_waits_for_both_results() {
    let mut s = given(vec![event(placed())]);
    assert!(s.when(event(reserved())).is_empty());
    assert_eq!(s.order.status, OrderStatus::Pending);
}

#[test]
fn payment_failed_cancels_and_releases_reserved_stock() {
    let mut s = given(vec![event(placed()), event(reserved())]);
    assert_eq!(
        s.when(event(payment_failed())),
        vec![
            cancelled("payment-failed"),
            release_requested("payment-failed")
        ]
    );
    assert_eq!(
        s.order.status,
        OrderStatus::Cancelled {
            reason: "payment-failed".into()
        }
    );
}

#[test]
fn payment_failed_before_any_reservation_cancels_then_releases_the_late_reservation() {
    let mut s = given(vec![event(placed())]);
    assert_eq!(
        s.when(event(payment_failed())),
        vec![cancelled("payment-failed")]
    );
    assert_eq!(
        s.when(event(reserved())),
        vec![release_requested("payment-failed")]
    );
}

#[test]
fn a_price_mismatch_cancels_with_its_own_reason_and_releases_reserved_stock() {
    let mut s = given(vec![event(placed()), event(reserved())]);
    assert_eq!(
        s.when(event(price_mismatch())),
        vec![
            cancelled("price-mismatch"),
            release_requested("price-mismatch")
        ]
    );
    assert_eq!(
        s.order.status,
        OrderStatus::Cancelled {
            reason: "price-mismatch".into()
        }
    );
}

#[test]
fn a_price_mismatch_before_the_reservation_releases_it_with_that_reason() {
    let mut s = given(vec![event(placed()), event(price_mismatch())]);
    assert_eq!(
        s.when(event(reserved())),
        vec![release_requested("price-mismatch")]
    );
}

#[test]
fn out_of_stock_cancels_and_refunds_a_payment() {
    let mut s = given(vec![event(placed()), event(paid())]);
    assert_eq!(
        s.when(event(out_of_stock())),
        vec![cancelled("out-of-stock"), refund_requested("out-of-stock")]
    );
    assert_eq!(
        s.order.status,
        OrderStatus::Cancelled {
            reason: "out-of-stock".into()
        }
    );
}

#[test]
fn out_of_stock_first_then_a_late_payment_is_refunded_once() {
    let mut s = given(vec![event(placed()), event(out_of_stock())]);
    assert!(s.stream.contains(&cancelled("out-of-stock")));
    assert_eq!(
        s.when(event(paid())),
        vec![refund_requested("out-of-stock")]
    );
    // Another copy of the payment result (a new event id) asks for nothing more.
    assert!(s.when(event(paid())).is_empty());
}

#[test]
fn a_later_suspicion_stops_a_confirmed_order_through_shipping_before_compensating() {
    let mut s = given(vec![
        event(placed()),
        event(cleared()),
        event(paid()),
        event(reserved()),
    ]);
    assert_eq!(s.order.status, OrderStatus::Confirmed);
    assert_eq!(
        s.when(event(fraud())),
        vec![stop_requested("fraud-suspected")],
        "nothing is paid back while the goods may still leave"
    );
    assert_eq!(
        s.order.status,
        OrderStatus::Cancelling {
            reason: "fraud-suspected".into()
        }
    );
    assert!(s
        .when(event(operator_cancel("customer-request")))
        .is_empty());
    assert_eq!(
        s.when(event(shipment_cancelled("fraud-suspected"))),
        vec![
            cancelled("fraud-suspected"),
            refund_requested("fraud-suspected"),
            release_requested("fraud-suspected")
        ]
    );
    assert_eq!(
        s.order.status,
        OrderStatus::Cancelled {
            reason: "fraud-suspected".into()
        }
    );
}

#[test]
fn a_stop_that_loses_to_dispatch_leaves_the_order_shipped_and_uncompensated() {
    let mut s = given(vec![
        event(placed()),
        event(cleared()),
        event(paid()),
        event(reserved()),
        event(fraud()),
    ]);
    assert!(s.when(event(shipped())).is_empty());
    assert_eq!(s.order.status, OrderStatus::Shipped);
    assert!(s.order.shipped_despite_cancel());
    assert_eq!(s.order.fraud, Some(Fraud::Suspected), "recorded");
    assert!(!s.order.refund_requested && !s.order.release_requested);
}

#[test]
fn the_deadline_cancels_a_pending_order_with_what_it_owes() {
    let mut s = given(vec![event(placed()), event(paid()), event(cleared())]);
    assert_eq!(
        s.when(event(deadline())),
        vec![
            cancelled(DEADLINE_EXCEEDED),
            refund_requested(DEADLINE_EXCEEDED)
        ]
    );
    assert_eq!(
        s.when(event(reserved())),
        vec![release_requested(DEADLINE_EXCEEDED)],
        "a late reservation is released"
    );
}

#[test]
fn the_deadline_after_confirmation_or_an_end_decides_nothing() {
    let mut confirmed = given(vec![
        event(placed()),
        event(cleared()),
        event(paid()),
        event(reserved()),
    ]);
    assert!(confirmed.when(event(deadline())).is_empty());
    assert_eq!(confirmed.order.status, OrderStatus::Confirmed);
    let mut cancelled = given(vec![event(placed()), event(out_of_stock())]);
    assert!(cancelled.when(event(deadline())).is_empty());
    assert!(
        cancelled.order.is_moot(&deadline().into()),
        "not even recorded"
    );
    assert!(
        !confirmed.order.is_moot(&deadline().into()),
        "recorded: still open"
    );
    assert!(
        !cancelled.order.is_moot(&paid().into()),
        "only a deadline is moot"
    );
}

#[test]
fn a_deadline_before_the_order_placed_cancels_it_when_it_arrives() {
    let mut s = given(vec![event(deadline()), event(paid())]);
    assert_eq!(
        s.when(event(placed())),
        vec![
            cancelled(DEADLINE_EXCEEDED),
            refund_requested(DEADLINE_EXCEEDED)
        ]
    );
}

#[test]
fn an_operator_cancels_a_pending_order_at_once_and_a_confirmed_one_through_shipping() {
    let mut pending = given(vec![event(placed()), event(reserved())]);
    assert_eq!(
        pending.when(event(operator_cancel("customer-request"))),
        vec![
            cancelled("customer-request"),
            release_requested("customer-request")
        ]
    );
    let mut confirmed = given(vec![
        event(placed()),
        event(cleared()),
        event(paid()),
        event(reserved()),
    ]);
    assert_eq!(
        confirmed.when(event(operator_cancel("customer-request"))),
        vec![stop_requested("customer-request")]
    );
    let mut shipped = given(vec![
        event(placed()),
        event(cleared()),
        event(paid()),
        event(reserved()),
        event(shipped()),
    ]);
    assert!(shipped
        .when(event(operator_cancel("customer-request")))
        .is_empty());
    assert_eq!(shipped.order.status, OrderStatus::Shipped);
}

#[test]
fn fraud_after_shipping_is_only_recorded() {
    let mut s = given(vec![
        event(placed()),
        event(cleared()),
        event(paid()),
        event(reserved()),
        event(shipped()),
    ]);
    assert_eq!(s.order.status, OrderStatus::Shipped);
    assert!(s.when(event(fraud())).is_empty());
    assert_eq!(s.order.status, OrderStatus::Shipped);
    assert_eq!(
        s.order.fraud,
        Some(Fraud::Suspected),
        "recorded on the order"
    );
}

#[test]
fn results_before_order_placed_wait_for_it() {
    let mut s = given(vec![event(paid()), event(reserved()), event(cleared())]);
    assert_eq!(s.order.status, OrderStatus::Pending);
    assert!(
        s.stream
            .iter()
            .all(|e| e.source() != contracts::sources::SAGA),
        "no decision without the order"
    );
    assert_eq!(s.when(event(placed())), vec![confirmed()]);
}

#[test]
fn a_declined_payment_before_order_placed_cancels_when_it_arrives() {
    let mut s = given(vec![event(payment_failed())]);
    assert_eq!(s.when(event(placed())), vec![cancelled("payment-failed")]);
}

#[test]
fn the_same_event_twice_changes_nothing() {
    let mut s = given(vec![event(placed()), event(cleared()), event(paid())]);
    let reservation = event(reserved());
    assert_eq!(s.when(reservation.clone()), vec![confirmed()]);
    let len = s.stream.len();
    assert!(s.when(reservation).is_empty());
    assert_eq!(s.stream.len(), len);
}

#[test]
fn a_later_order_placed_changes_nothing_and_the_first_one_is_confirmed() {
    let mut s = given(vec![event(placed()), event(cleared()), event(paid())]);
    assert!(s.when(event(placed_again_otherwise())).is_empty());
    assert_eq!(s.order.placed(), Some(&placed()));
    assert_eq!(s.when(event(reserved())), vec![confirmed()]);
}

#[test]
fn a_later_order_placed_folds_back_to_the_first_one() {
    let stream: [Event; 2] = [placed().into(), placed_again_otherwise().into()];
    assert_eq!(Order::replay(&stream).placed(), Some(&placed()));
    assert_eq!(Order::default().placed(), None);
}

#[test]
fn shipping_moves_a_confirmed_order_to_shipped() {
    let mut s = given(vec![
        event(placed()),
        event(cleared()),
        event(paid()),
        event(reserved()),
    ]);
    assert!(s.when(event(shipped())).is_empty());
    assert_eq!(s.order.status, OrderStatus::Shipped);
}

#[test]
fn a_stream_folds_back_to_the_same_state() {
    let s = given(vec![event(placed()), event(paid()), event(out_of_stock())]);
    let folded = Order::replay(&s.stream);
    assert_eq!(outcome(&folded), outcome(&s.order));
    assert!(
        folded.handle(&s.stream[1]).is_empty(),
        "compensations are not asked twice"
    );
}

#[test]
fn completed_compensations_are_recorded_and_decide_nothing() {
    let mut s = given(vec![
        event(placed()),
        event(reserved()),
        event(payment_failed()),
    ]);
    assert!(s.when(event(released())).is_empty());
    assert!(s.when(event(refunded())).is_empty());
    assert_eq!(
        s.order.status,
        OrderStatus::Cancelled {
            reason: "payment-failed".into()
        }
    );
}

// The saga reads a standard queue: an order's facts arrive in any order, and redeliveries
// arrive again. Whatever the order, the order must end in the same state, with each
// decision taken at most once.

/// Every ordering of `items` (n! of them; the sets here have at most 4 facts).
fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first.clone());
            all.push(tail);
        }
    }
    all
}

/// What must not depend on arrival order: status, what is known, what was asked for.
#[derive(Debug, PartialEq)]
struct Outcome {
    status: OrderStatus,
    payment: Option<Payment>,
    stock: Option<Stock>,
    fraud: Option<Fraud>,
    refund_requested: bool,
    release_requested: bool,
}

fn outcome(order: &Order) -> Outcome {
    Outcome {
        status: order.status.clone(),
        payment: order.payment.clone(),
        stock: order.stock.clone(),
        fraud: order.fraud,
        refund_requested: order.refund_requested,
        release_requested: order.release_requested,
    }
}

/// Runs `facts` in this order, then delivers each again (the same event), then sends each
/// again as a new copy (same payload, new event id: the aggregate itself must not decide
/// twice); returns the outcome and how often each decision type was taken.
fn run(facts: &[Envelope<Event>]) -> (Outcome, BTreeMap<&'static str, usize>) {
    let mut s = given(Vec::new());
    for fact in facts {
        s.when(fact.clone());
    }
    for fact in facts {
        assert!(
            s.when(fact.clone()).is_empty(),
            "a redelivered {} decided again",
            fact.data.detail_type()
        );
    }
    let settled = outcome(&s.order);
    for fact in facts {
        assert!(
            s.when(event(fact.data.clone())).is_empty(),
            "another copy of {} decided again",
            fact.data.detail_type()
        );
    }
    assert_eq!(outcome(&s.order), settled, "copies changed the order");
    let mut decisions = BTreeMap::new();
    for e in &s.stream {
        if e.source() == contracts::sources::SAGA {
            *decisions.entry(e.detail_type()).or_insert(0) += 1;
        }
    }
    (settled, decisions)
}

fn arrival(events: &[Envelope<Event>]) -> Vec<&'static str> {
    events.iter().map(|e| e.data.detail_type()).collect()
}

/// Feeds every permutation of `facts`; checks they all end in the same outcome (the first
/// permutation's, returned) and that no decision was taken twice.
fn every_order_agrees(facts: Vec<Envelope<Event>>) -> (Outcome, Vec<&'static str>) {
    let mut first: Option<Outcome> = None;
    let mut decided = BTreeSet::new();
    for permutation in permutations(&facts) {
        let arrival = arrival(&permutation);
        let (outcome, decisions) = run(&permutation);
        for (decision, count) in &decisions {
            assert_eq!(*count, 1, "{decision} taken {count} times for {arrival:?}");
            decided.insert(*decision);
        }
        match &first {
            None => first = Some(outcome),
            Some(expected) => assert_eq!(&outcome, expected, "arrival order {arrival:?}"),
        }
    }
    (
        first.expect("at least one permutation"),
        decided.into_iter().collect(),
    )
}

#[test]
fn paid_reserved_and_cleared_confirm_once_in_any_order() {
    let (outcome, decided) = every_order_agrees(vec![
        event(placed()),
        event(cleared()),
        event(paid()),
        event(reserved()),
    ]);
    assert_eq!(outcome.status, OrderStatus::Confirmed);
    assert_eq!(decided, vec!["OrderConfirmed"]);
}

#[test]
fn a_failed_payment_cancels_and_releases_once_in_any_order() {
    let (outcome, decided) = every_order_agrees(vec![
        event(placed()),
        event(payment_failed()),
        event(reserved()),
    ]);
    assert_eq!(
        outcome.status,
        OrderStatus::Cancelled {
            reason: "payment-failed".into()
        }
    );
    assert!(outcome.release_requested && !outcome.refund_requested);
    assert_eq!(decided, vec!["OrderCancelled", "ReleaseInventoryRequested"]);
}

#[test]
fn missing_stock_cancels_and_refunds_once_in_any_order() {
    let (outcome, decided) =
        every_order_agrees(vec![event(placed()), event(paid()), event(out_of_stock())]);
    assert_eq!(
        outcome.status,
        OrderStatus::Cancelled {
            reason: "out-of-stock".into()
        }
    );
    assert!(outcome.refund_requested && !outcome.release_requested);
    assert_eq!(decided, vec!["OrderCancelled", "RefundPaymentRequested"]);
}

#[test]
fn a_suspicion_without_a_clearance_cancels_once_and_never_confirms_in_any_order() {
    let (outcome, decided) = every_order_agrees(vec![
        event(placed()),
        event(paid()),
        event(reserved()),
        event(fraud()),
    ]);
    assert_eq!(
        outcome.status,
        OrderStatus::Cancelled {
            reason: "fraud-suspected".into()
        }
    );
    assert!(outcome.refund_requested && outcome.release_requested);
    assert_eq!(
        decided,
        vec![
            "OrderCancelled",
            "RefundPaymentRequested",
            "ReleaseInventoryRequested"
        ]
    );
}

#[test]
fn a_clearance_then_a_suspicion_cancel_with_both_compensations_once_in_any_order() {
    // Shipping, asked to stop a confirmed order, stops it here (dispatch losing is
    // `no_interleaving_ships_and_compensates_an_order`'s case).
    let (outcome, decided) = every_order_agrees_with_shipping_stopping(vec![
        event(placed()),
        event(cleared()),
        event(paid()),
        event(reserved()),
        event(fraud()),
    ]);
    assert_eq!(
        outcome.status,
        OrderStatus::Cancelled {
            reason: "fraud-suspected".into()
        }
    );
    assert!(outcome.refund_requested && outcome.release_requested);
    // Confirmed (and stopped through shipping) only when the suspicion was the last fact.
    for decision in [
        "OrderCancelled",
        "RefundPaymentRequested",
        "ReleaseInventoryRequested",
    ] {
        assert!(decided.contains(&decision), "{decided:?}");
    }
}

#[test]
fn a_deadline_in_any_position_ends_the_order_once_and_owes_nothing_at_the_end() {
    // Before the last result it cancels (deadline-exceeded, with what was taken given back);
    // after confirmation it decides nothing.
    let facts = vec![
        event(placed()),
        event(cleared()),
        event(paid()),
        event(reserved()),
        event(deadline()),
    ];
    for permutation in permutations(&facts) {
        let types = arrival(&permutation);
        let (outcome, decisions) = run(&permutation);
        let last_result = types
            .iter()
            .rposition(|t| *t != "OrderDeadlineReached")
            .unwrap();
        let deadline_at = types
            .iter()
            .position(|t| *t == "OrderDeadlineReached")
            .unwrap();
        if deadline_at > last_result {
            assert_eq!(outcome.status, OrderStatus::Confirmed, "{types:?}");
            assert_eq!(
                decisions.into_iter().collect::<Vec<_>>(),
                vec![("OrderConfirmed", 1)]
            );
        } else {
            assert_eq!(
                outcome.status,
                OrderStatus::Cancelled {
                    reason: DEADLINE_EXCEEDED.into()
                },
                "{types:?}"
            );
            assert!(outcome.refund_requested && outcome.release_requested);
            assert_eq!(
                decisions.into_iter().collect::<Vec<_>>(),
                vec![
                    ("OrderCancelled", 1),
                    ("RefundPaymentRequested", 1),
                    ("ReleaseInventoryRequested", 1)
                ],
                "{types:?}"
            );
        }
    }
}

#[test]
fn a_deadline_with_a_failure_in_any_order_cancels_once() {
    for facts in [
        vec![
            event(placed()),
            event(paid()),
            event(out_of_stock()),
            event(deadline()),
        ],
        vec![
            event(placed()),
            event(payment_failed()),
            event(reserved()),
            event(deadline()),
        ],
    ] {
        for permutation in permutations(&facts) {
            let (outcome, decisions) = run(&permutation);
            assert!(
                matches!(outcome.status, OrderStatus::Cancelled { .. }),
                "{:?}",
                arrival(&permutation)
            );
            assert_eq!(decisions.get("OrderCancelled"), Some(&1));
            assert!(decisions.values().all(|n| *n == 1), "{decisions:?}");
        }
    }
}

#[test]
fn two_failures_cancel_once_for_the_failure_known_first() {
    // Only the reason may differ: it names the failure known when the order was cancelled
    // (a failed payment wins when both were already there when OrderPlaced arrived).
    for permutation in permutations(&[
        event(placed()),
        event(payment_failed()),
        event(out_of_stock()),
    ]) {
        let types = arrival(&permutation);
        let placed_at = types.iter().position(|t| *t == "OrderPlaced").unwrap();
        let known_at_placement = &types[..placed_at];
        let expected = if known_at_placement.contains(&"PaymentFailed") {
            "payment-failed"
        } else if known_at_placement.contains(&"InventoryOutOfStock") {
            "out-of-stock"
        } else if types[placed_at + 1] == "PaymentFailed" {
            "payment-failed"
        } else {
            "out-of-stock"
        };
        let (outcome, decisions) = run(&permutation);
        assert_eq!(
            decisions.into_iter().collect::<Vec<_>>(),
            vec![("OrderCancelled", 1)],
            "{types:?}: one cancel, no compensation owed"
        );
        assert_eq!(
            outcome.status,
            OrderStatus::Cancelled {
                reason: expected.into()
            },
            "{types:?}"
        );
    }
}

/// Like [`every_order_agrees`], with shipping answering a stop request by stopping the
/// shipment (it had not been dispatched yet).
fn every_order_agrees_with_shipping_stopping(
    facts: Vec<Envelope<Event>>,
) -> (Outcome, Vec<&'static str>) {
    let mut first: Option<Outcome> = None;
    let mut decided = BTreeSet::new();
    for permutation in permutations(&facts) {
        let types = arrival(&permutation);
        let mut s = given(permutation);
        if let OrderStatus::Cancelling { reason } = s.order.status.clone() {
            s.when(event(shipment_cancelled(&reason)));
        }
        let mut decisions: BTreeMap<&'static str, usize> = BTreeMap::new();
        for e in &s.stream {
            if e.source() == contracts::sources::SAGA {
                *decisions.entry(e.detail_type()).or_insert(0) += 1;
            }
        }
        for (decision, count) in &decisions {
            assert_eq!(*count, 1, "{decision} taken {count} times for {types:?}");
            decided.insert(*decision);
        }
        let outcome = outcome(&s.order);
        match &first {
            None => first = Some(outcome),
            Some(expected) => assert_eq!(&outcome, expected, "arrival order {types:?}"),
        }
    }
    (
        first.expect("at least one permutation"),
        decided.into_iter().collect(),
    )
}

// The saga and shipping together: the order's facts arrive in any order, and shipping's
// dispatch (the held OrderConfirmed) and its handling of a stop request happen at any
// moment after the saga decided them, as their queues deliver them. Shipping's table lets
// the first of dispatch and stop win, as its conditional write does.

#[derive(Debug, Clone)]
enum Delivery {
    /// A fact reaches the saga.
    Saga(Box<Envelope<Event>>),
    /// The held OrderConfirmed reaches shipping.
    Dispatch,
    /// CancelShipmentRequested reaches shipping.
    Stop(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shipment {
    Dispatched,
    Stopped,
}

#[derive(Clone)]
struct World {
    saga: Scenario,
    shipment: Option<Shipment>,
    in_flight: Vec<Delivery>,
}

impl Clone for Scenario {
    fn clone(&self) -> Self {
        Scenario {
            order: self.order.clone(),
            stream: self.stream.clone(),
            seen: self.seen.clone(),
        }
    }
}

impl World {
    fn deliver(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Saga(fact) => {
                for decision in self.saga.when(*fact) {
                    match decision {
                        Event::OrderConfirmed(_) => self.in_flight.push(Delivery::Dispatch),
                        Event::CancelShipmentRequested(r) => {
                            self.in_flight.push(Delivery::Stop(r.reason))
                        }
                        _ => {}
                    }
                }
            }
            Delivery::Dispatch => {
                if self.shipment.is_none() {
                    self.shipment = Some(Shipment::Dispatched);
                    self.in_flight
                        .push(Delivery::Saga(Box::new(event(shipped()))));
                }
            }
            Delivery::Stop(reason) => {
                if self.shipment.is_none() {
                    self.shipment = Some(Shipment::Stopped);
                    self.in_flight
                        .push(Delivery::Saga(Box::new(event(shipment_cancelled(&reason)))));
                }
            }
        }
    }
}

/// How the explored interleavings ended.
#[derive(Debug, Default, Clone, Copy)]
struct Ends {
    shipped: usize,
    /// Shipped after a stop was asked for: dispatch won.
    shipped_despite_cancel: usize,
    cancelled: usize,
}

/// Explores every delivery order from `world`, checking each end.
fn explore(world: World, ends: &mut Ends) {
    if world.in_flight.is_empty() {
        check_end(&world);
        match world.saga.order.status {
            OrderStatus::Shipped if world.saga.order.shipped_despite_cancel() => {
                ends.shipped_despite_cancel += 1
            }
            OrderStatus::Shipped => ends.shipped += 1,
            _ => ends.cancelled += 1,
        }
        return;
    }
    for i in 0..world.in_flight.len() {
        let mut next = world.clone();
        let delivery = next.in_flight.remove(i);
        next.deliver(delivery);
        explore(next, ends);
    }
}

fn check_end(world: &World) {
    let order = &world.saga.order;
    let history: Vec<&str> = world.saga.stream.iter().map(|e| e.detail_type()).collect();
    let compensated = order.refund_requested || order.release_requested;
    match &order.status {
        OrderStatus::Shipped => {
            assert_eq!(world.shipment, Some(Shipment::Dispatched), "{history:?}");
            assert!(!compensated, "shipped and compensated: {history:?}");
        }
        OrderStatus::Cancelled { .. } => {
            assert_ne!(world.shipment, Some(Shipment::Dispatched), "{history:?}");
            // Money and goods back: everything taken is given back.
            assert_eq!(
                order.refund_requested,
                matches!(order.payment, Some(Payment::Paid { .. })),
                "{history:?}"
            );
            assert_eq!(
                order.release_requested,
                matches!(order.stock, Some(Stock::Reserved { .. })),
                "{history:?}"
            );
        }
        other => panic!("the order did not end ({other:?}): {history:?}"),
    }
    let mut decided = BTreeMap::new();
    for e in &world.saga.stream {
        if e.source() == contracts::sources::SAGA {
            *decided.entry(e.detail_type()).or_insert(0) += 1;
        }
    }
    assert!(
        decided.values().all(|n| *n == 1),
        "a decision taken twice: {history:?}"
    );
}

fn world(facts: Vec<Envelope<Event>>) -> World {
    World {
        saga: given(Vec::new()),
        shipment: None,
        in_flight: facts
            .into_iter()
            .map(|f| Delivery::Saga(Box::new(f)))
            .collect(),
    }
}

#[test]
fn no_interleaving_ships_and_compensates_an_order() {
    // A suspicion that may come before or after confirmation, dispatch and the stop racing.
    let mut ends = Ends::default();
    explore(
        world(vec![
            event(placed()),
            event(cleared()),
            event(paid()),
            event(reserved()),
            event(fraud()),
        ]),
        &mut ends,
    );
    // Every way it can end was reached: the race was really run both ways, and a suspicion
    // also came after the parcel had left (only recorded).
    assert!(
        ends.cancelled > 0 && ends.shipped_despite_cancel > 0 && ends.shipped > 0,
        "{ends:?}"
    );
}

#[test]
fn no_interleaving_with_a_deadline_or_an_operator_leaves_an_order_open_or_doubly_settled() {
    for facts in [
        vec![
            event(placed()),
            event(cleared()),
            event(paid()),
            event(reserved()),
            event(deadline()),
        ],
        vec![
            event(placed()),
            event(cleared()),
            event(paid()),
            event(reserved()),
            event(operator_cancel("customer-request")),
        ],
        // A result that never comes: the deadline still ends the order.
        vec![
            event(placed()),
            event(cleared()),
            event(paid()),
            event(deadline()),
        ],
    ] {
        let mut ends = Ends::default();
        explore(world(facts), &mut ends);
        assert!(ends.cancelled > 0, "{ends:?}");
    }
}
