//! Pure evaluation: a rule, the events it can see and a window become findings. The
//! Elasticsearch path ([`super::query`]) either feeds fetched events to these same functions
//! (sequence, geo-velocity, score) or computes the same numbers with aggregations and builds the
//! finding with the shared constructors here (threshold, new_terms, rare), so the example
//! events in rule files and the live cluster agree.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Map, Value};

use super::doc::{self, Event};
use super::schema::{GeoVelocity, Kind, NewTerms, Rare, Rule, Score, Sequence, Threshold};

/// Contributing event ids kept on an alert.
pub const MAX_EVENT_IDS: usize = 100;

/// `[start, end)`: the events a run judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    pub fn ending(rule: &Rule, end: DateTime<Utc>) -> Window {
        Window {
            start: end - rule.lookback,
            end,
        }
    }
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        t >= self.start && t < self.end
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRef {
    pub id: String,
    pub index: String,
}

/// What a rule found about one group in one window.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The group's fields and values, in the rule's order (the alert's identity).
    pub group: Vec<(String, String)>,
    /// The value of the rule's entity field.
    pub entity: String,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub event_count: u64,
    pub events: Vec<EventRef>,
    /// Type-specific numbers (counts, distances, new values, scores).
    pub evidence: Map<String, Value>,
    /// The source of a representative (latest) contributing event.
    pub context: Value,
}

/// Events a run read and those it had to skip, by reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub events_read: u64,
    pub skipped: BTreeMap<String, u64>,
}

impl Stats {
    pub fn skip(&mut self, reason: impl Into<String>) {
        *self.skipped.entry(reason.into()).or_default() += 1;
    }
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
    pub fn merge(&mut self, other: Stats) {
        self.events_read += other.events_read;
        for (k, v) in other.skipped {
            *self.skipped.entry(k).or_default() += v;
        }
    }
}

/// Whether an event is one the rule reads at all: its filter, and not an alert unless asked.
pub fn base_matches(rule: &Rule, source: &Value) -> bool {
    (rule.include_alerts
        || !doc::values(source, "event.kind")
            .iter()
            .any(|v| v.as_str() == Some("alert")))
        && rule.filter.matches(source)
}

/// Evaluates `rule` over `events` (which may include history before the window).
pub fn evaluate(rule: &Rule, events: &[Event], window: Window) -> (Vec<Finding>, Stats) {
    let mut stats = Stats::default();
    let mut sorted: Vec<&Event> = events
        .iter()
        .filter(|e| base_matches(rule, &e.source))
        .collect();
    sorted.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| a.id.cmp(&b.id)));
    stats.events_read = sorted.len() as u64;
    let findings = match &rule.kind {
        Kind::Threshold(t) => threshold(rule, t, &sorted, window, &mut stats),
        Kind::Sequence(s) => sequence(rule, s, &sorted, window, &mut stats),
        Kind::NewTerms(n) => new_terms(rule, n, &sorted, window, &mut stats),
        Kind::GeoVelocity(g) => geo_velocity(rule, g, &sorted, window, &mut stats),
        Kind::Score(s) => score(rule, s, &sorted, window, &mut stats),
        Kind::Rare(r) => rare(rule, r, &sorted, window, &mut stats),
    };
    let mut findings = findings;
    findings.sort_by(|a, b| a.group.cmp(&b.group));
    (findings, stats)
}

fn group_of(e: &Event, fields: &[String], stats: &mut Stats) -> Option<Vec<(String, String)>> {
    let mut g = Vec::with_capacity(fields.len());
    for f in fields {
        match e.key(f) {
            Some(v) => g.push((f.clone(), v)),
            None => {
                stats.skip(format!("missing {f}"));
                return None;
            }
        }
    }
    Some(g)
}

fn entity_of(rule: &Rule, group: &[(String, String)], context: &Value) -> String {
    group
        .iter()
        .find(|(f, _)| *f == rule.entity)
        .map(|(_, v)| v.clone())
        .or_else(|| doc::first(context, &rule.entity).and_then(doc::scalar_key))
        .unwrap_or_default()
}

fn refs<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<EventRef> {
    events
        .into_iter()
        .take(MAX_EVENT_IDS)
        .map(|e| EventRef {
            id: e.id.clone(),
            index: e.index.clone(),
        })
        .collect()
}

// ------------------------------------------------------------------------------------ threshold

/// Whether aggregated numbers cross a threshold rule.
pub fn threshold_fires(
    t: &Threshold,
    count: u64,
    cardinalities: &BTreeMap<String, u64>,
    max_per_value: Option<u64>,
) -> bool {
    count >= t.min_count
        && t.cardinality.iter().all(|c| {
            let n = cardinalities.get(&c.field).copied().unwrap_or(0);
            c.min.is_none_or(|m| n >= m) && c.max.is_none_or(|m| n <= m)
        })
        && t.max_per_value
            .as_ref()
            .is_none_or(|p| max_per_value.is_some_and(|n| n <= p.max))
}

/// The evidence of a threshold finding (shared by both paths).
pub fn threshold_evidence(
    count: u64,
    cardinalities: &BTreeMap<String, u64>,
    max_per_value: Option<(&str, u64)>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("count".into(), json!(count));
    if !cardinalities.is_empty() {
        m.insert("cardinality".into(), json!(cardinalities));
    }
    if let Some((f, n)) = max_per_value {
        m.insert("max_per_value".into(), json!({"field": f, "count": n}));
    }
    m
}

fn threshold(
    rule: &Rule,
    t: &Threshold,
    events: &[&Event],
    window: Window,
    stats: &mut Stats,
) -> Vec<Finding> {
    struct Acc<'a> {
        events: Vec<&'a Event>,
        distinct: BTreeMap<String, BTreeSet<String>>,
        per_value: HashMap<String, u64>,
    }
    let mut groups: BTreeMap<Vec<(String, String)>, Acc> = BTreeMap::new();
    for e in events.iter().filter(|e| window.contains(e.ts)) {
        let Some(g) = group_of(e, &t.group_by, stats) else {
            continue;
        };
        let acc = groups.entry(g).or_insert_with(|| Acc {
            events: Vec::new(),
            distinct: BTreeMap::new(),
            per_value: HashMap::new(),
        });
        acc.events.push(e);
        for c in &t.cardinality {
            let set = acc.distinct.entry(c.field.clone()).or_default();
            for v in e.values(&c.field).into_iter().filter_map(doc::scalar_key) {
                set.insert(v);
            }
        }
        if let Some(p) = &t.max_per_value {
            if let Some(v) = e.key(&p.field) {
                *acc.per_value.entry(v).or_default() += 1;
            }
        }
    }
    let mut out = Vec::new();
    for (group, acc) in groups {
        let count = acc.events.len() as u64;
        let cards: BTreeMap<String, u64> = t
            .cardinality
            .iter()
            .map(|c| {
                (
                    c.field.clone(),
                    acc.distinct.get(&c.field).map_or(0, |s| s.len() as u64),
                )
            })
            .collect();
        let max_per = t
            .max_per_value
            .as_ref()
            .map(|_| acc.per_value.values().copied().max().unwrap_or(0));
        if !threshold_fires(t, count, &cards, max_per) {
            continue;
        }
        let last = acc.events.last().expect("non-empty group");
        let context = last.source.clone();
        out.push(Finding {
            entity: entity_of(rule, &group, &context),
            group,
            first: acc.events[0].ts,
            last: last.ts,
            event_count: count,
            events: refs(acc.events.iter().copied()),
            evidence: threshold_evidence(
                count,
                &cards,
                t.max_per_value
                    .as_ref()
                    .map(|p| (p.field.as_str(), max_per.unwrap_or(0))),
            ),
            context,
        });
    }
    out
}

// ------------------------------------------------------------------------------------- sequence

/// Sequences by group: ordered steps (each `runs` times) inside `maxspan`, completing in the
/// window. One finding per group: the earliest completion.
pub fn sequence(
    rule: &Rule,
    s: &Sequence,
    events: &[&Event],
    window: Window,
    stats: &mut Stats,
) -> Vec<Finding> {
    let mut groups: BTreeMap<Vec<(String, String)>, Vec<&Event>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.ts >= window.start - s.maxspan && e.ts < window.end)
    {
        if !s.steps.iter().any(|st| st.filter.matches(&e.source)) {
            continue;
        }
        if let Some(g) = group_of(e, &s.by, stats) {
            groups.entry(g).or_default().push(e);
        }
    }
    let n = s.steps.len();
    let mut out = Vec::new();
    for (group, evs) in groups {
        'candidates: for (j, last) in evs.iter().enumerate() {
            if !window.contains(last.ts) || !s.steps[n - 1].filter.matches(&last.source) {
                continue;
            }
            let earliest = last.ts - s.maxspan;
            // chosen[i] = the events for step i, latest first.
            let mut chosen: Vec<Vec<&Event>> = vec![Vec::new(); n];
            chosen[n - 1].push(last);
            let mut pos = j; // only events before `pos` are available to earlier steps
            for i in (0..n - 1).rev() {
                let step = &s.steps[i];
                let mut k = pos;
                while k > 0 && chosen[i].len() < step.runs as usize {
                    k -= 1;
                    let e = evs[k];
                    if e.ts < earliest {
                        break;
                    }
                    if step.filter.matches(&e.source) {
                        chosen[i].push(e);
                    }
                }
                if chosen[i].len() < step.runs as usize {
                    continue 'candidates;
                }
                // The later step's events must differ from this step's on the listed fields.
                for f in &s.steps[i + 1].differ_from_previous {
                    let before: BTreeSet<String> =
                        chosen[i].iter().filter_map(|e| e.key(f)).collect();
                    if chosen[i + 1]
                        .iter()
                        .any(|e| e.key(f).is_none_or(|v| before.contains(&v)))
                    {
                        continue 'candidates;
                    }
                }
                pos = k;
            }
            let mut all: Vec<&Event> = chosen.iter().flatten().copied().collect();
            all.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| a.id.cmp(&b.id)));
            let steps: Vec<Value> = s
                .steps
                .iter()
                .zip(&chosen)
                .map(|(st, c)| json!({"name": st.name, "count": c.len()}))
                .collect();
            let first = all[0].ts;
            let mut evidence = Map::new();
            evidence.insert("steps".into(), Value::Array(steps));
            evidence.insert(
                "span_seconds".into(),
                json!((last.ts - first).num_seconds()),
            );
            for (st, c) in s.steps.iter().zip(&chosen) {
                evidence.insert(format!("count.{}", st.name), json!(c.len()));
            }
            let context = last.source.clone();
            out.push(Finding {
                entity: entity_of(rule, &group, &context),
                group: group.clone(),
                first,
                last: last.ts,
                event_count: all.len() as u64,
                events: refs(all.iter().copied()),
                evidence,
                context,
            });
            break;
        }
    }
    out
}

// ------------------------------------------------------------------------------------ new_terms

/// `[history start, window start)` and, for dormant accounts, the earlier activity range.
pub fn new_terms_ranges(n: &NewTerms, window: Window) -> (Window, Option<Window>) {
    let history = Window {
        start: window.start - n.history,
        end: window.start,
    };
    let before = n.seen_before.map(|sb| Window {
        start: window.start - sb,
        end: history.start,
    });
    (history, before)
}

pub fn new_terms_evidence(n: &NewTerms, terms: &[(String, String)]) -> Map<String, Value> {
    let mut m = Map::new();
    let t: Map<String, Value> = terms
        .iter()
        .map(|(f, v)| (f.clone(), Value::String(v.clone())))
        .collect();
    m.insert("new_terms".into(), Value::Object(t));
    m.insert(
        "history".into(),
        json!(super::schema::fmt_duration(n.history)),
    );
    if let Some(sb) = n.seen_before {
        m.insert(
            "dormant_for".into(),
            json!(super::schema::fmt_duration(n.history)),
        );
        m.insert("seen_before".into(), json!(super::schema::fmt_duration(sb)));
    }
    m
}

/// A group key: `(field, value)` pairs in the rule's order.
pub type Key = Vec<(String, String)>;

/// For `all_fields_new`: every `(entity, (field, value))` among the seen combinations.
pub fn seen_field_values(n: &NewTerms, seen: &BTreeSet<Key>) -> BTreeSet<(Key, (String, String))> {
    seen.iter()
        .flat_map(|k| {
            let (by, terms) = k.split_at(n.by.len());
            terms.iter().map(move |t| (by.to_vec(), t.clone()))
        })
        .collect()
}

/// Whether a combination not seen before counts as new: always, unless `all_fields_new` asks
/// for each of its values to be new for the entity.
pub fn is_new(
    n: &NewTerms,
    key: &[(String, String)],
    seen_values: &BTreeSet<(Key, (String, String))>,
) -> bool {
    if !n.all_fields_new {
        return true;
    }
    let (by, terms) = key.split_at(n.by.len());
    terms
        .iter()
        .all(|t| !seen_values.contains(&(by.to_vec(), t.clone())))
}

/// Values that at least `min` distinct entities used: common in the organisation.
pub fn common_values(
    users_by_value: &BTreeMap<String, BTreeSet<String>>,
    min: Option<u64>,
) -> BTreeSet<String> {
    match min {
        None => BTreeSet::new(),
        Some(min) => users_by_value
            .iter()
            .filter(|(_, e)| e.len() as u64 >= min)
            .map(|(v, _)| v.clone())
            .collect(),
    }
}

fn new_terms(
    rule: &Rule,
    n: &NewTerms,
    events: &[&Event],
    window: Window,
    stats: &mut Stats,
) -> Vec<Finding> {
    let (history, before) = new_terms_ranges(n, window);
    let key_fields: Vec<String> = n.by.iter().chain(&n.fields).cloned().collect();
    let mut seen: BTreeSet<Vec<(String, String)>> = BTreeSet::new();
    let mut known_entities: BTreeMap<Key, u64> = BTreeMap::new();
    let mut active_before: BTreeSet<Vec<(String, String)>> = BTreeSet::new();
    let mut users_by_value: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: BTreeMap<Vec<(String, String)>, Vec<&Event>> = BTreeMap::new();
    for e in events {
        if history.contains(e.ts) {
            let mut ignored = Stats::default();
            if let Some(k) = group_of(e, &key_fields, &mut ignored) {
                *known_entities.entry(k[..n.by.len()].to_vec()).or_default() += 1;
                if let Some((_, v)) = k.get(n.by.len()) {
                    users_by_value
                        .entry(v.clone())
                        .or_default()
                        .insert(k[0].1.clone());
                }
                seen.insert(k);
            }
        } else if before.is_some_and(|b| b.contains(e.ts)) {
            let mut ignored = Stats::default();
            if let Some(k) = group_of(e, &n.by, &mut ignored) {
                active_before.insert(k);
            }
        } else if window.contains(e.ts) {
            if let Some(k) = group_of(e, &key_fields, stats) {
                current.entry(k).or_default().push(e);
            }
        }
    }
    let seen_values = seen_field_values(n, &seen);
    let common = common_values(&users_by_value, n.common_entities);
    let mut out = Vec::new();
    for (key, evs) in current {
        if seen.contains(&key) || !is_new(n, &key, &seen_values) {
            continue;
        }
        if key.get(n.by.len()).is_some_and(|(_, v)| common.contains(v)) {
            continue;
        }
        let (by, terms) = key.split_at(n.by.len());
        if before.is_some() && !active_before.contains(by) {
            continue;
        }
        if n.require_history && known_entities.get(by).copied().unwrap_or(0) < n.min_history {
            continue;
        }
        let last = evs.last().expect("non-empty");
        let context = last.source.clone();
        out.push(Finding {
            entity: entity_of(rule, by, &context),
            group: key.clone(),
            first: evs[0].ts,
            last: last.ts,
            event_count: evs.len() as u64,
            events: refs(evs.iter().copied()),
            evidence: new_terms_evidence(n, terms),
            context,
        });
    }
    out
}

// ----------------------------------------------------------------------------------------- rare

pub fn rare_fires(r: &Rare, count: u64, total: u64) -> bool {
    total >= r.min_baseline && (count as f64) / (total as f64) <= r.max_fraction
}

pub fn rare_evidence(r: &Rare, value: &str, count: u64, total: u64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("value".into(), json!(value));
    m.insert("field".into(), json!(r.field));
    m.insert("baseline_count".into(), json!(count));
    m.insert("baseline_total".into(), json!(total));
    m.insert(
        "baseline_fraction".into(),
        json!(((count as f64 / total.max(1) as f64) * 10_000.0).round() / 10_000.0),
    );
    m.insert(
        "baseline".into(),
        json!(super::schema::fmt_duration(r.baseline)),
    );
    m
}

pub fn rare_baseline(r: &Rare, window: Window) -> Window {
    Window {
        start: window.start - r.baseline,
        end: window.start,
    }
}

fn rare(
    rule: &Rule,
    r: &Rare,
    events: &[&Event],
    window: Window,
    stats: &mut Stats,
) -> Vec<Finding> {
    let baseline = rare_baseline(r, window);
    let mut totals: HashMap<String, u64> = HashMap::new();
    let mut counts: HashMap<(String, String), u64> = HashMap::new();
    let mut users_by_value: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: BTreeMap<(String, String), Vec<&Event>> = BTreeMap::new();
    for e in events {
        let in_base = baseline.contains(e.ts);
        let in_win = window.contains(e.ts);
        if !in_base && !in_win {
            continue;
        }
        let Some(entity) = e.key(&rule.entity) else {
            if in_win {
                stats.skip(format!("missing {}", rule.entity));
            }
            continue;
        };
        if in_base {
            *totals.entry(entity.clone()).or_default() += 1;
            if let Some(v) = e.key(&r.field) {
                users_by_value
                    .entry(v.clone())
                    .or_default()
                    .insert(entity.clone());
                *counts.entry((entity, v)).or_default() += 1;
            }
        } else {
            match e.key(&r.field) {
                Some(v) => current.entry((entity, v)).or_default().push(e),
                None => stats.skip(format!("missing {}", r.field)),
            }
        }
    }
    let common = common_values(&users_by_value, r.common_entities);
    let mut out = Vec::new();
    for ((entity, value), evs) in current {
        if common.contains(&value) {
            continue;
        }
        let total = totals.get(&entity).copied().unwrap_or(0);
        let count = counts
            .get(&(entity.clone(), value.clone()))
            .copied()
            .unwrap_or(0);
        if !rare_fires(r, count, total) {
            continue;
        }
        let last = evs.last().expect("non-empty");
        out.push(Finding {
            group: vec![(rule.entity.clone(), entity.clone())],
            entity,
            first: evs[0].ts,
            last: last.ts,
            event_count: evs.len() as u64,
            events: refs(evs.iter().copied()),
            evidence: rare_evidence(r, &value, count, total),
            context: last.source.clone(),
        });
    }
    out
}

// --------------------------------------------------------------------------------- geo_velocity

/// An event and where it happened.
type Located<'a> = (&'a Event, (f64, f64));

fn allowlisted(g: &GeoVelocity, e: &Event) -> bool {
    if let Some(f) = &g.allow_field {
        if e.values(f)
            .iter()
            .any(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"))
        {
            return true;
        }
    }
    if !g.allow_asns.is_empty() {
        if let Some(asn) = e.values("source.as.number").first().and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        }) {
            if g.allow_asns.contains(&asn) {
                return true;
            }
        }
    }
    if !g.allow_cidrs.is_empty() {
        if let Some(ip) = e
            .key("source.ip")
            .and_then(|s| s.parse::<std::net::IpAddr>().ok())
        {
            if g.allow_cidrs.iter().any(|c| c.contains(ip)) {
                return true;
            }
        }
    }
    false
}

fn place(g: &GeoVelocity, e: &Event, at: (f64, f64)) -> Value {
    let s = &e.source;
    json!({
        "@timestamp": doc::fmt_time(e.ts),
        "ip": doc::first(s, "source.ip"),
        "country_iso_code": doc::first(s, "source.geo.country_iso_code"),
        "city_name": doc::first(s, "source.geo.city_name"),
        "as_number": doc::first(s, "source.as.number"),
        "location": {"lat": at.0, "lon": at.1},
        "field": g.location_field,
    })
}

/// Consecutive located sign-ins per entity whose implied speed exceeds the limit; the earlier
/// sign-in may precede the window by up to `previous_within`. One finding (the fastest pair) per
/// entity.
pub fn geo_velocity(
    rule: &Rule,
    g: &GeoVelocity,
    events: &[&Event],
    window: Window,
    stats: &mut Stats,
) -> Vec<Finding> {
    let mut per: BTreeMap<String, Vec<Located>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.ts >= window.start - g.previous_within && e.ts < window.end)
    {
        let in_win = window.contains(e.ts);
        let Some(entity) = e.key(&rule.entity) else {
            if in_win {
                stats.skip(format!("missing {}", rule.entity));
            }
            continue;
        };
        let Some(at) = doc::geo_at(&e.source, &g.location_field) else {
            if in_win {
                stats.skip(format!("missing or malformed {}", g.location_field));
            }
            continue;
        };
        if allowlisted(g, e) {
            if in_win {
                stats.skip("allowlisted egress");
            }
            continue;
        }
        per.entry(entity).or_default().push((e, at));
    }
    let mut out = Vec::new();
    for (entity, evs) in per {
        let mut best: Option<(f64, f64, i64, usize)> = None; // speed, distance, secs, index
        for i in 1..evs.len() {
            let (cur, b) = evs[i];
            let (prev, a) = evs[i - 1];
            if !window.contains(cur.ts) || cur.ts - prev.ts > g.previous_within {
                continue;
            }
            let d = doc::distance_km(a, b);
            let secs = (cur.ts - prev.ts).num_seconds().max(0);
            let speed = d / (secs.max(1) as f64 / 3600.0);
            if d >= g.min_distance_km
                && speed >= g.max_speed_kmh
                && best.is_none_or(|(s, ..)| speed > s)
            {
                best = Some((speed, d, secs, i));
            }
        }
        let Some((speed, d, secs, i)) = best else {
            continue;
        };
        let (prev, a) = evs[i - 1];
        let (cur, b) = evs[i];
        let mut evidence = Map::new();
        evidence.insert("distance_km".into(), json!(d.round()));
        evidence.insert("speed_kmh".into(), json!(speed.round()));
        evidence.insert("elapsed_seconds".into(), json!(secs));
        evidence.insert("elapsed_minutes".into(), json!(secs / 60));
        evidence.insert("from".into(), place(g, prev, a));
        evidence.insert("to".into(), place(g, cur, b));
        out.push(Finding {
            group: vec![(rule.entity.clone(), entity.clone())],
            entity,
            first: prev.ts,
            last: cur.ts,
            event_count: 2,
            events: refs([prev, cur]),
            evidence,
            context: cur.source.clone(),
        });
    }
    out
}

// ---------------------------------------------------------------------------------------- score

/// Documents at or above the score, grouped by entity; the top-scoring document's explanation
/// goes into the finding.
pub fn score(
    rule: &Rule,
    s: &Score,
    events: &[&Event],
    window: Window,
    stats: &mut Stats,
) -> Vec<Finding> {
    let field = s.score_field();
    let mut per: BTreeMap<String, Vec<(&Event, f64)>> = BTreeMap::new();
    for e in events.iter().filter(|e| window.contains(e.ts)) {
        let Some(score) = e.values(&field).first().and_then(|v| v.as_f64()) else {
            stats.skip(format!("missing {field}"));
            continue;
        };
        if score < s.min_score {
            continue;
        }
        match e.key(&rule.entity) {
            Some(entity) => per.entry(entity).or_default().push((e, score)),
            None => stats.skip(format!("missing {}", rule.entity)),
        }
    }
    let inference = s.inference_field();
    let mut out = Vec::new();
    for (entity, evs) in per {
        let (top, top_score) = evs
            .iter()
            .copied()
            .fold(None::<(&Event, f64)>, |best, (e, sc)| match best {
                Some((_, b)) if b >= sc => best,
                _ => Some((e, sc)),
            })
            .expect("non-empty");
        let result = doc::raw_at(&top.source, &inference)
            .cloned()
            .unwrap_or(Value::Null);
        let mut evidence = Map::new();
        evidence.insert("model".into(), json!(s.model));
        evidence.insert("score".into(), json!(top_score));
        evidence.insert("min_score".into(), json!(s.min_score));
        evidence.insert("documents".into(), json!(evs.len()));
        for k in [
            crate::fields::result::MODEL_ID,
            crate::fields::result::MODEL_VERSION,
            crate::fields::result::PREDICTED_VALUE,
            crate::fields::result::FEATURE_IMPORTANCE,
            crate::fields::result::EXPLANATION,
        ] {
            if let Some(v) = result.get(k) {
                evidence.insert(k.into(), v.clone());
            }
        }
        if let Some(top_feature) = result
            .get(crate::fields::result::FEATURE_IMPORTANCE)
            .and_then(Value::as_array)
            .and_then(|fi| {
                fi.iter().max_by(|a, b| {
                    let x = a
                        .get("importance")
                        .and_then(Value::as_f64)
                        .unwrap_or(0.0)
                        .abs();
                    let y = b
                        .get("importance")
                        .and_then(Value::as_f64)
                        .unwrap_or(0.0)
                        .abs();
                    x.total_cmp(&y)
                })
            })
            .and_then(|f| f.get("feature_name"))
        {
            evidence.insert("top_feature".into(), top_feature.clone());
        }
        let first = evs.iter().map(|(e, _)| e.ts).min().expect("non-empty");
        let last = evs.iter().map(|(e, _)| e.ts).max().expect("non-empty");
        out.push(Finding {
            group: vec![(rule.entity.clone(), entity.clone())],
            entity,
            first,
            last,
            event_count: evs.len() as u64,
            events: refs(
                std::iter::once(top).chain(evs.iter().map(|(e, _)| *e).filter(|e| e.id != top.id)),
            ),
            evidence,
            context: top.source.clone(),
        });
    }
    out
}

/// How far before the window a rule needs to read (history, previous sign-ins, sequences).
pub fn reach_back(rule: &Rule) -> TimeDelta {
    match &rule.kind {
        Kind::Sequence(s) => s.maxspan,
        Kind::NewTerms(n) => n.seen_before.unwrap_or(n.history),
        Kind::GeoVelocity(g) => g.previous_within,
        Kind::Rare(r) => r.baseline,
        Kind::Threshold(_) | Kind::Score(_) => TimeDelta::zero(),
    }
}

/// Renders a reason template: `{user.name}`, `{count}`, `{cardinality.source.ip}`,
/// `{distance_km}`, `{first}`, `{last}`, `{entity}`, `{rule}`, then any field of the latest
/// contributing event (`{source.ip}`). Unknown names stay as `{name}`.
pub fn render_reason(template: &str, rule: &Rule, f: &Finding) -> String {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &f.group {
        vars.insert(k.clone(), v.clone());
    }
    fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            Value::String(s) => {
                out.insert(prefix.to_string(), s.clone());
            }
            Value::Null => {}
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    for (k, v) in &f.evidence {
        flatten(k, v, &mut vars);
    }
    vars.insert("entity".into(), f.entity.clone());
    vars.insert("rule".into(), rule.name.clone());
    vars.insert("events".into(), f.event_count.to_string());
    vars.insert(
        "first".into(),
        f.first.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    );
    vars.insert(
        "last".into(),
        f.last.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    );
    vars.insert(
        "span".into(),
        super::schema::fmt_duration((f.last - f.first).max(TimeDelta::seconds(1))),
    );
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                let from_context = || doc::first(&f.context, name).and_then(doc::scalar_key);
                match vars.get(name).cloned().or_else(from_context) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The default reason when a rule gives no template.
pub fn default_reason(rule: &Rule, f: &Finding) -> String {
    let who = f
        .group
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let when = format!(
        "between {} and {}",
        f.first.format("%H:%M:%S"),
        f.last.format("%H:%M:%S UTC")
    );
    match &rule.kind {
        Kind::Threshold(_) => format!("{} matching events for {who} {when}", f.event_count),
        Kind::Sequence(s) => format!(
            "{} for {who} {when}",
            s.steps
                .iter()
                .map(|st| st.name.as_str())
                .collect::<Vec<_>>()
                .join(" then ")
        ),
        Kind::NewTerms(_) => format!(
            "first occurrence for {who} at {}",
            f.first.format("%H:%M:%S UTC")
        ),
        Kind::GeoVelocity(_) => format!(
            "{who}: two sign-ins {} km apart within {} min",
            f.evidence
                .get("distance_km")
                .map(ToString::to_string)
                .unwrap_or_default(),
            f.evidence
                .get("elapsed_minutes")
                .map(ToString::to_string)
                .unwrap_or_default()
        ),
        Kind::Score(s) => format!(
            "{who}: model {} scored {} (threshold {})",
            s.model,
            f.evidence
                .get("score")
                .map(ToString::to_string)
                .unwrap_or_default(),
            s.min_score
        ),
        Kind::Rare(r) => format!(
            "{who}: {} {} is rare in the baseline",
            r.field,
            f.evidence
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or_default()
        ),
    }
}

/// The finding's readable reason.
pub fn reason(rule: &Rule, f: &Finding) -> String {
    match &rule.reason {
        Some(t) => render_reason(t, rule, f),
        None => default_reason(rule, f),
    }
}

/// Events of an example as [`Event`]s (index `example`).
pub fn example_events(ex: &super::schema::Example) -> Vec<Event> {
    ex.events
        .iter()
        .map(|(id, v)| Event {
            id: id.clone(),
            index: "example".into(),
            ts: doc::first(v, "@timestamp")
                .and_then(doc::parse_time)
                .expect("examples have valid timestamps"),
            source: v.clone(),
        })
        .collect()
}

/// The outcome of one example: the entities that fired vs those expected.
#[derive(Debug, Clone)]
pub struct ExampleOutcome {
    pub rule: String,
    pub example: String,
    pub expected: Vec<String>,
    pub got: Vec<String>,
    pub reasons: Vec<String>,
}

impl ExampleOutcome {
    pub fn passed(&self) -> bool {
        self.expected == self.got && self.reasons.iter().all(|r| !r.contains('{'))
    }
}

/// Runs each of the rule's examples through the pure evaluator.
pub fn check_examples(rule: &Rule) -> Vec<ExampleOutcome> {
    rule.examples
        .iter()
        .map(|ex| {
            let events = example_events(ex);
            let (findings, _) = evaluate(rule, &events, Window::ending(rule, ex.now));
            let mut got: Vec<String> = findings.iter().map(|f| f.entity.clone()).collect();
            got.sort();
            let mut expected = ex.alerts.clone();
            expected.sort();
            ExampleOutcome {
                rule: rule.id.clone(),
                example: ex.name.clone(),
                expected,
                got,
                reasons: findings.iter().map(|f| reason(rule, f)).collect(),
            }
        })
        .collect()
}
