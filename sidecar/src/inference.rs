//! One batch of documents through one bundle: features → score → explain → result.
//!
//! Each document ends as its own `Ok(result)` or `Err(error)`; one bad document never fails the
//! others. Results have the shape of the Elasticsearch `inference` processor's output.

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

pub use crate::features::behaviour::BehaviourValues;

/// Scores `docs` with `bundle`, reading behavioural features from `behaviour` (one map per document).
pub fn infer_with<D: crate::features::Fields + ?Sized>(
    bundle: &Bundle,
    docs: &[&D],
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
    // Largest |importance| first, ties by feature order: the k largest found in linear time,
    // then only they are sorted.
    let weights: Vec<f64> = (0..f).map(weight).collect();
    let before = |a: &usize, b: &usize| weights[*b].total_cmp(&weights[*a]).then(a.cmp(b));
    let mut order: Vec<usize> = (0..f).collect();
    let k = m.explanation.top_k.min(f);
    if k > 0 && k < f {
        order.select_nth_unstable_by(k - 1, before);
    }
    order.truncate(k);
    order.sort_unstable_by(before);
    let top = order
        .into_iter()
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
    /// The result object written at the bundle's target field, as a JSON value (read back from
    /// [`Self::write_json`], so both have the same keys in the same order).
    pub fn to_json(&self, bundle: &Bundle) -> Value {
        let mut out = Vec::new();
        self.write_json(bundle, &mut out);
        serde_json::from_slice(&out).expect("results are JSON")
    }

    /// The result object as JSON text, appended to `out` as serde_json would write it (compact;
    /// strings escaped and numbers formatted by serde_json), without building a [`Value`]: the
    /// scoring API and `_bulk` write one per document. Keys are plain ASCII names written as
    /// they are, and each distinct number is formatted once (a binary classifier's probability
    /// appears up to five times).
    pub fn write_json(&self, bundle: &Bundle, out: &mut Vec<u8>) {
        let mut numbers = Numbers::default();
        let mut o = Json { out };
        o.first(key::PREDICTED_VALUE);
        match &self.predicted {
            Predicted::Class(c) => o.string(c),
            Predicted::Value(v) => o.number(&mut numbers, *v),
        }
        if let Some(p) = self.prediction_probability {
            o.key(key::PREDICTION_PROBABILITY).number(&mut numbers, p);
            o.key(key::PREDICTION_SCORE).number(&mut numbers, p);
        }
        o.key(key::SCORE).number(&mut numbers, self.score);
        if !self.top_classes.is_empty() {
            o.key(key::TOP_CLASSES)
                .list(&self.top_classes, |o, (class, p)| {
                    o.first(key::CLASS_NAME);
                    o.string(class);
                    o.key(key::CLASS_PROBABILITY).number(&mut numbers, *p);
                    o.key(key::CLASS_SCORE).number(&mut numbers, *p);
                });
        }
        if let Some(x) = &self.explanation {
            let names = bundle.extractor.features();
            o.key(key::FEATURE_IMPORTANCE)
                .list(&x.top, |o, (i, per_col)| {
                    o.first(key::FEATURE_NAME);
                    o.string(&names[*i].name);
                    o.key(key::IMPORTANCE).float(per_col[x.column]);
                    // f32 widened as a JSON value widens it; NaN (missing) is null.
                    o.key(key::FEATURE_VALUE)
                        .float(f64::from(self.features[*i]));
                    if !x.column_classes.is_empty() {
                        let classes = x.column_classes.iter().zip(per_col);
                        o.key(key::CLASSES).list(classes, |o, (class, importance)| {
                            o.first(key::CLASS_NAME);
                            o.string(class);
                            o.key(key::IMPORTANCE).float(*importance);
                        });
                    }
                });
            let reported = if x.column_classes.is_empty() && x.explanation.expected_value.len() == 2
            {
                bundle.positive
            } else {
                x.column
            };
            let e = &x.explanation;
            o.key(key::EXPLANATION);
            o.first(key::EXPLANATION_METHOD);
            o.string(e.method);
            o.key(key::EXPLANATION_APPROXIMATE);
            o.out
                .extend_from_slice(if e.approximate { b"true" } else { b"false" });
            o.key(key::EXPLANATION_SPACE).string(e.space.as_str());
            o.key(key::EXPLANATION_EXPECTED_VALUE)
                .float(e.expected_value.get(reported).copied().unwrap_or(0.0));
            o.out.push(b'}');
        }
        o.key(key::MODEL_ID).string(&self.model_id);
        o.key(key::MODEL_VERSION).string(&self.model_version);
        o.out.push(b'}');
    }
}

/// JSON text written straight into bytes, as serde_json's compact writer writes it.
struct Json<'a> {
    out: &'a mut Vec<u8>,
}

impl Json<'_> {
    /// Opens an object with its first key.
    #[inline(always)]
    fn first(&mut self, key: &str) -> &mut Self {
        self.out.push(b'{');
        self.name(key)
    }

    /// A following key of the open object.
    #[inline(always)]
    fn key(&mut self, key: &str) -> &mut Self {
        self.out.push(b',');
        self.name(key)
    }

    #[inline(always)]
    fn name(&mut self, key: &str) -> &mut Self {
        debug_assert!(key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'));
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self
    }

    fn string(&mut self, s: &str) {
        crate::enrich::write_str(self.out, s);
    }

    /// A number as serde_json writes an `f64` (`null` when not finite).
    fn float(&mut self, x: f64) {
        self.out.extend_from_slice(Number::new(x).text());
    }

    /// [`Self::float`], formatting each distinct value once.
    fn number(&mut self, numbers: &mut Numbers, x: f64) {
        self.out.extend_from_slice(numbers.text(x).text());
    }

    /// `[item, item, ...]`, each item an object `write` opens (with [`Self::first`]) and this
    /// closes.
    fn list<T>(&mut self, items: impl IntoIterator<Item = T>, mut write: impl FnMut(&mut Self, T)) {
        self.out.push(b'[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write(self, item);
            self.out.push(b'}');
        }
        self.out.push(b']');
    }
}

/// A number's JSON text, as serde_json formats an `f64`.
#[derive(Clone, Copy)]
struct Number {
    text: [u8; 32],
    len: u8,
}

impl Number {
    fn new(x: f64) -> Number {
        let mut text = [0u8; 32];
        let mut rest = &mut text[..];
        // The longest f64 serde_json writes is 24 bytes (`-2.2250738585072014e-308`).
        serde_json::to_writer(&mut rest, &x).expect("an f64's text fits in 32 bytes");
        let len = (32 - rest.len()) as u8;
        Number { text, len }
    }

    fn text(&self) -> &[u8] {
        &self.text[..usize::from(self.len)]
    }
}

/// The first few numbers of a result, formatted, by their bits.
#[derive(Default)]
struct Numbers {
    seen: [(u64, Option<Number>); 4],
}

impl Numbers {
    fn text(&mut self, x: f64) -> Number {
        let bits = x.to_bits();
        for (b, number) in &mut self.seen {
            match number {
                Some(n) if *b == bits => return *n,
                Some(_) => {}
                None => {
                    *b = bits;
                    return *number.insert(Number::new(x));
                }
            }
        }
        Number::new(x)
    }
}
