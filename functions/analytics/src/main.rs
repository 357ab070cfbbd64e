use analytics::{AnalyticsService, ROUTES};
use contracts::Event;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eventkit::observability::init_tracing("analytics");
    let aws = eventkit::aws::load_config().await;
    let service = AnalyticsService::from_env(&aws)?;
    let processor = eventkit::lambda::processor_from_env(&aws);
    eventkit::serve_events::<Event, _, _>("analytics", ROUTES, processor, |event, invocation| {
        service.handle(event, invocation)
    })
    .await
}
