//! The orders read model (CQRS): one document per order with its status, lines, totals,
//! payment, reservation, shipment and a timeline of its events.
//!
//! [`project`] is the only place that turns events into the view; the projector function
//! (live, from the store's stream, and when rebuilding by replay) and the order-query
//! function (state "as of" a time, from the stream) both use it, so they cannot disagree.

pub mod repository;
pub mod view;

pub use repository::{is_current, supersedes, ReadModel};
pub use view::{
    order_of_stream, project, replay, Compensation, OrderStatus, OrderView, PaymentStatus,
    ReservationStatus, PROJECTION_VERSION,
};
