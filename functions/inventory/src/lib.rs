//! The inventory service: reserves stock for `OrderPlaced` orders, all lines or none, and
//! gives it back when the saga compensates (`ReleaseInventoryRequested`, `OrderCancelled`).
//!
//! - [`decision`]: the pure rules (merging lines, shortages, what an existing record means).
//! - [`repository`]: the stock and reservations tables (port and DynamoDB adapter).
//! - [`service`]: the per-event handler that ties them together, exactly once.

pub mod decision;
pub mod repository;
pub mod service;

use contracts::{EventData, OrderCancelled, OrderPlaced, ReleaseInventoryRequested, Route};

pub use decision::{merge_lines, reservation_id_for, shortages, ReservationStatus};
pub use repository::{DynamoInventoryRepository, InventoryRepository, Reservation};
pub use service::InventoryService;

/// What the inventory function takes in, each type only from the source that owns it:
/// orders to reserve for, and the saga's two ways of asking for the stock back. The
/// template's `InventoryRule` routes exactly these pairs (checked below).
pub const ROUTES: &[Route] = &[
    OrderPlaced::ROUTE,
    ReleaseInventoryRequested::ROUTE,
    OrderCancelled::ROUTE,
];

#[cfg(test)]
mod tests {
    #[test]
    fn routes_match_the_template() {
        eventkit::testing::assert_rule_matches_routes("InventoryRule", super::ROUTES);
    }
}
