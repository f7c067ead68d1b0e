//! The filter language of rule files: a small, declarative subset of the Elasticsearch query DSL
//! that compiles to a `bool` query *and* evaluates in memory on example events, with the same
//! meaning (keyword equality, any value of an array matches, missing fields never match).
//!
//! ```toml
//! [filter]
//! all = { "event.category" = "authentication", "event.outcome" = ["failure"] }
//! not = { "winlog.logon.type" = "Interactive" }
//! exists = ["user.name"]
//! range = { "ml.inference.auth.score" = { gte = 0.9 } }
//! any = [ { all = { "event.action" = "a" } }, { all = { "event.action" = "b" } } ]
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::doc;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Every field must hold one of the listed values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub all: BTreeMap<String, OneOrMany>,
    /// No field may hold any of the listed values (a missing field passes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub not: BTreeMap<String, OneOrMany>,
    /// Fields that must be present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exists: Vec<String>,
    /// Fields that must be absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Numeric bounds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub range: BTreeMap<String, Range>,
    /// At least one of these filters must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub any: Vec<Filter>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    Many(Vec<Value>),
    One(Value),
}

impl OneOrMany {
    pub fn values(&self) -> Vec<&Value> {
        match self {
            OneOrMany::One(v) => vec![v],
            OneOrMany::Many(vs) => vs.iter().collect(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
}

impl Range {
    fn holds(&self, x: f64) -> bool {
        self.gte.is_none_or(|b| x >= b)
            && self.gt.is_none_or(|b| x > b)
            && self.lte.is_none_or(|b| x <= b)
            && self.lt.is_none_or(|b| x < b)
    }
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Problems with the filter, each as `(field path inside the rule, message)`.
    pub fn check(&self, at: &str) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for (name, map) in [("all", &self.all), ("not", &self.not)] {
            for (field, vals) in map {
                let path = format!("{at}.{name}.{field}");
                if field.trim().is_empty() {
                    errors.push((path.clone(), "empty field name".into()));
                }
                let vs = vals.values();
                if vs.is_empty() {
                    errors.push((path.clone(), "needs at least one value".into()));
                }
                if vs.iter().any(|v| doc::scalar_key(v).is_none()) {
                    errors.push((path, "values must be strings, numbers or booleans".into()));
                }
            }
        }
        for (name, list) in [("exists", &self.exists), ("missing", &self.missing)] {
            for (i, f) in list.iter().enumerate() {
                if f.trim().is_empty() {
                    errors.push((format!("{at}.{name}[{i}]"), "empty field name".into()));
                }
            }
        }
        for (field, r) in &self.range {
            if *r == Range::default() {
                errors.push((
                    format!("{at}.range.{field}"),
                    "needs at least one of gte, gt, lte, lt".into(),
                ));
            }
        }
        for (i, f) in self.any.iter().enumerate() {
            if f.is_empty() {
                errors.push((format!("{at}.any[{i}]"), "empty filter".into()));
            }
            errors.extend(f.check(&format!("{at}.any[{i}]")));
        }
        errors
    }

    /// Whether `event` passes, with the query's meaning.
    pub fn matches(&self, event: &Value) -> bool {
        let has = |field: &str, wanted: &OneOrMany| {
            let keys: Vec<String> = wanted
                .values()
                .into_iter()
                .filter_map(doc::scalar_key)
                .collect();
            doc::values(event, field)
                .into_iter()
                .filter_map(doc::scalar_key)
                .any(|k| keys.contains(&k))
        };
        self.all.iter().all(|(f, v)| has(f, v))
            && !self.not.iter().any(|(f, v)| has(f, v))
            && self
                .exists
                .iter()
                .all(|f| !doc::values(event, f).is_empty())
            && self
                .missing
                .iter()
                .all(|f| doc::values(event, f).is_empty())
            && self.range.iter().all(|(f, r)| {
                doc::values(event, f).into_iter().any(|v| {
                    v.as_f64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                        .is_some_and(|x| r.holds(x))
                })
            })
            && (self.any.is_empty() || self.any.iter().any(|f| f.matches(event)))
    }

    /// The Elasticsearch query clauses: `(filter, must_not)`.
    pub fn clauses(&self) -> (Vec<Value>, Vec<Value>) {
        let mut filter = Vec::new();
        let mut must_not = Vec::new();
        let term = |field: &str, vals: &OneOrMany| match vals {
            OneOrMany::One(v) => json!({"term": {field: v}}),
            OneOrMany::Many(vs) if vs.len() == 1 => json!({"term": {field: vs[0]}}),
            OneOrMany::Many(vs) => json!({"terms": {field: vs}}),
        };
        for (f, v) in &self.all {
            filter.push(term(f, v));
        }
        for (f, v) in &self.not {
            must_not.push(term(f, v));
        }
        for f in &self.exists {
            filter.push(json!({"exists": {"field": f}}));
        }
        for f in &self.missing {
            must_not.push(json!({"exists": {"field": f}}));
        }
        for (f, r) in &self.range {
            filter.push(json!({"range": {f: r}}));
        }
        if !self.any.is_empty() {
            let should: Vec<Value> = self.any.iter().map(Filter::query).collect();
            filter.push(json!({"bool": {"should": should, "minimum_should_match": 1}}));
        }
        (filter, must_not)
    }

    /// The filter as one `bool` query.
    pub fn query(&self) -> Value {
        let (filter, must_not) = self.clauses();
        json!({"bool": {"filter": filter, "must_not": must_not}})
    }

    /// Every field the filter reads (for mapping checks and documentation).
    pub fn fields(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .all
            .keys()
            .chain(self.not.keys())
            .chain(self.exists.iter())
            .chain(self.missing.iter())
            .chain(self.range.keys())
            .cloned()
            .collect();
        for f in &self.any {
            out.extend(f.fields());
        }
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Filter {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn in_memory_meaning() {
        let f = parse(
            r#"
all = { "event.category" = "authentication", "event.outcome" = ["failure", "unknown"] }
not = { "winlog.logon.type" = "Interactive" }
exists = ["user.name"]
range = { "event.code" = { gte = 4600, lt = 4700 } }
"#,
        );
        let base = json!({"event": {"category": ["authentication"], "outcome": "failure", "code": "4625"}, "user": {"name": "a"}});
        assert!(f.matches(&base));
        let mut interactive = base.clone();
        interactive["winlog"] = json!({"logon": {"type": "Interactive"}});
        assert!(!f.matches(&interactive));
        let mut no_user = base.clone();
        no_user["user"] = json!({});
        assert!(!f.matches(&no_user));
        let mut other_code = base.clone();
        other_code["event"]["code"] = json!(4768);
        assert!(!f.matches(&other_code));
        let mut success = base;
        success["event"]["outcome"] = json!("success");
        assert!(!f.matches(&success));
    }

    #[test]
    fn any_is_an_or_and_numbers_equal_their_strings() {
        let f = parse(
            r#"any = [ { all = { "event.code" = 4624 } }, { all = { "event.action" = "logged-in" } } ]"#,
        );
        assert!(f.matches(&json!({"event": {"code": "4624"}})));
        assert!(f.matches(&json!({"event.action": "logged-in"})));
        assert!(!f.matches(&json!({"event.action": "logon-failed"})));
    }

    #[test]
    fn query_shape() {
        let f = parse(
            r#"
all = { "event.outcome" = "failure", "event.code" = [4625, 4771] }
missing = ["x"]
"#,
        );
        assert_eq!(
            f.query(),
            json!({"bool": {
                "filter": [
                    {"terms": {"event.code": [4625, 4771]}},
                    {"term": {"event.outcome": "failure"}}
                ],
                "must_not": [{"exists": {"field": "x"}}]
            }})
        );
    }

    #[test]
    fn checks_name_the_field() {
        let f = parse(
            r#"all = { "event.outcome" = [] }
range = { "s" = {} }
any = [ {} ]"#,
        );
        let errs = f.check("filter");
        assert!(
            errs.iter().any(|(p, _)| p == "filter.all.event.outcome"),
            "{errs:?}"
        );
        assert!(errs.iter().any(|(p, _)| p == "filter.range.s"), "{errs:?}");
        assert!(errs.iter().any(|(p, _)| p == "filter.any[0]"), "{errs:?}");
    }
}
