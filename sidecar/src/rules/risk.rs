//! Per-user risk from alerts, computed the way Elastic's entity risk engine does: the user's
//! alert risk scores sorted high to low, `S = Σ rᵢ / i^1.5`, normalised by the partial
//! zeta(1.5) sum over 10,000 terms (2.5924) to 0–100, then an optional asset-criticality
//! modifier applied as a Bayesian odds update. Every run recomputes from scratch over the
//! look-back; the result (with the top ten inputs) goes to the risk index, one document per user.

use chrono::{DateTime, Utc};
use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::doc;
use super::esapi::EsError;
use super::scheduler::{align_down, Engine};
use crate::fields::alert as af;
use crate::fields::risk as rf;

pub const ZETA_S: f64 = 1.5;
/// Σ_{i=1}^{10000} i^-1.5, Kibana's `RIEMANN_ZETA_VALUE`.
pub const ZETA_VALUE: f64 = 2.5924;
pub const MAX_ALERTS_PER_ENTITY: usize = 10_000;
pub const MAX_INPUTS: usize = 10;

/// Asset criticality and its modifier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Criticality {
    LowImpact,
    MediumImpact,
    HighImpact,
    ExtremeImpact,
}

impl Criticality {
    pub fn modifier(self) -> f64 {
        match self {
            Criticality::LowImpact => 0.5,
            Criticality::MediumImpact => 1.0,
            Criticality::HighImpact => 1.5,
            Criticality::ExtremeImpact => 2.0,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Criticality::LowImpact => "low_impact",
            Criticality::MediumImpact => "medium_impact",
            Criticality::HighImpact => "high_impact",
            Criticality::ExtremeImpact => "extreme_impact",
        }
    }
    pub fn parse(s: &str) -> Option<Criticality> {
        Some(match s {
            "low_impact" => Criticality::LowImpact,
            "medium_impact" => Criticality::MediumImpact,
            "high_impact" => Criticality::HighImpact,
            "extreme_impact" => Criticality::ExtremeImpact,
            _ => return None,
        })
    }
}

/// Levels on the final 0–100 score (lower bounds inclusive).
pub fn level(score: f64) -> &'static str {
    if score >= 90.0 {
        "Critical"
    } else if score >= 70.0 {
        "High"
    } else if score >= 40.0 {
        "Moderate"
    } else if score >= 20.0 {
        "Low"
    } else {
        "Unknown"
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RiskScore {
    /// Raw `S`.
    pub calculated_score: f64,
    /// Alerts only, normalised (category 1).
    pub category_1_score: f64,
    pub category_1_count: usize,
    /// What criticality added (category 2).
    pub category_2_score: f64,
    /// Final 0–100.
    pub calculated_score_norm: f64,
    pub level: &'static str,
    /// Each input's contribution to the normalised score, in the sorted order.
    pub contributions: Vec<f64>,
}

/// Scores one entity from its alerts' risk scores (any order; at most 10,000 are used).
pub fn score(risk_scores: &[f64], criticality: Option<Criticality>) -> RiskScore {
    let mut r: Vec<f64> = risk_scores.to_vec();
    r.sort_by(|a, b| b.total_cmp(a));
    r.truncate(MAX_ALERTS_PER_ENTITY);
    let weighted: Vec<f64> = r
        .iter()
        .enumerate()
        .map(|(i, x)| x / ((i + 1) as f64).powf(ZETA_S))
        .collect();
    let s: f64 = weighted.iter().sum();
    let norm = (s / ZETA_VALUE).min(100.0);
    let fin = match criticality {
        None => norm,
        Some(c) => bayesian_update(norm, c.modifier()),
    };
    RiskScore {
        calculated_score: s,
        category_1_score: norm,
        category_1_count: r.len(),
        category_2_score: fin - norm,
        calculated_score_norm: fin,
        level: level(fin),
        contributions: weighted.iter().map(|w| w / ZETA_VALUE).collect(),
    }
}

/// `p = s/(100−s); p' = m·p; 100·p'/(1+p')`.
pub fn bayesian_update(score: f64, modifier: f64) -> f64 {
    if score >= 100.0 {
        return 100.0;
    }
    let p = score / (100.0 - score);
    let q = modifier * p;
    100.0 * q / (1.0 + q)
}

const STATE_ID: &str = "vigil-risk-engine";

/// Recomputes every user's risk if the risk job is due (hourly by default) and this replica
/// can claim it. The job is scheduled on the hourly grid, but it scores the alerts up to `now`:
/// an alert is stamped with its last event's time, so scoring only up to the grid point would
/// leave out the alerts of the last (up to) hour, all of them on a first run.
pub async fn run_due(engine: &Engine, now: DateTime<Utc>) -> Result<Option<usize>, EsError> {
    let s = engine.settings();
    let due = align_down(now, s.risk_interval);
    let es = engine.es();
    let state = es
        .call(
            "read risk state",
            Method::Get,
            &format!("/{}/_doc/{STATE_ID}", s.state_index),
            &[],
            None,
        )
        .await;
    let (source, version) = match state {
        Ok(v) => (
            v.get("_source").cloned().unwrap_or(json!({})),
            Some((
                v["_seq_no"].as_i64().unwrap_or(0),
                v["_primary_term"].as_i64().unwrap_or(1),
            )),
        ),
        Err(e) if e.is_not_found() => (json!({}), None),
        Err(e) => return Err(e),
    };
    if source
        .get("checkpoint")
        .and_then(doc::parse_time)
        .is_some_and(|c| c >= due)
    {
        return Ok(None);
    }
    // Claim the job by moving its checkpoint first: the loser of a race gets a 409.
    let mut q: Vec<(&str, String)> = vec![("refresh", "true".into())];
    match version {
        Some((seq, term)) => {
            q.push(("if_seq_no", seq.to_string()));
            q.push(("if_primary_term", term.to_string()));
        }
        None => q.push(("op_type", "create".into())),
    }
    let mut next = source.clone();
    next["checkpoint"] = json!(doc::fmt_time(due));
    next["replica"] = json!(s.replica);
    match es
        .call(
            "claim risk job",
            Method::Put,
            &format!("/{}/_doc/{STATE_ID}", s.state_index),
            &q,
            Some(&next),
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_conflict() => return Ok(None),
        Err(e) => return Err(e),
    }
    compute(engine, now.max(due)).await.map(Some)
}

/// Recomputes every user's risk from alerts in `[end − risk_lookback, end)` and writes the
/// risk documents. Returns the number of users written.
pub async fn compute(engine: &Engine, end: DateTime<Utc>) -> Result<usize, EsError> {
    let s = engine.settings();
    let es = engine.es();
    let start = end - s.risk_lookback;
    let query = json!({"bool": {"filter": [
        {"term": {af::EVENT_KIND: "alert"}},
        {"exists": {"field": af::USER_NAME}},
        {"range": {af::TIMESTAMP: {"gte": start.timestamp_millis(), "lt": end.timestamp_millis(), "format": "epoch_millis"}}}
    ]}});
    let mut after: Option<Value> = None;
    let mut body = String::new();
    let mut users = 0usize;
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let mut comp =
            json!({"size": 500, "sources": [{"u": {"terms": {"field": af::USER_NAME}}}]});
        if let Some(a) = &after {
            comp["after"] = a.clone();
        }
        let req = json!({"size": 0, "query": query, "aggs": {"g": {
            "composite": comp,
            "aggs": {
                "scores": {"terms": {"field": af::EVENT_RISK_SCORE, "size": 101, "order": {"_key": "desc"}}},
                "top": {"top_hits": {"size": MAX_INPUTS, "sort": [{af::EVENT_RISK_SCORE: "desc"}, {af::TIMESTAMP: "desc"}],
                    "_source": [af::RULE_NAME, af::RULE_ID, af::EVENT_RISK_SCORE, af::TIMESTAMP]}}
            }
        }}});
        let resp = match es
            .call(
                "aggregate alerts for risk",
                Method::Post,
                &format!("/{}/_search", s.alerts_index),
                &[
                    ("ignore_unavailable", "true".into()),
                    ("allow_no_indices", "true".into()),
                ],
                Some(&req),
            )
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_not_found() => break,
            Err(e) => return Err(e),
        };
        let buckets = resp
            .pointer("/aggregations/g/buckets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for b in &buckets {
            let Some(user) = b.pointer("/key/u").and_then(doc::scalar_key) else {
                continue;
            };
            let mut scores = Vec::new();
            for sb in b
                .pointer("/scores/buckets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let v = sb["key"].as_f64().unwrap_or(0.0);
                let n = sb["doc_count"].as_u64().unwrap_or(0) as usize;
                let room = MAX_ALERTS_PER_ENTITY.saturating_sub(scores.len());
                scores.extend(std::iter::repeat_n(v, n.min(room)));
            }
            let r = score(&scores, None);
            let inputs: Vec<Value> = b
                .pointer("/top/hits/hits")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .zip(&r.contributions)
                .map(|(h, c)| {
                    let src = &h["_source"];
                    json!({
                        "id": h["_id"], "index": h["_index"], "category": "category_1",
                        "description": format!("Alert from Rule: {}", doc::first(src, af::RULE_NAME).and_then(Value::as_str).unwrap_or("?")),
                        "rule_id": doc::first(src, af::RULE_ID),
                        "risk_score": doc::first(src, af::EVENT_RISK_SCORE),
                        "timestamp": doc::first(src, af::TIMESTAMP),
                        "contribution_score": round2(*c),
                    })
                })
                .collect();
            seen.insert(user.clone());
            push_doc(
                &mut body,
                &s.risk_index,
                &user,
                risk_doc(&user, &r, inputs, start, end),
            );
            users += 1;
        }
        after = resp.pointer("/aggregations/g/after_key").cloned();
        if buckets.len() < 500 || after.is_none() {
            break;
        }
    }
    // Users whose alerts all left the range go back to zero.
    let existing = es
        .call("read risk documents", Method::Post, &format!("/{}/_search", s.risk_index),
            &[("ignore_unavailable", "true".into()), ("allow_no_indices", "true".into())],
            Some(&json!({"size": 10000, "_source": [rf::USER_NAME], "query": {"range": {rf::CALCULATED_SCORE_NORM: {"gt": 0}}}})))
        .await
        .unwrap_or(Value::Null);
    for h in existing
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(u) = doc::first(&h["_source"], rf::USER_NAME).and_then(doc::scalar_key) {
            if !seen.contains(&u) {
                let mut d = risk_doc(&u, &score(&[], None), vec![], start, end);
                crate::enrich::write_at(
                    d.as_object_mut().expect("object"),
                    rf::NOTES,
                    json!(["no alerts in range"]),
                )
                .expect("object");
                push_doc(&mut body, &s.risk_index, &u, d);
            }
        }
    }
    if !body.is_empty() {
        let resp = es
            .ndjson(
                "write risk scores",
                "/_bulk",
                &[("refresh", s.refresh.clone())],
                body,
            )
            .await?;
        if resp.get("errors").and_then(Value::as_bool) == Some(true) {
            return Err(EsError {
                what: "write risk scores".into(),
                status: None,
                message: resp
                    .pointer("/items/0/index/error/reason")
                    .and_then(Value::as_str)
                    .unwrap_or("bulk errors")
                    .to_string(),
            });
        }
    }
    Ok(users)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn push_doc(body: &mut String, index: &str, user: &str, d: Value) {
    body.push_str(&json!({"index": {"_index": index, "_id": format!("user:{user}")}}).to_string());
    body.push('\n');
    body.push_str(&d.to_string());
    body.push('\n');
}

/// The risk document for one user (Elastic's `user.risk.*` shape).
pub fn risk_doc(
    user: &str,
    r: &RiskScore,
    inputs: Vec<Value>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Value {
    let mut d = serde_json::Map::new();
    let mut put = |f: &str, v: Value| {
        crate::enrich::write_at(&mut d, f, v).expect("risk fields never conflict")
    };
    put(rf::TIMESTAMP, json!(doc::fmt_time(end)));
    put(rf::USER_NAME, json!(user));
    put(rf::ID_FIELD, json!("user.name"));
    put(rf::ID_VALUE, json!(user));
    put(rf::CALCULATED_SCORE, json!(round2(r.calculated_score)));
    put(
        rf::CALCULATED_SCORE_NORM,
        json!(round2(r.calculated_score_norm)),
    );
    put(rf::CALCULATED_LEVEL, json!(r.level));
    put(rf::CATEGORY_1_SCORE, json!(round2(r.category_1_score)));
    put(rf::CATEGORY_1_COUNT, json!(r.category_1_count));
    put(rf::CATEGORY_2_SCORE, json!(round2(r.category_2_score)));
    put(rf::CATEGORY_2_COUNT, json!(0));
    put("user.risk.inputs", Value::Array(inputs));
    put(rf::RANGE_START, json!(doc::fmt_time(start)));
    put(rf::RANGE_END, json!(doc::fmt_time(end)));
    Value::Object(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 0.05
    }

    /// The worked numbers of the reference, §3.1.
    #[test]
    fn reproduces_the_reference_numbers() {
        let r = score(&[21.0, 70.0, 21.0, 45.0, 21.0], None);
        assert!(close(r.calculated_score, 94.45), "{r:?}");
        assert!(close(r.calculated_score_norm, 36.4), "{r:?}");
        assert_eq!(r.level, "Low");
        let with = |c| score(&[70.0, 45.0, 21.0, 21.0, 21.0], Some(c)).calculated_score_norm;
        assert!(close(with(Criticality::ExtremeImpact), 53.4));
        assert_eq!(level(with(Criticality::ExtremeImpact)), "Moderate");
        assert!(close(with(Criticality::HighImpact), 46.2));
        assert!(close(with(Criticality::LowImpact), 22.3));
        assert!(close(with(Criticality::MediumImpact), 36.4));
        assert!(close(score(&[99.0], None).calculated_score_norm, 38.2));
        assert!(close(score(&[73.0], None).calculated_score_norm, 28.2));
        let one47 = score(&[47.0], None);
        assert!(close(one47.calculated_score_norm, 18.1));
        assert_eq!(one47.level, "Unknown");
        assert!(close(score(&[73.0; 10], None).calculated_score_norm, 56.2));
        // 10,000 alerts of 100 reach (about) 100; more are ignored.
        let max = score(&vec![100.0; 12_000], None);
        assert_eq!(max.category_1_count, 10_000);
        assert!(close(max.calculated_score_norm, 100.0), "{max:?}");
    }

    #[test]
    fn contributions_sum_to_the_score_and_levels_have_inclusive_lower_bounds() {
        let r = score(&[70.0, 45.0, 21.0], None);
        let sum: f64 = r.contributions.iter().sum();
        assert!((sum - r.category_1_score).abs() < 1e-9);
        assert!((r.contributions[0] - 70.0 / ZETA_VALUE).abs() < 1e-9);
        assert_eq!(level(20.0), "Low");
        assert_eq!(level(40.0), "Moderate");
        assert_eq!(level(70.0), "High");
        assert_eq!(level(90.0), "Critical");
        assert_eq!(level(19.99), "Unknown");
        assert_eq!(score(&[], None).calculated_score_norm, 0.0);
    }
}
