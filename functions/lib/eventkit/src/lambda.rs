//! The glue between `lambda_runtime` and a per-message handler, so that a function's
//! `main` is a few lines and its logic never sees SQS types.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};

use crate::batch::{
    not_started, BatchProcessor, BatchReport, Handled, MessageOutcome, NOT_STARTED,
};
use crate::dead_letter::SqsDeadLetterQueue;
use crate::envelope::{Envelope, RawEvent};
use crate::error::{DecodeError, HandlerError};
use crate::event_set::EventSet;
use crate::routes::{admit, Route};

/// Where the CloudWatch metrics namespace comes from: the variable Powertools for AWS Lambda
/// reads for the same purpose, so one template setting serves both.
pub const METRICS_NAMESPACE_VAR: &str = "POWERTOOLS_METRICS_NAMESPACE";

/// How Lambda reports a failed invocation of a function that is not fed by SQS: the
/// failure's reason as the error type. (`HandlerError` lives in eventcore, which knows
/// nothing of Lambda, so this is a function rather than a `From` impl.)
pub fn diagnostic(error: HandlerError) -> Diagnostic {
    Diagnostic {
        error_type: error.reason,
        error_message: error.message,
    }
}

/// Takes in one message for a function with these `routes`: the type must be routed here
/// and come from its owning source, then it is decoded and validated, once. Everything a
/// handler sees has passed through here.
pub fn take_in<E: EventSet>(routes: &[Route], raw: &RawEvent) -> Result<Envelope<E>, DecodeError> {
    admit(routes, raw)?;
    E::envelope(raw)
}

/// Reads the time as epoch milliseconds, the unit of Lambda's deadline. The system clock in
/// Lambda; tests pass one they move by hand, so time-budget rules are tested without sleeps.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock, in epoch milliseconds.
pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_millis().max(0) as u64)
}

/// The least time an invocation must have left to start a new record (or chunk).
pub const MIN_START_MARGIN: Duration = Duration::from_secs(1);

/// The share of the invocation's time, as first seen, that must be left to start new work:
/// one fifth ([`start_margin`]).
pub const START_MARGIN_DIVISOR: u32 = 5;

/// How much time must be left before the deadline to start a new record or chunk: the
/// larger of [`MIN_START_MARGIN`] and a fifth of `budget`, the time the invocation had when
/// it began (Lambda's deadline less the start: the function's timeout, less the moment it
/// took to be handed the event).
///
/// Why stop early at all: if Lambda stops the invocation at its deadline, the batch's
/// response is lost, so every message of the batch, finished ones too, comes back after the
/// visibility timeout with one more receive counted ("By default, if Lambda encounters an
/// error at any point while processing a batch, all messages in that batch return to the
/// queue": "Creating and configuring an Amazon SQS event source mapping",
/// https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html). Not starting a
/// record costs a receive for that record only. Why this much: a record that starts must be
/// able to finish, and its worst case is a few DynamoDB or EventBridge calls, each retried
/// with backoff ([`crate::retry::RetryPolicy`]: waits up to 2 s apiece), so a margin that
/// scales with the timeout keeps the same share of slack for a 10 s function (2 s) as for a
/// 30 s one (6 s); the 1 s floor keeps room for one slow call on a function with a short
/// timeout. A fifth is little enough that a healthy batch never hits it.
pub fn start_margin(budget: Duration) -> Duration {
    (budget / START_MARGIN_DIVISOR).max(MIN_START_MARGIN)
}

/// What a handler may want to know about the invocation it runs in.
#[derive(Clone)]
pub struct Invocation {
    pub request_id: String,
    /// Epoch milliseconds at which Lambda stops the invocation.
    pub deadline_ms: u64,
    /// The time that must be left to start new work ([`start_margin`]).
    start_margin: Duration,
    clock: Clock,
}

impl std::fmt::Debug for Invocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invocation")
            .field("request_id", &self.request_id)
            .field("deadline_ms", &self.deadline_ms)
            .field("start_margin", &self.start_margin)
            .finish_non_exhaustive()
    }
}

impl Invocation {
    /// An invocation that ends at `deadline_ms` by `clock`; its start margin comes from the
    /// time left now.
    pub fn new(request_id: impl Into<String>, deadline_ms: u64, clock: Clock) -> Self {
        let budget = Duration::from_millis(deadline_ms.saturating_sub(clock()));
        Invocation {
            request_id: request_id.into(),
            deadline_ms,
            start_margin: start_margin(budget),
            clock,
        }
    }

    /// Time left before the deadline (zero when past it).
    pub fn remaining(&self) -> Duration {
        Duration::from_millis(self.deadline_ms.saturating_sub((self.clock)()))
    }

    /// The time that must be left to start new work.
    pub fn start_margin(&self) -> Duration {
        self.start_margin
    }

    /// Whether there is time to start another record or chunk: more than the start margin
    /// is left. Work already started is never cut short by this; it only keeps new work
    /// from starting when it might not finish.
    pub fn has_time_to_start(&self) -> bool {
        self.remaining() > self.start_margin
    }

    /// The invocation Lambda's context describes (`Context::deadline`: epoch milliseconds,
    /// from the runtime API's `Lambda-Runtime-Deadline-Ms`, "the date that the function times
    /// out in Unix time milliseconds": "Using the Lambda runtime API for custom runtimes",
    /// https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html).
    pub fn from_context(context: &lambda_runtime::Context) -> Self {
        Invocation::new(context.request_id.clone(), context.deadline, system_clock())
    }

    /// For tests and local runs: an invocation with `remaining` time left.
    pub fn with_remaining(remaining: Duration) -> Self {
        Invocation::with_remaining_on(remaining, system_clock())
    }

    /// For tests: an invocation with `remaining` time left by `clock`.
    pub fn with_remaining_on(remaining: Duration, clock: Clock) -> Self {
        let deadline_ms = clock().saturating_add(remaining.as_millis() as u64);
        Invocation::new("local", deadline_ms, clock)
    }
}

/// A batch processor that dead-letters permanent failures to the queue's DLQ
/// (`DEAD_LETTER_QUEUE_URL`, else the source queue's redrive policy) and runs up to
/// `BATCH_CONCURRENCY` (default 10) messages at once.
pub fn processor_from_env(config: &aws_config::SdkConfig) -> BatchProcessor {
    let concurrency = std::env::var("BATCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    BatchProcessor::new()
        .with_concurrency(concurrency)
        .with_dead_letters(Arc::new(SqsDeadLetterQueue::from_env(
            aws_sdk_sqs::Client::new(config),
        )))
}

/// A batch in which every message failed and was left for SQS to redeliver.
///
/// Returned as the invocation's error so that Lambda's `Errors` metric (and its alarm) shows
/// an outage: with partial batch responses alone, a function that fails every message still
/// counts as succeeding. For SQS the effect on the messages is the same either way - an
/// error makes the whole batch visible again, as listing all of it in `batchItemFailures`
/// does. Powertools for AWS Lambda raises `BatchProcessingError` in this case by default
/// ("Batch Processing", raise_on_entire_batch_failure,
/// https://docs.aws.amazon.com/powertools/python/latest/utilities/batch/; the reason given in
/// aws-powertools/powertools-lambda-python#4691: "to reflect the full batch failure in the
/// operational metrics").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntireBatchFailed {
    pub messages: usize,
    /// The distinct failure reasons, in first-seen order.
    pub reasons: Vec<String>,
}

impl From<EntireBatchFailed> for Diagnostic {
    fn from(failed: EntireBatchFailed) -> Self {
        Diagnostic {
            error_type: "EntireBatchFailed".into(),
            error_message: format!(
                "all {} messages of the batch failed and will be redelivered: {}",
                failed.messages,
                failed.reasons.join(", ")
            ),
        }
    }
}

/// `Some` when the batch had messages and every one of them is reported in
/// `batchItemFailures` (retried, or skipped behind a failed one). A dead-lettered message was
/// dealt with, so a batch with one is not an outage of this kind; its alarm is `deadLettered`.
pub fn entire_batch_failed(report: &BatchReport) -> Option<EntireBatchFailed> {
    if report.outcomes.is_empty() {
        return None;
    }
    let mut reasons: Vec<String> = Vec::new();
    for (_, outcome) in &report.outcomes {
        let reason = match outcome {
            MessageOutcome::Retried { reason } => reason.as_str(),
            MessageOutcome::Skipped => "skipped-after-failure",
            MessageOutcome::NotStarted => NOT_STARTED,
            MessageOutcome::Handled(_) | MessageOutcome::DeadLettered { .. } => return None,
        };
        if !reasons.iter().any(|r| r == reason) {
            reasons.push(reason.to_string());
        }
    }
    Some(EntireBatchFailed {
        messages: report.outcomes.len(),
        reasons,
    })
}

/// Runs the Lambda runtime loop for an SQS-triggered function that takes in the events of
/// `routes` ([`take_in`]): `handler` gets each one typed, as a member of the event set `E`;
/// anything else is dead-lettered with its reason (`not-routed`, `untrusted-source`, ...)
/// without reaching it.
pub async fn serve_events<E, H, Fut>(
    service: &'static str,
    routes: &'static [Route],
    processor: BatchProcessor,
    handler: H,
) -> Result<(), lambda_runtime::Error>
where
    E: EventSet,
    H: Fn(Envelope<E>, Invocation) -> Fut,
    Fut: Future<Output = Result<Handled, HandlerError>>,
{
    let handler = &handler;
    serve_sqs(service, processor, move |raw, invocation| async move {
        let event = take_in::<E>(routes, &raw)?;
        handler(event, invocation).await
    })
    .await
}

/// Runs the Lambda runtime loop for an SQS-triggered function: each batch goes through
/// `processor`, each message to `handler` while the invocation has time to start it
/// ([`BatchProcessor::process_within`]), and a metrics line is written per batch in the
/// namespace named by `POWERTOOLS_METRICS_NAMESPACE`. A batch in which every message failed
/// is returned as an error ([`EntireBatchFailed`]).
pub async fn serve_sqs<H, Fut>(
    service: &'static str,
    processor: BatchProcessor,
    handler: H,
) -> Result<(), lambda_runtime::Error>
where
    H: Fn(RawEvent, Invocation) -> Fut,
    Fut: Future<Output = Result<Handled, HandlerError>>,
{
    let handler = &handler;
    let processor = &processor;
    serve_batches(service, move |batch, invocation| async move {
        processor
            .process_within(batch, &invocation, |message| {
                handler(message, invocation.clone())
            })
            .await
    })
    .await
}

/// What a batch handler answers for each event it was given, by event id.
pub type BatchResults = Vec<(String, Result<Handled, HandlerError>)>;

/// Like [`serve_events`], but the handler gets every admitted event of the batch at once
/// (copies of one event once) and answers per event id. For decisions that depend on the
/// other events of the batch: fraud detection records a burst of one customer's orders
/// before it judges any of them. Messages that fail intake, and every result, go through
/// `processor` as for per-message handlers: permanent failures are dead-lettered with their
/// reason, transient ones reported in `batchItemFailures`; an event the handler gives no
/// result for is retried. The handler gets the invocation so that it can check the time
/// budget between its own chunks ([`Invocation::has_time_to_start`]) and answer
/// [`not_started`](crate::batch::not_started) for the rest.
pub async fn serve_event_batches<E, H, Fut>(
    service: &'static str,
    routes: &'static [Route],
    processor: BatchProcessor,
    handler: H,
) -> Result<(), lambda_runtime::Error>
where
    E: EventSet,
    H: Fn(Vec<Envelope<E>>, Invocation) -> Fut,
    Fut: Future<Output = BatchResults>,
{
    let handler = &handler;
    let processor = &processor;
    serve_batches(service, move |batch, invocation| async move {
        let budget = invocation.clone();
        process_whole_batch(processor, routes, batch, &budget, move |events| {
            handler(events, invocation)
        })
        .await
    })
    .await
}

/// One batch through a batch handler: admit, handle the admitted events at once, then give
/// each message its result through `processor`.
///
/// If `invocation` has no time to start work, the handler is not called and every message
/// is reported not started ([`MessageOutcome::NotStarted`]). Otherwise the results are all given out, however late the
/// handler finished: its work is done, and reporting it done is what keeps it from coming
/// back (the handler itself checks the budget between its chunks).
pub async fn process_whole_batch<E, H, Fut>(
    processor: &BatchProcessor,
    routes: &[Route],
    batch: SqsEvent,
    invocation: &Invocation,
    handler: H,
) -> BatchReport
where
    E: EventSet,
    H: FnOnce(Vec<Envelope<E>>) -> Fut,
    Fut: Future<Output = BatchResults>,
{
    if !invocation.has_time_to_start() {
        // Nothing is started, not even a dead-letter send: every message is reported not
        // started (the handler below is never called; the processor sees no time left).
        return processor
            .process_within(batch, invocation, |_| async { Err(not_started()) })
            .await;
    }
    let answers = handle_batch(routes, &batch, handler).await;
    processor
        .process(batch, |raw| {
            let result = answers.result_for::<E>(routes, &raw);
            async move { result }
        })
        .await
}

/// What a batch handler said, by event id, and which event each id stood for.
///
/// A batch handler answers per event id, so two different events sharing an id in one
/// batch (another source, or other content: a mistake or an attack, never a redelivery)
/// cannot both be handed to it: one answer would stand for both. The first is handled; the
/// others wait for a later batch ([`SHARED_EVENT_ID`], transient), where the handler sees
/// each alone and judges it against what the first one left (a consumer's own
/// conflicting-duplicate check). Copies of one event (same source and digest) share the
/// answer, as redeliveries should.
struct BatchAnswers {
    results: HashMap<String, Result<Handled, HandlerError>>,
    /// Event id → (source, content digest) of the event handled under it.
    handled: HashMap<String, (String, String)>,
}

/// The reason an event waits for a later batch: another event of its batch has its id.
pub const SHARED_EVENT_ID: &str = "shared-event-id";

/// Admits the batch's events and runs `handler` over them (each event id once).
async fn handle_batch<E, H, Fut>(routes: &[Route], batch: &SqsEvent, handler: H) -> BatchAnswers
where
    E: EventSet,
    H: FnOnce(Vec<Envelope<E>>) -> Fut,
    Fut: Future<Output = BatchResults>,
{
    let mut handled = HashMap::new();
    let events: Vec<Envelope<E>> = batch
        .records
        .iter()
        .filter_map(|m| RawEvent::from_sqs_body(m.body.as_deref().unwrap_or_default()).ok())
        .filter_map(|raw| {
            let event = take_in::<E>(routes, &raw).ok()?;
            match handled.entry(raw.metadata.event_id.clone()) {
                Entry::Occupied(_) => None,
                Entry::Vacant(free) => {
                    free.insert(identity(&raw));
                    Some(event)
                }
            }
        })
        .collect();
    let results = if events.is_empty() {
        HashMap::new()
    } else {
        handler(events).await.into_iter().collect()
    };
    BatchAnswers { results, handled }
}

fn identity(raw: &RawEvent) -> (String, String) {
    (raw.source.clone(), raw.content_digest())
}

impl BatchAnswers {
    /// One message's result: its intake error, what the handler said about its event, or,
    /// for another event under an id the handler answered for, a wait for a later batch.
    fn result_for<E: EventSet>(
        &self,
        routes: &[Route],
        raw: &RawEvent,
    ) -> Result<Handled, HandlerError> {
        take_in::<E>(routes, raw)?;
        let id = &raw.metadata.event_id;
        if self.handled.get(id) != Some(&identity(raw)) {
            return Err(HandlerError::transient(
                SHARED_EVENT_ID,
                format!(
                    "another event of this batch has event id {id}; this one waits for a \
                     later batch, so that one answer never stands for two events"
                ),
            ));
        }
        self.results.get(id).cloned().unwrap_or_else(|| {
            Err(HandlerError::transient(
                "not-handled",
                "the batch handler returned no result for this event",
            ))
        })
    }
}

/// The runtime loop shared by the serve functions: `run` turns one SQS batch into a report;
/// metrics and the entire-batch-failed rule are applied here.
async fn serve_batches<R, Fut>(service: &'static str, run: R) -> Result<(), lambda_runtime::Error>
where
    R: Fn(SqsEvent, Invocation) -> Fut,
    Fut: Future<Output = BatchReport>,
{
    let namespace = crate::aws::required_env(METRICS_NAMESPACE_VAR)?;
    let namespace = namespace.as_str();
    let run = &run;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let invocation = Invocation::from_context(&event.context);
        let report = run(event.payload, invocation).await;
        report.metrics().emit(namespace, service);
        match entire_batch_failed(&report) {
            Some(failed) => {
                tracing::error!(messages = failed.messages, reasons = ?failed.reasons,
                    "every message of the batch failed; returning an error");
                Err(failed)
            }
            None => Ok::<SqsBatchResponse, EntireBatchFailed>(report.response),
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcomes: Vec<MessageOutcome>) -> BatchReport {
        BatchReport::from_outcomes(
            outcomes
                .into_iter()
                .enumerate()
                .map(|(i, o)| (format!("m{i}"), o))
                .collect(),
        )
    }

    fn retried(reason: &str) -> MessageOutcome {
        MessageOutcome::Retried {
            reason: reason.into(),
        }
    }

    #[test]
    fn a_batch_whose_every_message_is_retried_is_an_error_with_its_reasons() {
        let r = report(vec![
            retried("throttled"),
            MessageOutcome::Skipped,
            retried("throttled"),
            retried("store"),
        ]);
        assert_eq!(r.response.batch_item_failures.len(), 4);
        assert_eq!(
            entire_batch_failed(&r),
            Some(EntireBatchFailed {
                messages: 4,
                reasons: vec![
                    "throttled".into(),
                    "skipped-after-failure".into(),
                    "store".into()
                ],
            })
        );
    }

    #[test]
    fn one_handled_or_dead_lettered_message_keeps_the_batch_a_partial_failure() {
        let handled = report(vec![
            retried("throttled"),
            MessageOutcome::Handled(Handled::Duplicate),
        ]);
        assert_eq!(entire_batch_failed(&handled), None);
        let dead_lettered = report(vec![
            retried("throttled"),
            MessageOutcome::DeadLettered {
                reason: "invalid".into(),
            },
        ]);
        assert_eq!(entire_batch_failed(&dead_lettered), None);
        let all_dead_lettered = report(vec![MessageOutcome::DeadLettered {
            reason: "invalid".into(),
        }]);
        assert_eq!(entire_batch_failed(&all_dead_lettered), None);
    }

    #[test]
    fn a_batch_left_whole_for_lack_of_time_is_an_error_naming_that_reason() {
        let r = report(vec![MessageOutcome::NotStarted, MessageOutcome::NotStarted]);
        assert_eq!(r.response.batch_item_failures.len(), 2);
        assert_eq!(
            entire_batch_failed(&r).map(|f| f.reasons),
            Some(vec![NOT_STARTED.to_string()])
        );
    }

    #[test]
    fn the_start_margin_is_a_fifth_of_the_budget_and_at_least_a_second() {
        assert_eq!(
            start_margin(Duration::from_secs(10)),
            Duration::from_secs(2)
        );
        assert_eq!(
            start_margin(Duration::from_secs(30)),
            Duration::from_secs(6)
        );
        assert_eq!(start_margin(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(start_margin(Duration::ZERO), Duration::from_secs(1));
    }

    #[test]
    fn an_invocation_has_time_to_start_while_more_than_its_margin_is_left() {
        let now = Arc::new(std::sync::atomic::AtomicU64::new(5_000_000));
        let read = now.clone();
        let clock: Clock = Arc::new(move || read.load(std::sync::atomic::Ordering::SeqCst));
        let invocation = Invocation::with_remaining_on(Duration::from_secs(10), clock);
        assert_eq!(invocation.remaining(), Duration::from_secs(10));
        assert!(invocation.has_time_to_start());
        now.fetch_add(8_000, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(invocation.remaining(), Duration::from_secs(2));
        assert!(!invocation.has_time_to_start(), "exactly the margin left");
        now.fetch_add(60_000, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(invocation.remaining(), Duration::ZERO);
        assert!(!invocation.has_time_to_start());
    }

    /// A one-type event set for whole-batch tests.
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Ping {
        n: u32,
    }
    impl crate::EventData for Ping {
        const DETAIL_TYPE: &'static str = "Ping";
        const SOURCE: &'static str = "test";
    }
    #[derive(Debug, Clone, PartialEq)]
    struct Pings(Ping);
    impl crate::Payload for Pings {
        fn detail_type(&self) -> &'static str {
            "Ping"
        }
        fn source(&self) -> &'static str {
            "test"
        }
        fn schema_version(&self) -> u32 {
            1
        }
        fn to_data(&self) -> serde_json::Value {
            crate::Payload::to_data(&self.0)
        }
    }
    impl EventSet for Pings {
        const ROUTES: &'static [Route] = &[<Ping as crate::EventData>::ROUTE];
        fn decode(raw: &RawEvent) -> Result<Self, DecodeError> {
            raw.decode::<Ping>().map(|e| Pings(e.data))
        }
        fn decode_stored(raw: &RawEvent) -> Result<Self, DecodeError> {
            raw.decode_stored::<Ping>().map(|e| Pings(e.data))
        }
    }

    fn ping_batch() -> SqsEvent {
        let body = |id: &str| {
            serde_json::json!({
                "id": id, "detail-type": "Ping", "source": "test",
                "time": "2026-11-21T10:00:00Z", "detail": {"data": {"n": 1}}
            })
            .to_string()
        };
        let records: Vec<serde_json::Value> = [body("e1"), body("e2"), "not json".into()]
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                serde_json::json!({
                    "messageId": format!("m{i}"), "receiptHandle": "r", "body": body,
                    "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:q",
                    "awsRegion": "us-east-1"
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    #[tokio::test]
    async fn a_whole_batch_with_no_time_left_is_not_started_at_all() {
        // given an invocation with 800 ms left (the margin is at least 1 s)
        let clock: Clock = Arc::new(|| 7_000_000);
        let invocation = Invocation::with_remaining_on(Duration::from_millis(800), clock);
        let called = std::sync::atomic::AtomicBool::new(false);

        // when a whole-batch handler is given the batch
        let report = process_whole_batch::<Pings, _, _>(
            &BatchProcessor::new(),
            Pings::ROUTES,
            ping_batch(),
            &invocation,
            |events| {
                called.store(true, std::sync::atomic::Ordering::SeqCst);
                async move {
                    events
                        .into_iter()
                        .map(|e| (e.metadata.event_id, Ok(Handled::Processed)))
                        .collect()
                }
            },
        )
        .await;

        // then the handler never ran and every message, the undecodable one too, waits
        assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(report.response.batch_item_failures.len(), 3);
        assert!(report
            .outcomes
            .iter()
            .all(|(_, o)| *o == MessageOutcome::NotStarted));
    }

    #[tokio::test]
    async fn a_whole_batch_with_time_left_gives_each_message_the_handlers_answer() {
        let invocation = Invocation::with_remaining(Duration::from_secs(30));
        let report = process_whole_batch::<Pings, _, _>(
            &BatchProcessor::new(),
            Pings::ROUTES,
            ping_batch(),
            &invocation,
            |events| async move {
                events
                    .into_iter()
                    .map(|e| {
                        let result = if e.metadata.event_id == "e2" {
                            Err(not_started())
                        } else {
                            Ok(Handled::Processed)
                        };
                        (e.metadata.event_id, result)
                    })
                    .collect()
            },
        )
        .await;
        let mut outcomes = report.outcomes.clone();
        outcomes.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            outcomes,
            vec![
                ("m0".into(), MessageOutcome::Handled(Handled::Processed)),
                ("m1".into(), MessageOutcome::NotStarted),
                (
                    "m2".into(),
                    MessageOutcome::Retried {
                        reason: "not-json".into()
                    }
                ),
            ]
        );
    }

    #[test]
    fn an_empty_batch_is_not_a_failure() {
        assert_eq!(entire_batch_failed(&report(vec![])), None);
    }

    #[test]
    fn the_error_lambda_reports_names_the_count_and_reasons() {
        let diagnostic = Diagnostic::from(EntireBatchFailed {
            messages: 2,
            reasons: vec!["throttled".into()],
        });
        assert_eq!(diagnostic.error_type, "EntireBatchFailed");
        assert_eq!(
            diagnostic.error_message,
            "all 2 messages of the batch failed and will be redelivered: throttled"
        );
    }
}
