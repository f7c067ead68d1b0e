//! The HTTP surface (axum): the scoring API, KServe Open Inference Protocol v2, and model
//! administration. [`router`] builds it from an [`AppState`]; tests call it directly.
//!
//! Layers, outermost first: authentication → overload guard (429 past the in-flight limit) →
//! handler. Scoring runs on a pool of `scoring.threads` threads (rayon), so the async workers
//! never stall on CPU work; a large bulk's documents are split over the pool's idle threads.
//! Work known to be short (a small batch for a tree model without explanations,
//! [`score::score`]) runs on the async worker instead: the hand-off's two thread wake-ups cost about a fifth of it.

pub mod auth;
pub mod bulk;
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
    /// Permits for CPU-bound scoring jobs (one per pool thread, so jobs wait here, in order,
    /// rather than in the pool's queue).
    pub cpu: Arc<Semaphore>,
    /// The threads scoring runs on; the parallel stages inside a job (`bulk::parse`,
    /// `rewrite`) share them.
    pub pool: Arc<rayon::ThreadPool>,
    /// Elasticsearch behind the drop-in endpoint.
    pub upstream: Option<Arc<crate::forward::Upstream>>,
    /// Readiness's view of Elasticsearch (`None`: readiness looks at the models only).
    pub es_probe: Option<Arc<crate::health::EsProbe>>,
    /// The Prometheus recorder behind `/metrics` (`None`: metrics are off, `/metrics` is 404).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl AppState {
    pub fn new(
        registry: Arc<ModelRegistry>,
        config: Arc<Config>,
        upstream: Option<Arc<crate::forward::Upstream>>,
    ) -> Self {
        AppState {
            cpu: Arc::new(Semaphore::new(config.scoring.threads)),
            pool: Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(config.scoring.threads)
                    .thread_name(|i| format!("vigil-score-{i}"))
                    .build()
                    .expect("scoring threads start"),
            ),
            registry,
            config,
            upstream,
            es_probe: None,
            metrics: None,
        }
    }

    /// Runs CPU-bound work on the scoring pool once a permit is free. A panic in the work is
    /// the caller's 500, not the process's end.
    pub async fn on_cpu<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = self
            .cpu
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::internal("scoring pool is shut down"))?;
        self.run_permitted(permit, work).await
    }

    /// Runs CPU-bound work on the scoring pool with a permit already taken (held until the
    /// work is done).
    pub async fn run_permitted<T: Send + 'static>(
        &self,
        permit: tokio::sync::OwnedSemaphorePermit,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let _permit = permit;
            // The caller may have gone (client disconnected): nothing to tell then.
            let _ = done.send(caught(work));
        });
        result.await.unwrap_or_else(|_| {
            Err(ApiError::internal(
                "scoring task failed: its thread stopped",
            ))
        })
    }
}

/// Runs `work`, a panic in it turned into a 500: for work run on the async worker itself
/// (short scoring, [`score::score`]) as for work on the pool.
pub(crate) fn caught<T>(work: impl FnOnce() -> T) -> Result<T, ApiError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|panic| {
        ApiError::internal(format!("scoring task failed: {}", panic_message(&*panic)))
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panic")
}

pub fn router(state: AppState) -> Router {
    let tokens = Arc::new(auth::Tokens::new(&state.config.auth.tokens));
    let inflight = Arc::new(Semaphore::new(state.config.server.max_concurrent_requests));
    let guard = (inflight, state.config.server.max_body_bytes);
    Router::new()
        .route("/_vigil/score/{model}", post(score::score))
        .route("/_vigil/es/inference", post(es_inference::es_inference))
        .route("/_vigil/models", get(models::list))
        .route("/_vigil/models/_reload", post(models::reload))
        .route("/_vigil/health/live", get(models::live))
        .route("/_vigil/health/ready", get(models::ready))
        .route("/metrics", get(models::metrics))
        .merge(kserve::routes())
        .route("/_bulk", post(bulk::bulk_default).put(bulk::bulk_default))
        .route(
            "/{index}/_bulk",
            post(bulk::bulk_index).put(bulk::bulk_index),
        )
        .route("/{index}/_doc", post(bulk::single_doc))
        .route(
            "/{index}/_doc/{id}",
            post(bulk::single_doc)
                .put(bulk::single_doc)
                .fallback(bulk::proxy),
        )
        .route(
            "/{index}/_create/{id}",
            post(bulk::single_doc).put(bulk::single_doc),
        )
        .fallback(bulk::proxy)
        .with_state(state)
        .layer(middleware::from_fn_with_state(guard, overload_guard))
        .layer(middleware::from_fn_with_state(tokens, auth::require_token))
}

/// Answers 429 instead of queueing once `max_concurrent_requests` are in flight, so shippers
/// back off and retry rather than time out.
///
/// The refused request's body is read and discarded first (bounded by `max_body_bytes` and a few
/// seconds): answering while the caller is still sending makes hyper close the connection with
/// unread bytes, which the caller sees as a reset or, on its next request over that kept-alive
/// connection, as "closed without response", instead of this 429. If the body could not be read
/// to its end, the answer says `Connection: close` so the caller does not reuse the connection.
async fn overload_guard(
    State((inflight, max_body)): State<(Arc<Semaphore>, usize)>,
    request: Request,
    next: Next,
) -> Response {
    match inflight.try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => {
            let drained = discard_body(request.into_body(), max_body).await;
            let mut response = ApiError::overloaded(
                "too many concurrent requests (server.max_concurrent_requests); retry later",
            )
            .into_response();
            if !drained {
                response.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
            response
        }
    }
}

/// Reads a body to its end without keeping it; false if it was longer than `limit`, broken, or
/// not finished within 5 s.
async fn discard_body(body: axum::body::Body, limit: usize) -> bool {
    use http_body_util::BodyExt;
    let mut body = http_body_util::Limited::new(body, limit);
    let read = async {
        loop {
            match body.frame().await {
                None => return true,
                Some(Ok(_)) => {}
                Some(Err(_)) => return false,
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AppState {
        let config = Config::load(None, &crate::config::Overrides::default()).expect("defaults");
        AppState::new(Arc::new(ModelRegistry::new(vec![])), Arc::new(config), None)
    }

    #[tokio::test]
    async fn a_panic_on_the_pool_is_a_500_and_the_pool_keeps_serving() {
        let state = state();
        let failed = state
            .on_cpu(|| -> usize { panic!("boom in a scoring job") })
            .await
            .expect_err("a panic is an error");
        assert_eq!(failed.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            failed.reason.contains("boom in a scoring job"),
            "{failed:?}"
        );
        // Short work runs where the request is, and its panic is a 500 too.
        let failed =
            caught(|| -> usize { panic!("boom in short work") }).expect_err("a panic is an error");
        assert_eq!(failed.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert!(failed.reason.contains("boom in short work"), "{failed:?}");
        // The permit came back and the threads still run jobs, nested parallel ones too.
        for _ in 0..=state.config.scoring.threads {
            let sum = state
                .on_cpu(|| {
                    use rayon::prelude::*;
                    (0..1000u64).into_par_iter().sum::<u64>()
                })
                .await
                .expect("served");
            assert_eq!(sum, 499_500);
        }
    }
}
