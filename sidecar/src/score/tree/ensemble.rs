//! One `TreeEnsembleClassifier` / `TreeEnsembleRegressor` node, parsed into checked trees, and its
//! exact onnxruntime semantics (routing, aggregation, base values, binary special cases, post
//! transforms). The fast evaluator in `fast.rs` is compiled from this form; this form is also what
//! TreeSHAP walks.

use std::collections::{BTreeSet, HashMap};

use tract_onnx::pb::NodeProto;

use super::attrs::Attrs;
use super::fast::FastForest;
use super::post;
use super::TreeError;

/// Branch comparison, `x CMP threshold` sends a row to the true child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeMode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EnsembleKind {
    /// Class labels in output column order (strings, or int64 labels rendered as text).
    Classifier {
        labels: Vec<String>,
        int_labels: Vec<i64>,
    },
    Regressor,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeafWeight {
    /// Accumulation column (class id or target id).
    pub column: u32,
    pub value: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    Branch {
        feature: u32,
        /// f32 thresholds are stored widened; comparing `f64::from(x)` gives the f32 result.
        threshold: f64,
        mode: NodeMode,
        missing_true: bool,
        true_child: u32,
        false_child: u32,
    },
    /// `weights[first..first + len]` of the tree.
    Leaf { first: u32, len: u32 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The ONNX `nodes_nodeids` value (covers.json is indexed by it).
    pub onnx_id: i64,
    pub kind: NodeKind,
}

/// One tree; `nodes[0]` is the root (onnxruntime takes the first listed node of a tree id).
#[derive(Clone, Debug, PartialEq)]
pub struct Tree {
    pub onnx_id: i64,
    pub nodes: Vec<Node>,
    pub weights: Vec<LeafWeight>,
    /// Longest root-to-leaf path, in branches.
    pub depth: u32,
}

impl Node {
    /// onnxruntime's rule: `x CMP t || (missing_tracks_true && isnan(x))`. NaN fails every
    /// comparison except `!=`, so a NEQ node sends NaN to its true child.
    #[inline]
    pub fn goes_true(
        feature_value: f32,
        threshold: f64,
        mode: NodeMode,
        missing_true: bool,
    ) -> bool {
        let x = f64::from(feature_value);
        let cmp = match mode {
            NodeMode::Leq => x <= threshold,
            NodeMode::Lt => x < threshold,
            NodeMode::Gte => x >= threshold,
            NodeMode::Gt => x > threshold,
            NodeMode::Eq => x == threshold,
            NodeMode::Neq => x != threshold,
        };
        cmp || (missing_true && feature_value.is_nan())
    }
}

impl Tree {
    /// Index of the leaf `row` lands in.
    #[inline]
    pub fn leaf_index(&self, row: &[f32]) -> usize {
        let mut i = 0usize;
        while let Some(next) = self.child(i, row) {
            i = next;
        }
        i
    }

    /// The child of node `i` that `row` goes to; `None` when `i` is a leaf.
    #[inline]
    pub fn child(&self, i: usize, row: &[f32]) -> Option<usize> {
        match &self.nodes[i].kind {
            NodeKind::Leaf { .. } => None,
            NodeKind::Branch {
                feature,
                threshold,
                mode,
                missing_true,
                true_child,
                false_child,
            } => {
                let x = row[*feature as usize];
                Some(if Node::goes_true(x, *threshold, *mode, *missing_true) {
                    *true_child as usize
                } else {
                    *false_child as usize
                })
            }
        }
    }

    pub fn leaf_weights(&self, leaf: usize) -> &[LeafWeight] {
        match self.nodes[leaf].kind {
            NodeKind::Leaf { first, len } => &self.weights[first as usize..(first + len) as usize],
            NodeKind::Branch { .. } => &[],
        }
    }
}

/// How margin column `m` is read from the accumulated sums: `acc[src] * scale + offset`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MarginColumn {
    pub src: usize,
    pub offset: f64,
}

/// A parsed tree ensemble node.
#[derive(Debug)]
pub struct TreeEnsemble {
    pub kind: EnsembleKind,
    pub trees: Vec<Tree>,
    pub aggregate: Aggregate,
    pub post_transform: PostTransform,
    pub base_values: Vec<f64>,
    /// onnxruntime's `n_targets_or_classes`: accumulation columns and output columns.
    pub n_columns: usize,
    /// Smallest input width the trees accept (max feature id + 1).
    pub min_features: usize,
    /// Width of the rows this ensemble is fed (set from the graph; `min_features` standalone).
    pub n_features: usize,
    /// Thresholds/weights came from `*_as_tensor` doubles: sums are accumulated in f64.
    pub double_precision: bool,
    pub margins: Vec<MarginColumn>,
    /// 1, or 1 / n_trees for AVERAGE.
    pub margin_scale: f64,
    binary_case: bool,
    weights_all_positive: bool,
    /// Columns some leaf writes to (onnxruntime's `has_score` is static when every leaf of a
    /// tree writes the same columns; `fast` is only built then).
    column_written: Vec<bool>,
    fast: Option<FastForest>,
}

/// Scratch for one row of the exact evaluator.
pub(crate) struct RowAcc {
    pub(crate) score: Vec<f64>,
    pub(crate) has: Vec<bool>,
}

impl TreeEnsemble {
    pub fn is_tree_node(node: &NodeProto) -> bool {
        node.domain == "ai.onnx.ml"
            && (node.op_type == "TreeEnsembleClassifier" || node.op_type == "TreeEnsembleRegressor")
    }

    pub fn from_node(node: &NodeProto) -> Result<Self, TreeError> {
        let a = Attrs::new(node);
        let name = a.node_name();
        let bad = |msg: String| TreeError::Ensemble {
            node: name.clone(),
            msg,
        };
        let is_classifier = node.op_type == "TreeEnsembleClassifier";
        if !Self::is_tree_node(node) {
            return Err(bad(format!(
                "not a tree ensemble node (domain {:?})",
                node.domain
            )));
        }

        let (prefix, kind, n_columns) = if is_classifier {
            let labels = a.strings("classlabels_strings")?;
            let ints = a.ints("classlabels_int64s");
            let (labels, int_labels) = if labels.is_empty() {
                (ints.iter().map(|v| v.to_string()).collect(), ints)
            } else {
                (labels, Vec::new())
            };
            let n = labels.len();
            if n < 2 {
                return Err(bad(format!(
                    "a classifier needs at least 2 class labels, found {n}"
                )));
            }
            ("class", EnsembleKind::Classifier { labels, int_labels }, n)
        } else {
            let n = a.int("n_targets").unwrap_or(0);
            if n <= 0 {
                return Err(bad(format!("n_targets must be positive, found {n}")));
            }
            ("target", EnsembleKind::Regressor, n as usize)
        };

        let aggregate = if is_classifier {
            // The classifier kernel always sums, whatever the attribute says.
            Aggregate::Sum
        } else {
            match a.string("aggregate_function")?.as_deref().unwrap_or("SUM") {
                "SUM" => Aggregate::Sum,
                "AVERAGE" => Aggregate::Average,
                "MIN" => Aggregate::Min,
                "MAX" => Aggregate::Max,
                other => return Err(bad(format!("unknown aggregate_function {other:?}"))),
            }
        };
        let post_transform = match a.string("post_transform")?.as_deref().unwrap_or("NONE") {
            "NONE" => PostTransform::None,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX" => PostTransform::Softmax,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            other => return Err(bad(format!("unknown post_transform {other:?}"))),
        };

        let (base_values, base_double) = a.floats_or_tensor("base_values")?;
        let (values, values_double) = a.floats_or_tensor("nodes_values")?;
        let weight_attr = format!("{prefix}_weights");
        let (weights, weights_double) = a.floats_or_tensor(&weight_attr)?;
        let double_precision = base_double || values_double || weights_double;

        let tree_ids = a.ints("nodes_treeids");
        let node_ids = a.ints("nodes_nodeids");
        let feature_ids = a.ints("nodes_featureids");
        let modes = a.strings("nodes_modes")?;
        let true_ids = a.ints("nodes_truenodeids");
        let false_ids = a.ints("nodes_falsenodeids");
        let missing = a.ints("nodes_missing_value_tracks_true");
        let n_nodes = tree_ids.len();
        for (attr, len) in [
            ("nodes_nodeids", node_ids.len()),
            ("nodes_featureids", feature_ids.len()),
            ("nodes_modes", modes.len()),
            ("nodes_truenodeids", true_ids.len()),
            ("nodes_falsenodeids", false_ids.len()),
            ("nodes_values", values.len()),
        ] {
            if len != n_nodes {
                return Err(bad(format!(
                    "{attr} has {len} entries but nodes_treeids has {n_nodes}"
                )));
            }
        }
        if n_nodes == 0 {
            return Err(bad("the ensemble has no nodes".into()));
        }
        let w_tree = a.ints(&format!("{prefix}_treeids"));
        let w_node = a.ints(&format!("{prefix}_nodeids"));
        let w_col = a.ints(&format!("{prefix}_ids"));
        for (attr, len) in [
            (format!("{prefix}_nodeids"), w_node.len()),
            (format!("{prefix}_ids"), w_col.len()),
            (weight_attr.clone(), weights.len()),
        ] {
            if len != w_tree.len() {
                return Err(bad(format!(
                    "{attr} has {len} entries but {prefix}_treeids has {}",
                    w_tree.len()
                )));
            }
        }

        // Group nodes by tree id, in order of first appearance.
        let mut tree_of: HashMap<i64, usize> = HashMap::new();
        let mut tree_members: Vec<(i64, Vec<usize>)> = Vec::new();
        let mut last_tree: Option<i64> = None;
        for (i, &t) in tree_ids.iter().enumerate() {
            match tree_of.get(&t) {
                Some(&k) => {
                    if last_tree != Some(t) {
                        return Err(bad(format!(
                            "nodes of tree {t} are not contiguous (onnxruntime would count it twice)"
                        )));
                    }
                    tree_members[k].1.push(i);
                }
                None => {
                    tree_of.insert(t, tree_members.len());
                    tree_members.push((t, vec![i]));
                }
            }
            last_tree = Some(t);
        }

        // (tree id, node id) -> (tree index, local index)
        let mut local: HashMap<(i64, i64), (usize, usize)> = HashMap::with_capacity(n_nodes);
        for (k, (t, members)) in tree_members.iter().enumerate() {
            for (j, &i) in members.iter().enumerate() {
                if local.insert((*t, node_ids[i]), (k, j)).is_some() {
                    return Err(bad(format!(
                        "node {} of tree {t} is defined twice",
                        node_ids[i]
                    )));
                }
            }
        }

        // Leaf weights, in onnxruntime's order: sorted by (tree, node), stable.
        let mut order: Vec<usize> = (0..w_tree.len()).collect();
        order.sort_by_key(|&i| (w_tree[i], w_node[i]));
        let mut leaf_w: HashMap<(usize, usize), Vec<LeafWeight>> = HashMap::new();
        let mut weights_all_positive = true;
        let mut weight_classes = BTreeSet::new();
        for &i in &order {
            weight_classes.insert(w_col[i]);
            if weights[i] < 0.0 {
                weights_all_positive = false;
            }
            let &(k, j) = local.get(&(w_tree[i], w_node[i])).ok_or_else(|| {
                bad(format!(
                    "weight {i} targets node {} of tree {} which does not exist",
                    w_node[i], w_tree[i]
                ))
            })?;
            let node_i = tree_members[k].1[j];
            if modes[node_i] != "LEAF" {
                // Old onnxmltools put weights on branches; onnxruntime ignores them.
                continue;
            }
            let col = w_col[i];
            if n_columns > 1 && (col < 0 || col as usize >= n_columns) {
                return Err(bad(format!(
                    "weight {i} targets column {col} but there are {n_columns} columns"
                )));
            }
            leaf_w.entry((k, j)).or_default().push(LeafWeight {
                column: if n_columns == 1 { 0 } else { col as u32 },
                value: weights[i],
            });
        }

        let mut trees = Vec::with_capacity(tree_members.len());
        let mut max_feature: i64 = -1;
        for (k, (t, members)) in tree_members.iter().enumerate() {
            let mut nodes = Vec::with_capacity(members.len());
            let mut tree_weights = Vec::new();
            for (j, &i) in members.iter().enumerate() {
                let node_err = |msg: String| bad(format!("tree {t} node {}: {msg}", node_ids[i]));
                let kind = if modes[i] == "LEAF" {
                    let ws = leaf_w
                        .remove(&(k, j))
                        .ok_or_else(|| node_err("leaf has no weight".into()))?;
                    // With one column onnxruntime reads only the first weight of a leaf.
                    let ws = if n_columns == 1 { vec![ws[0]] } else { ws };
                    let first = tree_weights.len() as u32;
                    let len = ws.len() as u32;
                    tree_weights.extend(ws);
                    NodeKind::Leaf { first, len }
                } else {
                    let mode = match modes[i].as_str() {
                        "BRANCH_LEQ" => NodeMode::Leq,
                        "BRANCH_LT" => NodeMode::Lt,
                        "BRANCH_GTE" => NodeMode::Gte,
                        "BRANCH_GT" => NodeMode::Gt,
                        "BRANCH_EQ" => NodeMode::Eq,
                        "BRANCH_NEQ" => NodeMode::Neq,
                        other => return Err(node_err(format!("unknown mode {other:?}"))),
                    };
                    let f = feature_ids[i];
                    if !(0..=i64::from(u32::MAX >> 1)).contains(&f) {
                        return Err(node_err(format!("feature id {f} out of range")));
                    }
                    max_feature = max_feature.max(f);
                    let child = |id: i64, which: &str| -> Result<u32, TreeError> {
                        match local.get(&(*t, id)) {
                            Some(&(kk, jj)) if kk == k && jj != j => Ok(jj as u32),
                            Some(_) => {
                                Err(node_err(format!("{which} child {id} points to itself")))
                            }
                            None => Err(node_err(format!("{which} child {id} does not exist"))),
                        }
                    };
                    NodeKind::Branch {
                        feature: f as u32,
                        threshold: values[i],
                        mode,
                        missing_true: missing.get(i).copied() == Some(1),
                        true_child: child(true_ids[i], "true")?,
                        false_child: child(false_ids[i], "false")?,
                    }
                };
                nodes.push(Node {
                    onnx_id: node_ids[i],
                    kind,
                });
            }
            let depth = check_tree_shape(&nodes).map_err(|m| bad(format!("tree {t}: {m}")))?;
            trees.push(Tree {
                onnx_id: *t,
                nodes,
                weights: tree_weights,
                depth,
            });
        }

        if is_classifier && base_values.len() > n_columns {
            return Err(bad(format!(
                "{} base_values for {n_columns} classes",
                base_values.len()
            )));
        }

        let mut column_written = vec![false; n_columns];
        for tree in &trees {
            for w in &tree.weights {
                column_written[w.column as usize] = true;
            }
        }
        let binary_case = is_classifier && n_columns == 2 && weight_classes.len() == 1;
        let margin_scale = if aggregate == Aggregate::Average {
            1.0 / trees.len() as f64
        } else {
            1.0
        };
        let bv = |k: usize| base_values.get(k).copied().unwrap_or(0.0);
        let margins = match (&kind, n_columns) {
            (EnsembleKind::Classifier { .. }, 2) => {
                let written: Vec<usize> = (0..2).filter(|&c| column_written[c]).collect();
                match written.as_slice() {
                    [0] => vec![MarginColumn {
                        src: 0,
                        offset: if matches!(base_values.len(), 1 | 2) {
                            bv(0)
                        } else {
                            0.0
                        },
                    }],
                    [1] => vec![MarginColumn {
                        src: 1,
                        offset: if base_values.len() == 2 { bv(1) } else { 0.0 },
                    }],
                    _ => (0..2)
                        .map(|c| MarginColumn {
                            src: c,
                            offset: if base_values.len() == 2 || c == 0 {
                                bv(c)
                            } else {
                                0.0
                            },
                        })
                        .collect(),
                }
            }
            (EnsembleKind::Classifier { .. }, n) => (0..n)
                .map(|c| MarginColumn {
                    src: c,
                    offset: bv(c),
                })
                .collect(),
            (EnsembleKind::Regressor, 1) => vec![MarginColumn {
                src: 0,
                offset: if base_values.len() == 1 { bv(0) } else { 0.0 },
            }],
            (EnsembleKind::Regressor, n) => (0..n)
                .map(|c| MarginColumn {
                    src: c,
                    offset: if base_values.len() == n { bv(c) } else { 0.0 },
                })
                .collect(),
        };

        let mut ensemble = TreeEnsemble {
            kind,
            trees,
            aggregate,
            post_transform,
            base_values,
            n_columns,
            min_features: (max_feature + 1) as usize,
            n_features: (max_feature + 1) as usize,
            double_precision,
            margins,
            margin_scale,
            binary_case,
            weights_all_positive,
            column_written,
            fast: None,
        };
        ensemble.fast = FastForest::compile(&ensemble);
        Ok(ensemble)
    }

    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// Columns of the scores output (`probabilities` / `variable`).
    pub fn n_outputs(&self) -> usize {
        self.n_columns
    }

    pub fn n_margins(&self) -> usize {
        self.margins.len()
    }

    /// Whether the fast evaluator was compiled (else the exact per-node evaluator runs).
    pub fn is_compiled(&self) -> bool {
        self.fast.is_some()
    }

    pub(crate) fn is_additive(&self) -> bool {
        matches!(self.aggregate, Aggregate::Sum | Aggregate::Average)
    }

    pub(crate) fn new_row_acc(&self) -> RowAcc {
        RowAcc {
            score: vec![0.0; self.n_columns],
            has: vec![false; self.n_columns],
        }
    }

    /// The exact evaluator: onnxruntime's per-row aggregation, in its accumulation precision.
    pub(crate) fn accumulate_exact(&self, row: &[f32], acc: &mut RowAcc) {
        if self.double_precision {
            self.accumulate_exact_in::<f64>(row, acc)
        } else {
            self.accumulate_exact_in::<f32>(row, acc)
        }
    }

    fn accumulate_exact_in<A: post::Acc>(&self, row: &[f32], acc: &mut RowAcc) {
        let mut score: Vec<A> = vec![A::default(); self.n_columns];
        acc.has.iter_mut().for_each(|h| *h = false);
        for tree in &self.trees {
            let leaf = tree.leaf_index(row);
            for w in tree.leaf_weights(leaf) {
                let c = w.column as usize;
                let v = A::from_f64(w.value);
                match self.aggregate {
                    Aggregate::Sum | Aggregate::Average => score[c] += v,
                    Aggregate::Min => {
                        if !acc.has[c] || v < score[c] {
                            score[c] = v
                        }
                    }
                    Aggregate::Max => {
                        if !acc.has[c] || v > score[c] {
                            score[c] = v
                        }
                    }
                }
                acc.has[c] = true;
            }
        }
        for (d, s) in acc.score.iter_mut().zip(&score) {
            *d = s.to_f64();
        }
    }

    /// Accumulated sums for `n` rows into `acc` (n x n_columns) and the static `has` flags.
    /// Uses the compiled forest when there is one.
    pub(crate) fn accumulate_batch(
        &self,
        rows: &[f32],
        n: usize,
        n_features: usize,
        acc: &mut [f64],
    ) -> Vec<bool> {
        if let Some(fast) = &self.fast {
            fast.accumulate(
                rows,
                n,
                n_features,
                self.n_columns,
                self.double_precision,
                acc,
            );
            return self.column_written.clone();
        }
        // Only reached when has-flags may vary per row; callers needing them use the row API.
        let mut row_acc = self.new_row_acc();
        for (r, row) in rows.chunks_exact(n_features).take(n).enumerate() {
            self.accumulate_exact(row, &mut row_acc);
            acc[r * self.n_columns..(r + 1) * self.n_columns].copy_from_slice(&row_acc.score);
        }
        self.column_written.clone()
    }

    /// Scores (n x n_outputs) and labels (n) for `n` rows of width `n_features`.
    pub fn predict(
        &self,
        rows: &[f32],
        n: usize,
        n_features: usize,
        out: &mut [f32],
        mut labels: Option<&mut [f32]>,
    ) {
        let c = self.n_columns;
        if self.fast.is_some() {
            let mut acc = vec![0.0f64; n * c];
            let has = self.accumulate_batch(rows, n, n_features, &mut acc);
            let mut row_has = has.clone();
            let mut row_score = vec![0.0; c];
            for r in 0..n {
                row_score.copy_from_slice(&acc[r * c..(r + 1) * c]);
                row_has.copy_from_slice(&has);
                let label =
                    self.finalize(&mut row_score, &mut row_has, &mut out[r * c..(r + 1) * c]);
                if let Some(l) = labels.as_deref_mut() {
                    l[r] = label;
                }
            }
            return;
        }
        let mut acc = self.new_row_acc();
        for r in 0..n {
            self.accumulate_exact(&rows[r * n_features..(r + 1) * n_features], &mut acc);
            let label = self.finalize(&mut acc.score, &mut acc.has, &mut out[r * c..(r + 1) * c]);
            if let Some(l) = labels.as_deref_mut() {
                l[r] = label;
            }
        }
    }

    /// Raw margins (n x n_margins): the ensemble sum plus base values, before the post transform.
    pub fn margins(&self, rows: &[f32], n: usize, n_features: usize, out: &mut [f32]) {
        let c = self.n_columns;
        let m = self.margins.len();
        let min_max = !self.is_additive();
        let write = |score: &[f64], has: &[bool], out: &mut [f32]| {
            for (o, mc) in out.iter_mut().zip(&self.margins) {
                let v = if has[mc.src] {
                    score[mc.src] * self.margin_scale
                } else {
                    0.0
                };
                *o = if min_max && c > 1 && !has[mc.src] {
                    0.0
                } else {
                    (v + mc.offset) as f32
                };
            }
        };
        if self.fast.is_some() {
            let mut acc = vec![0.0f64; n * c];
            let has = self.accumulate_batch(rows, n, n_features, &mut acc);
            for r in 0..n {
                write(&acc[r * c..(r + 1) * c], &has, &mut out[r * m..(r + 1) * m]);
            }
            return;
        }
        let mut acc = self.new_row_acc();
        for r in 0..n {
            self.accumulate_exact(&rows[r * n_features..(r + 1) * n_features], &mut acc);
            write(&acc.score, &acc.has, &mut out[r * m..(r + 1) * m]);
        }
    }

    /// onnxruntime's `FinalizeScores`/`FinalizeScores1` and `write_scores` for one row; returns
    /// the label output (class label, or its index for string labels) as f32.
    pub(crate) fn finalize(&self, score: &mut [f64], has: &mut [bool], out: &mut [f32]) -> f32 {
        match &self.kind {
            EnsembleKind::Regressor => {
                self.finalize_regressor(score, has, out);
                0.0
            }
            EnsembleKind::Classifier { int_labels, .. } => {
                self.finalize_classifier(score, has, out, int_labels)
            }
        }
    }

    fn finalize_regressor(&self, score: &mut [f64], has: &mut [bool], out: &mut [f32]) {
        let n_trees = self.trees.len() as f64;
        let bv = &self.base_values;
        if self.n_columns == 1 {
            let origin = if bv.len() == 1 { bv[0] } else { 0.0 };
            let s = match self.aggregate {
                Aggregate::Sum => score[0] + origin,
                Aggregate::Average => score[0] / n_trees + origin,
                Aggregate::Min | Aggregate::Max => {
                    if has[0] {
                        score[0] + origin
                    } else {
                        origin
                    }
                }
            };
            out[0] = if self.post_transform == PostTransform::Probit {
                post::probit(s as f32)
            } else {
                s as f32
            };
            return;
        }
        let use_bv = bv.len() == self.n_columns;
        for (j, s) in score.iter_mut().enumerate() {
            let b = if use_bv { bv[j] } else { 0.0 };
            *s = match self.aggregate {
                Aggregate::Sum => *s + b,
                Aggregate::Average => *s / n_trees + b,
                Aggregate::Min | Aggregate::Max => b + if has[j] { *s } else { 0.0 },
            };
        }
        post::write_scores(score, has, self.post_transform, -1, out);
    }

    fn finalize_classifier(
        &self,
        score: &mut [f64],
        has: &mut [bool],
        out: &mut [f32],
        int_labels: &[i64],
    ) -> f32 {
        let bv = &self.base_values;
        let label_of = |class: usize| -> f32 {
            if int_labels.is_empty() {
                class as f32
            } else {
                int_labels[class] as f32
            }
        };
        if self.n_columns > 2 {
            for (k, &b) in bv.iter().enumerate() {
                if has[k] {
                    score[k] += b;
                } else {
                    has[k] = true;
                    score[k] = b;
                }
            }
            let mut best: Option<(usize, f64)> = None;
            for k in 0..self.n_columns {
                if has[k] && best.is_none_or(|(_, w)| score[k] > w) {
                    best = Some((k, score[k]));
                }
            }
            post::write_scores(score, has, self.post_transform, -1, out);
            return best.map(|(k, _)| label_of(k)).unwrap_or(0.0);
        }

        let mut second_class: i32 = -1;
        let mut len = 2;
        match bv.len() {
            2 => {
                if has[1] {
                    // onnxruntime ignores base_values[0] here and mirrors class 1.
                    score[1] = bv[1] + score[0];
                    score[0] = -score[1];
                    has[1] = true;
                } else {
                    score[1] += bv[1];
                    score[0] += bv[0];
                }
            }
            1 => {
                score[0] += bv[0];
                if !has[1] {
                    len = 1;
                }
            }
            0 => {
                second_class = 3;
                if !has[1] {
                    len = 1;
                }
            }
            _ => {}
        }
        let value = |k: usize| if has[k] { score[k] } else { 0.0 };
        let pos_weight = if len == 2 && has[1] {
            score[1]
        } else {
            value(0)
        };
        let label = if self.binary_case {
            if self.weights_all_positive {
                if pos_weight > 0.5 {
                    second_class = 0;
                    label_of(1)
                } else {
                    second_class = 1;
                    label_of(0)
                }
            } else if pos_weight > 0.0 {
                second_class = 2;
                label_of(1)
            } else {
                second_class = 3;
                label_of(0)
            }
        } else if pos_weight > 0.0 {
            1.0
        } else {
            0.0
        };
        post::write_scores(
            &score[..len],
            &has[..len],
            self.post_transform,
            second_class,
            out,
        );
        label
    }
}

/// Checks that the nodes reachable from the root form a tree (no cycle, no shared node) and
/// returns its depth. Iterative so a hostile model cannot overflow the stack.
fn check_tree_shape(nodes: &[Node]) -> Result<u32, String> {
    let mut seen = vec![false; nodes.len()];
    let mut stack = vec![(0usize, 0u32)];
    let mut depth = 0;
    seen[0] = true;
    while let Some((i, d)) = stack.pop() {
        depth = depth.max(d);
        if let NodeKind::Branch {
            true_child,
            false_child,
            ..
        } = nodes[i].kind
        {
            for c in [true_child, false_child] {
                let c = c as usize;
                if seen[c] {
                    return Err(format!(
                        "node {} is reached twice (cycle or shared subtree)",
                        nodes[c].onnx_id
                    ));
                }
                seen[c] = true;
                stack.push((c, d + 1));
            }
        }
    }
    Ok(depth)
}
