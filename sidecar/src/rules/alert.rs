//! Findings become ECS alert documents with a deterministic `_id`, so a rerun of the same window
//! (after a crash, by another replica, by `vigil rules run --once`) never duplicates an alert.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::doc;
use super::eval::{self, Finding, Window};
use super::schema::{Kind, Rule};
use crate::fields::alert as f;

/// `_id` = SHA-256 over (rule id, group fields and values, window end), hex, 40 characters.
/// The group is the entity (plus any other group-by fields), so two findings of one rule in one
/// window for different groups never collide, and the same finding always maps to the same id.
pub fn alert_id(rule: &Rule, group: &[(String, String)], window: Window) -> String {
    let mut h = Sha256::new();
    h.update(rule.id.as_bytes());
    for (k, v) in group {
        h.update([0u8]);
        h.update(k.as_bytes());
        h.update([0u8]);
        h.update(v.as_bytes());
    }
    h.update([0u8]);
    h.update(window.end.timestamp_millis().to_be_bytes());
    hex::encode(&h.finalize()[..20])
}

fn put(doc: &mut Map<String, Value>, field: &str, v: Value) {
    if v.is_null() {
        return;
    }
    crate::enrich::write_at(doc, field, v).expect("alert fields never conflict");
}

/// Whether the alert is about one user (so `user.*` of the context event can be copied).
fn user_scoped(rule: &Rule) -> bool {
    rule.entity.starts_with("user.") || rule.group_fields().iter().any(|g| g.starts_with("user."))
}

/// The alert document for a finding.
pub fn alert_doc(
    rule: &Rule,
    finding: &Finding,
    window: Window,
    now: DateTime<Utc>,
) -> (String, Value) {
    let id = alert_id(rule, &finding.group, window);
    let mut d = Map::new();
    let ctx = &finding.context;
    put(&mut d, f::TIMESTAMP, json!(doc::fmt_time(finding.last)));
    put(&mut d, f::MESSAGE, json!(rule.name));
    let mut tags = vec!["vigil".to_string()];
    tags.extend(rule.tags.iter().cloned());
    put(&mut d, f::TAGS, json!(tags));
    put(&mut d, f::EVENT_KIND, json!("alert"));
    put(&mut d, f::EVENT_MODULE, json!("vigil"));
    put(&mut d, f::EVENT_DATASET, json!("vigil.alert"));
    if let Some(cat) = doc::raw_at(ctx, "event.category") {
        put(&mut d, f::EVENT_CATEGORY, cat.clone());
    }
    put(&mut d, f::EVENT_SEVERITY, json!(rule.severity.number()));
    put(&mut d, f::EVENT_RISK_SCORE, json!(rule.risk_score));
    put(&mut d, f::EVENT_ID, json!(id));
    put(&mut d, f::EVENT_REASON, json!(eval::reason(rule, finding)));
    put(&mut d, f::EVENT_START, json!(doc::fmt_time(finding.first)));
    put(&mut d, f::EVENT_END, json!(doc::fmt_time(finding.last)));
    put(&mut d, f::EVENT_CREATED, json!(doc::fmt_time(now)));
    put(&mut d, f::EVENT_INGESTED, json!(doc::fmt_time(now)));

    put(&mut d, f::RULE_ID, json!(rule.id));
    put(&mut d, f::RULE_UUID, json!(rule.id));
    put(&mut d, f::RULE_NAME, json!(rule.name));
    put(&mut d, f::RULE_DESCRIPTION, json!(rule.description));
    put(&mut d, f::RULE_VERSION, json!(rule.version.to_string()));
    put(&mut d, f::RULE_RULESET, json!("vigil"));
    put(&mut d, f::RULE_CATEGORY, json!(rule.kind.name()));
    put(&mut d, f::RULE_AUTHOR, json!(["vigil"]));
    if let Some(r) = rule.references.first() {
        put(&mut d, f::RULE_REFERENCE, json!(r));
    }

    put(&mut d, f::THREAT_FRAMEWORK, json!(super::mitre::FRAMEWORK));
    let col = |get: &dyn Fn(&super::mitre::ThreatRef) -> Option<String>| -> Value {
        let mut v: Vec<String> = rule.threat.iter().filter_map(get).collect();
        v.dedup();
        if v.is_empty() {
            Value::Null
        } else {
            json!(v)
        }
    };
    put(
        &mut d,
        f::THREAT_TACTIC_ID,
        col(&|t| Some(t.tactic.0.clone())),
    );
    put(
        &mut d,
        f::THREAT_TACTIC_NAME,
        col(&|t| Some(t.tactic.1.clone())),
    );
    put(
        &mut d,
        f::THREAT_TACTIC_REFERENCE,
        col(&|t| Some(super::mitre::tactic_reference(&t.tactic.0))),
    );
    put(
        &mut d,
        f::THREAT_TECHNIQUE_ID,
        col(&|t| t.technique.as_ref().map(|x| x.0.clone())),
    );
    put(
        &mut d,
        f::THREAT_TECHNIQUE_NAME,
        col(&|t| t.technique.as_ref().map(|x| x.1.clone())),
    );
    put(
        &mut d,
        f::THREAT_TECHNIQUE_REFERENCE,
        col(&|t| {
            t.technique
                .as_ref()
                .map(|x| super::mitre::technique_reference(&x.0))
        }),
    );
    put(
        &mut d,
        f::THREAT_SUBTECHNIQUE_ID,
        col(&|t| t.subtechnique.as_ref().map(|x| x.0.clone())),
    );
    put(
        &mut d,
        f::THREAT_SUBTECHNIQUE_NAME,
        col(&|t| t.subtechnique.as_ref().map(|x| x.1.clone())),
    );
    put(
        &mut d,
        f::THREAT_SUBTECHNIQUE_REFERENCE,
        col(&|t| {
            t.subtechnique
                .as_ref()
                .map(|x| super::mitre::technique_reference(&x.0))
        }),
    );

    // Whom and where: the group's own values first, then the latest contributing event.
    for (field, value) in &finding.group {
        if [
            f::USER_NAME,
            f::USER_ID,
            f::USER_EMAIL,
            f::USER_DOMAIN,
            f::SOURCE_IP,
        ]
        .contains(&field.as_str())
        {
            put(&mut d, field, json!(value));
        }
    }
    let copy = |d: &mut Map<String, Value>, field: &str| {
        if doc::raw_at(&Value::Object(d.clone()), field).is_none() {
            if let Some(v) = doc::raw_at(ctx, field) {
                if !v.is_object() || field == f::SOURCE_GEO_LOCATION {
                    put(d, field, v.clone());
                }
            }
        }
    };
    if user_scoped(rule) {
        for field in [f::USER_NAME, f::USER_ID, f::USER_EMAIL, f::USER_DOMAIN] {
            copy(&mut d, field);
        }
    }
    let source_scoped = !matches!(rule.kind, Kind::Threshold(_))
        || rule.group_fields().iter().any(|g| g.starts_with("source."))
        || user_scoped(rule);
    if source_scoped {
        for field in [
            f::SOURCE_IP,
            f::SOURCE_GEO_LOCATION,
            f::SOURCE_GEO_COUNTRY_ISO_CODE,
            f::SOURCE_GEO_COUNTRY_NAME,
            f::SOURCE_GEO_CITY_NAME,
            f::SOURCE_AS_NUMBER,
            f::SOURCE_AS_ORGANIZATION_NAME,
            f::USER_AGENT_ORIGINAL,
        ] {
            copy(&mut d, field);
        }
    }
    if let Some(u) = doc::first(&Value::Object(d.clone()), f::USER_NAME).cloned() {
        put(&mut d, f::RELATED_USER, json!([u]));
    }
    if let Some(ip) = doc::first(&Value::Object(d.clone()), f::SOURCE_IP).cloned() {
        put(&mut d, f::RELATED_IP, json!([ip]));
    }

    put(&mut d, f::ENTITY_FIELD, json!(rule.entity));
    put(&mut d, f::ENTITY_VALUE, json!(finding.entity));
    let group: Vec<String> = finding
        .group
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    put(&mut d, f::GROUP, json!(group));
    put(&mut d, f::RULE_TYPE, json!(rule.kind.name()));
    put(&mut d, f::WINDOW_START, json!(doc::fmt_time(window.start)));
    put(&mut d, f::WINDOW_END, json!(doc::fmt_time(window.end)));
    put(&mut d, f::EVENT_COUNT, json!(finding.event_count));
    put(
        &mut d,
        f::EVENT_IDS,
        json!(finding
            .events
            .iter()
            .map(|e| e.id.clone())
            .collect::<Vec<_>>()),
    );
    let mut idx: Vec<String> = finding.events.iter().map(|e| e.index.clone()).collect();
    idx.sort();
    idx.dedup();
    put(&mut d, f::EVENT_INDICES, json!(idx));
    put(&mut d, f::EVIDENCE, Value::Object(finding.evidence.clone()));
    if let Kind::Score(_) = rule.kind {
        if let Some(s) = finding.evidence.get("score") {
            put(&mut d, f::SCORE, s.clone());
        }
        if let Some(t) = finding.evidence.get("top_feature") {
            put(&mut d, f::TOP_FEATURE, t.clone());
        }
    }
    (id, Value::Object(d))
}
