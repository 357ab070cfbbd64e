//! DynamoDB patterns every service repeats, written once.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::sdk_error_text;

/// What a conditional put did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutIf<T> {
    /// The condition held; `record` is stored.
    Written,
    /// The condition failed; this is the stored item that made it fail.
    Existing(T),
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
) -> Result<PutIf<T>, String> {
    let item: HashMap<String, AttributeValue> =
        serde_dynamo::to_item(record).map_err(|e| format!("record not storable: {e}"))?;
    if !item.contains_key(key) {
        return Err(format!("record has no `{key}`"));
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
        Ok(_) => return Ok(PutIf::Written),
        Err(err) => err,
    };
    let Some(PutItemError::ConditionalCheckFailedException(failed)) = err.as_service_error() else {
        return Err(sdk_error_text(&err));
    };
    // DynamoDB returns the stored item with the failure when ALL_OLD is asked for ("Item:
    // the item which caused the condition check to fail", PutItem API reference), so no
    // second round trip, and no dynamodb:GetItem grant, is needed.
    let stored = failed.item().cloned().ok_or(
        "the failed condition check returned no item (ReturnValuesOnConditionCheckFailure=ALL_OLD)",
    )?;
    serde_dynamo::from_item(stored)
        .map(PutIf::Existing)
        .map_err(|e| format!("stored item unreadable: {e}"))
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

/// Runs one `TransactWriteItems`; any error other than a cancellation is returned as text.
pub async fn transact_write(
    client: &Client,
    items: Vec<TransactWriteItem>,
) -> Result<Transaction, String> {
    let err = match client
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await
    {
        Ok(_) => return Ok(Transaction::Committed),
        Err(err) => err,
    };
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
            Ok(Transaction::Cancelled(
                cancelled
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().map(str::to_string))
                    .collect(),
            ))
        }
        _ => Err(sdk_error_text(&err)),
    }
}
