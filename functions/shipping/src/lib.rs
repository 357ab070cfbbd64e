//! The shipping service: hands each `OrderConfirmed` order to a carrier, once, and
//! publishes `OrderShipped`.
//!
//! - [`plan`]: the pure rule that picks the carrier and tracking number of an order.
//! - [`repository`]: the shipments table (port and DynamoDB adapter).
//! - [`service`]: the per-event handler that ties them together, idempotently.

pub mod plan;
pub mod repository;
pub mod service;

pub use plan::{plan_shipment, ShipmentPlan, CARRIERS};
pub use repository::{DynamoShipmentRepository, ShipmentRecord, ShipmentRepository};
pub use service::ShippingService;
