#!/usr/bin/env python3
"""Drop-in `_bulk` throughput, 1,000-document bulks, in one run:

  (a) through Vigil to a null upstream (sidecar/examples/null_es.rs, a stand-in that answers every
      action with success at once): Vigil's own ceiling;
  (b) through Vigil to the real test Elasticsearch;
  (c) the same bulks straight to the real Elasticsearch.

    VIGIL_ES_JIT=full tests/elasticsearch/start --port 9270
    cargo build --release && cargo build --release --example null_es
    .venv/bin/python sidecar/benches/scripts/bulk_throughput.py --es-url http://127.0.0.1:9270
    tests/elasticsearch/stop --port 9270

Documents: models/samples/auth-events.ndjson repeated to 1,000 per bulk, each under
`{"index":{"_index":"vigil-bench-auth"}}`; Vigil runs its embedded defaults (`vigil serve`,
models/ as shipped), whose routes send authentication events to `login-risk`, and
VIGIL_ES_URL points it at the upstream. Before timing, one bulk goes through Vigil to
Elasticsearch with refresh and every document must come back with `ml.inference.login-risk`.

Fresh events (the default): every bulk carries events the behavioural state has not seen, as a
live stream would. Request k of a run goes to population k mod 32 (user names get a suffix, the
first octet of source IPs moves) and is shifted by floor(k / 32) x 3 hours, so a user's history
grows by about two events every 32 bulks and no bulk repeats an earlier one (a repeated event is
a duplicate the state skips without computing its features). Each Vigil process keeps its own
sequence across runs. --repeat sends the same bulk every time instead (what sessions 3 and 4
measured).

Throughput: wrk, 1 thread, 8 connections, --seconds per case after a warm-up, medians over
--rounds; the index is deleted after every Elasticsearch case. Latency added by Vigil: one
connection (requests one after another, so no queueing in either path), p50/p99 through Vigil to
Elasticsearch against direct, same rounds. A third latency case sends the documents as Vigil
enriched them (read back from the check bulk) straight to Elasticsearch: it splits the added
latency into Elasticsearch storing the results (larger documents, which its own inference
processor would store too) and Vigil's own time.

--min-score S: login-risk explains only documents scoring at least S (the bundle's
`explanation.min_score`, 0 as shipped, so every document is explained). Vigil then runs a copy of the
embedded defaults whose `[models] paths` point at a copy of models/ with that one manifest value
changed; the check bulk reports how many documents carry `feature_importance`. This measures what an
operator who explains only alert-level scores on a high-volume stream would see.

--mapped: first install Vigil's templates (`vigil setup`) and write to `vigil-events-bench`, which
they map (ECS fields as keywords, `ml.inference.*` typed), as a deployment would; without it the
index is dynamically mapped (every string as text plus keyword) in both paths.

Nothing is pinned: Elasticsearch, Vigil, null_es and wrk share the 2 cores, as they would on one
machine. The CPU each process used during a case is printed so a saturated one is visible;
Elasticsearch's too during the ceiling case, which does not use it. Before each ceiling case the
script waits (up to --idle-wait seconds) until Elasticsearch uses less than a tenth of a core,
so that nothing it still does after the previous round is counted against Vigil's ceiling
(measured in session 14: it was idle within a second); --idle-wait 0 does not wait.

Events must stay behind the machine's clock: the behavioural state skips events stamped more
than 5 minutes ahead of it as clock skew, and a run over skipped events measures a state that
computes nothing. The samples are from February 2026 and request k is shifted by
floor(k / 32) x 3 hours, so request numbers up to a few tens of thousands stay in the past.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO, Server, log, loadavg, lua_check, median_runs, run_wrk,  # noqa: E402
                    lua_report, tree_cpu_seconds, vigil_binary, write_lua)

INDEX = "vigil-bench-auth"


def es(method: str, url: str, body: bytes | None = None, ctype: str = "application/json") -> dict:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        if method == "DELETE" and e.code == 404:
            return {}
        raise


def bulk_body(n: int) -> bytes:
    events = [line for line in (REPO / "models/samples/auth-events.ndjson").read_text().splitlines() if line.strip()]
    action = json.dumps({"index": {"_index": INDEX}})
    out = []
    for i in range(n):
        out.append(action)
        out.append(events[i % len(events)])
    return ("\n".join(out) + "\n").encode()


POPULATIONS = 32
STEP_MS = 3 * 3600 * 1000

# wrk script for fresh events: the template's placeholders filled per request (see the module doc).
FRESH_LUA = """
local f = assert(io.open("{template}", "rb"))
local tpl = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-ndjson"
local seq = tonumber(os.getenv("BENCH_SEQ") or "0")
local function iso(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(ms / 1000)) .. string.format(".%03dZ", ms % 1000)
end
-- The template cut once into literal parts and placeholders (kind T, U or I, and its number).
local parts, kinds, args, pos = {}, {}, {}, 1
while true do
  local s, e, kind, arg = tpl:find("@@(%u)(%d*)@@", pos)
  if not s then break end
  parts[#parts + 1] = tpl:sub(pos, s - 1)
  kinds[#kinds + 1] = kind
  args[#args + 1] = tonumber(arg) or 0
  pos = e + 1
end
local tail = tpl:sub(pos)
local buf = {}
request = function()
  local k = seq
  seq = seq + 1
  local pop = k % {populations}
  local shift = math.floor(k / {populations}) * {step}
  local suffix = "~" .. string.char(97 + math.floor(pop / 26), 97 + pop % 26)
  local n = 0
  for i = 1, #parts do
    local kind, v = kinds[i]
    if kind == "T" then
      v = iso(args[i] + shift)
    elseif kind == "U" then
      v = suffix
    else
      v = tostring((args[i] - 1 + pop) % 223 + 1)
    end
    buf[n + 1] = parts[i]
    buf[n + 2] = v
    n = n + 2
  end
  buf[n + 1] = tail
  return wrk.format(nil, nil, nil, table.concat(buf, "", 1, n + 1))
end
"""


def fresh_template(n: int) -> str:
    """The bulk with placeholders: @@T<ms>@@ for @timestamp, @@U@@ after user.name, @@I<a>@@ for
    the first octet of source.ip."""
    events = [json.loads(line) for line in (REPO / "models/samples/auth-events.ndjson").read_text().splitlines()
              if line.strip()]
    action = json.dumps({"index": {"_index": INDEX}})
    out = []
    for i in range(n):
        e = json.loads(json.dumps(events[i % len(events)]))
        ms = int(datetime.fromisoformat(e["@timestamp"].replace("Z", "+00:00")).timestamp() * 1000)
        e["@timestamp"] = f"@@T{ms}@@"
        if isinstance(e.get("user", {}).get("name"), str):
            e["user"]["name"] += "@@U@@"
        ip = e.get("source", {}).get("ip")
        if isinstance(ip, str) and ip.count(".") == 3:
            a, rest = ip.split(".", 1)
            e["source"]["ip"] = f"@@I{a}@@.{rest}"
        out.append(action)
        out.append(json.dumps(e, separators=(",", ":")))
    return "\n".join(out) + "\n"


def render(template: str, k: int) -> bytes:
    """Request k of the template, exactly as FRESH_LUA builds it."""
    pop, shift = k % POPULATIONS, (k // POPULATIONS) * STEP_MS
    suffix = "~" + chr(97 + pop // 26) + chr(97 + pop % 26)

    def iso(m: re.Match) -> str:
        ms = int(m.group(1)) + shift
        return datetime.fromtimestamp(ms // 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"

    body = re.sub(r"@@T(\d+)@@", iso, template).replace("@@U@@", suffix)
    body = re.sub(r"@@I(\d+)@@", lambda m: str((int(m.group(1)) - 1 + pop) % 223 + 1), body)
    return body.encode()


def min_score_config(min_score: float) -> Path:
    """The embedded defaults, reading a copy of models/ whose login-risk explains only documents
    scoring at least `min_score`. Every other file is a symlink to the shipped one."""
    d = Path(tempfile.mkdtemp(prefix="bench-models-"))
    for bundle in (REPO / "models").iterdir():
        if not (bundle / "manifest.json").exists():
            continue
        (d / bundle.name).mkdir()
        for f in bundle.iterdir():
            (d / bundle.name / f.name).symlink_to(f)
    manifest = d / "login-risk" / "manifest.json"
    m = json.loads(manifest.read_text())
    manifest.unlink()
    m["explanation"]["min_score"] = min_score
    manifest.write_text(json.dumps(m, indent=2))
    cfg = (REPO / "sidecar/config/default.toml").read_text()
    new = cfg.replace('paths = ["models"]', f'paths = ["{d}"]', 1)
    assert new != cfg, "sidecar/config/default.toml no longer sets [models] paths as expected"
    (d / "vigil.toml").write_text(new)
    return d / "vigil.toml"


def es_pid(es_url: str) -> int | None:
    port = es_url.rsplit(":", 1)[1].strip("/")
    p = Path(f"/tmp/vigil-es-{port}/es.pid")
    if not p.exists():
        p = next(Path(f"/tmp/vigil-es-{port}").glob("*.pid"), p) if Path(f"/tmp/vigil-es-{port}").exists() else p
    try:
        return int(p.read_text().strip())
    except (OSError, ValueError):
        return None


def skipped_events(vigil_url: str) -> dict[str, float]:
    """Events the behavioural state skipped, by reason, from a Vigil's `/metrics`."""
    with urllib.request.urlopen(f"{vigil_url}/metrics", timeout=30) as r:
        text = r.read().decode()
    skipped: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r'vigil_behaviour_skipped_total\{reason="([^"]+)"\} (\S+)$', line)
        if m:
            skipped[m.group(1)] = skipped.get(m.group(1), 0.0) + float(m.group(2))
    return skipped


def wait_idle(pid: int | None, limit: float) -> tuple[float, float]:
    """Waits until pid (with its threads and children) used under 0.1 core over a second, at most
    `limit` seconds: how long it waited, and the last second's use."""
    started, used = time.perf_counter(), 0.0
    if pid is None or limit <= 0:
        return 0.0, used
    while time.perf_counter() - started < limit:
        c0 = tree_cpu_seconds(pid)
        time.sleep(1.0)
        used = tree_cpu_seconds(pid) - c0
        if used < 0.1:
            break
    return time.perf_counter() - started, used


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--es-url", default="http://127.0.0.1:9270")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--latency-seconds", type=float, default=10)
    ap.add_argument("--docs", type=int, default=1000, help="documents per bulk")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--null-port", type=int, default=9290)
    ap.add_argument("--vigil-null-port", type=int, default=9282)
    ap.add_argument("--vigil-es-port", type=int, default=9283)
    ap.add_argument("--idle-wait", type=float, default=60,
                    help="seconds to wait at most for Elasticsearch to go idle before each ceiling case")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", action="store_true",
                    help="send the same bulk every time (duplicates the state skips) instead of fresh events")
    ap.add_argument("--min-score", type=float, default=None,
                    help="login-risk explains only documents scoring at least this (shipped: 0, every document)")
    ap.add_argument("--mapped", action="store_true",
                    help="install Vigil's templates and index into vigil-events-bench")
    args = ap.parse_args()
    global INDEX
    if args.mapped:
        INDEX = "vigil-events-bench"

    esu = args.es_url.rstrip("/")
    # `GET /` needs the rest-root module, which the integ-test-zip lacks (tests/README.md).
    nodes = es("GET", esu + "/_nodes/_local?filter_path=nodes.*.version")
    version = next(iter(nodes["nodes"].values()))["version"]
    if args.mapped:
        subprocess.run([str(vigil_binary()), "setup", "--root", str(REPO)], check=True,
                       env={**os.environ, "VIGIL_ES_URL": esu, "VIGIL_LOG": "warn"})
    if args.repeat:
        body = bulk_body(args.docs)
        _, lua = write_lua(body, "application/x-ndjson", check_substring='"errors":true')
    else:
        template = fresh_template(args.docs)
        body = render(template, 0)
        d = Path(tempfile.mkdtemp(prefix="bench-wrk-"))
        (d / "template").write_text(template)
        lua = d / "fresh.lua"
        lua.write_text(FRESH_LUA.replace("{template}", str(d / "template"))
                       .replace("{populations}", str(POPULATIONS)).replace("{step}", str(STEP_MS))
                       + lua_report(lua_check('"errors":true')))
    # Fresh events: the next request number per target (request 0 is the check bulk below).
    seq: dict[str, int] = {}

    def wrk(url: str, script: Path, seconds: float, connections: int, srv: Server | None) -> dict:
        env = None
        if script == lua and not args.repeat:
            env = {"BENCH_SEQ": str(seq.setdefault(url, POPULATIONS))}
        res = run_wrk(url, script, seconds, connections, server=srv, allow_bad=True, env=env)
        if env:
            # Requests still in flight when wrk stopped were built too: skip past them.
            seq[url] += int(res["requests"]) + connections + 8
        return res
    log(f"[bench] Elasticsearch {version} at {esu}; bulk body {len(body)} bytes, {args.docs} docs; "
        f"load before: {loadavg()}")

    null_bin = vigil_binary().parent / "examples" / "null_es"
    if not null_bin.exists():
        sys.exit(f"{null_bin} missing: cargo build --release --example null_es")
    serve = [str(vigil_binary()), "serve"]
    if args.min_score is not None:
        serve += ["--config", str(min_score_config(args.min_score))]
    servers: list[Server] = []
    try:
        null = Server("null_es", [str(null_bin), f"127.0.0.1:{args.null_port}"], f"http://127.0.0.1:{args.null_port}/")
        servers.append(null)
        vn = Server("vigil-null", serve + ["--listen", f"127.0.0.1:{args.vigil_null_port}"],
                    f"http://127.0.0.1:{args.vigil_null_port}/v2/health/ready",
                    env={"VIGIL_ES_URL": f"http://127.0.0.1:{args.null_port}", "VIGIL_LOG": "warn"})
        servers.append(vn)
        ve = Server("vigil-es", serve + ["--listen", f"127.0.0.1:{args.vigil_es_port}"],
                    f"http://127.0.0.1:{args.vigil_es_port}/v2/health/ready",
                    env={"VIGIL_ES_URL": esu, "VIGIL_LOG": "warn"})
        servers.append(ve)

        # The documents really get scored: one bulk through Vigil, refreshed, counted.
        check = INDEX + "-check"
        es("DELETE", f"{esu}/{check}")
        r = es("POST", f"http://127.0.0.1:{args.vigil_es_port}/_bulk?refresh=true",
               body.replace(INDEX.encode(), check.encode()), "application/x-ndjson")
        assert not r.get("errors"), json.dumps(r)[:1000]
        scored = es("POST", f"{esu}/{check}/_count",
                    json.dumps({"query": {"exists": {"field": "ml.inference.login-risk.prediction_probability"}}}).encode())
        explained = es("POST", f"{esu}/{check}/_count", json.dumps(
            {"query": {"exists": {"field": "ml.inference.login-risk.feature_importance.importance"}}}).encode())
        log(f"[bench] check: {scored['count']} of {args.docs} documents indexed through Vigil carry "
            f"ml.inference.login-risk, {explained['count']} with feature_importance")
        if scored["count"] != args.docs:
            raise SystemExit("documents were not scored; not benchmarking")
        hits = es("POST", f"{esu}/{check}/_search",
                  json.dumps({"size": args.docs, "query": {"match_all": {}}}).encode())["hits"]["hits"]
        action = json.dumps({"index": {"_index": INDEX}})
        enriched = ("\n".join(f"{action}\n{json.dumps(h['_source'], separators=(',', ':'))}" for h in hits)
                    + "\n").encode()
        _, enriched_lua = write_lua(enriched, "application/x-ndjson", check_substring='"errors":true')
        log(f"[bench] enriched body {len(enriched)} bytes (plain {len(body)})")
        es("DELETE", f"{esu}/{check}")
        es("DELETE", f"{esu}/{INDEX}")

        pid = es_pid(esu)
        cases = [("vigil_null", f"http://127.0.0.1:{args.vigil_null_port}/_bulk", vn, [vn, null]),
                 ("es_direct", f"{esu}/_bulk", None, []),
                 ("vigil_es", f"http://127.0.0.1:{args.vigil_es_port}/_bulk", ve, [ve])]
        runs: dict[str, list] = {c[0]: [] for c in cases}
        lat: dict[str, list] = {"es_direct": [], "vigil_es": [], "es_enriched": []}
        for rnd in range(args.rounds):
            for name, url, srv, procs in cases:
                pids = [p.proc.pid for p in procs] + ([pid] if pid else [])
                if name == "vigil_null":
                    waited, used = wait_idle(pid, args.idle_wait)
                    log(f"[bench] round {rnd + 1}: waited {waited:.0f} s for Elasticsearch to go idle "
                        f"(last second {used:.2f} cores)")
                wrk(url, lua, args.warmup, args.connections, srv)
                c0, t0 = [tree_cpu_seconds(p) for p in pids], time.perf_counter()
                res = wrk(url, lua, args.seconds, args.connections, srv)
                wall = time.perf_counter() - t0
                res["cpu"] = {str(p): (tree_cpu_seconds(p) - c) / wall for p, c in zip(pids, c0)}
                res["docs_s"] = res["rps"] * args.docs
                res["load"] = float(loadavg().split()[0])
                runs[name].append(res)
                log(f"[bench] round {rnd + 1} {name}: {res['docs_s']:,.0f} docs/s, p50 {res['p50_ms']:.1f} ms, "
                    f"p99 {res['p99_ms']:.1f} ms, bulks with errors {res['bad']:.0f}, cpu {res['cpu']}, wrk cpu "
                    f"{res['wrk_cpu']:.2f}, load {res['load']:.2f}")
                if name != "vigil_null":
                    es("DELETE", f"{esu}/{INDEX}")
            for name, url, srv, script in [(n, u, s, lua) for n, u, s, _ in cases[1:]] + [
                    ("es_enriched", f"{esu}/_bulk", None, enriched_lua)]:
                wrk(url, script, 2, 1, srv)
                res = wrk(url, script, args.latency_seconds, 1, srv)
                lat[name].append(res)
                log(f"[bench] round {rnd + 1} latency {name}, 1 connection: p50 {res['p50_ms']:.1f} ms, "
                    f"p99 {res['p99_ms']:.1f} ms ({res['rps'] * args.docs:,.0f} docs/s)")
                es("DELETE", f"{esu}/{INDEX}")
        # Events ahead of the clock are skipped by the behavioural state, which then computes
        # nothing: a run over them does not measure Vigil's work.
        for port in (args.vigil_null_port, args.vigil_es_port):
            skipped = skipped_events(f"http://127.0.0.1:{port}")
            log(f"[bench] Vigil on {port}: events the behavioural state skipped {skipped}")
            if skipped.get("clock_skew", 0) > 0:
                raise SystemExit("events were stamped ahead of the clock (clock_skew); not a valid run")
    finally:
        for s in servers:
            s.stop()
        try:
            es("DELETE", f"{esu}/{INDEX}")
        except OSError:
            pass

    med = {k: median_runs([{kk: vv for kk, vv in r.items() if kk != "cpu"} for r in v]) for k, v in runs.items()}
    mlat = {k: median_runs(v) for k, v in lat.items()}
    ceiling = sorted(a["docs_s"] / b["docs_s"] for a, b in zip(runs["vigil_null"], runs["es_direct"]))
    through = sorted(a["docs_s"] / b["docs_s"] for a, b in zip(runs["vigil_es"], runs["es_direct"]))
    added = sorted((a["p50_ms"] - b["p50_ms"]) / b["p50_ms"] for a, b in zip(lat["vigil_es"], lat["es_direct"]))
    added99 = sorted((a["p99_ms"] - b["p99_ms"]) / b["p99_ms"] for a, b in zip(lat["vigil_es"], lat["es_direct"]))
    storing = sorted((a["p50_ms"] - b["p50_ms"]) / b["p50_ms"] for a, b in zip(lat["es_enriched"], lat["es_direct"]))
    own = sorted((a["p50_ms"] - b["p50_ms"]) / c["p50_ms"]
                 for a, b, c in zip(lat["vigil_es"], lat["es_enriched"], lat["es_direct"]))
    mid = len(ceiling) // 2

    print(f"_bulk into {INDEX} ({'Vigil templates' if args.mapped else 'dynamic mapping'}), "
          f"{'the same bulk repeated' if args.repeat else 'fresh events every bulk'}, "
          f"{'every document explained' if args.min_score is None else f'explained at score >= {args.min_score:g}'}, "
          f"{args.docs}-document bulks of login events (routed to login-risk), wrk -t1 "
          f"-c{args.connections} -d{args.seconds:g}s after {args.warmup:g} s warm-up, medians of {args.rounds} "
          f"rounds, nothing pinned, Elasticsearch {version}, load after: {loadavg()}")
    print(f"| case | docs/s | p50 ms | p99 ms | bulks with errors (median) |")
    print("|---|---|---|---|---|")
    labels = {"vigil_null": "(a) through Vigil to null_es (Vigil's ceiling)",
              "vigil_es": "(b) through Vigil to Elasticsearch",
              "es_direct": "(c) straight to Elasticsearch"}
    for k in ("vigil_null", "vigil_es", "es_direct"):
        m = med[k]
        print(f"| {labels[k]} | {m['docs_s']:,.0f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | {m['bad']:.0f} |")
    print(f"| latency, 1 connection: straight to Elasticsearch | {mlat['es_direct']['rps'] * args.docs:,.0f} | "
          f"{mlat['es_direct']['p50_ms']:.1f} | {mlat['es_direct']['p99_ms']:.1f} | {mlat['es_direct']['bad']:.0f} |")
    print(f"| latency, 1 connection: through Vigil to Elasticsearch | {mlat['vigil_es']['rps'] * args.docs:,.0f} | "
          f"{mlat['vigil_es']['p50_ms']:.1f} | {mlat['vigil_es']['p99_ms']:.1f} | {mlat['vigil_es']['bad']:.0f} |")
    print(f"| latency, 1 connection: enriched documents straight to Elasticsearch | "
          f"{mlat['es_enriched']['rps'] * args.docs:,.0f} | {mlat['es_enriched']['p50_ms']:.1f} | "
          f"{mlat['es_enriched']['p99_ms']:.1f} | {mlat['es_enriched']['bad']:.0f} |")
    print(f"Vigil's ceiling / Elasticsearch direct: {ceiling[mid]:.1f}x (per round {', '.join(f'{x:.1f}' for x in ceiling)})")
    print(f"through Vigil to Elasticsearch / direct: {through[mid]:.2f}x (per round {', '.join(f'{x:.2f}' for x in through)})")
    print(f"latency Vigil adds, 1 connection, p50: {added[mid] * 100:+.1f}% of direct (per round "
          f"{', '.join(f'{x * 100:+.1f}%' for x in added)}); p99: {added99[mid] * 100:+.1f}%")
    print(f"  of which Elasticsearch storing the results (enriched straight vs plain straight): "
          f"{storing[mid] * 100:+.1f}%; Vigil's own time (through Vigil vs enriched straight): "
          f"{own[mid] * 100:+.1f}% of direct")
    if args.json:
        print(json.dumps({"runs": runs, "latency": lat}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
