//! The HTTP surface (axum): the scoring API, KServe Open Inference Protocol v2, and model
//! administration. [`router`] builds it from an [`AppState`]; tests call it directly.
//!
//! Layers, outermost first: authentication → overload guard (429 past the in-flight limit) →
//! handler. Scoring runs on blocking threads, at most `scoring.threads` at once, so the async
//! workers never stall on CPU work.

pub mod auth;
pub mod error;
pub mod es_inference;
pub mod kserve;
pub mod models;
pub mod score;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::Semaphore;

use crate::bundle::ModelRegistry;
use crate::config::Config;
pub use error::ApiError;

#[derive(Debug, Clone)]
pub struct AppState {
    pub registry: Arc<ModelRegistry>,
    pub config: Arc<Config>,
    /// Permits for CPU-bound scoring jobs.
    pub cpu: Arc<Semaphore>,
}

impl AppState {
    pub fn new(registry: Arc<ModelRegistry>, config: Arc<Config>) -> Self {
        AppState {
            cpu: Arc::new(Semaphore::new(config.scoring.threads)),
            registry,
            config,
        }
    }

    /// Runs CPU-bound work on a blocking thread once a scoring permit is free.
    pub async fn on_cpu<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .cpu
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::internal("scoring pool is shut down"))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ApiError::internal(format!("scoring task failed: {e}")))
    }
}

pub fn router(state: AppState) -> Router {
    let tokens = Arc::new(auth::Tokens::new(&state.config.auth.tokens));
    let inflight = Arc::new(Semaphore::new(state.config.server.max_concurrent_requests));
    Router::new()
        .route("/_vigil/score/{model}", post(score::score))
        .route("/_vigil/es/inference", post(es_inference::es_inference))
        .route("/_vigil/models", get(models::list))
        .route("/_vigil/models/_reload", post(models::reload))
        .route("/_vigil/health/live", get(models::live))
        .route("/_vigil/health/ready", get(models::ready))
        .merge(kserve::routes())
        .with_state(state)
        .layer(middleware::from_fn_with_state(inflight, overload_guard))
        .layer(middleware::from_fn_with_state(tokens, auth::require_token))
}

/// Answers 429 instead of queueing once `max_concurrent_requests` are in flight, so shippers
/// back off and retry rather than time out.
async fn overload_guard(
    State(inflight): State<Arc<Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    match inflight.try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::overloaded(
            "too many concurrent requests (server.max_concurrent_requests); retry later",
        )
        .into_response(),
    }
}
