use contracts::Event;
use inventory::{InventoryService, ROUTES};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eventkit::observability::init_tracing("inventory");
    let aws = eventkit::aws::load_config().await;
    let service = InventoryService::from_env(&aws)?;
    let processor = eventkit::lambda::processor_from_env(&aws);
    eventkit::serve_events::<Event, _, _>("inventory", ROUTES, processor, |event, invocation| {
        service.handle(event, invocation)
    })
    .await
}
