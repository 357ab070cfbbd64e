//! Fraud detection end to end: bursts of one customer's orders through the bus, the fraud
//! function's verdicts, and what the saga does with them.

use std::time::Duration;

use e2e::{address, eventually, order_id, order_of, Stack};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

/// One burst at a time: each test stops the fraud function's consumer while it sends.
static BURSTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Five orders of one new customer, one unit each of a new SKU (stock 50), shipping to
/// `cities`, sent in one PutEvents call (a burst) and judged in one batch.
///
/// One batch is what these tests are about: a burst judged together is cancelled before
/// any of it is confirmed. Whether a burst sent at once lands in one batch depends on
/// where the poller's batching window happens to start, so the test makes it certain: the
/// fraud function's event source mapping is stopped while the burst arrives and started
/// again once all of it waits in the queue. (A burst split over batches is a different
/// story: the orders judged before the pattern was complete are cleared and confirmed,
/// then cancelled by the suspicion unless already shipped; the saga's tests cover that.)
async fn burst(stack: &Stack, prefix: &str, cities: &[(&str, &str)]) -> (Vec<String>, String) {
    let _one_burst = BURSTS.lock().await;
    let customer = order_id(prefix);
    let sku = format!("SKU-{customer}");
    stack.set_stock(&sku, 50).await;
    let orders: Vec<String> = (0..cities.len())
        .map(|i| format!("{customer}-o{i}"))
        .collect();
    let events: Vec<(&str, &str, Value)> = orders
        .iter()
        .zip(cities)
        .map(|(order, (country, city))| {
            let mut detail = order_of(order, &sku, 1, 700, "tok_visa");
            detail["data"]["customerId"] = customer.clone().into();
            detail["data"]["shippingAddress"] = address(country, city);
            ("orderflow.orders", "OrderPlaced", detail)
        })
        .collect();
    stack.set_consumer_enabled("fraud", false).await;
    stack.put_events(&events).await;
    stack.wait_until_queued("fraud", events.len() as u64).await;
    stack.set_consumer_enabled("fraud", true).await;
    (orders, sku)
}

fn of_type<'a>(stream: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    stream
        .iter()
        .filter(|e| e["eventType"] == event_type)
        .collect()
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_burst_from_two_cities_is_cancelled_refunded_and_its_stock_released() {
    let stack = Stack::connect().await;
    let cities = [
        ("FR", "Paris"),
        ("FR", "Paris"),
        ("DE", "Berlin"),
        ("FR", "Paris"),
        ("DE", "Berlin"),
    ];
    let (orders, sku) = burst(&stack, "cus-fraud", &cities).await;

    for order in &orders {
        let view = stack
            .wait_for_order(order, "cancelled for fraud, refunded and released", |v| {
                v["status"] == "CANCELLED"
                    && v["payment"]["status"] == "REFUNDED"
                    && v["reservation"]["status"] == "RELEASED"
            })
            .await;
        assert_eq!(view["cancelReason"], "fraud-suspected", "{view}");
        assert_eq!(view["fraud"]["verdict"], "SUSPECTED", "{view}");
        assert!(view.get("shipment").is_none(), "nothing shipped: {view}");

        let stream = stack.order_stream(order).await;
        let suspicions = of_type(&stream, "FraudSuspected");
        assert_eq!(suspicions.len(), 1, "flagged once: {order}");
        let pattern = &suspicions[0]["data"]["pattern"];
        assert_eq!(pattern["orderIds"].as_array().map(Vec::len), Some(5));
        assert_eq!(pattern["locations"].as_array().map(Vec::len), Some(2));
        assert_eq!(pattern["rule"]["minOrders"], 5);
        assert_eq!(
            suspicions[0]["metadata"]["correlationId"],
            of_type(&stream, "OrderPlaced")[0]["metadata"]["correlationId"],
            "the suspicion belongs to the order's own conversation"
        );
        assert!(of_type(&stream, "OrderConfirmed").len() <= 1);
        assert_eq!(of_type(&stream, "RefundPaymentRequested").len(), 1);
        assert_eq!(of_type(&stream, "ReleaseInventoryRequested").len(), 1);
    }
    eventually("all stock released", WAIT, || async {
        (stack.stock(&sku).await == Some(50)).then_some(())
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_burst_from_one_city_is_cleared_and_ships() {
    let stack = Stack::connect().await;
    let (orders, sku) = burst(&stack, "cus-loyal", &[("FR", "Paris"); 5]).await;
    for order in &orders {
        let view = stack
            .wait_for_order(order, "shipped", |v| v["status"] == "SHIPPED")
            .await;
        assert_eq!(view["fraud"]["verdict"], "CLEARED", "{view}");
        assert_eq!(view["shippingAddress"]["city"], "Paris", "{view}");
        let stream = stack.order_stream(order).await;
        assert_eq!(of_type(&stream, "FraudCleared").len(), 1);
        assert!(of_type(&stream, "FraudSuspected").is_empty());
    }
    assert_eq!(stack.stock(&sku).await, Some(45));
}
