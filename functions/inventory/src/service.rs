//! Handles one event for the inventory function.
//!
//! Exactly once, in two layers: the idempotency record turns a redelivery into a cheap
//! duplicate, and the conditional transactions in [`crate::repository`] make sure stock moves
//! at most once per order even when the idempotency record is gone (expired, or removed
//! after a failed publish). Every published event has an id derived from its cause, so
//! publishing again after a crash between the write and the publish is the same event.

use std::time::Duration;

use contracts::{
    sources, InventoryOutOfStock, InventoryReleased, InventoryReserved, OrderCancelled,
    OrderPlaced, ReleaseInventoryRequested,
};
use eventkit::envelope::format_time;
use eventkit::publisher::PutEventsTransport;
use eventkit::{
    DecodeError, Envelope, EventData, EventMetadata, Handled, HandlerError, Idempotency,
    Invocation, Publisher, RawEvent,
};

use crate::decision::{
    merge_lines, plan_release, replay, reservation_id_for, shortages, NothingToRelease,
    ReleasePlan, Replay, ReservationStatus, MAX_SKUS_PER_RESERVATION,
};
use crate::repository::{
    DynamoInventoryRepository, InventoryRepository, Recorded, Release, ReleaseRequest, Reservation,
    Reserve,
};

/// Tries at one write before handing the message back to SQS: a conflict with another
/// order's transaction usually clears within milliseconds, SQS retries take a minute.
const ATTEMPTS: u32 = 3;

pub struct InventoryService<R = DynamoInventoryRepository, T = aws_sdk_eventbridge::Client> {
    repository: R,
    publisher: Publisher<T>,
    idempotency: Idempotency,
}

impl InventoryService {
    /// Reads `INVENTORY_TABLE`, `RESERVATIONS_TABLE`, `IDEMPOTENCY_TABLE` and
    /// `EVENT_BUS_NAME`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        use eventkit::aws::required_env;
        let dynamo = aws_sdk_dynamodb::Client::new(aws);
        Ok(InventoryService::new(
            DynamoInventoryRepository::new(
                dynamo.clone(),
                required_env("INVENTORY_TABLE")?,
                required_env("RESERVATIONS_TABLE")?,
            ),
            Publisher::new(
                aws_sdk_eventbridge::Client::new(aws),
                required_env("EVENT_BUS_NAME")?,
            ),
            Idempotency::new(dynamo, required_env("IDEMPOTENCY_TABLE")?, "inventory"),
        ))
    }
}

impl<R: InventoryRepository, T: PutEventsTransport> InventoryService<R, T> {
    pub fn new(repository: R, publisher: Publisher<T>, idempotency: Idempotency) -> Self {
        InventoryService {
            repository,
            publisher,
            idempotency,
        }
    }

    /// Handles one event: `OrderPlaced` reserves, `ReleaseInventoryRequested` and
    /// `OrderCancelled` release. Anything else is misrouted and fails permanently.
    pub async fn handle(
        &self,
        event: RawEvent,
        invocation: Invocation,
    ) -> Result<Handled, HandlerError> {
        match event.detail_type.as_str() {
            OrderPlaced::DETAIL_TYPE => {
                let order = event.decode::<OrderPlaced>()?;
                self.idempotency
                    .handle_once(&order.metadata, &order.data, &invocation, || {
                        self.reserve(&order)
                    })
                    .await
            }
            ReleaseInventoryRequested::DETAIL_TYPE => {
                let request = event.decode::<ReleaseInventoryRequested>()?;
                self.idempotency
                    .handle_once(&request.metadata, &request.data, &invocation, || {
                        self.release(
                            &request.metadata,
                            &request.data.order_id,
                            &request.data.reason,
                        )
                    })
                    .await
            }
            OrderCancelled::DETAIL_TYPE => {
                let cancelled = event.decode::<OrderCancelled>()?;
                self.idempotency
                    .handle_once(&cancelled.metadata, &cancelled.data, &invocation, || {
                        self.release(
                            &cancelled.metadata,
                            &cancelled.data.order_id,
                            &cancelled.data.reason,
                        )
                    })
                    .await
            }
            other => Err(DecodeError::UnknownType(other.to_string()).into()),
        }
    }
    /// Reserves every line of `order` or none, and answers `InventoryReserved` or
    /// `InventoryOutOfStock`; an order that already has a record is not reserved again.
    async fn reserve(&self, order: &Envelope<OrderPlaced>) -> Result<Handled, HandlerError> {
        order
            .data
            .validate()
            .map_err(|e| HandlerError::permanent("invalid-order", e))?;
        let lines = merge_lines(&order.data.lines);
        if lines.len() > MAX_SKUS_PER_RESERVATION {
            // Splitting would lose all-or-nothing; no retry can make it fit.
            return Err(HandlerError::permanent(
                "too-many-skus",
                format!(
                    "order {} has {} distinct SKUs; one reservation holds at most {}",
                    order.data.order_id,
                    lines.len(),
                    MAX_SKUS_PER_RESERVATION
                ),
            ));
        }
        let reserved = new_record(order, lines);
        for attempt in 1..=ATTEMPTS {
            match self.repository.reserve(&reserved).await? {
                Reserve::Reserved => {
                    self.publisher
                        .publish(&[reserved_event(&order.metadata, &reserved)])
                        .await?;
                    tracing::info!(order_id = %reserved.order_id,
                        reservation_id = %reserved.reservation_id,
                        skus = reserved.lines.len(), "stock reserved");
                    return Ok(Handled::Processed);
                }
                Reserve::AlreadyRecorded => return self.answer_again(order).await,
                Reserve::Short => {
                    let skus: Vec<&str> = reserved.lines.iter().map(|l| l.sku.as_str()).collect();
                    let levels = self.repository.stock_levels(&skus).await?;
                    let short = shortages(&reserved.lines, &levels);
                    if !short.is_empty() {
                        return self.record_out_of_stock(order, &reserved, short).await;
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
                "order {}: stock kept changing over {ATTEMPTS} attempts",
                order.data.order_id
            ),
        ))
    }

    async fn record_out_of_stock(
        &self,
        order: &Envelope<OrderPlaced>,
        attempted: &Reservation,
        short: Vec<contracts::Shortage>,
    ) -> Result<Handled, HandlerError> {
        // Recorded so that a redelivery answers the same even if stock arrives meanwhile,
        // and so that a later release finds nothing to give back.
        let record = Reservation {
            status: ReservationStatus::OutOfStock,
            shortages: short,
            ..attempted.clone()
        };
        match self.repository.record_once(&record).await? {
            Recorded::Created => {
                self.publisher
                    .publish(&[out_of_stock_event(&order.metadata, &record)])
                    .await?;
                tracing::info!(order_id = %record.order_id, shortages = ?record.shortages,
                    "out of stock; nothing reserved");
                Ok(Handled::Processed)
            }
            Recorded::Existing(existing) => self.answer_existing(order, *existing).await,
        }
    }

    async fn answer_again(&self, order: &Envelope<OrderPlaced>) -> Result<Handled, HandlerError> {
        match self.repository.reservation(&order.data.order_id).await? {
            Some(existing) => self.answer_existing(order, existing).await,
            // Records are never deleted: a failed condition with no record is a store fault.
            None => Err(HandlerError::transient(
                "reservation-missing",
                format!(
                    "order {} has a reservation record but it cannot be read yet",
                    order.data.order_id
                ),
            )),
        }
    }

    async fn answer_existing(
        &self,
        order: &Envelope<OrderPlaced>,
        existing: Reservation,
    ) -> Result<Handled, HandlerError> {
        let event = match replay(
            existing.status,
            &existing.event_id,
            &order.metadata.event_id,
        ) {
            Replay::Reserved => reserved_event(&order.metadata, &existing),
            Replay::OutOfStock => out_of_stock_event(&order.metadata, &existing),
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
        };
        // The same event as before (derived id): downstream deduplicates it if it got it.
        self.publisher.publish(&[event]).await?;
        tracing::info!(order_id = %existing.order_id, status = existing.status.as_str(),
            "answer published again for a redelivered order");
        Ok(Handled::Processed)
    }

    /// Gives the order's held stock back, once, and answers `InventoryReleased`.
    async fn release(
        &self,
        cause: &EventMetadata,
        order_id: &str,
        reason: &str,
    ) -> Result<Handled, HandlerError> {
        if order_id.trim().is_empty() {
            return Err(HandlerError::permanent(
                "invalid-request",
                "orderId must not be empty",
            ));
        }
        let request = ReleaseRequest {
            event_id: cause.event_id.clone(),
            reason: reason.to_string(),
            at: format_time(&chrono::Utc::now()),
        };
        for attempt in 1..=ATTEMPTS {
            let Some(reservation) = self.repository.reservation(order_id).await? else {
                // The saga may compensate before this function has seen the order (both
                // react to the same events): leave a record so that a late OrderPlaced
                // reserves nothing instead of holding stock for a dead order.
                match self
                    .repository
                    .record_once(&cancelled_record(cause, order_id, &request))
                    .await?
                {
                    Recorded::Created => {
                        tracing::info!(
                            order_id,
                            reason,
                            "nothing reserved yet; the order is marked so it never will be"
                        );
                        return Ok(Handled::Ignored);
                    }
                    // OrderPlaced got there in between: decide again on what it wrote.
                    Recorded::Existing(_) => continue,
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
                    return Ok(Handled::Processed);
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
            format!("order {order_id}: the reservation kept changing over {ATTEMPTS} attempts"),
        ))
    }
}

/// A short, jittered wait before another attempt, so that racing writers spread out.
async fn pause(attempt: u32) {
    if attempt < ATTEMPTS {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(10..=(40 << attempt)))).await;
    }
}

fn new_record(order: &Envelope<OrderPlaced>, lines: Vec<contracts::StockLine>) -> Reservation {
    Reservation {
        order_id: order.data.order_id.clone(),
        reservation_id: reservation_id_for(&order.data.order_id),
        status: ReservationStatus::Reserved,
        lines,
        shortages: Vec::new(),
        event_id: order.metadata.event_id.clone(),
        correlation_id: order.metadata.correlation_id.clone(),
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
        correlation_id: cause.correlation_id.clone(),
        recorded_at: request.at.clone(),
        released_at: Some(request.at.clone()),
        release_event_id: Some(request.event_id.clone()),
        release_reason: Some(request.reason.clone()),
    }
}

fn reserved_event(cause: &EventMetadata, r: &Reservation) -> RawEvent {
    Envelope::caused_by(
        cause,
        sources::INVENTORY,
        &r.reservation_id,
        InventoryReserved {
            order_id: r.order_id.clone(),
            reservation_id: r.reservation_id.clone(),
            lines: r.lines.clone(),
        },
    )
    .to_raw()
}

fn out_of_stock_event(cause: &EventMetadata, r: &Reservation) -> RawEvent {
    Envelope::caused_by(
        cause,
        sources::INVENTORY,
        &r.reservation_id,
        InventoryOutOfStock {
            order_id: r.order_id.clone(),
            shortages: r.shortages.clone(),
        },
    )
    .to_raw()
}

fn released_event(cause: &EventMetadata, r: &Reservation) -> RawEvent {
    Envelope::caused_by(
        cause,
        sources::INVENTORY,
        &r.reservation_id,
        InventoryReleased {
            order_id: r.order_id.clone(),
            reservation_id: r.reservation_id.clone(),
            lines: r.lines.clone(),
        },
    )
    .to_raw()
}

#[cfg(test)]
mod tests {
    //! The service against an in-memory repository with DynamoDB's conditional semantics and
    //! a bus that can fail on demand, to check exactly-once across crashes and redeliveries.
    //! (The idempotency layer needs DynamoDB; the e2e tests cover it.)
    use super::*;
    use async_trait::async_trait;
    use aws_sdk_eventbridge::types::PutEventsRequestEntry;
    use contracts::{Currency, OrderLine, Shortage, StockLine};
    use eventkit::publisher::{EntryResult, RetryPolicy};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use crate::repository::RepositoryError;

    #[derive(Default)]
    struct Tables {
        stock: HashMap<String, i64>,
        reservations: HashMap<String, Reservation>,
        /// Transactions still to fail with a conflict.
        conflicts: u32,
    }

    #[derive(Clone, Default)]
    struct MemoryRepository(Arc<Mutex<Tables>>);

    impl MemoryRepository {
        fn stock(&self, sku: &str) -> i64 {
            self.0.lock().unwrap().stock.get(sku).copied().unwrap_or(0)
        }
        fn set_stock(&self, sku: &str, level: i64) {
            self.0.lock().unwrap().stock.insert(sku.into(), level);
        }
        fn record(&self, order_id: &str) -> Option<Reservation> {
            self.0.lock().unwrap().reservations.get(order_id).cloned()
        }
    }

    #[async_trait]
    impl InventoryRepository for MemoryRepository {
        async fn reserve(&self, r: &Reservation) -> Result<Reserve, RepositoryError> {
            let mut t = self.0.lock().unwrap();
            if t.conflicts > 0 {
                t.conflicts -= 1;
                return Ok(Reserve::Conflict);
            }
            if t.reservations.contains_key(&r.order_id) {
                return Ok(Reserve::AlreadyRecorded);
            }
            let short = r.lines.iter().any(|l| {
                t.stock
                    .get(&l.sku)
                    .is_none_or(|s| *s < i64::from(l.quantity))
            });
            if short {
                return Ok(Reserve::Short);
            }
            for l in &r.lines {
                *t.stock.entry(l.sku.clone()).or_default() -= i64::from(l.quantity);
            }
            t.reservations.insert(r.order_id.clone(), r.clone());
            Ok(Reserve::Reserved)
        }

        async fn stock_levels(
            &self,
            skus: &[&str],
        ) -> Result<HashMap<String, u32>, RepositoryError> {
            let t = self.0.lock().unwrap();
            Ok(skus
                .iter()
                .filter_map(|s| t.stock.get(*s).map(|v| (s.to_string(), *v as u32)))
                .collect())
        }

        async fn record_once(&self, r: &Reservation) -> Result<Recorded, RepositoryError> {
            let mut t = self.0.lock().unwrap();
            match t.reservations.get(&r.order_id) {
                Some(existing) => Ok(Recorded::Existing(Box::new(existing.clone()))),
                None => {
                    t.reservations.insert(r.order_id.clone(), r.clone());
                    Ok(Recorded::Created)
                }
            }
        }

        async fn reservation(
            &self,
            order_id: &str,
        ) -> Result<Option<Reservation>, RepositoryError> {
            Ok(self.record(order_id))
        }

        async fn release(
            &self,
            r: &Reservation,
            request: &ReleaseRequest,
        ) -> Result<Release, RepositoryError> {
            let mut t = self.0.lock().unwrap();
            if t.conflicts > 0 {
                t.conflicts -= 1;
                return Ok(Release::Conflict);
            }
            let Some(stored) = t.reservations.get_mut(&r.order_id) else {
                return Ok(Release::NotReserved);
            };
            if stored.status != ReservationStatus::Reserved {
                return Ok(Release::NotReserved);
            }
            stored.status = ReservationStatus::Released;
            stored.release_event_id = Some(request.event_id.clone());
            stored.release_reason = Some(request.reason.clone());
            stored.released_at = Some(request.at.clone());
            for l in &r.lines {
                *t.stock.entry(l.sku.clone()).or_default() += i64::from(l.quantity);
            }
            Ok(Release::Released)
        }
    }

    /// Records what reaches the bus; fails every entry while `down` is set.
    #[derive(Clone, Default)]
    struct Bus {
        published: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
        down: Arc<Mutex<bool>>,
    }

    impl Bus {
        fn of_type(&self, detail_type: &str) -> Vec<serde_json::Value> {
            self.published
                .lock()
                .unwrap()
                .iter()
                .filter(|(t, _)| t == detail_type)
                .map(|(_, d)| d.clone())
                .collect()
        }
        fn count(&self) -> usize {
            self.published.lock().unwrap().len()
        }
    }

    #[async_trait]
    impl PutEventsTransport for Bus {
        async fn put_events(
            &self,
            entries: Vec<PutEventsRequestEntry>,
        ) -> Result<Vec<EntryResult>, String> {
            if *self.down.lock().unwrap() {
                return Err("bus unavailable".into());
            }
            let mut published = self.published.lock().unwrap();
            for e in &entries {
                published.push((
                    e.detail_type().unwrap_or_default().to_string(),
                    serde_json::from_str(e.detail().unwrap_or_default()).unwrap(),
                ));
            }
            Ok(entries.iter().map(|_| EntryResult::default()).collect())
        }
    }

    fn service(repo: &MemoryRepository, bus: &Bus) -> InventoryService<MemoryRepository, Bus> {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        InventoryService::new(
            repo.clone(),
            Publisher::new(bus.clone(), "bus").with_retry(RetryPolicy {
                max_attempts: 1,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(1),
            }),
            Idempotency::new(
                aws_sdk_dynamodb::Client::from_conf(config),
                "unused",
                "inventory",
            ),
        )
    }

    fn order(event_id: &str, order_id: &str, lines: &[(&str, u32)]) -> Envelope<OrderPlaced> {
        let lines: Vec<OrderLine> = lines
            .iter()
            .map(|(sku, quantity)| OrderLine {
                sku: sku.to_string(),
                quantity: *quantity,
                unit_price: 100,
            })
            .collect();
        let total = lines.iter().map(|l| 100 * u64::from(l.quantity)).sum();
        let mut envelope = Envelope::new(
            sources::ORDERS,
            OrderPlaced {
                order_id: order_id.into(),
                customer_id: "cus-1".into(),
                customer_email: "ada@example.com".into(),
                currency: Currency::try_from("EUR".to_string()).unwrap(),
                lines,
                total,
                payment_token: "tok_visa".into(),
            },
        );
        envelope.metadata.event_id = event_id.into();
        envelope
    }

    fn cause(event_id: &str) -> EventMetadata {
        let mut m = order(event_id, "x", &[("A", 1)]).metadata;
        m.correlation_id = "corr".into();
        m
    }

    fn stock_line(sku: &str, quantity: u32) -> StockLine {
        StockLine {
            sku: sku.into(),
            quantity,
        }
    }

    #[tokio::test]
    async fn reserves_all_lines_merged_by_sku_and_publishes_once() {
        let (repo, bus) = (MemoryRepository::default(), Bus::default());
        repo.set_stock("MUG", 5);
        repo.set_stock("TEA", 2);
        let svc = service(&repo, &bus);
        let o = order("e1", "ord-1", &[("MUG", 2), ("TEA", 1), ("MUG", 1)]);
        assert_eq!(svc.reserve(&o).await.unwrap(), Handled::Processed);
        assert_eq!((repo.stock("MUG"), repo.stock("TEA")), (2, 1));
        let reserved = bus.of_type("InventoryReserved");
        assert_eq!(reserved.len(), 1);
        let data: InventoryReserved = serde_json::from_value(reserved[0]["data"].clone()).unwrap();
        assert_eq!(data.lines, vec![stock_line("MUG", 3), stock_line("TEA", 1)]);
        assert_eq!(data.reservation_id, reservation_id_for("ord-1"));
        assert_eq!(reserved[0]["metadata"]["causationId"], "e1");
        assert_eq!(
            repo.record("ord-1").unwrap().status,
            ReservationStatus::Reserved
        );
    }

    #[tokio::test]
    async fn a_short_line_reserves_nothing_and_the_answer_sticks() {
        let (repo, bus) = (MemoryRepository::default(), Bus::default());
        repo.set_stock("MUG", 5);
        repo.set_stock("TEA", 1);
        let svc = service(&repo, &bus);
        let o = order("e1", "ord-1", &[("MUG", 2), ("TEA", 3), ("LAMP", 1)]);
        assert_eq!(svc.reserve(&o).await.unwrap(), Handled::Processed);
        assert_eq!((repo.stock("MUG"), repo.stock("TEA")), (5, 1));
        let answer = bus.of_type("InventoryOutOfStock");
        let data: InventoryOutOfStock = serde_json::from_value(answer[0]["data"].clone()).unwrap();
        assert_eq!(
            data.shortages,
            vec![
                Shortage {
                    sku: "TEA".into(),
                    requested: 3,
                    available: 1
                },
                Shortage {
                    sku: "LAMP".into(),
                    requested: 1,
                    available: 0
                },
            ]
        );

        // Restocked, then the same event again (idempotency record expired): same answer,
        // same event id, still nothing taken.
        repo.set_stock("TEA", 10);
        repo.set_stock("LAMP", 10);
        assert_eq!(svc.reserve(&o).await.unwrap(), Handled::Processed);
        let answers = bus.of_type("InventoryOutOfStock");
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0], {
            let mut again = answers[1].clone();
            again["metadata"]["occurredAt"] = answers[0]["metadata"]["occurredAt"].clone();
            again
        });
        assert_eq!(repo.stock("TEA"), 10);
        assert!(bus.of_type("InventoryReserved").is_empty());
    }

    #[tokio::test]
    async fn a_crash_between_write_and_publish_publishes_the_same_event_on_retry() {
        let (repo, bus) = (MemoryRepository::default(), Bus::default());
        repo.set_stock("MUG", 5);
        let svc = service(&repo, &bus);
        let o = order("e1", "ord-1", &[("MUG", 2)]);
        *bus.down.lock().unwrap() = true;
        let err = svc.reserve(&o).await.unwrap_err();
        assert!(!err.is_permanent(), "{err}");
        assert_eq!(repo.stock("MUG"), 3, "the write happened");
        *bus.down.lock().unwrap() = false;

        assert_eq!(svc.reserve(&o).await.unwrap(), Handled::Processed);
        assert_eq!(repo.stock("MUG"), 3, "not taken twice");
        let reserved = bus.of_type("InventoryReserved");
        assert_eq!(reserved.len(), 1);
        assert_eq!(
            reserved[0]["metadata"]["eventId"],
            eventkit::envelope::derived_event_id(
                "e1",
                "InventoryReserved",
                &reservation_id_for("ord-1")
            )
        );
    }

    #[tokio::test]
    async fn another_order_placed_for_a_recorded_order_does_nothing() {
        let (repo, bus) = (MemoryRepository::default(), Bus::default());
        repo.set_stock("MUG", 5);
        let svc = service(&repo, &bus);
        svc.reserve(&order("e1", "ord-1", &[("MUG", 2)]))
            .await
            .unwrap();
        let second = svc
            .reserve(&order("e2", "ord-1", &[("MUG", 2)]))
            .await
            .unwrap();
        assert_eq!(second, Handled::Duplicate);
        assert_eq!(repo.stock("MUG"), 3);
        assert_eq!(bus.count(), 1);
    }

    #[tokio::test]
    async fn invalid_orders_fail_permanently_and_touch_nothing() {
        let (repo, bus) = (MemoryRepository::default(), Bus::default());
        repo.set_stock("MUG", 5);
        let svc = service(&repo, &bus);
        let mut o = order("e1", "ord-1", &[("MUG", 2)]);
        o.data.total = 1;
        let err = svc.reserve(&o).await.unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.reason, "invalid-order");
        assert_eq!(repo.stock("MUG"), 5);
        assert_eq!(bus.count(), 0);
    }

    #[tokio::test]
    async fn conflicts_are_retried_a_few_times_then_handed_back_to_sqs() {
        let (repo, bus) = (MemoryRepository::default(), Bus::default());
        repo.set_stock("MUG", 5);
        let svc = service(&repo, &bus);
        repo.0.lock().unwrap().conflicts = 2;
        let o = order("e1", "ord-1", &[("MUG", 1)]);
        assert_eq!(svc.reserve(&o).await.unwrap(), Handled::Processed);

        repo.0.lock().unwrap().conflicts = ATTEMPTS;
        let err = svc
            .reserve(&order("e2", "ord-2", &[("MUG", 1)]))
            .await
            .unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(err.reason, "stock-contention");
        assert_eq!(repo.stock("MUG"), 4);
    }

    #[tokio::test]
    async fn a_release_gives_stock_back_exactly_once() {
        let (repo, bus) = (MemoryRepository::default(), Bus::default());
        repo.set_stock("MUG", 5);
        let svc = service(&repo, &bus);
        svc.reserve(&order("e1", "ord-1", &[("MUG", 2)]))
            .await
            .unwrap();
        assert_eq!(repo.stock("MUG"), 3);

        // The bus fails after the write: the retry publishes the same event, adds nothing.
        *bus.down.lock().unwrap() = true;
        assert!(svc
            .release(&cause("r1"), "ord-1", "payment-failed")
            .await
            .is_err());
        assert_eq!(repo.stock("MUG"), 5);
        *bus.down.lock().unwrap() = false;
        assert_eq!(
            svc.release(&cause("r1"), "ord-1", "payment-failed")
                .await
                .unwrap(),
            Handled::Processed
        );
        assert_eq!(repo.stock("MUG"), 5);

        // Another request for the same order (OrderCancelled after the saga's release).
        assert_eq!(
            svc.release(&cause("r2"), "ord-1", "payment-failed")
                .await
                .unwrap(),
            Handled::Duplicate
        );
        assert_eq!(repo.stock("MUG"), 5);
        let released = bus.of_type("InventoryReleased");
        assert_eq!(released.len(), 1);
        let record = repo.record("ord-1").unwrap();
        assert_eq!(record.status, ReservationStatus::Released);
        assert_eq!(record.release_event_id.as_deref(), Some("r1"));
        assert_eq!(
            released[0]["metadata"]["eventId"],
            eventkit::envelope::derived_event_id(
                "r1",
                "InventoryReleased",
                &reservation_id_for("ord-1")
            )
        );
    }

    #[tokio::test]
    async fn nothing_is_released_for_orders_that_hold_no_stock() {
        let (repo, bus) = (MemoryRepository::default(), Bus::default());
        repo.set_stock("MUG", 1);
        let svc = service(&repo, &bus);
        assert_eq!(
            svc.release(&cause("r1"), "ord-unknown", "fraud")
                .await
                .unwrap(),
            Handled::Ignored
        );
        svc.reserve(&order("e1", "ord-1", &[("MUG", 2)]))
            .await
            .unwrap();
        assert_eq!(
            svc.release(&cause("r2"), "ord-1", "out-of-stock")
                .await
                .unwrap(),
            Handled::Ignored
        );
        assert_eq!(repo.stock("MUG"), 1);
        assert!(bus.of_type("InventoryReleased").is_empty());
        let err = svc.release(&cause("r3"), " ", "x").await.unwrap_err();
        assert!(err.is_permanent());
    }

    #[tokio::test]
    async fn an_order_released_before_it_reserved_never_takes_stock() {
        let (repo, bus) = (MemoryRepository::default(), Bus::default());
        repo.set_stock("MUG", 5);
        let svc = service(&repo, &bus);
        assert_eq!(
            svc.release(&cause("r1"), "ord-1", "payment-failed")
                .await
                .unwrap(),
            Handled::Ignored
        );
        let record = repo.record("ord-1").unwrap();
        assert_eq!(record.status, ReservationStatus::Cancelled);
        assert!(record.lines.is_empty());

        // The OrderPlaced arrives late, then the request is redelivered.
        assert_eq!(
            svc.reserve(&order("e1", "ord-1", &[("MUG", 2)]))
                .await
                .unwrap(),
            Handled::Ignored
        );
        assert_eq!(
            svc.release(&cause("r1"), "ord-1", "payment-failed")
                .await
                .unwrap(),
            Handled::Ignored
        );
        assert_eq!(repo.stock("MUG"), 5);
        assert_eq!(bus.count(), 0, "nothing to announce");
    }
}
