use eventcore::ids::check_data_ids;
use eventcore::{EventData, FieldError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A customer signed up: they get a welcome email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomerRegistered {
    #[schemars(length(min = 1, max = 64))]
    pub customer_id: String,
    #[schemars(length(min = 3, max = 254))]
    pub email: String,
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
}

impl EventData for CustomerRegistered {
    const DETAIL_TYPE: &'static str = "CustomerRegistered";
    const SOURCE: &'static str = crate::sources::CUSTOMERS;

    fn validate(&self) -> Result<(), FieldError> {
        check_data_ids(&[("customerId", &self.customer_id)])?;
        if !crate::limits::is_sendable_email(&self.email) {
            return Err(FieldError::new(
                "data.email",
                "is not an address mail can be sent to",
            ));
        }
        Ok(())
    }
}
