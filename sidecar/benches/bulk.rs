//! Criterion benchmarks of the drop-in `_bulk` path without the network: a 1,000-document bulk
//! of authentication events (models/samples/auth-events.ndjson, repeated) through
//!
//! - `baseline: serde_json every line`: parsing every NDJSON line into a `serde_json::Value`,
//!   the least a JSON-aware proxy does (the baseline in the same run);
//! - `split (bulk::parse)`: Vigil's splitter with every index/create source parsed whole, on the
//!   current rayon pool;
//! - `split, scanned (Scoring::parse)`: the splitter as `_bulk` runs it, sources only scanned
//!   for the fields routing, normalisation and the routed models read;
//! - `split + rewrite, unrouted`: plus routing with no route matching (every line forwarded
//!   byte for byte);
//! - `split + route + score + rewrite`: as `_bulk` runs it: the embedded default routes send
//!   every document to `login-risk` (explanations per the embedded policy), results written,
//!   body rebuilt; `…, parsed whole` the same with every source parsed whole.
//!
//! `cargo bench --bench bulk` (from `sidecar/`). Throughput is in documents.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use serde_json::Value;
use vigil::rewrite::Scoring;

#[path = "support/auth_bulk.rs"]
mod auth_bulk;
use auth_bulk::{body, defaults, DOCS};

fn bench(c: &mut Criterion) {
    let body = body();
    let (config, registry) = defaults();
    let scoring = Scoring::configured(&registry, &config);
    assert!(
        scoring.scanner.is_some(),
        "the default routes' fields can be scanned"
    );
    let no_routes = vigil::route::Routes::compile(&[]).expect("empty routes");
    let no_models = vigil::rewrite::routed_models(&registry, &no_routes);
    let unrouted = Scoring {
        routes: &no_routes,
        scanner: vigil::rewrite::reader(&no_models, &no_routes),
        models: no_models,
        ..Scoring::configured(&registry, &config)
    };
    let check = scoring.rewrite(scoring.parse(&body, None).expect("bulk"));
    assert_eq!(check.stats.scored, DOCS, "every document is scored");

    let mut group = c.benchmark_group("bulk_1000_auth_events");
    group.throughput(Throughput::Elements(DOCS as u64));
    group.sample_size(20);
    group.bench_function("baseline: serde_json every line", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let v: Value = serde_json::from_slice(line).expect("JSON");
                n += usize::from(v.is_object());
            }
            black_box(n)
        })
    });
    group.bench_function("split (bulk::parse)", |b| {
        b.iter(|| black_box(vigil::bulk::parse(black_box(&body), None).expect("bulk")))
    });
    group.bench_function("split, scanned (Scoring::parse)", |b| {
        b.iter(|| black_box(scoring.parse(black_box(&body), None).expect("bulk")))
    });
    group.bench_function("split + rewrite, unrouted", |b| {
        b.iter(|| {
            let entries = unrouted.parse(black_box(&body), None).expect("bulk");
            black_box(unrouted.rewrite(entries))
        })
    });
    group.bench_function("split + route + score + rewrite", |b| {
        b.iter(|| {
            let entries = scoring.parse(black_box(&body), None).expect("bulk");
            black_box(scoring.rewrite(entries))
        })
    });
    group.bench_function("split + route + score + rewrite, parsed whole", |b| {
        b.iter(|| {
            let entries = vigil::bulk::parse(black_box(&body), None).expect("bulk");
            black_box(scoring.rewrite(entries))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
