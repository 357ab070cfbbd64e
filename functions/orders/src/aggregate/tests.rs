//! Given the order's past events, when a fact arrives, then these decisions.

use super::*;
use contracts::{Currency, OrderLine, Shortage};

const ORDER: &str = "ord-7";

fn placed() -> OrderPlaced {
    OrderPlaced {
        order_id: ORDER.into(),
        customer_id: "cus-1".into(),
        customer_email: "ada@example.com".into(),
        currency: Currency::try_from("EUR".to_string()).unwrap(),
        lines: vec![OrderLine {
            sku: "MUG".into(),
            quantity: 2,
            unit_price: 1250,
        }],
        total: 2500,
        payment_token: "tok_visa".into(),
    }
}

fn eur() -> Currency {
    Currency::try_from("EUR".to_string()).unwrap()
}

fn paid() -> PaymentProcessed {
    PaymentProcessed {
        order_id: ORDER.into(),
        payment_id: "pay_1".into(),
        amount: 2500,
        currency: eur(),
    }
}

fn payment_failed() -> PaymentFailed {
    PaymentFailed {
        order_id: ORDER.into(),
        payment_id: "pay_1".into(),
        amount: 2500,
        currency: eur(),
        reason: "card-declined".into(),
    }
}

fn reserved() -> InventoryReserved {
    InventoryReserved {
        order_id: ORDER.into(),
        reservation_id: "res_1".into(),
        lines: vec![StockLine {
            sku: "MUG".into(),
            quantity: 2,
        }],
    }
}

fn out_of_stock() -> InventoryOutOfStock {
    InventoryOutOfStock {
        order_id: ORDER.into(),
        shortages: vec![Shortage {
            sku: "MUG".into(),
            requested: 2,
            available: 1,
        }],
    }
}

fn fraud() -> FraudSuspected {
    FraudSuspected {
        order_id: ORDER.into(),
        reason: "velocity".into(),
        score: 97,
    }
}

fn shipped() -> OrderShipped {
    OrderShipped {
        order_id: ORDER.into(),
        shipment_id: "shp_1".into(),
        carrier: "DHL".into(),
        tracking_number: "T1".into(),
        customer_email: "ada@example.com".into(),
    }
}

fn event<T: EventData>(source: &str, data: T) -> RawEvent {
    Envelope::new(source, data).to_raw()
}

/// A scenario: the stream so far, and what each new fact decides.
struct Scenario {
    order: Order,
    stream: Vec<RawEvent>,
}

fn given(events: Vec<RawEvent>) -> Scenario {
    let mut scenario = Scenario {
        order: Order::default(),
        stream: Vec::new(),
    };
    for e in events {
        scenario.when(e);
    }
    scenario
}

impl Scenario {
    /// Applies the fact, takes the decisions, applies them too; returns the decision types.
    fn when(&mut self, fact: RawEvent) -> Vec<String> {
        if self.order.has_seen(&fact.metadata.event_id) {
            return Vec::new();
        }
        self.order.apply(&fact).unwrap();
        let decisions = self.order.handle(&fact.metadata);
        self.stream.push(fact);
        for d in &decisions {
            self.order.apply(d).unwrap();
            self.stream.push(d.clone());
        }
        decisions.iter().map(|d| d.detail_type.clone()).collect()
    }
}

#[test]
fn paid_and_reserved_confirms() {
    let mut s = given(vec![
        event(sources::ORDERS, placed()),
        event(sources::PAYMENT, paid()),
    ]);
    assert_eq!(
        s.when(event(sources::INVENTORY, reserved())),
        vec!["OrderConfirmed"]
    );
    assert_eq!(s.order.status, OrderStatus::Confirmed);
    let confirmed = s
        .stream
        .last()
        .unwrap()
        .decode::<OrderConfirmed>()
        .unwrap()
        .data;
    assert_eq!(confirmed.payment_id, "pay_1");
    assert_eq!(confirmed.reservation_id, "res_1");
    assert_eq!(confirmed.customer_email, "ada@example.com");
}

#[test]
fn confirmation_waits_for_both_results() {
    let mut s = given(vec![event(sources::ORDERS, placed())]);
    assert!(s.when(event(sources::INVENTORY, reserved())).is_empty());
    assert_eq!(s.order.status, OrderStatus::Pending);
}

#[test]
fn payment_failed_cancels_and_releases_reserved_stock() {
    let mut s = given(vec![
        event(sources::ORDERS, placed()),
        event(sources::INVENTORY, reserved()),
    ]);
    assert_eq!(
        s.when(event(sources::PAYMENT, payment_failed())),
        vec!["OrderCancelled", "ReleaseInventoryRequested"]
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
    let mut s = given(vec![event(sources::ORDERS, placed())]);
    assert_eq!(
        s.when(event(sources::PAYMENT, payment_failed())),
        vec!["OrderCancelled"]
    );
    assert_eq!(
        s.when(event(sources::INVENTORY, reserved())),
        vec!["ReleaseInventoryRequested"]
    );
}

#[test]
fn out_of_stock_cancels_and_refunds_a_payment() {
    let mut s = given(vec![
        event(sources::ORDERS, placed()),
        event(sources::PAYMENT, paid()),
    ]);
    assert_eq!(
        s.when(event(sources::INVENTORY, out_of_stock())),
        vec!["OrderCancelled", "RefundPaymentRequested"]
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
    let mut s = given(vec![
        event(sources::ORDERS, placed()),
        event(sources::INVENTORY, out_of_stock()),
    ]);
    assert!(s.stream.iter().any(|e| e.detail_type == "OrderCancelled"));
    assert_eq!(
        s.when(event(sources::PAYMENT, paid())),
        vec!["RefundPaymentRequested"]
    );
    // Another copy of the payment result (a new event id) asks for nothing more.
    assert!(s.when(event(sources::PAYMENT, paid())).is_empty());
}

#[test]
fn fraud_cancels_with_every_compensation_needed() {
    let mut s = given(vec![
        event(sources::ORDERS, placed()),
        event(sources::PAYMENT, paid()),
        event(sources::INVENTORY, reserved()),
    ]);
    assert_eq!(s.order.status, OrderStatus::Confirmed);
    assert_eq!(
        s.when(event(sources::FRAUD, fraud())),
        vec![
            "OrderCancelled",
            "RefundPaymentRequested",
            "ReleaseInventoryRequested"
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
fn fraud_after_shipping_is_only_recorded() {
    let mut s = given(vec![
        event(sources::ORDERS, placed()),
        event(sources::PAYMENT, paid()),
        event(sources::INVENTORY, reserved()),
        event(sources::SHIPPING, shipped()),
    ]);
    assert_eq!(s.order.status, OrderStatus::Shipped);
    assert!(s.when(event(sources::FRAUD, fraud())).is_empty());
}

#[test]
fn results_before_order_placed_wait_for_it() {
    let mut s = given(vec![
        event(sources::PAYMENT, paid()),
        event(sources::INVENTORY, reserved()),
    ]);
    assert_eq!(s.order.status, OrderStatus::Pending);
    assert!(
        s.stream.iter().all(|e| e.source != sources::SAGA),
        "no decision without the order"
    );
    assert_eq!(
        s.when(event(sources::ORDERS, placed())),
        vec!["OrderConfirmed"]
    );
}

#[test]
fn a_declined_payment_before_order_placed_cancels_when_it_arrives() {
    let mut s = given(vec![event(sources::PAYMENT, payment_failed())]);
    assert_eq!(
        s.when(event(sources::ORDERS, placed())),
        vec!["OrderCancelled"]
    );
}

#[test]
fn the_same_event_twice_changes_nothing() {
    let mut s = given(vec![
        event(sources::ORDERS, placed()),
        event(sources::PAYMENT, paid()),
    ]);
    let reservation = event(sources::INVENTORY, reserved());
    assert_eq!(s.when(reservation.clone()), vec!["OrderConfirmed"]);
    let len = s.stream.len();
    assert!(s.when(reservation).is_empty());
    assert_eq!(s.stream.len(), len);
}

#[test]
fn shipping_moves_a_confirmed_order_to_shipped() {
    let mut s = given(vec![
        event(sources::ORDERS, placed()),
        event(sources::PAYMENT, paid()),
        event(sources::INVENTORY, reserved()),
    ]);
    assert!(s.when(event(sources::SHIPPING, shipped())).is_empty());
    assert_eq!(s.order.status, OrderStatus::Shipped);
}

#[test]
fn decisions_are_correlated_and_have_stable_ids() {
    let placed_event = event(sources::ORDERS, placed());
    let paid_event = event(sources::PAYMENT, paid());
    let reservation = event(sources::INVENTORY, reserved());
    let run = || {
        let mut s = given(vec![placed_event.clone(), paid_event.clone()]);
        s.when(reservation.clone());
        s.stream.last().unwrap().clone()
    };
    let (a, b) = (run(), run());
    assert_eq!(
        a.metadata.event_id, b.metadata.event_id,
        "a retried decision is the same event"
    );
    assert_eq!(
        a.metadata.causation_id.as_deref(),
        Some(reservation.metadata.event_id.as_str())
    );
    assert_eq!(
        a.metadata.correlation_id,
        reservation.metadata.correlation_id
    );
    assert_eq!(a.source, sources::SAGA);
}

#[test]
fn a_stream_folds_back_to_the_same_state() {
    let s = given(vec![
        event(sources::ORDERS, placed()),
        event(sources::PAYMENT, paid()),
        event(sources::INVENTORY, out_of_stock()),
    ]);
    let folded =
        Order::from_events(s.stream.iter().enumerate().map(|(i, e)| (i as u64 + 1, e))).unwrap();
    assert_eq!(folded.status, s.order.status);
    assert_eq!(folded.version, s.stream.len() as u64);
    assert!(
        folded.handle(&s.stream[0].metadata).is_empty(),
        "compensations are not asked twice"
    );
}

#[test]
fn completed_compensations_are_recorded_and_decide_nothing() {
    let mut s = given(vec![
        event(sources::ORDERS, placed()),
        event(sources::INVENTORY, reserved()),
        event(sources::PAYMENT, payment_failed()),
    ]);
    let released = InventoryReleased {
        order_id: ORDER.into(),
        reservation_id: "res_1".into(),
        lines: vec![StockLine {
            sku: "MUG".into(),
            quantity: 2,
        }],
    };
    assert!(s.when(event(sources::INVENTORY, released)).is_empty());
    let refunded = PaymentRefunded {
        order_id: ORDER.into(),
        payment_id: "pay_1".into(),
        amount: 2500,
        currency: eur(),
    };
    assert!(s.when(event(sources::PAYMENT, refunded)).is_empty());
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
    fraud: bool,
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

/// Runs `facts` in `order`, each delivered twice (the second copy right away or after all
/// others), and returns the outcome and how often each decision type was taken.
fn run(facts: &[RawEvent]) -> (Outcome, std::collections::BTreeMap<String, usize>) {
    let mut s = given(Vec::new());
    for fact in facts {
        s.when(fact.clone());
    }
    for fact in facts {
        assert!(
            s.when(fact.clone()).is_empty(),
            "a redelivered {} decided again",
            fact.detail_type
        );
    }
    let mut decisions = std::collections::BTreeMap::new();
    for e in &s.stream {
        if e.source == sources::SAGA {
            *decisions.entry(e.detail_type.clone()).or_insert(0) += 1;
        }
    }
    (outcome(&s.order), decisions)
}

/// Feeds every permutation of `facts`; checks they all end in the same outcome (the first
/// permutation's, returned) and that no decision was taken twice.
fn every_order_agrees(facts: Vec<RawEvent>) -> (Outcome, Vec<String>) {
    let mut first: Option<Outcome> = None;
    let mut decided = std::collections::BTreeSet::new();
    for permutation in permutations(&facts) {
        let arrival: Vec<&str> = permutation.iter().map(|e| e.detail_type.as_str()).collect();
        let (outcome, decisions) = run(&permutation);
        for (decision, count) in &decisions {
            assert_eq!(*count, 1, "{decision} taken {count} times for {arrival:?}");
            decided.insert(decision.clone());
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
fn paid_and_reserved_confirm_once_in_any_order() {
    let (outcome, decided) = every_order_agrees(vec![
        event(sources::ORDERS, placed()),
        event(sources::PAYMENT, paid()),
        event(sources::INVENTORY, reserved()),
    ]);
    assert_eq!(outcome.status, OrderStatus::Confirmed);
    assert_eq!(decided, vec!["OrderConfirmed"]);
}

#[test]
fn a_failed_payment_cancels_and_releases_once_in_any_order() {
    let (outcome, decided) = every_order_agrees(vec![
        event(sources::ORDERS, placed()),
        event(sources::PAYMENT, payment_failed()),
        event(sources::INVENTORY, reserved()),
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
    let (outcome, decided) = every_order_agrees(vec![
        event(sources::ORDERS, placed()),
        event(sources::PAYMENT, paid()),
        event(sources::INVENTORY, out_of_stock()),
    ]);
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
fn fraud_cancels_with_both_compensations_once_in_any_order() {
    let (outcome, decided) = every_order_agrees(vec![
        event(sources::ORDERS, placed()),
        event(sources::PAYMENT, paid()),
        event(sources::INVENTORY, reserved()),
        event(sources::FRAUD, fraud()),
    ]);
    assert_eq!(
        outcome.status,
        OrderStatus::Cancelled {
            reason: "fraud-suspected".into()
        }
    );
    assert!(outcome.refund_requested && outcome.release_requested);
    // Confirmed first only when fraud was the last fact to arrive.
    for decision in [
        "OrderCancelled",
        "RefundPaymentRequested",
        "ReleaseInventoryRequested",
    ] {
        assert!(decided.contains(&decision.to_string()), "{decided:?}");
    }
}

#[test]
fn two_failures_cancel_once_for_the_failure_known_first() {
    // Only the reason may differ: it names the failure known when the order was cancelled
    // (a failed payment wins when both were already there when OrderPlaced arrived).
    for permutation in permutations(&[
        event(sources::ORDERS, placed()),
        event(sources::PAYMENT, payment_failed()),
        event(sources::INVENTORY, out_of_stock()),
    ]) {
        let types: Vec<&str> = permutation.iter().map(|e| e.detail_type.as_str()).collect();
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
            vec![("OrderCancelled".to_string(), 1)],
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
