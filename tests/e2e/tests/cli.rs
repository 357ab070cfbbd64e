//! The `orderflow` CLI (functions/cli), run as a user runs it, against the LocalStack
//! deployment: every command, on orders made for each test.
//!
//! The binary is the workspace's debug build (`cargo build -p orderflow-cli`; `make test`
//! builds every binary first), or `ORDERFLOW_CLI`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use e2e::*;
use serde_json::{json, Value};

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("ORDERFLOW_CLI") {
        return PathBuf::from(path);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("debug/orderflow")
}

/// Runs `orderflow <args>` for this stage; returns (succeeded, stdout, stderr).
fn orderflow(stack: &Stack, args: &[&str]) -> (bool, String, String) {
    let bin = binary();
    assert!(
        bin.exists(),
        "{} is missing: cargo build -p orderflow-cli",
        bin.display()
    );
    let out = Command::new(&bin)
        .args(["--stage", &stack.stage])
        .args(args)
        .output()
        .expect("the CLI runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Like [`orderflow`], failing the test when the command fails.
fn ok(stack: &Stack, args: &[&str]) -> String {
    let (success, stdout, stderr) = orderflow(stack, args);
    assert!(success, "orderflow {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Repeats `orderflow <args>` until its output satisfies `check`.
async fn until_output(
    stack: &Stack,
    args: &[&str],
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    eventually(what, Duration::from_secs(120), || async {
        let (success, stdout, _) = orderflow(stack, args);
        (success && check(&stdout)).then_some(stdout)
    })
    .await
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment (make test)"]
async fn send_order_and_stats_show_what_was_sent_and_what_became_of_it() {
    let stack = Stack::connect().await;
    let sent = json_of(&ok(
        &stack,
        &[
            "send",
            "--count",
            "2",
            "--duplicates",
            "1",
            "--decline-share",
            "0.5",
            "--json",
        ],
    ));
    let sent = sent.as_array().expect("a list").clone();
    assert_eq!(sent.len(), 3, "two orders and one duplicate: {sent:?}");
    assert_eq!(sent[2]["duplicate"], true);
    assert_eq!(
        sent[2]["eventId"], sent[0]["eventId"],
        "a duplicate has the same event id"
    );
    let declined: Vec<&Value> = sent.iter().filter(|s| s["declined"] == true).collect();
    assert_eq!(declined.len(), 1);

    for s in &sent[..2] {
        let id = s["orderId"].as_str().unwrap();
        let expected = if s["declined"] == true {
            "CANCELLED"
        } else {
            "SHIPPED"
        };
        let text = ok(&stack, &["order", id, "--wait", "120"]);
        assert!(text.contains(&format!("status     {expected}")), "{text}");
        assert!(text.contains("OrderPlaced"), "timeline: {text}");
        // The duplicate changed nothing: one OrderPlaced in the stream.
        let stream = stack.order_stream(id).await;
        assert_eq!(
            stream
                .iter()
                .filter(|e| e["eventType"] == "OrderPlaced")
                .count(),
            1
        );
    }

    // Time travel: as of before the order, the rebuilt view is empty.
    let first = sent[0]["orderId"].as_str().unwrap();
    let text = ok(&stack, &["order", first, "--as-of", "2020-01-01T00:00:00Z"]);
    assert!(
        text.contains("rebuilt from its event stream)\n  (no such order)"),
        "{text}"
    );

    let stats = json_of(&ok(&stack, &["stats", "--json"]));
    let placed: u64 = stats["counts"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|types| types["OrderPlaced"].as_u64())
        .sum();
    assert!(placed >= 2, "{stats}");
    assert!(ok(&stack, &["stats"]).contains("Revenue per day"));

    // A v1 order (no address) is still taken in.
    let v1 = json_of(&ok(
        &stack,
        &["send", "--count", "1", "--schema-version", "1", "--json"],
    ));
    let id = v1[0]["orderId"].as_str().unwrap();
    assert!(ok(&stack, &["order", id, "--wait", "120"]).contains("SHIPPED"));
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment (make test)"]
async fn a_trace_of_cancelled_orders_shows_the_compensations_and_their_results() {
    let stack = Stack::connect().await;
    // Paid, then out of stock: the saga asks for a refund.
    let sku = order_id("SKU-NONE");
    stack.set_stock(&sku, 0, 500).await;
    let refunded = order_id("cli-refund");
    // Declined, but reserved: the saga asks for the stock back.
    let released = order_id("cli-release");
    let refund_order = order_of(&refunded, &sku, 1, 500, "tok_visa");
    stack
        .put_events(&[
            ("orderflow.orders", "OrderPlaced", refund_order),
            (
                "orderflow.orders",
                "OrderPlaced",
                order_of(&released, "TEA-GREEN", 1, 800, "tok_decline"),
            ),
        ])
        .await;

    let tree = until_output(&stack, &["trace", &refunded], "refund in the trace", |t| {
        t.contains("PaymentRefunded")
    })
    .await;
    for kind in [
        "OrderPlaced",
        "PaymentProcessed",
        "InventoryOutOfStock",
        "OrderCancelled",
        "RefundPaymentRequested",
        "PaymentRefunded",
    ] {
        assert!(tree.contains(kind), "{kind} missing:\n{tree}");
    }
    // The refund is a child of its request, with the hop time.
    let request = tree.find("RefundPaymentRequested").unwrap();
    let result = tree.find("PaymentRefunded").unwrap();
    assert!(request < result, "{tree}");
    assert!(
        tree.contains("└─ PaymentRefunded  [orderflow.payment]"),
        "{tree}"
    );
    assert!(
        tree.contains("audit+store"),
        "merged from both places:\n{tree}"
    );

    let tree = until_output(&stack, &["trace", &released], "release in the trace", |t| {
        t.contains("InventoryReleased")
    })
    .await;
    for kind in [
        "PaymentFailed",
        "ReleaseInventoryRequested",
        "InventoryReleased",
        "OrderCancelled",
    ] {
        assert!(tree.contains(kind), "{kind} missing:\n{tree}");
    }
    // Bus-only events are there too, from the audit trail (the cancellation email).
    let tree = until_output(&stack, &["trace", &released], "email in the trace", |t| {
        t.contains("EmailSent")
    })
    .await;
    assert!(
        tree.contains("EmailSent  [orderflow.notification]"),
        "{tree}"
    );

    let mermaid = ok(&stack, &["trace", &refunded, "--mermaid"]);
    assert!(mermaid.starts_with("sequenceDiagram\n"), "{mermaid}");
    assert!(
        mermaid.contains("participant payment as orderflow.payment"),
        "{mermaid}"
    );
    assert!(
        mermaid.contains("saga->>payment: PaymentRefunded"),
        "{mermaid}"
    );

    // By correlation id: the same events.
    let roots = json_of(&ok(&stack, &["trace", &released, "--json"]));
    let correlation = roots[0]["event"]["correlationId"]
        .as_str()
        .unwrap()
        .to_string();
    let by_correlation = ok(&stack, &["trace", &correlation]);
    assert!(
        by_correlation.contains("InventoryReleased"),
        "{by_correlation}"
    );
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment (make test)"]
async fn dlq_list_show_and_a_redrive_that_moves_transient_failures_and_keeps_permanent_ones() {
    let stack = Stack::connect().await;
    // Permanent: a malformed order, dead-lettered at once by payment (and the others).
    let poison = order_id("cli-poison");
    stack
        .put_events(&[(
            "orderflow.orders",
            "OrderPlaced",
            json!({"data": {"orderId": poison, "lines": "two mugs please"}}),
        )])
        .await;
    let shown = until_output(
        &stack,
        &["dlq", "show", "payment", "--json"],
        "the poison on the payment DLQ",
        |t| t.contains(&poison),
    )
    .await;
    let letters = json_of(&shown);
    let letter = letters
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["body"].as_str().unwrap_or_default().contains(&poison))
        .unwrap()
        .clone();
    assert_eq!(letter["reason"], "invalid-data");
    assert_eq!(letter["kind"], "permanent");
    let text = ok(&stack, &["dlq", "show", "payment"]);
    assert!(text.contains(&format!("order {poison}")), "{text}");
    let list = ok(&stack, &["dlq", "list"]);
    assert!(
        list.contains(&format!("orderflow-{}-payment-dlq", stack.stage))
            && list.contains("invalid-data (permanent)"),
        "{list}"
    );

    // Transient: a good order that SQS moved after maxReceiveCount (no attributes), e.g.
    // while DynamoDB was throttling. Once the cause is gone, a redrive lets it through.
    let stranded = order_id("cli-stranded");
    let detail = order_of(&stranded, "TEA-GREEN", 1, 800, "tok_visa");
    let body = bus_event(
        &uuid::Uuid::new_v4().to_string(),
        "orderflow.orders",
        "OrderPlaced",
        detail,
    );
    stack.deliver_to_queue("payment-dlq", &body).await;

    let dry = ok(&stack, &["dlq", "redrive", "payment", "--dry-run"]);
    assert!(dry.contains("would move"), "{dry}");
    assert!(
        stack
            .get_item("payments", "orderId", &stranded)
            .await
            .is_none(),
        "a dry run moves nothing"
    );

    let moved = until_output(
        &stack,
        &["dlq", "redrive", "payment"],
        "the stranded order redriven",
        |t| t.contains("moved ") && t.contains("max-receive-count"),
    )
    .await;
    assert!(moved.contains("kept"), "the permanent one stays: {moved}");
    assert!(
        moved.contains("permanent failure (invalid-data)"),
        "{moved}"
    );
    let payment = eventually(
        "the redriven order charged",
        Duration::from_secs(90),
        || async { stack.get_item("payments", "orderId", &stranded).await },
    )
    .await;
    assert_eq!(payment["status"], "CHARGED", "{payment}");
    let still = ok(&stack, &["dlq", "show", "payment", "--json"]);
    assert!(still.contains(&poison), "the poison is still on the DLQ");
    assert!(
        !still.contains(&stranded),
        "the moved one is gone from the DLQ"
    );

    // Moved back as is: to the queue it came from, where the function takes it as usual.
    let view = stack
        .wait_for_order(&stranded, "paid", |v| v["payment"]["status"] == "PAID")
        .await;
    assert_eq!(view["orderId"], stranded.as_str());
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment (make test)"]
async fn a_replay_to_the_bus_is_absorbed_and_a_rebuild_keeps_the_read_model() {
    let stack = Stack::connect().await;
    let from = chrono::Utc::now() - chrono::Duration::seconds(1);
    let sent = json_of(&ok(&stack, &["send", "--count", "1", "--json"]));
    let id = sent[0]["orderId"].as_str().unwrap().to_string();
    // A version 1 order: the store keeps it upcast; the replay must send it as it was sent.
    let v1 = json_of(&ok(
        &stack,
        &["send", "--count", "1", "--schema-version", "1", "--json"],
    ));
    let v1 = v1[0]["orderId"].as_str().unwrap().to_string();
    ok(&stack, &["order", &id, "--wait", "120"]);
    ok(&stack, &["order", &v1, "--wait", "120"]);
    // The shipping email trails the shipment: wait until both emails (confirmed, shipped)
    // are in the audit trail, so the "before" snapshot is the whole story.
    until_output(
        &stack,
        &["trace", &id, "--json"],
        "both emails audited",
        |out| out.matches("\"EmailSent\"").count() >= 2,
    )
    .await;
    // And until each order's deadline fact (OrderDeadlineSeconds after it was sent) is
    // audited: the saga does not record it for an ended order, but the audit trail keeps
    // every event. The replay's copies of OrderPlaced start timers that change nothing.
    for order in [&id, &v1] {
        until_output(
            &stack,
            &["trace", order, "--json"],
            "the deadline audited",
            |out| out.contains("\"OrderDeadlineReached\""),
        )
        .await;
    }
    let to = chrono::Utc::now();
    let stream_before = stack.order_stream(&id).await;
    let payment_before = stack.get_item("payments", "orderId", &id).await.unwrap();
    let view_before = stack.get_item("orders", "orderId", &id).await.unwrap();
    let audit_before = ok(&stack, &["trace", &id, "--json"]);

    let (from, to) = (from.to_rfc3339(), to.to_rfc3339());
    let replayed = ok(
        &stack,
        &["replay", "--from", &from, "--to", &to, "--to-bus"],
    );
    assert!(replayed.contains("with their original ids"), "{replayed}");
    assert!(replayed.contains("OrderPlaced"), "{replayed}");
    let placed_only = ok(
        &stack,
        &[
            "replay",
            "--from",
            &from,
            "--to",
            &to,
            "--type",
            "OrderPlaced",
            "--to-bus",
        ],
    );
    assert!(!placed_only.contains("PaymentProcessed"), "{placed_only}");

    // Give every consumer time to take the copies in.
    for queue in [
        "payment",
        "inventory",
        "orders",
        "shipping",
        "notification",
        "audit",
    ] {
        stack.wait_until_drained(queue).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stack.order_stream(&id).await,
        stream_before,
        "no event stored twice"
    );
    assert_eq!(
        stack.get_item("payments", "orderId", &id).await.unwrap(),
        payment_before
    );
    assert_eq!(
        stack.get_item("orders", "orderId", &id).await.unwrap(),
        view_before
    );
    let letters = ok(&stack, &["dlq", "show", "payment", "--json"]);
    assert!(
        !letters.contains(&v1),
        "the replayed v1 order was refused: {letters}"
    );
    let audit_after = ok(&stack, &["trace", &id, "--json"]);
    let count = |t: &str| t.matches("\"eventId\"").count();
    assert_eq!(
        count(&audit_after),
        count(&audit_before),
        "the same events, once each"
    );

    let rebuilt = ok(
        &stack,
        &[
            "replay",
            "--from",
            &from,
            "--to",
            &to,
            "--rebuild-read-model",
        ],
    );
    assert!(rebuilt.contains("replayedEvents"), "{rebuilt}");
    let view = stack.get_item("orders", "orderId", &id).await.unwrap();
    assert_eq!(view["status"], "SHIPPED");
    assert_eq!(view["lastVersion"], view_before["lastVersion"]);
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment (make test)"]
async fn load_reports_throughput_and_latency_percentiles_per_hop() {
    let stack = Stack::connect().await;
    let report = json_of(&ok(
        &stack,
        &[
            "load",
            "--orders",
            "3",
            "--rate",
            "3",
            "--duplicates",
            "1",
            "--timeout",
            "180",
            "--json",
        ],
    ));
    assert_eq!(report["orders"], 3, "{report}");
    assert_eq!(report["eventsSent"], 4, "{report}");
    assert_eq!(report["unfinished"], json!([]), "{report}");
    assert_eq!(report["orderToTerminalMs"]["count"], 3, "{report}");
    assert!(
        report["orderToTerminalMs"]["p50"].as_i64().unwrap() > 0,
        "{report}"
    );
    for since in [
        "PaymentProcessed",
        "InventoryReserved",
        "OrderConfirmed",
        "OrderShipped",
    ] {
        assert_eq!(
            report["sinceOrderPlacedMs"][since]["count"], 3,
            "{since}: {report}"
        );
    }
    assert!(
        report["hopsMs"]["OrderConfirmed→OrderShipped"]["count"]
            .as_u64()
            .unwrap()
            >= 3,
        "{report}"
    );
    let text = ok(&stack, &["load", "--orders", "1"]);
    assert!(text.contains("OrderPlaced → SHIPPED/CANCELLED"), "{text}");
}

/// `--cost` counts requests from LocalStack's usage recorder (`GET /_orderflow/usage`), which
/// AWS does not have (`make test-aws` skips this module).
mod localstack_only {
    use super::*;

    #[tokio::test]
    #[ignore = "needs the LocalStack deployment (make test)"]
    async fn load_with_cost_prices_the_requests_and_invocations_per_order() {
        let stack = Stack::connect().await;
        // Other tests share the stack, so their requests can fall in this run's window: check the
        // report's shape and that this run's own work is in it, not exact counts.
        let out = json_of(&ok(
            &stack,
            &[
                "load",
                "--orders",
                "2",
                "--timeout",
                "180",
                "--cost",
                "--quiet-timeout",
                "30",
                "--json",
            ],
        ));
        assert_eq!(out["load"]["unfinished"], json!([]), "{out}");
        let cost = &out["cost"];
        assert_eq!(cost["orders"], 2, "{cost}");
        let per_order = |service: &str, operation: &str, field: &str| {
            cost["lines"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["service"] == service && l["operation"] == operation)
                .and_then(|l| l[field].as_f64())
                .unwrap_or_else(|| panic!("no {service} {operation} {field}: {cost}"))
        };
        assert!(per_order("events", "PutEvents", "requestsPerOrder") >= 1.0);
        assert!(per_order("dynamodb", "TransactWriteItems", "unitsPerOrder") >= 2.0);
        assert!(per_order("lambda", "payment", "requestsPerOrder") > 0.0);
        assert!(
            cost["dollarsPerMillionOrders"].as_f64().unwrap() > 0.0,
            "{cost}"
        );
        assert!(
            cost["excludedClientRequests"].as_u64().unwrap() > 0,
            "{cost}"
        );
    }
}
