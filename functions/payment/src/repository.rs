//! The payments table: one item per order (`orderId`), written once.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use eventkit::error::sdk_error_text;
use eventkit::HandlerError;
use serde::{Deserialize, Serialize};

/// A charge or a decline, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRecord {
    pub order_id: String,
    pub payment_id: String,
    /// `CHARGED` or `DECLINED`.
    pub status: String,
    pub amount: u64,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_reason: Option<String>,
    /// The event that caused this record: a redelivery of the same event may publish the
    /// outcome again, another event for the same order may not charge again.
    pub event_id: String,
    pub correlation_id: String,
    pub processed_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Created,
    /// The order already had a payment: the stored one.
    Existing(PaymentRecord),
}

#[derive(Debug, thiserror::Error)]
#[error("payments table: {0}")]
pub struct RepositoryError(String);

impl From<RepositoryError> for HandlerError {
    fn from(e: RepositoryError) -> Self {
        HandlerError::transient("payments-table", e)
    }
}

#[async_trait]
pub trait PaymentRepository: Send + Sync {
    /// Stores `record` unless its order already has a payment.
    async fn record_once(&self, record: &PaymentRecord) -> Result<Recorded, RepositoryError>;
}

pub struct DynamoPaymentRepository {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoPaymentRepository {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoPaymentRepository {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl PaymentRepository for DynamoPaymentRepository {
    async fn record_once(&self, record: &PaymentRecord) -> Result<Recorded, RepositoryError> {
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
        match result {
            Ok(_) => Ok(Recorded::Created),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    let item = failed.item().cloned().ok_or_else(|| {
                        RepositoryError("condition failed without the stored item".into())
                    })?;
                    serde_dynamo::from_item(item)
                        .map(Recorded::Existing)
                        .map_err(|e| RepositoryError(format!("stored payment unreadable: {e}")))
                }
                _ => Err(RepositoryError(sdk_error_text(&err))),
            },
        }
    }
}
