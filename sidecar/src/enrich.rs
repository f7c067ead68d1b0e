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
    let len = results
        .clone()
        .map(|(target, json)| json.len() + 4 * target.len() + 8)
        .sum::<usize>();
    let mut out = Vec::with_capacity(text.len() + len);
    let targets = results.clone().map(|(target, _)| target);
    let mut jsons = results.map(|(_, json)| json);
    let written = append_into(&mut out, text, has_key, empty, targets, |out| {
        out.extend_from_slice(jsons.next().expect("one JSON text per target"))
    });
    written.then_some(out)
}

/// [`appended`], written at the end of `out`, each result's JSON text written by `result` (called
/// once per target, in order). `false`, with `out` as it was, where [`appended`] gives `None`.
pub fn append_into<'r>(
    out: &mut Vec<u8>,
    text: &[u8],
    has_key: impl Fn(&str) -> bool,
    empty: bool,
    targets: impl Iterator<Item = &'r str> + Clone,
    mut result: impl FnMut(&mut Vec<u8>),
) -> bool {
    let Some(end) = text.iter().rposition(|b| !b.is_ascii_whitespace()) else {
        return false;
    };
    if text[end] != b'}' {
        return false;
    }
    for (i, target) in targets.clone().enumerate() {
        let key = top_key(target);
        if has_key(key) || targets.clone().take(i).any(|t| top_key(t) == key) {
            return false;
        }
    }
    out.extend_from_slice(&text[..end]);
    let mut first = empty;
    for target in targets {
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
            write_str(out, part);
            out.push(b':');
        }
        result(out);
        out.extend(std::iter::repeat_n(b'}', depth));
    }
    out.push(b'}');
    true
}

/// The top-level key of a dotted target field (`ml` for `ml.inference.<model>`).
pub fn top_key(target: &str) -> &str {
    let end = target
        .bytes()
        .position(|c| c == b'.')
        .unwrap_or(target.len());
    &target[..end]
}

/// `s` as a JSON string, as serde_json writes it. Names and labels (keys of the target field,
/// class labels, model ids) rarely need escaping: those are copied between quotes, the rest go
/// through serde_json.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|c| c >= 0x20 && c != b'"' && c != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(out, s).expect("strings serialise");
    }
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
    fn strings_are_written_as_serde_json_writes_them() {
        for s in [
            "",
            "ml",
            "login-risk",
            "a b",
            "\u{7f}",
            "é ü",
            "\u{2028}",
            "😀",
            "q\"uote",
            "back\\slash",
            "tab\t",
            "\u{1f}",
            "\u{0}",
            "/",
        ] {
            let mut out = b"x".to_vec();
            write_str(&mut out, s);
            assert_eq!(out[1..], serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

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
