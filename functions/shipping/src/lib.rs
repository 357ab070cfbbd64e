//! The shipping service: holds each `OrderConfirmed` order for `ShipmentHoldSeconds`, then
//! hands it to a carrier, once, and publishes `OrderShipped`; unless the saga's
//! `CancelShipmentRequested` reached shipping first, which it answers with
//! `ShipmentCancelled`.
//!
//! Exactly one of dispatch and cancel wins per order, because both are the same conditional
//! write (the order's one item in the shipments table), and the loser finds the winner's item
//! and defers to it; see [`service`]. The hold is the shipping queue's delay, not a timer
//! here; the function only checks at start-up that it covers the fraud window ([`hold`]).
//!
//! - [`plan`]: the pure rule that picks the carrier and tracking number of an order.
//! - [`repository`]: the shipments table (port and DynamoDB adapter).
//! - [`hold`]: the start-up check of the hold against the fraud window.
//! - [`service`]: the per-event handler that ties them together, idempotently.

use contracts::{CancelShipmentRequested, EventData, OrderConfirmed, Route};

pub mod hold;
pub mod plan;
pub mod repository;
pub mod service;

pub use hold::{check_hold, HoldError};
pub use plan::{plan_shipment, ShipmentPlan, CARRIERS};
pub use repository::{
    Dispatch, DynamoShipmentRepository, ShipmentRecord, ShipmentRepository, ShipmentState,
};
pub use service::ShippingService;

/// What the shipping function takes in, each type from its owner only: the saga's confirmed
/// orders (through the delayed `ShippingQueue`, rule `ShippingRule`) and its requests to stop
/// one (through `ShippingCancelQueue`, rule `ShippingCancelRule`, without delay). Anything
/// else is dead-lettered before the handler sees it.
pub const ROUTES: &[Route] = &[OrderConfirmed::ROUTE, CancelShipmentRequested::ROUTE];

#[cfg(test)]
mod tests {
    use super::*;

    /// Which rule feeds which of the function's routes: each rule matches exactly its own
    /// routes (so the hold applies to `OrderConfirmed` and only to it), and together they
    /// are exactly `ROUTES`, no route fed twice, none missing.
    const RULES: &[(&str, &[Route])] = &[
        ("ShippingRule", &[OrderConfirmed::ROUTE]),
        ("ShippingCancelRule", &[CancelShipmentRequested::ROUTE]),
    ];

    #[test]
    fn routes_match_the_template() {
        for (rule, routes) in RULES {
            eventkit::testing::assert_rule_matches_routes(rule, routes);
        }
        let mut fed: Vec<Route> = RULES.iter().flat_map(|(_, r)| r.iter().copied()).collect();
        fed.sort();
        let before = fed.len();
        fed.dedup();
        assert_eq!(fed.len(), before, "a route is fed by two rules: {RULES:?}");
        let mut routes = ROUTES.to_vec();
        routes.sort();
        assert_eq!(fed, routes, "the rules feed other routes than ROUTES");
    }
}
