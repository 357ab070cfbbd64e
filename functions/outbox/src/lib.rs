//! The transactional outbox of the order saga. The saga appends its decisions to the event
//! store; this function publishes them to the bus, with their stored ids, at least once.
//!
//! # Why no stored decision is lost
//!
//! The saga's store writes each decision *marked unpublished* (`unpublished` attribute, a
//! sparse GSI of the same name: `eventkit::store`, "Unpublished events") in the very
//! transaction that stores it, so a stored decision is a marked one. The mark is cleared
//! only after EventBridge accepted the decision's entry. Two paths publish:
//!
//! - **The relay** (the fast path), fed by the store's DynamoDB stream: publishes the batch's
//!   decisions in order, then clears their marks. A failed publish reports the first
//!   unpublished record, so Lambda retries from there.
//! - **The sweep**, run by a scheduled rule every minute: lists, shard by shard, the marks
//!   older than a threshold (`OUTBOX_SWEEP_MIN_AGE_SECONDS`, a few minutes on AWS: longer
//!   than the relay normally takes, so the sweep rarely publishes a copy), publishes those
//!   decisions as stored and clears their marks. It writes an EMF document (`swept`,
//!   `unpublished`, `oldestUnpublishedAge`) that the template alarms on.
//!
//! Whatever the stream does (retries exhausted, records past the stream's 24-hour
//! retention, a record this function cannot read), a decision that stays unpublished stays
//! marked, and the sweep publishes it once EventBridge takes it again. So the stream's
//! retries only decide how fast a decision goes out, not whether: the template keeps them
//! few, so that one failing record does not hold the shard's other orders back for long.
//!
//! Either path can publish a decision twice (a crash between publish and clear, a
//! redelivered batch, the sweep racing a slow relay); every copy carries the stored id, so
//! consumers' idempotency absorbs it. The bus never sees an event the store does not have.
//!
//! What cannot be published stays marked and is reported, never dropped silently: an
//! unreadable stored decision, or one over the PutEvents entry limit
//! ([`PublishError::EntryTooLarge`]). The relay skips such a record (error log) rather than
//! failing the batch, which would stop every other order of the shard for all the stream's
//! retries, and the sweep counts it in `unpublished` every minute until someone acts, so
//! the age alarm fires. Only the entries the bus accepted are counted as published: the
//! publisher refuses a call with a too-large entry before sending anything, so the relay
//! takes the entry out and publishes the others again.
//!
//! Stored decisions are read as `contracts::Event`s (upcast, not validated again: they were
//! checked when the saga wrote them) and published through the [`Publish`] port with their
//! stored metadata, so the event on the bus is the event in the store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::Event as StreamBatch;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use chrono::{DateTime, Utc};
use contracts::{sources, Event};
use eventkit::publisher::PublishError;
use eventkit::store::unpublished_shards;
use eventkit::stream::{inserted_events, retry_from};
use eventkit::{Envelope, EventStore, Mark, Payload, Publish, Publisher, StoreError, StoredEvent};
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

/// The port to the store's unpublished marks (adapter: [`EventStore`]; in memory in tests).
#[async_trait]
pub trait UnpublishedDecisions: Send + Sync {
    /// At most `limit` marks of `shard` recorded before `before`, oldest first, after `after`.
    async fn marked_before(
        &self,
        shard: &str,
        before: DateTime<Utc>,
        after: Option<&Mark>,
        limit: i32,
    ) -> Result<Vec<Mark>, StoreError>;
    /// The marked event itself.
    async fn read(&self, stream_id: &str, version: u64) -> Result<Option<StoredEvent>, StoreError>;
    /// Clears the mark once the event was published (no-op when already clear).
    async fn clear(&self, stream_id: &str, version: u64) -> Result<(), StoreError>;
}

#[async_trait]
impl UnpublishedDecisions for EventStore {
    async fn marked_before(
        &self,
        shard: &str,
        before: DateTime<Utc>,
        after: Option<&Mark>,
        limit: i32,
    ) -> Result<Vec<Mark>, StoreError> {
        self.unpublished_before(shard, before, after, limit).await
    }

    async fn read(&self, stream_id: &str, version: u64) -> Result<Option<StoredEvent>, StoreError> {
        self.read_event(stream_id, version).await
    }

    async fn clear(&self, stream_id: &str, version: u64) -> Result<(), StoreError> {
        self.clear_unpublished(stream_id, version).await
    }
}

/// How the sweep runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepConfig {
    /// Marks younger than this are left to the relay.
    pub min_age: Duration,
    /// Marks read per query (one page).
    pub page: i32,
    /// No new page is started after this long, so one run ends well within the timeout;
    /// the next run (a minute later) goes on.
    pub budget: Duration,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            min_age: Duration::from_secs(300),
            page: 100,
            budget: Duration::from_secs(30),
        }
    }
}

/// What one sweep found and did.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Marks older than the threshold that the sweep found.
    pub unpublished: u64,
    /// Of those, published now and cleared.
    pub swept: u64,
    /// Age in seconds of the oldest mark found (0 when none).
    pub oldest_unpublished_age: f64,
    /// Queries or reads that failed (logged); their shards are looked at again next run.
    pub errors: u64,
}

impl SweepReport {
    /// The EMF document of this sweep, in `namespace`, dimension `service` = `outbox`
    /// (CloudWatch Embedded Metric Format specification:
    /// https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
    /// Written every run, zeros included, so that the alarms see their metric go back down.
    pub fn to_emf(&self, namespace: &str, timestamp_ms: i64) -> Value {
        serde_json::json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [["service"]],
                    "Metrics": [
                        {"Name": "unpublished", "Unit": "Count"},
                        {"Name": "swept", "Unit": "Count"},
                        {"Name": "oldestUnpublishedAge", "Unit": "Seconds"},
                    ],
                }]
            },
            "service": "outbox",
            "unpublished": self.unpublished,
            "swept": self.swept,
            "oldestUnpublishedAge": self.oldest_unpublished_age,
        })
    }
}

#[derive(Debug, Error)]
pub enum OutboxError {
    /// Neither a stream batch nor a scheduled event: a wiring mistake, not data to retry.
    #[error("not a DynamoDB stream batch nor a scheduled event: {0}")]
    UnknownPayload(String),
    #[error("unreadable stream batch: {0}")]
    BadBatch(String),
}

pub struct Outbox {
    bus: Arc<dyn Publish<Event>>,
    marks: Arc<dyn UnpublishedDecisions>,
    sweep: SweepConfig,
}

/// What one publish of several decisions did, by index into them.
#[derive(Debug, Default)]
struct Outcome {
    published: Vec<usize>,
    /// Not accepted now (throttled, denied, unavailable): retried later. The rest (over
    /// the entry limit: never publishable as they are) are neither: left marked, logged.
    failed: Vec<usize>,
}

impl Outbox {
    /// Reads `EVENT_BUS_NAME`, `EVENT_STORE_TABLE` and `OUTBOX_SWEEP_MIN_AGE_SECONDS`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        let min_age: u64 = eventkit::aws::required_env("OUTBOX_SWEEP_MIN_AGE_SECONDS")?
            .parse()
            .map_err(|e| format!("OUTBOX_SWEEP_MIN_AGE_SECONDS: {e}"))?;
        Ok(Outbox::new(
            Arc::new(Publisher::new(
                aws_sdk_eventbridge::Client::new(aws),
                eventkit::aws::required_env("EVENT_BUS_NAME")?,
            )),
            Arc::new(EventStore::new(
                aws_sdk_dynamodb::Client::new(aws),
                eventkit::aws::required_env("EVENT_STORE_TABLE")?,
            )),
            SweepConfig {
                min_age: Duration::from_secs(min_age),
                ..SweepConfig::default()
            },
        ))
    }

    pub fn new(
        bus: Arc<dyn Publish<Event>>,
        marks: Arc<dyn UnpublishedDecisions>,
        sweep: SweepConfig,
    ) -> Self {
        Outbox { bus, marks, sweep }
    }

    /// One invocation: a DynamoDB stream batch goes to [`Outbox::relay`], the scheduled
    /// rule's event (`source` `aws.events`, `detail-type` `Scheduled Event`) to
    /// [`Outbox::sweep`]. One function for both, so the one role that may publish the
    /// saga's decisions is this one.
    pub async fn handle(&self, payload: Value, namespace: &str) -> Result<Value, OutboxError> {
        if payload.get("Records").is_some() {
            let batch: StreamBatch = serde_json::from_value(payload)
                .map_err(|e| OutboxError::BadBatch(e.to_string()))?;
            let response = self.relay(batch).await;
            return serde_json::to_value(response)
                .map_err(|e| OutboxError::BadBatch(e.to_string()));
        }
        let scheduled = payload.get("source").and_then(Value::as_str) == Some("aws.events")
            && payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event");
        if !scheduled {
            let mut shown = payload.to_string();
            shown.truncate(200);
            return Err(OutboxError::UnknownPayload(shown));
        }
        let report = self.sweep(Utc::now()).await;
        println!(
            "{}",
            report.to_emf(namespace, Utc::now().timestamp_millis())
        );
        serde_json::to_value(&report).map_err(|e| OutboxError::UnknownPayload(e.to_string()))
    }

    /// Publishes the saga's events of a stream batch, in order, in as few PutEvents calls
    /// as the limits allow, and clears their marks. On a failed publish Lambda retries from
    /// the earliest unpublished record; unreadable and too-large decisions are skipped,
    /// left marked for the sweep to report (module doc).
    pub async fn relay(&self, batch: StreamBatch) -> DynamoDbEventResponse {
        let mut pending: Vec<(String, StoredEvent, Envelope<Event>)> = Vec::new();
        for change in inserted_events(batch) {
            let stored = match change.event {
                Ok(stored) => stored,
                Err(error) => {
                    tracing::error!(sequence_number = %change.sequence_number, %error,
                        "unreadable stream record skipped; a decision in it stays marked for the sweep");
                    continue;
                }
            };
            // Only decisions go out; the facts the saga recorded came from the bus.
            if stored.source != sources::SAGA {
                continue;
            }
            match stored.event::<Event>() {
                Ok(event) => pending.push((change.sequence_number, stored, event)),
                Err(error) => {
                    tracing::error!(sequence_number = %change.sequence_number,
                        event_id = %stored.event_id, stream_id = %stored.stream_id, %error,
                        "unreadable stored decision skipped; it stays marked and the sweep reports it");
                }
            }
        }
        let events: Vec<Envelope<Event>> = pending.iter().map(|(_, _, e)| e.clone()).collect();
        let outcome = publish(self.bus.as_ref(), &events).await;
        let published: Vec<&StoredEvent> =
            outcome.published.iter().map(|&i| &pending[i].1).collect();
        self.clear(&published).await;
        for &i in &outcome.published {
            let e = &pending[i].2;
            tracing::info!(event_id = %e.metadata.event_id, event_type = %e.data.detail_type(),
                correlation_id = %e.metadata.correlation_id, "published");
        }
        let first_failed = outcome.failed.iter().min().map(|&i| pending[i].0.clone());
        if first_failed.is_some() {
            tracing::error!(
                failed = outcome.failed.len(),
                "publishing failed; Lambda retries from the first unpublished record"
            );
        }
        retry_from(first_failed)
    }

    /// Publishes every decision marked for longer than the threshold, shard by shard, and
    /// clears the marks of those the bus accepted.
    pub async fn sweep(&self, now: DateTime<Utc>) -> SweepReport {
        let started = tokio::time::Instant::now();
        let before = now
            - chrono::Duration::from_std(self.sweep.min_age).unwrap_or(chrono::Duration::zero());
        let mut report = SweepReport::default();
        for shard in unpublished_shards() {
            let mut after: Option<Mark> = None;
            loop {
                if started.elapsed() >= self.sweep.budget {
                    tracing::warn!("sweep budget spent; the next run goes on");
                    return report;
                }
                let marks = match self
                    .marks
                    .marked_before(&shard, before, after.as_ref(), self.sweep.page)
                    .await
                {
                    Ok(marks) => marks,
                    Err(error) => {
                        tracing::error!(%shard, %error, "listing unpublished decisions failed");
                        report.errors += 1;
                        break;
                    }
                };
                let full_page = marks.len() as i32 >= self.sweep.page;
                self.sweep_page(&marks, now, &mut report).await;
                match marks.into_iter().last() {
                    Some(last) if full_page => after = Some(last),
                    _ => break,
                }
            }
        }
        report
    }

    async fn sweep_page(&self, marks: &[Mark], now: DateTime<Utc>, report: &mut SweepReport) {
        let mut found: Vec<(StoredEvent, Envelope<Event>)> = Vec::new();
        for mark in marks {
            report.unpublished += 1;
            let age = (now - mark.recorded_at).num_milliseconds() as f64 / 1000.0;
            report.oldest_unpublished_age = report.oldest_unpublished_age.max(age);
            let stored = match self.marks.read(&mark.stream_id, mark.version).await {
                Ok(Some(stored)) => stored,
                Ok(None) => {
                    tracing::error!(stream_id = %mark.stream_id, version = mark.version,
                        "a mark without its event");
                    report.errors += 1;
                    continue;
                }
                Err(error) => {
                    tracing::error!(stream_id = %mark.stream_id, version = mark.version, %error,
                        "reading a marked decision failed");
                    report.errors += 1;
                    continue;
                }
            };
            match stored.event::<Event>() {
                Ok(event) => found.push((stored, event)),
                Err(error) => tracing::error!(stream_id = %mark.stream_id,
                    version = mark.version, event_id = %stored.event_id, %error,
                    "unreadable stored decision: it cannot be published and stays marked"),
            }
        }
        let events: Vec<Envelope<Event>> = found.iter().map(|(_, e)| e.clone()).collect();
        let outcome = publish(self.bus.as_ref(), &events).await;
        let published: Vec<&StoredEvent> = outcome.published.iter().map(|&i| &found[i].0).collect();
        self.clear(&published).await;
        for stored in &published {
            // A warning: the relay should have published it minutes ago.
            tracing::warn!(event_id = %stored.event_id, event_type = %stored.event_type,
                stream_id = %stored.stream_id, recorded_at = %stored.recorded_at,
                correlation_id = %stored.metadata.correlation_id, "published by the sweep");
        }
        report.swept += published.len() as u64;
        if !outcome.failed.is_empty() {
            tracing::error!(
                failed = outcome.failed.len(),
                "the sweep could not publish; the next run tries again"
            );
        }
    }

    /// Clears the marks of published decisions, concurrently. A clear that fails leaves
    /// the mark: the sweep publishes that decision again later (a copy, same id), which is
    /// why a failure here fails nothing.
    async fn clear(&self, published: &[&StoredEvent]) {
        let results = futures::future::join_all(
            published
                .iter()
                .map(|e| self.marks.clear(&e.stream_id, e.version)),
        )
        .await;
        for (e, result) in published.iter().zip(results) {
            if let Err(error) = result {
                tracing::warn!(event_id = %e.event_id, stream_id = %e.stream_id, %error,
                    "published, but its mark stays; the sweep will publish it again");
            }
        }
    }
}

/// Publishes `events` in order and says which the bus accepted. The publisher refuses a
/// call holding an entry over the PutEvents limit before sending anything, so that entry
/// is taken out and the rest published again; when entries fail, the others were accepted
/// (the publisher retries only the failed ones).
async fn publish(bus: &dyn Publish<Event>, events: &[Envelope<Event>]) -> Outcome {
    let mut left: Vec<usize> = (0..events.len()).collect();
    loop {
        if left.is_empty() {
            return Outcome::default();
        }
        let batch: Vec<Envelope<Event>> = left.iter().map(|&i| events[i].clone()).collect();
        match bus.publish(&batch).await {
            Ok(()) => {
                return Outcome {
                    published: left,
                    failed: vec![],
                }
            }
            Err(PublishError::EntryTooLarge {
                event_id,
                detail_type,
                size,
                limit,
            }) => {
                let Some(at) = left
                    .iter()
                    .position(|&i| events[i].metadata.event_id == event_id)
                else {
                    // Not one of ours: nothing can be told apart; all of them wait.
                    tracing::error!(%event_id, "publishing refused an entry that is not in the call");
                    return Outcome {
                        published: vec![],
                        failed: left,
                    };
                };
                tracing::error!(%event_id, %detail_type, size, limit,
                    "a decision over the PutEvents limit cannot be published; it stays marked");
                left.remove(at);
            }
            Err(PublishError::NotPublished { failed, .. }) => {
                let failed_ids: HashSet<&str> =
                    failed.iter().map(|f| f.event_id.as_str()).collect();
                let (failed, published) = left
                    .into_iter()
                    .partition(|&i| failed_ids.contains(events[i].metadata.event_id.as_str()));
                return Outcome { published, failed };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{Currency, OrderConfirmed, PaymentProcessed, RefundPaymentRequested};
    use eventkit::store::unpublished_shard;
    use eventkit::testing::MemoryBus;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

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

    fn confirmed(lines: usize) -> OrderConfirmed {
        OrderConfirmed {
            order_id: "o1".into(),
            customer_id: "c1".into(),
            customer_email: "a@example.com".into(),
            total: 2500,
            currency: eur(),
            payment_id: "pay_1".into(),
            reservation_id: "res_1".into(),
            lines: (0..lines)
                .map(|i| contracts::StockLine {
                    sku: format!("SKU-{i:0>60}"),
                    quantity: 1,
                })
                .collect(),
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
            Envelope::caused_by(&fact.metadata, "o1", Event::from(confirmed(0))),
            fact.clone(),
            Envelope::caused_by(&fact.metadata, "o1", Event::from(refund())),
        ]
    }

    fn stored(events: &[Envelope<Event>], recorded_at: DateTime<Utc>) -> Vec<StoredEvent> {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                StoredEvent::new(
                    &contracts::order_stream("o1"),
                    i as u64 + 1,
                    &e.to_raw(),
                    &recorded_at,
                )
            })
            .collect()
    }

    /// The stream records of `events` at versions 1.., with sequence numbers `seq1`...
    fn batch(events: &[Envelope<Event>]) -> StreamBatch {
        let records: Vec<_> = stored(events, Utc::now())
            .iter()
            .map(|stored| {
                let image: serde_dynamo::Item = serde_dynamo::to_item(stored).unwrap();
                serde_json::json!({
                    "eventID": stored.version.to_string(), "eventName": "INSERT", "awsRegion": "us-east-1",
                    "dynamodb": {"Keys": {}, "NewImage": image, "SequenceNumber": format!("seq{}", stored.version),
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

    /// The store's marks in memory, as the `unpublished` index lists them: the saga's
    /// events of each appended stream, marked until cleared.
    #[derive(Default)]
    struct MemoryMarks {
        events: Mutex<BTreeMap<(String, u64), (StoredEvent, bool)>>,
        fail_reads: Mutex<bool>,
    }

    impl MemoryMarks {
        fn with(events: &[StoredEvent]) -> Arc<Self> {
            let marks = MemoryMarks::default();
            for e in events {
                let marked = e.source == sources::SAGA;
                marks
                    .events
                    .lock()
                    .unwrap()
                    .insert((e.stream_id.clone(), e.version), (e.clone(), marked));
            }
            Arc::new(marks)
        }

        fn marked(&self) -> Vec<String> {
            let events = self.events.lock().unwrap();
            events
                .values()
                .filter(|(_, marked)| *marked)
                .map(|(e, _)| e.event_id.clone())
                .collect()
        }
    }

    #[async_trait]
    impl UnpublishedDecisions for MemoryMarks {
        async fn marked_before(
            &self,
            shard: &str,
            before: DateTime<Utc>,
            after: Option<&Mark>,
            limit: i32,
        ) -> Result<Vec<Mark>, StoreError> {
            let cutoff = eventkit::envelope::format_time(&before);
            let mut marks: Vec<Mark> = self
                .events
                .lock()
                .unwrap()
                .values()
                .filter(|(e, marked)| {
                    *marked
                        && unpublished_shard(&e.stream_id) == shard
                        && e.time_key < cutoff
                        && after.is_none_or(|a| e.time_key > a.time_key)
                })
                .map(|(e, _)| Mark {
                    stream_id: e.stream_id.clone(),
                    version: e.version,
                    recorded_at: DateTime::parse_from_rfc3339(&e.recorded_at)
                        .unwrap()
                        .with_timezone(&Utc),
                    time_key: e.time_key.clone(),
                })
                .collect();
            marks.sort_by(|a, b| a.time_key.cmp(&b.time_key));
            marks.truncate(limit as usize);
            Ok(marks)
        }

        async fn read(
            &self,
            stream_id: &str,
            version: u64,
        ) -> Result<Option<StoredEvent>, StoreError> {
            if *self.fail_reads.lock().unwrap() {
                return Err(StoreError::Dynamo(eventkit::DynamoError::Unavailable(
                    "throttled on purpose".into(),
                )));
            }
            let events = self.events.lock().unwrap();
            Ok(events
                .get(&(stream_id.to_string(), version))
                .map(|(e, _)| e.clone()))
        }

        async fn clear(&self, stream_id: &str, version: u64) -> Result<(), StoreError> {
            if let Some((_, marked)) = self
                .events
                .lock()
                .unwrap()
                .get_mut(&(stream_id.to_string(), version))
            {
                *marked = false;
            }
            Ok(())
        }
    }

    /// The Publisher's refusal of an entry over the limit: the whole call, nothing sent.
    struct RefusingTooLarge(Arc<MemoryBus<Event>>);

    #[async_trait]
    impl Publish<Event> for RefusingTooLarge {
        async fn publish(&self, events: &[Envelope<Event>]) -> Result<(), PublishError> {
            for e in events {
                let size = e.to_raw().detail().to_string().len();
                if size > 4096 {
                    return Err(PublishError::EntryTooLarge {
                        event_id: e.metadata.event_id.clone(),
                        detail_type: e.data.detail_type().to_string(),
                        size,
                        limit: 4096,
                    });
                }
            }
            self.0.publish(events).await
        }
    }

    fn outbox(bus: Arc<dyn Publish<Event>>, marks: Arc<MemoryMarks>) -> Outbox {
        Outbox::new(
            bus,
            marks,
            SweepConfig {
                min_age: Duration::from_secs(120),
                page: 2,
                budget: Duration::from_secs(600),
            },
        )
    }

    fn ids(events: &[Envelope<Event>]) -> Vec<String> {
        events.iter().map(|e| e.metadata.event_id.clone()).collect()
    }

    #[tokio::test]
    async fn publishes_only_the_sagas_decisions_as_stored_and_clears_their_marks() {
        let bus = MemoryBus::new();
        let stream = stream();
        let marks = MemoryMarks::with(&stored(&stream, Utc::now()));
        let outbox = outbox(bus.clone(), marks.clone());
        let response = outbox.relay(batch(&stream)).await;
        assert!(failures(&response).is_empty());
        assert_eq!(
            bus.events(),
            vec![Event::from(confirmed(0)), Event::from(refund())]
        );
        assert_eq!(
            bus.published(),
            vec![stream[0].clone(), stream[2].clone()],
            "ids, correlation and source as stored"
        );
        assert!(marks.marked().is_empty());
    }

    #[tokio::test]
    async fn a_failed_publish_is_retried_from_the_first_unpublished_record_and_stays_marked() {
        let bus = MemoryBus::new();
        let stream = stream();
        let marks = MemoryMarks::with(&stored(&stream, Utc::now()));
        let outbox = outbox(bus.clone(), marks.clone());
        bus.fail_next(1);
        let response = outbox.relay(batch(&stream)).await;
        assert_eq!(failures(&response), vec!["seq1"]);
        assert!(bus.published().is_empty());
        assert_eq!(marks.marked(), ids(&[stream[0].clone(), stream[2].clone()]));
        // Lambda redelivers the batch from that record.
        let response = outbox.relay(batch(&stream)).await;
        assert!(failures(&response).is_empty());
        assert_eq!(bus.published(), vec![stream[0].clone(), stream[2].clone()]);
        assert!(marks.marked().is_empty());
    }

    #[tokio::test]
    async fn a_redelivered_batch_publishes_the_same_events_again() {
        // Consumers' idempotency absorbs the copy: it carries the stored id.
        let bus = MemoryBus::new();
        let stream = stream();
        let outbox = outbox(bus.clone(), MemoryMarks::with(&stored(&stream, Utc::now())));
        outbox.relay(batch(&stream)).await;
        outbox.relay(batch(&stream)).await;
        let ids = ids(&bus.published());
        assert_eq!(ids[..2], ids[2..]);
    }

    #[tokio::test]
    async fn an_unreadable_decision_is_skipped_and_stays_marked_the_rest_is_published() {
        let bus = MemoryBus::new();
        let stream = stream();
        let mut kept = stored(&stream, Utc::now());
        kept[2].data = serde_json::json!({});
        let marks = MemoryMarks::with(&kept);
        let outbox = outbox(bus.clone(), marks.clone());
        let mut records = batch(&stream);
        records.records[2].change.new_image.insert(
            "data".into(),
            serde_dynamo::AttributeValue::M(Default::default()),
        );
        let response = outbox.relay(records).await;
        assert!(
            failures(&response).is_empty(),
            "the shard's other orders are not held back"
        );
        assert_eq!(bus.published(), vec![stream[0].clone()]);
        assert_eq!(marks.marked(), ids(&stream[2..]));
    }

    #[tokio::test]
    async fn an_unreadable_stream_record_is_skipped() {
        let bus = MemoryBus::new();
        let stream = stream();
        let outbox = outbox(bus.clone(), MemoryMarks::with(&stored(&stream, Utc::now())));
        let mut records = batch(&stream);
        // Not a StoredEvent at all (the version is no number).
        records.records[0].change.new_image.insert(
            "version".into(),
            serde_dynamo::AttributeValue::S("x".into()),
        );
        let response = outbox.relay(records).await;
        assert!(failures(&response).is_empty());
        assert_eq!(bus.published(), vec![stream[2].clone()]);
    }

    #[tokio::test]
    async fn a_too_large_decision_does_not_count_the_ones_before_it_as_published() {
        let bus = MemoryBus::new();
        let fact = Envelope::new(Event::from(paid()));
        let stream = vec![
            Envelope::caused_by(&fact.metadata, "o1", Event::from(refund())),
            Envelope::caused_by(&fact.metadata, "o1", Event::from(confirmed(200))),
            Envelope::caused_by(&fact.metadata, "o1", Event::from(confirmed(0))),
        ];
        let marks = MemoryMarks::with(&stored(&stream, Utc::now()));
        let outbox = outbox(Arc::new(RefusingTooLarge(bus.clone())), marks.clone());
        let response = outbox.relay(batch(&stream)).await;
        assert!(failures(&response).is_empty());
        assert_eq!(
            bus.published(),
            vec![stream[0].clone(), stream[2].clone()],
            "the one before it and the one after it went out"
        );
        assert_eq!(
            marks.marked(),
            ids(&stream[1..2]),
            "only the too-large one stays marked"
        );
    }

    #[tokio::test]
    async fn the_sweep_publishes_old_marks_with_their_stored_ids_and_clears_them() {
        let bus = MemoryBus::new();
        let now = Utc::now();
        let stream = stream();
        let marks = MemoryMarks::with(&stored(&stream, now - chrono::Duration::minutes(10)));
        let outbox = outbox(bus.clone(), marks.clone());
        let report = outbox.sweep(now).await;
        assert_eq!(bus.published(), vec![stream[0].clone(), stream[2].clone()]);
        assert!(marks.marked().is_empty());
        assert_eq!((report.unpublished, report.swept, report.errors), (2, 2, 0));
        assert!((report.oldest_unpublished_age - 600.0).abs() < 1.0);
        // The next run finds nothing, and says so (the alarm's metric goes back to 0).
        bus.clear();
        let report = outbox.sweep(now).await;
        assert_eq!(report, SweepReport::default());
        assert!(bus.published().is_empty());
    }

    #[tokio::test]
    async fn the_sweep_leaves_young_marks_to_the_relay() {
        let bus = MemoryBus::new();
        let now = Utc::now();
        let marks = MemoryMarks::with(&stored(&stream(), now - chrono::Duration::seconds(30)));
        let report = outbox(bus.clone(), marks.clone()).sweep(now).await;
        assert_eq!(report.unpublished, 0);
        assert!(bus.published().is_empty());
        assert_eq!(marks.marked().len(), 2);
    }

    #[tokio::test]
    async fn a_refused_sweep_keeps_the_marks_and_the_next_run_publishes_them() {
        // EventBridge unavailable (or the role denied) for longer than the stream retries.
        let bus = MemoryBus::new();
        let now = Utc::now();
        let stream = stream();
        let marks = MemoryMarks::with(&stored(&stream, now - chrono::Duration::minutes(30)));
        let outbox = outbox(bus.clone(), marks.clone());
        bus.fail_next(1);
        let report = outbox.sweep(now).await;
        assert_eq!((report.unpublished, report.swept), (2, 0));
        assert_eq!(marks.marked().len(), 2);
        let report = outbox.sweep(now).await;
        assert_eq!(report.swept, 2);
        assert_eq!(bus.published(), vec![stream[0].clone(), stream[2].clone()]);
    }

    #[tokio::test]
    async fn the_sweep_pages_through_many_marks_of_many_orders() {
        let bus = MemoryBus::new();
        let now = Utc::now();
        let mut all = Vec::new();
        for o in 0..9 {
            let decision = Envelope::new(Event::from(refund()));
            all.push(StoredEvent::new(
                &contracts::order_stream(&format!("o{o}")),
                1,
                &decision.to_raw(),
                &(now - chrono::Duration::minutes(10 + o)),
            ));
        }
        let marks = MemoryMarks::with(&all);
        // Pages of 2: every shard with more than two marks is read in several queries.
        let report = outbox(bus.clone(), marks.clone()).sweep(now).await;
        assert_eq!(report.swept, 9);
        assert_eq!(bus.published().len(), 9);
        assert!(marks.marked().is_empty());
        assert!((report.oldest_unpublished_age - 18.0 * 60.0).abs() < 1.0);
    }

    #[tokio::test]
    async fn the_sweep_reports_what_it_cannot_publish() {
        let bus = MemoryBus::new();
        let now = Utc::now();
        let fact = Envelope::new(Event::from(paid()));
        let stream = vec![
            Envelope::caused_by(&fact.metadata, "o1", Event::from(confirmed(200))),
            Envelope::caused_by(&fact.metadata, "o1", Event::from(refund())),
        ];
        let mut kept = stored(&stream, now - chrono::Duration::minutes(10));
        let mut unreadable = StoredEvent::new(
            &kept[1].stream_id,
            3,
            &stream[1].to_raw(),
            &(now - chrono::Duration::minutes(10)),
        );
        unreadable.data = serde_json::json!({});
        kept.push(unreadable);
        let marks = MemoryMarks::with(&kept);
        let outbox = outbox(Arc::new(RefusingTooLarge(bus.clone())), marks.clone());
        let report = outbox.sweep(now).await;
        assert_eq!(bus.published(), vec![stream[1].clone()]);
        assert_eq!(
            (report.unpublished, report.swept),
            (3, 1),
            "the too-large and the unreadable one are counted every run"
        );
        assert_eq!(marks.marked().len(), 2);
        *marks.fail_reads.lock().unwrap() = true;
        assert_eq!(outbox.sweep(now).await.errors, 2);
    }

    #[tokio::test]
    async fn one_function_takes_the_stream_and_the_schedule() {
        let bus = MemoryBus::new();
        let stream = stream();
        let marks = MemoryMarks::with(&stored(&stream, Utc::now() - chrono::Duration::hours(1)));
        let outbox = outbox(bus.clone(), marks.clone());
        let scheduled = serde_json::json!({
            "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-12-03T12:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/orderflow-dev-outbox-sweep"],
            "detail": {}
        });
        let answer = outbox.handle(scheduled, "Orderflow").await.unwrap();
        assert_eq!(answer["swept"], 2);
        let batch = serde_json::to_value(batch(&stream)).unwrap();
        let answer = outbox.handle(batch, "Orderflow").await.unwrap();
        assert_eq!(answer["batchItemFailures"], serde_json::json!([]));
        assert!(matches!(
            outbox
                .handle(serde_json::json!({"detail": {}}), "Orderflow")
                .await,
            Err(OutboxError::UnknownPayload(_))
        ));
    }

    #[test]
    fn the_sweeps_metrics_are_one_emf_document() {
        let report = SweepReport {
            unpublished: 3,
            swept: 2,
            oldest_unpublished_age: 61.5,
            errors: 0,
        };
        let emf = report.to_emf("Orderflow", 1);
        assert_eq!(
            emf["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Orderflow"
        );
        assert_eq!(emf["service"], "outbox");
        assert_eq!(emf["swept"], 2);
        assert_eq!(emf["unpublished"], 3);
        assert_eq!(emf["oldestUnpublishedAge"], 61.5);
    }
}
