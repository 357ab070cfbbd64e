//! `aws lambda invoke --function-name orderflow-<stage>-order-query --payload
//! '{"orderId": "ord-1001", "asOf": "2026-11-21T10:00:00Z"}'`: the order's read model and,
//! when `asOf` or `fromEvents` is given, its state rebuilt from its event stream as it was
//! at that time (time travel): the same projection, over the events recorded up to then.

use chrono::{DateTime, Utc};
use contracts::order_stream;
use eventkit::envelope::format_time;
use eventkit::{DynamoError, EventStore, StoredEvent};
use orderview::{replay, OrderView, ReadModel};
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
    #[error("orders read model: {0}")]
    ReadModel(#[from] DynamoError),
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
            let events = self.store.read_stream(&order_stream(id), 1).await?;
            view_at(&events, request.as_of.as_ref())
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

/// The order as it was at `as_of` (inclusive), from its stream: the same projection as the
/// read model, over the events recorded up to then (all of them without `as_of`).
pub fn view_at(events: &[StoredEvent], as_of: Option<&DateTime<Utc>>) -> Option<OrderView> {
    let as_of = as_of.map(format_time);
    // Both sides are RFC 3339 UTC with milliseconds: text order is time order.
    replay(
        events
            .iter()
            .filter(|e| as_of.as_ref().is_none_or(|t| e.recorded_at <= *t)),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{Currency, Event, OrderLine, OrderPlaced, PaymentProcessed};
    use eventkit::Envelope;
    use orderview::OrderStatus;

    fn stored(version: u64, data: Event) -> StoredEvent {
        let raw = Envelope::new(data).to_raw();
        let recorded = format!("2026-11-21T10:00:0{version}Z").parse().unwrap();
        StoredEvent::new(&order_stream("o1"), version, &raw, &recorded)
    }

    fn events() -> Vec<StoredEvent> {
        let eur = || Currency::try_from("EUR".to_string()).unwrap();
        vec![
            stored(
                1,
                Event::OrderPlaced(OrderPlaced {
                    order_id: "o1".into(),
                    customer_id: "c1".into(),
                    customer_email: "a@example.com".into(),
                    currency: eur(),
                    lines: vec![OrderLine {
                        sku: "MUG".into(),
                        quantity: 1,
                        unit_price: 500,
                    }],
                    total: 500,
                    payment_token: "tok".into(),
                    shipping_address: None,
                }),
            ),
            stored(
                2,
                Event::PaymentProcessed(PaymentProcessed {
                    order_id: "o1".into(),
                    payment_id: "pay_1".into(),
                    amount: 500,
                    currency: eur(),
                }),
            ),
        ]
    }

    #[test]
    fn as_of_the_time_of_an_event_the_view_includes_it_and_nothing_later() {
        let first: DateTime<Utc> = "2026-11-21T10:00:01Z".parse().unwrap();
        let view = view_at(&events(), Some(&first)).unwrap();
        assert_eq!(view.last_version, 1);
        assert_eq!(view.timeline.len(), 1);
        assert_eq!(view.status, OrderStatus::Placed);
        let before: DateTime<Utc> = "2026-11-21T10:00:00Z".parse().unwrap();
        assert_eq!(view_at(&events(), Some(&before)), None);
    }

    #[test]
    fn without_as_of_the_view_is_the_whole_stream() {
        let view = view_at(&events(), None).unwrap();
        assert_eq!(view, orderview::replay(&events()).unwrap());
        assert_eq!(view.last_version, 2);
    }

    #[test]
    fn requests_name_their_fields() {
        let request: QueryRequest =
            serde_json::from_value(serde_json::json!({"orderId": "o1", "fromEvents": true}))
                .unwrap();
        assert!(request.from_events && request.as_of.is_none());
        assert!(serde_json::from_value::<QueryRequest>(
            serde_json::json!({"orderId": "o1", "asof": "x"})
        )
        .is_err());
    }
}
