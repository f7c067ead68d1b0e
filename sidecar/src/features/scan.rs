//! Reading the fields a model needs straight from a document's bytes.
//!
//! Building a whole document as a `serde_json::Value` (a map per object, a `String` and a hash per
//! key) costs more than scoring it with 300 trees, and the scoring API reads only the features'
//! source fields of a document whose bytes it echoes anyway. A [`Scanner`] walks the bytes once,
//! keeps the values at its source paths and skips everything else.
//!
//! It finds a field where [`lookup`](super::lookup) finds it: nested, dotted and mixed keys
//! (`{"url":{"original":x}}`, `{"url.original":x}`), the first element of an array on the way.
//! Where the two could disagree it gives up and the caller parses the whole document instead: a
//! field reached twice (a duplicate key, whose last value a parsed map keeps, or a dotted and a
//! nested key both leading to it, where `lookup`'s order decides), a document that is not an
//! object, or invalid JSON. A set of paths where one is a prefix of another (`a` and `a.b`) gets
//! no scanner at all.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

#[derive(Debug, Clone, Default)]
struct Node {
    /// (key segment, node)
    children: Vec<(Box<str>, usize)>,
    /// The source path ending here.
    path: Option<usize>,
}

/// A compiled set of dotted source paths.
#[derive(Debug, Clone)]
pub struct Scanner {
    nodes: Vec<Node>,
    paths: Vec<String>,
}

/// What a scan found in one document.
#[derive(Debug, Clone, PartialEq)]
pub struct Scanned {
    /// The value at each path, in [`Scanner::paths`] order, as [`lookup_whole`](super::lookup_whole)
    /// returns it (`null` included).
    pub values: Vec<Option<Value>>,
    /// The document has the top-level key the scan was asked to watch.
    pub has_watched: bool,
    /// The document is `{}`.
    pub empty: bool,
}

impl Scanner {
    /// `None` when one path is a prefix of another (both read through one key).
    pub fn new<'p>(paths: impl IntoIterator<Item = &'p str>) -> Option<Scanner> {
        let mut s = Scanner {
            nodes: vec![Node::default()],
            paths: Vec::new(),
        };
        for path in paths {
            if s.paths.iter().any(|p| p == path) {
                continue;
            }
            let mut n = 0;
            for segment in path.split('.') {
                n = match s.child(n, segment) {
                    Some(c) => c,
                    None => {
                        s.nodes.push(Node::default());
                        let c = s.nodes.len() - 1;
                        s.nodes[n].children.push((segment.into(), c));
                        c
                    }
                };
            }
            s.nodes[n].path = Some(s.paths.len());
            s.paths.push(path.to_string());
        }
        let prefix = s
            .nodes
            .iter()
            .any(|n| n.path.is_some() && !n.children.is_empty());
        (!prefix).then_some(s)
    }

    /// The paths, in the order of [`Scanned::values`].
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    fn child(&self, n: usize, segment: &str) -> Option<usize> {
        self.nodes[n]
            .children
            .iter()
            .find(|(s, _)| &**s == segment)
            .map(|&(_, c)| c)
    }

    /// The node a key leads to from `n` (a dotted key walks one segment per part), and the
    /// position of the key's first segment among `n`'s children. The search for that segment
    /// starts at `hint`: documents tend to list fields in the order the paths were added, so
    /// the next child is usually the one after the last found.
    fn walk(&self, n: usize, key: &str, hint: usize) -> Option<(usize, usize)> {
        let (first, rest) = match key.split_once('.') {
            Some((first, rest)) => (first, Some(rest)),
            None => (key, None),
        };
        let children = &self.nodes[n].children;
        let k = children.len();
        let at = (0..k)
            .map(|j| (hint + j) % k)
            .find(|&j| &*children[j].0 == first)?;
        let node = children[at].1;
        let node = match rest {
            None => node,
            Some(rest) => rest
                .split('.')
                .try_fold(node, |n, segment| self.child(n, segment))?,
        };
        Some((node, at))
    }

    /// Scans one JSON document; `None` when it must be parsed whole instead (see the module doc).
    pub fn scan(&self, doc: &str, watched: &str) -> Option<Scanned> {
        let mut found = Found {
            scanned: Scanned {
                values: vec![None; self.paths.len()],
                has_watched: false,
                empty: true,
            },
            object: false,
            reached: vec![0; self.nodes.len()],
            visits: 0,
        };
        let mut de = serde_json::Deserializer::from_str(doc);
        let level = Level {
            scanner: self,
            node: 0,
            found: &mut found,
            watched: Some(watched),
            in_array: false,
        };
        level.deserialize(&mut de).ok()?;
        de.end().ok()?;
        found.object.then_some(found.scanned)
    }
}

struct Found {
    scanned: Scanned,
    object: bool,
    /// Per trie node, the number of the last object visit that reached it.
    reached: Vec<u32>,
    visits: u32,
}

/// One object (or the array holding it) at trie node `node`.
struct Level<'s> {
    scanner: &'s Scanner,
    node: usize,
    found: &'s mut Found,
    /// Set at the top level only.
    watched: Option<&'s str>,
    /// An array's element: `lookup` does not unwrap a second array level.
    in_array: bool,
}

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// Stops the scan: the caller parses the document whole.
fn give_up<E: de::Error>() -> E {
    E::custom("ambiguous field")
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let top = self.watched.is_some();
        if top {
            self.found.object = true;
        }
        // Trie nodes reached from this object are stamped with its visit number: a second key
        // reaching one is a duplicate.
        self.found.visits += 1;
        let visit = self.found.visits;
        let mut hint = 0;
        while let Some(key) = map.next_key_seed(Key)? {
            if top {
                self.found.scanned.empty = false;
                if self.watched == Some(&*key) {
                    self.found.scanned.has_watched = true;
                }
            }
            let Some((n, at)) = self.scanner.walk(self.node, &key, hint) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            hint = at + 1;
            if self.found.reached[n] == visit {
                return Err(give_up());
            }
            self.found.reached[n] = visit;
            match self.scanner.nodes[n].path {
                Some(p) => {
                    let value: Value = map.next_value()?;
                    let slot = &mut self.found.scanned.values[p];
                    if slot.is_some() {
                        return Err(give_up());
                    }
                    *slot = Some(value);
                }
                None => map.next_value_seed(Level {
                    scanner: self.scanner,
                    node: n,
                    found: &mut *self.found,
                    watched: None,
                    in_array: false,
                })?,
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if !self.in_array && self.watched.is_none() {
            seq.next_element_seed(Level {
                scanner: self.scanner,
                node: self.node,
                found: &mut *self.found,
                watched: None,
                in_array: true,
            })?;
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A key, borrowed from the input unless it has escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{first_value, lookup, lookup_whole};
    use super::*;

    const PATHS: [&str; 5] = [
        "url.original",
        "source.geo.country_iso_code",
        "event.id",
        "@timestamp",
        "a..b",
    ];

    /// The scan finds what `lookup` finds in the parsed document (through `first_value`, as
    /// extraction reads it), or gives up.
    fn agrees(doc: &str) -> Option<Scanned> {
        let s = Scanner::new(PATHS).unwrap();
        let scanned = s.scan(doc, "ml")?;
        let parsed: Value = serde_json::from_str(doc).unwrap();
        for (p, got) in s.paths().iter().zip(&scanned.values) {
            assert_eq!(
                got.as_ref().and_then(first_value),
                lookup(&parsed, p),
                "{p} in {doc}"
            );
            if let Some(whole) = lookup_whole(&parsed, p) {
                assert_eq!(got.as_ref(), Some(whole), "{p} in {doc}");
            }
        }
        let object = parsed.as_object().unwrap();
        assert_eq!(scanned.has_watched, object.contains_key("ml"), "{doc}");
        assert_eq!(scanned.empty, object.is_empty(), "{doc}");
        Some(scanned)
    }

    #[test]
    fn finds_fields_where_lookup_does() {
        for doc in [
            r#"{"url": {"original": "http://a"}, "event": {"id": "e1"}, "x": [1, {"y": 2}]}"#,
            r#"{"url.original": "http://b", "source": {"geo.country_iso_code": "FR"}}"#,
            r#"{"source.geo": {"country_iso_code": ["DE", "FR"]}, "@timestamp": "2026-01-01"}"#,
            r#"{"url": [{"original": "first"}, {"original": "second"}]}"#,
            r#"{"url": [[{"original": "nested array"}]]}"#,
            r#"{"url": "not an object", "event": null, "ml": {"inference": {}}}"#,
            r#"{"url": {"original": null}, "a": {"": {"b": 1}}}"#,
            r#"{"u\u0072l": {"ori\u0067inal": "escaped keys"}, "ml": 1}"#,
            r#"{"url": {"original": {"deep": [1, 2]}}, "event": {"id": 7.25e3}}"#,
            r#"{"url.": 1, ".url": 2, "url..original": 3, "event": []}"#,
            r#"{}"#,
            r#"{"x": {"x": {"x": [[[]]]}}}"#,
        ] {
            assert!(agrees(doc).is_some(), "gave up on {doc}");
        }
    }

    #[test]
    fn gives_up_where_lookup_order_or_duplicates_decide() {
        let s = Scanner::new(PATHS).unwrap();
        for doc in [
            r#"{"url.original": "a", "url": {"original": "b"}}"#,
            r#"{"url": {"original": "a"}, "url": 5}"#,
            r#"{"event": {"id": 1, "id": 2}}"#,
            r#"[{"url": {"original": "a"}}]"#,
            r#""text""#,
            r#"{"url": {"original": "a"}"#,
            r#"{"url": 1} trailing"#,
        ] {
            assert_eq!(s.scan(doc, "ml"), None, "{doc}");
        }
        // Duplicates of keys no path reads do not matter.
        assert!(agrees(r#"{"x": 1, "x": 2, "event": {"id": 3}}"#).is_some());
    }

    #[test]
    fn a_path_prefixing_another_gets_no_scanner() {
        assert!(Scanner::new(["a", "a.b"]).is_none());
        assert!(Scanner::new(["a.b", "a.c", "a.b"]).is_some());
    }
}
