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
