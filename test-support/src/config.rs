//! Image configs compared field by field (differential build tests against buildah and the
//! golden files).

use std::collections::BTreeMap;

/// The fields of an image config that the differential tests compare, with values that mean
/// "unset" (null, "", [], {}) removed, so `"Volumes": {}` equals an absent `Volumes`.
pub const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
    "ArgsEscaped",
];

/// `config` reduced to [`CONFIG_FIELDS`], unset values dropped, `drop_labels` removed from
/// Labels.
pub fn normalise_config(
    config: &serde_json::Value,
    drop_labels: &[&str],
) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for f in CONFIG_FIELDS {
        let mut v = config.get(*f).cloned().unwrap_or(serde_json::Value::Null);
        if *f == "Labels" {
            if let Some(m) = v.as_object_mut() {
                for l in drop_labels {
                    m.remove(*l);
                }
            }
        }
        let unset = match &v {
            serde_json::Value::Null => true,
            serde_json::Value::String(s) => s.is_empty(),
            serde_json::Value::Array(a) => a.is_empty(),
            serde_json::Value::Object(o) => o.is_empty(),
            serde_json::Value::Bool(b) => !b,
            _ => false,
        };
        if !unset {
            out.insert(f.to_string(), v);
        }
    }
    out
}
