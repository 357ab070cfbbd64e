//! Earlier schema versions, frozen. A published schema never changes: a change is a new
//! version, with an upcast from the previous one in the type's `EventData::upcast`. These
//! types exist only to generate the schemas of the versions they name (into
//! `events/schemas/<Type>.v<N>.json`, locked by `events/schemas/PUBLISHED`); nothing
//! decodes into them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::money::Currency;
use crate::order::OrderLine;

// `OrderPlaced` version 1: no shipping address. The doc line is the published description.
/// A customer placed an order. Sent by the storefront (or `aws events put-events`).
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename = "OrderPlaced", rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderPlacedV1 {
    #[schemars(length(min = 1, max = 64))]
    pub order_id: String,
    #[schemars(length(min = 1, max = 64))]
    pub customer_id: String,
    #[schemars(length(min = 3, max = 254))]
    pub customer_email: String,
    pub currency: Currency,
    #[schemars(length(min = 1, max = 100))]
    pub lines: Vec<OrderLine>,
    /// Sum of `quantity * unitPrice` over the lines, in minor units.
    pub total: u64,
    /// The card token to charge. `tok_decline` is always declined (for tests and demos).
    #[schemars(length(min = 1, max = 128))]
    pub payment_token: String,
}

// `FraudSuspected` version 1: a reason and a score, no pattern.
/// Fraud detection thinks the order is not genuine: the saga cancels it.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(rename = "FraudSuspected", rename_all = "camelCase")]
pub struct FraudSuspectedV1 {
    pub order_id: String,
    pub reason: String,
    /// 0 to 100.
    pub score: u8,
}
