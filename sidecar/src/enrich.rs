//! Writing results into documents at a dotted target field (`ml.inference.<model>`).

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("cannot write at [{target}]: [{conflict}] holds a {found}, not an object")]
pub struct WriteError {
    pub target: String,
    pub conflict: String,
    pub found: &'static str,
}

/// Sets `doc[target] = value`, creating intermediate objects. An existing value at `target` is
/// replaced (re-scoring a document is idempotent); a non-object on the way is an error, because
/// overwriting it would lose the caller's data.
pub fn write_at(
    doc: &mut Map<String, Value>,
    target: &str,
    value: Value,
) -> Result<(), WriteError> {
    let mut parts = target.split('.').peekable();
    let mut current = doc;
    let mut walked = String::new();
    while let Some(part) = parts.next() {
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(part);
        if parts.peek().is_none() {
            current.insert(part.to_string(), value);
            return Ok(());
        }
        let slot = current
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        current = match slot {
            Value::Object(inner) => inner,
            other => {
                return Err(WriteError {
                    target: target.to_string(),
                    conflict: walked,
                    found: kind(other),
                })
            }
        };
    }
    Ok(())
}

/// `text`, a JSON object, with each result appended as a new top-level key
/// (`"ml":{"inference":{"<model>":{…}}}` for the target `ml.inference.<model>`), so the caller's
/// bytes stay as sent and only the results are serialised. `has_key` says whether the object has
/// a top-level key, `empty` whether it is `{}`. `None` when the object already has a result's
/// top-level key, or two results share one: the caller then writes them into the parsed
/// document with [`write_at`].
pub fn appended<'r>(
    text: &[u8],
    has_key: impl Fn(&str) -> bool,
    empty: bool,
    results: impl Iterator<Item = (&'r str, &'r [u8])> + Clone,
) -> Option<Vec<u8>> {
    let end = text.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if text[end] != b'}' {
        return None;
    }
    let mut keys: Vec<&str> = Vec::new();
    let mut len = end + 1;
    for (target, json) in results.clone() {
        let key = target.split('.').next().unwrap_or_default();
        if has_key(key) || keys.contains(&key) {
            return None;
        }
        keys.push(key);
        len += json.len() + 4 * target.len() + 8;
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&text[..end]);
    let mut first = empty;
    for (target, json) in results {
        if !first {
            out.push(b',');
        }
        first = false;
        let mut depth = 0;
        for (n, part) in target.split('.').enumerate() {
            if n > 0 {
                out.push(b'{');
                depth += 1;
            }
            serde_json::to_writer(&mut out, part).expect("strings serialise");
            out.push(b':');
        }
        out.extend_from_slice(json);
        out.extend(std::iter::repeat_n(b'}', depth));
    }
    out.push(b'}');
    Some(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn creates_merges_replaces_and_refuses_to_clobber() {
        let mut doc = json!({"ml": {"other": 1}}).as_object().unwrap().clone();
        write_at(&mut doc, "ml.inference.m", json!({"score": 1})).unwrap();
        write_at(&mut doc, "ml.inference.m", json!({"score": 2})).unwrap();
        assert_eq!(
            Value::Object(doc.clone()),
            json!({"ml": {"other": 1, "inference": {"m": {"score": 2}}}})
        );
        let mut bad = json!({"ml": "text"}).as_object().unwrap().clone();
        let err = write_at(&mut bad, "ml.inference.m", json!(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot write at [ml.inference.m]: [ml] holds a string, not an object"
        );
    }
}
