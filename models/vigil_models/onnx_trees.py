"""Reading, checking and rewriting ONNX tree ensembles (`ai.onnx.ml` TreeEnsembleClassifier /
TreeEnsembleRegressor), and mapping native node covers onto ONNX node ids.

The ONNX converters renumber nodes (onnxmltools numbers XGBoost nodes in depth-first order, and
LightGBM's split/leaf indices are merged), so covers are never copied by native id: the native tree
and the ONNX tree are walked together from their roots, checking at every node that the feature,
threshold, comparison, missing direction and leaf value agree, and the cover of each native node
is written at the id of the ONNX node it was matched with.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")


def tree_node(model: onnx.ModelProto) -> onnx.NodeProto:
    nodes = [n for n in model.graph.node if n.op_type in TREE_OPS]
    if len(nodes) != 1:
        raise ValueError(f"expected one tree ensemble node, found {len(nodes)}")
    return nodes[0]


def attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode() for x in v]
        out[a.name] = v
    return out


def set_attr(node: onnx.NodeProto, name: str, value) -> None:
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


@dataclass
class ONode:
    mode: str
    feature: int
    value: float
    true: int
    false: int
    missing_true: bool
    weights: dict = field(default_factory=dict)  # class/target id -> weight (leaves)


@dataclass
class OEnsemble:
    kind: str  # classifier | regressor
    trees: dict  # tree id -> {node id -> ONode}
    roots: dict  # tree id -> root node id
    n_outputs: int  # margin columns (distinct class ids / n_targets)
    base_values: list
    post_transform: str


def read_ensemble(model: onnx.ModelProto) -> OEnsemble:
    node = tree_node(model)
    a = attrs(node)
    kind = "classifier" if node.op_type == "TreeEnsembleClassifier" else "regressor"
    n = len(a["nodes_nodeids"])
    mtt = a.get("nodes_missing_value_tracks_true", [0] * n)
    trees: dict = {}
    for i in range(n):
        t, j = a["nodes_treeids"][i], a["nodes_nodeids"][i]
        trees.setdefault(t, {})
        if j in trees[t]:
            raise ValueError(f"tree {t} declares node {j} twice")
        trees[t][j] = ONode(a["nodes_modes"][i], a["nodes_featureids"][i], a["nodes_values"][i],
                            a["nodes_truenodeids"][i], a["nodes_falsenodeids"][i], bool(mtt[i]))
    p = "class_" if kind == "classifier" else "target_"
    for t, j, c, w in zip(a[p + "treeids"], a[p + "nodeids"], a[p + "ids"], a[p + "weights"]):
        leaf = trees[t][j]
        leaf.weights[c] = leaf.weights.get(c, 0.0) + w
    roots = {}
    for t, nodes in trees.items():
        children = {x for nd in nodes.values() if nd.mode != "LEAF" for x in (nd.true, nd.false)}
        r = [j for j in nodes if j not in children]
        if len(r) != 1:
            raise ValueError(f"tree {t} has {len(r)} roots")
        roots[t] = r[0]
    if kind == "classifier":
        n_out = len(set(a["class_ids"]))
    else:
        n_out = a.get("n_targets", 1)
    return OEnsemble(kind, trees, roots, n_out, list(a.get("base_values", [])),
                     a.get("post_transform", "NONE"))


def raw_margin(ens: OEnsemble, X: np.ndarray) -> np.ndarray:
    """The ensemble sum per margin column plus base_values, with ONNX semantics (NaN goes to the
    true child when missing_value_tracks_true, else the comparison is false). A reference
    evaluator for checking margins, independent of onnxruntime."""
    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    out = np.zeros((n, ens.n_outputs), dtype=np.float64)
    ops = {
        "BRANCH_LT": np.less, "BRANCH_LEQ": np.less_equal, "BRANCH_GT": np.greater,
        "BRANCH_GTE": np.greater_equal, "BRANCH_EQ": np.equal, "BRANCH_NEQ": np.not_equal,
    }
    with np.errstate(invalid="ignore"):
        for t, nodes in ens.trees.items():
            ids = sorted(nodes)
            pos = {j: k for k, j in enumerate(ids)}
            leaf = np.array([nodes[j].mode == "LEAF" for j in ids])
            feat = np.array([nodes[j].feature for j in ids])
            thr = np.array([nodes[j].value for j in ids], dtype=np.float32)
            tr = np.array([pos.get(nodes[j].true, 0) for j in ids])
            fa = np.array([pos.get(nodes[j].false, 0) for j in ids])
            mt = np.array([nodes[j].missing_true for j in ids])
            modes = [nodes[j].mode for j in ids]
            cur = np.full(n, pos[ens.roots[t]])
            for _ in range(len(ids) + 1):
                active = ~leaf[cur]
                if not active.any():
                    break
                rows = np.nonzero(active)[0]
                k = cur[rows]
                x = X[rows, feat[k]]
                go = np.zeros(len(rows), dtype=bool)
                for mode in set(modes[q] for q in k):
                    sel = np.array([modes[q] == mode for q in k])
                    go[sel] = ops[mode](x[sel], thr[k[sel]])
                nan = np.isnan(x)
                go[nan] = mt[k[nan]]
                cur[rows] = np.where(go, tr[k], fa[k])
            for c in range(ens.n_outputs):
                w = np.array([nodes[j].weights.get(c, 0.0) for j in ids])
                out[:, c] += w[cur]
    if ens.base_values:
        out += np.asarray(ens.base_values, dtype=np.float64)[None, : ens.n_outputs]
    return out


# ---------------------------------------------------------------------------------------------
# Native trees in one shape: split nodes with the child taken when the ONNX comparison is true
# ---------------------------------------------------------------------------------------------

@dataclass
class NNode:
    cover: float
    leaf: float | None = None  # leaf value (None for a split); None also when unchecked
    is_leaf: bool = False
    feature: int = -1
    threshold: float = 0.0
    true: "NNode | None" = None
    false: "NNode | None" = None
    missing_true: bool = False


def xgboost_trees(booster) -> list[NNode]:
    """XGBoost trees: `x < split` goes to Yes (the ONNX true child); Missing names the child."""
    df = booster.trees_to_dataframe()
    out = []
    for t, g in df.groupby("Tree", sort=True):
        rows = {r.ID: r for r in g.itertuples()}

        def build(nid: str) -> NNode:
            r = rows[nid]
            if r.Feature == "Leaf":
                return NNode(cover=float(r.Cover), leaf=float(r.Gain), is_leaf=True)
            feat = int(r.Feature[1:]) if isinstance(r.Feature, str) and r.Feature.startswith("f") else int(r.Feature)
            return NNode(cover=float(r.Cover), feature=feat, threshold=float(r.Split),
                         true=build(r.Yes), false=build(r.No), missing_true=(r.Missing == r.Yes))

        out.append(build(f"{t}-0"))
    return out


def lightgbm_trees(booster) -> list[NNode]:
    """LightGBM trees from dump_model(): `x <= threshold` goes left (the ONNX true child); covers
    are `internal_count` / `leaf_count`."""
    info = booster.dump_model()["tree_info"]

    def build(d: dict) -> NNode:
        if "leaf_index" in d or "split_index" not in d:
            return NNode(cover=float(d.get("leaf_count", 0)), leaf=float(d["leaf_value"]), is_leaf=True)
        if d["decision_type"] != "<=":
            raise ValueError(f"unsupported LightGBM decision type {d['decision_type']}")
        mtype = d["missing_type"]
        if mtype == "NaN":
            mtrue = bool(d["default_left"])
        elif mtype == "None":  # NaN is treated as 0.0
            mtrue = 0.0 <= d["threshold"]
        else:
            raise ValueError(f"unsupported LightGBM missing type {mtype}")
        return NNode(cover=float(d["internal_count"]), feature=int(d["split_feature"]),
                     threshold=float(d["threshold"]), true=build(d["left_child"]),
                     false=build(d["right_child"]), missing_true=mtrue)

    return [build(t["tree_structure"]) for t in info]


def sklearn_trees(estimators) -> list[NNode]:
    """sklearn trees: `x <= threshold` goes left (the ONNX true child); NaN follows
    `missing_go_to_left`; covers are `weighted_n_node_samples`. Leaf values are not checked here
    (skl2onnx normalises them)."""
    out = []
    for est in estimators:
        tr = est.tree_
        mgl = getattr(tr, "missing_go_to_left", None)

        def build(j: int) -> NNode:
            if tr.children_left[j] == -1:
                return NNode(cover=float(tr.weighted_n_node_samples[j]), is_leaf=True)
            return NNode(cover=float(tr.weighted_n_node_samples[j]), feature=int(tr.feature[j]),
                         threshold=float(tr.threshold[j]), true=build(tr.children_left[j]),
                         false=build(tr.children_right[j]),
                         missing_true=bool(mgl[j]) if mgl is not None else False)

        out.append(build(0))
    return out


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def match_covers(ens: OEnsemble, native: list[NNode], mode: str, leaf_class_of=None,
                 fix_missing: bool = False, check_leaves: bool = True) -> list[list[float]]:
    """Walks each native tree together with ONNX tree `k` (native tree k <-> ONNX tree id k),
    checks that they are the same tree, and returns covers indexed [onnx tree id][onnx node id].

    mode: the ONNX comparison expected at every split (BRANCH_LT for XGBoost, BRANCH_LEQ for
    LightGBM and sklearn). leaf_class_of(k): the ONNX class/target id tree k writes to.
    fix_missing: write the native missing direction into the ONNX nodes instead of checking it
    (skl2onnx drops sklearn's missing-value routing); returns the changes through ens.
    """
    if sorted(ens.trees) != list(range(len(native))):
        raise ValueError(f"ONNX has trees {sorted(ens.trees)[:5]}…, native has {len(native)}")
    covers = []
    for k, root in enumerate(native):
        nodes = ens.trees[k]
        size = max(nodes) + 1
        if size != len(nodes):
            raise ValueError(f"ONNX tree {k}: node ids are not contiguous")
        cov = [None] * size
        cls = leaf_class_of(k) if leaf_class_of else None
        stack = [(root, ens.roots[k])]
        while stack:
            nn, j = stack.pop()
            on = nodes[j]
            if cov[j] is not None:
                raise ValueError(f"tree {k}: ONNX node {j} reached twice")
            cov[j] = nn.cover
            if nn.is_leaf:
                if on.mode != "LEAF":
                    raise ValueError(f"tree {k} node {j}: native leaf, ONNX {on.mode}")
                if check_leaves and nn.leaf is not None and cls is not None:
                    got = on.weights.get(cls, 0.0)
                    if not _close(float(np.float32(nn.leaf)), got, 1e-5):
                        raise ValueError(f"tree {k} node {j}: leaf {nn.leaf} vs ONNX {got}")
                continue
            if on.mode != mode:
                raise ValueError(f"tree {k} node {j}: expected {mode}, ONNX has {on.mode}")
            if on.feature != nn.feature:
                raise ValueError(f"tree {k} node {j}: feature {nn.feature} vs ONNX {on.feature}")
            if not _close(float(np.float32(nn.threshold)), on.value):
                raise ValueError(f"tree {k} node {j}: threshold {nn.threshold} vs ONNX {on.value}")
            if fix_missing:
                on.missing_true = nn.missing_true
            elif on.missing_true != nn.missing_true:
                raise ValueError(f"tree {k} node {j}: missing direction differs")
            stack.append((nn.true, on.true))
            stack.append((nn.false, on.false))
        if any(c is None for c in cov):
            raise ValueError(f"tree {k}: ONNX nodes not reached from the root")
        covers.append(cov)
    return covers


def write_missing_tracks(model: onnx.ModelProto, ens: OEnsemble) -> None:
    """Writes ens' missing directions into the model's nodes_missing_value_tracks_true."""
    node = tree_node(model)
    a = attrs(node)
    vals = [int(ens.trees[t][j].missing_true) for t, j in zip(a["nodes_treeids"], a["nodes_nodeids"])]
    set_attr(node, "nodes_missing_value_tracks_true", vals)


def check_covers_consistent(covers: list[list[float]], ens: OEnsemble, rel: float = 1e-3) -> None:
    """cover(parent) == cover(true) + cover(false) at every split."""
    for k, cov in enumerate(covers):
        for j, nd in ens.trees[k].items():
            if nd.mode == "LEAF":
                continue
            s = cov[nd.true] + cov[nd.false]
            if abs(cov[j] - s) > rel * max(1.0, cov[j]):
                raise ValueError(f"tree {k} node {j}: cover {cov[j]} != children {s}")


def rewrite_to_gte(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every BRANCH_LT split `x < t ? A : B` becomes `x >= t ? B : A` (BRANCH_LEQ becomes
    BRANCH_GT) with missing_value_tracks_true flipped, so NaN still reaches the same child."""
    m = copy.deepcopy(model)
    node = tree_node(m)
    a = attrs(node)
    flip = {"BRANCH_LT": "BRANCH_GTE", "BRANCH_LEQ": "BRANCH_GT"}
    n = len(a["nodes_modes"])
    mtt = list(a.get("nodes_missing_value_tracks_true", [0] * n))
    modes, tru, fal = list(a["nodes_modes"]), list(a["nodes_truenodeids"]), list(a["nodes_falsenodeids"])
    for i in range(n):
        if modes[i] == "LEAF":
            continue
        if modes[i] not in flip:
            raise ValueError(f"cannot flip {modes[i]}")
        modes[i] = flip[modes[i]]
        tru[i], fal[i] = fal[i], tru[i]
        mtt[i] = 0 if mtt[i] else 1
    set_attr(node, "nodes_modes", modes)
    set_attr(node, "nodes_truenodeids", tru)
    set_attr(node, "nodes_falsenodeids", fal)
    set_attr(node, "nodes_missing_value_tracks_true", mtt)
    return m


def apply_post(margin: np.ndarray, post: str, binary_single: bool) -> np.ndarray:
    """ONNX post_transform on raw margins, returning the probabilities output (for checks)."""
    if post == "LOGISTIC":
        p = 1.0 / (1.0 + np.exp(-margin))
    elif post == "SOFTMAX":
        e = np.exp(margin - margin.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
    elif post == "NONE":
        p = margin
    else:
        raise ValueError(post)
    if binary_single:
        p = np.concatenate([1.0 - p, p], axis=1)
    return p
