//! The shipping slice end to end: an `OrderConfirmed` from the saga becomes one shipment
//! record and one `OrderShipped`, however often it is delivered, once the shipping queue's
//! hold (`ShipmentHoldSeconds`, its `DelaySeconds`) has passed; a `CancelShipmentRequested`
//! that arrives within the hold stops it for good.

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use e2e::{about_order, eventually, order_id, Stack};
use serde_json::{json, Value};

/// How long the deployment holds a confirmed order: the shipping queue's delay, read from the
/// queue so that the waits fit any stage (the test stage deploys with 30 s).
async fn hold(stack: &Stack) -> Duration {
    let out = stack
        .sqs
        .get_queue_attributes()
        .queue_url(stack.queue_url("shipping").await)
        .attribute_names(QueueAttributeName::DelaySeconds)
        .send()
        .await
        .expect("shipping queue attributes");
    let seconds = out
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::DelaySeconds))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("DelaySeconds of the shipping queue");
    Duration::from_secs(seconds)
}

/// Room for a shipment: the hold, then a minute for the hops on a loaded 2-core machine.
async fn wait(stack: &Stack) -> Duration {
    hold(stack).await + Duration::from_secs(60)
}

/// An `OrderConfirmed` detail as the saga publishes it.
fn order_confirmed(order_id: &str, event_id: Option<&str>) -> Value {
    let mut detail = json!({
        "data": {
            "orderId": order_id, "customerId": "cus-e2e",
            "customerEmail": format!("{order_id}@example.com"),
            "total": 3300, "currency": "EUR", "paymentId": "pay_e2e", "reservationId": "res_e2e",
            "lines": [{"sku": "MUG-RED", "quantity": 2}, {"sku": "TEA-GREEN", "quantity": 1}]
        }
    });
    if let Some(id) = event_id {
        detail["metadata"] =
            json!({"eventId": id, "schemaVersion": 1, "correlationId": format!("corr-{order_id}")});
    }
    detail
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_confirmed_order_gets_one_shipment_and_order_shipped_is_published() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-ship");
    let wait = wait(&stack).await;
    let mut bus = stack.observe(about_order(&order)).await;
    let ids = stack
        .put_events(&[(
            "orderflow.saga",
            "OrderConfirmed",
            order_confirmed(&order, None),
        )])
        .await;

    let shipped = bus.wait_for("OrderShipped", 1, wait).await;
    let shipment = stack
        .get_item("shipments", "orderId", &order)
        .await
        .expect("shipment recorded");
    assert_eq!(shipped[0]["source"], "orderflow.shipping");
    let data = &shipped[0]["detail"]["data"];
    assert_eq!(data["shipmentId"], shipment["shipmentId"]);
    assert_eq!(data["carrier"], shipment["carrier"]);
    assert_eq!(data["trackingNumber"], shipment["trackingNumber"]);
    assert_eq!(data["customerEmail"], format!("{order}@example.com"));
    assert!(["DHL", "UPS", "FedEx", "PostNL"].contains(&data["carrier"].as_str().unwrap()));
    assert_eq!(shipment["eventId"], ids[0].as_str());
    assert_eq!(shipment["status"], "DISPATCHED");
    assert_eq!(
        shipped[0]["detail"]["metadata"]["causationId"],
        ids[0].as_str()
    );
    bus.settle(Duration::from_secs(2)).await;
    assert_eq!(bus.of_type("OrderShipped").len(), 1);
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn the_same_order_confirmed_delivered_twice_ships_once() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-shipdup");
    let event_id = uuid::Uuid::new_v4().to_string();
    let detail = order_confirmed(&order, Some(&event_id));
    let wait = wait(&stack).await;
    let mut bus = stack.observe(about_order(&order)).await;

    // Twice through the bus (a producer retry) ...
    for _ in 0..2 {
        stack
            .put_events(&[("orderflow.saga", "OrderConfirmed", detail.clone())])
            .await;
    }
    bus.wait_for("OrderShipped", 1, wait).await;
    let first = stack
        .get_item("shipments", "orderId", &order)
        .await
        .expect("shipment");

    // ... and once more straight into the queue, as an SQS redelivery would.
    let body = json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "OrderConfirmed",
        "source": "orderflow.saga", "account": "000000000000",
        "time": "2026-11-21T10:00:00Z", "region": "us-east-1", "resources": [], "detail": detail
    });
    stack
        .sqs
        .send_message()
        .queue_url(stack.queue_url("shipping").await)
        .message_body(body.to_string())
        .send()
        .await
        .unwrap();
    // Held like any message of the queue: wait for its handling, the third of this event id.
    stack
        .wait_until_handled_times("shipping", &event_id, 3)
        .await;
    bus.settle(Duration::from_secs(3)).await;

    assert_eq!(bus.of_type("OrderShipped").len(), 1, "published once");
    let after = stack
        .get_item("shipments", "orderId", &order)
        .await
        .expect("shipment");
    assert_eq!(first, after, "the shipment was not written again");
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_second_order_confirmed_for_a_shipped_order_does_not_ship_again() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-shiptwice");
    let wait = wait(&stack).await;
    let mut bus = stack.observe(about_order(&order)).await;
    stack
        .put_events(&[(
            "orderflow.saga",
            "OrderConfirmed",
            order_confirmed(&order, None),
        )])
        .await;
    bus.wait_for("OrderShipped", 1, wait).await;
    let first = stack.get_item("shipments", "orderId", &order).await;
    // Another event (another id) about the same order.
    let second = stack
        .put_events(&[(
            "orderflow.saga",
            "OrderConfirmed",
            order_confirmed(&order, None),
        )])
        .await;
    stack.wait_until_handled("shipping", &second[0]).await;
    bus.settle(Duration::from_secs(2)).await;
    assert_eq!(bus.of_type("OrderShipped").len(), 1);
    assert_eq!(stack.get_item("shipments", "orderId", &order).await, first);
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_malformed_order_confirmed_goes_to_the_dlq_with_its_reason() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-shipbad");
    let wait = wait(&stack).await;
    stack
        .put_events(&[(
            "orderflow.saga",
            "OrderConfirmed",
            json!({"data": {"orderId": order, "total": "a lot"}}),
        )])
        .await;
    // Refused when the hold lets it out.
    let letter = stack.dead_letter("shipping-dlq", &order, wait).await;
    assert_eq!(letter.reason, "invalid-data");
    assert!(letter.message.contains("data."), "{}", letter.message);
    assert!(stack
        .get_item("shipments", "orderId", &order)
        .await
        .is_none());
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_cancel_within_the_hold_stops_the_shipment_for_good() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-shipcancel");
    let wait = wait(&stack).await;
    let mut bus = stack.observe(about_order(&order)).await;
    let confirmed = stack
        .put_events(&[(
            "orderflow.saga",
            "OrderConfirmed",
            order_confirmed(&order, None),
        )])
        .await;
    // The saga's request, while the OrderConfirmed is still held in the shipping queue.
    let cancel = stack
        .put_events(&[(
            "orderflow.saga",
            "CancelShipmentRequested",
            json!({"data": {"orderId": order, "reason": "fraud-suspected"}}),
        )])
        .await;

    let cancelled = bus.wait_for("ShipmentCancelled", 1, wait).await;
    assert_eq!(cancelled[0]["source"], "orderflow.shipping");
    assert_eq!(cancelled[0]["detail"]["data"]["orderId"], order.as_str());
    assert_eq!(cancelled[0]["detail"]["data"]["reason"], "fraud-suspected");
    assert_eq!(
        cancelled[0]["detail"]["metadata"]["causationId"],
        cancel[0].as_str()
    );
    let record = eventually("the shipment recorded as CANCELLED", wait, || async {
        stack
            .get_item("shipments", "orderId", &order)
            .await
            .filter(|item| item["status"] == "CANCELLED")
    })
    .await;
    assert_eq!(record["eventId"], cancel[0].as_str());
    assert!(record.get("trackingNumber").is_none(), "{record}");

    // The hold ends; the OrderConfirmed finds the cancellation and ships nothing.
    let outcome = stack.wait_until_handled("shipping", &confirmed[0]).await;
    assert_eq!(outcome, "Ignored");
    bus.settle(Duration::from_secs(3)).await;
    assert!(
        bus.of_type("OrderShipped").is_empty(),
        "{:?}",
        bus.of_type("OrderShipped")
    );
    assert_eq!(bus.of_type("ShipmentCancelled").len(), 1);
    assert_eq!(
        stack.get_item("shipments", "orderId", &order).await,
        Some(record),
        "still CANCELLED, written once"
    );
    bus.close().await;
}
