//! The shipments table: one item per order (`orderId`), written once.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use eventkit::error::sdk_error_text;
use eventkit::HandlerError;
use serde::{Deserialize, Serialize};

/// A shipment as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentRecord {
    pub order_id: String,
    pub shipment_id: String,
    pub carrier: String,
    pub tracking_number: String,
    pub customer_email: String,
    /// The `OrderConfirmed` that created the shipment: a redelivery of that event may
    /// publish `OrderShipped` again, another event for the same order may not ship again.
    pub event_id: String,
    pub correlation_id: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New,
    /// The order already had a shipment: the stored one.
    Existing(ShipmentRecord),
}

#[derive(Debug, thiserror::Error)]
#[error("shipments table: {0}")]
pub struct RepositoryError(String);

impl From<RepositoryError> for HandlerError {
    fn from(e: RepositoryError) -> Self {
        HandlerError::transient("shipments-table", e)
    }
}

#[async_trait]
pub trait ShipmentRepository: Send + Sync {
    /// Stores `record` unless its order already has a shipment.
    async fn create_once(&self, record: &ShipmentRecord) -> Result<Created, RepositoryError>;
}

pub struct DynamoShipmentRepository {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoShipmentRepository {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoShipmentRepository {
            client,
            table: table.into(),
        }
    }

    async fn stored(&self, order_id: &str) -> Result<ShipmentRecord, RepositoryError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("orderId", AttributeValue::S(order_id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| RepositoryError(sdk_error_text(&e)))?;
        let item = out.item().cloned().ok_or_else(|| {
            RepositoryError(format!("shipment of {order_id} vanished after a conflict"))
        })?;
        decode(item)
    }
}

fn decode(
    item: std::collections::HashMap<String, AttributeValue>,
) -> Result<ShipmentRecord, RepositoryError> {
    serde_dynamo::from_item(item)
        .map_err(|e| RepositoryError(format!("stored shipment unreadable: {e}")))
}

#[async_trait]
impl ShipmentRepository for DynamoShipmentRepository {
    async fn create_once(&self, record: &ShipmentRecord) -> Result<Created, RepositoryError> {
        let item = serde_dynamo::to_item(record).map_err(|e| RepositoryError(e.to_string()))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(orderId)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Created::New),
            Err(err) => err,
        };
        match err.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(failed)) => match failed.item() {
                Some(item) => decode(item.clone()).map(Created::Existing),
                // Emulators that do not return the old item: read it.
                None => self.stored(&record.order_id).await.map(Created::Existing),
            },
            _ => Err(RepositoryError(sdk_error_text(&err))),
        }
    }
}
