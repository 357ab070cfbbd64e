//! # eventkit
//!
//! What every Orderflow Lambda function stands on, and what other Rust Lambda authors can
//! depend on: the parts Powertools for AWS Lambda gives other languages.
//!
//! - [`envelope`], [`event_set`], [`routes`], [`ids`] (from `eventcore`, which needs nothing
//!   from AWS): typed events with metadata, closed event sets decoded in one place, typed
//!   routes that admit only a type's owning source, and limits on ids.
//! - [`lambda`]: the runtime loop; a function declares its routes and gets typed events.
//! - [`batch`]: SQS batches with partial failures, bounded concurrency, FIFO ordering and
//!   immediate dead-lettering of poison messages ([`dead_letter`]), and a time budget: no
//!   record is started when the invocation's time runs short.
//! - [`idempotency`]: run work once per key, with Powertools semantics, over the
//!   [`IdempotencyStore`] port (DynamoDB adapter; in-memory adapter under `testing`).
//! - [`publisher`]: the [`Publish`] port; PutEvents with per-entry retries.
//! - [`dynamo`]: first-writer-wins puts, transactions, batch reads, typed DynamoDB errors,
//!   attributes.
//! - [`once`]: what a first-writer-wins record of a business key decides, and why that is
//!   exactly once: the first event decides, a redelivery announces the stored answer again,
//!   another event acts on the stored decision.
//! - [`retry`]: the backoff schedule every in-process retry uses.
//! - [`store`]: an append-only event store with optimistic concurrency, duplicate guards
//!   scoped to a stream and a source (a redelivery is skipped, other content under a stored
//!   id refused), and time-ordered replay (in-memory adapter under `testing`).
//! - [`audit`]: the audit trail's item layout, its batch writer and its queries.
//! - [`observability`] and [`metrics`]: JSON logs and CloudWatch Embedded Metric Format.

// The README's examples compile as doc-tests (`cargo test -p eventkit --doc`), so they cannot
// drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

pub mod audit;
pub mod aws;
pub mod batch;
pub mod coalesce;
pub mod dead_letter;
pub mod dynamo;
pub mod error;
pub mod idempotency;
pub mod lambda;
pub mod metrics;
pub mod observability;
pub mod once;
pub mod publisher;
pub mod retry;
pub mod store;
pub mod stream;
#[cfg(feature = "testing")]
pub mod testing;

/// The AWS-free core, re-exported: envelopes, event sets, routes, ids.
pub use eventcore::{envelope, event_set, ids, routes};

pub use batch::{not_started, BatchProcessor, BatchReport, Handled, MessageOutcome, NOT_STARTED};
pub use dead_letter::{DeadLetter, DeadLetterSink, SqsDeadLetterQueue};
pub use dynamo::{DynamoError, FirstWrite};
pub use error::{DecodeError, FailureKind, HandlerError};
pub use eventcore::{Envelope, EventData, EventMetadata, EventSet, Payload, RawEvent, Route};
pub use idempotency::{Idempotency, IdempotencyError, IdempotencyStore, Outcome};
pub use lambda::{
    serve_event_batches, serve_events, serve_sqs, take_in, BatchResults, Clock, Invocation,
};
pub use metrics::BatchMetrics;
pub use once::{Decided, DecidedBy};
pub use publisher::{Publish, PublishError, Publisher};
pub use retry::RetryPolicy;
pub use store::{guard_key, Appended, EventStore, Mark, StoreError, StoredEvent};
