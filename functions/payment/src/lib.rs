//! The payment service: charges `OrderPlaced` orders and publishes `PaymentProcessed` or
//! `PaymentFailed`.
//!
//! - [`decision`]: the pure rule that approves or declines a charge.
//! - [`repository`]: the payments table (port and DynamoDB adapter).
//! - [`service`]: the per-event handler that ties them together, idempotently.

pub mod decision;
pub mod repository;
pub mod service;

pub use decision::{decide, PaymentDecision, PaymentPolicy};
pub use repository::{DynamoPaymentRepository, PaymentRecord, PaymentRepository};
pub use service::PaymentService;
