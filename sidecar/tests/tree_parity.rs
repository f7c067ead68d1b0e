//! Golden parity for every tree bundle in `tests/bundles/`: our evaluator against onnxruntime's
//! scores and the ensemble margins, our TreeSHAP against XGBoost/LightGBM contributions, and local
//! accuracy of TreeSHAP (with covers.json and with covers routed from reference.json) on every
//! row. A missing bundle fails the test: nothing is skipped silently.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tract_onnx::prelude::Framework;
use vigil::explain::tree_shap::TreeShap;
use vigil::score::tree::TreeGraph;

const SHAP_TOLERANCE: f64 = 1e-4;
const ADDITIVITY_TOLERANCE: f64 = 1e-4;

fn bundle_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bundles")
        .join(name);
    assert!(
        dir.join("model.onnx").is_file(),
        "bundle {name} is missing: expected {}/model.onnx (copy the bundles from main)",
        dir.display()
    );
    dir
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, found {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

fn feature_row(v: &Value) -> Vec<f32> {
    floats(v).into_iter().map(|x| x as f32).collect()
}

struct Bundle {
    graph: TreeGraph,
    rows: Vec<f32>,
    n: usize,
    golden: Vec<Value>,
    tolerance: f64,
    covers: Option<Vec<Vec<f64>>>,
    reference: Vec<f32>,
    n_reference: usize,
}

fn load(name: &str) -> Bundle {
    let dir = bundle_dir(name);
    let manifest = read_json(&dir.join("manifest.json"));
    let output = manifest["model"]["output"]
        .as_str()
        .expect("manifest model.output");
    let model_file = manifest["model"]["file"].as_str().unwrap_or("model.onnx");
    let proto = tract_onnx::onnx()
        .proto_model_for_path(dir.join(model_file))
        .expect("model.onnx parses");
    assert!(
        TreeGraph::is_tree_graph(&proto),
        "{name} has no tree ensemble node"
    );
    let graph = TreeGraph::from_onnx(&proto, output).unwrap_or_else(|e| panic!("{name}: {e}"));
    let tolerance = manifest["golden"]["tolerance"].as_f64().unwrap_or(1e-5);
    let golden_file = manifest["golden"]["file"].as_str().unwrap_or("golden.json");
    let golden = read_json(&dir.join(golden_file))["rows"]
        .as_array()
        .expect("golden rows")
        .clone();
    let f = graph.n_features();
    let mut rows = Vec::with_capacity(golden.len() * f);
    for (i, g) in golden.iter().enumerate() {
        let row = feature_row(&g["features"]);
        assert_eq!(
            row.len(),
            f,
            "{name}: golden row {i} has {} features, model takes {f}",
            row.len()
        );
        rows.extend(row);
    }
    let covers_file = manifest["explanation"]["covers"]
        .as_str()
        .unwrap_or("covers.json");
    let covers = dir.join(covers_file).is_file().then(|| {
        read_json(&dir.join(covers_file))["trees"]
            .as_array()
            .expect("covers trees")
            .iter()
            .map(floats)
            .collect()
    });
    let reference_file = manifest["reference_sample"]
        .as_str()
        .unwrap_or("reference.json");
    let reference_rows = read_json(&dir.join(reference_file))["rows"]
        .as_array()
        .expect("reference rows")
        .clone();
    let reference: Vec<f32> = reference_rows.iter().flat_map(feature_row).collect();
    Bundle {
        n: golden.len(),
        graph,
        rows,
        golden,
        tolerance,
        covers,
        reference,
        n_reference: reference_rows.len(),
    }
}

fn max_abs_diff(a: impl IntoIterator<Item = f64>, b: impl IntoIterator<Item = f64>) -> f64 {
    a.into_iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn check_scores_and_margins(name: &str, b: &Bundle) {
    let (n, f) = (b.n, b.graph.n_features());
    let c = b.graph.n_outputs();
    let mut batch = vec![0.0f32; n * c];
    b.graph.predict(&b.rows, n, &mut batch);
    let m = b.graph.n_margins();
    let mut margins = vec![0.0f32; n * m];
    b.graph.margins(&b.rows, n, &mut margins);
    let mut one = vec![0.0f32; c];
    for (i, g) in b.golden.iter().enumerate() {
        let want = floats(&g["expected"]["scores"]);
        assert_eq!(
            want.len(),
            c,
            "{name} row {i}: golden has {} scores, output has {c} columns",
            want.len()
        );
        let got = &batch[i * c..(i + 1) * c];
        let d = max_abs_diff(got.iter().map(|&v| f64::from(v)), want.iter().copied());
        assert!(
            d <= b.tolerance,
            "{name} row {i}: scores {got:?} vs golden {want:?} (diff {d:e})"
        );
        // Single-row scoring takes the other kernel (trees interleaved instead of rows).
        b.graph.predict(&b.rows[i * f..(i + 1) * f], 1, &mut one);
        assert_eq!(
            &one[..],
            got,
            "{name} row {i}: batch and single-row scores differ"
        );
        if let Some(want_m) = g["expected"].get("margin").filter(|v| !v.is_null()) {
            let want_m = floats(want_m);
            assert_eq!(
                want_m.len(),
                m,
                "{name} row {i}: golden has {} margins, we have {m}",
                want_m.len()
            );
            let got_m = &margins[i * m..(i + 1) * m];
            let d = max_abs_diff(got_m.iter().map(|&v| f64::from(v)), want_m.iter().copied());
            assert!(
                d <= b.tolerance,
                "{name} row {i}: margin {got_m:?} vs golden {want_m:?} (diff {d:e})"
            );
        }
    }
}

fn check_local_accuracy(name: &str, what: &str, b: &Bundle, shap: &TreeShap) {
    let n = b.n;
    let m = shap.n_margins();
    let w = shap.n_features() + 1;
    let rows = b.graph.ensemble_rows(&b.rows, n);
    let tf = b.graph.ensemble_features();
    let mut margins = vec![0.0f32; n * m];
    b.graph.margins(&b.rows, n, &mut margins);
    let mut out = vec![0.0f64; m * w];
    for i in 0..n {
        shap.shap_row(&rows[i * tf..(i + 1) * tf], &mut out);
        for k in 0..m {
            let total: f64 = out[k * w..(k + 1) * w].iter().sum();
            let margin = f64::from(margins[i * m + k]);
            assert!(
                (total - margin).abs() <= ADDITIVITY_TOLERANCE,
                "{name} ({what}) row {i} margin {k}: contributions sum to {total}, margin is {margin}"
            );
        }
    }
}

fn check_contributions(name: &str, b: &Bundle, shap: &TreeShap) {
    let m = shap.n_margins();
    let w = shap.n_features() + 1;
    let rows = b.graph.ensemble_rows(&b.rows, b.n);
    let tf = b.graph.ensemble_features();
    let mut out = vec![0.0f64; m * w];
    let mut checked = 0;
    for (i, g) in b.golden.iter().enumerate() {
        let Some(want) = g["expected"].get("contributions").and_then(Value::as_array) else {
            continue;
        };
        assert_eq!(
            want.len(),
            m,
            "{name} row {i}: golden has {} contribution arrays, we have {m}",
            want.len()
        );
        shap.shap_row(&rows[i * tf..(i + 1) * tf], &mut out);
        for (k, want_k) in want.iter().enumerate() {
            let want_k = floats(want_k);
            assert_eq!(
                want_k.len(),
                w,
                "{name} row {i}: golden contributions have {} entries",
                want_k.len()
            );
            let got = &out[k * w..(k + 1) * w];
            let d = max_abs_diff(got.iter().copied(), want_k.iter().copied());
            assert!(d <= SHAP_TOLERANCE, "{name} row {i} margin {k}: contributions differ by {d:e}\n ours {got:?}\n gold {want_k:?}");
        }
        checked += 1;
    }
    assert!(
        checked > 0,
        "{name}: golden.json has no expected.contributions"
    );
}

fn check_bundle(name: &str, native_contributions: bool) {
    let b = load(name);
    assert!(b.n > 0, "{name}: golden.json has no rows");
    check_scores_and_margins(name, &b);
    let ensemble = b.graph.ensemble();
    match &b.covers {
        Some(covers) => {
            let shap = TreeShap::new(ensemble, covers).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(shap.n_margins(), b.graph.n_margins());
            check_local_accuracy(name, "covers.json", &b, &shap);
            if native_contributions {
                check_contributions(name, &b, &shap);
            }
        }
        None => assert!(!native_contributions, "{name}: covers.json is missing"),
    }
    let reference = b.graph.ensemble_rows(&b.reference, b.n_reference);
    let covers = TreeShap::covers_from_sample(ensemble, &reference, b.n_reference);
    let shap = TreeShap::new(ensemble, &covers).unwrap_or_else(|e| panic!("{name}: {e}"));
    check_local_accuracy(name, "covers from reference.json", &b, &shap);
}

#[test]
fn xgb_binary() {
    check_bundle("xgb_binary", true);
}

#[test]
fn lgbm_binary() {
    check_bundle("lgbm_binary", true);
}

#[test]
fn rf_binary() {
    check_bundle("rf_binary", false);
}

#[test]
fn xgb_multiclass() {
    check_bundle("xgb_multiclass", true);
}

#[test]
fn xgb_regressor() {
    check_bundle("xgb_regressor", true);
}

#[test]
fn rf_regressor() {
    check_bundle("rf_regressor", false);
}

#[test]
fn gte_binary() {
    check_bundle("gte_binary", false);
}

#[test]
fn bench_xgb() {
    check_bundle("bench_xgb", true);
}
