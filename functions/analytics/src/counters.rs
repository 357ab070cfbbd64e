//! Which counters an event moves, as data: no I/O, so every rule is unit-tested here.
//!
//! Layout of the analytics table (`pk`, `sk`):
//!
//! | item                       | pk                      | sk             | attributes                                   |
//! |----------------------------|-------------------------|----------------|----------------------------------------------|
//! | events of a type in an hour | `counts#2026-11-21T10`  | `<DetailType>` | `count`                                      |
//! | revenue of a currency a day | `revenue#2026-11-21`    | `<CUR>`        | `amount`, `orders`, `refunded`, `refunds`    |
//! | "already counted" marker    | `seen#<eventId>`        | `-`            | `expiresAt` (TTL), see [`crate::repository`] |
//!
//! Buckets use the event's `occurredAt` (UTC), not the time it was handled: a retried or
//! late event still lands in the hour it happened. Refunds are kept apart from gross
//! revenue (net = `amount` - `refunded`), so a refund that arrives on another day than its
//! charge does not make a day's gross negative.

use chrono::{DateTime, Utc};
use contracts::{PaymentProcessed, PaymentRefunded};
use eventkit::{DecodeError, EventData, RawEvent};

/// Events of one detail-type in the hour.
pub const COUNT: &str = "count";
/// Gross charged amount (minor units) and the number of charges.
pub const AMOUNT: &str = "amount";
pub const ORDERS: &str = "orders";
/// Refunded amount (minor units) and the number of refunds.
pub const REFUNDED: &str = "refunded";
pub const REFUNDS: &str = "refunds";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    pub pk: String,
    pub sk: String,
}

/// Atomic additions to one counter item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterUpdate {
    pub key: CounterKey,
    pub add: Vec<(&'static str, u64)>,
}

/// `counts#2026-11-21T10`: the partition of per-type counts for the hour of `t`.
pub fn hour_bucket(t: &DateTime<Utc>) -> String {
    format!("counts#{}", t.format("%Y-%m-%dT%H"))
}

/// `revenue#2026-11-21`: the partition of revenue for the day of `t`.
pub fn day_bucket(t: &DateTime<Utc>) -> String {
    format!("revenue#{}", t.format("%Y-%m-%d"))
}

/// The count item of `detail_type` in the hour of `t`.
pub fn count_key(t: &DateTime<Utc>, detail_type: &str) -> CounterKey {
    CounterKey {
        pk: hour_bucket(t),
        sk: detail_type.to_string(),
    }
}

/// The revenue item of `currency` on the day of `t`.
pub fn revenue_key(t: &DateTime<Utc>, currency: &str) -> CounterKey {
    CounterKey {
        pk: day_bucket(t),
        sk: currency.to_string(),
    }
}

/// The counter updates `event` implies. Every detail-type is counted, including ones this
/// code has never heard of (analytics subscribes to everything; a new event type must not
/// end up in the DLQ). Only payment payloads are decoded, and a bad one fails the whole
/// event, so that a poison message is not half counted.
pub fn plan(event: &RawEvent) -> Result<Vec<CounterUpdate>, DecodeError> {
    if event.detail_type.is_empty() {
        // DynamoDB refuses an empty sort key: retrying could never help.
        return Err(DecodeError::NotAnEvent {
            path: "detail-type".into(),
            message: "empty detail-type".into(),
        });
    }
    let at = &event.metadata.occurred_at;
    let mut updates = vec![CounterUpdate {
        key: count_key(at, &event.detail_type),
        add: vec![(COUNT, 1)],
    }];
    match event.detail_type.as_str() {
        PaymentProcessed::DETAIL_TYPE => {
            let payment = event.decode::<PaymentProcessed>()?.data;
            updates.push(CounterUpdate {
                key: revenue_key(at, payment.currency.as_str()),
                add: vec![(AMOUNT, payment.amount), (ORDERS, 1)],
            });
        }
        PaymentRefunded::DETAIL_TYPE => {
            let refund = event.decode::<PaymentRefunded>()?.data;
            updates.push(CounterUpdate {
                key: revenue_key(at, refund.currency.as_str()),
                add: vec![(REFUNDED, refund.amount), (REFUNDS, 1)],
            });
        }
        _ => {}
    }
    Ok(updates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventkit::EventMetadata;
    use serde_json::{json, Value};

    fn event(detail_type: &str, occurred_at: &str, data: Value) -> RawEvent {
        RawEvent {
            source: "orderflow.payment".into(),
            detail_type: detail_type.into(),
            metadata: EventMetadata {
                event_id: "e-1".into(),
                schema_version: 1,
                correlation_id: "c-1".into(),
                causation_id: None,
                occurred_at: occurred_at.parse().unwrap(),
            },
            data,
        }
    }

    fn payment(amount: Value, currency: &str) -> Value {
        json!({"orderId": "o-1", "paymentId": "pay_1", "amount": amount, "currency": currency})
    }

    #[test]
    fn buckets_are_the_utc_hour_and_day_of_the_event() {
        let t: DateTime<Utc> = "2026-11-21T10:59:59.999+01:00".parse().unwrap();
        assert_eq!(hour_bucket(&t), "counts#2026-11-21T09");
        assert_eq!(day_bucket(&t), "revenue#2026-11-21");
        let midnight: DateTime<Utc> = "2026-11-21T00:00:00Z".parse().unwrap();
        assert_eq!(hour_bucket(&midnight), "counts#2026-11-21T00");
        assert_eq!(day_bucket(&midnight), "revenue#2026-11-21");
    }

    #[test]
    fn any_event_is_counted_by_type_in_its_hour() {
        let e = event("OrderShipped", "2026-11-21T10:15:00Z", json!({}));
        assert_eq!(
            plan(&e).unwrap(),
            vec![CounterUpdate {
                key: CounterKey {
                    pk: "counts#2026-11-21T10".into(),
                    sk: "OrderShipped".into()
                },
                add: vec![(COUNT, 1)],
            }]
        );
    }

    #[test]
    fn an_unknown_type_is_counted_and_its_payload_left_alone() {
        let e = event(
            "SomethingNew",
            "2026-11-21T10:15:00Z",
            json!("not an object"),
        );
        let updates = plan(&e).unwrap();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].key.sk, "SomethingNew");
    }

    #[test]
    fn a_payment_adds_to_the_revenue_of_its_currency_and_day() {
        let e = event(
            "PaymentProcessed",
            "2026-11-21T23:30:00Z",
            payment(json!(2500), "EUR"),
        );
        let updates = plan(&e).unwrap();
        assert_eq!(updates.len(), 2);
        assert_eq!(
            updates[0].key,
            count_key(&e.metadata.occurred_at, "PaymentProcessed")
        );
        assert_eq!(
            updates[1],
            CounterUpdate {
                key: CounterKey {
                    pk: "revenue#2026-11-21".into(),
                    sk: "EUR".into()
                },
                add: vec![(AMOUNT, 2500), (ORDERS, 1)],
            }
        );
    }

    #[test]
    fn a_refund_is_summed_apart_from_gross_revenue() {
        let e = event(
            "PaymentRefunded",
            "2026-11-22T00:00:01Z",
            payment(json!(700), "XTS"),
        );
        let updates = plan(&e).unwrap();
        assert_eq!(updates.len(), 2);
        assert_eq!(
            updates[1],
            CounterUpdate {
                key: revenue_key(&e.metadata.occurred_at, "XTS"),
                add: vec![(REFUNDED, 700), (REFUNDS, 1)],
            }
        );
        assert_eq!(updates[1].key.pk, "revenue#2026-11-22");
        assert!(updates
            .iter()
            .all(|u| u.add.iter().all(|(a, _)| *a != AMOUNT)));
    }

    #[test]
    fn payment_types_with_invalid_data_are_refused_whole() {
        for (detail_type, data) in [
            ("PaymentProcessed", payment(json!("2500"), "EUR")),
            ("PaymentProcessed", payment(json!(-1), "EUR")),
            ("PaymentProcessed", payment(json!(2500), "euro")),
            ("PaymentRefunded", json!({"orderId": "o-1"})),
        ] {
            let e = event(detail_type, "2026-11-21T10:00:00Z", data);
            let err = plan(&e).unwrap_err();
            assert_eq!(err.reason(), "invalid-data", "{detail_type}: {err}");
        }
    }

    #[test]
    fn an_empty_detail_type_is_refused() {
        let e = event("", "2026-11-21T10:00:00Z", json!({}));
        assert!(plan(&e).is_err());
    }
}
