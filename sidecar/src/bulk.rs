//! Parsing a `_bulk` body: NDJSON lines become items, split over the request's `Bytes` without
//! copying. Lines that will be forwarded untouched stay byte for byte as the caller sent them.
//! Index/create sources are read once: with a scanner ([`parse_with`]) only for the fields
//! scoring reads, else (and wherever the scanner gives up) parsed whole.
//!
//! Bad lines are per-item failures in their place (a value, not an abort): an unparsable action
//! line, an unknown action, a source line that is not a JSON object, a missing index. Only a body
//! that breaks the framing itself (no trailing newline, empty) fails the whole request, exactly
//! as Elasticsearch does.

use std::borrow::Cow;

use bytes::Bytes;
use rayon::prelude::*;
use serde_json::{json, Map, Value};

use crate::features::{Fields, Scanned, Scanner, View};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpType {
    Index,
    Create,
    Update,
    Delete,
}

impl OpType {
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Index => "index",
            OpType::Create => "create",
            OpType::Update => "update",
            OpType::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Option<OpType> {
        match s {
            "index" => Some(OpType::Index),
            "create" => Some(OpType::Create),
            "update" => Some(OpType::Update),
            "delete" => Some(OpType::Delete),
            _ => None,
        }
    }

    /// Whether a source line follows the action line.
    pub fn has_source(self) -> bool {
        !matches!(self, OpType::Delete)
    }
}

/// Below this many items per parallel piece, sources are parsed on the calling thread (a single
/// document is not worth handing to another thread).
pub const PARALLEL_MIN_ITEMS: usize = 16;

/// One well-formed bulk item.
#[derive(Debug, Clone)]
pub struct Item {
    pub op: OpType,
    /// The action line as received (without its newline).
    pub action_line: Bytes,
    /// The index the item targets (from its metadata or the request path).
    pub index: String,
    pub id: Option<String>,
    /// The source line as received, for index/create/update.
    pub source_line: Option<Bytes>,
    /// The source line read, for index/create (checked to be an object while splitting, so
    /// scoring does not read it again).
    pub source: Option<Parsed>,
}

/// An index/create source as splitting read it.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// Parsed whole.
    Whole(Value),
    /// Only the fields of the request's [`Scanner`] (read through [`crate::features::View`]
    /// with that scanner): the routing, normalisation, behavioural and model fields scoring
    /// reads. A document the scanner gives up on is parsed whole instead.
    Scanned(Scanned),
}

impl Parsed {
    /// This source read through [`Fields`]; a scanned one with the `scanner` that scanned it.
    pub fn fields<'a>(&'a self, scanner: Option<&'a Scanner>) -> Doc<'a> {
        match self {
            Parsed::Whole(value) => Doc::Whole(value),
            Parsed::Scanned(scanned) => Doc::Scanned(View {
                scanner: scanner.expect("a scanned source is read with its scanner"),
                scanned,
            }),
        }
    }

    /// Whether the source is `{}`.
    pub fn is_empty(&self) -> bool {
        match self {
            Parsed::Whole(value) => value.as_object().is_some_and(Map::is_empty),
            Parsed::Scanned(scanned) => scanned.empty,
        }
    }
}

/// A [`Parsed`] source as the scoring stages read it.
#[derive(Debug, Clone, Copy)]
pub enum Doc<'a> {
    Whole(&'a Value),
    Scanned(View<'a>),
}

impl Doc<'_> {
    fn reader(&self) -> &dyn Fields {
        match self {
            Doc::Whole(value) => *value,
            Doc::Scanned(view) => view,
        }
    }
}

impl Fields for Doc<'_> {
    fn whole(&self, path: &str) -> Option<Cow<'_, Value>> {
        self.reader().whole(path)
    }

    fn first(&self, path: &str) -> Option<Cow<'_, Value>> {
        self.reader().first(path)
    }

    fn leaf(&self, path: &str) -> Option<Cow<'_, Value>> {
        self.reader().leaf(path)
    }

    fn has_key(&self, key: &str) -> bool {
        self.reader().has_key(key)
    }

    fn not_object(&self) -> Option<String> {
        self.reader().not_object()
    }
}

/// A failure that belongs to one item, reported in its place in the response.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemError {
    pub op: &'static str,
    pub index: Option<String>,
    pub id: Option<String>,
    pub status: u16,
    pub kind: &'static str,
    pub reason: String,
}

impl ItemError {
    /// The response item, in Elasticsearch's shape.
    pub fn to_item(&self) -> Value {
        json!({ self.op: {
            "_index": self.index,
            "_id": self.id,
            "status": self.status,
            "error": {"type": self.kind, "reason": self.reason},
        }})
    }
}

#[derive(Debug, Clone)]
pub enum Entry {
    Item(Item),
    Failed(ItemError),
}

/// Failures of the request as a whole.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BulkError {
    #[error("request body is required")]
    Empty,
    #[error("The bulk request must be terminated by a newline [\\n]")]
    NoTrailingNewline,
}

/// Splits `body` into entries, each source parsed whole. `default_index` comes from
/// `/{index}/_bulk`.
pub fn parse(body: &Bytes, default_index: Option<&str>) -> Result<Vec<Entry>, BulkError> {
    parse_with(body, default_index, None)
}

/// As [`parse`]; with a `scanner`, sources are only scanned for its paths where it can read them
/// ([`Parsed::Scanned`]), and parsed whole where it gives up.
pub fn parse_with(
    body: &Bytes,
    default_index: Option<&str>,
    scanner: Option<&Scanner>,
) -> Result<Vec<Entry>, BulkError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BulkError::Empty);
    }
    if body.last() != Some(&b'\n') {
        return Err(BulkError::NoTrailingNewline);
    }
    let lines: Vec<(Bytes, usize)> = split_lines(body);
    let mut entries = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (line, number) = &lines[i];
        i += 1;
        match parse_action(line, *number, default_index) {
            Ok((op, index, id)) => {
                let source_line = if op.has_source() {
                    match lines.get(i) {
                        Some((source, _)) => {
                            i += 1;
                            Some(source.clone())
                        }
                        None => {
                            entries.push((
                                Entry::Failed(ItemError {
                                    op: op.as_str(),
                                    index: Some(index),
                                    id,
                                    status: 400,
                                    kind: "action_request_validation_exception",
                                    reason: format!(
                                        "the [{}] action on line {number} has no source line",
                                        op.as_str()
                                    ),
                                }),
                                0,
                            ));
                            continue;
                        }
                    }
                } else {
                    None
                };
                entries.push((
                    Entry::Item(Item {
                        op,
                        action_line: line.clone(),
                        index,
                        id,
                        source_line,
                        source: None,
                    }),
                    *number,
                ));
            }
            Err(error) => {
                // Without a readable action we cannot know whether a source line follows: the
                // next line is taken as this item's source unless it reads as an action itself.
                if let Some((next, next_number)) = lines.get(i) {
                    if parse_action(next, *next_number, default_index).is_err() {
                        i += 1;
                    }
                }
                entries.push((Entry::Failed(error), 0));
            }
        }
    }
    // Sources are parsed once, here, in parallel (most of a bulk's parsing cost): a source that
    // is not a JSON object fails its item before a missing index does, as in Elasticsearch.
    Ok(entries
        .into_par_iter()
        .with_min_len(PARALLEL_MIN_ITEMS)
        .map(|(entry, number)| match entry {
            Entry::Item(item) => checked(item, number, scanner),
            failed => failed,
        })
        .collect())
}

/// An item whose action line (line `number`) reads well: its source parsed and checked, its
/// index required.
fn checked(mut item: Item, number: usize, scanner: Option<&Scanner>) -> Entry {
    if let Some(line) = &item.source_line {
        let scanned = match (item.op, scanner) {
            (OpType::Index | OpType::Create, Some(scanner)) => simdutf8::basic::from_utf8(line)
                .ok()
                .and_then(|text| scanner.scan(text, "")),
            _ => None,
        };
        if let Some(scanned) = scanned {
            item.source = Some(Parsed::Scanned(scanned));
        } else {
            match check_source(item.op, line, &item.index, &item.id, number + 1) {
                Ok(parsed) => item.source = parsed.map(Parsed::Whole),
                Err(error) => return Entry::Failed(error),
            }
        }
    }
    if item.index.is_empty() {
        return Entry::Failed(ItemError {
            op: item.op.as_str(),
            index: None,
            id: item.id,
            status: 400,
            kind: "action_request_validation_exception",
            reason: format!("Validation Failed: 1: index is missing (line {number});"),
        });
    }
    Entry::Item(item)
}

/// Non-blank lines with their 1-based line numbers; `\r\n` is tolerated.
fn split_lines(body: &Bytes) -> Vec<(Bytes, usize)> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (number, end) in memchr_iter(body).enumerate() {
        let mut line_end = end;
        if line_end > start && body[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        let line = body.slice(start..line_end);
        start = end + 1;
        if !line.iter().all(u8::is_ascii_whitespace) {
            lines.push((line, number + 1));
        }
    }
    lines
}

fn memchr_iter(body: &[u8]) -> impl Iterator<Item = usize> + '_ {
    body.iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i)
}

fn failed(op: &'static str, number: usize, kind: &'static str, reason: String) -> ItemError {
    ItemError {
        op,
        index: None,
        id: None,
        status: 400,
        kind,
        reason: format!("line {number}: {reason}"),
    }
}

/// Reads an action line: `{"<op>": {"_index": .., "_id": .., ...}}`.
fn parse_action(
    line: &Bytes,
    number: usize,
    default_index: Option<&str>,
) -> Result<(OpType, String, Option<String>), ItemError> {
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        failed(
            "index",
            number,
            "x_content_parse_exception",
            format!("malformed action/metadata line: {e}"),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(failed(
            "index",
            number,
            "illegal_argument_exception",
            "Malformed action/metadata line, expected START_OBJECT".into(),
        ));
    };
    let mut keys = map.iter();
    let (Some((name, meta)), None) = (keys.next(), keys.next()) else {
        return Err(failed(
            "index",
            number,
            "illegal_argument_exception",
            format!(
                "Malformed action/metadata line, expected exactly one action but found {}",
                map.len()
            ),
        ));
    };
    let op = OpType::parse(name).ok_or_else(|| {
        failed(
            "index",
            number,
            "illegal_argument_exception",
            format!(
                "Malformed action/metadata line, expected one of [create, delete, index, update] but found [{name}]"
            ),
        )
    })?;
    let Value::Object(meta) = meta else {
        return Err(failed(
            op.as_str(),
            number,
            "illegal_argument_exception",
            format!("Malformed action/metadata line, [{name}] must hold an object"),
        ));
    };
    let index = match meta.get("_index") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(failed(
                op.as_str(),
                number,
                "illegal_argument_exception",
                "[_index] must be a string".into(),
            ))
        }
        None => default_index.unwrap_or("").to_string(),
    };
    let id = match meta.get("_id") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Null) | None => None,
        Some(_) => {
            return Err(failed(
                op.as_str(),
                number,
                "illegal_argument_exception",
                "[_id] must be a string".into(),
            ))
        }
    };
    Ok((op, index, id))
}

/// Index/create sources must be JSON objects (returned parsed); update bodies are checked by
/// Elasticsearch.
fn check_source(
    op: OpType,
    source: &Bytes,
    index: &str,
    id: &Option<String>,
    number: usize,
) -> Result<Option<Value>, ItemError> {
    if op == OpType::Update {
        return Ok(None);
    }
    let error = |kind: &'static str, reason: String| ItemError {
        op: op.as_str(),
        index: Some(index.to_string()).filter(|s| !s.is_empty()),
        id: id.clone(),
        status: 400,
        kind,
        reason: format!("line {number}: {reason}"),
    };
    if let Some(map) = object(source) {
        return Ok(Some(Value::Object(map)));
    }
    // Not a JSON object: serde_json reads it again and says why, in its words.
    match serde_json::from_slice::<Map<String, Value>>(source) {
        Ok(map) => Ok(Some(Value::Object(map))),
        Err(e) if e.is_data() => Err(error(
            "document_parsing_exception",
            format!("the document source must be a JSON object: {e}"),
        )),
        Err(e) => Err(error(
            "document_parsing_exception",
            format!("failed to parse the document source: {e}"),
        )),
    }
}

/// A source that is a JSON object, parsed as `serde_json::from_slice` parses it (the same
/// values, keys in order, a repeated key's last value in its first place), with each object's
/// map sized once for its keys: serde_json's own parse grows every map key by key, and the
/// rehashing was 4% of `_bulk`'s CPU. `None` for anything else (not JSON, not an object).
pub fn object(source: &[u8]) -> Option<Map<String, Value>> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(source);
    let mut entries = Vec::new();
    let value = Presized(&mut entries).deserialize(&mut de).ok()?;
    de.end().ok()?;
    match value {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Reads one JSON value; members of the objects being read wait on the shared stack until
/// their object ends.
struct Presized<'s>(&'s mut Vec<(String, Value)>);

impl<'de> serde::de::DeserializeSeed<'de> for Presized<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Presized<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let base = self.0.len();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Presized(&mut *self.0))?;
            self.0.push((key, value));
        }
        let mut object = Map::with_capacity(self.0.len() - base);
        object.extend(self.0.drain(base..));
        Ok(Value::Object(object))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(Presized(&mut *self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_as_serde_json_parses_them() {
        let docs = [
            r#"{}"#,
            r#"{"a":1,"b":{"c":[1,2.5,-3,1e300,{"d":null}],"e":"x\u00e9\n"},"f":true}"#,
            r#"{"z":1,"a":2,"m":{"y":1,"b":2},"a":3}"#,
            r#" { "user" : { "name" : "ann" } , "n": 18446744073709551615, "i": -9223372036854775808 } "#,
            r#"{"f":0.1,"g":1.7976931348623157e308,"h":5e-324,"k":[],"l":[[[]]]}"#,
            r#"{"$serde_json::private::RawValue":"1"}"#,
        ];
        for doc in docs {
            let ours = object(doc.as_bytes()).unwrap_or_else(|| panic!("{doc}"));
            let theirs: Map<String, Value> = serde_json::from_str(doc).unwrap();
            assert_eq!(ours, theirs, "{doc}");
            // Same keys in the same order (Map's equality ignores order).
            assert_eq!(
                serde_json::to_string(&ours).unwrap(),
                serde_json::to_string(&theirs).unwrap()
            );
        }
        for bad in [
            "[1]",
            "\"x\"",
            "1",
            "{",
            "{\"a\":}",
            "{} {}",
            "{\"a\":1}x",
            "",
        ] {
            assert!(object(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    fn body(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn ops(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match e {
                Entry::Item(i) => format!("{}:{}", i.op.as_str(), i.index),
                Entry::Failed(f) => format!("ERR:{}", f.kind),
            })
            .collect()
    }

    #[test]
    fn pairs_actions_with_sources_and_keeps_bytes() {
        let b = body(
            "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"x\": 1}\r\n{\"delete\":{\"_index\":\"a\",\"_id\":\"2\"}}\n\n{\"create\":{}}\n{\"y\":2}\n{\"update\":{\"_id\":\"3\"}}\n{\"doc\":{\"z\":3}}\n",
        );
        let entries = parse(&b, Some("dflt")).unwrap();
        assert_eq!(
            ops(&entries),
            ["index:a", "delete:a", "create:dflt", "update:dflt"]
        );
        let Entry::Item(first) = &entries[0] else {
            panic!()
        };
        assert_eq!(&first.source_line.as_ref().unwrap()[..], b"{\"x\": 1}");
        assert_eq!(first.id.as_deref(), Some("1"));
    }

    #[test]
    fn bad_lines_fail_in_place_and_the_rest_proceeds() {
        let b = body(concat!(
            "{\"index\":{\"_index\":\"a\"}}\n{not json}\n",
            "{\"upsert\":{}}\n{\"x\":1}\n",
            "{broken action\n{\"x\":1}\n",
            "{\"index\":{\"_index\":\"a\"}}\n[1,2]\n",
            "{\"index\":{}}\n{\"x\":1}\n",
            "{\"index\":{\"_index\":\"a\"}}\n{\"ok\":true}\n",
        ));
        let entries = parse(&b, None).unwrap();
        assert_eq!(
            ops(&entries),
            [
                "ERR:document_parsing_exception",
                "ERR:illegal_argument_exception",
                "ERR:x_content_parse_exception",
                "ERR:document_parsing_exception",
                "ERR:action_request_validation_exception",
                "index:a",
            ]
        );
    }

    #[test]
    fn a_malformed_action_followed_by_an_action_does_not_swallow_it() {
        let b = body("{oops\n{\"delete\":{\"_index\":\"a\",\"_id\":\"1\"}}\n");
        let entries = parse(&b, None).unwrap();
        assert_eq!(ops(&entries), ["ERR:x_content_parse_exception", "delete:a"]);
    }

    #[test]
    fn framing_errors_fail_the_request() {
        assert_eq!(
            parse(&body("{\"index\":{}}\n{}"), Some("a")).unwrap_err(),
            BulkError::NoTrailingNewline
        );
        assert_eq!(parse(&body("\n \n"), None).unwrap_err(), BulkError::Empty);
        let entries = parse(&body("{\"index\":{\"_index\":\"a\"}}\n"), None).unwrap();
        assert_eq!(ops(&entries), ["ERR:action_request_validation_exception"]);
    }

    #[test]
    fn non_utf8_is_a_per_item_error() {
        let mut raw = b"{\"index\":{\"_index\":\"a\"}}\n{\"x\":\"".to_vec();
        raw.extend_from_slice(&[0xff, 0xfe]);
        raw.extend_from_slice(b"\"}\n");
        let entries = parse(&Bytes::from(raw), None).unwrap();
        assert_eq!(ops(&entries), ["ERR:document_parsing_exception"]);
    }
}
