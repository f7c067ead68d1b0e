//! Telemetry: Prometheus metrics (the `metrics` facade, rendered by
//! `metrics-exporter-prometheus`), model drift ([`drift`]) and ECS JSON logs ([`logs`]).
//!
//! Every metric name is a constant here, and each event is one function that counts it, so the
//! names live in one place (`docs/operations.md` lists them). Recording is off until
//! [`install`] runs (`[metrics] enabled`, the default in `vigil serve`); off, the functions return
//! at once and no drift window is kept. Gauges of state (behaviour cache, drift, loaded models)
//! are computed when `/metrics` is scraped ([`render`]).

pub mod drift;
pub mod logs;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::bundle::{Bundle, ModelRegistry};

/// Scoring time of one batch through one model (seconds), by `model`.
pub const MODEL_INFERENCE_SECONDS: &str = "vigil_model_inference_seconds";
/// Documents scored, by `model`.
pub const DOCUMENTS_SCORED: &str = "vigil_documents_scored_total";
/// Documents whose scoring failed, by `model` and `kind` (`error.type`).
pub const SCORING_ERRORS: &str = "vigil_scoring_errors_total";
/// Scores, by `model` (histogram, 0.1-wide buckets).
pub const MODEL_SCORE: &str = "vigil_model_score";
/// Error answers at the HTTP boundary, by `kind` (`error.type`) and `status`.
pub const HTTP_ERRORS: &str = "vigil_http_errors_total";
/// Bulk items by `outcome`: `indexed` (Elasticsearch 2xx), `es_rejected` (429),
/// `es_failed` (other Elasticsearch item errors), `vigil_failed` (failed by Vigil in place).
pub const BULK_ITEMS: &str = "vigil_bulk_items_total";
/// Entries and approximate bytes of the behavioural state cache.
pub const BEHAVIOUR_ENTRIES: &str = "vigil_behaviour_cache_entries";
pub const BEHAVIOUR_BYTES: &str = "vigil_behaviour_cache_bytes";
/// Lookups of the behavioural state cache by `result` (`hit`, `miss`), and its size evictions.
pub const BEHAVIOUR_LOOKUPS: &str = "vigil_behaviour_cache_lookups_total";
pub const BEHAVIOUR_EVICTIONS: &str = "vigil_behaviour_cache_evictions_total";
/// Events the behavioural state skipped, by `reason`.
pub const BEHAVIOUR_SKIPPED: &str = crate::features::behaviour::SKIPPED_METRIC;
/// Rule runs by `rule` and `outcome` (`ok`, `error`, `skipped`); duration in seconds by `rule`.
pub const RULE_RUNS: &str = "vigil_rule_runs_total";
pub const RULE_RUN_SECONDS: &str = "vigil_rule_run_seconds";
/// Alerts written by `rule`.
pub const ALERTS_WRITTEN: &str = "vigil_alerts_written_total";
/// Loaded model bundles.
pub const MODELS_LOADED: &str = "vigil_models_loaded";
/// 1 when the last readiness probe reached Elasticsearch, else 0.
pub const ELASTICSEARCH_UP: &str = "vigil_elasticsearch_up";
/// PSI of a model's recent scores against its reference sample, by `model`.
pub const MODEL_DRIFT_PSI: &str = "vigil_model_drift_psi";
/// PSI of a watched feature's recent values, by `model` and `feature`.
pub const FEATURE_DRIFT_PSI: &str = "vigil_feature_drift_psi";

const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];
const SCORE_BUCKETS: &[f64] = &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static ENABLED: AtomicBool = AtomicBool::new(false);
static DRIFT_WINDOW: AtomicUsize = AtomicUsize::new(10_000);

fn drift_monitor() -> &'static drift::DriftMonitor {
    static DRIFT: OnceLock<drift::DriftMonitor> = OnceLock::new();
    DRIFT.get_or_init(drift::DriftMonitor::default)
}

/// Installs the process-wide Prometheus recorder (once; later calls reuse it) and turns
/// recording on, with drift windows of `drift_window` documents.
pub fn install(drift_window: usize) -> PrometheusHandle {
    let handle = HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(MODEL_SCORE.into()), SCORE_BUCKETS)
                })
                .expect("bucket lists are not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will be empty");
            }
            handle
        })
        .clone();
    DRIFT_WINDOW.store(drift_window, Ordering::Relaxed);
    set_enabled(true);
    handle
}

/// How often [`upkeep`] folds histogram samples into their buckets.
pub const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

/// Folds the recorder's pending histogram samples into their buckets every [`UPKEEP_PERIOD`],
/// forever: the recorder keeps each sample until then, so memory stays bounded whether or not
/// anything scrapes `/metrics`.
pub async fn upkeep(handle: PrometheusHandle) {
    let mut every = tokio::time::interval(UPKEEP_PERIOD);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}

/// Turns recording on or off (the overhead benchmark compares both in one process).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// One batch of `bundle`: its scoring time, the documents scored and their scores (which also
/// feed the drift window, with their feature rows, `rows.len() == scores.len() * F`), and the
/// failures by kind.
pub fn batch_scored(
    bundle: &Bundle,
    elapsed: Duration,
    scores: &[f64],
    rows: &[f32],
    errors: &[&'static str],
) {
    if !enabled() {
        return;
    }
    let model = bundle.name().to_string();
    histogram!(MODEL_INFERENCE_SECONDS, "model" => model.clone()).record(elapsed.as_secs_f64());
    counter!(DOCUMENTS_SCORED, "model" => model.clone()).increment(scores.len() as u64);
    let h = histogram!(MODEL_SCORE, "model" => model.clone());
    for &s in scores {
        h.record(s);
    }
    for &kind in errors {
        counter!(SCORING_ERRORS, "model" => model.clone(), "kind" => kind).increment(1);
    }
    if !scores.is_empty() {
        drift_monitor().observe(bundle, DRIFT_WINDOW.load(Ordering::Relaxed), scores, rows);
    }
}

/// An error answer at the HTTP boundary.
pub fn http_error(kind: &'static str, status: u16) {
    if enabled() {
        counter!(HTTP_ERRORS, "kind" => kind, "status" => status.to_string()).increment(1);
    }
}

/// Bulk items: those Vigil failed in place, and Elasticsearch's items by their status.
pub fn bulk_items(vigil_failed: usize, statuses: &[u16]) {
    if !enabled() {
        return;
    }
    if vigil_failed > 0 {
        counter!(BULK_ITEMS, "outcome" => "vigil_failed").increment(vigil_failed as u64);
    }
    let (mut ok, mut rejected, mut failed) = (0u64, 0u64, 0u64);
    for &status in statuses {
        match status {
            200..=299 => ok += 1,
            429 => rejected += 1,
            _ => failed += 1,
        }
    }
    for (outcome, n) in [
        ("indexed", ok),
        ("es_rejected", rejected),
        ("es_failed", failed),
    ] {
        if n > 0 {
            counter!(BULK_ITEMS, "outcome" => outcome).increment(n);
        }
    }
}

/// One rule's run: its outcome and duration, and the alerts it wrote.
pub fn rule_run(report: &crate::rules::scheduler::RunReport) {
    if !enabled() {
        return;
    }
    let rule = report.rule.clone();
    let outcome = match (&report.error, &report.skipped) {
        (Some(_), _) => "error",
        (None, Some(_)) => "skipped",
        (None, None) => "ok",
    };
    counter!(RULE_RUNS, "rule" => rule.clone(), "outcome" => outcome).increment(1);
    if report.skipped.is_none() {
        histogram!(RULE_RUN_SECONDS, "rule" => rule.clone())
            .record(report.duration_ms as f64 / 1000.0);
    }
    if report.alerts_written > 0 {
        counter!(ALERTS_WRITTEN, "rule" => rule).increment(report.alerts_written);
    }
}

/// The readiness probe's view of Elasticsearch.
pub fn elasticsearch_up(up: bool) {
    if enabled() {
        gauge!(ELASTICSEARCH_UP).set(if up { 1.0 } else { 0.0 });
    }
}

/// The Prometheus text for a scrape: state gauges are computed now, then everything rendered.
pub fn render(handle: &PrometheusHandle, registry: &ModelRegistry) -> String {
    let snapshot = registry.snapshot();
    gauge!(MODELS_LOADED).set(snapshot.models.len() as f64);
    gauge!(BEHAVIOUR_ENTRIES).set(registry.behaviour.entries() as f64);
    gauge!(BEHAVIOUR_BYTES).set(registry.behaviour.weighted_bytes() as f64);
    let b = &registry.behaviour;
    let lookups = b.lookups.load(std::sync::atomic::Ordering::Relaxed);
    let misses = b.misses.load(std::sync::atomic::Ordering::Relaxed);
    counter!(BEHAVIOUR_LOOKUPS, "result" => "hit").absolute(lookups.saturating_sub(misses));
    counter!(BEHAVIOUR_LOOKUPS, "result" => "miss").absolute(misses);
    counter!(BEHAVIOUR_EVICTIONS).absolute(b.evictions.load(std::sync::atomic::Ordering::Relaxed));
    for (reason, n) in registry.behaviour.skipped.snapshot() {
        counter!(BEHAVIOUR_SKIPPED, "reason" => reason).absolute(n);
    }
    let loaded: Vec<&str> = snapshot.models.keys().map(String::as_str).collect();
    drift_monitor().each(&loaded, |model, d| {
        if let Some(psi) = d.score_psi() {
            gauge!(MODEL_DRIFT_PSI, "model" => model.to_string()).set(psi);
        }
        for (feature, psi) in d.feature_psi() {
            gauge!(FEATURE_DRIFT_PSI, "model" => model.to_string(), "feature" => feature.to_string())
                .set(psi);
        }
    });
    handle.run_upkeep();
    handle.render()
}
