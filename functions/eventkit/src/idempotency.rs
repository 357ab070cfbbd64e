//! Idempotency records in DynamoDB, with the semantics of Powertools for AWS Lambda.
//!
//! A record per key: `status` (INPROGRESS / COMPLETED), `expiration` (epoch seconds, the
//! table's TTL attribute), `in_progress_expiration` (epoch milliseconds, from the Lambda
//! context's remaining time), `validation` (SHA-256 of the payload) and `data` (the stored
//! result). One conditional put takes the lock; a duplicate gets the stored result without
//! running the work again.

use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::batch::Handled;
use crate::envelope::EventMetadata;
use crate::error::{sdk_error_text, HandlerError};
use crate::lambda::Invocation;

const STATUS_IN_PROGRESS: &str = "INPROGRESS";
const STATUS_COMPLETED: &str = "COMPLETED";

/// How long a completed record protects against duplicates unless configured otherwise.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(3600);

#[derive(Debug, Error)]
pub enum IdempotencyError<E> {
    /// Another invocation holds the lock for this key right now. Transient: retry later.
    #[error("idempotency key `{0}` is already in progress")]
    AlreadyInProgress(String),
    /// The key was seen before with a different payload: a caller bug, never retried.
    #[error("idempotency key `{0}` was used before with a different payload")]
    PayloadMismatch(String),
    /// The stored result could not be read back as the expected type.
    #[error("stored result for `{key}` is unreadable: {message}")]
    CorruptRecord { key: String, message: String },
    /// DynamoDB failed. Transient.
    #[error("idempotency store: {0}")]
    Store(String),
    /// The work itself failed; its record was removed so a retry can run it again.
    #[error(transparent)]
    Work(E),
}

impl From<IdempotencyError<HandlerError>> for HandlerError {
    fn from(e: IdempotencyError<HandlerError>) -> Self {
        match e {
            IdempotencyError::Work(inner) => inner,
            IdempotencyError::AlreadyInProgress(_) => HandlerError::transient("in-progress", e),
            IdempotencyError::PayloadMismatch(_) => {
                HandlerError::permanent("idempotency-payload-mismatch", e)
            }
            IdempotencyError::CorruptRecord { .. } => {
                HandlerError::permanent("idempotency-corrupt-record", e)
            }
            IdempotencyError::Store(_) => HandlerError::transient("idempotency-store", e),
        }
    }
}

/// Whether the work ran now or its earlier result was returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<R> {
    Executed(R),
    Duplicate(R),
}

impl<R> Outcome<R> {
    pub fn into_inner(self) -> R {
        match self {
            Outcome::Executed(r) | Outcome::Duplicate(r) => r,
        }
    }
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Outcome::Duplicate(_))
    }
}

/// Idempotent execution backed by one DynamoDB table (partition key `id`, TTL on
/// `expiration`).
#[derive(Clone, Debug)]
pub struct Idempotency {
    client: Client,
    table: String,
    scope: String,
    expiry: Duration,
}

impl Idempotency {
    /// `scope` namespaces keys (use the function name): several functions process the same
    /// event id and each must do its own work once.
    pub fn new(client: Client, table: impl Into<String>, scope: impl Into<String>) -> Self {
        Idempotency {
            client,
            table: table.into(),
            scope: scope.into(),
            expiry: DEFAULT_EXPIRY,
        }
    }

    pub fn with_expiry(mut self, expiry: Duration) -> Self {
        self.expiry = expiry;
        self
    }

    /// The record key for `key` in this scope.
    pub fn record_key(&self, key: &str) -> String {
        format!("{}#{}", self.scope, key)
    }

    /// Runs `work` at most once per `key` (within the expiry), returning its result or the
    /// stored result of an earlier run. `payload` is hashed to catch a key reused for
    /// different input. `in_progress_for` bounds how long the lock protects a run that died
    /// mid-way: pass the Lambda context's remaining time.
    pub async fn run<P, R, E, F, Fut>(
        &self,
        key: &str,
        payload: &P,
        in_progress_for: Duration,
        work: F,
    ) -> Result<Outcome<R>, IdempotencyError<E>>
    where
        P: Serialize + ?Sized,
        R: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        let id = self.record_key(key);
        let validation = payload_hash(payload);
        if let Some(existing) = self.acquire(&id, &validation, in_progress_for).await? {
            return existing.into_duplicate(&id, &validation);
        }
        match work().await {
            Ok(result) => {
                self.complete(&id, &validation, &result).await?;
                Ok(Outcome::Executed(result))
            }
            Err(e) => {
                // Best effort: if the delete fails too, the in-progress expiry frees the
                // key once this invocation's time is up.
                if let Err(delete) = self.release(&id).await {
                    tracing::warn!(key = %id, error = %delete, "could not release idempotency record");
                }
                Err(IdempotencyError::Work(e))
            }
        }
    }

    /// A handler's work for one event, at most once per event id: what every SQS consumer
    /// does. A duplicate reports [`Handled::Duplicate`] without running `work`; the lock
    /// protects a dying run for the invocation's remaining time.
    pub async fn handle_once<P, F, Fut>(
        &self,
        event: &EventMetadata,
        payload: &P,
        invocation: &Invocation,
        work: F,
    ) -> Result<Handled, HandlerError>
    where
        P: Serialize + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Handled, HandlerError>>,
    {
        let outcome = self
            .run(&event.event_id, payload, invocation.remaining(), work)
            .await?;
        Ok(match outcome {
            Outcome::Duplicate(_) => Handled::Duplicate,
            Outcome::Executed(handled) => handled,
        })
    }

    /// Takes the lock, or returns the record that holds it.
    async fn acquire<E>(
        &self,
        id: &str,
        validation: &str,
        in_progress_for: Duration,
    ) -> Result<Option<ExistingRecord>, IdempotencyError<E>> {
        let now = Utc::now();
        let now_s = now.timestamp();
        let now_ms = now.timestamp_millis();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", s(id))
            .item("status", s(STATUS_IN_PROGRESS))
            .item("expiration", n(now_s + self.expiry.as_secs() as i64))
            .item(
                "in_progress_expiration",
                n(now_ms + in_progress_for.as_millis() as i64),
            )
            .item("validation", s(validation))
            .condition_expression(
                "attribute_not_exists(id) OR expiration < :now \
                 OR (#status = :in_progress AND in_progress_expiration < :now_ms)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", n(now_s))
            .expression_attribute_values(":now_ms", n(now_ms))
            .expression_attribute_values(":in_progress", s(STATUS_IN_PROGRESS))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    // The record comes with the failure (ALL_OLD), so reading it needs
                    // neither a second round trip nor a dynamodb:GetItem grant.
                    match failed.item() {
                        Some(item) => Ok(Some(ExistingRecord::from_item(item))),
                        None => Err(IdempotencyError::Store(
                            "the failed condition check returned no record \
                             (ReturnValuesOnConditionCheckFailure=ALL_OLD)"
                                .into(),
                        )),
                    }
                }
                _ => Err(IdempotencyError::Store(sdk_error_text(&err))),
            },
        }
    }

    async fn complete<R: Serialize, E>(
        &self,
        id: &str,
        validation: &str,
        result: &R,
    ) -> Result<(), IdempotencyError<E>> {
        let data = serde_json::to_string(result).map_err(|e| IdempotencyError::CorruptRecord {
            key: id.to_string(),
            message: e.to_string(),
        })?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("id", s(id))
            .item("status", s(STATUS_COMPLETED))
            .item(
                "expiration",
                n(Utc::now().timestamp() + self.expiry.as_secs() as i64),
            )
            .item("validation", s(validation))
            .item("data", s(&data))
            .send()
            .await
            .map_err(|e| IdempotencyError::Store(sdk_error_text(&e)))?;
        Ok(())
    }

    async fn release(&self, id: &str) -> Result<(), String> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(id))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error_text(&e))
    }
}

struct ExistingRecord {
    status: String,
    validation: Option<String>,
    data: Option<String>,
}

impl ExistingRecord {
    fn from_item(item: &std::collections::HashMap<String, AttributeValue>) -> Self {
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        ExistingRecord {
            status: text("status").unwrap_or_default(),
            validation: text("validation"),
            data: text("data"),
        }
    }

    fn into_duplicate<R: DeserializeOwned, E>(
        self,
        id: &str,
        validation: &str,
    ) -> Result<Outcome<R>, IdempotencyError<E>> {
        if self.validation.as_deref().is_some_and(|v| v != validation) {
            return Err(IdempotencyError::PayloadMismatch(id.to_string()));
        }
        if self.status != STATUS_COMPLETED {
            return Err(IdempotencyError::AlreadyInProgress(id.to_string()));
        }
        let data = self.data.unwrap_or_else(|| "null".into());
        serde_json::from_str(&data)
            .map(Outcome::Duplicate)
            .map_err(|e| IdempotencyError::CorruptRecord {
                key: id.to_string(),
                message: e.to_string(),
            })
    }
}

/// SHA-256 of the payload's JSON form.
pub fn payload_hash<P: Serialize + ?Sized>(payload: &P) -> String {
    let bytes = serde_json::to_vec(payload).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
