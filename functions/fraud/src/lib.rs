//! The fraud service: checks every `OrderPlaced` against the orders-from-many-places rule
//! and publishes `FraudSuspected` for each order of a pattern, `FraudCleared` otherwise.
//!
//! - [`window`]: the pure rule over one customer's orders (which windows, which orders).
//! - [`config`]: the rule's thresholds from the environment.
//! - [`repository`]: the fraud table (port and DynamoDB adapter).
//! - [`service`]: the batch handler that records, reads, judges, flags and publishes, so
//!   that each order is suspected once however the batch is delivered.

use contracts::{EventData, OrderPlaced, Route};

pub mod config;
pub mod repository;
pub mod service;
pub mod window;

pub use config::{rule_from_env, ConfigError, DEFAULT_RULE};
pub use repository::{DynamoFraudWindows, Flagging, FraudWindows, OrderRecord};
pub use service::FraudService;
pub use window::{assess, Assessment, Flag, Sighting, Window};

/// What the fraud function takes in: orders, only from the storefront. Anything else is
/// dead-lettered before the handler sees it; the rule `FraudRule` routes exactly these.
pub const ROUTES: &[Route] = &[OrderPlaced::ROUTE];

#[cfg(test)]
mod tests {
    #[test]
    fn routes_match_the_template() {
        eventkit::testing::assert_rule_matches_routes("FraudRule", super::ROUTES);
    }
}
