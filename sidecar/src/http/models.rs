//! Model administration: list, reload, health.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, AppState};
use crate::bundle::Bundle;

pub fn describe(bundle: &Bundle) -> Value {
    let m = &bundle.manifest;
    json!({
        "name": m.name,
        "version": m.version,
        "description": m.description,
        "task": m.task,
        "engine": bundle.engine.kind(),
        "classes": m.classes,
        "positive_class": m.positive_class,
        "threshold": m.threshold,
        "target_field": bundle.target_field,
        "features": bundle.extractor.names().collect::<Vec<_>>(),
        "explanation": {
            "method": bundle.explainer.as_ref().map(|e| e.method()),
            "top_k": m.explanation.top_k,
            "min_score": m.explanation.min_score,
        },
        "sha256": bundle.sha256,
        "dir": bundle.dir.display().to_string(),
        "golden_max_abs_diff": bundle.golden_max_diff,
    })
}

pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let snapshot = state.registry.snapshot();
    Json(json!({
        "models": snapshot.models.values().map(|b| describe(b)).collect::<Vec<_>>(),
        "refused": snapshot.refused,
    }))
}

pub async fn reload(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let registry = state.registry.clone();
    let report = tokio::task::spawn_blocking(move || registry.reload())
        .await
        .map_err(|e| ApiError::internal(format!("reload failed: {e}")))?;
    Ok(Json(json!({
        "acknowledged": true,
        "loaded": report.loaded,
        "refused": report.refused,
    })))
}

pub async fn live() -> Json<Value> {
    Json(json!({"live": true}))
}

pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let models = state.registry.snapshot().models.len();
    let status = if models > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // Serving starts before warm start ends: the state's phase is reported, not waited for.
    let behaviour = state.registry.behaviour.warm.summary();
    (
        status,
        Json(json!({"ready": models > 0, "models": models, "behaviour": behaviour})),
    )
}
