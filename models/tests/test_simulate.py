import json
from collections import Counter

import numpy as np

from vigil_models.behaviour import StreamExtractor, is_behavioural, to_ms
from vigil_models.simulate import ATTACKS, simulate, stream
from vigil_models.train_login import FEATURES


def test_simulator_is_deterministic():
    a = simulate(n_users=30, days=5, seed=3)
    b = simulate(n_users=30, days=5, seed=3)
    assert json.dumps(a) == json.dumps(b)
    c = simulate(n_users=30, days=5, seed=4)
    assert json.dumps(a) != json.dumps(c)
    assert json.dumps(list(stream(20, 2, seed=3, raw=True))) == json.dumps(list(stream(20, 2, seed=3, raw=True)))


def test_events_are_ecs_shaped_sorted_and_labelled():
    ev = simulate(n_users=30, days=7, seed=1)
    assert ev == sorted(ev, key=lambda e: (e["@timestamp"], e["user"]["name"], e["source"]["ip"]))
    kinds = Counter(e["vigil"]["sim"]["attack"] for e in ev)
    for a in ATTACKS:
        assert kinds[a] >= 2, a
    actions = Counter(e["event"]["action"] for e in ev)
    assert set(actions) == {"user_login", "mfa_push_approved", "mfa_push_denied", "session_refresh"}
    assert {e["event"]["dataset"] for e in ev} == {"okta.system", "azure.signinlogs", "system.security", "system.auth"}
    for e in ev:
        assert e["event"]["category"] == ["authentication"]
        assert e["event"]["outcome"] in ("success", "failure")
        assert set(e["source"]) == {"ip", "geo", "as"}
        assert set(e["source"]["geo"]["location"]) == {"lat", "lon"}
        assert isinstance(e["source"]["as"]["number"], int)
        assert e["user_agent"]["original"]
        assert (e["vigil"]["sim"]["label"] == "malicious") == (e["vigil"]["sim"]["attack"] is not None)
        assert (e["vigil"]["sim"]["campaign"] is None) == (e["vigil"]["sim"]["attack"] is None)
        assert e["@timestamp"].endswith("Z")


def test_shared_egress_many_users_behind_one_ip():
    ev = simulate(n_users=200, days=2, seed=5, attacks=False)
    per_ip = Counter()
    seen = set()
    for e in ev:
        k = (e["source"]["ip"], e["user"]["name"])
        if k not in seen:
            seen.add(k)
            per_ip[e["source"]["ip"]] += 1
    assert max(per_ip.values()) >= 10


def test_rate_scales_volume():
    lo = sum(1 for _ in stream(100, 1, seed=2, attacks=False, rate=8))
    hi = sum(1 for _ in stream(100, 1, seed=2, attacks=False, rate=100))
    assert hi > 5 * lo


def test_raw_vendor_shapes():
    raw = list(stream(40, 3, seed=1, raw=True))
    okta = [r for r in raw if "eventType" in r]
    entra = [r for r in raw if r.get("category") in ("SignInLogs", "NonInteractiveUserSignInLogs")]
    win = [r for r in raw if "winlog" in r]
    ssh = [r for r in raw if r.get("process", {}).get("name") == "sshd"]
    assert okta and entra and win and ssh
    assert len(okta) + len(entra) + len(win) + len(ssh) == len(raw)
    assert {r["winlog"]["event_id"] for r in win} <= {"4624", "4625"}
    assert all(r["outcome"]["result"] in ("SUCCESS", "FAILURE") for r in okta)
    assert all("vigil" in r and "sim" in r["vigil"] for r in raw)


def test_login_features_extract_from_every_event():
    ev = simulate(n_users=20, days=3, seed=2)
    for e in ev:
        e.pop("vigil")
    fx = StreamExtractor(FEATURES, now=to_ms(ev[-1]["@timestamp"]))
    X = fx.extract_stream(ev)
    assert X.shape == (len(ev), len(FEATURES))
    plain = [i for i, f in enumerate(FEATURES) if not is_behavioural(f)]
    assert not np.isnan(X[:, plain]).any()
    assert not fx.state.skipped
