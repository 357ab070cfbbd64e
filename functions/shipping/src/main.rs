use contracts::Event;
use shipping::{ShippingService, ROUTES};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eventkit::observability::init_tracing("shipping");
    let aws = eventkit::aws::load_config().await;
    let service = ShippingService::from_env(&aws)?;
    let processor = eventkit::lambda::processor_from_env(&aws);
    eventkit::serve_events::<Event, _, _>("shipping", ROUTES, processor, |event, invocation| {
        service.handle(event, invocation)
    })
    .await
}
