//! The payments table: one item per order (`orderId`), written once; its status then moves
//! at most once more, `CHARGED -> REFUNDED`, by a conditional update. An order cancelled
//! before it was charged gets a `CANCELLED` item instead (a tombstone), written by the same
//! first-writer-wins put, so whichever of the charge and the cancellation comes first holds.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValue;
use contracts::Currency;
use eventkit::dynamo::attr::s;
use eventkit::dynamo::put_once;
use eventkit::{DecidedBy, DynamoError, FirstWrite};
use serde::{Deserialize, Serialize};

use crate::decision::PaymentStatus;

/// A charge, a decline or a cancellation's tombstone, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRecord {
    pub order_id: String,
    pub payment_id: String,
    pub status: PaymentStatus,
    pub amount: u64,
    pub currency: Currency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_reason: Option<String>,
    /// The event that caused this record: a redelivery of the same event may publish the
    /// outcome again, another event for the same order may not charge again.
    pub event_id: String,
    /// The content digest (`Envelope::content_digest`) of the `OrderPlaced` that was
    /// charged: another `OrderPlaced` for the order is a duplicate only with the same digest.
    /// `None` on tombstones and on records written before digests were stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_digest: Option<String>,
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
    /// Why the order was cancelled, on a tombstone (the `OrderCancelled` reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
}

impl DecidedBy for PaymentRecord {
    fn cause_event_id(&self) -> &str {
        &self.event_id
    }
    fn cause_correlation_id(&self) -> &str {
        &self.correlation_id
    }
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

#[async_trait]
pub trait PaymentRepository: Send + Sync {
    /// Stores `record` unless its order already has a payment; that one is returned instead.
    async fn record_once(
        &self,
        record: &PaymentRecord,
    ) -> Result<FirstWrite<PaymentRecord>, DynamoError>;

    /// The order's payment, read consistently.
    async fn payment(&self, order_id: &str) -> Result<Option<PaymentRecord>, DynamoError>;

    /// Marks the order's payment refunded by `request`, only if it is `CHARGED`.
    async fn refund_once(
        &self,
        order_id: &str,
        request: &RefundRequest,
    ) -> Result<Refund, DynamoError>;
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

fn unreadable(e: serde_dynamo::Error) -> DynamoError {
    DynamoError::Unreadable(format!("stored payment: {e}"))
}

#[async_trait]
impl PaymentRepository for DynamoPaymentRepository {
    async fn record_once(
        &self,
        record: &PaymentRecord,
    ) -> Result<FirstWrite<PaymentRecord>, DynamoError> {
        put_once(&self.client, &self.table, "orderId", record).await
    }

    async fn payment(&self, order_id: &str) -> Result<Option<PaymentRecord>, DynamoError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("orderId", s(order_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DynamoError::from_sdk(&e))?;
        out.item()
            .map(|item| serde_dynamo::from_item(item.clone()).map_err(unreadable))
            .transpose()
    }

    async fn refund_once(
        &self,
        order_id: &str,
        request: &RefundRequest,
    ) -> Result<Refund, DynamoError> {
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
            .expression_attribute_values(":refunded", s(PaymentStatus::Refunded.as_str()))
            .expression_attribute_values(":charged", s(PaymentStatus::Charged.as_str()))
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
                    .map_err(unreadable),
                // Emulators may not return the item: read it.
                None => self
                    .payment(order_id)
                    .await?
                    .map(|record| Refund::Refunded(Box::new(record)))
                    .ok_or_else(|| DynamoError::Unavailable("refunded payment vanished".into())),
            },
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(Refund::NotCharged),
                _ => Err(DynamoError::from_sdk(&err)),
            },
        }
    }
}

/// The payments table in memory, with the DynamoDB adapter's conditions: first writer wins
/// per order, and only a `CHARGED` payment is refunded.
#[cfg(any(test, feature = "testing"))]
#[derive(Default)]
pub struct MemoryPaymentRepository {
    pub table: eventkit::testing::MemoryTable<PaymentRecord>,
}

#[cfg(any(test, feature = "testing"))]
#[async_trait]
impl PaymentRepository for MemoryPaymentRepository {
    async fn record_once(
        &self,
        record: &PaymentRecord,
    ) -> Result<FirstWrite<PaymentRecord>, DynamoError> {
        Ok(self.table.first_write(&record.order_id, record.clone()))
    }

    async fn payment(&self, order_id: &str) -> Result<Option<PaymentRecord>, DynamoError> {
        Ok(self.table.get(order_id))
    }

    async fn refund_once(
        &self,
        order_id: &str,
        request: &RefundRequest,
    ) -> Result<Refund, DynamoError> {
        let refunded = self.table.update_if(order_id, |payment| {
            if payment.status != PaymentStatus::Charged {
                return false;
            }
            payment.status = PaymentStatus::Refunded;
            payment.refunded_at = Some(request.at.clone());
            payment.refund_event_id = Some(request.event_id.clone());
            payment.refund_reason = Some(request.reason.clone());
            true
        });
        Ok(match refunded {
            Some(record) => Refund::Refunded(Box::new(record)),
            None => Refund::NotCharged,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;
    use std::collections::HashMap;

    #[test]
    fn a_payment_is_stored_with_the_attributes_and_strings_of_today() {
        let record = PaymentRecord {
            order_id: "ord-1".into(),
            payment_id: "pay_1".into(),
            status: PaymentStatus::Declined,
            amount: 2500,
            currency: Currency::try_from("EUR".to_string()).unwrap(),
            decline_reason: Some("card-declined".into()),
            event_id: "e1".into(),
            order_digest: Some("d1".into()),
            correlation_id: "c1".into(),
            processed_at: "2026-11-21T10:00:00.000Z".into(),
            refunded_at: None,
            refund_event_id: None,
            refund_reason: None,
            cancel_reason: None,
        };
        let item: HashMap<String, AttributeValue> = serde_dynamo::to_item(&record).unwrap();
        let s = |v: &str| AttributeValue::S(v.into());
        assert_eq!(
            item,
            HashMap::from([
                ("orderId".into(), s("ord-1")),
                ("paymentId".into(), s("pay_1")),
                ("status".into(), s("DECLINED")),
                ("amount".into(), AttributeValue::N("2500".into())),
                ("currency".into(), s("EUR")),
                ("declineReason".into(), s("card-declined")),
                ("eventId".into(), s("e1")),
                ("orderDigest".into(), s("d1")),
                ("correlationId".into(), s("c1")),
                ("processedAt".into(), s("2026-11-21T10:00:00.000Z")),
            ])
        );
        assert_eq!(
            serde_dynamo::from_item::<_, PaymentRecord>(item).unwrap(),
            record
        );
    }

    #[test]
    fn a_payment_stored_before_digests_reads_without_one() {
        let s = |v: &str| AttributeValue::S(v.into());
        let item: HashMap<String, AttributeValue> = HashMap::from([
            ("orderId".into(), s("ord-1")),
            ("paymentId".into(), s("pay_1")),
            ("status".into(), s("CHARGED")),
            ("amount".into(), AttributeValue::N("2500".into())),
            ("currency".into(), s("EUR")),
            ("eventId".into(), s("e1")),
            ("correlationId".into(), s("c1")),
            ("processedAt".into(), s("2026-11-21T10:00:00.000Z")),
        ]);
        let record: PaymentRecord = serde_dynamo::from_item(item).unwrap();
        assert_eq!(record.order_digest, None);
        assert_eq!(record.status, PaymentStatus::Charged);
    }
}
