//! `events/schemas/<Type>.v<N>.json` are generated from the contract types, one file per
//! published version. Two guards:
//! - a file must match what its type generates (the current type, or the frozen one in
//!   `contracts::published` for earlier versions), so schemas cannot drift from the code;
//! - a published file never changes: `events/schemas/PUBLISHED` locks each file's SHA-256.
//!   Changing a released contract means a new version (a new file), never an edit.
//!
//! `make schemas` (UPDATE_SCHEMAS=1) writes new versions and locks them; it refuses to
//! rewrite a locked file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../events/schemas")
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// `PUBLISHED`: `<sha256>  <file>` per line.
fn read_lock() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir().join("PUBLISHED")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (hash, file) = l.split_once("  ").expect("`<sha256>  <file>` lines");
            (file.to_string(), hash.to_string())
        })
        .collect()
}

#[test]
fn published_schemas_match_the_types_and_never_change() {
    let update = std::env::var("UPDATE_SCHEMAS").is_ok_and(|v| v == "1");
    let mut lock = read_lock();
    let mut problems = Vec::new();
    let mut generated = Vec::new();
    for published in contracts::all_schemas() {
        let file = published.file_name();
        let text = serde_json::to_string_pretty(&published.schema).unwrap() + "\n";
        let on_disk = std::fs::read_to_string(dir().join(&file)).ok();
        match lock.get(&file) {
            Some(hash) => {
                if on_disk.as_deref().map(sha256).as_ref() != Some(hash) {
                    problems.push(format!(
                        "{file} is published (locked in PUBLISHED) but the file changed or is \
                         missing: restore it"
                    ));
                } else if on_disk.as_deref() != Some(text.as_str()) {
                    problems.push(format!(
                        "{file} is published but its type now generates another schema: \
                         restore the type and publish the change as version {} (a new type \
                         version with an upcast)",
                        published.version + 1
                    ));
                }
            }
            None if update => {
                std::fs::write(dir().join(&file), &text).unwrap();
                lock.insert(file.clone(), sha256(&text));
            }
            None => problems.push(format!("{file} is not generated yet: run `make schemas`")),
        }
        generated.push(file);
    }
    for entry in std::fs::read_dir(dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".json") && !generated.contains(&name) {
            problems.push(format!("{name} matches no contract version"));
        }
    }
    if update {
        let mut text = String::from(
            "# Published event schemas: SHA-256 and file. A published file never changes;\n\
             # a change to a contract is a new version (a new file). Written by `make schemas`.\n",
        );
        for (file, hash) in &lock {
            text.push_str(&format!("{hash}  {file}\n"));
        }
        std::fs::write(dir().join("PUBLISHED"), text).unwrap();
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_type_has_its_current_version_published() {
    let all = contracts::all_schemas();
    for current in contracts::schemas() {
        for version in 1..=current.version {
            assert!(
                all.iter()
                    .any(|s| s.detail_type == current.detail_type && s.version == version),
                "{} v{version} has no published schema: keep the old version's type in \
                 contracts::published",
                current.detail_type
            );
        }
    }
}
