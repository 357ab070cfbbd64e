//! The inventory service: reserves stock for `OrderPlaced` orders, all lines or none, and
//! gives it back when the saga compensates (`ReleaseInventoryRequested`, `OrderCancelled`).
//!
//! - [`decision`]: the pure rules (merging lines, shortages, what an existing record means).
//! - [`repository`]: the stock and reservations tables (port and DynamoDB adapter).
//! - [`service`]: the per-event handler that ties them together, exactly once.

pub mod decision;
pub mod repository;
pub mod service;

pub use decision::{merge_lines, reservation_id_for, shortages, ReservationStatus};
pub use repository::{DynamoInventoryRepository, InventoryRepository, Reservation};
pub use service::InventoryService;
