//! The one kind of schema change Orderflow's contracts have made so far: a version adds a
//! field that senders of that version must set, while events of the versions before it
//! lack it. The type keeps the field `Option`; older data is upcast with it `null` (unknown),
//! and senders of the newer version are held to it at intake ([`required_since`]).

use serde_json::Value;

use crate::error::DecodeError;
use crate::ids::FieldError;

/// Upcasts `data` of a version before `field` existed: the field becomes `null`. Data that
/// already carries the field claims a version it is not, and is refused.
pub fn add_null_field(
    detail_type: &str,
    field: &str,
    mut data: Value,
) -> Result<Value, DecodeError> {
    if let Value::Object(fields) = &mut data {
        if fields.contains_key(field) {
            return Err(DecodeError::InvalidData {
                detail_type: detail_type.into(),
                path: format!("data.{field}"),
                message: "is not part of this schema version; send the version that added it"
                    .into(),
            });
        }
        fields.insert(field.into(), Value::Null);
    }
    Ok(data)
}

/// For [`crate::EventData::validate_sent`]: `field` must be set by senders of version `since`
/// or later.
pub fn required_since(sent: u32, since: u32, field: &str, present: bool) -> Result<(), FieldError> {
    if sent >= since && !present {
        return Err(FieldError::new(
            format!("data.{field}"),
            format!("is required from schema version {since} on"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn older_data_gets_the_field_as_null_and_data_claiming_it_is_refused() {
        assert_eq!(
            add_null_field("T", "extra", json!({"a": 1})).unwrap(),
            json!({"a": 1, "extra": null})
        );
        let err = add_null_field("T", "extra", json!({"extra": 2})).unwrap_err();
        assert_eq!(err.reason(), "invalid-data");
    }

    #[test]
    fn senders_of_the_new_version_must_set_the_field() {
        assert!(required_since(1, 2, "extra", false).is_ok());
        assert!(required_since(2, 2, "extra", true).is_ok());
        assert_eq!(
            required_since(3, 2, "extra", false).unwrap_err().path,
            "data.extra"
        );
    }
}
