use audit::{AuditService, ROUTES};
use contracts::Event;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eventkit::observability::init_tracing("audit");
    let aws = eventkit::aws::load_config().await;
    let service = AuditService::from_env(&aws)?;
    let processor = eventkit::lambda::processor_from_env(&aws);
    // A whole batch at once, so that it becomes BatchWriteItems of 25 entries instead of one
    // write per message.
    eventkit::serve_event_batches::<Event, _, _>("audit", ROUTES, processor, |events, _| {
        service.handle(events)
    })
    .await
}
