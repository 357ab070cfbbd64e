//! Publishing events: the [`Publish`] port that handlers depend on, and its EventBridge
//! adapter [`Publisher`]: PutEvents in requests of at most 10 entries and 256 KiB,
//! per-entry results read, only the failed entries retried with exponential backoff and
//! full jitter, and an error naming every entry that still failed when retries run out.
//! Within an SQS batch the handlers' publishes share requests ([`crate::coalesce`]).
//! (The in-memory adapter is `testing::MemoryBus`.)

use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use thiserror::Error;
use tokio::sync::oneshot;

use crate::coalesce::{self, PublishScope};

use crate::envelope::{Envelope, RawEvent};
use crate::error::{sdk_error_text, HandlerError};
use crate::event_set::EventSet;

/// The port a handler publishes its typed events through.
#[async_trait]
pub trait Publish<E: EventSet>: Send + Sync {
    /// Publishes every event, or fails naming the ones that could not be published.
    async fn publish(&self, events: &[Envelope<E>]) -> Result<(), PublishError>;
}

#[async_trait]
impl<E: EventSet, T: PutEventsTransport> Publish<E> for Publisher<T> {
    async fn publish(&self, events: &[Envelope<E>]) -> Result<(), PublishError> {
        let raw: Vec<RawEvent> = events.iter().map(Envelope::to_raw).collect();
        self.publish_raw(&raw).await
    }
}

/// The PutEvents entry for `event` on `bus_name`.
pub fn put_events_entry(event: &RawEvent, bus_name: &str) -> PutEventsRequestEntry {
    PutEventsRequestEntry::builder()
        .event_bus_name(bus_name)
        .source(&event.source)
        .detail_type(&event.detail_type)
        .detail(event.detail().to_string())
        .time(aws_sdk_eventbridge::primitives::DateTime::from_millis(
            event.metadata.occurred_at.timestamp_millis(),
        ))
        .build()
}

/// PutEvents accepts at most this many entries per request.
pub const MAX_ENTRIES_PER_REQUEST: usize = 10;
/// PutEvents accepts at most this many bytes per request (entry sizes as AWS counts them).
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// The per-entry answer of one PutEvents call, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryResult {
    pub event_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

impl EntryResult {
    pub fn is_failure(&self) -> bool {
        self.error_code.is_some()
    }
}

/// The narrow seam between the retry logic and EventBridge. Production uses the SDK
/// client; tests can script per-entry failures that the real service (and LocalStack)
/// never produces on demand.
#[async_trait]
pub trait PutEventsTransport: Send + Sync {
    async fn put_events(
        &self,
        entries: Vec<PutEventsRequestEntry>,
    ) -> Result<Vec<EntryResult>, String>;
}

#[async_trait]
impl PutEventsTransport for aws_sdk_eventbridge::Client {
    async fn put_events(
        &self,
        entries: Vec<PutEventsRequestEntry>,
    ) -> Result<Vec<EntryResult>, String> {
        let out = self
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_error_text(&e))?;
        Ok(out
            .entries()
            .iter()
            .map(|e| EntryResult {
                event_id: e.event_id().map(str::to_string),
                error_code: e.error_code().map(str::to_string),
                error_message: e.error_message().map(str::to_string),
            })
            .collect())
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// An entry can never be accepted (over the size limit): permanent.
    #[error(
        "event {event_id} ({detail_type}) is {size} bytes, over the {limit}-byte PutEvents limit"
    )]
    EntryTooLarge {
        event_id: String,
        detail_type: String,
        size: usize,
        limit: usize,
    },
    /// Entries still failing after every retry: transient, so the caller's message is retried.
    #[error("{} event(s) not published after {attempts} attempts: {}", failed.len(), describe(failed))]
    NotPublished {
        attempts: u32,
        failed: Vec<FailedEntry>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    pub event_id: String,
    pub detail_type: String,
    pub error: String,
}

fn describe(failed: &[FailedEntry]) -> String {
    failed
        .iter()
        .map(|f| format!("{} ({}): {}", f.event_id, f.detail_type, f.error))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<PublishError> for HandlerError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::EntryTooLarge { .. } => HandlerError::permanent("event-too-large", e),
            PublishError::NotPublished { .. } => HandlerError::transient("publish-failed", e),
        }
    }
}

pub use crate::retry::RetryPolicy;

/// Publishes envelopes to one event bus.
pub struct Publisher<T = aws_sdk_eventbridge::Client> {
    transport: T,
    bus_name: String,
    retry: RetryPolicy,
    /// Publishes of the current batch waiting to be sent together (see [`crate::coalesce`]).
    queued: Mutex<Vec<Queued>>,
}

/// One handler's entries waiting for a shared send, and where its outcome goes.
struct Queued {
    entries: Vec<Pending>,
    outcome: oneshot::Sender<Result<(), PublishError>>,
}

impl<T: PutEventsTransport> Publisher<T> {
    pub fn new(transport: T, bus_name: impl Into<String>) -> Self {
        Publisher {
            transport,
            bus_name: bus_name.into(),
            retry: RetryPolicy::default(),
            queued: Mutex::new(Vec::new()),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn bus_name(&self) -> &str {
        &self.bus_name
    }

    /// The transport, e.g. to inspect a test double.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Publishes every event as it is (e.g. events read back from the store), or fails
    /// naming the ones that could not be published. Events are sent in order, in as few
    /// requests as the limits allow; within a batch, together with the other handlers'
    /// events ([`crate::coalesce`]).
    pub async fn publish_raw(&self, events: &[RawEvent]) -> Result<(), PublishError> {
        let entries = self.entries(events)?;
        match coalesce::current() {
            Some(scope) => self.send_together(&scope, entries).await,
            None => self.send(entries).await,
        }
    }

    /// The entries for `events`, refusing any that can never be accepted.
    fn entries(&self, events: &[RawEvent]) -> Result<Vec<Pending>, PublishError> {
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            let entry = put_events_entry(event, &self.bus_name);
            let size = entry_size(&entry);
            if size > MAX_REQUEST_BYTES {
                return Err(PublishError::EntryTooLarge {
                    event_id: event.metadata.event_id.clone(),
                    detail_type: event.detail_type.clone(),
                    size,
                    limit: MAX_REQUEST_BYTES,
                });
            }
            pending.push(Pending {
                event_id: event.metadata.event_id.clone(),
                entry,
                size,
                last_error: String::new(),
            });
        }
        Ok(pending)
    }

    fn queued(&self) -> MutexGuard<'_, Vec<Queued>> {
        // A poisoned queue still holds whole entries: pushing and taking never half-happen.
        self.queued
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `entries` and waits until they were sent, by this handler or another one,
    /// once every running handler of the batch waits to publish or has finished.
    async fn send_together(
        &self,
        scope: &PublishScope,
        entries: Vec<Pending>,
    ) -> Result<(), PublishError> {
        let (outcome, mut sent) = oneshot::channel();
        self.queued().push(Queued { entries, outcome });
        scope.wait();
        loop {
            // Enabled before looking, so a change between the look and the wait is not lost.
            let changed = scope.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if scope.all_waiting() {
                let queued = std::mem::take(&mut *self.queued());
                if !queued.is_empty() {
                    scope.served(queued.len());
                    self.send_for(queued).await;
                    scope.sent();
                }
            }
            tokio::select! {
                biased;
                result = &mut sent => {
                    return result.unwrap_or_else(|_| Err(PublishError::NotPublished {
                        attempts: 0,
                        failed: vec![],
                    }));
                }
                _ = &mut changed => {}
            }
        }
    }

    /// Sends the queued handlers' entries together and gives each handler its own outcome.
    async fn send_for(&self, queued: Vec<Queued>) {
        let handlers = queued.len();
        let mut owners = Vec::with_capacity(handlers);
        let mut all = Vec::new();
        for Queued { entries, outcome } in queued {
            owners.push((
                entries
                    .iter()
                    .map(|p| p.event_id.clone())
                    .collect::<Vec<_>>(),
                outcome,
            ));
            all.extend(entries);
        }
        let result = self.send(all).await;
        tracing::debug!(handlers, ok = result.is_ok(), "shared PutEvents sent");
        for (ids, outcome) in owners {
            let own = match &result {
                Ok(()) => Ok(()),
                Err(PublishError::NotPublished { attempts, failed }) => {
                    let failed: Vec<FailedEntry> = failed
                        .iter()
                        .filter(|f| ids.contains(&f.event_id))
                        .cloned()
                        .collect();
                    if failed.is_empty() {
                        Ok(())
                    } else {
                        Err(PublishError::NotPublished {
                            attempts: *attempts,
                            failed,
                        })
                    }
                }
                // Refused before sending (sizes are checked per handler, so not expected
                // here): every handler retries.
                Err(other) => Err(other.clone()),
            };
            // The handler is gone only if its message was abandoned; nothing to tell.
            let _ = outcome.send(own);
        }
    }

    /// Sends `pending` now, retrying failed entries.
    async fn send(&self, pending: Vec<Pending>) -> Result<(), PublishError> {
        let mut pending = pending;
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            let mut still_failing = Vec::new();
            for chunk in chunks(pending) {
                still_failing.extend(self.send_chunk(chunk).await);
            }
            pending = still_failing;
            if pending.is_empty() {
                break;
            }
            if attempt >= self.retry.max_attempts {
                return Err(PublishError::NotPublished {
                    attempts: attempt,
                    failed: pending
                        .into_iter()
                        .map(|p| FailedEntry {
                            event_id: p.event_id,
                            detail_type: p.entry.detail_type().unwrap_or_default().to_string(),
                            error: p.last_error,
                        })
                        .collect(),
                });
            }
            tracing::warn!(
                attempt,
                failed = pending.len(),
                "PutEvents entries failed; retrying them"
            );
            tokio::time::sleep(self.retry.delay(attempt)).await;
        }
        Ok(())
    }

    /// Sends one request and returns the entries that failed.
    async fn send_chunk(&self, chunk: Vec<Pending>) -> Vec<Pending> {
        let entries = chunk.iter().map(|p| p.entry.clone()).collect();
        match self.transport.put_events(entries).await {
            Err(error) => chunk
                .into_iter()
                .map(|p| Pending {
                    last_error: error.clone(),
                    ..p
                })
                .collect(),
            Ok(results) => chunk
                .into_iter()
                .enumerate()
                .filter_map(|(i, p)| match results.get(i) {
                    Some(r) if !r.is_failure() => None,
                    Some(r) => Some(Pending {
                        last_error: format!(
                            "{}: {}",
                            r.error_code.as_deref().unwrap_or("Error"),
                            r.error_message.as_deref().unwrap_or("")
                        ),
                        ..p
                    }),
                    // Fewer results than entries: treat the missing ones as failed.
                    None => Some(Pending {
                        last_error: "no result returned for entry".into(),
                        ..p
                    }),
                })
                .collect(),
        }
    }
}

struct Pending {
    event_id: String,
    entry: PutEventsRequestEntry,
    size: usize,
    last_error: String,
}

/// Splits entries into requests within both PutEvents limits, keeping order.
fn chunks(entries: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut out: Vec<Vec<Pending>> = Vec::new();
    let mut bytes = 0;
    for p in entries {
        let start_new = match out.last() {
            None => true,
            Some(current) => {
                current.len() >= MAX_ENTRIES_PER_REQUEST || bytes + p.size > MAX_REQUEST_BYTES
            }
        };
        if start_new {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += p.size;
        if let Some(current) = out.last_mut() {
            current.push(p);
        }
    }
    out
}

/// The size of an entry as EventBridge counts it: Time (14 bytes when set), Source,
/// DetailType, Detail and Resources, in UTF-8 bytes.
pub fn entry_size(entry: &PutEventsRequestEntry) -> usize {
    let mut size = if entry.time().is_some() { 14 } else { 0 };
    size += entry.source().map_or(0, str::len);
    size += entry.detail_type().map_or(0, str::len);
    size += entry.detail().map_or(0, str::len);
    size += entry.resources().iter().map(String::len).sum::<usize>();
    size
}

#[cfg(test)]
mod tests {
    //! The per-entry failures EventBridge can return (throttling, internal errors on some
    //! entries of a request) cannot be produced on demand by the real service or by
    //! LocalStack, so these tests drive the retry logic through a scripted transport.
    use super::*;
    use crate::envelope::EventMetadata;
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;
    use std::time::Duration;

    /// Fails each event id a set number of times, and records every request.
    #[derive(Default)]
    struct ScriptedTransport {
        failures_left: Mutex<HashMap<String, u32>>,
        requests: Mutex<Vec<Vec<String>>>,
        delivered: Mutex<Vec<String>>,
    }

    fn id_of(entry: &PutEventsRequestEntry) -> String {
        let detail: serde_json::Value = serde_json::from_str(entry.detail().unwrap()).unwrap();
        detail["metadata"]["eventId"].as_str().unwrap().to_string()
    }

    #[async_trait]
    impl PutEventsTransport for ScriptedTransport {
        async fn put_events(
            &self,
            entries: Vec<PutEventsRequestEntry>,
        ) -> Result<Vec<EntryResult>, String> {
            let ids: Vec<String> = entries.iter().map(id_of).collect();
            self.requests.lock().unwrap().push(ids.clone());
            let mut left = self.failures_left.lock().unwrap();
            Ok(ids
                .into_iter()
                .map(|id| match left.get_mut(&id) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        EntryResult {
                            error_code: Some("ThrottlingException".into()),
                            error_message: Some("Rate exceeded".into()),
                            ..Default::default()
                        }
                    }
                    _ => {
                        self.delivered.lock().unwrap().push(id.clone());
                        EntryResult {
                            event_id: Some(format!("eb-{id}")),
                            ..Default::default()
                        }
                    }
                })
                .collect())
        }
    }

    fn event(id: usize, detail_bytes: usize) -> RawEvent {
        RawEvent {
            source: "orderflow.test".into(),
            detail_type: "Tested".into(),
            metadata: EventMetadata {
                event_id: format!("e{id}"),
                schema_version: 1,
                correlation_id: "c".into(),
                causation_id: None,
                occurred_at: chrono::Utc::now(),
            },
            data: serde_json::json!({ "pad": "x".repeat(detail_bytes) }),
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    fn request_sizes(publisher: &Publisher<ScriptedTransport>) -> Vec<usize> {
        publisher
            .transport
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect()
    }

    /// `handlers` handlers of one batch, each running, publishing its event after
    /// `delay_ms[i]` milliseconds; returns each handler's outcome.
    async fn batch_publishing(
        publisher: &Publisher<ScriptedTransport>,
        delays_ms: &[u64],
    ) -> Vec<Result<(), PublishError>> {
        crate::coalesce::scoped(futures::future::join_all(delays_ms.iter().enumerate().map(
            |(i, delay)| async move {
                let _running = crate::coalesce::running();
                tokio::time::sleep(Duration::from_millis(*delay)).await;
                publisher.publish_raw(&[event(i, 10)]).await
            },
        )))
        .await
    }

    #[tokio::test]
    async fn the_handlers_of_a_batch_share_one_request() {
        let publisher = Publisher::new(ScriptedTransport::default(), "bus").with_retry(fast());

        let outcomes = batch_publishing(&publisher, &[0, 0, 0]).await;

        assert_eq!(outcomes, vec![Ok(()), Ok(()), Ok(())]);
        assert_eq!(request_sizes(&publisher), vec![3]);
    }

    #[tokio::test]
    async fn a_shared_send_waits_for_the_slowest_handler_still_running() {
        let publisher = Publisher::new(ScriptedTransport::default(), "bus").with_retry(fast());

        let outcomes = batch_publishing(&publisher, &[0, 30, 5]).await;

        assert_eq!(outcomes, vec![Ok(()), Ok(()), Ok(())]);
        assert_eq!(request_sizes(&publisher), vec![3]);
    }

    #[tokio::test]
    async fn a_handler_that_ends_without_publishing_releases_the_others() {
        let publisher = Publisher::new(ScriptedTransport::default(), "bus").with_retry(fast());

        let outcomes = crate::coalesce::scoped(futures::future::join(
            async {
                let _running = crate::coalesce::running();
                publisher.publish_raw(&[event(1, 10)]).await
            },
            async {
                let _running = crate::coalesce::running();
                tokio::time::sleep(Duration::from_millis(20)).await;
            },
        ))
        .await;

        assert_eq!(outcomes.0, Ok(()));
        assert_eq!(request_sizes(&publisher), vec![1]);
    }

    #[tokio::test]
    async fn each_handler_gets_the_outcome_of_its_own_entries() {
        let transport = ScriptedTransport::default();
        // e1 fails on every attempt; e0 and e2 go through.
        transport
            .failures_left
            .lock()
            .unwrap()
            .insert("e1".into(), 100);
        let publisher = Publisher::new(transport, "bus").with_retry(fast());

        let outcomes = batch_publishing(&publisher, &[0, 0, 0]).await;

        assert_eq!(outcomes[0], Ok(()));
        assert_eq!(outcomes[2], Ok(()));
        match &outcomes[1] {
            Err(PublishError::NotPublished { failed, .. }) => {
                let ids: Vec<&str> = failed.iter().map(|f| f.event_id.as_str()).collect();
                assert_eq!(ids, vec!["e1"]);
            }
            other => panic!("expected e1 not published, got {other:?}"),
        }
        let delivered: HashSet<String> = publisher
            .transport
            .delivered
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .collect();
        assert_eq!(
            delivered,
            HashSet::from(["e0".to_string(), "e2".to_string()])
        );
    }

    #[tokio::test]
    async fn outside_a_batch_each_publish_is_sent_at_once() {
        let publisher = Publisher::new(ScriptedTransport::default(), "bus").with_retry(fast());

        futures::future::join_all((0..3).map(|i| {
            let publisher = &publisher;
            async move { publisher.publish_raw(&[event(i, 10)]).await.unwrap() }
        }))
        .await;

        assert_eq!(request_sizes(&publisher), vec![1, 1, 1]);
    }

    #[tokio::test]
    async fn a_shared_send_keeps_the_request_limits() {
        let publisher = Publisher::new(ScriptedTransport::default(), "bus").with_retry(fast());

        let outcomes = batch_publishing(&publisher, &[0; 12]).await;

        assert!(outcomes.iter().all(Result::is_ok));
        assert_eq!(request_sizes(&publisher), vec![10, 2]);
    }

    #[tokio::test]
    async fn splits_into_requests_of_at_most_ten_entries() {
        let publisher = Publisher::new(ScriptedTransport::default(), "bus").with_retry(fast());
        let events: Vec<_> = (0..23).map(|i| event(i, 10)).collect();
        publisher.publish_raw(&events).await.unwrap();
        let sizes: Vec<usize> = publisher
            .transport
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![10, 10, 3]);
    }

    #[tokio::test]
    async fn splits_by_request_size() {
        let publisher = Publisher::new(ScriptedTransport::default(), "bus").with_retry(fast());
        // Three ~100 KiB events cannot share one 256 KiB request.
        let events: Vec<_> = (0..3).map(|i| event(i, 100 * 1024)).collect();
        publisher.publish_raw(&events).await.unwrap();
        let sizes: Vec<usize> = publisher
            .transport
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![2, 1]);
    }

    #[tokio::test]
    async fn retries_only_the_failed_entries() {
        let transport = ScriptedTransport::default();
        transport
            .failures_left
            .lock()
            .unwrap()
            .insert("e3".into(), 2);
        let publisher = Publisher::new(transport, "bus").with_retry(fast());
        let events: Vec<_> = (0..5).map(|i| event(i, 10)).collect();
        publisher.publish_raw(&events).await.unwrap();
        let requests = publisher.transport.requests.lock().unwrap().clone();
        assert_eq!(requests[0].len(), 5);
        assert_eq!(requests[1], vec!["e3".to_string()]);
        assert_eq!(requests[2], vec!["e3".to_string()]);
        let delivered: HashSet<_> = publisher
            .transport
            .delivered
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .collect();
        assert_eq!(delivered.len(), 5, "every event delivered exactly once");
        assert_eq!(publisher.transport.delivered.lock().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn names_each_entry_that_never_got_through() {
        let transport = ScriptedTransport::default();
        transport
            .failures_left
            .lock()
            .unwrap()
            .insert("e1".into(), 99);
        let publisher = Publisher::new(transport, "bus").with_retry(fast());
        let events: Vec<_> = (0..3).map(|i| event(i, 10)).collect();
        let err = publisher.publish_raw(&events).await.unwrap_err();
        match &err {
            PublishError::NotPublished { attempts, failed } => {
                assert_eq!(*attempts, 4);
                assert_eq!(failed.len(), 1);
                assert_eq!(failed[0].event_id, "e1");
                assert!(failed[0].error.contains("ThrottlingException"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!HandlerError::from(err).is_permanent());
    }

    #[tokio::test]
    async fn refuses_an_entry_over_the_limit() {
        let publisher = Publisher::new(ScriptedTransport::default(), "bus").with_retry(fast());
        let err = publisher
            .publish_raw(&[event(0, 300 * 1024)])
            .await
            .unwrap_err();
        assert!(matches!(err, PublishError::EntryTooLarge { .. }));
        assert!(publisher.transport.requests.lock().unwrap().is_empty());
    }
}
