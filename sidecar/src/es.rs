//! Connections to Elasticsearch, built once from [`EsConfig`]: the official client (setup,
//! rules, warm start) and a raw HTTP client (streaming bulk forwarding, proxying), sharing the
//! same URL, credentials, CA and deadline.

use elasticsearch::auth::{ClientCertificate, Credentials};
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::Elasticsearch;

use crate::config::{EsConfig, EsCredentials};

#[derive(Debug, thiserror::Error)]
pub enum EsSetupError {
    #[error("cannot read CA file {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("cannot build Elasticsearch client: {0}")]
    Client(String),
}

fn read_ca(cfg: &EsConfig) -> Result<Option<Vec<u8>>, EsSetupError> {
    cfg.ca_file
        .as_ref()
        .map(|p| {
            std::fs::read(p).map_err(|e| EsSetupError::Ca {
                path: p.display().to_string(),
                reason: e.to_string(),
            })
        })
        .transpose()
}

fn ca_error(cfg: &EsConfig, e: &dyn std::fmt::Display) -> EsSetupError {
    EsSetupError::Ca {
        path: cfg
            .ca_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        reason: e.to_string(),
    }
}

/// The official client.
pub fn client(cfg: &EsConfig) -> Result<Elasticsearch, EsSetupError> {
    let pool = SingleNodeConnectionPool::new(cfg.url.clone());
    let mut builder = TransportBuilder::new(pool).timeout(cfg.timeout);
    match (&cfg.client_identity, &cfg.credentials) {
        // The client takes one `Credentials`: with a client certificate, the user or API key
        // rides along as a default header (both go to Elasticsearch, as with curl).
        (Some(identity), credentials) => {
            builder = builder.auth(Credentials::Certificate(ClientCertificate::Pem(
                identity.pem.expose().as_bytes().to_vec(),
            )));
            if credentials.is_some() {
                let mut headers = elasticsearch::http::headers::HeaderMap::new();
                let value = authorization(cfg).unwrap_or_default();
                let mut value = elasticsearch::http::headers::HeaderValue::from_str(&value)
                    .map_err(|e| EsSetupError::Client(format!("invalid credentials: {e}")))?;
                value.set_sensitive(true);
                headers.insert(elasticsearch::http::headers::AUTHORIZATION, value);
                builder = builder.headers(headers);
            }
        }
        (None, Some(EsCredentials::Basic { username, password })) => {
            builder = builder.auth(Credentials::Basic(
                username.clone(),
                password.expose().to_string(),
            ));
        }
        (None, Some(EsCredentials::ApiKey(key))) => {
            builder = builder.auth(Credentials::EncodedApiKey(key.expose().to_string()));
        }
        (None, None) => {}
    }
    if let Some(pem) = read_ca(cfg)? {
        let cert = Certificate::from_pem(&pem).map_err(|e| ca_error(cfg, &e))?;
        builder = builder.cert_validation(CertificateValidation::Full(cert));
    }
    let transport = builder
        .build()
        .map_err(|e| EsSetupError::Client(e.to_string()))?;
    Ok(Elasticsearch::new(transport))
}

/// A raw HTTP client for forwarding bodies byte for byte.
pub fn http_client(cfg: &EsConfig) -> Result<reqwest::Client, EsSetupError> {
    let mut builder = reqwest::Client::builder()
        .timeout(cfg.timeout)
        .connect_timeout(std::time::Duration::from_secs(5))
        .pool_max_idle_per_host(64)
        .no_gzip()
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = read_ca(cfg)? {
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| ca_error(cfg, &e))?;
        builder = builder
            .add_root_certificate(cert)
            .tls_built_in_root_certs(false);
    }
    if let Some(identity) = &cfg.client_identity {
        let id = reqwest::Identity::from_pem(identity.pem.expose().as_bytes()).map_err(|e| {
            EsSetupError::Client(format!(
                "client certificate {} / key {}: {e}",
                identity.cert_file.display(),
                identity.key_file.display()
            ))
        })?;
        builder = builder.identity(id);
    }
    builder
        .build()
        .map_err(|e| EsSetupError::Client(e.to_string()))
}

/// The `Authorization` header value for the configured credentials, if any.
pub fn authorization(cfg: &EsConfig) -> Option<String> {
    use base64_engine::encode;
    match &cfg.credentials {
        Some(EsCredentials::Basic { username, password }) => Some(format!(
            "Basic {}",
            encode(format!("{username}:{}", password.expose()).as_bytes())
        )),
        Some(EsCredentials::ApiKey(key)) => Some(format!("ApiKey {}", key.expose())),
        None => None,
    }
}

mod base64_engine {
    use base64::Engine;
    pub fn encode(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}
