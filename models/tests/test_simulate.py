import json
from collections import Counter

from vigil_models.features import FeatureExtractor
from vigil_models.simulate import ATTACKS, simulate
from vigil_models.train_login import FEATURES


def test_simulator_is_deterministic():
    a = simulate(n_users=30, days=5, seed=3)
    b = simulate(n_users=30, days=5, seed=3)
    assert json.dumps(a) == json.dumps(b)
    c = simulate(n_users=30, days=5, seed=4)
    assert json.dumps(a) != json.dumps(c)


def test_events_are_ecs_shaped_sorted_and_labelled():
    ev = simulate(n_users=30, days=7, seed=1)
    assert ev == sorted(ev, key=lambda e: (e["@timestamp"], e["user"]["name"], e["source"]["ip"]))
    kinds = Counter(e["vigil"]["sim"]["attack"] for e in ev)
    for a in ATTACKS:
        assert kinds[a] >= 2, a
    for e in ev:
        assert e["event"]["category"] == ["authentication"]
        assert e["event"]["outcome"] in ("success", "failure")
        assert set(e["source"]) == {"ip", "geo", "as"}
        assert set(e["source"]["geo"]["location"]) == {"lat", "lon"}
        assert isinstance(e["source"]["as"]["number"], int)
        assert e["user_agent"]["original"]
        assert (e["vigil"]["sim"]["label"] == "malicious") == (e["vigil"]["sim"]["attack"] is not None)
        assert e["@timestamp"].endswith("Z")


def test_login_features_extract_from_every_event():
    ev = simulate(n_users=20, days=3, seed=2)
    X = FeatureExtractor(FEATURES).extract_many(ev)
    assert X.shape == (len(ev), len(FEATURES))
    # every per-event feature is present in simulated events
    assert not (X != X).any()
