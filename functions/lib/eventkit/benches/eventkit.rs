//! `make bench`: what eventkit costs per message. Prints numbers; asserts nothing.
//!
//! - decode: SQS body -> EventBridge envelope -> typed payload.
//! - batch: BatchProcessor overhead for a 10-message batch with a no-op handler.
//! - idempotency: DynamoDB round trips per message (first run and duplicate), against the
//!   LocalStack that `make bench` starts (skipped when AWS_ENDPOINT_URL is not set).

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use eventkit::{BatchProcessor, EventData, Handled, HandlerError, Idempotency, RawEvent};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    order_id: String,
    customer_id: String,
    currency: String,
    lines: Vec<Line>,
    total: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    sku: String,
    quantity: u32,
    unit_price: u64,
}

impl EventData for Order {
    const DETAIL_TYPE: &'static str = "OrderPlaced";
    const SOURCE: &'static str = "orderflow.orders";
}

fn body(i: usize) -> String {
    serde_json::json!({
        "version": "0", "id": format!("eb-{i}"), "detail-type": "OrderPlaced",
        "source": "orderflow.orders", "account": "000000000000", "time": "2026-11-21T10:00:00Z",
        "region": "us-east-1", "resources": [],
        "detail": {
            "metadata": {"eventId": format!("e-{i}"), "schemaVersion": 1, "correlationId": "c"},
            "data": {"orderId": format!("ord-{i}"), "customerId": "cus-1", "currency": "EUR",
                     "lines": [{"sku": "MUG", "quantity": 2, "unitPrice": 1250},
                               {"sku": "TEA", "quantity": 1, "unitPrice": 800}],
                     "total": 3300}
        }
    })
    .to_string()
}

fn report(name: &str, iterations: usize, elapsed: Duration) {
    let per = elapsed / iterations as u32;
    println!(
        "{name:<44} {:>10.2} µs/op {:>12.0} ops/s   ({iterations} iterations)",
        per.as_secs_f64() * 1e6,
        iterations as f64 / elapsed.as_secs_f64()
    );
}

fn bench_decode() {
    let bodies: Vec<String> = (0..1000).map(body).collect();
    // Warm up.
    for b in &bodies {
        let _ = RawEvent::from_sqs_body(b).and_then(|e| e.decode::<Order>());
    }
    let n = 50_000;
    let start = Instant::now();
    for i in 0..n {
        let event = RawEvent::from_sqs_body(&bodies[i % bodies.len()]).expect("decodes");
        std::hint::black_box(event.decode::<Order>().expect("typed"));
    }
    report("decode (SQS body -> typed envelope)", n, start.elapsed());
}

fn batch_event(size: usize, offset: usize) -> SqsEvent {
    let records: Vec<_> = (0..size)
        .map(|i| {
            serde_json::json!({
                "messageId": format!("m-{}", offset + i), "receiptHandle": "r", "body": body(offset + i),
                "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:q",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("sqs event")
}

async fn bench_batch() {
    let processor = BatchProcessor::new();
    let batches: Vec<SqsEvent> = (0..500).map(|b| batch_event(10, b * 10)).collect();
    let n_batches = 5_000;
    let start = Instant::now();
    for i in 0..n_batches {
        let report = processor
            .process(
                batches[i % batches.len()].clone(),
                |e: RawEvent| async move {
                    e.decode::<Order>()?;
                    Ok::<_, HandlerError>(Handled::Processed)
                },
            )
            .await;
        std::hint::black_box(report);
    }
    let elapsed = start.elapsed();
    report(
        "batch of 10 (decode + typed + response), per msg",
        n_batches * 10,
        elapsed,
    );
}

async fn bench_idempotency() {
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        println!("idempotency round trips: skipped (no AWS_ENDPOINT_URL; `make bench` sets it)");
        return;
    }
    let config = eventkit::aws::load_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = format!(
        "bench-idempotency-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    client
        .create_table()
        .table_name(&table)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("create table");
    let idem = Idempotency::new(client.clone(), &table, "bench");
    let payload = serde_json::json!({"orderId": "ord-1", "total": 3300});
    let remaining = Duration::from_secs(30);
    // Warm up the JVM behind DynamoDB Local.
    for i in 0..50 {
        let _ = idem
            .run(&format!("warm-{i}"), &payload, remaining, || async {
                Ok::<_, String>(1)
            })
            .await;
    }
    let n = 300;
    let start = Instant::now();
    for i in 0..n {
        idem.run(&format!("k-{i}"), &payload, remaining, || async {
            Ok::<_, String>(i)
        })
        .await
        .expect("first run");
    }
    report(
        "idempotency, first run (put lock + put result)",
        n,
        start.elapsed(),
    );
    let start = Instant::now();
    for i in 0..n {
        let out = idem
            .run(&format!("k-{i}"), &payload, remaining, || async {
                Ok::<_, String>(i)
            })
            .await
            .expect("duplicate");
        assert!(out.is_duplicate());
    }
    report(
        "idempotency, duplicate (one conditional put)",
        n,
        start.elapsed(),
    );
    let _ = client.delete_table().table_name(&table).send().await;
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    println!(
        "eventkit benchmarks (release build, this machine: {} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    bench_decode();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(bench_batch());
    runtime.block_on(bench_idempotency());
}
