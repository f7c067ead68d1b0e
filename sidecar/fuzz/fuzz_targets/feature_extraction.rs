//! Feature extraction from arbitrary JSON never panics, and every extracted value is either
//! finite, or NaN where the manifest declares NaN for a missing field. Reading fields straight
//! from the bytes (the scanner, and the scoring API's one-pass batch reader) accepts only what
//! serde_json accepts and gives the same row.
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

/// The scanner's strict reader accepts only what serde_json accepts, and reads the same row.
fn scanned_as_parsed(x: &FeatureExtractor, data: &[u8]) {
    let (Ok(text), Some(scanner)) = (std::str::from_utf8(data), x.scanner()) else {
        return;
    };
    let parsed = serde_json::from_str::<serde_json::Value>(text);
    if let Some(found) = scanner.scan(text, "ml") {
        let doc = parsed.as_ref().expect("serde_json parses what was scanned");
        let (mut a, mut b) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
        let a = x.extract(doc, &mut a).map(|()| a);
        let b = x.extract_scanned(&found, &mut b).map(|()| b);
        match (a, b) {
            (Ok(a), Ok(b)) => assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits())),
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("parsed {a:?}, scanned {b:?}"),
        }
    }
    let body = format!("[{text}]");
    if let Some(batch) = vigil::features::read_batch(Some(scanner), &body, "ml", 10) {
        let split = vigil::http::score::parse_docs(body.as_bytes(), 10)
            .expect("serde_json splits what one pass read");
        let texts: Vec<&str> = split.iter().map(|d| d.get()).collect();
        assert_eq!(batch.iter().map(|d| d.text).collect::<Vec<_>>(), texts);
    }
}

fuzz_target!(|data: &[u8]| {
    let x = extractor();
    scanned_as_parsed(x, data);
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let mut row = vec![0.0f32; x.len()];
    if x.extract(&doc, &mut row).is_ok() {
        for (i, v) in row.iter().enumerate() {
            // Only the numeric feature declares NaN for missing; everything else is finite.
            assert!(v.is_finite() || (i == 0 && v.is_nan()), "feature {i} = {v}");
        }
    }
});
