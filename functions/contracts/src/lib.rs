//! The event contracts between Orderflow's functions. Every payload type here is the `data`
//! of one EventBridge `detail-type`; `events/schemas/` holds their JSON Schemas, generated
//! from these types (`make schemas`) and checked by a test so they cannot drift.

pub mod customer;
pub mod inventory;
pub mod lifecycle;
pub mod money;
pub mod order;
pub mod payment;

pub use customer::CustomerRegistered;
pub use inventory::{
    InventoryOutOfStock, InventoryReleased, InventoryReserved, ReleaseInventoryRequested, Shortage,
    StockLine,
};
pub use lifecycle::{EmailSent, FraudSuspected, OrderCancelled, OrderConfirmed, OrderShipped};
pub use money::{Currency, MoneyError};
pub use order::{OrderLine, OrderPlaced};
pub use payment::{PaymentFailed, PaymentProcessed, PaymentRefunded, RefundPaymentRequested};

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
    /// Every Orderflow source starts with this.
    pub const PREFIX: &str = "orderflow.";
}

/// The JSON Schema of every contract, by detail-type.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    use eventkit::EventData;
    fn schema<T: EventData + schemars::JsonSchema>() -> (&'static str, serde_json::Value) {
        let schema = schemars::schema_for!(T);
        (
            T::DETAIL_TYPE,
            serde_json::to_value(schema).unwrap_or_default(),
        )
    }
    vec![
        schema::<OrderPlaced>(),
        schema::<CustomerRegistered>(),
        schema::<PaymentProcessed>(),
        schema::<PaymentFailed>(),
        schema::<RefundPaymentRequested>(),
        schema::<PaymentRefunded>(),
        schema::<InventoryReserved>(),
        schema::<InventoryOutOfStock>(),
        schema::<ReleaseInventoryRequested>(),
        schema::<InventoryReleased>(),
        schema::<OrderConfirmed>(),
        schema::<OrderCancelled>(),
        schema::<OrderShipped>(),
        schema::<FraudSuspected>(),
        schema::<EmailSent>(),
    ]
}

/// Decodes an event of any contract type and checks it, the way the functions do: for
/// tools and tests that handle every type (e.g. the sample files).
pub fn validate_any(event: &eventkit::RawEvent) -> Result<(), eventkit::DecodeError> {
    use eventkit::EventData;
    fn check<T: EventData>(e: &eventkit::RawEvent) -> Result<(), eventkit::DecodeError> {
        e.decode::<T>().map(drop)
    }
    match event.detail_type.as_str() {
        OrderPlaced::DETAIL_TYPE => {
            let order = event.decode::<OrderPlaced>()?;
            order
                .data
                .validate()
                .map_err(|e| eventkit::DecodeError::InvalidData {
                    detail_type: OrderPlaced::DETAIL_TYPE.into(),
                    path: "data".into(),
                    message: e.to_string(),
                })
        }
        CustomerRegistered::DETAIL_TYPE => check::<CustomerRegistered>(event),
        PaymentProcessed::DETAIL_TYPE => check::<PaymentProcessed>(event),
        PaymentFailed::DETAIL_TYPE => check::<PaymentFailed>(event),
        RefundPaymentRequested::DETAIL_TYPE => check::<RefundPaymentRequested>(event),
        PaymentRefunded::DETAIL_TYPE => check::<PaymentRefunded>(event),
        InventoryReserved::DETAIL_TYPE => check::<InventoryReserved>(event),
        InventoryOutOfStock::DETAIL_TYPE => check::<InventoryOutOfStock>(event),
        ReleaseInventoryRequested::DETAIL_TYPE => check::<ReleaseInventoryRequested>(event),
        InventoryReleased::DETAIL_TYPE => check::<InventoryReleased>(event),
        OrderConfirmed::DETAIL_TYPE => check::<OrderConfirmed>(event),
        OrderCancelled::DETAIL_TYPE => check::<OrderCancelled>(event),
        OrderShipped::DETAIL_TYPE => check::<OrderShipped>(event),
        FraudSuspected::DETAIL_TYPE => check::<FraudSuspected>(event),
        EmailSent::DETAIL_TYPE => check::<EmailSent>(event),
        other => Err(eventkit::DecodeError::UnknownType(other.into())),
    }
}
