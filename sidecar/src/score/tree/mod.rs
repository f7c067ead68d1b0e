//! Our own evaluator for ONNX tree ensembles (`ai.onnx.ml` `TreeEnsembleClassifier` /
//! `TreeEnsembleRegressor`) and the small nodes converters put around them.
//!
//! Why not tract: its tree operator is slow (an error value per leaf visit, linear leaf lookup),
//! reads `BRANCH_GTE` nodes as leaves, refuses XGBoost's two base values and has no
//! `TreeEnsembleRegressor`, `ZipMap` or `Imputer`. Here the tree node is parsed once into
//! [`TreeEnsemble`] (exact onnxruntime semantics, including its binary-classifier special cases)
//! and compiled into a flat branch-free forest; the surrounding nodes run in a tiny interpreter.
//!
//! - `attrs`: typed node attributes and constant tensors.
//! - `ensemble`: the parsed ensemble, exact evaluation and onnxruntime's finalisation.
//! - `fast`: the compiled forest used for prediction whenever the model allows it.
//! - `post`: post transforms (logistic, softmax, probit) as onnxruntime computes them.
//! - `graph`: the interpreter for the nodes around the tree.

mod attrs;
mod ensemble;
mod fast;
mod graph;
mod post;
mod wide;

use tract_onnx::pb::ModelProto;

pub use ensemble::{
    Aggregate, EnsembleKind, LeafWeight, MarginColumn, Node, NodeKind, NodeMode, PostTransform,
    Tree, TreeEnsemble,
};

/// Why a model cannot be scored by the tree evaluator.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("model has no graph")]
    NoGraph,
    #[error("{node}: attribute {attr}: {msg}")]
    Attribute {
        node: String,
        attr: String,
        msg: String,
    },
    #[error("{node}: {msg}")]
    Ensemble { node: String, msg: String },
    #[error("{node}: {msg}")]
    Graph { node: String, msg: String },
    #[error("output: {0}")]
    Output(String),
    #[error("covers: {0}")]
    Covers(String),
}

/// A tree-ensemble graph compiled for scoring, from its input to one named output.
#[derive(Debug)]
pub struct TreeGraph {
    plan: graph::Plan,
    n_outputs: usize,
}

impl TreeGraph {
    /// Whether the graph contains a tree ensemble node (then [`TreeGraph::from_onnx`] applies).
    pub fn is_tree_graph(model: &ModelProto) -> bool {
        model
            .graph
            .as_ref()
            .is_some_and(|g| g.node.iter().any(TreeEnsemble::is_tree_node))
    }

    /// Compiles the part of the graph that computes `output` (e.g. `probabilities`, `variable`).
    pub fn from_onnx(model: &ModelProto, output: &str) -> Result<TreeGraph, TreeError> {
        let graph = model.graph.as_ref().ok_or(TreeError::NoGraph)?;
        let plan = graph::Plan::compile(graph, output)?;
        let n_outputs = plan.n_outputs();
        Ok(TreeGraph { plan, n_outputs })
    }

    /// Width of an input row.
    pub fn n_features(&self) -> usize {
        self.plan.n_features
    }

    /// Name of the graph input the rows feed.
    pub fn input_name(&self) -> &str {
        &self.plan.input_name
    }

    /// Columns of the requested output.
    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// Columns of the raw ensemble margin (1 for binary XGBoost/LightGBM, C for multiclass).
    pub fn n_margins(&self) -> usize {
        self.plan.ensemble.n_margins()
    }

    /// Scores `n` rows (row-major, `n x n_features`, NaN = missing) into `out` (`n x n_outputs`).
    ///
    /// # Panics
    /// If `rows` or `out` is shorter than stated by `n`.
    pub fn predict(&self, rows: &[f32], n: usize, out: &mut [f32]) {
        assert!(
            rows.len() >= n * self.n_features(),
            "rows holds fewer than n rows"
        );
        assert!(
            out.len() >= n * self.n_outputs,
            "out holds fewer than n rows"
        );
        self.plan.predict(rows, n, &mut out[..n * self.n_outputs]);
    }

    /// Raw ensemble margins incl. base values, before the post transform (`n x n_margins`).
    ///
    /// # Panics
    /// If `rows` or `out` is shorter than stated by `n`.
    pub fn margins(&self, rows: &[f32], n: usize, out: &mut [f32]) {
        assert!(
            rows.len() >= n * self.n_features(),
            "rows holds fewer than n rows"
        );
        assert!(
            out.len() >= n * self.n_margins(),
            "out holds fewer than n rows"
        );
        self.plan.margins(rows, n, &mut out[..n * self.n_margins()]);
    }

    /// The rows as the ensemble reads them (after the graph's casts/imputers); TreeSHAP
    /// explains these. Equal to `rows` when the tree reads the graph input directly.
    pub fn ensemble_rows(&self, rows: &[f32], n: usize) -> Vec<f32> {
        self.plan.tree_rows(rows, n)
    }

    /// Width of the rows the ensemble reads.
    pub fn ensemble_features(&self) -> usize {
        self.plan.tree_features
    }

    pub fn ensemble(&self) -> &TreeEnsemble {
        &self.plan.ensemble
    }
}

#[cfg(test)]
pub(crate) mod tests;
