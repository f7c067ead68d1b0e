//! One batch of documents through one bundle: features → score → explain → result.
//!
//! Each document ends as its own `Ok(result)` or `Err(error)`; one bad document never fails the
//! others. Results have the shape of the Elasticsearch `inference` processor's output.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Value};

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
    infer_extracted(
        bundle,
        docs.len(),
        |i, row| {
            let context = behaviour.and_then(|b| b.get(i));
            bundle.extractor.extract_with(docs[i], context, row)
        },
        policy,
    )
}

/// Scores `n` documents that `extract(i, row)` writes as feature rows: for documents read
/// without being parsed into a [`Value`] ([`crate::features::FeatureExtractor::extract_scanned`]).
pub fn infer_extracted(
    bundle: &Bundle,
    n: usize,
    extract: impl FnMut(usize, &mut [f32]) -> Result<(), FeatureError>,
    policy: ExplainPolicy,
) -> Vec<Result<InferenceResult, DocError>> {
    let started = std::time::Instant::now();
    let results = infer_batch(bundle, n, extract, policy);
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
    docs: usize,
    mut extract: impl FnMut(usize, &mut [f32]) -> Result<(), FeatureError>,
    policy: ExplainPolicy,
) -> Vec<Result<InferenceResult, DocError>> {
    let f = bundle.n_features();
    let mut rows = Vec::with_capacity(docs * f);
    let mut row_of: Vec<Result<usize, DocError>> = Vec::with_capacity(docs);
    let mut buf = vec![0.0f32; f];
    let mut n = 0;
    for i in 0..docs {
        match extract(i, &mut buf) {
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
    /// The result object written at the bundle's target field, as a JSON value.
    pub fn to_json(&self, bundle: &Bundle) -> Value {
        serde_json::to_value(self.rendered(bundle)).expect("results serialise")
    }

    /// The result object, serialisable straight into bytes (the `_bulk` path writes it without
    /// building a [`Value`]); [`Self::to_json`] goes through it too, so both have the same keys
    /// in the same order.
    pub fn rendered<'a>(&'a self, bundle: &'a Bundle) -> Rendered<'a> {
        Rendered {
            result: self,
            bundle,
        }
    }
}

/// See [`InferenceResult::rendered`].
pub struct Rendered<'a> {
    result: &'a InferenceResult,
    bundle: &'a Bundle,
}

impl Serialize for Rendered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.result;
        let mut o = s.serialize_map(None)?;
        match &r.predicted {
            Predicted::Class(c) => o.serialize_entry(key::PREDICTED_VALUE, c)?,
            Predicted::Value(v) => o.serialize_entry(key::PREDICTED_VALUE, v)?,
        }
        if let Some(p) = r.prediction_probability {
            o.serialize_entry(key::PREDICTION_PROBABILITY, &p)?;
            o.serialize_entry(key::PREDICTION_SCORE, &p)?;
        }
        o.serialize_entry(key::SCORE, &r.score)?;
        if !r.top_classes.is_empty() {
            let top: Vec<TopClass> = r
                .top_classes
                .iter()
                .map(|(c, p)| TopClass { class: c, p: *p })
                .collect();
            o.serialize_entry(key::TOP_CLASSES, &top)?;
        }
        if let Some(x) = &r.explanation {
            let names = self.bundle.extractor.features();
            let items: Vec<Importance> = x
                .top
                .iter()
                .map(|(i, per_col)| Importance {
                    name: &names[*i].name,
                    importance: per_col[x.column],
                    // f32 widened as a JSON value widens it; NaN (missing) is null.
                    value: Some(f64::from(r.features[*i])).filter(|v| !v.is_nan()),
                    classes: &x.column_classes,
                    per_col,
                })
                .collect();
            o.serialize_entry(key::FEATURE_IMPORTANCE, &items)?;
            let reported = if x.column_classes.is_empty() && x.explanation.expected_value.len() == 2
            {
                self.bundle.positive
            } else {
                x.column
            };
            o.serialize_entry(
                key::EXPLANATION,
                &ExplanationMeta {
                    method: x.explanation.method,
                    approximate: x.explanation.approximate,
                    space: x.explanation.space.as_str(),
                    expected_value: x
                        .explanation
                        .expected_value
                        .get(reported)
                        .copied()
                        .unwrap_or(0.0),
                },
            )?;
        }
        o.serialize_entry(key::MODEL_ID, &r.model_id)?;
        o.serialize_entry(key::MODEL_VERSION, &r.model_version)?;
        o.end()
    }
}

/// A map of these entries, in this order: the small objects of the result.
macro_rules! entries {
    ($s:expr, $($key:expr => $value:expr),+ $(,)?) => {{
        let mut o = $s.serialize_map(None)?;
        $(o.serialize_entry($key, $value)?;)+
        o.end()
    }};
}

struct TopClass<'a> {
    class: &'a str,
    p: f64,
}

impl Serialize for TopClass<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        entries!(s,
            key::CLASS_NAME => self.class,
            key::CLASS_PROBABILITY => &self.p,
            key::CLASS_SCORE => &self.p,
        )
    }
}

struct Importance<'a> {
    name: &'a str,
    importance: f64,
    value: Option<f64>,
    /// Multiclass: the class of each column of `per_col`; empty otherwise.
    classes: &'a [String],
    per_col: &'a [f64],
}

impl Serialize for Importance<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut o = s.serialize_map(None)?;
        o.serialize_entry(key::FEATURE_NAME, self.name)?;
        o.serialize_entry(key::IMPORTANCE, &self.importance)?;
        o.serialize_entry(key::FEATURE_VALUE, &self.value)?;
        if !self.classes.is_empty() {
            let classes: Vec<ClassImportance> = self
                .classes
                .iter()
                .zip(self.per_col)
                .map(|(class, importance)| ClassImportance {
                    class,
                    importance: *importance,
                })
                .collect();
            o.serialize_entry(key::CLASSES, &classes)?;
        }
        o.end()
    }
}

struct ClassImportance<'a> {
    class: &'a str,
    importance: f64,
}

impl Serialize for ClassImportance<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        entries!(s, key::CLASS_NAME => self.class, key::IMPORTANCE => &self.importance)
    }
}

struct ExplanationMeta<'a> {
    method: &'a str,
    approximate: bool,
    space: &'a str,
    expected_value: f64,
}

impl Serialize for ExplanationMeta<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        entries!(s,
            key::EXPLANATION_METHOD => self.method,
            key::EXPLANATION_APPROXIMATE => &self.approximate,
            key::EXPLANATION_SPACE => self.space,
            key::EXPLANATION_EXPECTED_VALUE => &self.expected_value,
        )
    }
}
