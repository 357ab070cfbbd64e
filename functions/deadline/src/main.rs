use contracts::Event;
use deadline::{DeadlineTimer, ROUTES};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eventkit::observability::init_tracing("deadline");
    let aws = eventkit::aws::load_config().await;
    let timer = DeadlineTimer::from_env(&aws)?;
    let processor = eventkit::lambda::processor_from_env(&aws);
    eventkit::serve_events::<Event, _, _>("deadline", ROUTES, processor, |event, invocation| {
        timer.handle(event, invocation)
    })
    .await
}
