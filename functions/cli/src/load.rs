//! `orderflow load --orders N --rate R [--duplicates K] [--json]`: sends N orders, waits
//! until every one is SHIPPED or CANCELLED, and reports throughput and latencies.
//!
//! The orders are [`send_orders`]'s, priced from the stage's catalogue: a stage whose
//! inventory table lists nothing to order fails before anything is sent, instead of timing
//! out on orders that could never finish.
//!
//! Latencies come from the events' own times, not from polling: order → terminal is the
//! read model's `updatedAt` (when the saga recorded the last event) minus the OrderPlaced's
//! `occurredAt` (stamped when it was sent); per hop, each event's `occurredAt` minus its
//! cause's, from the same data `trace` shows.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::join_all;
use indicatif::ProgressBar;
use orderview::OrderView;
use serde::Serialize;

use crate::context::Context;
use crate::error::{CliError, Result};
use crate::order::{is_terminal, status_text};
use crate::send::{bar_style, send_orders, OrderPlan};
use crate::trace::{self, TraceEvent};

/// Nearest-rank percentile of sorted samples (`p` in 0..=100); `None` without samples.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Option<i64>,
    pub p90: Option<i64>,
    pub p99: Option<i64>,
    pub max: Option<i64>,
}

impl Percentiles {
    pub fn of(mut samples: Vec<i64>) -> Self {
        samples.sort_unstable();
        Percentiles {
            count: samples.len(),
            p50: percentile(&samples, 50.0),
            p90: percentile(&samples, 90.0),
            p99: percentile(&samples, 99.0),
            max: samples.last().copied(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    pub orders: usize,
    pub events_sent: usize,
    pub send_seconds: f64,
    pub sent_per_second: f64,
    /// Orders that reached SHIPPED or CANCELLED, per second, from the first send to the last
    /// terminal event.
    pub completed_per_second: f64,
    pub statuses: BTreeMap<String, usize>,
    pub unfinished: Vec<String>,
    /// Milliseconds from OrderPlaced to the order's terminal event.
    pub order_to_terminal_ms: Percentiles,
    /// Milliseconds from OrderPlaced to the first event of each type.
    pub since_order_placed_ms: BTreeMap<String, Percentiles>,
    /// Milliseconds from cause to effect, per (cause → effect) types.
    pub hops_ms: BTreeMap<String, Percentiles>,
}

/// `load --cost --json`: both reports in one document.
#[derive(Debug, Serialize)]
pub struct LoadWithCost<'a> {
    pub load: &'a LoadReport,
    pub cost: &'a crate::cost::CostReport,
}

/// One order's outcome for the report.
#[derive(Debug, Clone)]
pub struct OrderOutcome {
    pub placed_at: DateTime<Utc>,
    pub view: Option<OrderView>,
    pub trace: Vec<TraceEvent>,
}

/// The report from the orders' outcomes (pure, for tests).
pub fn summarize(
    outcomes: &BTreeMap<String, OrderOutcome>,
    events_sent: usize,
    send_elapsed: Duration,
    started: DateTime<Utc>,
) -> LoadReport {
    let mut statuses = BTreeMap::new();
    let mut unfinished = Vec::new();
    let mut to_terminal = Vec::new();
    let mut last_terminal = started;
    let mut since: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut hop_samples: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (order_id, o) in outcomes {
        let status = o
            .view
            .as_ref()
            .map_or("-".to_string(), |v| status_text(v.status));
        *statuses.entry(status).or_insert(0) += 1;
        match o.view.as_ref().filter(|v| is_terminal(v)) {
            Some(view) => {
                if let Ok(done) = view.updated_at.parse::<DateTime<Utc>>() {
                    to_terminal.push((done - o.placed_at).num_milliseconds());
                    last_terminal = last_terminal.max(done);
                }
            }
            None => unfinished.push(order_id.clone()),
        }
        let placed = o
            .trace
            .iter()
            .find(|e| e.event_type == "OrderPlaced")
            .map_or(o.placed_at, |e| e.occurred_at);
        let mut first: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
        for e in &o.trace {
            let t = first.entry(e.event_type.as_str()).or_insert(e.occurred_at);
            *t = (*t).min(e.occurred_at);
        }
        for (t, at) in first {
            if t != "OrderPlaced" {
                since
                    .entry(t.to_string())
                    .or_default()
                    .push((at - placed).num_milliseconds());
            }
        }
        for (cause, effect, ms) in trace::hops(&trace::build_tree(&o.trace)) {
            hop_samples
                .entry(format!("{cause}→{effect}"))
                .or_default()
                .push(ms);
        }
    }
    let secs = send_elapsed.as_secs_f64().max(0.001);
    let completed = to_terminal.len();
    let window = ((last_terminal - started).num_milliseconds() as f64 / 1000.0).max(0.001);
    LoadReport {
        orders: outcomes.len(),
        events_sent,
        send_seconds: secs,
        sent_per_second: events_sent as f64 / secs,
        completed_per_second: completed as f64 / window,
        statuses,
        unfinished,
        order_to_terminal_ms: Percentiles::of(to_terminal),
        since_order_placed_ms: since
            .into_iter()
            .map(|(k, v)| (k, Percentiles::of(v)))
            .collect(),
        hops_ms: hop_samples
            .into_iter()
            .map(|(k, v)| (k, Percentiles::of(v)))
            .collect(),
    }
}

fn ms(v: Option<i64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

pub fn render(report: &LoadReport) -> String {
    let mut out = format!(
        "{} orders, {} events sent in {:.2} s ({:.1}/s); completed {:.2} orders/s\n",
        report.orders,
        report.events_sent,
        report.send_seconds,
        report.sent_per_second,
        report.completed_per_second
    );
    let statuses: Vec<String> = report
        .statuses
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    out.push_str(&format!("statuses: {}\n", statuses.join(", ")));
    if !report.unfinished.is_empty() {
        out.push_str(&format!("unfinished: {}\n", report.unfinished.join(", ")));
    }
    let header = format!(
        "  {:<48} {:>6} {:>8} {:>8} {:>8} {:>8}\n",
        "", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    let row = |name: &str, p: &Percentiles| {
        format!(
            "  {name:<48} {:>6} {:>8} {:>8} {:>8} {:>8}\n",
            p.count,
            ms(p.p50),
            ms(p.p90),
            ms(p.p99),
            ms(p.max)
        )
    };
    out.push_str("\nlatency\n");
    out.push_str(&header);
    out.push_str(&row(
        "OrderPlaced → SHIPPED/CANCELLED",
        &report.order_to_terminal_ms,
    ));
    for (t, p) in &report.since_order_placed_ms {
        out.push_str(&row(&format!("OrderPlaced → {t}"), p));
    }
    out.push_str("\nper hop (cause → effect)\n");
    out.push_str(&header);
    for (hop, p) in &report.hops_ms {
        out.push_str(&row(hop, p));
    }
    out
}

/// Sends the orders, waits for them, and reports.
pub async fn run(
    ctx: &Context,
    plan: &OrderPlan,
    rate: Option<f64>,
    timeout: Duration,
    quiet: bool,
) -> Result<LoadReport> {
    let started = Utc::now();
    let clock = Instant::now();
    let sent = send_orders(ctx, plan, rate, quiet).await?;
    let send_elapsed = clock.elapsed();
    let mut placed: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for (s, raw) in &sent {
        placed
            .entry(s.order_id.clone())
            .or_insert(raw.metadata.occurred_at);
    }
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(placed.len() as u64)
    };
    bar.set_style(bar_style("terminal"));
    let views = ctx.read_model();
    let mut done: HashMap<String, OrderView> = HashMap::new();
    let mut last: HashMap<String, Option<OrderView>> = HashMap::new();
    loop {
        let pending: Vec<&String> = placed.keys().filter(|o| !done.contains_key(*o)).collect();
        if pending.is_empty() {
            break;
        }
        if clock.elapsed() > timeout {
            break;
        }
        for chunk in pending.chunks(16) {
            let got = join_all(chunk.iter().map(|o| views.get(o))).await;
            for (order, view) in chunk.iter().zip(got) {
                let view = view?;
                if let Some(v) = view.as_ref().filter(|v| is_terminal(v)) {
                    done.insert((*order).clone(), v.clone());
                    bar.inc(1);
                }
                last.insert((*order).clone(), view);
            }
        }
        bar.set_message(format!("{} pending", placed.len() - done.len()));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bar.finish_and_clear();
    // The last emails and audit entries trail the terminal event by a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let audit = ctx.audit();
    let store = ctx.store();
    let mut outcomes = BTreeMap::new();
    for (order, at) in &placed {
        let mut events: Vec<TraceEvent> = audit
            .by_order(order)
            .await?
            .iter()
            .filter_map(TraceEvent::from_audit)
            .collect();
        events.extend(
            store
                .read_stream(&contracts::order_stream(order), 1)
                .await?
                .iter()
                .map(TraceEvent::from_store),
        );
        outcomes.insert(
            order.clone(),
            OrderOutcome {
                placed_at: *at,
                view: done
                    .get(order)
                    .cloned()
                    .or_else(|| last.get(order).cloned().flatten()),
                trace: trace::merge(events),
            },
        );
    }
    let report = summarize(&outcomes, sent.len(), send_elapsed, started);
    if report.unfinished.is_empty() {
        Ok(report)
    } else if report.unfinished.len() == report.orders {
        Err(CliError::Timeout {
            what: format!("{} orders to finish", report.orders),
            seconds: timeout.as_secs(),
        })
    } else {
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::AUDIT;
    use eventkit::{EventMetadata, RawEvent};

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50));
        assert_eq!(percentile(&samples, 90.0), Some(90));
        assert_eq!(percentile(&samples, 99.0), Some(99));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        let p = Percentiles::of(vec![30, 10, 20]);
        assert_eq!((p.p50, p.p90, p.max), (Some(20), Some(30), Some(30)));
    }

    fn ev(id: &str, kind: &str, cause: Option<&str>, at: DateTime<Utc>) -> TraceEvent {
        TraceEvent::from_raw(
            &RawEvent {
                source: "orderflow.x".into(),
                detail_type: kind.into(),
                metadata: EventMetadata {
                    event_id: id.into(),
                    schema_version: 1,
                    correlation_id: "c".into(),
                    causation_id: cause.map(str::to_string),
                    occurred_at: at,
                },
                data: serde_json::json!({}),
            },
            AUDIT,
        )
    }

    #[test]
    fn the_report_has_terminal_latency_hops_and_unfinished_orders() {
        let t0: DateTime<Utc> = "2026-11-21T10:00:00Z".parse().unwrap();
        let ms = |n| t0 + chrono::Duration::milliseconds(n);
        let shipped: OrderView = serde_json::from_value(serde_json::json!({
            "orderId": "a", "status": "SHIPPED", "lastVersion": 5, "updatedAt": "2026-11-21T10:00:02.000Z"
        }))
        .unwrap();
        let mut outcomes = BTreeMap::new();
        outcomes.insert(
            "a".to_string(),
            OrderOutcome {
                placed_at: t0,
                view: Some(shipped),
                trace: vec![
                    ev("1", "OrderPlaced", None, t0),
                    ev("2", "PaymentProcessed", Some("1"), ms(100)),
                    ev("3", "OrderConfirmed", Some("2"), ms(400)),
                    ev("4", "OrderShipped", Some("3"), ms(2000)),
                ],
            },
        );
        outcomes.insert(
            "b".to_string(),
            OrderOutcome {
                placed_at: t0,
                view: None,
                trace: vec![],
            },
        );
        let report = summarize(&outcomes, 2, Duration::from_secs(1), t0);
        assert_eq!(report.order_to_terminal_ms.p50, Some(2000));
        assert_eq!(report.unfinished, vec!["b".to_string()]);
        assert_eq!(
            report.since_order_placed_ms["OrderConfirmed"].p50,
            Some(400)
        );
        assert_eq!(
            report.hops_ms["PaymentProcessed→OrderConfirmed"].p50,
            Some(300)
        );
        assert_eq!(report.statuses["SHIPPED"], 1);
        assert!((report.completed_per_second - 0.5).abs() < 1e-9);
        let text = render(&report);
        assert!(text.contains("OrderPlaced → SHIPPED/CANCELLED"), "{text}");
        assert!(text.contains("unfinished: b"), "{text}");
    }
}
