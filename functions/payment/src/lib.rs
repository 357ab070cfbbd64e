//! The payment service: charges `OrderPlaced` orders and publishes `PaymentProcessed` or
//! `PaymentFailed`; refunds a charge once on `RefundPaymentRequested` and publishes
//! `PaymentRefunded`; on `OrderCancelled` makes sure an order not yet charged never is.
//!
//! It refuses to charge an order whose prices are not the catalogue's (`PaymentFailed`,
//! `price-mismatch`), an order cancelled before its charge (ignored), and a second,
//! different `OrderPlaced` for an order it has charged (dead-lettered as
//! `conflicting-duplicate`); [`service`] says why each holds under at-least-once delivery.
//!
//! - [`decision`]: the pure rules that approve or decline a charge and allow a refund.
//! - [`catalogue`]: each SKU's price (port and DynamoDB adapter on the inventory table).
//! - [`repository`]: the payments table (port and DynamoDB adapter).
//! - [`service`]: the per-event handler that ties them together, idempotently.

use contracts::{EventData, OrderCancelled, OrderPlaced, RefundPaymentRequested, Route};

pub mod catalogue;
pub mod decision;
pub mod repository;
pub mod service;

pub use catalogue::{Catalogue, CataloguePrice, DynamoCatalogue};

pub use decision::{decide, PaymentDecision, PaymentPolicy, PaymentStatus};
pub use repository::{DynamoPaymentRepository, PaymentRecord, PaymentRepository};
pub use service::PaymentService;

/// What the payment function takes in: orders to charge from the storefront, refund
/// requests and cancellations from the saga. Anything else, or these from another source,
/// is dead-lettered before the handler sees it; the rule `OrderPlacedToPaymentRule` routes
/// exactly these.
pub const ROUTES: &[Route] = &[
    OrderPlaced::ROUTE,
    RefundPaymentRequested::ROUTE,
    OrderCancelled::ROUTE,
];

#[cfg(test)]
mod tests {
    #[test]
    fn routes_match_the_template() {
        eventkit::testing::assert_rule_matches_routes("OrderPlacedToPaymentRule", super::ROUTES);
    }
}
