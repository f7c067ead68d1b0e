#!/usr/bin/env bash
# Vigil's resident memory under sustained scoring load, nothing scraping /metrics: a bounded
# process stays flat; a queue or recorder that grows without bound shows as a steady climb.
#
#   sidecar/benches/scripts/rss_under_load.sh [SECONDS] [PORT]     (VIGIL_BIN overrides the binary)
#
# Load: wrk, 1 thread, 8 connections, 100-document batches of the bench bundle (the scoring API
# benchmark's body, built by score_api.py's `documents`). Prints the RSS every 10 s and wrk's rate.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
seconds="${1:-60}"
port="${2:-9282}"
bin="${VIGIL_BIN:-$repo/target/release/vigil}"
cd "$repo"
pid=""
work="$(mktemp -d)"
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
"$repo/.venv/bin/python" - "$work/body.json" <<'PY'
import json, sys
sys.path.insert(0, "sidecar/benches/scripts")
import score_api
open(sys.argv[1], "w").write(json.dumps({"docs": score_api.documents(100)}))
PY
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/body.json", "rb"); wrk.body = f:read("*a"); f:close()
LUA
VIGIL_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --models "$repo/sidecar/tests/bundles/bench_xgb" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/models/bench_xgb/ready" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$port/v2/models/bench_xgb/ready" >/dev/null || { echo "vigil ($bin) did not become ready on port $port" >&2; exit 1; }
wrk -t1 -c8 -d"${seconds}s" -s "$work/post.lua" "http://127.0.0.1:$port/_vigil/score/bench_xgb?explain=never" >"$work/wrk.txt" &
load=$!
line="RSS MB every 10 s:"
for _ in $(seq $((seconds / 10))); do
  sleep 10
  line="$line $(($(awk '/VmRSS/{print $2}' "/proc/$pid/status") / 1024))"
done
wait "$load"
echo "$line; $(grep Requests/sec "$work/wrk.txt")"
