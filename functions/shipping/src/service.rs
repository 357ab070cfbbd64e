//! Handles one event for the shipping function.
//!
//! Why an order ships once under at-least-once delivery: the shipments table decides it
//! (first writer wins per order), for a redelivered event as for a different event about the
//! same order; and `OrderShipped`'s id is derived from its cause, so a redelivery that finds
//! its own shipment publishes the same event again, which downstream drops as a duplicate.
//!
//! There is no separate idempotency record (eventkit's `Idempotency`): the shipment is
//! already one conditional write keyed by the order, so that write is the record. One per
//! event would cost two more DynamoDB writes per event and guard nothing the table does not.

use std::sync::Arc;

use contracts::{Event, OrderConfirmed, OrderShipped};
use eventkit::envelope::format_time;
use eventkit::{
    DecodeError, Envelope, EventMetadata, FirstWrite, Handled, HandlerError, Invocation, Publish,
    Publisher,
};

use crate::plan::plan_shipment;
use crate::repository::{DynamoShipmentRepository, ShipmentRecord, ShipmentRepository};

pub struct ShippingService {
    shipments: Arc<dyn ShipmentRepository>,
    bus: Arc<dyn Publish<Event>>,
}

impl ShippingService {
    /// Reads `SHIPMENTS_TABLE` and `EVENT_BUS_NAME`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        use eventkit::aws::required_env;
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

    /// Handles one event. Only `OrderConfirmed` is routed here; anything else is misrouted
    /// and fails permanently.
    pub async fn handle(
        &self,
        event: Envelope<Event>,
        _invocation: Invocation,
    ) -> Result<Handled, HandlerError> {
        let Envelope { metadata, data, .. } = event;
        match data {
            Event::OrderConfirmed(order) => self.ship(&metadata, &order).await,
            other => Err(DecodeError::not_routed(&other).into()),
        }
    }

    /// Records the shipment, then announces it. The table is what guarantees one shipment
    /// per order, also when a second `OrderConfirmed` for the same order (a different event)
    /// arrives.
    async fn ship(
        &self,
        cause: &EventMetadata,
        order: &OrderConfirmed,
    ) -> Result<Handled, HandlerError> {
        let planned = record_of(cause, order);
        let (shipment, handled) = match self.shipments.create_once(&planned).await? {
            FirstWrite::Written => (planned, Handled::Processed),
            // Our own earlier attempt stored it (and may have died before publishing): publish
            // the stored shipment; the derived event id makes it the same event.
            FirstWrite::Existing(stored) if stored.event_id == cause.event_id => {
                (stored, Handled::Duplicate)
            }
            FirstWrite::Existing(stored) => {
                tracing::warn!(order_id = %stored.order_id, shipment_id = %stored.shipment_id,
                    first_event_id = %stored.event_id,
                    "order already shipped for another event; not shipping again");
                return Ok(Handled::Duplicate);
            }
        };
        self.bus.publish(&[shipped_event(cause, &shipment)]).await?;
        tracing::info!(order_id = %shipment.order_id, shipment_id = %shipment.shipment_id,
            carrier = %shipment.carrier, tracking_number = %shipment.tracking_number,
            ?handled, "order shipped");
        Ok(handled)
    }
}

fn record_of(cause: &EventMetadata, order: &OrderConfirmed) -> ShipmentRecord {
    let plan = plan_shipment(&order.order_id);
    ShipmentRecord {
        order_id: order.order_id.clone(),
        shipment_id: plan.shipment_id,
        carrier: plan.carrier,
        tracking_number: plan.tracking_number,
        customer_email: order.customer_email.clone(),
        event_id: cause.event_id.clone(),
        correlation_id: cause.correlation_id.clone(),
        created_at: format_time(&chrono::Utc::now()),
    }
}

/// `OrderShipped`, with the shipment id as discriminator: the same cause yields the same
/// event id.
fn shipped_event(cause: &EventMetadata, shipment: &ShipmentRecord) -> Envelope<Event> {
    Envelope::caused_by(
        cause,
        &shipment.shipment_id,
        Event::OrderShipped(OrderShipped {
            order_id: shipment.order_id.clone(),
            shipment_id: shipment.shipment_id.clone(),
            carrier: shipment.carrier.clone(),
            tracking_number: shipment.tracking_number.clone(),
            customer_email: shipment.customer_email.clone(),
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
                shipment_id: plan.shipment_id,
                carrier: plan.carrier,
                tracking_number: plan.tracking_number,
                customer_email: "ada@example.com".into(),
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

        assert_eq!(second, Handled::Duplicate);
        assert_eq!(w.bus.events(), vec![shipped()]);
        assert_eq!(
            w.shipments.table.get("ord-1").unwrap().event_id,
            first.metadata.event_id
        );
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
        let other = Envelope::new(Event::from(FraudSuspected {
            order_id: "ord-1".into(),
            reason: "velocity".into(),
            score: 90,
            pattern: None,
        }));
        assert_eq!(take_in(&other.to_raw()), "not-routed");
    }
}
