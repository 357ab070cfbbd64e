//! The notification slice end to end: each event type sends exactly one email, read back
//! from LocalStack's SES store (`GET /_aws/ses`), and `EmailSent` is published; duplicates
//! send nothing more; a claim left by an attempt that died is never sent again. LocalStack
//! only: on AWS no API reads a sent mail back.

use std::io::{Read, Write};
use std::time::Duration;

use e2e::{order_id, Stack};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// The From address of the deployed stack (the template's default).
fn sender() -> String {
    std::env::var("ORDERFLOW_EMAIL_SENDER").unwrap_or_else(|_| "orders@orderflow.example".into())
}

/// LocalStack's record of sent mail from our sender, via a plain HTTP/1.0 GET (no HTTP
/// client crate for one local request).
async fn sent_mail() -> Vec<Value> {
    let endpoint = e2e::require_localstack("LocalStack's SES store (GET /_aws/ses)");
    let host = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let path = format!("/_aws/ses?email={}", sender().replace('@', "%40"));
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&host).expect("connect to LocalStack");
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response");
        response
    })
    .await
    .expect("reader task");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.contains(" 200 "), "GET /_aws/ses: {head}");
    let store: Value = serde_json::from_str(body).expect("SES store as JSON");
    store["messages"].as_array().cloned().unwrap_or_default()
}

/// The mails to `to` whose subject or text mentions `needle`.
async fn mails(to: &str, needle: &str) -> Vec<Value> {
    sent_mail()
        .await
        .into_iter()
        .filter(|m| {
            m["Destination"]["ToAddresses"]
                .as_array()
                .is_some_and(|a| a.iter().any(|r| r == to))
                && (m["Subject"].as_str().is_some_and(|s| s.contains(needle))
                    || m["Body"]["text_part"]
                        .as_str()
                        .is_some_and(|s| s.contains(needle)))
        })
        .collect()
}

/// Every `EmailSent` for `to` with `template`.
fn email_sent(to: &str, template: &str) -> Value {
    json!({
        "source": ["orderflow.notification"], "detail-type": ["EmailSent"],
        "detail": {"data": {"to": [to], "template": [template]}}
    })
}

fn with_id(mut detail: Value, event_id: &str) -> Value {
    detail["metadata"] = json!({"eventId": event_id, "schemaVersion": 1});
    detail
}

/// Sends one event, waits for its `EmailSent`, and returns (the event id, the one mail,
/// the `EmailSent` detail), after checking nothing more was mailed or announced.
async fn one_email_for(
    stack: &Stack,
    (source, detail_type, detail): (&str, &str, Value),
    to: &str,
    template: &str,
    needle: &str,
) -> (String, Value, Value) {
    let mut bus = stack.observe(email_sent(to, template)).await;
    let ids = stack.put_events(&[(source, detail_type, detail)]).await;
    let sent = bus.wait_for("EmailSent", 1, WAIT).await;
    bus.settle(Duration::from_secs(2)).await;
    assert_eq!(bus.of_type("EmailSent").len(), 1, "one EmailSent");
    bus.close().await;
    let found = mails(to, needle).await;
    assert_eq!(found.len(), 1, "exactly one mail: {found:#?}");
    let detail = sent[0]["detail"].clone();
    assert_eq!(detail["data"]["causeEventId"], ids[0].as_str());
    assert_eq!(detail["data"]["messageId"], found[0]["Id"]);
    assert_eq!(detail["data"]["subject"], found[0]["Subject"]);
    assert_eq!(found[0]["Source"], sender());
    let record = stack
        .get_item("emails", "id", &format!("{source}#{}", ids[0]))
        .await
        .expect("emails record");
    assert_eq!(record["status"], "SENT");
    assert_eq!(record["messageId"], found[0]["Id"]);
    (ids[0].clone(), found[0].clone(), detail)
}

fn text(mail: &Value) -> &str {
    mail["Body"]["text_part"].as_str().unwrap_or_default()
}

/// Every test here reads the mail back from LocalStack's SES store, which AWS does not have
/// (`make test-aws` skips this module).
mod localstack_only {
    use super::*;

    /// A second OrderPlaced for a placed order, other content and another address to mail:
    /// the saga refuses it, so the customer of the first gets one confirmation and the
    /// second address gets nothing, ever (nothing is decided on the refused order).
    #[tokio::test]
    #[ignore = "needs the LocalStack deployment: make test"]
    async fn a_conflicting_second_order_placed_mails_nobody() {
        let stack = Stack::connect().await;
        let order = order_id("e2e-mailsecond");
        let sku = format!("SKU-{order}");
        stack.set_stock(&sku, 10, 400).await;
        let (first_to, second_to) = (
            format!("{order}-first@example.com"),
            format!("{order}-second@example.com"),
        );
        let mut first = e2e::order_of(&order, &sku, 1, 400, "tok_visa");
        first["data"]["customerEmail"] = first_to.clone().into();
        let mut bus = stack
            .observe(email_sent(&first_to, "order-confirmed"))
            .await;
        stack
            .put_events(&[("orderflow.orders", "OrderPlaced", first)])
            .await;
        bus.wait_for("EmailSent", 1, WAIT).await;
        bus.close().await;

        let mut second = e2e::order_of(&order, &sku, 3, 400, "tok_visa");
        second["data"]["customerEmail"] = second_to.clone().into();
        let second_id = stack
            .put_events(&[("orderflow.orders", "OrderPlaced", second)])
            .await
            .remove(0);
        for dlq in ["payment-dlq", "inventory-dlq", "orders-dlq"] {
            let letter = stack.dead_letter(dlq, &second_id, WAIT).await;
            assert_eq!(letter.reason, "conflicting-duplicate", "{dlq}");
        }
        let confirmed = format!("{order} is confirmed");
        assert_eq!(
            mails(&first_to, &confirmed).await.len(),
            1,
            "one confirmation"
        );
        assert_eq!(
            mails(&second_to, "").await,
            Vec::<Value>::new(),
            "no mail at all"
        );
    }

    #[tokio::test]
    #[ignore = "needs the LocalStack deployment: make test"]
    async fn order_confirmed_sends_one_confirmation_with_the_total() {
        let stack = Stack::connect().await;
        let order = order_id("e2e-mailconf");
        let to = format!("{order}@example.com");
        let detail = json!({"data": {
            "orderId": order, "customerId": "cus-e2e", "customerEmail": to, "total": 3300,
            "currency": "EUR", "paymentId": "pay_e2e", "reservationId": "res_e2e",
            "lines": [{"sku": "MUG-RED", "quantity": 2}]
        }});
        let (_, mail, sent) = one_email_for(
            &stack,
            ("orderflow.saga", "OrderConfirmed", detail),
            &to,
            "order-confirmed",
            &format!("{order} is confirmed"),
        )
        .await;
        assert!(text(&mail).contains("33.00 EUR"), "{}", text(&mail));
        assert!(text(&mail).contains("2 x MUG-RED"), "{}", text(&mail));
        assert_eq!(sent["data"]["orderId"], order.as_str());
    }

    #[tokio::test]
    #[ignore = "needs the LocalStack deployment: make test"]
    async fn order_cancelled_sends_one_email_with_the_reason_in_words() {
        let stack = Stack::connect().await;
        let order = order_id("e2e-mailcanc");
        let to = format!("{order}@example.com");
        let detail = json!({"data": {
            "orderId": order, "customerId": "cus-e2e", "customerEmail": to, "reason": "out-of-stock"
        }});
        let (_, mail, _) = one_email_for(
            &stack,
            ("orderflow.saga", "OrderCancelled", detail),
            &to,
            "order-cancelled",
            &order,
        )
        .await;
        assert_eq!(mail["Subject"], format!("Your order {order} was cancelled"));
        assert!(
            text(&mail).contains("some of the items are out of stock"),
            "{}",
            text(&mail)
        );
    }

    #[tokio::test]
    #[ignore = "needs the LocalStack deployment: make test"]
    async fn order_shipped_sends_one_email_with_carrier_and_tracking_number() {
        let stack = Stack::connect().await;
        let order = order_id("e2e-mailship");
        let to = format!("{order}@example.com");
        let detail = json!({"data": {
            "orderId": order, "shipmentId": "shp_e2e", "carrier": "PostNL",
            "trackingNumber": "3S000012345678", "customerEmail": to
        }});
        let (_, mail, _) = one_email_for(
            &stack,
            ("orderflow.shipping", "OrderShipped", detail),
            &to,
            "order-shipped",
            &order,
        )
        .await;
        assert!(text(&mail).contains("with PostNL"), "{}", text(&mail));
        assert!(
            text(&mail).contains("Tracking number: 3S000012345678"),
            "{}",
            text(&mail)
        );
    }

    #[tokio::test]
    #[ignore = "needs the LocalStack deployment: make test"]
    async fn customer_registered_sends_one_welcome_email() {
        let stack = Stack::connect().await;
        let customer = order_id("e2e-welcome");
        let to = format!("{customer}@example.com");
        let detail = json!({"data": {"customerId": customer, "email": to, "name": "Ada Lovelace"}});
        let (_, mail, sent) = one_email_for(
            &stack,
            ("orderflow.customers", "CustomerRegistered", detail),
            &to,
            "welcome",
            "Ada Lovelace",
        )
        .await;
        assert_eq!(mail["Subject"], "Welcome to Orderflow, Ada Lovelace");
        assert!(sent["data"].get("orderId").is_none());
    }

    #[tokio::test]
    #[ignore = "needs the LocalStack deployment: make test"]
    async fn the_same_event_delivered_twice_sends_one_email() {
        let stack = Stack::connect().await;
        let customer = order_id("e2e-maildup");
        let to = format!("{customer}@example.com");
        let event_id = uuid::Uuid::new_v4().to_string();
        let detail = with_id(
            json!({"data": {"customerId": customer, "email": to, "name": "Dup"}}),
            &event_id,
        );
        let mut bus = stack.observe(email_sent(&to, "welcome")).await;
        // Twice through the bus (a producer retry) ...
        for _ in 0..2 {
            stack
                .put_events(&[("orderflow.customers", "CustomerRegistered", detail.clone())])
                .await;
        }
        bus.wait_for("EmailSent", 1, WAIT).await;
        // ... and once more straight into the queue, as an SQS redelivery would.
        let body = json!({
            "version": "0", "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "CustomerRegistered", "source": "orderflow.customers",
            "account": "000000000000", "time": "2026-11-21T10:00:00Z", "region": "us-east-1",
            "resources": [], "detail": detail
        });
        stack
            .sqs
            .send_message()
            .queue_url(stack.queue_url("notification").await)
            .message_body(body.to_string())
            .send()
            .await
            .unwrap();
        stack.wait_until_drained("notification").await;
        bus.settle(Duration::from_secs(3)).await;

        assert_eq!(mails(&to, "Dup").await.len(), 1, "one email");
        assert_eq!(bus.of_type("EmailSent").len(), 1, "one EmailSent");
        let record = stack
            .get_item("emails", "id", &format!("orderflow.customers#{event_id}"))
            .await
            .expect("emails record");
        assert_eq!(record["status"], "SENT");
        bus.close().await;
    }

    /// Puts an emails record as an earlier attempt would have left it.
    async fn earlier_attempt(stack: &Stack, event_id: &str, to: &str, status: &str) {
        let mut record = json!({
            "id": format!("orderflow.customers#{event_id}"), "status": status, "template": "welcome", "to": to,
            "subject": "Welcome to Orderflow, Earlier", "correlationId": event_id,
            "createdAt": "2026-11-21T10:00:00.000Z"
        });
        if status == "SENT" {
            record["messageId"] = "ses-from-the-earlier-attempt".into();
        }
        stack
            .dynamo
            .put_item()
            .table_name(stack.name("emails"))
            .set_item(Some(serde_dynamo::to_item(record).unwrap()))
            .send()
            .await
            .unwrap();
    }

    #[tokio::test]
    #[ignore = "needs the LocalStack deployment: make test"]
    async fn an_email_claimed_by_an_attempt_that_died_is_not_sent_again() {
        let stack = Stack::connect().await;
        let customer = order_id("e2e-mailsending");
        let to = format!("{customer}@example.com");
        let event_id = uuid::Uuid::new_v4().to_string();
        earlier_attempt(&stack, &event_id, &to, "SENDING").await;
        let mut bus = stack.observe(email_sent(&to, "welcome")).await;
        stack
            .put_events(&[(
                "orderflow.customers",
                "CustomerRegistered",
                with_id(
                    json!({"data": {"customerId": customer, "email": to, "name": "Later"}}),
                    &event_id,
                ),
            )])
            .await;
        let handled = stack.wait_until_handled("notification", &event_id).await;
        assert_eq!(handled, "Duplicate", "reported as a duplicate");
        bus.settle(Duration::from_secs(2)).await;
        assert!(bus.of_type("EmailSent").is_empty());
        assert!(mails(&to, "Later").await.is_empty(), "nothing sent");
        let record = stack
            .get_item("emails", "id", &format!("orderflow.customers#{event_id}"))
            .await
            .unwrap();
        assert_eq!(record["status"], "SENDING");
        bus.close().await;
    }

    #[tokio::test]
    #[ignore = "needs the LocalStack deployment: make test"]
    async fn an_email_sent_before_is_announced_again_but_not_sent_again() {
        let stack = Stack::connect().await;
        let customer = order_id("e2e-mailsent");
        let to = format!("{customer}@example.com");
        let event_id = uuid::Uuid::new_v4().to_string();
        earlier_attempt(&stack, &event_id, &to, "SENT").await;
        let mut bus = stack.observe(email_sent(&to, "welcome")).await;
        stack
            .put_events(&[(
                "orderflow.customers",
                "CustomerRegistered",
                with_id(
                    json!({"data": {"customerId": customer, "email": to, "name": "Again"}}),
                    &event_id,
                ),
            )])
            .await;
        let sent = bus.wait_for("EmailSent", 1, WAIT).await;
        let data = &sent[0]["detail"]["data"];
        assert_eq!(data["messageId"], "ses-from-the-earlier-attempt");
        assert_eq!(data["causeEventId"], event_id.as_str());
        assert!(mails(&to, "Again").await.is_empty(), "nothing sent");
        bus.close().await;
    }

    #[tokio::test]
    #[ignore = "needs the LocalStack deployment: make test"]
    async fn a_poison_message_goes_to_the_dlq_with_its_reason() {
        let stack = Stack::connect().await;
        let order = order_id("e2e-mailpoison");
        let to = format!("{order}@example.com");
        stack
            .put_events(&[(
                "orderflow.shipping",
                "OrderShipped",
                json!({"data": {"orderId": order, "shipmentId": "shp_x", "carrier": "DHL",
                    "customerEmail": to}}),
            )])
            .await;
        let letter = stack.dead_letter("notification-dlq", &order, WAIT).await;
        assert_eq!(letter.reason, "invalid-data");
        assert!(
            letter.message.contains("trackingNumber"),
            "{}",
            letter.message
        );
        assert_eq!(letter.receive_count, "1", "dead-lettered at once");
        assert!(mails(&to, &order).await.is_empty(), "nothing sent");
    }
}
