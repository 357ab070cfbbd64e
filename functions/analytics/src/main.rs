use analytics::AnalyticsService;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eventkit::observability::init_tracing("analytics");
    let aws = eventkit::aws::load_config().await;
    let service = AnalyticsService::from_env(&aws)?;
    let processor = eventkit::lambda::processor_from_env(&aws);
    eventkit::serve_sqs("analytics", processor, |event, _| service.handle(event)).await
}
