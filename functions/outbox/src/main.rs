use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{service_fn, LambdaEvent};
use outbox::Outbox;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eventkit::observability::init_tracing("outbox");
    let aws = eventkit::aws::load_config().await;
    let outbox = Outbox::from_env(&aws)?;
    let outbox = &outbox;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        Ok::<_, std::convert::Infallible>(outbox.relay(event.payload).await)
    }))
    .await
}
