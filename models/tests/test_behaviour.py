"""Behavioural features (docs/bundle-format.md, "Behavioural features"): each kind, `when`,
windows, order of compute and record, every bad-input rule, the per-entity bound, and the
parity fixture for the Rust side."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from vigil_models.behaviour import (MAX_EVENTS_PER_ENTITY, BehaviourFeature, BehaviourState,
                                    StreamExtractor, haversine_km, location, to_ms)
from vigil_models.features import FeatureSpecError

REPO = Path(__file__).resolve().parents[2]
NOW = "2026-01-10T00:00:00Z"
FAIL = {"field": "event.outcome", "equals": "failure"}
OK = {"field": "event.outcome", "equals": "success"}


def spec(name, source, kind, entity="user.name", window=None, when=None, missing=None):
    t = {"kind": kind, "entity": entity}
    if window is not None:
        t["window_seconds"] = window
    if when is not None:
        t["when"] = when
    return {"name": name, "source": source, "transform": t, "missing": missing}


def ev(minute, user="a", outcome="success", ip="1.1.1.1", country="DE", loc=(52.52, 13.40), **extra):
    d = {"@timestamp": f"2026-01-09T{minute // 60:02d}:{minute % 60:02d}:00Z",
         "user": {"name": user}, "event": {"outcome": outcome}, "source": {"ip": ip,
         "geo": {"country_iso_code": country, "location": {"lat": loc[0], "lon": loc[1]}}}}
    if user is None:
        del d["user"]
    d.update(extra)
    return d


def run(specs, docs, now=NOW):
    fx = StreamExtractor(specs, now=to_ms(now))
    X = fx.extract_stream(docs)
    return X, fx.state.skipped


def col(X, j=0):
    return [None if math.isnan(v) else float(v) for v in X[:, j]]


def test_first_seen_per_user_and_window():
    s = [spec("new_country", "source.geo.country_iso_code", "first_seen", window=3600)]
    X, _ = run(s, [ev(0), ev(10), ev(11, country="FR"), ev(12, user="b"), ev(70), ev(71, country="FR")])
    # t=70: DE last seen at t=10 (60 min earlier, inside [t-1h, t]); t=71: FR seen at t=11
    assert col(X) == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    X, _ = run(s, [ev(0), ev(61)])
    assert col(X) == [1.0, 1.0]  # outside the window


def test_count_with_when_records_only_matching_but_computes_for_all():
    s = [spec("failures_15m", "user.name", "count", window=900, when=FAIL)]
    X, _ = run(s, [ev(0, outcome="failure"), ev(1, outcome="failure"), ev(2), ev(3, outcome="failure"), ev(16), ev(17)])
    # features computed before the event is recorded; window [t-15m, t] both ends included
    assert col(X) == [0.0, 1.0, 2.0, 2.0, 2.0, 1.0]  # t=16 no longer sees t=0


def test_distinct_and_pair_count_per_ip():
    s = [spec("users_ip", "user.name", "distinct_count", entity="source.ip", window=3600),
         spec("pairs", "user.name", "pair_count", entity="source.ip", window=3600)]
    X, _ = run(s, [ev(0, user="a"), ev(1, user="b"), ev(2, user="a"), ev(3, user="c", ip="9.9.9.9"), ev(4, user="a")])
    assert col(X, 0) == [0.0, 1.0, 2.0, 0.0, 2.0]
    assert col(X, 1) == [0.0, 0.0, 1.0, 0.0, 2.0]


def test_since_last():
    s = [spec("h", "user.name", "since_last", when=OK)]
    X, _ = run(s, [ev(0), ev(30, outcome="failure"), ev(90)])
    assert col(X) == [None, 0.5, 1.5]
    s = [spec("h", "user.name", "since_last", window=3600)]
    X, _ = run(s, [ev(0), ev(120)])
    assert col(X) == [None, None]  # the last event is beyond the bound


def test_velocity():
    s = [spec("v", "source.geo.location", "velocity_kmh", when=OK)]
    berlin, paris = (52.52, 13.405), (48.8566, 2.3522)
    km = haversine_km(berlin, paris)
    assert 870 < km < 890
    X, _ = run(s, [ev(0, loc=berlin), ev(60, loc=paris), ev(60, loc=berlin, user="b"), ev(61, user="b", loc=berlin)])
    assert col(X)[0] is None and col(X)[2] is None
    assert col(X)[1] == pytest.approx(km, rel=1e-6)
    assert col(X)[3] == 0.0
    # elapsed time is at least 60 s
    X, _ = run(s, [ev(0, loc=berlin), ev(0, loc=paris, ip="2.2.2.2")])
    assert col(X)[1] == pytest.approx(km * 60, rel=1e-6)


def test_location_forms_and_absurd_coordinates():
    assert location({"lat": 1.5, "lon": 2.5}) == (1.5, 2.5)
    assert location("1.5, 2.5") == (1.5, 2.5)
    assert location([2.5, 1.5]) == (1.5, 2.5)
    for bad in ({"lat": 91, "lon": 0}, {"lat": 0, "lon": 181}, "x", "inf,1", [1], {"lat": "1", "lon": 2}, 7, None):
        assert location(bad) is None, bad
    s = [spec("v", "source.geo.location", "velocity_kmh")]
    d1 = ev(0)
    d2 = ev(1)
    d2["source"]["geo"]["location"] = {"lat": 123, "lon": 0}
    d3 = ev(2)
    d3["source"]["geo"]["location"] = [13.40, 52.52]   # GeoJSON order, read whole
    X, skipped = run(s, [d1, d2, d3])
    assert col(X) == [None, None, 0.0]
    assert skipped["bad_location"] == 1


def test_bad_input_missing_and_not_recorded():
    s = [spec("n", "user.name", "count", window=86400)]
    no_ts = ev(5)
    del no_ts["@timestamp"]
    bad_ts = ev(6)
    bad_ts["@timestamp"] = "soon"
    docs = [ev(0), no_ts, bad_ts, ev(7, user=None), ev(8), ev(8),          # duplicate
            {**ev(9), "@timestamp": "2026-01-10T00:05:01Z"},             # skew: > now + 5 min
            {**ev(9), "@timestamp": "2026-01-10T00:04:59Z"},             # within skew
            ev(9)]                                                       # too late (> 1 h older)
    X, skipped = run(s, docs)
    # the document within the skew is a day later: its 1-day window holds only t=8
    assert col(X) == [0.0, None, None, None, 1.0, None, None, 1.0, None]
    assert dict(skipped) == {"no_timestamp": 2, "no_entity": 1, "duplicate": 1, "clock_skew": 1, "too_late": 1}


def test_out_of_order_within_lateness_is_recorded_and_windows_stop_at_t():
    s = [spec("n", "user.name", "count", window=3600), spec("h", "user.name", "since_last")]
    X, skipped = run(s, [ev(100), ev(50), ev(60), ev(101)])
    assert col(X, 0) == [0.0, 0.0, 1.0, 3.0]     # t=50 does not see t=100
    assert col(X, 1) == [None, None, pytest.approx(10 / 60, rel=1e-6), pytest.approx(1 / 60, rel=1e-6)]
    assert not skipped


def test_missing_value_substitution_and_absent_source():
    s = [spec("new_asn", "source.as.number", "first_seen", window=3600, missing=-1),
         spec("n", "user.name", "count", window=3600)]
    a = ev(0, source={"ip": "1.1.1.1", "as": {"number": 3320}})
    b = ev(1)  # no ASN: recorded without a value
    c = ev(2, source={"ip": "1.1.1.1", "as": {"number": 3320}})
    X, _ = run(s, [a, b, c])
    assert col(X, 0) == [1.0, -1.0, 0.0]
    assert col(X, 1) == [0.0, 1.0, 2.0]


def test_entities_rendered_as_text_and_flattened_keys():
    s = [spec("n", "user.name", "count", entity="source.as.number", window=3600)]
    d1 = {"@timestamp": "2026-01-09T00:00:00Z", "source.as.number": 3320, "user.name": "a"}
    d2 = {"@timestamp": "2026-01-09T00:01:00.5+00:00", "source": {"as": {"number": "3320"}}, "user": {"name": "b"}}
    X, _ = run(s, [d1, d2])
    assert col(X) == [0.0, 1.0]


def test_per_entity_bound():
    s = [spec("n", "user.name", "count", window=86400)]
    st = BehaviourState()
    f = [BehaviourFeature(s[0])]
    now = to_ms(NOW)
    base = to_ms("2026-01-09T00:00:00Z")
    for k in range(MAX_EVENTS_PER_ENTITY + 10):
        st.process({"@timestamp": base + k * 10, "user": {"name": "a"}}, f, now)
    h = next(iter(st.histories.values()))["a"]
    assert len(h.at) == MAX_EVENTS_PER_ENTITY and h.at[0] == base + 100
    assert st.process({"@timestamp": base + 20000, "user": {"name": "a"}}, f, now) == [float(MAX_EVENTS_PER_ENTITY)]


def test_spec_errors():
    with pytest.raises(FeatureSpecError):
        StreamExtractor([spec("n", "user.name", "count")])  # window required
    with pytest.raises(FeatureSpecError):
        StreamExtractor([{"name": "n", "source": "x", "transform": {"kind": "first_seen", "window_seconds": 5}}])


def test_fractional_timestamps():
    assert to_ms("2026-01-09T00:00:00.123456Z") - to_ms("2026-01-09T00:00:00Z") == 123
    assert to_ms(1500) == 1500


def test_parity_fixture_reproduced():
    data = json.loads((REPO / "sidecar/tests/bundles/behaviour_parity.json").read_text())
    kinds = {f["transform"]["kind"] for f in data["features"]}
    assert kinds == {"first_seen", "count", "distinct_count", "pair_count", "since_last", "velocity_kmh"}
    cases = " ".join(e.get("case", "") for e in data["events"])
    for c in ("no_timestamp", "no_user", "duplicate", "out of order", "too late", "absurd", "clock skew"):
        assert c in cases, c
    docs = [e["document"] for e in data["events"]]
    X, _ = run(data["features"], docs, data["now"])
    want = np.array([[np.nan if v is None else v for v in e["values"]] for e in data["events"]], dtype=np.float32)
    assert np.array_equal(np.isnan(X), np.isnan(want))
    assert np.array_equal(np.nan_to_num(X), np.nan_to_num(want))
