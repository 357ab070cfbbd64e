//! Handles one event for the shipping function.

use contracts::{sources, OrderConfirmed, OrderShipped};
use eventkit::envelope::format_time;
use eventkit::publisher::PutEventsTransport;
use eventkit::{
    DecodeError, Envelope, EventData, Handled, HandlerError, Idempotency, Invocation, Publisher,
    RawEvent,
};

use crate::plan::plan_shipment;
use crate::repository::{Created, DynamoShipmentRepository, ShipmentRecord, ShipmentRepository};

pub struct ShippingService<R = DynamoShipmentRepository, T = aws_sdk_eventbridge::Client> {
    repository: R,
    publisher: Publisher<T>,
    idempotency: Idempotency,
}

impl ShippingService {
    /// Reads `SHIPMENTS_TABLE`, `IDEMPOTENCY_TABLE` and `EVENT_BUS_NAME`.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, String> {
        use eventkit::aws::required_env;
        let dynamo = aws_sdk_dynamodb::Client::new(aws);
        Ok(ShippingService::new(
            DynamoShipmentRepository::new(dynamo.clone(), required_env("SHIPMENTS_TABLE")?),
            Publisher::new(
                aws_sdk_eventbridge::Client::new(aws),
                required_env("EVENT_BUS_NAME")?,
            ),
            Idempotency::new(dynamo, required_env("IDEMPOTENCY_TABLE")?, "shipping"),
        ))
    }
}

impl<R: ShipmentRepository, T: PutEventsTransport> ShippingService<R, T> {
    pub fn new(repository: R, publisher: Publisher<T>, idempotency: Idempotency) -> Self {
        ShippingService {
            repository,
            publisher,
            idempotency,
        }
    }

    /// Handles one event. Only `OrderConfirmed` is routed here; anything else is misrouted
    /// and fails permanently.
    pub async fn handle(
        &self,
        event: RawEvent,
        invocation: Invocation,
    ) -> Result<Handled, HandlerError> {
        match event.detail_type.as_str() {
            OrderConfirmed::DETAIL_TYPE => {
                let order = event.decode::<OrderConfirmed>()?;
                self.idempotency
                    .handle_once(&order.metadata, &order.data, &invocation, || {
                        self.ship(&order)
                    })
                    .await
            }
            other => Err(DecodeError::UnknownType(other.to_string()).into()),
        }
    }

    /// Records the shipment, then announces it. The table, not the idempotency record, is
    /// what guarantees one shipment per order: idempotency records expire and are keyed by
    /// event, while a second `OrderConfirmed` for the same order is a different event.
    pub(crate) async fn ship(
        &self,
        order: &Envelope<OrderConfirmed>,
    ) -> Result<Handled, HandlerError> {
        if order.data.order_id.trim().is_empty() {
            return Err(HandlerError::permanent(
                "invalid-order",
                "OrderConfirmed has an empty orderId",
            ));
        }
        let planned = record_of(order);
        let shipment = match self.repository.create_once(&planned).await? {
            Created::New => planned,
            // Our own earlier attempt stored it but died before (or while) publishing:
            // publish the stored shipment; the derived event id makes it the same event.
            Created::Existing(stored) if stored.event_id == order.metadata.event_id => stored,
            Created::Existing(stored) => {
                tracing::warn!(order_id = %stored.order_id, shipment_id = %stored.shipment_id,
                    first_event_id = %stored.event_id,
                    "order already shipped for another event; not shipping again");
                return Ok(Handled::Duplicate);
            }
        };
        self.publisher
            .publish(&[shipped_event(order, &shipment)])
            .await?;
        tracing::info!(order_id = %shipment.order_id, shipment_id = %shipment.shipment_id,
            carrier = %shipment.carrier, tracking_number = %shipment.tracking_number,
            "order shipped");
        Ok(Handled::Processed)
    }
}

fn record_of(order: &Envelope<OrderConfirmed>) -> ShipmentRecord {
    let plan = plan_shipment(&order.data.order_id);
    ShipmentRecord {
        order_id: order.data.order_id.clone(),
        shipment_id: plan.shipment_id,
        carrier: plan.carrier,
        tracking_number: plan.tracking_number,
        customer_email: order.data.customer_email.clone(),
        event_id: order.metadata.event_id.clone(),
        correlation_id: order.metadata.correlation_id.clone(),
        created_at: format_time(&chrono::Utc::now()),
    }
}

fn shipped_event(order: &Envelope<OrderConfirmed>, shipment: &ShipmentRecord) -> RawEvent {
    Envelope::caused_by(
        &order.metadata,
        sources::SHIPPING,
        &shipment.shipment_id,
        OrderShipped {
            order_id: shipment.order_id.clone(),
            shipment_id: shipment.shipment_id.clone(),
            carrier: shipment.carrier.clone(),
            tracking_number: shipment.tracking_number.clone(),
            customer_email: shipment.customer_email.clone(),
        },
    )
    .to_raw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::RepositoryError;
    use async_trait::async_trait;
    use aws_sdk_eventbridge::types::PutEventsRequestEntry;
    use eventkit::publisher::EntryResult;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    #[derive(Default, Clone)]
    struct MemoryShipments(Arc<Mutex<HashMap<String, ShipmentRecord>>>);

    #[async_trait]
    impl ShipmentRepository for MemoryShipments {
        async fn create_once(&self, record: &ShipmentRecord) -> Result<Created, RepositoryError> {
            let mut table = self.0.lock().unwrap();
            Ok(match table.get(&record.order_id) {
                Some(stored) => Created::Existing(stored.clone()),
                None => {
                    table.insert(record.order_id.clone(), record.clone());
                    Created::New
                }
            })
        }
    }

    #[derive(Default, Clone)]
    struct RecordingBus(Arc<Mutex<Vec<PutEventsRequestEntry>>>);

    #[async_trait]
    impl PutEventsTransport for RecordingBus {
        async fn put_events(
            &self,
            entries: Vec<PutEventsRequestEntry>,
        ) -> Result<Vec<EntryResult>, String> {
            let results = entries.iter().map(|_| EntryResult::default()).collect();
            self.0.lock().unwrap().extend(entries);
            Ok(results)
        }
    }

    impl RecordingBus {
        fn shipped(&self) -> Vec<serde_json::Value> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|e| serde_json::from_str(e.detail().unwrap()).unwrap())
                .collect()
        }
    }

    fn service(
        shipments: &MemoryShipments,
        bus: &RecordingBus,
    ) -> ShippingService<MemoryShipments, RecordingBus> {
        // Never called: `ship` is tested below the idempotency layer.
        let dynamo = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version_latest()
                .build(),
        );
        ShippingService::new(
            shipments.clone(),
            Publisher::new(bus.clone(), "bus"),
            Idempotency::new(dynamo, "idempotency", "shipping"),
        )
    }

    fn confirmed(order_id: &str) -> Envelope<OrderConfirmed> {
        Envelope::new(
            sources::SAGA,
            OrderConfirmed {
                order_id: order_id.into(),
                customer_id: "cus-1".into(),
                customer_email: "ada@example.com".into(),
                total: 3300,
                currency: contracts::Currency::try_from("EUR".to_string()).unwrap(),
                payment_id: "pay_1".into(),
                reservation_id: "res_1".into(),
                lines: vec![],
            },
        )
    }

    #[tokio::test]
    async fn a_confirmed_order_is_recorded_and_announced() {
        let (shipments, bus) = (MemoryShipments::default(), RecordingBus::default());
        let order = confirmed("ord-1");
        let handled = service(&shipments, &bus).ship(&order).await.unwrap();
        assert_eq!(handled, Handled::Processed);
        let stored = shipments.0.lock().unwrap()["ord-1"].clone();
        let plan = plan_shipment("ord-1");
        assert_eq!(stored.tracking_number, plan.tracking_number);
        assert_eq!(stored.event_id, order.metadata.event_id);
        let published = bus.shipped();
        assert_eq!(published.len(), 1);
        let data = &published[0]["data"];
        assert_eq!(data["carrier"], plan.carrier.as_str());
        assert_eq!(data["trackingNumber"], plan.tracking_number.as_str());
        assert_eq!(data["customerEmail"], "ada@example.com");
        assert_eq!(
            published[0]["metadata"]["causationId"],
            order.metadata.event_id.as_str()
        );
    }

    #[tokio::test]
    async fn the_same_event_again_republishes_the_same_event_id() {
        let (shipments, bus) = (MemoryShipments::default(), RecordingBus::default());
        let order = confirmed("ord-1");
        let svc = service(&shipments, &bus);
        svc.ship(&order).await.unwrap();
        assert_eq!(svc.ship(&order).await.unwrap(), Handled::Processed);
        let published = bus.shipped();
        assert_eq!(published.len(), 2);
        assert_eq!(
            published[0]["metadata"]["eventId"],
            published[1]["metadata"]["eventId"]
        );
    }

    #[tokio::test]
    async fn another_event_for_a_shipped_order_does_not_ship_again() {
        let (shipments, bus) = (MemoryShipments::default(), RecordingBus::default());
        let svc = service(&shipments, &bus);
        svc.ship(&confirmed("ord-1")).await.unwrap();
        let again = confirmed("ord-1");
        assert_eq!(svc.ship(&again).await.unwrap(), Handled::Duplicate);
        assert_eq!(bus.shipped().len(), 1);
    }

    #[tokio::test]
    async fn an_empty_order_id_is_refused_for_good() {
        let (shipments, bus) = (MemoryShipments::default(), RecordingBus::default());
        let err = service(&shipments, &bus)
            .ship(&confirmed(" "))
            .await
            .unwrap_err();
        assert!(err.is_permanent());
        assert!(bus.shipped().is_empty());
    }
}
