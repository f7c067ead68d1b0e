"""Feature extraction, the Python twin of `sidecar/src/features/`.

Implements exactly the sources and transforms of `docs/bundle-format.md` ("Features"): a
manifest's `features` list plus a JSON document give one row of floats (NaN for a missing
feature whose `missing` is null). Values are rounded to float32, as the sidecar computes them.
The golden files written by the exporters pin this module and the Rust extraction together.

    from vigil_models.features import FeatureExtractor
    fx = FeatureExtractor(manifest["features"], bundle_dir)
    row = fx.extract({"url": {"original": "http://example.com/login"}})   # list of floats

A value of the wrong JSON type raises `FeatureExtractionError` naming the feature, the path and
what was found; it is never silently replaced by a default.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = [
    "FeatureExtractionError",
    "FeatureSpecError",
    "FeatureExtractor",
    "lookup",
    "url_part",
    "apply_transform",
    "f32",
]

_ABSENT = object()


class FeatureSpecError(ValueError):
    """The manifest's feature list is invalid (raised when compiling)."""


class FeatureExtractionError(ValueError):
    """A document's value cannot be turned into a feature (the per-document error)."""

    def __init__(self, message: str, feature: str = "", path: str = ""):
        super().__init__(message)
        self.feature = feature
        self.path = path


def f32(x: float) -> float:
    """Rounds to the nearest float32, as the sidecar stores features."""
    return float(np.float32(x))


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------

def _first_of_array(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else _ABSENT
    return value


def _lookup_in(value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        return _ABSENT
    if path in value:
        return value[path]
    # Shortest existing prefix first (nested objects are the common shape), as in Rust.
    for i, ch in enumerate(path):
        if ch != ".":
            continue
        prefix = path[:i]
        if prefix in value:
            inner = _first_of_array(value[prefix])
            if inner is _ABSENT:
                continue
            found = _lookup_in(inner, path[i + 1:])
            if found is not _ABSENT:
                return found
    return _ABSENT


def lookup(doc: Any, path: str) -> Any:
    """The value at dotted `path` (nested, flattened or mixed keys); arrays yield their first
    element. Returns None when absent or null."""
    root = _first_of_array(doc)
    if root is _ABSENT:
        return None
    found = _lookup_in(root, path)
    if found is _ABSENT:
        return None
    found = _first_of_array(found)
    if found is _ABSENT or found is None:
        return None
    return found


def describe(value: Any) -> str:
    """Type and a clipped JSON rendering of a value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, (int, float)):
        kind = "number"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, list):
        kind = "array"
    elif isinstance(value, dict):
        kind = "object"
    else:
        kind = type(value).__name__
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > 40:
        text = text[:40] + "…"
    return f"{kind} {text}"


# --------------------------------------------------------------------------------------------
# URL split
# --------------------------------------------------------------------------------------------

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_ASCII_WS = " \t\n\r\x0c"
URL_PARTS = ("whole", "host", "path", "query", "scheme")


def url_part(raw: str, part: str) -> str:
    """The contract's URL split: simple, no normalisation, identical to the Rust one."""
    if part == "whole":
        return raw
    s = raw.strip(_ASCII_WS)
    m = _SCHEME.match(s)
    if m:
        scheme, rest = s[: m.end() - 3], s[m.end():]
    else:
        scheme, rest = "", s
    cut = [i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0]
    end = min(cut) if cut else len(rest)
    authority, remainder = rest[:end], rest[end:]
    if part == "scheme":
        return scheme.lower()
    if part == "host":
        host = authority.rsplit("@", 1)[-1]
        if host.startswith("["):
            i = host.find("]")
            if i >= 0:
                host = host[: i + 1]
        else:
            host = host.split(":", 1)[0]
        return host.lower()
    cut = [i for i in (remainder.find("?"), remainder.find("#")) if i >= 0]
    first = min(cut) if cut else -1
    if part == "path":
        return remainder if first < 0 else remainder[:first]
    if part == "query":
        if first < 0 or remainder[first] != "?":
            return ""
        q = remainder[first + 1:]
        h = q.find("#")
        return q if h < 0 else q[:h]
    raise FeatureSpecError(f"unknown url part [{part}]")


# --------------------------------------------------------------------------------------------
# String measures
# --------------------------------------------------------------------------------------------

def _digit_ratio(s: str) -> float:
    if not s:
        return 0.0
    return sum(1 for c in s if "0" <= c <= "9") / len(s)


def _entropy(s: str) -> float:
    if not s:
        return 0.0
    counts: dict[str, int] = {}
    for c in s:
        counts[c] = counts.get(c, 0) + 1
    n = float(len(s))
    total = 0.0
    # Fixed summation order (by code point) as in Rust, so the float result is identical.
    for c in sorted(counts):
        p = counts[c] / n
        total += p * math.log2(p)
    return -total


def _is_ip(s: str) -> bool:
    if s.startswith("[") and s.endswith("]") and len(s.encode("utf-8")) > 2:
        return True
    labels = s.split(".")
    return len(labels) == 4 and all(
        0 < len(l) <= 3 and all("0" <= c <= "9" for c in l) and int(l) <= 255 for l in labels
    )


def _text_op(op: str, args: dict, s: str) -> float:
    if op == "length":
        return float(len(s))
    if op == "digit_ratio":
        return _digit_ratio(s)
    if op == "entropy":
        return _entropy(s)
    if op == "char_count":
        chars = args["chars"]
        return float(sum(1 for c in s if c in chars))
    if op == "token_presence":
        lower = s.lower()
        return 1.0 if any(t in lower for t in args["tokens"]) else 0.0
    if op == "token_count":
        lower = s.lower()
        return float(sum(1 for t in args["tokens"] if t in lower))
    if op == "is_ip":
        return 1.0 if _is_ip(s) else 0.0
    if op == "label_count":
        return float(sum(1 for l in s.split(".") if l))
    if op == "segment_count":
        return float(sum(1 for l in s.split("/") if l))
    if op == "param_count":
        return float(sum(1 for l in s.split("&") if l))
    if op == "equals":
        return 1.0 if s.lower() == args["value"] else 0.0
    if op == "suffix_in":
        return 1.0 if s.rsplit(".", 1)[-1].lower() in args["values"] else 0.0
    if op == "in_set":
        lower = s.lower()
        key = lower[4:] if lower.startswith("www.") else lower
        return 1.0 if key in args["values"] else 0.0
    raise FeatureSpecError(f"unknown transform [{op}]")


TEXT_KINDS = (
    "length", "digit_ratio", "entropy", "char_count", "token_presence", "token_count", "is_ip",
    "label_count", "segment_count", "param_count", "equals", "suffix_in", "in_set",
)
TIME_KINDS = ("hour_of_day", "day_of_week", "is_weekend")
ALL_KINDS = ("numeric", "boolean", "categorical") + TEXT_KINDS + TIME_KINDS


# --------------------------------------------------------------------------------------------
# Numeric, categorical, time
# --------------------------------------------------------------------------------------------

# What Rust's `str::parse::<f64>` accepts (after trim): decimal with optional exponent, or
# inf/infinity/nan in any case. No underscores, no hex.
_RUST_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)\Z",
    re.IGNORECASE,
)
_F32_MAX = float(np.finfo(np.float32).max)


class _Reject(Exception):
    def __init__(self, message: str, wrong_type: bool):
        super().__init__(message)
        self.wrong_type = wrong_type


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numeric(value: Any) -> float:
    if _is_number(value):
        try:
            x = float(value)
        except OverflowError:
            x = math.inf if value > 0 else -math.inf
    elif isinstance(value, str):
        t = value.strip()
        if not _RUST_FLOAT.match(t):
            raise _Reject("a number", True)
        x = float(t)
    else:
        raise _Reject("a number", True)
    if not math.isfinite(x):
        raise _Reject(f"{x} is not a finite number", False)
    # Rust narrows with `as f32` (round to nearest); values beyond f32 range become infinite.
    if abs(x) > _F32_MAX:
        with np.errstate(over="ignore"):
            narrowed = float(np.float32(x))
        if not math.isfinite(narrowed):
            raise _Reject(f"{x} is outside the range of a 32-bit float", False)
    return x


def _boolean(value: Any) -> float:
    if value is True or value == "true" and isinstance(value, str):
        return 1.0
    if value is False or value == "false" and isinstance(value, str):
        return 0.0
    raise _Reject("a boolean", True)


def render_categorical(value: Any) -> str:
    """A JSON scalar rendered as text the way serde_json renders it (`7`, `true`, `1.5`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return f"{int(value)}.0"
        r = repr(value)
        if "e" in r:
            mant, exp = r.split("e")
            r = f"{mant}e{int(exp)}"
        return r
    if isinstance(value, str):
        return value
    raise _Reject("a string, number or boolean", True)


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z"
)
_NAIVE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?\Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def timestamp(value: Any) -> datetime:
    """RFC 3339 (offsets, fractional seconds) or a naive ISO date-time taken as UTC, or integer
    epoch milliseconds; returned in UTC."""
    if isinstance(value, str):
        s = value.strip()
        m = _RFC3339.match(s) or _NAIVE.match(s)
        if not m:
            raise _Reject(f"{value!r} is not an RFC 3339 date", False)
        y, mo, d, h, mi, se = (int(g) for g in m.groups()[:6])
        tz = m.group(8) if m.re is _RFC3339 else "Z"
        try:
            base = datetime(y, mo, d, h, mi, min(se, 59), tzinfo=timezone.utc)
        except ValueError as e:
            raise _Reject(f"{value!r} is not an RFC 3339 date", False) from e
        if se == 60:  # leap second
            base += timedelta(seconds=1)
        elif se > 60:
            raise _Reject(f"{value!r} is not an RFC 3339 date", False)
        if tz not in ("Z", "z"):
            sign = 1 if tz[0] == "+" else -1
            oh, om = int(tz[1:3]), int(tz[4:6])
            if oh > 23 or om > 59:
                raise _Reject(f"{value!r} is not an RFC 3339 date", False)
            base -= sign * timedelta(hours=oh, minutes=om)
        return base
    if _is_number(value):
        if isinstance(value, float):
            raise _Reject(f"{value} is not epoch milliseconds", False)
        try:
            return _EPOCH + timedelta(milliseconds=value)
        except OverflowError as e:
            raise _Reject(f"{value} is not epoch milliseconds", False) from e
    raise _Reject("a date string or epoch milliseconds", True)


# --------------------------------------------------------------------------------------------
# Compiled features
# --------------------------------------------------------------------------------------------

def _compile_transform(spec: dict, bundle_dir: Path | None) -> tuple[str, str, dict]:
    if not isinstance(spec, dict) or "kind" not in spec:
        raise FeatureSpecError("transform must be an object with a kind")
    kind = spec["kind"]
    if kind not in ALL_KINDS:
        raise FeatureSpecError(f"unknown transform kind [{kind}]")
    allowed = {"kind"}
    args: dict[str, Any] = {}
    part = "whole"
    if kind in TEXT_KINDS:
        allowed.add("part")
        part = spec.get("part", "whole")
        if part not in URL_PARTS:
            raise FeatureSpecError(f"unknown url part [{part}]")
    if kind == "categorical":
        allowed |= {"vocabulary", "unknown"}
        vocab = spec.get("vocabulary")
        if not isinstance(vocab, list) or not all(isinstance(v, str) for v in vocab):
            raise FeatureSpecError("categorical needs a vocabulary of strings")
        if len(set(vocab)) != len(vocab):
            raise FeatureSpecError("categorical vocabulary has duplicates")
        args["index"] = {v: float(i) for i, v in enumerate(vocab)}
        unknown = spec.get("unknown")
        args["unknown"] = float(len(vocab) if unknown is None else unknown)
    elif kind == "char_count":
        allowed.add("chars")
        chars = spec.get("chars")
        if not isinstance(chars, str) or not chars:
            raise FeatureSpecError("char_count needs at least one character")
        args["chars"] = set(chars)
    elif kind in ("token_presence", "token_count"):
        allowed.add("tokens")
        tokens = spec.get("tokens")
        if not isinstance(tokens, list) or not tokens or not all(
                isinstance(t, str) and t for t in tokens):
            raise FeatureSpecError("tokens must be a non-empty list of non-empty strings")
        args["tokens"] = [t.lower() for t in tokens]
    elif kind == "equals":
        allowed.add("value")
        if not isinstance(spec.get("value"), str):
            raise FeatureSpecError("equals needs a string value")
        args["value"] = spec["value"].lower()
    elif kind == "suffix_in":
        allowed.add("values")
        args["values"] = {v.lower() for v in spec.get("values", [])}
    elif kind == "in_set":
        allowed |= {"values", "values_file"}
        values = {v.lower() for v in spec.get("values", [])}
        if spec.get("values_file"):
            if bundle_dir is None:
                raise FeatureSpecError("in_set with values_file needs the bundle directory")
            text = (Path(bundle_dir) / spec["values_file"]).read_text(encoding="utf-8")
            values |= {l.strip().lower() for l in text.splitlines() if l.strip()}
        if not values:
            raise FeatureSpecError("in_set needs values or values_file")
        args["values"] = values
    extra = set(spec) - allowed
    if extra:
        raise FeatureSpecError(f"transform [{kind}] has unknown keys {sorted(extra)}")
    return kind, part, args


class _Feature:
    __slots__ = ("name", "sources", "kind", "part", "args", "missing")

    def __init__(self, spec: dict, bundle_dir: Path | None):
        self.name = spec["name"]
        src = spec["source"]
        self.sources = [src] if isinstance(src, str) else list(src)
        if not self.sources or any(not isinstance(p, str) or not p for p in self.sources):
            raise FeatureSpecError(f"feature [{self.name}] has an empty source")
        self.kind, self.part, self.args = _compile_transform(spec["transform"], bundle_dir)
        m = spec.get("missing")
        self.missing = math.nan if m is None else f32(m)

    def value(self, doc: Any) -> float:
        for path in self.sources:
            v = lookup(doc, path)
            if v is not None:
                break
        else:
            return self.missing
        try:
            return f32(apply_transform(self.kind, self.part, self.args, v))
        except _Reject as r:
            if r.wrong_type:
                raise FeatureExtractionError(
                    f"feature [{self.name}] expects {r} at [{path}], found {describe(v)}",
                    self.name, path) from None
            raise FeatureExtractionError(f"feature [{self.name}] at [{path}]: {r}",
                                         self.name, path) from None


def apply_transform(kind: str, part: str, args: dict, value: Any) -> float:
    if kind == "numeric":
        return _numeric(value)
    if kind == "boolean":
        return _boolean(value)
    if kind == "categorical":
        return args["index"].get(render_categorical(value), args["unknown"])
    if kind in TEXT_KINDS:
        if not isinstance(value, str):
            raise _Reject("a string", True)
        return _text_op(kind, args, url_part(value, part))
    ts = timestamp(value)
    if kind == "hour_of_day":
        return float(ts.hour)
    if kind == "day_of_week":
        return float(ts.weekday())
    if kind == "is_weekend":
        return 1.0 if ts.weekday() >= 5 else 0.0
    raise FeatureSpecError(f"unknown transform kind [{kind}]")


class FeatureExtractor:
    """A manifest's feature list compiled once; `extract` is a pure function of a document."""

    def __init__(self, specs: Sequence[dict], bundle_dir: str | Path | None = None):
        errors, features, names = [], [], set()
        for spec in specs:
            name = spec.get("name", "?")
            if name in names:
                errors.append(f"feature [{name}] is declared twice")
            names.add(name)
            try:
                features.append(_Feature(spec, Path(bundle_dir) if bundle_dir else None))
            except (FeatureSpecError, KeyError, OSError) as e:
                errors.append(f"feature [{name}]: {e}")
        if errors:
            raise FeatureSpecError("; ".join(errors))
        self.features = features

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def extract(self, doc: Any) -> list[float]:
        if not isinstance(doc, dict):
            raise FeatureExtractionError(f"document must be a JSON object, found {describe(doc)}")
        return [f.value(doc) for f in self.features]

    def extract_many(self, docs: Iterable[Any]) -> np.ndarray:
        rows = [self.extract(d) for d in docs]
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), len(self.features))


def as_json_row(row: Iterable[float]) -> list[float | None]:
    """A feature row for golden/reference files: NaN becomes null."""
    return [None if (isinstance(x, float) and math.isnan(x)) or x != x else float(x) for x in row]
