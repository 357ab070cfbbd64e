use eventkit::EventData;
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
}
