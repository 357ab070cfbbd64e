//! The stock table (one item per SKU: `sku`, `stock`) and the reservations table (one item
//! per order: `orderId`).
//!
//! A stock item also holds the SKU's catalogue entry (`name`, `price`, `currency`: written by
//! the seed script, read by payment). This function writes `stock` alone: every write to a
//! stock item is an UpdateItem of that one attribute, never a PutItem (which would replace
//! the item) nor a `REMOVE`, so the catalogue survives every reservation and release.
//!
//! Stock only moves inside a transaction that also moves the order's reservation record,
//! and each such transaction is conditional on the record (absent to reserve, `RESERVED` to
//! release). So stock and records never disagree, and each order's stock is taken at most
//! once and given back at most once, however often its events are delivered and however
//! long after the idempotency records have expired.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::BuildError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use contracts::{Shortage, StockLine};
use eventkit::dynamo::attr::{get_n, get_s, n, s};
use eventkit::dynamo::{batch_get_all, put_once, transact_write, BatchGet, Transaction};
use eventkit::{DecidedBy, DynamoError, FirstWrite, HandlerError};
use serde::{Deserialize, Serialize};

use crate::decision::ReservationStatus;

#[cfg(any(test, feature = "testing"))]
pub mod memory;

/// An order's reservation record, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub order_id: String,
    pub reservation_id: String,
    pub status: ReservationStatus,
    /// One line per SKU: what was (or, when out of stock, would have been) taken.
    pub lines: Vec<StockLine>,
    /// Why an `OUT_OF_STOCK` order got nothing, exactly as published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shortages: Vec<Shortage>,
    /// The `OrderPlaced` event that decided this record: only a redelivery of that event
    /// may publish its answer again.
    pub event_id: String,
    /// `Envelope::content_digest` of that `OrderPlaced`: another `OrderPlaced` for the
    /// order with the same digest is the same order sent again, one with another digest a
    /// conflicting duplicate. Absent on a tombstone (a release wrote it) and on records
    /// written before digests were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_digest: Option<String>,
    pub correlation_id: String,
    pub recorded_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
    /// The request whose release took effect, for the same reason as `event_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_reason: Option<String>,
}

impl DecidedBy for Reservation {
    fn cause_event_id(&self) -> &str {
        &self.event_id
    }
    fn cause_correlation_id(&self) -> &str {
        &self.correlation_id
    }
}

/// Who gives a reservation back, why, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRequest {
    pub event_id: String,
    pub reason: String,
    pub at: String,
}

/// The result of trying to reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// Every line's stock was taken and the record written.
    Reserved,
    /// The order already has a record; nothing was taken.
    AlreadyRecorded,
    /// Some line is short; nothing was taken.
    Short,
    /// Another write touched one of the items at the same moment; nothing was taken.
    Conflict,
}

/// The result of trying to release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The record is `RELEASED` by this request and its stock is back.
    Released,
    /// The record was no longer `RESERVED`; nothing changed.
    NotReserved,
    /// Another write touched one of the items at the same moment; nothing changed.
    Conflict,
}

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("inventory tables: {0}")]
    Tables(#[from] DynamoError),
    #[error("reservation record of order {order_id} is unreadable: {source}")]
    Corrupt {
        order_id: String,
        source: serde_dynamo::Error,
    },
}

/// The reasons are the ones this function has always reported, so dashboards and DLQ
/// triage keep working; only a request DynamoDB rejects as malformed (new with the typed
/// [`DynamoError`]) takes eventkit's own reason.
impl From<RepositoryError> for HandlerError {
    fn from(e: RepositoryError) -> Self {
        match e {
            RepositoryError::Tables(DynamoError::Unavailable(_)) => {
                HandlerError::transient("inventory-tables", e)
            }
            RepositoryError::Tables(DynamoError::Rejected(_)) => {
                HandlerError::permanent("dynamodb-rejected", e)
            }
            RepositoryError::Tables(DynamoError::Unreadable(_))
            | RepositoryError::Corrupt { .. } => HandlerError::permanent("corrupt-reservation", e),
        }
    }
}

#[async_trait]
pub trait InventoryRepository: Send + Sync {
    /// In one transaction: takes each line's quantity off its SKU's stock (only if there is
    /// that much) and stores `reservation` (only if the order has no record yet).
    async fn reserve(&self, reservation: &Reservation) -> Result<Reserve, RepositoryError>;

    /// Current stock of `skus`, read consistently; a SKU with no item is absent.
    async fn stock_levels(&self, skus: &[&str]) -> Result<HashMap<String, u32>, RepositoryError>;

    /// Stores `reservation` unless the order already has a record; that one is returned.
    async fn record_once(
        &self,
        reservation: &Reservation,
    ) -> Result<FirstWrite<Reservation>, RepositoryError>;

    /// The order's record, read consistently.
    async fn reservation(&self, order_id: &str) -> Result<Option<Reservation>, RepositoryError>;

    /// In one transaction: marks `reservation` released by `request` (only if it is still
    /// `RESERVED`) and adds each of its lines back to stock.
    async fn release(
        &self,
        reservation: &Reservation,
        request: &ReleaseRequest,
    ) -> Result<Release, RepositoryError>;
}

pub struct DynamoInventoryRepository {
    client: aws_sdk_dynamodb::Client,
    stock_table: String,
    reservations_table: String,
}

impl DynamoInventoryRepository {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        stock_table: impl Into<String>,
        reservations_table: impl Into<String>,
    ) -> Self {
        DynamoInventoryRepository {
            client,
            stock_table: stock_table.into(),
            reservations_table: reservations_table.into(),
        }
    }

    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        record_at: usize,
    ) -> Result<Option<Cancelled>, RepositoryError> {
        let codes = match transact_write(&self.client, items).await? {
            Transaction::Committed => return Ok(None),
            Transaction::Cancelled(codes) => codes,
        };
        let borrowed: Vec<Option<&str>> = codes.iter().map(Option::as_deref).collect();
        match classify_cancellation(&borrowed, record_at) {
            Cancelled::Other => {
                Err(DynamoError::Unavailable(format!("transaction cancelled: {codes:?}")).into())
            }
            known => Ok(Some(known)),
        }
    }
}

#[async_trait]
impl InventoryRepository for DynamoInventoryRepository {
    async fn reserve(&self, reservation: &Reservation) -> Result<Reserve, RepositoryError> {
        let items = reserve_items(&self.stock_table, &self.reservations_table, reservation)?;
        // The record is the last item, and always there.
        let record_at = items.len().saturating_sub(1);
        Ok(match self.transact(items, record_at).await? {
            None => Reserve::Reserved,
            // Both may have failed; the record wins, since the order has its answer already.
            Some(Cancelled::RecordCondition) => Reserve::AlreadyRecorded,
            Some(Cancelled::OtherCondition) => Reserve::Short,
            Some(Cancelled::Conflict | Cancelled::Other) => Reserve::Conflict,
        })
    }

    async fn stock_levels(&self, skus: &[&str]) -> Result<HashMap<String, u32>, RepositoryError> {
        // A reservation's lines are merged by SKU (`merge_lines`): its keys are distinct, as
        // BatchGetItem requires.
        let keys = skus
            .iter()
            .map(|sku| HashMap::from([("sku".to_string(), s(*sku))]))
            .collect();
        let read = BatchGet {
            projection: Some("sku, #stock"),
            names: &[("#stock", "stock")],
            // The levels judge whether the order is short right now.
            consistent_read: true,
        };
        let items = batch_get_all(&self.client, &self.stock_table, keys, &read).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let sku = get_s(item, "sku")?;
                Some((sku.to_string(), stock_level(get_n(item, "stock"))))
            })
            .collect())
    }

    async fn record_once(
        &self,
        reservation: &Reservation,
    ) -> Result<FirstWrite<Reservation>, RepositoryError> {
        Ok(put_once(
            &self.client,
            &self.reservations_table,
            "orderId",
            reservation,
        )
        .await?)
    }

    async fn reservation(&self, order_id: &str) -> Result<Option<Reservation>, RepositoryError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.reservations_table)
            .key("orderId", s(order_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DynamoError::from_sdk(&e))?;
        out.item()
            .map(|item| {
                serde_dynamo::from_item(item.clone()).map_err(|source| RepositoryError::Corrupt {
                    order_id: order_id.to_string(),
                    source,
                })
            })
            .transpose()
    }

    async fn release(
        &self,
        reservation: &Reservation,
        request: &ReleaseRequest,
    ) -> Result<Release, RepositoryError> {
        let items = release_items(
            &self.stock_table,
            &self.reservations_table,
            reservation,
            request,
        )?;
        Ok(match self.transact(items, 0).await? {
            None => Release::Released,
            Some(Cancelled::RecordCondition) => Release::NotReserved,
            // The stock updates carry no condition: only a race can cancel them.
            Some(Cancelled::OtherCondition | Cancelled::Conflict | Cancelled::Other) => {
                Release::Conflict
            }
        })
    }
}

/// Takes a line's quantity off its SKU's stock. An absent SKU has no `stock`, so the
/// condition fails like an empty shelf's.
const TAKE_STOCK: (&str, Option<&str>) = ("SET #stock = #stock - :q", Some("#stock >= :q"));
/// Gives a line's quantity back; an item deleted meanwhile comes back with just its stock.
const GIVE_STOCK_BACK: (&str, Option<&str>) = ("ADD #stock :q", None);

/// The reservation's transaction: one stock update per line, then the record (last), put
/// only if the order has none.
fn reserve_items(
    stock_table: &str,
    reservations_table: &str,
    reservation: &Reservation,
) -> Result<Vec<TransactWriteItem>, RepositoryError> {
    let mut items = reservation
        .lines
        .iter()
        .map(|line| stock_update(stock_table, line, TAKE_STOCK))
        .collect::<Result<Vec<_>, _>>()?;
    let record = serde_dynamo::to_item(reservation).map_err(|source| RepositoryError::Corrupt {
        order_id: reservation.order_id.clone(),
        source,
    })?;
    let put = Put::builder()
        .table_name(reservations_table)
        .set_item(Some(record))
        .condition_expression("attribute_not_exists(orderId)")
        .build()
        .map_err(malformed)?;
    items.push(TransactWriteItem::builder().put(put).build());
    Ok(items)
}

/// The release's transaction: the record (first), marked released only if it is still
/// `RESERVED`, then one stock update per line.
fn release_items(
    stock_table: &str,
    reservations_table: &str,
    reservation: &Reservation,
    request: &ReleaseRequest,
) -> Result<Vec<TransactWriteItem>, RepositoryError> {
    let record = Update::builder()
        .table_name(reservations_table)
        .key("orderId", s(&reservation.order_id))
        .update_expression(
            "SET #status = :released, releasedAt = :at, releaseEventId = :by, \
             releaseReason = :why",
        )
        .condition_expression("#status = :reserved")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":released", s(ReservationStatus::Released.as_str()))
        .expression_attribute_values(":reserved", s(ReservationStatus::Reserved.as_str()))
        .expression_attribute_values(":at", s(&request.at))
        .expression_attribute_values(":by", s(&request.event_id))
        .expression_attribute_values(":why", s(&request.reason))
        .build()
        .map_err(malformed)?;
    let mut items = vec![TransactWriteItem::builder().update(record).build()];
    for line in &reservation.lines {
        items.push(stock_update(stock_table, line, GIVE_STOCK_BACK)?);
    }
    Ok(items)
}

/// One stock item's part of a transaction: an update of its `stock` and nothing else.
fn stock_update(
    stock_table: &str,
    line: &StockLine,
    (expression, condition): (&str, Option<&str>),
) -> Result<TransactWriteItem, RepositoryError> {
    let update = Update::builder()
        .table_name(stock_table)
        .key("sku", s(&line.sku))
        .update_expression(expression)
        .set_condition_expression(condition.map(str::to_string))
        .expression_attribute_names("#stock", "stock")
        .expression_attribute_values(":q", n(line.quantity))
        .build()
        .map_err(malformed)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// A request the SDK will not build lacks a required field: no retry can add it.
fn malformed(e: BuildError) -> RepositoryError {
    DynamoError::Rejected(e.to_string()).into()
}

/// Why a transaction was cancelled, read from its per-item reasons (in request order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancelled {
    /// The condition on the reservation record failed.
    RecordCondition,
    /// A condition on another item failed.
    OtherCondition,
    /// A concurrent write to one of the items.
    Conflict,
    /// Anything else (throttling, validation, or no reasons given).
    Other,
}

fn classify_cancellation(codes: &[Option<&str>], record_at: usize) -> Cancelled {
    const CONDITION: Option<&str> = Some("ConditionalCheckFailed");
    if codes.get(record_at) == Some(&CONDITION) {
        Cancelled::RecordCondition
    } else if codes.contains(&CONDITION) {
        Cancelled::OtherCondition
    } else if codes.contains(&Some("TransactionConflict")) {
        Cancelled::Conflict
    } else {
        Cancelled::Other
    }
}

/// A stock level as read (`None` when missing or not a number); anything unreadable or
/// negative counts as none.
pub(crate) fn stock_level(stored: Option<i64>) -> u32 {
    stored.map_or(0, |v| v.clamp(0, i64::from(u32::MAX)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    #[test]
    fn a_failed_record_condition_wins_over_short_stock() {
        let codes = [
            Some("ConditionalCheckFailed"),
            Some("None"),
            Some("ConditionalCheckFailed"),
        ];
        assert_eq!(classify_cancellation(&codes, 2), Cancelled::RecordCondition);
        assert_eq!(classify_cancellation(&codes, 1), Cancelled::OtherCondition);
    }

    #[test]
    fn conflicts_and_unknown_reasons_are_told_apart() {
        let conflict = [Some("None"), Some("TransactionConflict")];
        assert_eq!(classify_cancellation(&conflict, 1), Cancelled::Conflict);
        assert_eq!(
            classify_cancellation(&[Some("ThrottlingError")], 0),
            Cancelled::Other
        );
        // No reasons at all (an emulator that leaves them out).
        assert_eq!(classify_cancellation(&[], 0), Cancelled::Other);
    }

    #[test]
    fn stock_levels_read_defensively() {
        let level = |v: AttributeValue| {
            stock_level(get_n(&HashMap::from([("stock".to_string(), v)]), "stock"))
        };
        assert_eq!(level(AttributeValue::N("7".into())), 7);
        assert_eq!(level(AttributeValue::N("-3".into())), 0);
        assert_eq!(level(AttributeValue::N("1e99".into())), 0);
        assert_eq!(level(AttributeValue::S("7".into())), 0);
        assert_eq!(stock_level(get_n(&HashMap::new(), "stock")), 0);
    }

    fn reservation(lines: &[(&str, u32)]) -> Reservation {
        Reservation {
            order_id: "ord-1".into(),
            reservation_id: "res_1".into(),
            status: ReservationStatus::Reserved,
            lines: lines
                .iter()
                .map(|(sku, quantity)| StockLine {
                    sku: sku.to_string(),
                    quantity: *quantity,
                })
                .collect(),
            shortages: Vec::new(),
            event_id: "e1".into(),
            order_digest: Some("d1".into()),
            correlation_id: "c1".into(),
            recorded_at: "2026-11-21T10:00:00.000Z".into(),
            released_at: None,
            release_event_id: None,
            release_reason: None,
        }
    }

    fn table_of(item: &TransactWriteItem) -> &str {
        item.put()
            .map(|p| p.table_name())
            .or(item.update().map(|u| u.table_name()))
            .or(item.delete().map(|d| d.table_name()))
            .or(item.condition_check().map(|c| c.table_name()))
            .unwrap_or_default()
    }

    #[test]
    fn reserving_and_releasing_write_a_stock_items_stock_and_nothing_else() {
        let held = reservation(&[("MUG", 2), ("TEA", 1)]);
        let request = ReleaseRequest {
            event_id: "r1".into(),
            reason: "payment-failed".into(),
            at: "2026-11-21T10:01:00.000Z".into(),
        };
        let transactions = [
            (
                "reserve",
                reserve_items("stock", "reservations", &held).unwrap(),
            ),
            (
                "release",
                release_items("stock", "reservations", &held, &request).unwrap(),
            ),
        ];
        for (what, items) in transactions {
            let on_stock: Vec<&TransactWriteItem> =
                items.iter().filter(|i| table_of(i) == "stock").collect();
            assert_eq!(on_stock.len(), 2, "{what}: one write per line");
            for item in on_stock {
                // A Put would replace the item, catalogue (price, currency, name) and all.
                assert!(item.put().is_none(), "{what}: {item:?}");
                assert!(item.delete().is_none(), "{what}: {item:?}");
                let update = item.update().expect("an update");
                assert_eq!(update.key().keys().collect::<Vec<_>>(), ["sku"], "{what}");
                assert_eq!(
                    update.expression_attribute_names(),
                    Some(&HashMap::from([(
                        "#stock".to_string(),
                        "stock".to_string()
                    )])),
                    "{what}"
                );
                // Nothing but `#stock` is named, so nothing else is set or removed.
                let expression = update.update_expression();
                for token in expression.split_whitespace() {
                    assert!(
                        ["SET", "ADD", "#stock", "=", "-", ":q"].contains(&token),
                        "{what}: {token} in {expression}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_record_is_last_in_a_reservation_and_first_in_a_release() {
        let held = reservation(&[("MUG", 2)]);
        let reserve = reserve_items("stock", "reservations", &held).unwrap();
        assert_eq!(table_of(&reserve[1]), "reservations");
        let put = reserve[1].put().expect("the record is put");
        assert_eq!(
            put.condition_expression(),
            Some("attribute_not_exists(orderId)")
        );
        assert_eq!(
            put.item().get("orderDigest"),
            Some(&AttributeValue::S("d1".into()))
        );
        let request = ReleaseRequest {
            event_id: "r1".into(),
            reason: "payment-failed".into(),
            at: "2026-11-21T10:01:00.000Z".into(),
        };
        let release = release_items("stock", "reservations", &held, &request).unwrap();
        assert_eq!(table_of(&release[0]), "reservations");
        // An update, so the record keeps its lines and its order's digest.
        assert!(release[0].update().is_some());
    }

    #[test]
    fn records_round_trip_through_dynamodb_items() {
        let record = Reservation {
            order_id: "ord-1".into(),
            reservation_id: "res_1".into(),
            status: ReservationStatus::OutOfStock,
            lines: vec![StockLine {
                sku: "MUG".into(),
                quantity: 2,
            }],
            shortages: vec![Shortage {
                sku: "MUG".into(),
                requested: 2,
                available: 1,
            }],
            event_id: "e1".into(),
            order_digest: Some("d1".into()),
            correlation_id: "c1".into(),
            recorded_at: "2026-11-21T10:00:00.000Z".into(),
            released_at: None,
            release_event_id: None,
            release_reason: None,
        };
        let item: HashMap<String, AttributeValue> = serde_dynamo::to_item(&record).unwrap();
        assert_eq!(item["status"], AttributeValue::S("OUT_OF_STOCK".into()));
        assert_eq!(item["orderDigest"], AttributeValue::S("d1".into()));
        assert!(!item.contains_key("releasedAt"));
        assert_eq!(
            serde_dynamo::from_item::<_, Reservation>(item.clone()).unwrap(),
            record
        );

        // A record written before digests were kept reads as one without a digest.
        let mut older = item;
        older.remove("orderDigest");
        let older: Reservation = serde_dynamo::from_item(older).unwrap();
        assert_eq!(older.order_digest, None);
    }
}
