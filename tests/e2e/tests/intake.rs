//! What the shop front can and cannot do through the bus (events/README.md, "What the shop
//! front can and cannot do"): each case ends with the order completed or cleanly refused
//! with a reason, and nothing charged that is not shipped or refunded.

use std::time::Duration;

use e2e::{about_order, order_id, order_of, Stack};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn an_order_below_the_catalogue_price_is_never_charged_and_is_cancelled() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-price");
    let sku = format!("SKU-{order}");
    stack.set_stock(&sku, 4, 900).await;
    let mut bus = stack.observe(about_order(&order)).await;
    // Two units at 1 instead of 900: the client chose the price.
    stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_of(&order, &sku, 2, 1, "tok_visa"),
        )])
        .await;

    let failed = bus.wait_for("PaymentFailed", 1, WAIT).await;
    assert_eq!(failed[0]["detail"]["data"]["reason"], "price-mismatch");
    let view = stack
        .wait_for_order(&order, "cancelled", |v| v["status"] == "CANCELLED")
        .await;
    assert_eq!(view["cancelReason"], "price-mismatch", "{view}");
    let payment = stack
        .get_item("payments", "orderId", &order)
        .await
        .expect("payment record");
    assert_ne!(payment["status"], "CHARGED", "{payment}");
    e2e::eventually("stock released", WAIT, || async {
        (stack.stock(&sku).await == Some(4)).then_some(())
    })
    .await;
    assert!(bus.of_type("PaymentProcessed").is_empty());
    assert!(bus.of_type("OrderConfirmed").is_empty());
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_second_order_placed_with_other_content_is_refused_and_the_first_stands() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-second");
    let sku = format!("SKU-{order}");
    stack.set_stock(&sku, 10, 700).await;
    let first_id = uuid::Uuid::new_v4().to_string();
    let mut first = order_of(&order, &sku, 2, 700, "tok_visa");
    first["metadata"]["eventId"] = first_id.clone().into();
    stack
        .put_events(&[("orderflow.orders", "OrderPlaced", first)])
        .await;
    let view = stack
        .wait_for_order(&order, "confirmed", |v| {
            v["status"] == "CONFIRMED" || v["status"] == "SHIPPED"
        })
        .await;
    assert_eq!(view["total"], 1400);

    // The same order id again, another event, other lines and another address to mail.
    let second_id = uuid::Uuid::new_v4().to_string();
    let mut second = order_of(&order, &sku, 5, 700, "tok_visa");
    second["metadata"]["eventId"] = second_id.clone().into();
    second["data"]["customerEmail"] = "success+other@simulator.amazonses.com".into();
    stack
        .put_events(&[("orderflow.orders", "OrderPlaced", second)])
        .await;

    for dlq in ["payment-dlq", "inventory-dlq", "orders-dlq"] {
        let letter = stack.dead_letter(dlq, &second_id, WAIT).await;
        assert_eq!(
            letter.reason, "conflicting-duplicate",
            "{dlq}: {}",
            letter.message
        );
    }
    let payment = stack
        .get_item("payments", "orderId", &order)
        .await
        .expect("payment");
    assert_eq!(payment["amount"], 1400, "charged once, for the first order");
    assert_eq!(payment["eventId"], first_id);
    let reservation = stack
        .get_item("reservations", "orderId", &order)
        .await
        .expect("reservation");
    assert_eq!(reservation["eventId"], first_id);
    let view = stack.get_item("orders", "orderId", &order).await.unwrap();
    assert_eq!(
        view["total"], 1400,
        "the read model keeps the first order: {view}"
    );
    assert_eq!(view["customerEmail"], "success+e2e@simulator.amazonses.com");
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn an_order_placed_after_its_cancellation_is_not_charged() {
    let stack = Stack::connect().await;
    let order = order_id("e2e-late");
    let sku = format!("SKU-{order}");
    stack.set_stock(&sku, 3, 500).await;
    // The saga cancelled the order (say, out of stock) before payment saw it: a late or
    // redriven OrderPlaced must not charge it.
    let cancel = stack
        .put_events(&[(
            "orderflow.saga",
            "OrderCancelled",
            json!({"data": {"orderId": order, "customerId": "cus-e2e",
                            "customerEmail": "success+e2e@simulator.amazonses.com",
                            "reason": "out-of-stock"}}),
        )])
        .await;
    stack.wait_until_handled("payment", &cancel[0]).await;
    stack.wait_until_handled("inventory", &cancel[0]).await;

    let placed = stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_of(&order, &sku, 1, 500, "tok_visa"),
        )])
        .await;
    assert_eq!(
        stack.wait_until_handled("payment", &placed[0]).await,
        "Ignored"
    );
    let payment = stack
        .get_item("payments", "orderId", &order)
        .await
        .expect("tombstone");
    assert_eq!(payment["status"], "CANCELLED", "{payment}");
    assert_eq!(
        stack.wait_until_handled("inventory", &placed[0]).await,
        "Ignored"
    );
    assert_eq!(stack.stock(&sku).await, Some(3), "nothing reserved");
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn an_order_reusing_another_orders_event_id_is_its_own_order_and_both_end() {
    let stack = Stack::connect().await;
    let (a, b) = (order_id("e2e-ida"), order_id("e2e-idb"));
    let sku = format!("SKU-{a}");
    stack.set_stock(&sku, 10, 300).await;
    // Event ids are one namespace only within a stream and a source: order B's producer
    // (by mistake, or on purpose) reuses order A's event id.
    let shared_id = uuid::Uuid::new_v4().to_string();
    let mut first = order_of(&a, &sku, 1, 300, "tok_visa");
    first["metadata"]["eventId"] = shared_id.clone().into();
    stack
        .put_events(&[("orderflow.orders", "OrderPlaced", first)])
        .await;
    let ended = |v: &serde_json::Value| v["status"] == "CONFIRMED" || v["status"] == "SHIPPED";
    stack.wait_for_order(&a, "confirmed", ended).await;

    let mut second = order_of(&b, &sku, 2, 300, "tok_visa");
    second["metadata"]["eventId"] = shared_id.clone().into();
    stack
        .put_events(&[("orderflow.orders", "OrderPlaced", second)])
        .await;
    let view = stack.wait_for_order(&b, "confirmed", ended).await;
    assert_eq!(view["total"], 600, "{view}");
    for (order, amount) in [(&a, 300), (&b, 600)] {
        let payment = stack
            .get_item("payments", "orderId", order)
            .await
            .expect("payment");
        assert_eq!(payment["amount"], amount, "{order}: {payment}");
        assert_eq!(payment["eventId"], shared_id);
    }
    let view = stack.get_item("orders", "orderId", &a).await.unwrap();
    assert_eq!(view["total"], 300, "order A is untouched: {view}");
}
