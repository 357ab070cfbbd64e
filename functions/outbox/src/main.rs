use lambda_runtime::{service_fn, LambdaEvent};
use outbox::Outbox;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eventkit::observability::init_tracing("outbox");
    let aws = eventkit::aws::load_config().await;
    let outbox = Outbox::from_env(&aws)?;
    let namespace = eventkit::aws::required_env(eventkit::lambda::METRICS_NAMESPACE_VAR)?;
    let (outbox, namespace) = (&outbox, namespace.as_str());
    // One binary for both payloads: the stream batch and the scheduled sweep (lib.rs).
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        outbox
            .handle(event.payload, namespace)
            .await
            .map_err(lambda_runtime::Error::from)
    }))
    .await
}
