//! Detection-rule benchmark (manual, not CI): generates a day of authentication events for N
//! users with injected attacks (plus a thinner sign-in history before it), indexes them into
//! Elasticsearch, then runs every rule in `rules/` over every window of the day on its own
//! interval grid, and prints a Markdown report for docs/benchmarks.md: per-rule time per window,
//! the cost of a 30-day new_terms history, and alerts per 1,000 users per day on the benign
//! background.
//!
//!   tests/elasticsearch/start
//!   cargo run --release --example rules_bench -- --users 10000 [--per-user 500] [--history-days 30] [--skip-index]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use elasticsearch::http::Method;
use serde_json::{json, Value};
use vigil::rules::esapi::Es;
use vigil::rules::eval::Window;
use vigil::rules::scheduler::{Engine, EngineSettings};
use vigil::rules::{load_dir, RuleDefaults};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() as f64 / u64::MAX as f64) < p
    }
}

struct Place {
    cc: &'static str,
    city: &'static str,
    lat: f64,
    lon: f64,
    asn: u64,
}

const PLACES: &[Place] = &[
    Place {
        cc: "US",
        city: "Chicago",
        lat: 41.88,
        lon: -87.63,
        asn: 7922,
    },
    Place {
        cc: "US",
        city: "Seattle",
        lat: 47.61,
        lon: -122.33,
        asn: 7018,
    },
    Place {
        cc: "FR",
        city: "Paris",
        lat: 48.86,
        lon: 2.35,
        asn: 3215,
    },
    Place {
        cc: "DE",
        city: "Berlin",
        lat: 52.52,
        lon: 13.40,
        asn: 3320,
    },
    Place {
        cc: "GB",
        city: "London",
        lat: 51.51,
        lon: -0.13,
        asn: 2856,
    },
    Place {
        cc: "IN",
        city: "Bengaluru",
        lat: 12.97,
        lon: 77.59,
        asn: 9829,
    },
    Place {
        cc: "JP",
        city: "Tokyo",
        lat: 35.68,
        lon: 139.69,
        asn: 2516,
    },
];
const VPN: Place = Place {
    cc: "US",
    city: "Ashburn",
    lat: 39.04,
    lon: -77.49,
    asn: 14618,
};
const UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) Safari/17.4",
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4) Mobile Safari/17.4",
];

#[allow(clippy::too_many_arguments)] // a test-data generator: one argument per event field
fn ev(
    ts: DateTime<Utc>,
    user: &str,
    action: &str,
    outcome: &str,
    ip: &str,
    p: &Place,
    ua: &str,
    session: Option<&str>,
) -> Value {
    let mut v = json!({
        "@timestamp": vigil::rules::doc::fmt_time(ts),
        "event": {"kind": "event", "category": ["authentication"], "action": action, "outcome": outcome},
        "user": {"name": user},
        "source": {"ip": ip, "geo": {"country_iso_code": p.cc, "city_name": p.city, "location": {"lat": p.lat, "lon": p.lon}}, "as": {"number": p.asn}},
        "user_agent": {"original": ua},
    });
    if let Some(s) = session {
        v["vigil"] = json!({"session": {"id": s}, "source": {"anonymous": false}});
    }
    v
}

struct Gen {
    docs: Vec<Value>,
    attacked: BTreeSet<String>,
}

fn generate(
    users: usize,
    per_user: usize,
    day: DateTime<Utc>,
    history_days: i64,
    seed: u64,
) -> (Gen, usize) {
    let mut rng = Rng(seed);
    let mut g = Gen {
        docs: Vec::new(),
        attacked: BTreeSet::new(),
    };
    let mut history = 0;
    for u in 0..users {
        let name = format!("user{u:05}");
        let home = &PLACES[rng.below(PLACES.len() as u64) as usize];
        let vpn = rng.chance(0.1);
        let ua = UAS[rng.below(UAS.len() as u64) as usize];
        let ip = format!("10.{}.{}.{}", u / 65536 % 256, u / 256 % 256, u % 256);
        let pub_ip = format!("100.{}.{}.{}", 64 + u / 65536 % 64, u / 256 % 256, u % 256);
        // History: a couple of successful sign-ins a day from home (or the VPN).
        for d in 1..=history_days {
            for k in 0..2 {
                let ts = day - TimeDelta::days(d)
                    + TimeDelta::hours(8 + 4 * k)
                    + TimeDelta::minutes(rng.below(120) as i64);
                let place = if vpn && rng.chance(0.5) { &VPN } else { home };
                g.docs.push(ev(
                    ts, &name, "sign-in", "success", &pub_ip, place, ua, None,
                ));
                history += 1;
            }
        }
        // The day: sessions of app activity around a few sign-ins.
        let sessions = 2 + rng.below(3) as usize;
        let per_session = per_user / sessions;
        let traveller = rng.chance(0.03);
        for s in 0..sessions {
            let start = day
                + TimeDelta::hours(7 + (10 * s / sessions) as i64)
                + TimeDelta::minutes(rng.below(50) as i64);
            let place = if traveller && s == sessions - 1 {
                // Flew somewhere: 12+ hours later, a plausible speed.
                &PLACES
                    [(PLACES.iter().position(|p| p.city == home.city).unwrap() + 1) % PLACES.len()]
            } else if vpn && rng.chance(0.5) {
                &VPN
            } else {
                home
            };
            let sip = if std::ptr::eq(place, &VPN) {
                format!("198.51.100.{}", rng.below(250))
            } else {
                pub_ip.clone()
            };
            let sid = format!("{name}-s{s}");
            let mut t = start;
            for _ in 0..rng.below(3) {
                if rng.chance(0.3) {
                    g.docs
                        .push(ev(t, &name, "sign-in", "failure", &sip, place, ua, None));
                    t += TimeDelta::seconds(20);
                }
            }
            g.docs.push(ev(
                t,
                &name,
                "sign-in",
                "success",
                &sip,
                place,
                ua,
                Some(&sid),
            ));
            t += TimeDelta::seconds(10);
            if rng.chance(0.05) {
                g.docs.push(ev(
                    t,
                    &name,
                    "mfa-challenge",
                    "failure",
                    &sip,
                    place,
                    ua,
                    Some(&sid),
                ));
                t += TimeDelta::seconds(30);
            }
            g.docs.push(ev(
                t,
                &name,
                "mfa-challenge",
                "success",
                &sip,
                place,
                ua,
                Some(&sid),
            ));
            for _ in 0..per_session.saturating_sub(3) {
                t += TimeDelta::seconds(5 + rng.below(60) as i64);
                let mut a = ev(
                    t,
                    &name,
                    "app-access",
                    "success",
                    &sip,
                    place,
                    ua,
                    Some(&sid),
                );
                a["event"]["category"] = json!(["web"]);
                g.docs.push(a);
            }
        }
        let _ = ip;
    }
    // Injected attacks, one victim (or source) each, spread over the day.
    let victim = |i: usize| format!("user{:05}", (i * 7919) % users);
    let lagos = Place {
        cc: "NG",
        city: "Lagos",
        lat: 6.52,
        lon: 3.38,
        asn: 37148,
    };
    let at = |h: i64, m: i64| day + TimeDelta::hours(h) + TimeDelta::minutes(m);
    // Brute force then success (A1, A5).
    let v = victim(1);
    for k in 0..12 {
        g.docs.push(ev(
            at(3, 0) + TimeDelta::seconds(15 * k),
            &v,
            "sign-in",
            "failure",
            "203.0.113.7",
            &lagos,
            "curl/8.5",
            None,
        ));
    }
    g.docs.push(ev(
        at(3, 4),
        &v,
        "sign-in",
        "success",
        "203.0.113.7",
        &lagos,
        "curl/8.5",
        Some("atk-1"),
    ));
    g.attacked.insert(v);
    // Spray from one IP (A2) and stuffing from another (A4).
    for k in 0..40 {
        g.docs.push(ev(
            at(4, 0) + TimeDelta::seconds(45 * k),
            &victim(100 + (k as usize % 10)),
            "sign-in",
            "failure",
            "203.0.113.50",
            &lagos,
            "python-requests/2.31",
            None,
        ));
    }
    g.attacked.insert("203.0.113.50".into());
    for k in 0..30 {
        g.docs.push(ev(
            at(5, 0) + TimeDelta::seconds(10 * k),
            &victim(200 + k as usize),
            "sign-in",
            "failure",
            "203.0.113.99",
            &lagos,
            "python-requests/2.31",
            None,
        ));
    }
    g.attacked.insert("203.0.113.99".into());
    // Distributed brute force (A3).
    let v = victim(3);
    for k in 0..12 {
        g.docs.push(ev(
            at(6, 0) + TimeDelta::minutes(k),
            &v,
            "sign-in",
            "failure",
            &format!("203.0.113.{}", 120 + k),
            &lagos,
            "curl/8.5",
            None,
        ));
    }
    g.attacked.insert(v);
    // Impossible travel + new country + new UA + rare network (B1-B4) for one victim.
    let v = victim(4);
    g.docs.push(ev(
        at(13, 2),
        &v,
        "sign-in",
        "success",
        "203.0.113.80",
        &lagos,
        "python-requests/2.31",
        Some("atk-4"),
    ));
    g.attacked.insert(v);
    // MFA fatigue that worked (C1, C1b).
    let v = victim(5);
    for k in 0..7 {
        g.docs.push(ev(
            at(22, 0) + TimeDelta::seconds(40 * k),
            &v,
            "mfa-challenge",
            "failure",
            "203.0.113.5",
            &lagos,
            "curl/8.5",
            None,
        ));
    }
    g.docs.push(ev(
        at(22, 6),
        &v,
        "mfa-challenge",
        "success",
        "203.0.113.5",
        &lagos,
        "curl/8.5",
        None,
    ));
    g.attacked.insert(v);
    // Session replay from another country (D1).
    let v = victim(6);
    let mut e = ev(
        at(15, 0),
        &v,
        "app-access",
        "success",
        "203.0.113.140",
        &lagos,
        "python-requests/2.31",
        Some(&format!("{v}-s0")),
    );
    e["event"]["category"] = json!(["web"]);
    g.docs.push(e);
    g.attacked.insert(v);
    (g, history)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let users: usize = arg("--users").and_then(|v| v.parse().ok()).unwrap_or(1000);
    let per_user: usize = arg("--per-user")
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let history_days: i64 = arg("--history-days")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let skip_index = args.iter().any(|a| a == "--skip-index");
    let only_windows: Option<usize> = arg("--windows").and_then(|v| v.parse().ok());
    let url = arg("--url").unwrap_or_else(|| "http://127.0.0.1:9200".into());
    let cfg = vigil::config::EsConfig {
        url: url.parse().unwrap(),
        credentials: None,
        ca_file: None,
        client_identity: None,
        timeout: std::time::Duration::from_secs(300),
    };
    let es = Es::new(vigil::es::client(&cfg).unwrap());
    let prefix = "vigil-bench";
    let events = format!("{prefix}-logs-events");
    let day: DateTime<Utc> = "2026-05-01T00:00:00Z".parse().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();

    let (gen, history) = generate(users, per_user, day, history_days, 42);
    let total = gen.docs.len();
    eprintln!("generated {total} documents ({history} history sign-ins) for {users} users");
    if !skip_index {
        let _ = es
            .call("delete", Method::Delete, &format!("/{prefix}-*"), &[], None)
            .await;
        let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"}, "mappings": {
            "dynamic_templates": [
                {"locations": {"path_match": "*.location", "mapping": {"type": "geo_point"}}},
                {"ips": {"path_match": "*.ip", "mapping": {"type": "ip"}}},
                {"strings": {"match_mapping_type": "string", "mapping": {"type": "keyword"}}}],
            "properties": {"@timestamp": {"type": "date"}}}});
        es.call(
            "create",
            Method::Put,
            &format!("/{events}"),
            &[],
            Some(&body),
        )
        .await
        .unwrap();
        let started = Instant::now();
        for chunk in gen.docs.chunks(5000) {
            let mut b = String::new();
            for d in chunk {
                b.push_str("{\"index\":{}}\n");
                b.push_str(&d.to_string());
                b.push('\n');
            }
            let r = es
                .ndjson("bulk", &format!("/{events}/_bulk"), &[], b)
                .await
                .unwrap();
            assert_eq!(r["errors"], json!(false));
        }
        es.call(
            "settings",
            Method::Put,
            &format!("/{events}/_settings"),
            &[],
            Some(&json!({"index": {"refresh_interval": "1s"}})),
        )
        .await
        .unwrap();
        es.call(
            "refresh",
            Method::Post,
            &format!("/{events}/_refresh"),
            &[],
            None,
        )
        .await
        .unwrap();
        eprintln!(
            "indexed in {:.0} s ({:.0} docs/s)",
            started.elapsed().as_secs_f64(),
            total as f64 / started.elapsed().as_secs_f64()
        );
    }
    for (index, file) in [
        ("alerts", "vigil-alerts.json"),
        ("state", "vigil-state.json"),
        ("risk", "vigil-risk.json"),
    ] {
        let t: Value = serde_json::from_str(
            &std::fs::read_to_string(repo.join("mappings").join(file)).unwrap(),
        )
        .unwrap();
        let name = format!("{prefix}-{index}");
        let _ = es
            .call("delete", Method::Delete, &format!("/{name}"), &[], None)
            .await;
        es.call("create", Method::Put, &format!("/{name}"), &[], Some(&json!({"settings": {"number_of_replicas": 0}, "mappings": t["template"]["mappings"]}))).await.unwrap();
    }
    let rules = load_dir(&repo.join("rules"), &RuleDefaults::default()).unwrap();
    let mut settings = EngineSettings {
        alerts_index: format!("{prefix}-alerts"),
        state_index: format!("{prefix}-state"),
        risk_index: format!("{prefix}-risk"),
        replica: "bench".into(),
        ..Default::default()
    };
    settings.query.events_index = vec![events.clone()];

    println!("| rule | type | windows | median ms | p95 ms | max ms | alerts (attack) | alerts (benign) | benign per 1k users/day |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut all_benign = 0u64;
    let mut skipped: BTreeMap<String, u64> = BTreeMap::new();
    for rule in &rules {
        let engine = Engine::new(es.clone(), vec![rule.clone()], settings.clone());
        let mut times = Vec::new();
        let (mut attack, mut benign) = (0u64, 0u64);
        let steps = (TimeDelta::days(1).num_seconds() / rule.interval.num_seconds()) as usize;
        let steps = only_windows.map_or(steps, |n| n.min(steps));
        for k in 1..=steps {
            let end = day + rule.interval * (k as i32);
            let t0 = Instant::now();
            let r = engine
                .run_window(rule, Window::ending(rule, end), end)
                .await
                .unwrap();
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
            for f in &r.findings {
                if gen.attacked.contains(&f.entity)
                    || f.group.iter().any(|(_, v)| gen.attacked.contains(v))
                {
                    attack += 1;
                } else {
                    benign += 1;
                }
            }
            for (k, v) in r.stats.skipped {
                *skipped.entry(k).or_default() += v;
            }
        }
        times.sort_by(f64::total_cmp);
        let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
        all_benign += benign;
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {attack} | {benign} | {:.2} |",
            rule.id,
            rule.kind.name(),
            times.len(),
            pct(0.5),
            pct(0.95),
            pct(1.0),
            benign as f64 * 1000.0 / users as f64
        );
    }
    println!(
        "\nall rules, benign background: {all_benign} alerts = {:.2} per 1,000 users per day",
        all_benign as f64 * 1000.0 / users as f64
    );
    println!("events skipped by reason: {skipped:?}");
    // new_terms history cost: the new-country rule with 1, 7, 14 and 30 days of history.
    if let Some(base) = rules.iter().find(|r| r.id == "vigil-new-country") {
        println!("\n| new_terms history | median ms per 5-min window | p95 ms |\n|---|---|---|");
        for days in [1, 7, 14, 30] {
            let mut r = base.clone();
            if let vigil::rules::schema::Kind::NewTerms(n) = &mut r.kind {
                n.history = TimeDelta::days(days);
            }
            let engine = Engine::new(es.clone(), vec![r.clone()], settings.clone());
            let mut times = Vec::new();
            for k in (84..=228).step_by(12) {
                let end = day + TimeDelta::minutes(5 * k);
                let t0 = Instant::now();
                engine
                    .run_window(&r, Window::ending(&r, end), end)
                    .await
                    .unwrap();
                times.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            println!(
                "| {days} d | {:.0} | {:.0} |",
                times[times.len() / 2],
                times[(times.len() * 95 / 100).min(times.len() - 1)]
            );
        }
    }
}
