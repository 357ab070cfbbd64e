//! Idempotent execution with the semantics of Powertools for AWS Lambda, over the
//! [`IdempotencyStore`] port.
//!
//! A record per key: `status` (INPROGRESS / COMPLETED), `expiration` (epoch seconds, the
//! table's TTL attribute), `in_progress_expiration` (epoch milliseconds, from the Lambda
//! context's remaining time), `validation` (SHA-256 of the payload) and `data` (the stored
//! result). One conditional put takes the lock; a duplicate gets the stored result without
//! running the work again. [`DynamoIdempotencyStore`] keeps the records in DynamoDB;
//! `testing::MemoryIdempotencyStore` keeps them in memory with the same conditions.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::batch::Handled;
use crate::dynamo::attr::{n, s};
use crate::dynamo::DynamoError;
use crate::envelope::EventMetadata;
use crate::error::HandlerError;
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
    /// The store failed.
    #[error("idempotency store: {0}")]
    Store(#[from] DynamoError),
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
            IdempotencyError::Store(ref store) if store.is_permanent() => {
                HandlerError::permanent("idempotency-store", e)
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

/// An idempotency record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub completed: bool,
    /// The payload hash the key was first used with.
    pub validation: Option<String>,
    /// The stored result (JSON), once completed.
    pub data: Option<String>,
}

/// The lock a run asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub validation: String,
    /// Epoch seconds: when the record stops protecting the key (the TTL).
    pub expires_at: i64,
    /// Epoch milliseconds: when an in-progress record stops holding the key (the run died).
    pub in_progress_until_ms: i64,
    /// Epoch milliseconds, now.
    pub now_ms: i64,
}

impl Lock {
    /// Whether `record`, stored earlier with these times, still holds the key.
    pub fn is_held_by(&self, completed: bool, expires_at: i64, in_progress_until_ms: i64) -> bool {
        let now_s = self.now_ms.div_euclid(1000);
        expires_at >= now_s && (completed || in_progress_until_ms >= self.now_ms)
    }
}

/// The port idempotent execution stores its records through.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Takes the lock on `key` (an in-progress record) unless a live record holds it; that
    /// record is returned instead. One atomic step: two callers never both take it.
    async fn acquire(
        &self,
        key: &str,
        lock: &Lock,
    ) -> Result<Option<IdempotencyRecord>, DynamoError>;
    /// Marks the run complete with its result (JSON), protecting the key until `expires_at`.
    async fn complete(
        &self,
        key: &str,
        validation: &str,
        data: &str,
        expires_at: i64,
    ) -> Result<(), DynamoError>;
    /// Removes the record, so a retry can run the work again.
    async fn release(&self, key: &str) -> Result<(), DynamoError>;
}

/// Idempotent execution of work per key, within a scope.
#[derive(Clone)]
pub struct Idempotency {
    store: Arc<dyn IdempotencyStore>,
    scope: String,
    expiry: Duration,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency")
            .field("scope", &self.scope)
            .field("expiry", &self.expiry)
            .finish()
    }
}

impl Idempotency {
    /// Records in the DynamoDB table `table` (partition key `id`, TTL on `expiration`).
    /// `scope` namespaces keys (use the function name): several functions process the same
    /// event id and each must do its own work once.
    pub fn new(client: Client, table: impl Into<String>, scope: impl Into<String>) -> Self {
        Idempotency::with_store(Arc::new(DynamoIdempotencyStore::new(client, table)), scope)
    }

    /// Records in any store, e.g. `testing::MemoryIdempotencyStore`.
    pub fn with_store(store: Arc<dyn IdempotencyStore>, scope: impl Into<String>) -> Self {
        Idempotency {
            store,
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
        let now_ms = Utc::now().timestamp_millis();
        let lock = Lock {
            validation: payload_hash(payload),
            expires_at: now_ms.div_euclid(1000) + self.expiry.as_secs() as i64,
            in_progress_until_ms: now_ms + in_progress_for.as_millis() as i64,
            now_ms,
        };
        if let Some(existing) = self.store.acquire(&id, &lock).await? {
            return into_duplicate(existing, &id, &lock.validation);
        }
        match work().await {
            Ok(result) => {
                let data = serde_json::to_string(&result).map_err(|e| {
                    IdempotencyError::CorruptRecord {
                        key: id.clone(),
                        message: e.to_string(),
                    }
                })?;
                let expires_at = Utc::now().timestamp() + self.expiry.as_secs() as i64;
                self.store
                    .complete(&id, &lock.validation, &data, expires_at)
                    .await?;
                Ok(Outcome::Executed(result))
            }
            Err(e) => {
                // Best effort: if the delete fails too, the in-progress expiry frees the
                // key once this invocation's time is up.
                if let Err(delete) = self.store.release(&id).await {
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
}

fn into_duplicate<R: DeserializeOwned, E>(
    record: IdempotencyRecord,
    id: &str,
    validation: &str,
) -> Result<Outcome<R>, IdempotencyError<E>> {
    if record
        .validation
        .as_deref()
        .is_some_and(|v| v != validation)
    {
        return Err(IdempotencyError::PayloadMismatch(id.to_string()));
    }
    if !record.completed {
        return Err(IdempotencyError::AlreadyInProgress(id.to_string()));
    }
    let data = record.data.unwrap_or_else(|| "null".into());
    serde_json::from_str(&data)
        .map(Outcome::Duplicate)
        .map_err(|e| IdempotencyError::CorruptRecord {
            key: id.to_string(),
            message: e.to_string(),
        })
}

/// Idempotency records in one DynamoDB table (partition key `id`, TTL on `expiration`).
#[derive(Clone, Debug)]
pub struct DynamoIdempotencyStore {
    client: Client,
    table: String,
}

impl DynamoIdempotencyStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoIdempotencyStore {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl IdempotencyStore for DynamoIdempotencyStore {
    async fn acquire(
        &self,
        id: &str,
        lock: &Lock,
    ) -> Result<Option<IdempotencyRecord>, DynamoError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", s(id))
            .item("status", s(STATUS_IN_PROGRESS))
            .item("expiration", n(lock.expires_at))
            .item("in_progress_expiration", n(lock.in_progress_until_ms))
            .item("validation", s(&lock.validation))
            .condition_expression(
                "attribute_not_exists(id) OR expiration < :now \
                 OR (#status = :in_progress AND in_progress_expiration < :now_ms)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", n(lock.now_ms.div_euclid(1000)))
            .expression_attribute_values(":now_ms", n(lock.now_ms))
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
                        Some(item) => Ok(Some(record_of(item))),
                        None => Err(DynamoError::Unavailable(
                            "the failed condition check returned no record \
                             (ReturnValuesOnConditionCheckFailure=ALL_OLD)"
                                .into(),
                        )),
                    }
                }
                _ => Err(DynamoError::from_sdk(&err)),
            },
        }
    }

    async fn complete(
        &self,
        id: &str,
        validation: &str,
        data: &str,
        expires_at: i64,
    ) -> Result<(), DynamoError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("id", s(id))
            .item("status", s(STATUS_COMPLETED))
            .item("expiration", n(expires_at))
            .item("validation", s(validation))
            .item("data", s(data))
            .send()
            .await
            .map_err(|e| DynamoError::from_sdk(&e))?;
        Ok(())
    }

    async fn release(&self, id: &str) -> Result<(), DynamoError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(id))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DynamoError::from_sdk(&e))
    }
}

fn record_of(item: &std::collections::HashMap<String, AttributeValue>) -> IdempotencyRecord {
    use crate::dynamo::attr::get_s;
    IdempotencyRecord {
        completed: get_s(item, "status") == Some(STATUS_COMPLETED),
        validation: get_s(item, "validation").map(str::to_string),
        data: get_s(item, "data").map(str::to_string),
    }
}

/// SHA-256 of the payload's JSON form.
pub fn payload_hash<P: Serialize + ?Sized>(payload: &P) -> String {
    let bytes = serde_json::to_vec(payload).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}
