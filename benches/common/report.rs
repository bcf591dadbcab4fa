//! `target/bench/report.json`, shared by the benches: `load` writes it
//! afresh, `hot_path` and `kv` (run after it by `make bench`) merge their
//! key into it.

use serde_json::{json, Value};

/// Sets `key` to `value` in the report, keeping the other benches' keys;
/// returns the report's path and the whole report.
pub fn merge(key: &str, value: Value) -> (std::path::PathBuf, Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    let path = dir.join("report.json");
    let mut report = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    report[key] = value;
    std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json")).expect("write report.json");
    (path, report)
}
