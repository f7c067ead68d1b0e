//! `mappings/` and `vigil setup` against the real Elasticsearch started by
//! `tests/elasticsearch/start` (these tests fail, not skip, when it is unreachable), plus the
//! Kibana import client against a stand-in server (Kibana does not run here).
//!
//! Each test installs the shipped assets under a unique name prefix (names, `composed_of`
//! and `index_patterns` rewritten), so tests and concurrent runs do not see each other.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{json, Value};
use vigil::fields;
use vigil::setup::{self, Asset, Kind, Options, Outcome, SetupError};

/// The official client for the test node; fails (does not skip) when it is unreachable.
async fn es() -> elasticsearch::Elasticsearch {
    es_client(&require_es().await)
}

async fn call(method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = reqwest::Client::new().request(method, format!("{}{path}", es_url()));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn unique_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("t{}-{tag}-{:x}-", std::process::id(), nanos % 0xffff_ffff)
}

/// The shipped Elasticsearch assets with every name and pattern under `prefix`.
fn prefixed_assets(prefix: &str) -> Vec<Asset> {
    let mut assets = setup::load(&repo()).expect("shipped assets load");
    assets.retain(|a| !matches!(a.kind, Kind::KibanaRules | Kind::KibanaSavedObjects));
    for a in &mut assets {
        a.name = format!("{prefix}{}", a.name);
        if a.kind == Kind::IndexTemplate {
            let body = a.json_mut().unwrap();
            for key in ["composed_of", "index_patterns"] {
                if let Some(list) = body.get_mut(key).and_then(Value::as_array_mut) {
                    for item in list {
                        *item = json!(format!("{prefix}{}", item.as_str().unwrap()));
                    }
                }
            }
        }
    }
    assets
}

async fn cleanup(prefix: &str, assets: &[Asset]) {
    let _ = call(reqwest::Method::DELETE, &format!("/{prefix}*"), None).await;
    for a in assets.iter().rev() {
        let path = match a.kind {
            Kind::IndexTemplate => format!("/_index_template/{}", a.name),
            Kind::ComponentTemplate => format!("/_component_template/{}", a.name),
            Kind::IngestPipeline => format!("/_ingest/pipeline/{}", a.name),
            _ => continue,
        };
        let _ = call(reqwest::Method::DELETE, &path, None).await;
    }
}

/// Scored documents covering every written field, with an unscored document's marker.
///
/// Real results come from the non-tree test bundles (binary, explained). Tree bundles (the
/// multiclass and regression ones) load only once the tree evaluator is built; until then the
/// multiclass and regression shapes are derived from a real result with the same key names
/// `InferenceResult::to_json` uses: per-class importances (`feature_importance.classes`) and a
/// numeric `predicted_value`. Tree bundles that do load are scored and indexed as well.
fn scored_documents() -> Vec<(String, Value)> {
    use fields::result as r;
    let names = [
        "logreg_binary",
        "mlp_binary",
        "xgb_multiclass",
        "xgb_regressor",
    ];
    let registry = vigil::bundle::ModelRegistry::new(names.iter().map(|n| bundle(n)).collect());
    registry.reload();
    let mut docs = Vec::new();
    for name in names {
        let Some(b) = registry.get(name) else {
            assert!(
                name.starts_with("xgb_"),
                "test bundle {name} must load: {:?}",
                registry.reload().refused
            );
            continue;
        };
        let golden: Value = serde_json::from_str(
            &std::fs::read_to_string(bundle(name).join("golden.json")).unwrap(),
        )
        .unwrap();
        // A row without missing features, so every feature_value is a number.
        let mut doc = golden["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["features"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(Value::is_number)
            })
            .map(|r| r["document"].clone())
            .expect("a complete golden row");
        doc["@timestamp"] = json!("2025-01-01T00:00:00Z");
        let text = doc.to_string();
        let out = vigil::http::score::score_raw(
            &registry,
            &b,
            &[text.as_str()],
            vigil::inference::ExplainPolicy::All,
            false,
        );
        let scored: Value = match &out[0] {
            Ok(bytes) => serde_json::from_slice(bytes).unwrap(),
            Err(e) => panic!("{name}: {e}"),
        };
        assert!(scored.is_object(), "{scored}");
        docs.push((name.to_string(), scored));
    }
    let (_, base) = docs[0].clone();
    let base_result = base["ml"]["inference"]["logreg_binary"].clone();
    let mut multiclass = base_result.clone();
    for item in multiclass[r::FEATURE_IMPORTANCE].as_array_mut().unwrap() {
        let imp = item[r::IMPORTANCE].clone();
        item[r::CLASSES] = json!([
            {r::CLASS_NAME: "a", r::IMPORTANCE: imp},
            {r::CLASS_NAME: "b", r::IMPORTANCE: 0},
        ]);
    }
    let mut regression = base_result;
    regression[r::PREDICTED_VALUE] = json!(12.5);
    for (name, result) in [
        ("multiclass_shape", multiclass),
        ("regression_shape", regression),
    ] {
        let mut doc = json!({"@timestamp": "2025-01-01T00:00:00Z"});
        doc["ml"]["inference"][name] = result;
        docs.push((name.to_string(), doc));
    }
    docs.push((
        "unscored".into(),
        json!({"@timestamp": "2025-01-01T00:00:00Z", "url": {"original": "x"},
               "vigil": {"error": {"type": "feature_extraction_exception", "reason": "feature [f0]: not a number"}}}),
    ));
    docs
}

#[tokio::test]
async fn every_written_field_is_mapped_with_its_intended_type() {
    let client = es().await;
    let prefix = unique_prefix("map");
    let assets = prefixed_assets(&prefix);
    let report = setup::apply(&client, &assets, &Options::default())
        .await
        .expect("setup applies to the test cluster");
    assert_eq!(
        report.count("created"),
        assets.len() - report.count("skipped-unsupported"),
        "{report:#?}"
    );

    let index = format!("{prefix}vigil-events-mapping");
    let docs = scored_documents();
    let mut models = Vec::new();
    for (model, doc) in &docs {
        let (s, b) = call(
            reqwest::Method::POST,
            &format!("/{index}/_doc?refresh=true"),
            Some(doc.clone()),
        )
        .await;
        assert!(s == 201, "indexing the {model} document: {s} {b}");
        if model != "unscored" {
            models.push(model.clone());
        }
    }
    let (s, mapping) = call(reqwest::Method::GET, &format!("/{index}/_mapping"), None).await;
    assert_eq!(s, 200, "{mapping}");
    let root = &mapping[&index]["mappings"];
    let mut failures = Vec::new();
    for (path, want) in fields::all_written() {
        let concrete: Vec<String> = if path.contains(fields::MODEL_PLACEHOLDER) {
            models.iter().map(|m| fields::for_model(&path, m)).collect()
        } else {
            vec![path.clone()]
        };
        // Each field must be mapped for at least one model, and wherever it is, with `want`.
        let mut seen = false;
        for p in concrete {
            let (s, got) = call(
                reqwest::Method::GET,
                &format!("/{index}/_mapping/field/{p}"),
                None,
            )
            .await;
            assert_eq!(s, 200, "{got}");
            let leaf = p.rsplit('.').next().unwrap();
            if let Some(t) = got[&index]["mappings"][&p]["mapping"][leaf]["type"].as_str() {
                seen = true;
                if t != want {
                    failures.push(format!("{p}: mapped as {t}, intended {want}"));
                }
            }
        }
        if !seen {
            failures.push(format!("{path}: not mapped for any of {models:?}"));
        }
    }
    for path in fields::objects_not_nested() {
        for m in &models {
            let p = fields::for_model(&path, m);
            let mut node = root;
            for part in p.split('.') {
                node = &node["properties"][part];
            }
            if node.is_null() {
                continue;
            }
            if node.get("type").and_then(Value::as_str) == Some("nested") {
                failures.push(format!("{p}: nested, intended object"));
            }
        }
    }
    // ECS fields the features and rules use, spot-checked with their core types.
    for (p, want) in [
        ("@timestamp", "date"),
        ("source.ip", "ip"),
        ("source.geo.location", "geo_point"),
        ("source.as.number", "long"),
        ("user.name", "keyword"),
        ("event.action", "keyword"),
        ("url.original", "keyword"),
        ("user_agent.original", "keyword"),
        ("email.from.address", "keyword"),
    ] {
        let (_, got) = call(
            reqwest::Method::GET,
            &format!("/{index}/_mapping/field/{p}"),
            None,
        )
        .await;
        let leaf = p.rsplit('.').next().unwrap();
        let t = got[&index]["mappings"][p]["mapping"][leaf]["type"].as_str();
        if t != Some(want) {
            failures.push(format!("{p}: mapped as {t:?}, intended {want}"));
        }
    }
    cleanup(&prefix, &assets).await;
    assert!(
        failures.is_empty(),
        "mapping problems:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn data_stream_template_is_installed_where_supported_and_resolves() {
    let client = es().await;
    let prefix = unique_prefix("ds");
    let assets = prefixed_assets(&prefix);
    let report = setup::apply(&client, &assets, &Options::default())
        .await
        .unwrap();
    let ds = format!("{prefix}vigil-events-ds");
    // The test distribution accepts data stream templates (probe-features: OK), so the probe
    // must say so and the template must be created.
    assert_eq!(
        report.outcome(&ds),
        Some(&Outcome::Created { version: Some(1) }),
        "{report:#?}"
    );
    // Resolve without creating a data stream (they cannot be deleted on this distribution).
    let (s, sim) = call(
        reqwest::Method::POST,
        &format!("/_index_template/_simulate_index/{prefix}logs-vigil.events-default"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{sim}");
    let mappings = &sim["template"]["mappings"];
    assert!(mappings.get("_data_stream_timestamp").is_some(), "{sim}");
    let dyn_names: Vec<String> = mappings["dynamic_templates"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d.as_object().unwrap().keys().cloned())
        .collect();
    assert!(
        dyn_names.contains(&"vigil_ml_score".to_string()),
        "{dyn_names:?}"
    );
    assert_eq!(
        mappings["properties"]["vigil"]["properties"]["error"]["properties"]["type"]["type"],
        "keyword"
    );
    cleanup(&prefix, &assets).await;
}

#[tokio::test]
async fn setup_creates_then_reports_unchanged_then_refuses_to_downgrade() {
    let client = es().await;
    let prefix = unique_prefix("idem");
    let assets = prefixed_assets(&prefix);
    let first = setup::apply(&client, &assets, &Options::default())
        .await
        .unwrap();
    for c in &first.changes {
        assert!(
            matches!(
                c.outcome,
                Outcome::Created { .. } | Outcome::SkippedUnsupported(_) | Outcome::Skipped(_)
            ),
            "first run: {c}"
        );
    }
    // The test distribution has no ingest-common / painless / ML: the scoring pipeline is
    // skipped as unsupported, naming what is missing; the inference endpoint too.
    let pipeline = format!("{prefix}vigil-score");
    let pipeline_outcome = first
        .changes
        .iter()
        .find(|c| c.name == pipeline && c.kind == Kind::IngestPipeline)
        .map(|c| &c.outcome);
    match pipeline_outcome {
        Some(Outcome::SkippedUnsupported(why)) => assert!(why.contains("script"), "{why}"),
        other => panic!("{pipeline}: {other:?}"),
    }
    let endpoint = format!("{prefix}vigil-score");
    assert!(first.changes.iter().any(|c| c.name == endpoint
        && matches!(c.kind, Kind::InferenceEndpoint { .. })
        && matches!(c.outcome, Outcome::SkippedUnsupported(_))));

    let second = setup::apply(&client, &assets, &Options::default())
        .await
        .unwrap();
    for (a, b) in first.changes.iter().zip(&second.changes) {
        match a.outcome {
            Outcome::Created { version } => {
                assert_eq!(b.outcome, Outcome::Unchanged { version }, "second run: {b}")
            }
            _ => assert_eq!(a.outcome, b.outcome, "second run: {b}"),
        }
    }

    // A newer version on the cluster (as a newer Vigil would leave it): setup refuses, names
    // the asset and both versions, and changes nothing.
    let component = format!("{prefix}vigil-ml-inference");
    let mut newer = assets
        .iter()
        .find(|a| a.name == component)
        .unwrap()
        .json()
        .unwrap()
        .clone();
    newer["_meta"]["version"] = json!(7);
    newer["version"] = json!(7);
    let (s, b) = call(
        reqwest::Method::PUT,
        &format!("/_component_template/{component}"),
        Some(newer),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // Also make an older one, which setup would update if it went ahead.
    let index_template = format!("{prefix}vigil-events");
    let mut older = assets
        .iter()
        .find(|a| a.name == index_template)
        .unwrap()
        .json()
        .unwrap()
        .clone();
    older["_meta"]["version"] = json!(0);
    let (s, b) = call(
        reqwest::Method::PUT,
        &format!("/_index_template/{index_template}"),
        Some(older),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let err = setup::apply(&client, &assets, &Options::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SetupError::Refused(_)), "{text}");
    assert!(text.contains(&component), "{text}");
    assert!(text.contains("version 7"), "{text}");
    assert!(text.contains("older version 1"), "{text}");
    let (_, still) = call(
        reqwest::Method::GET,
        &format!("/_index_template/{index_template}"),
        None,
    )
    .await;
    assert_eq!(
        still["index_templates"][0]["index_template"]["_meta"]["version"], 0,
        "nothing may change when setup refuses"
    );

    // With the newer one removed, the older index template is updated.
    let (s, _) = call(
        reqwest::Method::PUT,
        &format!("/_component_template/{component}"),
        Some(
            assets
                .iter()
                .find(|a| a.name == component)
                .unwrap()
                .json()
                .unwrap()
                .clone(),
        ),
    )
    .await;
    assert_eq!(s, 200);
    let third = setup::apply(&client, &assets, &Options::default())
        .await
        .unwrap();
    assert_eq!(
        third.outcome(&index_template),
        Some(&Outcome::Updated {
            from: Some(0),
            to: Some(1)
        })
    );
    cleanup(&prefix, &assets).await;
}

#[tokio::test]
async fn setup_refuses_to_overwrite_an_asset_vigil_does_not_manage() {
    let client = es().await;
    let prefix = unique_prefix("foreign");
    let assets = prefixed_assets(&prefix);
    let name = format!("{prefix}vigil-ecs-events");
    let (s, b) = call(
        reqwest::Method::PUT,
        &format!("/_component_template/{name}"),
        Some(json!({"template": {"mappings": {}}, "_meta": {"owner": "someone else"}})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let err = setup::apply(&client, &assets, &Options::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&name) && err.contains("not managed by vigil"),
        "{err}"
    );
    cleanup(&prefix, &assets).await;
}

#[test]
fn setup_cli_rejects_a_root_without_mappings() {
    let bin = env!("CARGO_BIN_EXE_vigil");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin)
        .args(["setup", "--root"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mappings"));
}

#[tokio::test]
async fn setup_cli_installs_and_prints_what_it_changed() {
    let _ = es().await;
    // The CLI installs under the shipped names; give it a private copy of mappings/ whose
    // names are prefixed, so it does not collide with other tests or users of the node.
    let prefix = unique_prefix("cli");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("mappings")).unwrap();
    for a in prefixed_assets(&prefix)
        .iter()
        .filter(|a| matches!(a.kind, Kind::ComponentTemplate | Kind::IndexTemplate))
    {
        std::fs::write(
            dir.path().join("mappings").join(format!("{}.json", a.name)),
            serde_json::to_string_pretty(a.json().unwrap()).unwrap(),
        )
        .unwrap();
    }
    let config = dir.path().join("vigil.toml");
    std::fs::write(
        &config,
        format!("[elasticsearch]\nurl = \"{}\"\n", es_url()),
    )
    .unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("setup")
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(dir.path())
            .env("VIGIL_LOG", "error")
            .output()
            .unwrap()
    };
    let first = run();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "component template [{prefix}vigil-ml-inference] version 1"
        )),
        "{stdout}"
    );
    // One line per template file copied above.
    let assets = std::fs::read_dir(dir.path().join("mappings"))
        .unwrap()
        .count();
    assert!(assets >= 4, "the shipped mappings: {assets}");
    assert_eq!(stdout.matches("created").count(), assets, "{stdout}");
    let second = run();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert_eq!(stdout.matches("unchanged").count(), assets, "{stdout}");
    let assets = setup::load(dir.path()).unwrap();
    cleanup(&prefix, &assets).await;
}

/// A stand-in for Kibana (Kibana does not run on this machine): it records each request and
/// answers like Kibana's import APIs. It can only check the shape of what Vigil sends.
#[tokio::test]
async fn kibana_import_requests_have_the_shape_kibana_expects_stand_in_server() {
    type Seen = Arc<Mutex<Vec<(String, String, axum::http::HeaderMap, Vec<u8>)>>>;
    let seen: Seen = Arc::default();
    let record = {
        let seen = seen.clone();
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let path = uri.path().to_string();
                let query = uri.query().unwrap_or_default().to_string();
                seen.lock()
                    .unwrap()
                    .push((path.clone(), query, headers, body.to_vec()));
                if path.contains("detection_engine") {
                    axum::Json(
                        json!({"success": true, "success_count": 1, "rules_count": 1, "errors": []}),
                    )
                } else {
                    axum::Json(json!({"success": true, "successCount": 2, "successResults": []}))
                }
            }
        }
    };
    let app = axum::Router::new()
        .route(
            "/kbn/api/saved_objects/_import",
            axum::routing::post(record.clone()),
        )
        .route(
            "/kbn/api/detection_engine/rules/_import",
            axum::routing::post(record),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
    std::fs::create_dir_all(dir.path().join("kibana/rules")).unwrap();
    let objects = "{\"type\":\"index-pattern\",\"id\":\"vigil-events\",\"attributes\":{\"title\":\"vigil-events-*\",\"timeFieldName\":\"@timestamp\"},\"references\":[],\"coreMigrationVersion\":\"8.8.0\",\"typeMigrationVersion\":\"8.0.0\"}\n\
                   {\"type\":\"dashboard\",\"id\":\"vigil-overview\",\"attributes\":{\"title\":\"vigil\",\"panelsJSON\":\"[]\"},\"references\":[]}\n";
    std::fs::write(dir.path().join("kibana/objects.ndjson"), objects).unwrap();
    let rules = "{\"rule_id\":\"vigil-test\",\"name\":\"t\",\"description\":\"d\",\"type\":\"query\",\"query\":\"*\",\"risk_score\":47,\"severity\":\"medium\"}\n";
    std::fs::write(dir.path().join("kibana/rules/rules.ndjson"), rules).unwrap();
    let assets = setup::load(dir.path()).unwrap();

    // No Elasticsearch call is made for Kibana assets; the client points nowhere on purpose.
    let nowhere = vigil::config::Config::parse(
        "[elasticsearch]\nurl = \"http://127.0.0.1:9\"\n",
        "t",
        &Default::default(),
    )
    .unwrap();
    let client = vigil::es::client(&nowhere.elasticsearch).unwrap();
    let without = setup::apply(&client, &assets, &Options::default())
        .await
        .unwrap();
    assert!(without
        .changes
        .iter()
        .all(|c| matches!(c.outcome, Outcome::Skipped(_))));
    assert!(seen.lock().unwrap().is_empty());

    let options = Options {
        kibana: Some(setup::KibanaTarget {
            url: format!("http://{addr}/kbn").parse().unwrap(),
            authorization: Some("ApiKey abc".into()),
            http: reqwest::Client::new(),
        }),
        ..Options::default()
    };
    let report = setup::apply(&client, &assets, &options).await.unwrap();
    let outcomes: Vec<&Outcome> = report.changes.iter().map(|c| &c.outcome).collect();
    assert_eq!(
        outcomes,
        [
            &Outcome::Imported { objects: 2 },
            &Outcome::Imported { objects: 1 }
        ]
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for ((path, query, headers, body), (want_path, want_body)) in seen.iter().zip([
        ("/kbn/api/saved_objects/_import", objects),
        ("/kbn/api/detection_engine/rules/_import", rules),
    ]) {
        assert_eq!(path, want_path);
        assert_eq!(query, "overwrite=true");
        assert!(headers.contains_key("kbn-xsrf"));
        assert_eq!(headers["authorization"], "ApiKey abc");
        let ct = headers["content-type"].to_str().unwrap();
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(body.clone()).unwrap();
        // One part, named `file`, carrying the NDJSON unchanged.
        assert_eq!(text.matches(&format!("--{boundary}\r\n")).count(), 1);
        assert!(text.contains("Content-Disposition: form-data; name=\"file\"; filename=\""));
        assert!(text.contains(&format!("\r\n\r\n{want_body}")), "{text}");
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }
}
