//! Limits on ids that become keys.
//!
//! An id from an event ends up in a DynamoDB key (idempotency record, stream id, payment,
//! reservation), in log lines and in derived ids. Unbounded, it could exceed DynamoDB's key
//! size (2048 bytes for a partition key) and fail as a `ValidationException` after work was
//! done; with `#` in it, it could impersonate a composite key (`order#<id>`). So ids are
//! checked once, at decode, and a bad one is a permanent error that names the field.

/// Longest id a payload may carry (order, customer, SKU, payment, reservation, ...).
pub const MAX_ID_CHARS: usize = 64;
/// Longest event, correlation or causation id (UUIDs are 36; senders may use their own).
pub const MAX_EVENT_ID_CHARS: usize = 128;

/// A field that is not acceptable, with its JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{path}`: {message}")]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Characters an id may hold: ASCII letters and digits and `-_.:@`. No `#` (the separator
/// of composite keys), no whitespace or control characters.
pub fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@')
}

/// Checks one id: 1 to `max` characters, each an [`is_id_char`].
pub fn check_id(path: &str, id: &str, max: usize) -> Result<(), FieldError> {
    if id.is_empty() {
        return Err(FieldError::new(path, "must not be empty"));
    }
    let chars = id.chars().count();
    if chars > max {
        return Err(FieldError::new(
            path,
            format!("is {chars} characters long, over the limit of {max}"),
        ));
    }
    if let Some(bad) = id.chars().find(|c| !is_id_char(*c)) {
        return Err(FieldError::new(
            path,
            format!("contains {bad:?}; ids may hold letters, digits and - _ . : @"),
        ));
    }
    Ok(())
}

/// [`check_id`] with the payload limit, for a `data` field.
pub fn check_data_id(field: &str, id: &str) -> Result<(), FieldError> {
    check_id(&format!("data.{field}"), id, MAX_ID_CHARS)
}

/// [`check_data_id`] for each (field, id) of a payload, in order.
pub fn check_data_ids(ids: &[(&str, &str)]) -> Result<(), FieldError> {
    ids.iter()
        .try_for_each(|(field, id)| check_data_id(field, id))
}

/// [`check_data_id`] for the SKU of each line of the list `field`.
pub fn check_skus<'a>(
    field: &str,
    skus: impl IntoIterator<Item = &'a str>,
) -> Result<(), FieldError> {
    skus.into_iter()
        .enumerate()
        .try_for_each(|(i, sku)| check_data_id(&format!("{field}[{i}].sku"), sku))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_in_length_and_characters() {
        assert_eq!(check_id("x", "ord-1_a.b:c@d", 64), Ok(()));
        assert_eq!(check_id("x", &"a".repeat(64), 64), Ok(()));
        assert!(check_id("x", &"a".repeat(65), 64)
            .unwrap_err()
            .message
            .contains("over the limit of 64"));
        assert!(check_id("x", "", 64).is_err());
        assert_eq!(
            check_skus("lines", ["MUG", "TEA POT"]).unwrap_err().path,
            "data.lines[1].sku"
        );
        assert_eq!(
            check_data_ids(&[("orderId", "o-1"), ("paymentId", "")])
                .unwrap_err()
                .path,
            "data.paymentId"
        );
        for bad in ["order#1", "a b", "a\nb", "ü", "a/b"] {
            let err = check_id("data.orderId", bad, 64).unwrap_err();
            assert_eq!(err.path, "data.orderId", "{bad}");
        }
    }
}
