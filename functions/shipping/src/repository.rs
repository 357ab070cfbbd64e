//! The shipments table: one item per order (`orderId`), written once.

use async_trait::async_trait;
use eventkit::dynamo::{put_if, PutIf};
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
}

#[async_trait]
impl ShipmentRepository for DynamoShipmentRepository {
    async fn create_once(&self, record: &ShipmentRecord) -> Result<Created, RepositoryError> {
        let condition = "attribute_not_exists(orderId)";
        match put_if(
            &self.client,
            &self.table,
            "orderId",
            record,
            condition,
            &[],
            &[],
        )
        .await
        {
            Ok(PutIf::Written) => Ok(Created::New),
            Ok(PutIf::Existing(stored)) => Ok(Created::Existing(stored)),
            Err(e) => Err(RepositoryError(e)),
        }
    }
}
