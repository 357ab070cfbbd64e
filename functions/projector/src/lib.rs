//! The orders read model's projector. Two ways in:
//! - the event store's DynamoDB stream: each new event is folded into its order's view;
//! - a direct invoke `{"rebuild": {"asOf"?: "<RFC 3339>", "from"?: "<RFC 3339>"}}`: replay
//!   the store's global time index (events recorded in `[from, asOf)`, default: all of them
//!   up to now) and re-project the view of every order it names.
//!
//! Views carry the stream version they reflect, so redeliveries and replays change nothing,
//! and a gap (an event newer than the view's next version) is filled from the order's
//! stream before the event is applied.
//!
//! # How a rebuild stays invisible
//!
//! A rebuild never drops the read model and never writes a view it has only partly
//! built. It is version-gated in place: every view carries the stream version and the
//! projection ([`orderview::PROJECTION_VERSION`]) it reflects, and a write lands only if it
//! is newer ([`orderview::supersedes`]). The rebuild pages through the time index (one page
//! in memory at a time, not every event); for each order a page names whose stored view is
//! not already current ([`orderview::is_current`]), it reads that order's stream and writes
//! the view of the whole stream as of the rebuild's `asOf`. So readers see either the old
//! view or the complete new one, and the live projector, writing the same table at the
//! same time, is never overwritten by an older state (whichever is further ahead wins).
//!
//! Why not build a new table and swap: the read model is one table that order-query, the
//! e2e tests and operators read by `orderId`; a swap needs a second table and a pointer
//! every reader follows (or a template change per rebuild), and the live projector would
//! have to write both while the rebuild runs. The version gate needs one attribute
//! (`projection`) on each item and nothing else.
//!
//! What this gives up: a rebuild cannot move a view back in time. `asOf` bounds what is
//! replayed, but a view that is already further along stays as it is; the state of an
//! order at a past time is order-query's `asOf`. And a view is rewritten at the same
//! version only when the projection changed: bump `PROJECTION_VERSION` with every change to
//! what `orderview::project` writes.
//!
//! A rebuild that runs short of time stops between pages and answers with `next`, the
//! request that goes on from there; what it wrote so far is complete per order.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event as StreamBatch;
use chrono::{DateTime, Utc};
use contracts::order_stream;
use eventkit::envelope::format_time;
use eventkit::store::TimeCursor;
use eventkit::stream::{inserted_events, process_in_order};
use eventkit::{EventStore, HandlerError, Invocation, StoredEvent};
use orderview::{
    is_current, order_of_stream, project, replay, OrderView, ReadModel, PROJECTION_VERSION,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// Where a rebuild starts when the request does not say: before the first Orderflow event.
pub const DEFAULT_REPLAY_FROM: &str = "2026-01-01T00:00:00Z";

/// Events per page of the time index: the most a rebuild holds in memory at once.
pub const REBUILD_PAGE_EVENTS: i32 = 200;

/// A rebuild starts no new page with less than this left of the invocation (a page is at
/// most one query, plus a read and a write for each order it names).
pub const REBUILD_TIME_MARGIN: Duration = Duration::from_secs(15);

pub struct Projector {
    store: EventStore,
    views: ReadModel,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RebuildRequest {
    #[serde(default)]
    pub as_of: Option<DateTime<Utc>>,
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    /// Where an earlier rebuild stopped (its `next`).
    #[serde(default)]
    pub cursor: Option<TimeCursor>,
}

/// What the live projector does with the event at `version` of an order.
#[derive(Debug, Clone, PartialEq)]
pub enum CatchUp {
    /// The stored view already holds it (a redelivery, or a rebuild got there first).
    Current,
    /// It is the next event of `base` (`None`: of a new view): fold it in.
    Next(Option<OrderView>),
    /// Events before it are missing from `base`: fold the stream from version `from` on.
    /// A view written by an older projection is not built on; it is projected again from
    /// the stream's start.
    Fill { base: Option<OrderView>, from: u64 },
}

pub fn catch_up(stored: Option<OrderView>, version: u64) -> CatchUp {
    if is_current(stored.as_ref(), version) {
        return CatchUp::Current;
    }
    let base = stored.filter(|view| view.projection == PROJECTION_VERSION);
    let next = base.as_ref().map_or(1, |view| view.last_version + 1);
    if version == next {
        CatchUp::Next(base)
    } else {
        CatchUp::Fill { base, from: next }
    }
}

/// The orders a page of the time index names, each with the highest version seen of it.
pub fn orders_in(page: &[StoredEvent]) -> BTreeMap<String, u64> {
    let mut orders = BTreeMap::new();
    for event in page {
        if let Some(order_id) = order_of_stream(&event.stream_id) {
            let seen = orders.entry(order_id.to_string()).or_insert(0);
            *seen = event.version.max(*seen);
        }
    }
    orders
}

/// The view of an order's stream as of `as_of` (exclusive, as the time index reads): the
/// events from the start up to the first one recorded at or after it. A prefix, not a
/// filter, so a clock that stepped back between two appends cannot leave a gap in a view.
pub fn view_as_of(stream: &[StoredEvent], as_of: &DateTime<Utc>) -> Option<OrderView> {
    let as_of = format_time(as_of);
    // Both sides are RFC 3339 UTC with milliseconds: text order is time order.
    replay(stream.iter().take_while(|e| e.recorded_at < as_of))
}

/// What a rebuild did, for its answer.
#[derive(Debug, Default)]
struct Rebuilt {
    replayed_events: usize,
    written: usize,
    current: usize,
}

impl Projector {
    /// Reads `EVENT_STORE_TABLE` and `ORDERS_VIEW_TABLE`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        let dynamo = aws_sdk_dynamodb::Client::new(aws);
        Ok(Projector {
            store: EventStore::new(
                dynamo.clone(),
                eventkit::aws::required_env("EVENT_STORE_TABLE")?,
            ),
            views: ReadModel::new(dynamo, eventkit::aws::required_env("ORDERS_VIEW_TABLE")?),
        })
    }

    /// Dispatches a stream batch or a rebuild request.
    pub async fn invoke(
        &self,
        payload: Value,
        invocation: Invocation,
    ) -> Result<Value, HandlerError> {
        if payload.get("Records").is_some() {
            let batch: StreamBatch = serde_json::from_value(payload)
                .map_err(|e| HandlerError::permanent("not-a-stream-batch", e))?;
            let response = process_in_order(inserted_events(batch), |e| self.project_one(e)).await;
            return serde_json::to_value(response)
                .map_err(|e| HandlerError::permanent("response", e));
        }
        if let Some(request) = payload.get("rebuild") {
            let request: RebuildRequest = serde_json::from_value(request.clone())
                .map_err(|e| HandlerError::permanent("bad-rebuild-request", e))?;
            return self.rebuild(request, &invocation).await;
        }
        Err(HandlerError::permanent(
            "unknown-request",
            "expected a DynamoDB stream batch or {\"rebuild\": {\"asOf\"?: ..., \"from\"?: ...}}",
        ))
    }

    async fn project_one(&self, event: StoredEvent) -> Result<(), HandlerError> {
        let Some(order_id) = order_of_stream(&event.stream_id) else {
            return Ok(());
        };
        let view = match catch_up(self.views.get(order_id).await?, event.version) {
            CatchUp::Current => return Ok(()),
            CatchUp::Next(base) => project(base, &event),
            CatchUp::Fill { base, from } => {
                let missing = self.store.read_stream(&event.stream_id, from).await?;
                let upto_event = missing.iter().filter(|e| e.version <= event.version);
                match upto_event.fold(base, |view, e| Some(project(view, e))) {
                    Some(view) => view,
                    None => return Ok(()),
                }
            }
        };
        // Not written when a newer view got there first: that one already holds the event.
        self.views.save(&view).await?;
        Ok(())
    }

    /// Re-projects, in place, the view of every order with events recorded in
    /// `[from, asOf)` whose view is not already current (see the module doc).
    pub async fn rebuild(
        &self,
        request: RebuildRequest,
        invocation: &Invocation,
    ) -> Result<Value, HandlerError> {
        let to = request
            .as_of
            .unwrap_or_else(|| Utc::now() + chrono::Duration::seconds(1));
        let from = request
            .from
            .or_else(|| DEFAULT_REPLAY_FROM.parse().ok())
            .unwrap_or(to - chrono::Duration::days(365));
        let mut cursor = request.cursor;
        let mut done = Rebuilt::default();
        loop {
            let page = self
                .store
                .read_time_range(from, to, cursor, REBUILD_PAGE_EVENTS)
                .await?;
            done.replayed_events += page.events.len();
            for (order_id, seen) in orders_in(&page.events) {
                let stored = self.views.get(&order_id).await?;
                if is_current(stored.as_ref(), seen) {
                    done.current += 1;
                    continue;
                }
                let stream = self.store.read_stream(&order_stream(&order_id), 1).await?;
                let written = match view_as_of(&stream, &to) {
                    Some(view) => self.views.save(&view).await?,
                    None => false,
                };
                if written {
                    done.written += 1;
                } else {
                    done.current += 1;
                }
            }
            cursor = page.next;
            if cursor.is_none() || invocation.remaining() < REBUILD_TIME_MARGIN {
                break;
            }
        }
        let (from, as_of) = (format_time(&from), format_time(&to));
        tracing::info!(replayed = done.replayed_events, written = done.written,
            current = done.current, %as_of, finished = cursor.is_none(), "read model rebuilt");
        let mut answer = json!({
            "replayedEvents": done.replayed_events,
            "written": done.written,
            "alreadyCurrent": done.current,
            "from": from,
            "asOf": as_of,
        });
        if let Some(cursor) = cursor {
            answer["next"] = json!({"rebuild": {"from": from, "asOf": as_of, "cursor": cursor}});
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{Currency, Event, OrderLine, OrderPlaced, PaymentProcessed};
    use eventkit::Envelope;
    use orderview::{supersedes, OrderStatus, PaymentStatus};

    fn eur() -> Currency {
        Currency::try_from("EUR".to_string()).unwrap()
    }

    fn placed(order_id: &str) -> Event {
        Event::OrderPlaced(OrderPlaced {
            order_id: order_id.into(),
            customer_id: "c1".into(),
            customer_email: "a@example.com".into(),
            currency: eur(),
            lines: vec![OrderLine {
                sku: "MUG".into(),
                quantity: 1,
                unit_price: 500,
            }],
            total: 500,
            payment_token: "tok".into(),
            shipping_address: None,
        })
    }

    fn paid(order_id: &str) -> Event {
        Event::PaymentProcessed(PaymentProcessed {
            order_id: order_id.into(),
            payment_id: "pay_1".into(),
            amount: 500,
            currency: eur(),
        })
    }

    /// `data` at `version` of its order's stream, recorded at second `second` of a minute.
    fn stored(version: u64, second: u32, data: Event) -> StoredEvent {
        let stream_id = order_stream(data.order_id().unwrap());
        let raw = Envelope::new(data).to_raw();
        StoredEvent::new(&stream_id, version, &raw, &at(second))
    }

    fn at(second: u32) -> DateTime<Utc> {
        format!("2026-11-21T10:00:{second:02}Z").parse().unwrap()
    }

    fn stream() -> Vec<StoredEvent> {
        vec![stored(1, 1, placed("o1")), stored(2, 2, paid("o1"))]
    }

    #[test]
    fn the_next_event_is_folded_into_the_stored_view() {
        assert_eq!(catch_up(None, 1), CatchUp::Next(None));
        let view = view_as_of(&stream()[..1], &at(59)).unwrap();
        assert_eq!(catch_up(Some(view.clone()), 2), CatchUp::Next(Some(view)));
    }

    #[test]
    fn events_already_in_the_view_change_nothing() {
        let view = view_as_of(&stream(), &at(59)).unwrap();
        assert_eq!(catch_up(Some(view.clone()), 2), CatchUp::Current);
        assert_eq!(catch_up(Some(view), 1), CatchUp::Current);
    }

    #[test]
    fn a_gap_is_filled_from_the_stream() {
        let view = view_as_of(&stream()[..1], &at(59)).unwrap();
        assert_eq!(
            catch_up(Some(view.clone()), 4),
            CatchUp::Fill {
                base: Some(view),
                from: 2
            }
        );
        assert_eq!(
            catch_up(None, 3),
            CatchUp::Fill {
                base: None,
                from: 1
            }
        );
    }

    #[test]
    fn a_view_of_an_older_projection_is_projected_again_from_the_start() {
        let mut old = view_as_of(&stream()[..1], &at(59)).unwrap();
        old.projection = PROJECTION_VERSION - 1;
        assert_eq!(
            catch_up(Some(old.clone()), 2),
            CatchUp::Fill {
                base: None,
                from: 1
            }
        );
        assert_eq!(
            catch_up(Some(old), 1),
            CatchUp::Next(None),
            "the same version, projected again, replaces it"
        );
    }

    #[test]
    fn a_page_names_each_order_with_its_highest_version() {
        let mut other = stored(1, 3, placed("o2"));
        other.stream_id = "customer#c1".into();
        let page = [
            stored(1, 1, placed("o1")),
            stored(1, 2, placed("o3")),
            stored(2, 2, paid("o1")),
            other,
        ];
        assert_eq!(
            orders_in(&page),
            BTreeMap::from([("o1".to_string(), 2), ("o3".to_string(), 1)])
        );
    }

    #[test]
    fn a_rebuilt_view_is_the_whole_stream_as_of_the_rebuild() {
        let stream = stream();
        let full = view_as_of(&stream, &at(59)).unwrap();
        assert_eq!(full, replay(&stream).unwrap(), "the live projection's view");
        assert_eq!(full.payment.unwrap().status, PaymentStatus::Paid);
        let before_payment = view_as_of(&stream, &at(2)).unwrap();
        assert_eq!(before_payment.last_version, 1, "asOf itself is excluded");
        assert_eq!(before_payment.status, OrderStatus::Placed);
        assert_eq!(view_as_of(&stream, &at(1)), None);
    }

    #[test]
    fn a_clock_that_stepped_back_cannot_leave_a_gap_in_a_rebuilt_view() {
        let mut stream = stream();
        stream.push(stored(3, 1, paid("o1")));
        stream[1].recorded_at = "2026-11-21T10:00:30.000Z".into();
        let view = view_as_of(&stream, &at(10)).unwrap();
        assert_eq!(
            view.last_version, 1,
            "version 3 is not folded over missing 2"
        );
    }

    /// Together: a rebuild that runs while the live projector moves an order on writes
    /// nothing older over it, and re-projects only what is not current.
    #[test]
    fn a_rebuild_never_puts_an_older_view_over_a_newer_one() {
        let stream = stream();
        let live = replay(&stream).unwrap();
        let rebuilt_before_payment = view_as_of(&stream, &at(2)).unwrap();
        assert!(!supersedes(&rebuilt_before_payment, Some(&live)));
        assert!(is_current(Some(&live), 1), "nothing to re-project");
        let mut written_by_older_code = live.clone();
        written_by_older_code.projection = PROJECTION_VERSION - 1;
        assert!(!is_current(Some(&written_by_older_code), 2));
        assert!(supersedes(&live, Some(&written_by_older_code)));
    }

    #[test]
    fn a_rebuild_request_goes_on_from_its_cursor() {
        let request: RebuildRequest = serde_json::from_value(json!({
            "from": "2026-11-01T00:00:00Z", "asOf": "2026-11-21T10:00:00.000Z",
            "cursor": {"bucket": "2026-11-20", "after": ["k", "order#o1", 3]}
        }))
        .unwrap();
        assert!(request.cursor.is_some());
        let bad = serde_json::from_value::<RebuildRequest>(json!({"asof": "x"}));
        assert!(bad.is_err(), "unknown fields are refused");
    }
}
