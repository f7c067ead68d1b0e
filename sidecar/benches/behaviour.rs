//! Criterion benchmarks of the behavioural state: `login-risk`'s behavioural features computed
//! for a bulk of 1,000 authentication events (the samples, with users and source IPs folded onto
//! 16 of each so that histories fill), and the events recorded.
//!
//! - `young histories`: every bulk against a new, empty state (what the first minutes of a
//!   stream cost);
//! - `full histories`: every bulk against a state whose histories already hold the bound of
//!   records per entity and stream (`MAX_EVENTS_PER_ENTITY`), as on a long-running stream:
//!   recording an event then also drops the oldest.
//!
//! Each bulk carries events later than every recorded one (a live stream). Baseline in the same
//! run: serde_json parsing the same 1,000 events, what any JSON-aware service pays before it can
//! read a field.
//!
//! `cargo bench --bench behaviour` (from `sidecar/`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::Value;
use vigil::features::behaviour::{BehaviourFeature, BehaviourState, MAX_EVENTS_PER_ENTITY};

const DOCS: usize = 1000;
const ENTITIES: usize = 16;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// The first 1,000 sample events, users and source IPs folded onto 16 of each.
fn events() -> Vec<Value> {
    let path = repo().join("models/samples/auth-events.ndjson");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(DOCS)
        .enumerate()
        .map(|(i, l)| {
            let mut d: Value = serde_json::from_str(l).expect("sample events are JSON");
            d["user"]["name"] = format!("user-{}", i % ENTITIES).into();
            d["source"]["ip"] = format!("10.0.0.{}", i * 7 % ENTITIES).into();
            d
        })
        .collect()
}

/// Bulk number `k`: the events moved `k` spans later (the samples cover under 4 hours).
struct Stream {
    events: Vec<Value>,
    times: Vec<DateTime<Utc>>,
    k: i64,
}

impl Stream {
    fn new() -> Self {
        let events = events();
        let times = events
            .iter()
            .map(|d| {
                DateTime::parse_from_rfc3339(d["@timestamp"].as_str().expect("a timestamp"))
                    .expect("RFC 3339")
                    .with_timezone(&Utc)
            })
            .collect();
        Stream {
            events,
            times,
            k: 0,
        }
    }

    fn next(&mut self) -> Vec<Value> {
        let shift = chrono::Duration::hours(4 * self.k);
        self.k += 1;
        self.events
            .iter()
            .zip(&self.times)
            .map(|(d, t)| {
                let mut d = d.clone();
                d["@timestamp"] = (*t + shift).to_rfc3339().into();
                d
            })
            .collect()
    }
}

fn process(state: &BehaviourState, docs: &[Value], features: &[Arc<BehaviourFeature>]) {
    let refs: Vec<&Value> = docs.iter().collect();
    // The events lie in the future of this machine: no clock-skew check.
    black_box(state.process(&refs, features, DateTime::<Utc>::MAX_UTC));
}

fn bench(c: &mut Criterion) {
    let bundle = vigil::bundle::load(&repo().join("models/login-risk"))
        .unwrap_or_else(|e| panic!("login-risk: {}", e.reason));
    let features = bundle.extractor.behaviour_features();
    assert!(
        !features.is_empty(),
        "login-risk reads behavioural features"
    );
    let state = || BehaviourState::new(1 << 32, Duration::from_secs(24 * 3600));

    let mut group = c.benchmark_group("behaviour/login-risk, 1,000 events");
    group.throughput(Throughput::Elements(DOCS as u64));
    let lines: Vec<String> = events().iter().map(Value::to_string).collect();
    group.bench_function("baseline: serde_json parse", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(serde_json::from_str::<Value>(black_box(l)).expect("JSON"));
            }
        })
    });

    let mut stream = Stream::new();
    group.bench_function("young histories", |b| {
        b.iter_batched(
            || (state(), stream.next()),
            |(state, docs)| {
                process(&state, &docs, &features);
                state
            },
            BatchSize::LargeInput,
        )
    });

    // Each user gets 1,000 / 16 events a bulk: enough bulks to fill every history first.
    let full = state();
    let mut stream = Stream::new();
    let fill = (MAX_EVENTS_PER_ENTITY * ENTITIES).div_ceil(DOCS) * 2;
    for _ in 0..fill {
        process(&full, &stream.next(), &features);
    }
    group.bench_function("full histories", |b| {
        b.iter_batched(
            || stream.next(),
            |docs| process(&full, &docs, &features),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
