//! The order saga's decisions and the order's later milestones.

use eventcore::ids::{check_data_ids, check_skus};
use eventcore::{EventData, FieldError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::inventory::StockLine;
use crate::money::Currency;

/// Paid and reserved: the order goes ahead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderConfirmed {
    pub order_id: String,
    pub customer_id: String,
    pub customer_email: String,
    pub total: u64,
    pub currency: Currency,
    pub payment_id: String,
    pub reservation_id: String,
    pub lines: Vec<StockLine>,
}

impl EventData for OrderConfirmed {
    const DETAIL_TYPE: &'static str = "OrderConfirmed";
    const SOURCE: &'static str = crate::sources::SAGA;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[
            ("orderId", &self.order_id),
            ("customerId", &self.customer_id),
            ("paymentId", &self.payment_id),
            ("reservationId", &self.reservation_id),
        ])?;
        check_skus("lines", self.lines.iter().map(|line| line.sku.as_str()))
    }
}

/// The order will not go ahead; compensations were requested where needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    pub order_id: String,
    pub customer_id: String,
    pub customer_email: String,
    /// `payment-failed`, `out-of-stock` or `fraud-suspected`.
    // (The published schema's description; since then also `price-mismatch`,
    // `deadline-exceeded` and an operator's reason.)
    pub reason: String,
}

impl EventData for OrderCancelled {
    const DETAIL_TYPE: &'static str = "OrderCancelled";
    const SOURCE: &'static str = crate::sources::SAGA;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[
            ("orderId", &self.order_id),
            ("customerId", &self.customer_id),
        ])
    }
}

/// The order was not confirmed in time: the deadline timer's fact, one per order, sent
/// `OrderDeadlineSeconds` after the order was placed. The saga cancels an order that is still
/// pending with reason [`DEADLINE_EXCEEDED`]; for any other order it is only recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderDeadlineReached {
    pub order_id: String,
}

/// `OrderCancelled.reason` of an order its deadline ended.
pub const DEADLINE_EXCEEDED: &str = "deadline-exceeded";

impl EventData for OrderDeadlineReached {
    const DETAIL_TYPE: &'static str = "OrderDeadlineReached";
    const SOURCE: &'static str = crate::sources::DEADLINES;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[("orderId", &self.order_id)])
    }
}

/// An operator asks for an order to be ended (`orderflow order cancel <id> --reason R`). The
/// saga cancels it like any other cancel: at once while it is pending, through shipping once
/// it is confirmed, not at all once it has shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelRequested {
    pub order_id: String,
    /// A short code (letters, digits, `-`, `_`, `.`), the cancelled order's reason.
    pub reason: String,
}

impl EventData for OrderCancelRequested {
    const DETAIL_TYPE: &'static str = "OrderCancelRequested";
    const SOURCE: &'static str = crate::sources::OPERATIONS;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[("orderId", &self.order_id), ("reason", &self.reason)])
    }
}

/// The saga wants a confirmed order stopped before it leaves: shipping cancels the shipment
/// unless it was dispatched first (one conditional write decides which), and says so with
/// [`ShipmentCancelled`] or `OrderShipped`. The saga refunds and releases only after
/// `ShipmentCancelled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelShipmentRequested {
    pub order_id: String,
    /// Why, e.g. `fraud-suspected`: the order's reason once it is cancelled.
    pub reason: String,
}

impl EventData for CancelShipmentRequested {
    const DETAIL_TYPE: &'static str = "CancelShipmentRequested";
    const SOURCE: &'static str = crate::sources::SAGA;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[("orderId", &self.order_id), ("reason", &self.reason)])
    }
}

/// The shipment was stopped before dispatch (or never created): the goods stay, so the
/// saga may refund and release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentCancelled {
    pub order_id: String,
    /// The `CancelShipmentRequested` reason.
    pub reason: String,
}

impl EventData for ShipmentCancelled {
    const DETAIL_TYPE: &'static str = "ShipmentCancelled";
    const SOURCE: &'static str = crate::sources::SHIPPING;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[("orderId", &self.order_id), ("reason", &self.reason)])
    }
}

/// Handed to a carrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderShipped {
    pub order_id: String,
    pub shipment_id: String,
    pub carrier: String,
    pub tracking_number: String,
    pub customer_email: String,
}

impl EventData for OrderShipped {
    const DETAIL_TYPE: &'static str = "OrderShipped";
    const SOURCE: &'static str = crate::sources::SHIPPING;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[
            ("orderId", &self.order_id),
            ("shipmentId", &self.shipment_id),
        ])
    }
}

/// An email went out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailSent {
    /// The event the email is about.
    pub cause_event_id: String,
    /// Which template: `order-confirmed`, `order-cancelled`, `order-shipped`, `welcome`.
    pub template: String,
    pub to: String,
    pub subject: String,
    /// The mail provider's message id.
    pub message_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

impl EventData for EmailSent {
    const DETAIL_TYPE: &'static str = "EmailSent";
    const SOURCE: &'static str = crate::sources::NOTIFICATION;
}
