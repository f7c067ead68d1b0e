//! One error vocabulary at the HTTP boundary, in Elasticsearch's shape:
//! `{"error": {"root_cause": [..], "type": .., "reason": ..}, "status": ..}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub reason: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            reason: reason.into(),
        }
    }

    pub fn parse(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "x_content_parse_exception", reason)
    }

    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            reason,
        )
    }

    pub fn unknown_model(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "resource_not_found_exception",
            format!("no model named [{name}] is loaded"),
        )
    }

    pub fn too_large(reason: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "content_too_long_exception",
            reason,
        )
    }

    pub fn overloaded(reason: impl Into<String>) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "es_rejected_execution_exception",
            reason,
        )
    }

    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "security_exception", reason)
    }

    pub fn internal(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "exception", reason)
    }

    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "root_cause": [{"type": self.kind, "reason": self.reason}],
                "type": self.kind,
                "reason": self.reason,
            },
            "status": self.status.as_u16(),
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::telemetry::http_error(self.kind, self.status.as_u16());
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"vigil\", ApiKey"),
            );
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Reads a request body up to `limit` bytes; a larger one is a 413 in Elasticsearch's shape.
pub async fn read_body(body: axum::body::Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::too_large(format!(
                "request body is larger than the limit of {limit} bytes (server.max_body_bytes)"
            ))
        } else {
            ApiError::bad_request(format!("cannot read request body: {e}"))
        }
    })
}

/// A serde_json error as a caller-facing parse error with its position.
pub fn json_error(e: &serde_json::Error) -> ApiError {
    ApiError::parse(format!(
        "malformed JSON at line {} column {}: {e}",
        e.line(),
        e.column()
    ))
}
