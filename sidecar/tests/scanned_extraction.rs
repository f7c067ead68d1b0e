//! Reading features straight from a document's bytes (`FeatureExtractor::extract_scanned`, used by
//! the scoring API) gives the same row, or the same error, as parsing the document and extracting
//! (`extract`), for the shipped URL model over its samples and for the test bundles over their
//! golden rows, each in many shapes: nested, dotted, mixed, inside arrays, with nulls, wrong
//! types, unread noise and escaped keys.

mod common;

use common::*;
use serde_json::{json, Map, Value};
use vigil::bundle::{golden, load, Bundle};
use vigil::features::{read_batch, FeatureExtractor, Scanned};
use vigil::http::score::parse_docs;

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

/// What was scanned from `text` gives the row (bit for bit), or the error, that parsing `text`
/// and extracting gives.
fn assert_scanned_as_parsed(extractor: &FeatureExtractor, found: &Scanned, text: &str) {
    let parsed: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("scanned, but serde_json says {e}: {text}"));
    let n = extractor.len();
    let (mut want, mut got) = (vec![0.0f32; n], vec![0.0f32; n]);
    let want = extractor.extract(&parsed, &mut want).map(|()| want);
    let got = extractor.extract_scanned(found, &mut got).map(|()| got);
    match (&want, &got) {
        (Ok(w), Ok(g)) => assert!(
            w.iter().zip(g).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{text}\n{w:?}\n{g:?}"
        ),
        (Err(w), Err(g)) => assert_eq!(w, g, "{text}"),
        _ => panic!("{text}: parsed {want:?}, scanned {got:?}"),
    }
}

/// Checks every document in every shape; returns (scanned, given up).
fn check(bundle: &Bundle, docs: &[Value], seed: u64) -> (usize, usize) {
    let extractor = &bundle.extractor;
    let scanner = extractor
        .scanner()
        .unwrap_or_else(|| panic!("{} has a scanner", bundle.name()));
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
            let Some(found) = scanner.scan(&text, "ml") else {
                gave_up += 1;
                continue;
            };
            scanned += 1;
            assert_scanned_as_parsed(extractor, &found, &text);
        }
    }
    (scanned, gave_up)
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

/// Reads `body` in one pass and, when that accepts it, checks it against serde_json: the body
/// must split into the same document texts, and every scanned document must parse and give the
/// row (or error) that parsing and extracting gives. Returns whether the one pass accepted it.
fn one_pass_agrees(bundle: &Bundle, body: &str, limit: usize) -> bool {
    let extractor = &bundle.extractor;
    let scanner = extractor.scanner();
    let Some(batch) = read_batch(scanner, body, "ml", limit) else {
        return false;
    };
    let split = parse_docs(body.as_bytes(), limit)
        .unwrap_or_else(|e| panic!("serde_json refuses what one pass read ({e:?}):\n{body}"));
    let texts: Vec<&str> = batch.iter().map(|d| d.text).collect();
    let want: Vec<&str> = split.iter().map(|d| d.get()).collect();
    assert_eq!(texts, want, "{body}");
    for doc in &batch {
        assert_eq!(
            doc.scanned,
            scanner.and_then(|s| s.scan(doc.text, "ml")),
            "{}",
            doc.text
        );
        if let Some(found) = &doc.scanned {
            assert_scanned_as_parsed(extractor, found, doc.text);
        }
    }
    true
}

/// One random edit of `body`: a byte removed, a JSON-significant character inserted, a span
/// repeated, or the end cut off.
fn mutate(body: &str, rng: &mut Rng) -> String {
    const INSERTS: [&str; 22] = [
        "{", "}", "[", "]", ",", ":", "\"", "\\", "0", "1", "-", ".", "e", "+", " ", "\n", "t",
        "null", "\\u", "\\ud800", "ü", "\u{1}",
    ];
    let mut at = rng.below(body.len() as u64 + 1) as usize;
    while !body.is_char_boundary(at) {
        at -= 1;
    }
    let mut out = body[..at].to_string();
    let rest = &body[at..];
    match rng.below(4) {
        0 => out.push_str(rest.get(1..).unwrap_or(rest)),
        1 => {
            out.push_str(INSERTS[rng.below(INSERTS.len() as u64) as usize]);
            out.push_str(rest);
        }
        2 => {
            let mut end = (at + 1 + rng.below(40) as usize).min(body.len());
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            out.push_str(&body[at..end]);
            out.push_str(rest);
        }
        _ => {}
    }
    out
}

#[test]
fn batches_are_read_in_one_pass_as_serde_json_reads_them() {
    let mut rng = Rng(23);
    for name in ["bench_xgb", "url"] {
        let bundle = match name {
            "url" => load(&repo().join("models/url-phishing")).unwrap(),
            _ => load(&bundle(name)).unwrap(),
        };
        let docs: Vec<Value> = match name {
            "url" => std::fs::read_to_string(repo().join("models/samples/urls.ndjson"))
                .unwrap()
                .lines()
                .take(30)
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            _ => golden::read(&bundle.dir.join("golden.json"))
                .unwrap()
                .rows
                .into_iter()
                .filter_map(|r| r.document)
                .take(30)
                .collect(),
        };
        let mut texts: Vec<String> = docs
            .iter()
            .map(|d| text(&reshape(d, &mut rng, 0), &mut rng))
            .collect();
        // Documents the scanner leaves to the full parse, which one pass must still split.
        texts.extend(
            [
                r#"{"url": {"original": "a"}, "url": {"original": "b"}}"#,
                r#"{"features": {"f0": 1, "f0": 2}}"#,
                r#""not an object""#,
                "[1, {\"a\": [true, false, null]}]",
                r#"{"deep": [[[[{"x": -0.0e-0}]]]], "ml": {"inference": 1}}"#,
                r#"{"s": "\ud83d\ude00 \" \\ \/ \b \f \n \r \t \u00e9 ü"}"#,
                "{}",
            ]
            .map(String::from),
        );
        let bodies = [
            format!("[{}]", texts.join(",")),
            format!("{{\"docs\": [\n{}\n]}}", texts.join(",\n")),
            format!(" \r\n{{ \"docs\" :[ {} ] }}\t", texts.join(" , ")),
            "[]".to_string(),
            "{\"docs\":[]}".to_string(),
        ];
        for body in &bodies {
            assert!(
                one_pass_agrees(&bundle, body, 1_000),
                "{name}: refused {body}"
            );
        }
        // Over the limit: left to serde_json, which refuses it.
        assert!(read_batch(bundle.extractor.scanner(), &bodies[0], "ml", 36).is_none());
        assert!(parse_docs(bodies[0].as_bytes(), 36).is_err());
        // Shapes one pass leaves to serde_json (which refuses or accepts them as before).
        for body in [
            "{\"docs\": [], \"other\": 1}",
            "{\"d\\u006fcs\": []}",
            "{\"docs\": {}}",
            "[1] [2]",
            "[{},]",
        ] {
            assert!(!one_pass_agrees(&bundle, body, 1_000), "{body}");
        }
        // Invalid values in a field no feature reads (the reader skips them): refused, as
        // serde_json refuses them; the same field with a valid value is accepted.
        for (bad, good) in [
            ("01", "0"),
            ("-01.5", "-1.5"),
            ("1.", "1.0"),
            (".5", "0.5"),
            ("-", "-0"),
            ("1e", "1e0"),
            ("+1", "1"),
            ("tru", "true"),
            ("nul", "null"),
            ("[1,]", "[1]"),
            ("{\"a\":1,}", "{\"a\":1}"),
            ("{\"a\" 1}", "{\"a\": 1}"),
            ("{1: 1}", "{\"1\": 1}"),
            ("\"tab\there\"", "\"tab\\there\""),
            ("\"\\x\"", "\"\\n\""),
            ("\"\\u12\"", "\"\\u1234\""),
            ("\"open", "\"closed\""),
        ] {
            for (value, valid) in [(bad, false), (good, true)] {
                let body = format!("[{{\"unread\": {value}, \"ml\": 1}}, {{}}]");
                assert_eq!(parse_docs(body.as_bytes(), 1_000).is_ok(), valid, "{body}");
                assert_eq!(one_pass_agrees(&bundle, &body, 1_000), valid, "{body}");
            }
        }
        // Unpaired surrogates: serde_json's split skips over them, and refuses the document when
        // it parses it whole; one pass leaves the body to serde_json. A pair is read.
        for (value, valid) in [
            ("\"\\ud800\"", false),
            ("\"\\udc00 x\"", false),
            ("\"\\ud83d\\ude00\"", true),
        ] {
            let body = format!("[{{\"unread\": {value}}}]");
            assert!(parse_docs(body.as_bytes(), 1_000).is_ok(), "{body}");
            assert_eq!(one_pass_agrees(&bundle, &body, 1_000), valid, "{body}");
        }
        // Random edits: what one pass accepts, serde_json accepts and splits the same way; and
        // one pass refuses a valid body only where it contains an escape (left to serde_json).
        let (mut accepted, mut tried) = (0, 0);
        for body in &bodies[..3] {
            for _ in 0..400 {
                let mut edited = body.clone();
                for _ in 0..1 + rng.below(3) {
                    edited = mutate(&edited, &mut rng);
                }
                tried += 1;
                let fast = one_pass_agrees(&bundle, &edited, 1_000);
                accepted += usize::from(fast);
                if !fast && !edited.contains('\\') {
                    if let Ok(split) = parse_docs(edited.as_bytes(), 1_000) {
                        panic!(
                            "{name}: one pass refused a valid body of {} documents:\n{edited}",
                            split.len()
                        );
                    }
                }
            }
        }
        assert!(
            accepted > tried / 10 && accepted < tried,
            "{name}: one pass accepted {accepted} of {tried} edited bodies"
        );
    }
}
