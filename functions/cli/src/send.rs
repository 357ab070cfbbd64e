//! `orderflow send`: OrderPlaced events onto the stage's bus, from a sample file or made up.
//!
//! Made-up orders are priced from the stage's catalogue (the inventory table's `price` and
//! `currency` per SKU), read once per run: payment refuses a line whose price is not the
//! catalogue's (`price-mismatch`), so invented prices would only fill the DLQ.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use chrono::Utc;
use contracts::{Country, Currency, Event, OrderLine, OrderPlaced, ShippingAddress};
use eventkit::dynamo::attr::{get_n, get_s};
use eventkit::{Envelope, RawEvent};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::context::Context;
use crate::error::{CliError, Result};

/// The token the payment function always declines (README, "payment").
pub const DECLINED_TOKEN: &str = "tok_decline";
pub const GOOD_TOKEN: &str = "tok_visa";

/// What to make up.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderPlan {
    pub count: usize,
    /// Share of orders (0 to 1) whose card is declined.
    pub decline_share: f64,
    /// The first `duplicates` orders are sent twice with the same event id.
    pub duplicates: usize,
    /// OrderPlaced schema version: 2 with a shipping address, 1 without.
    pub schema_version: u32,
    /// Makes this run's order ids unique.
    pub run_id: String,
}

/// One event as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sent {
    pub order_id: String,
    pub event_id: String,
    pub correlation_id: String,
    pub declined: bool,
    pub duplicate: bool,
}

/// The generated customers' address: SES's mailbox simulator, which accepts mail on AWS
/// without verified recipients, also in the sandbox, and counts it against neither the sending
/// quota nor the bounce rate ("Using the mailbox simulator manually", Amazon SES Developer
/// Guide, https://docs.aws.amazon.com/ses/latest/dg/send-an-email-from-console.html#send-email-simulator;
/// a `+label` tells the customers apart). An `@example.com` address would bounce on AWS, be
/// refused in the sandbox, and dead-letter every email of a load run.
pub fn simulator_address(customer: usize) -> String {
    format!("success+load{customer}@simulator.amazonses.com")
}

/// Whether order `index` of a run is declined: spread evenly, so that any prefix of the run
/// holds about its share (`floor((i+1)·share) > floor(i·share)`).
pub fn is_declined(index: usize, share: f64) -> bool {
    let share = share.clamp(0.0, 1.0);
    ((index + 1) as f64 * share).floor() > (index as f64 * share).floor()
}

/// One SKU as the stage's inventory table lists it; what it lacks or cannot be read is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueItem {
    pub sku: String,
    /// Minor units of `currency`.
    pub price: Option<u64>,
    pub currency: Option<String>,
    pub stock: Option<i64>,
}

/// The stage's catalogue: the inventory table and what it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalogue {
    pub table: String,
    pub items: Vec<CatalogueItem>,
}

/// A SKU a generated order can buy, at the catalogue's price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orderable {
    pub sku: String,
    pub unit_price: u64,
    pub currency: Currency,
    pub stock: u64,
}

/// How many SKUs a run spreads its orders over: the best stocked, so that a load run of a
/// few hundred orders is not cancelled for stock (with the seed, PEN-BLACK and TEA-GREEN).
pub const SKUS_PER_RUN: usize = 2;

impl CatalogueItem {
    /// An inventory table item, read defensively: anyone may have written it.
    pub fn from_item(item: &std::collections::HashMap<String, AttributeValue>) -> Option<Self> {
        Some(CatalogueItem {
            sku: get_s(item, "sku")?.to_string(),
            price: get_n(item, "price"),
            currency: get_s(item, "currency").map(str::to_string),
            stock: get_n(item, "stock"),
        })
    }
}

impl Catalogue {
    /// The SKUs generated orders use: those with a price in a valid currency and stock
    /// above 0, at most [`SKUS_PER_RUN`] of them, most stock first and then by SKU, so the
    /// same catalogue always gives the same orders. None is an error: every order would be
    /// refused.
    pub fn orderable(&self) -> Result<Vec<Orderable>> {
        let mut skus: Vec<Orderable> = self
            .items
            .iter()
            .filter_map(|item| {
                Some(Orderable {
                    sku: item.sku.clone(),
                    unit_price: item.price?,
                    currency: Currency::try_from(item.currency.clone()?).ok()?,
                    stock: u64::try_from(item.stock?).ok().filter(|s| *s > 0)?,
                })
            })
            .collect();
        skus.sort_by(|a, b| b.stock.cmp(&a.stock).then_with(|| a.sku.cmp(&b.sku)));
        skus.truncate(SKUS_PER_RUN);
        if skus.is_empty() {
            return Err(CliError::NotFound(format!(
                "{} has no SKU to order (each needs a price, a currency and stock above 0): \
                 seed it with infra/scripts/seed_inventory.py",
                self.table
            )));
        }
        Ok(skus)
    }
}

/// The stage's catalogue, every page of it.
pub async fn read_catalogue(ctx: &Context) -> Result<Catalogue> {
    let table = ctx.name("inventory");
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = ctx
            .dynamo
            .scan()
            .table_name(&table)
            // Only what pricing an order needs; the names are placeholders so that no
            // attribute can collide with a DynamoDB reserved word.
            .projection_expression("#sku, #price, #currency, #stock")
            .expression_attribute_names("#sku", "sku")
            .expression_attribute_names("#price", "price")
            .expression_attribute_names("#currency", "currency")
            .expression_attribute_names("#stock", "stock")
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| CliError::aws("dynamodb", &e))?;
        items.extend(out.items().iter().filter_map(CatalogueItem::from_item));
        start = out.last_evaluated_key().cloned();
        if start.is_none() {
            return Ok(Catalogue { table, items });
        }
    }
}

/// The orders of a plan, one OrderPlaced each (duplicates not included: see
/// [`with_duplicates`]), each one unit of a catalogue SKU at its catalogue price.
pub fn plan_orders(plan: &OrderPlan, catalogue: &Catalogue) -> Result<Vec<(RawEvent, bool)>> {
    // The CLI refuses other values already; this guards the library's other callers.
    if !(1..=2).contains(&plan.schema_version) {
        return Err(CliError::Usage(format!(
            "--schema-version must be 1 or 2, not {}",
            plan.schema_version
        )));
    }
    let skus = catalogue.orderable()?;
    let country = Country::try_from("FR".to_string())
        .map_err(|e| CliError::Usage(format!("country: {e}")))?;
    (0..plan.count)
        .zip(skus.iter().cycle())
        .map(|(i, sku)| {
            let declined = is_declined(i, plan.decline_share);
            let order = OrderPlaced {
                order_id: format!("ord-{}-{i:04}", plan.run_id),
                customer_id: format!("cus-{}", i % 7),
                customer_email: simulator_address(i % 7),
                // One line, so the order's currency is its SKU's.
                currency: sku.currency.clone(),
                lines: vec![OrderLine {
                    sku: sku.sku.clone(),
                    quantity: 1,
                    unit_price: sku.unit_price,
                }],
                total: sku.unit_price,
                payment_token: if declined { DECLINED_TOKEN } else { GOOD_TOKEN }.into(),
                shipping_address: Some(ShippingAddress {
                    line1: "1 Rue de Rivoli".into(),
                    city: "Paris".into(),
                    postal_code: "75001".into(),
                    country: country.clone(),
                }),
            };
            let mut raw = Envelope::new(Event::from(order)).to_raw();
            if plan.schema_version == 1 {
                raw.metadata.schema_version = 1;
                if let Value::Object(data) = &mut raw.data {
                    data.remove("shippingAddress");
                }
            }
            Ok((raw, declined))
        })
        .collect()
}

/// The events with the first `duplicates` repeated at the end, same event ids.
pub fn with_duplicates(
    events: Vec<(RawEvent, bool)>,
    duplicates: usize,
) -> Vec<(RawEvent, bool, bool)> {
    let again: Vec<_> = events
        .iter()
        .take(duplicates)
        .map(|(e, d)| (e.clone(), *d, true))
        .collect();
    events
        .into_iter()
        .map(|(e, d)| (e, d, false))
        .chain(again)
        .collect()
}

/// Sends made-up orders at `rate` per second (all at once without), each stamped with the
/// time it is sent.
pub async fn send_orders(
    ctx: &Context,
    plan: &OrderPlan,
    rate: Option<f64>,
    quiet: bool,
) -> Result<Vec<(Sent, RawEvent)>> {
    let catalogue = read_catalogue(ctx).await?;
    let events = with_duplicates(plan_orders(plan, &catalogue)?, plan.duplicates);
    let publisher = ctx.publisher();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(events.len() as u64)
    };
    bar.set_style(bar_style("sending"));
    let started = Instant::now();
    let mut sent = Vec::with_capacity(events.len());
    // Without a rate: PutEvents batches of 10 (the publisher's own chunking).
    let chunk = if rate.is_some() { 1 } else { 10 };
    let mut originals: std::collections::HashMap<String, RawEvent> = Default::default();
    for (n, group) in events.chunks(chunk).enumerate() {
        if let Some(rate) = rate.filter(|r| *r > 0.0) {
            let due = Duration::from_secs_f64(n as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let mut batch = Vec::with_capacity(group.len());
        for (event, declined, duplicate) in group {
            // A duplicate must be the same event, time included.
            let event = match originals.get(&event.metadata.event_id) {
                Some(first) => first.clone(),
                None => {
                    let mut e = event.clone();
                    e.metadata.occurred_at = Utc::now();
                    originals.insert(e.metadata.event_id.clone(), e.clone());
                    e
                }
            };
            sent.push((
                Sent {
                    order_id: order_id(&event.data).unwrap_or_default(),
                    event_id: event.metadata.event_id.clone(),
                    correlation_id: event.metadata.correlation_id.clone(),
                    declined: *declined,
                    duplicate: *duplicate,
                },
                event.clone(),
            ));
            batch.push(event);
        }
        publisher.publish_raw(&batch).await?;
        bar.inc(group.len() as u64);
    }
    bar.finish_and_clear();
    Ok(sent)
}

/// One entry of a `put-events` entries file (`events/samples/*.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SampleEntry {
    pub source: String,
    pub detail_type: String,
    pub detail: String,
}

/// The entries of a sample file. Sent as written: a sample without metadata gets the
/// EventBridge event id as its event id, as with `aws events put-events`.
pub fn parse_sample(path: &str, text: &str) -> Result<Vec<SampleEntry>> {
    serde_json::from_str(text).map_err(|e| CliError::File {
        path: path.into(),
        message: format!("not a put-events entries file: {e}"),
    })
}

/// One entry of a sample file as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SampleSent {
    pub detail_type: String,
    /// The entry's `data.orderId`, if it has one.
    pub order_id: Option<String>,
    /// The entry's `metadata.eventId`, or else the id EventBridge gave it.
    pub event_id: String,
}

/// Sends a sample file's entries to this stage's bus (whatever bus the file names).
pub async fn send_sample(ctx: &Context, path: &str) -> Result<Vec<SampleSent>> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::File {
        path: path.into(),
        message: e.to_string(),
    })?;
    let entries = parse_sample(path, &text)?;
    let mut sent = Vec::new();
    for chunk in entries.chunks(10) {
        let request: Vec<PutEventsRequestEntry> = chunk
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(ctx.bus())
                    .source(&e.source)
                    .detail_type(&e.detail_type)
                    .detail(&e.detail)
                    .build()
            })
            .collect();
        let out = ctx
            .events
            .put_events()
            .set_entries(Some(request))
            .send()
            .await
            .map_err(|e| CliError::aws("events", &e))?;
        for (entry, result) in chunk.iter().zip(out.entries()) {
            if let Some(code) = result.error_code() {
                return Err(CliError::Aws {
                    service: "events",
                    message: format!(
                        "{} not accepted: {code}: {}",
                        entry.detail_type,
                        result.error_message().unwrap_or_default()
                    ),
                });
            }
            let detail: Value = serde_json::from_str(&entry.detail).unwrap_or(Value::Null);
            let event_id = detail["metadata"]["eventId"]
                .as_str()
                .or(result.event_id())
                .unwrap_or_default()
                .to_string();
            sent.push(SampleSent {
                detail_type: entry.detail_type.clone(),
                order_id: order_id(&detail["data"]),
                event_id,
            });
        }
    }
    Ok(sent)
}

/// `data.orderId` of an event's data, if it has one.
pub fn order_id(data: &Value) -> Option<String> {
    data.get("orderId")
        .and_then(Value::as_str)
        .map(str::to_string)
}

pub fn bar_style(prefix: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{prefix} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// What `send <FILE>` prints: one line per entry.
pub fn render_sample_sent(sent: &[SampleSent]) -> String {
    sent.iter()
        .map(|s| {
            format!(
                "{:<14} order {:<12} event {}\n",
                s.detail_type,
                s.order_id.as_deref().unwrap_or("-"),
                s.event_id
            )
        })
        .collect()
}

/// What `send --count` prints: one line per event.
pub fn render_sent(sent: &[Sent]) -> String {
    let mut out = String::new();
    for s in sent {
        let mut flags = Vec::new();
        if s.declined {
            flags.push("declined card");
        }
        if s.duplicate {
            flags.push("duplicate");
        }
        out.push_str(&format!(
            "{:<22} event {}  correlation {}{}\n",
            s.order_id,
            s.event_id,
            s.correlation_id,
            if flags.is_empty() {
                String::new()
            } else {
                format!("  ({})", flags.join(", "))
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(sku: &str, price: Option<u64>, currency: Option<&str>, stock: i64) -> CatalogueItem {
        CatalogueItem {
            sku: sku.into(),
            price,
            currency: currency.map(str::to_string),
            stock: Some(stock),
        }
    }

    fn catalogue(items: Vec<CatalogueItem>) -> Catalogue {
        Catalogue {
            table: "orderflow-test-inventory".into(),
            items,
        }
    }

    /// infra/seed/inventory.json, priced.
    fn seeded() -> Catalogue {
        catalogue(vec![
            item("MUG-RED", Some(1250), Some("EUR"), 50),
            item("TEA-GREEN", Some(500), Some("EUR"), 100),
            item("NOTEBOOK-A5", Some(800), Some("EUR"), 25),
            item("PEN-BLACK", Some(250), Some("EUR"), 200),
            item("LAMP-BRASS", Some(4900), Some("EUR"), 0),
        ])
    }

    fn plan_orders(plan: &OrderPlan) -> Result<Vec<(RawEvent, bool)>> {
        super::plan_orders(plan, &seeded())
    }

    fn plan(count: usize, share: f64, schema_version: u32) -> OrderPlan {
        OrderPlan {
            count,
            decline_share: share,
            duplicates: 0,
            schema_version,
            run_id: "t".into(),
        }
    }

    #[test]
    fn generated_customers_mail_the_ses_mailbox_simulator() {
        let orders = plan_orders(&plan(8, 0.0, 2)).unwrap();
        for (raw, _) in &orders {
            let email = raw.data["customerEmail"].as_str().unwrap();
            assert!(
                email.starts_with("success+load") && email.ends_with("@simulator.amazonses.com"),
                "{email}"
            );
        }
    }

    #[test]
    fn the_decline_share_is_spread_evenly_over_the_run() {
        let declined: Vec<bool> = (0..10).map(|i| is_declined(i, 0.3)).collect();
        assert_eq!(declined.iter().filter(|d| **d).count(), 3);
        assert!((0..100).all(|i| !is_declined(i, 0.0)));
        assert!((0..100).all(|i| is_declined(i, 1.0)));
        // Any prefix holds about its share.
        let first_half = (0..5).filter(|i| is_declined(*i, 0.3)).count();
        assert!((1..=2).contains(&first_half));
    }

    #[test]
    fn version_2_orders_carry_an_address_and_pass_intake() {
        let orders = plan_orders(&plan(3, 0.0, 2)).unwrap();
        assert_eq!(orders.len(), 3);
        for (raw, _) in &orders {
            assert_eq!(raw.metadata.schema_version, 2);
            assert!(raw.data["shippingAddress"].is_object());
            raw.decode::<OrderPlaced>().unwrap();
        }
        let ids: std::collections::HashSet<_> = orders
            .iter()
            .map(|(r, _)| r.data["orderId"].clone())
            .collect();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn version_1_orders_have_no_address_and_pass_intake() {
        let (raw, _) = plan_orders(&plan(1, 0.0, 1)).unwrap().remove(0);
        assert_eq!(raw.metadata.schema_version, 1);
        assert!(raw.data.get("shippingAddress").is_none());
        let upcast = raw.decode::<OrderPlaced>().unwrap();
        assert_eq!(upcast.data.shipping_address, None);
    }

    #[test]
    fn declined_orders_use_the_declined_token_and_an_unknown_version_is_refused() {
        let orders = plan_orders(&plan(2, 1.0, 2)).unwrap();
        assert!(orders
            .iter()
            .all(|(r, d)| *d && r.data["paymentToken"] == DECLINED_TOKEN));
        assert!(matches!(
            plan_orders(&plan(1, 0.0, 3)),
            Err(CliError::Usage(m)) if m == "--schema-version must be 1 or 2, not 3"
        ));
    }

    #[test]
    fn generated_orders_buy_the_best_stocked_skus_at_their_catalogue_price() {
        let orders = plan_orders(&plan(4, 0.0, 2)).unwrap();

        let lines: Vec<(String, u64, u64, String)> = orders
            .iter()
            .map(|(raw, _)| {
                let order = raw.decode::<OrderPlaced>().unwrap().data;
                let line = &order.lines[0];
                assert_eq!(order.lines.len(), 1);
                assert_eq!(line.quantity, 1);
                (
                    line.sku.clone(),
                    line.unit_price,
                    order.total,
                    order.currency.to_string(),
                )
            })
            .collect();
        let pen = ("PEN-BLACK".to_string(), 250, 250, "EUR".to_string());
        let tea = ("TEA-GREEN".to_string(), 500, 500, "EUR".to_string());
        assert_eq!(lines, vec![pen.clone(), tea.clone(), pen, tea]);
    }

    #[test]
    fn only_skus_with_a_price_a_currency_and_stock_are_ordered() {
        let listed = catalogue(vec![
            item("UNPRICED", None, Some("EUR"), 900),
            item("NO-CURRENCY", Some(100), None, 900),
            item("BAD-CURRENCY", Some(100), Some("euro"), 900),
            item("SOLD-OUT", Some(100), Some("EUR"), 0),
            item("OVERSOLD", Some(100), Some("EUR"), -3),
            CatalogueItem {
                stock: None,
                ..item("NO-STOCK", Some(100), Some("EUR"), 0)
            },
            item("CUP", Some(700), Some("USD"), 3),
        ]);

        let orders = super::plan_orders(&plan(3, 0.0, 2), &listed).unwrap();

        for (raw, _) in &orders {
            let order = raw.decode::<OrderPlaced>().unwrap().data;
            assert_eq!(order.lines[0].sku, "CUP");
            assert_eq!(order.lines[0].unit_price, 700);
            assert_eq!(order.currency.to_string(), "USD", "the SKU's currency");
        }
    }

    #[test]
    fn the_same_catalogue_in_any_order_gives_the_same_orders() {
        let mut shuffled = seeded();
        shuffled.items.reverse();
        let skus = |c: &Catalogue| -> Vec<String> {
            c.orderable().unwrap().into_iter().map(|o| o.sku).collect()
        };
        assert_eq!(skus(&shuffled), skus(&seeded()));
        // Equal stock: by SKU.
        let tied = catalogue(vec![
            item("B", Some(1), Some("EUR"), 5),
            item("A", Some(1), Some("EUR"), 5),
            item("C", Some(1), Some("EUR"), 5),
        ]);
        assert_eq!(skus(&tied), ["A", "B"]);
    }

    #[test]
    fn a_catalogue_with_nothing_to_order_is_one_clear_error() {
        for items in [
            vec![],
            vec![
                item("LAMP-BRASS", Some(4900), Some("EUR"), 0),
                item("MUG-RED", None, None, 50),
            ],
        ] {
            let err = super::plan_orders(&plan(1, 0.0, 2), &catalogue(items)).unwrap_err();
            let lines = crate::error::report_lines(&err);
            assert_eq!(
                lines,
                [
                    "error: orderflow-test-inventory has no SKU to order (each needs a price, \
                  a currency and stock above 0): seed it with infra/scripts/seed_inventory.py"
                ]
            );
        }
    }

    #[test]
    fn catalogue_items_are_read_defensively() {
        use std::collections::HashMap;
        let n = |v: &str| AttributeValue::N(v.into());
        let s = |v: &str| AttributeValue::S(v.into());
        let full = HashMap::from([
            ("sku".to_string(), s("MUG-RED")),
            ("price".to_string(), n("1250")),
            ("currency".to_string(), s("EUR")),
            ("stock".to_string(), n("50")),
        ]);
        assert_eq!(
            CatalogueItem::from_item(&full),
            Some(item("MUG-RED", Some(1250), Some("EUR"), 50))
        );
        let odd = HashMap::from([
            ("sku".to_string(), s("MUG-RED")),
            ("price".to_string(), n("-1")),
            ("currency".to_string(), n("978")),
        ]);
        assert_eq!(
            CatalogueItem::from_item(&odd),
            Some(CatalogueItem {
                sku: "MUG-RED".into(),
                price: None,
                currency: None,
                stock: None,
            })
        );
        assert_eq!(CatalogueItem::from_item(&HashMap::new()), None);
    }

    #[test]
    fn a_sample_entry_without_an_order_shows_a_dash_and_null_in_json() {
        let sent = [SampleSent {
            detail_type: "CustomerRegistered".into(),
            order_id: None,
            event_id: "e-1".into(),
        }];
        assert_eq!(
            render_sample_sent(&sent),
            "CustomerRegistered order -            event e-1\n"
        );
        assert_eq!(
            serde_json::to_value(&sent).unwrap(),
            serde_json::json!([{"detailType": "CustomerRegistered", "orderId": null, "eventId": "e-1"}])
        );
    }

    #[test]
    fn duplicates_repeat_the_first_events_with_their_ids() {
        let orders = plan_orders(&plan(3, 0.0, 2)).unwrap();
        let first = orders[0].0.metadata.event_id.clone();
        let all = with_duplicates(orders, 1);
        assert_eq!(all.len(), 4);
        assert_eq!(all[3].0.metadata.event_id, first);
        assert!(all[3].2 && !all[0].2);
    }

    #[test]
    fn a_sample_file_reads_as_its_entries() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/samples/order-placed.json"
        ))
        .unwrap();
        let entries = parse_sample("order-placed.json", &text).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].detail_type, "OrderPlaced");
        assert!(parse_sample("x", "{}").is_err());
    }
}
