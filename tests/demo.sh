#!/usr/bin/env bash
# The main job on the embedded defaults, end to end on this machine:
#   a local Elasticsearch → `vigil setup` (templates) → Vigil in front of it (shipped models,
#   default routes) → the bundled sample events sent through _bulk → a summary of what was scored
#   and why → the detection rules run once over the sample period → the alerts and riskiest users.
#   make demo
# VIGIL_DEMO_PORT (default 9280) is Vigil's port; VIGIL_DEMO_ES_PORT starts Elasticsearch on that
# port instead of the harness default (9200).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
VIGIL_PORT=${VIGIL_DEMO_PORT:-9280}
VIGIL="http://127.0.0.1:$VIGIL_PORT"

say() { printf '\n== %s\n' "$*"; }

say "building vigil"
# The dev profile: it shares its build with `make test`, and Vigil's own crate is optimised in
# it (Cargo.toml), which is where the scoring time goes.
cargo build --locked -q --bin vigil
BIN=${CARGO_TARGET_DIR:-$REPO/target}/debug/vigil

say "starting Elasticsearch"
ES_URL=$(tests/elasticsearch/start ${VIGIL_DEMO_ES_PORT:+--port "$VIGIL_DEMO_ES_PORT"})
echo "$ES_URL"

# The embedded defaults, plus where the demo's rules read events (indices the templates map).
CONFIG=$(mktemp /tmp/vigil-demo.XXXXXX.toml)
"$BIN" check-config >/dev/null
{
  # Everything but [rules] (the last section), then the demo's [rules].
  sed '/^\[rules\]/,$d' sidecar/config/default.toml
  cat <<TOML
[rules]
enabled = false
dir = "rules"
events_index = "vigil-events-*"
max_catchup = 48

# Behavioural state seeded from the indexed sign-ins at startup (docs/behaviour-state.md); the
# sample is dated early 2026, so the look-back window ends at the sample's end.
[features]
warm_start = true
warm_index = "vigil-events-demo-auth-events"
warm_interval = "0"
warm_until = "$(python3 -c '
import json
ts = max(json.loads(l)["@timestamp"] for l in open("models/samples/auth-events.ndjson") if l.strip())
print(ts)')"
TOML
} >"$CONFIG"
export VIGIL_ES_URL=$ES_URL
# Rules keep checkpoints: start the demo's rule state afresh so a re-run replays the sample.
curl -s -XDELETE "$ES_URL/vigil-rules-state" >/dev/null || true

say "installing templates into Elasticsearch (vigil setup)"
"$BIN" setup --config "$CONFIG"

LOG=$(mktemp /tmp/vigil-demo.XXXXXX.log)
VIGIL_PID=
trap 'if [ -n "$VIGIL_PID" ]; then kill $VIGIL_PID 2>/dev/null || true; fi' EXIT
start_vigil() {
  VIGIL_LISTEN=127.0.0.1:$VIGIL_PORT "$BIN" serve --config "$CONFIG" >>"$LOG" 2>&1 &
  VIGIL_PID=$!
  for _ in $(seq 1 100); do
    curl -sf "$VIGIL/_vigil/health/ready" >/dev/null 2>&1 && break
    kill -0 $VIGIL_PID 2>/dev/null || { cat "$LOG"; exit 1; }
    sleep 0.2
  done
}

say "starting vigil on $VIGIL (shipped models, default routes)"
start_vigil
curl -sf "$VIGIL/_vigil/models" >/tmp/vigil-demo-models.json
python3 - /tmp/vigil-demo-models.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for m in r["models"]:
    print(f'  {m["name"]} {m["version"]}: {len(m["features"])} features, {m["engine"]}, explanations {m["explanation"]["method"]}')
for x in r["refused"]:
    print(f'  REFUSED {x["dir"]}: {x["reason"]}')
PY

say "sending the sample events through $VIGIL/_bulk"
# The sign-ins go in two parts with a restart of vigil between them, as a redeploy or a new
# replica would see them: the second vigil seeds its behavioural state from the first part.
send() { # sample-file index part (first|rest|all) label
  python3 - "$REPO/models/samples/$1.ndjson" "$2" "$3" >"/tmp/vigil-demo-$1-$3.bulk" <<'PY'
import json, sys
lines = [l.strip() for l in open(sys.argv[1]) if l.strip()]
part = {"first": lines[:1000], "rest": lines[1000:], "all": lines}[sys.argv[3]]
for line in part:
    print(json.dumps({"create": {"_index": sys.argv[2]}}))
    print(line)
PY
  curl -sf -XPOST "$VIGIL/_bulk?refresh=true&filter_path=errors,items.*.status" \
    -H 'content-type: application/x-ndjson' --data-binary "@/tmp/vigil-demo-$1-$3.bulk" |
    python3 -c 'import json,sys,collections; r=json.load(sys.stdin); c=collections.Counter(list(i.values())[0]["status"] for i in r["items"]); print(f"  '"$4"': {sum(c.values())} sent, statuses {dict(c)}")'
}
for sample in auth-events urls; do curl -s -XDELETE "$ES_URL/vigil-events-demo-$sample" >/dev/null; done
send auth-events vigil-events-demo-auth-events first "auth-events (first 1000)"
kill $VIGIL_PID; wait $VIGIL_PID 2>/dev/null || true
echo "  vigil restarted; warm start seeds its behavioural state from Elasticsearch:"
start_vigil
for _ in $(seq 1 150); do
  state=$(curl -sf "$VIGIL/_vigil/health/ready" | python3 -c 'import json,sys; print(json.load(sys.stdin)["behaviour"]["state"])')
  [ "$state" != warming ] && break
  sleep 0.2
done
curl -sf "$VIGIL/_vigil/health/ready" | python3 -c 'import json,sys; b=json.load(sys.stdin)["behaviour"]; print("  behaviour state %s: %d users and source IPs seeded (without it, every user would look new again)" % (b["state"], b["entities"]))'
send auth-events vigil-events-demo-auth-events rest "auth-events (last 500)"
send urls vigil-events-demo-urls all urls

say "what was scored (read back from Elasticsearch)"
python3 - "$ES_URL" <<'PY'
import json, sys, urllib.request
es = sys.argv[1]
def search(index, body):
    req = urllib.request.Request(f"{es}/{index}/_search", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))
for index, model, show in [("vigil-events-demo-auth-events", "login-risk", lambda s: f'{s["user"]["name"]} from {s["source"]["geo"].get("country_iso_code")} AS{s["source"]["as"]["number"]} ({s["event"]["outcome"]})'),
                           ("vigil-events-demo-urls", "url-phishing", lambda s: s["url"]["original"][:70])]:
    field = f"ml.inference.{model}"
    total = search(index, {"size": 0, "track_total_hits": True})["hits"]["total"]["value"]
    scored = search(index, {"size": 0, "query": {"exists": {"field": f"{field}.score"}}})["hits"]["total"]["value"]
    flagged = search(index, {"size": 0, "query": {"range": {f"{field}.score": {"gte": 0.5}}}})["hits"]["total"]["value"]
    print(f"\n{index}: {total} documents, {scored} scored by {model}, {flagged} with score >= 0.5")
    top = search(index, {"size": 5, "sort": [{f"{field}.score": "desc"}], "query": {"exists": {"field": f"{field}.score"}}})
    for hit in top["hits"]["hits"]:
        s = hit["_source"]
        r = s["ml"]["inference"][model]
        why = ", ".join(f'{f["feature_name"]} {f["importance"]:+.2f}' for f in r.get("feature_importance", [])[:3])
        truth = (s.get("vigil", {}).get("sim", {}) or {}).get("label") or s.get("labels", {}).get("vigil_truth")
        print(f"  {r['score']:.3f} {r['predicted_value']:<10} {show(s)}  [truth: {truth}]\n         because {why}")
PY

say "detection rules, run once over the sample period (vigil rules run --once)"
# A rule's first run (no checkpoint: the demo deleted the state) covers its last max_catchup
# windows: 48 five-minute windows = 4 hours back from 10 minutes after the last sample event,
# which spans the whole sample. The risk job then scores every alert up to --now.
END=$(python3 -c '
import json, datetime
ts = max(json.loads(l)["@timestamp"] for l in open("models/samples/auth-events.ndjson") if l.strip())
t = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")) + datetime.timedelta(minutes=10)
print(t.strftime("%Y-%m-%dT%H:%M:%SZ"))')
"$BIN" rules run --once --config "$CONFIG" --now "$END" | tail -n 25
curl -s -XPOST "$ES_URL/logs-vigil.alert-*,vigil-risk-*/_refresh" >/dev/null || true

say "alerts and riskiest users"
python3 - "$ES_URL" <<'PY'
import json, sys, urllib.request
es = sys.argv[1]
def search(index, body):
    req = urllib.request.Request(f"{es}/{index}/_search?ignore_unavailable=true", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))
alerts = search("logs-vigil.alert-*", {"size": 20, "sort": [{"event.risk_score": "desc"}, {"@timestamp": "asc"}]})
print(f'{alerts["hits"]["total"]["value"]} alerts')
for h in alerts["hits"]["hits"]:
    a = h["_source"]
    user = (a.get("user") or {}).get("name", "-")
    print(f'  [{a["event"]["risk_score"]:>3}] {a["rule"]["name"]:<45} user={user}\n        {a.get("message", "")[:110]}')
risk = search("vigil-risk-*", {"size": 5, "sort": [{"user.risk.calculated_score_norm": "desc"}]})
print("riskiest users:")
for h in risk["hits"]["hits"]:
    r = h["_source"]["user"]
    print(f'  {r["name"]:<28} {r["risk"]["calculated_score_norm"]:6.1f} {r["risk"]["calculated_level"]}')
PY
echo
echo "Elasticsearch keeps running at $ES_URL (stop it with tests/elasticsearch/stop); vigil's log: $LOG"
