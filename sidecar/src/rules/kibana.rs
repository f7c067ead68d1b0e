//! Kibana detection rules that promote Vigil's alerts into Kibana Security alerts
//! (`kibana/detection-rules.ndjson`, importable with `POST /api/detection_engine/rules/_import`):
//! one query rule per Vigil rule, carrying its MITRE mapping, with severity, risk score and
//! rule name taken from the alert's own fields, plus one catch-all for rules added later.

use serde_json::{json, Value};

use super::schema::Rule;

/// Severity mapping from `event.severity` (Elastic's 21/47/73/99 pairing).
fn severity_mapping() -> Value {
    json!([
        {"field": "event.severity", "operator": "equals", "value": "21", "severity": "low"},
        {"field": "event.severity", "operator": "equals", "value": "47", "severity": "medium"},
        {"field": "event.severity", "operator": "equals", "value": "73", "severity": "high"},
        {"field": "event.severity", "operator": "equals", "value": "99", "severity": "critical"}
    ])
}

fn base(
    rule_id: &str,
    name: &str,
    description: &str,
    query: &str,
    risk: u8,
    severity: &str,
) -> Value {
    json!({
        "rule_id": rule_id,
        "name": name,
        "description": description,
        "type": "query",
        "language": "kuery",
        "query": query,
        "index": ["logs-vigil.alert-*"],
        "risk_score": risk,
        "severity": severity,
        "risk_score_mapping": [{"field": "event.risk_score", "operator": "equals", "value": ""}],
        "severity_mapping": severity_mapping(),
        "rule_name_override": "rule.name",
        "timestamp_override": "event.ingested",
        "interval": "5m",
        "from": "now-6m",
        "max_signals": 1000,
        "enabled": true,
        "immutable": false,
        "version": 1,
        "author": ["vigil"],
        "license": "Apache-2.0",
        "tags": ["vigil", "Data Source: Vigil"],
        "required_fields": [
            {"name": "event.kind", "type": "keyword"},
            {"name": "event.module", "type": "keyword"},
            {"name": "event.severity", "type": "long"},
            {"name": "event.risk_score", "type": "float"},
            {"name": "rule.id", "type": "keyword"},
            {"name": "rule.name", "type": "keyword"}
        ],
    })
}

/// The Kibana rule id promoting alerts of the Vigil rule `id`.
pub fn kibana_rule_id(id: &str) -> String {
    format!("{id}-promotion")
}

pub const CATCH_ALL_ID: &str = "vigil-alert-promotion";

/// The NDJSON file's text: one rule per Vigil rule (sorted by id), then the catch-all.
pub fn detection_rules_ndjson(rules: &[Rule]) -> String {
    let mut sorted: Vec<&Rule> = rules.iter().filter(|r| r.enabled).collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out = String::new();
    for r in &sorted {
        let mut v = base(
            &kibana_rule_id(&r.id),
            &format!("Vigil: {}", r.name),
            &r.description,
            &format!(
                "event.kind:alert and event.module:vigil and rule.id:\"{}\"",
                r.id
            ),
            r.risk_score,
            r.severity.as_str(),
        );
        v["threat"] = json!(r.threat.iter().map(|t| t.kibana()).collect::<Vec<_>>());
        v["tags"]
            .as_array_mut()
            .expect("array")
            .extend(r.tags.iter().map(|t| json!(t)));
        if !r.false_positives.is_empty() {
            v["false_positives"] = json!(r.false_positives);
        }
        if !r.references.is_empty() {
            v["references"] = json!(r.references);
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    let ids: Vec<String> = sorted.iter().map(|r| format!("\"{}\"", r.id)).collect();
    let mut all = base(
        CATCH_ALL_ID,
        "Vigil: alert from a rule without its own promotion",
        "Promotes Vigil alerts whose rule has no dedicated promotion rule (a rule added after this file was generated).",
        &format!(
            "event.kind:alert and event.module:vigil and not rule.id:({})",
            ids.join(" or ")
        ),
        47,
        "medium",
    );
    all["threat"] = json!([]);
    out.push_str(&all.to_string());
    out.push('\n');
    out
}
