//! Warm start: the behavioural state seeded from what Elasticsearch already holds, so that a
//! restart or a new replica does not make every user "new".
//!
//! The loaded bundles' behavioural features name the streams to seed (`docs/behaviour-state.md`).
//! Streams are grouped by entity path and `when` filter; one composite aggregation per entity
//! path pages through the entities (`after_key`, bounded by `max_entities`), and per entity and
//! group it reads: the most recent events exactly (`top_hits`), each source's values with their
//! counts and first/last times (`terms` + `min`/`max`), and the group's count and time range.
//! Each page is merged into the state as it arrives ([`BehaviourState::seed`]: a union that
//! never drops what the live stream recorded), so Vigil serves while it warms.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use elasticsearch::{Elasticsearch, SearchParts};
use serde::Serialize;
use serde_json::{json, Value};

use super::behaviour::{BehaviourFeature, BehaviourState, Kind, Seed, ValueTotal, When};
use super::timestamp;

/// Exact recent events read per entity and group.
pub const RECENT_EVENTS: usize = 32;
/// Distinct values read per entity and source (the rest are counted without their value).
pub const VALUES_PER_SOURCE: usize = 100;
/// Buckets one page may create, below Elasticsearch's `search.max_buckets` (65,536).
const BUCKET_BUDGET: usize = 50_000;

/// `[features]` warm-start settings (validated in `config.rs`).
#[derive(Debug, Clone)]
pub struct WarmSettings {
    /// Index patterns searched.
    pub index: Vec<String>,
    /// How far back from now events are read (bounded per stream by its largest window).
    pub lookback_ms: i64,
    /// How often to seed again after the first run (`None`: only at startup).
    pub interval: Option<Duration>,
    /// Entities seeded per entity path (`user.name`, `source.ip`, ...) and run.
    pub max_entities: usize,
    /// A run stops after this long, keeping what it merged.
    pub timeout: Duration,
    /// Entities per page (lowered when the page would exceed the bucket budget).
    pub page_size: usize,
    /// End of the look-back window (default: now); for demos and replays of past data.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    #[error("warm start: cannot reach Elasticsearch: {0}")]
    Transport(String),
    #[error("warm start: Elasticsearch answered {status}: {reason}")]
    Status { status: u16, reason: String },
    #[error("warm start: unexpected response: {0}")]
    Shape(String),
}

/// Where warm start stands, for the readiness endpoint and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Warm start is off, or has not begun.
    Cold,
    /// The first run is in progress (Vigil serves meanwhile).
    Warming,
    /// The last run read every entity it was allowed to.
    Warm,
    /// The last run stopped early (time budget or an error); the state holds what it merged.
    Partial,
}

/// Progress shared with the readiness endpoint.
#[derive(Debug, Default)]
pub struct Progress {
    phase: AtomicU8,
    runs: AtomicU64,
    entities: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Progress {
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            1 => Phase::Warming,
            2 => Phase::Warm,
            3 => Phase::Partial,
            _ => Phase::Cold,
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Records the outcome of one run.
    pub fn finish(&self, result: &Result<Report, WarmError>) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        let (phase, error) = match result {
            Ok(r) => {
                self.entities.store(r.entities, Ordering::Relaxed);
                (
                    if r.complete {
                        Phase::Warm
                    } else {
                        Phase::Partial
                    },
                    None,
                )
            }
            Err(e) => (Phase::Partial, Some(e.to_string())),
        };
        self.set_phase(phase);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// A JSON summary: phase, runs, entities seeded by the last run, last error.
    pub fn summary(&self) -> Value {
        json!({
            "state": self.phase(),
            "runs": self.runs.load(Ordering::Relaxed),
            "entities": self.entities.load(Ordering::Relaxed),
            "last_error": *self.last_error.lock().unwrap_or_else(|e| e.into_inner()),
        })
    }
}

/// What one run merged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub entities: u64,
    pub pages: u64,
    /// Events read back exactly and added.
    pub exact: u64,
    /// Stand-ins added for older events known by their counts.
    pub spread: u64,
    /// False when the entity bound stopped paging before the last entity.
    pub complete: bool,
}

/// How the totals of a stream are read.
#[derive(Debug, Clone, PartialEq)]
enum Totals {
    /// Velocity streams: only the exact recent events matter (the last located one).
    None,
    /// The source is the entity itself: the group's count and time range.
    Entity,
    /// A `terms` aggregation over this field (the stream's first source path).
    Terms(String),
}

#[derive(Debug, Clone)]
struct StreamPlan {
    feature: Arc<BehaviourFeature>,
    totals: Totals,
}

/// Streams of one entity path sharing one `when` filter.
#[derive(Debug, Clone)]
struct GroupPlan {
    when: Option<When>,
    window_ms: i64,
    streams: Vec<StreamPlan>,
}

/// Everything read for one entity path.
#[derive(Debug, Clone)]
pub struct EntityPlan {
    pub entity: String,
    groups: Vec<GroupPlan>,
}

impl EntityPlan {
    /// Buckets one entity creates in a page (composite bucket, group filters, value terms).
    fn buckets_per_entity(&self) -> usize {
        1 + self
            .groups
            .iter()
            .map(|g| {
                1 + g
                    .streams
                    .iter()
                    .filter(|s| matches!(s.totals, Totals::Terms(_)))
                    .count()
                    * VALUES_PER_SOURCE
            })
            .sum::<usize>()
    }

    fn window_ms(&self) -> i64 {
        self.groups.iter().map(|g| g.window_ms).max().unwrap_or(0)
    }

    /// The search body for one page.
    fn request(&self, to: i64, size: usize, after: Option<&Value>) -> Value {
        let mut aggs = serde_json::Map::new();
        for (gi, g) in self.groups.iter().enumerate() {
            let mut filter = vec![json!({"range": {"@timestamp": {
                "gte": to - g.window_ms, "lte": to, "format": "epoch_millis"}}})];
            if let Some(w) = &g.when {
                filter.push(json!({"term": {w.field.clone(): w.equals.clone()}}));
            }
            let mut includes = vec!["@timestamp".to_string()];
            for s in &g.streams {
                for p in &s.feature.sources {
                    if !includes.contains(p) {
                        includes.push(p.clone());
                    }
                }
            }
            let mut sub = serde_json::Map::new();
            sub.insert(
                "recent".into(),
                json!({"top_hits": {"size": RECENT_EVENTS,
                    "sort": [{"@timestamp": {"order": "desc"}}],
                    "_source": {"includes": includes}}}),
            );
            sub.insert("first".into(), json!({"min": {"field": "@timestamp"}}));
            sub.insert("last".into(), json!({"max": {"field": "@timestamp"}}));
            for (si, s) in g.streams.iter().enumerate() {
                if let Totals::Terms(field) = &s.totals {
                    sub.insert(
                        format!("v{si}"),
                        json!({"terms": {"field": field, "size": VALUES_PER_SOURCE},
                            "aggs": {"first": {"min": {"field": "@timestamp"}},
                                     "last": {"max": {"field": "@timestamp"}}}}),
                    );
                }
            }
            aggs.insert(
                format!("g{gi}"),
                json!({"filter": {"bool": {"filter": filter}}, "aggs": sub}),
            );
        }
        let mut composite =
            json!({"size": size, "sources": [{"k": {"terms": {"field": self.entity}}}]});
        if let Some(a) = after {
            composite["after"] = a.clone();
        }
        json!({
            "size": 0,
            "track_total_hits": false,
            "query": {"bool": {"filter": [
                {"range": {"@timestamp": {"gte": to - self.window_ms(), "lte": to, "format": "epoch_millis"}}},
                {"exists": {"field": self.entity}}
            ]}},
            "aggs": {"e": {"composite": composite, "aggs": aggs}}
        })
    }

    /// The seeds of one page: (stream, entity, seed) per entity and stream; and the next `after`.
    fn seeds(&self, resp: &Value, to: i64) -> Result<Page, WarmError> {
        // No index matched the patterns: no aggregations at all.
        let Some(agg) = resp.pointer("/aggregations/e") else {
            return Ok(Page {
                entities: 0,
                seeds: Vec::new(),
                after: None,
            });
        };
        let buckets = agg["buckets"]
            .as_array()
            .ok_or_else(|| WarmError::Shape("no composite buckets".into()))?;
        let mut seeds = Vec::new();
        for bucket in buckets {
            let Some(key) = bucket.pointer("/key/k") else {
                return Err(WarmError::Shape(format!(
                    "composite bucket without key: {bucket}"
                )));
            };
            let entity = text(key);
            for (gi, g) in self.groups.iter().enumerate() {
                let gb = &bucket[format!("g{gi}")];
                let count = gb["doc_count"].as_u64().unwrap_or(0);
                if count == 0 {
                    continue;
                }
                let from = to - g.window_ms;
                let first = millis(&gb["first"]).unwrap_or(from);
                let last = millis(&gb["last"]).unwrap_or(to);
                let hits: Vec<&Value> = gb
                    .pointer("/recent/hits/hits")
                    .and_then(Value::as_array)
                    .map(|h| h.iter().filter_map(|h| h.get("_source")).collect())
                    .unwrap_or_default();
                let times: Vec<Option<i64>> = hits
                    .iter()
                    .map(|d| {
                        super::lookup(d, "@timestamp")
                            .and_then(|v| timestamp(v).ok())
                            .map(|t| t.timestamp_millis())
                    })
                    .collect();
                let horizon = (hits.len() >= RECENT_EVENTS)
                    .then(|| times.iter().flatten().min().copied())
                    .flatten();
                for (si, s) in g.streams.iter().enumerate() {
                    let recent = hits
                        .iter()
                        .zip(&times)
                        .filter_map(|(d, t)| {
                            let (value, location) = s.feature.event_of(d);
                            t.map(|t| (t, value, location))
                        })
                        .collect();
                    let totals = match &s.totals {
                        Totals::None => Vec::new(),
                        Totals::Entity => vec![ValueTotal {
                            value: Some(entity.clone()),
                            count,
                            first,
                            last,
                        }],
                        Totals::Terms(_) => {
                            let vb = &gb[format!("v{si}")];
                            let mut totals: Vec<ValueTotal> = vb["buckets"]
                                .as_array()
                                .map(|b| b.as_slice())
                                .unwrap_or_default()
                                .iter()
                                .map(|b| ValueTotal {
                                    value: Some(
                                        b.get("key_as_string")
                                            .and_then(Value::as_str)
                                            .map_or_else(|| text(&b["key"]), str::to_string),
                                    ),
                                    count: b["doc_count"].as_u64().unwrap_or(0),
                                    first: millis(&b["first"]).unwrap_or(first),
                                    last: millis(&b["last"]).unwrap_or(last),
                                })
                                .collect();
                            let valued: u64 = totals.iter().map(|t| t.count).sum();
                            if count > valued {
                                totals.push(ValueTotal {
                                    value: None,
                                    count: count - valued,
                                    first,
                                    last,
                                });
                            }
                            totals
                        }
                    };
                    seeds.push((
                        s.feature.stream.clone(),
                        entity.clone(),
                        Seed {
                            recent,
                            horizon,
                            totals,
                            from,
                            to,
                        },
                    ));
                }
            }
        }
        Ok(Page {
            entities: buckets.len(),
            seeds,
            after: agg
                .get("after_key")
                .cloned()
                .filter(|_| !buckets.is_empty()),
        })
    }
}

struct Page {
    entities: usize,
    seeds: Vec<(Arc<str>, String, Seed)>,
    after: Option<Value>,
}

/// Groups `features` into what to read per entity path. `lookback_ms` bounds every window.
pub fn plan(features: &[Arc<BehaviourFeature>], lookback_ms: i64) -> Vec<EntityPlan> {
    // One representative feature per stream, with the largest window reading it.
    let mut streams: BTreeMap<Arc<str>, (Arc<BehaviourFeature>, i64)> = BTreeMap::new();
    for f in features {
        let e = streams
            .entry(f.stream.clone())
            .or_insert_with(|| (f.clone(), f.window_ms));
        e.1 = e.1.max(f.window_ms);
    }
    let mut plans: Vec<EntityPlan> = Vec::new();
    for (feature, window) in streams.into_values() {
        let totals = if feature.kind == Kind::VelocityKmh {
            Totals::None
        } else if feature.sources.len() == 1 && feature.sources[0] == feature.entity {
            Totals::Entity
        } else {
            Totals::Terms(feature.sources[0].clone())
        };
        let window = window.min(lookback_ms);
        let idx = match plans.iter().position(|p| p.entity == feature.entity) {
            Some(i) => i,
            None => {
                plans.push(EntityPlan {
                    entity: feature.entity.clone(),
                    groups: Vec::new(),
                });
                plans.len() - 1
            }
        };
        let plan = &mut plans[idx];
        let gi = match plan.groups.iter().position(|g| g.when == feature.when) {
            Some(i) => i,
            None => {
                plan.groups.push(GroupPlan {
                    when: feature.when.clone(),
                    window_ms: 0,
                    streams: Vec::new(),
                });
                plan.groups.len() - 1
            }
        };
        let group = &mut plan.groups[gi];
        group.window_ms = group.window_ms.max(window);
        group.streams.push(StreamPlan { feature, totals });
    }
    plans
}

/// One warm-start run over every entity path of `features`, merging page by page into `state`.
/// `now` ends the look-back window. Bounded by `settings.max_entities` per entity path; the
/// caller bounds its time (`settings.timeout`).
pub async fn run(
    client: &Elasticsearch,
    state: &BehaviourState,
    features: &[Arc<BehaviourFeature>],
    settings: &WarmSettings,
    now: chrono::DateTime<chrono::Utc>,
    report: &Mutex<Report>,
) -> Result<(), WarmError> {
    let to = now.timestamp_millis();
    let index: Vec<&str> = settings.index.iter().map(String::as_str).collect();
    let mut complete = true;
    for plan in plan(features, settings.lookback_ms) {
        let page_size = settings
            .page_size
            .min(BUCKET_BUDGET / plan.buckets_per_entity())
            .max(1);
        let mut after: Option<Value> = None;
        let mut seen = 0usize;
        loop {
            let size = page_size.min(settings.max_entities - seen);
            let body = plan.request(to, size, after.as_ref());
            let resp = client
                .search(SearchParts::Index(&index))
                .ignore_unavailable(true)
                .allow_no_indices(true)
                .body(body)
                .send()
                .await
                .map_err(|e| WarmError::Transport(e.to_string()))?;
            let status = resp.status_code().as_u16();
            let value: Value = resp
                .json()
                .await
                .map_err(|e| WarmError::Transport(e.to_string()))?;
            if !(200..300).contains(&status) {
                let reason = value
                    .pointer("/error/root_cause/0/reason")
                    .or_else(|| value.pointer("/error/reason"))
                    .and_then(Value::as_str)
                    .map_or_else(|| value.to_string(), str::to_string);
                return Err(WarmError::Status { status, reason });
            }
            let page = plan.seeds(&value, to)?;
            let mut merged = (0, 0);
            for (stream, entity, seed) in &page.seeds {
                let m = state.seed(&plan.entity, stream, entity.clone(), seed);
                merged.0 += m.exact;
                merged.1 += m.spread;
            }
            seen += page.entities;
            {
                let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
                r.pages += 1;
                r.entities += page.entities as u64;
                r.exact += merged.0;
                r.spread += merged.1;
            }
            metrics::counter!("vigil_behaviour_warm_entities_total", "entity" => plan.entity.clone())
                .increment(page.entities as u64);
            tracing::info!(
                entity = %plan.entity,
                entities = seen,
                exact = merged.0,
                spread = merged.1,
                "warm start: page merged"
            );
            match page.after {
                Some(a) if page.entities == size => {
                    if seen >= settings.max_entities {
                        tracing::warn!(entity = %plan.entity, max_entities = settings.max_entities,
                            "warm start: entity bound reached; the remaining entities start cold");
                        complete = false;
                        break;
                    }
                    after = Some(a);
                }
                _ => break,
            }
        }
    }
    report.lock().unwrap_or_else(|e| e.into_inner()).complete = complete;
    Ok(())
}

/// [`run`] bounded by `settings.timeout`: what was merged before the deadline stays.
pub async fn run_bounded(
    client: &Elasticsearch,
    state: &BehaviourState,
    features: &[Arc<BehaviourFeature>],
    settings: &WarmSettings,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Report, WarmError> {
    let report = Mutex::new(Report::default());
    let outcome = tokio::time::timeout(
        settings.timeout,
        run(client, state, features, settings, now, &report),
    )
    .await;
    let mut report = report.into_inner().unwrap_or_else(|e| e.into_inner());
    match outcome {
        Ok(Ok(())) => Ok(report),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            tracing::warn!(timeout = ?settings.timeout, entities = report.entities,
                "warm start: time budget spent; keeping what was merged");
            report.complete = false;
            Ok(report)
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A `min`/`max` aggregation's value as epoch milliseconds.
fn millis(agg: &Value) -> Option<i64> {
    agg.get("value").and_then(Value::as_f64).map(|v| v as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(
        kind: &str,
        entity: &str,
        source: &str,
        window: Option<u64>,
        when: Option<(&str, &str)>,
    ) -> Arc<BehaviourFeature> {
        Arc::new(
            BehaviourFeature::new(
                Kind::parse(kind).unwrap(),
                entity.into(),
                when.map(|(field, v)| When {
                    field: field.into(),
                    equals: json!(v),
                }),
                vec![source.into()],
                window,
            )
            .unwrap(),
        )
    }

    #[test]
    fn plan_groups_streams_by_entity_and_filter() {
        let ok = Some(("event.outcome", "success"));
        let features = vec![
            f(
                "first_seen",
                "user.name",
                "source.geo.country_iso_code",
                Some(2_592_000),
                ok,
            ),
            f(
                "pair_count",
                "user.name",
                "source.geo.country_iso_code",
                Some(2_592_000),
                ok,
            ),
            f("velocity_kmh", "user.name", "source.geo.location", None, ok),
            f(
                "count",
                "user.name",
                "user.name",
                Some(900),
                Some(("event.outcome", "failure")),
            ),
            f("distinct_count", "source.ip", "user.name", Some(3600), None),
        ];
        let plans = plan(&features, 7 * 86_400_000);
        assert_eq!(plans.len(), 2);
        let user = plans.iter().find(|p| p.entity == "user.name").unwrap();
        assert_eq!(user.groups.len(), 2, "success and failure");
        let success = user.groups.iter().find(|g| g.streams.len() == 2).unwrap();
        assert_eq!(
            success.window_ms,
            7 * 86_400_000,
            "bounded by the look-back"
        );
        let failure = user.groups.iter().find(|g| g.streams.len() == 1).unwrap();
        assert_eq!(failure.window_ms, 900_000);
        assert_eq!(failure.streams[0].totals, Totals::Entity);
        // 1 composite + (1 filter + 1 terms stream * 100) + (1 filter) buckets per entity.
        assert_eq!(user.buckets_per_entity(), 1 + 101 + 1);
        let body = user.request(10_000_000_000, 50, Some(&json!({"k": "bob"})));
        assert_eq!(
            body.pointer("/aggs/e/composite/after/k"),
            Some(&json!("bob"))
        );
        assert_eq!(body.pointer("/aggs/e/composite/size"), Some(&json!(50)));
    }

    #[test]
    fn a_page_becomes_seeds_with_values_counts_and_a_horizon() {
        let ok = Some(("event.outcome", "success"));
        let country = f(
            "first_seen",
            "user.name",
            "source.geo.country_iso_code",
            Some(2_592_000),
            ok,
        );
        let plans = plan(std::slice::from_ref(&country), 2_592_000_000);
        let resp = json!({"aggregations": {"e": {"after_key": {"k": "ann"}, "buckets": [
            {"key": {"k": "ann"}, "doc_count": 5, "g0": {
                "doc_count": 5,
                "first": {"value": 1000.0}, "last": {"value": 9000.0},
                "recent": {"hits": {"hits": [
                    {"_source": {"@timestamp": "1970-01-01T00:00:09Z", "source": {"geo": {"country_iso_code": "FR"}}}}
                ]}},
                "v0": {"sum_other_doc_count": 0, "buckets": [
                    {"key": "FR", "doc_count": 3, "first": {"value": 1000.0}, "last": {"value": 9000.0}},
                    {"key": "DE", "doc_count": 1, "first": {"value": 2000.0}, "last": {"value": 2000.0}}
                ]}}}
        ]}}});
        let page = plans[0].seeds(&resp, 10_000).unwrap();
        assert_eq!(page.entities, 1);
        assert_eq!(page.after, Some(json!({"k": "ann"})));
        let (stream, entity, seed) = &page.seeds[0];
        assert_eq!((&**stream, entity.as_str()), (&*country.stream, "ann"));
        assert_eq!(seed.recent, vec![(9000, Some("FR".into()), None)]);
        assert_eq!(
            seed.horizon, None,
            "fewer hits than asked: every event is there"
        );
        assert_eq!(seed.totals.len(), 3, "FR, DE and one event without a value");
        assert_eq!(
            seed.totals[2],
            ValueTotal {
                value: None,
                count: 1,
                first: 1000,
                last: 9000
            }
        );
    }
}
