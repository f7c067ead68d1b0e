"""Feature extraction per docs/bundle-format.md (the same cases as the Rust unit tests, and more)."""

import math

import pytest

from vigil_models.features import (
    FeatureExtractionError,
    FeatureExtractor,
    FeatureSpecError,
    apply_transform,
    lookup,
    timestamp,
    url_part,
)


def one(transform: dict, value, source="v", missing=None, bundle_dir=None):
    fx = FeatureExtractor([{"name": "x", "source": source, "transform": transform,
                            "missing": missing}], bundle_dir)
    return fx.extract({source: value} if isinstance(source, str) else value)[0]


def text(kind: str, s: str, part: str = "whole", **kw):
    return one({"kind": kind, "part": part, **kw}, s)


# --- sources ---------------------------------------------------------------------------------

def test_nested_flattened_and_mixed_paths_resolve():
    assert lookup({"url": {"original": "a"}}, "url.original") == "a"
    assert lookup({"url.original": "b"}, "url.original") == "b"
    assert lookup({"source": {"geo.country_iso_code": "FR"}}, "source.geo.country_iso_code") == "FR"
    assert lookup({"source.geo": {"country_iso_code": "DE"}}, "source.geo.country_iso_code") == "DE"


def test_arrays_yield_first_element_and_null_is_absent():
    doc = {"user": [{"name": ["x", "y"]}], "n": None, "e": []}
    assert lookup(doc, "user.name") == "x"
    assert lookup(doc, "n") is None
    assert lookup(doc, "e") is None
    assert lookup(doc, "missing.path") is None
    assert lookup("scalar", "a") is None


def test_first_present_source_wins_and_missing_default():
    fx = FeatureExtractor([
        {"name": "a", "source": "x.a", "transform": {"kind": "numeric"}, "missing": 7},
        {"name": "b", "source": ["x.b", "y.b"], "transform": {"kind": "length"}},
    ])
    assert fx.extract({"y": {"b": "abc"}}) == [7.0, 3.0]
    row = fx.extract({})
    assert row[0] == 7.0 and math.isnan(row[1])
    assert fx.extract({"x": {"b": "zz"}, "y": {"b": "abc"}})[1] == 2.0
    assert fx.extract({"x": {"a": None}})[0] == 7.0


def test_wrong_type_error_names_feature_path_and_value():
    fx = FeatureExtractor([{"name": "a", "source": "x.a", "transform": {"kind": "numeric"}}])
    with pytest.raises(FeatureExtractionError) as e:
        fx.extract({"x": {"a": "ten"}})
    assert str(e.value) == 'feature [a] expects a number at [x.a], found string "ten"'
    assert e.value.feature == "a" and e.value.path == "x.a"
    with pytest.raises(FeatureExtractionError):
        fx.extract([1, 2])


def test_bad_specs_are_reported_together():
    with pytest.raises(FeatureSpecError) as e:
        FeatureExtractor([
            {"name": "a", "source": "", "transform": {"kind": "numeric"}},
            {"name": "a", "source": "s", "transform": {"kind": "token_presence", "tokens": []}},
        ])
    msg = str(e.value)
    assert "empty source" in msg and "declared twice" in msg and "tokens must be" in msg
    with pytest.raises(FeatureSpecError):
        FeatureExtractor([{"name": "a", "source": "s", "transform": {"kind": "nope"}}])
    with pytest.raises(FeatureSpecError):
        FeatureExtractor([{"name": "a", "source": "s", "transform": {"kind": "categorical",
                                                                     "vocabulary": ["a", "a"]}}])


# --- URL split -------------------------------------------------------------------------------

def test_url_split_follows_the_contract():
    u = " HTTPS://user:pw@Login.Example.COM:8443/a/b/../c?x=1&y=&&z=2#frag "
    assert url_part(u, "scheme") == "https"
    assert url_part(u, "host") == "login.example.com"
    assert url_part(u, "path") == "/a/b/../c"
    assert url_part(u, "query") == "x=1&y=&&z=2"
    assert url_part(u, "whole") == u
    assert url_part("example.com/x?q", "host") == "example.com"
    assert url_part("example.com/x?q", "scheme") == ""
    assert url_part("http://[::1]:80/p", "host") == "[::1]"
    assert url_part("http://h#a?b", "query") == ""
    assert url_part("1http://h/p", "host") == "1http"
    assert url_part("http://h", "path") == ""
    assert url_part("http://a@b@c.com?q=1", "host") == "c.com"
    assert url_part("http://a@b@c.com?q=1", "query") == "q=1"
    assert url_part("mailto:x@y.com", "host") == "y.com"  # no "://": no scheme
    assert url_part("svn+ssh://h.org/r", "scheme") == "svn+ssh"


# --- string measures ---------------------------------------------------------------------------

def test_string_measures():
    assert text("length", "héllo") == 5.0
    assert text("digit_ratio", "a1b2") == 0.5
    assert text("digit_ratio", "") == 0.0
    assert text("digit_ratio", "١٢") == 0.0  # non-ASCII digits do not count
    assert text("entropy", "aaaa") == 0.0
    assert text("entropy", "ab") == 1.0
    assert text("entropy", "abcd") == 2.0
    assert text("entropy", "") == 0.0
    assert text("char_count", "a.b-c.d", chars=".-") == 3.0
    assert text("token_presence", "x/LOGIN", tokens=["login", "verify"]) == 1.0
    assert text("token_presence", "x/home", tokens=["login", "verify"]) == 0.0
    assert text("token_presence", "PayPal", tokens=["PAYPAL"]) == 1.0
    assert text("token_count", "login-verify-login", tokens=["login", "verify", "bank"]) == 2.0


def test_url_measures():
    assert text("is_ip", "http://10.0.0.1/x", "host") == 1.0
    assert text("is_ip", "http://10.0.0.256/x", "host") == 0.0
    assert text("is_ip", "http://1.2.3/x", "host") == 0.0
    assert text("is_ip", "http://[2001:db8::1]/x", "host") == 1.0
    assert text("is_ip", "http://0001.2.3.4/", "host") == 0.0
    assert text("is_ip", "http://1..2.3/", "host") == 0.0
    assert text("label_count", "http://a.b..c/", "host") == 3.0
    assert text("segment_count", "http://h//a/b/", "path") == 2.0
    assert text("param_count", "http://h/?a=1&&b", "query") == 2.0
    assert text("suffix_in", "http://x.TK/", "host", values=["tk"]) == 1.0
    assert text("suffix_in", "http://x.com/", "host", values=["TK"]) == 0.0
    assert text("in_set", "https://www.Google.com/", "host", values=["google.com"]) == 1.0
    assert text("in_set", "https://mail.google.com/", "host", values=["google.com"]) == 0.0
    assert text("equals", "HTTPS://x", "scheme", value="https") == 1.0
    assert text("equals", "http://x", "scheme", value="https") == 0.0
    assert text("length", "http://h/abc?q", "path") == 4.0


def test_in_set_values_file(tmp_path):
    (tmp_path / "top.txt").write_text("Google.com\n  example.org \n\n")
    t = {"kind": "in_set", "part": "host", "values_file": "top.txt"}
    assert one(t, "http://www.example.org/x", bundle_dir=tmp_path) == 1.0
    assert one(t, "http://google.com", bundle_dir=tmp_path) == 1.0
    assert one(t, "http://evil.com", bundle_dir=tmp_path) == 0.0
    with pytest.raises(FeatureSpecError):
        FeatureExtractor([{"name": "a", "source": "s", "transform": {"kind": "in_set"}}])


def test_text_transforms_require_strings():
    for bad in (5, True, {"a": 1}):
        with pytest.raises(FeatureExtractionError, match="expects a string"):
            one({"kind": "length"}, bad)
    # an array yields its first element
    assert one({"kind": "length"}, ["abc", "de"]) == 3.0


# --- numeric, boolean, categorical -----------------------------------------------------------

def test_numeric_coerces_strings_and_rejects_everything_else():
    assert one({"kind": "numeric"}, 2.5) == 2.5
    assert one({"kind": "numeric"}, " 42 ") == 42.0
    assert one({"kind": "numeric"}, "1e3") == 1000.0
    assert one({"kind": "numeric"}, 7) == 7.0
    for bad in ("abc", True, {"a": 1}, "1_000", "0x10", ""):
        with pytest.raises(FeatureExtractionError, match="expects a number"):
            one({"kind": "numeric"}, bad)
    for bad in ("NaN", "inf", "-Infinity", 1e300):
        with pytest.raises(FeatureExtractionError, match="finite|32-bit"):
            one({"kind": "numeric"}, bad)


def test_values_are_float32():
    assert one({"kind": "numeric"}, 0.1) == float(__import__("numpy").float32(0.1))


def test_boolean_and_categorical():
    assert one({"kind": "boolean"}, True) == 1.0
    assert one({"kind": "boolean"}, "false") == 0.0
    for bad in (1, "yes", "True", [{}]):
        with pytest.raises(FeatureExtractionError, match="expects a boolean"):
            one({"kind": "boolean"}, bad)
    cat = {"kind": "categorical", "vocabulary": ["FR", "7", "true"]}
    assert one(cat, "FR") == 0.0
    assert one(cat, 7) == 1.0
    assert one(cat, True) == 2.0
    assert one(cat, "DE") == 3.0
    assert one({**cat, "unknown": -1}, "DE") == -1.0
    with pytest.raises(FeatureExtractionError, match="string, number or boolean"):
        one(cat, {})


# --- time ------------------------------------------------------------------------------------

def test_time_features_in_utc():
    t = "2026-11-21T23:30:00+02:00"  # a Saturday
    assert one({"kind": "hour_of_day"}, t) == 21.0
    assert one({"kind": "day_of_week"}, t) == 5.0
    assert one({"kind": "is_weekend"}, t) == 1.0
    assert one({"kind": "day_of_week"}, 0) == 3.0  # 1970-01-01 was a Thursday
    assert one({"kind": "hour_of_day"}, "2026-01-01T05:00:00.123") == 5.0
    assert one({"kind": "hour_of_day"}, "2026-01-01T23:59:59.999999Z") == 23.0
    assert one({"kind": "hour_of_day"}, "2026-01-01T00:30:00-01:00") == 1.0
    assert one({"kind": "hour_of_day"}, 1767229200000) == 1.0  # 2026-01-01T01:00:00Z
    assert one({"kind": "is_weekend"}, "2026-01-05T10:00:00Z") == 0.0  # Monday
    with pytest.raises(FeatureExtractionError):
        one({"kind": "hour_of_day"}, "yesterday")
    with pytest.raises(FeatureExtractionError, match="date string or epoch"):
        one({"kind": "hour_of_day"}, True)
    with pytest.raises(FeatureExtractionError):
        one({"kind": "hour_of_day"}, "2026-02-30T00:00:00Z")
    with pytest.raises(FeatureExtractionError):
        one({"kind": "hour_of_day"}, 1.5)


def test_timestamp_offsets():
    assert timestamp("2026-03-01T00:15:00+05:30").isoformat() == "2026-02-28T18:45:00+00:00"


def test_apply_transform_direct():
    assert apply_transform("length", "host", {}, "http://abc.de/x") == 6.0
