//! Routing: which models score a document, from its target index and field conditions.
//!
//! ```toml
//! [[routes]]
//! indices = ["logs-okta*", "logs-auth*"]      # globs on the target index, default ["*"]
//! model = "login-risk"
//! when = { field = "event.category", equals = "authentication" }
//!
//! [[routes]]
//! model = "url-phishing"
//! when = { exists = ["url.original", "url.full"] }
//! ```

use serde::Deserialize;
use serde_json::Value;

use crate::features::Fields;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[serde(default)]
    pub indices: Option<Vec<String>>,
    pub model: String,
    #[serde(default)]
    pub when: Option<RawCondition>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub equals: Option<toml::Value>,
    #[serde(default)]
    pub one_of: Option<Vec<toml::Value>>,
    #[serde(default)]
    pub exists: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub enum Condition {
    Always,
    /// Any of these fields is present.
    Exists(Vec<String>),
    /// The field equals one of these values (arrays: their first element, as everywhere).
    OneOf {
        field: String,
        values: Vec<Value>,
    },
}

#[derive(Debug, Clone)]
pub struct Route {
    pub indices: Vec<String>,
    pub model: String,
    pub when: Condition,
}

#[derive(Debug, Clone, Default)]
pub struct Routes(Vec<Route>);

fn to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        other => Value::String(other.to_string()),
    }
}

impl Routes {
    /// Validates raw routes; every problem is returned.
    pub fn compile(raw: &[RawRoute]) -> Result<Routes, Vec<String>> {
        let mut errors = Vec::new();
        let mut routes = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let at = format!("routes[{i}]");
            if r.model.is_empty() {
                errors.push(format!("{at}.model is empty"));
            }
            let indices = r.indices.clone().unwrap_or_else(|| vec!["*".to_string()]);
            if indices.is_empty() || indices.iter().any(String::is_empty) {
                errors.push(format!("{at}.indices must list non-empty patterns"));
            }
            let when = match &r.when {
                None => Condition::Always,
                Some(c) => match (&c.field, &c.equals, &c.one_of, &c.exists) {
                    (None, None, None, Some(fields)) if !fields.is_empty() => {
                        Condition::Exists(fields.clone())
                    }
                    (Some(field), Some(v), None, None) => Condition::OneOf {
                        field: field.clone(),
                        values: vec![to_json(v)],
                    },
                    (Some(field), None, Some(vs), None) if !vs.is_empty() => Condition::OneOf {
                        field: field.clone(),
                        values: vs.iter().map(to_json).collect(),
                    },
                    _ => {
                        errors.push(format!(
                            "{at}.when must be {{ exists = [..] }}, {{ field, equals }} or {{ field, one_of = [..] }}"
                        ));
                        Condition::Always
                    }
                },
            };
            routes.push(Route {
                indices,
                model: r.model.clone(),
                when,
            });
        }
        if errors.is_empty() {
            Ok(Routes(routes))
        } else {
            Err(errors)
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.0.iter()
    }

    /// Every dotted path the routes' conditions read.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .flat_map(|r| r.when.paths().iter().map(String::as_str))
    }

    /// Models that score `doc` bound for `index`, in route order, without repeats.
    pub fn models_for<'a, D: Fields + ?Sized>(&'a self, index: &str, doc: &D) -> Vec<&'a str> {
        let mut models: Vec<&str> = Vec::new();
        for r in &self.0 {
            if r.indices.iter().any(|p| glob(p, index))
                && r.when.matches(doc)
                && !models.contains(&r.model.as_str())
            {
                models.push(&r.model);
            }
        }
        models
    }
}

impl Condition {
    fn matches<D: Fields + ?Sized>(&self, doc: &D) -> bool {
        match self {
            Condition::Always => true,
            Condition::Exists(fields) => fields.iter().any(|f| doc.first(f).is_some()),
            Condition::OneOf { field, values } => {
                doc.first(field).is_some_and(|v| values.contains(&v))
            }
        }
    }

    /// The dotted paths this condition reads.
    fn paths(&self) -> &[String] {
        match self {
            Condition::Always => &[],
            Condition::Exists(fields) => fields,
            Condition::OneOf { field, .. } => std::slice::from_ref(field),
        }
    }
}

/// `*` matches any run of characters; everything else literally.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("logs-*", "logs-okta.system-default"));
        assert!(!glob("logs-*", "metrics-x"));
        assert!(glob("logs-*-default", "logs-a-default"));
        assert!(!glob("logs-*-default", "logs-default"));
        assert!(glob("a*b*c", "a-x-b-y-c"));
        assert!(!glob("a*b*c", "a-x-c"));
        assert!(glob("exact", "exact"));
    }

    #[test]
    fn routes_by_index_and_condition() {
        let raw: Vec<RawRoute> = toml::from_str::<toml::Table>(
            r#"
            [[r]]
            model = "url"
            when = { exists = ["url.original", "url.full"] }
            [[r]]
            indices = ["logs-auth*"]
            model = "login"
            when = { field = "event.category", one_of = ["authentication", "iam"] }
            [[r]]
            model = "url"
            "#,
        )
        .unwrap()["r"]
            .clone()
            .try_into()
            .unwrap();
        let routes = Routes::compile(&raw).unwrap();
        let auth = json!({"event": {"category": ["authentication"]}, "url": {"full": "x"}});
        assert_eq!(routes.models_for("logs-auth-x", &auth), ["url", "login"]);
        assert_eq!(routes.models_for("other", &auth), ["url"]);
        assert_eq!(routes.models_for("logs-auth-x", &json!({})), ["url"]);
    }

    #[test]
    fn bad_routes_are_all_reported() {
        let raw = vec![RawRoute {
            indices: Some(vec![]),
            model: String::new(),
            when: Some(RawCondition {
                field: Some("x".into()),
                equals: None,
                one_of: None,
                exists: None,
            }),
        }];
        assert_eq!(Routes::compile(&raw).unwrap_err().len(), 3);
    }
}
