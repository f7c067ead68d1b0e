"""Baseline for benchmarks: the usual Python way to serve an ONNX model, FastAPI + pydantic +
onnxruntime (one intra-op thread), scoring batches of documents.

Run (from the repository root):

    .venv/bin/python models/baselines/fastapi_scorer.py --port 8099
    # or: cd models && ../.venv/bin/python -m uvicorn baselines.fastapi_scorer:app --port 8099

    curl -s localhost:8099/score/bench_xgb -H 'content-type: application/json' \
         -d '{"docs": [{"features": {"f0": 1.5, "f3": -0.2}}]}'

POST /score/{model} takes `{"docs": [{"features": {"f0": …, …}}, …]}` (the benchmark sends 100
docs per request); each doc is validated by pydantic, its `features` mapped to the model's input
columns by the bundle manifest (`source: features.<key>`; a missing or null feature is NaN, the
manifest's `missing`), and the batch is scored in one onnxruntime call. Returns the
probabilities `[N, C]` and the class labels. Models are the bundles in VIGIL_BUNDLES (default
`sidecar/tests/bundles`), loaded on first use; `bench_xgb` is the benchmark model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import threading
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[2]
BUNDLES = Path(os.environ.get("VIGIL_BUNDLES", REPO / "sidecar" / "tests" / "bundles"))


class Doc(BaseModel):
    features: Dict[str, Optional[float]]


class ScoreRequest(BaseModel):
    docs: List[Doc]


class ScoreResponse(BaseModel):
    model: str
    classes: List[str]
    probabilities: List[List[float]]


class Scorer:
    def __init__(self, bundle: Path):
        manifest = json.loads((bundle / "manifest.json").read_text())
        self.classes = manifest.get("classes", [])
        self.output = manifest["model"]["output"]
        self.keys, self.missing = [], []
        for f in manifest["features"]:
            src = f["source"] if isinstance(f["source"], str) else f["source"][0]
            if not src.startswith("features.") or f["transform"]["kind"] != "numeric":
                raise ValueError(f"{bundle.name}: the baseline only serves numeric features.<key> bundles")
            self.keys.append(src[len("features."):])
            m = f.get("missing")
            self.missing.append(math.nan if m is None else float(m))
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(bundle / manifest["model"]["file"]), so,
                                            providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.index = {k: j for j, k in enumerate(self.keys)}
        self.defaults = np.array(self.missing, dtype=np.float32)

    def score(self, docs: List[Doc]) -> np.ndarray:
        X = np.tile(self.defaults, (len(docs), 1))
        for i, d in enumerate(docs):
            for k, v in d.features.items():
                j = self.index.get(k)
                if j is not None and v is not None:
                    X[i, j] = v
        return self.session.run([self.output], {self.input: X})[0]


app = FastAPI(title="Vigil baseline scorer (FastAPI + onnxruntime)")
_scorers: Dict[str, Scorer] = {}
_lock = threading.Lock()


def scorer(name: str) -> Scorer:
    s = _scorers.get(name)
    if s is None:
        with _lock:
            s = _scorers.get(name)
            if s is None:
                bundle = BUNDLES / name
                if not name.replace("_", "").replace("-", "").isalnum() or not (bundle / "manifest.json").is_file():
                    raise HTTPException(404, f"no model [{name}]")
                s = _scorers[name] = Scorer(bundle)
    return s


@app.get("/health")
def health() -> dict:
    return {"status": "ok", "models": sorted(_scorers)}


@app.post("/score/{model}", response_model=ScoreResponse)
def score(model: str, req: ScoreRequest) -> ScoreResponse:
    s = scorer(model)
    probs = s.score(req.docs)
    return ScoreResponse(model=model, classes=s.classes, probabilities=probs.tolist())


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser(description="FastAPI + onnxruntime baseline scorer")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--preload", default="bench_xgb", help="model to load at start ('' for none)")
    args = ap.parse_args()
    if args.preload:
        scorer(args.preload)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
