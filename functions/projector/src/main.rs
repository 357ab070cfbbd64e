use eventkit::Invocation;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use projector::Projector;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eventkit::observability::init_tracing("projector");
    let aws = eventkit::aws::load_config().await;
    let projector = Projector::from_env(&aws)?;
    let projector = &projector;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let invocation = Invocation {
                request_id: event.context.request_id,
                deadline_ms: event.context.deadline,
            };
            // Lambda reports a failed invocation with the reason as its error type.
            projector
                .invoke(event.payload, invocation)
                .await
                .map_err(|e| Diagnostic {
                    error_type: e.reason,
                    error_message: e.message,
                })
        },
    ))
    .await
}
