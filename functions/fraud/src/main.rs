use contracts::Event;
use fraud::{FraudService, ROUTES};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eventkit::observability::init_tracing("fraud");
    let aws = eventkit::aws::load_config().await;
    let service = FraudService::from_env(&aws)?;
    let processor = eventkit::lambda::processor_from_env(&aws);
    // A batch as a whole: a burst of one customer's orders is recorded before any of them
    // is judged.
    eventkit::serve_event_batches::<Event, _, _>(
        "fraud",
        ROUTES,
        processor,
        |events, invocation| service.handle_batch(events, invocation),
    )
    .await
}
