use analytics::{AnalyticsService, ROUTES};
use contracts::Event;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eventkit::observability::init_tracing("analytics");
    let aws = eventkit::aws::load_config().await;
    let service = AnalyticsService::from_env(&aws)?;
    let processor = eventkit::lambda::processor_from_env(&aws);
    // A batch as a whole: its events share a few transactions (of CHUNK_ITEMS items) instead
    // of one each, started while the invocation has time (the rest goes back to SQS). Nobody
    // waits on analytics, so the queue's batching window trades latency for it.
    eventkit::serve_event_batches::<Event, _, _>(
        "analytics",
        ROUTES,
        processor,
        |events, invocation| service.handle_batch(events, invocation),
    )
    .await
}
