//! The inventory slice end to end: orders and compensations put on the bus, routed to the
//! inventory queue, reserved or released by the deployed function in DynamoDB, answers
//! published on the bus. Each test stocks its own SKUs so that tests do not share stock.

use std::time::Duration;

use e2e::{about_order, order_id, Stack};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// A SKU no other test (or run) uses.
fn sku(name: &str) -> String {
    format!(
        "E2E-{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Sets `sku`'s stock directly in the table, as the seed script does, at the 100 per unit
/// that [`order_placed`] charges.
async fn stock_up(stack: &Stack, sku: &str, level: u32) {
    stack.set_stock(sku, level, 100).await;
}

async fn stock_of(stack: &Stack, sku: &str) -> i64 {
    stack
        .get_item("inventory", "sku", sku)
        .await
        .and_then(|item| item["stock"].as_i64())
        .unwrap_or(0)
}

/// An `OrderPlaced` detail with these (sku, quantity) lines, at 100 per unit.
fn order_placed(order_id: &str, event_id: Option<&str>, lines: &[(&str, u32)]) -> Value {
    let total: u64 = lines.iter().map(|(_, q)| 100 * u64::from(*q)).sum();
    let lines: Vec<Value> = lines
        .iter()
        .map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity, "unitPrice": 100}))
        .collect();
    let mut detail = json!({
        "data": {
            "orderId": order_id, "customerId": "cus-e2e", "customerEmail": "e2e@example.com",
            "currency": "EUR", "lines": lines, "total": total, "paymentToken": "tok_visa"
        }
    });
    if let Some(id) = event_id {
        detail["metadata"] = json!({"eventId": id, "schemaVersion": 1});
    }
    detail
}

fn with_event_id(data: Value, event_id: Option<&str>) -> Value {
    match event_id {
        Some(id) => json!({"metadata": {"eventId": id, "schemaVersion": 1}, "data": data}),
        None => json!({ "data": data }),
    }
}

fn release_requested(order_id: &str, event_id: Option<&str>) -> Value {
    with_event_id(
        json!({"orderId": order_id, "reason": "payment-failed"}),
        event_id,
    )
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_reservation_takes_every_line_from_stock_and_publishes_inventory_reserved() {
    let stack = Stack::connect().await;
    let (mug, tea) = (sku("MUG"), sku("TEA"));
    stock_up(&stack, &mug, 10).await;
    stock_up(&stack, &tea, 5).await;
    let order = order_id("e2e-inv");
    let mut bus = stack.observe(about_order(&order)).await;
    // Two lines of one SKU: reserved as one line of 3.
    stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_placed(&order, None, &[(&mug, 2), (&tea, 1), (&mug, 1)]),
        )])
        .await;

    let reserved = bus.wait_for("InventoryReserved", 1, WAIT).await;
    assert_eq!(stock_of(&stack, &mug).await, 7);
    assert_eq!(stock_of(&stack, &tea).await, 4);
    let event = &reserved[0];
    assert_eq!(event["source"], "orderflow.inventory");
    assert_eq!(
        event["detail"]["data"]["lines"],
        json!([{"sku": mug, "quantity": 3}, {"sku": tea, "quantity": 1}])
    );
    let record = stack
        .get_item("reservations", "orderId", &order)
        .await
        .expect("reservation recorded");
    assert_eq!(record["status"], "RESERVED");
    assert_eq!(
        record["reservationId"],
        event["detail"]["data"]["reservationId"]
    );
    assert_eq!(
        event["detail"]["metadata"]["causationId"],
        record["eventId"]
    );
    assert!(bus.of_type("InventoryOutOfStock").is_empty());
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn an_order_short_on_one_line_reserves_nothing_and_names_what_is_short() {
    let stack = Stack::connect().await;
    let (mug, lamp, unknown) = (sku("MUG"), sku("LAMP"), sku("NONE"));
    stock_up(&stack, &mug, 10).await;
    stock_up(&stack, &lamp, 1).await;
    let order = order_id("e2e-oos");
    let mut bus = stack.observe(about_order(&order)).await;
    stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_placed(&order, None, &[(&mug, 2), (&lamp, 3), (&unknown, 1)]),
        )])
        .await;

    let answer = bus.wait_for("InventoryOutOfStock", 1, WAIT).await;
    assert_eq!(
        answer[0]["detail"]["data"]["shortages"],
        json!([
            {"sku": lamp, "requested": 3, "available": 1},
            {"sku": unknown, "requested": 1, "available": 0},
        ])
    );
    // All or nothing: the line that was in stock was not taken either.
    assert_eq!(stock_of(&stack, &mug).await, 10);
    assert_eq!(stock_of(&stack, &lamp).await, 1);
    let record = stack
        .get_item("reservations", "orderId", &order)
        .await
        .expect("answer recorded");
    assert_eq!(record["status"], "OUT_OF_STOCK");

    // A release for an order that holds nothing gives nothing back.
    let release = stack
        .put_events(&[(
            "orderflow.saga",
            "ReleaseInventoryRequested",
            release_requested(&order, None),
        )])
        .await;
    stack.wait_until_handled("inventory", &release[0]).await;
    bus.settle(Duration::from_secs(2)).await;
    assert!(bus.of_type("InventoryReleased").is_empty());
    assert!(bus.of_type("InventoryReserved").is_empty());
    assert_eq!(stock_of(&stack, &mug).await, 10);
    assert_eq!(stock_of(&stack, &lamp).await, 1);
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn the_same_order_delivered_again_reserves_once() {
    let stack = Stack::connect().await;
    let mug = sku("MUG");
    stock_up(&stack, &mug, 10).await;
    let order = order_id("e2e-inv-dup");
    let event_id = uuid::Uuid::new_v4().to_string();
    let detail = order_placed(&order, Some(&event_id), &[(&mug, 2)]);
    let mut bus = stack.observe(about_order(&order)).await;

    stack
        .put_events(&[("orderflow.orders", "OrderPlaced", detail.clone())])
        .await;
    bus.wait_for("InventoryReserved", 1, WAIT).await;
    // The same event again through the bus (a producer retry) ...
    stack
        .put_events(&[("orderflow.orders", "OrderPlaced", detail.clone())])
        .await;
    // ... straight into the queue (an SQS redelivery) ...
    let body = json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "OrderPlaced",
        "source": "orderflow.orders", "account": "000000000000",
        "time": "2026-11-21T10:00:00Z", "region": "us-east-1", "resources": [], "detail": detail
    });
    let queue = stack.queue_url("inventory").await;
    stack
        .sqs
        .send_message()
        .queue_url(&queue)
        .message_body(body.to_string())
        .send()
        .await
        .expect("send to the inventory queue");
    // ... and a different OrderPlaced event for the same order.
    let other = stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_placed(&order, None, &[(&mug, 2)]),
        )])
        .await;
    stack.wait_until_handled("inventory", &other[0]).await;
    stack.wait_until_drained("inventory").await;
    bus.settle(Duration::from_secs(3)).await;

    assert_eq!(
        bus.of_type("InventoryReserved").len(),
        1,
        "published exactly once"
    );
    assert_eq!(stock_of(&stack, &mug).await, 8, "reserved exactly once");
    let record = stack
        .get_item("reservations", "orderId", &order)
        .await
        .expect("reservation");
    assert_eq!(record["eventId"], event_id);
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_release_requested_twice_restores_stock_exactly_once() {
    let stack = Stack::connect().await;
    let (mug, tea) = (sku("MUG"), sku("TEA"));
    stock_up(&stack, &mug, 10).await;
    stock_up(&stack, &tea, 3).await;
    let order = order_id("e2e-release");
    let mut bus = stack.observe(about_order(&order)).await;
    stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_placed(&order, None, &[(&mug, 4), (&tea, 3)]),
        )])
        .await;
    let reserved = bus.wait_for("InventoryReserved", 1, WAIT).await;
    assert_eq!(stock_of(&stack, &mug).await, 6);
    assert_eq!(stock_of(&stack, &tea).await, 0);

    // The saga's request delivered twice ...
    let request_id = uuid::Uuid::new_v4().to_string();
    let request = release_requested(&order, Some(&request_id));
    stack
        .put_events(&[(
            "orderflow.saga",
            "ReleaseInventoryRequested",
            request.clone(),
        )])
        .await;
    stack
        .put_events(&[("orderflow.saga", "ReleaseInventoryRequested", request)])
        .await;
    let released = bus.wait_for("InventoryReleased", 1, WAIT).await;
    // ... and a second, different request for the same order.
    let again = stack
        .put_events(&[(
            "orderflow.saga",
            "ReleaseInventoryRequested",
            release_requested(&order, None),
        )])
        .await;
    stack.wait_until_handled("inventory", &again[0]).await;
    stack.wait_until_drained("inventory").await;
    bus.settle(Duration::from_secs(3)).await;

    assert_eq!(bus.of_type("InventoryReleased").len(), 1);
    assert_eq!(stock_of(&stack, &mug).await, 10);
    assert_eq!(stock_of(&stack, &tea).await, 3);
    let data = &released[0]["detail"]["data"];
    assert_eq!(
        data["reservationId"],
        reserved[0]["detail"]["data"]["reservationId"]
    );
    assert_eq!(
        data["lines"],
        json!([{"sku": mug, "quantity": 4}, {"sku": tea, "quantity": 3}])
    );
    let record = stack
        .get_item("reservations", "orderId", &order)
        .await
        .expect("reservation");
    assert_eq!(record["status"], "RELEASED");
    assert_eq!(record["releaseEventId"], request_id);
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn an_order_cancelled_after_a_reservation_releases_it() {
    let stack = Stack::connect().await;
    let mug = sku("MUG");
    stock_up(&stack, &mug, 5).await;
    let order = order_id("e2e-cancel");
    let mut bus = stack.observe(about_order(&order)).await;
    stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_placed(&order, None, &[(&mug, 5)]),
        )])
        .await;
    bus.wait_for("InventoryReserved", 1, WAIT).await;
    assert_eq!(stock_of(&stack, &mug).await, 0);

    let cancelled = stack
        .put_events(&[(
            "orderflow.saga",
            "OrderCancelled",
            json!({"data": {
                "orderId": order, "customerId": "cus-e2e",
                "customerEmail": "e2e@example.com", "reason": "fraud-suspected"
            }}),
        )])
        .await;
    let released = bus.wait_for("InventoryReleased", 1, WAIT).await;
    assert_eq!(stock_of(&stack, &mug).await, 5);
    assert_eq!(
        released[0]["detail"]["metadata"]["causationId"],
        cancelled[0]
    );
    let record = stack
        .get_item("reservations", "orderId", &order)
        .await
        .expect("reservation");
    assert_eq!(record["status"], "RELEASED");
    assert_eq!(record["releaseReason"], "fraud-suspected");
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_poison_release_request_goes_to_the_dlq_with_its_reason() {
    let stack = Stack::connect().await;
    let marker = format!("poison-{}", uuid::Uuid::new_v4().simple());
    // No orderId: undecodable, so retrying cannot help.
    stack
        .put_events(&[(
            "orderflow.saga",
            "ReleaseInventoryRequested",
            json!({"data": {"reason": marker}}),
        )])
        .await;
    let letter = stack.dead_letter("inventory-dlq", &marker, WAIT).await;
    assert_eq!(letter.reason, "invalid-data");
    assert!(
        letter.message.contains("orderId"),
        "the error names the field: {}",
        letter.message
    );
    assert!(letter.source_queue_arn.ends_with(&stack.name("inventory")));
    // Dead-lettered at once, not after maxReceiveCount attempts.
    assert_eq!(letter.receive_count, "1");
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_redelivery_republishes_the_same_answer_and_moves_no_stock() {
    let stack = Stack::connect().await;
    let mug = sku("MUG");
    stock_up(&stack, &mug, 10).await;
    let order = order_id("e2e-inv-replay");
    let mut bus = stack.observe(about_order(&order)).await;

    let placed_id = uuid::Uuid::new_v4().to_string();
    let placed = order_placed(&order, Some(&placed_id), &[(&mug, 3)]);
    stack
        .put_events(&[("orderflow.orders", "OrderPlaced", placed.clone())])
        .await;
    bus.wait_for("InventoryReserved", 1, WAIT).await;
    stack
        .put_events(&[("orderflow.orders", "OrderPlaced", placed)])
        .await;
    let reserved = bus.wait_for("InventoryReserved", 2, WAIT).await;
    assert_eq!(
        reserved[0]["detail"]["metadata"]["eventId"], reserved[1]["detail"]["metadata"]["eventId"],
        "the same event again, which downstream deduplicates"
    );
    assert_eq!(stock_of(&stack, &mug).await, 7, "taken once");

    let release_id = uuid::Uuid::new_v4().to_string();
    let release = release_requested(&order, Some(&release_id));
    stack
        .put_events(&[(
            "orderflow.saga",
            "ReleaseInventoryRequested",
            release.clone(),
        )])
        .await;
    bus.wait_for("InventoryReleased", 1, WAIT).await;
    stack
        .put_events(&[("orderflow.saga", "ReleaseInventoryRequested", release)])
        .await;
    let released = bus.wait_for("InventoryReleased", 2, WAIT).await;
    assert_eq!(
        released[0]["detail"]["metadata"]["eventId"],
        released[1]["detail"]["metadata"]["eventId"]
    );
    assert_eq!(stock_of(&stack, &mug).await, 10, "given back once");

    // And the original OrderPlaced once more, now that the stock is released: no answer.
    stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_placed(&order, Some(&placed_id), &[(&mug, 3)]),
        )])
        .await;
    stack
        .wait_until_handled_times("inventory", &placed_id, 3)
        .await;
    bus.settle(Duration::from_secs(2)).await;
    assert_eq!(bus.copies_of_type("InventoryReserved").len(), 2);
    assert_eq!(stock_of(&stack, &mug).await, 10);
    bus.close().await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn an_order_cancelled_before_inventory_saw_it_never_takes_stock() {
    let stack = Stack::connect().await;
    let mug = sku("MUG");
    stock_up(&stack, &mug, 5).await;
    let order = order_id("e2e-early-cancel");
    let mut bus = stack.observe(about_order(&order)).await;
    // The saga cancels (say, payment declined) before inventory has handled the order.
    let cancelled = stack
        .put_events(&[(
            "orderflow.saga",
            "OrderCancelled",
            json!({"data": {
                "orderId": order, "customerId": "cus-e2e",
                "customerEmail": "e2e@example.com", "reason": "payment-failed"
            }}),
        )])
        .await;
    stack.wait_until_handled("inventory", &cancelled[0]).await;
    let placed = stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            order_placed(&order, None, &[(&mug, 2)]),
        )])
        .await;
    stack.wait_until_handled("inventory", &placed[0]).await;
    bus.settle(Duration::from_secs(2)).await;

    assert_eq!(stock_of(&stack, &mug).await, 5);
    assert!(bus.of_type("InventoryReserved").is_empty());
    assert!(bus.of_type("InventoryReleased").is_empty());
    let record = stack
        .get_item("reservations", "orderId", &order)
        .await
        .expect("the cancellation is recorded");
    assert_eq!(record["status"], "CANCELLED");
    assert_eq!(record["eventId"], cancelled[0]);
    bus.close().await;
}
