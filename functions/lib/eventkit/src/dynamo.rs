//! DynamoDB patterns every service repeats, written once: first-writer-wins puts,
//! transactions with per-item cancellation reasons, typed errors that know whether a retry
//! can help, and attribute helpers.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;

use thiserror::Error;

use crate::error::{sdk_error_code, sdk_error_text, HandlerError};

/// "First writer wins": what a write that only succeeds for the first writer did.
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
