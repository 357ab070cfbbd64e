//! The payments table: one item per order (`orderId`), written once; its status then moves
//! at most once more, `CHARGED -> REFUNDED`, by a conditional update.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use eventkit::dynamo::{put_if, PutIf};
use eventkit::error::sdk_error_text;
use eventkit::HandlerError;
use serde::{Deserialize, Serialize};

/// A charge or a decline, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRecord {
    pub order_id: String,
    pub payment_id: String,
    /// `CHARGED`, `DECLINED` or `REFUNDED` (see [`crate::decision`]).
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded_at: Option<String>,
    /// The refund request that took effect: only a redelivery of it may publish the refund
    /// again, any other request finds nothing left to refund.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_reason: Option<String>,
}

/// Who asks for a refund, why, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub event_id: String,
    pub reason: String,
    pub at: String,
}

/// The result of trying to refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refund {
    /// The payment was `CHARGED` and is now `REFUNDED` by this request: the record after.
    Refunded(Box<PaymentRecord>),
    /// The payment was not `CHARGED` (or there is none); nothing changed.
    NotCharged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Created,
    /// The order already had a payment: the stored one.
    Existing(Box<PaymentRecord>),
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

    /// The order's payment, read consistently.
    async fn payment(&self, order_id: &str) -> Result<Option<PaymentRecord>, RepositoryError>;

    /// Marks the order's payment refunded by `request`, only if it is `CHARGED`.
    async fn refund_once(
        &self,
        order_id: &str,
        request: &RefundRequest,
    ) -> Result<Refund, RepositoryError>;
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
            Ok(PutIf::Written) => Ok(Recorded::Created),
            Ok(PutIf::Existing(stored)) => Ok(Recorded::Existing(Box::new(stored))),
            Err(e) => Err(RepositoryError(e)),
        }
    }

    async fn payment(&self, order_id: &str) -> Result<Option<PaymentRecord>, RepositoryError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("orderId", AttributeValue::S(order_id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| RepositoryError(sdk_error_text(&e)))?;
        out.item()
            .map(|item| {
                serde_dynamo::from_item(item.clone())
                    .map_err(|e| RepositoryError(format!("stored payment unreadable: {e}")))
            })
            .transpose()
    }

    async fn refund_once(
        &self,
        order_id: &str,
        request: &RefundRequest,
    ) -> Result<Refund, RepositoryError> {
        let s = |v: &str| AttributeValue::S(v.to_string());
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("orderId", s(order_id))
            .update_expression(
                "SET #status = :refunded, refundedAt = :at, refundEventId = :by, \
                 refundReason = :why",
            )
            // Also false when there is no payment: the update never creates one.
            .condition_expression("#status = :charged")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":refunded", s(crate::decision::REFUNDED))
            .expression_attribute_values(":charged", s(crate::decision::CHARGED))
            .expression_attribute_values(":at", s(&request.at))
            .expression_attribute_values(":by", s(&request.event_id))
            .expression_attribute_values(":why", s(&request.reason))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes() {
                Some(item) => serde_dynamo::from_item(item.clone())
                    .map(|record| Refund::Refunded(Box::new(record)))
                    .map_err(|e| RepositoryError(format!("stored payment unreadable: {e}"))),
                // Emulators may not return the item: read it.
                None => self
                    .payment(order_id)
                    .await?
                    .map(|record| Refund::Refunded(Box::new(record)))
                    .ok_or_else(|| RepositoryError("refunded payment vanished".into())),
            },
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(Refund::NotCharged),
                _ => Err(RepositoryError(sdk_error_text(&err))),
            },
        }
    }
}
