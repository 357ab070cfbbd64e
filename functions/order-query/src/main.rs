use lambda_runtime::{service_fn, LambdaEvent};
use order_query::{OrderQuery, QueryRequest};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eventkit::observability::init_tracing("order-query");
    let aws = eventkit::aws::load_config().await;
    let query = OrderQuery::from_env(&aws)?;
    let query = &query;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<QueryRequest>| async move { query.answer(event.payload).await },
    ))
    .await
}
