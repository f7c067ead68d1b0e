//! Criterion benchmarks of feature extraction, one document at a time, through the shipped
//! bundles' own extractors: a URL document through `url-phishing`, an authentication event
//! through `login-risk`. Baseline in the same run: parsing the same document with serde_json
//! (what any JSON-aware service pays before it can read a field), so the report shows what
//! extraction costs relative to the parse that precedes it on the ingest path.
//!
//! `cargo bench --bench features` (from `sidecar/`).

use std::path::{Path, PathBuf};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// The first `n` non-empty lines of a sample file.
fn sample(file: &str, n: usize) -> Vec<String> {
    let path = repo().join("models/samples").join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .map(str::to_string)
        .collect()
}

fn bench_model(c: &mut Criterion, model: &str, file: &str) {
    let bundle = vigil::bundle::load(&repo().join("models").join(model))
        .unwrap_or_else(|e| panic!("{model}: {}", e.reason));
    // Cycle over 64 different documents so one lucky document does not decide the result.
    let lines = sample(file, 64);
    let docs: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("sample documents are JSON"))
        .collect();
    let mut row = vec![0.0f32; bundle.n_features()];
    for d in &docs {
        bundle
            .extractor
            .extract(d, &mut row)
            .expect("sample documents extract");
    }

    let mut group = c.benchmark_group(format!("features/{model}"));
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("baseline: serde_json parse", |b| {
        b.iter(|| {
            i = (i + 1) % lines.len();
            black_box(serde_json::from_str::<Value>(black_box(&lines[i])).expect("JSON"))
        })
    });
    let mut i = 0usize;
    group.bench_function("extract (parsed document)", |b| {
        b.iter(|| {
            i = (i + 1) % docs.len();
            bundle
                .extractor
                .extract(black_box(&docs[i]), &mut row)
                .expect("extract");
            black_box(&row);
        })
    });
    let mut i = 0usize;
    group.bench_function("parse + extract", |b| {
        b.iter(|| {
            i = (i + 1) % lines.len();
            let d: Value = serde_json::from_str(black_box(&lines[i])).expect("JSON");
            bundle.extractor.extract(&d, &mut row).expect("extract");
            black_box(&row);
        })
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    bench_model(c, "url-phishing", "urls.ndjson");
    bench_model(c, "login-risk", "auth-events.ndjson");
}

criterion_group!(benches, bench);
criterion_main!(benches);
