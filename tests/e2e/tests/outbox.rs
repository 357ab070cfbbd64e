//! The outbox cannot lose a decision: EventBridge refusing the outbox's PutEvents for longer
//! than the stream retries, and the order still gets every decision published, with its
//! stored id, once the refusal ends (functions/outbox: the sweep of unpublished marks).
//!
//! Its own test binary, with one test: denying the outbox's PutEvents stalls every order in
//! flight, so nothing else may run meanwhile (cargo runs test binaries one after another).
//!
//! LocalStack only: the outage is an inline Deny on the outbox's role (IAM PutRolePolicy),
//! which LocalStack makes visible through our IAM enforcer (infra/localstack/README.md). On
//! AWS the same Deny works, but a test that stops a shared stage's outbox for minutes does
//! not belong in `make test-aws`, and IAM changes take a while to apply there ("Changes that
//! I make are not always immediately visible", IAM troubleshooting), so its timing would be
//! a guess.
//!
//! The test stage runs with `OutboxStreamRetries=1 OutboxSweepMinAgeSeconds=30`
//! (tests/run.sh): the stream gives up within seconds, and the sweep (the scheduled rule,
//! every minute, which LocalStack 4.13.1 runs) takes marks older than 30 s.

mod localstack_only {
    use std::time::Duration;

    use chrono::{DateTime, Utc};
    use e2e::{about_order, aws_cli, eventually, order_id, order_of, Stack};
    use serde_json::Value;

    /// The inline policy that stands for the outage. Named so that the IAM report can tell
    /// its denials from a missing grant (infra/localstack/README.md).
    const FAULT_POLICY: &str = "orderflow-fault-injection-outbox-putevents";
    const WAIT: Duration = Duration::from_secs(240);

    /// Removes the Deny when dropped, also when the test fails half-way: a Deny left behind
    /// would stop every later test's orders.
    struct Outage {
        role: String,
    }

    impl Outage {
        fn start(role: &str) -> Outage {
            let deny = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "EventBridgeUnavailable",
                    "Effect": "Deny",
                    "Action": "events:PutEvents",
                    "Resource": "*",
                }]
            });
            aws_cli(&[
                "iam",
                "put-role-policy",
                "--role-name",
                role,
                "--policy-name",
                FAULT_POLICY,
                "--policy-document",
                &deny.to_string(),
            ]);
            Outage {
                role: role.to_string(),
            }
        }
    }

    impl Drop for Outage {
        fn drop(&mut self) {
            // Not `aws_cli`, which asserts: a panic while the test is already unwinding
            // would abort the run. A failed delete is reported; the next deploy of the stage
            // does not remove an inline policy it did not create.
            let mut aws = std::process::Command::new("aws");
            if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
                aws.args(["--endpoint-url", &endpoint]);
            }
            let deleted = aws
                .args(["iam", "delete-role-policy", "--role-name", &self.role])
                .args(["--policy-name", FAULT_POLICY])
                .status()
                .is_ok_and(|s| s.success());
            if !deleted {
                eprintln!(
                    "could not delete {FAULT_POLICY} from role {}: delete it by hand \
                     (aws iam delete-role-policy), or the outbox stays unable to publish",
                    self.role
                );
            }
        }
    }

    async fn outbox_role(stack: &Stack) -> String {
        let config = stack
            .lambda
            .get_function_configuration()
            .function_name(stack.name("outbox"))
            .send()
            .await
            .expect("the outbox function");
        let arn = config.role().expect("a role").to_string();
        arn.rsplit('/').next().unwrap_or_default().to_string()
    }

    /// The outbox DLQ's record of a stream batch given up on after `since`: Lambda's
    /// on-failure record (`DDBStreamBatchInfo`, `timestamp` of the failure). Left on the
    /// queue for whoever looks, but made visible again at once.
    async fn stream_gave_up_after(stack: &Stack, since: DateTime<Utc>) -> Option<Value> {
        let url = stack.queue_url("outbox-dlq").await;
        let out = stack
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .ok()?;
        let mut found = None;
        for m in out.messages() {
            let record: Value = m
                .body()
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or_default();
            let failed_at = record["timestamp"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            if record.get("DDBStreamBatchInfo").is_some() && failed_at.is_some_and(|t| t >= since) {
                found = Some(record);
            }
            if let Some(handle) = m.receipt_handle() {
                let _ = stack
                    .sqs
                    .change_message_visibility()
                    .queue_url(&url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await;
            }
        }
        found
    }

    fn decisions(stream: &[Value]) -> Vec<Value> {
        stream
            .iter()
            .filter(|e| e["source"] == "orderflow.saga")
            .cloned()
            .collect()
    }

    #[tokio::test]
    #[ignore = "needs the LocalStack deployment: make test"]
    async fn decisions_refused_longer_than_the_stream_retries_are_published_once_the_bus_takes_them(
    ) {
        let stack = Stack::connect().await;
        let order = order_id("e2e-outage");
        let sku = format!("SKU-{order}");
        stack.set_stock(&sku, 5, 700).await;
        let mut bus = stack.observe(about_order(&order)).await;
        let role = outbox_role(&stack).await;
        let since = Utc::now();
        let outage = Outage::start(&role);

        stack
            .put_events(&[(
                "orderflow.orders",
                "OrderPlaced",
                order_of(&order, &sku, 1, 700, "tok_visa"),
            )])
            .await;
        // The saga stored its first decision, marked unpublished...
        let first = eventually("the saga's first decision stored", WAIT, || async {
            decisions(&stack.order_stream(&order).await)
                .into_iter()
                .next()
        })
        .await;
        assert!(first["unpublished"].is_string(), "stored marked: {first}");
        // ...and the stream gave up on it: before the sweep, this was a lost decision.
        eventually(
            "the outbox's stream batch given up (outbox DLQ)",
            WAIT,
            || stream_gave_up_after(&stack, since),
        )
        .await;
        let still = stack.order_stream(&order).await;
        assert!(
            decisions(&still)
                .iter()
                .all(|d| d["unpublished"].is_string()),
            "nothing was published, so every decision is still marked"
        );

        drop(outage);
        // The sweep publishes it (OrderConfirmed: the read model, projected from the store,
        // says CONFIRMED without the bus); shipping, which only the bus reaches, ships it.
        let view = eventually("the order shipped after the outage", WAIT, || async {
            stack
                .get_item("orders", "orderId", &order)
                .await
                .filter(|v| v["status"] == "SHIPPED")
        })
        .await;
        assert_eq!(view["total"], 700);

        // Every decision the store holds reached the bus with its stored id, and none stays
        // marked.
        let stream = eventually("every decision's mark cleared", WAIT, || async {
            let stream = stack.order_stream(&order).await;
            decisions(&stream)
                .iter()
                .all(|d| d.get("unpublished").is_none())
                .then_some(stream)
        })
        .await;
        for decision in decisions(&stream) {
            let detail_type = decision["eventType"].as_str().unwrap_or_default();
            bus.wait_for(detail_type, 1, WAIT).await;
            let ids: Vec<Value> = bus
                .of_type(detail_type)
                .iter()
                .map(|e| e["detail"]["metadata"]["eventId"].clone())
                .collect();
            assert!(
                ids.contains(&decision["eventId"]),
                "{detail_type} {} published with its stored id: {ids:?}",
                decision["eventId"]
            );
        }
        // The first decision went out by the sweep (the relay's log says "published" for
        // the others, the sweep's "published by the sweep").
        let id = first["eventId"].as_str().unwrap_or_default();
        let swept = eventually("the sweep's log line", WAIT, || async {
            Some(stack.log_lines("outbox", "published by the sweep"))
                .filter(|lines| lines.iter().any(|l| l.contains(id)))
        })
        .await;
        assert!(!swept.is_empty());
        bus.close().await;
    }
}
