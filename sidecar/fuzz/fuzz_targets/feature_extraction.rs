//! Feature extraction from arbitrary JSON never panics, and every extracted value is either
//! finite, or NaN where the manifest declares NaN for a missing field.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vigil::bundle::manifest::FeatureSpec;
use vigil::features::FeatureExtractor;

const SPECS: &str = r#"[
  {"name": "n", "source": ["a.n", "n"], "transform": {"kind": "numeric"}, "missing": null},
  {"name": "b", "source": "a.b", "transform": {"kind": "boolean"}, "missing": 0},
  {"name": "c", "source": "a.c", "transform": {"kind": "categorical", "vocabulary": ["x", "1", "true"]}, "missing": -1},
  {"name": "len", "source": "u", "transform": {"kind": "length", "part": "host"}, "missing": 0},
  {"name": "digits", "source": "u", "transform": {"kind": "digit_ratio", "part": "path"}, "missing": 0},
  {"name": "entropy", "source": "u", "transform": {"kind": "entropy"}, "missing": 0},
  {"name": "chars", "source": "u", "transform": {"kind": "char_count", "chars": ".-@%"}, "missing": 0},
  {"name": "tok", "source": "u", "transform": {"kind": "token_presence", "tokens": ["login", "ß"]}, "missing": 0},
  {"name": "tokc", "source": "u", "transform": {"kind": "token_count", "tokens": ["a", "b"]}, "missing": 0},
  {"name": "ip", "source": "u", "transform": {"kind": "is_ip", "part": "host"}, "missing": 0},
  {"name": "labels", "source": "u", "transform": {"kind": "label_count", "part": "host"}, "missing": 0},
  {"name": "segs", "source": "u", "transform": {"kind": "segment_count", "part": "path"}, "missing": 0},
  {"name": "params", "source": "u", "transform": {"kind": "param_count", "part": "query"}, "missing": 0},
  {"name": "https", "source": "u", "transform": {"kind": "equals", "value": "https", "part": "scheme"}, "missing": 0},
  {"name": "tld", "source": "u", "transform": {"kind": "suffix_in", "values": ["tk"], "part": "host"}, "missing": 0},
  {"name": "top", "source": "u", "transform": {"kind": "in_set", "values": ["example.com"], "part": "host"}, "missing": 0},
  {"name": "hour", "source": "@timestamp", "transform": {"kind": "hour_of_day"}, "missing": -1},
  {"name": "dow", "source": "@timestamp", "transform": {"kind": "day_of_week"}, "missing": -1},
  {"name": "weekend", "source": "@timestamp", "transform": {"kind": "is_weekend"}, "missing": -1}
]"#;

fn extractor() -> &'static FeatureExtractor {
    static X: OnceLock<FeatureExtractor> = OnceLock::new();
    X.get_or_init(|| {
        let specs: Vec<FeatureSpec> = serde_json::from_str(SPECS).unwrap();
        FeatureExtractor::compile(&specs, std::path::Path::new(".")).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let x = extractor();
    let mut row = vec![0.0f32; x.len()];
    if x.extract(&doc, &mut row).is_ok() {
        for (i, v) in row.iter().enumerate() {
            // Only the numeric feature declares NaN for missing; everything else is finite.
            assert!(v.is_finite() || (i == 0 && v.is_nan()), "feature {i} = {v}");
        }
    }
});
