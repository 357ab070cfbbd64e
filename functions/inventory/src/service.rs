//! Handles one event for the inventory function.
//!
//! Exactly once: the reservation record is the order's first-writer-wins record (key
//! `orderId`, see [`eventkit::once`]), written in the same conditional transaction as the
//! stock it takes ([`crate::repository`]), so stock moves at most once per order, whether
//! the event is redelivered, a different event about the same order arrives, or a crash fell
//! between the write and the publish.
//!
//! The record also remembers what the first `OrderPlaced` said (its content digest): a
//! second `OrderPlaced` for the order that says the same is a duplicate and is answered from
//! the record; one that says something else is refused as `conflicting-duplicate`, with
//! nothing reserved and nothing published, so the first order keeps its stock and its answer.

use std::sync::Arc;
use std::time::Duration;

use contracts::{
    Event, InventoryOutOfStock, InventoryReleased, InventoryReserved, OrderPlaced, Shortage,
    StockLine,
};
use eventkit::envelope::format_time;
use eventkit::{
    Decided, DecodeError, Envelope, EventMetadata, FirstWrite, Handled, HandlerError, Invocation,
    Publish, Publisher, RetryPolicy,
};

use crate::decision::{
    merge_lines, plan_release, replay, reservation_id_for, shortages, NothingToRelease,
    ReleasePlan, Replay, ReservationStatus, MAX_SKUS_PER_RESERVATION,
};
use crate::repository::{
    DynamoInventoryRepository, InventoryRepository, Release, ReleaseRequest, Reservation, Reserve,
};

/// Tries at one write before handing the message back to SQS: a conflict with another
/// order's transaction usually clears within milliseconds, SQS retries take a minute.
const CONTENTION: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_delay: Duration::from_millis(40),
    max_delay: Duration::from_millis(320),
};

pub struct InventoryService {
    repository: Arc<dyn InventoryRepository>,
    publisher: Arc<dyn Publish<Event>>,
}

impl InventoryService {
    /// Reads `INVENTORY_TABLE`, `RESERVATIONS_TABLE` and `EVENT_BUS_NAME`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        use eventkit::aws::required_env;
        let dynamo = aws_sdk_dynamodb::Client::new(aws);
        Ok(InventoryService::new(
            Arc::new(DynamoInventoryRepository::new(
                dynamo,
                required_env("INVENTORY_TABLE")?,
                required_env("RESERVATIONS_TABLE")?,
            )),
            Arc::new(Publisher::new(
                aws_sdk_eventbridge::Client::new(aws),
                required_env("EVENT_BUS_NAME")?,
            )),
        ))
    }

    pub fn new(
        repository: Arc<dyn InventoryRepository>,
        publisher: Arc<dyn Publish<Event>>,
    ) -> Self {
        InventoryService {
            repository,
            publisher,
        }
    }

    /// Handles one event: `OrderPlaced` reserves, `ReleaseInventoryRequested` and
    /// `OrderCancelled` release. Anything else is misrouted and fails permanently.
    pub async fn handle(
        &self,
        event: Envelope<Event>,
        _invocation: Invocation,
    ) -> Result<Handled, HandlerError> {
        match &event.data {
            // The digest of the decoded event, whose payload is in the current schema: what
            // the order says, not which schema version its sender wrote it in.
            Event::OrderPlaced(order) => {
                self.reserve(&event.metadata, order, &event.content_digest())
                    .await
            }
            Event::ReleaseInventoryRequested(request) => {
                self.release(&event.metadata, &request.order_id, &request.reason)
                    .await
            }
            Event::OrderCancelled(cancelled) => {
                self.release(&event.metadata, &cancelled.order_id, &cancelled.reason)
                    .await
            }
            other => Err(DecodeError::not_routed(other).into()),
        }
    }

    /// Reserves every line of `order` or none, and answers `InventoryReserved` or
    /// `InventoryOutOfStock`; an order that already has a record is not reserved again.
    async fn reserve(
        &self,
        cause: &EventMetadata,
        order: &OrderPlaced,
        digest: &str,
    ) -> Result<Handled, HandlerError> {
        let lines = merge_lines(&order.lines);
        if lines.len() > MAX_SKUS_PER_RESERVATION {
            // Splitting would lose all-or-nothing; no retry can make it fit.
            return Err(HandlerError::permanent(
                "too-many-skus",
                format!(
                    "order {} has {} distinct SKUs; one reservation holds at most {}",
                    order.order_id,
                    lines.len(),
                    MAX_SKUS_PER_RESERVATION
                ),
            ));
        }
        let reserved = new_record(cause, &order.order_id, digest, lines);
        for attempt in 1..=CONTENTION.max_attempts {
            match self.repository.reserve(&reserved).await? {
                Reserve::Reserved => {
                    self.publisher
                        .publish(&[reserved_event(cause, &reserved)])
                        .await?;
                    tracing::info!(order_id = %reserved.order_id,
                        reservation_id = %reserved.reservation_id,
                        skus = reserved.lines.len(), "stock reserved");
                    return Ok(Handled::Processed);
                }
                Reserve::AlreadyRecorded => return self.answer_again(cause, order, digest).await,
                Reserve::Short => {
                    let skus: Vec<&str> = reserved.lines.iter().map(|l| l.sku.as_str()).collect();
                    let levels = self.repository.stock_levels(&skus).await?;
                    let short = shortages(&reserved.lines, &levels);
                    if !short.is_empty() {
                        return self
                            .record_out_of_stock(cause, &reserved, digest, short)
                            .await;
                    }
                    tracing::info!(attempt, order_id = %reserved.order_id,
                        "stock arrived between the reservation and the read; trying again");
                }
                Reserve::Conflict => {
                    tracing::warn!(attempt, order_id = %reserved.order_id,
                        "reservation raced another write; trying again");
                }
            }
            pause(attempt).await;
        }
        Err(HandlerError::transient(
            "stock-contention",
            format!(
                "order {}: stock kept changing over {} attempts",
                order.order_id, CONTENTION.max_attempts
            ),
        ))
    }

    async fn record_out_of_stock(
        &self,
        cause: &EventMetadata,
        attempted: &Reservation,
        digest: &str,
        short: Vec<Shortage>,
    ) -> Result<Handled, HandlerError> {
        // Recorded so that a redelivery answers the same even if stock arrives meanwhile,
        // and so that a later release finds nothing to give back.
        let record = Reservation {
            status: ReservationStatus::OutOfStock,
            shortages: short,
            ..attempted.clone()
        };
        let written = self.repository.record_once(&record).await?;
        match Decided::of(written, &cause.event_id) {
            Decided::First => {
                self.publisher
                    .publish(&[out_of_stock_event(cause, &record)])
                    .await?;
                tracing::info!(order_id = %record.order_id, shortages = ?record.shortages,
                    "out of stock; nothing reserved");
                Ok(Handled::Processed)
            }
            Decided::Again(existing) | Decided::DecidedBefore(existing) => {
                self.answer_existing(cause, digest, existing).await
            }
        }
    }

    async fn answer_again(
        &self,
        cause: &EventMetadata,
        order: &OrderPlaced,
        digest: &str,
    ) -> Result<Handled, HandlerError> {
        match self.repository.reservation(&order.order_id).await? {
            Some(existing) => self.answer_existing(cause, digest, existing).await,
            // Records are never deleted: a failed condition with no record is a store fault.
            None => Err(HandlerError::transient(
                "reservation-missing",
                format!(
                    "order {} has a reservation record but it cannot be read yet",
                    order.order_id
                ),
            )),
        }
    }

    /// Answers an `OrderPlaced` (`cause`, with content `digest`) from its order's record.
    async fn answer_existing(
        &self,
        cause: &EventMetadata,
        digest: &str,
        existing: Reservation,
    ) -> Result<Handled, HandlerError> {
        let decision = replay(
            existing.status,
            &existing.event_id,
            existing.order_digest.as_deref(),
            &cause.event_id,
            digest,
        );
        let event = match decision {
            Replay::Reserved => reserved_event(cause, &existing),
            Replay::OutOfStock => out_of_stock_event(cause, &existing),
            Replay::Nothing if existing.status == ReservationStatus::Cancelled => {
                tracing::info!(order_id = %existing.order_id, cancelled_by = %existing.event_id,
                    "order was released before it was reserved; reserving nothing");
                return Ok(Handled::Ignored);
            }
            Replay::Nothing => {
                tracing::warn!(order_id = %existing.order_id, status = existing.status.as_str(),
                    recorded_by = %existing.event_id,
                    "order already has a reservation record from another event; not reserving again");
                return Ok(Handled::Duplicate);
            }
            Replay::Conflicting => {
                // No retry can make the two orders agree: the DLQ is where someone decides.
                return Err(HandlerError::permanent(
                    "conflicting-duplicate",
                    format!(
                        "order {} was placed by event {} and event {} places it again with \
                         other content (digest {} != {}); nothing reserved",
                        existing.order_id,
                        existing.event_id,
                        cause.event_id,
                        short_digest(existing.order_digest.as_deref().unwrap_or_default()),
                        short_digest(digest),
                    ),
                ));
            }
        };
        // The same event as before (derived id): downstream deduplicates it if it got it.
        // Nothing was reserved again, so this is a duplicate, whether or not the first
        // publish had failed.
        self.publisher.publish(&[event]).await?;
        tracing::info!(order_id = %existing.order_id, status = existing.status.as_str(),
            "answer published again for a redelivered order");
        Ok(Handled::Duplicate)
    }

    /// Gives the order's held stock back, once, and answers `InventoryReleased`.
    async fn release(
        &self,
        cause: &EventMetadata,
        order_id: &str,
        reason: &str,
    ) -> Result<Handled, HandlerError> {
        let request = ReleaseRequest {
            event_id: cause.event_id.clone(),
            reason: reason.to_string(),
            at: format_time(&chrono::Utc::now()),
        };
        for attempt in 1..=CONTENTION.max_attempts {
            let Some(reservation) = self.repository.reservation(order_id).await? else {
                // The saga may compensate before this function has seen the order (both
                // react to the same events): leave a record so that a late OrderPlaced
                // reserves nothing instead of holding stock for a dead order.
                match self
                    .repository
                    .record_once(&cancelled_record(cause, order_id, &request))
                    .await?
                {
                    FirstWrite::Written => {
                        tracing::info!(
                            order_id,
                            reason,
                            "nothing reserved yet; the order is marked so it never will be"
                        );
                        return Ok(Handled::Ignored);
                    }
                    // OrderPlaced got there in between: decide again on what it wrote.
                    FirstWrite::Existing(_) => continue,
                }
            };
            match plan_release(
                reservation.status,
                reservation.release_event_id.as_deref(),
                &cause.event_id,
            ) {
                ReleasePlan::Release => {
                    match self.repository.release(&reservation, &request).await? {
                        Release::Released => {
                            self.publisher
                                .publish(&[released_event(cause, &reservation)])
                                .await?;
                            tracing::info!(order_id, reservation_id = %reservation.reservation_id,
                            reason, "reservation released");
                            return Ok(Handled::Processed);
                        }
                        // Released by someone else since the read: read again and decide again.
                        Release::NotReserved => continue,
                        Release::Conflict => {
                            tracing::warn!(
                                attempt,
                                order_id,
                                "release raced another write; trying again"
                            );
                        }
                    }
                }
                ReleasePlan::Republish => {
                    self.publisher
                        .publish(&[released_event(cause, &reservation)])
                        .await?;
                    tracing::info!(
                        order_id,
                        "release published again for a redelivered request"
                    );
                    return Ok(Handled::Duplicate);
                }
                ReleasePlan::Nothing(why) => {
                    tracing::info!(order_id, ?why, "nothing to release");
                    return Ok(match why {
                        NothingToRelease::OutOfStock | NothingToRelease::NeverReserved => {
                            Handled::Ignored
                        }
                        NothingToRelease::ReleasedByAnother => Handled::Duplicate,
                    });
                }
            }
            pause(attempt).await;
        }
        Err(HandlerError::transient(
            "reservation-contention",
            format!(
                "order {order_id}: the reservation kept changing over {} attempts",
                CONTENTION.max_attempts
            ),
        ))
    }
}

/// A jittered wait before another attempt, so that racing writers spread out.
async fn pause(attempt: u32) {
    if CONTENTION.allows_another(attempt) {
        tokio::time::sleep(CONTENTION.delay(attempt)).await;
    }
}

/// Enough of a digest to tell two apart in a DLQ message.
fn short_digest(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

fn new_record(
    cause: &EventMetadata,
    order_id: &str,
    digest: &str,
    lines: Vec<StockLine>,
) -> Reservation {
    Reservation {
        order_id: order_id.to_string(),
        reservation_id: reservation_id_for(order_id),
        status: ReservationStatus::Reserved,
        lines,
        shortages: Vec::new(),
        event_id: cause.event_id.clone(),
        order_digest: Some(digest.to_string()),
        correlation_id: cause.correlation_id.clone(),
        recorded_at: format_time(&chrono::Utc::now()),
        released_at: None,
        release_event_id: None,
        release_reason: None,
    }
}

/// The record of an order released before it reserved anything.
fn cancelled_record(
    cause: &EventMetadata,
    order_id: &str,
    request: &ReleaseRequest,
) -> Reservation {
    Reservation {
        order_id: order_id.to_string(),
        reservation_id: reservation_id_for(order_id),
        status: ReservationStatus::Cancelled,
        lines: Vec::new(),
        shortages: Vec::new(),
        event_id: cause.event_id.clone(),
        // No OrderPlaced decided a tombstone: whatever one says later, it reserves nothing.
        order_digest: None,
        correlation_id: cause.correlation_id.clone(),
        recorded_at: request.at.clone(),
        released_at: Some(request.at.clone()),
        release_event_id: Some(request.event_id.clone()),
        release_reason: Some(request.reason.clone()),
    }
}

fn reserved_event(cause: &EventMetadata, r: &Reservation) -> Envelope<Event> {
    Envelope::caused_by(
        cause,
        &r.reservation_id,
        Event::InventoryReserved(InventoryReserved {
            order_id: r.order_id.clone(),
            reservation_id: r.reservation_id.clone(),
            lines: r.lines.clone(),
        }),
    )
}

fn out_of_stock_event(cause: &EventMetadata, r: &Reservation) -> Envelope<Event> {
    Envelope::caused_by(
        cause,
        &r.reservation_id,
        Event::InventoryOutOfStock(InventoryOutOfStock {
            order_id: r.order_id.clone(),
            shortages: r.shortages.clone(),
        }),
    )
}

fn released_event(cause: &EventMetadata, r: &Reservation) -> Envelope<Event> {
    Envelope::caused_by(
        cause,
        &r.reservation_id,
        Event::InventoryReleased(InventoryReleased {
            order_id: r.order_id.clone(),
            reservation_id: r.reservation_id.clone(),
            lines: r.lines.clone(),
        }),
    )
}

#[cfg(test)]
mod tests {
    //! `handle` against the in-memory tables (with the DynamoDB adapter's conditions) and a
    //! bus that fails on demand: exactly once across redeliveries and crashes between the
    //! write and the publish.

    use std::collections::HashMap;

    use contracts::{Currency, OrderCancelled, OrderLine, ReleaseInventoryRequested};
    use eventkit::envelope::derived_event_id;
    use eventkit::testing::{invocation, MemoryBus};

    use super::*;
    use crate::repository::memory::MemoryInventory;

    /// One inventory function with its tables and the bus.
    struct Inventory {
        tables: Arc<MemoryInventory>,
        bus: Arc<MemoryBus<Event>>,
        service: InventoryService,
    }

    fn given_stock(levels: &[(&str, i64)]) -> Inventory {
        let tables = Arc::new(MemoryInventory::with_stock(levels));
        let bus = MemoryBus::new();
        let service = InventoryService::new(tables.clone(), bus.clone());
        Inventory {
            tables,
            bus,
            service,
        }
    }

    impl Inventory {
        async fn when(&self, event: &Envelope<Event>) -> Result<Handled, HandlerError> {
            self.service.handle(event.clone(), invocation()).await
        }

        fn stock(&self) -> HashMap<String, i64> {
            self.tables.stock()
        }

        fn record(&self, order_id: &str) -> Reservation {
            self.tables.record(order_id).expect("a reservation record")
        }

        /// (event id, causation id) of everything published, in order.
        fn published_ids(&self) -> Vec<(String, Option<String>)> {
            self.bus
                .published()
                .into_iter()
                .map(|e| (e.metadata.event_id, e.metadata.causation_id))
                .collect()
        }
    }

    fn stock(levels: &[(&str, i64)]) -> HashMap<String, i64> {
        levels.iter().map(|(s, l)| (s.to_string(), *l)).collect()
    }

    fn event(event_id: &str, data: impl Into<Event>) -> Envelope<Event> {
        let mut envelope = Envelope::new(data.into());
        envelope.metadata.event_id = event_id.into();
        envelope.metadata.correlation_id = "checkout-1".into();
        envelope
    }

    fn order_placed(event_id: &str, order_id: &str, lines: &[(&str, u32)]) -> Envelope<Event> {
        let lines: Vec<OrderLine> = lines
            .iter()
            .map(|(sku, quantity)| OrderLine {
                sku: sku.to_string(),
                quantity: *quantity,
                unit_price: 100,
            })
            .collect();
        event(
            event_id,
            OrderPlaced {
                order_id: order_id.into(),
                customer_id: "cus-1".into(),
                customer_email: "ada@example.com".into(),
                currency: Currency::try_from("EUR".to_string()).unwrap(),
                total: lines.iter().map(|l| 100 * u64::from(l.quantity)).sum(),
                lines,
                payment_token: "tok_visa".into(),
                shipping_address: Some(contracts::ShippingAddress {
                    line1: "1 Main Street".into(),
                    city: "Lyon".into(),
                    postal_code: "69001".into(),
                    country: contracts::Country::try_from("FR".to_string()).unwrap(),
                }),
            },
        )
    }

    fn release_requested(event_id: &str, order_id: &str, reason: &str) -> Envelope<Event> {
        event(
            event_id,
            ReleaseInventoryRequested {
                order_id: order_id.into(),
                reason: reason.into(),
            },
        )
    }

    fn order_cancelled(event_id: &str, order_id: &str, reason: &str) -> Envelope<Event> {
        event(
            event_id,
            OrderCancelled {
                order_id: order_id.into(),
                customer_id: "cus-1".into(),
                customer_email: "ada@example.com".into(),
                reason: reason.into(),
            },
        )
    }

    type ReleaseEvent = fn(&str, &str, &str) -> Envelope<Event>;

    /// The two ways the saga asks for stock back; each release scenario runs with both.
    const RELEASES: [(&str, ReleaseEvent); 2] = [
        ("ReleaseInventoryRequested", release_requested),
        ("OrderCancelled", order_cancelled),
    ];

    fn line(sku: &str, quantity: u32) -> StockLine {
        StockLine {
            sku: sku.into(),
            quantity,
        }
    }

    fn reserved(order_id: &str, lines: Vec<StockLine>) -> Event {
        Event::InventoryReserved(InventoryReserved {
            order_id: order_id.into(),
            reservation_id: reservation_id_for(order_id),
            lines,
        })
    }

    fn released(order_id: &str, lines: Vec<StockLine>) -> Event {
        Event::InventoryReleased(InventoryReleased {
            order_id: order_id.into(),
            reservation_id: reservation_id_for(order_id),
            lines,
        })
    }

    fn shortage(sku: &str, requested: u32, available: u32) -> Shortage {
        Shortage {
            sku: sku.into(),
            requested,
            available,
        }
    }

    /// The id every answer to `cause` about `order_id` carries, however often it is sent.
    fn answer_id(cause: &str, detail_type: &str, order_id: &str) -> (String, Option<String>) {
        (
            derived_event_id(cause, detail_type, &reservation_id_for(order_id)),
            Some(cause.to_string()),
        )
    }

    #[tokio::test]
    async fn an_order_placed_reserves_every_line_merged_by_sku() {
        let inventory = given_stock(&[("MUG", 5), ("TEA", 2)]);

        let handled = inventory
            .when(&order_placed(
                "e1",
                "ord-1",
                &[("MUG", 2), ("TEA", 1), ("MUG", 1)],
            ))
            .await;

        assert_eq!(handled.unwrap(), Handled::Processed);
        assert_eq!(
            inventory.bus.events(),
            vec![reserved("ord-1", vec![line("MUG", 3), line("TEA", 1)])]
        );
        let published = &inventory.bus.published()[0];
        assert_eq!(published.source, contracts::sources::INVENTORY);
        assert_eq!(published.metadata.correlation_id, "checkout-1");
        assert_eq!(
            inventory.published_ids(),
            vec![answer_id("e1", "InventoryReserved", "ord-1")]
        );
        assert_eq!(inventory.stock(), stock(&[("MUG", 2), ("TEA", 1)]));
        let record = inventory.record("ord-1");
        assert_eq!(
            (record.status, record.event_id.as_str()),
            (ReservationStatus::Reserved, "e1")
        );
    }

    #[tokio::test]
    async fn an_order_short_on_any_line_reserves_nothing_and_names_every_shortage() {
        let inventory = given_stock(&[("MUG", 5), ("TEA", 1)]);

        let handled = inventory
            .when(&order_placed(
                "e1",
                "ord-1",
                &[("MUG", 2), ("TEA", 3), ("LAMP", 1)],
            ))
            .await;

        assert_eq!(handled.unwrap(), Handled::Processed);
        assert_eq!(
            inventory.bus.events(),
            vec![Event::InventoryOutOfStock(InventoryOutOfStock {
                order_id: "ord-1".into(),
                // An unknown SKU has no stock at all.
                shortages: vec![shortage("TEA", 3, 1), shortage("LAMP", 1, 0)],
            })]
        );
        assert_eq!(inventory.stock(), stock(&[("MUG", 5), ("TEA", 1)]));
        assert_eq!(
            inventory.record("ord-1").status,
            ReservationStatus::OutOfStock
        );
    }

    #[tokio::test]
    async fn a_redelivered_out_of_stock_order_answers_the_same_after_a_restock() {
        let inventory = given_stock(&[("MUG", 1)]);
        let order = order_placed("e1", "ord-1", &[("MUG", 2)]);
        inventory.when(&order).await.unwrap();
        inventory.tables.set_stock("MUG", 10);

        let handled = inventory.when(&order).await;

        assert_eq!(handled.unwrap(), Handled::Duplicate);
        let answer = Event::InventoryOutOfStock(InventoryOutOfStock {
            order_id: "ord-1".into(),
            shortages: vec![shortage("MUG", 2, 1)],
        });
        assert_eq!(inventory.bus.events(), vec![answer.clone(), answer]);
        let id = answer_id("e1", "InventoryOutOfStock", "ord-1");
        assert_eq!(inventory.published_ids(), vec![id.clone(), id]);
        assert_eq!(
            inventory.stock(),
            stock(&[("MUG", 10)]),
            "still nothing taken"
        );
    }

    #[tokio::test]
    async fn another_order_placed_for_a_recorded_order_does_nothing() {
        let inventory = given_stock(&[("MUG", 5)]);
        inventory
            .when(&order_placed("e1", "ord-1", &[("MUG", 2)]))
            .await
            .unwrap();

        let second = inventory
            .when(&order_placed("e2", "ord-1", &[("MUG", 2)]))
            .await;

        assert_eq!(second.unwrap(), Handled::Duplicate);
        assert_eq!(
            inventory.bus.events(),
            vec![reserved("ord-1", vec![line("MUG", 2)])]
        );
        assert_eq!(inventory.stock(), stock(&[("MUG", 3)]));
        assert_eq!(inventory.record("ord-1").event_id, "e1");
    }

    #[tokio::test]
    async fn every_record_an_order_placed_writes_keeps_its_digest() {
        let inventory = given_stock(&[("MUG", 2)]);
        let reserved = order_placed("e1", "ord-1", &[("MUG", 2)]);
        let short = order_placed("e2", "ord-2", &[("MUG", 1), ("TEA", 1)]);

        inventory.when(&reserved).await.unwrap();
        inventory.when(&short).await.unwrap();
        inventory
            .when(&release_requested("r1", "ord-1", "payment-failed"))
            .await
            .unwrap();
        inventory
            .when(&release_requested("r2", "ord-3", "payment-failed"))
            .await
            .unwrap();

        let digest = |order_id: &str| inventory.record(order_id).order_digest;
        assert_eq!(digest("ord-1"), Some(reserved.content_digest()), "released");
        assert_eq!(
            digest("ord-2"),
            Some(short.content_digest()),
            "out of stock"
        );
        assert_eq!(digest("ord-3"), None, "a tombstone: no order decided it");
    }

    #[tokio::test]
    async fn a_second_order_placed_with_other_content_is_refused_and_changes_nothing() {
        let inventory = given_stock(&[("MUG", 5), ("TEA", 5)]);
        inventory
            .when(&order_placed("e1", "ord-1", &[("MUG", 2)]))
            .await
            .unwrap();

        let err = inventory
            .when(&order_placed("e2", "ord-1", &[("MUG", 2), ("TEA", 1)]))
            .await
            .unwrap_err();

        assert!(err.is_permanent(), "{err}");
        assert_eq!(err.reason, "conflicting-duplicate");
        let message = err.to_string();
        for named in ["ord-1", "event e1", "event e2"] {
            assert!(message.contains(named), "{named} in {message}");
        }
        assert_eq!(
            inventory.bus.events(),
            vec![reserved("ord-1", vec![line("MUG", 2)])],
            "nothing more published"
        );
        assert_eq!(inventory.stock(), stock(&[("MUG", 3), ("TEA", 5)]));
        let record = inventory.record("ord-1");
        assert_eq!(record.event_id, "e1");
        assert_eq!(record.lines, vec![line("MUG", 2)]);
    }

    #[tokio::test]
    async fn an_order_placed_with_other_content_is_refused_whatever_the_record_says() {
        // (how the record came about, the conflicting event's id)
        for (state, event_id) in [
            ("out of stock", "e1"),
            ("out of stock", "e2"),
            ("released", "e1"),
            ("released", "e2"),
        ] {
            let inventory = given_stock(&[("MUG", 1)]);
            let first = match state {
                "out of stock" => order_placed("e1", "ord-1", &[("MUG", 2)]),
                _ => order_placed("e1", "ord-1", &[("MUG", 1)]),
            };
            inventory.when(&first).await.unwrap();
            if state == "released" {
                inventory
                    .when(&order_cancelled("r1", "ord-1", "payment-failed"))
                    .await
                    .unwrap();
            }
            let published = inventory.bus.events().len();

            // Same event id or not: what it says is not what the record was decided on.
            let err = inventory
                .when(&order_placed(event_id, "ord-1", &[("MUG", 3)]))
                .await
                .unwrap_err();

            assert_eq!(err.reason, "conflicting-duplicate", "{state} {event_id}");
            assert!(err.is_permanent(), "{state} {event_id}");
            assert_eq!(
                inventory.bus.events().len(),
                published,
                "{state} {event_id}"
            );
            assert_eq!(
                inventory.stock(),
                stock(&[("MUG", 1)]),
                "{state} {event_id}"
            );
        }
    }

    #[tokio::test]
    async fn a_record_written_before_digests_were_kept_answers_as_before() {
        let inventory = given_stock(&[("MUG", 3)]);
        let legacy = Reservation {
            order_digest: None,
            ..new_record(
                &order_placed("e1", "ord-1", &[("MUG", 2)]).metadata,
                "ord-1",
                "unused",
                vec![line("MUG", 2)],
            )
        };
        inventory.tables.put_record(legacy);

        // Its order's content is unknown: a redelivery is answered from the record, and
        // another event for the order is a duplicate, as before.
        let redelivered = inventory
            .when(&order_placed("e1", "ord-1", &[("MUG", 2)]))
            .await;
        let other = inventory
            .when(&order_placed("e2", "ord-1", &[("MUG", 1)]))
            .await;

        assert_eq!(redelivered.unwrap(), Handled::Duplicate);
        assert_eq!(other.unwrap(), Handled::Duplicate);
        assert_eq!(
            inventory.bus.events(),
            vec![reserved("ord-1", vec![line("MUG", 2)])]
        );
        assert_eq!(inventory.stock(), stock(&[("MUG", 3)]), "nothing taken");
    }

    #[tokio::test]
    async fn a_bus_failure_after_reserving_publishes_the_same_event_on_redelivery() {
        let inventory = given_stock(&[("MUG", 5)]);
        let order = order_placed("e1", "ord-1", &[("MUG", 2)]);
        inventory.bus.fail_next(1);

        let failed = inventory.when(&order).await.unwrap_err();
        assert!(!failed.is_permanent(), "{failed}");
        assert_eq!(
            inventory.stock(),
            stock(&[("MUG", 3)]),
            "the write happened"
        );
        assert!(inventory.bus.events().is_empty());

        let redelivered = inventory.when(&order).await;

        // Nothing reserved again; the redelivery adds the publish that failed.
        assert_eq!(redelivered.unwrap(), Handled::Duplicate);
        assert_eq!(
            inventory.bus.events(),
            vec![reserved("ord-1", vec![line("MUG", 2)])]
        );
        assert_eq!(
            inventory.published_ids(),
            vec![answer_id("e1", "InventoryReserved", "ord-1")]
        );
        assert_eq!(inventory.stock(), stock(&[("MUG", 3)]), "not taken twice");
    }

    #[tokio::test]
    async fn the_same_order_placed_delivered_twice_reserves_once_and_republishes_its_answer() {
        let inventory = given_stock(&[("MUG", 5)]);
        let order = order_placed("e1", "ord-1", &[("MUG", 2)]);
        inventory.when(&order).await.unwrap();

        let handled = inventory.when(&order).await;

        assert_eq!(handled.unwrap(), Handled::Duplicate);
        let answer = reserved("ord-1", vec![line("MUG", 2)]);
        assert_eq!(inventory.bus.events(), vec![answer.clone(), answer]);
        let id = answer_id("e1", "InventoryReserved", "ord-1");
        assert_eq!(inventory.published_ids(), vec![id.clone(), id]);
        assert_eq!(inventory.stock(), stock(&[("MUG", 3)]));
    }

    #[tokio::test]
    async fn transaction_conflicts_are_retried_a_few_times_then_handed_back_to_sqs() {
        let inventory = given_stock(&[("MUG", 5)]);
        inventory.tables.conflict_next(CONTENTION.max_attempts - 1);
        let handled = inventory
            .when(&order_placed("e1", "ord-1", &[("MUG", 1)]))
            .await;
        assert_eq!(handled.unwrap(), Handled::Processed);

        inventory.tables.conflict_next(CONTENTION.max_attempts);
        let err = inventory
            .when(&order_placed("e2", "ord-2", &[("MUG", 1)]))
            .await
            .unwrap_err();

        assert!(!err.is_permanent());
        assert_eq!(err.reason, "stock-contention");
        assert_eq!(
            inventory.bus.events(),
            vec![reserved("ord-1", vec![line("MUG", 1)])]
        );
        assert_eq!(inventory.stock(), stock(&[("MUG", 4)]));
        assert!(inventory.tables.record("ord-2").is_none());
    }

    #[tokio::test]
    async fn an_order_with_more_skus_than_one_transaction_holds_fails_permanently() {
        let skus: Vec<String> = (0..=MAX_SKUS_PER_RESERVATION)
            .map(|i| format!("SKU-{i}"))
            .collect();
        let levels: Vec<(&str, i64)> = skus.iter().map(|s| (s.as_str(), 1)).collect();
        let lines: Vec<(&str, u32)> = skus.iter().map(|s| (s.as_str(), 1)).collect();
        let inventory = given_stock(&levels);

        let err = inventory
            .when(&order_placed("e1", "ord-1", &lines))
            .await
            .unwrap_err();

        assert!(err.is_permanent());
        assert_eq!(err.reason, "too-many-skus");
        assert_eq!(inventory.stock(), stock(&levels));
        assert!(inventory.bus.events().is_empty());
    }

    #[tokio::test]
    async fn a_release_gives_the_stock_back_once() {
        for (kind, release) in RELEASES {
            let inventory = given_stock(&[("MUG", 5), ("TEA", 3)]);
            inventory
                .when(&order_placed("e1", "ord-1", &[("MUG", 2), ("TEA", 3)]))
                .await
                .unwrap();
            let request = release("r1", "ord-1", "payment-failed");

            let handled = inventory.when(&request).await;

            assert_eq!(handled.unwrap(), Handled::Processed, "{kind}");
            let lines = vec![line("MUG", 2), line("TEA", 3)];
            assert_eq!(
                inventory.bus.events(),
                vec![reserved("ord-1", lines.clone()), released("ord-1", lines)],
                "{kind}"
            );
            assert_eq!(
                inventory.published_ids()[1],
                answer_id("r1", "InventoryReleased", "ord-1"),
                "{kind}"
            );
            assert_eq!(
                inventory.stock(),
                stock(&[("MUG", 5), ("TEA", 3)]),
                "{kind}"
            );
            let record = inventory.record("ord-1");
            assert_eq!(record.status, ReservationStatus::Released, "{kind}");
            assert_eq!(record.release_event_id.as_deref(), Some("r1"), "{kind}");
            assert_eq!(
                record.release_reason.as_deref(),
                Some("payment-failed"),
                "{kind}"
            );

            // The same request again, then the saga's other request for the same order.
            assert_eq!(
                inventory.when(&request).await.unwrap(),
                Handled::Duplicate,
                "{kind}"
            );
            let other = order_cancelled("r2", "ord-1", "payment-failed");
            assert_eq!(
                inventory.when(&other).await.unwrap(),
                Handled::Duplicate,
                "{kind}"
            );
            // The redelivered request publishes the same release again (same id); the
            // other request publishes nothing.
            assert_eq!(inventory.bus.events().len(), 3, "{kind}: nothing more");
            assert_eq!(
                inventory.published_ids()[2],
                inventory.published_ids()[1],
                "{kind}"
            );
            assert_eq!(
                inventory.stock(),
                stock(&[("MUG", 5), ("TEA", 3)]),
                "{kind}"
            );
            assert_eq!(
                inventory.record("ord-1").release_event_id.as_deref(),
                Some("r1")
            );
        }
    }

    #[tokio::test]
    async fn a_bus_failure_after_releasing_publishes_the_same_release_on_redelivery() {
        for (kind, release) in RELEASES {
            let inventory = given_stock(&[("MUG", 5)]);
            inventory
                .when(&order_placed("e1", "ord-1", &[("MUG", 2)]))
                .await
                .unwrap();
            let request = release("r1", "ord-1", "fraud-suspected");
            inventory.bus.fail_next(1);

            let failed = inventory.when(&request).await.unwrap_err();
            assert!(!failed.is_permanent(), "{kind}: {failed}");
            assert_eq!(
                inventory.stock(),
                stock(&[("MUG", 5)]),
                "{kind}: given back"
            );

            let redelivered = inventory.when(&request).await;

            assert_eq!(redelivered.unwrap(), Handled::Duplicate, "{kind}");
            assert_eq!(
                inventory.bus.events(),
                vec![
                    reserved("ord-1", vec![line("MUG", 2)]),
                    released("ord-1", vec![line("MUG", 2)])
                ],
                "{kind}"
            );
            assert_eq!(
                inventory.published_ids()[1],
                answer_id("r1", "InventoryReleased", "ord-1"),
                "{kind}"
            );
            assert_eq!(
                inventory.stock(),
                stock(&[("MUG", 5)]),
                "{kind}: not given back twice"
            );
        }
    }

    #[tokio::test]
    async fn an_order_placed_redelivered_after_its_release_answers_nothing() {
        let inventory = given_stock(&[("MUG", 5)]);
        let order = order_placed("e1", "ord-1", &[("MUG", 2)]);
        inventory.when(&order).await.unwrap();
        inventory
            .when(&release_requested("r1", "ord-1", "payment-failed"))
            .await
            .unwrap();

        let handled = inventory.when(&order).await;

        assert_eq!(handled.unwrap(), Handled::Duplicate);
        assert_eq!(inventory.bus.events().len(), 2, "reserved, released");
        assert_eq!(inventory.stock(), stock(&[("MUG", 5)]));
    }

    #[tokio::test]
    async fn a_release_for_an_order_that_got_no_stock_gives_nothing_back() {
        for (kind, release) in RELEASES {
            let inventory = given_stock(&[("MUG", 1)]);
            inventory
                .when(&order_placed("e1", "ord-1", &[("MUG", 2)]))
                .await
                .unwrap();

            let handled = inventory
                .when(&release("r1", "ord-1", "out-of-stock"))
                .await;

            assert_eq!(handled.unwrap(), Handled::Ignored, "{kind}");
            assert_eq!(
                inventory.bus.events(),
                vec![Event::InventoryOutOfStock(InventoryOutOfStock {
                    order_id: "ord-1".into(),
                    shortages: vec![shortage("MUG", 2, 1)],
                })],
                "{kind}: no InventoryReleased"
            );
            assert_eq!(inventory.stock(), stock(&[("MUG", 1)]), "{kind}");
            assert_eq!(
                inventory.record("ord-1").status,
                ReservationStatus::OutOfStock,
                "{kind}"
            );
        }
    }

    #[tokio::test]
    async fn an_order_released_before_it_was_placed_never_takes_stock() {
        for (kind, release) in RELEASES {
            let inventory = given_stock(&[("MUG", 5)]);
            let request = release("r1", "ord-1", "payment-failed");

            let handled = inventory.when(&request).await;

            assert_eq!(handled.unwrap(), Handled::Ignored, "{kind}");
            let record = inventory.record("ord-1");
            assert_eq!(record.status, ReservationStatus::Cancelled, "{kind}");
            assert_eq!(record.event_id, "r1", "{kind}");
            assert!(record.lines.is_empty(), "{kind}");

            // The OrderPlaced arrives late, then the request is redelivered past its record.
            let late = inventory
                .when(&order_placed("e1", "ord-1", &[("MUG", 2)]))
                .await;
            assert_eq!(late.unwrap(), Handled::Ignored, "{kind}");
            let again = inventory.when(&request).await;
            assert_eq!(again.unwrap(), Handled::Ignored, "{kind}");

            assert_eq!(inventory.stock(), stock(&[("MUG", 5)]), "{kind}");
            assert!(
                inventory.bus.events().is_empty(),
                "{kind}: nothing to announce"
            );
        }
    }

    #[tokio::test]
    async fn events_not_routed_here_are_refused_and_change_nothing() {
        let inventory = given_stock(&[("MUG", 5)]);
        let foreign = event(
            "x1",
            InventoryReserved {
                order_id: "ord-1".into(),
                reservation_id: reservation_id_for("ord-1"),
                lines: vec![line("MUG", 2)],
            },
        );

        let err = inventory.when(&foreign).await.unwrap_err();

        assert!(err.is_permanent());
        assert_eq!(err.reason, "not-routed");
        assert_eq!(inventory.stock(), stock(&[("MUG", 5)]));
        assert!(inventory.bus.events().is_empty());
    }

    #[test]
    fn intake_refuses_invalid_orders_and_orders_from_other_sources() {
        let order = order_placed("e1", "ord-1", &[("MUG", 2)]);
        let admitted = eventkit::take_in::<Event>(crate::ROUTES, &order.to_raw()).unwrap();
        assert_eq!(admitted.data, order.data);

        // Validation runs once, at intake: a total that does not add up never reaches
        // `handle` (it used to be refused there as `invalid-order`).
        let mut bad_total = order.to_raw();
        bad_total.data["total"] = 1.into();
        let err = eventkit::take_in::<Event>(crate::ROUTES, &bad_total).unwrap_err();
        assert_eq!(err.reason(), "invalid-data");

        let mut forged = order.to_raw();
        forged.source = contracts::sources::SAGA.into();
        let err = eventkit::take_in::<Event>(crate::ROUTES, &forged).unwrap_err();
        assert_eq!(err.reason(), "untrusted-source");

        let release = release_requested("r1", " ", "payment-failed").to_raw();
        let err = eventkit::take_in::<Event>(crate::ROUTES, &release).unwrap_err();
        assert_eq!(err.reason(), "invalid-data");
    }
}
