//! Overhead of metrics, drift windows and logging on the scoring path, in one process and one
//! run: a 1,000-event bulk of authentication events (models/samples/auth-events.ndjson,
//! repeated) through split → route → score → rewrite with the embedded default routes, timed
//! in alternating rounds with telemetry off (no recording, no drift) and on (the Prometheus
//! recorder, drift windows, ECS logs at `info` into a discarded writer, a `/metrics` render per
//! round as a scrape would). Prints the medians and their ratio.
//!
//! `cargo run --release --example telemetry_overhead [-- ROUNDS]` (from `sidecar/`; default 30).

use std::time::{Duration, Instant};

use vigil::rewrite::Scoring;

#[path = "../benches/support/auth_bulk.rs"]
mod auth_bulk;
use auth_bulk::{body, defaults, DOCS};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    // ECS logs at info, as in production, written nowhere.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
        .event_format(vigil::telemetry::logs::EcsFormat)
        .with_writer(std::io::sink)
        .init();
    let body = body();
    let (config, registry) = defaults();
    let scoring = Scoring::configured(&registry, &config);
    let handle = vigil::telemetry::install(config.metrics.drift_window);
    let run = |on: bool| {
        vigil::telemetry::set_enabled(on);
        let started = Instant::now();
        let out = scoring.rewrite(scoring.parse(&body, None).expect("bulk"));
        assert_eq!(out.stats.scored, DOCS, "every document is scored");
        if on {
            std::hint::black_box(vigil::telemetry::render(&handle, &registry));
        }
        started.elapsed()
    };
    // Warm-up: caches, drift references, the recorder's series.
    for _ in 0..3 {
        run(true);
        run(false);
    }
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        // Alternate which goes first so drift in machine load hits both alike.
        if i % 2 == 0 {
            off.push(run(false));
            on.push(run(true));
        } else {
            on.push(run(true));
            off.push(run(false));
        }
    }
    let (off, on) = (median(off), median(on));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("| telemetry | median per 1,000-doc bulk | docs/s |");
    println!("|---|---|---|");
    for (name, d) in [("off (baseline)", off), ("on", on)] {
        println!(
            "| {name} | {:.2} ms | {:.0} |",
            d.as_secs_f64() * 1e3,
            DOCS as f64 / d.as_secs_f64()
        );
    }
    println!(
        "\noverhead: on/off = {:.3} ({rounds} rounds each, load average {})",
        on.as_secs_f64() / off.as_secs_f64(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
