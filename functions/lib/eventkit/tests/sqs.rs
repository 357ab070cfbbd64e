//! Batch processing and dead-lettering against real SQS queues (LocalStack).

mod common;

use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use eventkit::{BatchProcessor, Handled, HandlerError, RawEvent, SqsDeadLetterQueue};
use serde_json::json;

struct Queues {
    sqs: aws_sdk_sqs::Client,
    source_url: String,
    source_arn: String,
    dlq_url: String,
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone()
}

async fn queues(fifo: bool) -> Queues {
    let sqs = aws_sdk_sqs::Client::new(&common::config().await);
    let suffix = if fifo { ".fifo" } else { "" };
    let name = common::unique("it-source");
    let mut dlq = sqs.create_queue().queue_name(format!("{name}-dlq{suffix}"));
    if fifo {
        dlq = dlq.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let dlq_url = dlq.send().await.unwrap().queue_url().unwrap().to_string();
    let dlq_arn = queue_arn(&sqs, &dlq_url).await;
    let mut source = sqs
        .create_queue()
        .queue_name(format!("{name}{suffix}"))
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}).to_string(),
        );
    if fifo {
        source = source
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "true");
    }
    let source_url = source
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let source_arn = queue_arn(&sqs, &source_url).await;
    Queues {
        sqs,
        source_url,
        source_arn,
        dlq_url,
    }
}

fn body(id: &str, data: serde_json::Value) -> String {
    json!({"id": id, "detail-type": "Tested", "source": "it", "time": "2026-11-21T10:00:00Z",
           "detail": {"data": data}})
    .to_string()
}

/// Receives what is on the queue and shapes it as the SQS event Lambda would deliver.
async fn receive_as_lambda_event(q: &Queues, max: i32) -> SqsEvent {
    let mut records = Vec::new();
    while records.len() < max as usize {
        let out = q
            .sqs
            .receive_message()
            .queue_url(&q.source_url)
            .max_number_of_messages(max - records.len() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if out.messages().is_empty() {
            break;
        }
        for m in out.messages() {
            let attributes: serde_json::Map<String, serde_json::Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), json!(v)))
                        .collect()
                })
                .unwrap_or_default();
            records.push(json!({
                "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
                "attributes": attributes, "messageAttributes": {}, "eventSource": "aws:sqs",
                "eventSourceARN": q.source_arn, "awsRegion": "us-east-1"
            }));
        }
    }
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn a_permanent_failure_lands_in_the_dlq_from_the_redrive_policy_with_its_reason() {
    let q = queues(false).await;
    q.sqs
        .send_message()
        .queue_url(&q.source_url)
        .message_body("{\"truncated")
        .send()
        .await
        .unwrap();
    q.sqs
        .send_message()
        .queue_url(&q.source_url)
        .message_body(body("ok", json!({})))
        .send()
        .await
        .unwrap();
    let event = receive_as_lambda_event(&q, 2).await;
    assert_eq!(event.records.len(), 2);

    // No DLQ URL configured: found through the source queue's redrive policy.
    let sink = Arc::new(SqsDeadLetterQueue::new(q.sqs.clone(), None));
    let report = BatchProcessor::new()
        .with_dead_letters(sink)
        .process(event, |_e: RawEvent| async {
            Ok::<_, HandlerError>(Handled::Processed)
        })
        .await;
    assert!(report.response.batch_item_failures.is_empty());
    assert_eq!(report.metrics().dead_lettered, 1);
    assert_eq!(report.metrics().processed, 1);

    let out = q
        .sqs
        .receive_message()
        .queue_url(&q.dlq_url)
        .message_attribute_names("All")
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let letter = &out.messages()[0];
    assert_eq!(letter.body(), Some("{\"truncated"));
    let attrs = letter.message_attributes().unwrap();
    assert_eq!(attrs["FailureReason"].string_value(), Some("not-json"));
    assert!(attrs["FailureMessage"]
        .string_value()
        .unwrap()
        .contains("not JSON"));
    assert_eq!(
        attrs["SourceQueueArn"].string_value(),
        Some(q.source_arn.as_str())
    );
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn a_fifo_batch_stops_each_group_at_its_first_failure() {
    let q = queues(true).await;
    for (group, id, fail) in [
        ("A", "a1", false),
        ("B", "b1", false),
        ("A", "a2", true),
        ("B", "b2", false),
        ("A", "a3", false),
    ] {
        q.sqs
            .send_message()
            .queue_url(&q.source_url)
            .message_group_id(group)
            .message_body(body(id, json!({"fail": fail})))
            .send()
            .await
            .unwrap();
    }
    let event = receive_as_lambda_event(&q, 10).await;
    assert_eq!(
        event.records.len(),
        5,
        "LocalStack delivered the whole FIFO batch"
    );
    let ids_by_message: Vec<(String, String)> = event
        .records
        .iter()
        .map(|r| {
            let b: serde_json::Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
            (
                r.message_id.clone().unwrap(),
                b["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let ran = Mutex::new(Vec::new());
    let report = BatchProcessor::new()
        .process(event, |e: RawEvent| {
            ran.lock().unwrap().push(e.metadata.event_id.clone());
            async move {
                if e.data["fail"] == true {
                    Err(HandlerError::transient("dependency", "down"))
                } else {
                    Ok(Handled::Processed)
                }
            }
        })
        .await;
    let failed: Vec<String> = report
        .response
        .batch_item_failures
        .iter()
        .map(|f| {
            ids_by_message
                .iter()
                .find(|(m, _)| *m == f.item_identifier)
                .unwrap()
                .1
                .clone()
        })
        .collect();
    let mut failed_sorted = failed.clone();
    failed_sorted.sort();
    assert_eq!(failed_sorted, vec!["a2", "a3"]);
    let ran = ran.lock().unwrap().clone();
    assert!(!ran.contains(&"a3".to_string()));
    assert!(ran.contains(&"b2".to_string()), "group B went on");
}
