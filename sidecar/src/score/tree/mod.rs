//! Placeholder for the tree-ensemble evaluator (being written on the `tree-evaluator` branch).
//! It states the interface the rest of the crate codes against; the real module replaces it.

use tract_onnx::pb::ModelProto;

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{0}")]
    Unsupported(String),
}

#[derive(Debug)]
pub struct TreeEnsemble;

#[derive(Debug)]
pub struct TreeGraph {
    ensemble: TreeEnsemble,
}

impl TreeGraph {
    pub fn is_tree_graph(model: &ModelProto) -> bool {
        model
            .graph
            .as_ref()
            .is_some_and(|g| g.node.iter().any(|n| n.op_type.starts_with("TreeEnsemble")))
    }
    pub fn from_onnx(_model: &ModelProto, _output: &str) -> Result<TreeGraph, TreeError> {
        Err(TreeError::Unsupported(
            "tree evaluator not built yet".into(),
        ))
    }
    pub fn n_features(&self) -> usize {
        0
    }
    pub fn n_outputs(&self) -> usize {
        0
    }
    pub fn n_margins(&self) -> usize {
        0
    }
    pub fn predict(&self, _rows: &[f32], _n: usize, _out: &mut [f32]) {}
    pub fn margins(&self, _rows: &[f32], _n: usize, _out: &mut [f32]) {}
    pub fn ensemble(&self) -> &TreeEnsemble {
        &self.ensemble
    }
}
