//! The event contracts between Orderflow's functions. Every payload type here is the `data`
//! of one EventBridge `detail-type`; `events/schemas/` holds their JSON Schemas, generated
//! from these types (`make schemas`) and checked by a test so they cannot drift.

pub mod money;
pub mod order;
pub mod payment;

pub use money::{Currency, MoneyError};
pub use order::{OrderLine, OrderPlaced};
pub use payment::{PaymentFailed, PaymentProcessed};

/// EventBridge `source` of each producer. Rules match on these.
pub mod sources {
    /// Where orders come from (the storefront, or a user with the AWS CLI).
    pub const ORDERS: &str = "orderflow.orders";
    pub const PAYMENT: &str = "orderflow.payment";
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
        schema::<PaymentProcessed>(),
        schema::<PaymentFailed>(),
    ]
}
