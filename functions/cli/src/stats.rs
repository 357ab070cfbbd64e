//! `orderflow stats`: the analytics counters (functions/analytics) as tables.

use std::collections::{BTreeMap, HashMap};

use analytics::counters::{AMOUNT, COUNT, ORDERS, REFUNDED, REFUNDS};
use aws_sdk_dynamodb::types::AttributeValue;
use contracts::money::display_amount;
use contracts::Currency;
use eventkit::dynamo::attr::{get_n, get_s};
use serde::Serialize;

use crate::context::Context;
use crate::error::{CliError, Result};

const COUNTS_PREFIX: &str = "counts#";
const REVENUE_PREFIX: &str = "revenue#";

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// hour -> type -> count
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
    /// day -> currency -> [amount, orders, refunded, refunds]
    pub revenue: BTreeMap<String, BTreeMap<String, [u64; 4]>>,
}

/// The counters among the table's items (markers and anything else are skipped).
pub fn from_items(items: &[HashMap<String, AttributeValue>]) -> Stats {
    let mut stats = Stats::default();
    for item in items {
        let (Some(pk), Some(sk)) = (get_s(item, "pk"), get_s(item, "sk")) else {
            continue;
        };
        if let Some(hour) = pk.strip_prefix(COUNTS_PREFIX) {
            stats
                .counts
                .entry(hour.to_string())
                .or_default()
                .insert(sk.to_string(), get_n(item, COUNT).unwrap_or(0));
        } else if let Some(day) = pk.strip_prefix(REVENUE_PREFIX) {
            let n = |name| get_n::<u64>(item, name).unwrap_or(0);
            stats.revenue.entry(day.to_string()).or_default().insert(
                sk.to_string(),
                [n(AMOUNT), n(ORDERS), n(REFUNDED), n(REFUNDS)],
            );
        }
    }
    stats
}

pub async fn load(ctx: &Context) -> Result<Stats> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = ctx
            .dynamo
            .scan()
            .table_name(ctx.name("analytics"))
            .filter_expression("begins_with(pk, :c) OR begins_with(pk, :r)")
            .expression_attribute_values(":c", AttributeValue::S(COUNTS_PREFIX.into()))
            .expression_attribute_values(":r", AttributeValue::S(REVENUE_PREFIX.into()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| CliError::aws("dynamodb", &e))?;
        items.extend(out.items().iter().cloned());
        start = out.last_evaluated_key().cloned();
        if start.is_none() {
            return Ok(from_items(&items));
        }
    }
}

fn money(minor: u64, currency: &str) -> String {
    Currency::try_from(currency.to_string())
        .map(|c| display_amount(minor, &c))
        .unwrap_or_else(|_| format!("{minor} {currency}"))
}

pub fn render(stats: &Stats) -> String {
    let mut out = String::from("Events per hour (UTC)\n");
    if stats.counts.is_empty() {
        out.push_str("  (none)\n");
    }
    for (hour, types) in &stats.counts {
        for (t, n) in types {
            out.push_str(&format!("  {hour:<14} {t:<28} {n:>8}\n"));
        }
    }
    out.push_str("\nRevenue per day\n");
    if stats.revenue.is_empty() {
        out.push_str("  (none)\n");
    } else {
        out.push_str(&format!(
            "  {:<11} {:<4} {:>14} {:>7} {:>14} {:>7}\n",
            "day", "cur", "charged", "orders", "refunded", "refunds"
        ));
    }
    for (day, currencies) in &stats.revenue {
        for (c, [amount, orders, refunded, refunds]) in currencies {
            out.push_str(&format!(
                "  {day:<11} {c:<4} {:>14} {orders:>7} {:>14} {refunds:>7}\n",
                money(*amount, c),
                money(*refunded, c)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }
    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }
    fn n(v: u64) -> AttributeValue {
        AttributeValue::N(v.to_string())
    }

    #[test]
    fn counters_become_tables_and_markers_are_skipped() {
        let stats = from_items(&[
            item(&[
                ("pk", s("counts#2026-11-21T10")),
                ("sk", s("OrderPlaced")),
                ("count", n(3)),
            ]),
            item(&[
                ("pk", s("revenue#2026-11-21")),
                ("sk", s("EUR")),
                ("amount", n(3300)),
                ("orders", n(2)),
                ("refunded", n(450)),
                ("refunds", n(1)),
            ]),
            item(&[("pk", s("seen#e-1")), ("sk", s("-"))]),
        ]);
        assert_eq!(stats.counts["2026-11-21T10"]["OrderPlaced"], 3);
        assert_eq!(stats.revenue["2026-11-21"]["EUR"], [3300, 2, 450, 1]);
        let text = render(&stats);
        assert!(text.contains("2026-11-21T10  OrderPlaced"), "{text}");
        assert!(text.contains("33.00 EUR"), "{text}");
        assert!(text.contains("4.50 EUR"), "{text}");
        assert!(!text.contains("seen#"));
    }
}
