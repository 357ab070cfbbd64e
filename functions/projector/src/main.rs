use eventkit::Invocation;
use lambda_runtime::{service_fn, LambdaEvent};
use projector::Projector;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eventkit::observability::init_tracing("projector");
    let aws = eventkit::aws::load_config().await;
    let projector = Projector::from_env(&aws)?;
    let projector = &projector;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let invocation = Invocation::from_context(&event.context);
            projector
                .invoke(event.payload, invocation)
                .await
                .map_err(eventkit::lambda::diagnostic)
        },
    ))
    .await
}
