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

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use contracts::{Event, Payload, PaymentProcessed, PaymentRefunded};
use eventkit::Envelope;

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

/// Atomic additions to one counter item. `u128`: a transaction adds the sum of up to 100
/// events' `u64` amounts to one item, which can exceed `u64` but never `u128` (nor the 38
/// digits of a DynamoDB number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterUpdate {
    pub key: CounterKey,
    pub add: Vec<(&'static str, u128)>,
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

/// The counter updates `event` implies. Every type is counted under its detail-type;
/// payments and refunds also move the revenue of their currency. The event was decoded and
/// checked when it was taken in, so nothing here can fail: a poison payment never gets
/// this far and is never half counted.
pub fn plan(event: &Envelope<Event>) -> Vec<CounterUpdate> {
    let at = &event.metadata.occurred_at;
    let mut updates = vec![CounterUpdate {
        key: count_key(at, event.data.detail_type()),
        add: vec![(COUNT, 1)],
    }];
    match &event.data {
        Event::PaymentProcessed(PaymentProcessed {
            amount, currency, ..
        }) => updates.push(CounterUpdate {
            key: revenue_key(at, currency.as_str()),
            add: vec![(AMOUNT, u128::from(*amount)), (ORDERS, 1)],
        }),
        Event::PaymentRefunded(PaymentRefunded {
            amount, currency, ..
        }) => updates.push(CounterUpdate {
            key: revenue_key(at, currency.as_str()),
            add: vec![(REFUNDED, u128::from(*amount)), (REFUNDS, 1)],
        }),
        _ => {}
    }
    updates
}

/// The updates of many events as one update per counter item, additions to an attribute
/// summed, in key order. A transaction may not name an item twice (`TransactWriteItems`:
/// "no two actions can target the same item"), and a busy hour's count item is moved by
/// most events of a batch, so this is also what keeps a batch's transaction small.
pub fn merge<'a>(updates: impl IntoIterator<Item = &'a CounterUpdate>) -> Vec<CounterUpdate> {
    let mut items: BTreeMap<&CounterKey, BTreeMap<&'static str, u128>> = BTreeMap::new();
    for update in updates {
        let item = items.entry(&update.key).or_default();
        for (attribute, amount) in &update.add {
            *item.entry(*attribute).or_default() += amount;
        }
    }
    items
        .into_iter()
        .map(|(key, add)| CounterUpdate {
            key: key.clone(),
            add: add.into_iter().collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{Currency, OrderShipped};

    fn at(occurred_at: &str, data: impl Into<Event>) -> Envelope<Event> {
        let mut event = Envelope::new(data.into());
        event.metadata.occurred_at = occurred_at.parse().unwrap();
        event
    }

    fn currency(code: &str) -> Currency {
        Currency::try_from(code.to_string()).unwrap()
    }

    fn processed(amount: u64, code: &str) -> PaymentProcessed {
        PaymentProcessed {
            order_id: "o-1".into(),
            payment_id: "pay_1".into(),
            amount,
            currency: currency(code),
        }
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
        let e = at(
            "2026-11-21T10:15:00Z",
            OrderShipped {
                order_id: "o-1".into(),
                shipment_id: "shp_1".into(),
                carrier: "DHL".into(),
                tracking_number: "JD1".into(),
                customer_email: "ada@example.com".into(),
            },
        );
        assert_eq!(
            plan(&e),
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
    fn a_payment_adds_to_the_revenue_of_its_currency_and_day() {
        let e = at("2026-11-21T23:30:00Z", processed(2500, "EUR"));
        let updates = plan(&e);
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
    fn merging_sums_each_attribute_of_each_counter_item_once() {
        // given a batch's plans: two payments in one hour and currency, a refund of another
        let hour = count_key(&"2026-11-21T10:00:00Z".parse().unwrap(), "PaymentProcessed");
        let eur = revenue_key(&"2026-11-21T10:00:00Z".parse().unwrap(), "EUR");
        let xts = revenue_key(&"2026-11-21T10:00:00Z".parse().unwrap(), "XTS");
        let update = |key: &CounterKey, add: Vec<(&'static str, u128)>| CounterUpdate {
            key: key.clone(),
            add,
        };
        let planned = [
            update(&hour, vec![(COUNT, 1)]),
            update(&eur, vec![(AMOUNT, 100), (ORDERS, 1)]),
            update(&hour, vec![(COUNT, 1)]),
            update(&eur, vec![(AMOUNT, 250), (ORDERS, 1)]),
            update(&xts, vec![(REFUNDED, 40), (REFUNDS, 1)]),
        ];

        // when they are merged
        let merged = merge(&planned);

        // then each item is updated once, in key order, with the sums
        assert_eq!(
            merged,
            vec![
                update(&hour, vec![(COUNT, 2)]),
                update(&eur, vec![(AMOUNT, 350), (ORDERS, 2)]),
                update(&xts, vec![(REFUNDED, 40), (REFUNDS, 1)]),
            ]
        );
    }

    #[test]
    fn merged_amounts_do_not_overflow_at_u64_max() {
        let eur = revenue_key(&"2026-11-21T10:00:00Z".parse().unwrap(), "EUR");
        let max = CounterUpdate {
            key: eur.clone(),
            add: vec![(AMOUNT, u128::from(u64::MAX))],
        };
        assert_eq!(
            merge([&max, &max]),
            vec![CounterUpdate {
                key: eur,
                add: vec![(AMOUNT, 2 * u128::from(u64::MAX))],
            }]
        );
    }

    #[test]
    fn a_refund_is_summed_apart_from_gross_revenue() {
        let e = at(
            "2026-11-22T00:00:01Z",
            PaymentRefunded {
                order_id: "o-1".into(),
                payment_id: "pay_1".into(),
                amount: 700,
                currency: currency("XTS"),
            },
        );
        let updates = plan(&e);
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
}
