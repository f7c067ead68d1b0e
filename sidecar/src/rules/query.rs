//! Rule evaluation on Elasticsearch. Threshold, new_terms and rare rules are aggregations
//! (composite, paged with `after_key`); sequence, geo-velocity and score rules page through the
//! matching events with a point in time and `search_after`, then reuse the pure evaluators. Either
//! way a run reads the events its filter and time range select, never the whole index.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::doc::{self, Event};
use super::esapi::{indices, Es, EsError};
use super::eval::{self, Finding, Stats, Window, MAX_EVENT_IDS};
use super::schema::{GeoVelocity, Kind, NewTerms, Rare, Rule, Threshold};

/// Where and how much a run reads.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Index patterns searched by rules that do not name their own.
    pub events_index: Vec<String>,
    /// Page size for composite aggregations and `search_after`.
    pub page_size: usize,
    /// A run that would hold more events than this fails (and is retried) rather than
    /// exhausting memory.
    pub max_events: usize,
    /// Point-in-time keep-alive between pages.
    pub keep_alive: String,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            events_index: vec!["logs-*".into()],
            page_size: 1000,
            max_events: 1_000_000,
            keep_alive: "1m".into(),
        }
    }
}

/// Runs `rule` for `window` against Elasticsearch.
pub async fn run(
    es: &Es,
    opts: &QueryOptions,
    rule: &Rule,
    window: Window,
) -> Result<(Vec<Finding>, Stats), EsError> {
    let q = Q { es, opts, rule };
    let (mut findings, stats) = match &rule.kind {
        Kind::Threshold(t) => q.threshold(t, window).await?,
        Kind::NewTerms(n) => q.new_terms(n, window).await?,
        Kind::Rare(r) => q.rare(r, window).await?,
        Kind::Sequence(s) => {
            let should: Vec<Value> = s.steps.iter().map(|st| st.filter.query()).collect();
            let extra = json!({"bool": {"should": should, "minimum_should_match": 1}});
            let events = q
                .events(window.start - s.maxspan, window.end, vec![extra])
                .await?;
            eval::evaluate(rule, &events, window)
        }
        Kind::GeoVelocity(g) => {
            // The window's events (those without a location too, so they are counted as
            // skipped), then only each of their users' latest earlier sign-ins.
            let mut events = q.events(window.start, window.end, vec![]).await?;
            let prior = q.previous_locations(g, window, &events).await?;
            events.extend(prior);
            eval::evaluate(rule, &events, window)
        }
        Kind::Score(s) => {
            let field = s.score_field();
            let extra = json!({"range": {field.as_str(): {"gte": s.min_score}}});
            let events = q.events(window.start, window.end, vec![extra]).await?;
            let (findings, mut stats) = eval::evaluate(rule, &events, window);
            // Unscored (or malformed, hence unindexed) documents are counted, not fetched.
            let mut missing = Stats::default();
            q.count_missing(window.start, window.end, &[field], &mut missing)
                .await?;
            stats.skipped = missing.skipped;
            (findings, stats)
        }
    };
    findings.sort_by(|a, b| a.group.cmp(&b.group));
    Ok((findings, stats))
}

struct Q<'a> {
    es: &'a Es,
    opts: &'a QueryOptions,
    rule: &'a Rule,
}

fn range(from: DateTime<Utc>, to: DateTime<Utc>) -> Value {
    json!({"range": {"@timestamp": {
        "gte": from.timestamp_millis(), "lt": to.timestamp_millis(), "format": "epoch_millis"
    }}})
}

fn term(field: &str, value: &str) -> Value {
    json!({"term": {field: value}})
}

impl Q<'_> {
    fn index(&self) -> String {
        indices(self.rule.index.as_ref().unwrap_or(&self.opts.events_index))
    }

    /// The rule's filter, the time range, and `extra` clauses.
    fn query(&self, from: DateTime<Utc>, to: DateTime<Utc>, extra: Vec<Value>) -> Value {
        let (mut filter, mut must_not) = self.rule.filter.clauses();
        filter.push(range(from, to));
        filter.extend(extra);
        if !self.rule.include_alerts {
            must_not.push(term("event.kind", "alert"));
        }
        json!({"bool": {"filter": filter, "must_not": must_not}})
    }

    async fn search(&self, what: &str, body: &Value) -> Result<Value, EsError> {
        self.es
            .call(
                what,
                Method::Post,
                &format!("/{}/_search", self.index()),
                &[
                    ("ignore_unavailable", "true".into()),
                    ("allow_no_indices", "true".into()),
                ],
                Some(body),
            )
            .await
    }

    /// Every matching event in `[from, to)`, oldest first, paged with a point in time.
    async fn events(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        extra: Vec<Value>,
    ) -> Result<Vec<Event>, EsError> {
        let query = self.query(from, to, extra);
        let pit = self
            .es
            .call(
                "open point in time",
                Method::Post,
                &format!("/{}/_pit", self.index()),
                &[
                    ("keep_alive", self.opts.keep_alive.clone()),
                    ("ignore_unavailable", "true".into()),
                    ("allow_no_indices", "true".into()),
                ],
                None,
            )
            .await?;
        let mut pit_id = pit
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| EsError {
                what: "open point in time".into(),
                status: None,
                message: "no id in the answer".into(),
            })?
            .to_string();
        let result = self.page_events(&query, &mut pit_id).await;
        let _ = self
            .es
            .call(
                "close point in time",
                Method::Delete,
                "/_pit",
                &[],
                Some(&json!({"id": pit_id})),
            )
            .await;
        result
    }

    async fn page_events(&self, query: &Value, pit_id: &mut String) -> Result<Vec<Event>, EsError> {
        let mut out = Vec::new();
        let mut after: Option<Value> = None;
        loop {
            let mut body = json!({
                "size": self.opts.page_size,
                "query": query,
                "pit": {"id": pit_id, "keep_alive": self.opts.keep_alive},
                "sort": [{"@timestamp": {"order": "asc", "format": "epoch_millis"}}, {"_shard_doc": "asc"}],
                "track_total_hits": false,
            });
            if let Some(a) = &after {
                body["search_after"] = a.clone();
            }
            let resp = self
                .es
                .call("search events", Method::Post, "/_search", &[], Some(&body))
                .await?;
            if let Some(id) = resp.get("pit_id").and_then(Value::as_str) {
                *pit_id = id.to_string();
            }
            let hits = resp
                .pointer("/hits/hits")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if hits.is_empty() {
                break;
            }
            for h in &hits {
                if let Some(e) = hit_event(h) {
                    out.push(e);
                }
            }
            if out.len() > self.opts.max_events {
                return Err(EsError {
                    what: format!("rule {}", self.rule.id),
                    status: None,
                    message: format!(
                        "more than {} matching events in one run; narrow the filter or the look-back",
                        self.opts.max_events
                    ),
                });
            }
            after = hits.last().and_then(|h| h.get("sort")).cloned();
            if hits.len() < self.opts.page_size {
                break;
            }
        }
        Ok(out)
    }

    /// For the entities seen in the window, their latest located, non-allowlisted events in
    /// `[window start − previous_within, window start)`: a `terms` aggregation over those
    /// entities with `top_hits`, so the cost follows the window's users, not the look-back.
    async fn previous_locations(
        &self,
        g: &GeoVelocity,
        window: Window,
        current: &[Event],
    ) -> Result<Vec<Event>, EsError> {
        let entity = &self.rule.entity;
        let entities: BTreeSet<String> = current.iter().filter_map(|e| e.key(entity)).collect();
        let entities: Vec<String> = entities.into_iter().collect();
        let mut must_not = Vec::new();
        if !g.allow_asns.is_empty() {
            must_not.push(json!({"terms": {"source.as.number": g.allow_asns}}));
        }
        if let Some(f) = &g.allow_field {
            must_not.push(json!({"term": {f: true}}));
        }
        let mut out = Vec::new();
        for chunk in entities.chunks(500) {
            let extra = json!({"bool": {
                "filter": [{"terms": {entity: chunk}}, {"exists": {"field": g.location_field}}],
                "must_not": must_not,
            }});
            let body = json!({
                "size": 0,
                "track_total_hits": false,
                "query": self.query(window.start - g.previous_within, window.start, vec![extra]),
                "aggs": {"e": {
                    "terms": {"field": entity, "size": chunk.len()},
                    // A few, because address allowlists are applied in memory (the field may
                    // not be mapped as `ip`).
                    "aggs": {"last": {"top_hits": {"size": 3, "sort": [{"@timestamp": {"order": "desc", "format": "epoch_millis"}}]}}}
                }}
            });
            let resp = self.search("previous sign-ins", &body).await?;
            for b in resp
                .pointer("/aggregations/e/buckets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for h in b
                    .pointer("/last/hits/hits")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(e) = hit_event(h) {
                        out.push(e);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Which of `values` of `field` at least `min` distinct entities used in `range` (events
    /// the rule reads): common in the organisation. One `terms` aggregation over the given values
    /// with a `cardinality` of the entity, so its cost follows the candidates, not the history.
    async fn common_values(
        &self,
        field: &str,
        entity: &str,
        values: BTreeSet<String>,
        range: Window,
        min: u64,
    ) -> Result<BTreeSet<String>, EsError> {
        let mut out = BTreeSet::new();
        let values: Vec<String> = values.into_iter().collect();
        for chunk in values.chunks(500) {
            let body = json!({
                "size": 0,
                "track_total_hits": false,
                "query": self.query(range.start, range.end, vec![json!({"terms": {field: chunk}})]),
                "aggs": {"v": {
                    "terms": {"field": field, "size": chunk.len()},
                    "aggs": {"e": {"cardinality": {"field": entity, "precision_threshold": min.clamp(100, 40_000)}}}
                }}
            });
            let resp = self.search("common values", &body).await?;
            for b in resp
                .pointer("/aggregations/v/buckets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let n = b.pointer("/e/value").and_then(Value::as_u64).unwrap_or(0);
                if n >= min {
                    if let Some(k) = b.get("key").and_then(doc::scalar_key) {
                        out.insert(k);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Pages a composite aggregation; `sub` are the per-bucket sub-aggregations.
    async fn composite(
        &self,
        what: &str,
        query: Value,
        sources: &[(String, bool)],
        sub: Value,
    ) -> Result<Vec<Value>, EsError> {
        let sources: Vec<Value> = sources
            .iter()
            .enumerate()
            .map(|(i, (f, missing))| {
                let mut t = json!({"field": f});
                if *missing {
                    t["missing_bucket"] = json!(true);
                }
                json!({format!("k{i}"): {"terms": t}})
            })
            .collect();
        let mut buckets = Vec::new();
        let mut after: Option<Value> = None;
        loop {
            let mut comp = json!({"size": self.opts.page_size, "sources": sources});
            if let Some(a) = &after {
                comp["after"] = a.clone();
            }
            let mut agg = json!({"composite": comp});
            if sub.as_object().is_some_and(|m| !m.is_empty()) {
                agg["aggs"] = sub.clone();
            }
            let body =
                json!({"size": 0, "track_total_hits": false, "query": query, "aggs": {"g": agg}});
            let resp = self.search(what, &body).await?;
            let page = resp
                .pointer("/aggregations/g/buckets")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let n = page.len();
            buckets.extend(page);
            if buckets.len() > self.opts.max_events {
                return Err(EsError {
                    what: what.into(),
                    status: None,
                    message: format!("more than {} groups in one run", self.opts.max_events),
                });
            }
            after = resp.pointer("/aggregations/g/after_key").cloned();
            if n < self.opts.page_size || after.is_none() {
                break;
            }
        }
        Ok(buckets)
    }

    /// How many events in range lack each of `fields` (they are skipped, and counted).
    async fn count_missing(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        fields: &[String],
        stats: &mut Stats,
    ) -> Result<(), EsError> {
        if fields.is_empty() {
            return Ok(());
        }
        let mut aggs = serde_json::Map::new();
        for (i, f) in fields.iter().enumerate() {
            aggs.insert(format!("m{i}"), json!({"missing": {"field": f}}));
        }
        let body = json!({"size": 0, "track_total_hits": true, "query": self.query(from, to, vec![]), "aggs": aggs});
        let resp = self.search("count events missing fields", &body).await?;
        stats.events_read += resp
            .pointer("/hits/total/value")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        for (i, f) in fields.iter().enumerate() {
            let n = resp
                .pointer(&format!("/aggregations/m{i}/doc_count"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if n > 0 {
                *stats.skipped.entry(format!("missing {f}")).or_default() += n;
            }
        }
        Ok(())
    }

    /// The contributing events of one group (latest first trimmed to [`MAX_EVENT_IDS`]) and the
    /// latest one's source.
    async fn contributing(
        &self,
        window: Window,
        group: &[(String, String)],
    ) -> Result<(Vec<eval::EventRef>, Value), EsError> {
        let extra: Vec<Value> = group.iter().map(|(f, v)| term(f, v)).collect();
        let body = json!({
            "size": MAX_EVENT_IDS,
            "query": self.query(window.start, window.end, extra),
            "sort": [{"@timestamp": "desc"}],
            "track_total_hits": false,
        });
        let resp = self.search("contributing events", &body).await?;
        let hits = resp
            .pointer("/hits/hits")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let context = hits
            .first()
            .and_then(|h| h.get("_source"))
            .cloned()
            .unwrap_or(Value::Null);
        let mut refs: Vec<eval::EventRef> = hits
            .iter()
            .map(|h| eval::EventRef {
                id: h
                    .get("_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                index: h
                    .get("_index")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect();
        refs.reverse();
        Ok((refs, context))
    }

    async fn finish(
        &self,
        window: Window,
        group: Vec<(String, String)>,
        first: DateTime<Utc>,
        last: DateTime<Utc>,
        count: u64,
        evidence: serde_json::Map<String, Value>,
    ) -> Result<Finding, EsError> {
        let (events, context) = self.contributing(window, &group).await?;
        let entity = group
            .iter()
            .find(|(f, _)| *f == self.rule.entity)
            .map(|(_, v)| v.clone())
            .or_else(|| doc::first(&context, &self.rule.entity).and_then(doc::scalar_key))
            .unwrap_or_default();
        Ok(Finding {
            group,
            entity,
            first,
            last,
            event_count: count,
            events,
            evidence,
            context,
        })
    }

    async fn threshold(
        &self,
        t: &Threshold,
        window: Window,
    ) -> Result<(Vec<Finding>, Stats), EsError> {
        let mut stats = Stats::default();
        self.count_missing(window.start, window.end, &t.group_by, &mut stats)
            .await?;
        let mut sub = json!({
            "first": {"min": {"field": "@timestamp"}},
            "last": {"max": {"field": "@timestamp"}},
        });
        for (i, c) in t.cardinality.iter().enumerate() {
            sub[format!("c{i}")] =
                json!({"cardinality": {"field": c.field, "precision_threshold": 3000}});
        }
        if let Some(p) = &t.max_per_value {
            sub["pv"] = json!({"terms": {"field": p.field, "size": 1}});
        }
        let sources: Vec<(String, bool)> = t.group_by.iter().map(|f| (f.clone(), false)).collect();
        let buckets = self
            .composite(
                "threshold aggregation",
                self.query(window.start, window.end, vec![]),
                &sources,
                sub,
            )
            .await?;
        let mut out = Vec::new();
        for b in buckets {
            let count = b.get("doc_count").and_then(Value::as_u64).unwrap_or(0);
            if count < t.min_count {
                continue;
            }
            let cards: BTreeMap<String, u64> = t
                .cardinality
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    (
                        c.field.clone(),
                        b.pointer(&format!("/c{i}/value"))
                            .and_then(Value::as_u64)
                            .unwrap_or(0),
                    )
                })
                .collect();
            let max_per = t.max_per_value.as_ref().map(|_| {
                b.pointer("/pv/buckets/0/doc_count")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            });
            if !eval::threshold_fires(t, count, &cards, max_per) {
                continue;
            }
            let group = bucket_group(&b, &t.group_by);
            let evidence = eval::threshold_evidence(
                count,
                &cards,
                t.max_per_value
                    .as_ref()
                    .map(|p| (p.field.as_str(), max_per.unwrap_or(0))),
            );
            let (first, last) = bucket_times(&b);
            out.push(
                self.finish(window, group, first, last, count, evidence)
                    .await?,
            );
        }
        Ok((out, stats))
    }

    async fn new_terms(
        &self,
        n: &NewTerms,
        window: Window,
    ) -> Result<(Vec<Finding>, Stats), EsError> {
        let mut stats = Stats::default();
        let key_fields: Vec<String> = n.by.iter().chain(&n.fields).cloned().collect();
        self.count_missing(window.start, window.end, &key_fields, &mut stats)
            .await?;
        let sub = json!({"first": {"min": {"field": "@timestamp"}}, "last": {"max": {"field": "@timestamp"}}});
        let sources: Vec<(String, bool)> = key_fields.iter().map(|f| (f.clone(), false)).collect();
        let current = self
            .composite(
                "new_terms window",
                self.query(window.start, window.end, vec![]),
                &sources,
                sub,
            )
            .await?;
        if current.is_empty() {
            return Ok((Vec::new(), stats));
        }
        let (history, before) = eval::new_terms_ranges(n, window);
        let mut candidates: Vec<(Vec<(String, String)>, Value)> = current
            .into_iter()
            .map(|b| (bucket_group(&b, &key_fields), b))
            .collect();
        // Known combinations in the history, for the candidates' entities only.
        let mut seen: BTreeSet<Vec<(String, String)>> = BTreeSet::new();
        let mut active: BTreeSet<Vec<(String, String)>> = BTreeSet::new();
        let mut known_entities: BTreeMap<Vec<(String, String)>, u64> = BTreeMap::new();
        let entity_field = &n.by[0];
        let by_sources: Vec<(String, bool)> = n.by.iter().map(|f| (f.clone(), false)).collect();
        for chunk in candidates.chunks(500) {
            let values: BTreeSet<&str> = chunk.iter().map(|(g, _)| g[0].1.as_str()).collect();
            let filter = json!({"terms": {entity_field: values}});
            let known = self
                .composite(
                    "new_terms history",
                    self.query(history.start, history.end, vec![filter.clone()]),
                    &sources,
                    json!({}),
                )
                .await?;
            for b in &known {
                let g = bucket_group(b, &key_fields);
                *known_entities.entry(g[..n.by.len()].to_vec()).or_default() +=
                    b.get("doc_count").and_then(Value::as_u64).unwrap_or(0);
                seen.insert(g);
            }
            if let Some(before) = before {
                let prior = self
                    .composite(
                        "new_terms prior activity",
                        self.query(before.start, before.end, vec![filter]),
                        &by_sources,
                        json!({}),
                    )
                    .await?;
                active.extend(prior.iter().map(|b| bucket_group(b, &n.by)));
            }
        }
        candidates.retain(|(g, _)| {
            let by = g[..n.by.len()].to_vec();
            !seen.contains(g)
                && (before.is_none() || active.contains(&by))
                && (!n.require_history
                    || known_entities.get(&by).copied().unwrap_or(0) >= n.min_history)
        });
        let seen_values = eval::seen_field_values(n, &seen);
        candidates.retain(|(g, _)| eval::is_new(n, g, &seen_values));
        if let (Some(min), Some(field)) = (n.common_entities, n.fields.first()) {
            let values = candidates
                .iter()
                .filter_map(|(g, _)| g.get(n.by.len()).map(|(_, v)| v.clone()))
                .collect();
            let common = self
                .common_values(field, entity_field, values, history, min)
                .await?;
            candidates.retain(|(g, _)| g.get(n.by.len()).is_none_or(|(_, v)| !common.contains(v)));
        }
        let mut out = Vec::new();
        for (group, b) in candidates {
            let terms = group[n.by.len()..].to_vec();
            let count = b.get("doc_count").and_then(Value::as_u64).unwrap_or(0);
            let (first, last) = bucket_times(&b);
            out.push(
                self.finish(
                    window,
                    group,
                    first,
                    last,
                    count,
                    eval::new_terms_evidence(n, &terms),
                )
                .await?,
            );
        }
        Ok((out, stats))
    }

    async fn rare(&self, r: &Rare, window: Window) -> Result<(Vec<Finding>, Stats), EsError> {
        let mut stats = Stats::default();
        let entity = self.rule.entity.clone();
        self.count_missing(
            window.start,
            window.end,
            &[entity.clone(), r.field.clone()],
            &mut stats,
        )
        .await?;
        let sub = json!({"first": {"min": {"field": "@timestamp"}}, "last": {"max": {"field": "@timestamp"}}});
        let pair = vec![(entity.clone(), false), (r.field.clone(), false)];
        let current = self
            .composite(
                "rare window",
                self.query(window.start, window.end, vec![]),
                &pair,
                sub,
            )
            .await?;
        if current.is_empty() {
            return Ok((Vec::new(), stats));
        }
        let baseline = eval::rare_baseline(r, window);
        let fields = [entity.clone(), r.field.clone()];
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
        let with_missing = vec![(entity.clone(), false), (r.field.clone(), true)];
        for chunk in current.chunks(500) {
            let values: BTreeSet<String> = chunk
                .iter()
                .map(|b| bucket_group(b, &fields)[0].1.clone())
                .collect();
            let base = self
                .composite(
                    "rare baseline",
                    self.query(
                        baseline.start,
                        baseline.end,
                        vec![json!({"terms": {entity.as_str(): values}})],
                    ),
                    &with_missing,
                    json!({}),
                )
                .await?;
            for b in base {
                let n = b.get("doc_count").and_then(Value::as_u64).unwrap_or(0);
                let e = b
                    .pointer("/key/k0")
                    .and_then(doc::scalar_key)
                    .unwrap_or_default();
                *totals.entry(e.clone()).or_default() += n;
                if let Some(v) = b.pointer("/key/k1").and_then(doc::scalar_key) {
                    *counts.entry((e, v)).or_default() += n;
                }
            }
        }
        let common = match r.common_entities {
            Some(min) => {
                let values = current
                    .iter()
                    .map(|b| bucket_group(b, &fields)[1].1.clone())
                    .collect();
                self.common_values(&r.field, &entity, values, baseline, min)
                    .await?
            }
            None => BTreeSet::new(),
        };
        let mut out = Vec::new();
        for b in current {
            let group = bucket_group(&b, &fields);
            let (e, v) = (group[0].1.clone(), group[1].1.clone());
            if common.contains(&v) {
                continue;
            }
            let total = totals.get(&e).copied().unwrap_or(0);
            let count = counts.get(&(e.clone(), v.clone())).copied().unwrap_or(0);
            if !eval::rare_fires(r, count, total) {
                continue;
            }
            let n = b.get("doc_count").and_then(Value::as_u64).unwrap_or(0);
            let (first, last) = bucket_times(&b);
            let mut f = self
                .finish(
                    window,
                    group,
                    first,
                    last,
                    n,
                    eval::rare_evidence(r, &v, count, total),
                )
                .await?;
            // The alert's identity is the entity; the rare value is evidence.
            f.group.truncate(1);
            out.push(f);
        }
        Ok((out, stats))
    }
}

fn bucket_group(b: &Value, fields: &[String]) -> Vec<(String, String)> {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            (
                f.clone(),
                b.pointer(&format!("/key/k{i}"))
                    .and_then(doc::scalar_key)
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn bucket_times(b: &Value) -> (DateTime<Utc>, DateTime<Utc>) {
    let t = |p: &str| {
        b.pointer(p)
            .and_then(Value::as_f64)
            .and_then(|ms| doc::millis(ms as i64))
            .unwrap_or_default()
    };
    (t("/first/value"), t("/last/value"))
}

fn hit_event(h: &Value) -> Option<Event> {
    let source = h.get("_source")?.clone();
    let ts = h
        .pointer("/sort/0")
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(doc::millis)
        .or_else(|| doc::first(&source, "@timestamp").and_then(doc::parse_time))?;
    Some(Event {
        id: h.get("_id")?.as_str()?.to_string(),
        index: h
            .get("_index")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        ts,
        source,
    })
}
