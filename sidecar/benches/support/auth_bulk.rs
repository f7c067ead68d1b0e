//! The bulk both `benches/bulk.rs` and `examples/telemetry_overhead.rs` push through the
//! scoring path: 1,000 authentication events (models/samples/auth-events.ndjson, repeated), each
//! under `{"index":{"_index":"vigil-bench-auth"}}`, and the shipped models loaded with the
//! embedded default configuration.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use vigil::bundle::ModelRegistry;
use vigil::config::{Config, Overrides};

pub const DOCS: usize = 1000;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

pub fn body() -> Bytes {
    let path = repo().join("models/samples/auth-events.ndjson");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let events: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = String::new();
    for i in 0..DOCS {
        out.push_str("{\"index\":{\"_index\":\"vigil-bench-auth\"}}\n");
        out.push_str(events[i % events.len()]);
        out.push('\n');
    }
    Bytes::from(out)
}

/// The embedded default configuration and the shipped models (login-risk must load).
pub fn defaults() -> (Config, ModelRegistry) {
    let config = Config::load(None, &Overrides::default()).expect("embedded defaults");
    let registry = ModelRegistry::new(vec![repo().join("models")]);
    let report = registry.reload();
    assert!(
        registry.get("login-risk").is_some(),
        "login-risk must load: {report:?}"
    );
    (config, registry)
}
