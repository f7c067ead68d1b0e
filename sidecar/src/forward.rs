//! Forwarding to Elasticsearch: one raw HTTP client, every call with a deadline, headers passed
//! through except those that belong to the hop or to Vigil's own authentication.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::config::EsConfig;
use crate::es;
use crate::http::ApiError;

/// Bytes per piece of a forwarded bulk body (see [`body`]).
const PIECE: usize = 256 << 10;

/// A rewritten bulk (its lines as chunks, four per document) as a streamed request body of
/// pieces of about [`PIECE`] bytes. Streamed chunk by chunk, each line would be an HTTP chunk of
/// its own: framing, a vectored write every few lines, and thousands of chunks for
/// Elasticsearch to decode. Pieces are cut as the body is sent, so at most one is held beside
/// the chunks.
pub fn body(chunks: Vec<bytes::Bytes>) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures::stream::iter(
        pieces(chunks).map(Ok::<_, std::io::Error>),
    ))
}

fn pieces(chunks: Vec<bytes::Bytes>) -> impl Iterator<Item = bytes::Bytes> {
    let mut chunks = chunks.into_iter().peekable();
    std::iter::from_fn(move || {
        let first = chunks.next()?;
        if first.len() >= PIECE || chunks.peek().is_none() {
            return Some(first);
        }
        let mut piece = bytes::BytesMut::with_capacity(PIECE);
        piece.extend_from_slice(&first);
        while let Some(next) = chunks.next_if(|c| piece.len() + c.len() <= PIECE) {
            piece.extend_from_slice(&next);
        }
        Some(piece.freeze())
    })
}

/// Request headers relayed to Elasticsearch.
const RELAYED: &[&str] = &[
    "content-type",
    "accept",
    "x-opaque-id",
    "traceparent",
    "tracestate",
    "x-elastic-product-origin",
    "elastic-api-version",
    "user-agent",
    "x-elastic-client-meta",
];

/// Response headers relayed back to the caller.
pub const RETURNED: &[&str] = &[
    "content-type",
    "x-elastic-product",
    "warning",
    "elastic-api-version",
    "x-opaque-id",
    "retry-after",
];

#[derive(Debug)]
pub struct Upstream {
    client: reqwest::Client,
    base: url::Url,
    /// Vigil's own credentials for Elasticsearch, if configured.
    authorization: Option<HeaderValue>,
    /// Whether the caller's `Authorization` is meant for Elasticsearch (Vigil does not
    /// authenticate callers itself) and should be passed on.
    pass_caller_auth: bool,
}

impl Upstream {
    pub fn new(cfg: &EsConfig, vigil_authenticates: bool) -> Result<Upstream, es::EsSetupError> {
        let authorization = es::authorization(cfg)
            .map(|v| HeaderValue::from_str(&v))
            .transpose()
            .map_err(|e| es::EsSetupError::Client(format!("invalid credentials header: {e}")))?;
        Ok(Upstream {
            client: es::http_client(cfg)?,
            base: cfg.url.clone(),
            authorization,
            pass_caller_auth: !vigil_authenticates,
        })
    }

    /// Joins the configured base URL (which may carry a path prefix) with `path_and_query`.
    pub fn url(&self, path: &str, query: Option<&str>) -> String {
        let base = self.base.as_str().trim_end_matches('/');
        match query {
            Some(q) if !q.is_empty() => format!("{base}{path}?{q}"),
            _ => format!("{base}{path}"),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        caller: &HeaderMap,
        body: reqwest::Body,
    ) -> Result<reqwest::Response, ApiError> {
        let mut request = self
            .client
            .request(method, self.url(path, query))
            .body(body);
        for name in RELAYED {
            for value in caller.get_all(*name) {
                request = request.header(*name, value);
            }
        }
        match (&self.authorization, caller.get("authorization")) {
            (Some(ours), _) => request = request.header("authorization", ours),
            (None, Some(theirs)) if self.pass_caller_auth => {
                request = request.header("authorization", theirs)
            }
            _ => {}
        }
        request.send().await.map_err(|e| self.error(&e))
    }

    /// Sends and reads the whole answer: its status, the headers relayed back, and the body.
    pub async fn exchange(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        caller: &HeaderMap,
        body: reqwest::Body,
    ) -> Result<(StatusCode, HeaderMap, bytes::Bytes), ApiError> {
        let response = self.send(method, path, query, caller, body).await?;
        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let headers = returned_headers(response.headers());
        let body = response.bytes().await.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_exception",
                format!(
                    "reading Elasticsearch's answer failed: {}; retry",
                    without_url(&e)
                ),
            )
        })?;
        Ok((status, headers, body))
    }

    fn error(&self, e: &reqwest::Error) -> ApiError {
        let host = self.base.host_str().unwrap_or("?");
        if e.is_timeout() {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout_exception",
                format!("Elasticsearch at {host} did not answer in time; nothing was acknowledged, retry"),
            )
        } else if e.is_connect() {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "connect_exception",
                format!("Elasticsearch at {host} is unreachable; retry later"),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_exception",
                format!(
                    "request to Elasticsearch at {host} failed: {}",
                    without_url(e)
                ),
            )
        }
    }
}

/// reqwest errors print the URL; keep messages free of anything a URL might carry.
fn without_url(e: &reqwest::Error) -> String {
    let mut source = std::error::Error::source(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// Copies the relayed response headers of an upstream answer.
pub fn returned_headers(from: &reqwest::header::HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in RETURNED {
        for value in from.get_all(*name) {
            if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
                out.append(HeaderName::from_static(name), v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn pieces_keep_every_byte_in_order_and_cut_near_the_piece_size() {
        let mut chunks: Vec<Bytes> = Vec::new();
        for i in 0..20_000 {
            chunks.push(Bytes::from(format!("{{\"index\":{{\"_id\":\"{i}\"}}}}")));
            chunks.push(Bytes::from_static(b"\n"));
        }
        // A line larger than a piece travels whole (after a first piece that is full).
        chunks.insert(chunks.len() - 2, Bytes::from(vec![b'x'; PIECE * 2]));
        let whole: Vec<u8> = chunks.concat();
        let cut: Vec<Bytes> = pieces(chunks).collect();
        assert_eq!(cut.concat(), whole);
        assert!(cut.len() < 16, "{} pieces", cut.len());
        assert_eq!(cut.iter().filter(|p| p.len() > PIECE).count(), 1);
        assert!(cut[0].len() > PIECE - 64, "{}", cut[0].len());
        assert_eq!(pieces(Vec::new()).count(), 0);
        assert_eq!(
            pieces(vec![Bytes::from_static(b"a")]).collect::<Vec<_>>(),
            vec![Bytes::from_static(b"a")]
        );
    }
}
