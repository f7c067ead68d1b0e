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

/// Ready when a model is loaded and Elasticsearch answers (cached, bounded probe).
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let (ready, body) = readiness(&state).await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Whether Vigil is ready, and the reasons: `{"ready", "models", "elasticsearch"}`.
pub async fn readiness(state: &AppState) -> (bool, Value) {
    let models = state.registry.snapshot().models.len();
    let es = match &state.es_probe {
        None => None,
        Some(probe) => Some(probe.status().await),
    };
    let es_ok = !matches!(es, Some(crate::health::EsStatus::Down(_)));
    let ready = models > 0 && es_ok;
    let es_json = match es {
        None => json!("not checked"),
        Some(crate::health::EsStatus::Up) => json!("up"),
        Some(crate::health::EsStatus::Down(reason)) => json!({"down": reason}),
    };
    // Serving starts before warm start ends: the state's phase is reported, not waited for.
    let behaviour = state.registry.behaviour.warm.summary();
    (
        ready,
        json!({"ready": ready, "models": models, "elasticsearch": es_json, "behaviour": behaviour}),
    )
}

/// Prometheus text exposition (404 when metrics are off).
pub async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    match &state.metrics {
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "resource_not_found_exception",
            "metrics are disabled ([metrics] enabled = false)",
        )
        .into_response(),
        Some(handle) => {
            let handle = handle.clone();
            let registry = state.registry.clone();
            // Rendering walks every series and the drift windows: off the async workers.
            match tokio::task::spawn_blocking(move || crate::telemetry::render(&handle, &registry))
                .await
            {
                Ok(text) => (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
                    .into_response(),
                Err(e) => {
                    ApiError::internal(format!("rendering metrics failed: {e}")).into_response()
                }
            }
        }
    }
}
