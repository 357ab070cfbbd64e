//! The audit function: keeps every Orderflow event seen on the bus in the audit table
//! (`eventkit::audit`), so that `orderflow trace` can show events that live only on the
//! bus (emails, fraud verdicts) next to the event store's. Idempotent without an
//! idempotency record: an entry's key holds the event id and its content digest, so a put
//! of the same event writes the same item again, and another event reusing the id (the
//! shop front chooses its own ids) gets an entry of its own instead of overwriting it.
//!
//! Why not an EventBridge archive: an archive can only be replayed onto the bus it archives
//! ("Archiving and replaying events in Amazon EventBridge",
//! https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-archive.html); it cannot be
//! queried, so "everything with correlation id X" would mean replaying it.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::{Event, EventSet};
use eventkit::audit::{AuditEntry, AuditLog};
use eventkit::{BatchResults, DynamoError, Envelope, Handled, HandlerError, Route};

/// Every Orderflow event type, each from the source that owns it: the same closed set as
/// analytics, so a type added to the contracts is audited with only the rule to change
/// (which `routes_match_the_template` checks).
pub const ROUTES: &[Route] = Event::ROUTES;

/// Days an entry is kept when `AUDIT_RETENTION_DAYS` is not set (the template's default).
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// Where entries are written (the DynamoDB table, or memory in tests).
#[async_trait]
pub trait AuditSink: Send + Sync {
    async fn write(&self, entries: &[AuditEntry]) -> Result<(), DynamoError>;
}

#[async_trait]
impl AuditSink for AuditLog {
    async fn write(&self, entries: &[AuditEntry]) -> Result<(), DynamoError> {
        AuditLog::write(self, entries).await
    }
}

pub struct AuditService {
    sink: Arc<dyn AuditSink>,
    retention_days: u32,
}

impl AuditService {
    /// Reads `AUDIT_TABLE` and `AUDIT_RETENTION_DAYS`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        let table = eventkit::aws::required_env("AUDIT_TABLE")?;
        let retention_days = match std::env::var("AUDIT_RETENTION_DAYS") {
            Ok(days) => days
                .parse()
                .map_err(|_| format!("AUDIT_RETENTION_DAYS is not a number of days: {days}"))?,
            Err(_) => DEFAULT_RETENTION_DAYS,
        };
        Ok(AuditService::new(
            Arc::new(AuditLog::new(aws_sdk_dynamodb::Client::new(aws), table)),
            retention_days,
        ))
    }

    pub fn new(sink: Arc<dyn AuditSink>, retention_days: u32) -> Self {
        AuditService {
            sink,
            retention_days,
        }
    }

    /// Writes the batch's events together; each event gets the batch's outcome (a failed
    /// write is retried for all of them, and rewriting the ones that did land is harmless).
    /// A write refused as it can never succeed (DynamoDB's `ValidationException`: an entry
    /// over its limits) is tried again entry by entry, so that only the offending events
    /// are dead-lettered and not the up to 100 others of their batch.
    pub async fn handle(&self, events: Vec<Envelope<Event>>) -> BatchResults {
        let entries = entries(&events, self.retention_days, &Utc::now());
        let outcome = self.sink.write(&entries).await.map_err(HandlerError::from);
        match &outcome {
            Ok(()) => tracing::info!(entries = entries.len(), "events audited"),
            Err(e) => tracing::warn!(error = %e, entries = entries.len(), "audit write failed"),
        }
        if matches!(&outcome, Err(e) if e.is_permanent()) && entries.len() > 1 {
            return self.write_one_by_one(events, entries).await;
        }
        answer(events, &outcome)
    }

    async fn write_one_by_one(
        &self,
        events: Vec<Envelope<Event>>,
        entries: Vec<AuditEntry>,
    ) -> BatchResults {
        let mut results = BatchResults::with_capacity(events.len());
        for (event, entry) in events.into_iter().zip(entries) {
            let outcome = self
                .sink
                .write(std::slice::from_ref(&entry))
                .await
                .map_err(HandlerError::from);
            if let Err(e) = &outcome {
                tracing::warn!(error = %e, event_id = %entry.event_id, "audit write failed");
            }
            results.extend(answer(vec![event], &outcome));
        }
        results
    }
}

/// `outcome` for each of `events`.
fn answer(events: Vec<Envelope<Event>>, outcome: &Result<(), HandlerError>) -> BatchResults {
    events
        .into_iter()
        .map(|e| {
            let result = outcome.clone().map(|()| Handled::Processed);
            (e.metadata.event_id, result)
        })
        .collect()
}

/// The audit entries of a batch.
pub fn entries(
    events: &[Envelope<Event>],
    retention_days: u32,
    now: &DateTime<Utc>,
) -> Vec<AuditEntry> {
    events
        .iter()
        .map(|e| AuditEntry::of(&e.to_raw(), e.data.order_id(), retention_days, now))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{CustomerRegistered, EmailSent};
    use std::sync::Mutex;

    #[derive(Default)]
    struct MemorySink {
        calls: Mutex<Vec<Vec<AuditEntry>>>,
        fail: Mutex<bool>,
        /// Refuses (as DynamoDB's ValidationException) any write with an entry of this type.
        refuse_type: Mutex<Option<String>>,
    }

    #[async_trait]
    impl AuditSink for MemorySink {
        async fn write(&self, entries: &[AuditEntry]) -> Result<(), DynamoError> {
            if *eventkit::testing::lock(&self.fail) {
                return Err(DynamoError::Unavailable("throttled".into()));
            }
            if let Some(refused) = eventkit::testing::lock(&self.refuse_type).as_deref() {
                if entries.iter().any(|e| e.event_type == refused) {
                    return Err(DynamoError::Rejected("item too large".into()));
                }
            }
            eventkit::testing::lock(&self.calls).push(entries.to_vec());
            Ok(())
        }
    }

    /// A result as comparable data: handled, or (permanent, reason).
    type Outcome = Result<Handled, (bool, String)>;

    fn signup() -> Envelope<Event> {
        Envelope::new(Event::from(CustomerRegistered {
            customer_id: "cus-1".into(),
            email: "ada@example.com".into(),
            name: "Ada".into(),
        }))
    }

    fn email(order: Option<&str>) -> Envelope<Event> {
        Envelope::new(Event::from(EmailSent {
            cause_event_id: "e-0".into(),
            template: "order-confirmed".into(),
            to: "ada@example.com".into(),
            subject: "Confirmed".into(),
            message_id: "ses-1".into(),
            order_id: order.map(str::to_string),
        }))
    }

    #[test]
    fn routes_match_the_template() {
        eventkit::testing::assert_rule_matches_routes("AuditRule", ROUTES);
    }

    #[tokio::test]
    async fn a_batch_is_one_write_with_an_entry_per_event() {
        let sink = Arc::new(MemorySink::default());
        let service = AuditService::new(sink.clone(), 30);
        let batch = vec![email(Some("ord-1")), signup()];

        let results = service.handle(batch.clone()).await;

        assert!(results
            .iter()
            .all(|(_, r)| matches!(r, Ok(Handled::Processed))));
        let calls = eventkit::testing::lock(&sink.calls).clone();
        assert_eq!(calls.len(), 1, "one write for the batch");
        assert_eq!(calls[0].len(), 2);
        assert_eq!(calls[0][0].order_id.as_deref(), Some("ord-1"));
        assert_eq!(calls[0][0].event_type, "EmailSent");
        assert_eq!(calls[0][0].source, "orderflow.notification");
        assert_eq!(calls[0][1].order_id, None, "a sign-up is about no order");
    }

    #[test]
    fn events_reusing_an_id_keep_an_entry_each_and_a_redelivery_its_one() {
        // given a sign-up, another sign-up sent under its id and time, and a redelivery
        let first = signup();
        let mut reused = Envelope::new(Event::from(CustomerRegistered {
            customer_id: "cus-2".into(),
            email: "mallory@example.com".into(),
            name: "Mallory".into(),
        }));
        reused.metadata = first.metadata.clone();
        let now = Utc::now();

        // when their entries are made
        let made = entries(&[first.clone(), reused, first.clone()], 30, &now);

        // then the two events have two keys, the redelivery the first one's, and the key
        // ends with the decoded event's digest
        assert_ne!(made[0].sk, made[1].sk);
        assert_eq!(made[0].sk, made[2].sk);
        assert_eq!(eventkit::audit::distinct(&made).len(), 2);
        assert!(made[0].sk.ends_with(&first.content_digest()[..16]));
    }

    #[tokio::test]
    async fn a_refused_write_is_retried_entry_by_entry_and_only_the_offender_fails() {
        // given a sink that refuses sign-ups, and a batch with one among emails
        let sink = Arc::new(MemorySink::default());
        *eventkit::testing::lock(&sink.refuse_type) = Some("CustomerRegistered".into());
        let service = AuditService::new(sink.clone(), 30);
        let batch = vec![email(Some("ord-1")), signup(), email(None)];

        // when the batch is handled
        let results = service.handle(batch.clone()).await;

        // then the emails are written one by one and only the sign-up fails, permanently
        let outcomes: Vec<(String, Outcome)> = results
            .into_iter()
            .map(|(id, r)| (id, r.map_err(|e| (e.is_permanent(), e.reason))))
            .collect();
        let id = |i: usize| batch[i].metadata.event_id.clone();
        assert_eq!(
            outcomes,
            vec![
                (id(0), Ok(Handled::Processed)),
                (id(1), Err((true, "dynamodb-rejected".to_string()))),
                (id(2), Ok(Handled::Processed)),
            ]
        );
        let written: Vec<Vec<String>> = eventkit::testing::lock(&sink.calls)
            .iter()
            .map(|call| call.iter().map(|e| e.event_id.clone()).collect())
            .collect();
        assert_eq!(written, vec![vec![id(0)], vec![id(2)]]);
    }

    #[tokio::test]
    async fn a_failed_write_is_a_transient_failure_of_every_event_of_the_batch() {
        let sink = Arc::new(MemorySink::default());
        *eventkit::testing::lock(&sink.fail) = true;
        let service = AuditService::new(sink, 30);

        let results = service.handle(vec![email(None), email(None)]).await;

        assert_eq!(results.len(), 2);
        for (_, result) in results {
            assert!(!result.unwrap_err().is_permanent());
        }
    }
}
