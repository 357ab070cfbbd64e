//! The analytics service: counts every Orderflow event per detail-type per hour, and gross
//! and refunded revenue per currency per day, each event exactly once.
//!
//! - [`counters`]: the pure part: bucket keys and which counter updates an event implies.
//! - [`repository`]: the analytics table (port and DynamoDB adapter): one transaction per
//!   event that writes a "seen" marker and the counters together.
//! - [`service`]: the per-event handler.

pub mod counters;
pub mod repository;
pub mod service;

pub use counters::{plan, CounterKey, CounterUpdate};
pub use repository::{Applied, CounterStore, DynamoCounterStore, Marker, RepositoryError};
pub use service::AnalyticsService;
