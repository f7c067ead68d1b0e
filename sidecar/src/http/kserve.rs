//! KServe Open Inference Protocol v2 (REST) for raw tensors.
//!
//! Errors follow that protocol (`{"error": "<message>"}`), not Elasticsearch's shape, so v2
//! clients can read them.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::read_body;
use super::AppState;
use crate::bundle::Bundle;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route(
            "/v2/health/live",
            get(|| async { Json(json!({"live": true})) }),
        )
        .route("/v2/health/ready", get(server_ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
}

/// A v2 error: status plus `{"error": message}`.
#[derive(Debug)]
pub struct V2Error(StatusCode, String);

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> V2Error {
    V2Error(StatusCode::BAD_REQUEST, msg.into())
}

fn model(state: &AppState, name: &str) -> Result<std::sync::Arc<Bundle>, V2Error> {
    state.registry.get(name).ok_or_else(|| {
        V2Error(
            StatusCode::NOT_FOUND,
            format!("model [{name}] is not loaded"),
        )
    })
}

async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "vigil",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["contributions"],
    }))
}

async fn server_ready(State(state): State<AppState>) -> impl IntoResponse {
    let (ready, _) = super::models::readiness(&state).await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready})))
}

async fn model_metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, V2Error> {
    let b = model(&state, &name)?;
    Ok(Json(json!({
        "name": b.name(),
        "versions": [b.version()],
        "platform": "onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, b.n_features()]}],
        "outputs": [
            {"name": b.manifest.model.output, "datatype": "FP32", "shape": [-1, b.engine.n_outputs()]},
            {"name": "contributions", "datatype": "FP64", "shape": [-1, -1, b.n_features() + 1]},
        ],
        "parameters": {
            "feature_names": b.extractor.names().collect::<Vec<_>>(),
            "classes": b.manifest.classes,
        },
    })))
}

async fn model_ready(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, V2Error> {
    let b = model(&state, &name)?;
    Ok(Json(json!({"name": b.name(), "ready": true})))
}

#[derive(Debug, Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Debug, Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Value,
}

#[derive(Debug, Deserialize)]
struct RequestedOutput {
    name: String,
}

async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Value>, V2Error> {
    let b = model(&state, &name)?;
    let bytes = read_body(body, state.config.server.max_body_bytes)
        .await
        .map_err(|e| V2Error(e.status, e.reason))?;
    let request: InferRequest = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("malformed inference request: {e}")))?;
    let [input] = request.inputs.as_slice() else {
        return Err(bad(format!(
            "expected exactly one input tensor, found {}",
            request.inputs.len()
        )));
    };
    if !matches!(input.datatype.as_str(), "FP32" | "FP64") {
        return Err(bad(format!(
            "input [{}] has datatype {}, expected FP32 or FP64",
            input.name, input.datatype
        )));
    }
    let f = b.n_features();
    let n = match input.shape.as_slice() {
        [n, w] if *n >= 0 && *w as usize == f => *n as usize,
        [w] if *w as usize == f => 1,
        other => {
            return Err(bad(format!(
                "input shape {other:?} does not match [N, {f}]"
            )))
        }
    };
    if n > state.config.server.max_batch_docs {
        return Err(V2Error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a batch of {n} rows exceeds the limit of {}",
                state.config.server.max_batch_docs
            ),
        ));
    }
    let mut rows = Vec::with_capacity(n * f);
    flatten(&input.data, &mut rows)?;
    if rows.len() != n * f {
        return Err(bad(format!(
            "input holds {} values, shape says {}",
            rows.len(),
            n * f
        )));
    }
    let wanted: Vec<String> = match request.outputs {
        Some(outs) => outs.into_iter().map(|o| o.name).collect(),
        None => vec![b.manifest.model.output.clone()],
    };
    for w in &wanted {
        if *w != b.manifest.model.output && w != "contributions" {
            return Err(bad(format!("unknown output [{w}]")));
        }
    }
    let bundle = b.clone();
    let outputs = state
        .on_cpu(move || compute(&bundle, &rows, n, &wanted))
        .await
        .map_err(|e| V2Error(e.status, e.reason))??;
    Ok(Json(json!({
        "model_name": b.name(),
        "model_version": b.version(),
        "id": request.id,
        "outputs": outputs,
    })))
}

fn compute(b: &Bundle, rows: &[f32], n: usize, wanted: &[String]) -> Result<Vec<Value>, V2Error> {
    let internal = |e: String| V2Error(StatusCode::INTERNAL_SERVER_ERROR, e);
    let mut outputs = Vec::new();
    for name in wanted {
        if name == "contributions" {
            let explainer = b
                .explainer
                .as_ref()
                .ok_or_else(|| bad(format!("model [{}] has explanations disabled", b.name())))?;
            let explanations = explainer
                .explain(&b.engine, rows, n, b.n_features())
                .map_err(|e| internal(e.to_string()))?;
            let cols = explanations.first().map_or(0, |e| e.contributions.len());
            let data: Vec<f64> = explanations
                .iter()
                .flat_map(|e| {
                    e.contributions
                        .iter()
                        .zip(&e.expected_value)
                        .flat_map(|(c, ev)| c.iter().copied().chain(std::iter::once(*ev)))
                        .collect::<Vec<_>>()
                })
                .collect();
            outputs.push(json!({
                "name": "contributions", "datatype": "FP64",
                "shape": [n, cols, b.n_features() + 1], "data": data,
                "parameters": {"method": explainer.method()},
            }));
        } else {
            let out = b
                .engine
                .predict(rows, n)
                .map_err(|e| internal(e.to_string()))?;
            outputs.push(json!({
                "name": name, "datatype": "FP32",
                "shape": [n, b.engine.n_outputs()], "data": out,
            }));
        }
    }
    Ok(outputs)
}

/// Flattens nested arrays of numbers (row-major); `null` is a missing value (NaN).
fn flatten(v: &Value, out: &mut Vec<f32>) -> Result<(), V2Error> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| flatten(i, out)),
        Value::Number(x) => {
            let x = x
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad("non-finite input value"))?;
            out.push(x as f32);
            Ok(())
        }
        Value::Null => {
            out.push(f32::NAN);
            Ok(())
        }
        other => Err(bad(format!(
            "input data must be numbers, found {}",
            crate::features::describe(other)
        ))),
    }
}
