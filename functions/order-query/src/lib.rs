//! `aws lambda invoke --function-name orderflow-<stage>-order-query --payload
//! '{"orderId": "ord-1001", "asOf": "2026-11-21T10:00:00Z"}'`: the order's read model and,
//! when `asOf` or `fromEvents` is given, its state rebuilt from its event stream as it was
//! at that time (time travel): the same projection, over the events recorded up to then.

use chrono::{DateTime, Utc};
use eventkit::envelope::format_time;
use eventkit::EventStore;
use orderview::{project, OrderView, ReadModel};
use serde::{Deserialize, Serialize};

const MAX_ORDER_ID: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryRequest {
    pub order_id: String,
    #[serde(default)]
    pub as_of: Option<DateTime<Utc>>,
    #[serde(default)]
    pub from_events: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryResponse {
    pub order_id: String,
    pub read_model: Option<OrderView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_events: Option<OrderView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("orderId must be 1 to {MAX_ORDER_ID} characters")]
    BadOrderId,
    #[error(transparent)]
    ReadModel(#[from] orderview::ReadModelError),
    #[error(transparent)]
    Store(#[from] eventkit::StoreError),
}

pub struct OrderQuery {
    store: EventStore,
    views: ReadModel,
}

impl OrderQuery {
    /// Reads `EVENT_STORE_TABLE` and `ORDERS_VIEW_TABLE`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        let dynamo = aws_sdk_dynamodb::Client::new(aws);
        Ok(OrderQuery {
            store: EventStore::new(
                dynamo.clone(),
                eventkit::aws::required_env("EVENT_STORE_TABLE")?,
            ),
            views: ReadModel::new(dynamo, eventkit::aws::required_env("ORDERS_VIEW_TABLE")?),
        })
    }

    pub async fn answer(&self, request: QueryRequest) -> Result<QueryResponse, QueryError> {
        let id = request.order_id.trim();
        if id.is_empty() || id.chars().count() > MAX_ORDER_ID {
            return Err(QueryError::BadOrderId);
        }
        let read_model = self.views.get(id).await?;
        let from_events = if request.as_of.is_some() || request.from_events {
            let as_of = request.as_of.map(|t| format_time(&t));
            let events = self.store.read_stream(&format!("order#{id}"), 1).await?;
            events
                .iter()
                // Both sides are RFC 3339 UTC with milliseconds: text order is time order.
                .filter(|e| as_of.as_ref().is_none_or(|t| e.recorded_at <= *t))
                .fold(None, |view, e| Some(project(view, e)))
        } else {
            None
        };
        Ok(QueryResponse {
            order_id: id.to_string(),
            read_model,
            from_events,
            as_of: request.as_of.map(|t| format_time(&t)),
        })
    }
}

impl From<QueryError> for lambda_runtime::Diagnostic {
    fn from(e: QueryError) -> Self {
        let error_type = match e {
            QueryError::BadOrderId => "BadRequest",
            QueryError::ReadModel(_) | QueryError::Store(_) => "StoreUnavailable",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}
