use eventcore::ids::check_data_ids;
use eventcore::{EventData, FieldError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::money::Currency;

/// The order's total was charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentProcessed {
    pub order_id: String,
    pub payment_id: String,
    pub amount: u64,
    pub currency: Currency,
}

impl EventData for PaymentProcessed {
    const DETAIL_TYPE: &'static str = "PaymentProcessed";
    const SOURCE: &'static str = crate::sources::PAYMENT;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[("orderId", &self.order_id), ("paymentId", &self.payment_id)])
    }
}

/// The charge was declined; nothing was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailed {
    pub order_id: String,
    pub payment_id: String,
    pub amount: u64,
    pub currency: Currency,
    /// Machine-readable: `card-declined` or `limit-exceeded`.
    pub reason: String,
}

impl EventData for PaymentFailed {
    const DETAIL_TYPE: &'static str = "PaymentFailed";
    const SOURCE: &'static str = crate::sources::PAYMENT;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[("orderId", &self.order_id), ("paymentId", &self.payment_id)])
    }
}

/// Compensation: the saga asks for the order's payment to be refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundPaymentRequested {
    pub order_id: String,
    /// Why, e.g. `out-of-stock` or `fraud-suspected`.
    pub reason: String,
}

impl EventData for RefundPaymentRequested {
    const DETAIL_TYPE: &'static str = "RefundPaymentRequested";
    const SOURCE: &'static str = crate::sources::SAGA;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[("orderId", &self.order_id)])
    }
}

/// The charge was refunded in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    pub order_id: String,
    pub payment_id: String,
    pub amount: u64,
    pub currency: Currency,
}

impl EventData for PaymentRefunded {
    const DETAIL_TYPE: &'static str = "PaymentRefunded";
    const SOURCE: &'static str = crate::sources::PAYMENT;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[("orderId", &self.order_id), ("paymentId", &self.payment_id)])
    }
}
