//! A tiny interpreter for the nodes converters put around a tree ensemble (casts, imputers,
//! arithmetic with constants, sigmoid/softmax, concat, ...). Values are f32 matrices whose rows
//! are the batch; constants keep their own shape and broadcast. The plan is dry-run at load time
//! so shape errors surface as `TreeError`s, never at scoring time.

use std::collections::HashMap;

use tract_onnx::pb::{GraphProto, NodeProto};

use super::attrs::{describe, tensor_f64, Attrs};
use super::ensemble::TreeEnsemble;
use super::post;
use super::TreeError;

/// A batch matrix (rows = batch) or a constant of fixed shape.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Batch { cols: usize, data: Vec<f32> },
    Const { dims: Vec<usize>, data: Vec<f32> },
}

#[derive(Clone, Copy, Debug)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Copy, Debug)]
enum Norm {
    Max,
    L1,
    L2,
}

#[derive(Debug)]
enum Op {
    Identity,
    Cast {
        to_int: bool,
        to_bool: bool,
    },
    IsNaN,
    Where,
    Binary(Bin),
    Reshape {
        shape: Vec<i64>,
    },
    Concat,
    Sigmoid,
    Softmax,
    ArgMax {
        select_last: bool,
    },
    Imputer {
        values: Vec<f32>,
        replaced: f32,
    },
    Normalizer(Norm),
    Scaler {
        offset: Vec<f32>,
        scale: Vec<f32>,
    },
    Binarizer {
        threshold: f32,
    },
    LinearRegressor {
        coefs: Vec<f32>,
        intercepts: Vec<f32>,
        targets: usize,
        probit: bool,
    },
    Tree,
}

#[derive(Debug)]
struct Step {
    op: Op,
    label: String,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
}

#[derive(Debug)]
pub(crate) struct Plan {
    steps: Vec<Step>,
    /// Values known before running: initializers and Constant nodes.
    consts: Vec<Option<Val>>,
    n_values: usize,
    input: usize,
    pub(crate) input_name: String,
    pub(crate) n_features: usize,
    output: usize,
    /// Index of the tree step, and the value feeding it.
    tree_step: usize,
    tree_input: usize,
    pub(crate) ensemble: TreeEnsemble,
    /// The tree reads the graph input directly and its scores are the requested output.
    pub(crate) direct: bool,
    pub(crate) tree_features: usize,
}

fn unsupported(node: &NodeProto, msg: impl Into<String>) -> TreeError {
    TreeError::Graph {
        node: describe(node),
        msg: msg.into(),
    }
}

impl Plan {
    pub(crate) fn compile(graph: &GraphProto, output: &str) -> Result<Plan, TreeError> {
        let mut consts: Vec<Option<Val>> = Vec::new();
        let id_of = |name: &str, ids: &mut HashMap<String, usize>| -> usize {
            let n = ids.len();
            *ids.entry(name.to_string()).or_insert(n)
        };
        let mut names: HashMap<String, usize> = HashMap::new();

        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, node) in graph.node.iter().enumerate() {
            for o in &node.output {
                if !o.is_empty() {
                    producer.insert(o.as_str(), i);
                }
            }
        }
        let initializers: HashMap<&str, &tract_onnx::pb::TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let graph_inputs: Vec<&str> = graph
            .input
            .iter()
            .map(|v| v.name.as_str())
            .filter(|n| !initializers.contains_key(n))
            .collect();

        // Nodes the output depends on.
        let mut needed = vec![false; graph.node.len()];
        let mut used_inputs: Vec<&str> = Vec::new();
        let mut stack = vec![output];
        let mut visited: std::collections::HashSet<&str> = Default::default();
        if !producer.contains_key(output) && !graph_inputs.contains(&output) {
            return Err(TreeError::Output(format!("no node produces {output:?}")));
        }
        while let Some(name) = stack.pop() {
            if name.is_empty() || !visited.insert(name) {
                continue;
            }
            if let Some(&i) = producer.get(name) {
                if !needed[i] {
                    needed[i] = true;
                    stack.extend(graph.node[i].input.iter().map(String::as_str));
                }
            } else if graph_inputs.contains(&name) {
                used_inputs.push(name);
            } else if !initializers.contains_key(name) {
                return Err(TreeError::Output(format!("value {name:?} has no producer")));
            }
        }
        let input_name = match used_inputs.as_slice() {
            [one] => one.to_string(),
            [] => {
                return Err(TreeError::Output(format!(
                    "{output:?} does not depend on a graph input"
                )))
            }
            many => {
                return Err(TreeError::Output(format!(
                    "{output:?} depends on several inputs: {many:?}"
                )))
            }
        };

        let input = id_of(&input_name, &mut names);
        let mut steps = Vec::new();
        let mut tree: Option<(usize, usize, TreeEnsemble)> = None;
        for (i, node) in graph.node.iter().enumerate() {
            if !needed[i] {
                continue;
            }
            let a = Attrs::new(node);
            let mut inputs = Vec::new();
            for name in &node.input {
                if name.is_empty() {
                    continue;
                }
                let id = id_of(name, &mut names);
                if let Some(t) = initializers.get(name.as_str()) {
                    grow(&mut consts, id + 1);
                    if consts[id].is_none() {
                        let (dims, data) = tensor_f64(t)
                            .map_err(|m| unsupported(node, format!("initializer {name:?}: {m}")))?;
                        consts[id] = Some(Val::Const {
                            dims,
                            data: data.into_iter().map(|v| v as f32).collect(),
                        });
                    }
                }
                inputs.push(id);
            }
            let outputs: Vec<usize> = node.output.iter().map(|o| id_of(o, &mut names)).collect();
            let domain = node.domain.as_str();
            let op = match (domain, node.op_type.as_str()) {
                ("" | "ai.onnx", "Constant") => {
                    let (dims, data) = a
                        .tensor("value")?
                        .or_else(|| a.float("value_float").map(|v| (vec![], vec![f64::from(v)])))
                        .or_else(|| {
                            a.has("value_floats").then(|| {
                                let v = a.floats("value_floats");
                                (vec![v.len()], v.into_iter().map(f64::from).collect())
                            })
                        })
                        .or_else(|| a.int("value_int").map(|v| (vec![], vec![v as f64])))
                        .or_else(|| {
                            a.has("value_ints").then(|| {
                                let v = a.ints("value_ints");
                                (vec![v.len()], v.into_iter().map(|x| x as f64).collect())
                            })
                        })
                        .ok_or_else(|| unsupported(node, "Constant without a numeric value"))?;
                    let id = outputs[0];
                    grow(&mut consts, id + 1);
                    consts[id] = Some(Val::Const {
                        dims,
                        data: data.into_iter().map(|v| v as f32).collect(),
                    });
                    continue;
                }
                ("" | "ai.onnx", "Identity" | "Flatten") => Op::Identity,
                ("" | "ai.onnx", "Cast") => {
                    let to = a.int("to").unwrap_or(1);
                    // 1 float, 10 float16, 11 double, 16 bfloat16: values stay f32.
                    match to {
                        1 | 10 | 11 | 16 => Op::Cast {
                            to_int: false,
                            to_bool: false,
                        },
                        2..=7 | 12 | 13 => Op::Cast {
                            to_int: true,
                            to_bool: false,
                        },
                        9 => Op::Cast {
                            to_int: false,
                            to_bool: true,
                        },
                        other => return Err(unsupported(node, format!("Cast to type {other}"))),
                    }
                }
                ("" | "ai.onnx", "IsNaN") => Op::IsNaN,
                ("" | "ai.onnx", "Where") => Op::Where,
                ("" | "ai.onnx", "Add") => Op::Binary(Bin::Add),
                ("" | "ai.onnx", "Sub") => Op::Binary(Bin::Sub),
                ("" | "ai.onnx", "Mul") => Op::Binary(Bin::Mul),
                ("" | "ai.onnx", "Div") => Op::Binary(Bin::Div),
                ("" | "ai.onnx", "Sigmoid") => Op::Sigmoid,
                ("" | "ai.onnx", "Softmax") => {
                    let axis = a.int("axis").unwrap_or(-1);
                    if axis != -1 && axis != 1 {
                        return Err(unsupported(node, format!("Softmax over axis {axis}")));
                    }
                    Op::Softmax
                }
                ("" | "ai.onnx", "ArgMax") => {
                    let axis = a.int("axis").unwrap_or(0);
                    if axis != 1 && axis != -1 {
                        return Err(unsupported(node, format!("ArgMax over axis {axis}")));
                    }
                    Op::ArgMax {
                        select_last: a.int("select_last_index") == Some(1),
                    }
                }
                ("" | "ai.onnx", "Concat") => {
                    let axis = a.int("axis").unwrap_or(1);
                    if axis != 1 && axis != -1 {
                        return Err(unsupported(node, format!("Concat over axis {axis}")));
                    }
                    Op::Concat
                }
                ("" | "ai.onnx", "Reshape") => {
                    let shape = match inputs
                        .get(1)
                        .and_then(|&s| consts.get(s).cloned().flatten())
                    {
                        Some(Val::Const { data, .. }) => data.iter().map(|&v| v as i64).collect(),
                        _ => return Err(unsupported(node, "Reshape needs a constant shape")),
                    };
                    inputs.truncate(1);
                    Op::Reshape { shape }
                }
                ("ai.onnx.ml", "Imputer") => {
                    let values = a.floats("imputed_value_floats");
                    if values.is_empty() {
                        return Err(unsupported(node, "Imputer without imputed_value_floats"));
                    }
                    Op::Imputer {
                        values,
                        replaced: a.float("replaced_value_float").unwrap_or(0.0),
                    }
                }
                ("ai.onnx.ml", "Normalizer") => {
                    Op::Normalizer(match a.string("norm")?.as_deref().unwrap_or("MAX") {
                        "MAX" => Norm::Max,
                        "L1" => Norm::L1,
                        "L2" => Norm::L2,
                        other => {
                            return Err(unsupported(node, format!("Normalizer norm {other:?}")))
                        }
                    })
                }
                ("ai.onnx.ml", "Scaler") => Op::Scaler {
                    offset: a.floats("offset"),
                    scale: a.floats("scale"),
                },
                ("ai.onnx.ml", "Binarizer") => Op::Binarizer {
                    threshold: a.float("threshold").unwrap_or(0.0),
                },
                ("ai.onnx.ml", "LinearRegressor") => {
                    let post = a.string("post_transform")?.unwrap_or_else(|| "NONE".into());
                    if post != "NONE" && post != "PROBIT" {
                        return Err(unsupported(
                            node,
                            format!("LinearRegressor post_transform {post}"),
                        ));
                    }
                    let targets = a.int("targets").unwrap_or(1).max(1) as usize;
                    Op::LinearRegressor {
                        coefs: a.floats("coefficients"),
                        intercepts: a.floats("intercepts"),
                        targets,
                        probit: post == "PROBIT",
                    }
                }
                ("ai.onnx.ml", "TreeEnsembleClassifier" | "TreeEnsembleRegressor") => {
                    if tree.is_some() {
                        return Err(unsupported(
                            node,
                            "more than one tree ensemble feeds the output",
                        ));
                    }
                    let ensemble = TreeEnsemble::from_node(node)?;
                    let tree_input = *inputs
                        .first()
                        .ok_or_else(|| unsupported(node, "no input"))?;
                    tree = Some((steps.len(), tree_input, ensemble));
                    Op::Tree
                }
                (_, "ZipMap") => return Err(unsupported(
                    node,
                    "ZipMap output (a map sequence) cannot be scored; request the tensor before it",
                )),
                (d, op) => {
                    return Err(unsupported(
                        node,
                        format!("operator {d}:{op} is not supported around trees"),
                    ))
                }
            };
            steps.push(Step {
                op,
                label: describe(node),
                inputs,
                outputs,
            });
        }
        let (tree_step, tree_input, ensemble) = tree.ok_or_else(|| {
            TreeError::Output(format!("{output:?} does not depend on a tree ensemble"))
        })?;
        let output_id = *names
            .get(output)
            .ok_or_else(|| TreeError::Output(format!("unknown output {output:?}")))?;

        let declared = graph
            .input
            .iter()
            .find(|v| v.name == input_name)
            .and_then(|v| v.r#type.as_ref())
            .and_then(|t| match &t.value {
                Some(tract_onnx::pb::type_proto::Value::TensorType(tt)) => tt.shape.as_ref(),
                _ => None,
            })
            .and_then(|s| s.dim.get(1))
            .and_then(|d| match d.value {
                Some(tract_onnx::pb::tensor_shape_proto::dimension::Value::DimValue(v))
                    if v > 0 =>
                {
                    Some(v as usize)
                }
                _ => None,
            });
        let direct_input = tree_input == input;
        let n_features = match declared {
            Some(f) => f,
            None if direct_input => ensemble.min_features,
            None => {
                return Err(TreeError::Output(format!(
                    "input {input_name:?} has no static feature count"
                )))
            }
        };
        let tree_scores = steps[tree_step].outputs.last().copied();
        let direct = direct_input && steps.len() == 1 && tree_scores == Some(output_id);
        let n_values = names.len();
        grow(&mut consts, n_values);
        let mut plan = Plan {
            steps,
            consts,
            n_values,
            input,
            input_name,
            n_features,
            output: output_id,
            tree_step,
            tree_input,
            ensemble,
            direct,
            tree_features: n_features,
        };
        // Dry runs fix every shape; after them scoring cannot hit a shape error.
        let probe = |n: usize| vec![0.5f32; n * plan.n_features];
        let env = plan.run(&probe(1), 1, None)?;
        let tf = match &env[plan.tree_input] {
            Some(Val::Batch { cols, .. }) => *cols,
            _ => {
                return Err(TreeError::Output(
                    "the tree input is not a batch tensor".into(),
                ))
            }
        };
        if tf < plan.ensemble.min_features {
            return Err(TreeError::Output(format!(
                "the trees read feature {} but their input has {tf} columns",
                plan.ensemble.min_features - 1
            )));
        }
        plan.tree_features = tf;
        plan.ensemble.n_features = tf;
        let n_out = plan.out_cols(&env)?;
        let env3 = plan.run(&probe(3), 3, None)?;
        if plan.out_cols(&env3)? != n_out {
            return Err(TreeError::Output(
                "output width depends on the batch size".into(),
            ));
        }
        Ok(plan)
    }

    fn out_cols(&self, env: &[Option<Val>]) -> Result<usize, TreeError> {
        match &env[self.output] {
            Some(Val::Batch { cols, .. }) => Ok(*cols),
            _ => Err(TreeError::Output(
                "the output is a constant, not a per-row tensor".into(),
            )),
        }
    }

    pub(crate) fn n_outputs(&self) -> usize {
        if self.direct {
            return self.ensemble.n_outputs();
        }
        let env = self
            .run(&vec![0.5f32; self.n_features], 1, None)
            .unwrap_or_default();
        self.out_cols(&env).unwrap_or(0)
    }

    /// Runs the steps; with `stop_at_tree`, stops before the tree step.
    fn run(
        &self,
        rows: &[f32],
        n: usize,
        stop_at_tree: Option<()>,
    ) -> Result<Vec<Option<Val>>, TreeError> {
        let mut env: Vec<Option<Val>> = self.consts.clone();
        env.resize(self.n_values, None);
        env[self.input] = Some(Val::Batch {
            cols: self.n_features,
            data: rows[..n * self.n_features].to_vec(),
        });
        for (si, step) in self.steps.iter().enumerate() {
            if stop_at_tree.is_some() && si == self.tree_step {
                break;
            }
            let err = |m: String| TreeError::Graph {
                node: step.label.clone(),
                msg: m,
            };
            let arg = |k: usize| -> Result<&Val, TreeError> {
                step.inputs
                    .get(k)
                    .and_then(|&id| env[id].as_ref())
                    .ok_or_else(|| err(format!("input {k} is missing")))
            };
            let results: Vec<Val> = match &step.op {
                Op::Identity => vec![arg(0)?.clone()],
                Op::Cast { to_int, to_bool } => vec![map(arg(0)?, |v| {
                    if *to_bool {
                        f32::from(u8::from(v != 0.0))
                    } else if *to_int {
                        v.trunc()
                    } else {
                        v
                    }
                })],
                Op::IsNaN => vec![map(arg(0)?, |v| f32::from(u8::from(v.is_nan())))],
                Op::Sigmoid => vec![map(arg(0)?, |v| 1.0 / (1.0 + (-v).exp()))],
                Op::Binarizer { threshold } => {
                    vec![map(arg(0)?, |v| f32::from(u8::from(v > *threshold)))]
                }
                Op::Binary(b) => vec![broadcast(arg(0)?, arg(1)?, n, |x, y| match b {
                    Bin::Add => x + y,
                    Bin::Sub => x - y,
                    Bin::Mul => x * y,
                    Bin::Div => x / y,
                })
                .map_err(err)?],
                Op::Where => {
                    let (c, a, b) = (arg(0)?, arg(1)?, arg(2)?);
                    let cols = [c, a, b]
                        .iter()
                        .map(|v| width(v))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(&err)?;
                    let cols = cols.into_iter().max().unwrap_or(1);
                    let (c, a, b) = (
                        expand(c, n, cols).map_err(&err)?,
                        expand(a, n, cols).map_err(&err)?,
                        expand(b, n, cols).map_err(&err)?,
                    );
                    let data = c
                        .iter()
                        .zip(a.iter().zip(&b))
                        .map(|(&c, (&a, &b))| if c != 0.0 { a } else { b })
                        .collect();
                    vec![Val::Batch { cols, data }]
                }
                Op::Reshape { shape } => vec![reshape(arg(0)?, shape, n).map_err(err)?],
                Op::Concat => {
                    let parts: Vec<&Val> =
                        (0..step.inputs.len()).map(arg).collect::<Result<_, _>>()?;
                    vec![concat(&parts, n).map_err(err)?]
                }
                Op::Softmax => {
                    let (cols, mut data) = batch(arg(0)?, n).map_err(err)?;
                    data.chunks_mut(cols.max(1)).for_each(post::softmax);
                    vec![Val::Batch { cols, data }]
                }
                Op::ArgMax { select_last } => {
                    let (cols, data) = batch(arg(0)?, n).map_err(err)?;
                    let out = data
                        .chunks(cols.max(1))
                        .map(|r| {
                            let mut best = 0;
                            for (k, &v) in r.iter().enumerate() {
                                if v > r[best] || (*select_last && v == r[best]) {
                                    best = k;
                                }
                            }
                            best as f32
                        })
                        .collect();
                    vec![Val::Batch { cols: 1, data: out }]
                }
                Op::Imputer { values, replaced } => {
                    let (cols, mut data) = batch(arg(0)?, n).map_err(err)?;
                    if values.len() != 1 && values.len() != cols {
                        return Err(err(format!(
                            "{} imputed values for {cols} columns",
                            values.len()
                        )));
                    }
                    for row in data.chunks_mut(cols.max(1)) {
                        for (k, v) in row.iter_mut().enumerate() {
                            let hit = if replaced.is_nan() {
                                v.is_nan()
                            } else {
                                *v == *replaced
                            };
                            if hit {
                                *v = values[if values.len() == 1 { 0 } else { k }];
                            }
                        }
                    }
                    vec![Val::Batch { cols, data }]
                }
                Op::Normalizer(norm) => {
                    let (cols, mut data) = batch(arg(0)?, n).map_err(err)?;
                    for row in data.chunks_mut(cols.max(1)) {
                        let d = match norm {
                            Norm::Max => row.iter().fold(f32::MIN, |m, &v| m.max(v)),
                            Norm::L1 => row.iter().map(|v| v.abs()).sum(),
                            Norm::L2 => row.iter().map(|v| v * v).sum::<f32>().sqrt(),
                        };
                        if d != 0.0 {
                            row.iter_mut().for_each(|v| *v /= d);
                        }
                    }
                    vec![Val::Batch { cols, data }]
                }
                Op::Scaler { offset, scale } => {
                    let (cols, mut data) = batch(arg(0)?, n).map_err(err)?;
                    let pick = |v: &[f32], k: usize, d: f32| match v.len() {
                        0 => d,
                        1 => v[0],
                        _ => v.get(k).copied().unwrap_or(d),
                    };
                    for row in data.chunks_mut(cols.max(1)) {
                        for (k, v) in row.iter_mut().enumerate() {
                            *v = (*v - pick(offset, k, 0.0)) * pick(scale, k, 1.0);
                        }
                    }
                    vec![Val::Batch { cols, data }]
                }
                Op::LinearRegressor {
                    coefs,
                    intercepts,
                    targets,
                    probit,
                } => {
                    let (cols, data) = batch(arg(0)?, n).map_err(err)?;
                    if coefs.len() != cols * targets {
                        return Err(err(format!(
                            "{} coefficients for {cols} inputs x {targets} targets",
                            coefs.len()
                        )));
                    }
                    let mut out = Vec::with_capacity(n * targets);
                    for row in data.chunks(cols.max(1)) {
                        for t in 0..*targets {
                            let mut s: f32 = intercepts.get(t).copied().unwrap_or(0.0);
                            for (x, c) in row.iter().zip(&coefs[t * cols..(t + 1) * cols]) {
                                s += x * c;
                            }
                            out.push(if *probit { post::probit(s) } else { s });
                        }
                    }
                    vec![Val::Batch {
                        cols: *targets,
                        data: out,
                    }]
                }
                Op::Tree => {
                    let (cols, data) = batch(arg(0)?, n).map_err(err)?;
                    if cols < self.ensemble.min_features {
                        return Err(err(format!(
                            "{cols} input columns, trees need {}",
                            self.ensemble.min_features
                        )));
                    }
                    let c = self.ensemble.n_outputs();
                    let mut scores = vec![0.0f32; n * c];
                    let mut labels = vec![0.0f32; n];
                    self.ensemble
                        .predict(&data, n, cols, &mut scores, Some(&mut labels));
                    if self.ensemble.kind == super::ensemble::EnsembleKind::Regressor {
                        vec![Val::Batch {
                            cols: c,
                            data: scores,
                        }]
                    } else {
                        vec![
                            Val::Batch {
                                cols: 1,
                                data: labels,
                            },
                            Val::Batch {
                                cols: c,
                                data: scores,
                            },
                        ]
                    }
                }
            };
            for (&id, v) in step.outputs.iter().zip(results) {
                env[id] = Some(v);
            }
        }
        Ok(env)
    }

    pub(crate) fn predict(&self, rows: &[f32], n: usize, out: &mut [f32]) {
        if self.direct {
            self.ensemble.predict(rows, n, self.n_features, out, None);
            return;
        }
        match self
            .run(rows, n, None)
            .map(|mut env| env[self.output].take())
        {
            Ok(Some(Val::Batch { data, .. })) if data.len() == out.len() => {
                out.copy_from_slice(&data)
            }
            // Shapes were fixed by the dry run at load; this is unreachable in practice.
            _ => out.iter_mut().for_each(|o| *o = f32::NAN),
        }
    }

    /// The rows as the tree sees them (after casts, imputers, ...): n x tree_features.
    pub(crate) fn tree_rows(&self, rows: &[f32], n: usize) -> Vec<f32> {
        if self.tree_input == self.input {
            return rows[..n * self.n_features].to_vec();
        }
        match self
            .run(rows, n, Some(()))
            .map(|mut env| env[self.tree_input].take())
        {
            Ok(Some(Val::Batch { data, .. })) => data,
            _ => vec![f32::NAN; n * self.tree_features],
        }
    }

    pub(crate) fn margins(&self, rows: &[f32], n: usize, out: &mut [f32]) {
        if self.tree_input == self.input {
            self.ensemble.margins(rows, n, self.n_features, out);
        } else {
            let t = self.tree_rows(rows, n);
            self.ensemble.margins(&t, n, self.tree_features, out);
        }
    }
}

fn grow(v: &mut Vec<Option<Val>>, len: usize) {
    if v.len() < len {
        v.resize(len, None);
    }
}

fn map(v: &Val, f: impl Fn(f32) -> f32) -> Val {
    match v {
        Val::Batch { cols, data } => Val::Batch {
            cols: *cols,
            data: data.iter().map(|&x| f(x)).collect(),
        },
        Val::Const { dims, data } => Val::Const {
            dims: dims.clone(),
            data: data.iter().map(|&x| f(x)).collect(),
        },
    }
}

/// A batch value as (cols, data); a constant broadcasts only if it is a single row.
fn batch(v: &Val, n: usize) -> Result<(usize, Vec<f32>), String> {
    match v {
        Val::Batch { cols, data } => Ok((*cols, data.clone())),
        Val::Const { .. } => {
            let (cols, row) = const_row(v)?;
            Ok((cols, row.iter().copied().cycle().take(cols * n).collect()))
        }
    }
}

/// A constant usable as one broadcast row: scalar, [k] or [1, k].
fn const_row(v: &Val) -> Result<(usize, &[f32]), String> {
    match v {
        Val::Const { dims, data } => match dims.as_slice() {
            [] => Ok((1, data)),
            [k] | [1, k] => Ok((*k, data)),
            other => Err(format!(
                "constant of shape {other:?} cannot broadcast over rows"
            )),
        },
        Val::Batch { cols, data } => Ok((*cols, data)),
    }
}

fn width(v: &Val) -> Result<usize, String> {
    const_row(v).map(|(c, _)| c)
}

/// `v` broadcast to n x cols.
fn expand(v: &Val, n: usize, cols: usize) -> Result<Vec<f32>, String> {
    let (c, d) = const_row(v)?;
    if c != cols && c != 1 {
        return Err(format!("cannot broadcast {c} columns to {cols}"));
    }
    let per_row = matches!(v, Val::Batch { .. });
    Ok((0..n)
        .flat_map(|r| (0..cols).map(move |k| (r, k)))
        .map(|(r, k)| d[if per_row { r * c } else { 0 } + if c == 1 { 0 } else { k }])
        .collect())
}

fn broadcast(a: &Val, b: &Val, n: usize, f: impl Fn(f32, f32) -> f32) -> Result<Val, String> {
    if let (Val::Const { dims, data: x }, Val::Const { data: y, .. }) = (a, b) {
        if x.len() == y.len() {
            return Ok(Val::Const {
                dims: dims.clone(),
                data: x.iter().zip(y).map(|(&p, &q)| f(p, q)).collect(),
            });
        }
        if y.len() == 1 {
            return Ok(Val::Const {
                dims: dims.clone(),
                data: x.iter().map(|&p| f(p, y[0])).collect(),
            });
        }
        return Err("constant shapes do not broadcast".into());
    }
    let (ca, da, a_rows) = match a {
        Val::Batch { cols, data } => (*cols, &data[..], true),
        _ => {
            let (c, d) = const_row(a)?;
            (c, d, false)
        }
    };
    let (cb, db, b_rows) = match b {
        Val::Batch { cols, data } => (*cols, &data[..], true),
        _ => {
            let (c, d) = const_row(b)?;
            (c, d, false)
        }
    };
    let cols = ca.max(cb);
    if (ca != cols && ca != 1) || (cb != cols && cb != 1) {
        return Err(format!("cannot broadcast {ca} columns with {cb} columns"));
    }
    let mut out = Vec::with_capacity(n * cols);
    for r in 0..n {
        for k in 0..cols {
            let x = da[if a_rows { r * ca } else { 0 } + if ca == 1 { 0 } else { k }];
            let y = db[if b_rows { r * cb } else { 0 } + if cb == 1 { 0 } else { k }];
            out.push(f(x, y));
        }
    }
    Ok(Val::Batch { cols, data: out })
}

fn reshape(v: &Val, shape: &[i64], n: usize) -> Result<Val, String> {
    match v {
        Val::Const { data, .. } => {
            let dims = shape
                .iter()
                .map(|&d| if d < 0 { data.len() } else { d as usize })
                .collect();
            Ok(Val::Const {
                dims,
                data: data.clone(),
            })
        }
        Val::Batch { cols, data } => {
            let total = n * cols;
            let new_cols = match shape {
                [_] => 1,
                [first, k] if *k > 0 => {
                    if *first > 0 && *first as usize * *k as usize != total {
                        return Err(format!("cannot reshape {n}x{cols} to {shape:?}"));
                    }
                    *k as usize
                }
                [first, -1] if *first > 0 => total / *first as usize,
                [first, 0] if *first != 0 => *cols,
                _ => return Err(format!("Reshape to {shape:?} is not supported")),
            };
            if new_cols == 0 || !total.is_multiple_of(new_cols) || total / new_cols != n {
                return Err(format!(
                    "Reshape of {n}x{cols} to {shape:?} changes the batch"
                ));
            }
            Ok(Val::Batch {
                cols: new_cols,
                data: data.clone(),
            })
        }
    }
}

fn concat(parts: &[&Val], n: usize) -> Result<Val, String> {
    let mats: Vec<(usize, Vec<f32>)> = parts
        .iter()
        .map(|p| batch(p, n))
        .collect::<Result<_, _>>()?;
    let cols: usize = mats.iter().map(|m| m.0).sum();
    let mut out = Vec::with_capacity(n * cols);
    for r in 0..n {
        for (c, d) in &mats {
            out.extend_from_slice(&d[r * c..(r + 1) * c]);
        }
    }
    Ok(Val::Batch { cols, data: out })
}
