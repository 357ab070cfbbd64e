//! Every file in `events/samples/` is a `put-events` entries file. Each must decode with the
//! same code the functions run, except the ones named `*malformed*`, which must fail.

use std::path::PathBuf;

use contracts::{Event, EventSet, RawEvent};

#[test]
fn sample_events_decode_as_the_functions_decode_them() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../events/samples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let entries: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name}: not a put-events entries file: {e}"));
        assert!(
            !entries.is_empty() && entries.len() <= 10,
            "{name}: 1 to 10 entries"
        );
        for e in entries {
            assert!(e["EventBusName"].is_string(), "{name}: EventBusName");
            let detail = e["Detail"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: Detail must be a string"));
            let wire = serde_json::json!({
                "id": "sample", "source": e["Source"], "detail-type": e["DetailType"],
                "time": "2026-11-21T10:00:00Z",
                "detail": serde_json::from_str::<serde_json::Value>(detail).unwrap_or(serde_json::Value::String(detail.into())),
            });
            let result = RawEvent::from_sqs_body(&wire.to_string()).and_then(|ev| {
                eventcore::routes::admit(Event::ROUTES, &ev)?;
                Event::decode(&ev)
            });
            if name.contains("malformed") {
                assert!(result.is_err(), "{name} should be rejected");
            } else {
                assert!(result.is_ok(), "{name}: {result:?}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 3, "expected sample files in {}", dir.display());
}
