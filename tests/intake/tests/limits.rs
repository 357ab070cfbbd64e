//! Whatever intake admits, every consumer handles: the promise of `contracts::limits`.
//!
//! An `OrderPlaced` goes to payment, inventory, fraud, the saga, analytics and audit at
//! once, and the saga's stream goes on to the projector. If one of them refuses an order the
//! others act on, the order is charged and never ends (or reserved and never paid). So the
//! limits live in one place, `contracts::limits`, checked once by `RawEvent::decode`, and
//! this test holds every consumer to them: it builds orders at and between each limit as
//! the wire JSON a sender writes, takes them in through the same `take_in` every function
//! runs (so only what intake admits reaches a handler), and runs each consumer's handler on
//! fresh in-memory adapters of its ports. No handler may fail, permanently or otherwise.
//! What the consumers publish goes on as the bus would carry it: payment's, inventory's and
//! fraud's answers to the saga, which must end the order once; the saga's decisions to
//! notification, which must send each email; all of it to analytics and audit; the saga's
//! stream to the projector, whose view must show the order and fit in one DynamoDB item.
//!
//! The orders reach every limit: 1 and [`MAX_ORDER_LINES`] lines, 1 and
//! [`MAX_DISTINCT_SKUS`] distinct SKUs (lines past that repeat one), quantities 1 and
//! [`MAX_LINE_QUANTITY`], prices from 0 to the largest whose total still fits a `u64`, ids
//! of 1 and [`MAX_ID_CHARS`] characters and event ids of [`MAX_EVENT_ID_CHARS`], an email
//! of exactly [`MAX_EMAIL_BYTES`] bytes (multi-byte characters in it too) that is still
//! sendable, a payment token of [`MAX_PAYMENT_TOKEN_CHARS`] characters, addresses at their
//! field limits or none (schema version 1), and `occurredAt` at the earliest time admitted
//! and at the latest (now plus the clock skew, less a margin for the test's own run time).
//! Besides random orders, [`every_consumer_handles_the_extreme_orders`] runs the corners
//! outright, and [`one_past_each_limit_is_refused_at_intake`] checks that the generator's
//! side of each limit is tight: one step further, and intake refuses the order.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use contracts::limits::{
    EARLIEST_OCCURRED_AT, MAX_CLOCK_SKEW, MAX_DISTINCT_SKUS, MAX_EMAIL_BYTES, MAX_EVENT_ID_CHARS,
    MAX_ID_CHARS, MAX_LINE_QUANTITY, MAX_ORDER_LINES, MAX_PAYMENT_TOKEN_CHARS,
};
use contracts::{Event, OrderPlaced, Payload, RawEvent, Route};
use eventkit::audit::AuditEntry;
use eventkit::store::{StoreError, StoredEvent, TimeCursor, TimePage};
use eventkit::stream::StoreChange;
use eventkit::testing::{invocation, MemoryBus, MemoryEventStore, MemoryTable};
use eventkit::{take_in, BatchResults, DecodeError, DynamoError, Envelope, HandlerError};
use orderview::OrderView;
use proptest::prelude::*;
use serde_json::json;

/// A sender's order, before it is JSON: what the strategies choose.
#[derive(Debug, Clone)]
struct OrderSpec {
    order_id: String,
    customer_id: String,
    customer_email: String,
    currency: String,
    lines: Vec<Line>,
    payment_token: String,
    /// `None`: sent as schema version 1, which has no address.
    shipping_address: Option<Address>,
    event_id: String,
    correlation_id: String,
    causation_id: Option<String>,
    occurred_at: When,
}

#[derive(Debug, Clone)]
struct Line {
    sku: String,
    quantity: u32,
    unit_price: u64,
}

#[derive(Debug, Clone)]
struct Address {
    line1: String,
    city: String,
    postal_code: String,
    country: String,
}

/// `occurredAt`, relative to the clock when the order is taken in.
#[derive(Debug, Clone, Copy)]
enum When {
    /// [`EARLIEST_OCCURRED_AT`].
    Earliest,
    /// Now plus [`MAX_CLOCK_SKEW`], less [`LATEST_MARGIN`].
    Latest,
    /// This many thousandths of the way from the earliest time to now.
    Between(u32),
    /// Only for the refusals: this long before [`EARLIEST_OCCURRED_AT`].
    BeforeEarliest(Duration),
    /// Only for the refusals: this long after now plus [`MAX_CLOCK_SKEW`].
    PastLatest(Duration),
}

/// What `When::Latest` stays below the limit by: the time between building the JSON and the
/// last consumer's decode of it, with room for a slow debug run.
const LATEST_MARGIN: Duration = Duration::seconds(60);

/// The largest unit price at which even [`MAX_ORDER_LINES`] lines of [`MAX_LINE_QUANTITY`]
/// units add up to a total that fits a `u64`.
const MAX_SAFE_UNIT_PRICE: u64 = u64::MAX / (MAX_ORDER_LINES as u64 * MAX_LINE_QUANTITY as u64);

/// DynamoDB's limit on an item ("The maximum item size in DynamoDB is 400 KB"), name and
/// value bytes of every attribute counted.
const MAX_ITEM_BYTES: usize = 400 * 1024;

impl When {
    fn at(self, now: DateTime<Utc>) -> DateTime<Utc> {
        let earliest: DateTime<Utc> = EARLIEST_OCCURRED_AT.parse().expect("the documented time");
        match self {
            When::Earliest => earliest,
            When::Latest => now + MAX_CLOCK_SKEW - LATEST_MARGIN,
            When::Between(thousandths) => {
                earliest + (now - earliest) * i32::try_from(thousandths).unwrap_or(0) / 1000
            }
            When::BeforeEarliest(by) => earliest - by,
            When::PastLatest(by) => now + MAX_CLOCK_SKEW + by,
        }
    }
}

impl OrderSpec {
    /// What the lines add up to, or `u64::MAX` if more (which intake refuses).
    fn total(&self) -> u64 {
        self.lines.iter().fold(0u64, |sum, l| {
            sum.saturating_add(l.unit_price.saturating_mul(u64::from(l.quantity)))
        })
    }

    fn schema_version(&self) -> u32 {
        if self.shipping_address.is_some() {
            2
        } else {
            1
        }
    }

    /// The order as an SQS message body: an EventBridge event as a rule delivers it.
    fn to_body(&self, now: DateTime<Utc>) -> String {
        let mut data = json!({
            "orderId": self.order_id,
            "customerId": self.customer_id,
            "customerEmail": self.customer_email,
            "currency": self.currency,
            "lines": self.lines.iter().map(|l| json!({
                "sku": l.sku, "quantity": l.quantity, "unitPrice": l.unit_price,
            })).collect::<Vec<_>>(),
            "total": self.total(),
            "paymentToken": self.payment_token,
        });
        if let Some(a) = &self.shipping_address {
            data["shippingAddress"] = json!({
                "line1": a.line1, "city": a.city, "postalCode": a.postal_code,
                "country": a.country,
            });
        }
        let mut metadata = json!({
            "eventId": self.event_id,
            "schemaVersion": self.schema_version(),
            "correlationId": self.correlation_id,
            "occurredAt": eventkit::envelope::format_time(&self.occurred_at.at(now)),
        });
        if let Some(causation) = &self.causation_id {
            metadata["causationId"] = json!(causation);
        }
        json!({
            "version": "0",
            "id": "11111111-2222-3333-4444-555555555555",
            "source": contracts::sources::ORDERS,
            "detail-type": "OrderPlaced",
            "account": "000000000000",
            "time": eventkit::envelope::format_time(&now),
            "region": "eu-west-1",
            "resources": [],
            "detail": {"metadata": metadata, "data": data},
        })
        .to_string()
    }
}

/// The order as each function with these `routes` takes it in.
fn taken_in(routes: &[Route], body: &str) -> Result<Envelope<Event>, DecodeError> {
    take_in::<Event>(routes, &RawEvent::from_sqs_body(body)?)
}

// ---- Strategies ----

const ID_CHARS: &str = "[A-Za-z0-9._:@-]";

/// Strings that match `pattern`.
fn matching(pattern: &str) -> impl Strategy<Value = String> {
    proptest::string::string_regex(pattern).expect("a regular expression")
}

/// An id of 1 to `max` characters, often exactly `max`.
fn id(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("1".to_string()),
        2 => matching(&format!("{ID_CHARS}{{{max}}}")),
        3 => matching(&format!("{ID_CHARS}{{1,{max}}}")),
    ]
}

/// A number in `1..=max`, often one of its ends.
fn up_to(max: u32) -> impl Strategy<Value = u32> {
    prop_oneof![1 => Just(1), 2 => Just(max), 3 => 1..=max]
}

fn unit_price() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0),
        1 => Just(1),
        1 => Just(MAX_SAFE_UNIT_PRICE),
        3 => 1..=100_000u64,
        1 => 0..=MAX_SAFE_UNIT_PRICE,
    ]
}

/// Distinct SKUs: the index keeps them apart (`3-` is no prefix of `31-`), the tail makes
/// them up to [`MAX_ID_CHARS`] long.
fn skus(distinct: usize) -> impl Strategy<Value = Vec<String>> {
    let tail = prop_oneof![
        1 => Just(String::new()),
        2 => matching(&format!("{ID_CHARS}{{{MAX_ID_CHARS}}}")),
        3 => matching(&format!("{ID_CHARS}{{0,{MAX_ID_CHARS}}}")),
    ];
    proptest::collection::vec(tail, distinct).prop_map(|tails| {
        tails
            .into_iter()
            .enumerate()
            .map(|(i, tail)| format!("{i}-{tail}").chars().take(MAX_ID_CHARS).collect())
            .collect()
    })
}

/// 1 to [`MAX_ORDER_LINES`] lines over 1 to [`MAX_DISTINCT_SKUS`] SKUs, each SKU at one
/// price on every line it is on (so the catalogue can agree with all of them).
fn lines() -> impl Strategy<Value = Vec<Line>> {
    up_to(MAX_ORDER_LINES as u32)
        .prop_flat_map(|count| {
            let most = count.min(MAX_DISTINCT_SKUS as u32);
            (Just(count as usize), up_to(most))
        })
        .prop_flat_map(|(count, distinct)| {
            let distinct = distinct as usize;
            (
                skus(distinct),
                proptest::collection::vec(unit_price(), distinct),
                proptest::collection::vec(up_to(MAX_LINE_QUANTITY), count),
            )
        })
        .prop_map(|(skus, prices, quantities)| {
            quantities
                .into_iter()
                .enumerate()
                .map(|(i, quantity)| Line {
                    sku: skus[i % skus.len()].clone(),
                    quantity,
                    unit_price: prices[i % skus.len()],
                })
                .collect()
        })
        .prop_shuffle()
}

/// A sendable address, often exactly [`MAX_EMAIL_BYTES`] long; its local part may hold
/// characters of more than one byte.
fn email() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z0-9.+_#%'!é漢-]{1,64}",
        "[a-z0-9-]{1,20}\\.[a-z]{2,10}",
        any::<bool>(),
    )
        .prop_map(|(local, domain, longest)| {
            let mut address = format!("{local}@{domain}");
            if longest {
                let padding = MAX_EMAIL_BYTES - address.len();
                address.insert_str(0, &"x".repeat(padding));
            }
            address
        })
}

/// Printable characters, some of several bytes, spaces inside but not first.
fn text(max_chars: usize) -> impl Strategy<Value = String> {
    let rest = max_chars - 1;
    (
        "[A-Za-z0-9é漢😀İ]",
        prop_oneof![
            2 => matching(&format!("[ -~é漢😀İ]{{{rest}}}")),
            3 => matching(&format!("[ -~é漢😀İ]{{0,{rest}}}")),
        ],
    )
        .prop_map(|(first, rest)| format!("{first}{rest}"))
}

fn address() -> impl Strategy<Value = Address> {
    (
        text(200),
        text(100),
        text(20),
        prop::sample::select(vec!["DE", "FR", "US", "JP", "GB", "BR", "ZA"]),
    )
        .prop_map(|(line1, city, postal_code, country)| Address {
            line1,
            city,
            postal_code,
            country: country.to_string(),
        })
}

fn when() -> impl Strategy<Value = When> {
    prop_oneof![
        1 => Just(When::Earliest),
        1 => Just(When::Latest),
        2 => (0u32..=1000).prop_map(When::Between),
    ]
}

fn order() -> impl Strategy<Value = OrderSpec> {
    (
        (id(MAX_ID_CHARS), id(MAX_ID_CHARS), email(), "[A-Z]{3}"),
        lines(),
        text(MAX_PAYMENT_TOKEN_CHARS),
        proptest::option::of(address()),
        (
            id(MAX_EVENT_ID_CHARS),
            id(MAX_EVENT_ID_CHARS),
            proptest::option::of(id(MAX_EVENT_ID_CHARS)),
            when(),
        ),
    )
        .prop_map(
            |(
                (order_id, customer_id, customer_email, currency),
                lines,
                payment_token,
                shipping_address,
                (event_id, correlation_id, causation_id, occurred_at),
            )| OrderSpec {
                order_id,
                customer_id,
                customer_email,
                currency,
                lines,
                payment_token,
                shipping_address,
                event_id,
                correlation_id,
                causation_id,
                occurred_at,
            },
        )
}

// ---- The consumers, each on fresh in-memory adapters ----

/// What went wrong, for the failure message: which consumer, and the handler's reason and
/// message.
type Verdict = Result<(), String>;

fn refused(consumer: &str, e: &HandlerError) -> String {
    let kind = if e.is_permanent() {
        "permanently"
    } else {
        "transiently"
    };
    format!("{consumer} failed {kind}: {}: {}", e.reason, e.message)
}

fn all_handled(consumer: &str, results: BatchResults) -> Verdict {
    if results.is_empty() {
        return Err(format!("{consumer} answered for no event"));
    }
    results
        .into_iter()
        .try_for_each(|(_, result)| result.map(drop).map_err(|e| refused(consumer, &e)))
}

fn taken_in_by(consumer: &str, routes: &[Route], body: &str) -> Result<Envelope<Event>, String> {
    taken_in(routes, body).map_err(|e| {
        format!(
            "{consumer}'s intake refused an order the generator means to be valid: {}: {e}",
            e.reason()
        )
    })
}

fn the_order(event: &Envelope<Event>) -> OrderPlaced {
    match &event.data {
        Event::OrderPlaced(order) => order.clone(),
        other => panic!("took in {} as an OrderPlaced", other.detail_type()),
    }
}

/// The events a consumer published, or what went wrong.
type Published = Result<Vec<Envelope<Event>>, String>;

/// The catalogue prices each SKU as the order does, unless `prices_agree` is false; then
/// every price is off by one (a legitimate `PaymentFailed`, never a handler error).
///
/// As on the inventory table, a price below one minor unit is never listed
/// (`DynamoCatalogue` treats such an item as not for sale): intake admits a line at
/// `unitPrice` 0, and payment declines that order as mispriced, as an event.
async fn payment(body: &str, prices_agree: bool) -> Published {
    let event = taken_in_by("payment", payment::ROUTES, body)?;
    let order = the_order(&event);
    let catalogue = Arc::new(payment::catalogue::MemoryCatalogue::default());
    for line in &order.lines {
        let price = if prices_agree {
            line.unit_price
        } else {
            line.unit_price.wrapping_add(1)
        };
        if price >= 1 {
            catalogue.list(&line.sku, price, order.currency.as_str());
        }
    }
    let bus = MemoryBus::<Event>::new();
    let service = payment::PaymentService::new(
        Arc::new(payment::repository::MemoryPaymentRepository::default()),
        catalogue,
        bus.clone(),
        // No review limit: the order is charged unless its token is the declining one.
        payment::PaymentPolicy {
            max_charge_minor: u64::MAX,
        },
    );
    service
        .handle(event, invocation())
        .await
        .map_err(|e| refused("payment", &e))?;
    let free_line = order.lines.iter().any(|l| l.unit_price == 0);
    let expected = if !prices_agree || free_line {
        "price-mismatch"
    } else if order.payment_token == payment::decision::DECLINE_TOKEN {
        "card-declined"
    } else {
        "charged"
    };
    match bus.events().as_slice() {
        [Event::PaymentProcessed(_)] if expected == "charged" => Ok(bus.published()),
        [Event::PaymentFailed(failed)] if failed.reason == expected => Ok(bus.published()),
        other => Err(format!("payment published {other:?}, expected {expected}")),
    }
}

/// Exactly enough stock for the order.
async fn inventory(body: &str) -> Published {
    let event = taken_in_by("inventory", inventory::ROUTES, body)?;
    let mut needed: BTreeMap<String, i64> = BTreeMap::new();
    for line in &the_order(&event).lines {
        *needed.entry(line.sku.clone()).or_default() += i64::from(line.quantity);
    }
    let stock: Vec<(&str, i64)> = needed.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    let tables = Arc::new(inventory::repository::memory::MemoryInventory::with_stock(
        &stock,
    ));
    let bus = MemoryBus::<Event>::new();
    let service = inventory::InventoryService::new(tables, bus.clone());
    service
        .handle(event, invocation())
        .await
        .map_err(|e| refused("inventory", &e))?;
    match bus.events().as_slice() {
        [Event::InventoryReserved(_)] => Ok(bus.published()),
        other => Err(format!("inventory published {other:?}")),
    }
}

async fn fraud(body: &str) -> Published {
    let event = taken_in_by("fraud", fraud::ROUTES, body)?;
    let bus = MemoryBus::<Event>::new();
    let service = fraud::FraudService::new(
        Arc::new(fraud::repository::MemoryFraudWindows::default()),
        bus.clone(),
        fraud::DEFAULT_RULE,
    );
    all_handled(
        "fraud",
        service.handle_batch(vec![event], invocation()).await,
    )?;
    match bus.events().as_slice() {
        [Event::FraudCleared(_)] => Ok(bus.published()),
        other => Err(format!("fraud published {other:?} for one order")),
    }
}

/// The projector's ports: the saga's event store, and a read-model table in memory that
/// writes only a view that supersedes the stored one and refuses, as DynamoDB does, a view
/// over an item's size.
struct ReadModel {
    streams: Arc<MemoryEventStore>,
    views: MemoryTable<OrderView>,
}

#[async_trait]
impl projector::StoredEvents for ReadModel {
    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.streams.read_stream(stream_id, from_version).await
    }

    /// Only a rebuild reads by time, and this test runs the live projection.
    async fn read_time_range(
        &self,
        _from: DateTime<Utc>,
        _to: DateTime<Utc>,
        _cursor: Option<TimeCursor>,
        _limit: i32,
    ) -> Result<TimePage, StoreError> {
        Ok(TimePage {
            events: Vec::new(),
            next: None,
        })
    }
}

#[async_trait]
impl projector::Views for ReadModel {
    async fn get(&self, order_id: &str) -> Result<Option<OrderView>, DynamoError> {
        Ok(self.views.get(order_id))
    }

    async fn save(&self, view: &OrderView) -> Result<bool, DynamoError> {
        let size = serde_json::to_string(view).map_or(usize::MAX, |v| v.len());
        if size > MAX_ITEM_BYTES {
            return Err(DynamoError::Rejected(format!(
                "the view of {} is {size} bytes, over an item's limit",
                view.order_id
            )));
        }
        if !orderview::supersedes(view, self.views.get(&view.order_id).as_ref()) {
            return Ok(false);
        }
        self.views.put(&view.order_id, view.clone());
        Ok(true)
    }
}

/// `raw` as an SQS body, the way a rule delivers what was put on the bus.
fn on_the_bus(raw: &RawEvent) -> String {
    json!({
        "version": "0",
        "id": raw.metadata.event_id,
        "source": raw.source,
        "detail-type": raw.detail_type,
        "time": eventkit::envelope::format_time(&raw.metadata.occurred_at),
        "detail": raw.detail(),
    })
    .to_string()
}

/// The saga takes in the order and then what payment, inventory and fraud said of it, all
/// through its intake; the order must end (confirmed or cancelled), and the projector, fed
/// the stream as DynamoDB Streams delivers it, must write a view that shows the order. The saga's decisions, as
/// the outbox puts them on the bus (it publishes the stream's events of the saga's own
/// source, and no others), are the answer.
async fn saga_and_projection(body: &str, facts: &[Envelope<Event>]) -> Result<Vec<String>, String> {
    let event = taken_in_by("orders", orders::ROUTES, body)?;
    let order = the_order(&event);
    let store = MemoryEventStore::new();
    let saga = orders::SagaService::new(store.clone());
    saga.handle(event, invocation())
        .await
        .map_err(|e| refused("the saga", &e))?;
    for fact in facts {
        let fact = taken_in_by("orders", orders::ROUTES, &on_the_bus(&fact.to_raw()))?;
        saga.handle(fact, invocation())
            .await
            .map_err(|e| refused("the saga", &e))?;
    }
    let stream = store.stream(&contracts::order_stream(&order.order_id));
    let ends = stream
        .iter()
        .filter(|e| matches!(e.event_type.as_str(), "OrderConfirmed" | "OrderCancelled"))
        .count();
    if ends != 1 {
        let types: Vec<&str> = stream.iter().map(|e| e.event_type.as_str()).collect();
        return Err(format!(
            "the order did not end once: its stream holds {types:?}"
        ));
    }
    let read_model = Arc::new(ReadModel {
        streams: store.clone(),
        views: MemoryTable::default(),
    });
    let projector = projector::Projector::new(read_model.clone(), read_model.clone());
    let changes = stream
        .iter()
        .map(|e| StoreChange {
            sequence_number: e.version.to_string(),
            event: Ok(e.clone()),
        })
        .collect();
    let answer = projector.project_batch(changes).await;
    if !answer.batch_item_failures.is_empty() {
        return Err(format!(
            "the projector failed on the stream: {:?}",
            answer.batch_item_failures
        ));
    }
    let view = read_model
        .views
        .get(&order.order_id)
        .ok_or_else(|| "the projector wrote no view of the order".to_string())?;
    if view.lines != order.lines || view.total != order.total {
        return Err(format!(
            "the projected view does not show the order: {view:?}"
        ));
    }
    if let Some(entry) = view.timeline.iter().find(|e| e.summary.starts_with('(')) {
        return Err(format!(
            "the projector could not read the stream: {entry:?}"
        ));
    }
    Ok(stream
        .iter()
        .filter(|e| e.source == contracts::sources::SAGA)
        .map(|e| on_the_bus(&e.to_raw()))
        .collect())
}

/// The emails of the saga's decisions that notification takes in: each is sent once.
async fn notification(bodies: &[String]) -> Result<(), String> {
    let mailer = Arc::new(notification::mailer::memory::MemoryMailer::default());
    let service = notification::NotificationService::new(
        Arc::new(notification::repository::memory::MemoryEmails::default()),
        mailer.clone(),
        MemoryBus::<Event>::new(),
        notification::SendRateLimiter::new(1000.0).map_err(|e| e.to_string())?,
    );
    let mut emails = 0;
    for body in bodies {
        let routed = RawEvent::from_sqs_body(body).is_ok_and(|raw| {
            notification::ROUTES
                .iter()
                .any(|r| r.detail_type == raw.detail_type && r.source == raw.source)
        });
        if routed {
            let event = taken_in_by("notification", notification::ROUTES, body)?;
            service
                .handle(event, invocation())
                .await
                .map_err(|e| refused("notification", &e))?;
            emails += 1;
        }
    }
    let sent = mailer.sent().len();
    if sent != emails {
        return Err(format!("notification sent {sent} of {emails} emails"));
    }
    Ok(())
}

/// Analytics takes in everything on the bus: here the order and every event of its stream,
/// in one batch.
async fn analytics(bodies: &[String]) -> Verdict {
    let events = bodies
        .iter()
        .map(|body| taken_in_by("analytics", analytics::ROUTES, body))
        .collect::<Result<Vec<_>, _>>()?;
    let service = analytics::AnalyticsService::new(Arc::new(
        analytics::repository::memory::MemoryCounterStore::default(),
    ));
    all_handled(
        "analytics",
        service.handle_batch(events, invocation()).await,
    )
}

/// An audit table in memory that refuses, as DynamoDB does (`ValidationException`), an
/// entry over an item's size or a key over its limit (2048 bytes for a partition key, 1024
/// for a sort key).
#[derive(Default)]
struct AuditTable;

#[async_trait]
impl audit::AuditSink for AuditTable {
    async fn write(&self, entries: &[AuditEntry]) -> Result<(), DynamoError> {
        for entry in entries {
            let item =
                serde_json::to_value(entry).map_err(|e| DynamoError::Rejected(e.to_string()))?;
            let size: usize = item
                .as_object()
                .map(|fields| {
                    fields
                        .iter()
                        .map(|(name, value)| {
                            name.len() + value.as_str().map_or(value.to_string().len(), str::len)
                        })
                        .sum()
                })
                .unwrap_or(0);
            if size > MAX_ITEM_BYTES || entry.correlation_id.len() > 2048 || entry.sk.len() > 1024 {
                return Err(DynamoError::Rejected(format!(
                    "audit entry of {size} bytes (pk {} bytes, sk {} bytes)",
                    entry.correlation_id.len(),
                    entry.sk.len()
                )));
            }
        }
        Ok(())
    }
}

/// Audit, like analytics, takes in everything on the bus.
async fn audit(bodies: &[String]) -> Verdict {
    let events = bodies
        .iter()
        .map(|body| taken_in_by("audit", audit::ROUTES, body))
        .collect::<Result<Vec<_>, _>>()?;
    let service = audit::AuditService::new(Arc::new(AuditTable), audit::DEFAULT_RETENTION_DAYS);
    all_handled("audit", service.handle(events).await)
}

/// Every consumer of the order, each on its own fresh adapters, and what follows from their
/// answers: the saga with payment's, inventory's and fraud's events, notification with the
/// saga's decisions, analytics and audit with all of it. Every failure is reported, not
/// only the first.
async fn every_consumer(order: &OrderSpec) -> Verdict {
    let body = order.to_body(Utc::now());
    let mut failures = Vec::new();
    let mut facts = Vec::new();
    for published in [
        payment(&body, true).await,
        inventory(&body).await,
        fraud(&body).await,
    ] {
        match published {
            Ok(events) => facts.extend(events),
            Err(e) => failures.push(e),
        }
    }
    let mut on_bus = vec![body.clone()];
    on_bus.extend(facts.iter().map(|fact| on_the_bus(&fact.to_raw())));
    match saga_and_projection(&body, &facts).await {
        Ok(decisions) => on_bus.extend(decisions),
        Err(e) => failures.push(e),
    }
    for verdict in [
        notification(&on_bus).await,
        analytics(&on_bus).await,
        audit(&on_bus).await,
    ] {
        if let Err(e) = verdict {
            failures.push(e);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_consumer_handles_every_order_intake_admits(order in order()) {
        let verdict = runtime().block_on(every_consumer(&order));
        prop_assert!(verdict.is_ok(), "{}", verdict.unwrap_err());
    }

    /// Prices the catalogue does not agree with decline the charge, as an event: the order
    /// ends, rather than waiting in a dead-letter queue.
    #[test]
    fn payment_declines_a_mispriced_order_without_failing(order in order()) {
        let body = order.to_body(Utc::now());
        let published = runtime().block_on(payment(&body, false));
        prop_assert!(published.is_ok(), "{}", published.unwrap_err());
    }
}

/// The strategy is no use if it never reaches a limit: among a few hundred of its orders,
/// each limit is met exactly (and each end of the range of lines and SKUs).
#[test]
fn the_generated_orders_reach_every_limit() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = order();
    let orders: Vec<OrderSpec> = (0..300)
        .map(|_| strategy.new_tree(&mut runner).expect("an order").current())
        .collect();
    let distinct = |o: &OrderSpec| {
        o.lines
            .iter()
            .map(|l| l.sku.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    type Reaches = fn(&OrderSpec) -> bool;
    let reached: Vec<(&str, Reaches)> = vec![
        ("one line", |o| o.lines.len() == 1),
        ("the most lines", |o| o.lines.len() == MAX_ORDER_LINES),
        ("a line at the most units", |o| {
            o.lines.iter().any(|l| l.quantity == MAX_LINE_QUANTITY)
        }),
        ("a line at the largest safe price", |o| {
            o.lines.iter().any(|l| l.unit_price == MAX_SAFE_UNIT_PRICE)
        }),
        ("a free line", |o| o.lines.iter().any(|l| l.unit_price == 0)),
        ("a SKU of the most characters", |o| {
            o.lines.iter().any(|l| l.sku.len() == MAX_ID_CHARS)
        }),
        ("an order id of the most characters", |o| {
            o.order_id.len() == MAX_ID_CHARS
        }),
        ("an event id of the most characters", |o| {
            o.event_id.len() == MAX_EVENT_ID_CHARS
        }),
        ("the longest email", |o| {
            o.customer_email.len() == MAX_EMAIL_BYTES
        }),
        ("an email with multi-byte characters", |o| {
            !o.customer_email.is_ascii()
        }),
        ("the longest token", |o| {
            o.payment_token.chars().count() == MAX_PAYMENT_TOKEN_CHARS
        }),
        ("no address (version 1)", |o| o.shipping_address.is_none()),
        ("the longest address line", |o| {
            o.shipping_address
                .as_ref()
                .is_some_and(|a| a.line1.chars().count() == 200)
        }),
        ("the earliest time", |o| {
            matches!(o.occurred_at, When::Earliest)
        }),
        ("the latest time", |o| matches!(o.occurred_at, When::Latest)),
    ];
    for (limit, reaches) in reached {
        assert!(orders.iter().any(reaches), "no order reached {limit}");
    }
    for (limit, skus) in [("one SKU", 1), ("the most SKUs", MAX_DISTINCT_SKUS)] {
        assert!(
            orders.iter().any(|o| distinct(o) == skus),
            "no order reached {limit}"
        );
    }
    assert!(
        orders
            .iter()
            .any(|o| o.lines.len() == MAX_ORDER_LINES && distinct(o) == MAX_DISTINCT_SKUS),
        "no order has the most lines over the most SKUs"
    );
}

// ---- The corners, outright ----

/// The largest order in every respect.
fn largest() -> OrderSpec {
    let domain = "@example.com";
    OrderSpec {
        order_id: "o".repeat(MAX_ID_CHARS),
        customer_id: "c".repeat(MAX_ID_CHARS),
        customer_email: format!(
            "{}é{domain}",
            "a".repeat(MAX_EMAIL_BYTES - domain.len() - "é".len())
        ),
        currency: "EUR".into(),
        lines: (0..MAX_ORDER_LINES)
            .map(|i| Line {
                sku: format!("{:0>width$}", i % MAX_DISTINCT_SKUS, width = MAX_ID_CHARS),
                quantity: MAX_LINE_QUANTITY,
                unit_price: MAX_SAFE_UNIT_PRICE,
            })
            .collect(),
        payment_token: "😀".repeat(MAX_PAYMENT_TOKEN_CHARS),
        shipping_address: Some(Address {
            line1: "漢".repeat(200),
            city: "İ".repeat(100),
            postal_code: "😀".repeat(20),
            country: "JP".into(),
        }),
        event_id: "e".repeat(MAX_EVENT_ID_CHARS),
        correlation_id: "r".repeat(MAX_EVENT_ID_CHARS),
        causation_id: Some("k".repeat(MAX_EVENT_ID_CHARS)),
        occurred_at: When::Latest,
    }
}

/// The smallest order in every respect.
fn smallest() -> OrderSpec {
    OrderSpec {
        order_id: "o".into(),
        customer_id: "c".into(),
        customer_email: "a@.".into(),
        currency: "EUR".into(),
        lines: vec![Line {
            sku: "s".into(),
            quantity: 1,
            unit_price: 0,
        }],
        payment_token: "t".into(),
        shipping_address: None,
        event_id: "e".into(),
        correlation_id: "e".into(),
        causation_id: None,
        occurred_at: When::Earliest,
    }
}

/// The corners: the largest and the smallest order, each with the other's address and
/// time, and one line at the largest total a `u64` holds.
fn extremes() -> Vec<(&'static str, OrderSpec)> {
    let largest_from_2000 = OrderSpec {
        occurred_at: When::Earliest,
        shipping_address: None,
        ..largest()
    };
    let smallest_now = OrderSpec {
        occurred_at: When::Latest,
        shipping_address: largest().shipping_address,
        ..smallest()
    };
    let whole_u64 = OrderSpec {
        lines: vec![Line {
            sku: "s".into(),
            quantity: 1,
            unit_price: u64::MAX,
        }],
        ..smallest()
    };
    let one_sku_on_every_line = OrderSpec {
        lines: (0..MAX_ORDER_LINES)
            .map(|_| Line {
                sku: "s".into(),
                quantity: MAX_LINE_QUANTITY,
                unit_price: MAX_SAFE_UNIT_PRICE,
            })
            .collect(),
        ..largest()
    };
    vec![
        ("largest", largest()),
        ("largest, v1, from 2000", largest_from_2000),
        ("smallest", smallest()),
        ("smallest, v2, now", smallest_now),
        ("a total of u64::MAX", whole_u64),
        ("one SKU on every line", one_sku_on_every_line),
    ]
}

#[test]
fn every_consumer_handles_the_extreme_orders() {
    let runtime = runtime();
    let largest = largest();
    assert_eq!(largest.lines.len(), MAX_ORDER_LINES);
    assert_eq!(largest.customer_email.len(), MAX_EMAIL_BYTES);
    let distinct: std::collections::BTreeSet<_> = largest.lines.iter().map(|l| &l.sku).collect();
    assert_eq!(distinct.len(), MAX_DISTINCT_SKUS);
    let mut failures = Vec::new();
    for (case, order) in extremes() {
        if let Err(e) = runtime.block_on(every_consumer(&order)) {
            failures.push(format!("{case}:\n{e}"));
        }
        if let Err(e) = runtime.block_on(payment(&order.to_body(Utc::now()), false)) {
            failures.push(format!("{case}, mispriced:\n{e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Intake's answer to `order`: the reason and the path it names.
fn refusal(order: &OrderSpec) -> Option<(String, String)> {
    let refused = taken_in(payment::ROUTES, &order.to_body(Utc::now())).err()?;
    let said = match &refused {
        DecodeError::InvalidData { path, .. } | DecodeError::InvalidMetadata { path, .. } => {
            path.clone()
        }
        other => other.to_string(),
    };
    Some((refused.reason().to_string(), said))
}

/// Inventory reserves every SKU of an order in one transaction: its limit is the
/// contract's, not one of its own.
#[test]
fn inventory_reserves_as_many_skus_as_an_order_holds() {
    assert_eq!(
        inventory::decision::MAX_SKUS_PER_RESERVATION,
        MAX_DISTINCT_SKUS
    );
}

#[test]
fn one_past_each_limit_is_refused_at_intake() {
    assert_eq!(refusal(&largest()), None, "the largest order is admitted");
    assert_eq!(refusal(&smallest()), None, "the smallest order is admitted");
    let line = |sku: String| Line {
        sku,
        quantity: 1,
        unit_price: 1,
    };
    let past: Vec<(&str, OrderSpec, &str)> = vec![
        (
            "a line too many",
            OrderSpec {
                lines: (0..=MAX_ORDER_LINES).map(|_| line("s".into())).collect(),
                ..smallest()
            },
            "data.lines",
        ),
        (
            "a SKU too many",
            OrderSpec {
                lines: (0..=MAX_DISTINCT_SKUS)
                    .map(|i| line(i.to_string()))
                    .collect(),
                ..smallest()
            },
            "data.lines",
        ),
        (
            "a unit too many",
            OrderSpec {
                lines: vec![Line {
                    quantity: MAX_LINE_QUANTITY + 1,
                    ..line("s".into())
                }],
                ..smallest()
            },
            "data.lines[0].quantity",
        ),
        (
            "a SKU a character too long",
            OrderSpec {
                lines: vec![line("s".repeat(MAX_ID_CHARS + 1))],
                ..smallest()
            },
            "data.lines[0].sku",
        ),
        (
            "an order id a character too long",
            OrderSpec {
                order_id: "o".repeat(MAX_ID_CHARS + 1),
                ..smallest()
            },
            "data.orderId",
        ),
        (
            "an email a byte too long",
            OrderSpec {
                customer_email: format!("a{}", largest().customer_email),
                ..smallest()
            },
            "data.customerEmail",
        ),
        (
            "a token a character too long",
            OrderSpec {
                payment_token: "😀".repeat(MAX_PAYMENT_TOKEN_CHARS + 1),
                ..smallest()
            },
            "data.paymentToken",
        ),
        (
            "an event id a character too long",
            OrderSpec {
                event_id: "e".repeat(MAX_EVENT_ID_CHARS + 1),
                ..smallest()
            },
            "metadata.eventId",
        ),
        (
            "a total past u64::MAX",
            OrderSpec {
                lines: vec![
                    Line {
                        unit_price: u64::MAX,
                        ..line("s".into())
                    },
                    line("t".into()),
                ],
                ..smallest()
            },
            "data.total",
        ),
        (
            "a city a character too long",
            OrderSpec {
                shipping_address: largest().shipping_address.map(|a| Address {
                    city: format!("x{}", a.city),
                    ..a
                }),
                ..smallest()
            },
            "data.shippingAddress.city",
        ),
        (
            "a second before the earliest time",
            OrderSpec {
                occurred_at: When::BeforeEarliest(Duration::seconds(1)),
                ..smallest()
            },
            "metadata.occurredAt",
        ),
        (
            "a second past the clock skew",
            OrderSpec {
                occurred_at: When::PastLatest(Duration::seconds(1)),
                ..smallest()
            },
            "metadata.occurredAt",
        ),
    ];
    for (case, order, path) in past {
        let reason = if path.starts_with("metadata.") {
            "invalid-metadata"
        } else {
            "invalid-data"
        };
        assert_eq!(
            refusal(&order),
            Some((reason.to_string(), path.to_string())),
            "{case}"
        );
    }
}
