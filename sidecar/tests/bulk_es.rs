//! The drop-in `_bulk` endpoint against the real test Elasticsearch: item-for-item answers,
//! scores landing in the indexed documents, bad lines failing in place, nothing lost.

mod common;

use common::*;
use serde_json::{json, Value};

const ROUTES: &str = "[[routes]]\nmodel = \"logreg_binary\"\nwhen = { exists = [\"features\"] }\n";

async fn vigil(extra_bulk: &str) -> TestApp {
    drop_in(
        &[&bundle("logreg_binary")],
        &format!("\n{extra_bulk}\n{ROUTES}"),
    )
    .await
}

async fn search(index: &str, query: &str) -> Value {
    reqwest::get(format!("{}/{index}/_search?q={query}&size=100", es_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn total(v: &Value) -> u64 {
    v["hits"]["total"]["value"].as_u64().unwrap()
}

#[tokio::test]
async fn bulk_answers_item_for_item_and_scores_land_in_elasticsearch() {
    let app = vigil("").await;
    let index = unique_index("vigil-bulk");
    let body = ndjson(&[
        json!({"index": {"_index": index, "_id": "good"}}),
        json!({"features": {"f0": 1.5}, "message": "scored"}),
        json!({"index": {"_index": index, "_id": "plain"}}),
        json!({"message": "no features: not routed, forwarded byte for byte"}),
        json!({"create": {"_index": index, "_id": "typo"}}),
        json!({"features": {"f1": "twelve"}}),
        json!({"delete": {"_index": index, "_id": "absent"}}),
        json!({"update": {"_index": index, "_id": "good"}}),
        json!({"doc": {"tag": "updated"}}),
    ]) + "{\"index\":{\"_index\":\""
        + &index
        + "\"}}\n{not json}\n";
    let (status, headers, out) = post_ndjson(&app, "/_bulk?refresh=true", body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(headers["x-elastic-product"], "Elasticsearch");
    let items = out["items"].as_array().unwrap();
    assert_eq!(items.len(), 6, "{out}");
    assert_eq!(items[0]["index"]["status"], 201);
    assert_eq!(items[1]["index"]["status"], 201);
    // Fail-open: the document with a bad feature is indexed unscored, with a marker.
    assert_eq!(items[2]["create"]["status"], 201);
    assert_eq!(items[3]["delete"]["status"], 404);
    assert_eq!(items[4]["update"]["status"], 200);
    assert_eq!(items[5]["index"]["status"], 400);
    assert_eq!(
        items[5]["index"]["error"]["type"],
        "document_parsing_exception"
    );
    assert_eq!(out["errors"], true);

    let good: Value = reqwest::get(format!("{}/{index}/_doc/good", es_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let result = &good["_source"]["ml"]["inference"]["logreg_binary"];
    assert!(result["score"].as_f64().is_some(), "{good}");
    assert_eq!(result["model_version"], "1.0.0");
    assert_eq!(good["_source"]["tag"], "updated");
    let typo: Value = reqwest::get(format!("{}/{index}/_doc/typo", es_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        typo["_source"]["vigil"]["error"]["type"],
        "feature_extraction_exception"
    );
    assert!(typo["_source"].get("ml").is_none());
    let plain: Value = reqwest::get(format!("{}/{index}/_doc/plain", es_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        plain["_source"],
        json!({"message": "no features: not routed, forwarded byte for byte"})
    );
    // Sent = indexed + reported failed: 4 documents written, 1 failed line, and nothing else.
    assert_eq!(total(&search(&index, "*").await), 3);
}

#[tokio::test]
async fn fail_closed_returns_the_document_as_a_failed_item() {
    let app = drop_in(
        &[&bundle("logreg_binary")],
        &format!("\n[bulk]\non_scoring_failure = \"reject\"\n{ROUTES}"),
    )
    .await;
    let index = unique_index("vigil-closed");
    let body = ndjson(&[
        json!({"index": {"_index": index, "_id": "1"}}),
        json!({"features": {"f1": "twelve"}}),
        json!({"index": {"_index": index, "_id": "2"}}),
        json!({"features": {"f1": 12}}),
    ]);
    let (status, _, out) = post_ndjson(&app, "/_bulk?refresh=true", body).await;
    assert_eq!(status, 200);
    assert_eq!(out["items"][0]["index"]["status"], 400);
    assert_eq!(
        out["items"][0]["index"]["error"]["type"],
        "feature_extraction_exception"
    );
    assert_eq!(out["items"][0]["index"]["_id"], "1");
    assert_eq!(out["items"][1]["index"]["status"], 201);
    assert_eq!(total(&search(&index, "*").await), 1);
}

#[tokio::test]
async fn index_path_gzip_filter_path_and_query_parameters_pass_through() {
    use std::io::Write;
    let app = vigil("").await;
    let index = unique_index("vigil-gz");
    let body = ndjson(&[
        json!({"create": {"_id": "1"}}),
        json!({"features": {"f0": 2}}),
        json!({"create": {"_id": "1"}}),
        json!({"features": {"f0": 2}}),
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.as_bytes()).unwrap();
    let r = reqwest::Client::new()
        .post(app.url(&format!(
            "/{index}/_bulk?refresh=wait_for&filter_path=errors,items.*.error,items.*.status"
        )))
        .header("content-type", "application/json; charset=utf-8")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    assert_eq!(
        out["items"][0],
        json!({"create": {"status": 201}}),
        "filter_path keeps only status and error: {out}"
    );
    assert_eq!(out["items"][1]["create"]["status"], 409);
    assert!(out.get("took").is_none());
    assert_eq!(total(&search(&index, "*").await), 1);
}

#[tokio::test]
async fn single_document_endpoints_score_too() {
    let app = vigil("").await;
    let index = unique_index("vigil-doc");
    let client = reqwest::Client::new();
    let r = client
        .put(app.url(&format!("/{index}/_doc/one?refresh=true")))
        .json(&json!({"features": {"f0": 0.5}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .put(app.url(&format!("/{index}/_create/one?refresh=true")))
        .json(&json!({"features": {"f0": 0.5}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        409,
        "create of an existing id conflicts, as in Elasticsearch"
    );
    let r = client
        .post(app.url(&format!("/{index}/_doc?refresh=true")))
        .json(&json!({"features": {"f0": 3}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Pretty-printed, as curl users and consoles send it (Elasticsearch accepts it).
    let r = client
        .put(app.url(&format!("/{index}/_doc/pretty?refresh=true")))
        .header("content-type", "application/json")
        .body("{\r\n  \"features\": {\n    \"f0\": 2.5\n  }\n}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    for (id, f0) in [("pretty", 2.5), ("one", 0.5)] {
        // Read back through Vigil (proxied to Elasticsearch).
        let got: Value = client
            .get(app.url(&format!("/{index}/_doc/{id}")))
            .json_reply()
            .await;
        assert_eq!(got["_source"]["features"]["f0"], f0, "{got}");
        assert!(
            got["_source"]["ml"]["inference"]["logreg_binary"]["score"].is_f64(),
            "{got}"
        );
    }
    assert_eq!(
        total(&search(&index, "_exists_:ml.inference.logreg_binary.score").await),
        3
    );
    let bad = client
        .post(app.url(&format!("/{index}/_doc")))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn other_requests_are_proxied_transparently() {
    let app = vigil("").await;
    let client = reqwest::Client::new();
    let r = client.get(app.url("/_cat/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client.get(app.url("/_license")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-elastic-product"], "Elasticsearch");
    let license: Value = r.json().await.unwrap();
    assert!(license["license"]["status"].is_string());
    let index = unique_index("vigil-proxy");
    let r = client
        .put(app.url(&format!("/{index}")))
        .json(&json!({"settings": {"number_of_replicas": 0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .head(app.url(&format!("/{index}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(app.url("/no-such-index-xyz/_search"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "Elasticsearch's own error status is relayed"
    );
}

#[tokio::test]
async fn framing_errors_and_oversized_bodies_fail_the_request_precisely() {
    let app = drop_in(
        &[&bundle("logreg_binary")],
        &format!("max_body_bytes = 2048\n{ROUTES}"),
    )
    .await;
    let (s, _, out) =
        post_ndjson(&app, "/_bulk", "{\"index\":{\"_index\":\"x\"}}\n{}".into()).await;
    assert_eq!(s, 400);
    assert!(out["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("terminated by a newline"));
    let (s, _, out) = post_ndjson(
        &app,
        "/_bulk",
        format!("{{\"index\":{{}}}}\n{{\"p\":\"{}\"}}\n", "x".repeat(4000)),
    )
    .await;
    assert_eq!(s, 413, "{out}");
    let r = reqwest::Client::new()
        .post(app.url("/_bulk"))
        .header("content-encoding", "gzip")
        .body("definitely not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let out: Value = r.json().await.unwrap();
    assert!(out["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("invalid compressed body"));
}

#[tokio::test]
async fn elasticsearch_unreachable_answers_503_so_callers_retry() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let app = TestApp::spawn(&format!(
        "{}\n[elasticsearch]\nurl = \"http://127.0.0.1:{port}\"\n",
        config_for(&[&bundle("logreg_binary")], "")
    ))
    .await;
    let (s, _, out) = post_ndjson(
        &app,
        "/_bulk",
        ndjson(&[json!({"index": {"_index": "x"}}), json!({"a": 1})]),
    )
    .await;
    assert_eq!(s, 503);
    assert_eq!(out["error"]["type"], "connect_exception");
}

#[tokio::test]
async fn raw_okta_events_are_normalised_on_the_drop_in_path_and_then_routed() {
    // Route on a field only the normaliser writes: the document is scored only if it was
    // normalised first.
    let app = drop_in(
        &[&bundle("logreg_binary")],
        "\n[[routes]]\nmodel = \"logreg_binary\"\nwhen = { field = \"event.provider\", equals = \"okta\" }\n",
    )
    .await;
    let index = unique_index("vigil-okta");
    let okta = json!({
        "uuid": "e1", "published": "2026-05-01T11:58:00.000Z", "eventType": "user.session.start",
        "actor": {"id": "00u1", "alternateId": "alice@corp.example", "type": "User"},
        "client": {"ipAddress": "203.0.113.5", "userAgent": {"rawUserAgent": "Mozilla/5.0"},
            "geographicalContext": {"country": "France", "city": "Paris", "geolocation": {"lat": 48.85, "lon": 2.35}}},
        "outcome": {"result": "FAILURE", "reason": "INVALID_CREDENTIALS"}
    });
    let unknown = json!({"message": "not an identity event"});
    let body = ndjson(&[
        json!({"index": {"_index": index, "_id": "okta"}}),
        okta,
        json!({"index": {"_index": index, "_id": "other"}}),
        unknown.clone(),
    ]);
    let (status, _, out) = post_ndjson(&app, "/_bulk?refresh=true", body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["errors"], false, "{out}");
    let got: Value = reqwest::get(format!("{}/{index}/_doc/okta", es_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let s = &got["_source"];
    assert_eq!(s["user"]["name"], "alice@corp.example", "{got}");
    assert_eq!(s["event"]["outcome"], "failure");
    assert_eq!(s["eventType"], "user.session.start", "original fields stay");
    assert!(
        s["ml"]["inference"]["logreg_binary"]["score"].is_f64(),
        "routed after normalisation"
    );
    let other: Value = reqwest::get(format!("{}/{index}/_doc/other", es_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["_source"], unknown);
}

/// A **stand-in** for Elasticsearch's `_bulk` (a real node cannot be made to answer a bulk with
/// the wrong item count or with something that is not JSON): it answers every bulk with
/// `answer`, byte for byte.
async fn stand_in(answer: &'static str) -> String {
    let app = axum::Router::new().route(
        "/_bulk",
        axum::routing::post(
            move || async move { ([("content-type", "application/json")], answer) },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn through_stand_in(answer: &'static str, body: String) -> (u16, String) {
    let upstream = stand_in(answer).await;
    let app = TestApp::spawn(&format!(
        "{}\n[elasticsearch]\nurl = \"{upstream}\"\n",
        config_for(&[&bundle("logreg_binary")], ROUTES)
    ))
    .await;
    let r = reqwest::Client::new()
        .post(app.url("/_bulk"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn elasticsearch_answer_is_returned_as_it_came_or_merged_or_refused_when_it_does_not_fit() {
    let two = ndjson(&[
        json!({"index": {"_index": "i", "_id": "a"}}),
        json!({"n": 1}),
        json!({"index": {"_index": "i", "_id": "b"}}),
        json!({"n": 2}),
    ]);
    // Key order, spacing and keys Vigil does not know are Elasticsearch's own: with no item
    // failed in Vigil and no filter_path, the caller gets exactly those bytes.
    const ANSWER: &str = r#"{"took": 3,"ingest_took":1,"errors":false,"items":[{"index":{"_id":"a","status":201}},{"index":{"_id":"b","status":201}}]}"#;
    let (status, text) = through_stand_in(ANSWER, two.clone()).await;
    assert_eq!((status, text.as_str()), (200, ANSWER));

    // A malformed line fails in Vigil: the answer is merged, item for item in request order.
    let with_bad = format!(
        "{}{}\n{{not json\n{}",
        ndjson(&[
            json!({"index": {"_index": "i", "_id": "a"}}),
            json!({"n": 1})
        ]),
        json!({"index": {"_index": "i", "_id": "x"}}),
        ndjson(&[
            json!({"index": {"_index": "i", "_id": "b"}}),
            json!({"n": 2})
        ]),
    );
    let (status, text) = through_stand_in(ANSWER, with_bad).await;
    let merged: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status, 200, "{merged}");
    let ids: Vec<&str> = merged["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["index"]["_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "x", "b"], "{merged}");
    assert_eq!(merged["items"][1]["index"]["status"], 400);
    assert_eq!(merged["errors"], true);
    assert_eq!(merged["took"], 3);

    // An answer that does not account for every forwarded document, or is not JSON, is never
    // passed on as a success: the caller gets 502 and retries.
    for (answer, says) in [
        (
            r#"{"took":1,"errors":false,"items":[{"index":{"_id":"a","status":201}}]}"#,
            "answered 1 items for the 2 forwarded",
        ),
        ("<html>gateway</html>", "not JSON"),
        (r#"{"took":1,"errors":false}"#, "answered 0 items"),
    ] {
        let (status, text) = through_stand_in(answer, two.clone()).await;
        assert_eq!(status, 502, "{text}");
        let e: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(e["error"]["type"], "upstream_exception", "{e}");
        assert!(e["error"]["reason"].as_str().unwrap().contains(says), "{e}");
    }
}
