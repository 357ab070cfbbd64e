//! SQS batch processing: run a per-message handler over a batch and answer with the
//! `SqsBatchResponse` that `ReportBatchItemFailures` expects.
//!
//! - Standard queues: messages run concurrently, at most `concurrency` at a time. Messages
//!   that share a sequence key ([`BatchProcessor::with_sequence_key`], for example one
//!   aggregate's id) run one after the other, so they do not race each other for the same
//!   item; a failure does not hold back the rest (a standard queue promises no order).
//! - FIFO queues: each message group runs in order; at the first failure in a group, that
//!   message and every later one of the same group are reported failed without running
//!   (SQS then redelivers them in order). Other groups go on.
//! - Permanent failures (undecodable, invalid) do not burn retries: the message goes to the
//!   dead-letter queue at once, with its reason as message attributes, and is acknowledged.
//!   If that send fails the message is reported failed instead, so nothing is dropped.
//! - The handlers of a batch share their PutEvents requests ([`crate::coalesce`]).
//! - Time budget ([`BatchProcessor::process_within`]): a record is started only while the
//!   invocation has more than its start margin left ([`crate::lambda::start_margin`]). The
//!   rest is reported in `batchItemFailures` as [`MessageOutcome::NotStarted`] (reason
//!   [`NOT_STARTED`], logged once per batch with the count), and so is every later record
//!   of its sequence key or FIFO group, so their order holds. Records already done stay
//!   done: the invocation returns its partial answer in time instead of being stopped at
//!   its deadline, which would send the whole batch back. Whole-batch handlers check the
//!   same budget between their own chunks and answer [`not_started`] for the rest.

use std::future::Future;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
use tracing::Instrument;

use crate::dead_letter::{DeadLetter, DeadLetterSink};
use crate::envelope::RawEvent;
use crate::error::HandlerError;
use crate::lambda::Invocation;
use crate::metrics::BatchMetrics;

/// The reason a record was not started: too little of the invocation's time was left to be
/// sure it would finish. Transient: SQS redelivers it, to a fresh invocation.
pub const NOT_STARTED: &str = "not-started-time-budget";

/// The answer for a record (or an event of a whole-batch handler) that was not started for
/// lack of time ([`NOT_STARTED`]).
pub fn not_started() -> HandlerError {
    HandlerError::transient(
        NOT_STARTED,
        "not started: too little of the invocation's time was left to finish it; SQS \
         redelivers it",
    )
}

/// What a handler did with a message it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Handled {
    /// The work ran.
    Processed,
    /// The message had been handled before; nothing was done again.
    Duplicate,
    /// The event is of no interest to this handler.
    Ignored,
}

/// The fate of one message in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    Handled(Handled),
    /// Sent to the dead-letter queue and acknowledged.
    DeadLettered {
        reason: String,
    },
    /// Reported in `batchItemFailures`: SQS will retry it.
    Retried {
        reason: String,
    },
    /// Not run because an earlier message of its FIFO group failed.
    Skipped,
    /// Not started because the invocation's time ran short ([`NOT_STARTED`]); reported in
    /// `batchItemFailures`, so SQS redelivers it.
    NotStarted,
}

/// The result of a batch: the response for Lambda plus per-message outcomes.
#[derive(Debug, Clone)]
pub struct BatchReport {
    pub response: SqsBatchResponse,
    pub outcomes: Vec<(String, MessageOutcome)>,
}

impl BatchReport {
    /// The report for these per-message outcomes: what SQS must retry goes into
    /// `batchItemFailures`.
    pub fn from_outcomes(outcomes: Vec<(String, MessageOutcome)>) -> Self {
        let mut response = SqsBatchResponse::default();
        for (id, outcome) in &outcomes {
            if matches!(
                outcome,
                MessageOutcome::Retried { .. }
                    | MessageOutcome::Skipped
                    | MessageOutcome::NotStarted
            ) {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id.clone();
                response.batch_item_failures.push(failure);
            }
        }
        BatchReport { response, outcomes }
    }

    pub fn metrics(&self) -> BatchMetrics {
        let mut m = BatchMetrics::default();
        for (_, outcome) in &self.outcomes {
            match outcome {
                MessageOutcome::Handled(Handled::Processed) => m.processed += 1,
                MessageOutcome::Handled(Handled::Duplicate) => m.duplicates += 1,
                MessageOutcome::Handled(Handled::Ignored) => m.ignored += 1,
                MessageOutcome::DeadLettered { .. } => m.dead_lettered += 1,
                MessageOutcome::Retried { .. }
                | MessageOutcome::Skipped
                | MessageOutcome::NotStarted => m.failed += 1,
            }
        }
        m
    }
}

/// Names the messages of a standard-queue batch that must not run at the same time.
pub type SequenceKey = Arc<dyn Fn(&RawEvent) -> Option<String> + Send + Sync>;

/// Runs handlers over SQS batches.
#[derive(Clone)]
pub struct BatchProcessor {
    concurrency: usize,
    dead_letters: Option<Arc<dyn DeadLetterSink>>,
    sequence_key: Option<SequenceKey>,
}

impl Default for BatchProcessor {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchProcessor {
    pub fn new() -> Self {
        BatchProcessor {
            concurrency: 10,
            dead_letters: None,
            sequence_key: None,
        }
    }

    /// How many messages (standard queues) or groups (FIFO) run at once.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Where permanent failures go. Without a sink they are reported failed and reach the
    /// DLQ through the queue's redrive policy after `maxReceiveCount` attempts.
    pub fn with_dead_letters(mut self, sink: Arc<dyn DeadLetterSink>) -> Self {
        self.dead_letters = Some(sink);
        self
    }

    /// Standard queues: messages whose events have the same key run one after the other, in
    /// batch order (events without a key, or undecodable ones, are not held back). Copies of
    /// one event always run one after the other.
    pub fn with_sequence_key(
        mut self,
        key: impl Fn(&RawEvent) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.sequence_key = Some(Arc::new(key));
        self
    }

    /// Decodes each message body as an EventBridge event and runs `handler` on it, with no
    /// time budget: every record is started.
    pub async fn process<F, Fut>(&self, event: SqsEvent, handler: F) -> BatchReport
    where
        F: Fn(RawEvent) -> Fut,
        Fut: Future<Output = Result<Handled, HandlerError>>,
    {
        self.run(event, None, handler).await
    }

    /// Like [`process`](Self::process), but a record is only started while `invocation`
    /// has time to start one ([`Invocation::has_time_to_start`]); the rest is reported as
    /// [`MessageOutcome::NotStarted`], as is everything after it in its sequence key or
    /// FIFO group.
    pub async fn process_within<F, Fut>(
        &self,
        event: SqsEvent,
        invocation: &Invocation,
        handler: F,
    ) -> BatchReport
    where
        F: Fn(RawEvent) -> Fut,
        Fut: Future<Output = Result<Handled, HandlerError>>,
    {
        self.run(event, Some(invocation), handler).await
    }

    async fn run<F, Fut>(
        &self,
        event: SqsEvent,
        budget: Option<&Invocation>,
        handler: F,
    ) -> BatchReport
    where
        F: Fn(RawEvent) -> Fut,
        Fut: Future<Output = Result<Handled, HandlerError>>,
    {
        let handler = &handler;
        let messages: Vec<Decoded> = event
            .records
            .into_iter()
            .map(|message| Decoded {
                event: RawEvent::from_sqs_body(message.body.as_deref().unwrap_or_default()),
                message,
            })
            .collect();
        let fifo = messages.iter().any(|d| is_fifo(&d.message));
        // FIFO: a message group runs in order. Standard: messages with one sequence key run
        // one after the other, and so do copies of one event (a producer retry or redelivery
        // landing in the same batch), so the second is a cheap duplicate hit instead of an
        // "in progress" retry.
        let groups = group_in_order(messages, |d| {
            if fifo {
                return d
                    .message
                    .attributes
                    .get("MessageGroupId")
                    .cloned()
                    .unwrap_or_default();
            }
            let sequence = match (&d.event, &self.sequence_key) {
                (Ok(event), Some(key)) => key(event),
                _ => None,
            };
            match (sequence, &d.event) {
                (Some(key), _) => format!("key:{key}"),
                (None, Ok(event)) => format!("event:{}", event.metadata.event_id),
                (None, Err(_)) => format!(
                    "message:{}",
                    d.message.message_id.as_deref().unwrap_or_default()
                ),
            }
        });
        // One publish scope per batch: the handlers' events share PutEvents requests.
        let outcomes: Vec<(String, MessageOutcome)> = crate::coalesce::scoped(
            stream::iter(groups)
                .map(|group| self.run_group(group, fifo, budget, handler))
                .buffer_unordered(self.concurrency)
                .collect::<Vec<_>>(),
        )
        .await
        .into_iter()
        .flatten()
        .collect();

        let not_started = outcomes
            .iter()
            .filter(|(_, o)| *o == MessageOutcome::NotStarted)
            .count();
        if not_started > 0 {
            // Once per batch, not per message: under load a batch may leave most of itself.
            tracing::warn!(
                reason = NOT_STARTED,
                not_started,
                messages = outcomes.len(),
                remaining_ms = budget.map(|i| i.remaining().as_millis() as u64),
                "the invocation's time ran short; messages not started are left for SQS to \
                 redeliver"
            );
        }
        BatchReport::from_outcomes(outcomes)
    }

    /// Runs a group in order. FIFO: after a message fails, the rest of the group is skipped
    /// and reported failed so that SQS redelivers them in order. With a `budget`, each
    /// message is started only while there is time to; once one is not, neither is any
    /// later one of the group (a later message must not overtake an earlier one of its key).
    async fn run_group<F, Fut>(
        &self,
        group: Vec<Decoded>,
        fifo: bool,
        budget: Option<&Invocation>,
        handler: &F,
    ) -> Vec<(String, MessageOutcome)>
    where
        F: Fn(RawEvent) -> Fut,
        Fut: Future<Output = Result<Handled, HandlerError>>,
    {
        let mut out = Vec::with_capacity(group.len());
        let mut blocked = false;
        let mut out_of_time = false;
        for item in group {
            let id = item.message.message_id.clone().unwrap_or_default();
            if blocked {
                out.push((id, MessageOutcome::Skipped));
                continue;
            }
            out_of_time = out_of_time || budget.is_some_and(|i| !i.has_time_to_start());
            if out_of_time {
                out.push((id, MessageOutcome::NotStarted));
                continue;
            }
            let outcome = self.run_one(item, handler).await;
            blocked = fifo
                && matches!(
                    outcome,
                    MessageOutcome::Retried { .. } | MessageOutcome::NotStarted
                );
            out.push((id, outcome));
        }
        out
    }

    async fn run_one<F, Fut>(&self, item: Decoded, handler: &F) -> MessageOutcome
    where
        F: Fn(RawEvent) -> Fut,
        Fut: Future<Output = Result<Handled, HandlerError>>,
    {
        let Decoded { message, event } = item;
        let span = tracing::info_span!(
            "message",
            message_id = message.message_id.as_deref().unwrap_or_default(),
            event_id = tracing::field::Empty,
            event_type = tracing::field::Empty,
            correlation_id = tracing::field::Empty,
        );
        if let Ok(event) = &event {
            span.record("event_id", event.metadata.event_id.as_str());
            span.record("event_type", event.detail_type.as_str());
            span.record("correlation_id", event.metadata.correlation_id.as_str());
        }
        async {
            let result = match event {
                Ok(event) => {
                    let _running = crate::coalesce::running();
                    handler(event).await
                }
                Err(e) => Err(HandlerError::from(e)),
            };
            match result {
                Ok(handled) => {
                    tracing::info!(outcome = ?handled, "message handled");
                    MessageOutcome::Handled(handled)
                }
                Err(e) if e.is_permanent() => self.dead_letter(&message, e).await,
                // A whole-batch handler's answer for work it did not start; logged once per
                // batch by the caller, not per message.
                Err(e) if e.reason == NOT_STARTED => MessageOutcome::NotStarted,
                Err(e) => {
                    tracing::warn!(reason = %e.reason, error = %e.message, "transient failure; SQS will retry");
                    MessageOutcome::Retried { reason: e.reason }
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn dead_letter(&self, message: &SqsMessage, error: HandlerError) -> MessageOutcome {
        let Some(sink) = &self.dead_letters else {
            tracing::error!(reason = %error.reason, error = %error.message,
                "permanent failure; no dead-letter sink, leaving it to the redrive policy");
            return MessageOutcome::Retried {
                reason: error.reason,
            };
        };
        let letter = DeadLetter::new(message, &error);
        match sink.send(&letter).await {
            Ok(()) => {
                tracing::error!(reason = %error.reason, error = %error.message,
                    "permanent failure; message moved to the dead-letter queue");
                MessageOutcome::DeadLettered {
                    reason: error.reason,
                }
            }
            Err(send_error) => {
                tracing::error!(reason = %error.reason, error = %error.message, %send_error,
                    "permanent failure and the dead-letter send failed; SQS will retry");
                MessageOutcome::Retried {
                    reason: error.reason,
                }
            }
        }
    }
}

/// A message and the result of decoding its body.
struct Decoded {
    message: SqsMessage,
    event: Result<RawEvent, crate::error::DecodeError>,
}

fn is_fifo(message: &SqsMessage) -> bool {
    message.attributes.contains_key("MessageGroupId")
        || message
            .event_source_arn
            .as_deref()
            .is_some_and(|arn| arn.ends_with(".fifo"))
}

/// Splits items by `key`, keeping the order of keys' first appearance and the order
/// within each group.
fn group_in_order<T>(items: Vec<T>, key: impl Fn(&T) -> String) -> Vec<Vec<T>> {
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut groups: Vec<Vec<T>> = Vec::new();
    for item in items {
        let k = key(&item);
        match index.get(&k) {
            Some(&i) => groups[i].push(item),
            None => {
                index.insert(k, groups.len());
                groups.push(vec![item]);
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::DeadLetterSink;
    use async_trait::async_trait;
    use std::sync::Mutex;
    use std::time::Duration;

    fn body(id: &str, data: serde_json::Value) -> String {
        serde_json::json!({
            "id": id, "detail-type": "Tested", "source": "test",
            "time": "2026-11-21T10:00:00Z", "detail": {"data": data}
        })
        .to_string()
    }

    fn message(id: &str, group: Option<&str>, body: String) -> serde_json::Value {
        let mut attributes = serde_json::json!({"ApproximateReceiveCount": "1"});
        if let Some(g) = group {
            attributes["MessageGroupId"] = g.into();
        }
        serde_json::json!({
            "messageId": id, "receiptHandle": "r", "body": body, "attributes": attributes,
            "messageAttributes": {}, "eventSource": "aws:sqs",
            "eventSourceARN": if group.is_some() { "arn:aws:sqs:us-east-1:000000000000:q.fifo" } else { "arn:aws:sqs:us-east-1:000000000000:q" },
            "awsRegion": "us-east-1"
        })
    }

    fn batch(messages: Vec<serde_json::Value>) -> SqsEvent {
        serde_json::from_value(serde_json::json!({ "Records": messages })).unwrap()
    }

    #[derive(Default)]
    struct RecordingSink {
        letters: Mutex<Vec<DeadLetter>>,
        fail: bool,
    }

    #[async_trait]
    impl DeadLetterSink for RecordingSink {
        async fn send(&self, letter: &DeadLetter) -> Result<(), String> {
            if self.fail {
                return Err("AccessDenied".into());
            }
            self.letters.lock().unwrap().push(letter.clone());
            Ok(())
        }
    }

    fn failed_ids(report: &BatchReport) -> Vec<String> {
        let mut ids: Vec<String> = report
            .response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Fails transiently for `{"fail": true}` data, permanently for `{"poison": true}`.
    async fn handler(event: RawEvent) -> Result<Handled, HandlerError> {
        if event.data["fail"] == true {
            return Err(HandlerError::transient("dependency", "table unavailable"));
        }
        if event.data["poison"] == true {
            return Err(HandlerError::permanent("invalid-data", "bad order"));
        }
        Ok(Handled::Processed)
    }

    #[tokio::test]
    async fn reports_only_the_transient_failures() {
        let event = batch(vec![
            message("m1", None, body("e1", serde_json::json!({}))),
            message("m2", None, body("e2", serde_json::json!({"fail": true}))),
            message("m3", None, body("e3", serde_json::json!({}))),
        ]);
        let report = BatchProcessor::new().process(event, handler).await;
        assert_eq!(failed_ids(&report), vec!["m2"]);
        let m = report.metrics();
        assert_eq!((m.processed, m.failed), (2, 1));
    }

    #[tokio::test]
    async fn permanent_failures_go_to_the_dead_letter_sink_with_their_reason() {
        let sink = Arc::new(RecordingSink::default());
        let event = batch(vec![
            message("m1", None, "not json at all".into()),
            message("m2", None, body("e2", serde_json::json!({"poison": true}))),
            message("m3", None, body("e3", serde_json::json!({}))),
            message("m4", None, String::new()),
        ]);
        let report = BatchProcessor::new()
            .with_dead_letters(sink.clone())
            .process(event, handler)
            .await;
        assert!(failed_ids(&report).is_empty());
        let letters = sink.letters.lock().unwrap();
        let mut reasons: Vec<_> = letters
            .iter()
            .map(|l| (l.message_id.clone(), l.reason.clone()))
            .collect();
        reasons.sort();
        assert_eq!(
            reasons,
            vec![
                ("m1".to_string(), "not-json".to_string()),
                ("m2".to_string(), "invalid-data".to_string()),
                ("m4".to_string(), "empty-body".to_string()),
            ]
        );
        assert_eq!(report.metrics().dead_lettered, 3);
    }

    #[tokio::test]
    async fn a_failed_dead_letter_send_falls_back_to_a_retry() {
        let sink = Arc::new(RecordingSink {
            fail: true,
            ..Default::default()
        });
        let event = batch(vec![message("m1", None, "{".into())]);
        let report = BatchProcessor::new()
            .with_dead_letters(sink)
            .process(event, handler)
            .await;
        assert_eq!(failed_ids(&report), vec!["m1"]);
    }

    #[tokio::test]
    async fn copies_of_one_event_in_a_batch_run_one_after_the_other() {
        let running = std::sync::atomic::AtomicUsize::new(0);
        let overlapped = std::sync::atomic::AtomicBool::new(false);
        let event = batch(vec![
            message("m1", None, body("same", serde_json::json!({}))),
            message("m2", None, body("same", serde_json::json!({}))),
        ]);
        let report = BatchProcessor::new()
            .process(event, |_e: RawEvent| async {
                use std::sync::atomic::Ordering::SeqCst;
                if running.fetch_add(1, SeqCst) > 0 {
                    overlapped.store(true, SeqCst);
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                running.fetch_sub(1, SeqCst);
                Ok(Handled::Processed)
            })
            .await;
        assert!(failed_ids(&report).is_empty());
        assert!(
            !overlapped.load(std::sync::atomic::Ordering::SeqCst),
            "copies ran concurrently"
        );
    }

    #[tokio::test]
    async fn messages_with_one_sequence_key_run_in_turn_and_a_failure_holds_nothing_back() {
        let running = Mutex::new(std::collections::HashMap::<String, usize>::new());
        let overlapped = std::sync::atomic::AtomicBool::new(false);
        let seen = Mutex::new(Vec::new());
        let event = batch(vec![
            message("a1", None, body("a1", serde_json::json!({"key": "A"}))),
            message("b1", None, body("b1", serde_json::json!({"key": "B"}))),
            message(
                "a2",
                None,
                body("a2", serde_json::json!({"key": "A", "fail": true})),
            ),
            message("a3", None, body("a3", serde_json::json!({"key": "A"}))),
            message("n1", None, body("n1", serde_json::json!({}))),
        ]);
        let report = BatchProcessor::new()
            .with_sequence_key(|e: &RawEvent| e.data["key"].as_str().map(str::to_string))
            .process(event, |e: RawEvent| {
                let running = &running;
                let overlapped = &overlapped;
                let seen = &seen;
                async move {
                    let key = e.data["key"].as_str().unwrap_or("none").to_string();
                    {
                        let mut running = running.lock().unwrap();
                        let n = running.entry(key.clone()).or_default();
                        if *n > 0 && key != "none" {
                            overlapped.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                        *n += 1;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    *running.lock().unwrap().get_mut(&key).unwrap() -= 1;
                    seen.lock().unwrap().push(e.metadata.event_id.clone());
                    handler(e).await
                }
            })
            .await;
        assert!(
            !overlapped.load(std::sync::atomic::Ordering::SeqCst),
            "two messages of one key ran at once"
        );
        assert_eq!(failed_ids(&report), vec!["a2"], "a3 still ran");
        let order_a: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|id| id.starts_with('a'))
            .cloned()
            .collect();
        assert_eq!(order_a, vec!["a1", "a2", "a3"]);
    }

    /// A clock the test moves by hand, in epoch milliseconds.
    fn manual_clock(start_ms: u64) -> (Arc<std::sync::atomic::AtomicU64>, crate::lambda::Clock) {
        let now = Arc::new(std::sync::atomic::AtomicU64::new(start_ms));
        let read = now.clone();
        let clock: crate::lambda::Clock =
            Arc::new(move || read.load(std::sync::atomic::Ordering::SeqCst));
        (now, clock)
    }

    /// A clock that reads `script` in turn, then its last value for ever.
    fn scripted_clock(script: Vec<u64>) -> crate::lambda::Clock {
        let script = Mutex::new(std::collections::VecDeque::from(script));
        Arc::new(move || {
            let mut script = script.lock().unwrap();
            if script.len() > 1 {
                script.pop_front().unwrap()
            } else {
                script.front().copied().unwrap_or_default()
            }
        })
    }

    fn outcome_of<'a>(report: &'a BatchReport, id: &str) -> &'a MessageOutcome {
        &report
            .outcomes
            .iter()
            .find(|(m, _)| m == id)
            .expect("an outcome per message")
            .1
    }

    #[tokio::test]
    async fn a_batch_whose_deadline_is_near_starts_nothing_and_reports_every_message() {
        // given an invocation with 500 ms left: less than the 1 s floor of the margin
        let (_, clock) = manual_clock(1_000_000);
        let invocation = Invocation::with_remaining_on(Duration::from_millis(500), clock);
        let sink = Arc::new(RecordingSink::default());
        let started = std::sync::atomic::AtomicUsize::new(0);
        let event = batch(vec![
            message("m1", None, body("e1", serde_json::json!({}))),
            message("m2", None, body("e2", serde_json::json!({"key": "A"}))),
            message("m3", None, "not json at all".into()),
        ]);

        // when the batch is processed within it
        let report = BatchProcessor::new()
            .with_dead_letters(sink.clone())
            .with_sequence_key(|e: &RawEvent| e.data["key"].as_str().map(str::to_string))
            .process_within(event, &invocation, |e: RawEvent| {
                started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                handler(e)
            })
            .await;

        // then nothing ran, not even a dead-letter send, and every message is reported
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(sink.letters.lock().unwrap().is_empty());
        assert_eq!(failed_ids(&report), vec!["m1", "m2", "m3"]);
        assert!(report
            .outcomes
            .iter()
            .all(|(_, o)| *o == MessageOutcome::NotStarted));
        assert_eq!(report.metrics().failed, 3);
    }

    #[tokio::test]
    async fn a_batch_whose_time_runs_out_midway_reports_exactly_the_messages_not_started() {
        // given 10 s left (a 2 s margin), and messages that take 3 s each, one at a time
        let (now, clock) = manual_clock(1_000_000);
        let invocation = Invocation::with_remaining_on(Duration::from_secs(10), clock);
        assert_eq!(invocation.start_margin(), Duration::from_secs(2));
        let seen = Mutex::new(Vec::new());
        let event = batch(
            (1..=5)
                .map(|i| {
                    message(
                        &format!("m{i}"),
                        None,
                        body(&format!("e{i}"), serde_json::json!({})),
                    )
                })
                .collect(),
        );

        // when the batch is processed
        let report = BatchProcessor::new()
            .with_concurrency(1)
            .process_within(event, &invocation, |e: RawEvent| {
                seen.lock().unwrap().push(e.metadata.event_id.clone());
                now.fetch_add(3_000, std::sync::atomic::Ordering::SeqCst);
                handler(e)
            })
            .await;

        // then the first three started (10, 7 and 4 s left), the fourth found 1 s left
        assert_eq!(*seen.lock().unwrap(), vec!["e1", "e2", "e3"]);
        assert_eq!(
            failed_ids(&report),
            vec!["m4", "m5"],
            "done ones are not reported"
        );
        for done in ["m1", "m2", "m3"] {
            assert_eq!(
                outcome_of(&report, done),
                &MessageOutcome::Handled(Handled::Processed)
            );
        }
        for left in ["m4", "m5"] {
            assert_eq!(outcome_of(&report, left), &MessageOutcome::NotStarted);
        }
    }

    #[tokio::test]
    async fn after_a_message_not_started_no_later_one_of_its_key_starts() {
        // given a clock that reads: the start (twice: the deadline, then the budget), a1's
        // check (10 s left), a2's check (0.5 s left), then 10 s left again for ever
        let start = 1_000_000;
        let clock = scripted_clock(vec![start, start, start, start + 9_500, start]);
        let invocation = Invocation::with_remaining_on(Duration::from_secs(10), clock);
        let seen = Mutex::new(Vec::new());
        let event = batch(vec![
            message("a1", None, body("a1", serde_json::json!({"key": "A"}))),
            message("a2", None, body("a2", serde_json::json!({"key": "A"}))),
            message("a3", None, body("a3", serde_json::json!({"key": "A"}))),
            message("b1", None, body("b1", serde_json::json!({"key": "B"}))),
        ]);

        // when the batch is processed, one key at a time
        let report = BatchProcessor::new()
            .with_concurrency(1)
            .with_sequence_key(|e: &RawEvent| e.data["key"].as_str().map(str::to_string))
            .process_within(event, &invocation, |e: RawEvent| {
                seen.lock().unwrap().push(e.metadata.event_id.clone());
                handler(e)
            })
            .await;

        // then a3 waits behind a2 although time seemed to be back; key B started
        assert_eq!(*seen.lock().unwrap(), vec!["a1", "b1"]);
        assert_eq!(failed_ids(&report), vec!["a2", "a3"]);
    }

    #[tokio::test]
    async fn a_fifo_group_stops_at_its_first_message_not_started() {
        let (now, clock) = manual_clock(1_000_000);
        let invocation = Invocation::with_remaining_on(Duration::from_secs(10), clock);
        let event = batch(vec![
            message("a1", Some("A"), body("a1", serde_json::json!({}))),
            message("a2", Some("A"), body("a2", serde_json::json!({}))),
            message("a3", Some("A"), body("a3", serde_json::json!({}))),
        ]);
        let report = BatchProcessor::new()
            .process_within(event, &invocation, |e: RawEvent| {
                now.fetch_add(9_000, std::sync::atomic::Ordering::SeqCst);
                handler(e)
            })
            .await;
        assert_eq!(failed_ids(&report), vec!["a2", "a3"]);
        assert_eq!(outcome_of(&report, "a3"), &MessageOutcome::NotStarted);
    }

    #[tokio::test]
    async fn a_handlers_not_started_answer_is_reported_as_not_started() {
        // given a handler's answer of "not started" (a whole-batch handler's, passed on)
        let event = batch(vec![
            message("m1", None, body("e1", serde_json::json!({}))),
            message("m2", None, body("e2", serde_json::json!({}))),
        ]);
        let report = BatchProcessor::new()
            .process(event, |e: RawEvent| async move {
                if e.metadata.event_id == "e2" {
                    return Err(not_started());
                }
                Ok(Handled::Processed)
            })
            .await;
        // then it is reported as not started, and the rest as handled
        assert_eq!(failed_ids(&report), vec!["m2"]);
        assert_eq!(outcome_of(&report, "m2"), &MessageOutcome::NotStarted);
    }

    #[tokio::test]
    async fn fifo_groups_stop_at_their_first_failure_and_others_go_on() {
        let seen = Mutex::new(Vec::new());
        let event = batch(vec![
            message("a1", Some("A"), body("a1", serde_json::json!({}))),
            message("b1", Some("B"), body("b1", serde_json::json!({}))),
            message(
                "a2",
                Some("A"),
                body("a2", serde_json::json!({"fail": true})),
            ),
            message("b2", Some("B"), body("b2", serde_json::json!({}))),
            message("a3", Some("A"), body("a3", serde_json::json!({}))),
            message("b3", Some("B"), body("b3", serde_json::json!({}))),
        ]);
        let report = BatchProcessor::new()
            .process(event, |e: RawEvent| {
                seen.lock().unwrap().push(e.metadata.event_id.clone());
                handler(e)
            })
            .await;
        assert_eq!(failed_ids(&report), vec!["a2", "a3"]);
        let seen = seen.lock().unwrap().clone();
        assert!(
            !seen.contains(&"a3".to_string()),
            "a3 must not run after a2 failed"
        );
        let order_b: Vec<_> = seen
            .iter()
            .filter(|id| id.starts_with('b'))
            .cloned()
            .collect();
        assert_eq!(order_b, vec!["b1", "b2", "b3"]);
    }
}
