//! The payment slice end to end: events put on the bus, routed by the rule to the queue,
//! charged by the deployed function, recorded in DynamoDB, outcomes published on the bus.

use std::time::Duration;

use e2e::{about_order, order_id, order_placed, Stack};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn an_order_is_charged_and_payment_processed_is_published() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-pay");
    let mut bus = stack.observe(about_order(&order)).await;
    stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_placed(&order, "tok_visa", None),
        )])
        .await;

    let processed = bus.wait_for("PaymentProcessed", 1, WAIT).await;
    let payment = stack
        .get_item("payments", "orderId", &order)
        .await
        .expect("payment recorded");
    assert_eq!(payment["status"], "CHARGED");
    assert_eq!(payment["amount"], 2500);
    assert_eq!(payment["currency"], "EUR");
    let detail = &processed[0]["detail"];
    assert_eq!(detail["data"]["paymentId"], payment["paymentId"]);
    assert_eq!(detail["data"]["amount"], 2500);
    assert_eq!(processed[0]["source"], "orderflow.payment");
    // Metadata defaults came from the EventBridge envelope: the effect is correlated to it.
    assert_eq!(detail["metadata"]["causationId"], payment["eventId"]);
    assert_eq!(
        detail["metadata"]["correlationId"],
        payment["correlationId"]
    );
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn the_same_event_delivered_twice_charges_once_and_publishes_once() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-dup");
    let event_id = uuid::Uuid::new_v4().to_string();
    let detail = order_placed(&order, "tok_visa", Some(&event_id));
    let mut bus = stack.observe(about_order(&order)).await;

    // Twice through the bus (a producer retry) ...
    stack
        .put_events(&[("orderflow.orders", "OrderPlaced", detail.clone())])
        .await;
    stack
        .put_events(&[("orderflow.orders", "OrderPlaced", detail.clone())])
        .await;
    bus.wait_for("PaymentProcessed", 1, WAIT).await;
    let first = stack
        .get_item("payments", "orderId", &order)
        .await
        .expect("payment");

    // ... and once more straight into the queue, as an SQS redelivery would.
    let body = json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "OrderPlaced",
        "source": "orderflow.orders", "account": "000000000000",
        "time": "2026-11-21T10:00:00Z", "region": "us-east-1", "resources": [], "detail": detail
    });
    let queue = stack.queue_url("payment").await;
    stack
        .sqs
        .send_message()
        .queue_url(&queue)
        .message_body(body.to_string())
        .send()
        .await
        .unwrap();
    stack.wait_until_drained("payment").await;
    bus.settle(Duration::from_secs(3)).await;

    assert_eq!(
        bus.of_type("PaymentProcessed").len(),
        1,
        "published exactly once"
    );
    let after = stack
        .get_item("payments", "orderId", &order)
        .await
        .expect("payment");
    assert_eq!(first, after, "the payment record was not written again");
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_second_order_placed_for_the_same_order_does_not_charge_again() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-twice");
    let mut bus = stack.observe(about_order(&order)).await;
    // Two different events (two EventBridge ids) for one order.
    stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_placed(&order, "tok_visa", None),
        )])
        .await;
    bus.wait_for("PaymentProcessed", 1, WAIT).await;
    let second = stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_placed(&order, "tok_visa", None),
        )])
        .await;
    stack.wait_until_handled("payment", &second[0]).await;
    bus.settle(Duration::from_secs(2)).await;
    assert_eq!(bus.of_type("PaymentProcessed").len(), 1);
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_declined_card_is_recorded_and_payment_failed_is_published() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-decline");
    let mut bus = stack.observe(about_order(&order)).await;
    stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_placed(&order, "tok_decline", None),
        )])
        .await;
    let failed = bus.wait_for("PaymentFailed", 1, WAIT).await;
    assert_eq!(failed[0]["detail"]["data"]["reason"], "card-declined");
    let payment = stack
        .get_item("payments", "orderId", &order)
        .await
        .expect("payment recorded");
    assert_eq!(payment["status"], "DECLINED");
    assert_eq!(payment["declineReason"], "card-declined");
    assert!(bus.of_type("PaymentProcessed").is_empty());
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_malformed_event_goes_to_the_dlq_with_its_reason_and_the_rest_of_the_batch_succeeds() {
    let stack = Stack::connect().await;
    let good = order_id("e2e-good");
    let bad = order_id("e2e-bad");
    let mut bus = stack.observe(about_order(&good)).await;
    // One PutEvents call, so both usually arrive in one batch.
    stack
        .put_events(&[
            (
                "orderflow.orders",
                "OrderPlaced",
                json!({"data": {"orderId": bad, "lines": "two mugs please", "total": "lots"}}),
            ),
            (
                "orderflow.orders",
                "OrderPlaced",
                order_placed(&good, "tok_visa", None),
            ),
        ])
        .await;
    bus.wait_for("PaymentProcessed", 1, WAIT).await;
    assert!(stack.get_item("payments", "orderId", &bad).await.is_none());

    let letter = stack.dead_letter("payment-dlq", &bad, WAIT).await;
    assert_eq!(letter.reason, "invalid-data");
    assert!(
        letter.message.contains("data.customerId") || letter.message.contains("data.lines"),
        "the error names the field: {}",
        letter.message
    );
    assert!(letter.source_queue_arn.ends_with(&stack.name("payment")));
    // Dead-lettered at once, not after maxReceiveCount attempts.
    assert_eq!(letter.receive_count, "1");
    bus.close().await;
}

/// A `RefundPaymentRequested` detail, with its own event id when given.
fn refund_requested(order_id: &str, event_id: Option<&str>) -> serde_json::Value {
    let mut detail = json!({"data": {"orderId": order_id, "reason": "out-of-stock"}});
    if let Some(id) = event_id {
        detail["metadata"] = json!({"eventId": id, "schemaVersion": 1});
    }
    detail
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_refund_requested_twice_refunds_once_and_publishes_once() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-refund");
    let mut bus = stack.observe(about_order(&order)).await;
    stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_placed(&order, "tok_visa", None),
        )])
        .await;
    bus.wait_for("PaymentProcessed", 1, WAIT).await;

    // The saga's request delivered twice ...
    let request_id = uuid::Uuid::new_v4().to_string();
    let request = refund_requested(&order, Some(&request_id));
    stack
        .put_events(&[("orderflow.saga", "RefundPaymentRequested", request.clone())])
        .await;
    stack
        .put_events(&[("orderflow.saga", "RefundPaymentRequested", request)])
        .await;
    let refunded = bus.wait_for("PaymentRefunded", 1, WAIT).await;
    // ... and a second, different request for the same order.
    let again = stack
        .put_events(&[(
            "orderflow.saga",
            "RefundPaymentRequested",
            refund_requested(&order, None),
        )])
        .await;
    stack.wait_until_handled("payment", &again[0]).await;
    stack.wait_until_drained("payment").await;
    bus.settle(Duration::from_secs(3)).await;

    assert_eq!(bus.of_type("PaymentRefunded").len(), 1, "refunded once");
    let payment = stack
        .get_item("payments", "orderId", &order)
        .await
        .expect("payment");
    assert_eq!(payment["status"], "REFUNDED");
    assert_eq!(payment["refundEventId"], request_id);
    assert_eq!(payment["refundReason"], "out-of-stock");
    let detail = &refunded[0]["detail"];
    assert_eq!(refunded[0]["source"], "orderflow.payment");
    assert_eq!(detail["data"]["paymentId"], payment["paymentId"]);
    assert_eq!(detail["data"]["amount"], 2500);
    assert_eq!(detail["data"]["currency"], "EUR");
    assert_eq!(detail["metadata"]["causationId"], request_id);
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_refund_for_a_declined_order_refunds_nothing() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-refund-declined");
    let mut bus = stack.observe(about_order(&order)).await;
    stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_placed(&order, "tok_decline", None),
        )])
        .await;
    bus.wait_for("PaymentFailed", 1, WAIT).await;

    let request = stack
        .put_events(&[(
            "orderflow.saga",
            "RefundPaymentRequested",
            refund_requested(&order, None),
        )])
        .await;
    stack.wait_until_handled("payment", &request[0]).await;
    bus.settle(Duration::from_secs(2)).await;

    assert!(bus.of_type("PaymentRefunded").is_empty());
    let payment = stack
        .get_item("payments", "orderId", &order)
        .await
        .expect("payment");
    assert_eq!(payment["status"], "DECLINED");
    assert!(payment.get("refundEventId").is_none());
    bus.close().await;
}
