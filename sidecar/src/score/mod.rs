//! Scoring: a batch of feature rows becomes model outputs.
//!
//! Tree ensembles run on our own evaluator ([`tree`]); every other graph runs in tract
//! ([`graph`]). Both answer the same question: the value of the bundle's declared output for
//! each row (class probabilities, or the regression value).

pub mod graph;
pub mod tree;

use tract_onnx::pb::ModelProto;

pub use graph::GraphRunner;
pub use tree::{TreeError, TreeGraph};

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("model error: {0}")]
    Model(String),
    #[error("tree ensemble: {0}")]
    Tree(#[from] TreeError),
}

/// The engine that runs one bundle's graph.
#[derive(Debug)]
pub enum Engine {
    Tree(Box<TreeGraph>),
    Graph(GraphRunner),
}

impl Engine {
    pub fn new(proto: &ModelProto, n_features: usize, output: &str) -> Result<Self, ScoreError> {
        if TreeGraph::is_tree_graph(proto) {
            let tree = TreeGraph::from_onnx(proto, output)?;
            if tree.n_features() != n_features {
                return Err(ScoreError::Model(format!(
                    "the manifest declares {n_features} features but the model reads {}",
                    tree.n_features()
                )));
            }
            Ok(Engine::Tree(Box::new(tree)))
        } else {
            Ok(Engine::Graph(GraphRunner::new(proto, n_features, output)?))
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Engine::Tree(_) => "tree_ensemble",
            Engine::Graph(_) => "tract",
        }
    }

    pub fn n_outputs(&self) -> usize {
        match self {
            Engine::Tree(t) => t.n_outputs(),
            Engine::Graph(g) => g.n_outputs(),
        }
    }

    /// `rows` is `n × F` row-major; the result is `n × n_outputs`.
    pub fn predict(&self, rows: &[f32], n: usize) -> Result<Vec<f32>, ScoreError> {
        match self {
            Engine::Tree(t) => {
                let mut out = vec![0.0; n * t.n_outputs()];
                t.predict(rows, n, &mut out);
                Ok(out)
            }
            Engine::Graph(g) => g.predict(rows, n),
        }
    }
}
