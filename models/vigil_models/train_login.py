"""Trains the first login-risk model on simulated authentication events and writes the bundle
`models/login-risk/` and the demo sample `models/samples/auth-events.ndjson`.

    cd models && ../.venv/bin/python -m vigil_models.train_login

Deterministic (fixed seeds). Data: `vigil_models.simulate` (250 users, 42 days); time-ordered
split: the first 28 days train, the last 14 days test. Features are per event only (no history,
no per-user baseline), computed by the contract's transforms from ECS fields.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .features import FeatureExtractor
from .metrics import at_fpr, markdown_metrics, summary
from .simulate import ATTACKS, COUNTRIES, HOSTING_ASNS, simulate
from .xgb_bundle import export_binary

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent
SCRIPT = "models/vigil_models/train_login.py"
SEED = 7
USERS, DAYS, TRAIN_DAYS = 250, 42, 28
START = "2026-01-05T00:00:00Z"

AUTOMATION_TOKENS = ["curl", "python", "headless", "wget", "go-http-client", "okhttp", "java/",
                     "libwww", "hydra", "scrapy", "powershell", "urllib", "httpclient"]
COUNTRY_VOCAB = sorted(COUNTRIES)  # every country the simulator knows; others -> unknown


def _f(name, source, kind, missing=None, **kw):
    return {"name": name, "source": source, "transform": {"kind": kind, **kw}, "missing": missing}


FEATURES = [
    _f("hour_of_day_utc", "@timestamp", "hour_of_day"),
    _f("day_of_week_utc", "@timestamp", "day_of_week"),
    _f("is_weekend_utc", "@timestamp", "is_weekend"),
    _f("outcome", "event.outcome", "categorical", vocabulary=["success", "failure"]),
    _f("country", "source.geo.country_iso_code", "categorical", vocabulary=COUNTRY_VOCAB),
    _f("hosting_asn", "source.as.number", "categorical",
       vocabulary=[str(a) for a in HOSTING_ASNS], unknown=-1),
    _f("geo_lat", "source.geo.location.lat", "numeric"),
    _f("geo_lon", "source.geo.location.lon", "numeric"),
    _f("ua_length", "user_agent.original", "length"),
    _f("ua_entropy", "user_agent.original", "entropy"),
    _f("ua_digit_ratio", "user_agent.original", "digit_ratio"),
    _f("ua_automation", "user_agent.original", "token_presence", tokens=AUTOMATION_TOKENS),
    _f("ua_browser", "user_agent.original", "token_presence", tokens=["mozilla/5.0"]),
    _f("ua_mobile", "user_agent.original", "token_presence", tokens=["mobile", "android", "iphone"]),
    _f("ua_headless", "user_agent.original", "token_presence", tokens=["headless"]),
    _f("user_is_service", "user.name", "token_presence", tokens=["svc-", "service", "bot"]),
    _f("user_name_length", "user.name", "length"),
    _f("user_name_digits", "user.name", "digit_ratio"),
]


def manifest() -> dict:
    return {
        "name": "login-risk",
        "version": "0.1.0",
        "description": "Scores one authentication event (ECS) for account-attack risk from the event "
                       "alone: time, outcome, country, hosting/VPN ASN, user agent shape, account "
                       "name shape. Trained on simulated data; no per-user history yet. See MODEL_CARD.md.",
        "task": "binary",
        "model": {"file": "model.onnx", "sha256": "", "output": "probabilities"},
        "classes": ["benign", "malicious"],
        "positive_class": "malicious",
        "threshold": 0.5,
        "target_field": "ml.inference.login-risk",
        "explanation": {"method": "auto", "top_k": 5, "min_score": 0.0, "budget": 16},
        "features": FEATURES,
        "reference_sample": "reference.json",
        "golden": {"file": "golden.json", "tolerance": 1e-5},
    }


def strip_labels(e: dict) -> dict:
    doc = json.loads(json.dumps(e))
    doc.pop("vigil", None)
    return doc


def _day(e: dict, t0: datetime) -> float:
    t = datetime.strptime(e["@timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return (t - t0).total_seconds() / 86400.0


def train(X, y):
    import xgboost as xgb

    model = xgb.XGBClassifier(n_estimators=100, max_depth=4, learning_rate=0.1, subsample=0.9,
                              colsample_bytree=0.9, min_child_weight=5.0, n_jobs=2, random_state=SEED,
                              tree_method="hist", eval_metric="logloss")
    model.fit(X, y)
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Train the login-risk model")
    ap.add_argument("--out", default=str(MODELS / "login-risk"))
    ap.add_argument("--samples", default=str(MODELS / "samples" / "auth-events.ndjson"))
    args = ap.parse_args(argv)
    out = Path(args.out)

    events = simulate(USERS, DAYS, SEED, START)
    t0 = datetime.strptime(START, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    fx = FeatureExtractor(FEATURES)
    X = fx.extract_many(events)
    y = np.array([e["vigil"]["sim"]["label"] == "malicious" for e in events], dtype=np.int64)
    kind = np.array([e["vigil"]["sim"]["attack"] or "benign" for e in events])
    day = np.array([_day(e, t0) for e in events])
    tr, te = np.nonzero(day < TRAIN_DAYS)[0], np.nonzero(day >= TRAIN_DAYS)[0]

    model = train(X[tr], y[tr])
    p_te = model.predict_proba(X[te])[:, 1]
    s_te = summary(y[te], p_te)
    s_tr = summary(y[tr], model.predict_proba(X[tr])[:, 1])

    per_type = {}
    ops = {a["target_fpr"]: a for a in s_te["at_fpr"]}
    for k in ["benign"] + ATTACKS:
        m = kind[te] == k
        row = {"events": int(m.sum())}
        for f, a in ops.items():
            row[f"flagged_at_fpr_{f:g}"] = float((p_te[m] > a["threshold"]).mean()) if m.any() else float("nan")
        row["flagged_at_0.5"] = float((p_te[m] >= 0.5).mean()) if m.any() else float("nan")
        row["mean_score"] = float(p_te[m].mean()) if m.any() else float("nan")
        per_type[k] = row
    # per outcome for the attacks that mix failures and successes
    succ = {}
    for k in ATTACKS:
        m = (kind[te] == k) & (X[te][:, 3] == 0)
        if m.any():
            succ[k] = {"successes": int(m.sum()),
                       "flagged_at_fpr_0.01": float((p_te[m] > ops[0.01]["threshold"]).mean())}

    # golden rows: test events, all attack types represented
    rng = np.random.default_rng(SEED)
    gold = []
    for k in ["benign"] + ATTACKS:
        cand = te[kind[te] == k]
        n = 90 if k == "benign" else 22
        gold.extend(rng.choice(cand, size=min(n, len(cand)), replace=False).tolist())
    gold = np.sort(np.array(gold))
    docs = [strip_labels(events[i]) for i in gold]
    Xg = fx.extract_many(docs)
    parity = export_binary(model, out, manifest(), X[tr], Xg, docs, SCRIPT)

    # demo sample: a few hundred test events, attacks included, labels kept under vigil.sim
    rest = np.setdiff1d(te, gold)
    pick = []
    for k in ["benign"] + ATTACKS:
        cand = rest[kind[rest] == k]
        n = 220 if k == "benign" else 25
        pick.extend(rng.choice(cand, size=min(n, len(cand)), replace=False).tolist())
    samples = Path(args.samples)
    samples.parent.mkdir(parents=True, exist_ok=True)
    with open(samples, "w", encoding="utf-8") as f:
        for i in sorted(pick):
            f.write(json.dumps(events[i], separators=(",", ":")) + "\n")

    gain = model.get_booster().get_score(importance_type="total_gain")
    names = [f["name"] for f in FEATURES]
    imp = sorted(((gain.get(f"f{j}", 0.0), names[j]) for j in range(len(names))), reverse=True)
    counts = {"train": Counter(kind[tr].tolist()), "test": Counter(kind[te].tolist())}
    write_card(out, s_te, s_tr, per_type, succ, parity, imp, counts, len(events))
    (out / "metrics.json").write_text(json.dumps(
        {"test": s_te, "train": {k: s_tr[k] for k in ("roc_auc", "pr_auc", "brier")},
         "per_attack_type": per_type, "attack_successes": succ, "parity": parity,
         "counts": {k: dict(v) for k, v in counts.items()}}, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"test": {k: s_te[k] for k in ("roc_auc", "pr_auc", "brier", "ece")},
                      "at_fpr": [{k: a[k] for k in ("target_fpr", "precision", "recall", "fp")}
                                 for a in s_te["at_fpr"]],
                      "per_type": {k: round(v["flagged_at_fpr_0.01"], 3) for k, v in per_type.items()},
                      "parity": parity}, indent=1))
    return 0


def write_card(out, s_te, s_tr, per_type, succ, parity, imp, counts, n_events):
    feats = "\n".join(
        f"| {i} | `{f['name']}` | `{f['source']}` | `{f['transform']['kind']}` | {_args(f['transform'])} |"
        for i, f in enumerate(FEATURES))
    rows = "\n".join(
        f"| {k} | {counts['train'].get(k, 0)} | {v['events']} | {v['mean_score']:.3f} | "
        f"{v['flagged_at_fpr_0.01']:.3f} | {v['flagged_at_fpr_0.001']:.3f} | {v['flagged_at_0.5']:.3f} |"
        for k, v in per_type.items())
    srows = "\n".join(f"| {k} | {v['successes']} | {v['flagged_at_fpr_0.01']:.3f} |" for k, v in succ.items())
    top = ", ".join(f"`{name}`" for _, name in imp[:8])
    card = f"""# login-risk — model card (v0.1, per-event)

Scores one authentication event (ECS: `event.category: authentication`) for the risk that it is
part of an account attack. Output: the probability of `malicious` (classes `["benign",
"malicious"]`), with a TreeSHAP explanation per event. Bundle written by
`models/vigil_models/train_login.py` (deterministic):

    bash models/setup.sh
    cd models && ../.venv/bin/python -m vigil_models.train_login

**This first version sees one event at a time.** It has no per-user history (usual country,
device, hours) and no counts (failures in the last minutes, users per source IP). A later
version will add stateful behavioural features; until then the attacks that are only visible
against a user's own history are mostly missed (see the recall per attack type).

## Data

No public labelled login data set is small and open enough to ship, so the model is trained on
the project's simulator (`models/vigil_models/simulate.py`, seed {SEED}): {USERS} users over {DAYS}
days, {n_events:,} events. Users have a home country, ISP, office network or corporate VPN egress
(a cloud ASN), browsers and phones, working hours in their time zone; some travel, some use a
commercial VPN; a few service accounts log in from cloud ASNs with scripting user agents
(benign automation). Benign failures are typos followed by a success. Attacks, labelled
`vigil.sim.label` / `vigil.sim.attack`: password spray, credential stuffing, brute force then
success, new-country takeover, impossible travel (see the simulator's docstring).

Split by time: days 0-{TRAIN_DAYS - 1} train, days {TRAIN_DAYS}-{DAYS - 1} test (attack campaigns
are drawn independently in both periods; the users are the same).

## Model

XGBoost 2.1.4, 100 trees of depth <= 4 (min_child_weight 5), exported with onnxmltools 1.13 ({parity['trees']} trees,
{parity['nodes']:,} ONNX nodes). Parity at export: onnxruntime vs XGBoost probabilities max |diff|
{parity['ort_vs_native']:.2e}; ONNX margin vs XGBoost margin {parity['onnx_margin_vs_native']:.2e};
sum of contributions vs margin {parity['local_accuracy']:.2e}.

## Features ({len(FEATURES)}, per event)

| # | name | source | transform | arguments |
|---|---|---|---|---|
{feats}

Time features are in UTC (the contract's transforms), not the user's local time. Most important
by total gain: {top}.

## Test metrics (last {DAYS - TRAIN_DAYS} days)

{markdown_metrics(s_te, split='test')}

Training period, for comparison: ROC-AUC {s_tr['roc_auc']:.4f}, PR-AUC {s_tr['pr_auc']:.4f},
Brier {s_tr['brier']:.4f}.

### Recall per attack type (test)

Share of events flagged at the operating points above (score > threshold at FPR 1e-2 / 1e-3)
and at the default threshold 0.5. The `benign` row is the false-positive rate.

| type | train events | test events | mean score | flagged @FPR 1e-2 | flagged @FPR 1e-3 | flagged @0.5 |
|---|---|---|---|---|---|---|
{rows}

Successful logins within attacks (the events that matter most), flagged at FPR 1e-2:

| type | successes (test) | flagged |
|---|---|---|
{srows}

## Known limitations (honest)

- **Simulated data.** The metrics measure how well the model separates the simulator's attacks
  from the simulator's users; they are not an estimate of performance on your logs. The
  simulator's choices (which ASNs are hosting, which user agents attackers use, how often users
  travel) are baked into the model. Retrain on your own labelled events before relying on it.
- **No history, no context.** New-country takeover and impossible travel are defined relative
  to the user's own past; a per-event model only sees that the country/ISP is globally unusual,
  so it misses takeovers from countries where other users live and most impossible travel.
  Credential stuffing through residential proxies with browser user agents looks like a normal
  failed login. A failed login from a hosting ASN with a script user agent is easy; a single
  successful login from a residential ISP with a normal browser is not.
- **Benign automation and VPNs** share features with attacks (cloud ASNs, scripting user
  agents); the simulator includes both, real environments have far more variety.
- **Few examples of the rare attacks**: the test period holds only {per_type['new_country_takeover']['events']}
  new-country-takeover and {per_type['impossible_travel']['events']} impossible-travel events, so their recall
  has a wide error bar (one event is {100 / max(per_type['impossible_travel']['events'], 1):.0f} points).
- **Calibration under shift**: test campaigns differ from the training ones (other IPs, user
  agents, countries), and the model is under-confident on them (see the reliability table:
  events scored 0.1-0.5 are mostly malicious). Rank by score; do not read it as a probability.
- **Time is UTC**: working-hours patterns differ per time zone and are only partly captured.
- **Categorical encodings** (`country`, `hosting_asn`) use fixed vocabularies; countries and
  ASNs outside them map to the unknown index.
- Scores reflect the simulator's attack rate (~{100 * s_te['positives'] / s_te['n']:.0f}% of test events),
  far above a real environment's: precision in production will be much lower at the same threshold.
"""
    (out / "MODEL_CARD.md").write_text(card, encoding="utf-8")


def _args(t: dict) -> str:
    parts = []
    for k, v in t.items():
        if k == "kind":
            continue
        if isinstance(v, list):
            v = ", ".join(v[:6]) + (f", … ({len(v)})" if len(v) > 6 else "")
        parts.append(f"{k}: {v}")
    return "; ".join(parts).replace("|", "\\|")


if __name__ == "__main__":
    sys.exit(main())
