//! Every order ends: by its deadline when a fact never comes, by an operator's cancel, and
//! through shipping (stopped before dispatch, or shipped) once it is confirmed.
//!
//! The test stage deploys with a short `OrderDeadlineSeconds` and `ShipmentHoldSeconds`
//! (tests/run.sh); the tests read both from the deployed queues rather than assume them.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use e2e::{about_order, bus_event, eventually, order_id, order_of, Stack};
use serde_json::{json, Value};

/// A queue's `DelaySeconds`: the deadline queue's is the stage's deadline, shipping's its hold.
async fn delay_of(stack: &Stack, queue: &str) -> Duration {
    let attributes = stack
        .sqs
        .get_queue_attributes()
        .queue_url(stack.queue_url(queue).await)
        .attribute_names(QueueAttributeName::DelaySeconds)
        .send()
        .await
        .expect("queue attributes");
    let seconds = attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::DelaySeconds))
        .and_then(|s| s.parse().ok())
        .expect("DelaySeconds");
    Duration::from_secs(seconds)
}

fn types_in(stream: &[Value]) -> Vec<String> {
    stream
        .iter()
        .filter_map(|e| e["eventType"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn an_order_whose_stock_answer_never_comes_is_cancelled_and_refunded_by_its_deadline() {
    let stack = Stack::connect().await;
    let deadline = delay_of(&stack, "deadline").await;
    let order = order_id("e2e-deadline");
    let sku = format!("SKU-{order}");
    stack.set_stock(&sku, 5, 900).await;
    let mut bus = stack.observe(about_order(&order)).await;
    // The order reaches every consumer the rules feed but inventory, as if inventory's copy
    // had been lost: nothing will ever reserve or refuse its stock.
    let placed = bus_event(
        &uuid::Uuid::new_v4().to_string(),
        "orderflow.orders",
        "OrderPlaced",
        order_of(&order, &sku, 1, 900, "tok_visa"),
    );
    let sent = Instant::now();
    for queue in ["payment", "fraud", "orders", "deadline"] {
        stack.deliver_to_queue(queue, &placed).await;
    }

    let charged = stack
        .wait_for_order(&order, "charged", |v| v["payment"]["status"] == "PAID")
        .await;
    assert_eq!(
        charged["status"], "PLACED",
        "waiting for its stock: {charged}"
    );
    let view = eventually(
        "the order cancelled by its deadline and refunded",
        deadline + Duration::from_secs(150),
        || async {
            stack
                .get_item("orders", "orderId", &order)
                .await
                .filter(|v| v["status"] == "CANCELLED" && v["payment"]["status"] == "REFUNDED")
        },
    )
    .await;
    assert!(
        sent.elapsed() >= deadline,
        "cancelled before its deadline ({:?} < {deadline:?})",
        sent.elapsed()
    );
    assert_eq!(view["cancelReason"], "deadline-exceeded");
    let stream = stack.order_stream(&order).await;
    let types = types_in(&stream);
    let deadline_fact = stream
        .iter()
        .find(|e| e["eventType"] == "OrderDeadlineReached")
        .expect("the deadline is a fact in the stream");
    assert_eq!(deadline_fact["source"], "orderflow.deadlines");
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "RefundPaymentRequested")
            .count(),
        1,
        "{types:?}"
    );
    assert!(
        !types.contains(&"ReleaseInventoryRequested".to_string()),
        "nothing was reserved"
    );
    assert!(!types.contains(&"OrderConfirmed".to_string()), "{types:?}");
    bus.wait_for("PaymentRefunded", 1, Duration::from_secs(120))
        .await;
    assert_eq!(stack.stock(&sku).await, Some(5));
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn an_operator_cancel_of_a_confirmed_order_stops_its_shipment_then_refunds_and_releases() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-opcancel");
    let sku = format!("SKU-{order}");
    stack.set_stock(&sku, 5, 700).await;
    let mut bus = stack.observe(about_order(&order)).await;
    stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_of(&order, &sku, 2, 700, "tok_visa"),
        )])
        .await;
    stack
        .wait_for_order(&order, "confirmed", |v| v["status"] == "CONFIRMED")
        .await;
    assert_eq!(stack.stock(&sku).await, Some(3));

    stack
        .put_events(&[(
            "orderflow.operations",
            "OrderCancelRequested",
            json!({"data": {"orderId": order, "reason": "customer-request"}}),
        )])
        .await;

    let view = stack
        .wait_for_order(&order, "cancelled, refunded and released", |v| {
            v["status"] == "CANCELLED"
                && v["payment"]["status"] == "REFUNDED"
                && v["reservation"]["status"] == "RELEASED"
        })
        .await;
    assert_eq!(view["cancelReason"], "customer-request");
    let stopped = bus
        .wait_for("ShipmentCancelled", 1, Duration::from_secs(120))
        .await;
    assert_eq!(stopped[0]["source"], "orderflow.shipping");
    let shipment = stack.get_item("shipments", "orderId", &order).await;
    assert_eq!(
        shipment.as_ref().map(|s| s["status"].clone()),
        Some("CANCELLED".into())
    );
    eventually("stock back", Duration::from_secs(120), || async {
        (stack.stock(&sku).await == Some(5)).then_some(())
    })
    .await;
    // The held OrderConfirmed reaches shipping after the hold, and finds the stop.
    let confirmed = stack
        .order_stream(&order)
        .await
        .into_iter()
        .find(|e| e["eventType"] == "OrderConfirmed")
        .expect("confirmed");
    let confirmed_id = confirmed["eventId"]
        .as_str()
        .expect("an event id")
        .to_string();
    let outcome = stack.wait_until_handled("shipping", &confirmed_id).await;
    assert_eq!(outcome, "Ignored", "the cancel came first");
    assert!(
        bus.of_type("OrderShipped").is_empty(),
        "nothing left the warehouse"
    );
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_cancel_after_dispatch_leaves_the_order_shipped_and_charged() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-latecancel");
    let sku = format!("SKU-{order}");
    stack.set_stock(&sku, 5, 700).await;
    stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_of(&order, &sku, 1, 700, "tok_visa"),
        )])
        .await;
    stack
        .wait_for_order(&order, "shipped", |v| v["status"] == "SHIPPED")
        .await;
    stack
        .put_events(&[(
            "orderflow.operations",
            "OrderCancelRequested",
            json!({"data": {"orderId": order, "reason": "customer-request"}}),
        )])
        .await;
    // The saga recorded the request and decided nothing: it is shipped.
    eventually("the request recorded", Duration::from_secs(120), || async {
        let stream = stack.order_stream(&order).await;
        stream
            .iter()
            .any(|e| e["eventType"] == "OrderCancelRequested")
            .then_some(())
    })
    .await;
    let view = stack
        .get_item("orders", "orderId", &order)
        .await
        .expect("a view");
    assert_eq!(view["status"], "SHIPPED");
    assert_eq!(view["payment"]["status"], "PAID");
    let types = types_in(&stack.order_stream(&order).await);
    for never in [
        "CancelShipmentRequested",
        "OrderCancelled",
        "RefundPaymentRequested",
    ] {
        assert!(!types.contains(&never.to_string()), "{never} in {types:?}");
    }
    assert_eq!(stack.stock(&sku).await, Some(4));
}
