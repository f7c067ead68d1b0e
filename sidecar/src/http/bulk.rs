//! The drop-in Elasticsearch endpoint: `_bulk`, single-document writes, and a transparent proxy
//! for everything else, so shippers and official clients can point at Vigil.
//!
//! Nothing is acknowledged to the caller before Elasticsearch acknowledges it, and Vigil never
//! retries on its own: a failure reaches the caller with Elasticsearch's status (or 503/504 when
//! Elasticsearch cannot be reached), so the caller's retry is the only one and Vigil duplicates
//! nothing.

use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::error::read_body;
use super::{ApiError, AppState};
use crate::bulk::BulkError;
use crate::forward::Upstream;
use crate::merge::{filter_path, merge};
use crate::rewrite::{Rewritten, Scoring};

fn upstream(state: &AppState) -> Result<Arc<Upstream>, ApiError> {
    state.upstream.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "illegal_state_exception",
            "no Elasticsearch upstream is configured",
        )
    })
}

/// Decodes a gzip or deflate body, bounding the decoded size too (a small bomb stays small).
pub fn decode_body(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let mut decoded = Vec::new();
    let result = match encoding.as_deref() {
        None | Some("identity") | Some("") => return Ok(body),
        Some("gzip") | Some("x-gzip") => flate2::read::MultiGzDecoder::new(&body[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut decoded),
        Some("deflate") => flate2::read::ZlibDecoder::new(&body[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut decoded),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "illegal_argument_exception",
                format!("unsupported Content-Encoding [{other}]; use gzip or deflate"),
            ))
        }
    };
    result.map_err(|e| ApiError::parse(format!("invalid compressed body: {e}")))?;
    if decoded.len() > limit {
        return Err(ApiError::too_large(format!(
            "decompressed request body is larger than the limit of {limit} bytes (server.max_body_bytes)"
        )));
    }
    Ok(Bytes::from(decoded))
}

/// Splits the query string: `filter_path` is applied by Vigil after merging, the rest is
/// forwarded as sent.
fn split_query(query: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(q) = query else { return (None, None) };
    let mut filter = None;
    let mut rest = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("filter_path", v)) => {
                filter = Some(
                    url::form_urlencoded::parse(format!("v={v}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default(),
                )
            }
            _ => rest.push(pair),
        }
    }
    (filter, (!rest.is_empty()).then(|| rest.join("&")))
}

pub async fn bulk_default(
    state: State<AppState>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk(state, None, method, uri, headers, body).await
}

pub async fn bulk_index(
    state: State<AppState>,
    Path(index): Path<String>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk(state, Some(index), method, uri, headers, body).await
}

async fn bulk(
    State(state): State<AppState>,
    index: Option<String>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match bulk_inner(state, index, method, uri, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn bulk_inner(
    state: AppState,
    index: Option<String>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let upstream = upstream(&state)?;
    let limit = state.config.server.max_body_bytes;
    let raw = read_body(body, limit).await?;
    let body = decode_body(&headers, raw, limit)?;
    let (filter, query) = split_query(uri.query());

    let config = state.config.clone();
    let registry = state.registry.clone();
    let rewritten: Rewritten = state
        .on_cpu(move || -> Result<Rewritten, ApiError> {
            let scoring = Scoring::configured(&registry, &config);
            let entries = scoring
                .parse(&body, index.as_deref())
                .map_err(|e| match e {
                    BulkError::Empty => ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "action_request_validation_exception",
                        format!("Validation Failed: 1: {e};"),
                    ),
                    BulkError::NoTrailingNewline => ApiError::bad_request(e.to_string()),
                })?;
            if entries.len() > config.server.max_batch_docs {
                return Err(ApiError::too_large(format!(
                    "a bulk of {} items exceeds the limit of {} (server.max_batch_docs); split it",
                    entries.len(),
                    config.server.max_batch_docs
                )));
            }
            Ok(scoring.rewrite(entries))
        })
        .await??;
    tracing::debug!(stats = ?rewritten.stats, "bulk rewritten");

    let mut product = HeaderMap::new();
    product.insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    product.insert("content-type", HeaderValue::from_static("application/json"));
    let stats = rewritten.stats;
    let vigil_failed = stats.items - stats.forwarded;
    if stats.forwarded == 0 {
        crate::telemetry::bulk_items(vigil_failed, &[]);
        let merged = merge(&rewritten.slots, None, started.elapsed().as_millis() as u64)
            .expect("no item forwarded, none expected");
        return Ok(answer(product, merged, filter.as_deref()));
    }
    let path = uri.path().to_string();
    let (status, returned, bytes) = upstream
        .exchange(
            method,
            &path,
            query.as_deref(),
            &headers,
            crate::forward::body(rewritten.chunks),
        )
        .await?;
    if !status.is_success() {
        // The whole request failed upstream (429, 503, 413 …): the caller gets exactly that,
        // and retries the whole request.
        return Ok(passthrough(status, returned, bytes));
    }
    let not_bulk =
        |reason: String| ApiError::new(StatusCode::BAD_GATEWAY, "upstream_exception", reason);
    let not_json =
        |e: serde_json::Error| not_bulk(format!("Elasticsearch's bulk answer is not JSON: {e}"));
    let statuses = crate::merge::statuses(&bytes).map_err(not_json)?;
    if statuses.len() != stats.forwarded {
        return Err(not_bulk(
            crate::merge::ItemCountMismatch {
                got: statuses.len(),
                expected: stats.forwarded,
            }
            .to_string(),
        ));
    }
    crate::telemetry::bulk_items(vigil_failed, &statuses);
    let mut response_headers = returned;
    response_headers.extend(product);
    if vigil_failed == 0 && filter.is_none() {
        // Elasticsearch answered every item, in order, and nothing is filtered: its answer is
        // the caller's, byte for byte.
        return Ok((StatusCode::OK, response_headers, bytes).into_response());
    }
    let parsed: Value = serde_json::from_slice(&bytes).map_err(not_json)?;
    let merged = merge(
        &rewritten.slots,
        Some(parsed),
        started.elapsed().as_millis() as u64,
    )
    .map_err(|e| not_bulk(e.to_string()))?;
    Ok(answer(response_headers, merged, filter.as_deref()))
}

/// The merged answer, filtered by the caller's `filter_path`, as JSON.
fn answer(headers: HeaderMap, merged: Value, filter: Option<&str>) -> Response {
    let merged = match filter {
        Some(f) => filter_path(merged, f),
        None => merged,
    };
    let body = serde_json::to_vec(&merged).expect("JSON values serialise");
    (StatusCode::OK, headers, body).into_response()
}

fn passthrough(status: StatusCode, headers: HeaderMap, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// `/{index}/_doc`, `/{index}/_doc/{id}`, `/{index}/_create/{id}`: one document, scored the same
/// way as in a bulk, forwarded to the same path.
pub async fn single_doc(
    State(state): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let upstream = upstream(&state)?;
        let index = params
            .iter()
            .find(|(k, _)| k == "index")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let limit = state.config.server.max_body_bytes;
        let raw = read_body(body, limit).await?;
        let body = decode_body(&headers, raw, limit)?;
        // Reuse the bulk stages: one synthetic item. The body may be pretty-printed JSON; its
        // line breaks can only be whitespace between tokens (JSON strings escape theirs), so
        // as spaces they keep it one NDJSON line with the same meaning.
        let mut framed = Vec::with_capacity(body.len() + 16);
        framed.extend_from_slice(b"{\"index\":{}}\n");
        framed.extend(body.iter().map(|&b| match b {
            b'\n' | b'\r' => b' ',
            b => b,
        }));
        framed.push(b'\n');
        let config = state.config.clone();
        let registry = state.registry.clone();
        let rewritten = state
            .on_cpu(move || -> Result<Rewritten, ApiError> {
                let scoring = Scoring::configured(&registry, &config);
                let entries = scoring
                    .parse(&Bytes::from(framed), Some(&index))
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                Ok(scoring.rewrite(entries))
            })
            .await??;
        if let Some(crate::merge::Slot::Local(e)) = rewritten.slots.first() {
            return Err(ApiError::new(
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                e.kind,
                e.reason.clone(),
            ));
        }
        let document = rewritten.chunks.get(2).cloned().unwrap_or_default();
        let (_, query) = split_query(uri.query());
        let query = match (query, uri.query().and_then(|q| split_query(Some(q)).0)) {
            (q, None) => q,
            (q, Some(f)) => Some(match q {
                Some(q) => format!("{q}&filter_path={f}"),
                None => format!("filter_path={f}"),
            }),
        };
        let (status, returned, bytes) = upstream
            .exchange(
                method,
                uri.path(),
                query.as_deref(),
                &headers,
                reqwest::Body::from(document),
            )
            .await?;
        Ok::<_, ApiError>(passthrough(status, returned, bytes))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Hop-by-hop headers are not relayed by a proxy.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Everything else goes to Elasticsearch untouched (`GET /`, `_license`, templates, ILM …).
pub async fn proxy(
    State(state): State<AppState>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let upstream = upstream(&state)?;
        let limit = state.config.server.max_body_bytes;
        let limited = http_body_util::Limited::new(body, limit);
        let stream = http_body_util::BodyStream::new(limited);
        use futures::TryStreamExt;
        let stream = stream
            .try_filter_map(|frame| async move { Ok(frame.into_data().ok()) })
            .map_err(|e| std::io::Error::other(e.to_string()));
        let response = upstream
            .send(
                method,
                uri.path(),
                uri.query(),
                &headers,
                reqwest::Body::wrap_stream(stream),
            )
            .await?;
        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut out_headers = HeaderMap::new();
        for (name, value) in response.headers() {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                out_headers.append(name.clone(), value.clone());
            }
        }
        let mut out = Response::new(Body::from_stream(response.bytes_stream()));
        *out.status_mut() = status;
        *out.headers_mut() = out_headers;
        Ok::<_, ApiError>(out)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
