//! How a batch of events becomes transactions of at most a given size, as data: no I/O, so
//! every rule is unit-tested here. (The service cuts at [`crate::service::CHUNK_ITEMS`], well
//! below DynamoDB's limit, for the reasons given there.)
//!
//! A transaction holds one marker per event (each conditional on its absence) and one update
//! per distinct counter item, the events' additions summed ([`crate::counters::merge`]).
//! Per event that is 1 + its counters; per batch the counters are shared, so a batch of 100
//! events of one hour takes ~100 + a dozen items instead of 100 transactions.

use crate::counters::{merge, CounterKey, CounterUpdate};
use crate::repository::Marker;

/// At most 100 items per `TransactWriteItems`, 4 MB in all ("TransactWriteItems is a
/// synchronous write operation that groups up to 100 action requests ... The aggregate size
/// of the items in the transaction cannot exceed 4 MB": TransactWriteItems, Amazon DynamoDB
/// API Reference,
/// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html).
/// Only the count can bind: an item here is a key of at most 2 KB (DynamoDB's partition key
/// limit, which an oversized event id hits first) and a few small attributes, so 100 of them
/// stay far below 4 MB.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// One event's share of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counting {
    pub marker: Marker,
    pub updates: Vec<CounterUpdate>,
}

impl Counting {
    pub fn event_id(&self) -> &str {
        &self.marker.event_id
    }
}

/// What one `TransactWriteItems` writes: the markers first (so a cancellation reason's index
/// below `markers.len()` names an event), then one update per counter item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionPlan {
    pub markers: Vec<Marker>,
    pub counters: Vec<CounterUpdate>,
}

impl TransactionPlan {
    /// The transaction of `events`: their markers in order, their counters merged.
    pub fn of(events: &[&Counting]) -> Self {
        TransactionPlan {
            markers: events.iter().map(|e| e.marker.clone()).collect(),
            counters: merge(events.iter().flat_map(|e| &e.updates)),
        }
    }

    /// The number of items (actions) in the transaction.
    pub fn items(&self) -> usize {
        self.markers.len() + self.counters.len()
    }
}

/// `events` in order, cut into chunks whose transaction has at most `max_items` items
/// (markers plus distinct counter items). Greedy: an event joins the current chunk unless its
/// marker and the counter items it adds would overflow it. An event that does not fit even
/// alone gets a chunk of its own (the store refuses it, and only it).
pub fn chunks(events: &[Counting], max_items: usize) -> Vec<Vec<&Counting>> {
    let mut chunks: Vec<Vec<&Counting>> = Vec::new();
    let mut current: Vec<&Counting> = Vec::new();
    let mut counters: Vec<&CounterKey> = Vec::new();
    for event in events {
        let mut added = new_counters(event, &counters);
        if !current.is_empty() && current.len() + 1 + counters.len() + added.len() > max_items {
            chunks.push(std::mem::take(&mut current));
            counters.clear();
            added = new_counters(event, &counters);
        }
        current.push(event);
        counters.extend(added);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// The distinct counter items `event` moves that are not in `present`.
fn new_counters<'a>(event: &'a Counting, present: &[&CounterKey]) -> Vec<&'a CounterKey> {
    let mut added: Vec<&CounterKey> = Vec::new();
    for update in &event.updates {
        if !present.contains(&&update.key) && !added.contains(&&update.key) {
            added.push(&update.key);
        }
    }
    added
}

/// Splits `pending` into the events at `indexes` (whose markers exist: counted before) and
/// the rest, both in order. Indexes out of range (a counter's position) are ignored.
pub fn split_at_indexes<T>(pending: Vec<T>, indexes: &[usize]) -> (Vec<T>, Vec<T>) {
    let mut named = Vec::new();
    let mut rest = Vec::new();
    for (i, event) in pending.into_iter().enumerate() {
        if indexes.contains(&i) {
            named.push(event);
        } else {
            rest.push(event);
        }
    }
    (named, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{count_key, revenue_key, AMOUNT, COUNT, ORDERS};

    fn counting(id: &str, updates: Vec<CounterUpdate>) -> Counting {
        Counting {
            marker: Marker {
                source: "orderflow.orders",
                event_id: id.into(),
                detail_type: "OrderPlaced",
                digest: "d".into(),
                counted_at: "2026-11-21T10:00:00Z".parse().unwrap(),
            },
            updates,
        }
    }

    /// An event that moves the count of `detail_type` in hour `hour` (0-23).
    fn counted(id: &str, hour: u32, detail_type: &str) -> Counting {
        let at = format!("2026-11-21T{hour:02}:00:00Z").parse().unwrap();
        counting(
            id,
            vec![CounterUpdate {
                key: count_key(&at, detail_type),
                add: vec![(COUNT, 1)],
            }],
        )
    }

    fn ids(chunks: &[Vec<&Counting>]) -> Vec<Vec<String>> {
        chunks
            .iter()
            .map(|c| c.iter().map(|e| e.event_id().to_string()).collect())
            .collect()
    }

    #[test]
    fn a_batch_is_one_transaction_with_a_marker_per_event_and_each_counter_once() {
        // given three events of one type in one hour, one of them a payment
        let at = "2026-11-21T10:00:00Z".parse().unwrap();
        let mut payment = counted("e-3", 10, "OrderPlaced");
        payment.updates.push(CounterUpdate {
            key: revenue_key(&at, "EUR"),
            add: vec![(AMOUNT, 1250), (ORDERS, 1)],
        });
        let events = [
            counted("e-1", 10, "OrderPlaced"),
            counted("e-2", 10, "OrderPlaced"),
            payment,
        ];

        // when the batch is planned
        let chunks = chunks(&events, MAX_TRANSACTION_ITEMS);
        let plan = TransactionPlan::of(&chunks[0]);

        // then it is one transaction of 3 markers and 2 counter updates
        assert_eq!(ids(&chunks), vec![vec!["e-1", "e-2", "e-3"]]);
        assert_eq!(
            plan,
            TransactionPlan {
                markers: events.iter().map(|e| e.marker.clone()).collect(),
                counters: vec![
                    CounterUpdate {
                        key: count_key(&at, "OrderPlaced"),
                        add: vec![(COUNT, 3)],
                    },
                    CounterUpdate {
                        key: revenue_key(&at, "EUR"),
                        add: vec![(AMOUNT, 1250), (ORDERS, 1)],
                    },
                ],
            }
        );
        assert_eq!(plan.items(), 5);
    }

    #[test]
    fn a_batch_over_the_item_limit_is_cut_into_chunks_that_fit() {
        // given 150 events of one counter: 150 markers + 1 counter
        let events: Vec<Counting> = (0..150)
            .map(|i| counted(&format!("e-{i}"), 10, "OrderPlaced"))
            .collect();

        // when the batch is planned with DynamoDB's limit
        let chunks = chunks(&events, MAX_TRANSACTION_ITEMS);

        // then the first chunk is 99 markers + the counter, the rest the second
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![99, 51]);
        let items: Vec<usize> = chunks
            .iter()
            .map(|c| TransactionPlan::of(c).items())
            .collect();
        assert_eq!(items, vec![100, 52]);
        let in_order: Vec<String> = chunks
            .concat()
            .iter()
            .map(|e| e.event_id().into())
            .collect();
        let expected: Vec<String> = (0..150).map(|i| format!("e-{i}")).collect();
        assert_eq!(in_order, expected);
    }

    #[test]
    fn distinct_counters_count_against_the_limit() {
        // given events of a different hour each: 2 items apiece
        let events: Vec<Counting> = (0..5)
            .map(|i| counted(&format!("e-{i}"), i, "OrderPlaced"))
            .collect();

        // when the limit is 5 items
        let chunks = chunks(&events, 5);

        // then two events (4 items) per chunk: a third would make 6
        assert_eq!(
            ids(&chunks),
            vec![vec!["e-0", "e-1"], vec!["e-2", "e-3"], vec!["e-4"]]
        );
        assert!(chunks.iter().all(|c| TransactionPlan::of(c).items() <= 5));
    }

    #[test]
    fn an_event_that_adds_no_new_counter_still_needs_room_for_its_marker() {
        let events: Vec<Counting> = (0..4)
            .map(|i| counted(&format!("e-{i}"), 10, "OrderPlaced"))
            .collect();
        assert_eq!(
            ids(&chunks(&events, 3)),
            vec![vec!["e-0", "e-1"], vec!["e-2", "e-3"]]
        );
    }

    #[test]
    fn an_event_too_big_for_the_limit_is_alone() {
        let events = [counted("e-1", 10, "A"), counted("e-2", 11, "B")];
        assert_eq!(ids(&chunks(&events, 1)), vec![vec!["e-1"], vec!["e-2"]]);
    }

    #[test]
    fn no_events_no_chunks() {
        assert_eq!(chunks(&[], MAX_TRANSACTION_ITEMS).len(), 0);
    }

    #[test]
    fn the_named_indexes_are_split_from_the_rest_in_order() {
        assert_eq!(
            split_at_indexes(vec!["a", "b", "c", "d"], &[3, 1, 7]),
            (vec!["b", "d"], vec!["a", "c"])
        );
        assert_eq!(
            split_at_indexes(vec!["a"], &[]),
            (Vec::<&str>::new(), vec!["a"])
        );
    }
}
