//! Readiness: Vigil is ready when at least one model is loaded and Elasticsearch answers.
//! Liveness never looks at Elasticsearch (a slow cluster must not get Vigil restarted).
//!
//! The Elasticsearch probe is cached for [`PROBE_TTL`] and bounded by [`PROBE_TIMEOUT`], so
//! readiness checks cost at most one request per TTL and never hang on a stalled cluster.
//! Concurrent checks share one probe.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method};

use crate::forward::Upstream;

pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
pub const PROBE_TTL: Duration = Duration::from_secs(5);

/// What the last probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsStatus {
    Up,
    Down(String),
}

#[derive(Debug)]
pub struct EsProbe {
    upstream: Arc<Upstream>,
    /// Whether a 401 still counts as up (Vigil has no credentials of its own and passes the
    /// caller's on).
    auth_is_callers: bool,
    last: tokio::sync::Mutex<Option<(Instant, EsStatus)>>,
}

impl EsProbe {
    pub fn new(upstream: Arc<Upstream>, auth_is_callers: bool) -> EsProbe {
        EsProbe {
            upstream,
            auth_is_callers,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The cached status, probing again when it is older than [`PROBE_TTL`].
    pub async fn status(&self) -> EsStatus {
        let mut last = self.last.lock().await;
        if let Some((at, status)) = last.as_ref() {
            if at.elapsed() < PROBE_TTL {
                return status.clone();
            }
        }
        let status = self.probe().await;
        crate::telemetry::elasticsearch_up(status == EsStatus::Up);
        if let EsStatus::Down(reason) = &status {
            tracing::warn!(%reason, "Elasticsearch probe failed: not ready");
        }
        *last = Some((Instant::now(), status.clone()));
        status
    }

    async fn probe(&self) -> EsStatus {
        let no_headers = HeaderMap::new();
        let call =
            self.upstream
                .exchange(Method::GET, "/", None, &no_headers, reqwest::Body::from(""));
        match tokio::time::timeout(PROBE_TIMEOUT, call).await {
            Err(_) => EsStatus::Down(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
            Ok(Err(e)) => EsStatus::Down(e.reason),
            // Vigil's own credentials refused: forwarding would fail too.
            Ok(Ok((status, _, _))) if status.as_u16() == 401 && !self.auth_is_callers => {
                EsStatus::Down("Elasticsearch refused Vigil's credentials (401)".into())
            }
            Ok(Ok((status, _, _))) if status.is_server_error() => {
                EsStatus::Down(format!("Elasticsearch answered {status}"))
            }
            // Any other answer means the node is there (some distributions answer `GET /` with
            // 405, and a write-only API key may not read `/`).
            Ok(Ok(_)) => EsStatus::Up,
        }
    }
}
