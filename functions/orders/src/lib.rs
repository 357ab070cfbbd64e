//! The order saga. Each order is an event-sourced aggregate stored in the event store as
//! the stream `order#<id>`: the facts that reached it (OrderPlaced, payment and inventory
//! results, fraud, shipping) and the decisions it took (OrderConfirmed, OrderCancelled,
//! ReleaseInventoryRequested, RefundPaymentRequested). Decisions reach the bus only through
//! the outbox (the store's DynamoDB stream), so nothing is published that is not stored.
//!
//! - [`aggregate`]: the pure state machine, `handle(fact) -> decisions` and `apply(event)`.
//! - [`service`]: load the stream, decide, append with the expected version, retry on
//!   conflict.

pub mod aggregate;
pub mod service;

#[cfg(test)]
mod fixtures;

pub use aggregate::{Order, OrderStatus};
pub use service::{OrderStreams, SagaService, ROUTES};
