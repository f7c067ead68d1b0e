"""Sanity of the committed bundles (test bundles and shipped models), per docs/bundle-format.md:
the manifest points at the model by sha256, the golden documents extract to the golden features,
onnxruntime reproduces the golden scores, covers fit the ONNX trees, contributions add up."""

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from vigil_models import onnx_trees as ot
from vigil_models.bundle import run
from vigil_models.behaviour import StreamExtractor, is_behavioural
from vigil_models.features import FeatureExtractor

REPO = Path(__file__).resolve().parents[2]
TEST_BUNDLES = sorted(p.parent for p in (REPO / "sidecar" / "tests" / "bundles").glob("*/manifest.json"))
SHIPPED = [REPO / "models" / "url-phishing", REPO / "models" / "login-risk"]
ALL = TEST_BUNDLES + [p for p in SHIPPED if (p / "manifest.json").exists()]
EXPECTED_TEST = {"xgb_binary", "lgbm_binary", "rf_binary", "logreg_binary", "mlp_binary",
                 "xgb_multiclass", "xgb_regressor", "rf_regressor", "gte_binary", "bench_xgb"}
MANIFEST_KEYS = {"name", "version", "description", "task", "model", "classes", "positive_class",
                 "threshold", "target_field", "explanation", "features", "reference_sample", "golden"}


def load(bundle: Path):
    m = json.loads((bundle / "manifest.json").read_text())
    g = json.loads((bundle / m["golden"]["file"]).read_text())
    return m, g


def test_all_test_bundles_present():
    assert {p.name for p in TEST_BUNDLES} >= EXPECTED_TEST


@pytest.mark.parametrize("bundle", ALL, ids=lambda p: p.name)
def test_manifest_and_model(bundle):
    m, g = load(bundle)
    assert set(m) <= MANIFEST_KEYS
    assert m["name"] == bundle.name
    data = (bundle / m["model"]["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == m["model"]["sha256"]
    model = onnx.load_from_string(data)
    assert m["model"]["output"] in [o.name for o in model.graph.output]
    if m["task"] != "regression":
        assert len(m["classes"]) >= 2
    if m["task"] == "binary":
        assert m["positive_class"] in m["classes"]
    ref = json.loads((bundle / m["reference_sample"]).read_text())["rows"]
    assert 50 <= len(ref) <= 500 and all(len(r) == len(m["features"]) for r in ref)


@pytest.mark.parametrize("bundle", ALL, ids=lambda p: p.name)
def test_golden_reproduced(bundle):
    m, g = load(bundle)
    rows = g["rows"]
    assert len(rows) >= 100
    X = np.array([[np.nan if v is None else v for v in r["features"]] for r in rows], dtype=np.float32)
    docs = [r["document"] for r in rows if "document" in r]
    assert len(docs) == len(rows)
    if any(is_behavioural(f) for f in m["features"]):
        # documents in order, replayed through a fresh state (docs/bundle-format.md)
        got = StreamExtractor(m["features"], bundle).extract_stream(docs)
    else:
        got = FeatureExtractor(m["features"], bundle).extract_many(docs)
    assert np.array_equal(np.isnan(got), np.isnan(X))
    assert np.allclose(np.nan_to_num(got), np.nan_to_num(X), rtol=0, atol=0)
    scores = run((bundle / "model.onnx").read_bytes(), X, m["model"]["output"])
    want = np.array([r["expected"]["scores"] for r in rows])
    assert np.abs(scores - want).max() <= m["golden"]["tolerance"]
    if m["task"] != "regression":
        assert scores.shape[1] == len(m["classes"])


@pytest.mark.parametrize("bundle", [b for b in ALL if (b / "covers.json").exists()], ids=lambda p: p.name)
def test_covers_and_contributions(bundle):
    m, g = load(bundle)
    assert m["explanation"]["covers"] == "covers.json"
    model = onnx.load(str(bundle / "model.onnx"))
    ens = ot.read_ensemble(model)
    covers = json.loads((bundle / "covers.json").read_text())
    assert len(covers["trees"]) == len(ens.trees)
    for k, cov in enumerate(covers["trees"]):
        assert len(cov) == len(ens.trees[k])
    ot.check_covers_consistent(covers["trees"], ens)
    rows = g["rows"][:50]
    X = np.array([[np.nan if v is None else v for v in r["features"]] for r in rows], dtype=np.float32)
    margin = np.array([r["expected"]["margin"] for r in rows])
    assert np.abs(ot.raw_margin(ens, X) - margin).max() < 1e-4
    if "contributions" in rows[0]["expected"]:
        c = np.array([r["expected"]["contributions"] for r in rows])
        assert c.shape[1:] == (margin.shape[1], len(m["features"]) + 1)
        assert np.abs(c.sum(axis=2) - margin).max() < 1e-4


def test_gte_bundle_uses_only_gte():
    ens = ot.read_ensemble(onnx.load(str(REPO / "sidecar/tests/bundles/gte_binary/model.onnx")))
    assert {n.mode for t in ens.trees.values() for n in t.values()} == {"BRANCH_GTE", "LEAF"}


def test_bench_bundle_shape():
    m, g = load(REPO / "sidecar/tests/bundles/bench_xgb")
    ens = ot.read_ensemble(onnx.load(str(REPO / "sidecar/tests/bundles/bench_xgb/model.onnx")))
    assert len(ens.trees) == 300 and len(m["features"]) == 32
    assert len(g["rows"]) == 1000
    assert sum(any(v is None for v in r["features"]) for r in g["rows"]) == 415
    assert all("contributions" in r["expected"] for r in g["rows"])


def test_gte_rewrite_preserves_function():
    """The rewrite on a tiny tree: x < t ? A : B  ==  x >= t ? B : A, NaN included."""
    from onnx import TensorProto, helper

    node = helper.make_node(
        "TreeEnsembleRegressor", ["x"], ["y"], domain="ai.onnx.ml", n_targets=1,
        nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
        nodes_modes=["BRANCH_LT", "LEAF", "LEAF"], nodes_values=[0.5, 0, 0],
        nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0],
        nodes_missing_value_tracks_true=[1, 0, 0],
        target_treeids=[0, 0], target_nodeids=[1, 2], target_ids=[0, 0], target_weights=[1.0, 2.0])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    X = np.array([[0.0], [0.5], [1.0], [np.nan]], dtype=np.float32)
    a = run(model, X, "y")
    b = run(ot.rewrite_to_gte(model), X, "y")
    assert a.ravel().tolist() == [1.0, 2.0, 2.0, 1.0]
    assert np.array_equal(a, b)
