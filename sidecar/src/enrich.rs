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
