//! `manifest.json`: the serde shape of a bundle's description (see `docs/bundle-format.md`).
//!
//! These are the raw structs; [`crate::bundle::load`] turns them into a checked [`crate::bundle::Bundle`].

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    pub task: Task,
    pub model: ModelFile,
    #[serde(default)]
    pub classes: Vec<String>,
    #[serde(default)]
    pub positive_class: Option<String>,
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    #[serde(default)]
    pub target_field: Option<String>,
    #[serde(default)]
    pub explanation: ExplanationSettings,
    pub features: Vec<FeatureSpec>,
    #[serde(default)]
    pub reference_sample: Option<String>,
    #[serde(default)]
    pub golden: Option<GoldenRef>,
}

fn default_threshold() -> f64 {
    0.5
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Binary,
    Multiclass,
    Regression,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub file: String,
    pub sha256: String,
    pub output: String,
    #[serde(default)]
    pub input: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExplanationMethod {
    #[default]
    Auto,
    TreeShap,
    Linear,
    Sampling,
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExplanationSettings {
    #[serde(default)]
    pub method: ExplanationMethod,
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    #[serde(default)]
    pub min_score: f64,
    #[serde(default = "default_budget")]
    pub budget: usize,
    #[serde(default)]
    pub covers: Option<String>,
}

impl Default for ExplanationSettings {
    fn default() -> Self {
        ExplanationSettings {
            method: ExplanationMethod::Auto,
            top_k: default_top_k(),
            min_score: 0.0,
            budget: default_budget(),
            covers: None,
        }
    }
}

fn default_top_k() -> usize {
    5
}

fn default_budget() -> usize {
    16
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenRef {
    pub file: String,
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_tolerance() -> f64 {
    1e-5
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    pub name: String,
    pub source: Sources,
    pub transform: TransformSpec,
    /// `null` means NaN (the model's missing branch).
    #[serde(default)]
    pub missing: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Sources {
    One(String),
    Many(Vec<String>),
}

impl Sources {
    pub fn paths(&self) -> &[String] {
        match self {
            Sources::One(p) => std::slice::from_ref(p),
            Sources::Many(ps) => ps,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UrlPart {
    #[default]
    Whole,
    Host,
    Path,
    Query,
    Scheme,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformSpec {
    Numeric,
    Boolean,
    Categorical {
        vocabulary: Vec<String>,
        #[serde(default)]
        unknown: Option<f64>,
    },
    Length {
        #[serde(default)]
        part: UrlPart,
    },
    DigitRatio {
        #[serde(default)]
        part: UrlPart,
    },
    Entropy {
        #[serde(default)]
        part: UrlPart,
    },
    CharCount {
        chars: String,
        #[serde(default)]
        part: UrlPart,
    },
    TokenPresence {
        tokens: Vec<String>,
        #[serde(default)]
        part: UrlPart,
    },
    TokenCount {
        tokens: Vec<String>,
        #[serde(default)]
        part: UrlPart,
    },
    IsIp {
        #[serde(default)]
        part: UrlPart,
    },
    LabelCount {
        #[serde(default)]
        part: UrlPart,
    },
    SegmentCount {
        #[serde(default)]
        part: UrlPart,
    },
    ParamCount {
        #[serde(default)]
        part: UrlPart,
    },
    Equals {
        value: String,
        #[serde(default)]
        part: UrlPart,
    },
    SuffixIn {
        values: Vec<String>,
        #[serde(default)]
        part: UrlPart,
    },
    InSet {
        #[serde(default)]
        values: Vec<String>,
        #[serde(default)]
        values_file: Option<String>,
        #[serde(default)]
        part: UrlPart,
    },
    HourOfDay,
    DayOfWeek,
    IsWeekend,
    FirstSeen(BehaviourSpec),
    Count(BehaviourSpec),
    DistinctCount(BehaviourSpec),
    PairCount(BehaviourSpec),
    SinceLast(BehaviourSpec),
    VelocityKmh(BehaviourSpec),
}

/// Parameters of a behavioural (stateful) feature.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviourSpec {
    pub entity: String,
    #[serde(default)]
    pub window_seconds: Option<u64>,
    #[serde(default)]
    pub when: Option<WhenSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WhenSpec {
    pub field: String,
    pub equals: serde_json::Value,
}
