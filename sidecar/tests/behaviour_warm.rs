//! Warm start against the real Elasticsearch: simulated sign-ins are indexed, a fresh state is
//! seeded from them, and the features of the events that follow are compared with a state that
//! saw the whole stream (never restarted) and with a cold one (restarted without warm start).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{es_client, repo, JsonReply};
use serde_json::{json, Value};
use vigil::features::behaviour::{BehaviourFeature, BehaviourState};
use vigil::features::warm::{self, WarmSettings};
use vigil::inference::{infer_with, BehaviourValues, ExplainPolicy};

/// Events of the sample indexed before the "restart"; the rest come after it.
const HISTORY: usize = 1200;

fn sample() -> Vec<Value> {
    std::fs::read_to_string(repo().join("models/samples/auth-events.ndjson"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn state() -> BehaviourState {
    BehaviourState::new(1 << 30, Duration::from_secs(3600))
}

/// One document per request, in order, as a shipper would send them.
fn replay(
    state: &BehaviourState,
    docs: &[Value],
    features: &[Arc<BehaviourFeature>],
) -> Vec<BehaviourValues> {
    docs.iter()
        .map(|d| state.process(&[d], features, chrono::Utc::now()).remove(0))
        .collect()
}

async fn index_history(es: &str, index: &str, docs: &[Value]) {
    let http = reqwest::Client::new();
    let template: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("mappings/vigil-ecs-events.json")).unwrap(),
    )
    .unwrap();
    let created = http
        .put(format!("{es}/{index}"))
        .json(&json!({"mappings": template["template"]["mappings"]}))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "{}",
        created.text().await.unwrap()
    );
    let mut body = String::new();
    for d in docs {
        body.push_str("{\"create\":{}}\n");
        body.push_str(&d.to_string());
        body.push('\n');
    }
    let resp: Value = http
        .post(format!("{es}/{index}/_bulk?refresh=true"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .json_reply()
        .await;
    assert_eq!(resp["errors"], json!(false), "{resp}");
}

/// The restart happens right after the last indexed event (the sample is dated early 2026: the
/// look-back window ends there, not at the wall clock).
fn restart_after(history: &[Value]) -> chrono::DateTime<chrono::Utc> {
    let last = history.last().unwrap()["@timestamp"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(last).unwrap().to_utc() + chrono::TimeDelta::seconds(1)
}

fn settings(index: &str) -> WarmSettings {
    WarmSettings {
        index: vec![index.to_string()],
        lookback_ms: 30 * 86_400_000,
        interval: None,
        max_entities: 100_000,
        timeout: Duration::from_secs(120),
        page_size: 100,
        until: None,
    }
}

#[tokio::test]
async fn warm_start_makes_known_countries_and_devices_known_again() {
    let es = common::require_es().await;
    let index = common::unique_index("vigil-warm-test");
    let events = sample();
    let (history, after) = events.split_at(HISTORY);
    index_history(&es, &index, history).await;

    let bundle = vigil::bundle::load(&repo().join("models/login-risk")).unwrap();
    let features = bundle.extractor.behaviour_features();
    let id = |name: &str| -> Arc<str> {
        let i = bundle.extractor.names().position(|n| n == name).unwrap();
        match &bundle.extractor.features()[i].transform {
            vigil::features::Transform::Behaviour(b) => b.id.clone(),
            _ => panic!("{name} is not behavioural"),
        }
    };

    // Never restarted: the whole stream through one state.
    let continuous = state();
    replay(&continuous, history, &features);
    let truth = replay(&continuous, after, &features);
    // Restarted without warm start.
    let cold = replay(&state(), after, &features);
    // Restarted and warmed from Elasticsearch, with pages of 100 users (several pages).
    let warmed_state = state();
    let client = es_client(&es);
    let report = warm::run_bounded(
        &client,
        &warmed_state,
        &features,
        &settings(&index),
        restart_after(history),
    )
    .await
    .unwrap();
    assert!(report.complete, "{report:?}");
    assert!(report.pages > 2, "users are paged: {report:?}");
    let users: std::collections::HashSet<&str> = history
        .iter()
        .filter_map(|d| d["user"]["name"].as_str())
        .collect();
    let ips: std::collections::HashSet<&str> = history
        .iter()
        .filter_map(|d| d["source"]["ip"].as_str())
        .collect();
    assert_eq!(
        report.entities as usize,
        users.len() + ips.len(),
        "{report:?}"
    );
    let warmed = replay(&warmed_state, after, &features);

    // Per feature: how many of the later events differ from the never-restarted state.
    let mut cold_diff = BTreeMap::new();
    let mut warm_diff = BTreeMap::new();
    for f in &features {
        let differ = |values: &[BehaviourValues]| {
            values
                .iter()
                .zip(&truth)
                .filter(|(v, t)| {
                    let (a, b) = (v[&f.id], t[&f.id]);
                    !(a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-3 * b.abs())
                })
                .count()
        };
        cold_diff.insert(f.id.clone(), differ(&cold));
        warm_diff.insert(f.id.clone(), differ(&warmed));
    }
    eprintln!("feature: events differing from the never-restarted state, cold / warm");
    for f in &features {
        eprintln!("  {}: {} / {}", f.id, cold_diff[&f.id], warm_diff[&f.id]);
    }
    // Everything whose window covers the whole history is exact after warm start: first-seen
    // sets, per-value counts, distinct counts, time since the last success, velocity.
    for name in [
        "new_country_for_user",
        "new_asn_for_user",
        "new_device_for_user",
        "successes_from_ip_for_user_30d",
        "country_successes_for_user_30d",
        "asn_successes_for_user_30d",
        "ip_successful_users_30d",
        "hours_since_last_success",
        "geo_velocity_kmh",
    ] {
        assert_eq!(warm_diff[&id(name)], 0, "{name} after warm start");
        assert!(cold_diff[&id(name)] > 0, "{name} differs in a cold state");
    }

    // One user's known country is not new after warm start (it is in a cold state); a country
    // the user never signed in from still is.
    let (i, doc) = after
        .iter()
        .enumerate()
        .find(|(i, d)| {
            d["event"]["outcome"] == "success" && truth[*i][&id("new_country_for_user")] == 0.0
        })
        .unwrap();
    assert_eq!(cold[i][&id("new_country_for_user")], 1.0);
    assert_eq!(warmed[i][&id("new_country_for_user")], 0.0, "{doc}");
    let mut elsewhere = doc.clone();
    elsewhere["source"]["geo"]["country_iso_code"] = json!("AQ");
    elsewhere["@timestamp"] = json!("2026-02-02T18:00:00Z");
    let v = warmed_state.process(&[&elsewhere], &features, chrono::Utc::now());
    assert_eq!(
        v[0][&id("new_country_for_user")],
        1.0,
        "a country never seen stays new"
    );

    // The demo's false positives: benign sign-ins from known devices counted as new devices,
    // and the scores they get, before and after warm start.
    let benign: Vec<usize> = (0..after.len())
        .filter(|&i| after[i]["vigil"]["sim"]["label"] == "benign")
        .collect();
    let known_device_new = |values: &[BehaviourValues]| {
        benign
            .iter()
            .filter(|&&i| {
                truth[i][&id("new_device_for_user")] == 0.0
                    && values[i][&id("new_device_for_user")] == 1.0
            })
            .count()
    };
    assert!(known_device_new(&cold) > 0);
    assert_eq!(known_device_new(&warmed), 0);
    let refs: Vec<&Value> = after.iter().collect();
    let flagged = |values: &[BehaviourValues]| {
        infer_with(&bundle, &refs, Some(values), ExplainPolicy::Never)
            .into_iter()
            .enumerate()
            .filter(|(i, r)| benign.contains(i) && r.as_ref().unwrap().score >= 0.5)
            .count()
    };
    let (fp_truth, fp_cold, fp_warm) = (flagged(&truth), flagged(&cold), flagged(&warmed));
    eprintln!(
        "benign events scored >= 0.5: never restarted {fp_truth}, cold {fp_cold}, warm {fp_warm}"
    );
    assert!(fp_cold > fp_truth, "a cold state raises false positives");
    assert!(fp_warm <= fp_truth, "warm start removes them");

    let _ = reqwest::Client::new()
        .delete(format!("{es}/{index}"))
        .send()
        .await;
}

#[tokio::test]
async fn warm_start_never_drops_fresher_live_state() {
    let es = common::require_es().await;
    let index = common::unique_index("vigil-warm-live");
    let events = sample();
    index_history(&es, &index, &events[..300]).await;
    let bundle = vigil::bundle::load(&repo().join("models/login-risk")).unwrap();
    let features = bundle.extractor.behaviour_features();
    let new_country = features
        .iter()
        .find(|f| {
            f.id.starts_with(
                "user.name|event.outcome=\"success\"|source.geo.country_iso_code|FirstSeen",
            )
        })
        .unwrap()
        .clone();
    let state = state();
    // The live stream saw a later sign-in from a new country (not in Elasticsearch).
    let user = events[0]["user"]["name"].as_str().unwrap();
    let mut live = events[0].clone();
    live["@timestamp"] = json!("2026-02-02T17:00:00Z");
    live["event"]["outcome"] = json!("success");
    live["source"]["geo"]["country_iso_code"] = json!("NZ");
    state.process(&[&live], &features, chrono::Utc::now());
    let client = es_client(&es);
    let first = warm::run_bounded(
        &client,
        &state,
        &features,
        &settings(&index),
        restart_after(&events[..300]),
    )
    .await
    .unwrap();
    assert!(first.exact > 0 && first.complete, "{first:?}");
    // A periodic run over the same data adds nothing.
    let again = warm::run_bounded(
        &client,
        &state,
        &features,
        &settings(&index),
        restart_after(&events[..300]),
    )
    .await
    .unwrap();
    assert_eq!((again.exact, again.spread), (0, 0), "{again:?}");
    let mut next = live.clone();
    next["@timestamp"] = json!("2026-02-02T17:30:00Z");
    let v = state.process(&[&next], &features, chrono::Utc::now());
    assert_eq!(
        v[0][&new_country.id], 0.0,
        "{user}'s NZ from the live stream is still known"
    );
    let _ = reqwest::Client::new()
        .delete(format!("{es}/{index}"))
        .send()
        .await;
}

#[tokio::test]
async fn a_missing_index_warms_nothing_and_an_unreachable_cluster_is_a_precise_error() {
    let es = common::require_es().await;
    let client = es_client(&es);
    let bundle = vigil::bundle::load(&repo().join("models/login-risk")).unwrap();
    let features = bundle.extractor.behaviour_features();
    let state = state();
    let report = warm::run_bounded(
        &client,
        &state,
        &features,
        &settings("vigil-warm-no-such-index-*"),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!((report.entities, report.complete), (0, true));
    assert_eq!(state.entries(), 0);
    // Unreachable Elasticsearch: an error naming the transport, nothing merged.
    let dead = vigil::es::client(
        &vigil::config::Config::parse(
            "[elasticsearch]\nurl = \"http://127.0.0.1:9\"\ntimeout_ms = 2000\n",
            "test",
            &Default::default(),
        )
        .unwrap()
        .elasticsearch,
    )
    .unwrap();
    let err = warm::run_bounded(
        &dead,
        &state,
        &features,
        &settings("logs-*"),
        chrono::Utc::now(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("cannot reach Elasticsearch"),
        "{err}"
    );
}

#[tokio::test]
async fn vigil_serve_warms_in_the_background_and_reports_it_in_readiness() {
    let es = common::require_es().await;
    let index = common::unique_index("vigil-warm-serve");
    let events = sample();
    index_history(&es, &index, &events[..200]).await;
    let until = restart_after(&events[..200]).to_rfc3339();
    let model = repo().join("models/login-risk");
    let app = common::TestApp::spawn(&format!(
        "{}\n[elasticsearch]\nurl = \"{es}\"\n[features]\nwarm_start = true\nwarm_index = \"{index}\"\n\
         warm_until = \"{until}\"\nwarm_interval = \"0\"\n",
        common::config_for(&[&model], "")
    ))
    .await;
    let http = reqwest::Client::new();
    let mut last = Value::Null;
    for _ in 0..300 {
        let resp = http
            .get(app.url("/_vigil/health/ready"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "serving does not wait for warm start");
        last = resp.json().await.unwrap();
        if last["behaviour"]["state"] != "warming" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["behaviour"]["state"], "warm", "{last}");
    assert_eq!(last["behaviour"]["runs"], 1, "{last}");
    assert!(
        last["behaviour"]["entities"].as_u64().unwrap() > 100,
        "{last}"
    );
    assert!(app.registry.behaviour.entries() > 100);
    let _ = http.delete(format!("{es}/{index}")).send().await;
}
