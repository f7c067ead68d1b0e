#!/usr/bin/env python3
"""Scoring API throughput: Vigil's `POST /_vigil/score/bench_xgb` against the FastAPI +
onnxruntime baseline (models/baselines/fastapi_scorer.py) on the same model, the same documents
and the same load generator, in one run; prints docs/s, p50/p99 and the ratio.

    cargo build --release          # in the repository root
    .venv/bin/python sidecar/benches/scripts/score_api.py [--rounds 3] [--seconds 20]

Documents are `{"features": {"f0": .., ..}}` built from the bench bundle's golden rows (NaN
features left out, which both services read as missing); 100 per request. Load: wrk, 1 thread,
8 connections, a Lua script posting the body, a warm-up run before each measured one.

Checking the answers: before timing, Vigil's probabilities over the body must equal the baseline's.
While timing, wrk counts non-2xx answers for both services, and Vigil's own counters (`/metrics`,
read before and after each run) must show every document of every answered request scored and no
scoring or HTTP error. wrk runs no Lua per answer (copying each 117 kB echoed answer into Lua
cost wrk about a fifth of a core, taken from Vigil when nothing is pinned; 8% fewer requests/s in
a side check); --lua-check restores the old check, wrk searching each answer's head for
`"errors":true`. The `telemetry` case (metrics off on one side) always checks in Lua.

Pinning (--pin): `core` (default, as in the performance anchors) runs each server on CPU 1 and
wrk on CPU 0 with taskset, so the ratio is per core; `none` pins nothing: Vigil uses both cores
(its scoring pool follows the CPUs it may run on) and FastAPI runs 2 uvicorn workers, both sharing
the machine with wrk.

Cases: `score` (Vigil `?explain=never`, the documents echoed with their results, vs FastAPI
/score, which answers with the probabilities alone); with --results-only also `results` (Vigil
answering with the results alone, `&results_only=true`: the baseline's kind of answer, and a
tenth of the bytes for wrk to read and search); with --explain also `explain`
(Vigil `?explain=all`, exact TreeSHAP top 5 for every document, vs FastAPI + xgboost
pred_contribs top 5, sidecar/benches/scripts/fastapi_explain.py). With --telemetry also
`telemetry`: Vigil as deployed (metrics recorded, drift windows, ECS JSON logs at info) against
the same binary with `[metrics] enabled = false` and `VIGIL_LOG=off`, same `score` request; the
"ratio" printed is then on/off docs/s (the issue's bound: overhead at most 5%, ratio >= 0.95).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO, SIDECAR, VENV_PY, Server, log, loadavg, median_runs, post_json,  # noqa: E402
                    run_wrk, vigil_binary, write_lua)

BUNDLE = SIDECAR / "tests" / "bundles" / "bench_xgb"


def documents(n: int) -> list[dict]:
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    keys = [f["source"].split(".", 1)[1] for f in manifest["features"]]
    rows = json.loads((BUNDLE / "golden.json").read_text())["rows"]
    docs = []
    for i in range(n):
        feats = rows[i % len(rows)]["features"]
        docs.append({"features": {k: v for k, v in zip(keys, feats) if v is not None}})
    return docs


# Vigil's counters that account for a run: documents scored, and any failure.
SCORED = "vigil_documents_scored_total"
FAILURES = ("vigil_scoring_errors_total", "vigil_http_errors_total")


def vigil_counts(metrics_url: str) -> dict[str, float]:
    """Each counter of SCORED and FAILURES, summed over its labels, from Vigil's `/metrics`."""
    with urllib.request.urlopen(metrics_url, timeout=30) as r:
        text = r.read().decode()
    counts = {name: 0.0 for name in (SCORED, *FAILURES)}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in counts:
            counts[name] += float(line.rsplit(" ", 1)[1])
    return counts


def checked_on_server(metrics_url: str, before: dict[str, float], res: dict, docs: int, connections: int) -> None:
    """Refuses a run unless Vigil scored every document of every request wrk saw answered (and at
    most those still in flight when wrk stopped) and counted no failure."""
    after = vigil_counts(metrics_url)
    failed = {k: after[k] - before[k] for k in FAILURES if after[k] != before[k]}
    scored = after[SCORED] - before[SCORED]
    low, high = res["requests"] * docs, (res["requests"] + 2 * connections) * docs
    if failed or not low <= scored <= high:
        raise RuntimeError(f"Vigil's counters do not account for the run: {scored:.0f} documents scored for "
                           f"{res['requests']:.0f} answered requests of {docs} (expected {low:.0f}-{high:.0f}), "
                           f"failures {failed}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--docs", type=int, default=100, help="documents per request")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--pin", choices=["core", "none"], default="core")
    ap.add_argument("--explain", action="store_true", help="also the explain-every-document case")
    ap.add_argument("--results-only", action="store_true",
                    help="also Vigil answering with the results alone (?results_only=true), as the baseline "
                         "answers with probabilities alone")
    ap.add_argument("--telemetry", action="store_true", help="also metrics+logs on vs off, Vigil against itself")
    ap.add_argument("--vigil-port", type=int, default=9281)
    ap.add_argument("--fastapi-port", type=int, default=8099)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--lua-check", action="store_true",
                    help="check every answer in wrk's Lua (the head of Vigil's answer) instead of Vigil's counters")
    args = ap.parse_args()

    server_cpus, wrk_cpus = ("1", "0") if args.pin == "core" else (None, None)
    body = json.dumps({"docs": documents(args.docs)}).encode()
    # Vigil's answer starts {"took":..,"model_id":..,"model_version":..,"errors":..: its flag is in the
    # first 256 bytes (the baseline's answer has none).
    _, lua_checked = write_lua(body, "application/json", check_substring='"errors":true', within=256)
    _, lua_plain = write_lua(body, "application/json", in_lua=False)
    lua = lua_checked if args.lua_check else lua_plain
    log(f"[bench] body: {len(body)} bytes, {args.docs} docs; pin={args.pin}; load before: {loadavg()}")

    vigil = Server("vigil", [str(vigil_binary()), "serve", "--listen", f"127.0.0.1:{args.vigil_port}",
                             "--models", str(BUNDLE)],
                   f"http://127.0.0.1:{args.vigil_port}/v2/models/bench_xgb/ready", cpus=server_cpus,
                   env={"VIGIL_LOG": "warn"})
    fa_cmd = ([str(VENV_PY), "-m", "uvicorn", "baselines.fastapi_scorer:app", "--port", str(args.fastapi_port),
               "--workers", "2", "--log-level", "warning", "--no-access-log"] if args.pin == "none" else
              [str(VENV_PY), str(REPO / "models/baselines/fastapi_scorer.py"), "--port", str(args.fastapi_port)])
    servers = [vigil]
    try:
        fastapi = Server("fastapi", fa_cmd, f"http://127.0.0.1:{args.fastapi_port}/health",
                         cwd=REPO / "models", cpus=server_cpus)
        servers.append(fastapi)
        metrics = f"http://127.0.0.1:{args.vigil_port}/metrics"
        cases = [("score", vigil, f"http://127.0.0.1:{args.vigil_port}/_vigil/score/bench_xgb?explain=never",
                  fastapi, f"http://127.0.0.1:{args.fastapi_port}/score/bench_xgb")]
        if args.results_only:
            cases.append(("results", vigil,
                          f"http://127.0.0.1:{args.vigil_port}/_vigil/score/bench_xgb?explain=never&results_only=true",
                          fastapi, f"http://127.0.0.1:{args.fastapi_port}/score/bench_xgb"))
        if args.explain:
            fx = Server("fastapi-explain", [str(VENV_PY), str(Path(__file__).parent / "fastapi_explain.py"),
                                            "--port", str(args.fastapi_port + 1)],
                        f"http://127.0.0.1:{args.fastapi_port + 1}/health", cpus=server_cpus, timeout=300)
            servers.append(fx)
            cases.append(("explain", vigil, f"http://127.0.0.1:{args.vigil_port}/_vigil/score/bench_xgb?explain=all",
                          fx, f"http://127.0.0.1:{args.fastapi_port + 1}/explain/bench_xgb"))
        if args.telemetry:
            off_config = Path(tempfile.mkdtemp(prefix="bench-vigil-")) / "no-telemetry.toml"
            off_config.write_text("[metrics]\nenabled = false\n")
            tel = []
            for tag, port, extra, env in (("on", args.vigil_port + 10, [], {"VIGIL_LOG": "info", "VIGIL_LOG_FORMAT": "ecs"}),
                                          ("off", args.vigil_port + 11, ["--config", str(off_config)], {"VIGIL_LOG": "off"})):
                srv = Server(f"vigil-telemetry-{tag}", [str(vigil_binary()), "serve", "--listen", f"127.0.0.1:{port}",
                                                        "--models", str(BUNDLE)] + extra,
                             f"http://127.0.0.1:{port}/v2/models/bench_xgb/ready", cpus=server_cpus, env=env)
                servers.append(srv)
                tel.append((srv, f"http://127.0.0.1:{port}/_vigil/score/bench_xgb?explain=never"))
            cases.append(("telemetry", tel[0][0], tel[0][1], tel[1][0], tel[1][1]))
        # Same answers: Vigil's probabilities equal the baseline's (a wrong service is not a baseline).
        v = json.loads(post_json(cases[0][2], body))["docs"]
        f = json.loads(post_json(cases[0][4], body))["probabilities"]
        diff = max(abs(d["doc"]["ml"]["inference"]["bench_xgb"]["score"] - p[1])
                   for d, p in zip(v, f))
        log(f"[bench] max |Vigil - FastAPI| positive-class probability over the body: {diff:.2e}")
        if diff > 1e-5:
            raise SystemExit("the two services disagree; not benchmarking")

        results = {}
        for name, vs, vurl, fs, furl in cases:
            runs = {"vigil": [], "baseline": []}
            # Metrics are off on one side of the telemetry case: its answers are checked in Lua.
            script = lua_checked if name == "telemetry" else lua
            on_server = script is lua_plain
            for r in range(args.rounds):
                for who, srv, url in (("vigil", vs, vurl), ("baseline", fs, furl)):
                    run_wrk(url, script, args.warmup, args.connections, cpus=wrk_cpus, server=srv)
                    before = vigil_counts(metrics) if on_server and who == "vigil" else None
                    res = run_wrk(url, script, args.seconds, args.connections, cpus=wrk_cpus, server=srv)
                    if before is not None:
                        checked_on_server(metrics, before, res, args.docs, args.connections)
                    res["docs_s"] = res["rps"] * args.docs
                    res["load"] = float(loadavg().split()[0])
                    runs[who].append(res)
                    log(f"[bench] {name} round {r + 1} {who}: {res['docs_s']:,.0f} docs/s, p50 {res['p50_ms']:.2f} ms, "
                        f"p99 {res['p99_ms']:.2f} ms, server cpu {res['server_cpu']:.2f}, wrk cpu {res['wrk_cpu']:.2f}, "
                        f"load {res['load']:.2f}")
            ratios = sorted(a["docs_s"] / b["docs_s"] for a, b in zip(runs["vigil"], runs["baseline"]))
            results[name] = {"vigil": median_runs(runs["vigil"]), "baseline": median_runs(runs["baseline"]),
                             "ratio_per_round": ratios, "ratio_median": ratios[len(ratios) // 2]}
    finally:
        for s in servers:
            s.stop()

    print(f"scoring API, bench_xgb, {args.docs} docs/request, wrk -t1 -c{args.connections} -d{args.seconds:g}s "
          f"after a {args.warmup:g} s warm-up, pin={args.pin}, medians of {args.rounds} rounds, answers checked "
          f"{'in Lua' if args.lua_check else 'by Vigil counters'}, load after: {loadavg()}")
    print("| case | service | docs/s | p50 ms | p99 ms | server CPU (cores) | wrk CPU (cores) |")
    print("|---|---|---|---|---|---|---|")
    labels = {"score": ("Vigil `?explain=never`", "FastAPI + onnxruntime"),
              "results": ("Vigil `?explain=never&results_only=true`", "FastAPI + onnxruntime"),
              "explain": ("Vigil `?explain=all` (TreeSHAP top 5)", "FastAPI + onnxruntime + xgboost pred_contribs top 5"),
              "telemetry": ("Vigil, metrics + ECS logs on", "Vigil, metrics and logs off")}
    for name, r in results.items():
        for who, label in zip(("vigil", "baseline"), labels[name]):
            x = r[who]
            print(f"| {name} | {label} | {x['docs_s']:,.0f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | "
                  f"{x['server_cpu']:.2f} | {x['wrk_cpu']:.2f} |")
    for name, r in results.items():
        what = "on / off" if name == "telemetry" else "Vigil / baseline"
        print(f"{name}: {what} docs/s = {r['ratio_median']:.3f}x (median of per-round ratios "
              f"{', '.join(f'{x:.3f}' for x in r['ratio_per_round'])})")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
