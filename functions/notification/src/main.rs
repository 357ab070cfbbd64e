use contracts::Event;
use notification::{NotificationService, ROUTES};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eventkit::observability::init_tracing("notification");
    let aws = eventkit::aws::load_config().await;
    let service = NotificationService::from_env(&aws).await?;
    let processor = eventkit::lambda::processor_from_env(&aws);
    eventkit::serve_events::<Event, _, _>("notification", ROUTES, processor, |event, invocation| {
        service.handle(event, invocation)
    })
    .await
}
