use contracts::Event;
use orders::{service::order_of, SagaService, ROUTES};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eventkit::observability::init_tracing("orders");
    let aws = eventkit::aws::load_config().await;
    let saga = SagaService::from_env(&aws)?;
    let processor = eventkit::lambda::processor_from_env(&aws).with_sequence_key(order_of);
    eventkit::serve_events::<Event, _, _>("orders", ROUTES, processor, |event, invocation| {
        saga.handle(event, invocation)
    })
    .await
}
