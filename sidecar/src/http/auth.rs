//! Caller authentication: `Authorization: Bearer <token>` or `ApiKey <token>`, compared in
//! constant time against the configured tokens. Health endpoints stay open for probes.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::Secret;

/// Token digests: comparing fixed-length digests hides the tokens' lengths too.
#[derive(Debug)]
pub struct Tokens(Vec<[u8; 32]>);

impl Tokens {
    pub fn new(tokens: &[Secret]) -> Self {
        Tokens(tokens.iter().map(|t| digest(t.expose())).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn accepts(&self, presented: &str) -> bool {
        let d = digest(presented);
        // Check every token so timing does not reveal which one matched.
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |acc, t| acc | t.ct_eq(&d))
            .into()
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

pub fn is_open_path(path: &str) -> bool {
    path.starts_with("/v2/health/") || path.starts_with("/_vigil/health")
}

pub async fn require_token(
    State(tokens): State<Arc<Tokens>>,
    request: Request,
    next: Next,
) -> Response {
    if tokens.is_empty() || is_open_path(request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("ApiKey "))
                .map(str::trim)
        });
    match presented {
        Some(token) if tokens.accepts(token) => next.run(request).await,
        Some(_) => ApiError::unauthorized("invalid credentials").into_response(),
        None => ApiError::unauthorized(
            "missing authentication credentials (Authorization: Bearer <token> or ApiKey <token>)",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_configured_tokens() {
        let t = Tokens::new(&[Secret::new("alpha"), Secret::new("beta")]);
        assert!(t.accepts("alpha"));
        assert!(t.accepts("beta"));
        assert!(!t.accepts("alph"));
        assert!(!t.accepts(""));
        assert!(Tokens::new(&[]).is_empty());
    }
}
