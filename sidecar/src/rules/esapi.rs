//! A thin JSON layer over the official client for the rule engine: one call shape, errors that
//! carry Elasticsearch's own reason, and the status code (409 = lost an optimistic-concurrency race).

use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde_json::Value;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {}{message}", status.map(|s| format!("HTTP {s}: ")).unwrap_or_default())]
pub struct EsError {
    pub what: String,
    pub status: Option<u16>,
    pub message: String,
}

impl EsError {
    pub fn is_conflict(&self) -> bool {
        self.status == Some(409)
    }
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }
}

#[derive(Clone)]
pub struct Es {
    client: Elasticsearch,
}

impl std::fmt::Debug for Es {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Es")
    }
}

impl Es {
    pub fn new(client: Elasticsearch) -> Es {
        Es { client }
    }

    /// Sends a request; any non-2xx answer is an error with Elasticsearch's reason.
    pub async fn call(
        &self,
        what: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, EsError> {
        let body = body.map(|b| b.to_string());
        self.raw(what, method, path, query, body, "application/json")
            .await
    }

    /// Sends NDJSON (bulk, msearch).
    pub async fn ndjson(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, String)],
        body: String,
    ) -> Result<Value, EsError> {
        self.raw(
            what,
            Method::Post,
            path,
            query,
            Some(body),
            "application/x-ndjson",
        )
        .await
    }

    async fn raw(
        &self,
        what: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<String>,
        content_type: &'static str,
    ) -> Result<Value, EsError> {
        let fail = |status: Option<u16>, message: String| EsError {
            what: what.to_string(),
            status,
            message,
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = self
            .client
            .send(method, path, headers, Some(&q), body, None)
            .await
            .map_err(|e| fail(None, e.to_string()))?;
        let status = resp.status_code().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| fail(Some(status), e.to_string()))?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            let reason = value
                .pointer("/error/root_cause/0/reason")
                .or_else(|| value.pointer("/error/reason"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            Err(fail(Some(status), reason))
        }
    }
}

/// Joins index names/patterns for a URL path.
pub fn indices(list: &[String]) -> String {
    list.join(",")
}
