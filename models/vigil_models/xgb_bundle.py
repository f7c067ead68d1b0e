"""XGBoost -> ONNX -> bundle, with the checks every shipped tree bundle gets:
onnxruntime vs XGBoost probabilities, ONNX margin vs XGBoost margin, local accuracy of the
contributions, covers matched node by node, Python extraction of every golden document."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import onnx_trees as ot
from .bundle import check_features, generated_by, golden_rows, run, write_bundle


def xgb_to_onnx(model, n_features: int):
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    return convert_xgboost(model, initial_types=[("input", FloatTensorType([None, n_features]))])


def xgb_contribs(model, X):
    """Native margin [N, C] and contributions [N, C, F+1] (last = expected value)."""
    import xgboost as xgb

    dm = xgb.DMatrix(np.asarray(X, dtype=np.float32), missing=np.nan)
    b = model.get_booster()
    margin = b.predict(dm, output_margin=True)
    c = b.predict(dm, pred_contribs=True)
    if c.ndim == 2:
        c = c[:, None, :]
    return np.asarray(margin, dtype=np.float64).reshape(len(X), -1), c.astype(np.float64)


def xgb_covers(model, onx, n_classes: int = 1, ens=None) -> dict:
    ens = ens or ot.read_ensemble(onx)
    native = ot.xgboost_trees(model.get_booster())
    covers = ot.match_covers(ens, native, "BRANCH_LT",
                             leaf_class_of=lambda k: k % n_classes if n_classes > 1 else 0)
    ot.check_covers_consistent(covers, ens)
    return {"source": "xgboost cover", "trees": covers}


def export_binary(model, out: Path, manifest: dict, X_train: np.ndarray, X_gold: np.ndarray,
                  docs: list[dict], script: str, extra_files: dict | None = None,
                  tol: float = 1e-5, reference_rows: int = 200, seed: int = 7) -> dict:
    """Writes the bundle and returns the parity numbers. `extra_files` (e.g. a values_file) are
    written into the bundle before the golden documents are extracted."""
    out = Path(out)
    F = X_train.shape[1]
    onx = xgb_to_onnx(model, F)
    ens = ot.read_ensemble(onx)
    covers = xgb_covers(model, onx, ens=ens)
    scores = run(onx, X_gold, manifest["model"]["output"])
    native = model.predict_proba(np.asarray(X_gold, dtype=np.float32))
    diff = float(np.abs(scores - native).max())
    if diff > tol:
        raise AssertionError(f"onnxruntime vs xgboost: {diff}")
    margin, contrib = xgb_contribs(model, X_gold)
    md = float(np.abs(ot.raw_margin(ens, X_gold) - margin).max())
    if md > 1e-4:
        raise AssertionError(f"ONNX margin vs xgboost margin: {md}")
    la = float(np.abs(contrib.sum(axis=2) - margin).max())
    if la > 1e-4:
        raise AssertionError(f"local accuracy: {la}")
    # extra files must exist before the extraction check (values_file)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (extra_files or {}).items():
        (out / name).write_text(text, encoding="utf-8")
    check_features(manifest["features"], out, docs, X_gold)
    rng = np.random.default_rng(seed)
    ref = X_train[np.sort(rng.choice(len(X_train), size=min(reference_rows, len(X_train)), replace=False))]
    gold = golden_rows(docs, X_gold, scores, margin, contrib)
    write_bundle(out, manifest, onx, ref, gold, generated_by(script, ("xgboost", "onnxmltools")),
                 covers=covers, extra_files=extra_files,
                 keep=("MODEL_CARD.md",))
    return {"ort_vs_native": diff, "onnx_margin_vs_native": md, "local_accuracy": la,
            "trees": len(ens.trees), "nodes": sum(len(t) for t in ens.trees.values())}
