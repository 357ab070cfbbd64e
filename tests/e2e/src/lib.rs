//! Harness for the end-to-end tests: clients for a deployment of `infra/template.yaml`
//! (stage `STAGE`, as for make and the CLI), sending events the way users do, and observing what the
//! functions publish on the bus.
//!
//! Two targets, one suite ([`Deployment`]): LocalStack (`make test`, the default) and a stack a
//! user deployed on AWS (`make test-aws STAGE=<s>`, `ORDERFLOW_TARGET=aws`), reached through
//! the SDK's default credential and endpoint chain. Tests that need a hook only LocalStack
//! has (its SES store, the usage recorder behind `orderflow load --cost`) live in a module
//! named `localstack_only`, which `make test-aws` skips by name and lists; the hooks
//! themselves refuse to run against AWS ([`require_localstack`]). `make test` runs the rest
//! against LocalStack through a proxy that refuses LocalStack's own endpoints
//! (`infra/localstack/aws_only_proxy.py`), which shows that they need nothing AWS lacks.
//!
//! The tests are `#[ignore]`d so that a plain `cargo test` needs no deployment; `make test`
//! runs them with `--ignored` after deploying the stack.

use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_eventbridge::types::{PutEventsRequestEntry, Target};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{json, Value};

pub use aws_sdk_dynamodb::types::AttributeValue;

/// Where the suite runs, from `ORDERFLOW_TARGET` (`localstack`, the default, or `aws`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    LocalStack,
    Aws,
}

impl Deployment {
    pub fn from_env() -> Deployment {
        match std::env::var("ORDERFLOW_TARGET").as_deref() {
            Err(_) | Ok("") | Ok("localstack") => Deployment::LocalStack,
            Ok("aws") => Deployment::Aws,
            Ok(other) => panic!("ORDERFLOW_TARGET must be `localstack` or `aws`, not `{other}`"),
        }
    }
}

/// LocalStack's endpoint, for a hook that only LocalStack has (`what` names it). Fails the
/// test against AWS: such a test belongs in a `localstack_only` module, which `make
/// test-aws` skips.
pub fn require_localstack(what: &str) -> String {
    assert_eq!(
        Deployment::from_env(),
        Deployment::LocalStack,
        "{what} exists only on LocalStack: move this test into a `localstack_only` module"
    );
    std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (LocalStack's endpoint)")
}

/// The deployed stack.
pub struct Stack {
    pub stage: String,
    pub events: aws_sdk_eventbridge::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub lambda: aws_sdk_lambda::Client,
}

impl Stack {
    pub async fn connect() -> Stack {
        if Deployment::from_env() == Deployment::LocalStack {
            assert!(
                std::env::var("AWS_ENDPOINT_URL").is_ok(),
                "AWS_ENDPOINT_URL is not set: run these tests with `make test` \
                 (or against AWS with `make test-aws STAGE=<stage>`)"
            );
        }
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Stack {
            stage: std::env::var("STAGE").unwrap_or_else(|_| "test".into()),
            events: aws_sdk_eventbridge::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            dynamo: aws_sdk_dynamodb::Client::new(&config),
            lambda: aws_sdk_lambda::Client::new(&config),
        }
    }

    /// `orderflow-<stage>-<suffix>`, the naming rule of the template.
    pub fn name(&self, suffix: &str) -> String {
        format!("orderflow-{}-{}", self.stage, suffix)
    }

    pub fn bus(&self) -> String {
        format!("orderflow-{}", self.stage)
    }

    pub async fn queue_url(&self, suffix: &str) -> String {
        self.sqs
            .get_queue_url()
            .queue_name(self.name(suffix))
            .send()
            .await
            .expect("queue exists")
            .queue_url()
            .expect("queue url")
            .to_string()
    }

    /// Puts events on the bus in one PutEvents call, as `aws events put-events` does.
    /// Each item is (source, detail-type, detail). Returns the EventBridge event ids.
    pub async fn put_events(&self, events: &[(&str, &str, Value)]) -> Vec<String> {
        let entries = events
            .iter()
            .map(|(source, detail_type, detail)| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(self.bus())
                    .source(*source)
                    .detail_type(*detail_type)
                    .detail(detail.to_string())
                    .build()
            })
            .collect();
        let out = self
            .events
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .expect("put-events");
        assert_eq!(out.failed_entry_count(), 0, "put-events failed: {out:?}");
        out.entries()
            .iter()
            .map(|e| e.event_id().unwrap_or_default().to_string())
            .collect()
    }

    /// Waits until `function` has finished handling event `event_id` and returns the
    /// outcome it logged (`Processed`, `Duplicate`, `Ignored`): the precise "this delivery
    /// was processed" signal, eventkit's `message handled` log line, which every function
    /// writes after its effects and before SQS deletes the message.
    pub async fn wait_until_handled(&self, function: &str, event_id: &str) -> String {
        self.wait_until_handled_times(function, event_id, 1).await
    }

    /// Like [`Stack::wait_until_handled`], for the `times`-th delivery of the same event id;
    /// returns the outcome of the latest one.
    pub async fn wait_until_handled_times(
        &self,
        function: &str,
        event_id: &str,
        times: usize,
    ) -> String {
        let field = format!("\"event_id\":\"{event_id}\"");
        eventually(
            &format!("{function} handled {event_id} {times} time(s)"),
            // One transient failure is redelivered after the queue's 60 s visibility timeout:
            // room for that and a loaded 2-core machine (at-least-once, not a slow test).
            Duration::from_secs(180),
            || async {
                let outcomes: Vec<String> = self
                    .log_lines(function, &field)
                    .iter()
                    .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
                    .filter(|line| line["message"] == "message handled")
                    .map(|line| line["outcome"].as_str().unwrap_or_default().to_string())
                    .collect();
                (outcomes.len() >= times).then(|| outcomes[outcomes.len() - 1].clone())
            },
        )
        .await
    }

    /// Reads a sample file from `events/samples/` (a put-events entries file) and returns
    /// its entries as (source, detail-type, detail), for this stage's bus.
    pub fn sample(name: &str) -> Vec<(String, String, Value)> {
        let path = format!("{}/../../events/samples/{name}", env!("CARGO_MANIFEST_DIR"));
        let entries: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("sample")).expect("json");
        entries
            .into_iter()
            .map(|e| {
                (
                    e["Source"].as_str().unwrap_or_default().to_string(),
                    e["DetailType"].as_str().unwrap_or_default().to_string(),
                    serde_json::from_str(e["Detail"].as_str().unwrap_or_default())
                        .unwrap_or(Value::Null),
                )
            })
            .collect()
    }

    pub async fn get_item(&self, table_suffix: &str, key: &str, value: &str) -> Option<Value> {
        self.get_item_by_key(table_suffix, &[(key, value)]).await
    }

    /// Waits until the queue has no visible, no in-flight and no delayed messages (the
    /// shipping queue holds every message for its `DelaySeconds`: such a message is neither
    /// visible nor in flight, yet still to be handled).
    pub async fn wait_until_drained(&self, queue_suffix: &str) {
        let url = self.queue_url(queue_suffix).await;
        eventually(
            &format!("queue {queue_suffix} drained"),
            Duration::from_secs(60),
            || async {
                let out = self
                    .sqs
                    .get_queue_attributes()
                    .queue_url(&url)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
                    .send()
                    .await
                    .ok()?;
                let attrs = out.attributes()?;
                let count = |n: QueueAttributeName| {
                    attrs
                        .get(&n)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(1)
                };
                (count(QueueAttributeName::ApproximateNumberOfMessages) == 0
                    && count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible) == 0
                    && count(QueueAttributeName::ApproximateNumberOfMessagesDelayed) == 0)
                    .then_some(())
            },
        )
        .await
    }

    /// A queue that receives every event on the bus matching `pattern`, for as long as the
    /// returned observer lives (drop removes nothing; call `close`).
    pub async fn observe(&self, pattern: Value) -> Observer {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let name = format!("observer-{}-{id}", self.stage);
        let url = self
            .sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .expect("create observer queue")
            .queue_url()
            .expect("url")
            .to_string();
        let arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue arn")
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("arn");
        let rule_arn = self
            .events
            .put_rule()
            .name(&name)
            .event_bus_name(self.bus())
            .event_pattern(pattern.to_string())
            .send()
            .await
            .expect("put-rule")
            .rule_arn()
            .expect("rule arn")
            .to_string();
        // On AWS a rule can deliver to a queue only when the queue's policy lets EventBridge
        // send for that rule ("Amazon SQS permissions", Amazon EventBridge User Guide,
        // https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-sqs-permissions).
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}
            }]
        });
        self.sqs
            .set_queue_attributes()
            .queue_url(&url)
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .send()
            .await
            .expect("observer queue policy");
        self.events
            .put_targets()
            .rule(&name)
            .event_bus_name(self.bus())
            .targets(
                Target::builder()
                    .id("observer")
                    .arn(&arn)
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("put-targets");
        Observer {
            url,
            rule: name,
            bus: self.bus(),
            sqs: self.sqs.clone(),
            events: self.events.clone(),
            seen: Vec::new(),
        }
    }

    /// An item by its full key, e.g. `&[("pk", "a"), ("sk", "b")]` for a table with a sort
    /// key (string key attributes only).
    pub async fn get_item_by_key(&self, table_suffix: &str, key: &[(&str, &str)]) -> Option<Value> {
        let out = self
            .dynamo
            .get_item()
            .table_name(self.name(table_suffix))
            .set_key(Some(
                key.iter()
                    .map(|(k, v)| (k.to_string(), AttributeValue::S(v.to_string())))
                    .collect(),
            ))
            .consistent_read(true)
            .send()
            .await
            .expect("get-item");
        out.item()
            .map(|i| serde_dynamo::from_item::<_, Value>(i.clone()).expect("item as json"))
    }

    /// Waits for a dead letter on queue `queue_suffix` (a DLQ) whose body contains
    /// `needle`, deletes it and returns it with the reason eventkit's batch attached as
    /// message attributes. Messages of other tests are made visible again at once.
    pub async fn dead_letter(
        &self,
        queue_suffix: &str,
        needle: &str,
        timeout: Duration,
    ) -> DeadLetter {
        let url = self.queue_url(queue_suffix).await;
        let message = eventually(
            &format!("a message with `{needle}` on {queue_suffix}"),
            timeout,
            || async {
                let out = self
                    .sqs
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .message_attribute_names("All")
                    .wait_time_seconds(1)
                    .send()
                    .await
                    .ok()?;
                let mut found = None;
                for m in out.messages() {
                    let handle = m.receipt_handle().unwrap_or_default();
                    if found.is_none() && m.body().is_some_and(|b| b.contains(needle)) {
                        let _ = self
                            .sqs
                            .delete_message()
                            .queue_url(&url)
                            .receipt_handle(handle)
                            .send()
                            .await;
                        found = Some(m.clone());
                    } else {
                        let _ = self
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
            },
        )
        .await;
        DeadLetter::from_message(&message)
    }

    /// Invokes a function of this stage synchronously (as `aws lambda invoke` does) and
    /// returns its JSON answer; a function error fails the test.
    pub async fn invoke(&self, function: &str, payload: &Value) -> Value {
        self.try_invoke(function, payload)
            .await
            .unwrap_or_else(|error| panic!("{function} failed: {error}"))
    }

    /// Like [`Stack::invoke`], but a function error (the invocation's result was an error)
    /// comes back as `Err` with the error body.
    pub async fn try_invoke(&self, function: &str, payload: &Value) -> Result<Value, String> {
        let out = self
            .lambda
            .invoke()
            .function_name(self.name(function))
            .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke {function}: {e:?}"));
        let body = out
            .payload()
            .map(|p| p.as_ref().to_vec())
            .unwrap_or_default();
        if out.function_error().is_some() {
            return Err(String::from_utf8_lossy(&body).into_owned());
        }
        Ok(serde_json::from_slice(&body).expect("invoke output is JSON"))
    }

    /// Puts a SKU in this stage's inventory table: its stock and its catalogue price in EUR
    /// (payment refuses an order whose unit prices differ from it, as `price-mismatch`).
    pub async fn set_stock(&self, sku: &str, stock: u32, unit_price: u64) {
        self.dynamo
            .put_item()
            .table_name(self.name("inventory"))
            .item("sku", AttributeValue::S(sku.into()))
            .item("stock", AttributeValue::N(stock.to_string()))
            .item("price", AttributeValue::N(unit_price.to_string()))
            .item("currency", AttributeValue::S("EUR".into()))
            .send()
            .await
            .expect("set stock");
    }

    pub async fn stock(&self, sku: &str) -> Option<u64> {
        self.get_item("inventory", "sku", sku)
            .await
            .and_then(|i| i["stock"].as_u64())
    }

    /// Waits until the order's read model satisfies `check`, and returns it.
    pub async fn wait_for_order(
        &self,
        order_id: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(
            &format!("order {order_id} {what}"),
            Duration::from_secs(120),
            || async {
                self.get_item("orders", "orderId", order_id)
                    .await
                    .filter(|v| check(v))
            },
        )
        .await
    }

    /// Whether the deployed rule `orderflow-<stage>-<rule_suffix>` matches `event` (an
    /// EventBridge event as JSON), asked of EventBridge itself with TestEventPattern.
    pub async fn rule_matches(&self, rule_suffix: &str, event: &Value) -> bool {
        let rule = self
            .events
            .describe_rule()
            .name(self.name(rule_suffix))
            .event_bus_name(self.bus())
            .send()
            .await
            .expect("describe the rule");
        self.events
            .test_event_pattern()
            .event_pattern(rule.event_pattern().expect("the rule has a pattern"))
            .event(event.to_string())
            .send()
            .await
            .expect("test the event pattern")
            .result()
    }

    /// Puts `body` straight onto queue `orderflow-<stage>-<suffix>`, as if a rule had
    /// delivered it: for what a consumer must refuse even when it gets past the rules.
    pub async fn deliver_to_queue(&self, suffix: &str, body: &Value) {
        self.sqs
            .send_message()
            .queue_url(self.queue_url(suffix).await)
            .message_body(body.to_string())
            .send()
            .await
            .expect("send the message");
    }

    /// The ARN of queue `orderflow-<stage>-<suffix>`.
    pub async fn queue_arn(&self, suffix: &str) -> String {
        let url = self.queue_url(suffix).await;
        self.sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .expect("queue arn")
            .clone()
    }

    /// An order's event stream (`order#<id>` in the event store), in version order,
    /// read consistently.
    pub async fn order_stream(&self, order_id: &str) -> Vec<Value> {
        let out = self
            .dynamo
            .query()
            .table_name(self.name("events"))
            .key_condition_expression("streamId = :s")
            .expression_attribute_values(":s", AttributeValue::S(contracts::order_stream(order_id)))
            .consistent_read(true)
            .send()
            .await
            .expect("query the order's stream");
        out.items()
            .iter()
            .map(|i| serde_dynamo::from_item::<_, Value>(i.clone()).expect("event as json"))
            .collect()
    }

    /// The messages a function logged (CloudWatch Logs, as `make logs` reads them) that
    /// contain `needle`.
    pub fn log_lines(&self, function: &str, needle: &str) -> Vec<String> {
        let log_group = format!("/aws/lambda/{}", self.name(function));
        let messages: Vec<String> = serde_json::from_value(aws_cli(&[
            "logs",
            "filter-log-events",
            "--log-group-name",
            &log_group,
            "--query",
            "events[].message",
        ]))
        .unwrap_or_default();
        messages
            .into_iter()
            .filter(|m| m.contains(needle))
            .collect()
    }
}

/// `aws <args> --output json`, parsed: for the few calls the harness makes without an SDK
/// crate of its own (CloudWatch Logs, CloudFormation, CloudWatch). Against LocalStack (or the
/// proxy in front of it) when `AWS_ENDPOINT_URL` is set; otherwise the AWS CLI's default
/// chain, as for a user.
pub fn aws_cli(args: &[&str]) -> Value {
    let mut aws = std::process::Command::new("aws");
    if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
        aws.args(["--endpoint-url", &endpoint]);
    }
    let out = aws
        .args(args)
        .args(["--output", "json"])
        .output()
        .expect("the AWS CLI runs (make test puts it on PATH)");
    assert!(
        out.status.success(),
        "aws {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A message on a dead-letter queue with the reason eventkit's batch processing attached
/// when it dead-lettered it (message attributes `FailureReason`, `FailureMessage`,
/// `SourceQueueArn`, `ReceiveCount`; an absent attribute reads as "").
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub body: String,
    pub reason: String,
    pub message: String,
    pub source_queue_arn: String,
    pub receive_count: String,
}

impl DeadLetter {
    fn from_message(message: &aws_sdk_sqs::types::Message) -> DeadLetter {
        let attrs = message.message_attributes().expect("reason attributes");
        let attr = |k: &str| {
            attrs
                .get(k)
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_string()
        };
        DeadLetter {
            body: message.body().unwrap_or_default().to_string(),
            reason: attr("FailureReason"),
            message: attr("FailureMessage"),
            source_queue_arn: attr("SourceQueueArn"),
            receive_count: attr("ReceiveCount"),
        }
    }
}

/// Events seen on the bus by one observer rule.
pub struct Observer {
    url: String,
    rule: String,
    bus: String,
    sqs: aws_sdk_sqs::Client,
    events: aws_sdk_eventbridge::Client,
    seen: Vec<Value>,
}

impl Observer {
    async fn poll(&mut self, wait: i32) {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait)
            .send()
            .await
            .expect("receive");
        for m in out.messages() {
            if let Some(body) = m.body() {
                self.seen
                    .push(serde_json::from_str(body).expect("event json"));
            }
            if let Some(handle) = m.receipt_handle() {
                let _ = self
                    .sqs
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(handle)
                    .send()
                    .await;
            }
        }
    }

    /// Waits until at least `count` deliveries of `detail_type` were seen (copies of one
    /// event count: see [`Observer::copies_of_type`]); returns them all.
    pub async fn wait_for(
        &mut self,
        detail_type: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let matching = self.copies_of_type(detail_type);
            if matching.len() >= count {
                return matching;
            }
            assert!(
                start.elapsed() < timeout,
                "waited {timeout:?} for {count} {detail_type}; saw {:?}",
                self.seen
                    .iter()
                    .map(|e| e["detail-type"].clone())
                    .collect::<Vec<_>>()
            );
            self.poll(1).await;
        }
    }

    /// Keeps polling for `quiet` more, so late duplicates would be seen.
    pub async fn settle(&mut self, quiet: Duration) {
        let start = Instant::now();
        while start.elapsed() < quiet {
            self.poll(1).await;
        }
    }

    /// The events of a type as a consumer sees them: one per event id. A producer that
    /// publishes its recorded answer again for a redelivered cause publishes the same event
    /// (the same id), which consumers drop.
    pub fn of_type(&self, detail_type: &str) -> Vec<Value> {
        let mut ids = std::collections::HashSet::new();
        self.copies_of_type(detail_type)
            .into_iter()
            .filter(|e| {
                let id = &e["detail"]["metadata"]["eventId"];
                id.is_null() || ids.insert(id.to_string())
            })
            .collect()
    }

    /// Every delivery of a type seen on the bus, copies of one event included.
    pub fn copies_of_type(&self, detail_type: &str) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|e| e["detail-type"] == detail_type)
            .cloned()
            .collect()
    }

    pub async fn close(self) {
        let _ = self
            .events
            .remove_targets()
            .rule(&self.rule)
            .event_bus_name(&self.bus)
            .ids("observer")
            .send()
            .await;
        let _ = self
            .events
            .delete_rule()
            .name(&self.rule)
            .event_bus_name(&self.bus)
            .send()
            .await;
        let _ = self.sqs.delete_queue().queue_url(&self.url).send().await;
    }
}

/// Polls `check` until it returns `Some`, or fails the test after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A unique order id for one test.
pub fn order_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// An `OrderPlaced` detail (metadata + data) for `order_id`, schema version 2, shipping to
/// Paris (one location: the e2e customer never completes the fraud rule).
pub fn order_placed(order_id: &str, token: &str, event_id: Option<&str>) -> Value {
    let mut detail = order_of(order_id, "MUG-RED", 2, 1250, token);
    if let Some(id) = event_id {
        detail["metadata"]["eventId"] = id.into();
        detail["metadata"]["correlationId"] = format!("corr-{order_id}").into();
    }
    detail
}

/// A shipping address (OrderPlaced version 2).
pub fn address(country: &str, city: &str) -> Value {
    json!({"line1": "1 Test Street", "city": city, "postalCode": "10001", "country": country})
}

/// The same OrderPlaced detail as an older producer sends it: schema version 1, no address.
pub fn as_version_1(mut detail: Value) -> Value {
    detail["metadata"]["schemaVersion"] = 1.into();
    if let Some(data) = detail["data"].as_object_mut() {
        data.remove("shippingAddress");
    }
    detail
}

/// Matches the Orderflow events about one order.
pub fn about_order(order_id: &str) -> Value {
    json!({ "source": [{"prefix": "orderflow."}], "detail": { "data": { "orderId": [order_id] } } })
}

/// An `OrderPlaced` detail (schema version 2) for one line of `sku`, shipping to Paris.
pub fn order_of(order_id: &str, sku: &str, quantity: u32, unit_price: u64, token: &str) -> Value {
    json!({
        "metadata": {"schemaVersion": 2},
        "data": {
            "orderId": order_id, "customerId": "cus-e2e", "customerEmail": "success+e2e@simulator.amazonses.com",
            "currency": "EUR",
            "lines": [{"sku": sku, "quantity": quantity, "unitPrice": unit_price}],
            "total": u64::from(quantity) * unit_price, "paymentToken": token,
            "shippingAddress": address("FR", "Paris")
        }
    })
}

/// An EventBridge event as a rule delivers it into an SQS message body.
pub fn bus_event(id: &str, source: &str, detail_type: &str, detail: Value) -> Value {
    json!({
        "version": "0", "id": id, "detail-type": detail_type, "source": source,
        "account": "000000000000", "time": chrono::Utc::now().to_rfc3339(),
        "region": "us-east-1", "resources": [], "detail": detail
    })
}

/// An SQS event (what an event source mapping hands a function) carrying `bodies`.
pub fn sqs_batch(queue_arn: &str, bodies: &[Value]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .map(|body| {
            json!({
                "messageId": uuid::Uuid::new_v4().to_string(),
                "receiptHandle": "direct-invoke",
                "body": body.to_string(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}
