//! The analytics slice end to end: events put on the bus are counted per type per hour and
//! payments summed per currency per day in the analytics table, each event once.
//!
//! Counters are shared by every test of a stage and never expire, so each test puts its
//! events in an hour of the past picked at random (buckets follow `occurredAt`), in the
//! test currency XTS, and compares against what was there before it started: other tests,
//! concurrent or earlier, do not land in the same buckets.

use std::time::Duration;

use chrono::{DateTime, Duration as Hours, SecondsFormat, Utc};
use e2e::{eventually, Stack};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
const TABLE: &str = "analytics";

/// A random whole hour between 2001 and late 2023.
fn random_hour() -> DateTime<Utc> {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    // Hours from 2001 to late 2023: in the past, as intake requires of `occurredAt` (no more
    // than 5 minutes ahead), and spread wide enough that runs never share an hour.
    let offset = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) % 200_000;
    "2001-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + Hours::hours(offset as i64)
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// A detail with the metadata analytics buckets by.
fn detail(event_id: &str, occurred_at: DateTime<Utc>, data: Value) -> Value {
    json!({
        "metadata": {
            "eventId": event_id, "schemaVersion": 1,
            "occurredAt": occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true)
        },
        "data": data
    })
}

fn payment(order: &str, amount: Value) -> Value {
    json!({"orderId": order, "paymentId": format!("pay-{order}"), "amount": amount, "currency": "XTS"})
}

/// The probe type: `EmailSent` is routed to analytics alone, so probes in a random hour
/// touch nothing else and nobody else counts in that hour.
const PROBE: &str = "EmailSent";
const PROBE_SOURCE: &str = "orderflow.notification";

fn email_sent() -> Value {
    json!({
        "causeEventId": new_id(), "template": "welcome", "to": "e2e@example.com",
        "subject": "probe", "messageId": new_id()
    })
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A numeric attribute of an analytics item (0 when the item or attribute is missing).
async fn counter(stack: &Stack, pk: &str, sk: &str, attribute: &str) -> u64 {
    stack
        .get_item_by_key(TABLE, &[("pk", pk), ("sk", sk)])
        .await
        .and_then(|item| item[attribute].as_u64())
        .unwrap_or(0)
}

/// The marker of `event_id` (a PaymentProcessed from payment) once it notes at least `duplicates` duplicates: the signal that
/// that many redeliveries were handled after the first.
async fn marker_with(stack: &Stack, event_id: &str, duplicates: u64) -> Value {
    let pk = format!("seen#orderflow.payment#{event_id}");
    eventually(
        &format!("delivery {} handled", duplicates + 1),
        WAIT,
        || async {
            stack
                .get_item_by_key(TABLE, &[("pk", &pk), ("sk", "-")])
                .await
                .filter(|m| m["duplicates"].as_u64().unwrap_or(0) >= duplicates)
        },
    )
    .await
}

fn hour_pk(t: DateTime<Utc>) -> String {
    format!("counts#{}", t.format("%Y-%m-%dT%H"))
}

fn day_pk(t: DateTime<Utc>) -> String {
    format!("revenue#{}", t.format("%Y-%m-%d"))
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn events_are_counted_per_type_and_hour_and_payments_summed_per_currency_and_day() {
    let stack = Stack::connect().await;
    let hour = random_hour();
    let next_hour = hour + Hours::hours(1);
    let probe = PROBE;
    let (hour_pk, next_pk, day) = (hour_pk(hour), hour_pk(next_hour), day_pk(hour));
    let before = (
        counter(&stack, &day, "XTS", "amount").await,
        counter(&stack, &day, "XTS", "orders").await,
        counter(&stack, &day, "XTS", "refunded").await,
        counter(&stack, &day, "XTS", "refunds").await,
        counter(&stack, &hour_pk, "PaymentProcessed", "count").await,
    );
    // Amounts unique to this run, so a stray event from elsewhere could not make it pass.
    let salt = (uuid::Uuid::new_v4().as_u128() % 1000) as u64;
    let (a, b, refund) = (10_000 + salt, 20_000 + salt, 3_000 + salt);
    let order = unique("e2e-ana-");

    stack
        .put_events(&[
            (
                "orderflow.payment",
                "PaymentProcessed",
                detail(&new_id(), hour, payment(&order, json!(a))),
            ),
            (
                "orderflow.payment",
                "PaymentProcessed",
                detail(&new_id(), hour, payment(&order, json!(b))),
            ),
            (
                "orderflow.payment",
                "PaymentRefunded",
                detail(&new_id(), hour, payment(&order, json!(refund))),
            ),
            (PROBE_SOURCE, probe, detail(&new_id(), hour, email_sent())),
            (
                PROBE_SOURCE,
                probe,
                detail(&new_id(), hour + Hours::minutes(59), email_sent()),
            ),
            (
                PROBE_SOURCE,
                probe,
                detail(&new_id(), next_hour, email_sent()),
            ),
        ])
        .await;

    let expected = (
        before.0 + a + b,
        before.1 + 2,
        before.2 + refund,
        before.3 + 1,
        before.4 + 2,
    );
    eventually("revenue and counts to add up", WAIT, || async {
        let now = (
            counter(&stack, &day, "XTS", "amount").await,
            counter(&stack, &day, "XTS", "orders").await,
            counter(&stack, &day, "XTS", "refunded").await,
            counter(&stack, &day, "XTS", "refunds").await,
            counter(&stack, &hour_pk, "PaymentProcessed", "count").await,
        );
        (now == expected).then_some(())
    })
    .await;
    eventually("the probe type counted per hour", WAIT, || async {
        let counts = (
            counter(&stack, &hour_pk, probe, "count").await,
            counter(&stack, &next_pk, probe, "count").await,
        );
        (counts == (2, 1)).then_some(())
    })
    .await;
    let refunded_count = counter(&stack, &hour_pk, "PaymentRefunded", "count").await;
    assert!(refunded_count >= 1);
    // Gross is kept whole; net is gross minus refunded.
    let gross = counter(&stack, &day, "XTS", "amount").await;
    let refunded = counter(&stack, &day, "XTS", "refunded").await;
    assert_eq!(gross - before.0, a + b);
    assert_eq!((gross - refunded) - (before.0 - before.2), a + b - refund);
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn the_same_event_delivered_twice_is_counted_once() {
    let stack = Stack::connect().await;
    let hour = random_hour();
    let (hour_pk, day) = (hour_pk(hour), day_pk(hour));
    let before = (
        counter(&stack, &day, "XTS", "amount").await,
        counter(&stack, &day, "XTS", "orders").await,
        counter(&stack, &hour_pk, "PaymentProcessed", "count").await,
    );
    let event_id = new_id();
    let amount = 40_000 + (uuid::Uuid::new_v4().as_u128() % 1000) as u64;
    let detail = detail(
        &event_id,
        hour,
        payment(&unique("e2e-ana-dup-"), json!(amount)),
    );

    // The function notes each duplicate on the event's marker: the signal that a delivery was
    // handled. Each delivery waits for the one before it, so that each comes in a batch of its
    // own, as a redelivery does: copies within one batch are handed to the batch handler once
    // (eventkit::serve_event_batches) and so never reach the marker.

    // Twice through the bus (a producer retry: two EventBridge ids, one event id) ...
    for duplicates in 0..2 {
        stack
            .put_events(&[("orderflow.payment", "PaymentProcessed", detail.clone())])
            .await;
        marker_with(&stack, &event_id, duplicates).await;
    }
    // ... and once straight into the queue, as an SQS redelivery would.
    let body = json!({
        "version": "0", "id": new_id(), "detail-type": "PaymentProcessed",
        "source": "orderflow.payment", "account": "000000000000",
        "time": "2026-11-21T10:00:00Z", "region": "us-east-1", "resources": [], "detail": detail
    });
    stack
        .sqs
        .send_message()
        .queue_url(stack.queue_url("analytics").await)
        .message_body(body.to_string())
        .send()
        .await
        .unwrap();
    let marker = marker_with(&stack, &event_id, 2).await;
    assert_eq!(marker["detailType"], "PaymentProcessed");
    let ttl = marker["expiresAt"].as_i64().expect("expiresAt");
    // analytics::repository::MARKER_TTL: 35 days, past the DLQ retention and a late redrive
    let expiry = Utc::now().timestamp() + 35 * 24 * 3600;
    assert!(
        (expiry - 120..=expiry + 5).contains(&ttl),
        "expires after the marker retention, counted from now: {ttl}"
    );

    assert_eq!(
        counter(&stack, &day, "XTS", "amount").await - before.0,
        amount,
        "revenue added once"
    );
    assert_eq!(counter(&stack, &day, "XTS", "orders").await - before.1, 1);
    assert_eq!(
        counter(&stack, &hour_pk, "PaymentProcessed", "count").await - before.2,
        1,
        "counted once"
    );
}

#[tokio::test]
#[ignore = "needs the LocalStack deployment: make test"]
async fn a_payment_with_a_string_amount_goes_to_the_dlq_and_is_not_counted() {
    let stack = Stack::connect().await;
    let hour = random_hour();
    let hour_pk = hour_pk(hour);
    let (poison_id, good_id) = (new_id(), new_id());
    let order = unique("e2e-ana-poison-");
    let probe = PROBE;
    let payments_before = counter(&stack, &hour_pk, "PaymentProcessed", "count").await;
    // One PutEvents call, so both usually arrive in one batch.
    stack
        .put_events(&[
            (
                "orderflow.payment",
                "PaymentProcessed",
                detail(&poison_id, hour, payment(&order, json!("1234"))),
            ),
            (PROBE_SOURCE, probe, detail(&good_id, hour, email_sent())),
        ])
        .await;

    let letter = stack.dead_letter("analytics-dlq", &order, WAIT).await;
    assert_eq!(letter.reason, "invalid-data");
    assert!(
        letter.message.contains("data.amount"),
        "the error names the field: {}",
        letter.message
    );
    assert!(letter.source_queue_arn.ends_with(&stack.name("analytics")));
    // Dead-lettered at once, not after maxReceiveCount attempts.
    assert_eq!(letter.receive_count, "1");

    // The rest of the batch went through; the poison left no trace.
    eventually("the good event counted", WAIT, || async {
        (counter(&stack, &hour_pk, probe, "count").await == 1).then_some(())
    })
    .await;
    let poison_marker = format!("seen#orderflow.payment#{poison_id}");
    assert!(stack
        .get_item_by_key(TABLE, &[("pk", &poison_marker), ("sk", "-")])
        .await
        .is_none());
    assert_eq!(
        counter(&stack, &hour_pk, "PaymentProcessed", "count").await,
        payments_before
    );
}
