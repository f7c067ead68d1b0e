"""Writes the test bundles the sidecar's parity tests read (`sidecar/tests/bundles/<name>/`).

    cd models && ../.venv/bin/python -m vigil_models.export_test_bundles   # --out ../sidecar/tests/bundles

Deterministic (fixed seeds, single-threaded native predictions); re-running gives the same files.
Synthetic data: 32 numeric features f0..f31 read from `{"features": {"f0": …}}`; about 40% of
the golden rows (bench_xgb: exactly 415 of 1,000) have some features missing (absent from the
document, NaN in the model input). Before writing, every bundle is checked:

- onnxruntime's output vs the native library's predict_proba / predict (max |diff| <= 1e-5);
- tree models: the ONNX trees are walked together with the native trees (feature, threshold,
  comparison, missing direction, leaf value) to place covers on ONNX node ids, and the ONNX
  margin computed by a reference evaluator (`onnx_trees.raw_margin`) equals the native margin;
- XGBoost / LightGBM: local accuracy, sum(contributions) == native margin;
- the Python feature extraction of each golden document equals the model input row.

Bundles: xgb_binary, lgbm_binary, rf_binary, logreg_binary, mlp_binary, xgb_multiclass,
xgb_regressor, rf_regressor, gte_binary, bench_xgb. See the README.md written next to them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import onnx_trees as ot
from .bundle import check_features, generated_by, golden_rows, run, write_bundle
from .xgb_bundle import xgb_contribs, xgb_covers, xgb_to_onnx

F = 32
NAMES = [f"f{j}" for j in range(F)]
SCRIPT = "models/vigil_models/export_test_bundles.py"
TOL = 1e-5
INT_FEATURES = set(range(24, 32))  # counts and flags: integers in the documents


# ---------------------------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------------------------

def features_raw(n: int, rng: np.random.Generator) -> np.ndarray:
    X = np.empty((n, F))
    X[:, :16] = rng.normal(size=(n, 16))
    X[:, 16:24] = rng.uniform(0.0, 10.0, size=(n, 8))
    X[:, 24:28] = rng.poisson(3.0, size=(n, 4))
    X[:, 28:32] = rng.integers(0, 2, size=(n, 4))
    return np.round(X, 4).astype(np.float32).astype(np.float64)


def latent(X: np.ndarray) -> np.ndarray:
    x = X
    return (1.2 * x[:, 0] - 0.8 * x[:, 1] + x[:, 2] * x[:, 3] + 0.6 * np.sin(2 * x[:, 4])
            + 0.3 * (x[:, 16] - 5) - 0.5 * (x[:, 24] > 4) + 0.8 * x[:, 28] * x[:, 5]
            + 0.4 * x[:, 6] ** 2 - 0.7 + 0.5 * np.tanh(x[:, 7] * x[:, 8]) - 0.2 * x[:, 17] * x[:, 29])


def latent_bench(X: np.ndarray) -> np.ndarray:
    """Many interactions so that depth-6 trees keep splitting."""
    z = latent(X)
    for a in range(8, 16):
        b = (a + 5) % 16
        z = z + 0.35 * np.sin(X[:, a] * 1.7) * X[:, b] + 0.15 * (X[:, 16 + a % 8] - 5) * X[:, a]
    return z


def inject_nan(X: np.ndarray, rng: np.random.Generator, frac: float | None = None,
               count: int | None = None) -> np.ndarray:
    """NaN in 1-4 random features of a fraction (or an exact count) of the rows."""
    X = X.astype(np.float32).copy()
    n = len(X)
    if count is None:
        rows = np.nonzero(rng.random(n) < frac)[0]
    else:
        rows = np.sort(rng.choice(n, size=count, replace=False))
    for i in rows:
        k = int(rng.integers(1, 5))
        X[i, rng.choice(F, size=k, replace=False)] = np.nan
    return X


def make_binary(n: int, seed: int, nan_frac: float, bench: bool = False, nan_count=None):
    rng = np.random.default_rng(seed)
    X = features_raw(n, rng)
    z = latent_bench(X) if bench else latent(X)
    y = (rng.random(n) < 1 / (1 + np.exp(-2.0 * z))).astype(np.int64)
    return inject_nan(X, rng, nan_frac, nan_count), y


def make_multiclass(n: int, seed: int, nan_frac: float):
    rng = np.random.default_rng(seed)
    X = features_raw(n, rng)
    logits = np.stack([latent(X), X[:, 9] - X[:, 10] + 0.3 * (X[:, 18] - 5),
                       0.5 * X[:, 11] * X[:, 12] + 0.2 * X[:, 25]], axis=1) * 1.5
    g = rng.gumbel(size=logits.shape)
    y = np.argmax(logits + g, axis=1).astype(np.int64)
    return inject_nan(X, rng, nan_frac), y


def make_regression(n: int, seed: int, nan_frac: float):
    rng = np.random.default_rng(seed)
    X = features_raw(n, rng)
    y = latent(X) + 0.3 * rng.normal(size=n)
    return inject_nan(X, rng, nan_frac), y.astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------

def doc_value(v: np.float32, j: int, exact: bool = False):
    if j in INT_FEATURES and float(v).is_integer():
        return int(v)
    # str(np.float32) is the shortest text that reads back as the same float32; for values set
    # to split thresholds use the full double of the float32 so the text is exact.
    return float(v) if exact else float(str(np.float32(v)))


def documents(X: np.ndarray, seed: int, exact_rows: set[int] = frozenset()) -> list[dict]:
    """One document per row. Most are `{"features": {...}}`; a few use flattened keys
    (`"features.f3"`), numeric strings or one-element arrays, as Elasticsearch documents may."""
    rng = np.random.default_rng(seed)
    docs = []
    for i, row in enumerate(X):
        r = rng.random()
        vals = {NAMES[j]: doc_value(row[j], j, i in exact_rows) for j in range(F) if not np.isnan(row[j])}
        if r < 0.05:
            doc = {f"features.{k}": v for k, v in vals.items()}
        elif r < 0.10:
            doc = {"features": {k: (str(v) if j % 3 == 0 else v)
                                for j, (k, v) in enumerate(vals.items())}}
        elif r < 0.13:
            doc = {"features": {k: ([v] if j % 4 == 1 else v) for j, (k, v) in enumerate(vals.items())}}
        elif r < 0.16:
            items = list(vals.items())
            half = len(items) // 2
            doc = {"features": dict(items[:half]), **{f"features.{k}": v for k, v in items[half:]}}
        else:
            doc = {"features": vals}
        docs.append(doc)
    return docs


def feature_specs(missing=None) -> list[dict]:
    return [{"name": n, "source": f"features.{n}", "transform": {"kind": "numeric"},
             "missing": missing} for n in NAMES]


def edge_rows(model, X: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Rows whose features sit exactly on split thresholds of the ONNX trees (strict vs non-strict
    comparisons must agree)."""
    ens = ot.read_ensemble(model)
    rng = np.random.default_rng(seed)
    thr = {}
    for nodes in ens.trees.values():
        for nd in nodes.values():
            if nd.mode != "LEAF":
                thr.setdefault(nd.feature, []).append(np.float32(nd.value))
    out = X[:n].copy()
    for i in range(n):
        for j in rng.choice(sorted(thr), size=min(8, len(thr)), replace=False):
            out[i, j] = thr[j][int(rng.integers(len(thr[j])))]
    return out


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------

class Report:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, name: str, **kw):
        kw = {"bundle": name, **kw}
        self.rows.append(kw)
        print("  " + ", ".join(f"{k}={_fmt(v)}" for k, v in kw.items()), flush=True)


def _fmt(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def require(cond: bool, what: str):
    if not cond:
        raise AssertionError(what)


def manifest_base(name: str, task: str, output: str, classes=None, positive=None,
                  description: str = "", missing=None) -> dict:
    m = {
        "name": name,
        "version": "1.0.0",
        "description": description,
        "task": task,
        "model": {"file": "model.onnx", "sha256": "", "output": output},
    }
    if classes:
        m["classes"] = classes
    if positive:
        m["positive_class"] = positive
        m["threshold"] = 0.5
    m["explanation"] = {"method": "auto", "top_k": 5, "min_score": 0.0, "budget": 16}
    m["features"] = feature_specs(missing)
    m["reference_sample"] = "reference.json"
    m["golden"] = {"file": "golden.json", "tolerance": TOL}
    return m


BIN = ["negative", "positive"]


def onnx_margin_check(model, X, native_margin, ens=None):
    ens = ens or ot.read_ensemble(model)
    m = ot.raw_margin(ens, X)
    d = float(np.abs(m - np.asarray(native_margin, dtype=np.float64).reshape(len(X), -1)).max())
    return m, d


def finish(report, name, out, manifest, model, Xtr, Xg, docs, scores, native_scores,
           margin=None, onnx_margin_diff=None, contrib=None, covers=None, libs=(), extra=None):
    diff = float(np.abs(scores - native_scores).max())
    require(diff <= TOL, f"{name}: onnxruntime vs native {diff}")
    missing_rows = sum(1 for d in docs if _n_present(d) < F) if docs else int(np.isnan(Xg).any(axis=1).sum())
    info = {"rows": len(Xg), "rows_with_nan": missing_rows,
            "ort_vs_native": diff}
    if onnx_margin_diff is not None:
        require(onnx_margin_diff <= 1e-4, f"{name}: ONNX margin vs native margin {onnx_margin_diff}")
        info["onnx_margin_vs_native"] = onnx_margin_diff
    if contrib is not None:
        la = float(np.abs(contrib.sum(axis=2) - margin.reshape(len(Xg), -1)).max())
        require(la <= 1e-4, f"{name}: local accuracy {la}")
        info["local_accuracy"] = la
    info.update(extra or {})
    bdir = out / name
    bdir.mkdir(parents=True, exist_ok=True)
    check_features(manifest["features"], bdir, docs, Xg)
    rng = np.random.default_rng(7)
    ref = Xtr[np.sort(rng.choice(len(Xtr), size=min(200, len(Xtr)), replace=False))]
    gold = golden_rows(docs, Xg, scores, margin, contrib)
    write_bundle(bdir, manifest, model, ref, gold, generated_by(SCRIPT, libs),
                 covers=covers)
    info["size_kb"] = round(sum(p.stat().st_size for p in bdir.iterdir()) / 1024)
    report.add(name, **info)


# ---------------------------------------------------------------------------------------------
# Bundles
# ---------------------------------------------------------------------------------------------

def _xgb_onnx(model):
    return xgb_to_onnx(model, F)


def bundle_xgb_binary(out, report, name="xgb_binary", n_trees=40, depth=5, seed=11,
                      n_train=4000, n_gold=160, bench=False, nan_count=None, edge=20, gte=False):
    import xgboost as xgb

    Xtr, ytr = make_binary(n_train, seed, 0.3, bench=bench)
    Xg, _ = make_binary(n_gold, seed + 1000, 0.4, bench=bench, nan_count=nan_count)
    model = xgb.XGBClassifier(n_estimators=n_trees, max_depth=depth, learning_rate=0.1 if bench else 0.2,
                              n_jobs=2, random_state=seed, tree_method="hist", min_child_weight=1.0)
    model.fit(Xtr, ytr)
    onx = _xgb_onnx(model)
    extra = {}
    exact = set()
    if edge:
        Xe = edge_rows(onx, Xg, edge, seed)
        exact = set(range(len(Xg), len(Xg) + edge))
        Xg = np.concatenate([Xg, Xe])
        extra["threshold_rows"] = edge
    ens = ot.read_ensemble(onx)
    covers = xgb_covers(model, onx, ens=ens)
    if gte:
        orig = onx
        onx = ot.rewrite_to_gte(orig)
        a = run(orig, Xg, "probabilities")
        b = run(onx, Xg, "probabilities")
        extra["gte_vs_lt_ort"] = float(np.abs(a - b).max())
        require(extra["gte_vs_lt_ort"] == 0.0, "GTE rewrite changed the outputs")
        modes = {nd.mode for t in ot.read_ensemble(onx).trees.values() for nd in t.values()}
        require(modes == {"BRANCH_GTE", "LEAF"}, f"modes after rewrite {modes}")
        ens = ot.read_ensemble(onx)
    scores = run(onx, Xg, "probabilities")
    native = model.predict_proba(Xg)
    margin, contrib = xgb_contribs(model, Xg)
    _, md = onnx_margin_check(onx, Xg, margin, ens)
    if bench:
        depths = [_depth(t) for t in ot.xgboost_trees(model.get_booster())]
        leaves = [sum(1 for nd in t.values() if nd.mode == "LEAF") for t in ens.trees.values()]
        extra.update(mean_leaves=float(np.mean(leaves)), max_depth=max(depths),
                     nodes=sum(len(t) for t in ens.trees.values()))
    desc = {"xgb_binary": "Test bundle: XGBoost binary classifier (onnxmltools), synthetic data.",
            "gte_binary": "Test bundle: XGBoost binary classifier whose ONNX splits were rewritten from "
                          "BRANCH_LT to BRANCH_GTE with children swapped and missing tracking flipped "
                          "(same function).",
            "bench_xgb": "Benchmark bundle: XGBoost binary classifier, 300 trees of depth 6, synthetic data."}[name]
    m = manifest_base(name, "binary", "probabilities", BIN, "positive", desc)
    docs = documents(Xg, seed + 2000, exact)
    finish(report, name, out, m, onx, Xtr, Xg, docs, scores, native, margin, md, contrib,
           covers, libs=("xgboost", "onnxmltools"), extra=extra)


def _n_present(doc: dict) -> int:
    inner = doc.get("features", {})
    return len(inner) + sum(1 for k in doc if k.startswith("features."))


def _depth(n) -> int:
    return 0 if n.is_leaf else 1 + max(_depth(n.true), _depth(n.false))


def bundle_xgb_multiclass(out, report):
    import xgboost as xgb

    seed = 21
    Xtr, ytr = make_multiclass(4000, seed, 0.3)
    Xg, _ = make_multiclass(150, seed + 1000, 0.4)
    model = xgb.XGBClassifier(n_estimators=15, max_depth=4, learning_rate=0.3, n_jobs=2,
                              random_state=seed, tree_method="hist", objective="multi:softprob")
    model.fit(Xtr, ytr)
    onx = _xgb_onnx(model)
    ens = ot.read_ensemble(onx)
    covers = xgb_covers(model, onx, n_classes=3, ens=ens)
    scores = run(onx, Xg, "probabilities")
    margin, contrib = xgb_contribs(model, Xg)
    _, md = onnx_margin_check(onx, Xg, margin, ens)
    m = manifest_base("xgb_multiclass", "multiclass", "probabilities", ["alpha", "beta", "gamma"],
                      description="Test bundle: XGBoost 3-class classifier (multi:softprob, 45 trees), synthetic data.")
    finish(report, "xgb_multiclass", out, m, onx, Xtr, Xg, documents(Xg, seed + 2000), scores,
           model.predict_proba(Xg), margin, md, contrib, covers, libs=("xgboost", "onnxmltools"))


def bundle_xgb_regressor(out, report):
    import xgboost as xgb

    seed = 31
    Xtr, ytr = make_regression(4000, seed, 0.3)
    Xg, _ = make_regression(150, seed + 1000, 0.4)
    model = xgb.XGBRegressor(n_estimators=40, max_depth=5, learning_rate=0.2, n_jobs=2,
                             random_state=seed, tree_method="hist")
    model.fit(Xtr, ytr)
    onx = _xgb_onnx(model)
    ens = ot.read_ensemble(onx)
    covers = xgb_covers(model, onx, ens=ens)
    scores = run(onx, Xg, "variable")
    margin, contrib = xgb_contribs(model, Xg)
    _, md = onnx_margin_check(onx, Xg, margin, ens)
    m = manifest_base("xgb_regressor", "regression", "variable",
                      description="Test bundle: XGBoost regressor (squared error), synthetic data.")
    finish(report, "xgb_regressor", out, m, onx, Xtr, Xg, documents(Xg, seed + 2000), scores,
           model.predict(Xg).reshape(-1, 1), margin, md, contrib, covers,
           libs=("xgboost", "onnxmltools"))


def bundle_lgbm_binary(out, report):
    import lightgbm as lgb
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    seed = 41
    Xtr, ytr = make_binary(4000, seed, 0.3)
    Xg, _ = make_binary(160, seed + 1000, 0.4)
    model = lgb.LGBMClassifier(n_estimators=40, num_leaves=31, max_depth=6, learning_rate=0.1,
                               n_jobs=2, random_state=seed, deterministic=True,
                               force_row_wise=True, verbose=-1)
    model.fit(Xtr, ytr)
    onx = convert_lightgbm(model, initial_types=[("input", FloatTensorType([None, F]))],
                           zipmap=False)
    ens = ot.read_ensemble(onx)
    native = ot.lightgbm_trees(model.booster_)
    covers = ot.match_covers(ens, native, "BRANCH_LEQ", leaf_class_of=lambda k: 0)
    ot.check_covers_consistent(covers, ens)
    scores = run(onx, Xg, "probabilities")
    margin = model.predict(Xg, raw_score=True).astype(np.float64).reshape(-1, 1)
    contrib = model.predict(Xg, pred_contrib=True).astype(np.float64)[:, None, :]
    _, md = onnx_margin_check(onx, Xg, margin, ens)
    m = manifest_base("lgbm_binary", "binary", "probabilities", BIN, "positive",
                      "Test bundle: LightGBM binary classifier (onnxmltools, zipmap off), synthetic data. "
                      "The converter's graph ends with Mul(probabilities, 1) after the tree node.")
    finish(report, "lgbm_binary", out, m, onx, Xtr, Xg, documents(Xg, seed + 2000), scores,
           model.predict_proba(Xg), margin, md, contrib,
           {"source": "lightgbm internal_count", "trees": covers}, libs=("lightgbm", "onnxmltools"))


def _skl_onnx(model):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    opts = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    return convert_sklearn(model, initial_types=[("input", FloatTensorType([None, F]))],
                           options=opts)


def _rf_fix_and_covers(model, onx):
    """skl2onnx does not carry sklearn's missing-value routing: write it from the native trees
    (matched node by node), then return covers."""
    ens = ot.read_ensemble(onx)
    native = ot.sklearn_trees(model.estimators_)
    covers = ot.match_covers(ens, native, "BRANCH_LEQ", fix_missing=True, check_leaves=False)
    ot.write_missing_tracks(onx, ens)
    ot.check_covers_consistent(covers, ens)
    return ens, {"source": "sklearn weighted_n_node_samples", "trees": covers}


def bundle_rf_binary(out, report):
    from sklearn.ensemble import RandomForestClassifier

    seed = 51
    Xtr, ytr = make_binary(3000, seed, 0.3)
    Xg, _ = make_binary(160, seed + 1000, 0.4)
    model = RandomForestClassifier(n_estimators=30, max_depth=6, random_state=seed, n_jobs=2)
    model.fit(Xtr, ytr)
    model.n_jobs = 1  # predictions summed in a fixed order (bit-identical re-exports)
    onx = _skl_onnx(model)
    ens, covers = _rf_fix_and_covers(model, onx)
    scores = run(onx, Xg, "probabilities")
    native = model.predict_proba(Xg)
    # The margin is the averaged leaf value the ONNX graph sums (one column: skl2onnx writes the
    # positive-class fraction / n_trees under class id 0; onnxruntime outputs [1 - s, s]).
    margin = native[:, 1:2]
    _, md = onnx_margin_check(onx, Xg, margin, ens)
    m = manifest_base("rf_binary", "binary", "probabilities", BIN, "positive",
                      "Test bundle: sklearn RandomForestClassifier (skl2onnx, zipmap off; missing-value "
                      "routing written into the ONNX nodes from the sklearn trees), synthetic data.")
    finish(report, "rf_binary", out, m, onx, Xtr, Xg, documents(Xg, seed + 2000), scores, native,
           margin, md, None, covers, libs=("sklearn", "skl2onnx"))


def bundle_rf_regressor(out, report):
    from sklearn.ensemble import RandomForestRegressor

    seed = 61
    Xtr, ytr = make_regression(3000, seed, 0.3)
    Xg, _ = make_regression(150, seed + 1000, 0.4)
    model = RandomForestRegressor(n_estimators=30, max_depth=6, random_state=seed, n_jobs=2)
    model.fit(Xtr, ytr)
    model.n_jobs = 1  # predictions summed in a fixed order (bit-identical re-exports)
    onx = _skl_onnx(model)
    ens, covers = _rf_fix_and_covers(model, onx)
    scores = run(onx, Xg, "variable")
    native = model.predict(Xg).reshape(-1, 1)
    _, md = onnx_margin_check(onx, Xg, native, ens)
    m = manifest_base("rf_regressor", "regression", "variable",
                      description="Test bundle: sklearn RandomForestRegressor (skl2onnx), synthetic data.")
    finish(report, "rf_regressor", out, m, onx, Xtr, Xg, documents(Xg, seed + 2000), scores, native,
           native, md, None, covers, libs=("sklearn", "skl2onnx"))


def bundle_dense(out, report, kind: str):
    """logreg_binary / mlp_binary: graphs that cannot take NaN, so missing features are 0
    (the training data has NaN replaced by 0 too)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    seed = 71 if kind == "logreg" else 81
    Xtr, ytr = make_binary(4000, seed, 0.3)
    Xg, _ = make_binary(160, seed + 1000, 0.4)
    docs = documents(Xg, seed + 2000)
    Xtr0, Xg0 = np.nan_to_num(Xtr, nan=0.0), np.nan_to_num(Xg, nan=0.0)
    if kind == "logreg":
        model = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
        desc = "Test bundle: sklearn LogisticRegression (skl2onnx LinearClassifier, zipmap off); missing features are 0."
    else:
        model = MLPClassifier(hidden_layer_sizes=(32, 64, 32), max_iter=300, random_state=seed,
                              early_stopping=True)
        desc = "Test bundle: sklearn MLPClassifier 32-64-32 ReLU (skl2onnx, zipmap off); missing features are 0."
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(Xtr0, ytr)
    onx = _skl_onnx(model)
    scores = run(onx, Xg0, "probabilities")
    name = f"{kind}_binary"
    m = manifest_base(name, "binary", "probabilities", BIN, "positive", desc, missing=0.0)
    finish(report, name, out, m, onx, Xtr0, Xg0, docs, scores, model.predict_proba(Xg0),
           libs=("sklearn", "skl2onnx"))


README = """# Test bundles

Written by `models/vigil_models/export_test_bundles.py`; do not edit by hand. Regenerate with

    bash models/setup.sh
    cd models && ../.venv/bin/python -m vigil_models.export_test_bundles --out ../sidecar/tests/bundles

Each folder follows `docs/bundle-format.md`. Synthetic data, 32 numeric features `f0..f31` read
from `{{"features": {{"f0": …}}}}` (a few documents use flattened keys `"features.f3"`, numeric
strings or one-element arrays). Missing features are absent from the document; the tree bundles
declare `missing: null` (NaN), `logreg_binary` and `mlp_binary` declare `missing: 0`
(their graphs cannot take NaN). `xgb_binary` and `gte_binary` end with 20 rows whose features sit
exactly on split thresholds.

Checks run before writing (numbers from the last run):

| bundle | rows | rows with a missing feature | ort vs native | ONNX margin vs native | sum(contrib) vs margin | notes |
|---|---|---|---|---|---|---|
{rows}

- *ort vs native*: onnxruntime's `model.output` vs the native `predict_proba` / `predict`.
- *ONNX margin vs native*: the ensemble sum + base_values of the ONNX trees (reference evaluator,
  `onnx_trees.raw_margin`) vs the native margin (`output_margin`, `raw_score`, averaged leaves).
- *sum(contrib)*: local accuracy of the native contributions (XGBoost `pred_contribs`,
  LightGBM `pred_contrib`), which are written to `expected.contributions`.
- covers (`covers.json`) are placed by walking the native and the ONNX trees together
  (feature, threshold, comparison, missing direction and leaf value checked at every node), and
  cover(parent) = cover(left) + cover(right) is checked.

Converter notes:
- onnxmltools numbers XGBoost nodes depth-first (not XGBoost's node ids); covers are keyed by ONNX ids.
- `lgbm_binary`: the graph is `TreeEnsembleClassifier -> Mul(x, 1) -> probabilities`.
- `rf_binary` / `rf_regressor`: skl2onnx 1.18 drops sklearn's missing-value routing; the exporter
  writes `nodes_missing_value_tracks_true` from the sklearn trees. skl2onnx writes the binary
  forest with one class id (0) holding the positive-class fraction / n_trees; onnxruntime
  outputs `[1 - s, s]`, and `expected.margin` is that `s`.
- `gte_binary`: every split is `BRANCH_GTE` (children swapped, missing tracking flipped);
  onnxruntime gives bit-identical outputs to the original `BRANCH_LT` graph.
"""


def write_readme(out: Path, report: Report):
    lines = []
    for r in report.rows:
        notes = []
        for k in ("threshold_rows", "gte_vs_lt_ort", "mean_leaves", "max_depth", "nodes", "size_kb"):
            if k in r:
                notes.append(f"{k} {_fmt(r[k])}")
        lines.append("| {} | {} | {} | {} | {} | {} | {} |".format(
            r["bundle"], r["rows"], r["rows_with_nan"], f"{r['ort_vs_native']:.2e}",
            f"{r['onnx_margin_vs_native']:.2e}" if "onnx_margin_vs_native" in r else "-",
            f"{r['local_accuracy']:.2e}" if "local_accuracy" in r else "-", ", ".join(notes)))
    (out / "README.md").write_text(README.format(rows="\n".join(lines)), encoding="utf-8")


BUNDLES = {
    "xgb_binary": lambda o, r: bundle_xgb_binary(o, r),
    "lgbm_binary": bundle_lgbm_binary,
    "rf_binary": bundle_rf_binary,
    "logreg_binary": lambda o, r: bundle_dense(o, r, "logreg"),
    "mlp_binary": lambda o, r: bundle_dense(o, r, "mlp"),
    "xgb_multiclass": bundle_xgb_multiclass,
    "xgb_regressor": bundle_xgb_regressor,
    "rf_regressor": bundle_rf_regressor,
    "gte_binary": lambda o, r: bundle_xgb_binary(o, r, name="gte_binary", n_trees=30, depth=6,
                                                 seed=91, gte=True),
    "bench_xgb": lambda o, r: bundle_xgb_binary(o, r, name="bench_xgb", n_trees=300, depth=6,
                                                seed=101, n_train=20000, n_gold=1000, bench=True,
                                                nan_count=415, edge=0),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "sidecar" / "tests" / "bundles"),
                    help="output folder (default: <repo>/sidecar/tests/bundles)")
    ap.add_argument("--only", nargs="*", help="bundle names (default: all)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report()
    names = args.only or list(BUNDLES)
    for name in names:
        t = time.time()
        print(f"{name} …", flush=True)
        BUNDLES[name](out, report)
        print(f"  ({time.time() - t:.1f}s)", flush=True)
    if not args.only:
        write_readme(out, report)
        (out / "export_report.json").write_text(json.dumps(report.rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
