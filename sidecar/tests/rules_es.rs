//! The rule engine end to end on a real Elasticsearch (tests/elasticsearch/start): every rule's
//! example events are indexed and the rule is run over them; the attack fires, the near miss
//! stays quiet, alerts have the ECS shape, and reruns do not duplicate. Also: checkpoints and
//! catch-up, replicas racing through optimistic concurrency, a failing rule that does not stop
//! the others, and the risk engine's numbers read back from the index.
//!
//! These tests FAIL (they do not skip) when Elasticsearch is unreachable.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use elasticsearch::http::Method;
use serde_json::{json, Value};
use vigil::rules::esapi::Es;
use vigil::rules::eval::Window;
use vigil::rules::scheduler::{Engine, EngineSettings};
use vigil::rules::{load_dir, Rule, RuleDefaults};

use common::repo;

async fn es() -> Es {
    let url = common::es_url();
    let cfg = vigil::config::EsConfig {
        url: url.parse().unwrap(),
        credentials: None,
        ca_file: None,
        client_identity: None,
        timeout: std::time::Duration::from_secs(60),
    };
    let es = Es::new(vigil::es::client(&cfg).unwrap());
    if let Err(e) = es
        .call("ping", Method::Get, "/_cluster/health", &[], None)
        .await
    {
        panic!("Elasticsearch is not reachable at {url} ({e}): run tests/elasticsearch/start (or set VIGIL_TEST_ES_URL)");
    }
    es
}

fn template_mappings(file: &str) -> Value {
    let t: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("mappings").join(file)).unwrap())
            .unwrap();
    t["template"]["mappings"].clone()
}

/// Test indices under one prefix: events, alerts (from `mappings/vigil-alerts.json`, as a plain
/// index since the test distribution has no data streams), state and risk.
struct Indices {
    prefix: String,
}

impl Indices {
    async fn create(es: &Es, name: &str) -> Indices {
        let prefix = format!(
            "vigil-t-{}-{}",
            name.to_lowercase().replace(['_', ' '], "-"),
            std::process::id()
        );
        let ix = Indices { prefix };
        ix.delete(es).await;
        let events = json!({
            // Malformed values are kept in _source but not indexed, as logs-* templates do.
            "settings": {"number_of_shards": 1, "number_of_replicas": 0, "index.mapping.ignore_malformed": true},
            "mappings": {
                "dynamic_templates": [
                    {"locations": {"path_match": "*.location", "mapping": {"type": "geo_point"}}},
                    {"ips": {"path_match": "*.ip", "mapping": {"type": "ip"}}},
                    {"messages": {"path_match": "message", "mapping": {"type": "text"}}},
                    {"strings": {"match_mapping_type": "string", "mapping": {"type": "keyword"}}}
                ],
                "properties": {"@timestamp": {"type": "date"}}
            }
        });
        es.call(
            "create events",
            Method::Put,
            &format!("/{}", ix.events()),
            &[],
            Some(&events),
        )
        .await
        .unwrap();
        for (index, file) in [
            (ix.alerts(), "vigil-alerts.json"),
            (ix.state(), "vigil-state.json"),
            (ix.risk(), "vigil-risk.json"),
        ] {
            let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": template_mappings(file)});
            es.call(
                "create index",
                Method::Put,
                &format!("/{index}"),
                &[],
                Some(&body),
            )
            .await
            .unwrap();
        }
        ix
    }
    fn events(&self) -> String {
        format!("{}-logs-events", self.prefix)
    }
    fn alerts(&self) -> String {
        format!("{}-logs-vigil.alert", self.prefix)
    }
    fn state(&self) -> String {
        format!("{}-state", self.prefix)
    }
    fn risk(&self) -> String {
        format!("{}-risk", self.prefix)
    }
    fn settings(&self, replica: &str) -> EngineSettings {
        let mut s = EngineSettings {
            alerts_index: self.alerts(),
            state_index: self.state(),
            risk_index: self.risk(),
            replica: replica.into(),
            refresh: "wait_for".into(),
            ..Default::default()
        };
        s.query.events_index = vec![format!("{}-logs-*", self.prefix)];
        s.query.page_size = 7; // small pages exercise search_after and after_key paging
        s
    }
    /// A rule's state document (`_source`); `None` when the rule never ran.
    async fn rule_state(&self, es: &Es, id: &str) -> Option<Value> {
        let path = format!("/{}/_doc/{id}", self.state());
        match es.call("state", Method::Get, &path, &[], None).await {
            Ok(v) => Some(v["_source"].clone()),
            Err(e) if e.is_not_found() => None,
            Err(e) => panic!("reading {path}: {e}"),
        }
    }
    async fn delete(&self, es: &Es) {
        let _ = es
            .call(
                "delete",
                Method::Delete,
                &format!("/{}-*", self.prefix),
                &[("expand_wildcards", "all".into())],
                None,
            )
            .await;
    }
}

async fn index_events(es: &Es, index: &str, events: &[(String, Value)]) {
    let mut body = String::new();
    for (id, doc) in events {
        body.push_str(&json!({"index": {"_index": index, "_id": id}}).to_string());
        body.push('\n');
        body.push_str(&doc.to_string());
        body.push('\n');
    }
    let resp = es
        .ndjson(
            "index events",
            "/_bulk",
            &[("refresh", "true".into())],
            body,
        )
        .await
        .unwrap();
    assert_eq!(resp["errors"], json!(false), "{resp}");
}

async fn search(es: &Es, index: &str, query: Value) -> Vec<Value> {
    let resp = es
        .call(
            "search",
            Method::Post,
            &format!("/{index}/_search"),
            &[],
            Some(&json!({"size": 1000, "query": query, "sort": [{"@timestamp": "asc"}]})),
        )
        .await
        .unwrap();
    resp["hits"]["hits"].as_array().unwrap().clone()
}

fn rules() -> Vec<Rule> {
    load_dir(&repo().join("rules"), &RuleDefaults::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn t(s: &str) -> DateTime<Utc> {
    vigil::rules::doc::parse_time(&json!(s)).unwrap()
}

/// Every example of every rule, on Elasticsearch, agrees with its expected alerts; alerts have
/// the ECS shape; a rerun writes nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_fires_on_its_attack_and_stays_quiet_on_its_near_miss() {
    let es = es().await;
    let rules = rules();
    assert!(
        rules.len() >= 12,
        "the catalog needs at least 12 detections, found {}",
        rules.len()
    );
    let mut failures = Vec::new();
    for rule in &rules {
        for (i, ex) in rule.examples.iter().enumerate() {
            let ix = Indices::create(
                &es,
                &format!("{}-{i}", rule.id.trim_start_matches("vigil-")),
            )
            .await;
            index_events(&es, &ix.events(), &ex.events).await;
            let engine = Engine::new(es.clone(), vec![rule.clone()], ix.settings("r1"));
            let window = Window::ending(rule, ex.now);
            let report = engine.run_window(rule, window, ex.now).await;
            let report = match report {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{} [{}]: run failed: {e}", rule.id, ex.name));
                    ix.delete(&es).await;
                    continue;
                }
            };
            let mut got: Vec<String> = report.findings.iter().map(|f| f.entity.clone()).collect();
            got.sort();
            let mut want = ex.alerts.clone();
            want.sort();
            if got != want {
                failures.push(format!(
                    "{} [{}]: expected {want:?}, got {got:?}",
                    rule.id, ex.name
                ));
            }
            // The pure evaluator agrees with Elasticsearch on what was skipped.
            let (_, pure_stats) =
                vigil::rules::eval::evaluate(rule, &vigil::rules::eval::example_events(ex), window);
            if pure_stats.skipped != report.stats.skipped {
                failures.push(format!(
                    "{} [{}]: skipped events differ: pure {:?}, es {:?}",
                    rule.id, ex.name, pure_stats.skipped, report.stats.skipped
                ));
            }
            let alerts = search(&es, &ix.alerts(), json!({"match_all": {}})).await;
            if alerts.len() != want.len() || report.alerts_written != want.len() as u64 {
                failures.push(format!(
                    "{} [{}]: {} alerts in the index, {} written",
                    rule.id,
                    ex.name,
                    alerts.len(),
                    report.alerts_written
                ));
            }
            for a in &alerts {
                let s = &a["_source"];
                let problems = check_alert(rule, s);
                if !problems.is_empty() {
                    failures.push(format!(
                        "{} [{}]: alert {}: {problems:?}",
                        rule.id, ex.name, s
                    ));
                }
                let ids = s["vigil"]["alert"]["event_ids"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if ids.is_empty()
                    || !ids
                        .iter()
                        .all(|id| ex.events.iter().any(|(e, _)| json!(e) == *id))
                {
                    failures.push(format!(
                        "{} [{}]: contributing ids {ids:?} are not example events",
                        rule.id, ex.name
                    ));
                }
            }
            // A rerun of the same window (crash, another replica) changes nothing.
            let again = engine
                .run_window(rule, window, ex.now + TimeDelta::minutes(1))
                .await
                .unwrap();
            if again.alerts_written != 0 || again.alerts_existing != want.len() as u64 {
                failures.push(format!(
                    "{} [{}]: rerun wrote {} and found {} existing",
                    rule.id, ex.name, again.alerts_written, again.alerts_existing
                ));
            }
            ix.delete(&es).await;
        }
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn check_alert(rule: &Rule, s: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let get = |path: &str| vigil::rules::doc::first(s, path).cloned();
    if get("event.kind") != Some(json!("alert")) {
        p.push("event.kind".to_string());
    }
    if get("event.module") != Some(json!("vigil")) {
        p.push("event.module".into());
    }
    if !matches!(
        get("event.severity").and_then(|v| v.as_u64()),
        Some(21 | 47 | 73 | 99)
    ) {
        p.push("event.severity".into());
    }
    if get("event.risk_score").and_then(|v| v.as_f64()) != Some(f64::from(rule.risk_score)) {
        p.push("event.risk_score".into());
    }
    if get("rule.id") != Some(json!(rule.id)) || get("rule.name") != Some(json!(rule.name)) {
        p.push("rule.*".into());
    }
    if get("threat.framework") != Some(json!("MITRE ATT&CK")) || get("threat.tactic.id").is_none() {
        p.push("threat.*".into());
    }
    match get("event.reason").and_then(|v| v.as_str().map(str::to_string)) {
        Some(r) if !r.contains('{') && r.len() > 10 => {}
        other => p.push(format!("event.reason {other:?}")),
    }
    if get("message").is_none() {
        p.push("message".into());
    }
    if rule.entity.starts_with("user.") && get("user.name").is_none() {
        p.push("user.name".into());
    }
    p
}

fn rule_with(id: &str, f: impl FnOnce(&mut Rule)) -> Rule {
    let mut r = rules().into_iter().find(|r| r.id == id).unwrap();
    f(&mut r);
    r
}

/// Checkpoints advance per window, catch-up is bounded, alert ids are deterministic, and the
/// second of two racing replicas finds the rule claimed or already done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_checkpoints_catch_up_and_replicas() {
    let es = es().await;
    let ix = Indices::create(&es, "scheduler").await;
    // A 15-minute look-back, so the 12:05 window still sees the 11:54 attack.
    let rule = rule_with("vigil-brute-force-user", |r| {
        r.lookback = TimeDelta::minutes(15)
    });
    let ex = &rule.examples[0];
    index_events(&es, &ix.events(), &ex.events).await;

    let mut settings = ix.settings("replica-a");
    settings.max_catchup = 3;
    let a = Engine::new(es.clone(), vec![rule.clone()], settings.clone());
    // First run at 11:00: the 3 catch-up windows up to 11:00, no alert (the attack is at 11:54).
    let r = a.run_rule_due(&rule, t("2026-05-01T11:00:00Z")).await;
    assert_eq!(
        (r.windows, r.missed_windows, r.error.clone()),
        (3, 0, None),
        "{r:?}"
    );
    let state = ix.rule_state(&es, &rule.id).await.expect("rule state");
    assert_eq!(state["checkpoint"], "2026-05-01T11:00:00.000Z");
    assert_eq!(state["status"], "ok");
    // Same tick again: not due.
    let r = a.run_rule_due(&rule, t("2026-05-01T11:03:00Z")).await;
    assert_eq!(r.skipped.as_deref(), Some("not due"));
    // Down for an hour: only the last 3 of 12 windows run, 9 are recorded as missed.
    let r = a.run_rule_due(&rule, t("2026-05-01T12:00:30Z")).await;
    assert_eq!(
        (r.windows, r.missed_windows, r.alerts_written),
        (3, 9, 1),
        "{r:?}"
    );
    let state = ix.rule_state(&es, &rule.id).await.expect("rule state");
    assert_eq!(state["checkpoint"], "2026-05-01T12:00:00.000Z");
    assert_eq!(state["last_run"]["missed_windows"], 9);

    // The 12:05 window overlaps the 12:00 one: the same attack is suppressed, not duplicated.
    let r = a.run_rule_due(&rule, t("2026-05-01T12:05:00Z")).await;
    assert_eq!((r.alerts_written, r.suppressed), (0, 1), "{r:?}");

    // Two replicas race for the same due windows of several rules: each window runs once.
    let rules: Vec<Rule> = [
        "vigil-brute-force-user",
        "vigil-mfa-push-fatigue",
        "vigil-failures-then-success",
        "vigil-new-country",
    ]
    .iter()
    .map(|id| rule_with(id, |r| r.id = format!("{}-race", r.id)))
    .collect();
    let a = Engine::new(es.clone(), rules.clone(), ix.settings("replica-a"));
    let b = Engine::new(es.clone(), rules.clone(), ix.settings("replica-b"));
    let now = t("2026-05-01T12:01:00Z");
    let (ra, rb) = tokio::join!(a.run_due(now), b.run_due(now));
    for (x, y) in ra.iter().zip(&rb) {
        // A first run: the 12 catch-up windows, run by exactly one of the two.
        assert_eq!(x.windows + y.windows, 12, "{x:?} {y:?}");
        assert!(x.windows == 0 || y.windows == 0, "{x:?} {y:?}");
        assert!(x.error.is_none() && y.error.is_none(), "{x:?} {y:?}");
    }
    let race_alerts = search(
        &es,
        &ix.alerts(),
        json!({"term": {"rule.id": "vigil-brute-force-user-race"}}),
    )
    .await;
    assert_eq!(race_alerts.len(), 1);
    // A live lease held by another replica blocks; an expired one is taken over.
    let id = "vigil-mfa-push-fatigue-race";
    let mut st = ix.rule_state(&es, id).await.expect("rule state");
    st["checkpoint"] = json!("2026-05-01T11:00:00.000Z");
    st["lease"] = json!({"owner": "replica-x", "until": "2026-05-01T12:30:00.000Z"});
    es.call(
        "state",
        Method::Put,
        &format!("/{}/_doc/{id}", ix.state()),
        &[("refresh", "true".into())],
        Some(&st),
    )
    .await
    .unwrap();
    let r = a.run_rule_due(&rules[1], t("2026-05-01T12:10:00Z")).await;
    assert_eq!(r.skipped.as_deref(), Some("claimed by another replica"));
    let r = a.run_rule_due(&rules[1], t("2026-05-01T12:31:00Z")).await;
    assert!(
        r.skipped.is_none() && r.windows == 12 && r.missed_windows == 6,
        "{r:?}"
    );
    ix.delete(&es).await;
}

/// A rule's first run (no checkpoint) covers the configured catch-up span, so an attack indexed
/// before the rule was first scheduled still alerts; the risk job run right after scores it
/// although the alert is later than the risk job's grid point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_covers_the_catch_up_span_and_risk_sees_its_alerts() {
    let es = es().await;
    let ix = Indices::create(&es, "first-run").await;
    let rule = rule_with("vigil-brute-force-user", |_| {});
    // The attack's 12 failures fall between 11:54 and 11:58; only the 12:00 window holds ten.
    index_events(&es, &ix.events(), &rule.examples[0].events).await;
    let mut settings = ix.settings("replica-a");
    settings.max_catchup = 6;
    settings.risk_interval = TimeDelta::days(1);
    let engine = Engine::new(es.clone(), vec![rule.clone()], settings);
    let now = t("2026-05-01T12:20:30Z");
    let r = engine.run_rule_due(&rule, now).await;
    assert_eq!(
        (
            r.windows,
            r.missed_windows,
            r.alerts_written,
            r.error.clone()
        ),
        (6, 0, 1, None),
        "{r:?}"
    );
    let alerts = search(&es, &ix.alerts(), json!({"match_all": {}})).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["_source"]["user"]["name"], "alice");
    // Found by the 12:00 window, five windows before the latest.
    assert_eq!(
        alerts[0]["_source"]["vigil"]["alert"]["window"]["end"],
        "2026-05-01T12:00:00.000Z"
    );
    let state = ix.rule_state(&es, &rule.id).await.expect("rule state");
    assert_eq!(state["checkpoint"], "2026-05-01T12:20:00.000Z");
    // The risk job is on a daily grid (due at 00:00) but scores alerts up to now.
    let scored = vigil::rules::risk::run_due(&engine, now).await.unwrap();
    assert_eq!(scored, Some(1));
    let risk = search(&es, &ix.risk(), json!({"match_all": {}})).await;
    assert_eq!(risk.len(), 1);
    assert_eq!(risk[0]["_source"]["user"]["name"], "alice");
    ix.delete(&es).await;
}

/// A rule whose query fails records the error in its state, backs off to its next interval, and
/// the other rules still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rule_records_its_error_and_does_not_stop_the_others() {
    let es = es().await;
    let ix = Indices::create(&es, "failing").await;
    let good = rule_with("vigil-brute-force-user", |_| {});
    index_events(&es, &ix.events(), &good.examples[0].events).await;
    index_events(&es, &ix.events(), &[("m1".into(), json!({"@timestamp": "2026-05-01T11:58:00Z", "message": "free text", "event.outcome": "failure"}))]).await;
    // Grouping on a text field is refused by Elasticsearch at run time.
    let bad = rule_with("vigil-brute-force-user", |r| {
        r.id = "broken".into();
        r.entity = "message".into();
        r.filter = Default::default();
        if let vigil::rules::schema::Kind::Threshold(t) = &mut r.kind {
            t.group_by = vec!["message".into()];
            t.min_count = 1;
        }
    });
    let engine = Engine::new(
        es.clone(),
        vec![bad.clone(), good.clone()],
        ix.settings("r1"),
    );
    let now = t("2026-05-01T12:00:10Z");
    let reports = engine.run_due(now).await;
    assert!(reports[0].error.is_some(), "{:?}", reports[0]);
    assert!(
        reports[1].error.is_none() && reports[1].alerts_written == 1,
        "{:?}",
        reports[1]
    );
    let st = ix.rule_state(&es, "broken").await.expect("rule state");
    assert_eq!(st["status"], "error");
    assert_eq!(st["consecutive_failures"], 1);
    assert!(
        st["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 400"),
        "{st}"
    );
    // Backing off within the interval; retried (and failing again) on the next one.
    let r = engine.run_rule_due(&bad, t("2026-05-01T12:02:00Z")).await;
    assert_eq!(r.skipped.as_deref(), Some("backing off after an error"));
    let r = engine.run_rule_due(&bad, t("2026-05-01T12:05:10Z")).await;
    assert!(r.error.is_some());
    let st = ix.rule_state(&es, "broken").await.expect("rule state");
    assert_eq!(st["consecutive_failures"], 2);
    ix.delete(&es).await;
}

/// Risk documents computed from alerts in the index reproduce the reference numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_scores_from_alerts_in_the_index() {
    let es = es().await;
    let ix = Indices::create(&es, "risk").await;
    let mut alerts = Vec::new();
    for (i, r) in [70, 45, 21, 21, 21].iter().enumerate() {
        alerts.push((format!("a{i}"), json!({"@timestamp": format!("2026-04-2{i}T10:00:00Z"), "event": {"kind": "alert", "risk_score": r}, "rule": {"name": format!("rule {i}"), "id": format!("r{i}")}, "user": {"name": "alice"}})));
    }
    alerts.push(("b0".into(), json!({"@timestamp": "2026-04-30T10:00:00Z", "event": {"kind": "alert", "risk_score": 99}, "rule": {"name": "x", "id": "x"}, "user": {"name": "bob"}})));
    // Outside the 30-day range: ignored.
    alerts.push(("old".into(), json!({"@timestamp": "2026-03-01T10:00:00Z", "event": {"kind": "alert", "risk_score": 99}, "rule": {"name": "x", "id": "x"}, "user": {"name": "alice"}})));
    index_events(&es, &ix.alerts(), &alerts).await;
    let engine = Engine::new(es.clone(), vec![], ix.settings("r1"));
    let n = vigil::rules::risk::compute(&engine, t("2026-05-01T12:00:00Z"))
        .await
        .unwrap();
    assert_eq!(n, 2);
    let docs = search(&es, &ix.risk(), json!({"match_all": {}})).await;
    let alice = docs
        .iter()
        .find(|d| d["_source"]["user"]["name"] == "alice")
        .unwrap();
    let r = &alice["_source"]["user"]["risk"];
    assert_eq!(r["calculated_score"], 94.45);
    assert_eq!(r["calculated_score_norm"], 36.44);
    assert_eq!(r["calculated_level"], "Low");
    assert_eq!(r["category_1_count"], 5);
    assert_eq!(r["inputs"].as_array().unwrap().len(), 5);
    assert_eq!(r["inputs"][0]["risk_score"], 70);
    assert_eq!(r["inputs"][0]["contribution_score"], 27.0);
    assert_eq!(r["inputs"][0]["description"], "Alert from Rule: rule 0");
    let bob = docs
        .iter()
        .find(|d| d["_source"]["user"]["name"] == "bob")
        .unwrap();
    assert_eq!(
        bob["_source"]["user"]["risk"]["calculated_score_norm"],
        38.19
    );
    ix.delete(&es).await;
}

/// Stopping the scheduler (what SIGTERM does in `vigil serve`) while a rule run is in progress
/// lets that run finish: every catch-up window is checkpointed and the lease released. No
/// further rule starts after the signal, and `serve` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_current_rule_run_finish_and_starts_no_other() {
    let es = es().await;
    let ix = Indices::create(&es, "shutdown").await;
    let first = rule_with("vigil-brute-force-user", |_| {});
    let second = rule_with("vigil-mfa-push-fatigue", |_| {});
    let mut settings = ix.settings("replica-a");
    // A first run of 200 windows takes seconds: long enough to be caught in the middle.
    settings.max_catchup = 200;
    let engine = std::sync::Arc::new(Engine::new(
        es.clone(),
        vec![first.clone(), second.clone()],
        settings,
    ));
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(engine.serve(std::time::Duration::from_secs(3600), rx));
    // Wait until the first rule is mid-run: claimed and some, not all, windows checkpointed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mid_run = loop {
        if let Some(st) = ix.rule_state(&es, &first.id).await {
            if st["status"] == "running" && st["checkpoint"].is_string() {
                break st;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first rule never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    stop.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(120), task)
        .await
        .expect("serve returns after the current run")
        .unwrap();
    let done = ix.rule_state(&es, &first.id).await.unwrap();
    assert_eq!(done["status"], "ok", "{done}");
    assert_eq!(done["last_run"]["windows"], 200, "{done}");
    assert_eq!(done["lease"]["owner"], "", "{done}");
    assert!(
        done["checkpoint"].as_str() > mid_run["checkpoint"].as_str(),
        "windows after the signal ran: {mid_run} -> {done}"
    );
    assert_eq!(
        ix.rule_state(&es, &second.id).await,
        None,
        "a rule started after the signal"
    );
    ix.delete(&es).await;
}
