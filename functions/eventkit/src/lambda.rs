//! The glue between `lambda_runtime` and a per-message handler, so that a function's
//! `main` is a few lines and its logic never sees SQS types.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, LambdaEvent};

use crate::batch::{BatchProcessor, Handled};
use crate::dead_letter::SqsDeadLetterQueue;
use crate::envelope::RawEvent;
use crate::error::HandlerError;

/// Metrics namespace for every Orderflow function.
pub const METRICS_NAMESPACE: &str = "Orderflow";

/// What a handler may want to know about the invocation it runs in.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    /// Epoch milliseconds at which Lambda stops the invocation.
    pub deadline_ms: u64,
}

impl Invocation {
    /// Time left before the deadline (zero when past it).
    pub fn remaining(&self) -> Duration {
        let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
        Duration::from_millis(self.deadline_ms.saturating_sub(now))
    }

    /// For tests and local runs: an invocation with `remaining` time left.
    pub fn with_remaining(remaining: Duration) -> Self {
        let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
        Invocation {
            request_id: "local".into(),
            deadline_ms: now + remaining.as_millis() as u64,
        }
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

/// Runs the Lambda runtime loop for an SQS-triggered function: each batch goes through
/// `processor`, each message to `handler`, and a metrics line is written per batch.
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
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let invocation = Invocation {
            request_id: event.context.request_id.clone(),
            deadline_ms: event.context.deadline,
        };
        let report = processor
            .process(event.payload, |message| {
                handler(message, invocation.clone())
            })
            .await;
        report.metrics().emit(METRICS_NAMESPACE, service);
        Ok::<SqsBatchResponse, Infallible>(report.response)
    }))
    .await
}
