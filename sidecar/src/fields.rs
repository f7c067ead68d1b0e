//! One source of the field names Vigil writes into documents. `mappings/` must declare each
//! of them (a test checks it).

/// Parent of every model's results: `ml.inference.<model>` (the `inference` processor's default).
pub const ML_INFERENCE: &str = "ml.inference";

/// Keys inside a model's result object, as the Elasticsearch `inference` processor writes them.
pub mod result {
    pub const PREDICTED_VALUE: &str = "predicted_value";
    pub const PREDICTION_PROBABILITY: &str = "prediction_probability";
    pub const PREDICTION_SCORE: &str = "prediction_score";
    pub const TOP_CLASSES: &str = "top_classes";
    pub const CLASS_NAME: &str = "class_name";
    pub const CLASS_PROBABILITY: &str = "class_probability";
    pub const CLASS_SCORE: &str = "class_score";
    pub const FEATURE_IMPORTANCE: &str = "feature_importance";
    pub const FEATURE_NAME: &str = "feature_name";
    pub const IMPORTANCE: &str = "importance";
    pub const CLASSES: &str = "classes";
    pub const MODEL_ID: &str = "model_id";
    /// Vigil's additions.
    pub const MODEL_VERSION: &str = "model_version";
    /// Binary: probability of the positive class; multiclass: of the predicted class;
    /// regression: the value. The one number rules and dashboards sort by.
    pub const SCORE: &str = "score";
    pub const FEATURE_VALUE: &str = "feature_value";
    pub const EXPLANATION: &str = "explanation";
    pub const EXPLANATION_METHOD: &str = "method";
    pub const EXPLANATION_APPROXIMATE: &str = "approximate";
    pub const EXPLANATION_SPACE: &str = "space";
    pub const EXPLANATION_EXPECTED_VALUE: &str = "expected_value";
}

/// Marker written on a document whose scoring failed and that was forwarded unscored.
pub const VIGIL_ERROR: &str = "vigil.error";

/// Keys under [`VIGIL_ERROR`].
pub mod error {
    /// The failure's Elasticsearch-style type (`feature_extraction_exception`, ...).
    pub const TYPE: &str = "type";
    /// What went wrong, for people.
    pub const REASON: &str = "reason";
}

/// Stands for the model's name in [`all_written`] paths (`ml.inference.<model>.score`).
pub const MODEL_PLACEHOLDER: &str = "*";

/// Every field Vigil writes into documents, with the Elasticsearch type `mappings/` must give
/// it. In paths under [`ML_INFERENCE`], [`MODEL_PLACEHOLDER`] stands for the model's name.
/// Append new fields here (alerts, risk, ...): the mapping test in `sidecar/tests/es_mappings.rs`
/// indexes documents and checks each entry against the live mapping.
pub fn all_written() -> Vec<(String, &'static str)> {
    use result as r;
    let model = |suffix: &str| format!("{ML_INFERENCE}.{MODEL_PLACEHOLDER}.{suffix}");
    let fi = |leaf: &str| model(&format!("{}.{leaf}", r::FEATURE_IMPORTANCE));
    let mut fields = vec![
        (model(r::PREDICTED_VALUE), "keyword"),
        (model(r::PREDICTION_PROBABILITY), "double"),
        (model(r::PREDICTION_SCORE), "double"),
        (model(r::SCORE), "double"),
        (model(r::MODEL_ID), "keyword"),
        (model(r::MODEL_VERSION), "keyword"),
        (
            model(&format!("{}.{}", r::TOP_CLASSES, r::CLASS_NAME)),
            "keyword",
        ),
        (
            model(&format!("{}.{}", r::TOP_CLASSES, r::CLASS_PROBABILITY)),
            "double",
        ),
        (
            model(&format!("{}.{}", r::TOP_CLASSES, r::CLASS_SCORE)),
            "double",
        ),
        (fi(r::FEATURE_NAME), "keyword"),
        (fi(r::IMPORTANCE), "double"),
        (fi(r::FEATURE_VALUE), "double"),
        (fi(&format!("{}.{}", r::CLASSES, r::CLASS_NAME)), "keyword"),
        (fi(&format!("{}.{}", r::CLASSES, r::IMPORTANCE)), "double"),
        (
            model(&format!("{}.{}", r::EXPLANATION, r::EXPLANATION_METHOD)),
            "keyword",
        ),
        (
            model(&format!(
                "{}.{}",
                r::EXPLANATION,
                r::EXPLANATION_APPROXIMATE
            )),
            "boolean",
        ),
        (
            model(&format!("{}.{}", r::EXPLANATION, r::EXPLANATION_SPACE)),
            "keyword",
        ),
        (
            model(&format!(
                "{}.{}",
                r::EXPLANATION,
                r::EXPLANATION_EXPECTED_VALUE
            )),
            "double",
        ),
    ];
    fields.push((format!("{VIGIL_ERROR}.{}", error::TYPE), "keyword"));
    fields.push((format!("{VIGIL_ERROR}.{}", error::REASON), "text"));
    fields
}

/// `path` from [`all_written`] with the model placeholder replaced by `model`.
pub fn for_model(path: &str, model: &str) -> String {
    let prefix = format!("{ML_INFERENCE}.{MODEL_PLACEHOLDER}.");
    match path.strip_prefix(&prefix) {
        Some(rest) => format!("{ML_INFERENCE}.{model}.{rest}"),
        None => path.to_string(),
    }
}

/// Object fields that must stay `object`, never `nested` (Kibana and KQL query them flat).
pub fn objects_not_nested() -> Vec<String> {
    use result as r;
    vec![
        format!(
            "{ML_INFERENCE}.{MODEL_PLACEHOLDER}.{}",
            r::FEATURE_IMPORTANCE
        ),
        format!(
            "{ML_INFERENCE}.{MODEL_PLACEHOLDER}.{}.{}",
            r::FEATURE_IMPORTANCE,
            r::CLASSES
        ),
        format!("{ML_INFERENCE}.{MODEL_PLACEHOLDER}.{}", r::TOP_CLASSES),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_fields_are_unique_and_model_paths_substitute() {
        let all = all_written();
        let mut names: Vec<&String> = all.iter().map(|(p, _)| p).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "duplicate field in all_written()");
        assert_eq!(
            for_model("ml.inference.*.score", "url-phishing"),
            "ml.inference.url-phishing.score"
        );
        assert_eq!(for_model("vigil.error.type", "m"), "vigil.error.type");
    }
}

/// Fields of the alerts the rule engine writes (ECS where ECS has a name, `vigil.*` otherwise).
/// `mappings/vigil-alerts.json` declares every one of them (a test checks it).
pub mod alert {
    pub const TIMESTAMP: &str = "@timestamp";
    pub const MESSAGE: &str = "message";
    pub const TAGS: &str = "tags";
    pub const EVENT_KIND: &str = "event.kind";
    pub const EVENT_MODULE: &str = "event.module";
    pub const EVENT_DATASET: &str = "event.dataset";
    pub const EVENT_CATEGORY: &str = "event.category";
    pub const EVENT_SEVERITY: &str = "event.severity";
    pub const EVENT_RISK_SCORE: &str = "event.risk_score";
    pub const EVENT_ID: &str = "event.id";
    pub const EVENT_REASON: &str = "event.reason";
    pub const EVENT_START: &str = "event.start";
    pub const EVENT_END: &str = "event.end";
    pub const EVENT_CREATED: &str = "event.created";
    pub const EVENT_INGESTED: &str = "event.ingested";
    pub const RULE_ID: &str = "rule.id";
    pub const RULE_UUID: &str = "rule.uuid";
    pub const RULE_NAME: &str = "rule.name";
    pub const RULE_DESCRIPTION: &str = "rule.description";
    pub const RULE_VERSION: &str = "rule.version";
    pub const RULE_RULESET: &str = "rule.ruleset";
    pub const RULE_CATEGORY: &str = "rule.category";
    pub const RULE_REFERENCE: &str = "rule.reference";
    pub const RULE_AUTHOR: &str = "rule.author";
    pub const THREAT_FRAMEWORK: &str = "threat.framework";
    pub const THREAT_TACTIC_ID: &str = "threat.tactic.id";
    pub const THREAT_TACTIC_NAME: &str = "threat.tactic.name";
    pub const THREAT_TACTIC_REFERENCE: &str = "threat.tactic.reference";
    pub const THREAT_TECHNIQUE_ID: &str = "threat.technique.id";
    pub const THREAT_TECHNIQUE_NAME: &str = "threat.technique.name";
    pub const THREAT_TECHNIQUE_REFERENCE: &str = "threat.technique.reference";
    pub const THREAT_SUBTECHNIQUE_ID: &str = "threat.technique.subtechnique.id";
    pub const THREAT_SUBTECHNIQUE_NAME: &str = "threat.technique.subtechnique.name";
    pub const THREAT_SUBTECHNIQUE_REFERENCE: &str = "threat.technique.subtechnique.reference";
    pub const USER_NAME: &str = "user.name";
    pub const USER_ID: &str = "user.id";
    pub const USER_EMAIL: &str = "user.email";
    pub const USER_DOMAIN: &str = "user.domain";
    pub const SOURCE_IP: &str = "source.ip";
    pub const SOURCE_GEO_LOCATION: &str = "source.geo.location";
    pub const SOURCE_GEO_COUNTRY_ISO_CODE: &str = "source.geo.country_iso_code";
    pub const SOURCE_GEO_COUNTRY_NAME: &str = "source.geo.country_name";
    pub const SOURCE_GEO_CITY_NAME: &str = "source.geo.city_name";
    pub const SOURCE_AS_NUMBER: &str = "source.as.number";
    pub const SOURCE_AS_ORGANIZATION_NAME: &str = "source.as.organization.name";
    pub const USER_AGENT_ORIGINAL: &str = "user_agent.original";
    pub const RELATED_USER: &str = "related.user";
    pub const RELATED_IP: &str = "related.ip";
    pub const ENTITY_FIELD: &str = "vigil.alert.entity.field";
    pub const ENTITY_VALUE: &str = "vigil.alert.entity.value";
    pub const GROUP: &str = "vigil.alert.group";
    pub const RULE_TYPE: &str = "vigil.alert.rule_type";
    pub const WINDOW_START: &str = "vigil.alert.window.start";
    pub const WINDOW_END: &str = "vigil.alert.window.end";
    pub const EVENT_COUNT: &str = "vigil.alert.event_count";
    pub const EVENT_IDS: &str = "vigil.alert.event_ids";
    pub const EVENT_INDICES: &str = "vigil.alert.event_indices";
    pub const EVIDENCE: &str = "vigil.alert.evidence";
    pub const SCORE: &str = "vigil.alert.score";
    pub const TOP_FEATURE: &str = "vigil.alert.top_feature";

    /// Every field above (for the mapping check).
    pub const ALL: &[&str] = &[
        TIMESTAMP,
        MESSAGE,
        TAGS,
        EVENT_KIND,
        EVENT_MODULE,
        EVENT_DATASET,
        EVENT_CATEGORY,
        EVENT_SEVERITY,
        EVENT_RISK_SCORE,
        EVENT_ID,
        EVENT_REASON,
        EVENT_START,
        EVENT_END,
        EVENT_CREATED,
        EVENT_INGESTED,
        RULE_ID,
        RULE_UUID,
        RULE_NAME,
        RULE_DESCRIPTION,
        RULE_VERSION,
        RULE_RULESET,
        RULE_CATEGORY,
        RULE_REFERENCE,
        RULE_AUTHOR,
        THREAT_FRAMEWORK,
        THREAT_TACTIC_ID,
        THREAT_TACTIC_NAME,
        THREAT_TACTIC_REFERENCE,
        THREAT_TECHNIQUE_ID,
        THREAT_TECHNIQUE_NAME,
        THREAT_TECHNIQUE_REFERENCE,
        THREAT_SUBTECHNIQUE_ID,
        THREAT_SUBTECHNIQUE_NAME,
        THREAT_SUBTECHNIQUE_REFERENCE,
        USER_NAME,
        USER_ID,
        USER_EMAIL,
        USER_DOMAIN,
        SOURCE_IP,
        SOURCE_GEO_LOCATION,
        SOURCE_GEO_COUNTRY_ISO_CODE,
        SOURCE_GEO_COUNTRY_NAME,
        SOURCE_GEO_CITY_NAME,
        SOURCE_AS_NUMBER,
        SOURCE_AS_ORGANIZATION_NAME,
        USER_AGENT_ORIGINAL,
        RELATED_USER,
        RELATED_IP,
        ENTITY_FIELD,
        ENTITY_VALUE,
        GROUP,
        RULE_TYPE,
        WINDOW_START,
        WINDOW_END,
        EVENT_COUNT,
        EVENT_IDS,
        EVENT_INDICES,
        EVIDENCE,
        SCORE,
        TOP_FEATURE,
    ];
}

/// Fields of the per-user risk documents, shaped like Elastic's entity risk engine output.
pub mod risk {
    pub const TIMESTAMP: &str = "@timestamp";
    pub const USER_NAME: &str = "user.name";
    pub const ID_FIELD: &str = "user.risk.id_field";
    pub const ID_VALUE: &str = "user.risk.id_value";
    pub const CALCULATED_SCORE: &str = "user.risk.calculated_score";
    pub const CALCULATED_SCORE_NORM: &str = "user.risk.calculated_score_norm";
    pub const CALCULATED_LEVEL: &str = "user.risk.calculated_level";
    pub const CATEGORY_1_SCORE: &str = "user.risk.category_1_score";
    pub const CATEGORY_1_COUNT: &str = "user.risk.category_1_count";
    pub const CATEGORY_2_SCORE: &str = "user.risk.category_2_score";
    pub const CATEGORY_2_COUNT: &str = "user.risk.category_2_count";
    pub const CRITICALITY_LEVEL: &str = "user.risk.criticality_level";
    pub const CRITICALITY_MODIFIER: &str = "user.risk.criticality_modifier";
    pub const NOTES: &str = "user.risk.notes";
    pub const INPUTS_ID: &str = "user.risk.inputs.id";
    pub const INPUTS_INDEX: &str = "user.risk.inputs.index";
    pub const INPUTS_CATEGORY: &str = "user.risk.inputs.category";
    pub const INPUTS_DESCRIPTION: &str = "user.risk.inputs.description";
    pub const INPUTS_RISK_SCORE: &str = "user.risk.inputs.risk_score";
    pub const INPUTS_TIMESTAMP: &str = "user.risk.inputs.timestamp";
    pub const INPUTS_CONTRIBUTION_SCORE: &str = "user.risk.inputs.contribution_score";
    pub const INPUTS_RULE_ID: &str = "user.risk.inputs.rule_id";
    pub const RANGE_START: &str = "vigil.risk.range.start";
    pub const RANGE_END: &str = "vigil.risk.range.end";

    pub const ALL: &[&str] = &[
        TIMESTAMP,
        USER_NAME,
        ID_FIELD,
        ID_VALUE,
        CALCULATED_SCORE,
        CALCULATED_SCORE_NORM,
        CALCULATED_LEVEL,
        CATEGORY_1_SCORE,
        CATEGORY_1_COUNT,
        CATEGORY_2_SCORE,
        CATEGORY_2_COUNT,
        CRITICALITY_LEVEL,
        CRITICALITY_MODIFIER,
        NOTES,
        INPUTS_ID,
        INPUTS_INDEX,
        INPUTS_CATEGORY,
        INPUTS_DESCRIPTION,
        INPUTS_RISK_SCORE,
        INPUTS_TIMESTAMP,
        INPUTS_CONTRIBUTION_SCORE,
        INPUTS_RULE_ID,
        RANGE_START,
        RANGE_END,
    ];
}
