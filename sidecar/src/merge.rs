//! Merging: Elasticsearch's answer for the forwarded items and Vigil's own per-item failures
//! become one response, item for item in request order; then the caller's `filter_path`.
//! When Vigil failed no item and the caller set no `filter_path`, Elasticsearch's answer is
//! already that response: it is returned as it came, after [`statuses`] checked it holds one
//! item per forwarded document (without building its JSON tree).

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::bulk::ItemError;

/// Where each request item's answer comes from.
#[derive(Debug, Clone)]
pub enum Slot {
    /// The n-th item of the forwarded body.
    Forwarded,
    /// Failed in Vigil, never forwarded.
    Local(ItemError),
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("Elasticsearch answered {got} items for the {expected} forwarded")]
pub struct ItemCountMismatch {
    pub got: usize,
    pub expected: usize,
}

/// Merges `upstream` (a bulk response for the forwarded items, or `None` when nothing was
/// forwarded) with the local failures.
pub fn merge(
    slots: &[Slot],
    upstream: Option<Value>,
    took_ms: u64,
) -> Result<Value, ItemCountMismatch> {
    let forwarded = slots
        .iter()
        .filter(|s| matches!(s, Slot::Forwarded))
        .count();
    let mut response = match upstream {
        Some(Value::Object(o)) => o,
        _ => {
            let mut o = Map::new();
            o.insert("took".into(), Value::from(took_ms));
            o
        }
    };
    let mut theirs = match response.remove("items") {
        Some(Value::Array(items)) => items.into_iter(),
        _ => Vec::new().into_iter(),
    };
    if theirs.len() != forwarded {
        return Err(ItemCountMismatch {
            got: theirs.len(),
            expected: forwarded,
        });
    }
    let mut errors = false;
    let items: Vec<Value> = slots
        .iter()
        .map(|slot| {
            let item = match slot {
                Slot::Forwarded => theirs.next().expect("counted above"),
                Slot::Local(e) => e.to_item(),
            };
            errors |= item_failed(&item);
            item
        })
        .collect();
    response.insert("errors".into(), Value::Bool(errors));
    response.insert("items".into(), Value::Array(items));
    // Keep Elasticsearch's key order: took, errors, items, then the rest.
    let mut ordered = Map::new();
    for key in ["took", "errors", "items"] {
        if let Some(v) = response.remove(key) {
            ordered.insert(key.into(), v);
        }
    }
    ordered.extend(response);
    Ok(Value::Object(ordered))
}

/// Each item's `status` in a bulk answer (0 where an item has none), in order: what the metrics
/// count and the item count checked against the forwarded documents. The rest of the answer is
/// skipped, not built.
pub fn statuses(answer: &[u8]) -> Result<Vec<u16>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        items: Vec<Item>,
    }
    Ok(serde_json::from_slice::<Answer>(answer)?
        .items
        .into_iter()
        .map(|Item(status)| status)
        .collect())
}

/// `{"<op>": {"status": …, …}}`: the status of the first (only) action.
struct Item(u16);

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = Item;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a bulk answer item")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
                #[derive(Deserialize)]
                struct Action {
                    #[serde(default)]
                    status: Option<u16>,
                }
                let mut status = None;
                while map.next_key::<IgnoredAny>()?.is_some() {
                    if status.is_none() {
                        status = Some(map.next_value::<Action>()?.status.unwrap_or(0));
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Item(status.unwrap_or(0)))
            }
        }
        d.deserialize_map(ItemVisitor)
    }
}

fn item_failed(item: &Value) -> bool {
    item.as_object()
        .and_then(|o| o.values().next())
        .is_some_and(|inner| inner.get("error").is_some())
}

/// Elasticsearch's `filter_path`: comma-separated dotted paths with `*` (any characters within
/// a key) and `**` (any depth); paths prefixed `-` exclude. Arrays are transparent.
pub fn filter_path(value: Value, spec: &str) -> Value {
    let (exclude, include): (Vec<&str>, Vec<&str>) = spec
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .partition(|p| p.starts_with('-'));
    let include: Vec<Vec<&str>> = include.iter().map(|p| p.split('.').collect()).collect();
    let exclude: Vec<Vec<&str>> = exclude
        .iter()
        .map(|p| p[1..].split('.').collect())
        .collect();
    let kept = if include.is_empty() {
        Some(value)
    } else {
        keep(
            value,
            &include.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        )
    };
    let kept = kept.unwrap_or_else(|| Value::Object(Map::new()));
    if exclude.is_empty() {
        kept
    } else {
        drop_paths(kept, &exclude.iter().map(Vec::as_slice).collect::<Vec<_>>())
            .unwrap_or_else(|| Value::Object(Map::new()))
    }
}

fn key_matches(pattern: &str, key: &str) -> bool {
    crate::route::glob(pattern, key)
}

/// Patterns that remain after descending into `key` (an empty slice means "keep all below").
fn descend<'a>(patterns: &[&'a [&'a str]], key: &str) -> (bool, Vec<&'a [&'a str]>) {
    let mut whole = false;
    let mut next = Vec::new();
    for p in patterns {
        match p.split_first() {
            Some((&"**", rest)) => {
                next.push(*p);
                if rest.is_empty() {
                    whole = true;
                } else if key_matches(rest[0], key) {
                    if rest.len() == 1 {
                        whole = true;
                    } else {
                        next.push(&rest[1..]);
                    }
                }
            }
            Some((first, rest)) if key_matches(first, key) => {
                if rest.is_empty() {
                    whole = true;
                } else {
                    next.push(rest);
                }
            }
            _ => {}
        }
    }
    (whole, next)
}

fn keep(value: Value, patterns: &[&[&str]]) -> Option<Value> {
    match value {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, v) in o {
                let (whole, next) = descend(patterns, &k);
                if whole {
                    out.insert(k, v);
                } else if !next.is_empty() {
                    if let Some(kept) = keep(v, &next) {
                        out.insert(k, kept);
                    }
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(items) => {
            let kept: Vec<Value> = items
                .into_iter()
                .filter_map(|i| keep(i, patterns))
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        _ => None,
    }
}

fn drop_paths(value: Value, patterns: &[&[&str]]) -> Option<Value> {
    match value {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, v) in o {
                let (whole, next) = descend(patterns, &k);
                if whole {
                    continue;
                }
                if next.is_empty() {
                    out.insert(k, v);
                } else if let Some(v) = drop_paths(v, &next) {
                    out.insert(k, v);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => Some(Value::Array(
            items
                .into_iter()
                .filter_map(|i| drop_paths(i, patterns))
                .collect(),
        )),
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn local(op: &'static str) -> Slot {
        Slot::Local(ItemError {
            op,
            index: Some("i".into()),
            id: None,
            status: 400,
            kind: "x",
            reason: "bad".into(),
        })
    }

    #[test]
    fn merges_in_request_order_and_recomputes_errors() {
        let es = json!({"took": 5, "errors": false, "items": [
            {"index": {"_id": "a", "status": 201}}, {"create": {"_id": "b", "status": 201}}]});
        let slots = [Slot::Forwarded, local("index"), Slot::Forwarded];
        let merged = merge(&slots, Some(es), 0).unwrap();
        let items = merged["items"].as_array().unwrap();
        assert_eq!(items[0]["index"]["_id"], "a");
        assert_eq!(items[1]["index"]["status"], 400);
        assert_eq!(items[2]["create"]["_id"], "b");
        assert_eq!(merged["errors"], true);
        assert_eq!(merged["took"], 5);
        let mismatch = merge(&[Slot::Forwarded], Some(json!({"items": []})), 0).unwrap_err();
        assert_eq!(
            mismatch,
            ItemCountMismatch {
                got: 0,
                expected: 1
            }
        );
        let only_local = merge(&[local("delete")], None, 7).unwrap();
        assert_eq!(only_local["took"], 7);
        assert_eq!(only_local["errors"], true);
    }

    #[test]
    fn statuses_are_read_item_by_item_without_the_tree() {
        let answer = br#"{"took":5,"errors":true,"items":[
            {"index":{"_index":"i","_id":"a","_shards":{"total":1},"status":201}},
            {"create":{"_id":"b","status":429,"error":{"type":"es_rejected_execution_exception"}}},
            {"delete":{"_id":"c","result":"not_found"}}]}"#;
        assert_eq!(statuses(answer).unwrap(), [201, 429, 0]);
        assert_eq!(
            statuses(br#"{"took":1,"errors":false}"#).unwrap(),
            Vec::<u16>::new()
        );
        for bad in [
            &br#"{"items":[{"index":{"status":201}}"#[..],
            br#"{"items":{"index":{}}}"#,
            br#"{"items":[{"index":{"status":"201"}}]}"#,
            br#"{"items":[7]}"#,
            b"<html>",
        ] {
            assert!(statuses(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn filter_path_like_beats_and_logstash_use_it() {
        let r = json!({"took": 3, "errors": true, "items": [
            {"index": {"_index": "x", "status": 201, "result": "created"}},
            {"create": {"_index": "x", "status": 429, "error": {"type": "t", "reason": "r"}}}]});
        let f = filter_path(r.clone(), "errors,items.*.error,items.*.status");
        assert_eq!(
            f,
            json!({"errors": true, "items": [
                {"index": {"status": 201}},
                {"create": {"status": 429, "error": {"type": "t", "reason": "r"}}}]})
        );
        assert_eq!(filter_path(r.clone(), "took"), json!({"took": 3}));
        assert_eq!(
            filter_path(r.clone(), "**.status")["items"][1]["create"]["status"],
            429
        );
        let dropped = filter_path(r, "-items");
        assert_eq!(dropped, json!({"took": 3, "errors": true}));
    }
}
