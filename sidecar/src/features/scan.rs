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
//!
//! The bytes are read by a strict JSON reader of its own rather than through serde_json's
//! visitor: [`read_batch`] then splits a scoring request into its documents and scans each in the
//! same pass (serde_json skipped every document once to split the body and again to scan it), and
//! fractional numbers are parsed by `lexical-parse-float` in JSON's grammar (correctly rounded, as
//! serde_json's `float_roundtrip`, at a fraction of its cost for the 17-digit numbers serializers
//! write). The
//! reader accepts only what serde_json accepts; anything it is unsure of (deep nesting, numbers
//! out of range, surrogate escapes it cannot pair) it leaves to serde_json, which then reads the
//! document, or the whole body, as before. `tests/scanned_extraction.rs` checks both against
//! serde_json on edited bodies, the unit tests below on numbers, and the `feature_extraction`
//! fuzz target on arbitrary bytes.

use lexical_parse_float::FromLexicalWithOptions;
use std::borrow::Cow;

use serde_json::{Number, Value};

use super::source::{within, Fields};

#[derive(Debug, Clone, Default)]
struct Node {
    children: Vec<Child>,
    /// The source path ending here.
    path: Option<usize>,
}

/// A key segment leading to a trie node.
#[derive(Debug, Clone)]
struct Child {
    /// The segment's first 8 bytes, zero-padded ([`prefix`]): with the length (kept in the
    /// `Box<str>` itself) most segments are compared without reaching for their bytes.
    prefix: u64,
    segment: Box<str>,
    node: usize,
}

impl Child {
    fn is(&self, key: &[u8], prefix: u64) -> bool {
        self.prefix == prefix
            && self.segment.len() == key.len()
            && (key.len() <= 8 || same(&self.segment.as_bytes()[8..], &key[8..]))
    }
}

/// A key's first 8 bytes, zero-padded.
fn prefix(key: &[u8]) -> u64 {
    // Byte by byte: a `copy_from_slice` of a variable length is a `memcpy` call per key.
    key.iter()
        .take(8)
        .enumerate()
        .fold(0, |v, (i, &b)| v | u64::from(b) << (8 * i))
}

/// A compiled set of dotted source paths.
#[derive(Debug, Clone)]
pub struct Scanner {
    nodes: Vec<Node>,
    paths: Vec<String>,
    /// Gives up on an array on the way to a path ([`Scanner::strict`]).
    strict: bool,
}

/// What a scan found in one document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scanned {
    /// The value at each path, in [`Scanner::paths`] order, as [`lookup_whole`](super::lookup_whole)
    /// returns it (`null` included).
    pub values: Vec<Slot>,
    /// The document has the top-level key the scan was asked to watch.
    pub has_watched: bool,
    /// The document is `{}`.
    pub empty: bool,
}

/// The value found at one path. Numbers, the usual feature value, are kept as serde_json's
/// [`Number`] (24 bytes a slot, written in place); anything else is boxed. A `Value` per slot
/// (72 bytes with `preserve_order`) was built on the stack and copied into its slot for every
/// number, and that copy stalled on store forwarding.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Slot {
    /// The path is not in the document.
    #[default]
    Missing,
    Number(Number),
    Other(Box<Value>),
}

impl Slot {
    fn of(value: Value) -> Slot {
        match value {
            Value::Number(n) => Slot::Number(n),
            other => Slot::Other(Box::new(other)),
        }
    }

    /// The whole value found, as [`lookup_whole`](super::lookup_whole) returns it, except that a
    /// `null` is kept (`lookup_whole` reads it as absent; [`Slot::first`] gives `None` for it).
    pub fn whole(&self) -> Option<Cow<'_, Value>> {
        match self {
            Slot::Missing => None,
            Slot::Number(n) => Some(Cow::Owned(Value::Number(n.clone()))),
            Slot::Other(v) => Some(Cow::Borrowed(v)),
        }
    }

    /// The value extraction reads, as [`first_value`](super::first_value) of the whole value
    /// (the first element of an array; `None` for `null`).
    pub fn first(&self) -> Option<Cow<'_, Value>> {
        match self {
            Slot::Other(v) => super::first_value(v).map(Cow::Borrowed),
            _ => self.whole(),
        }
    }
}

impl Scanner {
    /// `None` when one path is a prefix of another (both read through one key).
    pub fn new<'p>(paths: impl IntoIterator<Item = &'p str>) -> Option<Scanner> {
        let mut s = Scanner {
            nodes: vec![Node::default()],
            paths: Vec::new(),
            strict: false,
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
                        s.nodes[n].children.push(Child {
                            prefix: prefix(segment.as_bytes()),
                            segment: segment.into(),
                            node: c,
                        });
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

    /// This scanner, giving up on any array on the way to a path (an array at a path's end is
    /// kept whole). `lookup` reads such an array's first element but
    /// [`rules::doc::first`](crate::rules::doc::first) reads every element, so only without
    /// them does a [`View`] answer both ways as the parsed document does.
    pub fn strict(mut self) -> Scanner {
        self.strict = true;
        self
    }

    /// The position of `path` among [`Scanner::paths`].
    pub fn index_of(&self, path: &str) -> Option<usize> {
        path.split('.')
            .try_fold(0, |n, segment| self.child(n, segment))
            .and_then(|n| self.nodes[n].path)
    }

    fn child(&self, n: usize, segment: &str) -> Option<usize> {
        let (key, prefix) = (segment.as_bytes(), prefix(segment.as_bytes()));
        self.nodes[n]
            .children
            .iter()
            .find(|c| c.is(key, prefix))
            .map(|c| c.node)
    }

    /// The node a key leads to from `n` (a dotted key walks one segment per part), and the
    /// position of the key's first segment among `n`'s children. The search for that segment
    /// starts at `hint`: documents tend to list fields in the order the paths were added, so
    /// the next child is usually the one after the last found.
    fn walk(&self, n: usize, key: &str, hint: usize) -> Option<(usize, usize)> {
        let (first, rest) = match key.bytes().position(|c| c == b'.') {
            Some(dot) => (&key[..dot], Some(&key[dot + 1..])),
            None => (key, None),
        };
        let children = &self.nodes[n].children;
        let (key, prefix) = (first.as_bytes(), prefix(first.as_bytes()));
        let is = |j: usize| children[j].is(key, prefix);
        let at = if hint < children.len() && is(hint) {
            hint
        } else {
            (0..children.len()).find(|&j| j != hint && is(j))?
        };
        let node = children[at].node;
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
        let mut reader = Reader::new(doc);
        let mut found = Found::new(self);
        reader.ws();
        let scanned = self.read(&mut reader, &mut found, watched).ok()?;
        reader.ws();
        (reader.i == doc.len()).then_some(scanned)
    }

    /// Reads the document at the reader's position (an object, else `Ambiguous`).
    fn read(&self, r: &mut Reader, found: &mut Found, watched: &str) -> Step<Scanned> {
        if r.peek() != Some(b'{') {
            return Err(Stop::Ambiguous);
        }
        found.scanned = Scanned {
            values: vec![Slot::Missing; self.paths.len()],
            has_watched: false,
            empty: true,
        };
        r.object(self, found, 0, Some(watched))?;
        Ok(std::mem::take(&mut found.scanned))
    }
}

/// A scanned document read through [`Fields`]: what its parsed whole gives at each scanned path.
/// Reading a path the scanner was not built with is a bug in the caller (debug builds panic;
/// release builds read it as absent).
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub scanner: &'a Scanner,
    pub scanned: &'a Scanned,
}

impl<'a> View<'a> {
    fn slot(&self, path: &str) -> Option<&'a Slot> {
        let at = self.scanner.index_of(path);
        debug_assert!(at.is_some(), "[{path}] is not among the scanned paths");
        at.map(|i| &self.scanned.values[i])
    }
}

impl Fields for View<'_> {
    fn whole(&self, path: &str) -> Option<Cow<'_, Value>> {
        self.slot(path)?.whole().filter(|v| !v.is_null())
    }

    fn first(&self, path: &str) -> Option<Cow<'_, Value>> {
        self.slot(path)?.first()
    }

    fn leaf(&self, path: &str) -> Option<Cow<'_, Value>> {
        fn leaf(v: &Value) -> Option<&Value> {
            match v {
                Value::Null => None,
                Value::Array(items) => items.iter().find_map(leaf),
                other => Some(other),
            }
        }
        within(&self.slot(path)?.whole()?, leaf)
    }

    fn has_key(&self, key: &str) -> bool {
        self.slot(key).is_some_and(|s| *s != Slot::Missing)
    }

    fn not_object(&self) -> Option<String> {
        None
    }
}

/// Byte-wise equality, inline: keys are short, and a `memcmp` call per key cost more than the
/// comparison.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// One document of a batch read by [`read_batch`].
#[derive(Debug)]
pub struct BatchDoc<'a> {
    /// The document's text, as [`serde_json::value::RawValue`] would give it.
    pub text: &'a str,
    /// What the scanner found; `None` when the document must be parsed whole (no scanner, or
    /// the scanner gave up on it).
    pub scanned: Option<Scanned>,
}

/// Reads a scoring request's body, `{"docs": [...]}` or a bare array, in one pass: each
/// document's text and, with a scanner, its fields. `None` for anything else (another shape,
/// invalid JSON anywhere, more than `limit` documents, nesting deeper than this reader follows,
/// escapes it leaves to serde_json): the caller then reads the body with serde_json, which
/// accepts or refuses it exactly as before and says why. Whatever this accepts, serde_json
/// accepts too, and splits into the same texts.
pub fn read_batch<'a>(
    scanner: Option<&Scanner>,
    body: &'a str,
    watched: &str,
    limit: usize,
) -> Option<Vec<BatchDoc<'a>>> {
    let mut r = Reader::new(body);
    let mut found = scanner.map(Found::new);
    r.ws();
    let wrapped = r.eat(b'{');
    if wrapped {
        r.ws();
        let (key, escaped) = r.string().ok()?;
        if escaped || key != "docs" {
            return None;
        }
        r.ws();
        r.expect(b':').ok()?;
        r.ws();
    }
    let mut docs = Vec::new();
    r.elements(|r, n| {
        if n == limit {
            return Err(Stop::Invalid);
        }
        let (start, depth) = (r.i, r.depth);
        let scanned = match (scanner, &mut found) {
            (Some(s), Some(found)) => match s.read(r, found, watched) {
                Ok(scanned) => Some(scanned),
                Err(Stop::Invalid) => return Err(Stop::Invalid),
                Err(Stop::Ambiguous) => {
                    // Valid so far: find the document's end; it is parsed whole.
                    (r.i, r.depth) = (start, depth);
                    r.skip()?;
                    None
                }
            },
            _ => {
                r.skip()?;
                None
            }
        };
        docs.push(BatchDoc {
            text: &body[start..r.i],
            scanned,
        });
        Ok(())
    })
    .ok()?;
    if wrapped {
        r.ws();
        r.expect(b'}').ok()?;
    }
    r.ws();
    (r.i == body.len()).then_some(docs)
}

/// Why a read stopped.
#[derive(Debug)]
enum Stop {
    /// Not JSON as serde_json reads it, or something this reader leaves to serde_json (nesting
    /// deeper than [`MAX_DEPTH`], numbers out of range, surrogate escapes it does not pair).
    Invalid,
    /// Valid so far, but a field could read differently than [`lookup`](super::lookup) reads
    /// it (see the module doc), or the document is not an object.
    Ambiguous,
}

type Step<T> = Result<T, Stop>;

/// Nesting this reader follows; serde_json refuses more than 128 levels, and deeper documents
/// go to it.
const MAX_DEPTH: u32 = 100;

struct Found {
    scanned: Scanned,
    /// Per trie node, the number of the last object visit that reached it.
    reached: Vec<u32>,
    visits: u32,
}

impl Found {
    fn new(scanner: &Scanner) -> Found {
        Found {
            scanned: Scanned::default(),
            reached: vec![0; scanner.nodes.len()],
            visits: 0,
        }
    }
}

/// A strict JSON reader over a `str` (so UTF-8 is already checked): it accepts exactly what
/// serde_json accepts, except for what it refuses as [`Stop::Invalid`] to leave to serde_json.
struct Reader<'a> {
    text: &'a str,
    i: usize,
    depth: u32,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Reader<'a> {
        Reader {
            text,
            i: 0,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        let here = self.peek() == Some(c);
        self.i += usize::from(here);
        here
    }

    fn expect(&mut self, c: u8) -> Step<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(Stop::Invalid)
        }
    }

    fn enter(&mut self) -> Step<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Stop::Invalid);
        }
        Ok(())
    }

    /// The string at the reader's position: its text between the quotes, and whether it has
    /// escapes (then the text is not the string's value).
    fn string(&mut self) -> Step<(&'a str, bool)> {
        let b = self.text.as_bytes();
        if self.peek() != Some(b'"') {
            return Err(Stop::Invalid);
        }
        let start = self.i + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            match b.get(i) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    i = self.escape(i + 1)?;
                }
                Some(&c) if c >= 0x20 => i += 1,
                _ => return Err(Stop::Invalid),
            }
        }
        self.i = i + 1;
        Ok((&self.text[start..i], escaped))
    }

    /// Past the escape whose letter is at `i`. A `\u` escape of a surrogate must be a leading
    /// one followed by a trailing one.
    fn escape(&self, i: usize) -> Step<usize> {
        let b = self.text.as_bytes();
        match b.get(i) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 1),
            Some(b'u') => match self.hex4(i + 1)? {
                0xD800..=0xDBFF
                    if b.get(i + 5..i + 7) == Some(b"\\u")
                        && (0xDC00..=0xDFFF).contains(&self.hex4(i + 7)?) =>
                {
                    Ok(i + 11)
                }
                0xD800..=0xDFFF => Err(Stop::Invalid),
                _ => Ok(i + 5),
            },
            _ => Err(Stop::Invalid),
        }
    }

    fn hex4(&self, i: usize) -> Step<u32> {
        let digits = self.text.as_bytes().get(i..i + 4).ok_or(Stop::Invalid)?;
        digits.iter().try_fold(0, |v, &d| {
            let d = char::from(d).to_digit(16).ok_or(Stop::Invalid)?;
            Ok(v << 4 | d)
        })
    }

    /// The number at the reader's position (JSON's grammar: no leading zeros, no `+`, digits
    /// after `.` and `e`): its text, and whether it is an integer.
    fn number(&mut self) -> Step<(&'a str, bool)> {
        let b = self.text.as_bytes();
        let start = self.i;
        let mut i = start + usize::from(b.get(start) == Some(&b'-'));
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(i + 1),
            _ => return Err(Stop::Invalid),
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            integer = false;
            let end = digits(i + 1);
            if end == i + 1 {
                return Err(Stop::Invalid);
            }
            i = end;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            integer = false;
            i += 1;
            i += usize::from(matches!(b.get(i), Some(b'+' | b'-')));
            let end = digits(i);
            if end == i {
                return Err(Stop::Invalid);
            }
            i = end;
        }
        self.i = i;
        Ok((&self.text[start..i], integer))
    }

    fn literal(&mut self, word: &str) -> Step<()> {
        if self.text[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Stop::Invalid)
        }
    }

    /// Past the value at the reader's position, checking it.
    fn skip(&mut self) -> Step<()> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'{') => self.members(|r| r.skip()),
            Some(b'[') => self.elements(|r, _| r.skip()),
            _ => Err(Stop::Invalid),
        }
    }

    /// Past the object at the reader's position, calling `value` at each member's value.
    fn members(&mut self, mut value: impl FnMut(&mut Self) -> Step<()>) -> Step<()> {
        self.object_keys(|r, _| value(r))
    }

    /// Past the object at the reader's position, calling `value` with each key (decoded) at
    /// its value.
    fn object_keys(&mut self, mut value: impl FnMut(&mut Self, &str) -> Step<()>) -> Step<()> {
        self.list(b'{', b'}', |r, _| {
            let at = r.i;
            let (key, escaped) = r.string()?;
            let decoded: String;
            let key = if escaped {
                decoded = serde_json::from_str(&r.text[at..r.i]).map_err(|_| Stop::Invalid)?;
                &decoded
            } else {
                key
            };
            r.ws();
            r.expect(b':')?;
            r.ws();
            value(r, key)
        })
    }

    /// Past the array at the reader's position, calling `element` at each element with its
    /// position.
    fn elements(&mut self, element: impl FnMut(&mut Self, usize) -> Step<()>) -> Step<()> {
        self.list(b'[', b']', element)
    }

    /// Past the object or array at the reader's position (opened by `open`, closed by `close`),
    /// calling `item` at each member or element with its position.
    fn list(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self, usize) -> Step<()>,
    ) -> Step<()> {
        self.expect(open)?;
        self.enter()?;
        self.ws();
        if !self.eat(close) {
            for n in 0.. {
                self.ws();
                item(self, n)?;
                self.ws();
                if self.eat(b',') {
                    continue;
                }
                self.expect(close)?;
                break;
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// The value at the reader's position, as serde_json parses it. Numbers with a fraction or
    /// an exponent are read by `lexical-parse-float` in JSON's grammar, correctly rounded as
    /// serde_json's (`float_roundtrip`) and in one pass; everything else is handed to serde_json.
    fn value(&mut self) -> Step<Slot> {
        const JSON: u128 = lexical_parse_float::format::JSON;
        const OPTIONS: lexical_parse_float::Options = lexical_parse_float::Options::new();
        let start = self.i;
        if let Some(b'-' | b'0'..=b'9') = self.peek() {
            let rest = &self.text.as_bytes()[start..];
            let (x, n) = f64::from_lexical_partial_with_options::<JSON>(rest, &OPTIONS)
                .map_err(|_| Stop::Invalid)?;
            if rest[..n].iter().any(|c| matches!(c, b'.' | b'e' | b'E')) {
                self.i += n;
                return Number::from_f64(x).map(Slot::Number).ok_or(Stop::Invalid);
            }
            // An integer: serde_json decides between u64, i64 and f64.
            self.number()?;
        } else {
            self.skip()?;
        }
        let value = serde_json::from_str(&self.text[start..self.i]).map_err(|_| Stop::Invalid)?;
        Ok(Slot::of(value))
    }

    /// The object at the reader's position, at trie node `n`; `watched` at the top level.
    fn object(
        &mut self,
        s: &Scanner,
        found: &mut Found,
        n: usize,
        watched: Option<&str>,
    ) -> Step<()> {
        // Trie nodes reached from this object are stamped with its visit number: a second key
        // reaching one is a duplicate.
        found.visits += 1;
        let visit = found.visits;
        let mut hint = 0;
        self.object_keys(|r, key| {
            if let Some(watched) = watched {
                found.scanned.empty = false;
                found.scanned.has_watched |= key == watched;
            }
            let Some((c, at)) = s.walk(n, key, hint) else {
                return r.skip();
            };
            hint = at + 1;
            if found.reached[c] == visit {
                return Err(Stop::Ambiguous);
            }
            found.reached[c] = visit;
            match s.nodes[c].path {
                Some(p) => {
                    if found.scanned.values[p] != Slot::Missing {
                        return Err(Stop::Ambiguous);
                    }
                    found.scanned.values[p] = r.value()?;
                    Ok(())
                }
                None => r.inner(s, found, c, false),
            }
        })
    }

    /// The value at trie node `n` (not a path's end): an object is searched, and so is an
    /// array's first element (`lookup` does not unwrap a second array level).
    fn inner(&mut self, s: &Scanner, found: &mut Found, n: usize, in_array: bool) -> Step<()> {
        match self.peek() {
            Some(b'{') => self.object(s, found, n, None),
            Some(b'[') if s.strict => Err(Stop::Ambiguous),
            Some(b'[') if !in_array => self.elements(|r, i| match i {
                0 => r.inner(s, found, n, true),
                _ => r.skip(),
            }),
            _ => self.skip(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{lookup, lookup_whole};
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
            assert_eq!(got.first().as_deref(), lookup(&parsed, p), "{p} in {doc}");
            if let Some(whole) = lookup_whole(&parsed, p) {
                assert_eq!(got.whole().as_deref(), Some(whole), "{p} in {doc}");
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

    /// A strict scan read through [`View`] answers every [`Fields`] method as the parsed
    /// document does, or gives up (arrays on the way to a path, where `rules::doc::first` reads
    /// every element and `lookup` only the first).
    #[test]
    fn strict_views_read_as_the_parsed_document_or_give_up() {
        let paths = [
            "winlog.event_id",
            "category",
            "ml",
            "event.outcome",
            "a.b.c",
        ];
        let strict = Scanner::new(paths).unwrap().strict();
        let lenient = Scanner::new(paths).unwrap();
        assert_eq!(strict.index_of("category"), Some(1));
        assert_eq!(strict.index_of("a.b.c"), Some(4));
        assert_eq!(strict.index_of("a.b"), None);
        assert_eq!(strict.index_of("event"), None);
        for (doc, gives_up) in [
            (r#"{"winlog": {"event_id": 4625}, "ml": null}"#, false),
            (
                r#"{"winlog.event_id": "4624", "category": ["", "SignInLogs"]}"#,
                false,
            ),
            (
                r#"{"category": [null, [3, "x"]], "event": {"outcome": []}}"#,
                false,
            ),
            (
                r#"{"a": {"b.c": {"d": 1}}, "ml.inference": 1, "other": [1]}"#,
                false,
            ),
            (r#"{}"#, false),
            (r#"{"winlog": [{"x": 1}, {"event_id": 4625}]}"#, true),
            (r#"{"a": {"b": [{"c": 1}]}}"#, true),
        ] {
            assert!(lenient.scan(doc, "").is_some(), "{doc}");
            let Some(scanned) = strict.scan(doc, "") else {
                assert!(gives_up, "strict scan gave up on {doc}");
                continue;
            };
            assert!(!gives_up, "strict scan read {doc}");
            let parsed: Value = serde_json::from_str(doc).unwrap();
            let view = View {
                scanner: &strict,
                scanned: &scanned,
            };
            for p in paths {
                assert_eq!(view.whole(p), parsed.whole(p), "whole {p} in {doc}");
                assert_eq!(view.first(p), parsed.first(p), "first {p} in {doc}");
                assert_eq!(view.leaf(p), parsed.leaf(p), "leaf {p} in {doc}");
            }
            for key in ["ml", "category"] {
                assert_eq!(view.has_key(key), parsed.has_key(key), "{key} in {doc}");
            }
            assert_eq!(scanned.empty, parsed.as_object().unwrap().is_empty());
            assert_eq!(view.not_object(), None);
        }
    }

    /// A number as the reader reads it, against serde_json (`float_roundtrip`): the same variant
    /// and the same bits, or both refuse it.
    fn same_number(token: &str) {
        let mut reader = Reader::new(token);
        let ours = reader.value().ok().filter(|_| reader.i == token.len());
        let ours = ours.and_then(|slot| slot.whole().map(Cow::into_owned));
        let theirs: Option<Value> = serde_json::from_str(token).ok();
        let bits = |v: &Option<Value>| {
            v.as_ref()
                .map(|v| (v.is_u64(), v.is_i64(), v.as_f64().map(f64::to_bits)))
        };
        assert_eq!(bits(&ours), bits(&theirs), "{token}");
    }

    /// The point of [`Slot`]: a number is stored in a slot far smaller than a `Value`.
    #[test]
    fn slots_are_small() {
        assert!(
            std::mem::size_of::<Slot>() <= 24,
            "{}",
            std::mem::size_of::<Slot>()
        );
        assert!(std::mem::size_of::<Slot>() < std::mem::size_of::<Value>());
    }

    #[test]
    fn reads_numbers_as_serde_json_does() {
        for token in [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1",
            "-1",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1e5",
            "1E+5",
            "1e-5",
            "2.5e-3",
            "0.20749999582767487",
            "-1.194200038909912",
            "4.9e-324",
            "2.4703282292062327e-324",
            "2.4703282292062328e-324",
            "2.2250738585072011e-308",
            "1.7976931348623157e308",
            "1.7976931348623159e308",
            "1e400",
            "-1e400",
            "1e-400",
            "9007199254740993",
            "9007199254740993.0",
            "0.1000000000000000055511151231257827021181583404541015625",
            "123456789012345678901234567890.5e-10",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "1.5e+",
            "-01",
            "-01.5",
            "1.0e",
            "-.5",
            "1e+05",
            "1E-0",
            "0e0",
            "-0e-0",
            "0.e1",
            "1.5E308",
            "1.00000000000000011102230246251565404236316680908203125",
            "7.2057594037927933e16",
            "1e-7",
            "5e-324",
            "2e-324",
            "1.5e-1_0",
            "NaN",
            "Infinity",
            "-Infinity",
            "0x10",
        ] {
            same_number(token);
        }
        // Random numbers in the forms serializers write: shortest round trips, f32 values
        // widened, and long digit strings with exponents.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(x);
            if f.is_finite() {
                same_number(&format!("{f:e}"));
                same_number(&serde_json::to_string(&f).unwrap());
            }
            same_number(&serde_json::to_string(&f64::from(f32::from_bits(x as u32))).unwrap());
            let digits = x % 10_u64.pow(1 + (x % 19) as u32);
            let exponent = (x >> 40) as i64 % 330 - 165;
            same_number(&format!("{digits}.{}e{exponent}", x >> 45));
        }
    }

    #[test]
    fn a_path_prefixing_another_gets_no_scanner() {
        assert!(Scanner::new(["a", "a.b"]).is_none());
        assert!(Scanner::new(["a.b", "a.c", "a.b"]).is_some());
    }
}
