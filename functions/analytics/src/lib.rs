//! The analytics service: counts every Orderflow event per detail-type per hour, and gross
//! and refunded revenue per currency per day, each event exactly once.
//!
//! - [`counters`]: the pure part: bucket keys and which counter updates an event implies.
//! - [`batch`]: the pure part of batching: a batch's events as transactions of a bounded
//!   size.
//! - [`repository`]: the analytics table (port and DynamoDB adapter): one transaction that
//!   writes "seen" markers and the counters together; why that counts each event once.
//! - [`service`]: the batch handler: chunks of a few transactions' worth, started only while
//!   the invocation has time; why chunks keep each event counted once.

pub mod batch;
pub mod counters;
pub mod repository;
pub mod service;

use contracts::{Event, EventSet};
use eventkit::Route;

pub use batch::{Counting, TransactionPlan, MAX_TRANSACTION_ITEMS};
pub use counters::{merge, plan, CounterKey, CounterUpdate};
pub use repository::{Applied, CounterStore, DynamoCounterStore, Marker, RepositoryError};
pub use service::{AnalyticsService, CHUNK_ITEMS, CONFLICT_RETRIES};

/// What analytics takes in: every Orderflow event type, each from the source that owns it.
/// Following the closed set means a type added to the contracts is counted with no change
/// here (only the rule, which `routes_match_the_template` checks); anything else (a type
/// no contract knows, a forged source) is dead-lettered, never counted.
pub const ROUTES: &[Route] = Event::ROUTES;

#[cfg(test)]
mod tests {
    #[test]
    fn routes_match_the_template() {
        eventkit::testing::assert_rule_matches_routes("AnalyticsRule", super::ROUTES);
    }
}
