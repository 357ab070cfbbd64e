//! Reading the event store's DynamoDB stream: the outbox and the projector consume it.
//!
//! Stream records of one partition key arrive in order, and Lambda retries a batch from
//! the first record reported failed. So consumers handle records in order and, at the first
//! failure, report that record's sequence number: it and everything after it come again.

use std::future::Future;

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};

use crate::error::HandlerError;
use crate::store::{StoreError, StoredEvent};

/// One event inserted into the store, with the stream position to report if it fails.
#[derive(Debug, Clone)]
pub struct StoreChange {
    pub sequence_number: String,
    pub event: Result<StoredEvent, StoreError>,
}

/// The events a stream batch inserted, in stream order. Updates, removals and the store's
/// event-id guard items are skipped: they are not events.
pub fn inserted_events(batch: DynamoDbEvent) -> Vec<StoreChange> {
    batch
        .records
        .into_iter()
        .filter(|r| r.event_name == "INSERT")
        .filter(|r| r.change.new_image.get("timeBucket").is_some())
        .map(|r| {
            let sequence_number = r.change.sequence_number.clone().unwrap_or_default();
            let stream_id = r
                .change
                .new_image
                .get("streamId")
                .map(|v| format!("{v:?}"))
                .unwrap_or_default();
            let event =
                serde_dynamo::from_item(r.change.new_image).map_err(|e| StoreError::Corrupt {
                    stream_id,
                    version: 0,
                    message: e.to_string(),
                });
            StoreChange {
                sequence_number,
                event,
            }
        })
        .collect()
}

/// A response that makes Lambda retry from `sequence_number` (or succeed when `None`).
pub fn retry_from(sequence_number: Option<String>) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    if let Some(seq) = sequence_number {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(seq);
        response.batch_item_failures.push(failure);
    }
    response
}

/// The span a consumer handles `change` in: its stream position and, when it decoded, the
/// event's id, type and correlation id, so every log line about it carries them.
pub fn record_span(change: &StoreChange) -> tracing::Span {
    let span = tracing::info_span!(
        "record",
        sequence_number = %change.sequence_number,
        event_id = tracing::field::Empty,
        event_type = tracing::field::Empty,
        correlation_id = tracing::field::Empty,
    );
    if let Ok(event) = &change.event {
        span.record("event_id", event.event_id.as_str());
        span.record("event_type", event.event_type.as_str());
        span.record("correlation_id", event.metadata.correlation_id.as_str());
    }
    span
}

/// Logs that the record `span` stands for failed and where Lambda will retry from.
pub fn log_failed_record(span: &tracing::Span, error: &HandlerError) {
    tracing::error!(parent: span, reason = %error.reason, error = %error.message,
        "stream record failed; Lambda retries from it");
}

/// Runs `handler` on each inserted event in order, stopping at the first failure.
pub async fn process_in_order<F, Fut>(
    changes: Vec<StoreChange>,
    handler: F,
) -> DynamoDbEventResponse
where
    F: Fn(StoredEvent) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    for change in changes {
        let span = record_span(&change);
        let result = match change.event {
            Ok(event) => tracing::Instrument::instrument(handler(event), span.clone()).await,
            Err(e) => Err(HandlerError::from(e)),
        };
        if let Err(e) = result {
            log_failed_record(&span, &e);
            return retry_from(Some(change.sequence_number));
        }
    }
    retry_from(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> DynamoDbEvent {
        let image = |stream: &str, version: u32, id: &str| {
            serde_json::json!({
                "streamId": {"S": stream}, "version": {"N": version.to_string()},
                "eventId": {"S": id}, "eventType": {"S": "T"}, "source": {"S": "s"},
                "schemaVersion": {"N": "1"},
                "metadata": {"M": {"eventId": {"S": id}, "schemaVersion": {"N": "1"},
                    "correlationId": {"S": "c"}, "occurredAt": {"S": "2026-11-21T10:00:00Z"}}},
                "data": {"M": {"orderId": {"S": "o1"}}},
                "recordedAt": {"S": "2026-11-21T10:00:00.000Z"}, "timeBucket": {"S": "2026-11-21"},
                "timeKey": {"S": format!("2026-11-21T10:00:00.000Z#{stream}#{version}")}
            })
        };
        let record = |seq: &str, name: &str, new_image: serde_json::Value| {
            serde_json::json!({
                "eventID": seq, "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {"Keys": {}, "NewImage": new_image, "SequenceNumber": seq,
                             "SizeBytes": 1, "StreamViewType": "NEW_IMAGE"}
            })
        };
        serde_json::from_value(serde_json::json!({"Records": [
            record("1", "INSERT", image("order#o1", 1, "e1")),
            record("2", "INSERT", serde_json::json!({"streamId": {"S": "$event#order#o1#orderflow.saga#e1"}, "version": {"N": "0"}, "eventSource": {"S": "orderflow.saga"}, "contentDigest": {"S": "d"}})),
            record("3", "INSERT", image("order#o1", 2, "e2")),
            record("4", "INSERT", serde_json::json!({"streamId": {"S": "order#o1"}, "timeBucket": {"S": "x"}})),
            record("5", "INSERT", image("order#o1", 3, "e3")),
        ]}))
        .unwrap()
    }

    #[test]
    fn only_events_are_read_and_guards_skipped() {
        let changes = inserted_events(batch());
        let seqs: Vec<_> = changes.iter().map(|c| c.sequence_number.as_str()).collect();
        assert_eq!(seqs, vec!["1", "3", "4", "5"]);
        assert_eq!(changes[0].event.as_ref().unwrap().event_id, "e1");
        assert!(
            changes[2].event.is_err(),
            "a corrupt record is an error, not skipped"
        );
    }

    #[tokio::test]
    async fn stops_at_the_first_failure_and_reports_it() {
        let seen = std::sync::Mutex::new(Vec::new());
        let response = process_in_order(inserted_events(batch()), |e| {
            seen.lock().unwrap().push(e.event_id.clone());
            async { Ok(()) }
        })
        .await;
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["e1", "e2"],
            "nothing after the corrupt record"
        );
        assert_eq!(
            response.batch_item_failures[0].item_identifier.as_deref(),
            Some("4")
        );
    }
}
