//! Reading features straight from a document's bytes (`FeatureExtractor::extract_scanned`, used by
//! the scoring API) gives the same row, or the same error, as parsing the document and extracting
//! (`extract`), for the shipped URL model over its samples and for the test bundles over their
//! golden rows, each in many shapes: nested, dotted, mixed, inside arrays, with nulls, wrong
//! types, unread noise and escaped keys.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Map, Value};
use vigil::bundle::{golden, load, Bundle};

/// A small deterministic generator (xorshift), so every run tries the same shapes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One random reshaping of `doc` that Elasticsearch would read as the same fields (or as a
/// deliberately different value: null, wrong type, an array).
fn reshape(value: &Value, rng: &mut Rng, depth: usize) -> Value {
    let Value::Object(map) = value else {
        return match rng.below(12) {
            0 => json!([value.clone(), "second"]),
            1 => Value::Null,
            2 if value.is_number() => json!(value.to_string()),
            3 if value.is_string() => json!(7),
            _ => value.clone(),
        };
    };
    let mut out = Map::new();
    if rng.below(4) == 0 {
        out.insert("noise".into(), json!({"a": [1, {"b": null}], "c": "d"}));
    }
    for (k, v) in map {
        match (v, rng.below(5)) {
            // Flatten one level: {"k": {"s": x}} -> {"k.s": x}.
            (Value::Object(inner), 0) if depth < 3 => {
                for (s, x) in inner {
                    out.insert(format!("{k}.{s}"), reshape(x, rng, depth + 1));
                }
            }
            // Wrap an object in an array (lookup reads its first element).
            (Value::Object(_), 1) => {
                out.insert(
                    k.clone(),
                    json!([reshape(v, rng, depth + 1), {"ignored": 1}]),
                );
            }
            _ => {
                out.insert(k.clone(), reshape(v, rng, depth + 1));
            }
        }
    }
    Value::Object(out)
}

/// Serialises `doc`, sometimes with spaces and a key written with a unicode escape.
fn text(doc: &Value, rng: &mut Rng) -> String {
    let mut s = if rng.below(3) == 0 {
        serde_json::to_string_pretty(doc).unwrap()
    } else {
        doc.to_string()
    };
    if rng.below(4) == 0 {
        s = s.replacen("\"url\"", "\"\\u0075rl\"", 1);
        s = s.replacen("\"features\"", "\"feat\\u0075res\"", 1);
    }
    s
}

fn same_row(a: &[f32], b: &[f32]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Checks every document in every shape; returns (scanned, given up).
fn check(bundle: &Bundle, docs: &[Value], seed: u64) -> (usize, usize) {
    let extractor = &bundle.extractor;
    let scanner = extractor
        .scanner()
        .unwrap_or_else(|| panic!("{} has a scanner", bundle.name()));
    let n = extractor.len();
    let (mut scanned, mut gave_up) = (0, 0);
    let mut rng = Rng(seed);
    for doc in docs {
        for round in 0..8 {
            let shaped = if round == 0 {
                doc.clone()
            } else {
                reshape(doc, &mut rng, 0)
            };
            let text = text(&shaped, &mut rng);
            let parsed: Value = serde_json::from_str(&text).unwrap();
            let mut want = vec![0.0f32; n];
            let want = extractor.extract(&parsed, &mut want).map(|()| want);
            let Some(found) = scanner.scan(&text, "ml") else {
                gave_up += 1;
                continue;
            };
            scanned += 1;
            let mut got = vec![0.0f32; n];
            let got = extractor.extract_scanned(&found, &mut got).map(|()| got);
            match (&want, &got) {
                (Ok(w), Ok(g)) => assert!(same_row(w, g), "{text}\n{w:?}\n{g:?}"),
                (Err(w), Err(g)) => assert_eq!(w, g, "{text}"),
                _ => panic!("{text}: parsed {want:?}, scanned {got:?}"),
            }
        }
    }
    (scanned, gave_up)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn url_model_reads_the_same_rows_from_bytes() {
    let bundle = load(&repo().join("models/url-phishing")).unwrap();
    let samples = std::fs::read_to_string(repo().join("models/samples/urls.ndjson")).unwrap();
    let mut docs: Vec<Value> = samples
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Both sources, only the second, dotted, and neither.
    docs.push(json!({"url": {"original": "http://a.example/x", "full": "http://b.example/y"}}));
    docs.push(json!({"url": {"full": "http://198.51.100.7/login?u=1"}}));
    docs.push(json!({"url.full": "https://c.example", "url": {"original": null}}));
    docs.push(json!({"event": {"kind": "event"}}));
    let (scanned, gave_up) = check(&bundle, &docs, 7);
    assert!(scanned > 2_000, "scanned {scanned}, gave up {gave_up}");
}

#[test]
fn test_bundles_read_the_same_rows_from_bytes() {
    for name in [
        "bench_xgb",
        "logreg_binary",
        "xgb_multiclass",
        "rf_regressor",
    ] {
        let bundle = load(&bundle(name)).unwrap();
        // The golden documents, as the exporter wrote them (some values wrapped in arrays).
        let docs: Vec<Value> = golden::read(&bundle.dir.join("golden.json"))
            .unwrap()
            .rows
            .into_iter()
            .filter_map(|r| r.document)
            .take(40)
            .collect();
        assert_eq!(docs.len(), 40, "{name}: golden documents");
        let (scanned, gave_up) = check(&bundle, &docs, 11);
        assert!(
            scanned > 200,
            "{name}: scanned {scanned}, gave up {gave_up}"
        );
    }
}
