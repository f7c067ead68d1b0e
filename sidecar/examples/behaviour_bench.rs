//! The cost of behavioural state, in one run (`docs/benchmarks.md`, "Behavioural state"):
//!
//! 1. per document through `login-risk`: scoring alone (features + trees, behavioural values
//!    given) vs. the state's work (history lookups, 19 behavioural features, recording) plus the
//!    same scoring; prints the ratio;
//! 2. memory: the state filled with simulated users (3 events each through every stream of
//!    `login-risk`), its weighted size against its configured bound, and the process RSS.
//!
//! `cargo run --release --example behaviour_bench -- [docs] [users] [bound_bytes]`
//! (defaults: 200000 documents, 1000000 users, 268435456 bytes).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vigil::features::behaviour::BehaviourState;
use vigil::inference::{infer_with, ExplainPolicy};

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Three sign-ins of simulated user `u` (success, failure, success), one hour apart.
fn events(u: usize, t0: chrono::DateTime<chrono::Utc>) -> Vec<Value> {
    let countries = ["FR", "DE", "US", "GB", "NL", "ES", "IT", "JP"];
    (0..3)
        .map(|k| {
            json!({
                "@timestamp": (t0 + chrono::TimeDelta::seconds((u % 86_400) as i64 + 3600 * k)).to_rfc3339(),
                "event": {"category": ["authentication"], "action": "user_login",
                          "outcome": if k == 1 { "failure" } else { "success" }},
                "user": {"name": format!("user{u:07}.name")},
                "source": {"ip": format!("10.{}.{}.{}", u >> 16 & 255, u >> 8 & 255, u & 255),
                           "geo": {"country_iso_code": countries[u % countries.len()],
                                   "location": {"lat": 48.0 + (u % 10) as f64, "lon": 2.0}},
                           "as": {"number": 3320 + (u % 50)}},
                "user_agent": {"original": format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/{}.0", 100 + u % 30)}
            })
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n_docs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let n_users: usize = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let bound: u64 = args
        .get(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256 * 1024 * 1024);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let bundle = vigil::bundle::load(&repo.join("models/login-risk")).expect("login-risk loads");
    let features = bundle.extractor.behaviour_features();

    // 1. Per document. The sample (1,500 sign-ins of 534 users over 3.3 hours) is cycled; each
    // pass is shifted 4 hours later so that histories grow as in a live stream.
    let sample: Vec<Value> =
        std::fs::read_to_string(repo.join("models/samples/auth-events.ndjson"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let docs: Vec<Value> = (0..n_docs)
        .map(|i| {
            let mut d = sample[i % sample.len()].clone();
            let pass = (i / sample.len()) as i64;
            let t = chrono::DateTime::parse_from_rfc3339(d["@timestamp"].as_str().unwrap())
                .unwrap()
                + chrono::TimeDelta::hours(4 * pass);
            d["@timestamp"] = json!(t.to_utc().to_rfc3339());
            d
        })
        .collect();
    let now =
        chrono::DateTime::parse_from_rfc3339(docs.last().unwrap()["@timestamp"].as_str().unwrap())
            .unwrap()
            .to_utc()
            + chrono::TimeDelta::days(1);
    // Behavioural values computed once, for "scoring alone".
    let warmup = BehaviourState::new(1 << 32, Duration::from_secs(86400 * 30));
    let values: Vec<_> = docs
        .iter()
        .map(|d| warmup.process(&[d], &features, now).remove(0))
        .collect();
    drop(warmup);
    let mut scoring = Vec::new();
    let mut stateful = Vec::new();
    let mut state_only = Vec::new();
    for round in 0..5 {
        let t = Instant::now();
        let mut sum = 0.0;
        for (d, v) in docs.iter().zip(&values) {
            let r = infer_with(
                &bundle,
                &[d],
                Some(std::slice::from_ref(v)),
                ExplainPolicy::Never,
            );
            sum += r[0].as_ref().unwrap().score;
        }
        scoring.push(t.elapsed().as_secs_f64() / n_docs as f64);
        let state = BehaviourState::new(1 << 32, Duration::from_secs(86400 * 30));
        let t = Instant::now();
        for d in &docs {
            let v = state.process(&[d], &features, now);
            let r = infer_with(&bundle, &[d], Some(&v), ExplainPolicy::Never);
            sum -= r[0].as_ref().unwrap().score;
        }
        stateful.push(t.elapsed().as_secs_f64() / n_docs as f64);
        let state = BehaviourState::new(1 << 32, Duration::from_secs(86400 * 30));
        let t = Instant::now();
        for d in &docs {
            std::hint::black_box(state.process(&[d], &features, now));
        }
        state_only.push(t.elapsed().as_secs_f64() / n_docs as f64);
        assert!(
            sum.abs() < 1e-6 * n_docs as f64,
            "round {round}: same scores"
        );
    }
    let (a, b, c) = (median(scoring), median(stateful), median(state_only));
    println!("## per document, login-risk, {n_docs} documents, median of 5 rounds");
    println!("| path | µs/doc | docs/s | vs scoring alone |");
    println!("|---|---|---|---|");
    for (name, t) in [
        ("scoring alone (behavioural values given)", a),
        ("state (19 features, record) + scoring", b),
        ("state alone", c),
    ] {
        println!(
            "| {name} | {:.2} | {:.0} | {:.2}x |",
            t * 1e6,
            1.0 / t,
            t / a
        );
    }

    // 2. Memory for many users.
    let rss0 = rss_bytes();
    let state = BehaviourState::new(bound, Duration::from_secs(86400 * 30));
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let t = Instant::now();
    for chunk in (0..n_users).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<Value> = chunk.iter().flat_map(|&u| events(u, t0)).collect();
        let refs: Vec<&Value> = batch.iter().collect();
        state.process(&refs, &features, t0 + chrono::TimeDelta::days(2));
    }
    let took = t.elapsed();
    let weighted = state.weighted_bytes();
    let entries = state.entries();
    let rss = rss_bytes().saturating_sub(rss0);
    println!("\n## state for {n_users} users (3 events each), bound {bound} bytes");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| entries (entities: users and source IPs) | {entries} |");
    println!(
        "| weighted size (moka) | {weighted} ({:.1}% of the bound) |",
        100.0 * weighted as f64 / bound as f64
    );
    println!("| within bound | {} |", weighted <= bound);
    println!("| RSS growth | {rss} |");
    println!(
        "| weighted bytes per entry | {:.0} |",
        weighted as f64 / entries.max(1) as f64
    );
    println!(
        "| RSS bytes per entry | {:.0} |",
        rss as f64 / entries.max(1) as f64
    );
    // Entries per user: the entities that recorded one of the user's events (the user.name and
    // its own source.ip, each holding its streams), measured on a state that evicts nothing.
    let per_user = {
        let probe = BehaviourState::new(1 << 32, Duration::from_secs(86400 * 30));
        let batch: Vec<Value> = (0..100).flat_map(|u| events(u, t0)).collect();
        let refs: Vec<&Value> = batch.iter().collect();
        probe.process(&refs, &features, t0 + chrono::TimeDelta::days(2));
        probe.entries() / 100
    };
    let held = entries / per_user;
    println!("| users held ({per_user} entries per user) | {held} |");
    println!(
        "| weighted bytes per user held | {:.0} |",
        weighted as f64 / held.max(1) as f64
    );
    println!(
        "| RSS bytes per user held | {:.0} |",
        rss as f64 / held.max(1) as f64
    );
    println!(
        "| fill time | {:.1} s ({:.0} events/s) |",
        took.as_secs_f64(),
        3.0 * n_users as f64 / took.as_secs_f64()
    );
}
