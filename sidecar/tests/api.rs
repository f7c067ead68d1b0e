//! The HTTP API end to end: a real Vigil bound to 127.0.0.1:0, called over HTTP.

mod common;

use common::*;
use serde_json::{json, Value};

async fn app(extra: &str) -> TestApp {
    TestApp::spawn(&config_for(
        &[&bundle("logreg_binary"), &bundle("mlp_binary")],
        extra,
    ))
    .await
}

async fn post(app: &TestApp, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn assert_es_error(body: &Value, status: u16, kind: &str, reason_part: &str) {
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert_eq!(body["error"]["root_cause"][0]["type"], kind, "{body}");
    let reason = body["error"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(reason_part),
        "{reason_part:?} not in {reason:?}"
    );
}

#[tokio::test]
async fn scores_a_batch_in_order_with_per_document_errors() {
    let app = app("").await;
    let body = json!({"docs": [
        {"event": {"id": "a"}, "features": {"f0": 1.0, "f1": -3.5}},
        {"event": {"id": "b"}, "features": {"f1": "not a number"}},
        {"event": {"id": "c"}, "features.f0": "2.5"},
    ]});
    let (status, out) = post(&app, "/_vigil/score/logreg_binary", body.to_string()).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["errors"], true);
    assert_eq!(out["model_version"], "1.0.0");
    let docs = out["docs"].as_array().unwrap();
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[0]["doc"]["event"]["id"], "a");
    let result = &docs[0]["doc"]["ml"]["inference"]["logreg_binary"];
    assert!(result["prediction_probability"].is_f64(), "{result}");
    assert_eq!(result["model_id"], "logreg_binary");
    assert_eq!(docs[1]["error"]["type"], "feature_extraction_exception");
    assert!(docs[1]["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("[f1]"));
    assert_eq!(docs[2]["doc"]["event"]["id"], "c");
}

/// A small batch for a tree model without explanations is scored on the async worker that read
/// it; one of more than 256 documents, or one the fast reader refuses, on the scoring pool. All
/// three answer alike: the same result for the same document, per-document errors in place, and
/// serde_json's precise error for a broken body.
#[tokio::test]
async fn short_and_pooled_scoring_answer_alike() {
    let app = TestApp::spawn(&config_for(&[&bundle("xgb_binary")], "")).await;
    let docs: Vec<Value> = (0..300)
        .map(|i| match i {
            7 => json!({"n": i, "features": {"f2": "not a number"}}),
            _ => json!({"n": i, "features": {"f0": i as f64 * 0.01, "f3": -(i as f64) / 7.0}}),
        })
        .collect();
    let url = "/_vigil/score/xgb_binary?explain=never";
    let (s, pooled) = post(&app, url, json!({ "docs": docs }).to_string()).await;
    assert_eq!(s, 200, "{pooled}");
    let (s, short) = post(&app, url, json!({ "docs": docs[..100] }).to_string()).await;
    assert_eq!(s, 200, "{short}");
    // Duplicate keys make the fast reader give up on a document: it is parsed whole, still here.
    let (s, dup) = post(
        &app,
        url,
        r#"[{"n": 0, "n": 0, "features": {"f0": 0.0, "f3": -0.0}}]"#,
    )
    .await;
    assert_eq!(s, 200, "{dup}");
    let (pooled, short) = (
        pooled["docs"].as_array().unwrap(),
        short["docs"].as_array().unwrap(),
    );
    assert_eq!((pooled.len(), short.len()), (300, 100));
    assert_eq!(&pooled[..100], &short[..]);
    assert_eq!(
        short[7]["error"]["type"], "feature_extraction_exception",
        "{}",
        short[7]
    );
    assert!(short[8]["doc"]["ml"]["inference"]["xgb_binary"]["prediction_probability"].is_f64());
    assert_eq!(pooled[299]["doc"]["n"], 299);
    assert_eq!(dup["docs"][0]["doc"]["ml"], short[0]["doc"]["ml"], "{dup}");
    let (s, b) = post(&app, url, "{\"docs\": [{}, 1,]}").await;
    assert_es_error(&b, s, "x_content_parse_exception", "line 1");
    assert_eq!(s, 400);
}

/// Documents come back as sent with the result appended; read back, each equals the parsed
/// document with the result written at the target (what the API answered before it echoed bytes),
/// whichever way it was read: scanned, parsed whole (duplicate keys), or merged into an `ml`
/// object the document already had.
#[tokio::test]
async fn echoed_documents_equal_the_parsed_document_with_the_result_written_in() {
    let app = app("").await;
    let docs = [
        r#"{"event": {"id": "spaced"} ,  "features" : { "f0" : 1.5 , "f1": -2 } }"#,
        r#"{"ml": {"other": 1}, "features": {"f0": 0.5}}"#,
        r#"{"features": {"f0": 1, "f0": 2}, "features.f1": 3}"#,
        r#"{}"#,
        r#"{"f\u0065atures": {"f2": 3}, "features.f3": [4, 5]}"#,
        "{\"features\":\r\n  {\"f4\": 1e-3}\r\n}\r\n",
        r#"{"ml": "text", "features": {"f0": 1}}"#,
    ];
    let body = format!("{{\"docs\": [{}]}}", docs.join(","));
    let url = |q: &str| app.url(&format!("/_vigil/score/logreg_binary?explain=all{q}"));
    let client = reqwest::Client::new();
    let text = client
        .post(url(""))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let text = text.text().await.unwrap();
    assert!(
        text.contains(r#"{"event": {"id": "spaced"} ,  "features" : { "f0" : 1.5 , "f1": -2 } ,"ml":{"inference":{"logreg_binary":{"#),
        "{text}"
    );
    let answer: Value = serde_json::from_str(&text).unwrap();
    let results: Value = client
        .post(url("&results_only=true"))
        .body(body)
        .json_reply()
        .await;
    for (i, doc) in docs.iter().enumerate() {
        let entry = &answer["docs"][i];
        if i == docs.len() - 1 {
            assert_eq!(
                entry["error"]["type"], "document_parsing_exception",
                "{entry}"
            );
            continue;
        }
        let Value::Object(mut want) = serde_json::from_str::<Value>(doc).unwrap() else {
            panic!("{doc} is an object")
        };
        let result = results["docs"][i]["result"].clone();
        assert!(result["feature_importance"].is_array(), "{result}");
        vigil::enrich::write_at(&mut want, "ml.inference.logreg_binary", result).unwrap();
        assert_eq!(entry["doc"], Value::Object(want), "document {i}: {doc}");
    }
    assert_eq!(answer["docs"][1]["doc"]["ml"]["other"], 1);
    assert_eq!(answer["errors"], true);
}

#[tokio::test]
async fn results_only_and_bare_arrays() {
    let app = app("").await;
    let (status, out) = post(
        &app,
        "/_vigil/score/mlp_binary?results_only=true&explain=all",
        json!([{"features": {"f0": 0.3}}]).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    let r = &out["docs"][0]["result"];
    assert_eq!(r["explanation"]["method"], "sampled_shapley");
    assert_eq!(r["explanation"]["approximate"], true);
    assert!(out["docs"][0].get("doc").is_none());
}

#[tokio::test]
async fn bad_requests_get_precise_elasticsearch_shaped_errors() {
    let app = app("max_batch_docs = 3\nmax_body_bytes = 4096").await;
    let (s, b) = post(&app, "/_vigil/score/nope", "[]").await;
    assert_es_error(
        &b,
        404,
        "resource_not_found_exception",
        "no model named [nope]",
    );
    assert_eq!(s, 404);
    let (s, b) = post(&app, "/_vigil/score/logreg_binary", "{\"docs\": [").await;
    assert_eq!(s, 400);
    assert_es_error(&b, 400, "x_content_parse_exception", "line 1 column");
    let (s, b) = post(&app, "/_vigil/score/logreg_binary", "{\"documents\": []}").await;
    assert_eq!(s, 400);
    assert_es_error(&b, 400, "illegal_argument_exception", "{\"docs\": [...]}");
    for (body, reason) in [
        (
            "{\"docs\": {\"a\": 1}}",
            "[docs] must be an array of documents",
        ),
        (
            "{\"docs\": [], \"pipeline\": \"x\", \"b\": [1]}",
            "unknown keys [\"pipeline\", \"b\"]",
        ),
        ("\"text\"", "{\"docs\": [...]}"),
        ("  42 ", "{\"docs\": [...]}"),
    ] {
        let (s, b) = post(&app, "/_vigil/score/logreg_binary", body).await;
        assert_eq!(s, 400, "{body}");
        assert_es_error(&b, 400, "illegal_argument_exception", reason);
    }
    let (s, b) = post(&app, "/_vigil/score/logreg_binary", "{\"docs\": [{}, 1,]}").await;
    assert_eq!(s, 400);
    assert_es_error(&b, 400, "x_content_parse_exception", "trailing comma");
    let (s, b) = post(&app, "/_vigil/score/logreg_binary", "[{},{},{},{}]").await;
    assert_eq!(s, 413);
    assert_es_error(
        &b,
        413,
        "content_too_long_exception",
        "exceeds the limit of 3",
    );
    let big = format!("[{{\"pad\": \"{}\"}}]", "x".repeat(8000));
    let (s, b) = post(&app, "/_vigil/score/logreg_binary", big).await;
    assert_eq!(s, 413);
    assert_es_error(
        &b,
        413,
        "content_too_long_exception",
        "larger than the limit of 4096 bytes",
    );
    let (s, b) = post(&app, "/_vigil/score/logreg_binary?explain=maybe", "[]").await;
    assert_eq!(s, 400);
    assert_es_error(&b, 400, "illegal_argument_exception", "explain [maybe]");
    let (s, b) = post(&app, "/_vigil/score/logreg_binary", "[1, \"x\", null]").await;
    assert_eq!(s, 200);
    assert!(b["docs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["error"]["type"] == "feature_extraction_exception"));
}

#[tokio::test]
async fn lists_and_reloads_models() {
    let app = app("").await;
    let r: Value = reqwest::get(app.url("/_vigil/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = r["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["logreg_binary", "mlp_binary"]);
    assert_eq!(r["models"][0]["explanation"]["method"], "linear");
    assert_eq!(r["models"][0]["features"].as_array().unwrap().len(), 32);
    let (s, r) = post(&app, "/_vigil/models/_reload", "").await;
    assert_eq!(s, 200);
    assert_eq!(r["loaded"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn kserve_v2_metadata_readiness_and_inference() {
    // Readiness includes Elasticsearch behind the drop-in endpoint: the test node's.
    let es = require_es().await;
    let app = app(&format!("[elasticsearch]\nurl = \"{es}\"\n")).await;
    let live = reqwest::get(app.url("/v2/health/live")).await.unwrap();
    assert_eq!(live.status(), 200);
    let ready = reqwest::get(app.url("/v2/health/ready")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let meta: Value = reqwest::get(app.url("/v2/models/logreg_binary"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, 32]));
    assert_eq!(meta["outputs"][0]["name"], "probabilities");
    let r = reqwest::get(app.url("/v2/models/logreg_binary/ready"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::get(app.url("/v2/models/nope/ready"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let mut data = vec![0.5f64; 64];
    data[0] = 2.0;
    let request = json!({"id": "q1", "inputs": [{"name": "input", "shape": [2, 32], "datatype": "FP32", "data": data}],
                         "outputs": [{"name": "probabilities"}, {"name": "contributions"}]});
    let (s, out) = post(&app, "/v2/models/logreg_binary/infer", request.to_string()).await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["id"], "q1");
    assert_eq!(out["outputs"][0]["shape"], json!([2, 2]));
    let probs: Vec<f64> = out["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!((probs[0] + probs[1] - 1.0).abs() < 1e-5);
    assert_ne!(
        probs[0], probs[2],
        "rows differ in f0, so must their scores"
    );
    assert_eq!(out["outputs"][1]["shape"], json!([2, 1, 33]));

    let bad = json!({"inputs": [{"name": "input", "shape": [1, 31], "datatype": "FP32", "data": vec![0.0; 31]}]});
    let (s, out) = post(&app, "/v2/models/logreg_binary/infer", bad.to_string()).await;
    assert_eq!(s, 400);
    assert!(out["error"]
        .as_str()
        .unwrap()
        .contains("does not match [N, 32]"));
    let bad =
        json!({"inputs": [{"name": "input", "shape": [1, 32], "datatype": "BYTES", "data": []}]});
    let (s, _) = post(&app, "/v2/models/logreg_binary/infer", bad.to_string()).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn callers_without_a_valid_token_are_refused() {
    std::env::set_var("VIGIL_TEST_API_TOKENS", "tok-one,tok-two");
    let app = TestApp::spawn(&format!(
        "{}\n[auth]\nrequired = true\ntokens_env = \"VIGIL_TEST_API_TOKENS\"\n",
        config_for(&[&bundle("logreg_binary")], "")
    ))
    .await;
    let client = reqwest::Client::new();
    let none = client.get(app.url("/_vigil/models")).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert!(none.headers().contains_key("www-authenticate"));
    let wrong = client
        .get(app.url("/_vigil/models"))
        .bearer_auth("tok-three")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = client
        .get(app.url("/_vigil/models"))
        .bearer_auth("tok-two")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    let api_key = client
        .get(app.url("/_vigil/models"))
        .header("authorization", "ApiKey tok-one")
        .send()
        .await
        .unwrap();
    assert_eq!(api_key.status(), 200);
    // Probes stay open.
    let live = client.get(app.url("/v2/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200);
}

#[tokio::test]
async fn overload_answers_429_so_callers_retry() {
    let app = TestApp::spawn(&config_for(
        &[&bundle("mlp_binary")],
        "max_concurrent_requests = 1",
    ))
    .await;
    let big: Vec<Value> = (0..400).map(|i| json!({"features": {"f0": i}})).collect();
    let body = json!({"docs": big}).to_string();
    let client = reqwest::Client::new();
    let sends = (0..8).map(|_| {
        client
            .post(app.url("/_vigil/score/mlp_binary?explain=all"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    });
    let statuses: Vec<u16> = futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
}
