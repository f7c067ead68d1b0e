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
