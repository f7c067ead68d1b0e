//! Checks of the rule engine's files that need no Elasticsearch: the rule catalog and its
//! examples, mappings covering every field Vigil writes, Kibana NDJSON structure, and the
//! normalisation pipelines staying in step with `vigil::normalize`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use vigil::rules::{load_dir, RuleDefaults};

use common::repo;

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn ndjson(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{} line {}: {e}", p.display(), i + 1))
        })
        .collect()
}

/// Every dotted field path a mapping's `properties` declares.
fn mapped_fields(mappings: &Value) -> BTreeSet<String> {
    fn walk(prefix: &str, props: &Value, out: &mut BTreeSet<String>) {
        for (k, v) in props.as_object().into_iter().flatten() {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            out.insert(path.clone());
            if let Some(inner) = v.get("properties") {
                walk(&path, inner, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk("", &mappings["properties"], &mut out);
    out
}

#[test]
fn the_catalog_is_valid_and_every_example_passes() {
    let rules =
        load_dir(&repo().join("rules"), &RuleDefaults::default()).unwrap_or_else(|e| panic!("{e}"));
    assert!(rules.len() >= 12, "{} rules", rules.len());
    let mut kinds = BTreeSet::new();
    let mut failures = Vec::new();
    for r in &rules {
        kinds.insert(r.kind.name());
        for o in vigil::rules::eval::check_examples(r) {
            if !o.passed() {
                failures.push(format!(
                    "{}: [{}] expected {:?} got {:?} {:?}",
                    o.rule, o.example, o.expected, o.got, o.reasons
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for k in vigil::rules::schema::KINDS {
        assert!(kinds.contains(k), "no rule of type {k} in the catalog");
    }
}

#[test]
fn an_invalid_rule_names_file_rule_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(repo().join("rules/a1-brute-force-user.toml")).unwrap();
    std::fs::write(dir.path().join("ok.toml"), &good).unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        good.replace("id = \"vigil-brute-force-user\"", "id = \"bad-one\"")
            .replace("min_count = 10", "min_count = 0")
            .replace("technique = \"T1110.001\"", "technique = \"T1110.009\""),
    )
    .unwrap();
    let err = load_dir(dir.path(), &RuleDefaults::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("bad.toml: rule [bad-one]: field [threshold.min_count]: must be at least 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "bad.toml: rule [bad-one]: field [threat[0]]: unknown ATT&CK technique [T1110.009]"
        ),
        "{text}"
    );
    // Startup refuses it too.
    let toml = format!(
        "[rules]\nenabled = true\ndir = \"{}\"\n",
        dir.path().display()
    );
    let config = vigil::config::Config::parse(
        &format!(
            "[models]\npaths = [\"{}\"]\nwatch = false\n[server]\nlisten = \"127.0.0.1:0\"\n{toml}",
            dir.path().display()
        ),
        "t",
        &Default::default(),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt
        .block_on(vigil::startup::Application::build(config))
        .err()
        .expect("startup must fail");
    assert!(
        format!("{e:#}").contains("bad.toml: rule [bad-one]: field [threshold.min_count]"),
        "{e:#}"
    );
}

#[test]
fn every_field_vigil_writes_is_mapped() {
    let alerts = mapped_fields(
        &read_json(&repo().join("mappings/vigil-alerts.json"))["template"]["mappings"],
    );
    for f in vigil::fields::alert::ALL {
        assert!(alerts.contains(*f), "mappings/vigil-alerts.json lacks {f}");
    }
    let risk =
        mapped_fields(&read_json(&repo().join("mappings/vigil-risk.json"))["template"]["mappings"]);
    for f in vigil::fields::risk::ALL {
        assert!(risk.contains(*f), "mappings/vigil-risk.json lacks {f}");
    }
    for file in ["vigil-alerts.json", "vigil-risk.json", "vigil-state.json"] {
        let t = read_json(&repo().join("mappings").join(file));
        assert!(t["_meta"]["version"].is_u64(), "{file}: _meta.version");
        assert!(
            t["index_patterns"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
            "{file}"
        );
    }
}

#[test]
fn kibana_detection_rules_are_well_formed_and_current() {
    let path = repo().join("kibana/detection-rules.ndjson");
    let rules = load_dir(&repo().join("rules"), &RuleDefaults::default()).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        vigil::rules::kibana::detection_rules_ndjson(&rules),
        "kibana/detection-rules.ndjson is stale: run `vigil rules kibana rules > kibana/detection-rules.ndjson`"
    );
    let ids: BTreeSet<String> = rules.iter().map(|r| r.id.clone()).collect();
    let mut seen = BTreeSet::new();
    for r in ndjson(&path) {
        let id = r["rule_id"].as_str().expect("rule_id").to_string();
        assert!(seen.insert(id.clone()), "duplicate rule_id {id}");
        for k in ["name", "description", "type", "query", "language"] {
            assert!(r[k].as_str().is_some_and(|s| !s.is_empty()), "{id}: {k}");
        }
        assert_eq!(r["type"], "query");
        assert!(
            r["risk_score"].as_u64().is_some_and(|x| x <= 100),
            "{id}: risk_score"
        );
        assert!(
            ["low", "medium", "high", "critical"].contains(&r["severity"].as_str().unwrap()),
            "{id}"
        );
        assert!(r["index"].as_array().is_some_and(|a| !a.is_empty()));
        assert_eq!(r["rule_name_override"], "rule.name");
        let sev: BTreeMap<&str, &str> = r["severity_mapping"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["value"].as_str().unwrap(),
                    m["severity"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            sev,
            BTreeMap::from([
                ("21", "low"),
                ("47", "medium"),
                ("73", "high"),
                ("99", "critical")
            ])
        );
        assert_eq!(r["risk_score_mapping"][0]["field"], "event.risk_score");
        for t in r["threat"].as_array().unwrap() {
            assert_eq!(t["framework"], "MITRE ATT&CK");
            assert!(t["tactic"]["id"].as_str().unwrap().starts_with("TA"));
            assert!(t["tactic"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("https://attack.mitre.org/"));
        }
        // The Vigil rule a promotion refers to exists.
        if let Some(vid) = id
            .strip_suffix("-promotion")
            .filter(|_| id != vigil::rules::kibana::CATCH_ALL_ID)
        {
            assert!(ids.contains(vid), "{id} promotes unknown rule {vid}");
            assert!(r["query"]
                .as_str()
                .unwrap()
                .contains(&format!("rule.id:\"{vid}\"")));
        }
    }
    assert_eq!(seen.len(), rules.len() + 1);
}

#[test]
fn kibana_saved_objects_resolve() {
    let objs = ndjson(&repo().join("kibana/saved-objects.ndjson"));
    let mut by_id = BTreeSet::new();
    for o in &objs {
        for k in [
            "type",
            "id",
            "attributes",
            "references",
            "coreMigrationVersion",
            "typeMigrationVersion",
        ] {
            assert!(!o[k].is_null(), "{} lacks {k}", o["id"]);
        }
        assert!(
            by_id.insert((
                o["type"].as_str().unwrap().to_string(),
                o["id"].as_str().unwrap().to_string()
            )),
            "duplicate {}",
            o["id"]
        );
    }
    let alert_fields = mapped_fields(
        &read_json(&repo().join("mappings/vigil-alerts.json"))["template"]["mappings"],
    );
    let risk_fields =
        mapped_fields(&read_json(&repo().join("mappings/vigil-risk.json"))["template"]["mappings"]);
    let mut dashboards = 0;
    for o in &objs {
        let refs: Vec<(String, String, String)> = o["references"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().into(),
                    r["type"].as_str().unwrap().into(),
                    r["id"].as_str().unwrap().into(),
                )
            })
            .collect();
        for (_, t, id) in &refs {
            assert!(
                by_id.contains(&(t.clone(), id.clone())),
                "{}: reference to missing {t} {id}",
                o["id"]
            );
        }
        let names: BTreeSet<&str> = refs.iter().map(|(n, _, _)| n.as_str()).collect();
        let attrs = &o["attributes"];
        if let Some(ss) = attrs
            .pointer("/kibanaSavedObjectMeta/searchSourceJSON")
            .and_then(Value::as_str)
        {
            let ss: Value = serde_json::from_str(ss).expect("searchSourceJSON parses");
            if let Some(r) = ss["indexRefName"].as_str() {
                assert!(
                    names.contains(r),
                    "{}: indexRefName {r} has no reference",
                    o["id"]
                );
            }
        }
        match o["type"].as_str().unwrap() {
            "dashboard" => {
                dashboards += 1;
                let panels: Value =
                    serde_json::from_str(attrs["panelsJSON"].as_str().unwrap()).unwrap();
                let panels = panels.as_array().unwrap();
                assert!(panels.len() >= 4);
                for p in panels {
                    let r = p["panelRefName"].as_str().unwrap();
                    assert!(names.contains(r), "panel {r} has no reference");
                }
                serde_json::from_str::<Value>(attrs["optionsJSON"].as_str().unwrap()).unwrap();
            }
            "visualization" => {
                let vis: Value = serde_json::from_str(attrs["visState"].as_str().unwrap()).unwrap();
                let dv = &refs[0].2;
                for agg in vis["aggs"].as_array().unwrap() {
                    if let Some(f) = agg.pointer("/params/field").and_then(Value::as_str) {
                        let ok = match dv.as_str() {
                            "vigil-alerts" => alert_fields.contains(f),
                            "vigil-risk" => risk_fields.contains(f),
                            _ => f == "@timestamp" || f.starts_with(vigil::fields::ML_INFERENCE),
                        };
                        assert!(ok, "{}: field {f} is not mapped for {dv}", o["id"]);
                    }
                }
            }
            "index-pattern" => assert!(attrs["title"].as_str().is_some()),
            other => panic!("unexpected type {other}"),
        }
    }
    assert_eq!(dashboards, 1);
}

/// Fields a Rust-normalised fixture gains, and the fields a pipeline can write.
fn written_by_rust(mut doc: Value) -> BTreeSet<String> {
    let before = doc.clone();
    vigil::normalize::normalize(&mut doc).unwrap();
    let mut out = BTreeSet::new();
    fn leaves(prefix: &str, v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) if !(m.contains_key("lat") && m.contains_key("lon")) => {
                for (k, x) in m {
                    leaves(
                        &if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        },
                        x,
                        out,
                    );
                }
            }
            _ => {
                out.insert(prefix.to_string());
            }
        }
    }
    let (mut a, mut b) = (BTreeSet::new(), BTreeSet::new());
    leaves("", &doc, &mut a);
    leaves("", &before, &mut b);
    out.extend(a.difference(&b).cloned());
    out
}

fn written_by_pipeline(p: &Value) -> String {
    // Field names appear as `field`/`target_field` values or inside scripts as ctx paths.
    p.to_string()
}

#[test]
fn pipelines_write_what_the_rust_normaliser_writes() {
    let fixtures = [
        (
            "normalize-okta.json",
            serde_json::json!({"uuid": "e", "published": "2026-05-01T11:58:00Z", "eventType": "user.session.start",
            "actor": {"id": "1", "alternateId": "a@corp.example"}, "outcome": {"result": "SUCCESS", "reason": "x"},
            "client": {"ipAddress": "192.0.2.1", "userAgent": {"rawUserAgent": "ua"}, "geographicalContext": {"country": "France", "city": "Paris", "geolocation": {"lat": 1.0, "lon": 2.0}}},
            "authenticationContext": {"externalSessionId": "s"}, "securityContext": {"isProxy": false, "asNumber": 1, "asOrg": "o"}}),
        ),
        (
            "normalize-entra.json",
            serde_json::json!({"category": "SignInLogs", "time": "2026-05-01T11:58:00Z", "properties": {"id": "i", "userId": "u",
            "userPrincipalName": "a@corp.example", "createdDateTime": "2026-05-01T11:58:00Z", "ipAddress": "192.0.2.1",
            "status": {"errorCode": 50126, "failureReason": "bad"}, "location": {"city": "Paris", "countryOrRegion": "FR", "geoCoordinates": {"latitude": 1.0, "longitude": 2.0}},
            "autonomousSystemNumber": 1, "userAgent": "ua", "sessionId": "s", "riskEventTypes_v2": []}}),
        ),
        (
            "normalize-windows.json",
            serde_json::json!({"@timestamp": "2026-05-01T11:58:00Z", "winlog": {"event_id": "4625", "event_data": {
            "TargetUserName": "a", "TargetDomainName": "D", "IpAddress": "192.0.2.1", "IpPort": "5", "LogonType": "3", "Status": "0xC000006A"}}}),
        ),
        (
            "normalize-sshd.json",
            serde_json::json!({"@timestamp": "2026-05-01T11:58:00Z", "process": {"name": "sshd"},
            "message": "Failed password for a from 192.0.2.1 port 22 ssh2"}),
        ),
    ];
    for (file, fixture) in fixtures {
        let p = read_json(&repo().join("pipelines").join(file));
        assert!(
            p["processors"].as_array().is_some_and(|a| !a.is_empty()),
            "{file}"
        );
        assert_eq!(p["_meta"]["managed_by"], "vigil");
        let text = written_by_pipeline(&p);
        for field in written_by_rust(fixture) {
            let last = field.rsplit('.').next().unwrap();
            let as_field = format!("\"{field}\"");
            let in_script = format!(".{last}");
            assert!(
                text.contains(&as_field)
                    || text.contains(&in_script)
                    || text.contains(&format!("'{last}'")),
                "{file} does not write {field}, which vigil::normalize writes"
            );
        }
    }
    // The Okta pipeline's country table is the Rust one.
    let okta = read_json(&repo().join("pipelines/normalize-okta.json"));
    let table = okta["processors"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|p| p.pointer("/script/params/countries"))
        .expect("countries table");
    for (name, iso) in vigil::normalize::COUNTRIES {
        assert_eq!(table[*name], *iso, "country {name}");
    }
    assert_eq!(
        table.as_object().unwrap().len(),
        vigil::normalize::COUNTRIES
            .iter()
            .map(|(n, _)| n)
            .collect::<BTreeSet<_>>()
            .len()
    );
    // The dispatcher routes to every source pipeline.
    let dispatch = read_json(&repo().join("pipelines/normalize.json")).to_string();
    for name in [
        "normalize-okta",
        "normalize-entra",
        "normalize-windows",
        "normalize-sshd",
    ] {
        assert!(
            dispatch.contains(&format!("\"{name}\"")),
            "normalize.json does not route to {name}"
        );
    }
}
