//! Event provenance end to end: an event type is acted on only when it comes from the
//! source that owns it. A forged event (right type, wrong source) is not routed by any rule
//! (asked of EventBridge with TestEventPattern), and if it reaches a queue anyway it changes
//! nothing and lands in the DLQ with reason `untrusted-source`.

use std::time::Duration;

use e2e::{about_order, bus_event, order_id, order_of, Stack};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);

/// The shop front's source: allowed to send OrderPlaced, nothing the saga or payment owns.
const SHOP: &str = "orderflow.orders";

fn forged(detail_type: &str, data: Value) -> Value {
    let id = uuid::Uuid::new_v4().to_string();
    bus_event(
        &id,
        SHOP,
        detail_type,
        json!({"metadata": {"eventId": id, "schemaVersion": 1}, "data": data}),
    )
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_forged_refund_request_refunds_nothing() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-forge-refund");
    let sku = format!("SKU-{order}");
    stack.set_stock(&sku, 5, 900).await;
    let mut bus = stack.observe(about_order(&order)).await;
    stack
        .put_events(&[(
            SHOP,
            "OrderPlaced",
            order_of(&order, &sku, 1, 900, "tok_visa"),
        )])
        .await;
    bus.wait_for("PaymentProcessed", 1, WAIT).await;

    let refund = forged(
        "RefundPaymentRequested",
        json!({"orderId": order, "reason": "forged"}),
    );
    assert!(
        !stack.rule_matches("payment-orders", &refund).await,
        "the payment rule must not route a refund request from {SHOP}"
    );
    stack.deliver_to_queue("payment", &refund).await;
    let letter = stack.dead_letter("payment-dlq", &order, WAIT).await;
    assert_eq!(letter.reason, "untrusted-source");
    assert!(
        letter.message.contains("orderflow.saga"),
        "{}",
        letter.message
    );

    let payment = stack.get_item("payments", "orderId", &order).await;
    assert_eq!(payment.expect("payment recorded")["status"], "CHARGED");
    assert!(bus.of_type("PaymentRefunded").is_empty());
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_forged_saga_decision_ships_nothing() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-forge-confirm");
    let confirmed = forged(
        "OrderConfirmed",
        json!({
            "orderId": order, "customerId": "cus-e2e", "customerEmail": "e2e@example.com",
            "total": 900, "currency": "EUR", "paymentId": "pay-forged",
            "reservationId": "res-forged", "lines": [{"sku": "MUG-RED", "quantity": 1}]
        }),
    );
    assert!(!stack.rule_matches("shipping", &confirmed).await);
    stack.deliver_to_queue("shipping", &confirmed).await;
    let letter = stack.dead_letter("shipping-dlq", &order, WAIT).await;
    assert_eq!(letter.reason, "untrusted-source");
    assert!(stack
        .get_item("shipments", "orderId", &order)
        .await
        .is_none());
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_forged_payment_result_is_not_recorded_by_the_saga() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-forge-paid");
    let paid = forged(
        "PaymentProcessed",
        json!({"orderId": order, "paymentId": "pay-forged", "amount": 900, "currency": "EUR"}),
    );
    assert!(!stack.rule_matches("orders", &paid).await);
    stack.deliver_to_queue("orders", &paid).await;
    let letter = stack.dead_letter("orders-dlq", &order, WAIT).await;
    assert_eq!(letter.reason, "untrusted-source");
    assert!(stack.order_stream(&order).await.is_empty());
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn the_rules_route_each_type_only_from_its_owner() {
    let stack = Stack::connect().await;
    let placed = |source: &str| {
        bus_event(
            "e-1",
            source,
            "OrderPlaced",
            json!({"data": {"orderId": "ord-1"}}),
        )
    };
    assert!(stack.rule_matches("payment-orders", &placed(SHOP)).await);
    assert!(
        !stack
            .rule_matches("payment-orders", &placed("orderflow.saga"))
            .await
    );
    assert!(
        !stack
            .rule_matches("inventory", &placed("orderflow.payment"))
            .await
    );
}
