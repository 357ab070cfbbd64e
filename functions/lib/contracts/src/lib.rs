//! The event contracts between Orderflow's functions. Every payload type here is the `data`
//! of one EventBridge `detail-type`; `events/schemas/` holds their JSON Schemas, generated
//! from these types (`make schemas`) and checked by a test so they cannot drift. [`Event`]
//! closes the set: one enum, decoded in one place, with each type's owning source.
//!
//! This crate stands on `eventcore` alone: contracts need nothing from AWS.

pub mod address;
pub mod customer;
pub mod fraud;
pub mod inventory;
pub mod lifecycle;
pub mod limits;
pub mod money;
mod nullable;
pub mod order;
pub mod payment;
pub mod published;

pub use address::{Country, Location, ShippingAddress};
pub use customer::CustomerRegistered;
pub use fraud::{FraudCleared, FraudPattern, FraudRule, FraudSuspected};
pub use inventory::{
    InventoryOutOfStock, InventoryReleased, InventoryReserved, ReleaseInventoryRequested, Shortage,
    StockLine,
};
pub use lifecycle::{
    CancelShipmentRequested, EmailSent, OrderCancelRequested, OrderCancelled, OrderConfirmed,
    OrderDeadlineReached, OrderShipped, ShipmentCancelled, DEADLINE_EXCEEDED,
};
pub use money::{Currency, MoneyError};
pub use order::{OrderLine, OrderPlaced};
pub use payment::{PaymentFailed, PaymentProcessed, PaymentRefunded, RefundPaymentRequested};

pub use eventcore::{DecodeError, Envelope, EventData, EventSet, Payload, RawEvent, Route};

/// EventBridge `source` of each producer. Rules match on these.
pub mod sources {
    /// Where orders come from (the storefront, or a user with the AWS CLI).
    pub const ORDERS: &str = "orderflow.orders";
    /// Where customer sign-ups come from.
    pub const CUSTOMERS: &str = "orderflow.customers";
    pub const PAYMENT: &str = "orderflow.payment";
    pub const INVENTORY: &str = "orderflow.inventory";
    pub const SHIPPING: &str = "orderflow.shipping";
    pub const NOTIFICATION: &str = "orderflow.notification";
    pub const FRAUD: &str = "orderflow.fraud";
    /// The order saga's decisions (published by the outbox).
    pub const SAGA: &str = "orderflow.saga";
    /// The deadline timer: an order's `OrderDeadlineReached`.
    pub const DEADLINES: &str = "orderflow.deadlines";
    /// People running the shop: `orderflow order cancel`.
    pub const OPERATIONS: &str = "orderflow.operations";
    /// Every Orderflow source starts with this.
    pub const PREFIX: &str = "orderflow.";
}

/// The event stream of one order in the event store.
pub fn order_stream(order_id: &str) -> String {
    format!("order#{order_id}")
}

/// Declares the closed [`Event`] enum from one list of contract types: the enum, its
/// conversions, its routes, its decoding and the schema list all follow from the list, so a
/// type is added in one place.
macro_rules! event_set {
    ($($name:ident),* $(,)?) => {
        /// Every Orderflow event, one variant per contract type. Decoded once, at the edge
        /// ([`EventSet::decode`]); everything past it matches on variants, never on
        /// detail-type strings.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Event {
            $($name($name),)*
        }

        $(impl From<$name> for Event {
            fn from(data: $name) -> Self {
                Event::$name(data)
            }
        })*

        impl Payload for Event {
            fn detail_type(&self) -> &'static str {
                match self { $(Event::$name(_) => <$name as EventData>::DETAIL_TYPE,)* }
            }
            fn source(&self) -> &'static str {
                match self { $(Event::$name(_) => <$name as EventData>::SOURCE,)* }
            }
            fn schema_version(&self) -> u32 {
                match self { $(Event::$name(_) => <$name as EventData>::SCHEMA_VERSION,)* }
            }
            fn to_data(&self) -> serde_json::Value {
                match self { $(Event::$name(e) => e.to_data(),)* }
            }
        }

        impl EventSet for Event {
            const ROUTES: &'static [Route] = &[$(<$name as EventData>::ROUTE,)*];

            fn decode(raw: &RawEvent) -> Result<Self, DecodeError> {
                $(if raw.detail_type == <$name as EventData>::DETAIL_TYPE {
                    return raw.decode::<$name>().map(|e| Event::$name(e.data));
                })*
                Err(DecodeError::UnknownType(raw.detail_type.clone()))
            }

            fn decode_stored(raw: &RawEvent) -> Result<Self, DecodeError> {
                $(if raw.detail_type == <$name as EventData>::DETAIL_TYPE {
                    return raw.decode_stored::<$name>().map(|e| Event::$name(e.data));
                })*
                Err(DecodeError::UnknownType(raw.detail_type.clone()))
            }
        }

        /// The JSON Schema of every contract's current version.
        pub fn schemas() -> Vec<PublishedSchema> {
            vec![$(schema::<$name>(<$name as EventData>::DETAIL_TYPE, <$name as EventData>::SCHEMA_VERSION),)*]
        }
    };
}

event_set! {
    OrderPlaced,
    CustomerRegistered,
    PaymentProcessed,
    PaymentFailed,
    RefundPaymentRequested,
    PaymentRefunded,
    InventoryReserved,
    InventoryOutOfStock,
    ReleaseInventoryRequested,
    InventoryReleased,
    OrderConfirmed,
    OrderCancelled,
    OrderShipped,
    OrderDeadlineReached,
    OrderCancelRequested,
    CancelShipmentRequested,
    ShipmentCancelled,
    FraudSuspected,
    FraudCleared,
    EmailSent,
}

/// The JSON Schema of one version of one contract.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedSchema {
    pub detail_type: &'static str,
    pub version: u32,
    pub schema: serde_json::Value,
}

impl PublishedSchema {
    /// Its file in `events/schemas/`.
    pub fn file_name(&self) -> String {
        format!("{}.v{}.json", self.detail_type, self.version)
    }
}

fn schema<T: schemars::JsonSchema>(detail_type: &'static str, version: u32) -> PublishedSchema {
    PublishedSchema {
        detail_type,
        version,
        schema: serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default(),
    }
}

/// Every schema version ever published: the current ones and the frozen earlier ones
/// ([`published`]).
pub fn all_schemas() -> Vec<PublishedSchema> {
    let mut all = schemas();
    all.push(schema::<published::OrderPlacedV1>(
        OrderPlaced::DETAIL_TYPE,
        1,
    ));
    all.push(schema::<published::FraudSuspectedV1>(
        FraudSuspected::DETAIL_TYPE,
        1,
    ));
    all.sort_by(|a, b| (a.detail_type, a.version).cmp(&(b.detail_type, b.version)));
    all
}

impl Event {
    /// The order the event is about, if it is about one.
    pub fn order_id(&self) -> Option<&str> {
        Some(match self {
            Event::OrderPlaced(e) => &e.order_id,
            Event::PaymentProcessed(e) => &e.order_id,
            Event::PaymentFailed(e) => &e.order_id,
            Event::RefundPaymentRequested(e) => &e.order_id,
            Event::PaymentRefunded(e) => &e.order_id,
            Event::InventoryReserved(e) => &e.order_id,
            Event::InventoryOutOfStock(e) => &e.order_id,
            Event::ReleaseInventoryRequested(e) => &e.order_id,
            Event::InventoryReleased(e) => &e.order_id,
            Event::OrderConfirmed(e) => &e.order_id,
            Event::OrderCancelled(e) => &e.order_id,
            Event::OrderShipped(e) => &e.order_id,
            Event::OrderDeadlineReached(e) => &e.order_id,
            Event::OrderCancelRequested(e) => &e.order_id,
            Event::CancelShipmentRequested(e) => &e.order_id,
            Event::ShipmentCancelled(e) => &e.order_id,
            Event::FraudSuspected(e) => &e.order_id,
            Event::FraudCleared(e) => &e.order_id,
            Event::EmailSent(e) => return e.order_id.as_deref(),
            Event::CustomerRegistered(_) => return None,
        })
    }
}
