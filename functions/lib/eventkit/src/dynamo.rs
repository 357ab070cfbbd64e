//! DynamoDB patterns every service repeats, written once: first-writer-wins puts,
//! transactions with per-item cancellation reasons, batch reads that see every key through,
//! typed errors that know whether a retry can help, and attribute helpers.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;

use thiserror::Error;

use crate::error::{sdk_error_code, sdk_error_text, HandlerError};
use crate::retry::RetryPolicy;

/// An item, or an item's key, as the SDK holds it.
type Item = HashMap<String, AttributeValue>;

/// "First writer wins": what a write that only succeeds for the first writer did.
/// [`crate::once::Decided`] tells, from the record, what the caller does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstWrite<T> {
    /// This writer was first; its record is stored.
    Written,
    /// Someone wrote first; this is what they stored, so the caller can tell a redelivery
    /// of the same cause from a different one.
    Existing(T),
}

/// A DynamoDB failure, classified by whether retrying can help.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DynamoError {
    /// The request can never succeed as sent (`ValidationException`: a key too large, an
    /// item over 400 KB, a malformed expression): permanent, so the message goes to the DLQ
    /// instead of failing the same way on every retry.
    #[error("DynamoDB rejected the request: {0}")]
    Rejected(String),
    /// Throttling, a service or network error, a missing grant or table: transient; SQS
    /// retries, and an operator can fix what is missing meanwhile.
    #[error("DynamoDB: {0}")]
    Unavailable(String),
    /// A stored item that does not read as the expected record.
    #[error("unreadable item: {0}")]
    Unreadable(String),
}

impl DynamoError {
    /// Classifies an SDK error ("Error handling with DynamoDB", common errors:
    /// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html
    /// - `ValidationException` is a 400 the caller must fix; throttling and 5xx are retried).
    pub fn from_sdk<E, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> Self
    where
        E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        let text = sdk_error_text(err);
        match sdk_error_code(err) {
            Some("ValidationException" | "SerializationException") => DynamoError::Rejected(text),
            _ => DynamoError::Unavailable(text),
        }
    }

    pub fn is_permanent(&self) -> bool {
        !matches!(self, DynamoError::Unavailable(_))
    }
}

impl From<DynamoError> for HandlerError {
    fn from(e: DynamoError) -> Self {
        match e {
            DynamoError::Rejected(_) => HandlerError::permanent("dynamodb-rejected", e),
            DynamoError::Unavailable(_) => HandlerError::transient("dynamodb", e),
            DynamoError::Unreadable(_) => HandlerError::permanent("corrupt-record", e),
        }
    }
}

/// Attribute values, for the few places that build items or expressions by hand.
pub mod attr {
    use aws_sdk_dynamodb::types::AttributeValue;

    /// A string attribute.
    pub fn s(v: impl Into<String>) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    /// A number attribute.
    pub fn n(v: impl std::fmt::Display) -> AttributeValue {
        AttributeValue::N(v.to_string())
    }

    /// The string in `item[name]`, if it is one.
    pub fn get_s<'a>(
        item: &'a std::collections::HashMap<String, AttributeValue>,
        name: &str,
    ) -> Option<&'a str> {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    }

    /// The number in `item[name]`, if it is one that parses as `T`.
    pub fn get_n<T: std::str::FromStr>(
        item: &std::collections::HashMap<String, AttributeValue>,
        name: &str,
    ) -> Option<T> {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
    }
}

/// Stores `record` if `condition` holds (e.g. `attribute_not_exists(orderId)`: "first writer
/// wins"), or returns the stored item that made it fail, so a caller can tell a redelivery
/// of the same cause from a different one. `key` names the table's partition key.
pub async fn put_if<T: Serialize + DeserializeOwned>(
    client: &Client,
    table: &str,
    key: &str,
    record: &T,
    condition: &str,
    names: &[(&str, &str)],
    values: &[(&str, AttributeValue)],
) -> Result<FirstWrite<T>, DynamoError> {
    let item: HashMap<String, AttributeValue> = serde_dynamo::to_item(record)
        .map_err(|e| DynamoError::Rejected(format!("record not storable: {e}")))?;
    if !item.contains_key(key) {
        return Err(DynamoError::Rejected(format!("record has no `{key}`")));
    }
    let mut request = client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    for (name, attribute) in names {
        request = request.expression_attribute_names(*name, *attribute);
    }
    for (name, value) in values {
        request = request.expression_attribute_values(*name, value.clone());
    }
    let err = match request.send().await {
        Ok(_) => return Ok(FirstWrite::Written),
        Err(err) => err,
    };
    let Some(PutItemError::ConditionalCheckFailedException(failed)) = err.as_service_error() else {
        return Err(DynamoError::from_sdk(&err));
    };
    // DynamoDB returns the stored item with the failure when ALL_OLD is asked for ("Item:
    // the item which caused the condition check to fail", PutItem API reference), so no
    // second round trip, and no dynamodb:GetItem grant, is needed.
    let stored = failed.item().cloned().ok_or_else(|| {
        DynamoError::Unavailable(
            "the failed condition check returned no item \
             (ReturnValuesOnConditionCheckFailure=ALL_OLD)"
                .into(),
        )
    })?;
    serde_dynamo::from_item(stored)
        .map(FirstWrite::Existing)
        .map_err(|e| DynamoError::Unreadable(e.to_string()))
}

/// Stores `record` unless an item with its key `key` exists: [`put_if`] with
/// `attribute_not_exists(key)`, the usual first-writer-wins record of a side effect.
pub async fn put_once<T: Serialize + DeserializeOwned>(
    client: &Client,
    table: &str,
    key: &str,
    record: &T,
) -> Result<FirstWrite<T>, DynamoError> {
    let condition = format!("attribute_not_exists({key})");
    put_if(client, table, key, record, &condition, &[], &[]).await
}

/// What a `TransactWriteItems` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transaction {
    Committed,
    /// Cancelled: one reason code per item, in request order (`None`, `ConditionalCheckFailed`,
    /// `TransactionConflict`, ...), so callers can tell which condition failed.
    Cancelled(Vec<Option<String>>),
}

impl Transaction {
    /// Whether item `index` is the one (or one of those) that cancelled the transaction.
    pub fn failed_at(&self, index: usize) -> bool {
        match self {
            Transaction::Committed => false,
            Transaction::Cancelled(codes) => codes
                .get(index)
                .and_then(Option::as_deref)
                .is_some_and(|code| code != "None"),
        }
    }
}

/// One item's part in a cancelled `TransactWriteItems`: its reason code and, when the item
/// asked for `ReturnValuesOnConditionCheckFailure = ALL_OLD` and its condition failed, the
/// item stored under its key ("Item: item in the request which caused the transaction to get
/// cancelled", CancellationReason, DynamoDB API reference:
/// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_CancellationReason.html).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ItemCancellation {
    /// `None` (or the string `"None"`) for an item that did not fail.
    pub code: Option<String>,
    pub item: Option<HashMap<String, AttributeValue>>,
}

impl ItemCancellation {
    /// The reason code, or `None` when this item is not why the transaction was cancelled.
    pub fn failure(&self) -> Option<&str> {
        self.code.as_deref().filter(|code| *code != "None")
    }
}

/// What a `TransactWriteItems` did, with everything its cancellation said per item.
#[derive(Debug, Clone, PartialEq)]
pub enum DetailedTransaction {
    Committed,
    /// One entry per item, in request order.
    Cancelled(Vec<ItemCancellation>),
}

/// Runs one `TransactWriteItems`; a cancellation is a [`Transaction::Cancelled`], anything
/// else a [`DynamoError`].
pub async fn transact_write(
    client: &Client,
    items: Vec<TransactWriteItem>,
) -> Result<Transaction, DynamoError> {
    Ok(match transact_write_detailed(client, items).await? {
        DetailedTransaction::Committed => Transaction::Committed,
        DetailedTransaction::Cancelled(reasons) => {
            Transaction::Cancelled(reasons.into_iter().map(|r| r.code).collect())
        }
    })
}

/// [`transact_write`], keeping the items a cancellation returns: a caller that put
/// `ReturnValuesOnConditionCheckFailure = ALL_OLD` on an item learns what blocked it without
/// a second read.
pub async fn transact_write_detailed(
    client: &Client,
    items: Vec<TransactWriteItem>,
) -> Result<DetailedTransaction, DynamoError> {
    let err = match client
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await
    {
        Ok(_) => return Ok(DetailedTransaction::Committed),
        Err(err) => err,
    };
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
            Ok(DetailedTransaction::Cancelled(
                cancelled
                    .cancellation_reasons()
                    .iter()
                    .map(|r| ItemCancellation {
                        code: r.code().map(str::to_string),
                        item: r.item().cloned(),
                    })
                    .collect(),
            ))
        }
        _ => Err(DynamoError::from_sdk(&err)),
    }
}

/// The most keys one BatchGetItem may name: it "can retrieve up to 16 MB of data, which can
/// contain as many as 100 items", and a request with more keys is rejected (BatchGetItem,
/// Amazon DynamoDB API Reference,
/// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html).
pub const BATCH_GET_MAX_KEYS: usize = 100;

/// How often [`batch_get_all`] asks again for the keys BatchGetItem left unprocessed ("If
/// DynamoDB returns any unprocessed items, you should retry the batch operation on those
/// items. However, we strongly recommend that you use an exponential backoff algorithm",
/// same reference). Bounded, so that a table too busy to answer fails the caller
/// transiently (SQS brings the message back) instead of holding it until its timeout.
pub const UNPROCESSED_KEYS: RetryPolicy = RetryPolicy {
    max_attempts: 5,
    base_delay: Duration::from_millis(50),
    max_delay: Duration::from_millis(800),
};

/// What a batch read asks for besides the keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchGet<'a> {
    /// `ProjectionExpression`: only the attributes the caller reads; all of them when `None`.
    pub projection: Option<&'a str>,
    /// `ExpressionAttributeNames` of the projection (`#name`, attribute), so that a reserved
    /// word cannot break it.
    pub names: &'a [(&'a str, &'a str)],
    /// Strongly consistent reads (at twice the read capacity), for a caller that must see
    /// the latest write; eventually consistent otherwise.
    pub consistent_read: bool,
}

/// The items stored under `keys` in `table`, read with as many BatchGetItem requests as it
/// takes: at most [`BATCH_GET_MAX_KEYS`] keys a request, and the keys an answer leaves
/// unprocessed asked for again with backoff, [`UNPROCESSED_KEYS`]. A key with no item is
/// absent from the answer, and the items come in no particular order. The keys must be
/// distinct: BatchGetItem rejects a request that names one twice.
///
/// Keys still unprocessed after the last attempt are a [`DynamoError::Unavailable`] (the
/// table was throttled, so a later retry can succeed), not a partial answer: a caller would
/// take a missing item for one that does not exist.
pub async fn batch_get_all(
    client: &Client,
    table: &str,
    keys: Vec<HashMap<String, AttributeValue>>,
    read: &BatchGet<'_>,
) -> Result<Vec<HashMap<String, AttributeValue>>, DynamoError> {
    let mut items = Vec::new();
    for chunk in chunks(keys) {
        let got = get_all(&UNPROCESSED_KEYS, table, chunk, |keys| {
            batch_get_once(client, table, keys, read)
        })
        .await?;
        items.extend(got);
    }
    Ok(items)
}

/// `keys` in requests of at most [`BATCH_GET_MAX_KEYS`]; none for no keys, since
/// BatchGetItem rejects an empty request.
fn chunks(keys: Vec<Item>) -> Vec<Vec<Item>> {
    let mut keys = keys.into_iter().peekable();
    let mut chunks = Vec::new();
    while keys.peek().is_some() {
        chunks.push(keys.by_ref().take(BATCH_GET_MAX_KEYS).collect());
    }
    chunks
}

/// What one BatchGetItem returned for the table.
#[derive(Debug, Default)]
struct Page {
    items: Vec<Item>,
    /// The keys it left for another request.
    unprocessed: Vec<Item>,
}

/// What to do after attempt `attempt` (from 1) of a batch read left `unprocessed` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Done,
    AskAgain,
    GiveUp,
}

fn next(policy: &RetryPolicy, attempt: u32, unprocessed: &[Item]) -> Next {
    if unprocessed.is_empty() {
        Next::Done
    } else if policy.allows_another(attempt) {
        Next::AskAgain
    } else {
        Next::GiveUp
    }
}

/// Asks `get` for `keys`, then, with `policy`'s backoff, for whatever keys each answer left
/// unprocessed, until none are left or the attempts are used up. `get` is one request, so
/// the loop can be tested without DynamoDB.
async fn get_all<F, Fut>(
    policy: &RetryPolicy,
    table: &str,
    keys: Vec<Item>,
    mut get: F,
) -> Result<Vec<Item>, DynamoError>
where
    F: FnMut(Vec<Item>) -> Fut,
    Fut: Future<Output = Result<Page, DynamoError>>,
{
    let mut items = Vec::new();
    let mut pending = keys;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let page = get(pending).await?;
        items.extend(page.items);
        match next(policy, attempt, &page.unprocessed) {
            Next::Done => return Ok(items),
            Next::AskAgain => tokio::time::sleep(policy.delay(attempt)).await,
            Next::GiveUp => {
                return Err(DynamoError::Unavailable(format!(
                    "BatchGetItem left {} keys of {table} unprocessed after {attempt} attempts",
                    page.unprocessed.len()
                )))
            }
        }
        pending = page.unprocessed;
    }
}

/// One BatchGetItem of `keys` on `table`.
async fn batch_get_once(
    client: &Client,
    table: &str,
    keys: Vec<Item>,
    read: &BatchGet<'_>,
) -> Result<Page, DynamoError> {
    let mut request = KeysAndAttributes::builder()
        .set_keys(Some(keys))
        .consistent_read(read.consistent_read)
        .set_projection_expression(read.projection.map(str::to_string));
    for (name, attribute) in read.names {
        request = request.expression_attribute_names(*name, *attribute);
    }
    // Only a missing `keys` fails the build, and it is always set: no retry could help.
    let request = request
        .build()
        .map_err(|e| DynamoError::Rejected(e.to_string()))?;
    let out = client
        .batch_get_item()
        .request_items(table, request)
        .send()
        .await
        .map_err(|e| DynamoError::from_sdk(&e))?;
    let items = out
        .responses()
        .and_then(|r| r.get(table))
        .cloned()
        .unwrap_or_default();
    let unprocessed = out
        .unprocessed_keys()
        .and_then(|u| u.get(table))
        .map(|k| k.keys().to_vec())
        .unwrap_or_default();
    Ok(Page { items, unprocessed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn key(id: &str) -> Item {
        HashMap::from([("sku".to_string(), attr::s(id))])
    }

    fn keys(count: usize) -> Vec<Item> {
        (0..count).map(|i| key(&i.to_string())).collect()
    }

    const NO_WAIT: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    #[test]
    fn keys_are_sent_at_most_a_hundred_a_request_in_order() {
        let sizes = |count| chunks(keys(count)).iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(sizes(0), Vec::<usize>::new(), "no request for no keys");
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(100), [100]);
        assert_eq!(sizes(101), [100, 1]);
        assert_eq!(sizes(250), [100, 100, 50]);
        assert_eq!(chunks(keys(250)).concat(), keys(250));
    }

    #[test]
    fn unprocessed_keys_are_asked_for_again_until_the_attempts_are_used_up() {
        let left = [key("A")];
        assert_eq!(next(&NO_WAIT, 1, &[]), Next::Done);
        assert_eq!(next(&NO_WAIT, 3, &[]), Next::Done);
        assert_eq!(next(&NO_WAIT, 1, &left), Next::AskAgain);
        assert_eq!(next(&NO_WAIT, 2, &left), Next::AskAgain);
        assert_eq!(next(&NO_WAIT, 3, &left), Next::GiveUp);
    }

    #[tokio::test]
    async fn only_the_unprocessed_keys_are_asked_for_again() {
        let asked: Mutex<Vec<Vec<Item>>> = Mutex::default();
        let answers = Mutex::new(vec![
            // First answer: one item, the other key left unprocessed.
            Page {
                items: vec![key("A")],
                unprocessed: vec![key("B")],
            },
            Page {
                items: vec![key("B")],
                unprocessed: Vec::new(),
            },
        ]);

        let items = get_all(&NO_WAIT, "stock", vec![key("A"), key("B")], |keys| {
            asked.lock().unwrap().push(keys);
            let page = answers.lock().unwrap().remove(0);
            async move { Ok(page) }
        })
        .await
        .unwrap();

        assert_eq!(items, vec![key("A"), key("B")]);
        assert_eq!(
            *asked.lock().unwrap(),
            vec![vec![key("A"), key("B")], vec![key("B")]]
        );
    }

    #[tokio::test]
    async fn keys_left_unprocessed_after_every_attempt_fail_transiently() {
        let mut calls = 0;

        let err = get_all(&NO_WAIT, "stock", vec![key("A")], |keys| {
            calls += 1;
            async move {
                Ok(Page {
                    items: Vec::new(),
                    unprocessed: keys,
                })
            }
        })
        .await
        .unwrap_err();

        assert_eq!(calls, NO_WAIT.max_attempts);
        assert!(!err.is_permanent(), "{err}");
        assert!(err.to_string().contains("stock"), "{err}");
    }

    #[tokio::test]
    async fn a_failed_request_is_not_asked_again() {
        let mut calls = 0;

        let err = get_all(&NO_WAIT, "stock", vec![key("A")], |_| {
            calls += 1;
            async { Err(DynamoError::Rejected("ValidationException".into())) }
        })
        .await
        .unwrap_err();

        // The SDK has retried throttling already; what reaches here is the caller's to judge.
        assert_eq!(calls, 1);
        assert!(err.is_permanent(), "{err}");
    }
}
