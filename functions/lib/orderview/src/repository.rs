//! The read-model table: one item per order (`orderId`).

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use eventkit::error::sdk_error_text;
use eventkit::HandlerError;

use crate::view::OrderView;

#[derive(Debug, thiserror::Error)]
#[error("orders read model: {0}")]
pub struct ReadModelError(String);

impl From<ReadModelError> for HandlerError {
    fn from(e: ReadModelError) -> Self {
        HandlerError::transient("read-model", e)
    }
}

#[derive(Clone, Debug)]
pub struct ReadModel {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl ReadModel {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        ReadModel {
            client,
            table: table.into(),
        }
    }

    pub async fn get(&self, order_id: &str) -> Result<Option<OrderView>, ReadModelError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("orderId", AttributeValue::S(order_id.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| ReadModelError(sdk_error_text(&e)))?;
        out.item
            .map(|item| serde_dynamo::from_item(item).map_err(|e| ReadModelError(e.to_string())))
            .transpose()
    }

    /// Writes `view` unless the stored one is already as new or newer (a concurrent
    /// projection or rebuild got there first). Returns whether it was written.
    pub async fn save(&self, view: &OrderView) -> Result<bool, ReadModelError> {
        let item = serde_dynamo::to_item(view).map_err(|e| ReadModelError(e.to_string()))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(orderId) OR lastVersion < :v")
            .expression_attribute_values(":v", AttributeValue::N(view.last_version.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(ReadModelError(sdk_error_text(&e))),
        }
    }

    /// Drops every view (before a rebuild). Returns how many were deleted.
    pub async fn clear(&self) -> Result<usize, ReadModelError> {
        let mut deleted = 0;
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .projection_expression("orderId")
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| ReadModelError(sdk_error_text(&e)))?;
            for item in page.items() {
                if let Some(id) = item.get("orderId") {
                    self.client
                        .delete_item()
                        .table_name(&self.table)
                        .key("orderId", id.clone())
                        .send()
                        .await
                        .map_err(|e| ReadModelError(sdk_error_text(&e)))?;
                    deleted += 1;
                }
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(deleted);
            }
        }
    }
}
