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
//! # Reading and writing a view once per batch
//!
//! An order gets about six events in a few seconds, and they reach the projector together
//! more often than not. A stream batch is folded per order in stream order and each
//! order's view written once, at the end ([`Projector::project_batch`]). The view a record
//! is folded into comes, in this order of preference, from the batch itself, from the
//! views this warm instance wrote or read before (the last [`REMEMBERED_VIEWS`] orders),
//! from nothing at all when the record is version 1 (a view of the first event is that
//! event's alone), and only otherwise from the table (GetItem).
//!
//! Why remembered views are safe: a remembered view is the true view of its stream at its
//! version (it was read from the table, or written to it), and views only move
//! forward, so the stored view is the same or further on. Anything folded onto it is the
//! true view at a later version, and the write's version gate ([`orderview::supersedes`])
//! decides as it always did: it lands if it moves the view forward, and is refused if
//! another writer (a rebuild, or another instance that got this shard's earlier records)
//! is already as far. A refused write makes the instance forget that view, so the order's
//! next record reads the table again. No write ever names the version it expects to
//! replace: the gate is what keeps views moving forward, and a stale memory costs at most
//! a refused write and a read, never an older view.
//!
//! Failures: records are folded in stream order; the first one that fails to fold (an
//! unreadable record, a failed read) stops the batch, the views folded before it are
//! still written, and Lambda is told to retry from the earliest record that is not in a
//! written view. What comes again after it is already in its view and changes nothing.
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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::Event as StreamBatch;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use chrono::{DateTime, Utc};
use contracts::order_stream;
use eventkit::envelope::format_time;
use eventkit::store::{TimeCursor, TimePage};
use eventkit::stream::{inserted_events, log_failed_record, record_span, retry_from, StoreChange};
use eventkit::{DynamoError, EventStore, HandlerError, Invocation, StoreError, StoredEvent};
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

/// How many orders' views a warm instance remembers (least recently used ones are
/// forgotten first). A view is a few KB; this stays far below the function's memory.
pub const REMEMBERED_VIEWS: usize = 2048;

/// The event store as the projector reads it: the event store, or a memory copy in tests.
#[async_trait]
pub trait StoredEvents: Send + Sync {
    /// The stream's events from `from_version` (inclusive) on, in version order.
    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// One page of the events recorded in `[from, to)`, see [`EventStore::read_time_range`].
    async fn read_time_range(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cursor: Option<TimeCursor>,
        limit: i32,
    ) -> Result<TimePage, StoreError>;
}

#[async_trait]
impl StoredEvents for EventStore {
    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        EventStore::read_stream(self, stream_id, from_version).await
    }

    async fn read_time_range(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cursor: Option<TimeCursor>,
        limit: i32,
    ) -> Result<TimePage, StoreError> {
        EventStore::read_time_range(self, from, to, cursor, limit).await
    }
}

/// The read-model table: [`ReadModel`], or a memory copy in tests. `save` must write only
/// a view that [`orderview::supersedes`] the stored one, and say whether it did.
#[async_trait]
pub trait Views: Send + Sync {
    async fn get(&self, order_id: &str) -> Result<Option<OrderView>, DynamoError>;
    async fn save(&self, view: &OrderView) -> Result<bool, DynamoError>;
}

#[async_trait]
impl Views for ReadModel {
    async fn get(&self, order_id: &str) -> Result<Option<OrderView>, DynamoError> {
        ReadModel::get(self, order_id).await
    }

    async fn save(&self, view: &OrderView) -> Result<bool, DynamoError> {
        ReadModel::save(self, view).await
    }
}

pub struct Projector {
    store: Arc<dyn StoredEvents>,
    views: Arc<dyn Views>,
    /// Views this instance read or wrote, by order id: the stored view or an older one.
    remembered: quick_cache::sync::Cache<String, OrderView>,
}

/// An order's view as a batch brings it forward, written once when the batch is folded.
struct Folding {
    view: Option<OrderView>,
    /// Where in the batch the first record not yet in the stored view is (`None`: the view
    /// holds nothing new, there is nothing to write).
    first_unwritten: Option<usize>,
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
        Ok(Projector::new(
            Arc::new(EventStore::new(
                dynamo.clone(),
                eventkit::aws::required_env("EVENT_STORE_TABLE")?,
            )),
            Arc::new(ReadModel::new(
                dynamo,
                eventkit::aws::required_env("ORDERS_VIEW_TABLE")?,
            )),
        ))
    }

    pub fn new(store: Arc<dyn StoredEvents>, views: Arc<dyn Views>) -> Self {
        Projector {
            store,
            views,
            remembered: quick_cache::sync::Cache::new(REMEMBERED_VIEWS),
        }
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
            let response = self.project_batch(inserted_events(batch)).await;
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

    /// Folds a stream batch into the views of its orders, each view read at most once and
    /// written once (see the module doc), and says where Lambda must retry from.
    pub async fn project_batch(&self, changes: Vec<StoreChange>) -> DynamoDbEventResponse {
        let mut folding: HashMap<String, Folding> = HashMap::new();
        let mut retry_at: Option<usize> = None;
        for (position, change) in changes.iter().enumerate() {
            let span = record_span(change);
            let folded = match &change.event {
                Ok(event) => {
                    let fold = self.fold(&mut folding, position, event);
                    tracing::Instrument::instrument(fold, span.clone()).await
                }
                Err(e) => Err(HandlerError::from(e.clone())),
            };
            if let Err(e) = folded {
                log_failed_record(&span, &e);
                retry_at = Some(position);
                break;
            }
        }
        for (order_id, order) in folding {
            let Some(view) = order.view else { continue };
            let Some(first_unwritten) = order.first_unwritten else {
                self.remembered.insert(order_id, view);
                continue;
            };
            match self.views.save(&view).await {
                Ok(true) => self.remembered.insert(order_id, view),
                // A writer got further: what this instance knows is behind the table.
                Ok(false) => {
                    self.remembered.remove(&order_id);
                }
                Err(e) => {
                    self.remembered.remove(&order_id);
                    tracing::error!(order_id, error = %e, "view not written; Lambda retries its records");
                    retry_at = Some(retry_at.map_or(first_unwritten, |at| at.min(first_unwritten)));
                }
            }
        }
        retry_from(retry_at.map(|at| changes[at].sequence_number.clone()))
    }

    /// Folds the record at `position` of the batch into its order's view.
    async fn fold(
        &self,
        folding: &mut HashMap<String, Folding>,
        position: usize,
        event: &StoredEvent,
    ) -> Result<(), HandlerError> {
        let Some(order_id) = order_of_stream(&event.stream_id) else {
            return Ok(());
        };
        if !folding.contains_key(order_id) {
            let view = self.base_view(order_id, event.version).await?;
            folding.insert(
                order_id.to_string(),
                Folding {
                    view,
                    first_unwritten: None,
                },
            );
        }
        let Some(order) = folding.get_mut(order_id) else {
            return Ok(());
        };
        if is_current(order.view.as_ref(), event.version) {
            return Ok(());
        }
        let view = match catch_up(order.view.take(), event.version) {
            CatchUp::Current => return Ok(()),
            CatchUp::Next(base) => Some(project(base, event)),
            CatchUp::Fill { base, from } => {
                let fallback = base.clone();
                let missing = self.store.read_stream(&event.stream_id, from).await;
                let missing = match missing {
                    Ok(missing) => missing,
                    Err(e) => {
                        order.view = fallback;
                        return Err(e.into());
                    }
                };
                let upto_event = missing.iter().filter(|e| e.version <= event.version);
                upto_event.fold(base, |view, e| Some(project(view, e)))
            }
        };
        if view.is_some() {
            order.view = view;
            order.first_unwritten.get_or_insert(position);
        }
        Ok(())
    }

    /// The view an order's first record in a batch is folded into: remembered, none for the
    /// first event of a stream, else the stored one.
    async fn base_view(
        &self,
        order_id: &str,
        version: u64,
    ) -> Result<Option<OrderView>, HandlerError> {
        if let Some(view) = self.remembered.get(order_id) {
            return Ok(Some(view));
        }
        if version == 1 {
            // The view of event 1 is event 1's alone; if the table already has it (or more),
            // the version gate refuses the write and nothing is lost.
            return Ok(None);
        }
        Ok(self.views.get(order_id).await?)
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
                // The live projector reads this order's view again rather than build on
                // what it remembers from before the rebuild.
                self.remembered.remove(&order_id);
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
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

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

    /// The event store and the read-model table in memory, counting requests.
    #[derive(Default)]
    struct Memory {
        streams: Mutex<BTreeMap<String, Vec<StoredEvent>>>,
        views: Mutex<BTreeMap<String, OrderView>>,
        stream_reads: AtomicU32,
        gets: AtomicU32,
        puts: AtomicU32,
        fail_puts: AtomicU32,
    }

    impl Memory {
        /// (stream reads, view reads, view writes) so far.
        fn requests(&self) -> (u32, u32, u32) {
            (
                self.stream_reads.load(Ordering::SeqCst),
                self.gets.load(Ordering::SeqCst),
                self.puts.load(Ordering::SeqCst),
            )
        }

        fn view(&self, order_id: &str) -> Option<OrderView> {
            self.views.lock().unwrap().get(order_id).cloned()
        }

        /// Stores `events` in their streams and returns them as a stream batch would.
        fn append(&self, events: &[StoredEvent]) -> Vec<StoreChange> {
            let mut streams = self.streams.lock().unwrap();
            for e in events {
                streams
                    .entry(e.stream_id.clone())
                    .or_default()
                    .push(e.clone());
            }
            changes(events)
        }
    }

    fn changes(events: &[StoredEvent]) -> Vec<StoreChange> {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| StoreChange {
                sequence_number: format!("seq-{i}"),
                event: Ok(e.clone()),
            })
            .collect()
    }

    #[async_trait]
    impl StoredEvents for Memory {
        async fn read_stream(
            &self,
            stream_id: &str,
            from_version: u64,
        ) -> Result<Vec<StoredEvent>, StoreError> {
            self.stream_reads.fetch_add(1, Ordering::SeqCst);
            let streams = self.streams.lock().unwrap();
            let stream = streams.get(stream_id).cloned().unwrap_or_default();
            Ok(stream
                .into_iter()
                .filter(|e| e.version >= from_version)
                .collect())
        }

        async fn read_time_range(
            &self,
            _from: DateTime<Utc>,
            _to: DateTime<Utc>,
            _cursor: Option<TimeCursor>,
            _limit: i32,
        ) -> Result<TimePage, StoreError> {
            unimplemented!("the live projection does not replay")
        }
    }

    #[async_trait]
    impl Views for Memory {
        async fn get(&self, order_id: &str) -> Result<Option<OrderView>, DynamoError> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            Ok(self.view(order_id))
        }

        async fn save(&self, view: &OrderView) -> Result<bool, DynamoError> {
            self.puts.fetch_add(1, Ordering::SeqCst);
            if self
                .fail_puts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(DynamoError::Unavailable("failing on purpose".into()));
            }
            let mut views = self.views.lock().unwrap();
            if !supersedes(view, views.get(&view.order_id)) {
                return Ok(false);
            }
            views.insert(view.order_id.clone(), view.clone());
            Ok(true)
        }
    }

    fn projector() -> (Arc<Memory>, Projector) {
        let memory = Arc::new(Memory::default());
        (memory.clone(), Projector::new(memory.clone(), memory))
    }

    /// Order `order_id`'s events 1..=n, as the saga stores them on the happy path.
    fn order(order_id: &str, n: u64) -> Vec<StoredEvent> {
        (1..=n)
            .map(|v| match v {
                1 => stored(1, 1, placed(order_id)),
                v => stored(v, v as u32, paid(order_id)),
            })
            .collect()
    }

    fn retried_from(response: &DynamoDbEventResponse) -> Option<&str> {
        response
            .batch_item_failures
            .first()
            .and_then(|f| f.item_identifier.as_deref())
    }

    #[tokio::test]
    async fn an_orders_records_in_one_batch_are_one_write_and_no_read() {
        let (memory, projector) = projector();
        let events = order("o1", 4);
        let response = projector.project_batch(memory.append(&events)).await;
        assert_eq!(retried_from(&response), None);
        assert_eq!(memory.requests(), (0, 0, 1), "(stream reads, gets, puts)");
        assert_eq!(memory.view("o1"), replay(&events));
    }

    #[tokio::test]
    async fn a_view_written_before_is_not_read_again() {
        let (memory, projector) = projector();
        let events = order("o1", 4);
        projector.project_batch(memory.append(&events[..2])).await;
        projector.project_batch(memory.append(&events[2..3])).await;
        projector.project_batch(memory.append(&events[3..])).await;
        assert_eq!(memory.requests(), (0, 0, 3));
        assert_eq!(memory.view("o1"), replay(&events));
    }

    #[tokio::test]
    async fn several_orders_in_a_batch_get_one_write_each() {
        let (memory, projector) = projector();
        let (a, b) = (order("o1", 3), order("o2", 2));
        let batch = [
            a[0].clone(),
            b[0].clone(),
            a[1].clone(),
            b[1].clone(),
            a[2].clone(),
        ];
        projector.project_batch(memory.append(&batch)).await;
        assert_eq!(memory.requests(), (0, 0, 2));
        assert_eq!(memory.view("o1"), replay(&a));
        assert_eq!(memory.view("o2"), replay(&b));
    }

    #[tokio::test]
    async fn an_order_this_instance_has_not_seen_is_read_once() {
        let (memory, projector) = projector();
        let events = order("o1", 4);
        memory.append(&events[..2]);
        memory
            .views
            .lock()
            .unwrap()
            .insert("o1".into(), replay(&events[..2]).unwrap());
        projector.project_batch(memory.append(&events[2..])).await;
        assert_eq!(memory.requests(), (0, 1, 1));
        assert_eq!(memory.view("o1"), replay(&events));
    }

    #[tokio::test]
    async fn a_stale_remembered_view_is_refused_forgotten_and_read_again() {
        let (memory, projector) = projector();
        let events = order("o1", 5);
        projector.project_batch(memory.append(&events[..1])).await;
        // Another instance got records 2 and 3 of this shard and wrote their view.
        memory.append(&events[1..3]);
        memory
            .views
            .lock()
            .unwrap()
            .insert("o1".into(), replay(&events[..3]).unwrap());
        // Record 2 comes here again (a retried batch): folded onto the remembered view 1, it
        // is view 2, which the table refuses, and the view is forgotten.
        projector.project_batch(changes(&events[1..2])).await;
        assert_eq!(memory.view("o1"), replay(&events[..3]), "never moved back");
        assert_eq!(memory.requests(), (0, 0, 2));
        // So record 4 reads the table's view 3 and folds onto it, with no stream read.
        projector.project_batch(memory.append(&events[3..4])).await;
        assert_eq!(memory.requests(), (0, 1, 3));
        assert_eq!(memory.view("o1"), replay(&events[..4]));
    }

    #[tokio::test]
    async fn a_remembered_view_behind_the_stream_is_filled_from_it() {
        let (memory, projector) = projector();
        let events = order("o1", 4);
        projector.project_batch(memory.append(&events[..1])).await;
        memory.append(&events[1..3]);
        memory
            .views
            .lock()
            .unwrap()
            .insert("o1".into(), replay(&events[..3]).unwrap());
        projector.project_batch(memory.append(&events[3..])).await;
        assert_eq!(
            memory.requests(),
            (1, 0, 2),
            "versions 2-3 read from the stream"
        );
        assert_eq!(memory.view("o1"), replay(&events));
    }

    #[tokio::test]
    async fn redelivered_records_change_nothing() {
        let (memory, projector) = projector();
        let events = order("o1", 3);
        let batch = memory.append(&events);
        projector.project_batch(batch.clone()).await;
        projector.project_batch(batch).await;
        assert_eq!(memory.requests(), (0, 0, 1), "known to be in the view");
        assert_eq!(memory.view("o1"), replay(&events));
    }

    #[tokio::test]
    async fn a_failed_write_retries_from_that_orders_first_record() {
        let (memory, projector) = projector();
        let (a, b) = (order("o1", 2), order("o2", 2));
        let batch = [b[0].clone(), a[0].clone(), a[1].clone(), b[1].clone()];
        let changes = memory.append(&batch);
        memory.fail_puts.store(1, Ordering::SeqCst);
        let response = projector.project_batch(changes.clone()).await;
        let failed = retried_from(&response).unwrap();
        let written = ["o1", "o2"].map(|o| memory.view(o).is_some());
        // One write failed: Lambda retries from the first record of that order.
        let expected = if written[0] { "seq-0" } else { "seq-1" };
        assert_eq!(failed, expected, "written: {written:?}");
        let at = changes
            .iter()
            .position(|c| c.sequence_number == failed)
            .unwrap();
        let response = projector.project_batch(changes[at..].to_vec()).await;
        assert_eq!(retried_from(&response), None);
        assert_eq!(memory.view("o1"), replay(&a));
        assert_eq!(memory.view("o2"), replay(&b));
    }

    #[tokio::test]
    async fn an_unreadable_record_stops_the_batch_after_writing_what_came_before() {
        let (memory, projector) = projector();
        let events = order("o1", 3);
        let mut batch = memory.append(&events);
        batch[2].event = Err(StoreError::Corrupt {
            stream_id: "order#o1".into(),
            version: 3,
            message: "bad".into(),
        });
        let response = projector.project_batch(batch).await;
        assert_eq!(retried_from(&response), Some("seq-2"));
        assert_eq!(memory.view("o1"), replay(&events[..2]));
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
