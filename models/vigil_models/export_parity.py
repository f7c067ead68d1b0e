"""Writes `sidecar/tests/bundles/behaviour_parity.json`: simulated events with every bad-input
case, and Python's values of behavioural features of every kind, for the Rust parity test.

    cd models && ../.venv/bin/python -m vigil_models.export_parity

File: `{"now": "<RFC 3339>", "replay": "...", "features": [<manifest feature specs>],
"events": [{"document": {...}, "values": [<float or null>, ...], "case": "..."}]}`.
The documents are replayed one at a time, in file order (each its own request, so out-of-order
and late documents stay where they are), through a fresh state, with `now` as the wall clock.
`case` says what a document exercises (absent for plain simulated events).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from .behaviour import StreamExtractor, to_ms
from .bundle import write_json
from .features import as_json_row
from .simulate import _ts, simulate
from .train_login import FEATURES, _b, strip_labels

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "sidecar" / "tests" / "bundles" / "behaviour_parity.json"

PARITY_FEATURES = [f for f in FEATURES if f["transform"]["kind"] in
                   ("first_seen", "count", "distinct_count", "pair_count", "since_last", "velocity_kmh")] + [
    _b("new_ip_for_user_1h", "source.ip", "first_seen", window=3600),
    _b("users_from_ip_5m", "user.name", "pair_count", entity="source.ip", window=300),
    _b("velocity_any_kmh", "source.geo.location", "velocity_kmh"),
    _b("hours_since_last_event_2h", "user.name", "since_last", window=7200),
    _b("distinct_countries_for_user_1d", "source.geo.country_iso_code", "distinct_count", window=86400),
    _b("asn_events_10m", "user.name", "count", entity="source.as.number", window=600),
]


def _at(doc: dict, ms: int) -> dict:
    d = copy.deepcopy(doc)
    d["@timestamp"] = _ts(ms)
    return d


def build(seed: int = 11) -> dict:
    ev = simulate(n_users=40, days=3, seed=seed)
    # a contiguous run around the first brute force, and the events of its victim before it
    first = next(i for i, e in enumerate(ev) if e["vigil"]["sim"]["attack"] == "brute_force")
    run = [strip_labels(e) for e in ev[max(0, first - 150): first + 90]]
    last_ms = to_ms(run[-1]["@timestamp"])
    now = last_ms + 10 * 60_000
    docs: list[tuple[dict, str | None]] = []
    u0 = run[0]["user"]["name"]
    for k, d in enumerate(run):
        docs.append((d, None))
        t = to_ms(d["@timestamp"])
        if k == 20:
            bad = copy.deepcopy(d)
            del bad["@timestamp"]
            docs.append((bad, "no_timestamp"))
            docs.append(({**copy.deepcopy(d), "@timestamp": "yesterday"}, "unparsable_timestamp"))
        elif k == 25:
            bad = copy.deepcopy(d)
            del bad["user"]
            docs.append((bad, "no_user (source.ip features still computed)"))
        elif k == 30:
            docs.append((copy.deepcopy(d), "duplicate of the previous document"))
        elif k == 40:
            docs.append((_at(d, t - 30 * 60_000), "out of order within the lateness (30 min earlier)"))
        elif k == 60:
            docs.append((_at(d, t - 2 * 3_600_000), "too late (2 h older than the user's newest)"))
        elif k == 70:
            bad = copy.deepcopy(d)
            bad["source"]["geo"]["location"] = {"lat": 123.0, "lon": 10.0}
            docs.append((_at(bad, t + 1000), "absurd latitude"))
            bad = copy.deepcopy(d)
            bad["source"]["geo"]["location"] = {"lat": 10.0, "lon": 500.0}
            docs.append((_at(bad, t + 2000), "absurd longitude"))
            bad = copy.deepcopy(d)
            bad["source"]["geo"]["location"] = "not a location"
            docs.append((_at(bad, t + 3000), "unparsable location string"))
        elif k == 80:
            alt = copy.deepcopy(d)
            loc = alt["source"]["geo"]["location"]
            alt["source"]["geo"]["location"] = f"{loc['lat'] + 5},{loc['lon'] + 5}"
            docs.append((_at(alt, t + 60_000), "location as a \"lat,lon\" string"))
            alt = copy.deepcopy(d)
            alt["source"]["geo"]["location"] = [loc["lon"] - 20, loc["lat"] - 10]
            docs.append((_at(alt, t + 120_000), "location as a [lon, lat] array"))
        elif k == 90:
            alt = copy.deepcopy(d)
            alt["@timestamp"] = t + 500
            docs.append((alt, "epoch milliseconds timestamp"))
            flat = {"@timestamp": _ts(t + 700), "user.name": d["user"]["name"], "source.ip": d["source"]["ip"],
                    "event.outcome": "failure", "event.action": "user_login",
                    "source.geo.country_iso_code": "ZZ", "source.as.number": 64512,
                    "user_agent.original": "flattened/1.0"}
            docs.append((flat, "flattened keys, new country and ASN, failure"))
        elif k == 100:
            alt = copy.deepcopy(d)
            alt["@timestamp"] = _ts(t)[:-1] + "+02:00"
            docs.append((alt, "timestamp with an offset (2 h earlier in UTC: too late or out of order)"))
            alt = copy.deepcopy(d)
            alt["user"]["name"] = 4242
            docs.append((_at(alt, t + 10), "numeric user.name (entity rendered as text)"))
            alt = copy.deepcopy(d)
            del alt["source"]["geo"]
            docs.append((_at(alt, t + 20), "no geo at all (source absent: recorded without value)"))
    docs.append((_at(run[-1], now + 6 * 60_000), "clock skew (6 min ahead of now)"))
    docs.append((_at(run[-1], now + 4 * 60_000), "4 min ahead of now: within the skew"))
    again = next(d for d, c in docs if c is None and d["user"]["name"] == u0)
    docs.append((copy.deepcopy(again), "first event replayed at the end: too late"))
    fx = StreamExtractor(PARITY_FEATURES, now=now)
    events = []
    for d, case in docs:
        row = as_json_row(fx.extract(d))
        e = {"document": d, "values": [None if v is None else float(v) for v in row]}
        if case:
            e["case"] = case
        events.append(e)
    return {
        "generated_by": "models/vigil_models/export_parity.py",
        "now": _ts(now),
        "replay": "one document per request, in file order, through a fresh state; `now` is the wall clock",
        "features": PARITY_FEATURES,
        "skipped": dict(sorted(fx.state.skipped.items())),
        "events": events,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    data = build()
    write_json(Path(args.out), data, indent=1)
    print(f"{args.out}: {len(data['events'])} events, skipped {data['skipped']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
