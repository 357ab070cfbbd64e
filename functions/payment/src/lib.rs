//! The payment service: charges `OrderPlaced` orders and publishes `PaymentProcessed` or
//! `PaymentFailed`; refunds a charge once on `RefundPaymentRequested` and publishes
//! `PaymentRefunded`.
//!
//! - [`decision`]: the pure rules that approve or decline a charge and allow a refund.
//! - [`repository`]: the payments table (port and DynamoDB adapter).
//! - [`service`]: the per-event handler that ties them together, idempotently.

pub mod decision;
pub mod repository;
pub mod service;

pub use decision::{decide, PaymentDecision, PaymentPolicy};
pub use repository::{DynamoPaymentRepository, PaymentRecord, PaymentRepository};
pub use service::PaymentService;
