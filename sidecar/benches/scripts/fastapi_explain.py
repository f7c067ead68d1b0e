#!/usr/bin/env python3
"""Benchmark baseline with explanations: the FastAPI + onnxruntime scorer of
models/baselines/fastapi_scorer.py plus `POST /explain/bench_xgb`, which scores the batch with
onnxruntime and explains it with XGBoost's exact TreeSHAP (`predict(pred_contribs=True)`,
1 thread), returning the top 5 contributions by |value| per document (feature name + value).

    .venv/bin/python sidecar/benches/scripts/fastapi_explain.py --port 8098

ONNX bundles carry no XGBoost booster, so the booster is retrained with the exporter's own
deterministic recipe (the same one sidecar/benches/compare_trees.py uses) and checked against the
bundle's golden scores at start; a different model aborts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "models"))
sys.path.insert(0, str(REPO / "sidecar" / "benches"))

from baselines import fastapi_scorer as base  # noqa: E402

app = base.app
_booster = {}


def load_booster(bundle: Path):
    import xgboost as xgb
    from compare_trees import retrain_bench_xgb  # the tree engineer's recipe, reused as is

    model, booster = retrain_bench_xgb(REPO / "models")
    golden = json.loads((bundle / "golden.json").read_text())["rows"]
    X = np.array([[np.nan if v is None else v for v in r["features"]] for r in golden], dtype=np.float32)
    want = np.array([r["expected"]["scores"] for r in golden], dtype=np.float64)
    diff = float(np.abs(model.predict_proba(X) - want).max())
    if diff > 1e-5:
        raise SystemExit(f"retrained booster differs from the bundle (max |diff| {diff:.2e})")
    booster.set_param({"nthread": 1})
    return xgb, booster


@app.post("/explain/{model}")
def explain(model: str, req: base.ScoreRequest) -> Dict:
    s = base.scorer(model)
    xgb, booster = _booster["bench_xgb"]
    X = np.tile(s.defaults, (len(req.docs), 1))
    for i, d in enumerate(req.docs):
        for k, v in d.features.items():
            j = s.index.get(k)
            if j is not None and v is not None:
                X[i, j] = v
    probs = s.session.run([s.output], {s.input: X})[0]
    contribs = booster.predict(xgb.DMatrix(X, missing=np.nan, nthread=1), pred_contribs=True)[:, :-1]
    top: List[List[Dict]] = []
    for row in contribs:
        idx = np.argsort(-np.abs(row))[:5]
        top.append([{"feature_name": s.keys[j], "importance": float(row[j])} for j in idx])
    return {"model": model, "classes": s.classes, "probabilities": probs.tolist(), "feature_importance": top}


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8098)
    args = ap.parse_args()
    base.scorer("bench_xgb")
    _booster["bench_xgb"] = load_booster(base.BUNDLES / "bench_xgb")
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
