//! Placeholder for exact TreeSHAP (being written on the `tree-evaluator` branch).

use crate::score::tree::{TreeEnsemble, TreeError};

#[derive(Debug)]
pub struct TreeShap;

impl TreeShap {
    pub fn new(_ensemble: &TreeEnsemble, _covers: &[Vec<f64>]) -> Result<Self, TreeError> {
        Err(TreeError::Unsupported("tree shap not built yet".into()))
    }
    pub fn covers_from_sample(_ensemble: &TreeEnsemble, _rows: &[f32], _n: usize) -> Vec<Vec<f64>> {
        Vec::new()
    }
    pub fn n_features(&self) -> usize {
        0
    }
    pub fn n_margins(&self) -> usize {
        0
    }
    pub fn expected_value(&self) -> &[f64] {
        &[]
    }
    pub fn shap_row(&self, _row: &[f32], _out: &mut [f64]) {}
}
