//! `POST /_vigil/es/inference`: the service behind an Elasticsearch `custom` inference
//! endpoint of task type `completion` (`pipelines/_inference/completion/vigil-score.json`).
//!
//! Elasticsearch renders the endpoint's request template `{"doc": ${input}, "model": ${model}}`
//! with every value JSON-encoded; for `completion`, `${input}` is the first input as a JSON
//! string, so the document arrives as a JSON string inside JSON:
//! `{"doc": "{\"url\":{\"original\":\"...\"}}", "model": "url-phishing"}`.
//! The answer is `{"result": "<the ml.inference result object as a JSON string>"}`, read by the
//! endpoint's `response.json_parser.completion_result: "$.result"`; the pipeline's `json`
//! processor turns the string back into an object.
//!
//! - Endpoint creation validates by sending the input `"how big"` (Elasticsearch's
//!   `CustomServiceIntegrationValidator.TEST_INPUT`); that probe gets a parseable result naming
//!   the model, so creating the endpoint also checks that the model is loaded.
//! - A document that cannot be scored answers 400 with the reason: Elasticsearch does not
//!   retry it, and the pipeline's `on_failure` keeps the document and marks it `vigil.error`.
//! - Overload answers 429 (never 5xx): Elasticsearch retries only 429 for the custom service
//!   and turns 5xx into a 400 that shippers drop.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::error::{json_error, read_body};
use super::{ApiError, AppState};
use crate::inference::infer;

/// The input Elasticsearch sends when it validates a new custom endpoint.
pub const VALIDATION_PROBE_INPUT: &str = "how big";

/// How long a request may wait for a scoring thread before it is answered 429.
pub const SCORING_WAIT: Duration = Duration::from_secs(2);

/// Parses the body Elasticsearch's custom service sends; returns `(model, doc)`, where `doc`
/// is `None` for the validation probe.
pub fn parse_request(bytes: &[u8]) -> Result<(String, Option<Value>), ApiError> {
    let body: Value = serde_json::from_slice(bytes).map_err(|e| json_error(&e))?;
    let Value::Object(mut body) = body else {
        return Err(ApiError::bad_request(
            "the body must be {\"doc\": <document as a JSON string>, \"model\": <model name>}",
        ));
    };
    let model = match body.remove("model") {
        Some(Value::String(m)) if !m.is_empty() => m,
        _ => {
            return Err(ApiError::bad_request(
                "[model] must be the name of a loaded model (task_settings.parameters.model of the endpoint)",
            ))
        }
    };
    let doc =
        match body.remove("doc") {
            // The template inserts the input JSON-encoded: a string holding the document's JSON.
            Some(Value::String(text)) => match serde_json::from_str::<Value>(&text) {
                Ok(doc @ Value::Object(_)) => Some(doc),
                Ok(_) => return Err(ApiError::bad_request(
                    "[doc] must hold a JSON object (the fields packed by the pipeline's script)",
                )),
                Err(_) if text == VALIDATION_PROBE_INPUT => None,
                Err(e) => {
                    return Err(ApiError::parse(format!(
                        "[doc] is not a JSON document (line {} column {}): {e}",
                        e.line(),
                        e.column()
                    )))
                }
            },
            // Tolerated: a template that inserts an object rather than a string.
            Some(doc @ Value::Object(_)) => Some(doc),
            _ => return Err(ApiError::bad_request(
                "[doc] must be the document as a JSON string (the endpoint's request template is \
                 {\"doc\": ${input}, \"model\": ${model}})",
            )),
        };
    Ok((model, doc))
}

pub async fn es_inference(
    State(state): State<AppState>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = read_body(body, state.config.server.max_body_bytes).await?;
    let (model, doc) = parse_request(&bytes)?;
    let bundle = state
        .registry
        .get(&model)
        .ok_or_else(|| ApiError::unknown_model(&model))?;
    let Some(doc) = doc else {
        let probe = json!({
            crate::fields::result::MODEL_ID: bundle.name(),
            crate::fields::result::MODEL_VERSION: bundle.version().to_string(),
            "validation": true,
        });
        return Ok(Json(json!({"result": probe.to_string()})));
    };
    let permit = tokio::time::timeout(SCORING_WAIT, state.cpu.clone().acquire_owned())
        .await
        .map_err(|_| {
            ApiError::overloaded(format!(
                "no scoring thread became free within {} ms; retry later",
                SCORING_WAIT.as_millis()
            ))
        })?
        .map_err(|_| ApiError::overloaded("scoring pool is shut down"))?;
    let policy = state.config.scoring.explain;
    let outcome = state
        .run_permitted(permit, move || {
            let result = infer(&bundle, &[&doc], policy)
                .pop()
                .expect("one result per document");
            result.map(|r| r.to_json(&bundle))
        })
        .await?;
    match outcome {
        Ok(result) => Ok(Json(json!({"result": result.to_string()}))),
        Err(e) => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            e.kind(),
            e.to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rendered_template_and_the_probe() {
        let (m, d) = parse_request(br#"{"doc": "{\"a\":{\"b\":1}}", "model": "m"}"#).unwrap();
        assert_eq!(m, "m");
        assert_eq!(d, Some(json!({"a": {"b": 1}})));
        let (_, probe) = parse_request(br#"{"doc": "how big", "model": "m"}"#).unwrap();
        assert_eq!(probe, None);
        for bad in [
            &br#"{"doc": "not json", "model": "m"}"#[..],
            br#"{"doc": "[1]", "model": "m"}"#,
            br#"{"doc": 3, "model": "m"}"#,
            br#"{"doc": "{}"}"#,
            br#"[]"#,
        ] {
            let e = parse_request(bad).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{e:?}");
        }
    }
}
