//! `POST /_vigil/score/{model}`: documents in, enriched documents out.
//!
//! Body: `{"docs": [ {...}, ... ]}` or a bare JSON array. Answer, in request order:
//! `{"took", "model_id", "model_version", "errors", "docs": [{"doc": {...}} | {"error": {...}}]}`;
//! with `?results_only=true` each entry is `{"result": {...}}` instead of the whole document.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{json_error, read_body};
use super::{ApiError, AppState};
use crate::bundle::Bundle;
use crate::bundle::ModelRegistry;
use crate::enrich::write_at;
use crate::inference::{infer_with, ExplainPolicy};

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
    let limit = state.config.server.max_batch_docs;
    let started = std::time::Instant::now();
    let results_only = params.results_only;
    let registry = state.registry.clone();
    // Parsing, scoring and serialising the answer all run on the scoring pool, so the answer
    // (as large as the request when documents are echoed) is written once into a buffer sized
    // from the request, not grown on an async worker.
    let answer = state
        .on_cpu(move || -> Result<Vec<u8>, ApiError> {
            let docs = parse_docs(&bytes, limit)?;
            let docs = score_docs(&registry, &bundle, docs, policy, results_only);
            let errors = docs.iter().any(|d| d.get("error").is_some());
            let answer = json!({
                "took": started.elapsed().as_millis() as u64,
                "model_id": model,
                "model_version": bundle.version(),
                "errors": errors,
                "docs": docs,
            });
            let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 2 + 1024);
            serde_json::to_writer(&mut out, &answer)
                .map_err(|e| ApiError::internal(format!("serialising the answer: {e}")))?;
            Ok(out)
        })
        .await??;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        answer,
    )
        .into_response())
}

/// Parses the request body into documents, refusing batches over `limit`.
pub fn parse_docs(bytes: &[u8], limit: usize) -> Result<Vec<Value>, ApiError> {
    let body: Value = serde_json::from_slice(bytes).map_err(|e| json_error(&e))?;
    let docs = match body {
        Value::Array(docs) => docs,
        Value::Object(mut o) => match o.remove("docs") {
            Some(Value::Array(docs)) if o.is_empty() => docs,
            Some(Value::Array(_)) => {
                let extra: Vec<&String> = o.keys().collect();
                return Err(ApiError::bad_request(format!(
                    "unknown keys {extra:?} in the request body; expected only [docs]"
                )));
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    "[docs] must be an array of documents",
                ))
            }
            None => {
                return Err(ApiError::bad_request(
                    "the body must be {\"docs\": [...]} or a JSON array of documents",
                ))
            }
        },
        _ => {
            return Err(ApiError::bad_request(
                "the body must be {\"docs\": [...]} or a JSON array of documents",
            ))
        }
    };
    if docs.len() > limit {
        return Err(ApiError::too_large(format!(
            "a batch of {} documents exceeds the limit of {limit} (server.max_batch_docs)",
            docs.len()
        )));
    }
    Ok(docs)
}

/// Scores and enriches documents; one output entry per input, in order. The documents are
/// observed by the entity state (scoring is ingest: it records their events).
pub fn score_docs(
    registry: &ModelRegistry,
    bundle: &Arc<Bundle>,
    docs: Vec<Value>,
    policy: ExplainPolicy,
    results_only: bool,
) -> Vec<Value> {
    let refs: Vec<&Value> = docs.iter().collect();
    let observed = registry.observe(&refs, &[bundle.as_ref()]);
    let results = infer_with(bundle, &refs, observed.as_deref(), policy);
    docs.into_iter()
        .zip(results)
        .map(|(doc, result)| match result {
            Err(e) => json!({"error": e.to_json()}),
            Ok(r) => {
                let value = r.to_json(bundle);
                if results_only {
                    return json!({"result": value});
                }
                let Value::Object(mut map) = doc else {
                    unreachable!("extraction refuses non-object documents")
                };
                match write_at(&mut map, &bundle.target_field, value) {
                    Ok(()) => json!({"doc": Value::Object(map)}),
                    Err(e) => json!({"error": {"type": "document_parsing_exception", "reason": e.to_string()}}),
                }
            }
        })
        .collect()
}
