//! The shipping service: hands each `OrderConfirmed` order to a carrier, once, and
//! publishes `OrderShipped`.
//!
//! - [`plan`]: the pure rule that picks the carrier and tracking number of an order.
//! - [`repository`]: the shipments table (port and DynamoDB adapter).
//! - [`service`]: the per-event handler that ties them together, idempotently.

use contracts::{EventData, OrderConfirmed, Route};

pub mod plan;
pub mod repository;
pub mod service;

pub use plan::{plan_shipment, ShipmentPlan, CARRIERS};
pub use repository::{DynamoShipmentRepository, ShipmentRecord, ShipmentRepository};
pub use service::ShippingService;

/// What the shipping function takes in: the saga's confirmed orders, from the saga only.
/// Anything else is dead-lettered before the handler sees it; the rule `ShippingRule`
/// routes exactly these.
pub const ROUTES: &[Route] = &[OrderConfirmed::ROUTE];

#[cfg(test)]
mod tests {
    #[test]
    fn routes_match_the_template() {
        eventkit::testing::assert_rule_matches_routes("ShippingRule", super::ROUTES);
    }
}
