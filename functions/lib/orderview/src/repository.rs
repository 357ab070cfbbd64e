//! The read-model table: one item per order (`orderId`).
//!
//! Two writers share it: the projector, live, from the store's stream, and a rebuild that
//! replays the store. Neither drops or blanks a view; each write is version-gated
//! ([`supersedes`]): it lands only if it is newer than the stored view, so whichever writer
//! is ahead wins, a slow one cannot put an older state back, and a reader always sees a
//! view that is complete as of some version of its stream.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use eventkit::dynamo::attr::{n, s};
use eventkit::DynamoError;

use crate::view::{OrderView, PROJECTION_VERSION};

/// The condition [`ReadModel::save`] writes under: [`supersedes`], as DynamoDB evaluates it.
/// `projection` is a DynamoDB reserved word, so it goes by the name `#projection`
/// ("Reserved words in DynamoDB",
/// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ReservedWords.html).
const NEWER_THAN_STORED: &str = "attribute_not_exists(orderId) OR lastVersion < :v \
     OR (lastVersion = :v AND (attribute_not_exists(#projection) OR #projection < :p))";

/// Whether `new` may replace `stored`: a later stream version always does; at the same
/// version, a newer projection does (that is how a rebuild rewrites views after the
/// projection changed). Nothing ever moves a view back to an earlier version.
pub fn supersedes(new: &OrderView, stored: Option<&OrderView>) -> bool {
    stored.is_none_or(|stored| {
        (new.last_version, new.projection) > (stored.last_version, stored.projection)
    })
}

/// Whether `stored` is already as new as a view of this projection at `version` would be:
/// then re-projecting it could not be written ([`supersedes`]) and is not worth the reads.
pub fn is_current(stored: Option<&OrderView>, version: u64) -> bool {
    stored.is_some_and(|view| (view.last_version, view.projection) >= (version, PROJECTION_VERSION))
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

    pub async fn get(&self, order_id: &str) -> Result<Option<OrderView>, DynamoError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("orderId", s(order_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DynamoError::from_sdk(&e))?;
        out.item
            .map(|item| {
                serde_dynamo::from_item(item).map_err(|e| DynamoError::Unreadable(e.to_string()))
            })
            .transpose()
    }

    /// Writes `view` if it [`supersedes`] the stored one. Returns whether it was written
    /// (`false`: the stored view is as new or newer, e.g. a concurrent writer got there first).
    pub async fn save(&self, view: &OrderView) -> Result<bool, DynamoError> {
        let item = serde_dynamo::to_item(view)
            .map_err(|e| DynamoError::Rejected(format!("view not storable: {e}")))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(NEWER_THAN_STORED)
            .expression_attribute_names("#projection", "projection")
            .expression_attribute_values(":v", n(view.last_version))
            .expression_attribute_values(":p", n(view.projection))
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
            Err(e) => Err(DynamoError::from_sdk(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(last_version: u64, projection: u32) -> OrderView {
        OrderView {
            order_id: "o1".into(),
            last_version,
            projection,
            ..OrderView::default()
        }
    }

    #[test]
    fn a_view_only_moves_forward() {
        assert!(supersedes(&view(1, 1), None));
        assert!(supersedes(&view(3, 1), Some(&view(2, 1))));
        assert!(!supersedes(&view(2, 1), Some(&view(2, 1))), "same view");
        assert!(!supersedes(&view(1, 1), Some(&view(2, 1))), "older");
        assert!(
            !supersedes(&view(1, 2), Some(&view(2, 1))),
            "a newer projection of an older version is still older"
        );
    }

    #[test]
    fn a_newer_projection_replaces_the_same_version() {
        assert!(supersedes(&view(2, 1), Some(&view(2, 0))));
        assert!(!supersedes(&view(2, 0), Some(&view(2, 1))));
        // An older projection at a later version still moves the view forward; the next
        // write of the current projection re-projects it.
        assert!(supersedes(&view(3, 0), Some(&view(2, 1))));
    }

    #[test]
    fn only_views_of_this_projection_at_or_past_a_version_are_current() {
        let p = PROJECTION_VERSION;
        assert!(!is_current(None, 1));
        assert!(is_current(Some(&view(3, p)), 3));
        assert!(is_current(Some(&view(4, p)), 3));
        assert!(!is_current(Some(&view(2, p)), 3));
        assert!(!is_current(Some(&view(3, p - 1)), 3));
        assert!(
            is_current(Some(&view(4, p - 1)), 3),
            "a projection of version 3 could not replace version 4"
        );
    }

    #[test]
    fn the_condition_names_the_attributes_the_view_is_stored_with() {
        let item = serde_json::to_value(view(1, 1)).unwrap();
        for attribute in ["orderId", "lastVersion", "projection"] {
            assert!(item.get(attribute).is_some(), "{attribute}");
            assert!(NEWER_THAN_STORED.contains(attribute), "{attribute}");
        }
    }
}
