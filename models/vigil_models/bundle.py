"""Writing bundles per `docs/bundle-format.md` (manifest.json, model.onnx, reference.json,
golden.json, covers.json)."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from .features import FeatureExtractor, as_json_row


def versions() -> dict[str, str]:
    import importlib

    out = {}
    for name in ("xgboost", "lightgbm", "sklearn", "onnxruntime", "onnx", "onnxmltools", "skl2onnx"):
        try:
            out[name] = importlib.import_module(name).__version__
        except ImportError:
            pass
    return out


def generated_by(script: str, libs: Sequence[str]) -> str:
    v = versions()
    libs = [l for l in libs if l in v] + ["onnxruntime"]
    return f"{script} ({', '.join(f'{l} {v[l]}' for l in libs)})"


def session(model: onnx.ModelProto | bytes) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def run(model: onnx.ModelProto | bytes, X: np.ndarray, output: str) -> np.ndarray:
    s = session(model)
    name = s.get_inputs()[0].name
    res = s.run([output], {name: np.asarray(X, dtype=np.float32)})[0]
    res = np.asarray(res)
    return res.reshape(len(X), -1)


def _num(x: Any) -> Any:
    """float32/float64 numbers as JSON floats (NaN -> null)."""
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_num(v) for v in x]
    x = float(x)
    return None if math.isnan(x) else x


def write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def golden_rows(docs: Sequence[dict] | None, X: np.ndarray, scores: np.ndarray,
                margin: np.ndarray | None = None,
                contributions: np.ndarray | None = None) -> list[dict]:
    """contributions: [N, C, F+1] (one array per margin column)."""
    rows = []
    for i in range(len(X)):
        exp: dict[str, Any] = {"scores": _num(scores[i])}
        if margin is not None:
            exp["margin"] = _num(np.asarray(margin[i]).reshape(-1))
        if contributions is not None:
            exp["contributions"] = _num(contributions[i])
        row: dict[str, Any] = {}
        if docs is not None:
            row["document"] = docs[i]
        row["features"] = as_json_row(np.asarray(X[i], dtype=np.float32).astype(np.float64))
        row["expected"] = exp
        rows.append(row)
    return rows


def check_features(specs: list[dict], bundle_dir: Path, docs: Sequence[dict], X: np.ndarray) -> None:
    """Python extraction of every golden document must give exactly the model's input rows.
    Bundles with behavioural features replay the documents in order through a fresh state."""
    from .behaviour import StreamExtractor, is_behavioural

    if any(is_behavioural(s) for s in specs):
        got = StreamExtractor(specs, bundle_dir).extract_stream(docs)
    else:
        got = FeatureExtractor(specs, bundle_dir).extract_many(docs)
    want = np.asarray(X, dtype=np.float32)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    if not same.all():
        i, j = np.argwhere(~same)[0]
        raise AssertionError(f"extraction differs at row {i} feature {specs[j]['name']}: "
                             f"{got[i, j]} vs {want[i, j]} (document {docs[i]})")


def write_bundle(out: Path, manifest: dict, model: onnx.ModelProto, reference: np.ndarray,
                 golden: list[dict], generated: str, covers: dict | None = None,
                 extra_files: dict[str, str] | None = None, keep: Sequence[str] = ()) -> dict:
    """Writes one bundle folder (replacing it, except files named in `keep`) and returns the
    manifest as written."""
    out = Path(out)
    if out.exists():
        for p in out.iterdir():
            if p.name in keep:
                continue
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    # Converters name the graph with a random uuid: name it after the bundle so that re-exports
    # are byte-identical.
    model.graph.name = manifest["name"]
    data = model.SerializeToString()
    (out / "model.onnx").write_bytes(data)
    for name, text in (extra_files or {}).items():
        (out / name).write_text(text, encoding="utf-8")
    m = dict(manifest)
    m["model"] = {"file": "model.onnx", "sha256": hashlib.sha256(data).hexdigest(),
                  **{k: v for k, v in manifest["model"].items() if k not in ("file", "sha256")}}
    expl = dict(m.get("explanation", {}))
    if covers is not None:
        write_json(out / "covers.json", covers)
        expl["covers"] = "covers.json"
    m["explanation"] = expl
    m["reference_sample"] = "reference.json"
    m["golden"] = {"file": "golden.json", "tolerance": manifest.get("golden", {}).get("tolerance", 1e-5)}
    write_json(out / "reference.json",
               {"rows": [as_json_row(r) for r in np.asarray(reference, dtype=np.float32).astype(np.float64)]})
    write_json(out / "golden.json", {"generated_by": generated, "rows": golden})
    write_json(out / "manifest.json", m, indent=2)
    return m
