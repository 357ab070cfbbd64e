//! Handles one event for the shipping function: dispatches a held `OrderConfirmed`, or
//! cancels the shipment on the saga's `CancelShipmentRequested`.
//!
//! Why exactly one of dispatch and cancel wins per order: both are the same first-writer-wins
//! write of the order's one item in the shipments table (key `orderId`, see
//! [`eventkit::once`]), one saying DISPATCHED, the other CANCELLED, so whichever comes second
//! finds the first one's item and acts on it instead: a dispatch that finds a cancellation ships nothing; a cancel that finds a dispatch announces
//! the dispatch again (its `OrderShipped`, with the id derived from the stored cause, so the
//! saga, which may never have heard of it, learns the order left; a saga that did drops it as
//! a duplicate). No other state (no lock, no flag on the order) is needed, and none can
//! disagree with the table.
//!
//! Why an order waiting on shipping always hears an answer: whatever the saga asks shipping
//! (an `OrderConfirmed` to dispatch, a `CancelShipmentRequested` to stop), this function
//! answers with the table's decision, the one it just wrote or the one it found, every
//! time it is asked. An answer lost after the table decided (a publish that kept failing until
//! the question was dead-lettered) is therefore repaired by asking again: a redrive of the
//! question, or the saga's request to stop an order whose dispatch it never heard of, gets
//! the stored answer with its stored id, so an order cannot stay CANCELLING because the
//! dispatch's announcement was lost.
//!
//! Why the cancel usually wins when it should: `OrderConfirmed` reaches this function only
//! after the shipping queue's delay (`ShipmentHoldSeconds`, at least the fraud window), while
//! `CancelShipmentRequested` comes through its own queue without one.
//!
//! Why an order ships (or is cancelled) once under at-least-once delivery, and why every copy
//! of its answer is one event: see [`eventkit::once`].

use std::sync::Arc;

use contracts::{CancelShipmentRequested, Event, OrderConfirmed, OrderShipped, ShipmentCancelled};
use eventkit::envelope::format_time;
use eventkit::{
    Decided, DecidedBy, DecodeError, Envelope, EventMetadata, Handled, HandlerError, Invocation,
    Publish, Publisher,
};

use crate::hold::check_hold;
use crate::plan::plan_shipment;
use crate::repository::{
    Dispatch, DynamoShipmentRepository, ShipmentRecord, ShipmentRepository, ShipmentState,
};

pub struct ShippingService {
    shipments: Arc<dyn ShipmentRepository>,
    bus: Arc<dyn Publish<Event>>,
}

impl ShippingService {
    /// Reads `SHIPMENTS_TABLE` and `EVENT_BUS_NAME`, and refuses to start unless
    /// `SHIPMENT_HOLD_SECONDS` covers `FRAUD_WINDOW_SECONDS` (see [`crate::hold`]).
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        use eventkit::aws::required_env;
        let hold = check_hold(
            &required_env("SHIPMENT_HOLD_SECONDS")?,
            &required_env("FRAUD_WINDOW_SECONDS")?,
        )
        .map_err(|e| e.to_string())?;
        tracing::info!(
            hold_seconds = hold.as_secs(),
            "shipments are held by the queue"
        );
        let dynamo = aws_sdk_dynamodb::Client::new(aws);
        Ok(ShippingService::new(
            Arc::new(DynamoShipmentRepository::new(
                dynamo,
                required_env("SHIPMENTS_TABLE")?,
            )),
            Arc::new(Publisher::new(
                aws_sdk_eventbridge::Client::new(aws),
                required_env("EVENT_BUS_NAME")?,
            )),
        ))
    }

    pub fn new(shipments: Arc<dyn ShipmentRepository>, bus: Arc<dyn Publish<Event>>) -> Self {
        ShippingService { shipments, bus }
    }

    /// Handles one event. Only `OrderConfirmed` and `CancelShipmentRequested` are routed
    /// here; anything else is misrouted and fails permanently.
    pub async fn handle(
        &self,
        event: Envelope<Event>,
        _invocation: Invocation,
    ) -> Result<Handled, HandlerError> {
        let Envelope { metadata, data, .. } = event;
        match data {
            Event::OrderConfirmed(order) => self.dispatch(&metadata, &order).await,
            Event::CancelShipmentRequested(request) => self.cancel(&metadata, &request).await,
            other => Err(DecodeError::not_routed(&other).into()),
        }
    }

    /// The hold is over: records the dispatch, then announces it, unless the order's fate
    /// was decided first.
    async fn dispatch(
        &self,
        cause: &EventMetadata,
        order: &OrderConfirmed,
    ) -> Result<Handled, HandlerError> {
        let planned = planned_dispatch(order);
        let record = decided_by(
            cause,
            &order.order_id,
            ShipmentState::Dispatched(planned.clone()),
        );
        let decided = Decided::of(self.shipments.create_once(&record).await?, &cause.event_id);
        let (dispatch, handled) = match &decided {
            Decided::First => (planned, Handled::Processed),
            // Our own earlier attempt stored it (and may have died before publishing), or
            // another OrderConfirmed for the order did: publish the stored shipment.
            Decided::Again(stored) | Decided::DecidedBefore(stored) => match &stored.state {
                ShipmentState::Dispatched(dispatch) => {
                    if let Decided::DecidedBefore(_) = decided {
                        tracing::warn!(order_id = %stored.order_id,
                            shipment_id = %dispatch.shipment_id, first_event_id = %stored.event_id,
                            "order already shipped for another event; announcing that shipment");
                    }
                    (dispatch.clone(), Handled::Duplicate)
                }
                ShipmentState::Cancelled { reason } => {
                    tracing::info!(order_id = %stored.order_id, %reason,
                        cancel_event_id = %stored.event_id,
                        "the cancel reached shipping before the hold ended; nothing ships");
                    return Ok(Handled::Ignored);
                }
            },
        };
        self.bus
            .publish(&[shipped_event(
                &decided.answer_cause(cause),
                &order.order_id,
                &dispatch,
            )])
            .await?;
        tracing::info!(order_id = %order.order_id, shipment_id = %dispatch.shipment_id,
            carrier = %dispatch.carrier, tracking_number = %dispatch.tracking_number,
            ?handled, "order shipped");
        Ok(handled)
    }

    /// The saga wants the order stopped: records the cancellation, then announces it, unless
    /// the order was dispatched first.
    async fn cancel(
        &self,
        cause: &EventMetadata,
        request: &CancelShipmentRequested,
    ) -> Result<Handled, HandlerError> {
        let record = decided_by(
            cause,
            &request.order_id,
            ShipmentState::Cancelled {
                reason: request.reason.clone(),
            },
        );
        let decided = Decided::of(self.shipments.create_once(&record).await?, &cause.event_id);
        let (reason, handled) = match &decided {
            Decided::First => (request.reason.clone(), Handled::Processed),
            // Cancelled before, by this request (a redelivery, perhaps after a failed
            // publish) or another one: announce the stored cancellation, so every copy
            // of ShipmentCancelled for the order has one id and one reason.
            Decided::Again(stored) | Decided::DecidedBefore(stored) => match &stored.state {
                ShipmentState::Cancelled { reason } => (reason.clone(), Handled::Duplicate),
                ShipmentState::Dispatched(dispatch) => {
                    // A ShipmentCancelled now would let the saga refund goods that have left.
                    // The saga is waiting for an answer, though, and the dispatch's own
                    // OrderShipped may never have reached it (its publish failed for good):
                    // announce the stored dispatch again, with its stored id.
                    tracing::warn!(order_id = %stored.order_id,
                        shipment_id = %dispatch.shipment_id, reason = %request.reason,
                        dispatch_event_id = %stored.event_id,
                        "cancel requested after the order was dispatched; dispatch won, \
                         announcing the shipment again");
                    let announced =
                        shipped_event(&stored.stored_cause(), &stored.order_id, dispatch);
                    self.bus.publish(&[announced]).await?;
                    return Ok(Handled::Ignored);
                }
            },
        };
        self.bus
            .publish(&[cancelled_event(
                &decided.answer_cause(cause),
                &request.order_id,
                &reason,
            )])
            .await?;
        tracing::info!(order_id = %request.order_id, %reason, ?handled, "shipment cancelled");
        Ok(handled)
    }
}

/// Where `order_id` goes, planned from the order alone (see [`crate::plan`]).
fn planned_dispatch(order: &OrderConfirmed) -> Dispatch {
    let plan = plan_shipment(&order.order_id);
    Dispatch {
        shipment_id: plan.shipment_id,
        carrier: plan.carrier,
        tracking_number: plan.tracking_number,
        customer_email: order.customer_email.clone(),
    }
}

/// The record of `state`, decided by the event `cause`.
fn decided_by(cause: &EventMetadata, order_id: &str, state: ShipmentState) -> ShipmentRecord {
    ShipmentRecord {
        order_id: order_id.to_string(),
        state,
        event_id: cause.event_id.clone(),
        correlation_id: cause.correlation_id.clone(),
        created_at: format_time(&chrono::Utc::now()),
    }
}

/// `OrderShipped`, with the shipment id as discriminator: the same cause yields the same
/// event id.
fn shipped_event(cause: &EventMetadata, order_id: &str, dispatch: &Dispatch) -> Envelope<Event> {
    Envelope::caused_by(
        cause,
        &dispatch.shipment_id,
        Event::OrderShipped(OrderShipped {
            order_id: order_id.to_string(),
            shipment_id: dispatch.shipment_id.clone(),
            carrier: dispatch.carrier.clone(),
            tracking_number: dispatch.tracking_number.clone(),
            customer_email: dispatch.customer_email.clone(),
        }),
    )
}

/// `ShipmentCancelled`, caused by the request the table recorded (`cause`, not necessarily
/// the one being handled), with the order id as discriminator: one id and one reason per
/// order, however often and by whichever request it is asked for.
fn cancelled_event(cause: &EventMetadata, order_id: &str, reason: &str) -> Envelope<Event> {
    Envelope::caused_by(
        cause,
        order_id,
        Event::ShipmentCancelled(ShipmentCancelled {
            order_id: order_id.to_string(),
            reason: reason.to_string(),
        }),
    )
}

#[cfg(test)]
mod tests {
    //! The handler through in-memory adapters of its ports: the shipments table with the
    //! DynamoDB adapter's condition and a bus that fails on demand.
    use super::*;
    use crate::repository::MemoryShipmentRepository;
    use contracts::{sources, Currency, FraudSuspected, StockLine};
    use eventkit::envelope::derived_event_id;
    use eventkit::testing::{invocation, MemoryBus};

    struct World {
        shipments: Arc<MemoryShipmentRepository>,
        bus: Arc<MemoryBus<Event>>,
        service: ShippingService,
    }

    fn world() -> World {
        let shipments = Arc::new(MemoryShipmentRepository::default());
        let bus = MemoryBus::new();
        let service = ShippingService::new(shipments.clone(), bus.clone());
        World {
            shipments,
            bus,
            service,
        }
    }

    impl World {
        async fn deliver(&self, event: &Envelope<Event>) -> Result<Handled, HandlerError> {
            self.service.handle(event.clone(), invocation()).await
        }
    }

    fn order_confirmed(order_id: &str) -> Envelope<Event> {
        Envelope::new(Event::OrderConfirmed(OrderConfirmed {
            order_id: order_id.into(),
            customer_id: "cus-1".into(),
            customer_email: "ada@example.com".into(),
            total: 3300,
            currency: Currency::try_from("EUR".to_string()).unwrap(),
            payment_id: "pay_1".into(),
            reservation_id: "res_1".into(),
            lines: vec![StockLine {
                sku: "MUG".into(),
                quantity: 2,
            }],
        }))
    }

    /// The `OrderShipped` for `ord-1`.
    fn shipped() -> Event {
        let plan = plan_shipment("ord-1");
        Event::OrderShipped(OrderShipped {
            order_id: "ord-1".into(),
            shipment_id: plan.shipment_id,
            carrier: plan.carrier,
            tracking_number: plan.tracking_number,
            customer_email: "ada@example.com".into(),
        })
    }

    fn shipped_id(cause: &Envelope<Event>) -> String {
        derived_event_id(
            &cause.metadata.event_id,
            "OrderShipped",
            &plan_shipment("ord-1").shipment_id,
        )
    }

    fn cancel_requested(order_id: &str, reason: &str) -> Envelope<Event> {
        Envelope::new(Event::CancelShipmentRequested(CancelShipmentRequested {
            order_id: order_id.into(),
            reason: reason.into(),
        }))
    }

    /// The `ShipmentCancelled` for `ord-1`.
    fn cancelled(reason: &str) -> Event {
        Event::ShipmentCancelled(ShipmentCancelled {
            order_id: "ord-1".into(),
            reason: reason.into(),
        })
    }

    fn cancelled_id(cause: &Envelope<Event>) -> String {
        derived_event_id(&cause.metadata.event_id, "ShipmentCancelled", "ord-1")
    }

    #[tokio::test]
    async fn a_confirmed_order_gets_one_shipment_and_order_shipped_is_published() {
        let w = world();
        let order = order_confirmed("ord-1");

        let handled = w.deliver(&order).await.unwrap();

        assert_eq!(handled, Handled::Processed);
        assert_eq!(w.bus.events(), vec![shipped()]);
        let published = &w.bus.published()[0];
        assert_eq!(published.source, sources::SHIPPING);
        assert_eq!(published.metadata.event_id, shipped_id(&order));
        assert_eq!(
            published.metadata.causation_id.as_deref(),
            Some(order.metadata.event_id.as_str())
        );
        let plan = plan_shipment("ord-1");
        let stored = w.shipments.table.get("ord-1").expect("a shipment");
        assert_eq!(
            stored,
            ShipmentRecord {
                order_id: "ord-1".into(),
                state: ShipmentState::Dispatched(Dispatch {
                    shipment_id: plan.shipment_id,
                    carrier: plan.carrier,
                    tracking_number: plan.tracking_number,
                    customer_email: "ada@example.com".into(),
                }),
                event_id: order.metadata.event_id.clone(),
                correlation_id: order.metadata.correlation_id.clone(),
                created_at: stored.created_at.clone(),
            }
        );
    }

    #[tokio::test]
    async fn the_same_order_confirmed_delivered_twice_ships_once() {
        let w = world();
        let order = order_confirmed("ord-1");
        w.deliver(&order).await.unwrap();
        let first = w.shipments.table.items();

        let again = w.deliver(&order).await.unwrap();

        // Shipped once; the redelivery publishes the same OrderShipped (same id) again.
        assert_eq!(again, Handled::Duplicate);
        assert_eq!(w.bus.events(), vec![shipped(), shipped()]);
        let ids: Vec<String> = w
            .bus
            .published()
            .into_iter()
            .map(|e| e.metadata.event_id)
            .collect();
        assert_eq!(ids, vec![shipped_id(&order), shipped_id(&order)]);
        assert_eq!(w.shipments.table.items(), first);
    }

    #[tokio::test]
    async fn a_shipment_whose_publish_failed_is_published_on_redelivery_with_the_same_id() {
        let w = world();
        let order = order_confirmed("ord-1");
        w.bus.fail_next(1);

        let err = w.deliver(&order).await.unwrap_err();
        assert!(!err.is_permanent(), "{err}");
        assert_eq!(err.reason, "publish-failed");
        assert!(w.bus.events().is_empty());
        let stored = w.shipments.table.items();
        assert_eq!(stored.len(), 1);

        let redelivered = w.deliver(&order).await.unwrap();

        // Not shipped again; the redelivery adds the publish that failed.
        assert_eq!(redelivered, Handled::Duplicate);
        assert_eq!(w.bus.events(), vec![shipped()]);
        assert_eq!(w.bus.published()[0].metadata.event_id, shipped_id(&order));
        assert_eq!(w.shipments.table.items(), stored, "shipped once");
    }

    #[tokio::test]
    async fn another_order_confirmed_for_a_shipped_order_does_not_ship_again() {
        let w = world();
        let first = order_confirmed("ord-1");
        w.deliver(&first).await.unwrap();

        let second = w.deliver(&order_confirmed("ord-1")).await.unwrap();

        // Not shipped again: the first shipment is announced again, with the first one's id.
        assert_eq!(second, Handled::Duplicate);
        assert_eq!(w.bus.events(), vec![shipped(), shipped()]);
        assert!(w
            .bus
            .published()
            .iter()
            .all(|e| e.metadata.event_id == shipped_id(&first)));
        assert_eq!(
            w.shipments.table.get("ord-1").unwrap().event_id,
            first.metadata.event_id
        );
    }

    #[tokio::test]
    async fn a_cancel_after_dispatch_loses_and_announces_the_dispatch_again() {
        let w = world();
        let order = order_confirmed("ord-1");
        w.deliver(&order).await.unwrap();
        let dispatched = w.shipments.table.items();

        let handled = w
            .deliver(&cancel_requested("ord-1", "fraud-suspected"))
            .await
            .unwrap();

        // Dispatch won: no ShipmentCancelled, and the same OrderShipped (same id) again.
        assert_eq!(handled, Handled::Ignored);
        assert_eq!(w.bus.events(), vec![shipped(), shipped()]);
        assert!(w
            .bus
            .published()
            .iter()
            .all(|e| e.metadata.event_id == shipped_id(&order)));
        assert_eq!(w.shipments.table.items(), dispatched, "still dispatched");
    }

    #[tokio::test]
    async fn a_dispatch_whose_announcement_was_lost_is_announced_to_a_later_cancel() {
        let w = world();
        let order = order_confirmed("ord-1");
        // The dispatch is stored, its publish fails, and the OrderConfirmed is dead-lettered:
        // the saga never hears of the shipment and asks to stop it.
        w.bus.fail_next(1);
        assert!(w.deliver(&order).await.is_err());
        assert!(w.bus.events().is_empty());

        let handled = w
            .deliver(&cancel_requested("ord-1", "operator-cancelled"))
            .await
            .unwrap();

        assert_eq!(handled, Handled::Ignored);
        assert_eq!(
            w.bus.events(),
            vec![shipped()],
            "the answer the saga waits on"
        );
        let published = &w.bus.published()[0];
        assert_eq!(published.metadata.event_id, shipped_id(&order));
        assert_eq!(
            published.metadata.correlation_id,
            order.metadata.correlation_id
        );
    }

    #[tokio::test]
    async fn a_cancel_that_finds_a_dispatch_and_cannot_publish_is_retried() {
        let w = world();
        w.deliver(&order_confirmed("ord-1")).await.unwrap();
        w.bus.fail_next(1);

        let err = w
            .deliver(&cancel_requested("ord-1", "fraud-suspected"))
            .await
            .unwrap_err();

        assert!(!err.is_permanent(), "{err}");
        assert_eq!(err.reason, "publish-failed");
    }

    #[tokio::test]
    async fn a_dispatch_after_cancel_loses_and_nothing_ships() {
        let w = world();
        let cancel = cancel_requested("ord-1", "fraud-suspected");
        let order = order_confirmed("ord-1");

        assert_eq!(w.deliver(&cancel).await.unwrap(), Handled::Processed);
        let handled = w.deliver(&order).await.unwrap();

        assert_eq!(handled, Handled::Ignored);
        assert_eq!(w.bus.events(), vec![cancelled("fraud-suspected")]);
        let published = &w.bus.published()[0];
        assert_eq!(published.source, sources::SHIPPING);
        assert_eq!(published.metadata.event_id, cancelled_id(&cancel));
        assert_eq!(
            published.metadata.causation_id.as_deref(),
            Some(cancel.metadata.event_id.as_str())
        );
        assert_eq!(
            published.metadata.correlation_id,
            cancel.metadata.correlation_id
        );
        let stored = w.shipments.table.get("ord-1").expect("a record");
        assert_eq!(
            stored.state,
            ShipmentState::Cancelled {
                reason: "fraud-suspected".into()
            }
        );
        assert_eq!(stored.event_id, cancel.metadata.event_id);
    }

    #[tokio::test]
    async fn a_redelivered_cancel_announces_the_same_event_again() {
        let w = world();
        let cancel = cancel_requested("ord-1", "fraud-suspected");
        w.deliver(&cancel).await.unwrap();
        let first = w.shipments.table.items();

        let again = w.deliver(&cancel).await.unwrap();

        assert_eq!(again, Handled::Duplicate);
        let published = w.bus.published();
        assert_eq!(published.len(), 2);
        for event in &published {
            assert_eq!(event.metadata.event_id, cancelled_id(&cancel));
            assert_eq!(event.data, cancelled("fraud-suspected"));
        }
        assert_eq!(published[0].content_digest(), published[1].content_digest());
        assert_eq!(w.shipments.table.items(), first, "recorded once");
    }

    #[tokio::test]
    async fn a_cancel_whose_publish_failed_is_announced_on_redelivery_with_the_same_id() {
        let w = world();
        let cancel = cancel_requested("ord-1", "fraud-suspected");
        w.bus.fail_next(1);

        let err = w.deliver(&cancel).await.unwrap_err();
        assert!(!err.is_permanent(), "{err}");
        assert!(w.bus.events().is_empty());

        assert_eq!(w.deliver(&cancel).await.unwrap(), Handled::Duplicate);
        assert_eq!(w.bus.events(), vec![cancelled("fraud-suspected")]);
        assert_eq!(
            w.bus.published()[0].metadata.event_id,
            cancelled_id(&cancel)
        );
    }

    #[tokio::test]
    async fn another_cancel_for_a_cancelled_order_announces_the_first_one() {
        let w = world();
        let first = cancel_requested("ord-1", "fraud-suspected");
        w.deliver(&first).await.unwrap();

        let second = w
            .deliver(&cancel_requested("ord-1", "operator"))
            .await
            .unwrap();

        // The stored cancellation's id and reason, not the second request's.
        assert_eq!(second, Handled::Duplicate);
        assert_eq!(
            w.bus.events(),
            vec![cancelled("fraud-suspected"), cancelled("fraud-suspected")]
        );
        for event in w.bus.published() {
            assert_eq!(event.metadata.event_id, cancelled_id(&first));
        }
    }

    #[tokio::test]
    async fn a_cancel_for_an_order_never_confirmed_here_is_recorded_and_announced() {
        let w = world();
        let cancel = cancel_requested("ord-1", "deadline-exceeded");

        let handled = w.deliver(&cancel).await.unwrap();

        assert_eq!(handled, Handled::Processed);
        assert_eq!(w.bus.events(), vec![cancelled("deadline-exceeded")]);
        let stored = w.shipments.table.get("ord-1").expect("a record");
        assert_eq!(
            stored,
            ShipmentRecord {
                order_id: "ord-1".into(),
                state: ShipmentState::Cancelled {
                    reason: "deadline-exceeded".into()
                },
                event_id: cancel.metadata.event_id.clone(),
                correlation_id: cancel.metadata.correlation_id.clone(),
                created_at: stored.created_at.clone(),
            }
        );
        // Its OrderConfirmed, should it still come out of the hold, ships nothing.
        assert_eq!(
            w.deliver(&order_confirmed("ord-1")).await.unwrap(),
            Handled::Ignored
        );
        assert_eq!(w.bus.events().len(), 1);
    }

    #[tokio::test]
    async fn a_shipment_stored_before_cancellation_existed_still_wins_over_a_cancel() {
        let w = world();
        let order = order_confirmed("ord-1");
        // As the DynamoDB adapter reads an item written by the previous version: no status.
        let plan = plan_shipment("ord-1");
        let legacy: ShipmentRecord = serde_dynamo::from_item(std::collections::HashMap::from(
            [
                ("orderId", "ord-1".to_string()),
                ("shipmentId", plan.shipment_id),
                ("carrier", plan.carrier),
                ("trackingNumber", plan.tracking_number),
                ("customerEmail", "ada@example.com".to_string()),
                ("eventId", order.metadata.event_id.clone()),
                ("correlationId", order.metadata.correlation_id.clone()),
                ("createdAt", "2026-11-21T10:00:00.000Z".to_string()),
            ]
            .map(|(k, v)| (k.to_string(), aws_sdk_dynamodb::types::AttributeValue::S(v))),
        ))
        .expect("readable");
        w.shipments.table.put("ord-1", legacy);

        let cancel = w
            .deliver(&cancel_requested("ord-1", "fraud-suspected"))
            .await
            .unwrap();
        let redelivered = w.deliver(&order).await.unwrap();

        assert_eq!(cancel, Handled::Ignored, "a dispatch");
        // Both the cancel and its own OrderConfirmed redelivered announce the same OrderShipped.
        assert_eq!(redelivered, Handled::Duplicate);
        assert_eq!(w.bus.events(), vec![shipped(), shipped()]);
        assert!(w
            .bus
            .published()
            .iter()
            .all(|e| e.metadata.event_id == shipped_id(&order)));
    }

    #[tokio::test]
    async fn an_event_not_routed_here_fails_for_good() {
        let w = world();
        let event = Envelope::new(Event::FraudSuspected(FraudSuspected {
            order_id: "ord-1".into(),
            reason: "velocity".into(),
            score: 90,
            pattern: None,
        }));

        let err = w.deliver(&event).await.unwrap_err();

        assert!(err.is_permanent());
        assert_eq!(err.reason, "not-routed");
        assert!(w.bus.events().is_empty());
    }

    #[test]
    fn what_the_handler_never_sees_is_refused_at_intake() {
        let take_in = |raw: &contracts::RawEvent| {
            eventkit::take_in::<Event>(crate::ROUTES, raw)
                .unwrap_err()
                .reason()
        };
        let mut blank = order_confirmed("ord-1").to_raw();
        blank.data["orderId"] = " ".into();
        assert_eq!(take_in(&blank), "invalid-data", "a blank order id");
        let mut forged = order_confirmed("ord-1").to_raw();
        forged.source = sources::SHIPPING.into();
        assert_eq!(take_in(&forged), "untrusted-source");
        // Only the saga may stop a shipment.
        let mut forged_cancel = cancel_requested("ord-1", "fraud-suspected").to_raw();
        forged_cancel.source = sources::OPERATIONS.into();
        assert_eq!(take_in(&forged_cancel), "untrusted-source");
        let own_answer = Envelope::new(Event::from(ShipmentCancelled {
            order_id: "ord-1".into(),
            reason: "fraud-suspected".into(),
        }));
        assert_eq!(take_in(&own_answer.to_raw()), "not-routed");
        let other = Envelope::new(Event::from(FraudSuspected {
            order_id: "ord-1".into(),
            reason: "velocity".into(),
            score: 90,
            pattern: None,
        }));
        assert_eq!(take_in(&other.to_raw()), "not-routed");
    }
}
