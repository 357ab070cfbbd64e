//! The transactional outbox of the order saga. The saga appends its decisions to the event
//! store; this function, fed by the store's DynamoDB stream, publishes them to the bus. A
//! crash between "stored" and "published" loses nothing (the stream redelivers), and the
//! bus never sees an event the store does not have. Redelivery can publish an event twice;
//! its id is the stored id, so consumers' idempotency absorbs it.
//!
//! Stored decisions are read as `contracts::Event`s (upcast, not validated again: they were
//! checked when the saga wrote them) and published through the [`Publish`] port with their
//! stored metadata, so the event on the bus is the event in the store.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event as StreamBatch;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use contracts::{sources, Event};
use eventkit::publisher::PublishError;
use eventkit::stream::{inserted_events, retry_from};
use eventkit::{Envelope, Payload, Publish, Publisher};

pub struct Outbox {
    bus: Arc<dyn Publish<Event>>,
}

impl Outbox {
    /// Reads `EVENT_BUS_NAME`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        Ok(Outbox::new(Arc::new(Publisher::new(
            aws_sdk_eventbridge::Client::new(aws),
            eventkit::aws::required_env("EVENT_BUS_NAME")?,
        ))))
    }

    pub fn new(bus: Arc<dyn Publish<Event>>) -> Self {
        Outbox { bus }
    }

    /// Publishes the saga's events of a stream batch, in order, in as few PutEvents calls
    /// as the limits allow. On failure Lambda retries from the earliest unpublished record.
    pub async fn relay(&self, batch: StreamBatch) -> DynamoDbEventResponse {
        let mut pending: Vec<(String, Envelope<Event>)> = Vec::new();
        let mut stop_at = None;
        for change in inserted_events(batch) {
            let decoded = change.event.map_err(|e| e.to_string()).and_then(|stored| {
                // Only decisions go out; the facts the saga recorded came from the bus.
                if stored.source != sources::SAGA {
                    return Ok(None);
                }
                stored.event::<Event>().map(Some).map_err(|e| e.to_string())
            });
            match decoded {
                Ok(Some(event)) => pending.push((change.sequence_number, event)),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(sequence_number = %change.sequence_number, %error, "unreadable stored event");
                    stop_at = Some(change.sequence_number);
                    break;
                }
            }
        }
        let events: Vec<Envelope<Event>> = pending.iter().map(|(_, e)| e.clone()).collect();
        match self.bus.publish(&events).await {
            Ok(()) => {
                for (_, e) in &pending {
                    tracing::info!(event_id = %e.metadata.event_id, event_type = %e.data.detail_type(),
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
    use super::*;
    use contracts::{Currency, OrderConfirmed, PaymentProcessed, RefundPaymentRequested};
    use eventkit::testing::MemoryBus;
    use eventkit::StoredEvent;

    fn eur() -> Currency {
        Currency::try_from("EUR".to_string()).unwrap()
    }

    fn paid() -> PaymentProcessed {
        PaymentProcessed {
            order_id: "o1".into(),
            payment_id: "pay_1".into(),
            amount: 2500,
            currency: eur(),
        }
    }

    fn confirmed() -> OrderConfirmed {
        OrderConfirmed {
            order_id: "o1".into(),
            customer_id: "c1".into(),
            customer_email: "a@example.com".into(),
            total: 2500,
            currency: eur(),
            payment_id: "pay_1".into(),
            reservation_id: "res_1".into(),
            lines: vec![],
        }
    }

    fn refund() -> RefundPaymentRequested {
        RefundPaymentRequested {
            order_id: "o1".into(),
            reason: "fraud-suspected".into(),
        }
    }

    /// The saga's append of a payment result and two decisions, as the store holds it.
    fn stream() -> Vec<Envelope<Event>> {
        let fact = Envelope::new(Event::from(paid()));
        vec![
            Envelope::caused_by(&fact.metadata, "o1", Event::from(confirmed())),
            fact.clone(),
            Envelope::caused_by(&fact.metadata, "o1", Event::from(refund())),
        ]
    }

    /// The stream records of `events` at versions 1.., with sequence numbers `seq1`...
    fn batch(events: &[Envelope<Event>]) -> StreamBatch {
        let records: Vec<_> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let raw = e.to_raw();
                let version = i as u64 + 1;
                let stored = StoredEvent::new(
                    &contracts::order_stream("o1"),
                    version,
                    &raw,
                    &raw.metadata.occurred_at,
                );
                let image: serde_dynamo::Item = serde_dynamo::to_item(&stored).unwrap();
                serde_json::json!({
                    "eventID": version.to_string(), "eventName": "INSERT", "awsRegion": "us-east-1",
                    "dynamodb": {"Keys": {}, "NewImage": image, "SequenceNumber": format!("seq{version}"),
                                 "SizeBytes": 1, "StreamViewType": "NEW_IMAGE"}
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    fn failures(response: &DynamoDbEventResponse) -> Vec<&str> {
        response
            .batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.as_deref())
            .collect()
    }

    #[tokio::test]
    async fn publishes_only_the_sagas_decisions_as_stored() {
        let bus = MemoryBus::new();
        let outbox = Outbox::new(bus.clone());
        let stream = stream();
        let response = outbox.relay(batch(&stream)).await;
        assert!(failures(&response).is_empty());
        assert_eq!(
            bus.events(),
            vec![Event::from(confirmed()), Event::from(refund())]
        );
        assert_eq!(
            bus.published(),
            vec![stream[0].clone(), stream[2].clone()],
            "ids, correlation and source as stored"
        );
    }

    #[tokio::test]
    async fn a_failed_publish_is_retried_from_the_first_unpublished_record_with_the_same_ids() {
        let bus = MemoryBus::new();
        let outbox = Outbox::new(bus.clone());
        let stream = stream();
        bus.fail_next(1);
        let response = outbox.relay(batch(&stream)).await;
        assert_eq!(failures(&response), vec!["seq1"]);
        assert!(bus.published().is_empty());
        // Lambda redelivers the batch from that record.
        let response = outbox.relay(batch(&stream)).await;
        assert!(failures(&response).is_empty());
        assert_eq!(bus.published(), vec![stream[0].clone(), stream[2].clone()]);
    }

    #[tokio::test]
    async fn a_redelivered_batch_publishes_the_same_events_again() {
        // Consumers' idempotency absorbs the copy: it carries the stored id.
        let bus = MemoryBus::new();
        let outbox = Outbox::new(bus.clone());
        let stream = stream();
        outbox.relay(batch(&stream)).await;
        outbox.relay(batch(&stream)).await;
        let ids: Vec<String> = bus
            .published()
            .iter()
            .map(|e| e.metadata.event_id.clone())
            .collect();
        assert_eq!(ids[..2], ids[2..]);
    }

    #[tokio::test]
    async fn an_unreadable_decision_stops_the_batch_after_publishing_what_came_before() {
        let bus = MemoryBus::new();
        let outbox = Outbox::new(bus.clone());
        let stream = stream();
        let mut records = batch(&stream);
        records.records[2].change.new_image.insert(
            "data".into(),
            serde_dynamo::AttributeValue::M(Default::default()),
        );
        let response = outbox.relay(records).await;
        assert_eq!(failures(&response), vec!["seq3"]);
        assert_eq!(bus.published(), vec![stream[0].clone()]);
    }
}
