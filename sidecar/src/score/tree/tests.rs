//! Hand-built ensembles: every mode, missing tracking, the binary special cases, and the
//! compiled forest against the exact evaluator on random forests.

use tract_onnx::pb::{AttributeProto, GraphProto, ModelProto, NodeProto, ValueInfoProto};

use super::*;

pub(crate) fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: 7,
        ..Default::default()
    }
}
pub(crate) fn floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        floats: v.to_vec(),
        r#type: 6,
        ..Default::default()
    }
}
pub(crate) fn strings(name: &str, v: &[&str]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        r#type: 8,
        ..Default::default()
    }
}
pub(crate) fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: v.as_bytes().to_vec(),
        r#type: 3,
        ..Default::default()
    }
}
pub(crate) fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: v,
        r#type: 2,
        ..Default::default()
    }
}

/// Node lists of an ensemble under construction.
#[derive(Default, Clone)]
pub(crate) struct Builder {
    pub tree: Vec<i64>,
    pub id: Vec<i64>,
    pub feat: Vec<i64>,
    pub mode: Vec<&'static str>,
    pub value: Vec<f32>,
    pub t: Vec<i64>,
    pub f: Vec<i64>,
    pub miss: Vec<i64>,
    pub w_tree: Vec<i64>,
    pub w_node: Vec<i64>,
    pub w_col: Vec<i64>,
    pub w_val: Vec<f32>,
}

impl Builder {
    #[allow(clippy::too_many_arguments)]
    pub fn branch(
        &mut self,
        tree: i64,
        id: i64,
        feat: i64,
        mode: &'static str,
        v: f32,
        t: i64,
        f: i64,
        miss: bool,
    ) {
        self.tree.push(tree);
        self.id.push(id);
        self.feat.push(feat);
        self.mode.push(mode);
        self.value.push(v);
        self.t.push(t);
        self.f.push(f);
        self.miss.push(i64::from(miss));
    }
    pub fn leaf(&mut self, tree: i64, id: i64, weights: &[(i64, f32)]) {
        self.branch(tree, id, 0, "LEAF", 0.0, 0, 0, false);
        for &(c, w) in weights {
            self.w_tree.push(tree);
            self.w_node.push(id);
            self.w_col.push(c);
            self.w_val.push(w);
        }
    }
    fn common(&self, prefix: &str) -> Vec<AttributeProto> {
        vec![
            ints("nodes_treeids", &self.tree),
            ints("nodes_nodeids", &self.id),
            ints("nodes_featureids", &self.feat),
            strings("nodes_modes", &self.mode),
            floats("nodes_values", &self.value),
            ints("nodes_truenodeids", &self.t),
            ints("nodes_falsenodeids", &self.f),
            ints("nodes_missing_value_tracks_true", &self.miss),
            ints(&format!("{prefix}_treeids"), &self.w_tree),
            ints(&format!("{prefix}_nodeids"), &self.w_node),
            ints(&format!("{prefix}_ids"), &self.w_col),
            floats(&format!("{prefix}_weights"), &self.w_val),
        ]
    }
    pub fn regressor(&self, n_targets: i64, extra: Vec<AttributeProto>) -> NodeProto {
        let mut attribute = self.common("target");
        attribute.push(int("n_targets", n_targets));
        attribute.extend(extra);
        NodeProto {
            op_type: "TreeEnsembleRegressor".into(),
            domain: "ai.onnx.ml".into(),
            input: vec!["X".into()],
            output: vec!["variable".into()],
            attribute,
            ..Default::default()
        }
    }
    pub fn classifier(&self, labels: &[i64], extra: Vec<AttributeProto>) -> NodeProto {
        let mut attribute = self.common("class");
        attribute.push(ints("classlabels_int64s", labels));
        attribute.extend(extra);
        NodeProto {
            op_type: "TreeEnsembleClassifier".into(),
            domain: "ai.onnx.ml".into(),
            input: vec!["X".into()],
            output: vec!["label".into(), "probabilities".into()],
            attribute,
            ..Default::default()
        }
    }
}

pub(crate) fn model(nodes: Vec<NodeProto>, n_features: i64) -> ModelProto {
    use tract_onnx::pb::{
        tensor_shape_proto::dimension::Value as Dim, tensor_shape_proto::Dimension, type_proto,
    };
    let dim = |v: Option<i64>| Dimension {
        value: Some(match v {
            Some(v) => Dim::DimValue(v),
            None => Dim::DimParam("N".into()),
        }),
        ..Default::default()
    };
    let input = ValueInfoProto {
        name: "X".into(),
        r#type: Some(tract_onnx::pb::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: Some(tract_onnx::pb::TensorShapeProto {
                    dim: vec![dim(None), dim(Some(n_features))],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    ModelProto {
        graph: Some(GraphProto {
            node: nodes,
            input: vec![input],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One split on feature 0 at 0.5: true leaf 1.0, false leaf 2.0.
fn stump(mode: &'static str, miss: bool) -> TreeEnsemble {
    let mut b = Builder::default();
    b.branch(0, 0, 0, mode, 0.5, 1, 2, miss);
    b.leaf(0, 1, &[(0, 1.0)]);
    b.leaf(0, 2, &[(0, 2.0)]);
    TreeEnsemble::from_node(&b.regressor(1, vec![])).unwrap()
}

fn eval(e: &TreeEnsemble, x: f32) -> f32 {
    let mut out = [0.0f32];
    e.predict(&[x], 1, 1, &mut out, None);
    out[0]
}

#[test]
fn every_mode_and_missing_tracking() {
    type Case = (&'static str, fn(f32) -> bool);
    let cases: [Case; 6] = [
        ("BRANCH_LEQ", |x| x <= 0.5),
        ("BRANCH_LT", |x| x < 0.5),
        ("BRANCH_GTE", |x| x >= 0.5),
        ("BRANCH_GT", |x| x > 0.5),
        ("BRANCH_EQ", |x| x == 0.5),
        ("BRANCH_NEQ", |x| x != 0.5),
    ];
    for (mode, cmp) in cases {
        for miss in [false, true] {
            let e = stump(mode, miss);
            assert_eq!(
                e.is_compiled(),
                !matches!(mode, "BRANCH_EQ" | "BRANCH_NEQ"),
                "{mode}"
            );
            for x in [0.4f32, 0.5, 0.6, f32::NAN] {
                let goes_true = cmp(x) || (miss && x.is_nan());
                let want = if goes_true { 1.0 } else { 2.0 };
                assert_eq!(eval(&e, x), want, "{mode} miss={miss} x={x}");
            }
        }
    }
}

#[test]
fn xgboost_binary_one_column_gives_two_probabilities() {
    let mut b = Builder::default();
    b.branch(0, 0, 0, "BRANCH_LT", 0.5, 1, 2, true);
    b.leaf(0, 1, &[(0, -0.4)]);
    b.leaf(0, 2, &[(0, 0.7)]);
    for bv in [vec![0.25f32], vec![0.25, 0.25]] {
        let node = b.classifier(
            &[0, 1],
            vec![
                floats("base_values", &bv),
                string("post_transform", "LOGISTIC"),
            ],
        );
        let e = TreeEnsemble::from_node(&node).unwrap();
        assert_eq!(e.n_margins(), 1);
        let mut out = [0.0f32; 2];
        let mut label = [0.0f32];
        e.predict(&[0.9], 1, 1, &mut out, Some(&mut label));
        let mut margin = [0.0f32];
        e.margins(&[0.9], 1, 1, &mut margin);
        assert!((margin[0] - 0.95).abs() < 1e-6);
        if bv.len() == 1 {
            let p = 1.0 / (1.0 + (-0.95f32).exp());
            assert!(
                (out[1] - p).abs() < 1e-6 && (out[0] - (1.0 - p)).abs() < 1e-6,
                "{out:?}"
            );
            assert_eq!(label[0], 1.0);
        } else {
            // onnxruntime reads two base values with one weight column as "binary as
            // multiclass": column 1 never got a score, so it is logistic(0).
            let p = 1.0 / (1.0 + (-0.95f32).exp());
            assert!(
                (out[0] - p).abs() < 1e-6 && (out[1] - 0.5).abs() < 1e-6,
                "{out:?}"
            );
        }
    }
}

#[test]
fn random_forest_binary_probabilities_are_complemented() {
    let mut b = Builder::default();
    b.branch(0, 0, 0, "BRANCH_LEQ", 0.5, 1, 2, false);
    b.leaf(0, 1, &[(0, 0.2)]);
    b.leaf(0, 2, &[(0, 0.9)]);
    let e = TreeEnsemble::from_node(&b.classifier(&[0, 1], vec![])).unwrap();
    let mut out = [0.0f32; 2];
    let mut label = [0.0f32];
    e.predict(&[0.1], 1, 1, &mut out, Some(&mut label));
    assert_eq!(out, [0.8, 0.2]);
    assert_eq!(label[0], 0.0);
    e.predict(&[0.7], 1, 1, &mut out, Some(&mut label));
    assert!((out[0] - 0.1).abs() < 1e-7 && out[1] == 0.9);
    assert_eq!(label[0], 1.0);
}

#[test]
fn multiclass_softmax_adds_base_values() {
    let mut b = Builder::default();
    for t in 0..3 {
        b.branch(t, 0, 0, "BRANCH_LT", 0.5, 1, 2, false);
        b.leaf(t, 1, &[(t, 0.1 * t as f32)]);
        b.leaf(t, 2, &[(t, -0.2)]);
    }
    let node = b.classifier(
        &[3, 4, 5],
        vec![
            floats("base_values", &[0.5, 0.5, 0.5]),
            string("post_transform", "SOFTMAX"),
        ],
    );
    let e = TreeEnsemble::from_node(&node).unwrap();
    assert!(e.is_compiled());
    let mut out = [0.0f32; 3];
    let mut label = [0.0f32];
    e.predict(&[0.0], 1, 1, &mut out, Some(&mut label));
    let m = [0.5f32, 0.6, 0.7];
    let s: f32 = m.iter().map(|v| v.exp()).sum();
    for k in 0..3 {
        assert!((out[k] - m[k].exp() / s).abs() < 1e-6);
    }
    assert_eq!(label[0], 5.0);
    let mut margins = [0.0f32; 3];
    e.margins(&[0.0], 1, 1, &mut margins);
    assert_eq!(margins, m);
}

#[test]
fn regressor_aggregates() {
    let mut b = Builder::default();
    for (t, (l, r)) in [(1.0f32, 4.0f32), (3.0, -2.0)].into_iter().enumerate() {
        b.branch(t as i64, 0, 0, "BRANCH_LEQ", 0.5, 1, 2, false);
        b.leaf(t as i64, 1, &[(0, l)]);
        b.leaf(t as i64, 2, &[(0, r)]);
    }
    for (agg, want) in [
        ("SUM", 4.0 + 10.0),
        ("AVERAGE", 2.0 + 10.0),
        ("MIN", 1.0 + 10.0),
        ("MAX", 3.0 + 10.0),
    ] {
        let node = b.regressor(
            1,
            vec![
                string("aggregate_function", agg),
                floats("base_values", &[10.0]),
            ],
        );
        let e = TreeEnsemble::from_node(&node).unwrap();
        assert_eq!(eval(&e, 0.0), want, "{agg}");
    }
}

#[test]
fn malformed_models_are_errors_not_panics() {
    let mut b = Builder::default();
    b.branch(0, 0, 0, "BRANCH_LEQ", 0.5, 1, 7, false);
    b.leaf(0, 1, &[(0, 1.0)]);
    let err = TreeEnsemble::from_node(&b.regressor(1, vec![])).unwrap_err();
    assert!(
        err.to_string().contains("false child 7 does not exist"),
        "{err}"
    );

    let mut b = Builder::default();
    b.branch(0, 0, 0, "BRANCH_LEQ", 0.5, 1, 2, false);
    b.branch(0, 1, 0, "BRANCH_LEQ", 0.5, 0, 2, false);
    b.leaf(0, 2, &[(0, 1.0)]);
    let err = TreeEnsemble::from_node(&b.regressor(1, vec![])).unwrap_err();
    assert!(err.to_string().contains("reached twice"), "{err}");

    let mut b = Builder::default();
    b.branch(0, 0, 0, "BRANCH_LEQ", 0.5, 1, 2, false);
    b.leaf(0, 1, &[(0, 1.0)]);
    b.leaf(0, 2, &[]);
    let err = TreeEnsemble::from_node(&b.regressor(1, vec![])).unwrap_err();
    assert!(err.to_string().contains("leaf has no weight"), "{err}");

    let mut b = Builder::default();
    b.branch(0, 0, 0, "BRANCH_FOO", 0.5, 1, 2, false);
    b.leaf(0, 1, &[(0, 1.0)]);
    b.leaf(0, 2, &[(0, 1.0)]);
    assert!(TreeEnsemble::from_node(&b.regressor(1, vec![])).is_err());
}

/// A small deterministic generator (no rand dependency in the library tests).
pub(crate) struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub fn unit(&mut self) -> f32 {
        (self.next() % 1000) as f32 / 1000.0
    }
}

/// A random forest over `f` features; modes drawn from `modes`.
pub(crate) fn random_forest(
    rng: &mut Lcg,
    trees: i64,
    depth: u32,
    f: i64,
    cols: i64,
    modes: &[&'static str],
) -> Builder {
    let mut b = Builder::default();
    for t in 0..trees {
        let mut next_id = 0i64;
        // (id, depth)
        let mut stack = vec![(0i64, 0u32)];
        next_id += 1;
        while let Some((id, d)) = stack.pop() {
            if d >= depth || (d > 1 && rng.next().is_multiple_of(4)) {
                let ws: Vec<(i64, f32)> = (0..cols).map(|c| (c, rng.unit() * 2.0 - 1.0)).collect();
                b.leaf(t, id, &ws);
            } else {
                let (l, r) = (next_id, next_id + 1);
                next_id += 2;
                let mode = modes[(rng.next() % modes.len() as u64) as usize];
                let feat = (rng.next() % f as u64) as i64;
                let thr = [0.25f32, 0.5, 0.75][(rng.next() % 3) as usize];
                b.branch(t, id, feat, mode, thr, l, r, rng.next().is_multiple_of(2));
                stack.push((l, d + 1));
                stack.push((r, d + 1));
            }
        }
    }
    b
}

pub(crate) fn random_rows(rng: &mut Lcg, n: usize, f: usize) -> Vec<f32> {
    (0..n * f)
        .map(|_| match rng.next() % 8 {
            0 => f32::NAN,
            1 => 0.5,
            2 => 0.25,
            _ => rng.unit(),
        })
        .collect()
}

#[test]
fn compiled_forest_matches_exact_evaluator() {
    let mut rng = Lcg(7);
    for (cols, labels) in [(1, vec![0, 1]), (3, vec![0, 1, 2])] {
        let b = random_forest(
            &mut rng,
            40,
            6,
            5,
            cols,
            &["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT"],
        );
        let node = b.classifier(&labels, vec![string("post_transform", "LOGISTIC")]);
        let e = TreeEnsemble::from_node(&node).unwrap();
        assert!(e.is_compiled());
        for n in [1usize, 3, 8, 13, 100] {
            let rows = random_rows(&mut rng, n, 5);
            let c = e.n_outputs();
            let mut fast = vec![0.0f32; n * c];
            e.predict(&rows, n, 5, &mut fast, None);
            let mut acc = e.new_row_acc();
            for r in 0..n {
                e.accumulate_exact(&rows[r * 5..(r + 1) * 5], &mut acc);
                let mut want = vec![0.0f32; c];
                e.finalize(&mut acc.score, &mut acc.has, &mut want);
                assert_eq!(
                    &fast[r * c..(r + 1) * c],
                    &want[..],
                    "cols={cols} n={n} row {r}"
                );
            }
        }
    }
}

#[test]
fn graph_runs_nodes_around_the_tree() {
    let mut b = Builder::default();
    b.branch(0, 0, 1, "BRANCH_LEQ", 0.5, 1, 2, false);
    b.leaf(0, 1, &[(0, 1.0)]);
    b.leaf(0, 2, &[(0, 3.0)]);
    let mut tree = b.regressor(1, vec![]);
    tree.input = vec!["imputed".into()];
    let imputer = NodeProto {
        op_type: "Imputer".into(),
        domain: "ai.onnx.ml".into(),
        input: vec!["X".into()],
        output: vec!["imputed".into()],
        attribute: vec![
            floats("imputed_value_floats", &[0.0, 0.9]),
            AttributeProto {
                name: "replaced_value_float".into(),
                f: f32::NAN,
                r#type: 1,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let sig = NodeProto {
        op_type: "Sigmoid".into(),
        input: vec!["variable".into()],
        output: vec!["p".into()],
        ..Default::default()
    };
    let m = model(vec![imputer, tree, sig], 2);
    assert!(TreeGraph::is_tree_graph(&m));
    let g = TreeGraph::from_onnx(&m, "p").unwrap();
    assert_eq!((g.n_features(), g.n_outputs(), g.n_margins()), (2, 1, 1));
    let rows = [0.0, 0.2, 0.0, f32::NAN];
    let mut out = [0.0f32; 2];
    g.predict(&rows, 2, &mut out);
    let s = |v: f32| 1.0 / (1.0 + (-v).exp());
    assert_eq!(out, [s(1.0), s(3.0)]);
    let mut margins = [0.0f32; 2];
    g.margins(&rows, 2, &mut margins);
    assert_eq!(margins, [1.0, 3.0]);
    assert!(TreeGraph::from_onnx(&m, "nope").is_err());
}

#[test]
fn double_thresholds_compare_exactly() {
    // 0.1 is not an f32: 0.1f32 is slightly above it, so `x <= 0.1` is false for x = 0.1f32
    // when the threshold is the f64 0.1, and true when it is the f32 0.1.
    let mut b = Builder::default();
    b.branch(0, 0, 0, "BRANCH_LEQ", 0.0, 1, 2, false);
    b.leaf(0, 1, &[(0, 1.0)]);
    b.leaf(0, 2, &[(0, 2.0)]);
    let tensor = |name: &str, v: Vec<f64>| AttributeProto {
        name: name.into(),
        r#type: 4,
        t: Some(tract_onnx::pb::TensorProto {
            dims: vec![v.len() as i64],
            data_type: 11,
            double_data: v,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut node = b.regressor(1, vec![]);
    node.attribute
        .retain(|a| a.name != "nodes_values" && a.name != "target_weights");
    node.attribute
        .push(tensor("nodes_values_as_tensor", vec![0.1, 0.0, 0.0]));
    node.attribute
        .push(tensor("target_weights_as_tensor", vec![1.0, 2.0]));
    let e = TreeEnsemble::from_node(&node).unwrap();
    assert!(e.double_precision && e.is_compiled());
    assert_eq!(eval(&e, 0.1f32), 2.0);
    assert_eq!(eval(&e, 0.099_999_99), 1.0);
    let mut rows = vec![0.1f32; 9];
    rows[3] = 0.05;
    let mut out = vec![0.0f32; 9];
    e.predict(&rows, 9, 1, &mut out, None);
    assert_eq!(out, [2.0, 2.0, 2.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]);
}

#[test]
fn unrequested_zipmap_is_ignored_and_requested_zipmap_is_refused() {
    let mut b = Builder::default();
    b.branch(0, 0, 0, "BRANCH_LEQ", 0.5, 1, 2, false);
    b.leaf(0, 1, &[(0, 0.2)]);
    b.leaf(0, 2, &[(0, 0.9)]);
    let zipmap = NodeProto {
        op_type: "ZipMap".into(),
        domain: "ai.onnx.ml".into(),
        input: vec!["probabilities".into()],
        output: vec!["output_probability".into()],
        ..Default::default()
    };
    let m = model(vec![b.classifier(&[0, 1], vec![]), zipmap], 1);
    let g = TreeGraph::from_onnx(&m, "probabilities").unwrap();
    assert_eq!(g.n_outputs(), 2);
    let err = TreeGraph::from_onnx(&m, "output_probability").unwrap_err();
    assert!(err.to_string().contains("ZipMap"), "{err}");
}
