//! Rewriting a bulk request: route each document, score each model's documents in one batch,
//! write the results into the documents, and rebuild the body to forward. Lines of documents
//! that no model scores are forwarded byte for byte.
//!
//! A document whose scoring fails is never dropped: fail-open forwards it unscored with a
//! `vigil.error` marker; fail-closed answers it as a failed item in its place.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::bulk::{Entry, ItemError, OpType};
use crate::bundle::ModelRegistry;
use crate::config::ScoringFailure;
use crate::enrich::write_at;
use crate::inference::{infer_with, BehaviourValues, DocError, ExplainPolicy};
use crate::merge::Slot;
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

/// One model's result for one document: the model name and the `{target, value}` to write.
type ModelOutcome = (String, Result<Value, DocError>);

struct Failure {
    status: u16,
    kind: &'static str,
    reason: String,
    model: String,
}

pub struct Scoring<'a> {
    pub registry: &'a ModelRegistry,
    pub routes: &'a Routes,
    pub policy: ExplainPolicy,
    pub on_failure: ScoringFailure,
}

impl<'a> Scoring<'a> {
    /// Scoring as the configuration sets it (routes, explanation policy, failure policy).
    pub fn configured(registry: &'a ModelRegistry, config: &'a crate::config::Config) -> Self {
        Scoring {
            registry,
            routes: &config.routes,
            policy: config.scoring.explain,
            on_failure: config.bulk.on_scoring_failure,
        }
    }

    pub fn rewrite(&self, entries: Vec<Entry>) -> Rewritten {
        let mut out = Rewritten::default();
        out.stats.items = entries.len();
        // Parse the sources that may be scored; route them.
        let mut docs: Vec<Option<Value>> = Vec::with_capacity(entries.len());
        let mut normalized = vec![false; entries.len()];
        let mut by_model: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, entry) in entries.iter().enumerate() {
            let mut doc = match entry {
                Entry::Item(item) if matches!(item.op, OpType::Index | OpType::Create) => item
                    .source_line
                    .as_ref()
                    .and_then(|s| serde_json::from_slice::<Value>(s).ok()),
                _ => None,
            };
            // Identity-provider events onto the ECS fields models and rules read. A recognised
            // event missing its essentials is left as sent (and scored or not as it stands).
            if let Some(d) = doc.as_mut() {
                match crate::normalize::normalize(d) {
                    Ok(crate::normalize::Source::Unchanged) => {}
                    Ok(_) => normalized[i] = true,
                    Err(e) => tracing::debug!(error = %e, "event not normalised"),
                }
            }
            if let (Some(d), Entry::Item(item)) = (&doc, entry) {
                for model in self.routes.models_for(&item.index, d) {
                    by_model.entry(model.to_string()).or_default().push(i);
                }
            }
            docs.push(doc);
        }

        // Behavioural features: every routed document is observed once, in event-time order,
        // for all the models that read it.
        let bundles: Vec<_> = by_model
            .keys()
            .filter_map(|m| self.registry.get(m))
            .collect();
        let mut routed: Vec<usize> = by_model.values().flatten().copied().collect();
        routed.sort_unstable();
        routed.dedup();
        let observed: Option<BTreeMap<usize, BehaviourValues>> = {
            let refs: Vec<&Value> = routed
                .iter()
                .map(|&i| docs[i].as_ref().expect("routed documents parsed"))
                .collect();
            let bundle_refs: Vec<&crate::bundle::Bundle> =
                bundles.iter().map(|b| b.as_ref()).collect();
            self.registry
                .observe(&refs, &bundle_refs)
                .map(|values| routed.iter().copied().zip(values).collect())
        };

        // Score each model's documents in one batch.
        let mut results: BTreeMap<usize, Vec<ModelOutcome>> = BTreeMap::new();
        for (model, indices) in &by_model {
            let outcome: Vec<Result<Value, DocError>> = match self.registry.get(model) {
                None => indices
                    .iter()
                    .map(|_| {
                        Err(DocError::Model {
                            model: model.clone(),
                            reason: "no model with this name is loaded".into(),
                        })
                    })
                    .collect(),
                Some(bundle) => {
                    let refs: Vec<&Value> = indices
                        .iter()
                        .map(|&i| docs[i].as_ref().expect("routed documents parsed"))
                        .collect();
                    let context: Option<Vec<BehaviourValues>> = observed
                        .as_ref()
                        .map(|o| indices.iter().map(|i| o[i].clone()).collect());
                    infer_with(&bundle, &refs, context.as_deref(), self.policy)
                        .into_iter()
                        .map(|r| r.map(|r| (bundle.target_field.clone(), r.to_json(&bundle))))
                        .map(|r| r.map(|(target, value)| json!({"target": target, "value": value})))
                        .collect()
                }
            };
            for (&i, r) in indices.iter().zip(outcome) {
                results.entry(i).or_default().push((model.clone(), r));
            }
        }

        for (i, entry) in entries.into_iter().enumerate() {
            let item = match entry {
                Entry::Failed(e) => {
                    out.slots.push(Slot::Local(e));
                    continue;
                }
                Entry::Item(item) => item,
            };
            let mut source = item.source_line.clone();
            if normalized[i] && !results.contains_key(&i) {
                if let Some(doc) = &docs[i] {
                    source = Some(Bytes::from(
                        serde_json::to_vec(doc).expect("JSON values serialise"),
                    ));
                }
            }
            if let Some(outcomes) = results.remove(&i) {
                let Some(Value::Object(mut doc)) = docs[i].take() else {
                    unreachable!("scored documents are objects")
                };
                let mut failure: Option<Failure> = None;
                for (model, outcome) in outcomes {
                    let written = outcome.map_err(|e| doc_failure(&model, &e)).and_then(|v| {
                        let target = v["target"].as_str().unwrap_or_default().to_string();
                        write_at(&mut doc, &target, v["value"].clone()).map_err(|e| Failure {
                            status: 400,
                            kind: "document_parsing_exception",
                            reason: e.to_string(),
                            model: model.clone(),
                        })
                    });
                    if let Err(f) = written {
                        failure.get_or_insert(f);
                    }
                }
                match failure {
                    None => out.stats.scored += 1,
                    Some(f) => {
                        out.stats.scoring_failed += 1;
                        if self.on_failure == ScoringFailure::Reject {
                            out.stats.rejected += 1;
                            out.slots.push(Slot::Local(ItemError {
                                op: item.op.as_str(),
                                index: Some(item.index),
                                id: item.id,
                                status: f.status,
                                kind: f.kind,
                                reason: f.reason,
                            }));
                            continue;
                        }
                        let marker = json!({"type": f.kind, "reason": f.reason, "model": f.model});
                        // A document that cannot even take the marker is forwarded as sent.
                        let _ = write_at(&mut doc, crate::fields::VIGIL_ERROR, marker);
                    }
                }
                source = Some(Bytes::from(
                    serde_json::to_vec(&Value::Object(doc)).expect("JSON values serialise"),
                ));
            }
            out.chunks.push(item.action_line);
            out.chunks.push(Bytes::from_static(b"\n"));
            if let Some(s) = source {
                out.chunks.push(s);
                out.chunks.push(Bytes::from_static(b"\n"));
            }
            out.slots.push(Slot::Forwarded);
            out.stats.forwarded += 1;
        }
        out
    }
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
