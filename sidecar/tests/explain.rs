//! Explanations: local accuracy on every golden row, exactness for linear models, determinism
//! and budget for sampled Shapley values, and the shape written into documents.

mod common;

use common::*;
use vigil::bundle::{golden, load, Bundle};
use vigil::explain::{Explainer, Link};
use vigil::inference::{infer, ExplainPolicy, Predicted};

fn golden_rows(b: &Bundle) -> (Vec<f32>, usize) {
    let g = golden::read(&b.dir.join("golden.json")).unwrap();
    let rows: Vec<f32> = g.rows.iter().flat_map(|r| r.feature_row()).collect();
    (rows, g.rows.len())
}

/// `link(model(x))` for each row, in the explainer's space.
fn linked(b: &Bundle, rows: &[f32], n: usize, link: Link) -> Vec<Vec<f64>> {
    let out = b.engine.predict(rows, n).unwrap();
    let k = b.engine.n_outputs();
    out.chunks_exact(k)
        .map(|o| {
            let mut g = vec![0.0; link.columns()];
            link.apply(o, &mut g);
            g
        })
        .collect()
}

fn check_local_accuracy(name: &str, tolerance: f64) -> &'static str {
    let b = load(&bundle(name)).unwrap();
    let explainer = b.explainer.as_ref().unwrap();
    let (Explainer::Linear { link, .. } | Explainer::Sampling { link, .. }) = explainer else {
        panic!(
            "{name}: expected a graph explainer, got {}",
            explainer.method()
        );
    };
    let (rows, n) = golden_rows(&b);
    let explanations = explainer
        .explain(&b.engine, &rows, n, b.n_features())
        .unwrap();
    let outputs = linked(&b, &rows, n, *link);
    for (i, (e, g)) in explanations.iter().zip(&outputs).enumerate() {
        for (c, want) in g.iter().enumerate().take(link.columns()) {
            let total: f64 = e.contributions[c].iter().sum::<f64>() + e.expected_value[c];
            assert!(
                (total - want).abs() < tolerance,
                "{name} row {i} column {c}: contributions + expected = {total}, output = {want}"
            );
        }
    }
    explainer.method()
}

#[test]
fn linear_contributions_are_exact_on_every_golden_row() {
    assert_eq!(check_local_accuracy("logreg_binary", 1e-4), "linear");
}

#[test]
fn linear_contributions_are_additive_per_feature() {
    // For a model linear in log-odds, moving two features together equals the sum of moving
    // each alone: a non-linear explanation would fail this.
    let b = load(&bundle("logreg_binary")).unwrap();
    let Some(Explainer::Linear { baseline, link }) = &b.explainer else {
        panic!("linear explainer expected")
    };
    let (rows, _) = golden_rows(&b);
    let f = b.n_features();
    let x = &rows[..f];
    let e = &b
        .explainer
        .as_ref()
        .unwrap()
        .explain(&b.engine, x, 1, f)
        .unwrap()[0];
    let mut both = baseline.clone();
    both[3] = x[3];
    both[7] = x[7];
    let g_both = linked(&b, &both, 1, *link)[0][0];
    let sum = e.expected_value[0] + e.contributions[0][3] + e.contributions[0][7];
    assert!((g_both - sum).abs() < 1e-4, "{g_both} vs {sum}");
}

#[test]
fn sampled_shapley_is_locally_accurate_deterministic_and_marked_approximate() {
    assert_eq!(check_local_accuracy("mlp_binary", 1e-4), "sampled_shapley");
    let b = load(&bundle("mlp_binary")).unwrap();
    let (rows, _) = golden_rows(&b);
    let f = b.n_features();
    let explainer = b.explainer.as_ref().unwrap();
    let a = explainer.explain(&b.engine, &rows[..2 * f], 2, f).unwrap();
    let again = explainer.explain(&b.engine, &rows[..2 * f], 2, f).unwrap();
    assert_eq!(a, again);
    assert!(a[0].approximate);
}

#[test]
fn results_carry_the_inference_processor_shape_with_readable_feature_names() {
    let b = load(&bundle("logreg_binary")).unwrap();
    let doc = serde_json::json!({"features": {"f0": 1.5, "f3": -2.0, "f7": 3.0}});
    let r = infer(&b, &[&doc], ExplainPolicy::All).remove(0).unwrap();
    let json = r.to_json(&b);
    let p = json["prediction_probability"].as_f64().unwrap();
    let score = json["score"].as_f64().unwrap();
    let Predicted::Class(label) = &r.predicted else {
        panic!()
    };
    assert_eq!(json["predicted_value"], label.as_str());
    assert_eq!(label == "positive", score >= 0.5);
    assert!((p - score.max(1.0 - score)).abs() < 1e-12);
    assert_eq!(json["top_classes"].as_array().unwrap().len(), 2);
    assert_eq!(json["model_id"], "logreg_binary");
    assert_eq!(json["model_version"], "1.0.0");
    let fi = json["feature_importance"].as_array().unwrap();
    assert_eq!(fi.len(), 5);
    let mags: Vec<f64> = fi
        .iter()
        .map(|i| i["importance"].as_f64().unwrap().abs())
        .collect();
    assert!(
        mags.windows(2).all(|w| w[0] >= w[1]),
        "sorted by |importance|: {mags:?}"
    );
    assert!(fi[0]["feature_name"].as_str().unwrap().starts_with('f'));
    // The top 5 are the 5 largest of all contributions, ties in feature order.
    let explained = r.explanation.as_ref().unwrap();
    let all = &explained.explanation.contributions[0];
    let mut want: Vec<usize> = (0..all.len()).collect();
    want.sort_by(|&a, &b| all[b].abs().total_cmp(&all[a].abs()).then(a.cmp(&b)));
    let top: Vec<usize> = explained.top.iter().map(|(i, _)| *i).collect();
    assert_eq!(top, want[..5]);
    assert_eq!(json["explanation"]["method"], "linear");
    assert_eq!(json["explanation"]["approximate"], false);
}

/// Results are written straight to bytes (`InferenceResult::write_json`, the scoring API's and
/// `_bulk`'s path); read back as a JSON value and written again by serde_json, they must give the
/// same bytes (so the direct writer writes what serde_json writes), for every task: classes per
/// importance (multiclass), no classes (regression), missing features (null values).
#[test]
fn results_serialise_to_the_same_bytes_directly_and_through_a_json_value() {
    let mut nulls_checked = 0;
    for name in [
        "logreg_binary",
        "xgb_multiclass",
        "xgb_regressor",
        "rf_binary",
    ] {
        let b = load(&bundle(name)).unwrap();
        let g = golden::read(&b.dir.join("golden.json")).unwrap();
        let mut docs: Vec<serde_json::Value> = g
            .rows
            .iter()
            .filter_map(|r| r.document.clone())
            .take(8)
            .collect();
        // A document with no features at all: every feature takes its missing value.
        docs.push(serde_json::json!({"unrelated": true}));
        let refs: Vec<&serde_json::Value> = docs.iter().collect();
        for r in infer(&b, &refs, ExplainPolicy::All) {
            let r = r.unwrap();
            let mut direct = Vec::new();
            r.write_json(&b, &mut direct);
            let value = r.to_json(&b);
            assert_eq!(
                String::from_utf8(direct).unwrap(),
                serde_json::to_string(&value).unwrap(),
                "{name}"
            );
            let keys: Vec<&str> = value
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut want = vec!["predicted_value"];
            if r.prediction_probability.is_some() {
                want.extend(["prediction_probability", "prediction_score"]);
            }
            want.push("score");
            if !r.top_classes.is_empty() {
                want.push("top_classes");
            }
            want.extend([
                "feature_importance",
                "explanation",
                "model_id",
                "model_version",
            ]);
            assert_eq!(
                keys, want,
                "{name}: the inference processor's keys, in order"
            );
            let first = &value["feature_importance"][0];
            assert_eq!(
                first.get("classes").is_some(),
                name == "xgb_multiclass",
                "{name}: per-class importances only for multiclass: {first}"
            );
        }
        let missing = infer(&b, &[&docs[docs.len() - 1]], ExplainPolicy::All)
            .remove(0)
            .unwrap();
        if missing.features.iter().any(|v| v.is_nan()) {
            let json = missing.to_json(&b);
            let values: Vec<&serde_json::Value> = json["feature_importance"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| &i["feature_value"])
                .collect();
            assert!(values.iter().any(|v| v.is_null()), "{name}: {json}");
            nulls_checked += 1;
        }
    }
    assert!(
        nulls_checked > 0,
        "no bundle here has missing (NaN) feature values"
    );
}

/// The direct writer against a JSON value built here, for strings that need escaping, numbers
/// serde_json writes as `null` and equal numbers at several keys.
#[test]
fn results_are_written_as_serde_json_writes_the_value() {
    let b = load(&bundle("logreg_binary")).unwrap();
    let odd = "q\"uote \\ back\u{1}\n é \u{2028} 😀";
    for (p, other, score) in [
        (0.7, 0.30000000000000004, 0.7),
        (f64::NAN, 0.5, f64::INFINITY),
        (1e-300, -0.0, 5e-324),
        (0.1, 0.1, 0.1),
    ] {
        let result = vigil::inference::InferenceResult {
            model_id: odd.to_string(),
            model_version: format!("{odd}v"),
            predicted: Predicted::Class(odd.to_string()),
            score,
            prediction_probability: Some(p),
            top_classes: vec![(odd.to_string(), p), ("b".to_string(), other)],
            features: vec![],
            explanation: None,
        };
        let mut direct = Vec::new();
        result.write_json(&b, &mut direct);
        let want = serde_json::json!({
            "predicted_value": odd,
            "prediction_probability": p,
            "prediction_score": p,
            "score": score,
            "top_classes": [
                {"class_name": odd, "class_probability": p, "class_score": p},
                {"class_name": "b", "class_probability": other, "class_score": other},
            ],
            "model_id": odd,
            "model_version": format!("{odd}v"),
        });
        assert_eq!(
            String::from_utf8(direct).unwrap(),
            serde_json::to_string(&want).unwrap()
        );
        let value = vigil::inference::InferenceResult {
            predicted: Predicted::Value(score),
            prediction_probability: None,
            top_classes: vec![],
            ..result
        };
        let mut direct = Vec::new();
        value.write_json(&b, &mut direct);
        let want = serde_json::json!({
            "predicted_value": score, "score": score, "model_id": odd, "model_version": format!("{odd}v"),
        });
        assert_eq!(
            String::from_utf8(direct).unwrap(),
            serde_json::to_string(&want).unwrap()
        );
    }
}

#[test]
fn explanations_follow_the_policy_and_min_score() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_bundle("logreg_binary", tmp.path());
    edit_json(&dir.join("manifest.json"), |m| {
        m["explanation"]["min_score"] = 0.999999.into();
    });
    let b = load(&dir).unwrap();
    let doc = serde_json::json!({"features": {}});
    let r = infer(&b, &[&doc], ExplainPolicy::AboveMinScore)
        .remove(0)
        .unwrap();
    assert!(r.score < 0.999999);
    assert!(r.explanation.is_none());
    let r = infer(&b, &[&doc], ExplainPolicy::All).remove(0).unwrap();
    assert!(r.explanation.is_some());
    let r = infer(&b, &[&doc], ExplainPolicy::Never).remove(0).unwrap();
    assert!(r.explanation.is_none());
}

#[test]
fn one_bad_document_fails_alone_with_a_precise_error() {
    let b = load(&bundle("logreg_binary")).unwrap();
    let good = serde_json::json!({"features": {"f0": 1.0}});
    let wrong_type = serde_json::json!({"features": {"f2": "lots"}});
    let non_finite = serde_json::json!({"features": {"f2": "Infinity"}});
    let not_object = serde_json::json!([1, 2]);
    let results = infer(
        &b,
        &[&good, &wrong_type, &non_finite, &not_object, &good],
        ExplainPolicy::All,
    );
    assert!(results[0].is_ok() && results[4].is_ok());
    assert_eq!(
        results[1].as_ref().unwrap_err().to_string(),
        "feature [f2] expects a number at [features.f2], found string \"lots\""
    );
    assert!(results[2]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("not a finite number"));
    assert!(results[3]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("must be a JSON object"));
}
