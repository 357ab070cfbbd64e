//! `orderflow trace <order id | correlation id> [--mermaid]`: everything that happened for
//! an order, as the tree of causes (`causationId`), with the time each hop took.
//!
//! Three places are read and merged by event id: the audit table (every event seen on the
//! bus, including those only the bus carries: emails, fraud verdicts), the order's event
//! stream (what the saga took in and decided) and the DLQs (what failed, with why).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use eventkit::audit::AuditEntry;
use eventkit::{RawEvent, StoredEvent};
use serde::Serialize;

use crate::context::Context;
use crate::dlq::{self, DlqMessage, Kind};
use crate::error::Result;

/// Where an event was found.
pub const AUDIT: &str = "audit";
pub const STORE: &str = "store";
pub const DLQ: &str = "dlq";

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterNote {
    pub queue: String,
    pub reason: String,
    pub kind: Kind,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceEvent {
    pub event_id: String,
    pub event_type: String,
    pub source: String,
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub order_id: Option<String>,
    pub seen_in: BTreeSet<&'static str>,
    pub dead_letters: Vec<DeadLetterNote>,
}

impl TraceEvent {
    pub fn from_raw(raw: &RawEvent, seen_in: &'static str) -> Self {
        TraceEvent {
            event_id: raw.metadata.event_id.clone(),
            event_type: raw.detail_type.clone(),
            source: raw.source.clone(),
            occurred_at: raw.metadata.occurred_at,
            correlation_id: raw.metadata.correlation_id.clone(),
            causation_id: raw.metadata.causation_id.clone(),
            order_id: raw
                .data
                .get("orderId")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            seen_in: BTreeSet::from([seen_in]),
            dead_letters: Vec::new(),
        }
    }

    pub fn from_audit(entry: &AuditEntry) -> Option<Self> {
        let mut event = TraceEvent::from_raw(&entry.to_raw()?, AUDIT);
        event.order_id = event.order_id.or_else(|| entry.order_id.clone());
        Some(event)
    }

    pub fn from_store(stored: &StoredEvent) -> Self {
        TraceEvent::from_raw(&stored.to_raw(), STORE)
    }

    /// What makes two sightings one event: an id is unique only within its source and
    /// stream, so another order's event may reuse it. Not the content digest: the store
    /// keeps an upcast copy, the audit trail and a DLQ the form that was sent.
    fn identity(&self) -> Identity {
        (
            self.event_id.clone(),
            self.source.clone(),
            self.event_type.clone(),
            self.order_id.clone(),
        )
    }
}

/// (event id, source, type, order id): see [`TraceEvent::identity`].
type Identity = (String, String, String, Option<String>);

/// One entry per event (two events of different orders sharing an id stay two): the
/// places it was seen and its dead letters are merged.
pub fn merge(events: Vec<TraceEvent>) -> Vec<TraceEvent> {
    let mut by_id: BTreeMap<Identity, TraceEvent> = BTreeMap::new();
    for e in events {
        match by_id.get_mut(&e.identity()) {
            Some(known) => {
                known.seen_in.extend(e.seen_in.iter().copied());
                known.dead_letters.extend(e.dead_letters);
                if known.order_id.is_none() {
                    known.order_id = e.order_id;
                }
            }
            None => {
                by_id.insert(e.identity(), e);
            }
        }
    }
    let mut merged: Vec<TraceEvent> = by_id.into_values().collect();
    merged.sort_by(|a, b| (a.occurred_at, &a.event_id).cmp(&(b.occurred_at, &b.event_id)));
    merged
}

/// A node of the causal tree, with the time since its cause.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub event: TraceEvent,
    pub hop_ms: Option<i64>,
    pub children: Vec<Node>,
}

/// The events as trees by `causationId`: roots are events without a cause, or whose cause
/// is not among them; children in time order. Each event appears once even if the ids were
/// to form a cycle.
pub fn build_tree(events: &[TraceEvent]) -> Vec<Node> {
    let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, e) in events.iter().enumerate() {
        match e
            .causation_id
            .as_deref()
            .filter(|c| ids.contains(c) && *c != e.event_id)
        {
            Some(parent) => children.entry(parent).or_default().push(i),
            None => roots.push(i),
        }
    }
    let mut placed = HashSet::new();
    fn grow(
        i: usize,
        parent: Option<&TraceEvent>,
        events: &[TraceEvent],
        children: &HashMap<&str, Vec<usize>>,
        placed: &mut HashSet<usize>,
    ) -> Node {
        placed.insert(i);
        let event = &events[i];
        let kids = children
            .get(event.event_id.as_str())
            .map(|k| {
                k.iter()
                    .copied()
                    .filter(|c| !placed.contains(c))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut nodes = Vec::new();
        // Checked again here: a deeper child may have placed a later sibling already.
        for c in kids {
            if !placed.contains(&c) {
                nodes.push(grow(c, Some(event), events, children, placed));
            }
        }
        Node {
            event: event.clone(),
            hop_ms: parent.map(|p| (event.occurred_at - p.occurred_at).num_milliseconds()),
            children: nodes,
        }
    }
    let mut trees: Vec<Node> = roots
        .into_iter()
        .map(|r| grow(r, None, events, &children, &mut placed))
        .collect();
    // Only a cycle of causes leaves events unplaced: show them as roots rather than lose them.
    for i in 0..events.len() {
        if !placed.contains(&i) {
            let node = grow(i, None, events, &children, &mut placed);
            trees.push(node);
        }
    }
    trees
}

pub fn format_ms(ms: i64) -> String {
    if ms.abs() >= 1000 {
        format!("{:+.2}s", ms as f64 / 1000.0)
    } else {
        format!("{ms:+}ms")
    }
}

/// The trees for a terminal.
pub fn render_tree(roots: &[Node]) -> String {
    fn line(node: &Node, prefix: &str, last: bool, root: bool, out: &mut String) {
        let branch = if root {
            ""
        } else if last {
            "└─ "
        } else {
            "├─ "
        };
        let e = &node.event;
        let hop = node
            .hop_ms
            .map(|ms| format!("  {}", format_ms(ms)))
            .unwrap_or_default();
        let where_: Vec<&str> = e.seen_in.iter().copied().collect();
        out.push_str(&format!(
            "{prefix}{branch}{}  [{}]  {}{hop}  ({}, {})\n",
            e.event_type,
            e.source,
            e.occurred_at.format("%H:%M:%S%.3f"),
            short(&e.event_id),
            where_.join("+"),
        ));
        let child_prefix = if root {
            prefix.to_string()
        } else {
            format!("{prefix}{}", if last { "   " } else { "│  " })
        };
        for d in &e.dead_letters {
            out.push_str(&format!(
                "{child_prefix}   ✗ dead-lettered on {}: {} ({}) {}\n",
                d.queue,
                d.reason,
                dlq::kind_text(d.kind),
                truncate(&d.message, 100)
            ));
        }
        for (i, c) in node.children.iter().enumerate() {
            line(c, &child_prefix, i + 1 == node.children.len(), false, out);
        }
    }
    let mut out = String::new();
    for r in roots {
        line(r, "", true, true, &mut out);
    }
    out
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

/// A mermaid `sequenceDiagram`: one participant per source (in order of first appearance),
/// one arrow per cause → effect, in time order, labelled with the effect and the hop time.
pub fn render_mermaid(roots: &[Node]) -> String {
    let mut arrows: Vec<(DateTime<Utc>, String, String, String)> = Vec::new();
    let mut sources: Vec<String> = Vec::new();
    fn walk(
        node: &Node,
        parent: Option<&TraceEvent>,
        arrows: &mut Vec<(DateTime<Utc>, String, String, String)>,
        sources: &mut Vec<(DateTime<Utc>, String)>,
    ) {
        let e = &node.event;
        sources.push((e.occurred_at, e.source.clone()));
        let from = parent.map_or_else(|| e.source.clone(), |p| p.source.clone());
        let mut label = e.event_type.clone();
        if let Some(ms) = node.hop_ms {
            label.push_str(&format!(" ({})", format_ms(ms)));
        }
        arrows.push((e.occurred_at, from, e.source.clone(), label));
        for d in &e.dead_letters {
            arrows.push((
                e.occurred_at,
                e.source.clone(),
                format!("note:{}", d.queue),
                format!("dead-lettered on {}: {}", d.queue, d.reason),
            ));
        }
        for c in &node.children {
            walk(c, Some(e), arrows, sources);
        }
    }
    let mut seen_sources = Vec::new();
    for r in roots {
        walk(r, None, &mut arrows, &mut seen_sources);
    }
    seen_sources.sort();
    for (_, s) in seen_sources {
        if !sources.contains(&s) {
            sources.push(s);
        }
    }
    arrows.sort_by_key(|a| a.0);
    let alias = |s: &str| {
        s.strip_prefix("orderflow.")
            .unwrap_or(s)
            .replace(['.', '-', ' '], "_")
    };
    let mut out = String::from("sequenceDiagram\n");
    for s in &sources {
        out.push_str(&format!("    participant {} as {s}\n", alias(s)));
    }
    for (_, from, to, label) in arrows {
        // Mermaid ends a message at `;` or `#`: keep the label plain.
        let label = label.replace([';', '#'], " ");
        match to.strip_prefix("note:") {
            Some(_) => out.push_str(&format!("    Note over {}: {label}\n", alias(&from))),
            None => out.push_str(&format!("    {}->>{}: {label}\n", alias(&from), alias(&to))),
        }
    }
    out
}

/// Every (cause type → effect type, ms) hop of the trees.
pub fn hops(roots: &[Node]) -> Vec<(String, String, i64)> {
    fn walk(node: &Node, out: &mut Vec<(String, String, i64)>) {
        for c in &node.children {
            if let Some(ms) = c.hop_ms {
                out.push((
                    node.event.event_type.clone(),
                    c.event.event_type.clone(),
                    ms,
                ));
            }
            walk(c, out);
        }
    }
    let mut out = Vec::new();
    for r in roots {
        walk(r, &mut out);
    }
    out
}

/// Dead letters that belong to the trace: their event's correlation id or order id is one
/// of the trace's. Dead letters whose event is not otherwise known become events of their own.
pub fn attach_dead_letters(
    events: &mut Vec<TraceEvent>,
    letters: &[(String, DlqMessage)],
    correlations: &HashSet<String>,
    orders: &HashSet<String>,
) {
    for (queue, letter) in letters {
        let Ok(raw) = RawEvent::from_sqs_body(&letter.body) else {
            continue;
        };
        let order = raw.data.get("orderId").and_then(|v| v.as_str());
        let ours = correlations.contains(&raw.metadata.correlation_id)
            || order.is_some_and(|o| orders.contains(o));
        if !ours {
            continue;
        }
        let sighting = TraceEvent::from_raw(&raw, DLQ);
        let note = DeadLetterNote {
            queue: queue.clone(),
            reason: letter.reason.clone(),
            kind: letter.kind,
            message: letter.failure_message.clone(),
        };
        match events
            .iter_mut()
            .find(|e| e.identity() == sighting.identity())
        {
            Some(e) => e.dead_letters.push(note),
            None => {
                let mut e = sighting;
                e.dead_letters.push(note);
                events.push(e);
            }
        }
    }
}

/// Everything known about `id` (an order id or a correlation id), merged by event id.
pub async fn collect(ctx: &Context, id: &str) -> Result<Vec<TraceEvent>> {
    let audit = ctx.audit();
    let store = ctx.store();
    let mut events: Vec<TraceEvent> = Vec::new();
    let mut orders: HashSet<String> = HashSet::new();
    let by_order = audit.by_order(id).await?;
    let stream = store.read_stream(&contracts::order_stream(id), 1).await?;
    if !by_order.is_empty() || !stream.is_empty() {
        orders.insert(id.to_string());
    }
    events.extend(by_order.iter().filter_map(TraceEvent::from_audit));
    events.extend(stream.iter().map(TraceEvent::from_store));
    if orders.is_empty() {
        // Not an order: a correlation id. Its orders' streams hold the saga's side.
        let by_correlation = audit.by_correlation(id).await?;
        events.extend(by_correlation.iter().filter_map(TraceEvent::from_audit));
        let found: BTreeSet<String> = events.iter().filter_map(|e| e.order_id.clone()).collect();
        for order in found {
            let stream = store
                .read_stream(&contracts::order_stream(&order), 1)
                .await?;
            events.extend(stream.iter().map(TraceEvent::from_store));
            orders.insert(order);
        }
    }
    let mut correlations: HashSet<String> =
        events.iter().map(|e| e.correlation_id.clone()).collect();
    correlations.insert(id.to_string());
    let mut letters = Vec::new();
    for (name, url) in dlq::list_dlqs(ctx).await? {
        for m in dlq::peek(ctx, &url, 200).await? {
            letters.push((name.clone(), m));
        }
    }
    attach_dead_letters(&mut events, &letters, &correlations, &orders);
    Ok(merge(events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventkit::EventMetadata;
    use serde_json::json;

    fn raw(id: &str, kind: &str, source: &str, cause: Option<&str>, ms: i64) -> RawEvent {
        let t0: DateTime<Utc> = "2026-11-21T10:00:00Z".parse().unwrap();
        RawEvent {
            source: source.into(),
            detail_type: kind.into(),
            metadata: EventMetadata {
                event_id: id.into(),
                schema_version: 1,
                correlation_id: "c-1".into(),
                causation_id: cause.map(str::to_string),
                occurred_at: t0 + chrono::Duration::milliseconds(ms),
            },
            data: json!({"orderId": "ord-1"}),
        }
    }

    fn ev(id: &str, kind: &str, source: &str, cause: Option<&str>, ms: i64) -> TraceEvent {
        TraceEvent::from_raw(&raw(id, kind, source, cause, ms), AUDIT)
    }

    /// A cancelled order: payment ok, stock short, so the saga refunds.
    fn cancelled() -> Vec<TraceEvent> {
        vec![
            ev("e1", "OrderPlaced", "orderflow.orders", None, 0),
            ev(
                "e2",
                "PaymentProcessed",
                "orderflow.payment",
                Some("e1"),
                120,
            ),
            ev(
                "e3",
                "InventoryOutOfStock",
                "orderflow.inventory",
                Some("e1"),
                90,
            ),
            ev("e4", "OrderCancelled", "orderflow.saga", Some("e3"), 300),
            ev(
                "e5",
                "RefundPaymentRequested",
                "orderflow.saga",
                Some("e3"),
                300,
            ),
            ev(
                "e6",
                "PaymentRefunded",
                "orderflow.payment",
                Some("e5"),
                1500,
            ),
        ]
    }

    #[test]
    fn events_are_merged_by_id_keeping_every_place_they_were_seen() {
        let mut from_store = ev("e1", "OrderPlaced", "orderflow.orders", None, 0);
        from_store.seen_in = BTreeSet::from([STORE]);
        let merged = merge(vec![
            ev(
                "e2",
                "PaymentProcessed",
                "orderflow.payment",
                Some("e1"),
                120,
            ),
            ev("e1", "OrderPlaced", "orderflow.orders", None, 0),
            from_store,
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].event_id, "e1", "time order");
        assert_eq!(merged[0].seen_in, BTreeSet::from([AUDIT, STORE]));
    }

    #[test]
    fn two_events_sharing_an_id_stay_two_entries() {
        let mut other_order = raw("e1", "OrderPlaced", "orderflow.orders", None, 5);
        other_order.data = json!({"orderId": "ord-2"});
        let merged = merge(vec![
            ev("e1", "OrderPlaced", "orderflow.orders", None, 0),
            TraceEvent::from_raw(&other_order, AUDIT),
        ]);
        let orders: Vec<Option<&str>> = merged.iter().map(|e| e.order_id.as_deref()).collect();
        assert_eq!(orders, vec![Some("ord-1"), Some("ord-2")]);
    }

    #[test]
    fn the_tree_follows_causes_with_hop_times_and_children_in_time_order() {
        let roots = build_tree(&merge(cancelled()));
        assert_eq!(roots.len(), 1);
        let placed = &roots[0];
        assert_eq!(placed.event.event_type, "OrderPlaced");
        let kids: Vec<_> = placed
            .children
            .iter()
            .map(|c| c.event.event_type.as_str())
            .collect();
        assert_eq!(kids, ["InventoryOutOfStock", "PaymentProcessed"]);
        let out_of_stock = &placed.children[0];
        assert_eq!(out_of_stock.hop_ms, Some(90));
        let refund = &out_of_stock.children[1];
        assert_eq!(refund.event.event_type, "RefundPaymentRequested");
        assert_eq!(refund.children[0].event.event_type, "PaymentRefunded");
        assert_eq!(refund.children[0].hop_ms, Some(1200));
    }

    #[test]
    fn an_event_whose_cause_is_unknown_is_a_root_and_a_cycle_loses_nothing() {
        let orphan = ev("x", "EmailSent", "orderflow.notification", Some("gone"), 5);
        let roots = build_tree(&[orphan]);
        assert_eq!(roots.len(), 1);
        let cycle = [
            ev("a", "A", "s", Some("b"), 0),
            ev("b", "B", "s", Some("a"), 1),
        ];
        let roots = build_tree(&cycle);
        let count = |n: &Node| -> usize {
            fn c(n: &Node) -> usize {
                1 + n.children.iter().map(c).sum::<usize>()
            }
            c(n)
        };
        assert_eq!(roots.iter().map(count).sum::<usize>(), 2);
    }

    #[test]
    fn the_terminal_tree_shows_branches_hops_and_dead_letters() {
        let mut events = merge(cancelled());
        events[1].dead_letters.push(DeadLetterNote {
            queue: "orderflow-dev-shipping-dlq".into(),
            reason: "invalid-data".into(),
            kind: Kind::Permanent,
            message: "bad".into(),
        });
        let text = render_tree(&build_tree(&events));
        assert!(
            text.starts_with("OrderPlaced  [orderflow.orders]  10:00:00.000"),
            "{text}"
        );
        assert!(
            text.contains("├─ InventoryOutOfStock  [orderflow.inventory]  10:00:00.090  +90ms"),
            "{text}"
        );
        assert!(text.contains("│  └─ RefundPaymentRequested"), "{text}");
        assert!(
            text.contains("└─ PaymentRefunded  [orderflow.payment]  10:00:01.500  +1.20s"),
            "{text}"
        );
        assert!(
            text.contains(
                "✗ dead-lettered on orderflow-dev-shipping-dlq: invalid-data (permanent)"
            ),
            "{text}"
        );
    }

    #[test]
    fn mermaid_has_a_participant_per_source_and_an_arrow_per_hop_in_time_order() {
        let text = render_mermaid(&build_tree(&merge(cancelled())));
        let expected = "sequenceDiagram\n\
            \x20   participant orders as orderflow.orders\n\
            \x20   participant inventory as orderflow.inventory\n\
            \x20   participant payment as orderflow.payment\n\
            \x20   participant saga as orderflow.saga\n\
            \x20   orders->>orders: OrderPlaced\n\
            \x20   orders->>inventory: InventoryOutOfStock (+90ms)\n\
            \x20   orders->>payment: PaymentProcessed (+120ms)\n\
            \x20   inventory->>saga: OrderCancelled (+210ms)\n\
            \x20   inventory->>saga: RefundPaymentRequested (+210ms)\n\
            \x20   saga->>payment: PaymentRefunded (+1.20s)\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn hops_list_cause_and_effect_types() {
        let hops = hops(&build_tree(&merge(cancelled())));
        assert!(hops.contains(&(
            "RefundPaymentRequested".into(),
            "PaymentRefunded".into(),
            1200
        )));
        assert_eq!(hops.len(), 5);
    }

    #[test]
    fn dead_letters_of_the_order_attach_to_their_event_or_stand_alone() {
        let mut events = merge(cancelled());
        let letter = |body: String| DlqMessage {
            message_id: "m".into(),
            receipt_handle: "h".into(),
            body,
            reason: "invalid-data".into(),
            kind: Kind::Permanent,
            failure_message: "bad".into(),
            source_receive_count: None,
            dlq_receive_count: None,
            source_queue_arn: None,
        };
        let body = |r: &RawEvent| {
            json!({"id": r.metadata.event_id, "source": r.source, "detail-type": r.detail_type,
                   "detail": r.detail()})
            .to_string()
        };
        let known = raw(
            "e2",
            "PaymentProcessed",
            "orderflow.payment",
            Some("e1"),
            120,
        );
        let mut other = raw("z", "OrderPlaced", "orderflow.orders", None, 0);
        other.metadata.correlation_id = "someone-else".into();
        other.data = json!({"orderId": "ord-2"});
        let mut unknown = raw("u", "OrderShipped", "orderflow.shipping", None, 9);
        unknown.metadata.correlation_id = "c-other".into();
        let letters = vec![
            ("payment-dlq".to_string(), letter(body(&known))),
            ("orders-dlq".to_string(), letter(body(&other))),
            ("shipping-dlq".to_string(), letter(body(&unknown))),
        ];
        attach_dead_letters(
            &mut events,
            &letters,
            &HashSet::from(["c-1".to_string()]),
            &HashSet::from(["ord-1".to_string()]),
        );
        let e2 = events.iter().find(|e| e.event_id == "e2").unwrap();
        assert_eq!(e2.dead_letters.len(), 1);
        assert!(
            events.iter().all(|e| e.event_id != "z"),
            "another order's letter"
        );
        let u = events.iter().find(|e| e.event_id == "u").unwrap();
        assert_eq!(u.seen_in, BTreeSet::from([DLQ]), "matched by order id");
    }
}
