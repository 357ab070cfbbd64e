//! One set of limits for what intake admits, so that what one consumer accepts, all can
//! handle.
//!
//! An event that one consumer refuses while the others act on it is the worst outcome a bus
//! has: an order charged by payment but dead-lettered by inventory waits forever. So every
//! limit a consumer has is stated here, checked once in the contract's `validate` (which
//! `RawEvent::decode` runs at intake, in every consumer alike), and consumers take their
//! limits from here instead of keeping their own. `tests/intake` runs every consumer's
//! handler on orders at each of these limits and fails if any refuses one permanently.
//!
//! Ids have their limits in [`eventcore::ids`] and `occurredAt` its window in
//! [`eventcore::occurred_at`]; they are re-exported here so this module is the whole list.

pub use eventcore::envelope::MAX_EVENT_BYTES;
pub use eventcore::ids::{MAX_EVENT_ID_CHARS, MAX_ID_CHARS};
pub use eventcore::occurred_at::{EARLIEST_OCCURRED_AT, MAX_CLOCK_SKEW};

/// Most lines in one order (the published JSON schema's `maxItems`).
pub const MAX_ORDER_LINES: usize = 100;

/// Most distinct SKUs in one order. Inventory reserves every SKU of an order and writes its
/// reservation record in one DynamoDB transaction, and a transaction holds at most 100
/// items ("TransactWriteItems ... up to 100 action requests",
/// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html>):
/// 99 SKUs and the record. Lines beyond that must repeat a SKU.
pub const MAX_DISTINCT_SKUS: usize = 99;

/// Units of one SKU on one line.
pub const MAX_LINE_QUANTITY: u32 = 1000;

/// Longest email address, in bytes: the 254-octet path limit of RFC 5321 (4.5.3.1.3) less
/// the angle brackets.
pub const MAX_EMAIL_BYTES: usize = 254;

/// Longest payment token (a Stripe token or payment method id is far shorter).
pub const MAX_PAYMENT_TOKEN_CHARS: usize = 128;

/// Whether `address` is an email address notification can send to: 3 to
/// [`MAX_EMAIL_BYTES`] bytes, no whitespace or control characters, a non-empty local part and
/// a domain with a dot. Intake refuses an order or a sign-up whose address fails this, and
/// notification checks every recipient with it, so no mail the contract admits is refused
/// when it is sent.
pub fn is_sendable_email(address: &str) -> bool {
    (3..=MAX_EMAIL_BYTES).contains(&address.len())
        && !address.chars().any(|c| c.is_whitespace() || c.is_control())
        && address
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_addresses_have_a_local_part_and_a_dotted_domain() {
        for ok in ["a@b.c", "ada@example.com", "ada+shop@mail.example.org"] {
            assert!(is_sendable_email(ok), "{ok}");
        }
        let long = format!(
            "{}@example.com",
            "a".repeat(MAX_EMAIL_BYTES - "@example.com".len())
        );
        assert_eq!(long.len(), MAX_EMAIL_BYTES);
        assert!(is_sendable_email(&long));
        for refused in [
            "",
            "ab",
            "ada",
            "@example.com",
            "ada@localhost",
            "ada @example.com",
            "ada@exa\u{7}mple.com",
            &format!("a{long}"),
        ] {
            assert!(!is_sendable_email(refused), "{refused:?}");
        }
    }

    #[test]
    fn the_published_schema_states_the_line_limit() {
        let schema = serde_json::to_value(schemars::schema_for!(crate::OrderPlaced)).unwrap();
        assert_eq!(
            schema["properties"]["lines"]["maxItems"],
            serde_json::json!(MAX_ORDER_LINES)
        );
    }
}
