//! The intake of every function (`RawEvent::from_sqs_body`, then the route check and
//! `Event::decode`) meets whatever is on a queue. Whatever it is - random bytes, truncated or
//! deeply nested JSON, huge payloads, wrong types in any field - the answer is an error with a
//! reason (which becomes the DLQ reason), never a panic.

use contracts::{DecodeError, Event, EventSet, RawEvent};
use proptest::prelude::*;
use serde_json::{json, Value};

/// What a consumer does with a message body.
fn intake(body: &str) -> Result<Event, DecodeError> {
    let raw = RawEvent::from_sqs_body(body)?;
    eventcore::routes::admit(Event::ROUTES, &raw)?;
    Event::decode(&raw)
}

fn order_placed() -> Value {
    json!({
        "version": "0", "id": "eb-1", "detail-type": "OrderPlaced", "source": "orderflow.orders",
        "account": "000000000000", "time": "2026-11-21T10:00:00Z", "region": "us-east-1",
        "resources": [],
        "detail": {
            "metadata": {"eventId": "e-1", "schemaVersion": 1, "correlationId": "c-1"},
            "data": {
                "orderId": "ord-1", "customerId": "cus-1", "customerEmail": "ada@example.com",
                "currency": "EUR", "total": 2500, "paymentToken": "tok_visa",
                "lines": [{"sku": "MUG", "quantity": 2, "unitPrice": 1250}]
            }
        }
    })
}

fn reason(body: &str) -> &'static str {
    match intake(body) {
        Ok(_) => "ok",
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an error without a message");
            e.reason()
        }
    }
}

#[test]
fn the_reference_event_is_taken_in() {
    assert_eq!(reason(&order_placed().to_string()), "ok");
}

#[test]
fn every_truncation_of_an_event_is_rejected_with_a_reason() {
    let body = order_placed().to_string();
    for end in 0..body.len() {
        if body.is_char_boundary(end) {
            let r = reason(&body[..end]);
            assert!(
                ["empty-body", "not-json"].contains(&r),
                "truncated at {end}: {r}"
            );
        }
    }
}

#[test]
fn deeply_nested_payloads_are_rejected_not_overflowing_the_stack() {
    for depth in [200, 10_000, 100_000] {
        let mut event = order_placed().to_string();
        let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        event = event.replace("\"tok_visa\"", &nested);
        let r = reason(&event);
        assert!(["not-json", "too-large"].contains(&r), "depth {depth}: {r}");
    }
}

#[test]
fn payloads_over_the_eventbridge_limit_are_rejected_before_parsing() {
    let mut event = order_placed();
    event["detail"]["data"]["paymentToken"] = Value::String("x".repeat(300 * 1024));
    assert_eq!(reason(&event.to_string()), "too-large");
}

#[test]
fn ids_that_would_become_bad_keys_are_rejected_at_decode() {
    for (path, bad) in [
        ("/detail/data/orderId", json!("ord#1")),
        ("/detail/data/orderId", json!("x".repeat(65))),
        ("/detail/data/customerId", json!("")),
        ("/detail/data/lines/0/sku", json!("MUG RED")),
        ("/detail/metadata/eventId", json!("e\u{0}1")),
        ("/detail/metadata/correlationId", json!("c".repeat(129))),
    ] {
        let mut event = order_placed();
        *event.pointer_mut(path).unwrap() = bad;
        let err = intake(&event.to_string()).unwrap_err();
        assert!(
            ["invalid-data", "invalid-metadata"].contains(&err.reason()),
            "{path}: {err}"
        );
        let field = path.rsplit('/').next().unwrap();
        assert!(err.to_string().contains(field), "{path}: {err}");
    }
}

#[test]
fn a_type_from_a_source_that_does_not_own_it_is_untrusted() {
    let mut event = order_placed();
    event["source"] = json!("orderflow.saga");
    assert_eq!(reason(&event.to_string()), "untrusted-source");
}

/// Any JSON value, up to a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every field an event has, as a JSON pointer.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = reason(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_json_never_panics(value in any_json()) {
        let _ = reason(&value.to_string());
    }

    #[test]
    fn any_field_replaced_by_any_value_is_decoded_or_rejected_with_a_reason(
        pick in any::<prop::sample::Index>(),
        value in any_json(),
    ) {
        let mut event = order_placed();
        let mut all = Vec::new();
        pointers(&event, String::new(), &mut all);
        let path = pick.get(&all).clone();
        *event.pointer_mut(&path).unwrap() = value;
        let _ = reason(&event.to_string());
    }

    #[test]
    fn any_field_removed_is_decoded_or_rejected_with_a_reason(pick in any::<prop::sample::Index>()) {
        let mut event = order_placed();
        let mut all = Vec::new();
        pointers(&event, String::new(), &mut all);
        let path = pick.get(&all).clone();
        let (parent, key) = path.rsplit_once('/').unwrap();
        match event.pointer_mut(parent).unwrap() {
            Value::Object(m) => { m.remove(key); }
            Value::Array(a) => { a.remove(key.parse::<usize>().unwrap()); }
            _ => unreachable!(),
        }
        let _ = reason(&event.to_string());
    }
}
