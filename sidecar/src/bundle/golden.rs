//! The golden file: documents, their feature rows and reference outputs (onnxruntime and the
//! native library). A bundle is served only if Vigil reproduces them.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::Bundle;

#[derive(Debug, Deserialize)]
pub struct GoldenFile {
    #[serde(default)]
    pub generated_by: String,
    pub rows: Vec<GoldenRow>,
}

#[derive(Debug, Deserialize)]
pub struct GoldenRow {
    #[serde(default)]
    pub document: Option<Value>,
    pub features: Vec<Option<f64>>,
    pub expected: Expected,
}

#[derive(Debug, Deserialize)]
pub struct Expected {
    pub scores: Vec<f64>,
    #[serde(default)]
    pub margin: Option<Vec<f64>>,
    #[serde(default)]
    pub contributions: Option<Vec<Vec<f64>>>,
}

impl GoldenRow {
    pub fn feature_row(&self) -> Vec<f32> {
        self.features
            .iter()
            .map(|v| v.map_or(f32::NAN, |x| x as f32))
            .collect()
    }
}

pub fn read(path: &Path) -> Result<GoldenFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read golden file {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("invalid golden file {}: {e}", path.display()))
}

/// Features extracted in Rust must equal Python's up to float rounding.
pub fn same_feature(rust: f32, python: f32) -> bool {
    (rust.is_nan() && python.is_nan())
        || (f64::from(rust) - f64::from(python)).abs() <= 1e-5 * f64::from(python.abs()).max(1.0)
}

/// Reproduces every golden row; returns the largest absolute output difference.
pub fn check(bundle: &Bundle, path: &Path, tolerance: f64) -> Result<f64, String> {
    let golden = read(path)?;
    if golden.rows.is_empty() {
        return Err(format!("golden file {} has no rows", path.display()));
    }
    let f = bundle.n_features();
    let mut rows = Vec::with_capacity(golden.rows.len() * f);
    let mut extracted = vec![0.0f32; f];
    // Behavioural features: replay the golden documents, in order, through a fresh state.
    let behaviour_features = bundle.extractor.behaviour_features();
    let documents: Vec<&Value> = golden
        .rows
        .iter()
        .filter_map(|r| r.document.as_ref())
        .collect();
    let replayed =
        (!behaviour_features.is_empty() && documents.len() == golden.rows.len()).then(|| {
            let state = crate::features::behaviour::BehaviourState::new(
                1 << 30,
                std::time::Duration::from_secs(3600),
            );
            // No clock skew in a replay: the golden sequence may lie in the future of this machine.
            state.process(
                &documents,
                &behaviour_features,
                chrono::DateTime::<chrono::Utc>::MAX_UTC,
            )
        });
    for (i, row) in golden.rows.iter().enumerate() {
        if row.features.len() != f {
            return Err(format!(
                "golden row {i} has {} features, the manifest declares {f}",
                row.features.len()
            ));
        }
        let reference = row.feature_row();
        if let Some(doc) = &row.document {
            bundle
                .extractor
                .extract_with(doc, replayed.as_ref().map(|r| &r[i]), &mut extracted)
                .map_err(|e| format!("golden row {i}: {e}"))?;
            for (j, (&got, &want)) in extracted.iter().zip(&reference).enumerate() {
                if !same_feature(got, want) {
                    let name = &bundle.extractor.features()[j].name;
                    return Err(format!(
                        "golden row {i}: feature [{name}] extracts as {got} but the reference is {want}"
                    ));
                }
            }
        }
        rows.extend_from_slice(&reference);
    }
    let n = golden.rows.len();
    let outputs = bundle
        .engine
        .predict(&rows, n)
        .map_err(|e| format!("golden rows: {e}"))?;
    let k = bundle.engine.n_outputs();
    let mut max_diff = 0.0f64;
    for (i, (row, got)) in golden.rows.iter().zip(outputs.chunks_exact(k)).enumerate() {
        if row.expected.scores.len() != k {
            return Err(format!(
                "golden row {i} has {} expected outputs, the model gives {k}",
                row.expected.scores.len()
            ));
        }
        for (j, (&g, &w)) in got.iter().zip(&row.expected.scores).enumerate() {
            let diff = (f64::from(g) - w).abs();
            if diff.is_nan() || diff > tolerance {
                return Err(format!(
                    "golden output not reproduced: row {i}, output {j}: got {g}, reference {w} (|diff| {diff:e} > tolerance {tolerance:e})"
                ));
            }
            max_diff = max_diff.max(diff);
        }
    }
    Ok(max_diff)
}
