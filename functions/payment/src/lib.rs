//! The payment service: charges `OrderPlaced` orders and publishes `PaymentProcessed` or
//! `PaymentFailed`; refunds a charge once on `RefundPaymentRequested` and publishes
//! `PaymentRefunded`.
//!
//! - [`decision`]: the pure rules that approve or decline a charge and allow a refund.
//! - [`repository`]: the payments table (port and DynamoDB adapter).
//! - [`service`]: the per-event handler that ties them together, idempotently.

use contracts::{EventData, OrderPlaced, RefundPaymentRequested, Route};

pub mod decision;
pub mod repository;
pub mod service;

pub use decision::{decide, PaymentDecision, PaymentPolicy, PaymentStatus};
pub use repository::{DynamoPaymentRepository, PaymentRecord, PaymentRepository};
pub use service::PaymentService;

/// What the payment function takes in: orders to charge from the storefront, refund
/// requests from the saga. Anything else, or these from another source, is dead-lettered
/// before the handler sees it; the rule `OrderPlacedToPaymentRule` routes exactly these.
pub const ROUTES: &[Route] = &[OrderPlaced::ROUTE, RefundPaymentRequested::ROUTE];

#[cfg(test)]
mod tests {
    #[test]
    fn routes_match_the_template() {
        eventkit::testing::assert_rule_matches_routes("OrderPlacedToPaymentRule", super::ROUTES);
    }
}
