//! Feature extraction: a JSON document becomes one row of the model's input.
//!
//! A [`FeatureExtractor`] is compiled once per bundle from its manifest; extraction is a pure
//! function of the document. Wrong types are per-document errors naming the feature and the path.

pub mod behaviour;
mod scan;
mod source;
mod transform;
pub mod warm;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

pub use scan::{read_batch, BatchDoc, Scanned, Scanner, Slot, View};
pub use source::{describe, first_value, lookup, lookup_whole, Fields};
pub use transform::{timestamp, url_part, Rejection, TextOp, TimeOp, Transform};

use crate::bundle::manifest::{FeatureSpec, TransformSpec};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum FeatureError {
    #[error("feature [{feature}] expects {expected} at [{path}], found {found}")]
    WrongType {
        feature: String,
        path: String,
        expected: &'static str,
        found: String,
    },
    #[error("feature [{feature}] at [{path}]: {reason}")]
    Invalid {
        feature: String,
        path: String,
        reason: String,
    },
    #[error("document must be a JSON object, found {found}")]
    NotAnObject { found: String },
}

#[derive(Debug, Clone)]
pub struct Feature {
    pub name: String,
    pub sources: Vec<String>,
    pub transform: Transform,
    pub missing: f32,
}

#[derive(Debug, Clone)]
pub struct FeatureExtractor {
    features: Vec<Feature>,
    /// Reads the source fields straight from a document's bytes; `None` when a feature is
    /// behavioural (the entity state needs the whole document) or no scanner can be built.
    scanner: Option<Scanner>,
    /// Per feature, the index of each of its sources in the scanner's paths.
    scanned_sources: Vec<Vec<usize>>,
}

impl FeatureExtractor {
    /// Compiles the manifest's feature list; `dir` is the bundle folder (for `values_file`).
    pub fn compile(specs: &[FeatureSpec], dir: &Path) -> Result<Self, String> {
        let mut features = Vec::with_capacity(specs.len());
        let mut errors = Vec::new();
        let mut names = HashSet::new();
        for spec in specs {
            if !names.insert(spec.name.as_str()) {
                errors.push(format!("feature [{}] is declared twice", spec.name));
            }
            if spec.source.paths().is_empty() || spec.source.paths().iter().any(String::is_empty) {
                errors.push(format!("feature [{}] has an empty source", spec.name));
            }
            match compile_transform(&spec.transform, spec.source.paths(), dir) {
                Ok(transform) => features.push(Feature {
                    name: spec.name.clone(),
                    sources: spec.source.paths().to_vec(),
                    transform,
                    missing: spec.missing.map_or(f32::NAN, |m| m as f32),
                }),
                Err(e) => errors.push(format!("feature [{}]: {e}", spec.name)),
            }
        }
        if errors.is_empty() {
            let behavioural = features
                .iter()
                .any(|f| matches!(f.transform, Transform::Behaviour(_)));
            let scanner = Scanner::new(
                features
                    .iter()
                    .flat_map(|f| f.sources.iter().map(String::as_str)),
            )
            .filter(|_| !behavioural);
            let scanned_sources = match &scanner {
                None => Vec::new(),
                Some(s) => features
                    .iter()
                    .map(|f| {
                        f.sources
                            .iter()
                            .map(|src| s.paths().iter().position(|p| p == src).expect("added"))
                            .collect()
                    })
                    .collect(),
            };
            Ok(FeatureExtractor {
                features,
                scanner,
                scanned_sources,
            })
        } else {
            Err(errors.join("; "))
        }
    }

    pub fn len(&self) -> usize {
        self.features.len()
    }

    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.features.iter().map(|f| f.name.as_str())
    }

    /// Every dotted path extraction reads from a document, the behavioural state's included
    /// (entities, `when` fields, sources and `@timestamp`).
    pub fn paths(&self) -> Vec<&str> {
        let mut paths: Vec<&str> = Vec::new();
        for f in &self.features {
            paths.extend(f.sources.iter().map(String::as_str));
            if let Transform::Behaviour(b) = &f.transform {
                paths.extend(b.paths());
                paths.push(behaviour::TIME_FIELD);
            }
        }
        paths
    }

    /// The behavioural features this extractor reads from the entity state.
    pub fn behaviour_features(&self) -> Vec<Arc<behaviour::BehaviourFeature>> {
        self.features
            .iter()
            .filter_map(|f| match &f.transform {
                Transform::Behaviour(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    /// Writes the document's feature row into `out` (length = number of features); behavioural
    /// features take their `missing` value.
    pub fn extract(&self, doc: &Value, out: &mut [f32]) -> Result<(), FeatureError> {
        self.extract_with(doc, None, out)
    }

    /// As [`FeatureExtractor::extract`], with behavioural values computed for this document by
    /// [`behaviour::BehaviourState::process`] (NaN = missing).
    pub fn extract_with<D: Fields + ?Sized>(
        &self,
        doc: &D,
        behaviour: Option<&crate::inference::BehaviourValues>,
        out: &mut [f32],
    ) -> Result<(), FeatureError> {
        if let Some(found) = doc.not_object() {
            return Err(FeatureError::NotAnObject { found });
        }
        debug_assert_eq!(out.len(), self.features.len());
        for (feature, slot) in self.features.iter().zip(out.iter_mut()) {
            if let Transform::Behaviour(b) = &feature.transform {
                let v = behaviour.and_then(|m| m.get(b.id_no)).unwrap_or(f32::NAN);
                *slot = if v.is_nan() { feature.missing } else { v };
                continue;
            }
            let found = feature
                .sources
                .iter()
                .find_map(|path| doc.first(path).map(|v| (path, v)));
            *slot = feature.value(found.as_ref().map(|(path, v)| (*path, &**v)))?;
        }
        Ok(())
    }

    /// The scanner for [`FeatureExtractor::extract_scanned`], if this extractor has one.
    pub fn scanner(&self) -> Option<&Scanner> {
        self.scanner.as_ref()
    }

    /// As [`FeatureExtractor::extract`], from what [`FeatureExtractor::scanner`] found in a
    /// document: the same row, without the document parsed whole.
    pub fn extract_scanned(&self, scanned: &Scanned, out: &mut [f32]) -> Result<(), FeatureError> {
        let paths = self.scanner.as_ref().map_or(&[][..], |s| s.paths());
        debug_assert_eq!(out.len(), self.features.len());
        for ((feature, sources), slot) in self
            .features
            .iter()
            .zip(&self.scanned_sources)
            .zip(out.iter_mut())
        {
            // The usual case, a number for a numeric feature, without a `Value` around it; a
            // number it refuses goes the general way, which says why.
            if let Some(Slot::Number(n)) = sources.first().map(|&i| &scanned.values[i]) {
                if let (Transform::Numeric, Ok(x)) = (&feature.transform, transform::number(n)) {
                    *slot = x;
                    continue;
                }
            }
            let found = sources
                .iter()
                .find_map(|&i| Some((&paths[i], scanned.values[i].first()?)));
            *slot = feature.value(found.as_ref().map(|(path, value)| (*path, &**value)))?;
        }
        Ok(())
    }
}

impl Feature {
    /// This feature's value from what its first present source holds (`None`: its `missing`).
    fn value(&self, found: Option<(&String, &Value)>) -> Result<f32, FeatureError> {
        let Some((path, value)) = found else {
            return Ok(self.missing);
        };
        self.transform
            .apply(value)
            .map_err(|rejection| match rejection {
                Rejection::WrongType { expected } => FeatureError::WrongType {
                    feature: self.name.clone(),
                    path: path.clone(),
                    expected,
                    found: describe(value),
                },
                Rejection::Invalid(reason) => FeatureError::Invalid {
                    feature: self.name.clone(),
                    path: path.clone(),
                    reason,
                },
            })
    }
}

fn compile_transform(
    spec: &TransformSpec,
    sources: &[String],
    dir: &Path,
) -> Result<Transform, String> {
    use behaviour::{BehaviourFeature, Kind, When};
    use TransformSpec as S;
    let stateful = |kind: Kind, b: &crate::bundle::manifest::BehaviourSpec| {
        let when = b.when.as_ref().map(|w| When {
            field: w.field.clone(),
            equals: w.equals.clone(),
        });
        BehaviourFeature::new(
            kind,
            b.entity.clone(),
            when,
            sources.to_vec(),
            b.window_seconds,
        )
        .map(|f| Transform::Behaviour(Arc::new(f)))
    };
    let lower = |v: &[String]| v.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>();
    Ok(match spec {
        S::Numeric => Transform::Numeric,
        S::Boolean => Transform::Boolean,
        S::Categorical {
            vocabulary,
            unknown,
        } => {
            let index: std::collections::HashMap<String, f32> = vocabulary
                .iter()
                .enumerate()
                .map(|(i, v)| (v.clone(), i as f32))
                .collect();
            if index.len() != vocabulary.len() {
                return Err("categorical vocabulary has duplicates".into());
            }
            Transform::Categorical {
                index,
                unknown: unknown.map_or(vocabulary.len() as f32, |u| u as f32),
            }
        }
        S::Length { part } => Transform::Text(*part, TextOp::Length),
        S::DigitRatio { part } => Transform::Text(*part, TextOp::DigitRatio),
        S::Entropy { part } => Transform::Text(*part, TextOp::Entropy),
        S::CharCount { chars, part } => {
            if chars.is_empty() {
                return Err("char_count needs at least one character".into());
            }
            Transform::Text(*part, TextOp::CharCount(chars.chars().collect()))
        }
        S::TokenPresence { tokens, part } => {
            Transform::Text(*part, TextOp::TokenPresence(non_empty(lower(tokens))?))
        }
        S::TokenCount { tokens, part } => {
            Transform::Text(*part, TextOp::TokenCount(non_empty(lower(tokens))?))
        }
        S::IsIp { part } => Transform::Text(*part, TextOp::IsIp),
        S::LabelCount { part } => Transform::Text(*part, TextOp::LabelCount),
        S::SegmentCount { part } => Transform::Text(*part, TextOp::SegmentCount),
        S::ParamCount { part } => Transform::Text(*part, TextOp::ParamCount),
        S::Equals { value, part } => Transform::Text(*part, TextOp::Equals(value.to_lowercase())),
        S::SuffixIn { values, part } => {
            Transform::Text(*part, TextOp::SuffixIn(lower(values).into_iter().collect()))
        }
        S::InSet {
            values,
            values_file,
            part,
        } => {
            let mut set: HashSet<String> = lower(values).into_iter().collect();
            if let Some(file) = values_file {
                let text = std::fs::read_to_string(dir.join(file))
                    .map_err(|e| format!("cannot read values_file [{file}]: {e}"))?;
                set.extend(
                    text.lines()
                        .map(|l| l.trim().to_lowercase())
                        .filter(|l| !l.is_empty()),
                );
            }
            if set.is_empty() {
                return Err("in_set needs values or values_file".into());
            }
            Transform::Text(*part, TextOp::InSet(set))
        }
        S::FirstSeen(b) => stateful(Kind::FirstSeen, b)?,
        S::Count(b) => stateful(Kind::Count, b)?,
        S::DistinctCount(b) => stateful(Kind::DistinctCount, b)?,
        S::PairCount(b) => stateful(Kind::PairCount, b)?,
        S::SinceLast(b) => stateful(Kind::SinceLast, b)?,
        S::VelocityKmh(b) => stateful(Kind::VelocityKmh, b)?,
        S::HourOfDay => Transform::Time(TimeOp::HourOfDay),
        S::DayOfWeek => Transform::Time(TimeOp::DayOfWeek),
        S::IsWeekend => Transform::Time(TimeOp::IsWeekend),
    })
}

fn non_empty(tokens: Vec<String>) -> Result<Vec<String>, String> {
    if tokens.is_empty() || tokens.iter().any(String::is_empty) {
        Err("tokens must be a non-empty list of non-empty strings".into())
    } else {
        Ok(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extractor(specs: serde_json::Value) -> FeatureExtractor {
        let specs: Vec<FeatureSpec> = serde_json::from_value(specs).unwrap();
        FeatureExtractor::compile(&specs, Path::new(".")).unwrap()
    }

    #[test]
    fn missing_fields_take_the_declared_default_and_wrong_types_are_named() {
        let x = extractor(json!([
            {"name": "a", "source": "x.a", "transform": {"kind": "numeric"}, "missing": 7},
            {"name": "b", "source": ["x.b", "y.b"], "transform": {"kind": "length"}},
        ]));
        let mut row = [0.0; 2];
        x.extract(&json!({"y": {"b": "abc"}}), &mut row).unwrap();
        assert_eq!(row[0], 7.0);
        assert_eq!(row[1], 3.0);
        x.extract(&json!({}), &mut row).unwrap();
        assert!(row[1].is_nan());
        let err = x
            .extract(&json!({"x": {"a": "ten"}}), &mut row)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "feature [a] expects a number at [x.a], found string \"ten\""
        );
        assert!(x.extract(&json!([1, 2]), &mut row).is_err());
    }

    #[test]
    fn bad_specs_are_reported_together() {
        let specs: Vec<FeatureSpec> = serde_json::from_value(json!([
            {"name": "a", "source": "", "transform": {"kind": "numeric"}},
            {"name": "a", "source": "s", "transform": {"kind": "token_presence", "tokens": []}},
        ]))
        .unwrap();
        let err = FeatureExtractor::compile(&specs, Path::new(".")).unwrap_err();
        assert!(err.contains("empty source"), "{err}");
        assert!(err.contains("declared twice"), "{err}");
        assert!(err.contains("tokens must be"), "{err}");
    }
}
