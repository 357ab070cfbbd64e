//! Every file in `events/samples/` is a `put-events` entries file. Each must decode with the
//! same code the functions run, except the ones named `*malformed*`, which must fail. Each
//! also matches the published schema of the version it says it is, every published schema
//! has a sample, and an older version's sample, upcast, matches the current schema.

use std::collections::BTreeSet;
use std::path::PathBuf;

use contracts::{Event, EventSet, RawEvent};
use serde_json::Value;

fn repo_dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../..")
        .join(sub)
}

struct Sample {
    file: String,
    raw: Result<RawEvent, contracts::DecodeError>,
}

fn samples() -> Vec<Sample> {
    let mut all = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(repo_dir("events/samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    paths.sort();
    for path in paths {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let entries: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{file}: not a put-events entries file: {e}"));
        assert!(
            !entries.is_empty() && entries.len() <= 10,
            "{file}: 1 to 10 entries"
        );
        for e in entries {
            assert!(e["EventBusName"].is_string(), "{file}: EventBusName");
            let detail = e["Detail"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: Detail must be a string"));
            let wire = serde_json::json!({
                "id": "sample", "source": e["Source"], "detail-type": e["DetailType"],
                "time": "2026-11-21T10:00:00Z",
                "detail": serde_json::from_str::<Value>(detail).unwrap_or(Value::String(detail.into())),
            });
            all.push(Sample {
                file: file.clone(),
                raw: RawEvent::from_sqs_body(&wire.to_string()),
            });
        }
    }
    all
}

fn schema(detail_type: &str, version: u32) -> Option<Value> {
    let path = repo_dir("events/schemas").join(format!("{detail_type}.v{version}.json"));
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn schema_errors(schema: &Value, data: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).expect("a valid JSON Schema");
    validator
        .iter_errors(data)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect()
}

#[test]
fn sample_events_decode_as_the_functions_decode_them() {
    let mut checked = 0;
    for sample in samples() {
        let result = sample.raw.clone().and_then(|ev| {
            eventcore::routes::admit(Event::ROUTES, &ev)?;
            Event::decode(&ev)
        });
        if sample.file.contains("malformed") {
            assert!(result.is_err(), "{} should be rejected", sample.file);
        } else {
            assert!(result.is_ok(), "{}: {result:?}", sample.file);
        }
        checked += 1;
    }
    assert!(checked >= 3, "expected sample files");
}

#[test]
fn samples_match_their_published_schema_and_every_schema_has_a_sample() {
    let mut covered = BTreeSet::new();
    for sample in samples().iter().filter(|s| !s.file.contains("malformed")) {
        let raw = sample.raw.as_ref().unwrap();
        let version = raw.metadata.schema_version;
        let schema = schema(&raw.detail_type, version).unwrap_or_else(|| {
            panic!(
                "{}: no published schema for {} v{version}",
                sample.file, raw.detail_type
            )
        });
        let errors = schema_errors(&schema, &raw.data);
        assert!(errors.is_empty(), "{}: {errors:#?}", sample.file);
        covered.insert(format!("{}.v{version}.json", raw.detail_type));
    }
    let missing: Vec<_> = contracts::all_schemas()
        .iter()
        .map(|s| s.file_name())
        .filter(|f| !covered.contains(f))
        .collect();
    assert!(
        missing.is_empty(),
        "schemas without a sample in events/samples/: {missing:?}"
    );
}

#[test]
fn older_versions_upcast_to_data_the_current_schema_accepts() {
    let mut upcast = 0;
    for sample in samples().iter().filter(|s| !s.file.contains("malformed")) {
        let raw = sample.raw.as_ref().unwrap();
        let event = Event::decode(raw).unwrap();
        let current = schema(&raw.detail_type, eventcore::Payload::schema_version(&event)).unwrap();
        if raw.metadata.schema_version == eventcore::Payload::schema_version(&event) {
            continue;
        }
        let data = eventcore::Payload::to_data(&event);
        let errors = schema_errors(&current, &data);
        assert!(errors.is_empty(), "{} upcast: {errors:#?}", sample.file);
        upcast += 1;
    }
    assert!(
        upcast >= 2,
        "expected v1 samples of OrderPlaced and FraudSuspected"
    );
}

#[test]
fn a_version_nobody_published_is_unsupported() {
    for version in [0, 3, 99] {
        let sample = samples()
            .into_iter()
            .find(|s| s.file == "order-placed.json")
            .unwrap();
        let mut raw = sample.raw.unwrap();
        raw.metadata.schema_version = version;
        let err = Event::decode(&raw).unwrap_err();
        assert_eq!(err.reason(), "unsupported-version", "v{version}: {err}");
    }
}

#[test]
fn version_2_orders_must_say_where_they_ship() {
    let sample = samples()
        .into_iter()
        .find(|s| s.file == "order-placed.json")
        .unwrap();
    let mut raw = sample.raw.unwrap();
    assert_eq!(raw.metadata.schema_version, 2);
    for without in [Value::Null, Value::from("absent")] {
        let fields = raw.data.as_object_mut().unwrap();
        if without.is_null() {
            fields.insert("shippingAddress".into(), Value::Null);
        } else {
            fields.remove("shippingAddress");
        }
        let err = Event::decode(&raw).unwrap_err();
        assert_eq!(err.reason(), "invalid-data", "{err}");
        assert!(err.to_string().contains("shippingAddress"), "{err}");
    }
    // The same order as version 1 is fine: its location is unknown.
    raw.metadata.schema_version = 1;
    raw.data.as_object_mut().unwrap().remove("shippingAddress");
    match Event::decode(&raw).unwrap() {
        Event::OrderPlaced(order) => assert_eq!(order.shipping_address, None),
        other => panic!("{other:?}"),
    }
}
