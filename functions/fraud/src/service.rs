//! Handles a batch of `OrderPlaced` events for the fraud function, as a whole.
//!
//! Per customer of the batch: record every order of the batch, then read the customer's
//! orders around them with one strongly consistent query, then judge each order of the
//! batch, oldest first ([`crate::window::assess`]): `FraudCleared` for an order in no
//! qualifying window, `FraudSuspected` for every order of a qualifying window that is not
//! suspected yet. All of the customer's verdicts go out in one publish.
//!
//! # Why each order is suspected once, and no pattern is missed
//!
//! - *No pattern is missed by racing invocations.* Each invocation writes its orders before
//!   it reads, and reads strongly consistently. Of two invocations with orders of one
//!   pattern, the one whose writes finished last reads after both writes, so it sees every
//!   order and finds the pattern. (The other may find it too, from what it saw.)
//! - *Each order is flagged once.* Flagging is a conditional update of the order's item
//!   (`suspectedBy` absent, or already this suspicion's id), so of invocations that found
//!   the same pattern only the first flags a given order and publishes its suspicion; the
//!   others get [`Flagging::AlreadyFlagged`] and publish nothing for it.
//! - *A retry republishes the same events.* A suspicion's id is derived from the order whose
//!   check found it and the order it is about, a clearance's from the order it clears.
//!   When publishing fails, every event of the customer fails transiently; the redelivered
//!   batch records nothing new (each put is first-writer-wins), finds the same qualifying
//!   windows (stored orders are only ever added), flags the same orders with the same ids
//!   (the condition lets the same id through) and publishes events with the same ids,
//!   which consumers deduplicate. An order flagged by any other suspicion counts as
//!   suspected, so neither a retry nor a later check flags it a second time.
//!
//! So every flagged order has exactly one `FraudSuspected` event id, published at least
//! once, and every cleared order one `FraudCleared` id. A cleared order may still be
//! suspected later, when a later order completes a pattern it belongs to; an order of the
//! batch that is flagged is never also cleared.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{Datelike, Duration};
use contracts::{
    Event, EventData, FraudCleared, FraudPattern, FraudRule, FraudSuspected, OrderPlaced,
};
use eventkit::envelope::derived_event_id;
use eventkit::{
    BatchResults, DecodeError, Envelope, EventMetadata, FirstWrite, Handled, HandlerError,
    Invocation, Publish, Publisher,
};
use tracing::Instrument;

use crate::config::{rule_from_env, ConfigError};
use crate::repository::{DynamoFraudWindows, Flagging, FraudWindows, OrderRecord};
use crate::window::{assess, Assessment, Sighting};

/// `FraudSuspected.reason` for this rule.
pub const REASON: &str = "velocity-locations";
/// `FraudSuspected.score` for this rule.
pub const SCORE: u8 = 90;

pub struct FraudService {
    windows: Arc<dyn FraudWindows>,
    bus: Arc<dyn Publish<Event>>,
    rule: FraudRule,
}

impl FraudService {
    /// Reads `FRAUD_TABLE`, `EVENT_BUS_NAME` and the thresholds (`FRAUD_MIN_ORDERS`,
    /// `FRAUD_WINDOW_SECONDS`, `FRAUD_MIN_LOCATIONS`; see [`crate::config`]).
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        use eventkit::aws::required_env;
        let rule = rule_from_env()?;
        tracing::info!(
            min_orders = rule.min_orders,
            window_seconds = rule.window_seconds,
            min_locations = rule.min_locations,
            "fraud rule"
        );
        Ok(FraudService::new(
            Arc::new(DynamoFraudWindows::new(
                aws_sdk_dynamodb::Client::new(aws),
                required_env("FRAUD_TABLE").map_err(ConfigError::Missing)?,
            )),
            Arc::new(Publisher::new(
                aws_sdk_eventbridge::Client::new(aws),
                required_env("EVENT_BUS_NAME").map_err(ConfigError::Missing)?,
            )),
            rule,
        ))
    }

    pub fn new(
        windows: Arc<dyn FraudWindows>,
        bus: Arc<dyn Publish<Event>>,
        rule: FraudRule,
    ) -> Self {
        FraudService { windows, bus, rule }
    }

    pub fn rule(&self) -> FraudRule {
        self.rule
    }

    /// Judges the batch's orders, customer by customer, and answers for every event: all of
    /// a customer's events succeed or fail together, since its verdicts are published
    /// together. Anything but `OrderPlaced` is misrouted and fails permanently.
    pub async fn handle_batch(
        &self,
        events: Vec<Envelope<Event>>,
        invocation: Invocation,
    ) -> BatchResults {
        let mut results = BatchResults::new();
        let mut customers: BTreeMap<String, Vec<Placed>> = BTreeMap::new();
        for event in events {
            let Envelope { metadata, data, .. } = event;
            match data {
                Event::OrderPlaced(order) => match record_of(&metadata, &order) {
                    Ok(record) => customers
                        .entry(order.customer_id)
                        .or_default()
                        .push(Placed {
                            cause: metadata,
                            record,
                        }),
                    Err(e) => results.push((metadata.event_id, Err(e))),
                },
                other => results.push((
                    metadata.event_id,
                    Err(DecodeError::not_routed(&other).into()),
                )),
            }
        }
        let span = tracing::info_span!("fraud_batch", request_id = %invocation.request_id);
        let judged = futures::future::join_all(
            customers
                .into_iter()
                .map(|(customer_id, orders)| self.judge_customer(customer_id, orders)),
        )
        .instrument(span)
        .await;
        results.extend(judged.into_iter().flatten());
        results
    }

    /// One customer's orders, with one result per event.
    async fn judge_customer(&self, customer_id: String, mut orders: Vec<Placed>) -> BatchResults {
        orders.sort_by(|a, b| a.record.at.cmp(&b.record.at));
        let outcome = self.judge(&customer_id, &orders).await;
        if let Err(e) = &outcome {
            let correlation_ids: Vec<&str> = orders
                .iter()
                .map(|o| o.cause.correlation_id.as_str())
                .collect();
            tracing::warn!(customer_id, ?correlation_ids, reason = %e.reason, error = %e.message,
                permanent = e.is_permanent(), "the customer's orders were not judged");
        }
        orders
            .into_iter()
            .map(|o| {
                let result = outcome.clone().map(|()| Handled::Processed);
                (o.cause.event_id, result)
            })
            .collect()
    }

    /// Records, reads, judges, flags and publishes; `orders` oldest first.
    async fn judge(&self, customer_id: &str, orders: &[Placed]) -> Result<(), HandlerError> {
        let (Some(first), Some(last)) = (orders.first(), orders.last()) else {
            return Ok(());
        };
        for order in orders {
            if let FirstWrite::Existing(stored) = self.windows.record(&order.record).await? {
                tracing::info!(order_id = %stored.order_id, event_id = %order.cause.event_id,
                    correlation_id = %order.cause.correlation_id, stored_event_id = %stored.event_id,
                    "order already recorded; judging it again");
            }
        }
        let width = Duration::seconds(i64::from(self.rule.window_seconds));
        let stored = self
            .windows
            .window(
                customer_id,
                first.record.occurred_at - width,
                last.record.occurred_at + width,
            )
            .await?;

        let mut events = Vec::new();
        for verdict in verdicts(&self.rule, customer_id, orders, &stored) {
            match verdict {
                Verdict::Cleared {
                    mut event,
                    at,
                    cleared,
                } => {
                    let recorded = self.windows.clear(customer_id, &at, &cleared).await?;
                    if recorded != cleared {
                        tracing::info!(correlation_id = %event.metadata.correlation_id,
                            order_id = %cleared.order_id, "cleared before: announcing that \
                            clearance again, not this judgment");
                    }
                    tracing::info!(correlation_id = %event.metadata.correlation_id,
                        order_id = %recorded.order_id, customer_id,
                        orders_in_window = recorded.orders_in_window,
                        locations_in_window = recorded.locations_in_window, "order cleared");
                    event.data = Event::FraudCleared(recorded);
                    events.push(event);
                }
                Verdict::Suspected { at, event, pattern } => {
                    let order_id = event.data.order_id().unwrap_or_default().to_string();
                    let correlation_id = event.metadata.correlation_id.clone();
                    match self
                        .windows
                        .flag(customer_id, &at, &event.metadata.event_id)
                        .await?
                    {
                        Flagging::Flagged => {
                            tracing::warn!(correlation_id, order_id, customer_id,
                                found_by = %pattern.found_by_order_id,
                                orders_in_window = pattern.order_ids.len(),
                                locations = ?pattern.locations, "order suspected of fraud");
                            events.push(event);
                        }
                        Flagging::AlreadyFlagged => {
                            tracing::info!(
                                correlation_id,
                                order_id,
                                customer_id,
                                "order already suspected by another check"
                            );
                        }
                    }
                }
            }
        }
        if !events.is_empty() {
            self.bus.publish(&events).await?;
        }
        Ok(())
    }
}

/// One `OrderPlaced` of the batch, as it will be stored.
struct Placed {
    cause: EventMetadata,
    record: OrderRecord,
}

/// The record of an order, or why it cannot have one.
fn record_of(cause: &EventMetadata, order: &OrderPlaced) -> Result<OrderRecord, HandlerError> {
    // The sort key orders times as text, which holds for four-digit years only.
    let year = cause.occurred_at.year();
    if !(0..=9999).contains(&year) {
        return Err(HandlerError::permanent(
            "occurred-at-out-of-range",
            format!(
                "occurredAt {} is outside the years 0000 to 9999",
                cause.occurred_at
            ),
        ));
    }
    Ok(OrderRecord::new(
        &order.customer_id,
        &order.order_id,
        cause.occurred_at,
        order.shipping_address.as_ref().map(|a| a.location()),
        &cause.event_id,
        &cause.correlation_id,
        chrono::Utc::now(),
    ))
}

/// What the check of the batch's orders leads to, before flagging.
enum Verdict {
    Cleared {
        event: Envelope<Event>,
        /// The sort key of the cleared order's item.
        at: String,
        cleared: FraudCleared,
    },
    /// The stored order `at` is to be flagged with `event`'s id.
    Suspected {
        at: String,
        event: Envelope<Event>,
        pattern: FraudPattern,
    },
}

/// Judges each of `orders` (oldest first) against the customer's `stored` orders, which
/// include them. Pure: the same batch and the same stored orders give the same verdicts,
/// with the same event ids.
fn verdicts(
    rule: &FraudRule,
    customer_id: &str,
    orders: &[Placed],
    stored: &[OrderRecord],
) -> Vec<Verdict> {
    // The stored items come first: when an order has copies, the earliest stored one is the
    // one flagged, and its correlation id the one the suspicion carries.
    let mut records: Vec<&OrderRecord> = stored.iter().collect();
    for order in orders {
        if !records.iter().any(|r| r.at == order.record.at) {
            records.push(&order.record);
        }
    }
    records.sort_by(|a, b| a.at.cmp(&b.at));
    let mut earliest: HashMap<&str, &OrderRecord> = HashMap::new();
    for record in &records {
        earliest.entry(record.order_id.as_str()).or_insert(record);
    }

    let mut flagged_here: HashSet<String> = HashSet::new();
    let mut cleared = Vec::new();
    let mut suspected = Vec::new();
    for order in orders {
        // An order flagged by this very suspicion before (a redelivery) is flagged again,
        // so that its event is published again; one flagged by anything else is not.
        let sighting = |record: &OrderRecord| Sighting {
            order_id: record.order_id.clone(),
            at: record.occurred_at,
            location: record.location(),
            suspected: flagged_here.contains(&record.order_id)
                || record
                    .suspected_by
                    .as_deref()
                    .is_some_and(|by| by != suspicion_id(&order.cause, &record.order_id)),
        };
        let known: Vec<Sighting> = records.iter().map(|r| sighting(r)).collect();
        let checked = sighting(&order.record);
        match assess(rule, &checked, &known) {
            Assessment::Cleared {
                orders_in_window,
                locations_in_window,
            } => {
                let data = FraudCleared {
                    order_id: order.record.order_id.clone(),
                    customer_id: customer_id.to_string(),
                    rule: *rule,
                    orders_in_window,
                    locations_in_window,
                };
                cleared.push(Verdict::Cleared {
                    at: order.record.at.clone(),
                    event: Envelope::caused_by(
                        &order.cause,
                        &order.record.order_id,
                        Event::FraudCleared(data.clone()),
                    ),
                    cleared: data,
                });
            }
            Assessment::Suspected { flags } => {
                for flag in flags {
                    let Some(target) = earliest.get(flag.order_id.as_str()) else {
                        continue;
                    };
                    flagged_here.insert(flag.order_id.clone());
                    let pattern = flag
                        .window
                        .pattern(customer_id, *rule, &order.record.order_id);
                    suspected.push(Verdict::Suspected {
                        at: target.at.clone(),
                        event: suspicion(&order.cause, target, pattern.clone()),
                        pattern,
                    });
                }
            }
        }
    }
    // An order of the batch that a later check flags is not also cleared.
    cleared.retain(|v| match v {
        Verdict::Cleared { cleared, .. } => !flagged_here.contains(&cleared.order_id),
        Verdict::Suspected { .. } => true,
    });
    cleared.into_iter().chain(suspected).collect()
}

/// The id of the suspicion that the order `cause` found raises about `order_id`: the id of
/// [`suspicion`]'s event, and what the flagged item's `suspectedBy` holds.
fn suspicion_id(cause: &EventMetadata, order_id: &str) -> String {
    derived_event_id(&cause.event_id, FraudSuspected::DETAIL_TYPE, order_id)
}

/// `FraudSuspected` about `target`, caused by the order whose check found `pattern`.
fn suspicion(
    cause: &EventMetadata,
    target: &OrderRecord,
    pattern: FraudPattern,
) -> Envelope<Event> {
    let mut event = Envelope::caused_by(
        cause,
        &target.order_id,
        Event::FraudSuspected(FraudSuspected {
            order_id: target.order_id.clone(),
            reason: REASON.into(),
            score: SCORE,
            pattern: Some(pattern),
        }),
    );
    // The saga follows the suspected order's conversation, so the suspicion joins that
    // order's trace; its causation id still names the order that found the pattern.
    event.metadata.correlation_id = target.correlation_id.clone();
    event
}

#[cfg(test)]
mod tests {
    //! The handler through in-memory adapters of its ports: the fraud table with the
    //! DynamoDB adapter's conditions and a bus that fails on demand.
    use super::*;
    use crate::config::DEFAULT_RULE;
    use crate::repository::MemoryFraudWindows;
    use async_trait::async_trait;
    use aws_lambda_events::event::sqs::SqsEvent;
    use chrono::{DateTime, Utc};
    use contracts::{
        sources, Country, Currency, Location, OrderLine, PaymentProcessed, RawEvent,
        ShippingAddress,
    };
    use eventkit::testing::{invocation, MemoryBus};
    use eventkit::{BatchProcessor, DynamoError, MessageOutcome};
    use serde_json::json;

    const RULE: FraudRule = DEFAULT_RULE;

    struct World {
        windows: Arc<MemoryFraudWindows>,
        bus: Arc<MemoryBus<Event>>,
        service: FraudService,
    }

    fn world() -> World {
        let windows = Arc::new(MemoryFraudWindows::default());
        let bus = MemoryBus::new();
        let service = FraudService::new(windows.clone(), bus.clone(), RULE);
        World {
            windows,
            bus,
            service,
        }
    }

    impl World {
        async fn deliver(&self, batch: &[Envelope<Event>]) -> Vec<(String, Outcome)> {
            outcomes(
                self.service
                    .handle_batch(batch.to_vec(), invocation())
                    .await,
            )
        }

        /// The suspicions published so far, in order.
        fn suspicions(&self) -> Vec<Envelope<Event>> {
            self.bus
                .published()
                .into_iter()
                .filter(|e| matches!(e.data, Event::FraudSuspected(_)))
                .collect()
        }

        fn clearances(&self) -> Vec<FraudCleared> {
            self.bus
                .events()
                .into_iter()
                .filter_map(|e| match e {
                    Event::FraudCleared(c) => Some(c),
                    _ => None,
                })
                .collect()
        }

        /// `suspectedBy` of each stored order, by order id.
        fn suspected_by(&self) -> BTreeMap<String, Option<String>> {
            self.windows
                .orders()
                .into_iter()
                .map(|o| (o.order_id, o.suspected_by))
                .collect()
        }
    }

    /// A handler's answer, comparable: `Err` holds the kind and reason.
    type Outcome = Result<Handled, (bool, String)>;

    fn outcomes(results: BatchResults) -> Vec<(String, Outcome)> {
        let mut out: Vec<(String, Outcome)> = results
            .into_iter()
            .map(|(id, r)| (id, r.map_err(|e| (e.is_permanent(), e.reason))))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn all(batch: &[Envelope<Event>], outcome: Outcome) -> Vec<(String, Outcome)> {
        let mut out: Vec<(String, Outcome)> = batch
            .iter()
            .map(|e| (e.metadata.event_id.clone(), outcome.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        let base: DateTime<Utc> = "2026-11-21T10:00:00Z".parse().unwrap();
        base + Duration::seconds(seconds)
    }

    fn country(code: &str) -> Country {
        Country::try_from(code.to_string()).unwrap()
    }

    fn paris() -> Location {
        Location::new(country("FR"), "Paris")
    }

    fn berlin() -> Location {
        Location::new(country("DE"), "Berlin")
    }

    fn order_for(
        customer_id: &str,
        order_id: &str,
        seconds: i64,
        ships_to: Option<Location>,
    ) -> Envelope<Event> {
        let mut event = Envelope::new(Event::OrderPlaced(OrderPlaced {
            order_id: order_id.into(),
            customer_id: customer_id.into(),
            customer_email: "ada@example.com".into(),
            currency: Currency::try_from("EUR".to_string()).unwrap(),
            lines: vec![OrderLine {
                sku: "MUG".into(),
                quantity: 1,
                unit_price: 1250,
            }],
            total: 1250,
            payment_token: "tok_visa".into(),
            shipping_address: ships_to.map(|l| ShippingAddress {
                line1: "1 Main Street".into(),
                city: l.city,
                postal_code: "10001".into(),
                country: l.country,
            }),
        }));
        event.metadata.occurred_at = at(seconds);
        event
    }

    fn order(order_id: &str, seconds: i64, ships_to: Option<Location>) -> Envelope<Event> {
        order_for("cus-1", order_id, seconds, ships_to)
    }

    /// Five orders of one customer within 40 s, alternating Paris and Berlin.
    fn burst() -> Vec<Envelope<Event>> {
        (0..5)
            .map(|i| {
                let city = if i % 2 == 0 { paris() } else { berlin() };
                order(&format!("ord-{}", i + 1), i * 10, Some(city))
            })
            .collect()
    }

    fn order_ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("ord-{i}")).collect()
    }

    /// The suspicion of each order of `burst`, found by the check of `found_by`.
    fn burst_suspicions(burst: &[Envelope<Event>], found_by: usize) -> Vec<FraudSuspected> {
        let pattern = FraudPattern {
            customer_id: "cus-1".into(),
            rule: RULE,
            window_start: at(0),
            window_end: at(40),
            order_ids: order_ids(5),
            locations: vec![berlin(), paris()],
            found_by_order_id: format!("ord-{}", found_by + 1),
        };
        order_ids(burst.len())
            .into_iter()
            .map(|order_id| FraudSuspected {
                order_id,
                reason: "velocity-locations".into(),
                score: 90,
                pattern: Some(pattern.clone()),
            })
            .collect()
    }

    fn suspected_data(events: &[Envelope<Event>]) -> Vec<FraudSuspected> {
        events
            .iter()
            .filter_map(|e| match &e.data {
                Event::FraudSuspected(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    fn ids(events: &[Envelope<Event>]) -> Vec<String> {
        events.iter().map(|e| e.metadata.event_id.clone()).collect()
    }

    /// The id of the suspicion about `burst[about]` found by `burst[found_by]`.
    fn suspicion_of(burst: &[Envelope<Event>], found_by: usize, about: usize) -> String {
        derived_event_id(
            &burst[found_by].metadata.event_id,
            "FraudSuspected",
            &format!("ord-{}", about + 1),
        )
    }

    #[tokio::test]
    async fn a_burst_in_one_batch_suspects_every_order_of_it() {
        let w = world();
        let burst = burst();

        let results = w.deliver(&burst).await;

        assert_eq!(results, all(&burst, Ok(Handled::Processed)));
        // The oldest order is checked first and already sees the whole burst.
        let suspicions = w.suspicions();
        assert_eq!(suspected_data(&suspicions), burst_suspicions(&burst, 0));
        assert_eq!(w.clearances(), vec![]);
        for (i, event) in suspicions.iter().enumerate() {
            assert_eq!(event.source, sources::FRAUD);
            assert_eq!(event.metadata.event_id, suspicion_of(&burst, 0, i));
            assert_eq!(
                event.metadata.causation_id.as_deref(),
                Some(burst[0].metadata.event_id.as_str())
            );
            // Each suspicion joins the trace of the order it is about.
            assert_eq!(
                event.metadata.correlation_id,
                burst[i].metadata.correlation_id
            );
        }
        let flagged: BTreeMap<String, Option<String>> = order_ids(5)
            .into_iter()
            .zip(ids(&suspicions).into_iter().map(Some))
            .collect();
        assert_eq!(w.suspected_by(), flagged);
    }

    #[tokio::test]
    async fn a_burst_arriving_one_by_one_is_cleared_until_its_last_order_completes_it() {
        let w = world();
        let burst = burst();

        for event in &burst {
            let results = w.deliver(std::slice::from_ref(event)).await;
            assert_eq!(
                results,
                all(std::slice::from_ref(event), Ok(Handled::Processed))
            );
        }

        let cleared = |n: u32, locations: u32| FraudCleared {
            order_id: format!("ord-{n}"),
            customer_id: "cus-1".into(),
            rule: RULE,
            orders_in_window: n,
            locations_in_window: locations,
        };
        assert_eq!(
            w.clearances(),
            vec![cleared(1, 1), cleared(2, 2), cleared(3, 2), cleared(4, 2)]
        );
        let published = w.bus.published();
        for (i, event) in published[..4].iter().enumerate() {
            assert_eq!(
                event.metadata.event_id,
                derived_event_id(
                    &burst[i].metadata.event_id,
                    "FraudCleared",
                    &format!("ord-{}", i + 1)
                )
            );
            assert_eq!(
                event.metadata.correlation_id,
                burst[i].metadata.correlation_id
            );
        }
        let suspicions = w.suspicions();
        assert_eq!(suspected_data(&suspicions), burst_suspicions(&burst, 4));
        assert_eq!(
            ids(&suspicions),
            (0..5)
                .map(|i| suspicion_of(&burst, 4, i))
                .collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_redelivered_batch_republishes_the_same_events_and_flags_nothing_new() {
        let w = world();
        let burst = burst();
        w.deliver(&burst).await;
        let first = w.bus.published();
        let stored = w.windows.orders();
        w.bus.clear();

        let results = w.deliver(&burst).await;

        assert_eq!(results, all(&burst, Ok(Handled::Processed)));
        assert_eq!(ids(&w.bus.published()), ids(&first));
        assert_eq!(w.windows.orders(), stored);
    }

    #[tokio::test]
    async fn orders_judged_again_in_another_batch_are_not_suspected_again() {
        let w = world();
        let burst = burst();
        w.deliver(&burst).await;
        w.bus.clear();

        // The same orders sent again by the storefront (new event ids, same times).
        let again: Vec<Envelope<Event>> = burst
            .iter()
            .map(|e| {
                let mut copy = Envelope::new(e.data.clone());
                copy.metadata.occurred_at = e.metadata.occurred_at;
                copy
            })
            .collect();
        let results = w.deliver(&again).await;

        assert_eq!(results, all(&again, Ok(Handled::Processed)));
        assert_eq!(w.bus.published(), vec![]);
    }

    /// The fraud table, shared by racing handlers that all record before any of them reads:
    /// the interleaving in which each sees every order and finds the pattern.
    struct Racing {
        table: Arc<MemoryFraudWindows>,
        all_recorded: Arc<tokio::sync::Barrier>,
    }

    #[async_trait]
    impl FraudWindows for Racing {
        async fn record(
            &self,
            order: &OrderRecord,
        ) -> Result<FirstWrite<OrderRecord>, DynamoError> {
            self.table.record(order).await
        }

        async fn window(
            &self,
            customer_id: &str,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
        ) -> Result<Vec<OrderRecord>, DynamoError> {
            self.all_recorded.wait().await;
            self.table.window(customer_id, from, to).await
        }

        async fn flag(
            &self,
            customer_id: &str,
            at: &str,
            suspicion_event_id: &str,
        ) -> Result<Flagging, DynamoError> {
            tokio::task::yield_now().await;
            self.table.flag(customer_id, at, suspicion_event_id).await
        }

        async fn clear(
            &self,
            customer_id: &str,
            at: &str,
            cleared: &FraudCleared,
        ) -> Result<FraudCleared, DynamoError> {
            self.table.clear(customer_id, at, cleared).await
        }
    }

    #[tokio::test]
    async fn handlers_racing_on_one_customer_suspect_each_order_once() {
        let table = Arc::new(MemoryFraudWindows::default());
        let all_recorded = Arc::new(tokio::sync::Barrier::new(2));
        let bus = MemoryBus::new();
        let handler = || {
            FraudService::new(
                Arc::new(Racing {
                    table: table.clone(),
                    all_recorded: all_recorded.clone(),
                }),
                bus.clone(),
                RULE,
            )
        };
        let (a, b) = (handler(), handler());
        let burst = burst();

        let (from_a, from_b) = tokio::join!(
            a.handle_batch(burst[..3].to_vec(), invocation()),
            b.handle_batch(burst[3..].to_vec(), invocation()),
        );

        assert_eq!(outcomes(from_a), all(&burst[..3], Ok(Handled::Processed)));
        assert_eq!(outcomes(from_b), all(&burst[3..], Ok(Handled::Processed)));
        let mut suspected: Vec<(String, String)> = bus
            .published()
            .into_iter()
            .filter_map(|e| match e.data {
                Event::FraudSuspected(s) => Some((s.order_id, e.metadata.event_id)),
                _ => None,
            })
            .collect();
        suspected.sort();
        let suspected_orders: Vec<&str> = suspected.iter().map(|(o, _)| o.as_str()).collect();
        assert_eq!(suspected_orders, order_ids(5));
        assert!(bus
            .events()
            .iter()
            .all(|e| !matches!(e, Event::FraudCleared(_))));
        // What is stored is what was published: one suspicion per order.
        let stored: Vec<(String, String)> = table
            .orders()
            .into_iter()
            .filter_map(|o| Some((o.order_id, o.suspected_by?)))
            .collect();
        assert_eq!(stored, suspected);
    }

    #[tokio::test]
    async fn a_failed_publish_fails_the_customers_events_and_the_retry_publishes_the_same_ids() {
        let w = world();
        let burst = burst();
        let other = order_for("cus-2", "ord-9", 0, Some(paris()));
        let mut batch = burst.clone();
        batch.push(other.clone());
        // The customers publish in turn; cus-1's publish is the one that fails.
        w.bus.fail_next(1);

        let results = w.deliver(&batch).await;

        let mut expected = all(&burst, Err((false, "publish-failed".into())));
        expected.extend(all(std::slice::from_ref(&other), Ok(Handled::Processed)));
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(results, expected);
        assert_eq!(w.suspicions(), vec![]);

        let retried = w.deliver(&burst).await;

        assert_eq!(retried, all(&burst, Ok(Handled::Processed)));
        assert_eq!(
            ids(&w.suspicions()),
            (0..5)
                .map(|i| suspicion_of(&burst, 0, i))
                .collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_store_failure_fails_only_that_customers_events() {
        let w = world();
        let mine = burst();
        let other = order_for("cus-2", "ord-9", 0, Some(paris()));
        let mut batch = mine.clone();
        batch.push(other.clone());
        // cus-1 comes first: its first write fails.
        w.windows
            .fail_next(vec![DynamoError::Unavailable("throttled".into())]);

        let results = w.deliver(&batch).await;

        let mut expected = all(&mine, Err((false, "dynamodb".into())));
        expected.extend(all(std::slice::from_ref(&other), Ok(Handled::Processed)));
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(results, expected);
    }

    #[tokio::test]
    async fn a_request_dynamodb_rejects_fails_for_good() {
        let w = world();
        let event = order("ord-1", 0, Some(paris()));
        w.windows.fail_next(vec![DynamoError::Rejected(
            "ValidationException: item too large".into(),
        )]);

        let results = w.deliver(std::slice::from_ref(&event)).await;

        assert_eq!(
            results,
            all(
                std::slice::from_ref(&event),
                Err((true, "dynamodb-rejected".into()))
            )
        );
        assert_eq!(w.bus.published(), vec![]);
    }

    #[tokio::test]
    async fn a_version_1_order_is_recorded_with_an_unknown_location() {
        let w = world();
        let event = order("ord-1", 0, None);

        let before = chrono::Utc::now();
        w.deliver(std::slice::from_ref(&event)).await;

        // the expiry counts from when the record was written, not from the order's time
        let orders = w.windows.orders();
        let expires_at = orders[0].expires_at;
        assert!(
            ((before + Duration::days(1)).timestamp()
                ..=(chrono::Utc::now() + Duration::days(1)).timestamp())
                .contains(&expires_at),
            "{expires_at}"
        );
        assert_eq!(
            orders,
            vec![OrderRecord {
                customer_id: "cus-1".into(),
                at: "2026-11-21T10:00:00.000Z#ord-1".into(),
                order_id: "ord-1".into(),
                occurred_at: at(0),
                country: None,
                city: None,
                event_id: event.metadata.event_id.clone(),
                correlation_id: event.metadata.correlation_id.clone(),
                expires_at,
                suspected_by: None,
                clearance: Some(serde_json::to_string(&w.clearances()[0]).unwrap()),
            }]
        );
        assert_eq!(
            w.clearances(),
            vec![FraudCleared {
                order_id: "ord-1".into(),
                customer_id: "cus-1".into(),
                rule: RULE,
                orders_in_window: 1,
                locations_in_window: 0,
            }]
        );
    }

    #[tokio::test]
    async fn an_event_not_routed_here_fails_for_good_and_the_rest_is_judged() {
        let w = world();
        let payment = Envelope::new(Event::PaymentProcessed(PaymentProcessed {
            order_id: "ord-1".into(),
            payment_id: "pay_1".into(),
            amount: 1250,
            currency: Currency::try_from("EUR".to_string()).unwrap(),
        }));
        let event = order("ord-1", 0, Some(paris()));

        let results = w.deliver(&[payment.clone(), event.clone()]).await;

        let mut expected = all(
            std::slice::from_ref(&payment),
            Err((true, "not-routed".into())),
        );
        expected.extend(all(std::slice::from_ref(&event), Ok(Handled::Processed)));
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(results, expected);
        assert_eq!(w.clearances().len(), 1);
    }

    #[tokio::test]
    async fn an_order_time_the_sort_key_cannot_order_fails_for_good() {
        let w = world();
        let mut event = order("ord-1", 0, Some(paris()));
        event.metadata.occurred_at = "+10000-01-01T00:00:00Z".parse().unwrap();

        let results = w.deliver(std::slice::from_ref(&event)).await;

        assert_eq!(
            results,
            all(
                std::slice::from_ref(&event),
                Err((true, "occurred-at-out-of-range".into()))
            )
        );
        assert_eq!(w.windows.orders(), vec![]);
    }

    /// An SQS batch carrying `events` as EventBridge delivers them, message `m<i>` each.
    fn sqs(events: &[RawEvent]) -> SqsEvent {
        let records: Vec<serde_json::Value> = events
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                let body = json!({
                    "version": "0", "id": format!("eb-{i}"), "source": raw.source,
                    "detail-type": raw.detail_type, "time": raw.metadata.occurred_at,
                    "detail": raw.detail(),
                });
                json!({
                    "messageId": format!("m{i}"), "receiptHandle": "r", "body": body.to_string(),
                    "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:fraud",
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }

    async fn process(w: &World, events: &[RawEvent]) -> Vec<(String, MessageOutcome)> {
        let mut report = eventkit::lambda::process_whole_batch(
            &BatchProcessor::new(),
            crate::ROUTES,
            sqs(events),
            &invocation(),
            |events| w.service.handle_batch(events, invocation()),
        )
        .await
        .outcomes;
        report.sort_by(|a, b| a.0.cmp(&b.0));
        report
    }

    #[tokio::test]
    async fn an_order_judged_again_later_is_announced_as_it_was_first_cleared() {
        // given an order cleared alone, then another order of the customer in its window
        let w = world();
        let first = order("ord-1", 0, Some(paris()));
        w.service
            .handle_batch(vec![first.clone()], invocation())
            .await;
        w.service
            .handle_batch(vec![order("ord-2", 10, Some(paris()))], invocation())
            .await;

        // when the first order comes again (a redelivery, a replay)
        w.bus.clear();
        w.service
            .handle_batch(vec![first.clone()], invocation())
            .await;

        // then its clearance goes out with the content it first had under its one id (the
        // window now holds two orders; the saga refuses other content under a stored id)
        let again = w.bus.published();
        assert_eq!(again.len(), 1);
        let Event::FraudCleared(cleared) = &again[0].data else {
            panic!("{again:?}");
        };
        assert_eq!(cleared.orders_in_window, 1);
        assert_eq!(
            again[0].metadata.event_id,
            derived_event_id(&first.metadata.event_id, FraudCleared::DETAIL_TYPE, "ord-1")
        );
    }

    #[tokio::test]
    async fn another_order_under_an_id_of_the_batch_waits_and_copies_share_the_answer() {
        // given one batch: an order, its redelivered copy, and another order reusing its id
        let w = world();
        let first = order("ord-1", 0, Some(paris())).to_raw();
        let mut other = order("ord-2", 5, Some(berlin())).to_raw();
        other.metadata.event_id = first.metadata.event_id.clone();

        // when it is processed as a whole
        let outcomes = process(&w, &[first.clone(), first, other]).await;

        // then the first is judged once, its copy shares the answer, and the other order is
        // not taken for it: it waits for a later batch, where it is judged on its own
        assert_eq!(
            outcomes,
            vec![
                ("m0".into(), MessageOutcome::Handled(Handled::Processed)),
                ("m1".into(), MessageOutcome::Handled(Handled::Processed)),
                (
                    "m2".into(),
                    MessageOutcome::Retried {
                        reason: eventkit::lambda::SHARED_EVENT_ID.into()
                    }
                ),
            ]
        );
        let stored: Vec<String> = w
            .windows
            .orders()
            .iter()
            .map(|o| o.order_id.clone())
            .collect();
        assert_eq!(stored, vec!["ord-1".to_string()]);
    }

    #[tokio::test]
    async fn a_version_1_order_from_the_queue_is_upcast_and_judged() {
        let w = world();
        let mut raw = order("ord-1", 0, None).to_raw();
        raw.metadata.schema_version = 1;
        if let Some(fields) = raw.data.as_object_mut() {
            fields.remove("shippingAddress");
        }

        let outcomes = process(&w, &[raw]).await;

        assert_eq!(
            outcomes,
            vec![("m0".into(), MessageOutcome::Handled(Handled::Processed))]
        );
        let stored = w.windows.orders();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].location(), None);
        assert_eq!(w.clearances().len(), 1);
    }

    #[tokio::test]
    async fn a_failed_publish_leaves_every_message_of_the_customer_to_sqs() {
        let w = world();
        let raws: Vec<RawEvent> = burst().iter().map(Envelope::to_raw).collect();
        w.bus.fail_next(1);

        let outcomes = process(&w, &raws).await;

        let retried = MessageOutcome::Retried {
            reason: "publish-failed".into(),
        };
        let expected: Vec<(String, MessageOutcome)> =
            (0..5).map(|i| (format!("m{i}"), retried.clone())).collect();
        assert_eq!(outcomes, expected);
    }

    #[test]
    fn what_the_handler_never_sees_is_refused_at_intake() {
        let take_in = |raw: &RawEvent| {
            eventkit::take_in::<Event>(crate::ROUTES, raw)
                .unwrap_err()
                .reason()
        };
        let mut no_address = order("ord-1", 0, None).to_raw();
        no_address.metadata.schema_version = 2;
        assert_eq!(
            take_in(&no_address),
            "invalid-data",
            "v2 without an address"
        );
        let mut forged = order("ord-1", 0, Some(paris())).to_raw();
        forged.source = sources::PAYMENT.into();
        assert_eq!(take_in(&forged), "untrusted-source");
    }

    #[test]
    fn a_suspicion_is_stored_under_the_id_it_is_published_with() {
        let cause = order("ord-5", 40, Some(paris()));
        let target = OrderRecord::new("cus-1", "ord-1", at(0), Some(berlin()), "e1", "c1", at(0));
        let pattern = FraudPattern {
            customer_id: "cus-1".into(),
            rule: RULE,
            window_start: at(0),
            window_end: at(40),
            order_ids: vec!["ord-1".into(), "ord-5".into()],
            locations: vec![berlin(), paris()],
            found_by_order_id: "ord-5".into(),
        };

        let event = suspicion(&cause.metadata, &target, pattern);

        assert_eq!(
            event.metadata.event_id,
            suspicion_id(&cause.metadata, "ord-1")
        );
        assert_eq!(event.metadata.correlation_id, "c1");
    }
}
