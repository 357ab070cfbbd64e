//! Fraud detection's verdicts. Every order gets one when it is checked: [`FraudCleared`] or
//! [`FraudSuspected`]; a cleared order may still be suspected later, when a later order
//! completes a pattern it belongs to.

use chrono::{DateTime, Utc};
use eventcore::envelope::unsupported_version;
use eventcore::ids::{check_data_id, check_data_ids};
use eventcore::versions::{add_null_field, required_since};
use eventcore::{DecodeError, EventData, FieldError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::address::Location;

/// The order is probably not genuine: the saga cancels it (with its compensations), or
/// records the suspicion if it has already shipped.
///
/// Version 2 added `pattern`; version 1 suspicions (a reason and a score) upcast with
/// `pattern: null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FraudSuspected {
    pub order_id: String,
    /// A short code: `velocity-locations` for the orders-from-many-places rule.
    pub reason: String,
    /// 0 to 100.
    pub score: u8,
    /// What completed the rule. Set from version 2 on; `null` only in suspicions upcast
    /// from version 1.
    #[schemars(with = "crate::nullable::PresentOrNull<FraudPattern>")]
    pub pattern: Option<FraudPattern>,
}

/// The rule's thresholds, as configured when the order was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FraudRule {
    /// This many orders or more...
    pub min_orders: u32,
    /// ...whose `occurredAt` times fall within this many seconds...
    pub window_seconds: u32,
    /// ...from at least this many distinct locations (country and city).
    pub min_locations: u32,
}

/// One customer's orders that together complete the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FraudPattern {
    pub customer_id: String,
    pub rule: FraudRule,
    /// The earliest and latest order time in the window (event time, not arrival).
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// Every order in the window, oldest first.
    pub order_ids: Vec<String>,
    /// The distinct known locations in the window.
    pub locations: Vec<Location>,
    /// The order whose check found the pattern.
    pub found_by_order_id: String,
}

impl EventData for FraudSuspected {
    const DETAIL_TYPE: &'static str = "FraudSuspected";
    const SOURCE: &'static str = crate::sources::FRAUD;
    const SCHEMA_VERSION: u32 = 2;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_id("orderId", &self.order_id)?;
        if let Some(pattern) = &self.pattern {
            check_data_ids(&[
                ("pattern.customerId", &pattern.customer_id),
                ("pattern.foundByOrderId", &pattern.found_by_order_id),
            ])?;
            for (i, id) in pattern.order_ids.iter().enumerate() {
                check_data_id(&format!("pattern.orderIds[{i}]"), id)?;
            }
        }
        Ok(())
    }

    fn validate_sent(&self, version: u32) -> Result<(), FieldError> {
        required_since(version, 2, "pattern", self.pattern.is_some())
    }

    fn upcast(version: u32, data: Value) -> Result<Value, DecodeError> {
        match version {
            1 => add_null_field(Self::DETAIL_TYPE, "pattern", data),
            2 => Ok(data),
            _ => Err(unsupported_version::<Self>(version)),
        }
    }
}

/// The order completed no fraud pattern when it was checked: the saga may confirm it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FraudCleared {
    pub order_id: String,
    pub customer_id: String,
    pub rule: FraudRule,
    /// The most orders of the customer found in one window around this order...
    pub orders_in_window: u32,
    /// ...and the most distinct known locations in one window.
    pub locations_in_window: u32,
}

impl EventData for FraudCleared {
    const DETAIL_TYPE: &'static str = "FraudCleared";
    const SOURCE: &'static str = crate::sources::FRAUD;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[
            ("orderId", &self.order_id),
            ("customerId", &self.customer_id),
        ])
    }
}
