//! Rule files: one TOML file per rule in `rules/`, parsed into raw structs (unknown keys are
//! refused) and validated into [`Rule`]s. Every problem names the file, the rule and the field,
//! and all problems of a directory are reported at once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::doc;
use super::filter::Filter;
use super::mitre::ThreatRef;

/// Alert severities and the risk scores Elastic's prebuilt rules pair with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// `event.severity` and the default `event.risk_score`.
    pub fn number(self) -> u8 {
        match self {
            Severity::Low => 21,
            Severity::Medium => 47,
            Severity::High => 73,
            Severity::Critical => 99,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    name: String,
    description: String,
    #[serde(default = "one")]
    version: u32,
    #[serde(default = "yes")]
    enabled: bool,
    severity: Severity,
    risk_score: Option<u8>,
    #[serde(rename = "type")]
    kind: String,
    interval: Option<String>,
    lookback: Option<String>,
    index: Option<Vec<String>>,
    #[serde(default)]
    include_alerts: bool,
    entity: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    false_positives: Vec<String>,
    reason: Option<String>,
    #[serde(default)]
    filter: Filter,
    suppression: Option<RawSuppression>,
    #[serde(default)]
    threat: Vec<RawThreat>,
    threshold: Option<Threshold>,
    sequence: Option<RawSequence>,
    new_terms: Option<RawNewTerms>,
    geo_velocity: Option<RawGeoVelocity>,
    score: Option<Score>,
    rare: Option<RawRare>,
    #[serde(default)]
    examples: Vec<RawExample>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuppression {
    duration: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThreat {
    tactic: String,
    technique: Option<String>,
}

/// Count (and distinct counts) per group over the window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub group_by: Vec<String>,
    pub min_count: u64,
    #[serde(default)]
    pub cardinality: Vec<Cardinality>,
    /// The busiest value of `field` may have at most `max` events (credential stuffing: many
    /// users, each tried once or twice).
    pub max_per_value: Option<PerValue>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cardinality {
    pub field: String,
    pub min: Option<u64>,
    pub max: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerValue {
    pub field: String,
    pub max: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSequence {
    by: Vec<String>,
    maxspan: String,
    steps: Vec<RawStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    #[serde(default)]
    filter: Filter,
    #[serde(default = "one")]
    runs: u32,
    #[serde(default)]
    differ_from_previous: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Sequence {
    pub by: Vec<String>,
    pub maxspan: TimeDelta,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub filter: Filter,
    pub runs: u32,
    /// Fields whose value must differ from every event of the previous step (e.g. a sign-in
    /// from another IP than the password reset).
    pub differ_from_previous: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNewTerms {
    by: Vec<String>,
    #[serde(default)]
    fields: Vec<String>,
    history: String,
    seen_before: Option<String>,
    require_history: Option<bool>,
    common_entities: Option<u64>,
    #[serde(default)]
    all_fields_new: bool,
    min_history: Option<u64>,
}

/// A combination of `fields` first seen for the entity (`by`) in the window, against
/// `[window start − history, window start)`. With no `fields`, the entity itself is the term
/// (dormant accounts, with `seen_before`: the entity must have been active before the history).
#[derive(Debug, Clone)]
pub struct NewTerms {
    pub by: Vec<String>,
    pub fields: Vec<String>,
    pub history: TimeDelta,
    pub seen_before: Option<TimeDelta>,
    /// Only entities with some activity in the history can have a new term (a brand-new user
    /// has nothing to compare with). Default: true when there are `fields`.
    pub require_history: bool,
    /// With `require_history`: how many events the entity needs in the history to be judged (a
    /// user back from leave with a morning's sign-ins has no baseline yet; Entra learns for 10
    /// sign-ins). Default 1.
    pub min_history: u64,
    /// A value (of the one field) that at least this many distinct entities used in the
    /// history is common in the organisation and new for nobody: another office's country,
    /// a big local ISP (Entra's travel detections ignore locations common in the tenant).
    pub common_entities: Option<u64>,
    /// With several fields: new only when *every* value is new for the entity (an unfamiliar
    /// client from an unfamiliar network), not merely their combination (a browser update at
    /// home, or the usual laptop in a hotel, is not).
    pub all_fields_new: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGeoVelocity {
    location_field: Option<String>,
    max_speed_kmh: Option<f64>,
    min_distance_km: Option<f64>,
    previous_within: Option<String>,
    #[serde(default)]
    allow_cidrs: Vec<String>,
    #[serde(default)]
    allow_asns: Vec<u64>,
    allow_field: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GeoVelocity {
    pub location_field: String,
    pub max_speed_kmh: f64,
    pub min_distance_km: f64,
    pub previous_within: TimeDelta,
    pub allow_cidrs: Vec<doc::Cidr>,
    pub allow_asns: Vec<u64>,
    /// A boolean field; `true` marks known VPN/proxy egress, which is neither judged nor
    /// remembered as the previous location.
    pub allow_field: Option<String>,
}

/// Documents whose ingest-time model score crosses `min_score`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Score {
    pub model: String,
    pub min_score: f64,
}

impl Score {
    pub fn score_field(&self) -> String {
        format!(
            "{}.{}.{}",
            crate::fields::ML_INFERENCE,
            self.model,
            crate::fields::result::SCORE
        )
    }
    pub fn inference_field(&self) -> String {
        format!("{}.{}", crate::fields::ML_INFERENCE, self.model)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRare {
    field: String,
    baseline: String,
    max_fraction: f64,
    #[serde(default = "twenty")]
    min_baseline: u64,
    common_entities: Option<u64>,
}
fn twenty() -> u64 {
    20
}

/// A value of `field` that makes up at most `max_fraction` of the entity's baseline events
/// (`[window start − baseline, window start)`), for entities with at least `min_baseline` events.
#[derive(Debug, Clone)]
pub struct Rare {
    pub field: String,
    pub baseline: TimeDelta,
    pub max_fraction: f64,
    pub min_baseline: u64,
    /// A value that at least this many distinct entities used in the baseline is common in
    /// the organisation and rare for nobody (as [`NewTerms::common_entities`]).
    pub common_entities: Option<u64>,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Threshold(Threshold),
    Sequence(Sequence),
    NewTerms(NewTerms),
    GeoVelocity(GeoVelocity),
    Score(Score),
    Rare(Rare),
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Threshold(_) => "threshold",
            Kind::Sequence(_) => "sequence",
            Kind::NewTerms(_) => "new_terms",
            Kind::GeoVelocity(_) => "geo_velocity",
            Kind::Score(_) => "score",
            Kind::Rare(_) => "rare",
        }
    }
}

pub const KINDS: &[&str] = &[
    "threshold",
    "sequence",
    "new_terms",
    "geo_velocity",
    "score",
    "rare",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExample {
    name: String,
    now: String,
    events: String,
    alerts: Vec<String>,
}

/// Example events and the alerts (entity values) the rule must produce from them, exactly.
#[derive(Debug, Clone)]
pub struct Example {
    pub name: String,
    pub now: DateTime<Utc>,
    /// Expanded events (`_repeat`/`_every` unrolled, `now-…` times resolved, `_id` assigned).
    pub events: Vec<(String, Value)>,
    pub alerts: Vec<String>,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub name: String,
    pub description: String,
    pub version: u32,
    pub enabled: bool,
    pub severity: Severity,
    pub risk_score: u8,
    pub interval: TimeDelta,
    pub lookback: TimeDelta,
    /// Index patterns to search instead of `[rules] events_index`.
    pub index: Option<Vec<String>>,
    /// Also read Vigil's (and others') alerts (`event.kind: alert`), for higher-order rules.
    pub include_alerts: bool,
    /// The field naming whom the alert is about (risk is summed per value of it).
    pub entity: String,
    pub tags: Vec<String>,
    pub references: Vec<String>,
    pub false_positives: Vec<String>,
    pub reason: Option<String>,
    pub filter: Filter,
    pub suppression: TimeDelta,
    pub threat: Vec<ThreatRef>,
    pub kind: Kind,
    pub examples: Vec<Example>,
    pub file: PathBuf,
}

impl Rule {
    /// The fields that group a finding (the alert's identity together with the rule and window).
    pub fn group_fields(&self) -> Vec<String> {
        match &self.kind {
            Kind::Threshold(t) => t.group_by.clone(),
            Kind::Sequence(s) => s.by.clone(),
            Kind::NewTerms(n) => n.by.clone(),
            _ => vec![self.entity.clone()],
        }
    }
}

/// One problem in one rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub file: PathBuf,
    pub rule: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(r) = &self.rule {
            write!(f, ": rule [{r}]")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field [{field}]")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{} invalid rule(s):\n  - {}", errors.len(), errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  - "))]
pub struct RuleSetError {
    pub errors: Vec<RuleError>,
}

/// Parses `"30s"`, `"5m"`, `"1h"`, `"14d"` (a whole number and one unit).
pub fn parse_duration(s: &str) -> Result<TimeDelta, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("[{s}] needs a unit (s, m, h, d)"))?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("[{s}] is not a duration like 30s, 5m, 1h, 14d"))?;
    let d = match unit {
        "s" => TimeDelta::try_seconds(n),
        "m" => TimeDelta::try_minutes(n),
        "h" => TimeDelta::try_hours(n),
        "d" => TimeDelta::try_days(n),
        _ => return Err(format!("[{s}]: unit must be s, m, h or d")),
    }
    .ok_or_else(|| format!("[{s}] is too long"))?;
    if d <= TimeDelta::zero() {
        return Err(format!("[{s}] must be positive"));
    }
    Ok(d)
}

/// Formats a duration in the largest whole unit (`90s` → `90s`, `600s` → `10m`).
pub fn fmt_duration(d: TimeDelta) -> String {
    let s = d.num_seconds();
    if s % 86_400 == 0 {
        format!("{}d", s / 86_400)
    } else if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Defaults a rule falls back to when it does not set them (`[rules]` in the configuration).
#[derive(Debug, Clone)]
pub struct RuleDefaults {
    pub interval: TimeDelta,
    pub lookback: TimeDelta,
}

impl Default for RuleDefaults {
    fn default() -> Self {
        RuleDefaults {
            interval: TimeDelta::minutes(5),
            lookback: TimeDelta::minutes(10),
        }
    }
}

/// Loads and validates every `*.toml` rule in `dir` (sorted by file name).
pub fn load_dir(dir: &Path, defaults: &RuleDefaults) -> Result<Vec<Rule>, RuleSetError> {
    let fail = |message: String| RuleSetError {
        errors: vec![RuleError {
            file: dir.to_path_buf(),
            rule: None,
            field: None,
            message,
        }],
    };
    let entries = std::fs::read_dir(dir).map_err(|e| fail(format!("cannot read: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(fail("no *.toml rule files".into()));
    }
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => match parse_rule(&text, &file, defaults) {
                Ok(r) => rules.push(r),
                Err(e) => errors.extend(e),
            },
            Err(e) => errors.push(RuleError {
                file: file.clone(),
                rule: None,
                field: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    let mut seen = std::collections::BTreeMap::new();
    for r in &rules {
        if let Some(other) = seen.insert(r.id.clone(), r.file.clone()) {
            errors.push(RuleError {
                file: r.file.clone(),
                rule: Some(r.id.clone()),
                field: Some("id".into()),
                message: format!("duplicate id, also used by {}", other.display()),
            });
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(RuleSetError { errors })
    }
}

/// Parses and validates one rule file's text.
pub fn parse_rule(
    text: &str,
    file: &Path,
    defaults: &RuleDefaults,
) -> Result<Rule, Vec<RuleError>> {
    let err = |rule: Option<&str>, field: Option<&str>, message: String| RuleError {
        file: file.to_path_buf(),
        rule: rule.map(str::to_string),
        field: field.map(str::to_string),
        message,
    };
    // The id first, so even a rule that fails to deserialize is named.
    let table: toml::Table =
        toml::from_str(text).map_err(|e| vec![err(None, None, format!("not valid TOML: {e}"))])?;
    let id_hint = table.get("id").and_then(|v| v.as_str()).map(str::to_string);
    let raw: RawRule = toml::from_str(text).map_err(|e| {
        let field = unknown_or_missing_field(&e.to_string());
        vec![err(
            id_hint.as_deref(),
            field.as_deref(),
            e.message().to_string(),
        )]
    })?;
    let id = raw.id.clone();
    let mut errors: Vec<RuleError> = Vec::new();
    let mut bad = |field: &str, message: String| errors.push(err(Some(&id), Some(field), message));

    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        bad(
            "id",
            "must be non-empty lowercase letters, digits, '-' or '_'".into(),
        );
    }
    if raw.name.trim().is_empty() {
        bad("name", "must not be empty".into());
    }
    if raw.description.trim().is_empty() {
        bad("description", "must not be empty".into());
    }
    if raw.risk_score.is_some_and(|r| r > 100) {
        bad("risk_score", "must be 0..=100".into());
    }
    let mut duration = |field: &str, v: Option<&str>, default: TimeDelta| match v {
        None => default,
        Some(s) => parse_duration(s).unwrap_or_else(|m| {
            bad(field, m);
            default
        }),
    };
    let interval = duration("interval", raw.interval.as_deref(), defaults.interval);
    let lookback = duration("lookback", raw.lookback.as_deref(), defaults.lookback);
    let suppression = duration(
        "suppression.duration",
        raw.suppression.as_ref().map(|s| s.duration.as_str()),
        lookback,
    );
    let entity = raw
        .entity
        .clone()
        .unwrap_or_else(|| "user.name".to_string());
    let mut errors_now = std::mem::take(&mut errors);
    let mut bad =
        |field: &str, message: String| errors_now.push(err(Some(&id), Some(field), message));
    if lookback < interval {
        bad(
            "lookback",
            format!(
                "{} is shorter than the interval {}: events would be missed",
                fmt_duration(lookback),
                fmt_duration(interval)
            ),
        );
    }
    if let Some(idx) = &raw.index {
        if idx.is_empty() || idx.iter().any(|i| i.trim().is_empty()) {
            bad("index", "must list non-empty index patterns".into());
        }
    }
    for (field, message) in raw.filter.check("filter") {
        bad(&field, message);
    }
    let mut threat = Vec::new();
    for (i, t) in raw.threat.iter().enumerate() {
        match ThreatRef::resolve(&t.tactic, t.technique.as_deref()) {
            Ok(r) => threat.push(r),
            Err(m) => bad(&format!("threat[{i}]"), m),
        }
    }
    if threat.is_empty() {
        bad(
            "threat",
            "at least one MITRE ATT&CK tactic is required".into(),
        );
    }

    // Exactly one type table, the one `type` names.
    let present: Vec<&str> = [
        ("threshold", raw.threshold.is_some()),
        ("sequence", raw.sequence.is_some()),
        ("new_terms", raw.new_terms.is_some()),
        ("geo_velocity", raw.geo_velocity.is_some()),
        ("score", raw.score.is_some()),
        ("rare", raw.rare.is_some()),
    ]
    .into_iter()
    .filter(|(_, p)| *p)
    .map(|(n, _)| n)
    .collect();
    if !KINDS.contains(&raw.kind.as_str()) {
        bad(
            "type",
            format!("[{}] must be one of {}", raw.kind, KINDS.join(", ")),
        );
    }
    for other in present.iter().filter(|n| **n != raw.kind) {
        bad(
            other,
            format!("table [{other}] does not belong to a {} rule", raw.kind),
        );
    }
    let fields_ok = |fs: &[String]| fs.iter().all(|f| !f.trim().is_empty());
    let kind = match raw.kind.as_str() {
        "threshold" => raw.threshold.clone().map(|t| {
            if t.group_by.is_empty() || t.group_by.len() > 3 || !fields_ok(&t.group_by) {
                bad("threshold.group_by", "needs 1 to 3 field names".into());
            }
            if !t.group_by.contains(&entity) {
                bad("threshold.group_by", format!("must include the entity field [{entity}]"));
            }
            if t.min_count == 0 {
                bad("threshold.min_count", "must be at least 1".into());
            }
            for (i, c) in t.cardinality.iter().enumerate() {
                if c.min.is_none() && c.max.is_none() {
                    bad(&format!("threshold.cardinality[{i}]"), "needs min or max".into());
                }
                if c.field.trim().is_empty() {
                    bad(&format!("threshold.cardinality[{i}].field"), "empty field name".into());
                }
            }
            Kind::Threshold(t)
        }),
        "sequence" => raw.sequence.as_ref().map(|s| {
            if s.by.is_empty() || !fields_ok(&s.by) {
                bad("sequence.by", "needs at least one field".into());
            }
            if !s.by.contains(&entity) {
                bad("sequence.by", format!("must include the entity field [{entity}]"));
            }
            let maxspan = parse_duration(&s.maxspan).unwrap_or_else(|m| {
                bad("sequence.maxspan", m);
                TimeDelta::minutes(1)
            });
            if !(2..=5).contains(&s.steps.len()) {
                bad("sequence.steps", "needs 2 to 5 steps".into());
            }
            let mut steps = Vec::new();
            for (i, st) in s.steps.iter().enumerate() {
                let at = format!("sequence.steps[{i}]");
                if st.filter.is_empty() {
                    bad(&format!("{at}.filter"), "a step needs a filter".into());
                }
                for (f, m) in st.filter.check(&format!("{at}.filter")) {
                    bad(&f, m);
                }
                if st.runs == 0 || st.runs > 1000 {
                    bad(&format!("{at}.runs"), "must be 1..=1000".into());
                }
                if i == 0 && !st.differ_from_previous.is_empty() {
                    bad(
                        &format!("{at}.differ_from_previous"),
                        "the first step has no previous step".into(),
                    );
                }
                steps.push(Step {
                    name: st.name.clone(),
                    filter: st.filter.clone(),
                    runs: st.runs,
                    differ_from_previous: st.differ_from_previous.clone(),
                });
            }
            Kind::Sequence(Sequence {
                by: s.by.clone(),
                maxspan,
                steps,
            })
        }),
        "new_terms" => raw.new_terms.as_ref().map(|n| {
            if n.by.is_empty() || n.by.len() + n.fields.len() > 4 || !fields_ok(&n.by) {
                bad("new_terms.by", "needs 1 to 3 fields (4 with fields in all)".into());
            }
            if !n.by.contains(&entity) {
                bad("new_terms.by", format!("must include the entity field [{entity}]"));
            }
            if !fields_ok(&n.fields) {
                bad("new_terms.fields", "empty field name".into());
            }
            let history = parse_duration(&n.history).unwrap_or_else(|m| {
                bad("new_terms.history", m);
                TimeDelta::days(1)
            });
            let seen_before = n.seen_before.as_ref().map(|s| {
                let d = parse_duration(s).unwrap_or_else(|m| {
                    bad("new_terms.seen_before", m);
                    history * 2
                });
                if d <= history {
                    bad("new_terms.seen_before", "must be longer than history".into());
                }
                d
            });
            if n.fields.is_empty() && seen_before.is_none() {
                bad(
                    "new_terms.fields",
                    "without fields the entity is the term, which needs seen_before (dormant accounts)"
                        .into(),
                );
            }
            let require_history = n.require_history.unwrap_or(!n.fields.is_empty());
            if require_history && n.fields.is_empty() {
                bad(
                    "new_terms.require_history",
                    "without fields the entity must be absent from the history".into(),
                );
            }
            if n.common_entities.is_some() && n.fields.len() != 1 {
                bad(
                    "new_terms.common_entities",
                    "needs exactly one field (the value that is common)".into(),
                );
            }
            if n.common_entities == Some(0) {
                bad("new_terms.common_entities", "must be at least 1".into());
            }
            if n.min_history.is_some() && !require_history {
                bad(
                    "new_terms.min_history",
                    "only applies with require_history".into(),
                );
            }
            if n.min_history == Some(0) {
                bad("new_terms.min_history", "must be at least 1".into());
            }
            if n.all_fields_new && n.fields.len() < 2 {
                bad("new_terms.all_fields_new", "needs at least two fields".into());
            }
            Kind::NewTerms(NewTerms {
                by: n.by.clone(),
                fields: n.fields.clone(),
                history,
                seen_before,
                require_history,
                min_history: n.min_history.unwrap_or(1),
                common_entities: n.common_entities,
                all_fields_new: n.all_fields_new,
            })
        }),
        "geo_velocity" => raw.geo_velocity.as_ref().map(|g| {
            let mut cidrs = Vec::new();
            for (i, c) in g.allow_cidrs.iter().enumerate() {
                match c.parse() {
                    Ok(c) => cidrs.push(c),
                    Err(m) => bad(&format!("geo_velocity.allow_cidrs[{i}]"), m),
                }
            }
            let max_speed_kmh = g.max_speed_kmh.unwrap_or(800.0);
            let min_distance_km = g.min_distance_km.unwrap_or(500.0);
            if !(max_speed_kmh > 0.0 && max_speed_kmh.is_finite()) {
                bad("geo_velocity.max_speed_kmh", "must be positive".into());
            }
            if !(min_distance_km >= 0.0 && min_distance_km.is_finite()) {
                bad("geo_velocity.min_distance_km", "must be at least 0".into());
            }
            let previous_within = g
                .previous_within
                .as_deref()
                .map(|s| {
                    parse_duration(s).unwrap_or_else(|m| {
                        bad("geo_velocity.previous_within", m);
                        TimeDelta::hours(24)
                    })
                })
                .unwrap_or(TimeDelta::hours(24));
            Kind::GeoVelocity(GeoVelocity {
                location_field: g
                    .location_field
                    .clone()
                    .unwrap_or_else(|| "source.geo.location".into()),
                max_speed_kmh,
                min_distance_km,
                previous_within,
                allow_cidrs: cidrs,
                allow_asns: g.allow_asns.clone(),
                allow_field: g.allow_field.clone(),
            })
        }),
        "score" => raw.score.clone().map(|s| {
            if s.model.trim().is_empty() || s.model.contains(char::is_whitespace) {
                bad("score.model", "must be a model name".into());
            }
            if !s.min_score.is_finite() {
                bad("score.min_score", "must be a number".into());
            }
            Kind::Score(s)
        }),
        "rare" => raw.rare.as_ref().map(|r| {
            if r.field.trim().is_empty() {
                bad("rare.field", "empty field name".into());
            }
            if !(r.max_fraction > 0.0 && r.max_fraction < 1.0) {
                bad("rare.max_fraction", "must be between 0 and 1".into());
            }
            if r.min_baseline == 0 {
                bad("rare.min_baseline", "must be at least 1".into());
            }
            let baseline = parse_duration(&r.baseline).unwrap_or_else(|m| {
                bad("rare.baseline", m);
                TimeDelta::days(1)
            });
            if r.common_entities == Some(0) {
                bad("rare.common_entities", "must be at least 1".into());
            }
            Kind::Rare(Rare {
                field: r.field.clone(),
                baseline,
                max_fraction: r.max_fraction,
                min_baseline: r.min_baseline,
                common_entities: r.common_entities,
            })
        }),
        _ => None,
    };
    if kind.is_none() && KINDS.contains(&raw.kind.as_str()) {
        bad(
            &raw.kind,
            format!("a {} rule needs a [{}] table", raw.kind, raw.kind),
        );
    }

    let mut examples = Vec::new();
    for (i, ex) in raw.examples.iter().enumerate() {
        let at = format!("examples[{i}]");
        match expand_example(ex) {
            Ok(e) => examples.push(e),
            Err(m) => bad(&at, format!("({}) {m}", ex.name)),
        }
    }
    if raw.enabled {
        if !examples.iter().any(|e| !e.alerts.is_empty()) {
            bad(
                "examples",
                "needs an example that fires (non-empty alerts)".into(),
            );
        }
        if !examples.iter().any(|e| e.alerts.is_empty()) {
            bad(
                "examples",
                "needs a near-miss example that stays quiet (alerts = [])".into(),
            );
        }
    }
    if let Some(t) = &raw.reason {
        if t.trim().is_empty() {
            bad("reason", "must not be empty".into());
        }
    }
    if !errors_now.is_empty() {
        return Err(errors_now);
    }
    Ok(Rule {
        id,
        name: raw.name,
        description: raw.description,
        version: raw.version,
        enabled: raw.enabled,
        severity: raw.severity,
        risk_score: raw.risk_score.unwrap_or(raw.severity.number()),
        interval,
        lookback,
        index: raw.index,
        include_alerts: raw.include_alerts,
        entity,
        tags: raw.tags,
        references: raw.references,
        false_positives: raw.false_positives,
        reason: raw.reason,
        filter: raw.filter,
        suppression,
        threat,
        kind: kind.expect("no errors means a kind"),
        examples,
        file: file.to_path_buf(),
    })
}

/// Pulls the key out of serde's "unknown field `x`" / "missing field `x`" messages.
fn unknown_or_missing_field(msg: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `", "unknown variant `"] {
        if let Some(rest) = msg.split(marker).nth(1) {
            return rest.split('`').next().map(str::to_string);
        }
    }
    None
}

/// Unrolls an example's NDJSON: `_repeat` (copies, `{i}` in the line = copy number), `_every`
/// (spacing), `now-…` timestamps, and `_id` (generated when absent).
fn expand_example(ex: &RawExample) -> Result<Example, String> {
    let now = doc::parse_time(&Value::String(ex.now.clone()))
        .ok_or_else(|| format!("now [{}] is not an RFC 3339 time", ex.now))?;
    let mut events = Vec::new();
    for (line_no, line) in ex.events.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut v: Value =
            serde_json::from_str(line).map_err(|e| format!("events line {}: {e}", line_no + 1))?;
        // `{i}` in a repeated line becomes the copy's number (distinct users, IPs, ...).
        let templated = line.contains("{i}");
        let obj = v
            .as_object_mut()
            .ok_or_else(|| format!("events line {}: not an object", line_no + 1))?;
        let repeat = match obj.remove("_repeat") {
            None => 1,
            Some(r) => r
                .as_u64()
                .filter(|r| (1..=10_000).contains(r))
                .ok_or_else(|| format!("events line {}: _repeat must be 1..=10000", line_no + 1))?,
        };
        let every = match obj.remove("_every") {
            None => TimeDelta::seconds(1),
            Some(Value::String(s)) => parse_duration(&s)
                .map_err(|m| format!("events line {}: _every {m}", line_no + 1))?,
            Some(_) => {
                return Err(format!(
                    "events line {}: _every must be a string",
                    line_no + 1
                ))
            }
        };
        let id = obj
            .remove("_id")
            .and_then(|v| v.as_str().map(str::to_string));
        let ts_raw = obj
            .get("@timestamp")
            .cloned()
            .ok_or_else(|| format!("events line {}: @timestamp is required", line_no + 1))?;
        let start = match &ts_raw {
            Value::String(s) if s.starts_with("now") => {
                let rest = &s[3..];
                if rest.is_empty() {
                    now
                } else if let Some(d) = rest.strip_prefix('-') {
                    now - parse_duration(d)
                        .map_err(|m| format!("events line {}: {m}", line_no + 1))?
                } else if let Some(d) = rest.strip_prefix('+') {
                    now + parse_duration(d)
                        .map_err(|m| format!("events line {}: {m}", line_no + 1))?
                } else {
                    return Err(format!(
                        "events line {}: bad relative time [{s}]",
                        line_no + 1
                    ));
                }
            }
            other => doc::parse_time(other)
                .ok_or_else(|| format!("events line {}: bad @timestamp", line_no + 1))?,
        };
        for k in 0..repeat {
            let mut e = if templated {
                serde_json::from_str(&line.replace("{i}", &k.to_string()))
                    .map_err(|e| format!("events line {}: {e}", line_no + 1))?
            } else {
                v.clone()
            };
            if let Some(o) = e.as_object_mut() {
                for key in ["_repeat", "_every", "_id"] {
                    o.remove(key);
                }
            }
            let ts = start + every * (k as i32);
            e["@timestamp"] = Value::String(doc::fmt_time(ts));
            let eid = match (&id, repeat) {
                (Some(i), 1) => i.clone(),
                (Some(i), _) => format!("{i}-{k}"),
                (None, _) => format!("ex-{}-{k}", line_no + 1),
            };
            events.push((eid, e));
        }
    }
    let mut ids = BTreeSet::new();
    for (id, _) in &events {
        if !ids.insert(id) {
            return Err(format!("duplicate event _id [{id}]"));
        }
    }
    Ok(Example {
        name: ex.name.clone(),
        now,
        events,
        alerts: ex.alerts.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = "t-brute"
name = "Brute force"
description = "Many failures for one user"
type = "threshold"
severity = "medium"
interval = "5m"
lookback = "10m"
[filter]
all = { "event.outcome" = "failure" }
[threshold]
group_by = ["user.name"]
min_count = 3
[[threat]]
tactic = "TA0006"
technique = "T1110.001"
[[examples]]
name = "attack"
now = "2026-05-01T12:00:00Z"
alerts = ["alice"]
events = '''
{"@timestamp": "now-5m", "_repeat": 3, "_every": "10s", "user": {"name": "alice"}, "event": {"outcome": "failure"}}
'''
[[examples]]
name = "typo"
now = "2026-05-01T12:00:00Z"
alerts = []
events = '''
{"@timestamp": "now-5m", "_repeat": 2, "user": {"name": "bob"}, "event": {"outcome": "failure"}}
'''
"#;

    #[test]
    fn parses_and_expands_examples() {
        let r = parse_rule(GOOD, Path::new("r.toml"), &RuleDefaults::default()).unwrap();
        assert_eq!(r.risk_score, 47);
        assert_eq!(r.examples[0].events.len(), 3);
        assert_eq!(
            r.examples[0].events[1].1["@timestamp"],
            "2026-05-01T11:55:10.000Z"
        );
        assert_eq!(r.examples[0].events[1].0, "ex-1-1");
    }

    #[test]
    fn errors_name_file_rule_and_field() {
        let bad = GOOD
            .replace("min_count = 3", "min_count = 0\nmin_cont = 2")
            .replace("interval = \"5m\"", "interval = \"5 minutes\"");
        let errs =
            parse_rule(&bad, Path::new("rules/x.toml"), &RuleDefaults::default()).unwrap_err();
        let text = errs[0].to_string();
        assert!(
            text.starts_with("rules/x.toml: rule [t-brute]: field [min_cont]"),
            "{text}"
        );
        let bad = GOOD
            .replace("min_count = 3", "min_count = 0")
            .replace("interval = \"5m\"", "interval = \"5 minutes\"");
        let errs =
            parse_rule(&bad, Path::new("rules/x.toml"), &RuleDefaults::default()).unwrap_err();
        let fields: Vec<_> = errs.iter().filter_map(|e| e.field.clone()).collect();
        assert!(
            fields.contains(&"threshold.min_count".to_string()),
            "{errs:?}"
        );
        assert!(fields.contains(&"interval".to_string()), "{errs:?}");
    }

    #[test]
    fn type_and_table_must_agree_and_examples_are_required() {
        let bad = GOOD.replace("type = \"threshold\"", "type = \"sequence\"");
        let errs = parse_rule(&bad, Path::new("x.toml"), &RuleDefaults::default()).unwrap_err();
        let fields: Vec<_> = errs.iter().filter_map(|e| e.field.clone()).collect();
        assert!(fields.contains(&"threshold".to_string()), "{errs:?}");
        assert!(fields.contains(&"sequence".to_string()), "{errs:?}");
        let cut = GOOD.split("[[examples]]\nname = \"typo\"").next().unwrap();
        let errs = parse_rule(cut, Path::new("x.toml"), &RuleDefaults::default()).unwrap_err();
        assert!(errs[0].message.contains("near-miss"), "{errs:?}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), TimeDelta::seconds(90));
        assert_eq!(parse_duration("14d").unwrap(), TimeDelta::days(14));
        assert!(parse_duration("0m").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5w").is_err());
        assert_eq!(fmt_duration(TimeDelta::minutes(10)), "10m");
    }
}
