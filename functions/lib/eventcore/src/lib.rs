//! # eventcore
//!
//! The part of eventkit that needs nothing from AWS, so event contracts can be plain types:
//!
//! - [`envelope`]: typed events with metadata (id, schema version, correlation and causation
//!   ids, time), to and from the EventBridge wire format, with upcasting of old versions.
//! - [`event_set`]: a closed set of event types, decoded in one place.
//! - [`routes`]: which (type, owning source) pairs a function takes in, and the rule
//!   pattern that follows from them.
//! - [`ids`]: limits on ids that become keys.
//! - [`error`]: the permanent/transient error model.

pub mod envelope;
pub mod error;
pub mod event_set;
pub mod ids;
pub mod occurred_at;
pub mod routes;
pub mod versions;

pub use envelope::{Envelope, EventData, EventMetadata, Payload, RawEvent};
pub use error::{DecodeError, FailureKind, HandlerError};
pub use event_set::EventSet;
pub use ids::FieldError;
pub use routes::Route;
