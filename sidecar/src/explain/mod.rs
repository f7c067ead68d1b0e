//! Explanations: each score becomes per-feature contributions.
//!
//! - tree ensembles: exact path-dependent TreeSHAP in margin space ([`tree_shap`]);
//! - linear models: exact contributions against the reference sample's mean, in link space
//!   (logit for binary, centred log-probabilities for multiclass, identity for regression),
//!   where a linear model's output is exactly additive;
//! - other graphs: permutation-sampled Shapley values with a fixed budget and seed, in the same
//!   link space, marked approximate. Their sum still equals `g(x) - g(baseline)` exactly.
//!
//! Every explanation satisfies local accuracy: `Σ contributions + expected_value = output` in its
//! space, which the tests check on every row.

pub mod tree_shap;

use crate::bundle::manifest::Task;
use crate::score::{Engine, ScoreError};
pub use tree_shap::TreeShap;

/// Which column of the model's output an explanation explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// The raw tree-ensemble sum before the post transform.
    Margin,
    /// The link of the model's output: logit / centred log-probability / identity.
    Link,
}

impl Space {
    pub fn as_str(self) -> &'static str {
        match self {
            Space::Margin => "margin",
            Space::Link => "log_odds",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// One row per explained column, `F` contributions each.
    pub contributions: Vec<Vec<f64>>,
    pub expected_value: Vec<f64>,
    pub method: &'static str,
    pub approximate: bool,
    pub space: Space,
}

#[derive(Debug)]
pub enum Explainer {
    TreeShap(Box<TreeShap>),
    Linear {
        baseline: Vec<f32>,
        link: Link,
    },
    Sampling {
        baseline: Vec<f32>,
        link: Link,
        budget: usize,
    },
}

/// How model outputs map to the additive space explanations live in.
#[derive(Debug, Clone, Copy)]
pub enum Link {
    /// Binary classifier: `ln p[pos] - ln p[other]`.
    Logit { pos: usize, neg: usize },
    /// Multiclass: `ln p[c] - mean_k ln p[k]` for each class.
    CentredLog { classes: usize },
    /// Regression: the value itself.
    Identity,
}

const PROB_FLOOR: f64 = 1e-12;

impl Link {
    pub fn columns(self) -> usize {
        match self {
            Link::Logit { .. } | Link::Identity => 1,
            Link::CentredLog { classes } => classes,
        }
    }

    pub fn for_task(task: Task, classes: usize, positive: usize) -> Link {
        match task {
            Task::Binary => Link::Logit {
                pos: positive,
                neg: 1 - positive,
            },
            Task::Multiclass => Link::CentredLog { classes },
            Task::Regression => Link::Identity,
        }
    }

    /// Applies the link to one row of model outputs, writing `columns()` values.
    pub fn apply(self, output: &[f32], out: &mut [f64]) {
        let ln = |p: f32| f64::from(p).max(PROB_FLOOR).ln();
        match self {
            Link::Logit { pos, neg } => out[0] = ln(output[pos]) - ln(output[neg]),
            Link::CentredLog { classes } => {
                let mean = output[..classes].iter().map(|&p| ln(p)).sum::<f64>() / classes as f64;
                for (o, &p) in out.iter_mut().zip(&output[..classes]) {
                    *o = ln(p) - mean;
                }
            }
            Link::Identity => out[0] = f64::from(output[0]),
        }
    }
}

impl Explainer {
    pub fn method(&self) -> &'static str {
        match self {
            Explainer::TreeShap(_) => "tree_shap",
            Explainer::Linear { .. } => "linear",
            Explainer::Sampling { .. } => "sampled_shapley",
        }
    }

    /// Explains `n` rows (`n × F`, row-major).
    pub fn explain(
        &self,
        engine: &Engine,
        rows: &[f32],
        n: usize,
        n_features: usize,
    ) -> Result<Vec<Explanation>, ScoreError> {
        match self {
            Explainer::TreeShap(shap) => {
                let Engine::Tree(tree) = engine else {
                    return Err(ScoreError::Model(
                        "tree_shap explanations need the tree-ensemble engine".into(),
                    ));
                };
                // Explain the rows as the ensemble reads them (after the graph's casts and
                // imputers); the bundle check guarantees one ensemble column per feature.
                let rows = tree.ensemble_rows(rows, n);
                let cols = shap.n_margins();
                let width = n_features + 1;
                let mut buf = vec![0.0f64; n * cols * width];
                shap.shap_batch(&rows, n, &mut buf);
                Ok(buf
                    .chunks_exact(cols * width)
                    .map(|doc| Explanation {
                        contributions: doc
                            .chunks_exact(width)
                            .map(|c| c[..n_features].to_vec())
                            .collect(),
                        expected_value: doc.chunks_exact(width).map(|c| c[n_features]).collect(),
                        method: "tree_shap",
                        approximate: false,
                        space: Space::Margin,
                    })
                    .collect())
            }
            Explainer::Linear { baseline, link } => {
                ablation(engine, rows, n, n_features, baseline, *link)
            }
            Explainer::Sampling {
                baseline,
                link,
                budget,
            } => sampled_shapley(engine, rows, n, n_features, baseline, *link, *budget),
        }
    }
}

/// Exact for models that are linear in link space: each feature moved alone from the baseline.
fn ablation(
    engine: &Engine,
    rows: &[f32],
    n: usize,
    f: usize,
    baseline: &[f32],
    link: Link,
) -> Result<Vec<Explanation>, ScoreError> {
    // Per document: the baseline row, then one row per feature with that feature set to x.
    let per_doc = f + 1;
    let mut batch = Vec::with_capacity(n * per_doc * f);
    for row in rows.chunks_exact(f).take(n) {
        batch.extend_from_slice(baseline);
        for i in 0..f {
            let start = batch.len();
            batch.extend_from_slice(baseline);
            batch[start + i] = row[i];
        }
    }
    let outputs = engine.predict(&batch, n * per_doc)?;
    let k = engine.n_outputs();
    let cols = link.columns();
    let mut g = vec![0.0; cols];
    let mut g0 = vec![0.0; cols];
    Ok(outputs
        .chunks_exact(per_doc * k)
        .map(|doc| {
            link.apply(&doc[..k], &mut g0);
            let mut contributions = vec![vec![0.0; f]; cols];
            for i in 0..f {
                link.apply(&doc[(i + 1) * k..(i + 2) * k], &mut g);
                for c in 0..cols {
                    contributions[c][i] = g[c] - g0[c];
                }
            }
            Explanation {
                contributions,
                expected_value: g0.clone(),
                method: "linear",
                approximate: false,
                space: Space::Link,
            }
        })
        .collect())
}

/// Permutation sampling (antithetic pairs) from the baseline to the row, with a fixed seed so
/// the same document always gets the same explanation.
fn sampled_shapley(
    engine: &Engine,
    rows: &[f32],
    n: usize,
    f: usize,
    baseline: &[f32],
    link: Link,
    budget: usize,
) -> Result<Vec<Explanation>, ScoreError> {
    let budget = budget.max(2) & !1;
    let permutations = permutations(f, budget);
    let per_doc = budget * (f + 1);
    let mut batch = Vec::with_capacity(n * per_doc * f);
    for row in rows.chunks_exact(f).take(n) {
        for perm in &permutations {
            let mut current = baseline.to_vec();
            batch.extend_from_slice(&current);
            for &i in perm {
                current[i] = row[i];
                batch.extend_from_slice(&current);
            }
        }
    }
    let outputs = engine.predict(&batch, n * per_doc)?;
    let k = engine.n_outputs();
    let cols = link.columns();
    let mut prev = vec![0.0; cols];
    let mut next = vec![0.0; cols];
    Ok(outputs
        .chunks_exact(per_doc * k)
        .map(|doc| {
            let mut contributions = vec![vec![0.0; f]; cols];
            let mut g0 = vec![0.0; cols];
            link.apply(&doc[..k], &mut g0);
            for (p, perm) in permutations.iter().enumerate() {
                let base = p * (f + 1) * k;
                link.apply(&doc[base..base + k], &mut prev);
                for (step, &i) in perm.iter().enumerate() {
                    let at = base + (step + 1) * k;
                    link.apply(&doc[at..at + k], &mut next);
                    for c in 0..cols {
                        contributions[c][i] += (next[c] - prev[c]) / budget as f64;
                    }
                    std::mem::swap(&mut prev, &mut next);
                }
            }
            Explanation {
                contributions,
                expected_value: g0,
                method: "sampled_shapley",
                approximate: true,
                space: Space::Link,
            }
        })
        .collect())
}

/// `count` permutations of `0..f` in antithetic pairs (each followed by its reverse), from a
/// fixed-seed generator.
fn permutations(f: usize, count: usize) -> Vec<Vec<usize>> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // SplitMix64: tiny, deterministic, good enough to shuffle feature orders.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let mut perm: Vec<usize> = (0..f).collect();
        for i in (1..f).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            perm.swap(i, j);
        }
        let reversed: Vec<usize> = perm.iter().rev().copied().collect();
        out.push(perm);
        out.push(reversed);
    }
    out.truncate(count);
    out
}

/// Column means of a reference sample, ignoring NaN (a column that is all NaN stays NaN).
pub fn column_means(rows: &[Vec<f32>], f: usize) -> Vec<f32> {
    (0..f)
        .map(|i| {
            let (sum, count) = rows
                .iter()
                .filter_map(|r| r.get(i).copied().filter(|v| !v.is_nan()))
                .fold((0.0f64, 0usize), |(s, c), v| (s + f64::from(v), c + 1));
            if count == 0 {
                f32::NAN
            } else {
                (sum / count as f64) as f32
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_deterministic_antithetic_and_complete() {
        let a = permutations(5, 6);
        assert_eq!(a, permutations(5, 6));
        assert_eq!(a.len(), 6);
        for pair in a.chunks(2) {
            let rev: Vec<usize> = pair[0].iter().rev().copied().collect();
            assert_eq!(pair[1], rev);
        }
        for p in &a {
            let mut s = p.clone();
            s.sort_unstable();
            assert_eq!(s, vec![0, 1, 2, 3, 4]);
        }
    }

    #[test]
    fn links_are_additive_spaces() {
        let mut out = [0.0; 3];
        Link::Logit { pos: 1, neg: 0 }.apply(&[0.2, 0.8], &mut out);
        assert!((out[0] - (0.8f64 / 0.2).ln()).abs() < 1e-6);
        Link::CentredLog { classes: 3 }.apply(&[0.2, 0.3, 0.5], &mut out);
        assert!(out.iter().sum::<f64>().abs() < 1e-9);
    }

    #[test]
    fn column_means_skip_nan() {
        let rows = vec![vec![1.0, f32::NAN], vec![3.0, f32::NAN]];
        let m = column_means(&rows, 2);
        assert_eq!(m[0], 2.0);
        assert!(m[1].is_nan());
    }
}
