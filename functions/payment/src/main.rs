use contracts::Event;
use payment::{PaymentService, ROUTES};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eventkit::observability::init_tracing("payment");
    let aws = eventkit::aws::load_config().await;
    let service = PaymentService::from_env(&aws)?;
    let processor = eventkit::lambda::processor_from_env(&aws);
    eventkit::serve_events::<Event, _, _>("payment", ROUTES, processor, |event, invocation| {
        service.handle(event, invocation)
    })
    .await
}
