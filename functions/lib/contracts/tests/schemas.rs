//! `events/schemas/*.json` are generated from the contract types. This test fails when they
//! drift; `make schemas` (UPDATE_SCHEMAS=1) rewrites them.

use std::path::PathBuf;

#[test]
fn json_schemas_match_the_contract_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../events/schemas");
    let update = std::env::var("UPDATE_SCHEMAS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for (detail_type, schema) in contracts::schemas() {
        let path = dir.join(format!("{detail_type}.json"));
        let expected = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if update {
            std::fs::write(&path, &expected).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(expected.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale schemas (run `make schemas`): {stale:?}"
    );
}
