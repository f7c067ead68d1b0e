//! Bundle loading and its checks, against the committed test bundles (golden outputs come from
//! onnxruntime and the native libraries via models/vigil_models/export_test_bundles.py).

mod common;

use common::*;
use vigil::bundle::{load, ModelRegistry};

const ALL: &[&str] = &[
    "xgb_binary",
    "lgbm_binary",
    "rf_binary",
    "logreg_binary",
    "mlp_binary",
    "xgb_multiclass",
    "xgb_regressor",
    "rf_regressor",
    "gte_binary",
    "bench_xgb",
];

#[test]
fn every_test_bundle_loads_and_reproduces_its_golden_outputs() {
    for name in ALL {
        let bundle = load(&bundle(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let diff = bundle
            .golden_max_diff
            .expect("test bundles carry a golden file");
        assert!(diff <= 1e-5, "{name}: golden max |diff| {diff}");
    }
}

#[test]
fn tree_models_run_on_our_evaluator_and_others_on_tract() {
    for name in ALL {
        let bundle = load(&bundle(name)).unwrap();
        let expected = if name.starts_with("logreg") || name.starts_with("mlp") {
            "tract"
        } else {
            "tree_ensemble"
        };
        assert_eq!(bundle.engine.kind(), expected, "{name}");
    }
}

#[test]
fn a_model_file_whose_hash_differs_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_bundle("logreg_binary", tmp.path());
    edit_json(&dir.join("manifest.json"), |m| {
        m["model"]["sha256"] = "00".repeat(32).into();
    });
    let err = load(&dir).unwrap_err().to_string();
    assert!(err.contains("SHA-256 mismatch"), "{err}");
}

#[test]
fn a_feature_count_different_from_the_input_width_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_bundle("mlp_binary", tmp.path());
    edit_json(&dir.join("manifest.json"), |m| {
        m["features"].as_array_mut().unwrap().pop();
    });
    let err = load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("feature count 31 does not match the model input width 32"),
        "{err}"
    );
}

#[test]
fn golden_outputs_not_reproduced_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_bundle("logreg_binary", tmp.path());
    edit_json(&dir.join("golden.json"), |g| {
        let v = g["rows"][5]["expected"]["scores"][0].as_f64().unwrap();
        g["rows"][5]["expected"]["scores"][0] = (v + 1e-3).into();
    });
    let err = load(&dir).unwrap_err().to_string();
    assert!(err.contains("golden output not reproduced: row 5"), "{err}");
}

#[test]
fn inconsistent_manifests_name_every_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_bundle("logreg_binary", tmp.path());
    edit_json(&dir.join("manifest.json"), |m| {
        m["name"] = "Bad Name".into();
        m["positive_class"] = "nope".into();
        m["threshold"] = 3.0.into();
    });
    let err = load(&dir).unwrap_err().to_string();
    for needle in ["name [Bad Name]", "positive_class [nope]", "threshold 3"] {
        assert!(err.contains(needle), "{needle} not in {err}");
    }
    edit_json(&dir.join("manifest.json"), |m| {
        m["surprise"] = true.into();
    });
    let err = load(&dir).unwrap_err().to_string();
    assert!(err.contains("unknown field `surprise`"), "{err}");
}

#[test]
fn a_failed_reload_keeps_the_previous_version_serving_and_a_good_one_replaces_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_bundle("logreg_binary", tmp.path());
    let registry = ModelRegistry::new(vec![tmp.path().to_path_buf()]);
    let first = registry.reload();
    assert_eq!(first.loaded.len(), 1, "{first:?}");
    let before = registry.get("logreg_binary").unwrap();

    // A broken new version: the model file changes but the manifest hash does not.
    std::fs::write(dir.join("model.onnx"), b"not a model").unwrap();
    let report = registry.reload();
    assert_eq!(report.refused.len(), 1);
    assert_eq!(report.refused[0].kept_version.as_deref(), Some("1.0.0"));
    let still = registry
        .get("logreg_binary")
        .expect("previous version keeps serving");
    assert!(std::sync::Arc::ptr_eq(&before, &still));

    // A good new version replaces it atomically.
    std::fs::copy(
        bundle("logreg_binary").join("model.onnx"),
        dir.join("model.onnx"),
    )
    .unwrap();
    edit_json(&dir.join("manifest.json"), |m| {
        m["version"] = "1.1.0".into()
    });
    let report = registry.reload();
    assert!(report.refused.is_empty(), "{report:?}");
    assert_eq!(registry.get("logreg_binary").unwrap().version(), "1.1.0");
}

#[test]
fn two_bundles_with_one_name_are_not_both_served() {
    let tmp = tempfile::tempdir().unwrap();
    let a = copy_bundle("logreg_binary", &tmp.path().join("a"));
    let _ = a;
    copy_bundle("logreg_binary", &tmp.path().join("b"));
    let registry = ModelRegistry::new(vec![tmp.path().join("a"), tmp.path().join("b")]);
    let report = registry.reload();
    assert_eq!(report.loaded.len(), 1);
    assert!(
        report.refused[0].reason.contains("already served"),
        "{report:?}"
    );
}

#[test]
fn sha256_helper_matches_manifest() {
    let dir = bundle("logreg_binary");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["model"]["sha256"],
        sha256_hex(&dir.join("model.onnx"))
    );
}
