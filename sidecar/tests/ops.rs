//! Operations: HTTPS on Vigil's listener, TLS and credentials towards the secure test
//! Elasticsearch, `/metrics`, readiness against a live and a dead Elasticsearch, ECS logs
//! without secrets, and a SIGTERM that lets an in-flight bulk finish.
//!
//! The secure tests read the env file `tests/elasticsearch/start --secure` writes
//! (`VIGIL_TEST_ES_SECURE_ENV`, default `/tmp/vigil-es-9201/env`) and fail when it is missing.
//! The secure mode asks for client certificates
//! (`xpack.security.http.ssl.client_authentication: optional`), as the TLS tests need.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");
const ROUTES: &str = "[[routes]]\nmodel = \"logreg_binary\"\nwhen = { exists = [\"features\"] }\n";

/// A certificate for localhost/127.0.0.1 signed by a fresh CA: `(ca.pem, cert.pem, key.pem)`.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ------------------------------------------------------------------------------------- TLS

#[tokio::test]
async fn https_listener_serves_a_client_that_trusts_its_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(tmp.path());
    let app = TestApp::spawn(&config_for(
        &[&bundle("logreg_binary")],
        &format!(
            "tls_cert = {:?}\ntls_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    ))
    .await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}", app.addr.port());
    let r = client
        .post(format!("{url}/_vigil/score/logreg_binary"))
        .json(&json!({"docs": [{"features": {"f0": 1.0}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["docs"][0]["doc"]["ml"]["inference"]["logreg_binary"]["prediction_probability"]
            .is_f64(),
        "{body}"
    );
    // Plain HTTP on the TLS port gets no answer it could mistake for one.
    let plain = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/_vigil/health/live",
            app.addr.port()
        ))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // A client that does not trust the CA is refused.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!("{url}/_vigil/health/live"))
        .send()
        .await
        .is_err());
}

#[test]
fn expired_listener_certificate_stops_startup_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (tmp.path().join("old.pem"), tmp.path().join("old.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let config = tmp.path().join("vigil.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\n[elasticsearch]\nclient_cert = \"/nonexistent/client.crt\"\nclient_key = \"/nonexistent/client.key\"\n",
            c.display().to_string(),
            k.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(VIGIL)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("expired") && stderr.contains("old.pem"),
        "{stderr}"
    );
    // Every bad key at once: the client certificate and key are named too.
    assert!(stderr.contains("/nonexistent/client.crt"), "{stderr}");
    assert!(stderr.contains("/nonexistent/client.key"), "{stderr}");
}

/// The secure test node's env file as a map (ES_URL, ES_USER, ES_PASSWORD, ES_CA, ...).
fn secure_es() -> HashMap<String, String> {
    let path = std::env::var("VIGIL_TEST_ES_SECURE_ENV")
        .unwrap_or_else(|_| "/tmp/vigil-es-9201/env".to_string());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("no secure Elasticsearch env file at {path} ({e}): run tests/elasticsearch/start --secure (or set VIGIL_TEST_ES_SECURE_ENV)")
    });
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim().trim_matches(|c| c == '\'' || c == '"');
            (
                k.trim().trim_start_matches("export ").to_string(),
                v.to_string(),
            )
        })
        .collect()
}

fn es_client(env: &HashMap<String, String>) -> reqwest::Client {
    let ca = std::fs::read(&env["ES_CA"]).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap()
}

async fn bulk_through(app: &TestApp, index: &str, ids: &[&str]) -> Value {
    let body: String = ids
        .iter()
        .map(|id| {
            format!(
                "{}\n{}\n",
                json!({"index": {"_index": index, "_id": id}}),
                json!({"features": {"f0": 1.0}})
            )
        })
        .collect();
    let (status, _, out) = post_ndjson(app, "/_bulk?refresh=true", body).await;
    assert_eq!(status, 200, "{out}");
    out
}

#[tokio::test]
async fn bulk_reaches_secure_elasticsearch_over_tls_with_basic_auth_api_key_and_client_cert() {
    let env = secure_es();
    let url = &env["ES_URL"];
    assert!(url.starts_with("https://"), "{url}");
    let es = es_client(&env);
    // Basic auth, the harness's CA.
    std::env::set_var("VIGIL_TEST_OPS_ES_PASSWORD", &env["ES_PASSWORD"]);
    let base = config_for(&[&bundle("logreg_binary")], &format!("\n{ROUTES}"));
    let es_section = |auth: &str| {
        format!(
            "{base}\n[elasticsearch]\nurl = {url:?}\nca_file = {:?}\n{auth}\n",
            env["ES_CA"]
        )
    };
    let app = TestApp::spawn(&es_section(&format!(
        "username = {:?}\npassword_env = \"VIGIL_TEST_OPS_ES_PASSWORD\"",
        env["ES_USER"]
    )))
    .await;
    let index = unique_index("vigil-ops-secure");
    let out = bulk_through(&app, &index, &["basic"]).await;
    assert_eq!(out["errors"], false, "{out}");
    drop(app);

    // An API key Elasticsearch issued.
    let key: Value = es
        .post(format!("{url}/_security/api_key"))
        .basic_auth(&env["ES_USER"], Some(&env["ES_PASSWORD"]))
        .json(&json!({"name": "vigil-ops-test", "expiration": "1h"}))
        .json_reply()
        .await;
    std::env::set_var(
        "VIGIL_TEST_OPS_ES_API_KEY",
        key["encoded"].as_str().unwrap(),
    );
    let app = TestApp::spawn(&es_section("api_key_env = \"VIGIL_TEST_OPS_ES_API_KEY\"")).await;
    let out = bulk_through(&app, &index, &["apikey"]).await;
    assert_eq!(out["errors"], false, "{out}");
    drop(app);

    // A client certificate signed by the cluster's CA, presented on top of basic auth.
    // elasticsearch-certutil writes a PKCS#1 RSA key; rcgen reads PKCS#8.
    let ca_key = Path::new(&env["ES_CA"]).with_file_name("ca.key");
    let pkcs8 = Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-in"])
        .arg(&ca_key)
        .output()
        .expect("openssl converts the CA key");
    assert!(
        pkcs8.status.success(),
        "{}",
        String::from_utf8_lossy(&pkcs8.stderr)
    );
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(&env["ES_CA"]).unwrap(),
        rcgen::KeyPair::from_pem(&String::from_utf8(pkcs8.stdout).unwrap()).unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "vigil-ops-test");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&client_key, &issuer).unwrap();
    let (c, k) = (tmp.path().join("client.crt"), tmp.path().join("client.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, client_key.serialize_pem()).unwrap();
    let app = TestApp::spawn(&es_section(&format!(
        "username = {:?}\npassword_env = \"VIGIL_TEST_OPS_ES_PASSWORD\"\nclient_cert = {:?}\nclient_key = {:?}",
        env["ES_USER"],
        c.display().to_string(),
        k.display().to_string()
    )))
    .await;
    let out = bulk_through(&app, &index, &["clientcert"]).await;
    assert_eq!(out["errors"], false, "{out}");
    let ready = reqwest::get(app.url("/_vigil/health/ready")).await.unwrap();
    assert_eq!(ready.status(), 200);
    drop(app);

    // The certificate is really presented: one from a CA the cluster does not trust fails the
    // handshake (with client_authentication: optional, Elasticsearch verifies offered ones).
    let (_, foreign_cert, foreign_key) = certificates(tmp.path());
    let app = TestApp::spawn(&es_section(&format!(
        "username = {:?}\npassword_env = \"VIGIL_TEST_OPS_ES_PASSWORD\"\nclient_cert = {:?}\nclient_key = {:?}",
        env["ES_USER"],
        foreign_cert.display().to_string(),
        foreign_key.display().to_string()
    )))
    .await;
    let r = reqwest::Client::new()
        .post(app.url("/_bulk"))
        .header("content-type", "application/x-ndjson")
        .body(format!(
            "{}\n{}\n",
            json!({"index": {"_index": index, "_id": "foreign"}}),
            json!({"features": {"f0": 1.0}})
        ))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());

    let found: Value = es
        .get(format!("{url}/{index}/_search?size=10"))
        .basic_auth(&env["ES_USER"], Some(&env["ES_PASSWORD"]))
        .json_reply()
        .await;
    let mut ids: Vec<&str> = found["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["apikey", "basic", "clientcert"], "{found}");
    let hit = &found["hits"]["hits"][0]["_source"];
    assert!(
        hit["ml"]["inference"]["logreg_binary"]["prediction_probability"].is_f64(),
        "{hit}"
    );
}

// --------------------------------------------------------------------------------- metrics

/// The value of the first series of `name` whose labels include `labels`.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name)
                && l[name.len()..].starts_with(['{', ' '])
                && labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn scrape(url: &str) -> String {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    r.text().await.unwrap()
}

#[tokio::test]
async fn metrics_move_after_scoring_and_bulk() {
    let app = drop_in(&[&bundle("logreg_binary")], &format!("\n{ROUTES}")).await;
    let before = scrape(&app.url("/metrics")).await;
    let scored_before = series(
        &before,
        "vigil_documents_scored_total",
        &[("model", "logreg_binary")],
    )
    .unwrap_or(0.0);
    let indexed_before =
        series(&before, "vigil_bulk_items_total", &[("outcome", "indexed")]).unwrap_or(0.0);
    let errors_before = series(
        &before,
        "vigil_scoring_errors_total",
        &[
            ("model", "logreg_binary"),
            ("kind", "feature_extraction_exception"),
        ],
    )
    .unwrap_or(0.0);

    // 150 documents (more than the drift window's minimum) and one that fails extraction.
    let mut docs: Vec<Value> = (0..150)
        .map(|i| json!({"features": {"f0": (i % 10) as f64 * 3.0, "f1": 1.0}}))
        .collect();
    docs.push(json!({"features": {"f1": "not a number"}}));
    let r = reqwest::Client::new()
        .post(app.url("/_vigil/score/logreg_binary"))
        .json(&json!({"docs": docs}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let index = unique_index("vigil-ops-metrics");
    let out = bulk_through(&app, &index, &["a", "b"]).await;
    assert_eq!(out["errors"], false, "{out}");

    let after = scrape(&app.url("/metrics")).await;
    let scored = series(
        &after,
        "vigil_documents_scored_total",
        &[("model", "logreg_binary")],
    )
    .unwrap();
    assert!(
        scored >= scored_before + 152.0,
        "{scored_before} -> {scored}"
    );
    let indexed = series(&after, "vigil_bulk_items_total", &[("outcome", "indexed")]).unwrap();
    assert!(
        indexed >= indexed_before + 2.0,
        "{indexed_before} -> {indexed}"
    );
    let errors = series(
        &after,
        "vigil_scoring_errors_total",
        &[
            ("model", "logreg_binary"),
            ("kind", "feature_extraction_exception"),
        ],
    )
    .unwrap();
    assert!(errors >= errors_before + 1.0);
    assert!(
        series(
            &after,
            "vigil_model_inference_seconds_count",
            &[("model", "logreg_binary")]
        )
        .unwrap()
            >= 2.0
    );
    assert!(
        series(
            &after,
            "vigil_model_score_bucket",
            &[("model", "logreg_binary"), ("le", "+Inf")]
        )
        .unwrap()
            >= 152.0
    );
    assert!(series(&after, "vigil_models_loaded", &[]).unwrap() >= 1.0);
    assert!(
        series(&after, "vigil_behaviour_cache_entries", &[]).is_some(),
        "{after}"
    );
    let psi = series(
        &after,
        "vigil_model_drift_psi",
        &[("model", "logreg_binary")],
    )
    .unwrap_or_else(|| panic!("no drift gauge:\n{after}"));
    assert!(psi.is_finite() && psi >= 0.0, "{psi}");
    assert!(
        after
            .lines()
            .any(|l| l.starts_with("vigil_feature_drift_psi{")
                && l.contains("model=\"logreg_binary\"")
                && l.contains("feature=\"f0\"")),
        "{after}"
    );
}

#[tokio::test]
async fn metrics_listener_is_separate_and_main_metrics_need_a_token() {
    std::env::set_var("VIGIL_TEST_OPS_TOKENS", "ops-token-1");
    let port = free_port();
    let app = TestApp::spawn(&format!(
        "{}\n[auth]\ntokens_env = \"VIGIL_TEST_OPS_TOKENS\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        config_for(&[&bundle("logreg_binary")], "")
    ))
    .await;
    let open = scrape(&format!("http://127.0.0.1:{port}/metrics")).await;
    assert!(open.contains("vigil_models_loaded"), "{open}");
    let other = reqwest::get(format!("http://127.0.0.1:{port}/_vigil/models"))
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        404,
        "the metrics listener serves /metrics only"
    );
    let main = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(main.status(), 401);
}

// ------------------------------------------------------------------------------- readiness

#[tokio::test]
async fn ready_needs_elasticsearch_but_live_does_not() {
    let es = require_es().await;
    let up = TestApp::spawn(&format!(
        "{}\n[elasticsearch]\nurl = \"{es}\"\n",
        config_for(&[&bundle("logreg_binary")], "")
    ))
    .await;
    let r = reqwest::get(up.url("/_vigil/health/ready")).await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["elasticsearch"], "up", "{body}");
    assert_eq!(status_of(&up.url("/v2/health/ready")).await, 200);

    // A closed port: nobody listens.
    let closed = free_port();
    let down = TestApp::spawn(&format!(
        "{}\n[elasticsearch]\nurl = \"http://127.0.0.1:{closed}\"\n",
        config_for(&[&bundle("logreg_binary")], "")
    ))
    .await;
    let r = reqwest::get(down.url("/_vigil/health/ready"))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["models"], 1);
    assert!(body["elasticsearch"]["down"].is_string(), "{body}");
    assert_eq!(status_of(&down.url("/v2/health/ready")).await, 503);
    assert_eq!(status_of(&down.url("/_vigil/health/live")).await, 200);
    assert_eq!(status_of(&down.url("/v2/health/live")).await, 200);

    // A listener that accepts but never answers: the probe gives up instead of hanging.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let stalled = TestApp::spawn(&format!(
        "{}\n[elasticsearch]\nurl = \"http://127.0.0.1:{silent_port}\"\n",
        config_for(&[&bundle("logreg_binary")], "")
    ))
    .await;
    let r = reqwest::Client::new()
        .get(stalled.url("/_vigil/health/ready"))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("readiness answers although Elasticsearch never does");
    assert_eq!(r.status(), 503);
}

// -------------------------------------------------------------------- logs and shutdown

/// `vigil serve` as a child process with ECS logs at debug level, stderr collected line by line.
struct Child {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    port: u16,
}

impl Child {
    fn spawn(toml: &str, env: &[(&str, &str)]) -> Child {
        let port = free_port();
        let tmp = tempfile::Builder::new().tempfile().unwrap();
        let path = tmp.into_temp_path().keep().unwrap();
        std::fs::write(
            &path,
            toml.replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
        )
        .unwrap();
        let mut child = Command::new(VIGIL)
            .args(["serve", "--config"])
            .arg(&path)
            .envs(env.iter().copied())
            .env("VIGIL_LOG", "debug")
            .env("VIGIL_LOG_FORMAT", "ecs")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Child { child, lines, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn wait_live(&self) {
        for _ in 0..300 {
            if let Ok(r) = reqwest::get(self.url("/_vigil/health/live")).await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "vigil did not start:\n{}",
            self.lines.lock().unwrap().join("\n")
        );
    }

    fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..600 {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("vigil did not exit after SIGTERM");
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn logs_are_ecs_json_and_never_carry_secrets() {
    let es = require_es().await;
    const PASSWORD: &str = "es-pass-8c1f0d";
    const TOKEN: &str = "caller-token-5e9a77";
    let toml = format!(
        "{}\n{ROUTES}\n[auth]\ntokens_env = \"VIGIL_OPS_TOKENS\"\n[elasticsearch]\nurl = \"{es}\"\nusername = \"vigil\"\npassword_env = \"VIGIL_OPS_ES_PASSWORD\"\n",
        config_for(&[&bundle("logreg_binary")], "")
    );
    let mut child = Child::spawn(
        &toml,
        &[
            ("VIGIL_OPS_TOKENS", TOKEN),
            ("VIGIL_OPS_ES_PASSWORD", PASSWORD),
        ],
    );
    child.wait_live().await;
    let client = reqwest::Client::new();
    let index = unique_index("vigil-ops-logs");
    // A scored bulk (the plain test node ignores the credentials), a scoring call, a bad token,
    // a proxied request, metrics and readiness.
    let r = client
        .post(child.url("/_bulk"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-ndjson")
        .body(format!(
            "{}\n{}\n",
            json!({"index": {"_index": index}}),
            json!({"features": {"f0": 2.0}})
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(child.url("/_vigil/score/logreg_binary"))
        .bearer_auth(TOKEN)
        .json(&json!({"docs": [{"features": {"f0": "x"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(child.url("/"))
        .bearer_auth("wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(child.url("/_cluster/health"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = client
        .get(child.url("/_vigil/health/ready"))
        .send()
        .await
        .unwrap();
    let _ = client
        .get(child.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    child.sigterm();
    assert!(child.wait_exit().success());
    // The reader thread drains stderr after exit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = child.lines.lock().unwrap().clone();
    assert!(lines.len() >= 3, "{lines:?}");
    let mut debug = 0;
    for line in &lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in [
            "@timestamp",
            "log.level",
            "message",
            "ecs.version",
            "service.name",
        ] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
        assert_eq!(v["service.name"], "vigil");
        debug += usize::from(v["log.level"] == "debug");
        for secret in [PASSWORD, TOKEN] {
            assert!(!line.contains(secret), "secret in a log line: {line}");
        }
        // Nor their base64 form (the Authorization header Vigil builds).
        let basic = base64_basic("vigil", PASSWORD);
        assert!(
            !line.contains(&basic),
            "encoded credentials in a log line: {line}"
        );
    }
    assert!(debug > 0, "debug level was asked for: {lines:?}");
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_bulk_finish() {
    let es = require_es().await;
    let toml = format!(
        "{}\n{ROUTES}\n[elasticsearch]\nurl = \"{es}\"\n",
        config_for(&[&bundle("logreg_binary")], "")
    );
    let mut child = Child::spawn(&toml, &[]);
    child.wait_live().await;
    let index = unique_index("vigil-ops-drain");
    // A bulk whose body arrives slowly: SIGTERM comes while it is still being sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream(rx));
    let request = reqwest::Client::new()
        .post(child.url("/_bulk?refresh=true"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send();
    let sender = tokio::spawn(async move {
        for i in 0..10 {
            let chunk = format!(
                "{}\n{}\n",
                json!({"index": {"_index": index, "_id": i.to_string()}}),
                json!({"features": {"f0": i as f64}})
            );
            tx.send(Ok(chunk)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        index
    });
    let pending = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.sigterm();
    let index = sender.await.unwrap();
    let response = pending
        .await
        .unwrap()
        .expect("the in-flight bulk is answered");
    assert_eq!(response.status(), 200);
    let out: Value = response.json().await.unwrap();
    assert_eq!(out["errors"], false, "{out}");
    assert_eq!(out["items"].as_array().unwrap().len(), 10);
    assert!(child.wait_exit().success());
    // Vigil is gone; the documents are in Elasticsearch.
    assert!(reqwest::get(child.url("/_vigil/health/live"))
        .await
        .is_err());
    let found: Value = reqwest::get(format!("{es}/{index}/_count"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["count"], 10, "{found}");
    let lines = child.lines.lock().unwrap().join("\n");
    assert!(lines.contains("shutting down"), "{lines}");
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures::Stream<Item = Result<String, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The HTTP status `GET url` answers.
async fn status_of(url: &str) -> reqwest::StatusCode {
    reqwest::get(url).await.unwrap().status()
}
