//! `POST /_vigil/score/{model}`: documents in, enriched documents out.
//!
//! Body: `{"docs": [ {...}, ... ]}` or a bare JSON array. Answer, in request order:
//! `{"took", "model_id", "model_version", "errors", "docs": [{"doc": {...}} | {"error": {...}}]}`;
//! with `?results_only=true` each entry is `{"result": {...}}` instead of the whole document.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::error::{json_error, read_body};
use super::{ApiError, AppState};
use crate::bundle::Bundle;
use crate::bundle::ModelRegistry;
use crate::enrich::{append_into, top_key, write_at, write_str};
use crate::features::{read_batch, BatchDoc, Scanned};
use crate::inference::{infer_extracted, BehaviourValues, ExplainPolicy, InferenceResult};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ScoreParams {
    #[serde(default)]
    results_only: bool,
    /// `all`, `never` or `threshold`: overrides the server's explanation policy for this call.
    #[serde(default)]
    explain: Option<String>,
}

pub async fn score(
    State(state): State<AppState>,
    Path(model): Path<String>,
    params: Result<Query<ScoreParams>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<axum::response::Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let bundle = state
        .registry
        .get(&model)
        .ok_or_else(|| ApiError::unknown_model(&model))?;
    let policy = match params.explain.as_deref() {
        None => state.config.scoring.explain,
        Some("all") => ExplainPolicy::All,
        Some("never") => ExplainPolicy::Never,
        Some("threshold") => ExplainPolicy::AboveMinScore,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "explain [{other}] must be one of all, never, threshold"
            )))
        }
    };
    let bytes = read_body(body, state.config.server.max_body_bytes).await?;
    let request = Request {
        registry: state.registry.clone(),
        bundle,
        model,
        policy,
        results_only: params.results_only,
        limit: state.config.server.max_batch_docs,
        started: std::time::Instant::now(),
    };
    // Parsing, scoring and writing the answer run on the scoring pool, or here when the work is
    // short: the body is read here and, if it holds at most SHORT_DOCS documents, scored here.
    // Each document's bytes are echoed with its result appended, not parsed and serialised again.
    let here = if short(&request.bundle, policy, bytes.len()) {
        super::caught(|| match request.read(&bytes) {
            Some(batch) if batch.len() <= SHORT_DOCS => Some(request.answer(&bytes, Some(batch))),
            _ => None,
        })?
    } else {
        None
    };
    let answer = match here {
        Some(answer) => answer?,
        None => {
            state
                .on_cpu(move || {
                    let batch = request.read(&bytes);
                    request.answer(&bytes, batch)
                })
                .await??
        }
    };
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        answer,
    )
        .into_response())
}

/// A scoring request, its body read.
struct Request {
    registry: Arc<ModelRegistry>,
    bundle: Arc<Bundle>,
    model: String,
    policy: ExplainPolicy,
    results_only: bool,
    /// `server.max_batch_docs`.
    limit: usize,
    started: std::time::Instant,
}

impl Request {
    /// The body's documents and the fields the bundle reads, in one pass (`None`: not the usual
    /// shape, or not valid; [`Request::answer`] then has serde_json read it and say why).
    fn read<'b>(&self, body: &'b [u8]) -> Option<Vec<BatchDoc<'b>>> {
        // UTF-8 checked 16-64 bytes at a time (std's check took 1-2% of a scoring request's CPU).
        simdutf8::basic::from_utf8(body).ok().and_then(|body| {
            read_batch(
                self.bundle.extractor.scanner(),
                body,
                watched(&self.bundle),
                self.limit,
            )
        })
    }

    /// Scores the documents [`Request::read`] found in `bytes` and writes the answer.
    fn answer(
        &self,
        bytes: &[u8],
        batch: Option<Vec<BatchDoc<'_>>>,
    ) -> Result<bytes::Bytes, ApiError> {
        let bundle = &self.bundle;
        // The answer is written in one buffer: room for its head (written last, when `took`
        // and `errors` are known, right before the documents), then each document echoed
        // with its result (a result of a few hundred bytes each).
        let head_room = Head::room(bundle, &self.model);
        let mut out = Vec::with_capacity(head_room + bytes.len() * 2 + 4096);
        out.resize(head_room, b' ');
        let scoring = Batch {
            registry: &self.registry,
            bundle,
            policy: self.policy,
            results_only: self.results_only,
            framed: true,
        };
        let answers = match batch {
            Some(batch) => {
                let (texts, reads): (Vec<&str>, Vec<Read>) = batch
                    .into_iter()
                    .map(|doc| (doc.text, read(doc.scanned, doc.text)))
                    .unzip();
                scoring.score(&texts, reads, &mut out)
            }
            // Not the usual shape, or not valid: serde_json reads it and says why.
            None => {
                let docs = parse_docs(bytes, self.limit)?;
                let docs: Vec<&str> = docs.iter().map(|d| d.get()).collect();
                scoring.score_texts(&docs, &mut out)
            }
        };
        out.extend_from_slice(b"]}");
        let head = Head {
            took: self.started.elapsed().as_millis() as u64,
            errors: answers.iter().any(Result::is_err),
        }
        .write(bundle, &self.model);
        let start = head_room - head.len();
        out[start..head_room].copy_from_slice(&head);
        Ok(bytes::Bytes::from(out).slice(start..))
    }
}

/// The most documents [`short`] work scores on the async worker: each costs a microsecond or
/// two however small it is (a row through every tree, a result written), so a body of many tiny
/// documents goes to the pool.
const SHORT_DOCS: usize = 256;

/// The largest body [`short`] work can have: 128 KiB, about 175 documents of the benchmark's 32
/// numbers each, read and scored in about 0.7 ms of CPU (the 100 of 73 KiB take about 0.4 ms).
const SHORT_BODY: usize = 128 * 1024;

/// Whether scoring this request may be short enough to run on the async worker that received it
/// (it is, if the body holds at most [`SHORT_DOCS`] documents): a body of at most [`SHORT_BODY`]
/// bytes, scored by Vigil's tree evaluator (a few microseconds a document) without explanations
/// (TreeSHAP costs up to a tenth of a millisecond a document) and without behavioural state
/// (which may spread its work over the pool).
fn short(bundle: &Bundle, policy: ExplainPolicy, body: usize) -> bool {
    body <= SHORT_BODY
        && policy == ExplainPolicy::Never
        && matches!(bundle.engine, crate::score::Engine::Tree(_))
        && bundle.extractor.behaviour_features().is_empty()
}

/// The head of a scoring answer, `{"took":…,"model_id":…,"model_version":…,"errors":…,"docs":[`.
/// It is written last, into room left for it before the documents, so that the documents are not
/// copied behind it.
struct Head {
    took: u64,
    errors: bool,
}

impl Head {
    /// The longest head a batch of `bundle` can have.
    fn room(bundle: &Bundle, model: &str) -> usize {
        let longest = Head {
            took: u64::MAX,
            errors: false,
        };
        longest.write(bundle, model).len()
    }

    fn write(&self, bundle: &Bundle, model: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(b"{\"took\":");
        out.extend_from_slice(self.took.to_string().as_bytes());
        out.extend_from_slice(b",\"model_id\":");
        write_str(&mut out, model);
        out.extend_from_slice(b",\"model_version\":");
        write_str(&mut out, bundle.version());
        out.extend_from_slice(if self.errors {
            b",\"errors\":true"
        } else {
            b",\"errors\":false"
        });
        out.extend_from_slice(b",\"docs\":[");
        out
    }
}

/// Splits the request body into its documents (not parsed yet), refusing batches over `limit`.
/// The body is read once: `{"docs": [...]}` and a bare array alike.
pub fn parse_docs(bytes: &[u8], limit: usize) -> Result<Vec<&RawValue>, ApiError> {
    let shape =
        || ApiError::bad_request("the body must be {\"docs\": [...]} or a JSON array of documents");
    let docs = match serde_json::from_slice::<ScoreBody>(bytes).map_err(|e| json_error(&e))? {
        ScoreBody::Array(docs) => docs,
        ScoreBody::Object { docs: None, .. } | ScoreBody::Other => return Err(shape()),
        ScoreBody::Object { extra, .. } if !extra.is_empty() => {
            return Err(ApiError::bad_request(format!(
                "unknown keys {extra:?} in the request body; expected only [docs]"
            )))
        }
        ScoreBody::Object {
            docs: Some(docs), ..
        } => docs.ok_or_else(|| ApiError::bad_request("[docs] must be an array of documents"))?,
    };
    if docs.len() > limit {
        return Err(ApiError::too_large(format!(
            "a batch of {} documents exceeds the limit of {limit} (server.max_batch_docs)",
            docs.len()
        )));
    }
    Ok(docs)
}

/// A scoring request's body, its documents left unparsed.
enum ScoreBody<'a> {
    Array(Vec<&'a RawValue>),
    /// `docs` is `None` when absent, `Some(None)` when not an array; `extra` the other keys.
    Object {
        docs: Option<Option<Vec<&'a RawValue>>>,
        extra: Vec<String>,
    },
    Other,
}

impl<'de> Deserialize<'de> for ScoreBody<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BodyVisitor { top: true })
    }
}

/// Reads the body (`top`) or the value of its `docs` key.
struct BodyVisitor {
    top: bool,
}

impl<'de> Deserialize<'de> for DocsValue<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BodyVisitor { top: false })
            .map(|body| match body {
                ScoreBody::Array(docs) => DocsValue(Some(docs)),
                _ => DocsValue(None),
            })
    }
}

/// The value of `docs`: its documents when it is an array.
struct DocsValue<'a>(Option<Vec<&'a RawValue>>);

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = ScoreBody<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ScoreBody<'de>, A::Error> {
        let mut docs = Vec::new();
        while let Some(doc) = seq.next_element::<&'de RawValue>()? {
            docs.push(doc);
        }
        Ok(ScoreBody::Array(docs))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ScoreBody<'de>, A::Error> {
        let (mut docs, mut extra) = (None, Vec::new());
        while let Some(key) = map.next_key::<String>()? {
            if self.top && key == "docs" {
                docs = Some(map.next_value::<DocsValue>()?.0);
            } else {
                extra.push(key);
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(ScoreBody::Object { docs, extra })
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<ScoreBody<'de>, E> {
        Ok(ScoreBody::Other)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<ScoreBody<'de>, E> {
        Ok(ScoreBody::Other)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<ScoreBody<'de>, E> {
        Ok(ScoreBody::Other)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<ScoreBody<'de>, E> {
        Ok(ScoreBody::Other)
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<ScoreBody<'de>, E> {
        Ok(ScoreBody::Other)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<ScoreBody<'de>, E> {
        Ok(ScoreBody::Other)
    }
}

/// One document's answer: its JSON text with the result written at the bundle's target field
/// (the result alone with `results_only`), or the error object.
pub type Answer = Result<Vec<u8>, Value>;

/// A document as read for scoring.
enum Read {
    /// Only the features' fields, by the extractor's scanner.
    Scanned(Scanned),
    /// Whole (behavioural features, or a document the scanner gives up on).
    Parsed(Value),
    /// Not JSON: the error object.
    Bad(Value),
}

/// The top-level key of the bundle's target field (`ml` for `ml.inference.<model>`).
fn watched(bundle: &Bundle) -> &str {
    top_key(&bundle.target_field)
}

/// A document as read for scoring: what the scanner found, or the document parsed whole.
fn read(scanned: Option<Scanned>, text: &str) -> Read {
    if let Some(scanned) = scanned {
        return Read::Scanned(scanned);
    }
    match serde_json::from_str(text) {
        Ok(doc) => Read::Parsed(doc),
        Err(e) => Read::Bad(
            json!({"type": "x_content_parse_exception", "reason": format!("malformed JSON: {e}")}),
        ),
    }
}

/// Scores documents given as JSON texts; one answer per document, in order. The documents are
/// observed by the entity state (scoring is ingest: it records their events). A document is
/// echoed as sent with its result appended, unless it already has the target's top-level key
/// (then the result is merged into the parsed document).
pub fn score_raw(
    registry: &ModelRegistry,
    bundle: &Arc<Bundle>,
    docs: &[&str],
    policy: ExplainPolicy,
    results_only: bool,
) -> Vec<Answer> {
    let batch = Batch {
        registry,
        bundle,
        policy,
        results_only,
        framed: false,
    };
    let mut written = Vec::new();
    batch
        .score_texts(docs, &mut written)
        .into_iter()
        .map(|answer| answer.map(|range| written[range].to_vec()))
        .collect()
}

/// One document's answer within the bytes a batch wrote: where its text is (with its frame when
/// framed), or the error object.
type Written = Result<std::ops::Range<usize>, Value>;

/// A batch of documents scored by one bundle, answers written one after another into one buffer.
struct Batch<'a> {
    registry: &'a ModelRegistry,
    bundle: &'a Arc<Bundle>,
    policy: ExplainPolicy,
    results_only: bool,
    /// Each answer written as an entry of the scoring answer's `docs`: `{"doc":…}` (or
    /// `{"result":…}`, or `{"error":…}`), separated by commas.
    framed: bool,
}

impl Batch<'_> {
    /// [`Self::score`] for documents given as JSON texts.
    fn score_texts(&self, docs: &[&str], out: &mut Vec<u8>) -> Vec<Written> {
        let scanner = self.bundle.extractor.scanner();
        let watched = watched(self.bundle);
        let reads = docs
            .iter()
            .map(|text| read(scanner.and_then(|s| s.scan(text, watched)), text))
            .collect();
        self.score(docs, reads, out)
    }

    /// Scores documents already read; each answer (the document echoed with its result, or the
    /// result alone) is appended to `out`, one after another, in order.
    fn score(&self, docs: &[&str], reads: Vec<Read>, out: &mut Vec<u8>) -> Vec<Written> {
        let bundle = self.bundle;
        let parsed: Vec<usize> = (0..reads.len())
            .filter(|&i| matches!(reads[i], Read::Parsed(_)))
            .collect();
        let refs: Vec<&Value> = parsed
            .iter()
            .map(|&i| match &reads[i] {
                Read::Parsed(doc) => doc,
                _ => unreachable!("filtered"),
            })
            .collect();
        let observed = self.registry.observe(&refs, &[bundle.as_ref()]);
        let mut context: Vec<Option<&BehaviourValues>> = vec![None; reads.len()];
        if let Some(values) = &observed {
            for (&i, v) in parsed.iter().zip(values) {
                context[i] = Some(v);
            }
        }

        let readable: Vec<usize> = (0..reads.len())
            .filter(|&i| !matches!(reads[i], Read::Bad(_)))
            .collect();
        let extractor = &bundle.extractor;
        let mut results = infer_extracted(
            bundle,
            readable.len(),
            |j, row| match &reads[readable[j]] {
                Read::Scanned(s) => extractor.extract_scanned(s, row),
                Read::Parsed(doc) => extractor.extract_with(doc, context[readable[j]], row),
                Read::Bad(_) => unreachable!("filtered"),
            },
            self.policy,
        )
        .into_iter();

        docs.iter()
            .zip(reads)
            .enumerate()
            .map(|(k, (text, read))| {
                if self.framed && k > 0 {
                    out.push(b',');
                }
                let start = out.len();
                if self.framed {
                    out.extend_from_slice(if self.results_only {
                        b"{\"result\":"
                    } else {
                        b"{\"doc\":"
                    });
                }
                let answer = match read {
                    Read::Bad(error) => Err(error),
                    read => match results.next().expect("one result per readable document") {
                        Ok(result) => self.answer(text, read, &result, out),
                        Err(e) => Err(e.to_json()),
                    },
                };
                if self.framed {
                    if let Err(error) = &answer {
                        out.truncate(start);
                        out.extend_from_slice(b"{\"error\":");
                        serde_json::to_writer(&mut *out, error).expect("JSON values serialise");
                    }
                    out.push(b'}');
                }
                answer.map(|()| start..out.len())
            })
            .collect()
    }

    /// Appends one document's answer to `out`: the result alone, or the document as sent with the
    /// result appended (merged into the parsed document when it has the target's top-level key).
    fn answer(
        &self,
        text: &str,
        read: Read,
        result: &InferenceResult,
        out: &mut Vec<u8>,
    ) -> Result<(), Value> {
        let bundle = self.bundle;
        if self.results_only {
            result.write_json(bundle, out);
            return Ok(());
        }
        let target = bundle.target_field.as_str();
        let watched = watched(bundle);
        let one = std::iter::once(target);
        let write = |out: &mut Vec<u8>| result.write_json(bundle, out);
        let echoed = match &read {
            Read::Scanned(s) => {
                let has_key = |key: &str| s.has_watched && key == watched;
                append_into(out, text.as_bytes(), has_key, s.empty, one, write)
            }
            Read::Parsed(Value::Object(doc)) => append_into(
                out,
                text.as_bytes(),
                |key: &str| doc.contains_key(key),
                doc.is_empty(),
                one,
                write,
            ),
            _ => false,
        };
        if echoed {
            return Ok(());
        }
        let doc = match read {
            Read::Parsed(doc) => doc,
            _ => serde_json::from_str(text).expect("scanned documents parse"),
        };
        let Value::Object(mut map) = doc else {
            unreachable!("extraction refuses non-object documents")
        };
        write_at(&mut map, target, result.to_json(bundle))
            .map_err(|e| json!({"type": "document_parsing_exception", "reason": e.to_string()}))?;
        serde_json::to_writer(out, &map).expect("JSON values serialise");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(dir: &str) -> Arc<Bundle> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        crate::bundle::load(&root.join(dir)).expect("bundle loads")
    }

    #[test]
    fn only_small_tree_batches_without_explanations_or_state_are_short() {
        let trees = bundle("sidecar/tests/bundles/bench_xgb");
        assert!(short(&trees, ExplainPolicy::Never, 73_156));
        assert!(short(&trees, ExplainPolicy::Never, SHORT_BODY));
        assert!(!short(&trees, ExplainPolicy::Never, SHORT_BODY + 1));
        assert!(!short(&trees, ExplainPolicy::All, 1_000));
        assert!(!short(&trees, ExplainPolicy::AboveMinScore, 1_000));
        // A graph tract runs: its cost is not bounded by anything Vigil knows.
        let mlp = bundle("sidecar/tests/bundles/mlp_binary");
        assert!(!short(&mlp, ExplainPolicy::Never, 1_000));
        // Behavioural state: the login model.
        let logins = bundle("models/login-risk");
        assert!(matches!(logins.engine, crate::score::Engine::Tree(_)));
        assert!(!short(&logins, ExplainPolicy::Never, 1_000));
    }
}
