//! Drift: the population stability index (PSI) of each model's recent scores, and of its top
//! features' values, against the bundle's reference sample (`reference.json`).
//!
//! Bins are the reference's deciles (equal edges merged, so a binary feature has two bins), plus
//! one bin for missing values (NaN). A model's window holds its last `drift_window` documents,
//! stored as bin indices, so adding one document and dropping the oldest is O(features) and a
//! scrape reads counts only. PSI = Σ (aᵢ − eᵢ) · ln(aᵢ / eᵢ) over bins, with proportions floored
//! at [`EPSILON`] so an empty bin does not make it infinite. Rules of thumb: < 0.1 stable,
//! 0.1–0.2 moderate shift, > 0.2 large shift.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::bundle::Bundle;

/// Floor of a bin's proportion in the PSI sum.
pub const EPSILON: f64 = 1e-4;
/// PSI is exported once a window holds this many documents.
pub const MIN_WINDOW: usize = 100;
/// At most this many features per model are watched: those with the largest mean |contribution|
/// over the reference sample when the explainer is exact, else the first ones of the manifest.
pub const MAX_FEATURES: usize = 10;
const DECILES: usize = 10;

/// Reference bins of one quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// Upper-exclusive edges: bin k holds `edges[k-1] <= x < edges[k]`.
    edges: Vec<f64>,
    /// Expected proportion per bin; the last bin is "missing".
    expected: Vec<f64>,
}

impl Reference {
    /// Deciles of `sample` (NaN = missing); `None` when the sample is empty.
    pub fn from_sample(sample: &[f64]) -> Option<Reference> {
        if sample.is_empty() {
            return None;
        }
        let mut present: Vec<f64> = sample.iter().copied().filter(|v| !v.is_nan()).collect();
        present.sort_by(f64::total_cmp);
        let mut edges: Vec<f64> = Vec::new();
        if !present.is_empty() {
            for q in 1..DECILES {
                let e = present[q * present.len() / DECILES];
                // An edge equal to the minimum would leave its lower bin empty by construction.
                if e > present[0] && edges.last().is_none_or(|&last| e > last) {
                    edges.push(e);
                }
            }
        }
        let mut reference = Reference {
            expected: vec![0.0; edges.len() + 2],
            edges,
        };
        let counts = reference.counts(sample);
        let n = sample.len() as f64;
        reference.expected = counts.iter().map(|&c| c as f64 / n).collect();
        Some(reference)
    }

    pub fn bins(&self) -> usize {
        self.expected.len()
    }

    pub fn bin(&self, x: f64) -> usize {
        if x.is_nan() {
            self.edges.len() + 1
        } else {
            self.edges.partition_point(|&e| e <= x)
        }
    }

    fn counts(&self, values: &[f64]) -> Vec<u64> {
        let mut counts = vec![0u64; self.bins()];
        for &v in values {
            counts[self.bin(v)] += 1;
        }
        counts
    }

    /// PSI of observed bin counts against this reference.
    pub fn psi(&self, counts: &[u64]) -> f64 {
        psi(&self.expected, counts)
    }
}

/// PSI of observed `counts` against `expected` proportions (same bins).
pub fn psi(expected: &[f64], counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    expected
        .iter()
        .zip(counts)
        .map(|(&e, &c)| {
            let a = (c as f64 / total as f64).max(EPSILON);
            let e = e.max(EPSILON);
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// The last `capacity` bin indices of one quantity, and their counts.
#[derive(Debug)]
struct Window {
    ring: Vec<u8>,
    next: usize,
    counts: Vec<u64>,
}

impl Window {
    fn new(bins: usize, capacity: usize) -> Window {
        Window {
            ring: Vec::with_capacity(capacity),
            next: 0,
            counts: vec![0; bins],
        }
    }

    fn push(&mut self, bin: usize, capacity: usize) {
        let bin = bin as u8;
        if self.ring.len() < capacity {
            self.ring.push(bin);
        } else {
            let old = std::mem::replace(&mut self.ring[self.next], bin);
            self.counts[old as usize] -= 1;
            // Not `% capacity`: a division for every value of every document.
            self.next += 1;
            if self.next >= capacity {
                self.next = 0;
            }
        }
        self.counts[bin as usize] += 1;
    }
}

/// One model version's references and windows.
#[derive(Debug)]
pub struct ModelDrift {
    sha256: String,
    capacity: usize,
    score: Option<(Reference, Window)>,
    /// `(feature index, name, reference, window)`.
    features: Vec<(usize, String, Reference, Window)>,
}

impl ModelDrift {
    /// References from `bundle`'s reference sample (scored once here).
    pub fn new(bundle: &Bundle, capacity: usize) -> ModelDrift {
        let f = bundle.n_features();
        let rows = &bundle.reference;
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let scores: Vec<f64> = if rows.is_empty() {
            Vec::new()
        } else {
            let k = bundle.engine.n_outputs();
            match bundle.engine.predict(&flat, rows.len()) {
                Ok(out) => out
                    .chunks(k)
                    .map(|o| crate::inference::score_of(bundle, o))
                    .collect(),
                Err(e) => {
                    tracing::warn!(model = bundle.name(), error = %e, "cannot score the reference sample; score drift disabled");
                    Vec::new()
                }
            }
        };
        let score = Reference::from_sample(&scores).map(|r| {
            let w = Window::new(r.bins(), capacity);
            (r, w)
        });
        let names: Vec<&str> = bundle.extractor.names().collect();
        let features = watched_features(bundle, &flat)
            .into_iter()
            .filter_map(|i| {
                let column: Vec<f64> = rows.iter().map(|r| f64::from(r[i])).collect();
                let r = Reference::from_sample(&column)?;
                let w = Window::new(r.bins(), capacity);
                Some((i, names.get(i).copied().unwrap_or("?").to_string(), r, w))
            })
            .collect();
        debug_assert!(f == 0 || flat.len().is_multiple_of(f));
        ModelDrift {
            sha256: bundle.sha256.clone(),
            capacity,
            score,
            features,
        }
    }

    /// Adds scored documents: `scores[i]` with feature row `rows[i*F..(i+1)*F]`.
    pub fn observe(&mut self, scores: &[f64], rows: &[f32], n_features: usize) {
        let capacity = self.capacity;
        if let Some((r, w)) = &mut self.score {
            for &s in scores {
                w.push(r.bin(s), capacity);
            }
        }
        for (i, _, r, w) in &mut self.features {
            for row in rows.chunks_exact(n_features) {
                w.push(r.bin(f64::from(row[*i])), capacity);
            }
        }
    }

    /// Score PSI, once the window holds [`MIN_WINDOW`] documents.
    pub fn score_psi(&self) -> Option<f64> {
        let (r, w) = self.score.as_ref()?;
        (w.ring.len() >= MIN_WINDOW).then(|| r.psi(&w.counts))
    }

    /// `(feature name, PSI)` of the watched features, once their windows are full enough.
    pub fn feature_psi(&self) -> Vec<(&str, f64)> {
        self.features
            .iter()
            .filter(|(_, _, _, w)| w.ring.len() >= MIN_WINDOW)
            .map(|(_, name, r, w)| (name.as_str(), r.psi(&w.counts)))
            .collect()
    }
}

/// The features to watch: by mean |contribution| over the reference sample when the explainer is
/// exact (TreeSHAP, linear), else the manifest's first [`MAX_FEATURES`].
fn watched_features(bundle: &Bundle, flat: &[f32]) -> Vec<usize> {
    let f = bundle.n_features();
    let n = bundle.reference.len();
    let exact = bundle
        .explainer
        .as_ref()
        .filter(|e| !matches!(e, crate::explain::Explainer::Sampling { .. }));
    let mut weight = vec![0.0f64; f];
    if let (Some(explainer), true) = (exact, n > 0) {
        if let Ok(explanations) = explainer.explain(&bundle.engine, flat, n, f) {
            for e in explanations {
                for column in &e.contributions {
                    for (w, c) in weight.iter_mut().zip(column) {
                        *w += c.abs();
                    }
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..f).collect();
    // Stable: equal weights (no explainer) keep manifest order.
    order.sort_by(|&a, &b| weight[b].total_cmp(&weight[a]));
    order.truncate(MAX_FEATURES);
    order
}

/// Drift state of every model seen since start, keyed by model name.
#[derive(Debug, Default)]
pub struct DriftMonitor {
    models: Mutex<HashMap<String, Arc<Mutex<ModelDrift>>>>,
}

impl DriftMonitor {
    /// Records a batch scored by `bundle`. A new bundle version starts a new window.
    pub fn observe(&self, bundle: &Bundle, capacity: usize, scores: &[f64], rows: &[f32]) {
        let model = {
            let mut models = self.models.lock().unwrap_or_else(|e| e.into_inner());
            let current = models
                .get(bundle.name())
                .filter(|m| m.lock().is_ok_and(|m| m.sha256 == bundle.sha256))
                .cloned();
            match current {
                Some(m) => m,
                None => {
                    let m = Arc::new(Mutex::new(ModelDrift::new(bundle, capacity)));
                    models.insert(bundle.name().to_string(), m.clone());
                    m
                }
            }
        };
        model
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(scores, rows, bundle.n_features());
    }

    /// Calls `each(model, drift)` for the models in `loaded`; forgets the others.
    pub fn each(&self, loaded: &[&str], mut each: impl FnMut(&str, &ModelDrift)) {
        let mut models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        models.retain(|name, _| loaded.contains(&name.as_str()));
        for (name, m) in models.iter() {
            let m = m.lock().unwrap_or_else(|e| e.into_inner());
            each(name, &m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_matches_a_hand_computed_value() {
        // Expected 50/50, observed 80/20:
        // (0.8-0.5)·ln(0.8/0.5) + (0.2-0.5)·ln(0.2/0.5) = 0.3·0.470004 + 0.3·0.916291 = 0.415888
        let got = psi(&[0.5, 0.5], &[80, 20]);
        assert!((got - 0.415_888_5).abs() < 1e-6, "{got}");
        // Identical distributions: zero.
        assert!(psi(&[0.25, 0.75], &[25, 75]).abs() < 1e-12);
        // An empty observed bin is floored, not infinite.
        let floored = psi(&[0.5, 0.5], &[100, 0]);
        let want = (1.0 - 0.5) * (1.0f64 / 0.5).ln() + (1e-4 - 0.5) * (1e-4f64 / 0.5).ln();
        assert!((floored - want).abs() < 1e-9, "{floored} vs {want}");
    }

    #[test]
    fn deciles_of_a_uniform_sample_are_even() {
        let sample: Vec<f64> = (0..1000).map(|i| i as f64 / 1000.0).collect();
        let r = Reference::from_sample(&sample).unwrap();
        assert_eq!(r.bins(), 11); // ten deciles + missing
        for (k, e) in r.expected.iter().take(10).enumerate() {
            assert!((e - 0.1).abs() < 1e-9, "bin {k}: {e}");
        }
        assert_eq!(r.expected[10], 0.0);
        assert_eq!(r.bin(f64::NAN), 10);
        assert_eq!(r.bin(-5.0), 0);
        assert_eq!(r.bin(0.95), 9);
    }

    #[test]
    fn binary_feature_has_two_bins_and_missing() {
        let sample: Vec<f64> = (0..100)
            .map(|i| if i < 70 { 0.0 } else { 1.0 })
            .chain([f64::NAN; 10])
            .collect();
        let r = Reference::from_sample(&sample).unwrap();
        assert_eq!(r.bins(), 3);
        assert!((r.expected[0] - 70.0 / 110.0).abs() < 1e-12);
        assert!((r.expected[1] - 30.0 / 110.0).abs() < 1e-12);
        assert!((r.expected[2] - 10.0 / 110.0).abs() < 1e-12);
    }

    #[test]
    fn a_shifted_distribution_raises_psi() {
        let reference: Vec<f64> = (0..500).map(|i| (i % 100) as f64 / 100.0).collect();
        let r = Reference::from_sample(&reference).unwrap();
        let same = r.counts(&reference);
        let shifted: Vec<f64> = reference.iter().map(|x| (x + 0.3).min(0.99)).collect();
        let moved = r.counts(&shifted);
        let psi_same = r.psi(&same);
        let psi_moved = r.psi(&moved);
        assert!(psi_same < 1e-9, "{psi_same}");
        assert!(psi_moved > 0.2, "{psi_moved}");
    }

    #[test]
    fn window_forgets_the_oldest() {
        let mut w = Window::new(3, 4);
        for b in [0, 0, 1, 1, 2, 2] {
            w.push(b, 4);
        }
        assert_eq!(w.ring.len(), 4);
        assert_eq!(w.counts, vec![0, 2, 2]);
    }
}
