//! Configuration in two steps: a TOML file becomes raw serde structs, which become a validated
//! [`Config`]. Every problem is reported at once (unknown keys included), before any port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The configuration used when no file is given: the shipped bundles in `models/`, loopback only.
pub const EMBEDDED_DEFAULTS: &str = include_str!("../config/default.toml");

/// A secret that never shows up in logs or debug output.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    models: RawModels,
    #[serde(default)]
    scoring: RawScoring,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    elasticsearch: RawElasticsearch,
    #[serde(default)]
    bulk: RawBulk,
    #[serde(default)]
    routes: Option<Vec<crate::route::RawRoute>>,
    #[serde(default)]
    rules: RawRules,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    features: RawFeatures,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    enabled: Option<bool>,
    listen: Option<String>,
    drift_window: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeatures {
    state_max_bytes: Option<u64>,
    warm_start: Option<bool>,
    warm_index: Option<String>,
    warm_lookback: Option<String>,
    warm_interval: Option<String>,
    warm_max_entities: Option<usize>,
    warm_timeout: Option<String>,
    warm_page_size: Option<usize>,
    warm_until: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBulk {
    on_scoring_failure: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    enabled: Option<bool>,
    dir: Option<PathBuf>,
    events_index: Option<String>,
    alerts_index: Option<String>,
    risk_index: Option<String>,
    state_index: Option<String>,
    interval: Option<String>,
    lookback: Option<String>,
    max_catchup: Option<u32>,
    lease: Option<String>,
    tick: Option<String>,
    page_size: Option<usize>,
    max_events: Option<usize>,
    replica_id: Option<String>,
    risk_interval: Option<String>,
    risk_lookback: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawElasticsearch {
    url: Option<String>,
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    api_key_env: Option<String>,
    api_key_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    max_body_bytes: Option<u64>,
    max_batch_docs: Option<usize>,
    max_concurrent_requests: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    shutdown_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModels {
    paths: Option<Vec<PathBuf>>,
    watch: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScoring {
    threads: Option<usize>,
    explain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    tokens_file: Option<PathBuf>,
    tokens_env: Option<String>,
    required: Option<bool>,
}

/// The keys each section accepts, so unknown ones can all be named in one pass.
const SCHEMA: &[(&str, &[&str])] = &[
    (
        "server",
        &[
            "listen",
            "max_body_bytes",
            "max_batch_docs",
            "max_concurrent_requests",
            "tls_cert",
            "tls_key",
            "shutdown_timeout",
        ],
    ),
    ("models", &["paths", "watch"]),
    ("scoring", &["threads", "explain"]),
    ("auth", &["tokens_file", "tokens_env", "required"]),
    (
        "elasticsearch",
        &[
            "url",
            "username",
            "password_env",
            "password_file",
            "api_key_env",
            "api_key_file",
            "ca_file",
            "client_cert",
            "client_key",
            "timeout_ms",
        ],
    ),
    ("bulk", &["on_scoring_failure"]),
    (
        "rules",
        &[
            "enabled",
            "dir",
            "events_index",
            "alerts_index",
            "risk_index",
            "state_index",
            "interval",
            "lookback",
            "max_catchup",
            "lease",
            "tick",
            "page_size",
            "max_events",
            "replica_id",
            "risk_interval",
            "risk_lookback",
        ],
    ),
    ("metrics", &["enabled", "listen", "drift_window"]),
    (
        "features",
        &[
            "state_max_bytes",
            "warm_start",
            "warm_index",
            "warm_lookback",
            "warm_interval",
            "warm_max_entities",
            "warm_timeout",
            "warm_page_size",
            "warm_until",
        ],
    ),
];

/// Keys of each `[[routes]]` entry.
const ROUTE_KEYS: &[&str] = &["indices", "model", "when"];

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub models: ModelsConfig,
    pub scoring: ScoringConfig,
    pub auth: AuthConfig,
    pub elasticsearch: EsConfig,
    pub bulk: BulkConfig,
    pub routes: crate::route::Routes,
    pub rules: RulesConfig,
    pub metrics: MetricsConfig,
    pub features: FeaturesConfig,
}

/// Prometheus metrics (`[metrics]`): see `docs/operations.md`.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Record metrics and serve `/metrics` (off: no recorder, no drift windows).
    pub enabled: bool,
    /// A second listener serving only `/metrics`, without caller authentication (it exposes
    /// aggregate counters only). `None`: `/metrics` is on the main listener, behind `[auth]`.
    pub listen: Option<SocketAddr>,
    /// Scores (and feature values) per model in the rolling drift window.
    pub drift_window: usize,
}

/// The behavioural state (`[features]`): its bound and its warm start from Elasticsearch.
#[derive(Debug, Clone)]
pub struct FeaturesConfig {
    /// Bytes the per-entity state may hold (moka's weighted size).
    pub state_max_bytes: u64,
    /// Seed the state from Elasticsearch at startup (and every `interval`); `None`: off.
    pub warm_start: Option<crate::features::warm::WarmSettings>,
}

#[derive(Debug, Clone)]
pub struct BulkConfig {
    pub on_scoring_failure: ScoringFailure,
}

/// What happens to a document whose scoring fails on the drop-in path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoringFailure {
    /// Forward it unscored with a `vigil.error` marker (fail-open, the default).
    Forward,
    /// Return it to the caller as a failed item (fail-closed).
    Reject,
}

/// The rule engine (`[rules]`): where rules live, what they read and write, how they are scheduled.
#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// Run the scheduler inside `vigil serve`.
    pub enabled: bool,
    pub dir: PathBuf,
    /// Comma-separated index patterns the rules search (default `logs-*`).
    pub events_index: Vec<String>,
    pub alerts_index: String,
    pub risk_index: String,
    pub state_index: String,
    pub defaults: crate::rules::RuleDefaults,
    pub max_catchup: u32,
    pub lease: chrono::TimeDelta,
    pub tick: std::time::Duration,
    pub page_size: usize,
    pub max_events: usize,
    pub replica_id: String,
    pub risk_interval: chrono::TimeDelta,
    pub risk_lookback: chrono::TimeDelta,
}

impl RulesConfig {
    /// The engine settings these values describe.
    pub fn engine_settings(&self) -> crate::rules::scheduler::EngineSettings {
        crate::rules::scheduler::EngineSettings {
            alerts_index: self.alerts_index.clone(),
            state_index: self.state_index.clone(),
            risk_index: self.risk_index.clone(),
            query: crate::rules::query::QueryOptions {
                events_index: self.events_index.clone(),
                page_size: self.page_size,
                max_events: self.max_events,
                keep_alive: "1m".into(),
            },
            max_catchup: self.max_catchup,
            lease: self.lease,
            replica: self.replica_id.clone(),
            refresh: "wait_for".into(),
            risk_interval: self.risk_interval,
            risk_lookback: self.risk_lookback,
        }
    }
}

/// How Vigil reaches Elasticsearch (forwarding, setup, rules, warm start).
#[derive(Debug, Clone)]
pub struct EsConfig {
    pub url: url::Url,
    pub credentials: Option<EsCredentials>,
    /// PEM CA bundle to trust for HTTPS, in addition to nothing else (no system roots).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) presented to Elasticsearch (PKI / mutual TLS).
    pub client_identity: Option<ClientIdentity>,
    pub timeout: std::time::Duration,
}

/// A client certificate chain and its key, concatenated PEM (what reqwest and the official
/// client take). The key makes it a secret: it never prints.
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub pem: Secret,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub enum EsCredentials {
    Basic { username: String, password: Secret },
    ApiKey(Secret),
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub max_batch_docs: usize,
    pub max_concurrent_requests: usize,
    /// TLS on the listener (`tls_cert` + `tls_key`); `None` serves plain HTTP.
    pub tls: Option<crate::tls::ServerTls>,
    /// On SIGTERM, how long in-flight requests and the current rule run may take to finish.
    pub shutdown_timeout: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct ModelsConfig {
    pub paths: Vec<PathBuf>,
    pub watch: bool,
}

#[derive(Debug, Clone)]
pub struct ScoringConfig {
    pub threads: usize,
    pub explain: crate::inference::ExplainPolicy,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub tokens: Vec<Secret>,
    pub required: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration ({}):\n  - {}", source_name, errors.join("\n  - "))]
pub struct ConfigError {
    pub source_name: String,
    pub errors: Vec<String>,
}

/// Overrides from the command line and the environment, applied after the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub model_paths: Vec<PathBuf>,
    /// Elasticsearch URL (the binary fills it from `--es-url` / `VIGIL_ES_URL`).
    pub es_url: Option<String>,
}

impl Config {
    /// Parses and validates `text` (`source_name` is for messages only).
    pub fn parse(
        text: &str,
        source_name: &str,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let fail = |errors: Vec<String>| ConfigError {
            source_name: source_name.to_string(),
            errors,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| fail(vec![e.to_string()]))?;
        let unknown = unknown_keys(&table);
        if !unknown.is_empty() {
            return Err(fail(unknown));
        }
        let raw: RawConfig = toml::from_str(text).map_err(|e| fail(vec![e.to_string()]))?;
        validate(raw, overrides).map_err(fail)
    }

    /// Reads `path`, or the embedded defaults when `None`.
    pub fn load(
        path: Option<&std::path::Path>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        match path {
            None => Config::parse(EMBEDDED_DEFAULTS, "embedded defaults", overrides),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
                    source_name: p.display().to_string(),
                    errors: vec![format!("cannot read: {e}")],
                })?;
                Config::parse(&text, &p.display().to_string(), overrides)
            }
        }
    }
}

fn unknown_keys(table: &toml::Table) -> Vec<String> {
    let mut errors = Vec::new();
    for (section, value) in table {
        if section == "routes" {
            match value.as_array() {
                Some(routes) => {
                    for (i, route) in routes.iter().enumerate() {
                        match route.as_table() {
                            Some(t) => errors.extend(
                                t.keys()
                                    .filter(|k| !ROUTE_KEYS.contains(&k.as_str()))
                                    .map(|k| format!("unknown key [routes[{i}].{k}]")),
                            ),
                            None => errors.push(format!("routes[{i}] must be a table")),
                        }
                    }
                }
                None => errors.push("[routes] must be an array of tables ([[routes]])".into()),
            }
            continue;
        }
        match SCHEMA.iter().find(|(name, _)| name == section) {
            None => errors.push(format!("unknown section [{section}]")),
            Some((_, keys)) => {
                if let Some(inner) = value.as_table() {
                    for k in inner.keys().filter(|k| !keys.contains(&k.as_str())) {
                        errors.push(format!("unknown key [{section}.{k}]"));
                    }
                } else {
                    errors.push(format!("[{section}] must be a table"));
                }
            }
        }
    }
    errors
}

fn validate(raw: RawConfig, overrides: &Overrides) -> Result<Config, Vec<String>> {
    let mut errors = Vec::new();
    let listen_text = overrides
        .listen
        .clone()
        .or(raw.server.listen)
        .unwrap_or_else(|| "127.0.0.1:9280".to_string());
    let listen = listen_text
        .parse::<SocketAddr>()
        .map_err(|e| errors.push(format!("server.listen [{listen_text}]: {e}")))
        .ok();
    let positive = |name: &str, v: Option<usize>, default: usize, errors: &mut Vec<String>| {
        let v = v.unwrap_or(default);
        if v == 0 {
            errors.push(format!("{name} must be at least 1"));
        }
        v
    };
    let max_body_bytes = raw.server.max_body_bytes.unwrap_or(100 * 1024 * 1024);
    if max_body_bytes < 1024 {
        errors.push(format!(
            "server.max_body_bytes {max_body_bytes} is below 1024"
        ));
    }
    let max_batch_docs = positive(
        "server.max_batch_docs",
        raw.server.max_batch_docs,
        10_000,
        &mut errors,
    );
    let max_concurrent_requests = positive(
        "server.max_concurrent_requests",
        raw.server.max_concurrent_requests,
        256,
        &mut errors,
    );
    let tls = match (&raw.server.tls_cert, &raw.server.tls_key) {
        (Some(cert), Some(key)) => crate::tls::server_tls(cert, key)
            .map_err(|e| errors.extend(e))
            .ok(),
        (None, None) => None,
        _ => {
            errors
                .push("server.tls_cert and server.tls_key go together: set both or neither".into());
            None
        }
    };
    let shutdown_timeout = match raw.server.shutdown_timeout.as_deref() {
        None => std::time::Duration::from_secs(25),
        Some(text) => crate::rules::schema::parse_duration(text)
            .ok()
            .and_then(|d| d.to_std().ok())
            .filter(|d| !d.is_zero())
            .unwrap_or_else(|| {
                errors.push(format!(
                    "server.shutdown_timeout [{text}] must be a positive duration such as \"25s\""
                ));
                std::time::Duration::from_secs(25)
            }),
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = positive("scoring.threads", raw.scoring.threads, cores, &mut errors);
    let explain = match raw.scoring.explain.as_deref() {
        None | Some("threshold") => crate::inference::ExplainPolicy::AboveMinScore,
        Some("all") => crate::inference::ExplainPolicy::All,
        Some("never") => crate::inference::ExplainPolicy::Never,
        Some(other) => {
            errors.push(format!(
                "scoring.explain [{other}] must be one of threshold, all, never"
            ));
            crate::inference::ExplainPolicy::AboveMinScore
        }
    };
    let paths = if overrides.model_paths.is_empty() {
        raw.models
            .paths
            .unwrap_or_else(|| vec![PathBuf::from("models")])
    } else {
        overrides.model_paths.clone()
    };
    if paths.is_empty() {
        errors.push("models.paths is empty".to_string());
    }

    let mut tokens = Vec::new();
    if let Some(file) = &raw.auth.tokens_file {
        match std::fs::read_to_string(file) {
            Ok(text) => tokens.extend(parse_tokens(&text)),
            Err(e) => errors.push(format!("auth.tokens_file [{}]: {e}", file.display())),
        }
    }
    if let Some(var) = &raw.auth.tokens_env {
        match std::env::var(var) {
            Ok(text) => tokens.extend(parse_tokens(&text)),
            Err(_) => errors.push(format!(
                "auth.tokens_env: environment variable [{var}] is not set"
            )),
        }
    }
    // An unparsable address is already reported; do not pile an auth error on top of it.
    let loopback = listen.is_none_or(|a| a.ip().is_loopback());
    let required = raw.auth.required.unwrap_or(!loopback);
    if required && tokens.is_empty() {
        errors.push(format!(
            "auth: listening on [{listen_text}] requires caller tokens (auth.tokens_file or auth.tokens_env); \
             set auth.required = false only behind another authenticating proxy"
        ));
    }
    if !loopback && raw.auth.required == Some(false) {
        tracing::warn!("authentication is disabled on a non-loopback listener");
    }

    let elasticsearch = validate_es(raw.elasticsearch, overrides.es_url.clone(), &mut errors);
    let on_scoring_failure = match raw.bulk.on_scoring_failure.as_deref() {
        None | Some("forward") => ScoringFailure::Forward,
        Some("reject") => ScoringFailure::Reject,
        Some(other) => {
            errors.push(format!(
                "bulk.on_scoring_failure [{other}] must be forward or reject"
            ));
            ScoringFailure::Forward
        }
    };
    let routes = match crate::route::Routes::compile(raw.routes.as_deref().unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => {
            errors.extend(e);
            crate::route::Routes::default()
        }
    };
    let rules = validate_rules(raw.rules, &mut errors);
    let metrics = validate_metrics(raw.metrics, &mut errors);
    let features = validate_features(raw.features, &mut errors);

    if errors.is_empty() {
        Ok(Config {
            server: ServerConfig {
                listen: listen.expect("checked above"),
                max_body_bytes: max_body_bytes as usize,
                max_batch_docs,
                max_concurrent_requests,
                tls,
                shutdown_timeout,
            },
            models: ModelsConfig {
                paths,
                watch: raw.models.watch.unwrap_or(true),
            },
            scoring: ScoringConfig { threads, explain },
            auth: AuthConfig { tokens, required },
            elasticsearch: elasticsearch.expect("no errors"),
            bulk: BulkConfig { on_scoring_failure },
            routes,
            rules,
            metrics,
            features,
        })
    } else {
        Err(errors)
    }
}

fn read_secret(
    what: &str,
    env: &Option<String>,
    file: &Option<PathBuf>,
    errors: &mut Vec<String>,
) -> Option<Secret> {
    match (env, file) {
        (Some(_), Some(_)) => {
            errors.push(format!(
                "elasticsearch: set {what}_env or {what}_file, not both"
            ));
            None
        }
        (Some(var), None) => match std::env::var(var) {
            Ok(v) => Some(Secret::new(v.trim())),
            Err(_) => {
                errors.push(format!(
                    "elasticsearch.{what}_env: environment variable [{var}] is not set"
                ));
                None
            }
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(v) => Some(Secret::new(v.trim())),
            Err(e) => {
                errors.push(format!(
                    "elasticsearch.{what}_file [{}]: {e}",
                    path.display()
                ));
                None
            }
        },
        (None, None) => None,
    }
}

fn validate_es(
    raw: RawElasticsearch,
    url_override: Option<String>,
    errors: &mut Vec<String>,
) -> Option<EsConfig> {
    let text = url_override
        .or(raw.url)
        .unwrap_or_else(|| "http://127.0.0.1:9200".to_string());
    let url = match url::Url::parse(&text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
        Ok(u) => {
            errors.push(format!(
                "elasticsearch.url [{text}]: scheme {} is not http or https",
                u.scheme()
            ));
            None
        }
        Err(e) => {
            errors.push(format!("elasticsearch.url [{text}]: {e}"));
            None
        }
    };
    let password = read_secret("password", &raw.password_env, &raw.password_file, errors);
    let api_key = read_secret("api_key", &raw.api_key_env, &raw.api_key_file, errors);
    let credentials = match (raw.username, password, api_key) {
        (Some(username), Some(password), None) => Some(EsCredentials::Basic { username, password }),
        (None, None, Some(key)) => Some(EsCredentials::ApiKey(key)),
        (None, None, None) => None,
        (Some(_), None, None) => {
            errors.push("elasticsearch.username needs password_env or password_file".into());
            None
        }
        (None, Some(_), None) => {
            errors.push("elasticsearch password given without username".into());
            None
        }
        _ => {
            errors.push("elasticsearch: use basic credentials or an API key, not both".into());
            None
        }
    };
    if let Some(ca) = &raw.ca_file {
        if !ca.is_file() {
            errors.push(format!(
                "elasticsearch.ca_file [{}] does not exist",
                ca.display()
            ));
        }
    }
    let client_identity = match (&raw.client_cert, &raw.client_key) {
        (Some(cert), Some(key)) => client_identity(cert, key, errors),
        (None, None) => None,
        _ => {
            errors.push(
                "elasticsearch.client_cert and elasticsearch.client_key go together: set both or neither"
                    .into(),
            );
            None
        }
    };
    let timeout_ms = raw.timeout_ms.unwrap_or(60_000);
    if timeout_ms == 0 {
        errors.push("elasticsearch.timeout_ms must be at least 1".into());
    }
    Some(EsConfig {
        url: url?,
        credentials,
        ca_file: raw.ca_file,
        client_identity,
        timeout: std::time::Duration::from_millis(timeout_ms),
    })
}

/// Reads and checks the client certificate (validity) and key (parsable, and the pair is
/// accepted by rustls), naming the files on any problem.
fn client_identity(
    cert: &std::path::Path,
    key: &std::path::Path,
    errors: &mut Vec<String>,
) -> Option<ClientIdentity> {
    let certs = crate::tls::read_certs(cert, "elasticsearch.client_cert");
    let parsed_key = crate::tls::read_key(key, "elasticsearch.client_key");
    let (certs, parsed_key) = match (certs, parsed_key) {
        (Ok(c), Ok(k)) => (c, k),
        (c, k) => {
            errors.extend(c.err().into_iter().chain(k.err()));
            return None;
        }
    };
    let fits = tokio_rustls::rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
                .with_client_auth_cert(certs, parsed_key)
        });
    if let Ok(Err(e)) | Err(e) = fits {
        errors.push(format!(
            "elasticsearch.client_key [{}] does not fit elasticsearch.client_cert [{}]: {e}",
            key.display(),
            cert.display()
        ));
        return None;
    }
    // Both files were read above; reading them again as text cannot reasonably fail.
    let mut pem = std::fs::read_to_string(cert).ok()?;
    pem.push('\n');
    pem.push_str(&std::fs::read_to_string(key).ok()?);
    Some(ClientIdentity {
        cert_file: cert.to_path_buf(),
        key_file: key.to_path_buf(),
        pem: Secret::new(pem),
    })
}

fn validate_metrics(raw: RawMetrics, errors: &mut Vec<String>) -> MetricsConfig {
    let listen = raw.listen.and_then(|text| {
        text.parse::<SocketAddr>()
            .map_err(|e| errors.push(format!("metrics.listen [{text}]: {e}")))
            .ok()
    });
    let drift_window = raw.drift_window.unwrap_or(10_000);
    if !(100..=1_000_000).contains(&drift_window) {
        errors.push(format!(
            "metrics.drift_window {drift_window} must be 100..=1000000"
        ));
    }
    MetricsConfig {
        enabled: raw.enabled.unwrap_or(true),
        listen,
        drift_window,
    }
}

fn validate_rules(raw: RawRules, errors: &mut Vec<String>) -> RulesConfig {
    let mut duration = |key: &str, v: Option<String>, default: chrono::TimeDelta| match v {
        None => default,
        Some(text) => crate::rules::schema::parse_duration(&text).unwrap_or_else(|m| {
            errors.push(format!("rules.{key} {m}"));
            default
        }),
    };
    let interval = duration("interval", raw.interval, chrono::TimeDelta::minutes(5));
    let lookback = duration("lookback", raw.lookback, chrono::TimeDelta::minutes(10));
    let lease = duration("lease", raw.lease, chrono::TimeDelta::minutes(5));
    let tick = duration("tick", raw.tick, chrono::TimeDelta::seconds(10));
    let risk_interval = duration(
        "risk_interval",
        raw.risk_interval,
        chrono::TimeDelta::hours(1),
    );
    let risk_lookback = duration(
        "risk_lookback",
        raw.risk_lookback,
        chrono::TimeDelta::days(30),
    );
    let events_index: Vec<String> = raw
        .events_index
        .unwrap_or_else(|| "logs-*".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if events_index.is_empty() {
        errors.push("rules.events_index is empty".into());
    }
    let mut name = |key: &str, v: Option<String>, default: &str| {
        let v = v.unwrap_or_else(|| default.to_string());
        if v.is_empty()
            || v.contains(['*', ',', ' ', '/', '\\'])
            || v.starts_with(['_', '-', '+'])
            || v != v.to_lowercase()
        {
            errors.push(format!("rules.{key} [{v}] is not a valid index name"));
        }
        v
    };
    let alerts_index = name("alerts_index", raw.alerts_index, "logs-vigil.alert-default");
    let risk_index = name("risk_index", raw.risk_index, "vigil-risk-score-latest");
    let state_index = name("state_index", raw.state_index, "vigil-rules-state");
    let page_size = raw.page_size.unwrap_or(1000);
    if !(1..=10_000).contains(&page_size) {
        errors.push(format!("rules.page_size {page_size} must be 1..=10000"));
    }
    let max_events = raw.max_events.unwrap_or(1_000_000);
    if max_events == 0 {
        errors.push("rules.max_events must be at least 1".into());
    }
    let max_catchup = raw.max_catchup.unwrap_or(12);
    if max_catchup == 0 {
        errors.push("rules.max_catchup must be at least 1".into());
    }
    if lookback < interval {
        errors.push("rules.lookback must be at least rules.interval".into());
    }
    RulesConfig {
        enabled: raw.enabled.unwrap_or(false),
        dir: raw.dir.unwrap_or_else(|| PathBuf::from("rules")),
        events_index,
        alerts_index,
        risk_index,
        state_index,
        defaults: crate::rules::RuleDefaults { interval, lookback },
        max_catchup,
        lease,
        tick: tick.to_std().unwrap_or(std::time::Duration::from_secs(10)),
        page_size,
        max_events,
        replica_id: raw
            .replica_id
            .unwrap_or_else(crate::rules::scheduler::default_replica),
        risk_interval,
        risk_lookback,
    }
}

fn validate_features(raw: RawFeatures, errors: &mut Vec<String>) -> FeaturesConfig {
    let state_max_bytes = raw.state_max_bytes.unwrap_or(256 * 1024 * 1024);
    if state_max_bytes < 1024 * 1024 {
        errors.push(format!(
            "features.state_max_bytes {state_max_bytes} is below 1048576 (1 MiB)"
        ));
    }
    let mut duration = |key: &str, v: Option<String>, default: chrono::TimeDelta| match v {
        None => Some(default),
        Some(text) if key == "warm_interval" && text.trim() == "0" => None,
        Some(text) => match crate::rules::schema::parse_duration(&text) {
            Ok(d) => Some(d),
            Err(m) => {
                errors.push(format!("features.{key} {m}"));
                Some(default)
            }
        },
    };
    let lookback = duration(
        "warm_lookback",
        raw.warm_lookback,
        chrono::TimeDelta::days(30),
    );
    let interval = duration(
        "warm_interval",
        raw.warm_interval,
        chrono::TimeDelta::hours(1),
    );
    let timeout = duration(
        "warm_timeout",
        raw.warm_timeout,
        chrono::TimeDelta::minutes(2),
    );
    let index: Vec<String> = raw
        .warm_index
        .unwrap_or_else(|| "logs-*".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if index.is_empty() {
        errors.push("features.warm_index is empty".into());
    }
    let max_entities = raw.warm_max_entities.unwrap_or(1_000_000);
    if max_entities == 0 {
        errors.push("features.warm_max_entities must be at least 1".into());
    }
    let page_size = raw.warm_page_size.unwrap_or(500);
    if !(1..=10_000).contains(&page_size) {
        errors.push(format!(
            "features.warm_page_size {page_size} must be 1..=10000"
        ));
    }
    let until = raw.warm_until.as_deref().and_then(|t| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| d.to_utc())
            .map_err(|e| errors.push(format!("features.warm_until [{t}]: {e}")))
            .ok()
    });
    let std = |d: Option<chrono::TimeDelta>| d.and_then(|d| d.to_std().ok());
    FeaturesConfig {
        state_max_bytes,
        warm_start: raw
            .warm_start
            .unwrap_or(false)
            .then(|| crate::features::warm::WarmSettings {
                index,
                lookback_ms: lookback.map_or(0, |d| d.num_milliseconds()),
                interval: std(interval),
                max_entities,
                timeout: std(timeout).unwrap_or(std::time::Duration::from_secs(120)),
                page_size,
                until,
            }),
    }
}

/// One token per line or comma-separated; blank lines and `#` comments ignored.
fn parse_tokens(text: &str) -> Vec<Secret> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Secret::new)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid_and_loopback() {
        let c = Config::load(None, &Overrides::default()).unwrap();
        assert!(c.server.listen.ip().is_loopback());
        assert!(!c.auth.required);
        assert_eq!(c.models.paths, vec![PathBuf::from("models")]);
    }

    #[test]
    fn every_bad_key_is_named_at_once() {
        let err = Config::parse(
            "[server]\nlisten = \"x\"\nbogus = 1\n[nope]\n[scoring]\nthread = 2\n",
            "t.toml",
            &Overrides::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unknown key [server.bogus]"), "{text}");
        assert!(text.contains("unknown section [nope]"), "{text}");
        assert!(text.contains("unknown key [scoring.thread]"), "{text}");
    }

    #[test]
    fn all_value_errors_are_reported_together() {
        let err = Config::parse(
            "[server]\nlisten = \"nowhere\"\nmax_batch_docs = 0\n[scoring]\nexplain = \"sometimes\"\n",
            "t.toml",
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.errors.len(), 3, "{err}");
    }

    #[test]
    fn rules_section_defaults_and_errors() {
        let c = Config::load(None, &Overrides::default()).unwrap();
        assert!(!c.rules.enabled);
        assert_eq!(c.rules.events_index, vec!["logs-*".to_string()]);
        assert_eq!(c.rules.alerts_index, "logs-vigil.alert-default");
        let err = Config::parse(
            "[rules]\ninterval = \"5 min\"\nalerts_index = \"Bad*\"\nmax_catchup = 0\nfoo = 1\n",
            "t.toml",
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown key [rules.foo]"), "{err}");
        let err = Config::parse(
            "[rules]\ninterval = \"5 min\"\nalerts_index = \"Bad*\"\nmax_catchup = 0\n",
            "t.toml",
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.errors.len(), 3, "{err}");
    }

    #[test]
    fn features_section_defaults_and_every_error_at_once() {
        let c = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(c.features.state_max_bytes, 256 * 1024 * 1024);
        assert!(c.features.warm_start.is_none(), "warm start is opt-in");
        let c = Config::parse(
            "[features]\nwarm_start = true\nwarm_index = \"a-*, b-*\"\nwarm_lookback = \"7d\"\nwarm_interval = \"0\"\n",
            "t.toml",
            &Overrides::default(),
        )
        .unwrap();
        let w = c.features.warm_start.unwrap();
        assert_eq!(w.index, vec!["a-*".to_string(), "b-*".to_string()]);
        assert_eq!(w.lookback_ms, 7 * 86_400_000);
        assert_eq!(w.interval, None, "0 = only at startup");
        assert_eq!(w.timeout, std::time::Duration::from_secs(120));
        let err = Config::parse(
            "[features]\nstate_max_bytes = 10\nwarm_lookback = \"7 days\"\nwarm_timeout = \"-1s\"\n\
             warm_max_entities = 0\nwarm_page_size = 0\nwarm_index = \" , \"\nwarm_until = \"yesterday\"\n",
            "t.toml",
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.errors.len(), 7, "{err}");
        for key in [
            "state_max_bytes",
            "warm_lookback",
            "warm_timeout",
            "warm_max_entities",
            "warm_page_size",
            "warm_index",
            "warm_until",
        ] {
            assert!(
                err.to_string().contains(&format!("features.{key}")),
                "{key}: {err}"
            );
        }
        let err = Config::parse("[features]\nwarm = true\n", "t.toml", &Overrides::default())
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown key [features.warm]"),
            "{err}"
        );
    }

    #[test]
    fn non_loopback_requires_tokens_and_secrets_do_not_print() {
        let err = Config::parse(
            "[server]\nlisten = \"0.0.0.0:9280\"\n",
            "t.toml",
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("requires caller tokens"), "{err}");
        std::env::set_var("VIGIL_TEST_TOKENS_CFG", "s3cr3t-a, s3cr3t-b");
        let ok = Config::parse(
            "[server]\nlisten = \"0.0.0.0:9280\"\n[auth]\ntokens_env = \"VIGIL_TEST_TOKENS_CFG\"\n",
            "t.toml",
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(ok.auth.tokens.len(), 2);
        assert!(ok.auth.required);
        assert!(!format!("{ok:?}").contains("s3cr3t"));
    }
}
