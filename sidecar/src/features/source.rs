//! Finding a field in a JSON document by dotted ECS path.
//!
//! Elasticsearch treats `{"url":{"original":x}}`, `{"url.original":x}` and mixes of the two as the
//! same field, so the lookup tries every split of the path into an existing key and a rest.

use std::borrow::Cow;

use serde_json::Value;

/// A document as the scoring stages read it (routing, normalisation's recognition, behavioural
/// state, feature extraction): a parsed `Value`, or only the fields a [`Scanner`](super::Scanner)
/// kept from its bytes ([`super::View`]). Each stage reads only through these methods,
/// so a scanned document gives what its parsed whole would give at every path that was scanned.
pub trait Fields: Sync {
    /// The value at `path` as [`lookup_whole`] finds it (`None` for `null`).
    fn whole(&self, path: &str) -> Option<Cow<'_, Value>>;

    /// The value at `path` as [`lookup`] finds it (an array's first element; `None` for `null`).
    fn first(&self, path: &str) -> Option<Cow<'_, Value>> {
        within(&self.whole(path)?, first_value)
    }

    /// The first value at `path` as [`crate::rules::doc::first`] finds it (every element of
    /// every array on the way, nested arrays flattened, `null` skipped): how normalisation
    /// recognises a vendor's event.
    fn leaf(&self, path: &str) -> Option<Cow<'_, Value>>;

    /// Whether the document has `key` as a top-level key (`null` value included).
    fn has_key(&self, key: &str) -> bool;

    /// `Some(description)` when the document is not a JSON object.
    fn not_object(&self) -> Option<String>;
}

/// The part `part` picks of a value borrowed from a document (still borrowed from it) or made
/// for it (a scanned number: then owned).
pub fn within<'d>(
    value: &Cow<'d, Value>,
    part: impl for<'v> Fn(&'v Value) -> Option<&'v Value>,
) -> Option<Cow<'d, Value>> {
    match value {
        Cow::Borrowed(v) => part(v).map(Cow::Borrowed),
        Cow::Owned(v) => part(v).cloned().map(Cow::Owned),
    }
}

impl Fields for Value {
    fn whole(&self, path: &str) -> Option<Cow<'_, Value>> {
        lookup_whole(self, path).map(Cow::Borrowed)
    }

    fn first(&self, path: &str) -> Option<Cow<'_, Value>> {
        lookup(self, path).map(Cow::Borrowed)
    }

    fn leaf(&self, path: &str) -> Option<Cow<'_, Value>> {
        crate::rules::doc::first(self, path).map(Cow::Borrowed)
    }

    fn has_key(&self, key: &str) -> bool {
        self.as_object().is_some_and(|o| o.contains_key(key))
    }

    fn not_object(&self) -> Option<String> {
        (!self.is_object()).then(|| describe(self))
    }
}

/// The value at `path`, with arrays reduced to their first element. `None` when absent or `null`.
pub fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let found = lookup_in(first_of_array(doc)?, path)?;
    let found = first_of_array(found)?;
    (!found.is_null()).then_some(found)
}

/// As [`lookup`], but an array at the end of the path is returned whole (a `[lon, lat]` point).
pub fn lookup_whole<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    lookup_in(first_of_array(doc)?, path).filter(|v| !v.is_null())
}

/// What [`lookup`] makes of a value [`lookup_whole`] found: an array's first element, `None` for
/// `null` (so a path can be looked up once and read both ways).
pub fn first_value(whole: &Value) -> Option<&Value> {
    first_of_array(whole).filter(|v| !v.is_null())
}

fn lookup_in<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let object = value.as_object()?;
    if let Some(v) = get(object, path) {
        return Some(v);
    }
    // Try the shortest existing prefix first: nested objects are the common shape.
    for (i, _) in path.match_indices('.') {
        if let Some(inner) = get(object, &path[..i]) {
            if let Some(found) = first_of_array(inner).and_then(|v| lookup_in(v, &path[i + 1..])) {
                return Some(found);
            }
        }
    }
    None
}

/// Objects up to this many keys are searched key by key (lengths compared first) instead of
/// hashing the key: an event's objects are small, and hashing (SipHash, serde_json's map) and
/// comparing the found key cost more than the scan.
const SCANNED_KEYS: usize = 12;

/// `object.get(key)`: the same entry (keys are unique), found by a scan for small objects.
fn get<'a>(object: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    if object.len() <= SCANNED_KEYS {
        object
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    } else {
        object.get(key)
    }
}

fn first_of_array(value: &Value) -> Option<&Value> {
    match value {
        Value::Array(items) => items.first(),
        other => Some(other),
    }
}

/// A short description of a JSON value for error messages: its type and a clipped rendering.
pub fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => return "null".to_string(),
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let mut text = value.to_string();
    if text.len() > 40 {
        let cut = (0..=40)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    format!("{kind} {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_flattened_and_mixed_paths_resolve() {
        let nested = json!({"url": {"original": "a"}});
        let flat = json!({"url.original": "b"});
        let mixed = json!({"source": {"geo.country_iso_code": "FR"}});
        assert_eq!(lookup(&nested, "url.original"), Some(&json!("a")));
        assert_eq!(lookup(&flat, "url.original"), Some(&json!("b")));
        assert_eq!(
            lookup(&mixed, "source.geo.country_iso_code"),
            Some(&json!("FR"))
        );
    }

    #[test]
    fn arrays_yield_their_first_element_and_null_is_absent() {
        let doc = json!({"user": [{"name": ["x", "y"]}], "n": null, "e": []});
        assert_eq!(lookup(&doc, "user.name"), Some(&json!("x")));
        assert_eq!(lookup(&doc, "n"), None);
        assert_eq!(lookup(&doc, "e"), None);
        assert_eq!(lookup(&doc, "missing.path"), None);
        assert_eq!(lookup(&json!("scalar"), "a"), None);
    }

    #[test]
    fn small_objects_scanned_and_large_ones_hashed_find_the_same_keys() {
        for n in [1, SCANNED_KEYS - 1, SCANNED_KEYS, SCANNED_KEYS + 1, 40] {
            let mut inner = serde_json::Map::new();
            for i in 0..n {
                inner.insert(format!("k{i}"), json!(i));
            }
            inner.insert("k.dotted".into(), json!("flat"));
            let doc = json!({"a": inner, "a.zz": "top"});
            assert_eq!(
                lookup(&doc, &format!("a.k{}", n - 1)),
                Some(&json!(n - 1)),
                "{n}"
            );
            assert_eq!(lookup(&doc, "a.k.dotted"), Some(&json!("flat")), "{n}");
            assert_eq!(lookup(&doc, "a.zz"), Some(&json!("top")), "{n}");
            assert_eq!(lookup(&doc, &format!("a.k{n}")), None, "{n}");
            assert_eq!(lookup(&doc, "a.k"), None, "{n}");
        }
    }

    #[test]
    fn describe_clips_long_values_on_char_boundaries() {
        let long = Value::String("é".repeat(100));
        let text = describe(&long);
        assert!(text.starts_with("string \""));
        assert!(text.ends_with('…'));
    }
}
