//! The shipments table: one item per order (`orderId`), written once.

use async_trait::async_trait;
use eventkit::dynamo::put_once;
use eventkit::{DynamoError, FirstWrite};
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

#[async_trait]
pub trait ShipmentRepository: Send + Sync {
    /// Stores `record` unless its order already has a shipment; that one is returned
    /// instead.
    async fn create_once(
        &self,
        record: &ShipmentRecord,
    ) -> Result<FirstWrite<ShipmentRecord>, DynamoError>;
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
    async fn create_once(
        &self,
        record: &ShipmentRecord,
    ) -> Result<FirstWrite<ShipmentRecord>, DynamoError> {
        put_once(&self.client, &self.table, "orderId", record).await
    }
}

/// The shipments table in memory, first writer wins per order like the DynamoDB adapter.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct MemoryShipmentRepository {
    pub table: eventkit::testing::MemoryTable<ShipmentRecord>,
}

#[cfg(test)]
#[async_trait]
impl ShipmentRepository for MemoryShipmentRepository {
    async fn create_once(
        &self,
        record: &ShipmentRecord,
    ) -> Result<FirstWrite<ShipmentRecord>, DynamoError> {
        Ok(self.table.first_write(&record.order_id, record.clone()))
    }
}
