"""Behavioural features (state per entity), the Python twin of `sidecar/src/features/behaviour.rs`.

Implements `docs/bundle-format.md`, section "Behavioural features (state per entity)", to the
letter, including the decisions written there for the cases the first draft left open:

- history is kept per *stream* = (entity path, `when`, source paths) and per entity value; features
  that differ only in kind or window read the same stream;
- a document's features are computed before its event is recorded; documents are processed in the
  order given (callers sort by event time; the parity fixture is replayed one document at a time);
- windows are `[t - window, t]`, both ends included; events recorded with a later time than `t`
  (out of order, within the lateness) are not in the window;
- bad input (feature missing, event not recorded, reason counted): no/unparsable `@timestamp`
  (every behavioural feature); timestamp > now + 5 min (every behavioural feature); no entity,
  too late (> 1 h older than the stream's newest recorded event), duplicate (same time and same
  source value as a recorded event of the stream) — per stream;
- an absent source is not bad input: the event is recorded without a value (it counts for
  `count` and `since_last`; `first_seen` / `pair_count` of such a document are missing);
- `velocity_kmh` reads its source whole (a `[lon, lat]` array is not reduced to its first element);
  an unusable location is counted (`bad_location`), the event is recorded without location.

    from vigil_models.behaviour import StreamExtractor
    fx = StreamExtractor(manifest["features"], now=end_of_data)
    X = fx.extract_stream(docs)          # rows in the order given, state carried across calls
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left, bisect_right
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import numpy as np

from .features import (_ABSENT, _NAIVE, _RFC3339, _RUST_FLOAT, FeatureExtractor, FeatureSpecError, _first_of_array,
                       _is_number, _lookup_in, _Reject, f32, lookup, render_categorical, timestamp)

BEHAVIOUR_KINDS = ("first_seen", "count", "distinct_count", "pair_count", "since_last", "velocity_kmh")
MAX_EVENTS_PER_ENTITY = 1024
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000
MAX_LATENESS_MS = 60 * 60 * 1000
DEFAULT_LOOKBACK_MS = 30 * 24 * 3600 * 1000
EARTH_RADIUS_KM = 6371.0088
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
NAN = math.nan


def is_behavioural(spec: dict) -> bool:
    return isinstance(spec.get("transform"), dict) and spec["transform"].get("kind") in BEHAVIOUR_KINDS


def to_ms(value: Any) -> int | None:
    """Epoch milliseconds of a timestamp value (RFC 3339 or epoch ms), None when unparsable."""
    try:
        t = timestamp(value)
    except _Reject:
        return None
    ms = (t - _EPOCH) // _MS
    if isinstance(value, str):   # `timestamp` keeps whole seconds; add the fraction (truncated to ms)
        m = _RFC3339.match(value.strip()) or _NAIVE.match(value.strip())
        if m and m.group(7):
            ms += int((m.group(7)[1:] + "000")[:3])
    return ms


from datetime import timedelta  # noqa: E402

_MS = timedelta(milliseconds=1)


def text(v: Any) -> str:
    """A key or value as text: strings as they are, other scalars as JSON renders them."""
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, int, float)):
        return render_categorical(v)
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def raw_lookup(doc: Any, path: str) -> Any:
    """Like `lookup`, but the value found is returned whole (an array stays an array)."""
    root = _first_of_array(doc)
    if root is _ABSENT:
        return None
    found = _lookup_in(root, path)
    return None if found is _ABSENT else found


def _coord(v: Any) -> float | None:
    if _is_number(v):
        return float(v)
    return None


def location(v: Any) -> tuple[float, float] | None:
    """`{lat, lon}` (numbers), `"lat,lon"` or `[lon, lat]`; None when unusable or absurd."""
    if isinstance(v, dict):
        lat, lon = _coord(v.get("lat")), _coord(v.get("lon"))
    elif isinstance(v, str):
        if "," not in v:
            return None
        a, b = v.split(",", 1)
        a, b = a.strip(), b.strip()
        if not (_RUST_FLOAT.match(a) and _RUST_FLOAT.match(b)):
            return None
        lat, lon = float(a), float(b)
    elif isinstance(v, list) and len(v) == 2:
        lat, lon = _coord(v[1]), _coord(v[0])
    else:
        return None
    if lat is None or lon is None:
        return None
    if not (math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90.0 and abs(lon) <= 180.0):
        return None
    return lat, lon


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    (lat1, lon1), (lat2, lon2) = a, b
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = math.radians(lat2 - lat1)
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2.0) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def _json_equal(a: Any, b: Any) -> bool:
    """serde_json `Value == Value`: types must agree (a bool is not a number, 1 is not 1.0)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if _is_number(a) and _is_number(b):
        return type(a) is type(b) and a == b
    return False


class BehaviourFeature:
    __slots__ = ("name", "kind", "entity", "sources", "when", "window_ms", "stream", "missing")

    def __init__(self, spec: dict):
        self.name = spec["name"]
        t = spec["transform"]
        self.kind = t["kind"]
        extra = set(t) - {"kind", "entity", "window_seconds", "when"}
        if extra:
            raise FeatureSpecError(f"transform [{self.kind}] has unknown keys {sorted(extra)}")
        self.entity = t.get("entity")
        if not isinstance(self.entity, str) or not self.entity:
            raise FeatureSpecError("entity must be a dotted field path")
        src = spec["source"]
        self.sources = [src] if isinstance(src, str) else list(src)
        w = t.get("window_seconds")
        if w is None:
            if self.kind not in ("since_last", "velocity_kmh"):
                raise FeatureSpecError("window_seconds is required for this kind")
            self.window_ms = DEFAULT_LOOKBACK_MS
        else:
            if not isinstance(w, int) or isinstance(w, bool) or w < 1:
                raise FeatureSpecError("window_seconds must be at least 1")
            self.window_ms = w * 1000
        when = t.get("when")
        if when is not None:
            if not isinstance(when, dict) or set(when) != {"field", "equals"}:
                raise FeatureSpecError("when must be {field, equals}")
        self.when = when
        when_text = f"{when['field']}={json.dumps(when['equals'])}" if when else ""
        self.stream = (self.entity, when_text, tuple(self.sources), self.kind == "velocity_kmh")
        m = spec.get("missing")
        self.missing = NAN if m is None else f32(m)


class _History:
    __slots__ = ("at", "val", "loc")

    def __init__(self):
        self.at: list[int] = []
        self.val: list[str | None] = []
        self.loc: list[tuple[float, float] | None] = []


class BehaviourState:
    """Histories per (stream, entity value) and counters of skipped events."""

    def __init__(self, max_events: int = MAX_EVENTS_PER_ENTITY):
        self.max_events = max_events
        self.histories: dict[tuple, dict[str, _History]] = {}
        self.skipped = Counter()

    def process(self, doc: dict, features: Sequence[BehaviourFeature], now_ms: int) -> list[float]:
        """Values of `features` for `doc` (missing values already substituted), then records it."""
        at = None
        ts = lookup(doc, "@timestamp")
        if ts is not None:
            at = to_ms(ts)
        if at is None:
            self.skipped["no_timestamp"] += 1
            return [f.missing for f in features]
        if at > now_ms + MAX_FUTURE_SKEW_MS:
            self.skipped["clock_skew"] += 1
            return [f.missing for f in features]
        usable: dict[tuple, tuple] = {}
        streams: dict[tuple, BehaviourFeature] = {}
        for f in features:
            streams.setdefault(f.stream, f)
        cache: dict[str, Any] = {}

        def get(path: str) -> Any:
            v = cache.get(path, _ABSENT)
            if v is _ABSENT:
                v = cache[path] = lookup(doc, path)
            return v

        for key, s in streams.items():
            ent = get(s.entity)
            if ent is None:
                self.skipped["no_entity"] += 1
                continue
            ent = text(ent)
            src = None
            for p in s.sources:
                src = raw_lookup(doc, p) if s.kind == "velocity_kmh" else get(p)
                if src is not None:
                    break
            value = None if src is None else text(src)
            loc = None
            if s.kind == "velocity_kmh" and src is not None:
                loc = location(src)
                if loc is None:
                    self.skipped["bad_location"] += 1
            per = self.histories.setdefault(key, {})
            h = per.get(ent)
            if h is None:
                h = per[ent] = _History()
            if h.at and h.at[-1] - at > MAX_LATENESS_MS:
                self.skipped["too_late"] += 1
                continue
            lo, hi = bisect_left(h.at, at), bisect_right(h.at, at)
            if any(h.val[j] == value for j in range(lo, hi)):
                self.skipped["duplicate"] += 1
                continue
            usable[key] = (h, value, loc)
        out = []
        for f in features:
            u = usable.get(f.stream)
            if u is None:
                out.append(f.missing)
                continue
            v = compute(f, u[0], at, u[1], u[2])
            out.append(f.missing if v != v else v)
        for key, s in streams.items():
            u = usable.get(key)
            if u is None:
                continue
            if s.when is not None:
                got = get(s.when["field"])
                if got is None or not _json_equal(got, s.when["equals"]):
                    continue
            h, value, loc = u
            pos = bisect_right(h.at, at)
            h.at.insert(pos, at)
            h.val.insert(pos, value)
            h.loc.insert(pos, loc)
            if len(h.at) > self.max_events:
                k = len(h.at) - self.max_events
                del h.at[:k], h.val[:k], h.loc[:k]
        return out


def compute(f: BehaviourFeature, h: _History, at: int, value: str | None,
            loc: tuple[float, float] | None) -> float:
    lo, hi = bisect_left(h.at, at - f.window_ms), bisect_right(h.at, at)
    k = f.kind
    if k == "first_seen":
        if value is None:
            return NAN
        return 0.0 if value in h.val[lo:hi] else 1.0
    if k == "count":
        return float(hi - lo)
    if k == "distinct_count":
        return float(len({v for v in h.val[lo:hi] if v is not None}))
    if k == "pair_count":
        if value is None:
            return NAN
        return float(h.val[lo:hi].count(value))
    if k == "since_last":
        if hi <= lo:
            return NAN
        return f32((at - h.at[hi - 1]) / 3_600_000.0)
    if k == "velocity_kmh":
        if loc is None:
            return NAN
        for j in range(hi - 1, lo - 1, -1):
            there = h.loc[j]
            if there is not None:
                hours = max(at - h.at[j], 60_000) / 3_600_000.0
                return f32(haversine_km(there, loc) / hours)
        return NAN
    raise FeatureSpecError(f"unknown behavioural kind [{k}]")


class StreamExtractor:
    """A manifest's whole feature list (per-event and behavioural) over an event stream.

    Per-event features come from `FeatureExtractor`; behavioural ones from a `BehaviourState`
    carried across calls. `now` (datetime or epoch ms) is the clock for the skew rule; training
    uses the simulation's end."""

    def __init__(self, specs: Sequence[dict], bundle_dir=None, now: datetime | int | None = None):
        self.specs = list(specs)
        self.behavioural = [i for i, s in enumerate(self.specs) if is_behavioural(s)]
        self.plain = [i for i, s in enumerate(self.specs) if not is_behavioural(s)]
        self.fx = FeatureExtractor([self.specs[i] for i in self.plain], bundle_dir)
        self.bf = [BehaviourFeature(self.specs[i]) for i in self.behavioural]
        self.state = BehaviourState()
        if now is None:
            now = datetime.now(timezone.utc)
        self.now_ms = now if isinstance(now, int) else (now - _EPOCH) // _MS

    @property
    def names(self) -> list[str]:
        return [s["name"] for s in self.specs]

    def extract(self, doc: dict) -> list[float]:
        row = [NAN] * len(self.specs)
        for i, v in zip(self.plain, self.fx.extract(doc)):
            row[i] = v
        if self.bf:
            for i, v in zip(self.behavioural, self.state.process(doc, self.bf, self.now_ms)):
                row[i] = v
        return row

    def extract_stream(self, docs: Iterable[dict]) -> np.ndarray:
        rows = [self.extract(d) for d in docs]
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), len(self.specs))
