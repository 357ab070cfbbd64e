//! The inventory rules, free of I/O:
//!
//! 1. An order's lines are merged by SKU before anything is reserved: "2 mugs + 1 mug" needs
//!    3 mugs on the shelf, and one transaction may touch each stock item only once.
//! 2. A SKU the inventory does not know has no stock.
//! 3. An order gets all its lines or nothing; when something is short, the answer names every
//!    short SKU with what was asked and what there is.
//! 4. The reservation id is derived from the order id, so every attempt at one order (and
//!    every event about it) carries the same id.
//! 5. An order has one reservation record for life. What a redelivered or repeated event
//!    may do with it is decided by [`replay`] and [`plan_release`].
//! 6. The first `OrderPlaced` of an order wins. Another one that says the same (same
//!    content digest, whatever its event id) is a duplicate; one that says something else
//!    (other lines, another customer, ...) is a *conflicting duplicate* and is refused, so
//!    that it is seen in the DLQ instead of being answered with the first order's stock.
//! 7. Once a release is requested, the order never holds stock again: a request that finds
//!    no record leaves a `CANCELLED` one, so an `OrderPlaced` that arrives later (the saga
//!    may cancel before inventory has seen the order) reserves nothing.

use std::collections::HashMap;

use contracts::{OrderLine, Shortage, StockLine};
use serde::{Deserialize, Serialize};

/// Most distinct SKUs one order can reserve. The limit comes from DynamoDB: one
/// `TransactWriteItems` holds at most 100 items ("TransactWriteItems", Amazon DynamoDB API
/// Reference, https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html),
/// and a reservation (and its release) is one update per distinct SKU plus the reservation
/// record. Lines are merged by SKU first ([`merge_lines`]), so an order may have more lines
/// than this as long as they repeat SKUs. Intake refuses more distinct SKUs than this, with
/// the same constant, so `too-many-skus` here is a guard that an admitted order never hits.
pub const MAX_SKUS_PER_RESERVATION: usize = contracts::limits::MAX_DISTINCT_SKUS;

/// Where an order's reservation stands. It only ever moves `RESERVED -> RELEASED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationStatus {
    /// The order's stock is held for it.
    Reserved,
    /// Nothing was held because some line was short; kept so a redelivery answers the same.
    OutOfStock,
    /// The stock was held and has been given back.
    Released,
    /// A release came before any reservation: the order must not take stock any more.
    Cancelled,
}

impl ReservationStatus {
    /// As stored in DynamoDB.
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Reserved => "RESERVED",
            ReservationStatus::OutOfStock => "OUT_OF_STOCK",
            ReservationStatus::Released => "RELEASED",
            ReservationStatus::Cancelled => "CANCELLED",
        }
    }
}

/// The order's lines with one line per SKU, in order of first appearance.
pub fn merge_lines(lines: &[OrderLine]) -> Vec<StockLine> {
    let mut merged: Vec<StockLine> = Vec::with_capacity(lines.len());
    for line in lines {
        match merged.iter_mut().find(|m| m.sku == line.sku) {
            Some(m) => m.quantity = m.quantity.saturating_add(line.quantity),
            None => merged.push(StockLine {
                sku: line.sku.clone(),
                quantity: line.quantity,
            }),
        }
    }
    merged
}

/// The lines that want more than there is (`available` by SKU, absent meaning none), in
/// line order. Empty when every line can be served.
pub fn shortages(wanted: &[StockLine], available: &HashMap<String, u32>) -> Vec<Shortage> {
    wanted
        .iter()
        .filter_map(|line| {
            let available = available.get(&line.sku).copied().unwrap_or(0);
            (available < line.quantity).then(|| Shortage {
                sku: line.sku.clone(),
                requested: line.quantity,
                available,
            })
        })
        .collect()
}

/// `res_` and 16 hex digits derived from the order id.
pub fn reservation_id_for(order_id: &str) -> String {
    let id = eventkit::envelope::derived_event_id(order_id, "Reservation", "");
    format!("res_{}", id.replace('-', "").get(..16).unwrap_or_default())
}

/// What an `OrderPlaced` finds to say when its order already has a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// This very event reserved the stock and may have died before publishing: publish
    /// `InventoryReserved` again (its id is derived from the event, so it is the same event).
    Reserved,
    /// Likewise for an out-of-stock answer.
    OutOfStock,
    /// Another event decided this order (the same order sent again under another id, or a
    /// release that came first), or its stock has been released since: saying "reserved"
    /// now would be wrong or a second answer.
    Nothing,
    /// The record was decided by an `OrderPlaced` with other content: the order id is
    /// being reused for a different order. Answering from the record would tell its sender
    /// that stock is held for lines nobody reserved.
    Conflicting,
}

/// `recorded_by` and `recorded_digest` are the event that wrote the record and its content
/// digest (absent on tombstones and on records older than digests); `event_id` and
/// `digest` are those of the `OrderPlaced` handled now.
pub fn replay(
    status: ReservationStatus,
    recorded_by: &str,
    recorded_digest: Option<&str>,
    event_id: &str,
    digest: &str,
) -> Replay {
    // A tombstone was written by a release, not by an order: any `OrderPlaced` for it
    // reserves nothing, whatever it says, as before digests were kept.
    if status == ReservationStatus::Cancelled {
        return Replay::Nothing;
    }
    // A record without a digest is taken to be this order (`once::conflicts`); either way
    // nothing is reserved again.
    if eventkit::once::conflicts(recorded_digest, digest) {
        return Replay::Conflicting;
    }
    if recorded_by != event_id {
        return Replay::Nothing;
    }
    match status {
        ReservationStatus::Reserved => Replay::Reserved,
        ReservationStatus::OutOfStock => Replay::OutOfStock,
        ReservationStatus::Released | ReservationStatus::Cancelled => Replay::Nothing,
    }
}

/// What a release request does to an existing record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleasePlan {
    /// The stock is held: give it back.
    Release,
    /// This very request released it and may have died before publishing: publish
    /// `InventoryReleased` again, with the same derived id.
    Republish,
    /// Nothing is held for this request to give back.
    Nothing(NothingToRelease),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NothingToRelease {
    /// The order never got stock.
    OutOfStock,
    /// The order was released before it reserved anything.
    NeverReserved,
    /// Another request (say `OrderCancelled` after `ReleaseInventoryRequested`) already
    /// gave it back.
    ReleasedByAnother,
}

/// `released_by` is the event whose release took effect, if any; `event_id` the request
/// handled now.
pub fn plan_release(
    status: ReservationStatus,
    released_by: Option<&str>,
    event_id: &str,
) -> ReleasePlan {
    match status {
        ReservationStatus::Reserved => ReleasePlan::Release,
        ReservationStatus::OutOfStock => ReleasePlan::Nothing(NothingToRelease::OutOfStock),
        ReservationStatus::Cancelled => ReleasePlan::Nothing(NothingToRelease::NeverReserved),
        ReservationStatus::Released if released_by == Some(event_id) => ReleasePlan::Republish,
        ReservationStatus::Released => ReleasePlan::Nothing(NothingToRelease::ReleasedByAnother),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, quantity: u32) -> OrderLine {
        OrderLine {
            sku: sku.into(),
            quantity,
            unit_price: 100,
        }
    }

    fn stock(sku: &str, quantity: u32) -> StockLine {
        StockLine {
            sku: sku.into(),
            quantity,
        }
    }

    #[test]
    fn lines_of_one_sku_are_merged_in_order_of_first_appearance() {
        let merged = merge_lines(&[line("MUG", 2), line("TEA", 1), line("MUG", 3)]);
        assert_eq!(merged, vec![stock("MUG", 5), stock("TEA", 1)]);
        assert_eq!(merge_lines(&[]), vec![]);
    }

    #[test]
    fn merging_never_overflows() {
        let merged = merge_lines(&[line("MUG", u32::MAX), line("MUG", 1)]);
        assert_eq!(merged, vec![stock("MUG", u32::MAX)]);
    }

    #[test]
    fn shortages_name_each_short_sku_with_what_there_is() {
        let available = HashMap::from([("MUG".to_string(), 5), ("TEA".to_string(), 1)]);
        let wanted = [stock("MUG", 5), stock("TEA", 3), stock("LAMP", 1)];
        assert_eq!(
            shortages(&wanted, &available),
            vec![
                Shortage {
                    sku: "TEA".into(),
                    requested: 3,
                    available: 1
                },
                // Unknown SKU: no stock at all.
                Shortage {
                    sku: "LAMP".into(),
                    requested: 1,
                    available: 0
                },
            ]
        );
        assert!(shortages(&[stock("MUG", 5)], &available).is_empty());
    }

    #[test]
    fn reservation_ids_are_stable_per_order() {
        assert_eq!(reservation_id_for("ord-1"), reservation_id_for("ord-1"));
        assert_ne!(reservation_id_for("ord-1"), reservation_id_for("ord-2"));
        assert!(reservation_id_for("ord-1").starts_with("res_"));
        assert_eq!(reservation_id_for("ord-1").len(), 20);
    }

    #[test]
    fn only_the_event_that_wrote_a_record_answers_again() {
        use ReservationStatus::*;
        assert_eq!(
            replay(Reserved, "e1", Some("d1"), "e1", "d1"),
            Replay::Reserved
        );
        assert_eq!(
            replay(OutOfStock, "e1", Some("d1"), "e1", "d1"),
            Replay::OutOfStock
        );
        assert_eq!(
            replay(Released, "e1", Some("d1"), "e1", "d1"),
            Replay::Nothing
        );
        for status in [Reserved, OutOfStock, Released, Cancelled] {
            assert_eq!(
                replay(status, "e1", Some("d1"), "e2", "d1"),
                Replay::Nothing,
                "{status:?}"
            );
        }
    }

    #[test]
    fn an_order_placed_with_other_content_conflicts_with_the_record() {
        use ReservationStatus::*;
        for status in [Reserved, OutOfStock, Released] {
            for event_id in ["e1", "e2"] {
                assert_eq!(
                    replay(status, "e1", Some("d1"), event_id, "d2"),
                    Replay::Conflicting,
                    "{status:?} {event_id}"
                );
            }
        }
    }

    #[test]
    fn records_without_a_digest_and_tombstones_never_conflict() {
        use ReservationStatus::*;
        // Written before digests were kept: taken to be the same order.
        assert_eq!(replay(Reserved, "e1", None, "e1", "d2"), Replay::Reserved);
        assert_eq!(
            replay(OutOfStock, "e1", None, "e1", "d2"),
            Replay::OutOfStock
        );
        assert_eq!(replay(Reserved, "e1", None, "e2", "d2"), Replay::Nothing);
        // A release came first: nothing to reserve, whatever the order says.
        assert_eq!(replay(Cancelled, "r1", None, "e1", "d2"), Replay::Nothing);
        assert_eq!(
            replay(Cancelled, "r1", Some("d1"), "e1", "d2"),
            Replay::Nothing
        );
    }

    #[test]
    fn a_release_gives_back_only_held_stock_and_only_once() {
        use ReservationStatus::*;
        assert_eq!(plan_release(Reserved, None, "r1"), ReleasePlan::Release);
        assert_eq!(
            plan_release(Released, Some("r1"), "r1"),
            ReleasePlan::Republish
        );
        assert_eq!(
            plan_release(Released, Some("r1"), "r2"),
            ReleasePlan::Nothing(NothingToRelease::ReleasedByAnother)
        );
        assert_eq!(
            plan_release(OutOfStock, None, "r1"),
            ReleasePlan::Nothing(NothingToRelease::OutOfStock)
        );
        for by in ["r1", "r2"] {
            assert_eq!(
                plan_release(Cancelled, Some("r1"), by),
                ReleasePlan::Nothing(NothingToRelease::NeverReserved)
            );
        }
    }

    #[test]
    fn statuses_are_stored_as_their_names() {
        for status in [
            ReservationStatus::Reserved,
            ReservationStatus::OutOfStock,
            ReservationStatus::Released,
            ReservationStatus::Cancelled,
        ] {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::String(status.as_str().into())
            );
        }
    }
}
