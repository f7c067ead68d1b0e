//! Behavioural features in Rust equal the Python trainer's on the same event sequence
//! (`behaviour_parity.json`, written by models/vigil_models/export_parity.py), including every
//! bad-input case (missing timestamp or user, clock skew, late, duplicate, absurd locations).

mod common;

use common::bundles_dir;
use serde_json::Value;
use vigil::bundle::manifest::FeatureSpec;
use vigil::features::behaviour::BehaviourState;
use vigil::features::FeatureExtractor;

#[test]
fn rust_behavioural_features_equal_python_on_every_event() {
    let path = bundles_dir().join("behaviour_parity.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let specs: Vec<FeatureSpec> = serde_json::from_value(fixture["features"].clone()).unwrap();
    let extractor = FeatureExtractor::compile(&specs, std::path::Path::new(".")).unwrap();
    let features = extractor.behaviour_features();
    assert_eq!(
        features.len(),
        specs.len(),
        "every fixture feature is behavioural"
    );
    let now = chrono::DateTime::parse_from_rfc3339(fixture["now"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let state = BehaviourState::new(1 << 30, std::time::Duration::from_secs(3600));
    let mut row = vec![0.0f32; specs.len()];
    let mut mismatches = Vec::new();
    let events = fixture["events"].as_array().unwrap();
    for (i, event) in events.iter().enumerate() {
        let doc = &event["document"];
        let values = state.process(&[doc], &features, now);
        extractor
            .extract_with(doc, Some(&values[0]), &mut row)
            .unwrap();
        for (j, want) in event["values"].as_array().unwrap().iter().enumerate() {
            let got = row[j];
            let same = match want.as_f64() {
                None => got.is_nan(),
                Some(w) => (f64::from(got) - w).abs() <= 1e-3 * w.abs().max(1.0),
            };
            if !same {
                mismatches.push(format!(
                    "event {i} ({}), feature {}: rust {got}, python {want}",
                    event.get("case").and_then(Value::as_str).unwrap_or("-"),
                    specs[j].name
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let skipped = state.skipped.snapshot();
    for (reason, count) in fixture["skipped"].as_object().unwrap() {
        assert_eq!(
            skipped.get(reason.as_str()).copied(),
            count.as_u64(),
            "skip counter [{reason}]: rust {skipped:?}"
        );
    }
}
