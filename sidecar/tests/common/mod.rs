//! Shared helpers for the integration tests: test bundles, temporary copies, a running app.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// The non-blank lines of a shipped sample (`models/samples/<name>`).
pub fn sample_lines(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("models/samples").join(name)).expect("sample");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The embedded default configuration and a fresh registry of the shipped models (so the
/// behavioural state starts empty).
pub fn shipped_defaults() -> (vigil::config::Config, vigil::bundle::ModelRegistry) {
    let config = vigil::config::Config::load(None, &vigil::config::Overrides::default())
        .expect("embedded defaults");
    let registry = vigil::bundle::ModelRegistry::new(vec![repo().join("models")]);
    let report = registry.reload();
    assert!(
        registry.get("login-risk").is_some() && registry.get("url-phishing").is_some(),
        "the shipped models load: {report:?}"
    );
    (config, registry)
}

pub fn bundles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bundles")
}

/// A test bundle folder; panics (fails the test) when it is missing rather than skipping.
pub fn bundle(name: &str) -> PathBuf {
    let dir = bundles_dir().join(name);
    assert!(
        dir.join("manifest.json").is_file(),
        "test bundle {} is missing: run models/vigil_models/export_test_bundles.py",
        dir.display()
    );
    dir
}

/// Copies a test bundle into a fresh temporary folder (for tampering with it).
pub fn copy_bundle(name: &str, into: &Path) -> PathBuf {
    let src = bundle(name);
    let dst = into.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    dst
}

pub fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

pub fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// A running Vigil on 127.0.0.1:0 with the given TOML configuration; the server stops when the
/// returned guard is dropped.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub registry: std::sync::Arc<vigil::bundle::ModelRegistry>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestApp {
    pub async fn spawn(toml: &str) -> TestApp {
        let config = vigil::config::Config::parse(toml, "test", &Default::default())
            .expect("test configuration is valid");
        let app = vigil::startup::Application::build(config)
            .await
            .expect("app builds");
        let addr = app.local_addr();
        let registry = app.registry();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            registry,
            stop: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn config_for(models: &[&Path], extra: &str) -> String {
    let paths: Vec<String> = models
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{extra}\n[models]\npaths = [{}]\nwatch = false\n",
        paths.join(", ")
    )
}

/// The test Elasticsearch (started by `tests/elasticsearch/start`). Tests that need it fail,
/// never skip, when it is not there.
pub fn es_url() -> String {
    std::env::var("VIGIL_TEST_ES_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".to_string())
}

pub async fn require_es() -> String {
    let url = es_url();
    let ok = reqwest::get(format!(
        "{url}/_cluster/health?wait_for_status=yellow&timeout=30s"
    ))
    .await
    .map(|r| r.status().is_success())
    .unwrap_or(false);
    assert!(
        ok,
        "no Elasticsearch at {url}: run tests/elasticsearch/start (or set VIGIL_TEST_ES_URL)"
    );
    url
}

/// The official Elasticsearch client for `url`, configured as Vigil configures it.
pub fn es_client(url: &str) -> elasticsearch::Elasticsearch {
    let config = vigil::config::Config::parse(
        &format!("[elasticsearch]\nurl = \"{url}\"\n"),
        "test",
        &Default::default(),
    )
    .unwrap();
    vigil::es::client(&config.elasticsearch).unwrap()
}

/// Newline-delimited JSON, one value a line.
pub fn ndjson(lines: &[serde_json::Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// POSTs an NDJSON body to Vigil: `(status, headers, JSON answer)`.
pub async fn post_ndjson(
    app: &TestApp,
    path: &str,
    body: String,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(app.url(path))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap())
}

/// A unique, lowercase index name for one test.
pub fn unique_index(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Vigil in front of the test Elasticsearch, scoring with the given bundles and routes.
pub async fn drop_in(models: &[&Path], extra: &str) -> TestApp {
    let es = require_es().await;
    TestApp::spawn(&format!(
        "{}\n[elasticsearch]\nurl = \"{es}\"\n",
        config_for(models, extra)
    ))
    .await
}

/// Sends a request and reads its answer as JSON, whatever the status; a transport or JSON error
/// fails the test.
pub trait JsonReply {
    fn json_reply(self) -> impl std::future::Future<Output = serde_json::Value>;
}

impl JsonReply for reqwest::RequestBuilder {
    async fn json_reply(self) -> serde_json::Value {
        self.send().await.unwrap().json().await.unwrap()
    }
}
