//! Behavioural features: each document judged against its entity's own history (is this country
//! new for this user, how many failures preceded it, how fast would they have travelled).
//!
//! The contract is in `docs/bundle-format.md` ("Behavioural features"). History lives in a
//! bounded moka cache weighted in bytes, one entry per entity (a user, a source IP) holding one
//! history per *stream*: (entity path, `when` filter, source path), so features reading the same
//! events share one history (`failures_15m` and `failures_1h`). Documents are processed in
//! event-time order; a document's features are computed before its own event is recorded, and
//! it is recorded once per stream however many models read it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use super::lookup;
use super::source::within;
use super::transform::timestamp;
use super::{first_value, lookup_whole, Fields};

/// The hasher of the state's per-document maps and of its cache, hashed several times per
/// event: foldhash, seeded randomly per process (so entity values chosen by a sender cannot be
/// precomputed to collide), several times faster than SipHash on these short keys.
type FastHash = foldhash::fast::RandomState;

/// At most this many recorded events per entity and stream (the oldest go first).
pub const MAX_EVENTS_PER_ENTITY: usize = 1024;
/// Records beyond [`MAX_EVENTS_PER_ENTITY`] are kept (unseen, [`newest`]) until this many have
/// gathered, then dropped together: dropping the oldest record of a full history for each event
/// moved the whole history, 64 KiB, every time.
const DROP_SLACK: usize = MAX_EVENTS_PER_ENTITY / 8;
/// Events stamped further ahead of the wall clock are clock skew.
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;
/// Events older than the entity's newest recorded event by more than this come too late.
pub const MAX_LATENESS_MS: i64 = 60 * 60 * 1000;
/// Below these sizes a batch's events are read and its histories replayed on the calling thread:
/// handing a single document's few histories to other threads costs more than it saves.
const PARALLEL_MIN_DOCS: usize = 32;
const PARALLEL_MIN_HISTORIES: usize = 32;
const DEFAULT_LOOKBACK_MS: i64 = 30 * 24 * 3600 * 1000;
const EARTH_RADIUS_KM: f64 = 6371.0088;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    FirstSeen,
    Count,
    DistinctCount,
    PairCount,
    SinceLast,
    VelocityKmh,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "first_seen" => Kind::FirstSeen,
            "count" => Kind::Count,
            "distinct_count" => Kind::DistinctCount,
            "pair_count" => Kind::PairCount,
            "since_last" => Kind::SinceLast,
            "velocity_kmh" => Kind::VelocityKmh,
            _ => return None,
        })
    }

    fn needs_window(self) -> bool {
        !matches!(self, Kind::SinceLast | Kind::VelocityKmh)
    }
}

/// Which events a stream records.
#[derive(Debug, Clone, PartialEq)]
pub struct When {
    pub field: String,
    pub equals: Value,
}

/// One behavioural feature, compiled from the manifest.
#[derive(Debug, Clone)]
pub struct BehaviourFeature {
    pub kind: Kind,
    pub entity: String,
    pub when: Option<When>,
    pub sources: Vec<String>,
    pub window_ms: i64,
    /// Identifies the history this feature reads (entity, filter, source).
    pub stream: Arc<str>,
    /// Identifies the feature's value (stream, kind, window): equal ids share one computation.
    pub id: Arc<str>,
    /// `stream` and `id` as numbers ([`name_number`]): compared per document instead of the
    /// text, whose long shared prefixes made every comparison a `memcmp`.
    pub stream_no: u32,
    pub id_no: u32,
}

/// The event time every behavioural feature orders and windows documents by.
pub const TIME_FIELD: &str = "@timestamp";

/// A number per distinct stream or feature id, the same for the process's lifetime (so streams
/// keep their histories across bundle reloads). Grows only with the distinct names the loaded
/// manifests declare.
pub fn name_number(name: &str) -> u32 {
    static NAMES: std::sync::OnceLock<Mutex<HashMap<Box<str>, u32>>> = std::sync::OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(&n) = names.get(name) {
        return n;
    }
    let n = u32::try_from(names.len()).expect("fewer than 2^32 stream names");
    names.insert(name.into(), n);
    n
}

impl BehaviourFeature {
    pub fn new(
        kind: Kind,
        entity: String,
        when: Option<When>,
        sources: Vec<String>,
        window_seconds: Option<u64>,
    ) -> Result<Self, String> {
        if entity.is_empty() {
            return Err("entity must be a dotted field path".into());
        }
        let window_ms = match (window_seconds, kind.needs_window()) {
            (Some(0), _) => return Err("window_seconds must be at least 1".into()),
            (Some(s), _) => (s as i64).saturating_mul(1000),
            (None, false) => DEFAULT_LOOKBACK_MS,
            (None, true) => return Err("window_seconds is required for this kind".into()),
        };
        let when_text = when
            .as_ref()
            .map(|w| format!("{}={}", w.field, w.equals))
            .unwrap_or_default();
        // Velocity reads locations: its history is kept apart from streams of plain values.
        let geo = if kind == Kind::VelocityKmh {
            "geo|"
        } else {
            ""
        };
        let stream: Arc<str> = format!("{geo}{entity}|{when_text}|{}", sources.join(",")).into();
        let id: Arc<str> = format!("{stream}|{kind:?}|{window_ms}").into();
        Ok(BehaviourFeature {
            kind,
            entity,
            when,
            sources,
            window_ms,
            stream_no: name_number(&stream),
            id_no: name_number(&id),
            stream,
            id,
        })
    }
}

impl BehaviourFeature {
    /// Every dotted path this feature reads from a document (besides [`TIME_FIELD`]): its
    /// entity, its `when` field and its sources.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.entity.as_str())
            .chain(self.when.iter().map(|w| w.field.as_str()))
            .chain(self.sources.iter().map(String::as_str))
    }

    /// The value (text form) and location this feature's stream records for `doc`.
    pub fn event_of(&self, doc: &Value) -> (Option<String>, Option<(f64, f64)>) {
        let (value, location) = self.event_from(
            self.sources
                .iter()
                .map(|p| lookup_whole(doc, p).map(Cow::Borrowed)),
        );
        (value.map(Cow::into_owned), location)
    }

    /// As [`BehaviourFeature::event_of`], from what [`lookup_whole`] found at each source path.
    fn event_from<'d>(
        &self,
        mut found: impl Iterator<Item = Option<Cow<'d, Value>>>,
    ) -> (Option<Cow<'d, str>>, Option<(f64, f64)>) {
        if self.kind == Kind::VelocityKmh {
            // A point may be a `[lon, lat]` array: read it whole.
            let source = found.find_map(|v| v);
            let at = source.as_deref().and_then(location);
            (source.as_ref().map(text_of), at)
        } else {
            let first = found.find_map(|v| v.as_ref().and_then(first_of));
            (first.as_ref().map(text_of), None)
        }
    }

    /// Whether this feature's stream records `doc` (its `when` filter).
    pub fn records(&self, doc: &Value) -> bool {
        self.records_given(|field| lookup(doc, field).map(Cow::Borrowed))
    }

    /// As [`BehaviourFeature::records`], reading the `when` field through `lookup`.
    fn records_given<'d>(&self, lookup: impl FnOnce(&str) -> Option<Cow<'d, Value>>) -> bool {
        match &self.when {
            None => true,
            Some(w) => lookup(&w.field).is_some_and(|v| *v == w.equals),
        }
    }
}

#[derive(Debug, Clone)]
struct Record {
    at: i64,
    value: Option<String>,
    location: Option<(f64, f64)>,
    /// `BehaviourState::key_of(value)`. First-seen and duplicate checks compare these first and
    /// the strings only when they are equal; pair and distinct counts count keys (two distinct
    /// values would have to collide in 64 bits, under a seed chosen per process, to count as
    /// one).
    key: u64,
}

/// Why a document's behavioural features were skipped (counted, exported).
#[derive(Debug, Default, Serialize)]
pub struct Skipped {
    pub no_timestamp: AtomicU64,
    pub no_entity: AtomicU64,
    pub clock_skew: AtomicU64,
    pub too_late: AtomicU64,
    pub duplicate: AtomicU64,
    pub bad_location: AtomicU64,
}

/// Why an event's behavioural features were skipped: the `reason` label of
/// `vigil_behaviour_skipped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    NoTimestamp,
    NoEntity,
    ClockSkew,
    TooLate,
    Duplicate,
    BadLocation,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoTimestamp => "no_timestamp",
            SkipReason::NoEntity => "no_entity",
            SkipReason::ClockSkew => "clock_skew",
            SkipReason::TooLate => "too_late",
            SkipReason::Duplicate => "duplicate",
            SkipReason::BadLocation => "bad_location",
        }
    }
}

/// Counter of skipped events (and of events without a usable location), by reason.
pub const SKIPPED_METRIC: &str = "vigil_behaviour_skipped_total";

impl Skipped {
    fn slot(&self, reason: SkipReason) -> &AtomicU64 {
        match reason {
            SkipReason::NoTimestamp => &self.no_timestamp,
            SkipReason::NoEntity => &self.no_entity,
            SkipReason::ClockSkew => &self.clock_skew,
            SkipReason::TooLate => &self.too_late,
            SkipReason::Duplicate => &self.duplicate,
            SkipReason::BadLocation => &self.bad_location,
        }
    }

    /// Adds one batch's skips here and in the metrics facade.
    fn add(&self, tally: &Tally) {
        for reason in [
            SkipReason::NoTimestamp,
            SkipReason::NoEntity,
            SkipReason::ClockSkew,
            SkipReason::TooLate,
            SkipReason::Duplicate,
            SkipReason::BadLocation,
        ] {
            let n = tally.0[reason as usize].load(Ordering::Relaxed);
            if n > 0 {
                self.slot(reason).fetch_add(n, Ordering::Relaxed);
                metrics::counter!(SKIPPED_METRIC, "reason" => reason.as_str()).increment(n);
            }
        }
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        [
            ("no_timestamp", &self.no_timestamp),
            ("no_entity", &self.no_entity),
            ("clock_skew", &self.clock_skew),
            ("too_late", &self.too_late),
            ("duplicate", &self.duplicate),
            ("bad_location", &self.bad_location),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.load(Ordering::Relaxed)))
        .collect()
    }
}

/// One entity's histories (say user `alice`): one per stream that has recorded her events, so a
/// document costs one cache lookup per entity it names rather than one per stream.
#[derive(Debug, Default)]
struct Entity {
    streams: Vec<Stream>,
}

#[derive(Debug)]
struct Stream {
    /// `BehaviourFeature::stream_no`.
    no: u32,
    /// Sorted by time. Features see the newest `MAX_EVENTS_PER_ENTITY` ([`newest`]); up to
    /// `DROP_SLACK` older ones wait to be dropped.
    records: Vec<Record>,
    /// How many of the records features see carry each value key. Kept once a feature that
    /// compares values (first seen, pair and distinct counts) reads the stream: such a feature
    /// then corrects this tally of the whole history by the records outside its window, instead
    /// of scanning the window (most of a busy entity's 1,024 records, for every event). `None`
    /// until then, and after a merge (built again on the next read).
    counts: Option<KeyCounts>,
}

/// Records per value key (see [`Stream::counts`]); keys are already hashes, foldhash mixes them
/// in one multiplication.
type KeyCounts = HashMap<u64, u32, FastHash>;

impl Stream {
    fn new(no: u32) -> Self {
        Stream {
            no,
            records: Vec::new(),
            counts: None,
        }
    }

    /// Builds `counts` from the records features see, unless it is kept already.
    fn count(&mut self) {
        if self.counts.is_none() {
            let mut counts = KeyCounts::default();
            for r in newest(&self.records) {
                *counts.entry(r.key).or_default() += 1;
            }
            self.counts = Some(counts);
        }
    }

    /// Records `record` ([`insert`]), keeping `counts` equal to a count of [`newest`].
    fn record(&mut self, record: Record) {
        let key = record.key;
        let pos = insert(&mut self.records, record);
        let Some(counts) = self.counts.as_mut() else {
            return;
        };
        let len = self.records.len();
        if len <= MAX_EVENTS_PER_ENTITY {
            *counts.entry(key).or_default() += 1;
            return;
        }
        // The first record features see. A record inserted before it is older than all of them
        // and changes nothing; otherwise it comes into view and the one before it leaves.
        let first = len - MAX_EVENTS_PER_ENTITY;
        if pos >= first {
            *counts.entry(key).or_default() += 1;
            let left = self.records[first - 1].key;
            if let std::collections::hash_map::Entry::Occupied(mut n) = counts.entry(left) {
                *n.get_mut() -= 1;
                if *n.get() == 0 {
                    n.remove();
                }
            }
        }
    }
}

impl Entity {
    /// The position of stream `no`'s history.
    fn find(&self, no: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.no == no)
    }

    /// The history of stream `no`, created empty when the entity has none yet.
    fn stream_mut(&mut self, no: u32) -> &mut Stream {
        let i = self.find(no).unwrap_or_else(|| {
            self.streams.push(Stream::new(no));
            self.streams.len() - 1
        });
        &mut self.streams[i]
    }

    /// Record and count slots allocated across the streams (a change means the weigher must
    /// look again).
    fn slots(&self) -> usize {
        self.streams
            .iter()
            .map(|s| s.records.capacity() + s.counts.as_ref().map_or(0, HashMap::capacity))
            .sum::<usize>()
            + self.streams.len()
    }
}

type Shared = Arc<Mutex<Entity>>;
/// (entity path, entity value): `("user.name", "alice")`.
type EntityKey = (Arc<str>, String);

/// Skips counted during one `process` call, added to [`Skipped`] and the metrics at its end (one
/// counter update per reason and batch instead of one per event).
#[derive(Default)]
struct Tally([AtomicU64; 6]);

impl Tally {
    fn count(&self, reason: SkipReason) {
        self.0[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The entity state shared by every request.
pub struct BehaviourState {
    entities: moka::sync::Cache<EntityKey, Shared, FastHash>,
    pub skipped: Skipped,
    /// History reads (one per event and stream), misses (the entity had no history on that
    /// stream yet) and size evictions of the cache, for `/metrics`.
    pub lookups: AtomicU64,
    pub misses: AtomicU64,
    pub evictions: Arc<AtomicU64>,
    /// Where warm start stands (`features/warm.rs`).
    pub warm: super::warm::Progress,
    /// Seeds the value keys (random per process, like the cache's hasher).
    keys: FastHash,
}

impl std::fmt::Debug for BehaviourState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BehaviourState")
            .field("entries", &self.entities.entry_count())
            .field("weighted_bytes", &self.entities.weighted_size())
            .finish()
    }
}

/// Bytes one cache entry costs besides its streams: moka's entry, access-order node and hash
/// table slot, the key, and the `Arc<Mutex<..>>` (`docs/benchmarks.md`, "Behavioural state",
/// compares the weighted size with the process RSS).
const ENTRY_OVERHEAD: usize = 600;
/// Bytes one stream of an entity costs besides its records: its id and vector header, and the
/// `Vec<Stream>` slot.
const STREAM_OVERHEAD: usize = std::mem::size_of::<Stream>() + 16;
/// The smallest heap block the allocator hands out for a string.
const MIN_ALLOCATION: usize = 32;

/// Approximate bytes an entity's histories hold, for the cache's weigher: per stream, the record
/// slots it has allocated, each with a value string of the held records' mean size. `process`
/// re-inserts an entity (so moka re-weighs it) only when an allocation grows, not on every
/// event: between two growths the projection already counts the slots still empty.
fn weigh(key: &EntityKey, entity: &Shared) -> u32 {
    let streams: usize = entity
        .lock()
        .map(|e| e.streams.iter().map(stream_bytes).sum())
        .unwrap_or(0);
    let bytes = ENTRY_OVERHEAD + key.1.capacity().max(MIN_ALLOCATION) + streams;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

fn stream_bytes(stream: &Stream) -> usize {
    let records = &stream.records;
    let values: usize = records
        .iter()
        .map(|r| {
            r.value
                .as_ref()
                .map_or(0, |v| v.capacity().max(MIN_ALLOCATION))
        })
        .sum();
    let slots = records.capacity();
    let projected_values = if records.is_empty() {
        0
    } else {
        values.div_ceil(records.len()) * slots
    };
    // A hash table slot holds a (key, count) pair and a control byte.
    let counts = stream.counts.as_ref().map_or(0, |c| {
        c.capacity() * (std::mem::size_of::<(u64, u32)>() + 1)
    });
    STREAM_OVERHEAD + slots * std::mem::size_of::<Record>() + projected_values + counts
}

/// The records of `history` in `[from, to]` (times in milliseconds; records are kept sorted).
/// Events mostly arrive in time order and windows often reach past the oldest record, so the
/// ends are checked before searching.
fn between(history: &[Record], from: i64, to: i64) -> &[Record] {
    let (lo, hi) = bounds(history, from, to);
    &history[lo..hi]
}

/// [`between`] as the range of indices it takes.
fn bounds(history: &[Record], from: i64, to: i64) -> (usize, usize) {
    let (Some(first), Some(last)) = (history.first(), history.last()) else {
        return (0, 0);
    };
    let lo = if first.at >= from {
        0
    } else {
        from_end(history, |r| r.at < from)
    };
    let hi = if last.at <= to {
        history.len()
    } else {
        from_end(history, |r| r.at <= to)
    };
    (lo, hi.max(lo))
}

/// `history.partition_point(pred)` (`pred` holds on a prefix), searched from the newest record
/// back in doubling steps, then by bisection between the last two probes. Short windows and
/// inserts touch the newest records: this reads a few records near the end, where a bisection
/// of the whole history read ten spread over its 64 KiB (a cache miss each; in the profile of
/// full histories the bisections were a fifth of the state's time).
fn from_end(history: &[Record], pred: impl Fn(&Record) -> bool) -> usize {
    // Every record from `hi` on fails `pred`.
    let (mut hi, mut step) = (history.len(), 1);
    while step <= hi {
        let probe = hi - step;
        if pred(&history[probe]) {
            return probe + 1 + history[probe + 1..hi].partition_point(&pred);
        }
        hi = probe;
        step *= 2;
    }
    history[..hi].partition_point(&pred)
}

/// The records a stream's features see: its newest [`MAX_EVENTS_PER_ENTITY`]. Older ones are
/// waiting to be dropped (`DROP_SLACK`).
fn newest(records: &[Record]) -> &[Record] {
    &records[records.len().saturating_sub(MAX_EVENTS_PER_ENTITY)..]
}

/// Records `record` in `history` in time order (after records of the same time). Once the
/// history holds `DROP_SLACK` records beyond the bound, the oldest are dropped down to it; the
/// records [`newest`] sees are those of dropping the oldest after every insert. A full history's
/// allocation grows by the slack only, not by doubling. Returns where the record went.
fn insert(history: &mut Vec<Record>, record: Record) -> usize {
    // Dropping before the insert keeps the newest `MAX_EVENTS_PER_ENTITY` and the new record,
    // which include the newest `MAX_EVENTS_PER_ENTITY` after it.
    if history.len() >= MAX_EVENTS_PER_ENTITY + DROP_SLACK {
        history.drain(..history.len() - MAX_EVENTS_PER_ENTITY);
    }
    if history.len() == history.capacity() && history.len() >= MAX_EVENTS_PER_ENTITY {
        history.reserve_exact(MAX_EVENTS_PER_ENTITY + DROP_SLACK - history.len());
    }
    let pos = from_end(history, |r| r.at <= record.at);
    history.insert(pos, record);
    pos
}

/// Whether `history` holds an event at `at` with `value` (whose key is `key`).
fn holds(history: &[Record], at: i64, key: u64, value: Option<&str>) -> bool {
    if history.last().is_none_or(|r| r.at < at) {
        return false;
    }
    between(history, at, at)
        .iter()
        .any(|r| r.key == key && r.value.as_deref() == value)
}

/// One document's behavioural values, from [`BehaviourState::process`]: the value of each
/// feature the batch computed (NaN = missing), by feature number ([`BehaviourFeature::id_no`]).
///
/// The numbers are shared by the batch's documents. A map of feature ids per document cost an
/// allocation, an atomic increment per feature (on counters every scoring thread shares) and a
/// hash of a long id per lookup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BehaviourValues {
    ids: Arc<[u32]>,
    values: Vec<f32>,
}

impl BehaviourValues {
    /// The value of feature number `id_no` (NaN = missing), `None` if it was not computed.
    pub fn get(&self, id_no: u32) -> Option<f32> {
        let i = self.ids.iter().position(|&n| n == id_no)?;
        Some(self.values[i])
    }
}

/// Reads a value by feature id (tests and tools; scoring reads by number).
impl std::ops::Index<&Arc<str>> for BehaviourValues {
    type Output = f32;

    fn index(&self, id: &Arc<str>) -> &f32 {
        let n = name_number(id);
        let i = self
            .ids
            .iter()
            .position(|&k| k == n)
            .unwrap_or_else(|| panic!("behavioural feature {id} was not computed"));
        &self.values[i]
    }
}

/// What one `process` call reads, worked out once from the models' features: the distinct
/// features and streams, the entity paths, and every dotted path the streams read (each looked
/// up once per document).
struct Plan<'f> {
    distinct: Vec<&'f Arc<BehaviourFeature>>,
    streams: Vec<&'f Arc<BehaviourFeature>>,
    /// Each stream's features, as indices into `distinct`.
    read_by: Vec<Vec<usize>>,
    /// Per stream: whether a feature compares values on it ([`Stream::counts`]).
    counted: Vec<bool>,
    /// Distinct dotted paths (entities, sources, `when` fields).
    paths: Vec<&'f str>,
    /// Distinct entity paths: (index into `paths`, key part, streams of that entity).
    entities: Vec<(usize, Arc<str>, Vec<usize>)>,
    /// Per stream: its source paths and its `when` field, as indices into `paths`.
    sources: Vec<Vec<usize>>,
    when: Vec<Option<usize>>,
}

impl<'f> Plan<'f> {
    fn new(features: &'f [Arc<BehaviourFeature>]) -> Self {
        let mut distinct: Vec<&Arc<BehaviourFeature>> = Vec::new();
        for f in features {
            if !distinct.iter().any(|d| d.id_no == f.id_no) {
                distinct.push(f);
            }
        }
        let mut streams: Vec<&Arc<BehaviourFeature>> = Vec::new();
        for f in &distinct {
            if !streams.iter().any(|s| s.stream_no == f.stream_no) {
                streams.push(f);
            }
        }
        let read_by = streams
            .iter()
            .map(|s| {
                (0..distinct.len())
                    .filter(|&k| distinct[k].stream_no == s.stream_no)
                    .collect()
            })
            .collect::<Vec<Vec<usize>>>();
        let counted = read_by
            .iter()
            .map(|fs| {
                fs.iter().any(|&f| {
                    matches!(
                        distinct[f].kind,
                        Kind::FirstSeen | Kind::PairCount | Kind::DistinctCount
                    )
                })
            })
            .collect();
        let mut paths: Vec<&str> = Vec::new();
        let mut path = |p: &'f str| match paths.iter().position(|q| *q == p) {
            Some(i) => i,
            None => {
                paths.push(p);
                paths.len() - 1
            }
        };
        let mut entities: Vec<(usize, Arc<str>, Vec<usize>)> = Vec::new();
        let (mut sources, mut when) = (Vec::new(), Vec::new());
        for (k, s) in streams.iter().enumerate() {
            let e = path(&s.entity);
            match entities.iter_mut().find(|(p, _, _)| *p == e) {
                Some((_, _, of)) => of.push(k),
                None => entities.push((e, Arc::from(s.entity.as_str()), vec![k])),
            }
            sources.push(s.sources.iter().map(|p| path(p)).collect());
            when.push(s.when.as_ref().map(|w| path(&w.field)));
        }
        Plan {
            distinct,
            streams,
            read_by,
            counted,
            paths,
            entities,
            sources,
            when,
        }
    }
}

/// One document's event on one stream, waiting to be judged and recorded.
struct Event<'d> {
    doc: usize,
    stream: usize,
    at: i64,
    value: Option<Cow<'d, str>>,
    location: Option<(f64, f64)>,
    key: u64,
    records: bool,
}

/// One document's events on the streams of one entity: (entity index in the plan, the
/// entity's value, the events).
type EntityEvents<'d> = (usize, Cow<'d, str>, Vec<Event<'d>>);

impl BehaviourState {
    pub fn new(max_bytes: u64, idle: Duration) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let evicted = evictions.clone();
        BehaviourState {
            entities: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(weigh)
                .time_to_idle(idle)
                .eviction_listener(move |_, _, cause| {
                    if cause == moka::notification::RemovalCause::Size {
                        evicted.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .build_with_hasher(FastHash::default()),
            skipped: Skipped::default(),
            lookups: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions,
            warm: super::warm::Progress::default(),
            keys: FastHash::default(),
        }
    }

    /// A value's key: 0 for none, otherwise its hash with the low bit set. Equal values have
    /// equal keys; distinct values collide with probability 2^-63 per pair.
    fn key_of(&self, value: Option<&str>) -> u64 {
        use std::hash::BuildHasher;
        value.map_or(0, |v| self.keys.hash_one(v) | 1)
    }

    /// Entities held (one per entity path and value, e.g. a user or a source IP).
    pub fn entries(&self) -> u64 {
        self.entities.run_pending_tasks();
        self.entities.entry_count()
    }

    pub fn weighted_bytes(&self) -> u64 {
        self.entities.run_pending_tasks();
        self.entities.weighted_size()
    }

    /// Computes `features` for `docs` (NaN = missing) and records the documents' events.
    /// Returns one map per document, feature id → value.
    ///
    /// A document's features on a stream read only that stream's history for its entity, so the
    /// entities' histories are replayed in parallel on the current rayon pool, each in
    /// event-time order: the values are those of one pass over the documents in time order.
    pub fn process<D: Fields + ?Sized>(
        &self,
        docs: &[&D],
        features: &[Arc<BehaviourFeature>],
        now: DateTime<Utc>,
    ) -> Vec<BehaviourValues> {
        if features.is_empty() {
            return vec![BehaviourValues::default(); docs.len()];
        }
        let plan = Plan::new(features);
        let times: Vec<Option<i64>> = docs
            .iter()
            .map(|d| {
                d.first(TIME_FIELD)
                    .and_then(|v| timestamp(&v).ok())
                    .map(|t| t.timestamp_millis())
            })
            .collect();
        let mut order: Vec<usize> = (0..docs.len()).collect();
        order.sort_by_key(|&i| times[i].unwrap_or(i64::MIN));
        let now_ms = now.timestamp_millis();
        let tally = Tally::default();

        // Each document's events (read in parallel), then grouped by entity keeping the time
        // order.
        let events: Vec<Vec<EntityEvents>> = order
            .par_iter()
            .with_min_len(PARALLEL_MIN_DOCS)
            .map(|&i| self.events_of(&plan, i, docs[i], times[i], now_ms, &tally))
            .collect();
        let mut groups: HashMap<(usize, Cow<str>), Vec<Event>, FastHash> = HashMap::default();
        for (entity, value, events) in events.into_iter().flatten() {
            groups.entry((entity, value)).or_default().extend(events);
        }
        let computed: Vec<(usize, usize, f32)> = groups
            .into_iter()
            .collect::<Vec<_>>()
            .into_par_iter()
            .with_min_len(PARALLEL_MIN_HISTORIES)
            .flat_map_iter(|((entity, value), events)| {
                self.replay(&plan, entity, value, events, &tally)
            })
            .collect();
        self.skipped.add(&tally);
        // Whatever a document does not get (no timestamp, no entity, too late, a duplicate) is
        // missing.
        let ids: Arc<[u32]> = plan.distinct.iter().map(|f| f.id_no).collect();
        let mut values: Vec<BehaviourValues> = (0..docs.len())
            .map(|_| BehaviourValues {
                ids: ids.clone(),
                values: vec![f32::NAN; ids.len()],
            })
            .collect();
        for (doc, feature, value) in computed {
            values[doc].values[feature] = value;
        }
        values
    }

    /// Document `i`'s events, per entity it names, on each stream it can be judged on. Every
    /// path the streams read is looked up once.
    fn events_of<'d, D: Fields + ?Sized>(
        &self,
        plan: &Plan,
        i: usize,
        doc: &'d D,
        at: Option<i64>,
        now_ms: i64,
        tally: &Tally,
    ) -> Vec<EntityEvents<'d>> {
        let Some(at) = at else {
            tally.count(SkipReason::NoTimestamp);
            return Vec::new();
        };
        if at > now_ms + MAX_FUTURE_SKEW_MS {
            tally.count(SkipReason::ClockSkew);
            return Vec::new();
        }
        // Each path whole (a `[lon, lat]` point stays an array); `first` reduces arrays.
        let whole: Vec<Option<Cow<'d, Value>>> = plan.paths.iter().map(|p| doc.whole(p)).collect();
        let first = |p: usize| whole[p].as_ref().and_then(first_of);
        let mut out = Vec::with_capacity(plan.entities.len());
        for (n, (path, _, streams)) in plan.entities.iter().enumerate() {
            let Some(entity) = first(*path).as_ref().map(text_of) else {
                for _ in streams {
                    tally.count(SkipReason::NoEntity);
                }
                continue;
            };
            let mut events = Vec::with_capacity(streams.len());
            for &k in streams {
                let s = plan.streams[k];
                let (value, location) =
                    s.event_from(plan.sources[k].iter().map(|&p| whole[p].clone()));
                if s.kind == Kind::VelocityKmh && value.is_some() && location.is_none() {
                    tally.count(SkipReason::BadLocation);
                }
                let records = s.records_given(|_| plan.when[k].and_then(first));
                events.push(Event {
                    doc: i,
                    stream: k,
                    at,
                    key: self.key_of(value.as_deref()),
                    value,
                    location,
                    records,
                });
            }
            out.push((n, entity, events));
        }
        out
    }

    /// One entity's events of a batch, in time order: each judged against its stream's history
    /// before it (the stream's features), then recorded. Returns (document, feature, value).
    fn replay(
        &self,
        plan: &Plan,
        entity: usize,
        value: Cow<str>,
        events: Vec<Event>,
        tally: &Tally,
    ) -> Vec<(usize, usize, f32)> {
        let key: EntityKey = (plan.entities[entity].1.clone(), value.into_owned());
        self.lookups
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let mut out = Vec::with_capacity(events.len() * 4);
        // An entity gets an entry once it has something to record: events its streams do not
        // record (a success for a failures stream) read an empty history.
        let shared = if events.iter().any(|e| e.records) {
            Some(
                // By reference: the key is cloned only when the entity is new.
                self.entities
                    .get_with_by_ref(&key, || Arc::new(Mutex::new(Entity::default()))),
            )
        } else {
            self.entities.get(&key)
        };
        let empty = Entity::default();
        let mut guard = shared
            .as_ref()
            .map(|h| h.lock().unwrap_or_else(|e| e.into_inner()));
        let slots = guard.as_ref().map_or(0, |e| e.slots());
        for e in events {
            let stream = plan.streams[e.stream];
            if plan.counted[e.stream] {
                if let Some(entity) = guard.as_deref_mut() {
                    if let Some(h) = entity.find(stream.stream_no) {
                        entity.streams[h].count();
                    }
                }
            }
            let entity: &Entity = guard.as_deref().unwrap_or(&empty);
            let (history, counts): (&[Record], _) = match entity.find(stream.stream_no) {
                Some(h) => (
                    newest(&entity.streams[h].records),
                    entity.streams[h].counts.as_ref(),
                ),
                None => {
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    (&[], None)
                }
            };
            if let Some(newest) = history.last() {
                if newest.at - e.at > MAX_LATENESS_MS {
                    tally.count(SkipReason::TooLate);
                    continue;
                }
            }
            if holds(history, e.at, e.key, e.value.as_deref()) {
                tally.count(SkipReason::Duplicate);
                continue;
            }
            for &f in &plan.read_by[e.stream] {
                let v = compute(
                    plan.distinct[f],
                    history,
                    counts,
                    e.at,
                    e.value.as_deref(),
                    e.key,
                    e.location,
                );
                out.push((e.doc, f, v));
            }
            let Some(entity) = guard.as_deref_mut().filter(|_| e.records) else {
                continue;
            };
            entity.stream_mut(stream.stream_no).record(Record {
                at: e.at,
                value: e.value.map(Cow::into_owned),
                location: e.location,
                key: e.key,
            });
        }
        let grew = guard.as_ref().is_some_and(|e| e.slots() != slots);
        drop(guard);
        if let (true, Some(h)) = (grew, shared) {
            // Re-insert so the weigher sees the new size.
            self.entities.insert(key, h);
        }
        out
    }
}

/// What Elasticsearch knows about one entity's stream over `[from, to]`, to merge into the
/// state (warm start, `features/warm.rs`).
#[derive(Debug, Clone, Default)]
pub struct Seed {
    /// The entity's most recent events, read back exactly: (time, value, location).
    pub recent: Vec<SeedEvent>,
    /// Every event newer than this is in `recent` (`None`: `recent` holds every event).
    pub horizon: Option<i64>,
    /// Event counts per value (`None`: events without a value, or with one beyond the list).
    pub totals: Vec<ValueTotal>,
    pub from: i64,
    pub to: i64,
}

/// One event read back exactly: (time in milliseconds, value, location).
pub type SeedEvent = (i64, Option<String>, Option<(f64, f64)>);

/// `count` events with `value` between `first` and `last` (milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueTotal {
    pub value: Option<String>,
    pub count: u64,
    pub first: i64,
    pub last: i64,
}

/// What a merge added to the state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    /// Events read back exactly that the state did not hold.
    pub exact: u64,
    /// Stand-ins for older events the state did not hold, spread over their value's time range.
    pub spread: u64,
}

impl BehaviourState {
    /// Merges what Elasticsearch knows about `entity`'s `stream` into the state, never replacing
    /// anything the live stream recorded: the result is the union of both histories.
    ///
    /// Exact events are added unless the state holds the same (time, value). For older events
    /// only counts are known: for each value, as many stand-ins are added as Elasticsearch
    /// counts beyond what the state already holds in `[from, to]`, spread evenly from the
    /// value's last time (bounded by `horizon`, below which no exact event is missing) back to
    /// its first. So a value's count becomes the larger of the two, its last-seen time the
    /// later, and a value known to either is known after the merge. The per-entity bound keeps
    /// the newest events.
    pub fn seed(
        &self,
        entity_path: &str,
        stream: &Arc<str>,
        entity: String,
        seed: &Seed,
    ) -> Merged {
        let key: EntityKey = (Arc::from(entity_path), entity);
        let shared = self
            .entities
            .get_with(key.clone(), || Arc::new(Mutex::new(Entity::default())));
        let mut merged = Merged::default();
        {
            let mut e = shared.lock().unwrap_or_else(|e| e.into_inner());
            let st = e.stream_mut(name_number(stream));
            // The merge inserts and drops records in bulk: the tally is built again when read.
            st.counts = None;
            let h = &mut st.records;
            // What features see, without the records waiting to be dropped.
            let waiting = h.len().saturating_sub(MAX_EVENTS_PER_ENTITY);
            h.drain(..waiting);
            for (at, value, location) in &seed.recent {
                let vkey = self.key_of(value.as_deref());
                if holds(h, *at, vkey, value.as_deref()) {
                    continue;
                }
                let pos = h.partition_point(|r| r.at <= *at);
                h.insert(
                    pos,
                    Record {
                        at: *at,
                        value: value.clone(),
                        location: *location,
                        key: vkey,
                    },
                );
                merged.exact += 1;
            }
            for total in &seed.totals {
                let vkey = self.key_of(total.value.as_deref());
                let held = between(h, seed.from, seed.to)
                    .iter()
                    .filter(|r| r.key == vkey && r.value == total.value)
                    .count() as u64;
                let missing = total
                    .count
                    .saturating_sub(held)
                    .min(MAX_EVENTS_PER_ENTITY as u64);
                if missing == 0 {
                    continue;
                }
                let last = seed.horizon.map_or(total.last, |hz| hz.min(total.last));
                let (first, last) = (total.first.min(last), last.max(total.first));
                let span = (last - first) as f64;
                for j in 0..missing {
                    let step = if missing > 1 {
                        span * j as f64 / (missing - 1) as f64
                    } else {
                        0.0
                    };
                    h.push(Record {
                        at: last - step.round() as i64,
                        value: total.value.clone(),
                        location: None,
                        key: vkey,
                    });
                }
                merged.spread += missing;
            }
            // Stable: records with equal times keep their order.
            h.sort_by_key(|r| r.at);
            if h.len() > MAX_EVENTS_PER_ENTITY {
                let excess = h.len() - MAX_EVENTS_PER_ENTITY;
                h.drain(..excess);
            }
            // Stand-ins may have grown the allocation past what live inserts keep.
            h.shrink_to(MAX_EVENTS_PER_ENTITY + DROP_SLACK);
        }
        // Re-insert so the weigher sees the new size.
        self.entities.insert(key, shared);
        merged
    }
}

fn compute(
    f: &BehaviourFeature,
    history: &[Record],
    counts: Option<&KeyCounts>,
    at: i64,
    value: Option<&str>,
    key: u64,
    location: Option<(f64, f64)>,
) -> f32 {
    let (lo, hi) = bounds(history, at - f.window_ms, at);
    let window = &history[lo..hi];
    // When fewer records lie outside the window than in it, value comparisons read the stream's
    // tally ([`Stream::counts`]) less those records, instead of scanning the window.
    let outside = || history[..lo].iter().chain(&history[hi..]);
    let tally = counts.filter(|_| history.len() - window.len() < window.len());
    let held = |c: &KeyCounts| {
        let (all, out) = (
            c.get(&key).map_or(0, |&n| n as usize),
            outside().filter(|r| r.key == key).count(),
        );
        debug_assert!(out <= all, "the tally counts every record features see");
        all.saturating_sub(out)
    };
    match f.kind {
        Kind::FirstSeen => match value {
            None => f32::NAN,
            // No record with the value's key: new (equal values have equal keys). Otherwise
            // the value itself is looked for, newest first (a known value is usually seen
            // recently), so that a colliding key cannot hide a new value.
            Some(_) if tally.is_some_and(|c| held(c) == 0) => 1.0,
            Some(v) => f32::from(u8::from(
                !window
                    .iter()
                    .rev()
                    .any(|r| r.key == key && r.value.as_deref() == Some(v)),
            )),
        },
        Kind::Count => window.len() as f32,
        Kind::DistinctCount => {
            let Some(c) = tally else {
                let mut seen: Vec<u64> = window.iter().map(|r| r.key).filter(|&k| k != 0).collect();
                seen.sort_unstable();
                seen.dedup();
                return seen.len() as f32;
            };
            // Every key of the history, less those all of whose records lie outside.
            let mut out: Vec<u64> = outside().map(|r| r.key).filter(|&k| k != 0).collect();
            out.sort_unstable();
            let gone = out
                .chunk_by(|a, b| a == b)
                .filter(|run| c.get(&run[0]).is_some_and(|&n| n as usize == run.len()))
                .count();
            let keys = c.len() - usize::from(c.contains_key(&0));
            debug_assert!(gone <= keys, "the tally counts every record features see");
            keys.saturating_sub(gone) as f32
        }
        // Counted by key: comparing the strings of every match (most of a busy user's window)
        // was a third of the scan.
        Kind::PairCount => match (value, tally) {
            (None, _) => f32::NAN,
            (Some(_), Some(c)) => held(c) as f32,
            (Some(_), None) => window.iter().filter(|r| r.key == key).count() as f32,
        },
        Kind::SinceLast => window
            .last()
            .map_or(f32::NAN, |r| ((at - r.at) as f64 / 3_600_000.0) as f32),
        Kind::VelocityKmh => {
            let (Some(here), Some(last)) =
                (location, window.iter().rfind(|r| r.location.is_some()))
            else {
                return f32::NAN;
            };
            let there = last.location.expect("filtered");
            let hours = ((at - last.at).max(60_000)) as f64 / 3_600_000.0;
            (haversine_km(there, here) / hours) as f32
        }
    }
}

/// Text form of a key or value: strings as they are, other scalars as JSON renders them.
fn text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// [`text`] of a value borrowed from a document or made for it (a scanned number).
fn text_of<'d>(v: &Cow<'d, Value>) -> Cow<'d, str> {
    match v {
        Cow::Borrowed(v) => text(v),
        Cow::Owned(v) => Cow::Owned(text(v).into_owned()),
    }
}

/// [`first_value`] of a value borrowed from a document or made for it.
fn first_of<'d>(v: &Cow<'d, Value>) -> Option<Cow<'d, Value>> {
    within(v, first_value)
}

/// `{lat, lon}`, `"lat,lon"` or `[lon, lat]`; `None` when absent or absurd.
pub fn location(v: &Value) -> Option<(f64, f64)> {
    let (lat, lon) = match v {
        Value::Object(o) => (o.get("lat")?.as_f64()?, o.get("lon")?.as_f64()?),
        Value::String(s) => {
            let (a, b) = s.split_once(',')?;
            (a.trim().parse().ok()?, b.trim().parse().ok()?)
        }
        Value::Array(a) if a.len() == 2 => (a[1].as_f64()?, a[0].as_f64()?),
        _ => return None,
    };
    (lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0)
        .then_some((lat, lon))
}

pub fn haversine_km((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feature(
        kind: Kind,
        entity: &str,
        source: &str,
        window: Option<u64>,
        when: Option<When>,
    ) -> Arc<BehaviourFeature> {
        Arc::new(
            BehaviourFeature::new(kind, entity.into(), when, vec![source.into()], window).unwrap(),
        )
    }

    fn at(minute: i64) -> String {
        DateTime::from_timestamp(1_767_225_600 + minute * 60, 0)
            .unwrap()
            .to_rfc3339()
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + 100_000 * 60, 0).unwrap()
    }

    #[test]
    fn features_see_only_earlier_events_and_share_streams() {
        let state = BehaviourState::new(1 << 20, Duration::from_secs(3600));
        let failure = Some(When {
            field: "event.outcome".into(),
            equals: json!("failure"),
        });
        let f15 = feature(
            Kind::Count,
            "user.name",
            "user.name",
            Some(900),
            failure.clone(),
        );
        let f60 = feature(Kind::Count, "user.name", "user.name", Some(3600), failure);
        let new_country = feature(
            Kind::FirstSeen,
            "user.name",
            "source.geo.country_iso_code",
            Some(86400),
            None,
        );
        let docs: Vec<Value> = vec![
            json!({"@timestamp": at(20), "user": {"name": "a"}, "event": {"outcome": "failure"}, "source": {"geo": {"country_iso_code": "FR"}}}),
            json!({"@timestamp": at(0), "user": {"name": "a"}, "event": {"outcome": "failure"}, "source": {"geo": {"country_iso_code": "FR"}}}),
            json!({"@timestamp": at(30), "user": {"name": "a"}, "event": {"outcome": "success"}, "source": {"geo": {"country_iso_code": "DE"}}}),
        ];
        let refs: Vec<&Value> = docs.iter().collect();
        let v = state.process(
            &refs,
            &[f15.clone(), f60.clone(), new_country.clone()],
            now(),
        );
        // In event time: doc1 (t0), doc0 (t20), doc2 (t30).
        assert_eq!(v[1][&f60.id], 0.0);
        assert_eq!(v[0][&f60.id], 1.0);
        assert_eq!(v[0][&f15.id], 0.0, "t0 is outside [t20 - 15m, t20]");
        assert_eq!(v[2][&f60.id], 2.0);
        assert_eq!(v[2][&f15.id], 1.0, "t0 is outside [t30 - 15m, t30]");
        assert_eq!(v[1][&new_country.id], 1.0);
        assert_eq!(v[0][&new_country.id], 0.0);
        assert_eq!(v[2][&new_country.id], 1.0);
    }

    #[test]
    fn velocity_distinct_pairs_and_since_last() {
        let state = BehaviourState::new(1 << 20, Duration::from_secs(3600));
        let success = Some(When {
            field: "event.outcome".into(),
            equals: json!("success"),
        });
        let speed = feature(
            Kind::VelocityKmh,
            "user.name",
            "source.geo.location",
            None,
            success.clone(),
        );
        let since = feature(Kind::SinceLast, "user.name", "user.name", None, success);
        let users = feature(
            Kind::DistinctCount,
            "source.ip",
            "user.name",
            Some(3600),
            None,
        );
        let pairs = feature(
            Kind::PairCount,
            "email.from.address",
            "email.to.address",
            Some(86400),
            None,
        );
        let paris = json!({"lat": 48.8566, "lon": 2.3522});
        let docs = [
            json!({"@timestamp": at(0), "user": {"name": "a"}, "event": {"outcome": "success"}, "source": {"ip": "1.1.1.1", "geo": {"location": paris}}}),
            json!({"@timestamp": at(60), "user": {"name": "a"}, "event": {"outcome": "success"}, "source": {"ip": "1.1.1.1", "geo": {"location": [-74.006, 40.7128]}}}),
            json!({"@timestamp": at(61), "user": {"name": "b"}, "source": {"ip": "1.1.1.1", "geo": {"location": "95,0"}}}),
            json!({"@timestamp": at(62), "email": {"from": {"address": "x"}, "to": {"address": "y"}}}),
            json!({"@timestamp": at(63), "email": {"from": {"address": "x"}, "to": {"address": "y"}}}),
        ];
        let refs: Vec<&Value> = docs.iter().collect();
        let v = state.process(
            &refs,
            &[speed.clone(), since.clone(), users.clone(), pairs.clone()],
            now(),
        );
        assert!(v[0][&speed.id].is_nan());
        let km = haversine_km((48.8566, 2.3522), (40.7128, -74.006));
        assert!(
            (v[1][&speed.id] as f64 - km).abs() < 1.0,
            "{} vs {km}",
            v[1][&speed.id]
        );
        assert!((5800.0..5900.0).contains(&km));
        assert_eq!(v[1][&since.id], 1.0);
        assert_eq!(v[2][&users.id], 1.0, "user a seen from this IP before");
        assert!(v[2][&speed.id].is_nan(), "absurd latitude is no location");
        assert_eq!(v[3][&pairs.id], 0.0);
        assert_eq!(v[4][&pairs.id], 1.0);
        assert_eq!(state.skipped.bad_location.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn bad_input_is_missing_counted_and_not_recorded() {
        let state = BehaviourState::new(1 << 20, Duration::from_secs(3600));
        let count = feature(Kind::Count, "user.name", "user.name", Some(8_640_000), None);
        let late_base = at(500);
        let docs = [
            json!({"user": {"name": "a"}}),
            json!({"@timestamp": "not a date", "user": {"name": "a"}}),
            json!({"@timestamp": at(1)}),
            json!({"@timestamp": at(200_000), "user": {"name": "a"}}),
            json!({"@timestamp": late_base, "user": {"name": "a"}}),
            json!({"@timestamp": at(500), "user": {"name": "a"}}),
            json!({"@timestamp": at(10), "user": {"name": "a"}}),
            json!({"@timestamp": at(470), "user": {"name": "a"}}),
        ];
        let refs: Vec<&Value> = docs.iter().collect();
        let v = state.process(&refs, std::slice::from_ref(&count), now());
        for i in [0, 1, 2, 3, 5] {
            assert!(v[i][&count.id].is_nan(), "doc {i}: {:?}", v[i]);
        }
        // In event time: t10, t470, t500, then t500 again (a duplicate).
        assert_eq!(v[6][&count.id], 0.0);
        assert_eq!(v[7][&count.id], 1.0);
        assert_eq!(v[4][&count.id], 2.0);
        let s = state.skipped.snapshot();
        assert_eq!(s["no_timestamp"], 2);
        assert_eq!(s["no_entity"], 1);
        assert_eq!(s["clock_skew"], 1);
        assert_eq!(s["duplicate"], 1);
        assert_eq!(
            s["too_late"], 0,
            "sorted by time, t10 comes first: no lateness"
        );
        // A later request bringing a too-late event.
        let late = [json!({"@timestamp": at(5), "user": {"name": "a"}})];
        let v = state.process(&[&late[0]], std::slice::from_ref(&count), now());
        assert!(v[0][&count.id].is_nan());
        assert_eq!(state.skipped.snapshot()["too_late"], 1);
    }

    #[test]
    fn seeding_is_a_union_that_never_drops_live_state_and_is_idempotent() {
        let state = BehaviourState::new(1 << 20, Duration::from_secs(3600));
        let new_country = feature(
            Kind::FirstSeen,
            "user.name",
            "source.geo.country_iso_code",
            Some(86400 * 30),
            None,
        );
        let pairs = feature(
            Kind::PairCount,
            "user.name",
            "source.geo.country_iso_code",
            Some(86400 * 30),
            None,
        );
        let doc = |minute: i64, country: &str| {
            json!({"@timestamp": at(minute), "user": {"name": "a"},
                   "source": {"geo": {"country_iso_code": country}}})
        };
        // Live: FR at t100 (not in Elasticsearch yet).
        let live = doc(100, "FR");
        state.process(&[&live], &[new_country.clone(), pairs.clone()], now());
        let ms = |minute: i64| {
            DateTime::parse_from_rfc3339(&at(minute))
                .unwrap()
                .timestamp_millis()
        };
        // Elasticsearch: DE three times over t0..t50 (the last one read exactly), FR once at t100
        // (the live event, indexed since).
        let seed = Seed {
            recent: vec![
                (ms(100), Some("FR".into()), None),
                (ms(50), Some("DE".into()), None),
            ],
            horizon: Some(ms(50)),
            totals: vec![
                ValueTotal {
                    value: Some("DE".into()),
                    count: 3,
                    first: ms(0),
                    last: ms(50),
                },
                ValueTotal {
                    value: Some("FR".into()),
                    count: 1,
                    first: ms(100),
                    last: ms(100),
                },
            ],
            from: ms(-1000),
            to: ms(200),
        };
        let merged = state.seed(&new_country.entity, &new_country.stream, "a".into(), &seed);
        assert_eq!(
            merged,
            Merged {
                exact: 1,
                spread: 2
            },
            "FR at t100 is already held"
        );
        assert_eq!(
            state.seed(&new_country.entity, &new_country.stream, "a".into(), &seed),
            Merged::default(),
            "seeding the same again adds nothing"
        );
        // Stand-ins lie between the value's first time and its exact events.
        let h = state
            .entities
            .get(&(Arc::from("user.name"), "a".to_string()))
            .unwrap();
        let entity = h.lock().unwrap();
        let de: Vec<i64> = entity.streams[entity.find(new_country.stream_no).unwrap()]
            .records
            .iter()
            .filter(|r| r.value.as_deref() == Some("DE"))
            .map(|r| r.at)
            .collect();
        assert_eq!(de, vec![ms(0), ms(50), ms(50)]);
        drop(entity);
        let later = [doc(300, "DE"), doc(301, "FR"), doc(302, "US")];
        let refs: Vec<&Value> = later.iter().collect();
        let v = state.process(&refs, &[new_country.clone(), pairs.clone()], now());
        assert_eq!(v[0][&new_country.id], 0.0, "DE learnt from Elasticsearch");
        assert_eq!(v[0][&pairs.id], 3.0);
        assert_eq!(
            v[1][&new_country.id], 0.0,
            "FR from the live stream is kept"
        );
        assert_eq!(v[1][&pairs.id], 1.0, "the live FR is not counted twice");
        assert_eq!(v[2][&new_country.id], 1.0, "US is new");
    }

    #[test]
    fn stand_ins_stay_below_the_horizon_of_exact_events() {
        let state = BehaviourState::new(1 << 20, Duration::from_secs(3600));
        let failures = feature(Kind::Count, "user.name", "user.name", Some(900), None);
        let ms = |minute: i64| {
            DateTime::parse_from_rfc3339(&at(minute))
                .unwrap()
                .timestamp_millis()
        };
        // 10 events over t0..t100; the 2 most recent (t95, t100) read exactly, so the 8 others
        // are at or before t95.
        let seed = Seed {
            recent: vec![
                (ms(100), Some("a".into()), None),
                (ms(95), Some("a".into()), None),
            ],
            horizon: Some(ms(95)),
            totals: vec![ValueTotal {
                value: Some("a".into()),
                count: 10,
                first: ms(0),
                last: ms(100),
            }],
            from: ms(-1000),
            to: ms(101),
        };
        assert_eq!(
            state.seed(&failures.entity, &failures.stream, "a".into(), &seed),
            Merged {
                exact: 2,
                spread: 8
            }
        );
        let doc = json!({"@timestamp": at(101), "user": {"name": "a"}});
        let v = state.process(&[&doc], std::slice::from_ref(&failures), now());
        // In [t86, t101]: t95 and t100 exactly, and the stand-in placed at t95.
        assert_eq!(v[0][&failures.id], 3.0);
    }

    #[test]
    fn skipped_events_are_counted_in_metrics_by_reason() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let state = BehaviourState::new(1 << 20, Duration::from_secs(3600));
        let count = feature(Kind::Count, "user.name", "user.name", Some(86_400), None);
        let speed = feature(
            Kind::VelocityKmh,
            "user.name",
            "source.geo.location",
            None,
            None,
        );
        let docs = [
            json!({"user": {"name": "a"}}),
            json!({"@timestamp": at(1)}),
            json!({"@timestamp": at(200_000), "user": {"name": "a"}}),
            json!({"@timestamp": at(500), "user": {"name": "a"}}),
            json!({"@timestamp": at(500), "user": {"name": "a"}}),
            json!({"@timestamp": at(600), "user": {"name": "b"}, "source": {"geo": {"location": {"lat": 91.0, "lon": 0.0}}}}),
        ];
        let refs: Vec<&Value> = docs.iter().collect();
        // The recorder is thread-local: run the (parallel) state on one pool thread, inside it.
        let one_thread = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        one_thread.install(|| {
            metrics::with_local_recorder(&recorder, || {
                state.process(&refs, &[count.clone(), speed.clone()], now());
                let late = json!({"@timestamp": at(100), "user": {"name": "a"}});
                state.process(&[&late], &[count.clone(), speed.clone()], now());
            })
        });
        let mut counted = BTreeMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            assert_eq!(key.name(), SKIPPED_METRIC);
            let reason = key
                .labels()
                .find(|l| l.key() == "reason")
                .map(|l| l.value().to_string())
                .unwrap();
            let DebugValue::Counter(n) = value else {
                panic!("{reason} is not a counter");
            };
            counted.insert(reason, n);
        }
        let expect = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        // Per stream: the document without a user misses both streams, the duplicate and the
        // late event are caught in both.
        assert_eq!(
            counted,
            expect(&[
                ("no_timestamp", 1),
                ("no_entity", 2),
                ("clock_skew", 1),
                ("duplicate", 2),
                ("too_late", 2),
                ("bad_location", 1),
            ])
        );
        assert_eq!(
            state.skipped.snapshot()["no_entity"],
            2,
            "the snapshot agrees"
        );
    }

    #[test]
    fn features_see_the_newest_records_up_to_the_bound_before_and_after_a_drop() {
        let state = BehaviourState::new(1 << 30, Duration::from_secs(3600));
        let country = "source.geo.country_iso_code";
        // Windows in minutes (one event a minute): all of the history (value comparisons read
        // the tally), most of it (the tally less the records outside), a small part (a scan).
        let windows: [usize; 3] = [1 << 20, 900, 200];
        let mut features = vec![feature(
            Kind::Count,
            "user.name",
            "user.name",
            Some(1 << 30),
            None,
        )];
        for w in windows {
            for kind in [Kind::FirstSeen, Kind::PairCount, Kind::DistinctCount] {
                features.push(feature(
                    kind,
                    "user.name",
                    country,
                    Some(w as u64 * 60),
                    None,
                ));
            }
        }
        // More events than the bound and its slack, so records wait unseen and are dropped.
        let total = MAX_EVENTS_PER_ENTITY + DROP_SLACK + 300;
        let again = [1100, 1102];
        let value = |k: usize| {
            if k < 5 || again.contains(&k) {
                "OLD".to_string()
            } else {
                format!("c{}", k % 7 + k / 400)
            }
        };
        let docs: Vec<Value> = (0..total)
            .map(|k| json!({"@timestamp": at(k as i64), "user": {"name": "a"}, "source": {"geo": {"country_iso_code": value(k)}}}))
            .collect();
        let mut values = Vec::new();
        for batch in docs.chunks(100) {
            let refs: Vec<&Value> = batch.iter().collect();
            values.extend(state.process(&refs, &features, now()));
        }
        for (k, v) in values.iter().enumerate() {
            // The oracle: the events before k that the bound keeps, in each window.
            let kept = k.saturating_sub(MAX_EVENTS_PER_ENTITY);
            assert_eq!(v[&features[0].id], (k - kept) as f32, "count at {k}");
            for (n, w) in windows.iter().enumerate() {
                let seen: Vec<String> = (kept.max(k.saturating_sub(*w))..k).map(value).collect();
                let same = seen.iter().filter(|s| **s == value(k)).count();
                let distinct = seen.iter().collect::<std::collections::HashSet<_>>().len();
                let [new, pairs, kinds] = [1, 2, 3].map(|i| v[&features[3 * n + i].id]);
                assert_eq!(
                    new,
                    f32::from(u8::from(same == 0)),
                    "new at {k}, window {w}"
                );
                assert_eq!(pairs, same as f32, "pairs at {k}, window {w}");
                assert_eq!(kinds, distinct as f32, "distinct at {k}, window {w}");
            }
        }
        // OLD at 1100 no longer sees the first five (records still held, waiting to be
        // dropped); at 1102 it sees 1100.
        assert_eq!(values[1100][&features[1].id], 1.0);
        assert_eq!(values[1102][&features[1].id], 0.0);
        let h = state
            .entities
            .get(&(Arc::from("user.name"), "a".to_string()))
            .unwrap();
        let entity = h.lock().unwrap();
        for stream in &entity.streams {
            assert!(stream.records.len() <= MAX_EVENTS_PER_ENTITY + DROP_SLACK);
            assert!(stream.records.capacity() <= MAX_EVENTS_PER_ENTITY + DROP_SLACK);
        }
        let counted = entity.streams.iter().find(|s| s.counts.is_some()).unwrap();
        let mut recount = KeyCounts::default();
        for r in newest(&counted.records) {
            *recount.entry(r.key).or_default() += 1;
        }
        assert_eq!(counted.counts.as_ref(), Some(&recount));
    }

    proptest::proptest! {
        #[test]
        fn searching_from_the_end_finds_what_bisection_finds(
            mut times in proptest::collection::vec(0i64..60, 0..300),
            t in -1i64..61,
        ) {
            times.sort_unstable();
            let history: Vec<Record> = times
                .iter()
                .map(|&at| Record { at, value: None, location: None, key: 0 })
                .collect();
            proptest::prop_assert_eq!(
                from_end(&history, |r| r.at <= t),
                history.partition_point(|r| r.at <= t)
            );
            proptest::prop_assert_eq!(
                from_end(&history, |r| r.at < t),
                history.partition_point(|r| r.at < t)
            );
        }
    }

    #[test]
    fn state_stays_within_its_byte_bound() {
        let state = BehaviourState::new(200_000, Duration::from_secs(3600));
        let count = feature(Kind::Count, "user.name", "user.name", Some(3600), None);
        for batch in 0..20 {
            let docs: Vec<Value> = (0..1000)
                .map(|u| json!({"@timestamp": at(batch), "user": {"name": format!("user-{batch}-{u}")}}))
                .collect();
            let refs: Vec<&Value> = docs.iter().collect();
            state.process(&refs, std::slice::from_ref(&count), now());
        }
        assert!(
            state.weighted_bytes() <= 200_000,
            "{}",
            state.weighted_bytes()
        );
        assert!(state.entries() < 20_000);
    }
}
