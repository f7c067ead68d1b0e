//! Model bundles: one folder per model (`docs/bundle-format.md`).
//!
//! [`load`] reads a folder and refuses it with a precise error unless every check passes: the
//! manifest parses and is consistent, `model.onnx` has the declared SHA-256, the graph reads as
//! many features as the manifest declares, the declared output has one column per class, and
//! the golden file's outputs are reproduced within tolerance. [`registry`] serves the loaded
//! bundles and swaps them atomically on reload, keeping the previous version when a new one fails.

pub mod golden;
pub mod manifest;
pub mod registry;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::explain::{column_means, Explainer, Link, TreeShap};
use crate::features::FeatureExtractor;
use crate::score::Engine;
pub use manifest::{ExplanationMethod, Manifest, Task};
pub use registry::{ModelRegistry, ReloadReport};

pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
#[error("bundle [{}] refused: {reason}", dir.display())]
pub struct BundleError {
    pub dir: PathBuf,
    pub reason: String,
}

/// A checked, ready-to-serve model.
#[derive(Debug)]
pub struct Bundle {
    pub manifest: Manifest,
    pub dir: PathBuf,
    pub extractor: FeatureExtractor,
    pub engine: Engine,
    pub explainer: Option<Explainer>,
    /// Index of `positive_class` in `classes` (binary), else 0.
    pub positive: usize,
    pub target_field: String,
    pub reference: Vec<Vec<f32>>,
    pub sha256: String,
    pub golden_max_diff: Option<f64>,
}

impl Bundle {
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn version(&self) -> &str {
        &self.manifest.version
    }

    pub fn n_features(&self) -> usize {
        self.extractor.len()
    }
}

#[derive(Deserialize)]
struct ReferenceFile {
    rows: Vec<Vec<Option<f32>>>,
}

/// Loads and checks the bundle in `dir`.
pub fn load(dir: &Path) -> Result<Arc<Bundle>, BundleError> {
    let fail = |reason: String| BundleError {
        dir: dir.to_path_buf(),
        reason,
    };
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| fail(format!("cannot read {MANIFEST_FILE}: {e}")))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| fail(format!("invalid {MANIFEST_FILE}: {e}")))?;
    let positive = check_manifest(&manifest).map_err(fail)?;

    let model_bytes = std::fs::read(dir.join(&manifest.model.file))
        .map_err(|e| fail(format!("cannot read {}: {e}", manifest.model.file)))?;
    let sha256 = hex::encode(Sha256::digest(&model_bytes));
    if !sha256.eq_ignore_ascii_case(manifest.model.sha256.trim()) {
        return Err(fail(format!(
            "SHA-256 mismatch for {}: manifest says {}, file is {sha256}",
            manifest.model.file, manifest.model.sha256
        )));
    }
    let proto = tract_onnx::pb::ModelProto::decode(model_bytes.as_slice())
        .map_err(|e| fail(format!("{} is not an ONNX model: {e}", manifest.model.file)))?;
    let n_features = manifest.features.len();
    if let Some(width) = declared_input_width(&proto) {
        if width != n_features {
            return Err(fail(format!(
                "feature count {n_features} does not match the model input width {width}"
            )));
        }
    }
    let extractor = FeatureExtractor::compile(&manifest.features, dir).map_err(fail)?;
    let engine =
        Engine::new(&proto, n_features, &manifest.model.output).map_err(|e| fail(e.to_string()))?;
    let expected_outputs = match manifest.task {
        Task::Regression => 1,
        _ => manifest.classes.len(),
    };
    if engine.n_outputs() != expected_outputs {
        return Err(fail(format!(
            "output [{}] has {} columns but the manifest expects {expected_outputs}",
            manifest.model.output,
            engine.n_outputs()
        )));
    }

    let reference = match &manifest.reference_sample {
        Some(file) => read_reference(&dir.join(file), n_features).map_err(fail)?,
        None => Vec::new(),
    };
    let explainer =
        build_explainer(&manifest, dir, &engine, &proto, &reference, positive).map_err(fail)?;
    let target_field = manifest
        .target_field
        .clone()
        .unwrap_or_else(|| format!("{}.{}", crate::fields::ML_INFERENCE, manifest.name));

    let mut bundle = Bundle {
        manifest,
        dir: dir.to_path_buf(),
        extractor,
        engine,
        explainer,
        positive,
        target_field,
        reference,
        sha256,
        golden_max_diff: None,
    };
    if let Some(golden) = bundle.manifest.golden.clone() {
        let max_diff =
            golden::check(&bundle, &dir.join(&golden.file), golden.tolerance).map_err(fail)?;
        bundle.golden_max_diff = Some(max_diff);
    }
    Ok(Arc::new(bundle))
}

/// Checks the manifest's internal consistency; returns the positive class index.
fn check_manifest(m: &Manifest) -> Result<usize, String> {
    let mut errors = Vec::new();
    let valid_name = !m.name.is_empty()
        && m.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid_name {
        errors.push(format!(
            "name [{}] must be non-empty lowercase letters, digits, '-' or '_'",
            m.name
        ));
    }
    if m.features.is_empty() {
        errors.push("the feature list is empty".to_string());
    }
    let mut positive = 0;
    match m.task {
        Task::Binary => {
            if m.classes.len() != 2 {
                errors.push(format!(
                    "a binary model needs exactly 2 classes, found {}",
                    m.classes.len()
                ));
            } else {
                match &m.positive_class {
                    Some(p) => match m.classes.iter().position(|c| c == p) {
                        Some(i) => positive = i,
                        None => errors.push(format!(
                            "positive_class [{p}] is not one of the classes {:?}",
                            m.classes
                        )),
                    },
                    None => positive = 1,
                }
            }
            if !(0.0..=1.0).contains(&m.threshold) {
                errors.push(format!("threshold {} is outside [0, 1]", m.threshold));
            }
        }
        Task::Multiclass => {
            if m.classes.len() < 2 {
                errors.push("a multiclass model needs at least 2 classes".to_string());
            }
        }
        Task::Regression => {
            if !m.classes.is_empty() {
                errors.push("a regression model has no classes".to_string());
            }
        }
    }
    if m.explanation.top_k == 0 && m.explanation.method != ExplanationMethod::None {
        errors.push("explanation.top_k must be at least 1".to_string());
    }
    if errors.is_empty() {
        Ok(positive)
    } else {
        Err(errors.join("; "))
    }
}

/// The static second dimension of the graph's first input, if declared.
fn declared_input_width(proto: &tract_onnx::pb::ModelProto) -> Option<usize> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value as Dim;
    use tract_onnx::pb::type_proto::Value as Type;
    let graph = proto.graph.as_ref()?;
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let input = graph
        .input
        .iter()
        .find(|i| !initializers.contains(i.name.as_str()))?;
    let Type::TensorType(tensor) = input.r#type.as_ref()?.value.as_ref()?;
    let dims = &tensor.shape.as_ref()?.dim;
    match dims.get(1)?.value.as_ref()? {
        Dim::DimValue(v) if *v > 0 => Some(*v as usize),
        _ => None,
    }
}

fn read_reference(path: &Path, f: usize) -> Result<Vec<Vec<f32>>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read reference sample {}: {e}", path.display()))?;
    let file: ReferenceFile = serde_json::from_str(&text)
        .map_err(|e| format!("invalid reference sample {}: {e}", path.display()))?;
    file.rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            if row.len() != f {
                Err(format!(
                    "reference row {i} has {} values, expected {f}",
                    row.len()
                ))
            } else {
                Ok(row.into_iter().map(|v| v.unwrap_or(f32::NAN)).collect())
            }
        })
        .collect()
}

#[derive(Deserialize)]
struct CoversFile {
    trees: Vec<Vec<f64>>,
}

fn build_explainer(
    m: &Manifest,
    dir: &Path,
    engine: &Engine,
    proto: &tract_onnx::pb::ModelProto,
    reference: &[Vec<f32>],
    positive: usize,
) -> Result<Option<Explainer>, String> {
    let f = m.features.len();
    let method = match (m.explanation.method, engine) {
        (ExplanationMethod::None, _) => return Ok(None),
        (ExplanationMethod::Auto, Engine::Tree(_)) => ExplanationMethod::TreeShap,
        (ExplanationMethod::Auto, Engine::Graph(_)) if is_linear_graph(proto) => {
            ExplanationMethod::Linear
        }
        (ExplanationMethod::Auto, Engine::Graph(_)) => ExplanationMethod::Sampling,
        (explicit, _) => explicit,
    };
    let link = Link::for_task(m.task, m.classes.len(), positive);
    let baseline = || {
        if reference.is_empty() {
            Err(format!(
                "explanation method {method:?} needs a reference sample (reference_sample)"
            ))
        } else {
            Ok(column_means(reference, f))
        }
    };
    Ok(Some(match method {
        ExplanationMethod::TreeShap => {
            let Engine::Tree(tree) = engine else {
                return Err("tree_shap explanations need a tree-ensemble model".into());
            };
            if tree.ensemble_features() != f {
                return Err(format!(
                    "the ensemble reads {} columns after the graph's preprocessing but the manifest declares {f} features; tree_shap needs one column per feature",
                    tree.ensemble_features()
                ));
            }
            let covers = match &m.explanation.covers {
                Some(file) => {
                    let text = std::fs::read_to_string(dir.join(file))
                        .map_err(|e| format!("cannot read covers {file}: {e}"))?;
                    serde_json::from_str::<CoversFile>(&text)
                        .map_err(|e| format!("invalid covers {file}: {e}"))?
                        .trees
                }
                None => {
                    if reference.is_empty() {
                        return Err(
                            "tree_shap needs covers.json or a reference sample to route".into()
                        );
                    }
                    let flat: Vec<f32> = reference.iter().flatten().copied().collect();
                    let routed = tree.ensemble_rows(&flat, reference.len());
                    TreeShap::covers_from_sample(tree.ensemble(), &routed, reference.len())
                }
            };
            Explainer::TreeShap(Box::new(
                TreeShap::new(tree.ensemble(), &covers).map_err(|e| format!("covers: {e}"))?,
            ))
        }
        ExplanationMethod::Linear => Explainer::Linear {
            baseline: baseline()?,
            link,
        },
        ExplanationMethod::Sampling => Explainer::Sampling {
            baseline: baseline()?,
            link,
            budget: m.explanation.budget.clamp(2, 1024),
        },
        ExplanationMethod::Auto | ExplanationMethod::None => unreachable!("resolved above"),
    }))
}

/// A graph whose output is linear in its input up to the final link (logistic/softmax):
/// a single linear operator plus shape and normalisation nodes.
fn is_linear_graph(proto: &tract_onnx::pb::ModelProto) -> bool {
    let Some(graph) = proto.graph.as_ref() else {
        return false;
    };
    let mut linear_ops = 0;
    for node in &graph.node {
        match node.op_type.as_str() {
            "LinearClassifier" | "LinearRegressor" | "Gemm" | "MatMul" => linear_ops += 1,
            "Add"
            | "Normalizer"
            | "Cast"
            | "Identity"
            | "ZipMap"
            | "Softmax"
            | "Sigmoid"
            | "Reshape"
            | "Flatten"
            | "ArgMax"
            | "ArrayFeatureExtractor"
            | "Concat"
            | "Sub"
            | "Mul"
            | "Div"
            | "Neg"
            | "Exp"
            | "Log"
            | "Squeeze"
            | "Unsqueeze"
            | "Shape"
            | "Gather"
            | "Constant" => {}
            _ => return false,
        }
    }
    linear_ops == 1
}
