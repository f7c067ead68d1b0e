//! One batch of documents through one bundle: features → score → explain → result.
//!
//! Each document ends as its own `Ok(result)` or `Err(error)`; one bad document never fails the
//! others. Results have the shape of the Elasticsearch `inference` processor's output.

use serde_json::{json, Map, Value};

use crate::bundle::{Bundle, Task};
use crate::explain::Explanation;
use crate::features::FeatureError;
use crate::fields::result as key;

/// Which documents get an explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExplainPolicy {
    /// Those whose score is at least the bundle's `explanation.min_score`.
    #[default]
    AboveMinScore,
    /// Every document.
    All,
    /// None (scores only).
    Never,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DocError {
    #[error(transparent)]
    Feature(#[from] FeatureError),
    #[error("model [{model}] failed: {reason}")]
    Model { model: String, reason: String },
}

impl DocError {
    /// The Elasticsearch-style `error.type` of this failure.
    pub fn kind(&self) -> &'static str {
        match self {
            DocError::Feature(_) => "feature_extraction_exception",
            DocError::Model { .. } => "inference_exception",
        }
    }

    pub fn to_json(&self) -> Value {
        json!({"type": self.kind(), "reason": self.to_string()})
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct InferenceResult {
    pub model_id: String,
    pub model_version: String,
    pub predicted: Predicted,
    /// See [`crate::fields::result::SCORE`].
    pub score: f64,
    /// Probability of the predicted class (classifiers).
    pub prediction_probability: Option<f64>,
    /// `(class, probability)`, most probable first (classifiers).
    pub top_classes: Vec<(String, f64)>,
    pub features: Vec<f32>,
    pub explanation: Option<Explained>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Predicted {
    Class(String),
    Value(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Explained {
    pub explanation: Explanation,
    /// `(feature index, per-column importance)`, top k by |importance| of the reported column(s).
    pub top: Vec<(usize, Vec<f64>)>,
    /// Class names of the explanation's columns (multiclass), empty otherwise.
    pub column_classes: Vec<String>,
    /// The column matching the prediction.
    pub column: usize,
}

/// Scores `docs` with `bundle`; behavioural features take their `missing` value. Use
/// [`infer_with`] to give them values from the entity state.
pub fn infer(
    bundle: &Bundle,
    docs: &[&Value],
    policy: ExplainPolicy,
) -> Vec<Result<InferenceResult, DocError>> {
    infer_with(bundle, docs, None, policy)
}

/// Behavioural values per document (from [`crate::features::behaviour::BehaviourState::process`]).
/// Behavioural feature id → value for one document (foldhash: these maps are built per document).
pub type BehaviourValues =
    std::collections::HashMap<std::sync::Arc<str>, f32, foldhash::fast::RandomState>;

/// Scores `docs` with `bundle`, reading behavioural features from `behaviour` (one map per document).
pub fn infer_with(
    bundle: &Bundle,
    docs: &[&Value],
    behaviour: Option<&[BehaviourValues]>,
    policy: ExplainPolicy,
) -> Vec<Result<InferenceResult, DocError>> {
    let started = std::time::Instant::now();
    let results = infer_batch(bundle, docs, behaviour, policy);
    if crate::telemetry::enabled() {
        record(bundle, started.elapsed(), &results);
    }
    results
}

/// Counts a batch's outcome (latency, scores, errors by kind) and feeds the drift window.
fn record(
    bundle: &Bundle,
    elapsed: std::time::Duration,
    results: &[Result<InferenceResult, DocError>],
) {
    let mut scores = Vec::with_capacity(results.len());
    let mut rows = Vec::with_capacity(results.len() * bundle.n_features());
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(r) => {
                scores.push(r.score);
                rows.extend_from_slice(&r.features);
            }
            Err(e) => errors.push(e.kind()),
        }
    }
    crate::telemetry::batch_scored(bundle, elapsed, &scores, &rows, &errors);
}

fn infer_batch(
    bundle: &Bundle,
    docs: &[&Value],
    behaviour: Option<&[BehaviourValues]>,
    policy: ExplainPolicy,
) -> Vec<Result<InferenceResult, DocError>> {
    let f = bundle.n_features();
    let mut rows = Vec::with_capacity(docs.len() * f);
    let mut row_of: Vec<Result<usize, DocError>> = Vec::with_capacity(docs.len());
    let mut buf = vec![0.0f32; f];
    let mut n = 0;
    for (i, doc) in docs.iter().enumerate() {
        let context = behaviour.and_then(|b| b.get(i));
        match bundle.extractor.extract_with(doc, context, &mut buf) {
            Ok(()) => {
                rows.extend_from_slice(&buf);
                row_of.push(Ok(n));
                n += 1;
            }
            Err(e) => row_of.push(Err(e.into())),
        }
    }
    if n == 0 {
        return row_of
            .into_iter()
            .map(|r| r.map(|_| unreachable!()))
            .collect();
    }
    let model_error = |reason: String| DocError::Model {
        model: bundle.name().to_string(),
        reason,
    };
    let outputs = match bundle.engine.predict(&rows, n) {
        Ok(o) => o,
        Err(e) => {
            let err = model_error(e.to_string());
            return row_of
                .into_iter()
                .map(|r| r.and(Err(err.clone())))
                .collect();
        }
    };
    let k = bundle.engine.n_outputs();
    let mut results: Vec<Result<InferenceResult, DocError>> = (0..n)
        .map(|i| {
            let out = &outputs[i * k..(i + 1) * k];
            if out.iter().any(|v| !v.is_finite()) {
                return Err(model_error(format!("non-finite output {out:?}")));
            }
            Ok(interpret(bundle, out, rows[i * f..(i + 1) * f].to_vec()))
        })
        .collect();

    if let Some(explainer) = &bundle.explainer {
        let min_score = bundle.manifest.explanation.min_score;
        let wanted: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| match (policy, r) {
                (_, Err(_)) | (ExplainPolicy::Never, _) => false,
                (ExplainPolicy::All, _) => true,
                (ExplainPolicy::AboveMinScore, Ok(r)) => r.score >= min_score,
            })
            .map(|(i, _)| i)
            .collect();
        if !wanted.is_empty() {
            let subset: Vec<f32> = wanted
                .iter()
                .flat_map(|&i| rows[i * f..(i + 1) * f].iter().copied())
                .collect();
            match explainer.explain(&bundle.engine, &subset, wanted.len(), f) {
                Ok(explanations) => {
                    for (i, e) in wanted.into_iter().zip(explanations) {
                        if let Ok(r) = &mut results[i] {
                            r.explanation = Some(select(bundle, r, e));
                        }
                    }
                }
                Err(e) => {
                    for i in wanted {
                        results[i] = Err(model_error(format!("explanation failed: {e}")));
                    }
                }
            }
        }
    }

    let mut results = results.into_iter();
    row_of
        .into_iter()
        .map(|r| r.and_then(|_| results.next().expect("one result per extracted row")))
        .collect()
}

/// The score of one output row, as [`InferenceResult::score`] reports it.
pub fn score_of(bundle: &Bundle, out: &[f32]) -> f64 {
    interpret(bundle, out, Vec::new()).score
}

fn interpret(bundle: &Bundle, out: &[f32], features: Vec<f32>) -> InferenceResult {
    let m = &bundle.manifest;
    let probs: Vec<f64> = out.iter().map(|&p| f64::from(p)).collect();
    let top_classes = |probs: &[f64]| {
        let mut top: Vec<(String, f64)> = m
            .classes
            .iter()
            .cloned()
            .zip(probs.iter().copied())
            .collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        top
    };
    let (predicted, score, probability, top) = match m.task {
        Task::Binary => {
            let pos = bundle.positive;
            let score = probs[pos];
            let class = if score >= m.threshold { pos } else { 1 - pos };
            (
                Predicted::Class(m.classes[class].clone()),
                score,
                Some(probs[class]),
                top_classes(&probs),
            )
        }
        Task::Multiclass => {
            let best = (0..probs.len())
                .max_by(|&a, &b| probs[a].total_cmp(&probs[b]).then(b.cmp(&a)))
                .unwrap_or(0);
            (
                Predicted::Class(m.classes[best].clone()),
                probs[best],
                Some(probs[best]),
                top_classes(&probs),
            )
        }
        Task::Regression => (Predicted::Value(probs[0]), probs[0], None, Vec::new()),
    };
    InferenceResult {
        model_id: m.name.clone(),
        model_version: m.version.clone(),
        predicted,
        score,
        prediction_probability: probability,
        top_classes: top,
        features,
        explanation: None,
    }
}

/// Picks the explanation column(s) to report and the top-k features.
fn select(bundle: &Bundle, result: &InferenceResult, e: Explanation) -> Explained {
    let m = &bundle.manifest;
    let cols = e.contributions.len();
    let multiclass = m.task == Task::Multiclass && cols == m.classes.len() && cols > 1;
    let column = match (&result.predicted, m.task) {
        (Predicted::Class(c), Task::Multiclass) if multiclass => {
            m.classes.iter().position(|x| x == c).unwrap_or(0)
        }
        // Binary models explained per class (e.g. random forests): the positive class column.
        (_, Task::Binary) if cols == 2 => bundle.positive,
        _ => 0,
    };
    let f = bundle.n_features();
    let weight = |i: usize| -> f64 {
        if multiclass {
            e.contributions.iter().map(|c| c[i].abs()).sum()
        } else {
            e.contributions[column][i].abs()
        }
    };
    let mut order: Vec<usize> = (0..f).collect();
    order.sort_by(|&a, &b| weight(b).total_cmp(&weight(a)).then(a.cmp(&b)));
    let top = order
        .into_iter()
        .take(m.explanation.top_k)
        .map(|i| {
            let per_col = if multiclass {
                e.contributions.iter().map(|c| c[i]).collect()
            } else {
                vec![e.contributions[column][i]]
            };
            (i, per_col)
        })
        .collect();
    Explained {
        column_classes: if multiclass {
            m.classes.clone()
        } else {
            Vec::new()
        },
        column: if multiclass { column } else { 0 },
        top,
        explanation: e,
    }
}

impl InferenceResult {
    /// The result object written at the bundle's target field.
    pub fn to_json(&self, bundle: &Bundle) -> Value {
        let mut o = Map::new();
        match &self.predicted {
            Predicted::Class(c) => o.insert(key::PREDICTED_VALUE.into(), json!(c)),
            Predicted::Value(v) => o.insert(key::PREDICTED_VALUE.into(), json!(v)),
        };
        if let Some(p) = self.prediction_probability {
            o.insert(key::PREDICTION_PROBABILITY.into(), json!(p));
            o.insert(key::PREDICTION_SCORE.into(), json!(p));
        }
        o.insert(key::SCORE.into(), json!(self.score));
        if !self.top_classes.is_empty() {
            let top: Vec<Value> = self
                .top_classes
                .iter()
                .map(|(c, p)| json!({key::CLASS_NAME: c, key::CLASS_PROBABILITY: p, key::CLASS_SCORE: p}))
                .collect();
            o.insert(key::TOP_CLASSES.into(), Value::Array(top));
        }
        if let Some(x) = &self.explanation {
            let names = bundle.extractor.features();
            let items: Vec<Value> = x
                .top
                .iter()
                .map(|(i, per_col)| {
                    let value = self.features[*i];
                    let mut item = Map::new();
                    item.insert(key::FEATURE_NAME.into(), json!(names[*i].name));
                    item.insert(key::IMPORTANCE.into(), json!(per_col[x.column]));
                    item.insert(
                        key::FEATURE_VALUE.into(),
                        if value.is_nan() {
                            Value::Null
                        } else {
                            json!(value)
                        },
                    );
                    if !x.column_classes.is_empty() {
                        let classes: Vec<Value> = x
                            .column_classes
                            .iter()
                            .zip(per_col)
                            .map(|(c, v)| json!({key::CLASS_NAME: c, key::IMPORTANCE: v}))
                            .collect();
                        item.insert(key::CLASSES.into(), Value::Array(classes));
                    }
                    Value::Object(item)
                })
                .collect();
            o.insert(key::FEATURE_IMPORTANCE.into(), Value::Array(items));
            let reported = if x.column_classes.is_empty() && x.explanation.expected_value.len() == 2
            {
                bundle.positive
            } else {
                x.column
            };
            o.insert(
                key::EXPLANATION.into(),
                json!({
                    key::EXPLANATION_METHOD: x.explanation.method,
                    key::EXPLANATION_APPROXIMATE: x.explanation.approximate,
                    key::EXPLANATION_SPACE: x.explanation.space.as_str(),
                    key::EXPLANATION_EXPECTED_VALUE: x.explanation.expected_value.get(reported).copied().unwrap_or(0.0),
                }),
            );
        }
        o.insert(key::MODEL_ID.into(), json!(self.model_id));
        o.insert(key::MODEL_VERSION.into(), json!(self.model_version));
        Value::Object(o)
    }
}
