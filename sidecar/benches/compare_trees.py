#!/usr/bin/env python3
"""Vigil's tree evaluator and TreeSHAP against onnxruntime (1 thread) and XGBoost (1 thread), on
the same bench model and the same rows, in one run; prints a table of rows/s and ratios.

    /work/main/.venv/bin/python sidecar/benches/compare_trees.py [--bundle DIR] [--models DIR]

The bundle holds the ONNX model but not the XGBoost booster, so the booster is retrained with the
exporter's own deterministic recipe (models/vigil_models/export_test_bundles.py, bench_xgb) and
checked against the bundle's golden scores before anything is timed: a different model aborts.
The Rust side is `cargo run --release --example tree_throughput`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIDECAR = HERE.parent


def rate(fn, rows: int, seconds: float) -> float:
    """Rows per second of fn (which scores `rows` rows): median of 3 rounds."""
    fn()
    out = []
    for _ in range(3):
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn()
            calls += 1
        out.append(calls * rows / (time.perf_counter() - start))
    return statistics.median(out)


def single_row_latency_us(fn, X: np.ndarray, seconds: float):
    lat, start, i = [], time.perf_counter(), 0
    while time.perf_counter() - start < seconds or len(lat) < 1000:
        row = X[i % len(X)][None, :]
        t = time.perf_counter()
        fn(row)
        lat.append((time.perf_counter() - t) * 1e6)
        i += 1
    lat.sort()
    return lat[len(lat) // 2], lat[int((len(lat) - 1) * 0.99)]


def batch_of(X: np.ndarray, n: int) -> np.ndarray:
    reps = -(-n // len(X))
    return np.ascontiguousarray(np.tile(X, (reps, 1))[:n])


def retrain_bench_xgb(models_dir: Path):
    """The exporter's bench_xgb recipe (seed 101, 20,000 rows, 300 trees, depth 6)."""
    import xgboost as xgb

    sys.path.insert(0, str(models_dir))
    from vigil_models import export_test_bundles as ex  # noqa: E402

    Xtr, ytr = ex.make_binary(20000, 101, 0.3, bench=True)
    model = xgb.XGBClassifier(n_estimators=300, max_depth=6, learning_rate=0.1, n_jobs=2, random_state=101,
                              tree_method="hist", min_child_weight=1.0)
    model.fit(Xtr, ytr)
    booster = model.get_booster()
    booster.set_param({"nthread": 1})
    return model, booster


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, default=SIDECAR / "tests/bundles/bench_xgb")
    ap.add_argument("--models", type=Path, default=SIDECAR.parent / "models",
                    help="folder holding vigil_models (the exporter)")
    ap.add_argument("--seconds", type=float, default=1.0, help="per round; 3 rounds per case")
    ap.add_argument("--json", action="store_true", help="also print the raw numbers as JSON")
    ap.add_argument("--rust-bin", type=Path, default=None,
                    help="a built tree_throughput example to run instead of `cargo run --release`")
    args = ap.parse_args()

    import onnxruntime as ort
    import xgboost as xgb

    manifest = json.loads((args.bundle / "manifest.json").read_text())
    golden = json.loads((args.bundle / "golden.json").read_text())["rows"]
    X = np.array([[np.nan if v is None else v for v in r["features"]] for r in golden], dtype=np.float32)
    want = np.array([r["expected"]["scores"] for r in golden], dtype=np.float64)
    output = manifest["model"]["output"]

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(args.bundle / "model.onnx"), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0].name

    model, booster = retrain_bench_xgb(args.models)
    native = model.predict_proba(X)
    diff = float(np.abs(native - want).max())
    if diff > 1e-5:
        print(f"retrained XGBoost model differs from the bundle (max |diff| {diff:.2e}); aborting", file=sys.stderr)
        return 1

    res: dict[str, dict] = {"ort": {}, "xgb": {}}
    for n in (128, 1024):
        B = batch_of(X, n)
        res["ort"][f"predict_{n}"] = rate(lambda: sess.run([output], {inp: B}), n, args.seconds)
        res["xgb"][f"predict_{n}"] = rate(lambda: booster.inplace_predict(B, missing=np.nan), n, args.seconds)
    res["ort"]["p50_us"], res["ort"]["p99_us"] = single_row_latency_us(
        lambda r: sess.run([output], {inp: r}), X, args.seconds)
    res["xgb"]["p50_us"], res["xgb"]["p99_us"] = single_row_latency_us(
        lambda r: booster.inplace_predict(r, missing=np.nan), X, args.seconds)
    D = xgb.DMatrix(batch_of(X, 1024), missing=np.nan, nthread=1)
    res["xgb"]["shap"] = rate(lambda: booster.predict(D, pred_contribs=True), 1024, max(args.seconds, 2.0))

    env = dict(os.environ)
    if args.rust_bin:
        cmd = [str(args.rust_bin.resolve()), str(args.bundle), str(args.seconds)]
    else:
        cmd = ["cargo", "run", "--quiet", "--release", "--example", "tree_throughput", "--",
               str(args.bundle), str(args.seconds)]
    rust = json.loads(subprocess.run(cmd, cwd=SIDECAR, env=env, check=True, capture_output=True, text=True).stdout)
    r = {"predict_128": rust["predict_rows_per_s"]["128"], "predict_1024": rust["predict_rows_per_s"]["1024"],
         "p50_us": rust["single_row_us"]["p50"], "p99_us": rust["single_row_us"]["p99"],
         "shap": rust["shap_rows_per_s"]}
    res["rust"] = r

    def fmt(v, unit):
        return f"{v / 1e3:,.1f} k" if unit == "rows/s" and v >= 1e4 else f"{v:,.1f}"

    rows = [("predict, batch 128", "predict_128", "rows/s", True),
            ("predict, batch 1,024", "predict_1024", "rows/s", True),
            ("single row p50 (µs)", "p50_us", "µs", False),
            ("single row p99 (µs)", "p99_us", "µs", False)]
    print(f"bench model: {args.bundle.name}, {len(X)} rows ({int(np.isnan(X).any(axis=1).sum())} with NaN), 1 thread")
    print("| case | Rust | onnxruntime | xgboost | Rust/onnxruntime | Rust/xgboost |")
    print("|---|---|---|---|---|---|")
    for label, key, unit, higher in rows:
        a, o, x = r[key], res["ort"][key], res["xgb"][key]
        ro, rx = (a / o, a / x) if higher else (o / a, x / a)
        print(f"| {label} | {fmt(a, unit)} | {fmt(o, unit)} | {fmt(x, unit)} | {ro:.2f}x | {rx:.2f}x |")
    print(f"| TreeSHAP rows/s (xgboost pred_contribs, batch 1,024) | {fmt(r['shap'], 'rows/s')} | - | "
          f"{fmt(res['xgb']['shap'], 'rows/s')} | - | {r['shap'] / res['xgb']['shap']:.1f}x |")
    print("(latency ratios are baseline/Rust: above 1 means Rust is faster; Python-side latencies include the binding)")
    if args.json:
        print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
