//! The transactional outbox of the order saga. The saga appends its decisions to the event
//! store; this function, fed by the store's DynamoDB stream, publishes them to the bus. A
//! crash between "stored" and "published" loses nothing (the stream redelivers), and the
//! bus never sees an event the store does not have. Redelivery can publish an event twice;
//! its id is the stored id, so consumers' idempotency absorbs it.

use aws_lambda_events::event::dynamodb::Event as StreamBatch;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use contracts::sources;
use eventkit::publisher::{PublishError, PutEventsTransport};
use eventkit::stream::{inserted_events, retry_from};
use eventkit::Publisher;

pub struct Outbox<T = aws_sdk_eventbridge::Client> {
    publisher: Publisher<T>,
}

impl Outbox {
    /// Reads `EVENT_BUS_NAME`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        Ok(Outbox::new(Publisher::new(
            aws_sdk_eventbridge::Client::new(aws),
            eventkit::aws::required_env("EVENT_BUS_NAME")?,
        )))
    }
}

impl<T: PutEventsTransport> Outbox<T> {
    pub fn new(publisher: Publisher<T>) -> Self {
        Outbox { publisher }
    }

    /// Publishes the saga's events of a stream batch, in order, in as few PutEvents calls
    /// as the limits allow. On failure Lambda retries from the earliest unpublished record.
    pub async fn relay(&self, batch: StreamBatch) -> DynamoDbEventResponse {
        let mut pending = Vec::new();
        let mut stop_at = None;
        for change in inserted_events(batch) {
            match change.event {
                // Only decisions go out; the facts the saga recorded came from the bus.
                Ok(event) if event.source == sources::SAGA => {
                    pending.push((change.sequence_number, event.to_raw()))
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(sequence_number = %change.sequence_number, error = %e, "unreadable stored event");
                    stop_at = Some(change.sequence_number);
                    break;
                }
            }
        }
        let events: Vec<_> = pending.iter().map(|(_, e)| e.clone()).collect();
        match self.publisher.publish(&events).await {
            Ok(()) => {
                for (_, e) in &pending {
                    tracing::info!(event_id = %e.metadata.event_id, event_type = %e.detail_type,
                        correlation_id = %e.metadata.correlation_id, "published");
                }
                retry_from(stop_at)
            }
            Err(error) => {
                let failed_ids: Vec<String> = match &error {
                    PublishError::NotPublished { failed, .. } => {
                        failed.iter().map(|f| f.event_id.clone()).collect()
                    }
                    PublishError::EntryTooLarge { event_id, .. } => vec![event_id.clone()],
                };
                let first_failed = pending
                    .iter()
                    .find(|(_, e)| failed_ids.contains(&e.metadata.event_id))
                    .map(|(seq, _)| seq.clone());
                tracing::error!(%error, "publishing failed; Lambda retries from the first unpublished record");
                retry_from(first_failed.or(stop_at))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! PutEvents per-entry failures cannot be produced on demand by EventBridge or
    //! LocalStack; these tests drive the outbox through a scripted transport.
    use super::*;
    use async_trait::async_trait;
    use aws_sdk_eventbridge::types::PutEventsRequestEntry;
    use eventkit::publisher::{EntryResult, RetryPolicy};
    use std::sync::Mutex;

    struct Transport {
        fail_detail_type: Option<&'static str>,
        sent: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl PutEventsTransport for Transport {
        async fn put_events(
            &self,
            entries: Vec<PutEventsRequestEntry>,
        ) -> Result<Vec<EntryResult>, String> {
            Ok(entries
                .iter()
                .map(|e| {
                    let t = e.detail_type().unwrap_or_default().to_string();
                    if Some(t.as_str()) == self.fail_detail_type {
                        EntryResult {
                            error_code: Some("InternalFailure".into()),
                            ..Default::default()
                        }
                    } else {
                        self.sent.lock().unwrap().push(t);
                        EntryResult {
                            event_id: Some("x".into()),
                            ..Default::default()
                        }
                    }
                })
                .collect())
        }
    }

    fn image(version: u32, source: &str, detail_type: &str) -> serde_json::Value {
        serde_json::json!({
            "streamId": {"S": "order#o1"}, "version": {"N": version.to_string()},
            "eventId": {"S": format!("e{version}")}, "eventType": {"S": detail_type}, "source": {"S": source},
            "schemaVersion": {"N": "1"},
            "metadata": {"M": {"eventId": {"S": format!("e{version}")}, "schemaVersion": {"N": "1"},
                "correlationId": {"S": "c"}, "occurredAt": {"S": "2026-11-21T10:00:00Z"}}},
            "data": {"M": {"orderId": {"S": "o1"}}},
            "recordedAt": {"S": "2026-11-21T10:00:00.000Z"}, "timeBucket": {"S": "2026-11-21"},
            "timeKey": {"S": "k"}
        })
    }

    fn batch() -> StreamBatch {
        let records: Vec<_> = [
            (1, sources::PAYMENT, "PaymentProcessed"),
            (2, sources::SAGA, "OrderConfirmed"),
            (3, sources::SAGA, "RefundPaymentRequested"),
        ]
        .iter()
        .map(|(v, s, t)| serde_json::json!({
            "eventID": v.to_string(), "eventName": "INSERT", "awsRegion": "us-east-1",
            "dynamodb": {"Keys": {}, "NewImage": image(*v, s, t), "SequenceNumber": format!("seq{v}"),
                         "SizeBytes": 1, "StreamViewType": "NEW_IMAGE"}
        }))
        .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 2,
            base_delay: std::time::Duration::from_millis(1),
            max_delay: std::time::Duration::from_millis(1),
        }
    }

    #[tokio::test]
    async fn publishes_only_the_sagas_decisions() {
        let outbox = Outbox::new(
            Publisher::new(
                Transport {
                    fail_detail_type: None,
                    sent: Mutex::new(vec![]),
                },
                "bus",
            )
            .with_retry(fast()),
        );
        let response = outbox.relay(batch()).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(
            *outbox.publisher_transport().sent.lock().unwrap(),
            vec!["OrderConfirmed", "RefundPaymentRequested"]
        );
    }

    #[tokio::test]
    async fn an_unpublished_event_is_retried_from_its_record() {
        let transport = Transport {
            fail_detail_type: Some("RefundPaymentRequested"),
            sent: Mutex::new(vec![]),
        };
        let outbox = Outbox::new(Publisher::new(transport, "bus").with_retry(fast()));
        let response = outbox.relay(batch()).await;
        assert_eq!(
            response.batch_item_failures[0].item_identifier.as_deref(),
            Some("seq3")
        );
    }

    impl<T: PutEventsTransport> Outbox<T> {
        fn publisher_transport(&self) -> &T {
            self.publisher.transport()
        }
    }
}
