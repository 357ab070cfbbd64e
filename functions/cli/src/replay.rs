//! `orderflow replay --from T --to T [--type X] (--to-bus | --rebuild-read-model)`.
//!
//! To the bus: the stored events of the range (the store's time index,
//! `EventStore::read_time_range`), published again with their original event ids and
//! metadata, so every consumer recognises them and changes nothing (idempotency records,
//! first-writer-wins tables, the store's per-stream event-id guards, analytics' markers:
//! hence no event older than those markers, [`check_replay_horizon`]).
//! To the read model: the projector's rebuild over the range (`{"rebuild": {...}}`), followed
//! through its `next` answers until it is done.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use contracts::{Event, EventData, EventSet, OrderPlaced};
use eventkit::envelope::format_time;
use eventkit::{RawEvent, StoredEvent};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::context::Context;
use crate::error::{CliError, Result};
use crate::order::invoke;
use crate::send::bar_style;

/// The events to replay: those of `event_type` (all without), in the store's time order,
/// each as it was sent ([`as_sent`]).
pub fn select(events: &[StoredEvent], event_type: Option<&str>) -> Vec<RawEvent> {
    events
        .iter()
        .filter(|e| event_type.is_none_or(|t| e.event_type == t))
        .map(|e| as_sent(e.to_raw()))
        .collect()
}

/// The store keeps events upcast to the schema the saga read them as: an OrderPlaced sent
/// as version 1 is stored as version 2 with `shippingAddress: null`, which intake refuses
/// from a sender (version 2 requires the address). Such an event is replayed in the form it
/// was sent in, version 1 without the field, which every consumer upcasts the same way.
pub fn as_sent(mut raw: RawEvent) -> RawEvent {
    if raw.detail_type == <OrderPlaced as EventData>::DETAIL_TYPE
        && raw.metadata.schema_version >= 2
    {
        if let Value::Object(data) = &mut raw.data {
            if data.get("shippingAddress").is_some_and(Value::is_null) {
                data.remove("shippingAddress");
                raw.metadata.schema_version = 1;
            }
        }
    }
    raw
}

/// Splits the events into those intake takes in and those it would dead-letter (with why):
/// replaying the second kind would only fill the DLQs.
pub fn admissible(events: Vec<RawEvent>) -> (Vec<RawEvent>, Vec<(RawEvent, String)>) {
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for e in events {
        match eventkit::take_in::<Event>(Event::ROUTES, &e) {
            Ok(_) => ok.push(e),
            Err(why) => refused.push((e, why.to_string())),
        }
    }
    (ok, refused)
}

/// How many of each type.
pub fn counts(events: &[RawEvent]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in events {
        *counts.entry(e.detail_type.clone()).or_insert(0) += 1;
    }
    counts
}

pub fn check_range(from: &DateTime<Utc>, to: &DateTime<Utc>) -> Result<()> {
    if from >= to {
        return Err(CliError::Usage(format!(
            "--from ({}) must be before --to ({})",
            format_time(from),
            format_time(to)
        )));
    }
    Ok(())
}

/// Refuses a replay to the bus whose oldest event is older than analytics' dedupe markers
/// cover ([`analytics::repository::REPLAY_HORIZON`]): every other consumer keeps its records
/// for good, but analytics forgets an event once its marker expires and would count it again,
/// revenue included. Every consumer counts (analytics takes every type), so no `--type`
/// makes an old range safe. `oldest` is the earliest time the store recorded one of the
/// events (`None`: nothing to publish).
pub fn check_replay_horizon(oldest: Option<&DateTime<Utc>>, now: &DateTime<Utc>) -> Result<()> {
    let horizon = analytics::repository::REPLAY_HORIZON;
    let limit = *now - chrono::Duration::seconds(horizon.as_secs() as i64);
    match oldest {
        Some(oldest) if *oldest < limit => Err(CliError::Usage(format!(
            "not replaying: the range holds an event recorded at {}, more than {} days ago; \
             analytics remembers what it counted for {} days only and would count such \
             events (revenue included) a second time; replay events recorded at {} or later",
            format_time(oldest),
            horizon.as_secs() / 86_400,
            analytics::repository::MARKER_TTL.as_secs() / 86_400,
            format_time(&limit)
        ))),
        _ => Ok(()),
    }
}

/// When the store recorded the earliest of `events`; an unreadable time counts as `from`,
/// the earliest any of them can be.
pub fn oldest_recorded(events: &[StoredEvent], from: &DateTime<Utc>) -> Option<DateTime<Utc>> {
    events
        .iter()
        .map(|e| {
            DateTime::parse_from_rfc3339(&e.recorded_at)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(*from)
        })
        .min()
}

/// An event published again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayedEvent {
    pub event_id: String,
    pub event_type: String,
}

/// An event not published, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedEvent {
    pub event_id: String,
    pub event_type: String,
    pub reason: String,
}

/// What `replay --to-bus` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BusReplay {
    pub bus: String,
    /// Published again, in the store's time order.
    pub replayed: Vec<ReplayedEvent>,
    /// How many of each type were published.
    pub by_type: BTreeMap<String, usize>,
    /// Not published: intake would refuse them.
    pub refused: Vec<RefusedEvent>,
}

impl BusReplay {
    pub fn new(bus: String, events: &[RawEvent], refused: &[(RawEvent, String)]) -> Self {
        BusReplay {
            bus,
            replayed: events
                .iter()
                .map(|e| ReplayedEvent {
                    event_id: e.metadata.event_id.clone(),
                    event_type: e.detail_type.clone(),
                })
                .collect(),
            by_type: counts(events),
            refused: refused
                .iter()
                .map(|(e, why)| RefusedEvent {
                    event_id: e.metadata.event_id.clone(),
                    event_type: e.detail_type.clone(),
                    reason: why.clone(),
                })
                .collect(),
        }
    }
}

/// `replay --to-bus` as text.
pub fn render_bus(replay: &BusReplay) -> String {
    let mut out = format!(
        "replayed {} event(s) onto {} with their original ids\n",
        replay.replayed.len(),
        replay.bus
    );
    for (t, n) in &replay.by_type {
        out.push_str(&format!("  {t:<28} {n}\n"));
    }
    for e in &replay.refused {
        out.push_str(&format!(
            "not replayed {} {}: {}\n",
            e.event_type, e.event_id, e.reason
        ));
    }
    out
}

/// Publishes the range's stored events again (progress bar unless `quiet`); returns what
/// was published and what was not (intake would refuse it), with why.
pub async fn to_bus(
    ctx: &Context,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    event_type: Option<&str>,
    quiet: bool,
) -> Result<(Vec<RawEvent>, Vec<(RawEvent, String)>)> {
    check_range(&from, &to)?;
    let stored = ctx.store().read_all_between(from, to).await?;
    let chosen: Vec<StoredEvent> = stored
        .into_iter()
        .filter(|e| event_type.is_none_or(|t| e.event_type == t))
        .collect();
    check_replay_horizon(oldest_recorded(&chosen, &from).as_ref(), &Utc::now())?;
    let (events, refused) = admissible(select(&chosen, None));
    let publisher = ctx.publisher();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(events.len() as u64)
    };
    bar.set_style(bar_style("replaying"));
    for chunk in events.chunks(10) {
        publisher.publish_raw(chunk).await?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok((events, refused))
}

/// One answer of the projector's rebuild (functions/projector, `Projector::rebuild`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RebuildAnswer {
    replayed_events: u64,
    written: u64,
    already_current: u64,
    from: String,
    as_of: String,
}

/// `replay --rebuild-read-model --json`: the projector's answers added up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RebuildReport {
    /// Projector invocations it took (each continues where the previous one stopped).
    pub invocations: usize,
    pub replayed_events: u64,
    /// Order views written.
    pub written: u64,
    /// Order views that were current already.
    pub already_current: u64,
    pub from: String,
    pub as_of: String,
}

/// The projector's answers added up; an answer of another shape is the function's error.
pub fn summarize_rebuild(function: &str, answers: &[Value]) -> Result<RebuildReport> {
    let mut report = RebuildReport {
        invocations: answers.len(),
        replayed_events: 0,
        written: 0,
        already_current: 0,
        from: String::new(),
        as_of: String::new(),
    };
    for answer in answers {
        let a: RebuildAnswer =
            serde_json::from_value(answer.clone()).map_err(|e| CliError::Function {
                function: function.to_string(),
                body: format!("unexpected rebuild answer ({e}): {answer}"),
            })?;
        report.replayed_events += a.replayed_events;
        report.written += a.written;
        report.already_current += a.already_current;
        report.from = a.from;
        report.as_of = a.as_of;
    }
    Ok(report)
}

/// Runs the projector's rebuild over the range to completion (spinner unless `quiet`);
/// returns its answers.
pub async fn rebuild(
    ctx: &Context,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    quiet: bool,
) -> Result<Vec<Value>> {
    check_range(&from, &to)?;
    let spinner = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    spinner.set_message("rebuilding the read model");
    let mut request = json!({"rebuild": {"from": format_time(&from), "asOf": format_time(&to)}});
    let mut answers = Vec::new();
    loop {
        let answer = invoke(ctx, "projector", &request).await?;
        let next = answer.get("next").cloned();
        answers.push(answer);
        match next {
            Some(next) => request = next,
            None => break,
        }
    }
    spinner.finish_and_clear();
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventkit::EventMetadata;

    fn stored(id: &str, kind: &str) -> StoredEvent {
        let now = Utc::now();
        let raw = RawEvent {
            source: "orderflow.orders".into(),
            detail_type: kind.into(),
            metadata: EventMetadata {
                event_id: id.into(),
                schema_version: 2,
                correlation_id: "c".into(),
                causation_id: None,
                occurred_at: now,
            },
            data: serde_json::json!({"orderId": "o"}),
        };
        StoredEvent::new("order#o", 1, &raw, &now)
    }

    #[test]
    fn a_replay_keeps_the_original_ids_and_filters_by_type() {
        let events = [
            stored("e1", "OrderPlaced"),
            stored("e2", "PaymentProcessed"),
        ];
        let all = select(&events, None);
        assert_eq!(
            all.iter()
                .map(|e| e.metadata.event_id.as_str())
                .collect::<Vec<_>>(),
            ["e1", "e2"]
        );
        assert_eq!(all[0].metadata.schema_version, 2);
        let placed = select(&events, Some("OrderPlaced"));
        assert_eq!(placed.len(), 1);
        assert_eq!(counts(&all).get("PaymentProcessed"), Some(&1));
    }

    #[test]
    fn an_order_upcast_from_version_1_is_replayed_as_version_1_and_passes_intake() {
        let mut e = stored("e1", "OrderPlaced");
        e.schema_version = 2;
        e.metadata.schema_version = 2;
        e.data = serde_json::json!({
            "orderId": "o", "customerId": "c", "customerEmail": "a@example.com", "currency": "EUR",
            "lines": [{"sku": "S", "quantity": 1, "unitPrice": 5}], "total": 5,
            "paymentToken": "tok_visa", "shippingAddress": null
        });
        assert!(
            admissible(vec![e.to_raw()]).1.len() == 1,
            "as stored, intake refuses it"
        );
        let replayed = select(&[e], None);
        assert_eq!(replayed[0].metadata.schema_version, 1);
        assert!(replayed[0].data.get("shippingAddress").is_none());
        let (ok, refused) = admissible(replayed);
        assert_eq!((ok.len(), refused.len()), (1, 0));
    }

    #[test]
    fn a_bus_replay_lists_what_was_sent_and_what_was_refused() {
        let sent = select(&[stored("e1", "OrderPlaced")], None);
        let refused = vec![(sent[0].clone(), "no such field".to_string())];
        let replay = BusReplay::new("orderflow-dev".into(), &sent, &refused);
        assert_eq!(
            render_bus(&replay),
            "replayed 1 event(s) onto orderflow-dev with their original ids\n  \
             OrderPlaced                  1\nnot replayed OrderPlaced e1: no such field\n"
        );
        assert_eq!(
            serde_json::to_value(&replay).unwrap(),
            json!({
                "bus": "orderflow-dev",
                "replayed": [{"eventId": "e1", "eventType": "OrderPlaced"}],
                "byType": {"OrderPlaced": 1},
                "refused": [{"eventId": "e1", "eventType": "OrderPlaced", "reason": "no such field"}]
            })
        );
    }

    #[test]
    fn the_rebuild_answers_add_up() {
        let page = |n: u64, next: bool| {
            let mut a = json!({"replayedEvents": n, "written": 1, "alreadyCurrent": 2,
                               "from": "2026-01-01T00:00:00.000Z", "asOf": "2026-01-02T00:00:00.000Z"});
            if next {
                a["next"] = json!({"rebuild": {"cursor": "c"}});
            }
            a
        };
        let report = summarize_rebuild("p", &[page(100, true), page(5, false)]).unwrap();
        assert_eq!(report.invocations, 2);
        assert_eq!(report.replayed_events, 105);
        assert_eq!((report.written, report.already_current), (2, 4));
        assert_eq!(report.as_of, "2026-01-02T00:00:00.000Z");
        assert!(matches!(
            summarize_rebuild("p", &[json!({"ok": true})]),
            Err(CliError::Function { .. })
        ));
    }

    #[test]
    fn a_replay_to_the_bus_stays_within_what_analytics_remembers() {
        let now = Utc::now();
        let days = |d: i64| now - chrono::Duration::days(d);
        assert!(check_replay_horizon(Some(&days(1)), &now).is_ok());
        assert!(check_replay_horizon(Some(&days(33)), &now).is_ok());
        assert!(
            check_replay_horizon(None, &now).is_ok(),
            "nothing to publish"
        );
        let err = check_replay_horizon(Some(&days(35)), &now).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("a second time"), "{text}");
        assert!(!text.contains("--"), "no flag to get round it: {text}");
        assert!(!text.contains("  "), "one line of prose: {text}");
    }

    #[test]
    fn the_oldest_event_decides_not_the_start_of_the_range() {
        // given a range opened 90 days back whose events were all recorded yesterday
        let now = Utc::now();
        let from = now - chrono::Duration::days(90);
        let recent = stored("e1", "OrderPlaced");
        let mut old = stored("e2", "PaymentProcessed");
        old.recorded_at = format_time(&(now - chrono::Duration::days(40)));

        // then only the events themselves can make it too old
        let oldest = oldest_recorded(std::slice::from_ref(&recent), &from);
        assert!(check_replay_horizon(oldest.as_ref(), &now).is_ok());
        let oldest = oldest_recorded(&[recent.clone(), old], &from);
        assert!(check_replay_horizon(oldest.as_ref(), &now).is_err());
        let mut unreadable = recent;
        unreadable.recorded_at = "yesterday".into();
        assert_eq!(oldest_recorded(&[unreadable], &from), Some(from));
    }

    #[test]
    fn an_empty_range_is_refused() {
        let t = Utc::now();
        assert!(check_range(&t, &t).is_err());
        assert!(check_range(&t, &(t + chrono::Duration::seconds(1))).is_ok());
    }
}
