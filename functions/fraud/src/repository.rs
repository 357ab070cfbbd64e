//! The fraud table: every order fraud detection has seen, by customer and time.
//!
//! - Partition key `customerId` (S), sort key `at` (S) = `<occurredAt>#<orderId>`, the time
//!   in RFC 3339 with milliseconds and `Z`, so that text order is time order and one
//!   `BETWEEN` reads a customer's window. Order ids cannot hold `#` (ids are checked at
//!   intake), so the key splits unambiguously.
//! - `orderId`, `occurredAt`, `country` and `city` (both absent when the location is
//!   unknown), `eventId` and `correlationId` of the order's `OrderPlaced`, `expiresAt`
//!   (N, the TTL attribute), `suspectedBy` (the id of the `FraudSuspected` that flagged
//!   the order; absent until then) and `clearance` (the `FraudCleared` first published for
//!   it, as JSON; absent until then).
//!
//! An item is written once (first writer wins), and `suspectedBy` and `clearance` each set
//! at most once to one value; see [`crate::service`] for why that makes each order
//! suspected once, and each clearance announced with one content under its one id.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, SubsecRound, Utc};
use contracts::{Country, FraudCleared, Location};
use eventkit::dynamo::attr::s;
use eventkit::dynamo::put_once;
use eventkit::envelope::format_time;
use eventkit::{DynamoError, FirstWrite};
use serde::{Deserialize, Serialize};

/// How long an order is kept after it was placed: no window is longer
/// ([`crate::config::MAX_WINDOW_SECONDS`]), and with the default minute an order arriving
/// almost a day late still finds the others of its window.
pub const RETENTION: chrono::Duration = chrono::Duration::days(1);

/// One order, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRecord {
    pub customer_id: String,
    /// The sort key: [`sort_key`] of the time and order id.
    pub at: String,
    pub order_id: String,
    /// Whole milliseconds, as in the sort key: the rule compares the times the table holds.
    #[serde(with = "millis")]
    pub occurred_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<Country>,
    /// Folded, as in [`Location`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// The `OrderPlaced` that brought the order: a `FraudSuspected` for it joins its trace.
    pub event_id: String,
    pub correlation_id: String,
    /// Epoch seconds; DynamoDB's TTL deletes the item some time after.
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspected_by: Option<String>,
    /// The `FraudCleared` data first published for the order, as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clearance: Option<String>,
}

impl OrderRecord {
    /// The record of a newly seen order, written at `recorded_at`. `occurred_at` is cut to
    /// whole milliseconds.
    ///
    /// The expiry counts from `recorded_at`, not from the sender's `occurredAt`: a redriven
    /// or replayed order from long ago would otherwise get an expiry in the distant past,
    /// which DynamoDB's TTL ignores ("items with an expiration time more than five years in
    /// the past are not deleted",
    /// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/time-to-live-ttl-before-you-start.html>),
    /// so the item would stay forever.
    pub fn new(
        customer_id: &str,
        order_id: &str,
        occurred_at: DateTime<Utc>,
        location: Option<Location>,
        event_id: &str,
        correlation_id: &str,
        recorded_at: DateTime<Utc>,
    ) -> Self {
        let occurred_at = occurred_at.trunc_subsecs(3);
        let (country, city) = match location {
            Some(Location { country, city }) => (Some(country), Some(city)),
            None => (None, None),
        };
        OrderRecord {
            customer_id: customer_id.to_string(),
            at: sort_key(&occurred_at, order_id),
            order_id: order_id.to_string(),
            occurred_at,
            country,
            city,
            event_id: event_id.to_string(),
            correlation_id: correlation_id.to_string(),
            expires_at: (recorded_at.max(occurred_at) + RETENTION).timestamp(),
            suspected_by: None,
            clearance: None,
        }
    }

    /// Where the order ships; `None` when unknown (or, for an item that has only one of
    /// the two attributes, which this code never writes, treated as unknown).
    pub fn location(&self) -> Option<Location> {
        match (&self.country, &self.city) {
            (Some(country), Some(city)) => Some(Location {
                country: country.clone(),
                city: city.clone(),
            }),
            _ => None,
        }
    }
}

/// The sort key of an order: `<occurredAt RFC 3339 millis Z>#<orderId>`.
pub fn sort_key(occurred_at: &DateTime<Utc>, order_id: &str) -> String {
    format!("{}#{order_id}", format_time(occurred_at))
}

/// The sort-key bounds of the orders placed in `[from, to]`, both ends included: `from`
/// alone sorts before every key at that time, and `$` sorts after `#`.
fn key_bounds(from: &DateTime<Utc>, to: &DateTime<Utc>) -> (String, String) {
    (format_time(from), format!("{}$", format_time(to)))
}

/// `occurredAt` as the envelope writes times, so that it reads like the sort key.
mod millis {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&eventkit::envelope::format_time(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// What flagging an order did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flagging {
    /// The order is now suspected by this suspicion, for the first time or again (a
    /// redelivery that flags it with the same id): publish the suspicion.
    Flagged,
    /// Another suspicion flagged it first; that one is published by whoever flagged it.
    AlreadyFlagged,
}

/// The port the service reads and writes orders through.
#[async_trait]
pub trait FraudWindows: Send + Sync {
    /// Stores the order unless it is stored already (a copy); the stored one is returned
    /// then.
    async fn record(&self, order: &OrderRecord) -> Result<FirstWrite<OrderRecord>, DynamoError>;

    /// The customer's orders placed in `[from, to]`, oldest first, read consistently: every
    /// `record` that returned before this call is in it.
    async fn window(
        &self,
        customer_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<OrderRecord>, DynamoError>;

    /// Marks the stored order `at` as suspected by `suspicion_event_id`, unless another
    /// suspicion marked it first.
    async fn flag(
        &self,
        customer_id: &str,
        at: &str,
        suspicion_event_id: &str,
    ) -> Result<Flagging, DynamoError>;

    /// Records `cleared` as the stored order `at`'s clearance unless one is recorded, and
    /// returns the recorded one: a judgment made again later (a redelivery, a replay, with
    /// more of the customer's orders in the window by then) is announced as it was first,
    /// since its event id is the same.
    async fn clear(
        &self,
        customer_id: &str,
        at: &str,
        cleared: &FraudCleared,
    ) -> Result<FraudCleared, DynamoError>;
}

pub struct DynamoFraudWindows {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoFraudWindows {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoFraudWindows {
            client,
            table: table.into(),
        }
    }
}

fn unreadable(e: serde_dynamo::Error) -> DynamoError {
    DynamoError::Unreadable(format!("stored order: {e}"))
}

#[async_trait]
impl FraudWindows for DynamoFraudWindows {
    async fn record(&self, order: &OrderRecord) -> Result<FirstWrite<OrderRecord>, DynamoError> {
        // The item is keyed by customer and `at`, so `attribute_not_exists` of the
        // partition key is "no item with this key".
        put_once(&self.client, &self.table, "customerId", order).await
    }

    async fn window(
        &self,
        customer_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<OrderRecord>, DynamoError> {
        let (low, high) = key_bounds(&from, &to);
        let mut orders = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            // Bounded by time, not left to TTL: expired items linger until DynamoDB
            // deletes them, which can take days.
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("customerId = :c AND #at BETWEEN :low AND :high")
                // AT is a DynamoDB reserved word.
                .expression_attribute_names("#at", "at")
                .expression_attribute_values(":c", s(customer_id))
                .expression_attribute_values(":low", s(low.as_str()))
                .expression_attribute_values(":high", s(high.as_str()))
                // A strongly consistent read reflects every write that succeeded before it;
                // tables support it, global secondary indexes do not, which is why the window
                // is the table's own key ("DynamoDB read consistency",
                // https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.ReadConsistency.html).
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| DynamoError::from_sdk(&e))?;
            for item in out.items() {
                orders.push(serde_dynamo::from_item(item.clone()).map_err(unreadable)?);
            }
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(orders);
            }
        }
    }

    async fn flag(
        &self,
        customer_id: &str,
        at: &str,
        suspicion_event_id: &str,
    ) -> Result<Flagging, DynamoError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("customerId", s(customer_id))
            .key("at", s(at))
            .update_expression("SET suspectedBy = :id")
            // The same id again is a redelivery of the same suspicion: it may publish again.
            // `attribute_exists` keeps the update from creating an item.
            .condition_expression(
                "attribute_exists(customerId) AND \
                 (attribute_not_exists(suspectedBy) OR suspectedBy = :id)",
            )
            .expression_attribute_values(":id", s(suspicion_event_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Flagging::Flagged),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => {
                    Ok(Flagging::AlreadyFlagged)
                }
                _ => Err(DynamoError::from_sdk(&err)),
            },
        }
    }

    async fn clear(
        &self,
        customer_id: &str,
        at: &str,
        cleared: &FraudCleared,
    ) -> Result<FraudCleared, DynamoError> {
        // `if_not_exists` keeps a recorded clearance, and UPDATED_NEW returns the attribute
        // as it stands after the update, the recorded one or this one: one request either
        // way ("if_not_exists(path, value)": Update expressions, DynamoDB Developer Guide,
        // https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.UpdateExpressions.html;
        // ReturnValues UPDATED_NEW, UpdateItem API reference,
        // https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html).
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("customerId", s(customer_id))
            .key("at", s(at))
            .update_expression("SET clearance = if_not_exists(clearance, :c)")
            .condition_expression("attribute_exists(customerId)")
            .expression_attribute_values(":c", s(clearance_json(cleared)?))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| DynamoError::from_sdk(&e))?;
        let recorded = out
            .attributes()
            .and_then(|a| a.get("clearance"))
            .and_then(|v| v.as_s().ok())
            .map(String::as_str);
        stored_clearance(recorded)
    }
}

fn stored_clearance(json: Option<&str>) -> Result<FraudCleared, DynamoError> {
    let json = json.ok_or_else(|| DynamoError::Unreadable("the order has no clearance".into()))?;
    serde_json::from_str(json)
        .map_err(|e| DynamoError::Unreadable(format!("stored clearance: {e}")))
}

fn clearance_json(cleared: &FraudCleared) -> Result<String, DynamoError> {
    serde_json::to_string(cleared).map_err(|e| DynamoError::Rejected(e.to_string()))
}

/// The fraud table in memory, with the DynamoDB adapter's conditions: first writer wins per
/// key, reads are consistent, and an order is flagged only if unflagged or flagged with the
/// same id. Operations can be made to fail, as DynamoDB does when throttled.
#[cfg(any(test, feature = "testing"))]
#[derive(Default)]
pub struct MemoryFraudWindows {
    pub table: eventkit::testing::MemoryTable<OrderRecord>,
    failures: std::sync::Mutex<Vec<DynamoError>>,
}

#[cfg(any(test, feature = "testing"))]
impl MemoryFraudWindows {
    /// The next operations fail with these errors, one each, in order.
    pub fn fail_next(&self, errors: Vec<DynamoError>) {
        *eventkit::testing::lock(&self.failures) = errors;
    }

    fn failure(&self) -> Result<(), DynamoError> {
        let mut failures = eventkit::testing::lock(&self.failures);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.remove(0))
        }
    }

    /// Every stored order, by customer and time.
    pub fn orders(&self) -> Vec<OrderRecord> {
        self.table.items().into_values().collect()
    }

    fn key(customer_id: &str, at: &str) -> String {
        format!("{customer_id}#{at}")
    }
}

#[cfg(any(test, feature = "testing"))]
#[async_trait]
impl FraudWindows for MemoryFraudWindows {
    async fn record(&self, order: &OrderRecord) -> Result<FirstWrite<OrderRecord>, DynamoError> {
        self.failure()?;
        Ok(self
            .table
            .first_write(&Self::key(&order.customer_id, &order.at), order.clone()))
    }

    async fn window(
        &self,
        customer_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<OrderRecord>, DynamoError> {
        self.failure()?;
        let (low, high) = key_bounds(&from, &to);
        Ok(self
            .orders()
            .into_iter()
            .filter(|o| o.customer_id == customer_id && o.at >= low && o.at <= high)
            .collect())
    }

    async fn flag(
        &self,
        customer_id: &str,
        at: &str,
        suspicion_event_id: &str,
    ) -> Result<Flagging, DynamoError> {
        self.failure()?;
        let flagged = self.table.update_if(&Self::key(customer_id, at), |order| {
            match order.suspected_by.as_deref() {
                Some(by) => by == suspicion_event_id,
                None => {
                    order.suspected_by = Some(suspicion_event_id.to_string());
                    true
                }
            }
        });
        Ok(match flagged {
            Some(_) => Flagging::Flagged,
            None => Flagging::AlreadyFlagged,
        })
    }

    async fn clear(
        &self,
        customer_id: &str,
        at: &str,
        cleared: &FraudCleared,
    ) -> Result<FraudCleared, DynamoError> {
        self.failure()?;
        let json = clearance_json(cleared)?;
        let order = self.table.update_if(&Self::key(customer_id, at), |order| {
            order.clearance.get_or_insert(json);
            true
        });
        // As DynamoDB's failed `attribute_exists` condition: transient, the redelivery
        // records the order again (its TTL may have removed it in between).
        let order =
            order.ok_or_else(|| DynamoError::Unavailable(format!("no order at {at} to clear")))?;
        stored_clearance(order.clearance.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris() -> Location {
        Location::new(Country::try_from("FR".to_string()).unwrap(), " PARIS ")
    }

    #[test]
    fn an_order_is_stored_with_its_key_location_and_expiry() {
        let placed: DateTime<Utc> = "2026-11-21T10:00:00.123456Z".parse().unwrap();
        let mut record =
            OrderRecord::new("cus-1", "ord-1", placed, Some(paris()), "e1", "c1", placed);
        record.suspected_by = Some("s1".into());

        let item: HashMap<String, AttributeValue> = serde_dynamo::to_item(&record).unwrap();

        let s = |v: &str| AttributeValue::S(v.into());
        assert_eq!(
            item,
            HashMap::from([
                ("customerId".into(), s("cus-1")),
                ("at".into(), s("2026-11-21T10:00:00.123Z#ord-1")),
                ("orderId".into(), s("ord-1")),
                ("occurredAt".into(), s("2026-11-21T10:00:00.123Z")),
                ("country".into(), s("FR")),
                ("city".into(), s("paris")),
                ("eventId".into(), s("e1")),
                ("correlationId".into(), s("c1")),
                // 2026-11-22T10:00:00Z: a day after the order.
                ("expiresAt".into(), AttributeValue::N("1795341600".into())),
                ("suspectedBy".into(), s("s1")),
            ])
        );
        let read: OrderRecord = serde_dynamo::from_item(item).unwrap();
        assert_eq!(read, record);
        assert_eq!(read.location(), Some(paris()));
    }

    #[test]
    fn an_order_of_unknown_location_has_no_country_or_city() {
        let placed: DateTime<Utc> = "2026-11-21T10:00:00Z".parse().unwrap();
        let record = OrderRecord::new("cus-1", "ord-1", placed, None, "e1", "c1", placed);

        let item: HashMap<String, AttributeValue> = serde_dynamo::to_item(&record).unwrap();

        assert!(!item.contains_key("country") && !item.contains_key("city"));
        assert!(!item.contains_key("suspectedBy"));
        assert_eq!(record.location(), None);
    }

    #[test]
    fn the_key_bounds_take_in_every_order_at_both_ends() {
        let from: DateTime<Utc> = "2026-11-21T10:00:00Z".parse().unwrap();
        let to: DateTime<Utc> = "2026-11-21T10:01:00Z".parse().unwrap();
        let (low, high) = key_bounds(&from, &to);
        let inside = [
            sort_key(&from, "0"),
            sort_key(&to, "zz@z"),
            sort_key(&to, "ord_9"),
        ];
        for key in &inside {
            assert!(low <= *key && *key <= high, "{key}");
        }
        let just_after = to + chrono::Duration::milliseconds(1);
        let just_before = from - chrono::Duration::milliseconds(1);
        for key in [sort_key(&just_after, "0"), sort_key(&just_before, "zz")] {
            assert!(!(low <= key && key <= high), "{key}");
        }
    }
}
