import json
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from baselines.fastapi_scorer import app

REPO = Path(__file__).resolve().parents[2]


def _doc(d: dict) -> dict:
    f = {}
    for k, v in d.items():
        items = v.items() if k == "features" else [(k[len("features."):], v)]
        for kk, vv in items:
            f[kk] = float(vv[0] if isinstance(vv, list) else vv)
    return {"features": f}


def test_scores_bench_model_like_golden():
    rows = json.loads((REPO / "sidecar/tests/bundles/bench_xgb/golden.json").read_text())["rows"][:100]
    client = TestClient(app)
    r = client.post("/score/bench_xgb", json={"docs": [_doc(x["document"]) for x in rows]})
    assert r.status_code == 200
    body = r.json()
    assert body["classes"] == ["negative", "positive"]
    got = np.array(body["probabilities"])
    want = np.array([x["expected"]["scores"] for x in rows])
    assert got.shape == (100, 2)
    assert np.abs(got - want).max() <= 1e-6


def test_errors():
    client = TestClient(app)
    assert client.post("/score/nope", json={"docs": []}).status_code == 404
    assert client.post("/score/bench_xgb", json={"docs": [{"features": {"f0": "x"}}]}).status_code == 422
    assert client.get("/health").json()["status"] == "ok"
