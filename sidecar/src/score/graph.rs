//! Graphs that are not tree ensembles (linear models, MLPs) run in tract: loaded once with a
//! symbolic batch dimension, optimised once, then run many times.

use std::sync::Arc;

use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;

use super::ScoreError;

#[derive(Debug)]
pub struct GraphRunner {
    plan: Arc<TypedRunnableModel>,
    n_features: usize,
    n_outputs: usize,
}

impl GraphRunner {
    /// Builds the plan for `output`, a float tensor `[N, C]` (or `[N]`), from an input `[N, F]`.
    pub fn new(proto: &ModelProto, n_features: usize, output: &str) -> Result<Self, ScoreError> {
        let err = |e: TractError| ScoreError::Model(format!("{e:#}"));
        let mut model = tract_onnx::onnx()
            .model_for_proto_model(proto)
            .map_err(err)?;
        let outlet = model.find_outlet_label(output).ok_or_else(|| {
            ScoreError::Model(format!("the graph has no output named [{output}]"))
        })?;
        model.select_output_outlets(&[outlet]).map_err(err)?;
        let batch = model.sym("N");
        model
            .set_input_fact(0, f32::fact([batch.to_dim(), n_features.to_dim()]).into())
            .map_err(err)?;
        let typed = model.into_optimized().map_err(err)?;
        let fact = typed.output_fact(0).map_err(err)?.clone();
        if fact.datum_type != f32::datum_type() {
            return Err(ScoreError::Model(format!(
                "output [{output}] is {:?}, expected float",
                fact.datum_type
            )));
        }
        let n_outputs = match fact.shape.as_concrete() {
            Some(_) => unreachable!("batch is symbolic"),
            None => match fact.shape.len() {
                1 => 1,
                2 => fact.shape[1].as_usize().ok_or_else(|| {
                    ScoreError::Model(format!("output [{output}] has a symbolic width"))
                })?,
                r => {
                    return Err(ScoreError::Model(format!(
                        "output [{output}] has rank {r}, expected 1 or 2"
                    )))
                }
            },
        };
        let plan = typed.into_runnable().map_err(err)?;
        Ok(GraphRunner {
            plan,
            n_features,
            n_outputs,
        })
    }

    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    pub fn predict(&self, rows: &[f32], n: usize) -> Result<Vec<f32>, ScoreError> {
        let input = Tensor::from_shape(&[n, self.n_features], rows)
            .map_err(|e| ScoreError::Model(format!("{e:#}")))?;
        let outputs = self
            .plan
            .run(tvec!(input.into()))
            .map_err(|e| ScoreError::Model(format!("{e:#}")))?;
        let view = outputs[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| ScoreError::Model(format!("{e:#}")))?;
        let view: Vec<f32> = view.iter().copied().collect();
        if view.len() != n * self.n_outputs {
            return Err(ScoreError::Model(format!(
                "graph returned {} values for {n} rows of {} outputs",
                view.len(),
                self.n_outputs
            )));
        }
        Ok(view)
    }
}
