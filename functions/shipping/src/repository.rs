//! The shipments table: one item per order (`orderId`), written once, by whichever of
//! dispatch and cancel gets there first.

use async_trait::async_trait;
use eventkit::dynamo::put_once;
use eventkit::{DecidedBy, DynamoError, FirstWrite};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What became of an order's shipment. Decided once per order: the item that says so is
/// written with `attribute_not_exists(orderId)`, so the first of dispatch and cancel wins and
/// the other finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShipmentState {
    /// Handed to a carrier.
    Dispatched(Dispatch),
    /// Stopped before dispatch (or before the order ever reached shipping): nothing leaves.
    Cancelled {
        /// The `CancelShipmentRequested` reason, announced again with every copy of
        /// `ShipmentCancelled`.
        reason: String,
    },
}

/// The carrier's side of a dispatched shipment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub shipment_id: String,
    pub carrier: String,
    pub tracking_number: String,
    pub customer_email: String,
}

/// A shipment as the service sees it. Stored flat (see [`StoredShipment`]), so that items
/// written before cancellation existed stay readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredShipment", into = "StoredShipment")]
pub struct ShipmentRecord {
    pub order_id: String,
    pub state: ShipmentState,
    /// The event that decided the order's fate (an `OrderConfirmed` or a
    /// `CancelShipmentRequested`): a redelivery of that event may publish its answer again,
    /// another event for the same order may not decide again.
    pub event_id: String,
    pub correlation_id: String,
    pub created_at: String,
}

impl DecidedBy for ShipmentRecord {
    fn cause_event_id(&self) -> &str {
        &self.event_id
    }
    fn cause_correlation_id(&self) -> &str {
        &self.correlation_id
    }
}

/// `status` of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShipmentStatus {
    /// Also what an item without `status` is: until shipments could be cancelled, every
    /// item was a dispatch.
    #[default]
    Dispatched,
    Cancelled,
}

/// The item's attributes, as DynamoDB holds them. A dispatch keeps the attributes it always
/// had; a cancellation has none of the carrier's and a `reason` instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredShipment {
    pub order_id: String,
    #[serde(default)]
    pub status: ShipmentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub event_id: String,
    pub correlation_id: String,
    pub created_at: String,
}

/// A stored item that is neither a whole dispatch nor a whole cancellation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("shipment of {order_id} is {status:?} but has no `{attribute}`")]
    Missing {
        order_id: String,
        status: ShipmentStatus,
        attribute: &'static str,
    },
}

impl TryFrom<StoredShipment> for ShipmentRecord {
    type Error = RecordError;

    fn try_from(item: StoredShipment) -> Result<Self, RecordError> {
        let missing = |attribute| RecordError::Missing {
            order_id: item.order_id.clone(),
            status: item.status,
            attribute,
        };
        let state = match item.status {
            ShipmentStatus::Dispatched => ShipmentState::Dispatched(Dispatch {
                shipment_id: item
                    .shipment_id
                    .clone()
                    .ok_or_else(|| missing("shipmentId"))?,
                carrier: item.carrier.clone().ok_or_else(|| missing("carrier"))?,
                tracking_number: item
                    .tracking_number
                    .clone()
                    .ok_or_else(|| missing("trackingNumber"))?,
                customer_email: item
                    .customer_email
                    .clone()
                    .ok_or_else(|| missing("customerEmail"))?,
            }),
            ShipmentStatus::Cancelled => ShipmentState::Cancelled {
                reason: item.reason.clone().ok_or_else(|| missing("reason"))?,
            },
        };
        Ok(ShipmentRecord {
            order_id: item.order_id,
            state,
            event_id: item.event_id,
            correlation_id: item.correlation_id,
            created_at: item.created_at,
        })
    }
}

impl From<ShipmentRecord> for StoredShipment {
    fn from(record: ShipmentRecord) -> Self {
        let mut item = StoredShipment {
            order_id: record.order_id,
            status: ShipmentStatus::Dispatched,
            shipment_id: None,
            carrier: None,
            tracking_number: None,
            customer_email: None,
            reason: None,
            event_id: record.event_id,
            correlation_id: record.correlation_id,
            created_at: record.created_at,
        };
        match record.state {
            ShipmentState::Dispatched(dispatch) => {
                item.shipment_id = Some(dispatch.shipment_id);
                item.carrier = Some(dispatch.carrier);
                item.tracking_number = Some(dispatch.tracking_number);
                item.customer_email = Some(dispatch.customer_email);
            }
            ShipmentState::Cancelled { reason } => {
                item.status = ShipmentStatus::Cancelled;
                item.reason = Some(reason);
            }
        }
        item
    }
}

#[async_trait]
pub trait ShipmentRepository: Send + Sync {
    /// Stores `record` unless its order already has a shipment (dispatched or cancelled);
    /// that one is returned instead.
    async fn create_once(
        &self,
        record: &ShipmentRecord,
    ) -> Result<FirstWrite<ShipmentRecord>, DynamoError>;
}

pub struct DynamoShipmentRepository {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoShipmentRepository {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoShipmentRepository {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl ShipmentRepository for DynamoShipmentRepository {
    async fn create_once(
        &self,
        record: &ShipmentRecord,
    ) -> Result<FirstWrite<ShipmentRecord>, DynamoError> {
        put_once(&self.client, &self.table, "orderId", record).await
    }
}

/// The shipments table in memory, first writer wins per order like the DynamoDB adapter.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct MemoryShipmentRepository {
    pub table: eventkit::testing::MemoryTable<ShipmentRecord>,
}

#[cfg(test)]
#[async_trait]
impl ShipmentRepository for MemoryShipmentRepository {
    async fn create_once(
        &self,
        record: &ShipmentRecord,
    ) -> Result<FirstWrite<ShipmentRecord>, DynamoError> {
        Ok(self.table.first_write(&record.order_id, record.clone()))
    }
}

#[cfg(test)]
mod tests {
    //! The item shape through serde_dynamo, the codec `put_once` stores and reads with.
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;
    use std::collections::HashMap;

    fn item(attributes: &[(&str, &str)]) -> HashMap<String, AttributeValue> {
        attributes
            .iter()
            .map(|(k, v)| (k.to_string(), AttributeValue::S(v.to_string())))
            .collect()
    }

    const BEFORE_CANCELLATION: &[(&str, &str)] = &[
        ("orderId", "ord-1"),
        ("shipmentId", "shp_0123456789abcdef"),
        ("carrier", "UPS"),
        ("trackingNumber", "1Z000000000042"),
        ("customerEmail", "ada@example.com"),
        ("eventId", "evt-1"),
        ("correlationId", "corr-1"),
        ("createdAt", "2026-11-21T10:00:00.000Z"),
    ];

    #[test]
    fn an_item_stored_before_cancellation_existed_reads_as_dispatched() {
        let record: ShipmentRecord =
            serde_dynamo::from_item(item(BEFORE_CANCELLATION)).expect("readable");

        assert_eq!(
            record,
            ShipmentRecord {
                order_id: "ord-1".into(),
                state: ShipmentState::Dispatched(Dispatch {
                    shipment_id: "shp_0123456789abcdef".into(),
                    carrier: "UPS".into(),
                    tracking_number: "1Z000000000042".into(),
                    customer_email: "ada@example.com".into(),
                }),
                event_id: "evt-1".into(),
                correlation_id: "corr-1".into(),
                created_at: "2026-11-21T10:00:00.000Z".into(),
            }
        );
        // Written back, it is the old item plus its status.
        let mut expected = item(BEFORE_CANCELLATION);
        expected.insert("status".into(), AttributeValue::S("DISPATCHED".into()));
        let written: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(&record).expect("storable");
        assert_eq!(written, expected);
    }

    #[test]
    fn a_cancellation_is_stored_without_carrier_attributes_and_reads_back() {
        let record = ShipmentRecord {
            order_id: "ord-1".into(),
            state: ShipmentState::Cancelled {
                reason: "fraud-suspected".into(),
            },
            event_id: "evt-2".into(),
            correlation_id: "corr-1".into(),
            created_at: "2026-11-21T10:00:00.000Z".into(),
        };
        let written: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(&record).expect("storable");

        assert_eq!(
            written,
            item(&[
                ("orderId", "ord-1"),
                ("status", "CANCELLED"),
                ("reason", "fraud-suspected"),
                ("eventId", "evt-2"),
                ("correlationId", "corr-1"),
                ("createdAt", "2026-11-21T10:00:00.000Z"),
            ])
        );
        let read: ShipmentRecord = serde_dynamo::from_item(written).expect("readable");
        assert_eq!(read, record);
    }

    #[test]
    fn a_partial_item_is_unreadable_rather_than_guessed() {
        let mut dispatched = item(BEFORE_CANCELLATION);
        dispatched.remove("trackingNumber");
        let err = serde_dynamo::from_item::<_, ShipmentRecord>(dispatched).unwrap_err();
        assert!(err.to_string().contains("trackingNumber"), "{err}");

        let cancelled = item(&[
            ("orderId", "ord-1"),
            ("status", "CANCELLED"),
            ("eventId", "evt-2"),
            ("correlationId", "corr-1"),
            ("createdAt", "2026-11-21T10:00:00.000Z"),
        ]);
        let err = serde_dynamo::from_item::<_, ShipmentRecord>(cancelled).unwrap_err();
        assert!(err.to_string().contains("reason"), "{err}");
    }
}
