//! Rewriting a bulk request: route each document, score each model's documents in batched jobs,
//! write the results into the documents, and rebuild the body to forward. Lines of documents
//! that no model scores are forwarded byte for byte; a scored document's line too, with its
//! results appended as new top-level keys (re-serialised from the parsed document only when it
//! already has such a key, or was normalised).
//!
//! A document whose scoring fails is never dropped: fail-open forwards it unscored with a
//! `vigil.error` marker; fail-closed answers it as a failed item in its place.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};

use crate::bulk::{BulkError, Doc, Entry, ItemError, OpType, Parsed};
use crate::bundle::{Bundle, ModelRegistry};
use crate::config::ScoringFailure;
use crate::enrich::{appended, top_key, write_at};
use crate::features::{Fields, Scanner};
use crate::inference::{infer_with, BehaviourValues, DocError, ExplainPolicy};
use crate::merge::Slot;
use crate::normalize::{recognise, Source};
use crate::route::Routes;

/// The body to forward (as chunks, concatenated by the HTTP client) and where each item's
/// answer will come from.
#[derive(Debug, Default)]
pub struct Rewritten {
    pub chunks: Vec<Bytes>,
    pub slots: Vec<Slot>,
    pub stats: Stats,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub items: usize,
    pub forwarded: usize,
    pub scored: usize,
    pub scoring_failed: usize,
    pub rejected: usize,
}

/// One model's result for one document: the model name and, scored, the target field and the
/// result object (serialised) to write there.
type ModelOutcome<'a> = (&'a str, Result<(String, Bytes), DocError>);

/// Documents per parallel scoring job: small enough that a bulk spreads over the pool's threads
/// (several jobs per thread, so a busy thread does not hold up the rest), large enough that the
/// batch kernels (tree evaluation, TreeSHAP) keep their per-batch efficiency.
const MIN_JOB_DOCS: usize = 64;
const JOBS_PER_THREAD: usize = 4;

struct Failure {
    status: u16,
    kind: &'static str,
    reason: String,
    model: String,
}

/// One entry after normalising and routing.
struct Routed<'a> {
    entry: Entry,
    doc: Option<Parsed>,
    normalized: bool,
    models: Vec<&'a str>,
}

/// One entry's contribution to the forwarded body and the answer.
struct Assembled {
    lines: Option<(Bytes, Option<Bytes>)>,
    slot: Slot,
    scored: bool,
    failed: bool,
}

pub struct Scoring<'a> {
    pub registry: &'a ModelRegistry,
    pub routes: &'a Routes,
    pub policy: ExplainPolicy,
    pub on_failure: ScoringFailure,
    /// The routed models as loaded when this scoring began ([`routed_models`]): a reload while
    /// a bulk is scored does not change the models, nor the fields the scanner read for them.
    pub models: BTreeMap<String, Arc<Bundle>>,
    /// Reads index/create sources for the fields scoring reads and nothing else ([`reader`]);
    /// `None`: sources are parsed whole.
    pub scanner: Option<Scanner>,
}

/// The loaded models the routes name, by name.
pub fn routed_models(registry: &ModelRegistry, routes: &Routes) -> BTreeMap<String, Arc<Bundle>> {
    routes
        .iter()
        .filter_map(|r| Some((r.model.clone(), registry.get(&r.model)?)))
        .collect()
}

/// The scanner for a bulk's sources: every path the routes' conditions, normalisation's
/// recognition and the routed `models` (features, behavioural state, the top-level key of each
/// result) read. It gives up on arrays on the way to a path (normalisation reads every element
/// of those), and there is none when one path is a prefix of another: sources are then parsed
/// whole.
pub fn reader(models: &BTreeMap<String, Arc<Bundle>>, routes: &Routes) -> Option<Scanner> {
    let mut paths: Vec<&str> = routes.paths().collect();
    paths.extend(crate::normalize::RECOGNITION_PATHS);
    for b in models.values() {
        paths.extend(b.extractor.paths());
        paths.push(top_key(&b.target_field));
    }
    Scanner::new(paths).map(Scanner::strict)
}

impl<'a> Scoring<'a> {
    /// Scoring as the configuration sets it (routes, explanation policy, failure policy).
    pub fn configured(registry: &'a ModelRegistry, config: &'a crate::config::Config) -> Self {
        let models = routed_models(registry, &config.routes);
        Scoring {
            scanner: reader(&models, &config.routes),
            models,
            registry,
            routes: &config.routes,
            policy: config.scoring.explain,
            on_failure: config.bulk.on_scoring_failure,
        }
    }

    /// Splits a bulk body into entries ([`crate::bulk::parse_with`]), its index/create sources
    /// read with this scoring's scanner.
    pub fn parse(
        &self,
        body: &Bytes,
        default_index: Option<&str>,
    ) -> Result<Vec<Entry>, BulkError> {
        crate::bulk::parse_with(body, default_index, self.scanner.as_ref())
    }

    /// Routes, scores and re-serialises a bulk's entries, as [`Scoring::parse`] (with this
    /// scoring's scanner) or [`crate::bulk::parse`] (sources parsed whole) split them. Every
    /// stage runs in parallel on the current rayon pool (the behavioural state one history at a
    /// time, in event-time order), so one large bulk uses every idle scoring thread.
    pub fn rewrite(&self, entries: Vec<Entry>) -> Rewritten {
        let items = entries.len();
        let mut routed: Vec<Routed<'a>> = entries
            .into_par_iter()
            .with_min_len(crate::bulk::PARALLEL_MIN_ITEMS)
            .map(|entry| self.route(entry))
            .collect();

        let mut by_model: BTreeMap<&'a str, Vec<usize>> = BTreeMap::new();
        for (i, r) in routed.iter().enumerate() {
            for &model in &r.models {
                by_model.entry(model).or_default().push(i);
            }
        }

        // Behavioural features: every routed document is observed once, in event-time order,
        // for all the models that read it.
        let mut observed: Option<Vec<Option<BehaviourValues>>> = {
            let bundles: Vec<_> = by_model
                .keys()
                .filter_map(|m| self.models.get(*m))
                .collect();
            let indices: Vec<usize> = (0..items)
                .filter(|&i| !routed[i].models.is_empty())
                .collect();
            let docs: Vec<Doc> = indices.iter().map(|&i| self.fields(&routed[i])).collect();
            let refs: Vec<&Doc> = docs.iter().collect();
            let bundle_refs: Vec<&crate::bundle::Bundle> =
                bundles.iter().map(|b| b.as_ref()).collect();
            self.registry.observe(&refs, &bundle_refs).map(|values| {
                let mut by_doc: Vec<Option<BehaviourValues>> = vec![None; items];
                for (i, v) in indices.into_iter().zip(values) {
                    by_doc[i] = Some(v);
                }
                by_doc
            })
        };

        // Each model's documents, scored in parallel jobs of consecutive documents.
        let mut results: Vec<Vec<ModelOutcome<'a>>> = (0..items).map(|_| Vec::new()).collect();
        for (model, indices) in &by_model {
            let context: Option<Vec<BehaviourValues>> = observed.as_mut().map(|o| {
                indices
                    .iter()
                    .map(|&i| {
                        // The last model (in name order) to read a document takes its
                        // values; the others copy them.
                        if routed[i].models.iter().max() == Some(model) {
                            o[i].take().unwrap_or_default()
                        } else {
                            o[i].clone().unwrap_or_default()
                        }
                    })
                    .collect()
            });
            let outcome = self.score(model, indices, &routed, context.as_deref());
            for (&i, r) in indices.iter().zip(outcome) {
                results[i].push((model, r));
            }
        }

        let assembled: Vec<Assembled> = std::mem::take(&mut routed)
            .into_par_iter()
            .zip(results.into_par_iter())
            .with_min_len(crate::bulk::PARALLEL_MIN_ITEMS)
            .map(|(r, outcomes)| self.assemble(r, outcomes))
            .collect();

        let mut out = Rewritten::default();
        out.stats.items = items;
        out.chunks.reserve(assembled.len() * 4);
        for a in assembled {
            out.stats.scored += usize::from(a.scored);
            out.stats.scoring_failed += usize::from(a.failed);
            if let Some((action, source)) = a.lines {
                out.chunks.push(action);
                out.chunks.push(Bytes::from_static(b"\n"));
                if let Some(s) = source {
                    out.chunks.push(s);
                    out.chunks.push(Bytes::from_static(b"\n"));
                }
                out.stats.forwarded += 1;
            } else if a.failed {
                out.stats.rejected += 1;
            }
            out.slots.push(a.slot);
        }
        out
    }

    /// A routed document read through [`Fields`].
    fn fields<'d>(&'d self, routed: &'d Routed) -> Doc<'d> {
        routed
            .doc
            .as_ref()
            .expect("routed documents are read")
            .fields(self.scanner.as_ref())
    }

    /// Normalises an index/create document and finds the models that score it.
    fn route(&self, mut entry: Entry) -> Routed<'a> {
        let mut doc = match &mut entry {
            Entry::Item(item) if matches!(item.op, OpType::Index | OpType::Create) => {
                item.source.take()
            }
            _ => None,
        };
        // A scanned event that normalisation recognises is parsed whole, to be normalised.
        if let (Some(scanned @ Parsed::Scanned(_)), Entry::Item(item)) = (&doc, &entry) {
            if recognise(&scanned.fields(self.scanner.as_ref())) != Source::Unchanged {
                if let Some(whole) = item.source_line.as_deref().and_then(crate::bulk::object) {
                    doc = Some(Parsed::Whole(Value::Object(whole)));
                }
            }
        }
        // Identity-provider events onto the ECS fields models and rules read. A recognised event
        // missing its essentials is left as sent (and scored or not as it stands).
        let mut normalized = false;
        if let Some(Parsed::Whole(d)) = doc.as_mut() {
            match crate::normalize::normalize(d) {
                Ok(Source::Unchanged) => {}
                Ok(_) => normalized = true,
                Err(e) => tracing::debug!(error = %e, "event not normalised"),
            }
        }
        let models = match (&doc, &entry) {
            (Some(d), Entry::Item(item)) => self
                .routes
                .models_for(&item.index, &d.fields(self.scanner.as_ref())),
            _ => Vec::new(),
        };
        Routed {
            entry,
            doc,
            normalized,
            models,
        }
    }

    /// One model's results for the documents at `indices`, in their order.
    fn score(
        &self,
        model: &str,
        indices: &[usize],
        routed: &[Routed<'a>],
        context: Option<&[BehaviourValues]>,
    ) -> Vec<Result<(String, Bytes), DocError>> {
        let Some(bundle) = self.models.get(model) else {
            return indices
                .iter()
                .map(|_| {
                    Err(DocError::Model {
                        model: model.to_string(),
                        reason: "no model with this name is loaded".into(),
                    })
                })
                .collect();
        };
        let job = indices
            .len()
            .div_ceil(rayon::current_num_threads() * JOBS_PER_THREAD)
            .max(MIN_JOB_DOCS);
        let jobs: Vec<(usize, &[usize])> = indices
            .chunks(job)
            .enumerate()
            .map(|(n, chunk)| (n * job, chunk))
            .collect();
        jobs.into_par_iter()
            .flat_map_iter(|(offset, chunk)| {
                let docs: Vec<Doc> = chunk.iter().map(|&i| self.fields(&routed[i])).collect();
                let refs: Vec<&Doc> = docs.iter().collect();
                let behaviour = context.map(|c| &c[offset..offset + chunk.len()]);
                infer_with(bundle, &refs, behaviour, self.policy)
                    .into_iter()
                    .map(|r| {
                        r.map(|r| {
                            let mut json = Vec::with_capacity(512);
                            r.write_json(bundle, &mut json);
                            (bundle.target_field.clone(), Bytes::from(json))
                        })
                    })
            })
            .collect()
    }

    /// The lines to forward for one entry (results written in), or its failure in place.
    fn assemble(&self, routed: Routed<'a>, outcomes: Vec<ModelOutcome<'a>>) -> Assembled {
        let Routed {
            entry,
            doc,
            normalized,
            ..
        } = routed;
        let item = match entry {
            Entry::Failed(e) => {
                return Assembled {
                    lines: None,
                    slot: Slot::Local(e),
                    scored: false,
                    failed: false,
                }
            }
            Entry::Item(item) => item,
        };
        let forwarded = |source: Option<Bytes>, scored: bool, failed: bool| Assembled {
            lines: Some((item.action_line.clone(), source)),
            slot: Slot::Forwarded,
            scored,
            failed,
        };
        if outcomes.is_empty() {
            let source = match (normalized, &doc) {
                (true, Some(Parsed::Whole(d))) => Some(serialise(d)),
                _ => item.source_line.clone(),
            };
            return forwarded(source, false, false);
        }
        let doc = doc.expect("scored documents are read");
        if outcomes.iter().all(|(_, o)| o.is_ok()) {
            let line = match (normalized, &doc) {
                (true, Parsed::Whole(d)) => Some(serialise(d)),
                _ => item.source_line.clone(),
            };
            let results = outcomes
                .iter()
                .filter_map(|(_, o)| o.as_ref().ok())
                .map(|(target, json)| (target.as_str(), &json[..]));
            let fields = doc.fields(self.scanner.as_ref());
            let has_key = |key: &str| fields.has_key(key);
            if let Some(line) = line.and_then(|l| appended(&l, has_key, doc.is_empty(), results)) {
                return forwarded(Some(Bytes::from(line)), true, false);
            }
        }
        // The results go into the document itself: parsed whole if it was only scanned.
        let whole = match doc {
            Parsed::Whole(Value::Object(map)) => Some(map),
            Parsed::Whole(_) => None,
            Parsed::Scanned(_) => item.source_line.as_deref().and_then(crate::bulk::object),
        };
        let Some(mut doc) = whole else {
            // Not reached: sources are checked to be objects, and what the scanner reads
            // serde_json reads. Were it reached, the document still goes on as sent.
            return forwarded(item.source_line.clone(), false, true);
        };
        let mut failure: Option<Failure> = None;
        for (model, outcome) in outcomes {
            let written = outcome
                .map_err(|e| doc_failure(model, &e))
                .and_then(|(target, json)| {
                    let value = serde_json::from_slice(&json).expect("results parse");
                    write_at(&mut doc, &target, value).map_err(|e| Failure {
                        status: 400,
                        kind: "document_parsing_exception",
                        reason: e.to_string(),
                        model: model.to_string(),
                    })
                });
            if let Err(f) = written {
                failure.get_or_insert(f);
            }
        }
        let Some(f) = failure else {
            return forwarded(Some(serialise(&doc)), true, false);
        };
        if self.on_failure == ScoringFailure::Reject {
            return Assembled {
                lines: None,
                slot: Slot::Local(ItemError {
                    op: item.op.as_str(),
                    index: Some(item.index),
                    id: item.id,
                    status: f.status,
                    kind: f.kind,
                    reason: f.reason,
                }),
                scored: false,
                failed: true,
            };
        }
        let marker = json!({"type": f.kind, "reason": f.reason, "model": f.model});
        // A document that cannot even take the marker is forwarded as sent.
        let _ = write_at(&mut doc, crate::fields::VIGIL_ERROR, marker);
        forwarded(Some(serialise(&doc)), false, true)
    }
}

fn serialise(value: &impl Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("JSON values serialise"))
}

fn doc_failure(model: &str, e: &DocError) -> Failure {
    let (status, kind) = match e {
        // The document itself is wrong: retrying will not help.
        DocError::Feature(_) => (400, e.kind()),
        // The model is missing or failing: transient, let the caller retry.
        DocError::Model { .. } => (503, e.kind()),
    };
    Failure {
        status,
        kind,
        reason: e.to_string(),
        model: model.to_string(),
    }
}
