//! # eventkit
//!
//! What every Orderflow Lambda function stands on, and what other Rust Lambda authors can
//! depend on: the parts Powertools for AWS Lambda gives other languages.
//!
//! - [`envelope`]: typed events with metadata (id, schema version, correlation and causation
//!   ids, time), to and from EventBridge, with upcasting of old schema versions.
//! - [`batch`]: SQS batches with partial failures, bounded concurrency, FIFO ordering and
//!   immediate dead-lettering of poison messages ([`dead_letter`]).
//! - [`idempotency`]: run work once per key, with DynamoDB records and Powertools semantics.
//! - [`publisher`]: PutEvents with per-entry retries.
//! - [`retry`]: the backoff schedule every in-process retry uses.
//! - [`store`]: an append-only event store with optimistic concurrency and time-ordered
//!   replay.
//! - [`observability`] and [`metrics`]: JSON logs and CloudWatch Embedded Metric Format.

pub mod aws;
pub mod batch;
pub mod dead_letter;
pub mod dynamo;
pub mod envelope;
pub mod error;
pub mod idempotency;
pub mod lambda;
pub mod metrics;
pub mod observability;
pub mod publisher;
pub mod retry;
pub mod store;
pub mod stream;

pub use batch::{BatchProcessor, BatchReport, Handled, MessageOutcome};
pub use dead_letter::{DeadLetter, DeadLetterSink, SqsDeadLetterQueue};
pub use envelope::{Envelope, EventData, EventMetadata, RawEvent};
pub use error::{DecodeError, FailureKind, HandlerError};
pub use idempotency::{Idempotency, IdempotencyError, Outcome};
pub use lambda::{serve_sqs, Invocation};
pub use metrics::BatchMetrics;
pub use publisher::{PublishError, Publisher};
pub use retry::RetryPolicy;
pub use store::{EventStore, StoreError, StoredEvent};
