//! The contract of `POST /_vigil/es/inference`, the service behind the Elasticsearch `custom`
//! inference endpoint shipped in `pipelines/_inference/completion/vigil-score.json`, and the
//! consistency of the shipped pipeline files.
//!
//! Elasticsearch itself cannot call Vigil here (the test distribution has no ML plugin and no
//! Enterprise licence), so these tests replay the request it sends, byte for byte as its
//! source builds it:
//! - `CustomRequest.createHttpRequest`: always POST to the templated `url`; header
//!   `Content-Type: application/json` by default, then the endpoint's `headers` with `${...}`
//!   replaced raw from secret and task parameters; the body is the `request` template with every
//!   `${...}` replaced by the JSON encoding of its value (`JsonUtils.toJson`).
//! - `CompletionParameters`: `${input}` is the first input as a JSON string.
//! - `CustomServiceIntegrationValidator`: endpoint creation sends the input `"how big"`.
//! - Apache HttpAsyncClient adds `Content-Length`, `Host`, `Connection: Keep-Alive` and its
//!   `User-Agent`, and reuses the connection.
//! - `CompletionResponseParser`: `completion_result` must resolve to a string (or strings).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use common::*;
use serde_json::{json, Value};

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn endpoint_file() -> Value {
    read(&repo().join("pipelines/_inference/completion/vigil-score.json"))
}

/// Elasticsearch's `ValidatingSubstitutor`: replaces `${name}` and fails on any left over.
fn substitute(template: &str, params: &[(&str, String)]) -> String {
    let mut out = template.to_string();
    for (k, v) in params {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    assert!(
        !out.contains("${"),
        "Elasticsearch would refuse the template, a placeholder is unmatched: {out}"
    );
    out
}

/// The exact request Elasticsearch's custom service sends for one completion input, from the
/// shipped endpoint definition with `task_settings.parameters.model` set to `model`.
fn es_request(addr: std::net::SocketAddr, token: &str, model: &str, input: &str) -> Vec<u8> {
    let endpoint = endpoint_file();
    let s = &endpoint["service_settings"];
    let model = json!(model);
    // JSON-encoded values for the body (JsonUtils.toJson), raw strings for url and headers.
    let body = substitute(
        s["request"].as_str().unwrap(),
        &[
            ("input", serde_json::to_string(input).unwrap()),
            ("model", model.to_string()),
            ("token", serde_json::to_string(token).unwrap()),
        ],
    );
    let url = s["url"]
        .as_str()
        .unwrap()
        .replace("{{VIGIL_URL}}", &format!("http://{addr}"));
    let url = url::Url::parse(&url).unwrap();
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    for (k, v) in s["headers"].as_object().unwrap() {
        let v = substitute(v.as_str().unwrap(), &[("token", token.to_string())]);
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
        headers.push((k.clone(), v));
    }
    headers.push(("Content-Length".into(), body.len().to_string()));
    headers.push(("Host".into(), addr.to_string()));
    headers.push(("Connection".into(), "Keep-Alive".into()));
    headers.push((
        "User-Agent".into(),
        "Apache-HttpAsyncClient/4.1.5 (Java/17.0.12)".into(),
    ));
    let mut request = format!("POST {} HTTP/1.1\r\n", url.path());
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// Reads one HTTP/1.1 response (Content-Length framed) from a kept-alive connection.
fn read_response(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>, Value) {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap();
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .expect("a Content-Length framed response")
        .1
        .parse()
        .unwrap();
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    (status, headers, serde_json::from_slice(&body).unwrap())
}

/// What Elasticsearch does with the answer: `$.result` must be a string (the completion),
/// which the pipeline's `json` processor then parses into an object.
fn completion(body: &Value) -> Value {
    let result = body["result"]
        .as_str()
        .unwrap_or_else(|| panic!("$.result is not a string: {body}"));
    let parsed: Value = serde_json::from_str(result).expect("the json processor can parse it");
    assert!(parsed.is_object(), "{parsed}");
    parsed
}

async fn app_with_token() -> TestApp {
    std::env::set_var("VIGIL_TEST_ES_INFERENCE_TOKENS", "es-secret");
    TestApp::spawn(&format!(
        "{}\n[auth]\nrequired = true\ntokens_env = \"VIGIL_TEST_ES_INFERENCE_TOKENS\"\n",
        config_for(&[&bundle("logreg_binary"), &bundle("mlp_binary")], "")
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_elasticsearch_custom_service_requests_probe_then_documents() {
    let app = app_with_token().await;
    let addr = app.addr;
    // As Painless's Json.dump writes the fields the pipeline's script packed.
    let packed = r#"{"features":{"f0":1.25,"f1":-3.5,"f7":"2"},"event":{"id":"é/\\\"x"}}"#;
    let (probe, scored) = tokio::task::spawn_blocking(move || {
        let stream = TcpStream::connect(addr).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        // Endpoint creation: the validation call, then ingest traffic on the same connection.
        writer
            .write_all(&es_request(addr, "es-secret", "logreg_binary", "how big"))
            .unwrap();
        let probe = read_response(&mut reader);
        writer
            .write_all(&es_request(addr, "es-secret", "logreg_binary", packed))
            .unwrap();
        let scored = read_response(&mut reader);
        (probe, scored)
    })
    .await
    .unwrap();

    let (status, headers, body) = probe;
    assert_eq!(status, 200, "{body}");
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("application/json")));
    let result = completion(&body);
    assert_eq!(result["model_id"], "logreg_binary");
    assert_eq!(result["validation"], true);

    let (status, _, body) = scored;
    assert_eq!(status, 200, "{body}");
    let result = completion(&body);
    assert_eq!(result["model_id"], "logreg_binary");
    assert!(result["score"].as_f64().is_some(), "{result}");
    assert!(result["predicted_value"].is_string(), "{result}");

    // The same document through the scoring API gives the same result object.
    let direct: Value = reqwest::Client::new()
        .post(app.url("/_vigil/score/logreg_binary?results_only=true"))
        .bearer_auth("es-secret")
        .header("content-type", "application/json")
        .body(format!("{{\"docs\": [{packed}]}}"))
        .json_reply()
        .await;
    assert_eq!(direct["docs"][0]["result"], result);
}

async fn post_raw(app: &TestApp, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .post(app.url("/_vigil/es/inference"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn failures_answer_4xx_that_elasticsearch_does_not_retry_never_5xx() {
    let app = app_with_token().await;
    let doc = |d: &str, model: &str| json!({"doc": d, "model": model}).to_string();

    let (s, b) = post_raw(&app, None, &doc("how big", "logreg_binary")).await;
    assert_eq!(s, 401, "{b}");
    let (s, b) = post_raw(&app, Some("wrong"), &doc("how big", "logreg_binary")).await;
    assert_eq!(s, 401, "{b}");

    // Unknown model: endpoint creation fails with a clear reason instead of a silent endpoint.
    let (s, b) = post_raw(&app, Some("es-secret"), &doc("how big", "nope")).await;
    assert_eq!(s, 404, "{b}");
    assert_eq!(b["error"]["type"], "resource_not_found_exception");

    // A document the model cannot read: 400 with the reason (the pipeline's on_failure keeps
    // the document and marks it vigil.error.*).
    let (s, b) = post_raw(
        &app,
        Some("es-secret"),
        &doc(r#"{"features":{"f1":"not a number"}}"#, "logreg_binary"),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["type"], "feature_extraction_exception", "{b}");

    // Not JSON (and not the validation probe): a pipeline packing mistake, said precisely.
    let (s, b) = post_raw(&app, Some("es-secret"), &doc("user=alice", "logreg_binary")).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("not a JSON document"));
    let (s, _) = post_raw(&app, Some("es-secret"), "{\"doc\": ").await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn overload_answers_429_with_retry_after() {
    use tower::ServiceExt;
    let config = vigil::config::Config::parse(
        &config_for(&[&bundle("logreg_binary")], ""),
        "t",
        &Default::default(),
    )
    .unwrap();
    let registry = Arc::new(vigil::bundle::ModelRegistry::new(
        config.models.paths.clone(),
    ));
    registry.reload();
    // Every scoring thread busy: no permit will come.
    let state = vigil::http::AppState {
        cpu: Arc::new(tokio::sync::Semaphore::new(0)),
        ..vigil::http::AppState::new(registry, Arc::new(config), None)
    };
    let request = axum::http::Request::post("/_vigil/es/inference")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            json!({"doc": "{\"features\":{\"f0\":1}}", "model": "logreg_binary"}).to_string(),
        ))
        .unwrap();
    let started = std::time::Instant::now();
    let response = vigil::http::router(state).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(started.elapsed() >= vigil::http::es_inference::SCORING_WAIT);
}

/// The shipped pipeline files agree with each other, with the route and with the model.
#[test]
fn pipeline_files_are_valid_and_consistent() {
    let endpoint = endpoint_file();
    let s = &endpoint["service_settings"];
    assert_eq!(endpoint["service"], "custom");
    assert!(s["url"].as_str().unwrap().ends_with("/_vigil/es/inference"));
    assert_eq!(s["request"], "{\"doc\": ${input}, \"model\": ${model}}");
    assert_eq!(
        s["response"]["json_parser"]["completion_result"],
        "$.result"
    );
    assert_eq!(s["headers"]["Authorization"], "Bearer ${token}");
    assert!(s["secret_parameters"]["token"].is_string());
    let model = endpoint["task_settings"]["parameters"]["model"]
        .as_str()
        .unwrap();

    // The model's manifest (read as a file: loading a tree bundle needs the tree evaluator).
    let manifest = read(&repo().join("models").join(model).join("manifest.json"));
    assert_eq!(
        manifest["name"], model,
        "the endpoint's model is not shipped in models/"
    );
    let target_field = manifest["target_field"].as_str().map_or(
        format!("{}.{model}", vigil::fields::ML_INFERENCE),
        str::to_string,
    );
    let mut sources: Vec<String> = Vec::new();
    for f in manifest["features"].as_array().unwrap() {
        match &f["source"] {
            Value::String(s) => sources.push(s.clone()),
            Value::Array(list) => {
                sources.extend(list.iter().map(|s| s.as_str().unwrap().to_string()))
            }
            other => panic!("feature {}: source {other}", f["name"]),
        }
    }

    let pipeline = read(&repo().join("pipelines/vigil-score.json"));
    assert_eq!(pipeline["_meta"]["managed_by"], "vigil");
    assert_eq!(pipeline["_meta"]["inference_endpoint"], "vigil-score");
    let processors = pipeline["processors"].as_array().unwrap();
    let find = |kind: &str| -> &Value {
        processors
            .iter()
            .find_map(|p| p.get(kind))
            .unwrap_or_else(|| panic!("no {kind} processor"))
    };
    let script = find("script");
    let inference = find("inference");
    let unpack = find("json");
    // The endpoint id is the file name under pipelines/_inference/completion/.
    assert_eq!(inference["model_id"], "vigil-score");
    let io = &inference["input_output"];
    assert!(
        script["source"].as_str().unwrap().contains(&format!(
            "ctx.{}",
            io["input_field"]
                .as_str()
                .unwrap()
                .split('.')
                .next()
                .unwrap()
        )),
        "the script must write the inference input field"
    );
    assert_eq!(unpack["field"], io["output_field"]);
    assert_eq!(unpack["target_field"].as_str(), Some(target_field.as_str()));
    // The script packs every field the model reads.
    let packed: Vec<&str> = script["params"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for source in &sources {
        assert!(
            packed.contains(&source.as_str()),
            "the model reads [{source}], which the pipeline does not pack"
        );
    }
    // Failures keep the document and mark it with the fields the mappings declare.
    let error_type = format!(
        "{}.{}",
        vigil::fields::VIGIL_ERROR,
        vigil::fields::error::TYPE
    );
    let error_reason = format!(
        "{}.{}",
        vigil::fields::VIGIL_ERROR,
        vigil::fields::error::REASON
    );
    for handlers in [&inference["on_failure"], &pipeline["on_failure"]] {
        let set: Vec<&str> = handlers
            .as_array()
            .expect("on_failure handlers")
            .iter()
            .filter_map(|h| h["set"]["field"].as_str())
            .collect();
        assert!(
            set.contains(&error_type.as_str()) && set.contains(&error_reason.as_str()),
            "{set:?}"
        );
    }

    // The Fleet @custom variant calls the scoring pipeline by name.
    let fleet_dir = repo().join("pipelines/fleet");
    let mut fleet = 0;
    for entry in std::fs::read_dir(&fleet_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        assert!(name.ends_with("@custom"), "{name}");
        let body = read(&path);
        assert!(body["processors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pipeline"]["name"] == "vigil-score"));
        fleet += 1;
    }
    assert!(fleet >= 1);
}
