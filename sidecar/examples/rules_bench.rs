//! Detection-rule benchmark (manual, not CI): generates a day of authentication events for N
//! users (benign behaviour plus one injected attack per rule) and a thinner sign-in history
//! before it, bulk-indexes them into Elasticsearch as it generates, then runs every rule in
//! `rules/` over every window of the day on its own interval grid and prints a Markdown report
//! for docs/benchmarks.md: per-rule time per window, alerts per 1,000 users per day on the benign
//! background, which rules fired on their injected attack, and the cost of the new_terms history.
//!
//!   VIGIL_ES_JIT=full VIGIL_ES_HEAP=2g tests/elasticsearch/start --port 9280
//!   cargo run --example rules_bench -- --url http://127.0.0.1:9280 --users 10000 \
//!       [--per-user 500] [--history-days 30] [--skip-index] [--windows N] [--seed 42]
//!
//! Benign behaviour (rates are per user per day, see `Rates`): every user has a home city, a
//! residential network and an office whose few NAT addresses hundreds of colleagues share; some
//! sign in through the corporate VPN egress (Zscaler, AS53813, 198.51.100.0/24) and some
//! switch it on mid-session; users mistype their password or deny an MFA prompt now and then;
//! browsers update; a few users get a new device; business travellers fly at airliner speed
//! (distance / 700 km/h + 2 h at airports) and mostly sign in through the VPN on arrival; a few
//! users come back from a long leave; administrators grant roles; users re-enrol MFA factors.

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

/// A city where the organisation has an office (and employees living around it).
struct Place {
    cc: &'static str,
    city: &'static str,
    lat: f64,
    lon: f64,
    /// The office's business ISP (its NAT pool is `100.<64+i>.0.0/28`).
    office_asn: u64,
    /// The residential ISP most employees there use at home.
    home_asn: u64,
}

const PLACES: &[Place] = &[
    place("US", "Chicago", 41.88, -87.63, 3356, 7922),
    place("US", "Seattle", 47.61, -122.33, 209, 7018),
    place("FR", "Paris", 48.86, 2.35, 5511, 3215),
    place("DE", "Berlin", 52.52, 13.40, 3209, 3320),
    place("GB", "London", 51.51, -0.13, 5400, 2856),
    place("IN", "Bengaluru", 12.97, 77.59, 4755, 9829),
    place("JP", "Tokyo", 35.68, 139.69, 2914, 2516),
];

const fn place(
    cc: &'static str,
    city: &'static str,
    lat: f64,
    lon: f64,
    office_asn: u64,
    home_asn: u64,
) -> Place {
    Place {
        cc,
        city,
        lat,
        lon,
        office_asn,
        home_asn,
    }
}

/// The corporate VPN / secure web gateway egress, allowlisted by the location rules.
const VPN: Place = place("US", "Ashburn", 39.04, -77.49, 53813, 53813);
/// Office NAT pool size per office.
const NAT_POOL: u64 = 16;
const LAGOS: Place = place("NG", "Lagos", 6.52, 3.38, 37148, 37148);
const TOR_EXIT: Place = place("NL", "Amsterdam", 52.37, 4.90, 60729, 60729);

const BROWSERS: &[(&str, u32)] = &[
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/{v}.0 Safari/537.36",
        124,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/{v}.4 Safari/605.1.15",
        17,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
        125,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Version/{v}.4 Mobile Safari/604.1",
        17,
    ),
];

fn ua(browser: usize, bump: u32) -> String {
    let (t, v) = BROWSERS[browser % BROWSERS.len()];
    t.replace("{v}", &(v + bump).to_string())
}

fn distance_km(a: &Place, b: &Place) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.lat.to_radians(),
        a.lon.to_radians(),
        b.lat.to_radians(),
        b.lon.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

/// Where a sign-in comes from.
#[derive(Clone)]
struct Net<'a> {
    ip: String,
    place: &'a Place,
    asn: u64,
    anonymous: bool,
}

/// One event. `session` adds `vigil.session.id`.
fn ev(
    ts: DateTime<Utc>,
    user: &str,
    action: &str,
    outcome: &str,
    net: &Net,
    ua: &str,
    session: Option<&str>,
) -> Value {
    let p = net.place;
    let category = if action == "app-access" {
        "web"
    } else if action.starts_with("sign-in") || action == "mfa-challenge" {
        "authentication"
    } else {
        "iam"
    };
    let mut v = json!({
        "@timestamp": vigil::rules::doc::fmt_time(ts),
        "event": {"kind": "event", "category": [category], "action": action, "outcome": outcome},
        "user": {"name": user},
        "source": {"ip": net.ip, "geo": {"country_iso_code": p.cc, "city_name": p.city, "location": {"lat": p.lat, "lon": p.lon}}, "as": {"number": net.asn}},
        "user_agent": {"original": ua},
        "vigil": {"source": {"anonymous": net.anonymous}},
    });
    if let Some(s) = session {
        v["vigil"]["session"] = json!({"id": s});
    }
    v
}

/// Per-user-per-day probabilities of the benign behaviours.
struct Rates {
    vpn_user: f64,
    vpn_switch_mid_session: f64,
    office_session: f64,
    typo_per_sign_in: f64,
    mfa_deny_per_sign_in: f64,
    browser_update: f64,
    new_device: f64,
    travel: f64,
    travel_via_vpn: f64,
    back_from_leave: f64,
    role_granted: f64,
    mfa_reenrol: f64,
}

const RATES: Rates = Rates {
    vpn_user: 0.10,
    vpn_switch_mid_session: 0.05,
    office_session: 0.6,
    typo_per_sign_in: 0.03,
    mfa_deny_per_sign_in: 0.02,
    browser_update: 0.03,
    new_device: 0.001,
    travel: 0.005,
    travel_via_vpn: 0.7,
    back_from_leave: 0.0002,
    role_granted: 0.002,
    mfa_reenrol: 0.0005,
};

/// The injected attacks: who they are about and which rule must fire on them.
struct Plan {
    users: usize,
    /// rule id → the entity (user or source address) the rule must alert on.
    expect: BTreeMap<&'static str, String>,
    /// Every entity an attack touched (alerts about them are not counted as benign).
    attacked: BTreeSet<String>,
}

impl Plan {
    fn victim(users: usize, i: usize) -> String {
        format!("user{:05}", (i * 7919) % users)
    }
    fn new(users: usize) -> Plan {
        let v = |i| Plan::victim(users, i);
        let mut expect = BTreeMap::new();
        expect.insert("vigil-brute-force-user", v(1));
        expect.insert("vigil-failures-then-success", v(1));
        expect.insert("vigil-password-spray-single-source", "203.0.113.50".into());
        expect.insert("vigil-distributed-brute-force", v(3));
        expect.insert("vigil-credential-stuffing", "203.0.113.99".into());
        expect.insert("vigil-impossible-travel", v(4));
        expect.insert("vigil-new-country", v(4));
        expect.insert("vigil-new-user-agent", v(4));
        expect.insert("vigil-rare-network", v(4));
        expect.insert("vigil-privilege-after-risky-signin", v(4));
        expect.insert("vigil-mfa-push-fatigue", v(5));
        expect.insert("vigil-mfa-fatigue-then-approval", v(5));
        expect.insert("vigil-session-multiple-countries", v(6));
        expect.insert("vigil-anonymizing-proxy", v(7));
        expect.insert("vigil-dormant-account", v(8));
        expect.insert("vigil-mfa-factor-swap", v(9));
        expect.insert("vigil-mailbox-forwarding-external", v(10));
        expect.insert("vigil-login-risk-high", v(11));
        let mut attacked: BTreeSet<String> = expect.values().cloned().collect();
        attacked.extend((100..110).map(v)); // sprayed
        attacked.extend((200..230).map(v)); // stuffed
        Plan {
            users,
            expect,
            attacked,
        }
    }
    fn is_victim(&self, name: &str) -> bool {
        self.attacked.contains(name)
    }
    fn v(&self, i: usize) -> String {
        Plan::victim(self.users, i)
    }
}

/// Counts of what the generator produced.
#[derive(Default, Debug)]
struct Counts {
    docs: u64,
    history: u64,
    travellers: u64,
    travellers_direct: u64,
    browser_updates: u64,
    new_devices: u64,
    back_from_leave: u64,
    typo_failures: u64,
    vpn_switches: u64,
}

/// The documents of user `u`: history and the day.
fn user_docs(
    u: usize,
    per_user: usize,
    day: DateTime<Utc>,
    history_days: i64,
    seed: u64,
    plan: &Plan,
    c: &mut Counts,
) -> Vec<Value> {
    let r = &RATES;
    let mut rng = Rng(seed ^ (u as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut out = Vec::new();
    let name = format!("user{u:05}");
    let victim = plan.is_victim(&name);
    let hi = rng.below(PLACES.len() as u64) as usize;
    let home = &PLACES[hi];
    let vpn_user = rng.chance(r.vpn_user);
    let browser = rng.below(BROWSERS.len() as u64) as usize;
    let usual_ua = ua(browser, 0);
    let home_ip = format!("100.{}.{}.{}", 100 + hi, u / 256 % 256, u % 256);
    let office = |rng: &mut Rng| Net {
        ip: format!("100.{}.0.{}", 64 + hi, rng.below(NAT_POOL)),
        place: home,
        asn: home.office_asn,
        anonymous: false,
    };
    let residential = Net {
        ip: home_ip.clone(),
        place: home,
        asn: home.home_asn,
        anonymous: false,
    };
    let vpn = |rng: &mut Rng| Net {
        ip: format!("198.51.100.{}", rng.below(250)),
        place: &VPN,
        asn: VPN.office_asn,
        anonymous: false,
    };
    let usual_net = |rng: &mut Rng| {
        if vpn_user && rng.chance(0.5) {
            vpn(rng)
        } else if rng.chance(r.office_session) {
            office(rng)
        } else {
            residential.clone()
        }
    };
    let dormant = name == plan.v(8);
    let back_from_leave = !victim && rng.chance(r.back_from_leave);
    // History: two successful sign-ins a day, with the user's usual client and networks (what
    // the new_terms and rare rules read; app activity is not needed for them). Users back from
    // a long leave (and the dormant-account victim) have none in the last 30 days but some
    // 35-60 days ago.
    let days: Vec<i64> = if dormant || back_from_leave {
        (35..=60).collect()
    } else {
        (1..=history_days).collect()
    };
    for d in days {
        for k in 0..2 {
            let ts = day - TimeDelta::days(d)
                + TimeDelta::hours(8 + 4 * k)
                + TimeDelta::minutes(rng.below(120) as i64);
            let net = usual_net(&mut rng);
            out.push(ev(ts, &name, "sign-in", "success", &net, &usual_ua, None));
            c.history += 1;
        }
    }
    if back_from_leave {
        c.back_from_leave += 1;
    }
    // The day's behaviours (victims behave plainly so their alerts are the attack's).
    let traveller = !victim && rng.chance(r.travel);
    let update = !victim && rng.chance(r.browser_update);
    let new_device = !victim && rng.chance(r.new_device);
    let sessions = 2 + rng.below(3) as usize;
    let per_session = per_user / sessions;
    // A traveller flies after the first session to another office city; arrival = departure +
    // distance / 700 km/h + 2 h at airports, the remaining sessions at the destination.
    let dest = &PLACES[(hi + 1 + rng.below(PLACES.len() as u64 - 1) as usize) % PLACES.len()];
    let flight = TimeDelta::minutes((distance_km(home, dest) / 700.0 * 60.0) as i64 + 120);
    let via_vpn = rng.chance(r.travel_via_vpn);
    if traveller {
        c.travellers += 1;
        if !via_vpn {
            c.travellers_direct += 1;
        }
    }
    let mut t = day + TimeDelta::hours(6) + TimeDelta::minutes(rng.below(120) as i64);
    let sessions = if dormant { 0 } else { sessions };
    let hotel_ip = format!("100.{}.200.{}", 100 + hi, u % 256);
    for s in 0..sessions {
        let abroad = traveller && s > 0;
        if abroad && s == 1 {
            t += flight;
        }
        if t > day + TimeDelta::hours(23) {
            break;
        }
        let net = if abroad {
            if via_vpn {
                vpn(&mut rng)
            } else {
                Net {
                    ip: hotel_ip.clone(),
                    place: dest,
                    asn: dest.home_asn,
                    anonymous: false,
                }
            }
        } else {
            usual_net(&mut rng)
        };
        let client = if new_device && s == sessions - 1 {
            c.new_devices += 1;
            ua(browser + 1, 0)
        } else if update && s > 0 {
            if s == 1 {
                c.browser_updates += 1;
            }
            ua(browser, 1)
        } else {
            usual_ua.clone()
        };
        let sid = format!("{name}-s{s}");
        if !victim && rng.chance(r.typo_per_sign_in) {
            for _ in 0..1 + rng.below(3) {
                out.push(ev(t, &name, "sign-in", "failure", &net, &client, None));
                c.typo_failures += 1;
                t += TimeDelta::seconds(15 + rng.below(30) as i64);
            }
        }
        out.push(ev(
            t,
            &name,
            "sign-in",
            "success",
            &net,
            &client,
            Some(&sid),
        ));
        t += TimeDelta::seconds(10);
        if !victim && rng.chance(r.mfa_deny_per_sign_in) {
            out.push(ev(
                t,
                &name,
                "mfa-challenge",
                "failure",
                &net,
                &client,
                Some(&sid),
            ));
            t += TimeDelta::seconds(30);
        }
        out.push(ev(
            t,
            &name,
            "mfa-challenge",
            "success",
            &net,
            &client,
            Some(&sid),
        ));
        let switch_at =
            if vpn_user && net.asn != VPN.office_asn && rng.chance(r.vpn_switch_mid_session) {
                c.vpn_switches += 1;
                per_session / 2
            } else {
                usize::MAX
            };
        let vpn_net = vpn(&mut rng);
        let apps = per_session.saturating_sub(3);
        for k in 0..apps {
            t += TimeDelta::seconds(5 + rng.below(60) as i64);
            let n = if k >= switch_at { &vpn_net } else { &net };
            out.push(ev(
                t,
                &name,
                "app-access",
                "success",
                n,
                &client,
                Some(&sid),
            ));
            // The session-replay victim: the stolen cookie used from Lagos mid-session.
            if s == 0 && k == apps / 2 && name == plan.v(6) {
                let atk = Net {
                    ip: "203.0.113.140".into(),
                    place: &LAGOS,
                    asn: LAGOS.office_asn,
                    anonymous: false,
                };
                for j in 0..5 {
                    out.push(ev(
                        t + TimeDelta::seconds(5 * j),
                        &name,
                        "app-access",
                        "success",
                        &atk,
                        "python-requests/2.31",
                        Some(&sid),
                    ));
                }
            }
        }
        // Between sessions: a break of 20-140 minutes.
        t += TimeDelta::minutes(20 + rng.below(120) as i64);
    }
    // Administration: a role granted, an MFA factor re-enrolled from the same address.
    let admin_t = day + TimeDelta::hours(9) + TimeDelta::minutes(rng.below(480) as i64);
    let net = residential.clone();
    if !victim && rng.chance(r.role_granted) {
        out.push(ev(
            admin_t,
            &name,
            "role-assigned",
            "success",
            &office(&mut rng),
            &usual_ua,
            None,
        ));
    }
    if !victim && rng.chance(r.mfa_reenrol) {
        out.push(ev(
            admin_t,
            &name,
            "mfa-factor-removed",
            "success",
            &net,
            &usual_ua,
            None,
        ));
        out.push(ev(
            admin_t + TimeDelta::minutes(3),
            &name,
            "mfa-factor-added",
            "success",
            &net,
            &usual_ua,
            None,
        ));
    }
    c.docs += out.len() as u64;
    out
}

/// The attacks that are not part of a victim's own day (see `user_docs` for the session replay).
fn attack_docs(plan: &Plan, day: DateTime<Utc>, c: &mut Counts) -> Vec<Value> {
    let mut out = Vec::new();
    let at = |h: i64, m: i64| day + TimeDelta::hours(h) + TimeDelta::minutes(m);
    let lagos = |ip: &str| Net {
        ip: ip.into(),
        place: &LAGOS,
        asn: LAGOS.office_asn,
        anonymous: false,
    };
    // A1 + A5: brute force, then the password works.
    let v = plan.v(1);
    for k in 0..12 {
        out.push(ev(
            at(3, 0) + TimeDelta::seconds(15 * k),
            &v,
            "sign-in",
            "failure",
            &lagos("203.0.113.7"),
            "curl/8.5",
            None,
        ));
    }
    out.push(ev(
        at(3, 4),
        &v,
        "sign-in",
        "success",
        &lagos("203.0.113.7"),
        "curl/8.5",
        Some("atk-1"),
    ));
    // A2: a spray from one address, 10 users x 4 attempts over 30 minutes.
    for k in 0..40 {
        out.push(ev(
            at(4, 0) + TimeDelta::seconds(45 * k),
            &plan.v(100 + (k as usize % 10)),
            "sign-in",
            "failure",
            &lagos("203.0.113.50"),
            "python-requests/2.31",
            None,
        ));
    }
    // A4: stuffing, 30 users once each in 5 minutes.
    for k in 0..30 {
        out.push(ev(
            at(5, 0) + TimeDelta::seconds(10 * k),
            &plan.v(200 + k as usize),
            "sign-in",
            "failure",
            &lagos("203.0.113.99"),
            "python-requests/2.31",
            None,
        ));
    }
    // A3: one account from 12 rotating addresses.
    let v = plan.v(3);
    for k in 0..12 {
        out.push(ev(
            at(6, 0) + TimeDelta::minutes(k),
            &v,
            "sign-in",
            "failure",
            &lagos(&format!("203.0.113.{}", 120 + k)),
            "curl/8.5",
            None,
        ));
    }
    // B1-B4: a sign-in from Lagos with a scripted client, then (E3) a role granted to the
    // account 40 minutes later.
    let v = plan.v(4);
    out.push(ev(
        at(13, 2),
        &v,
        "sign-in",
        "success",
        &lagos("203.0.113.80"),
        "python-requests/2.31",
        Some("atk-4"),
    ));
    out.push(ev(
        at(13, 42),
        &v,
        "role-assigned",
        "success",
        &lagos("203.0.113.80"),
        "python-requests/2.31",
        Some("atk-4"),
    ));
    // C1 + C1b: MFA bombing that ended in an approval.
    let v = plan.v(5);
    for k in 0..7 {
        out.push(ev(
            at(22, 0) + TimeDelta::seconds(40 * k),
            &v,
            "mfa-challenge",
            "failure",
            &lagos("203.0.113.5"),
            "curl/8.5",
            None,
        ));
    }
    out.push(ev(
        at(22, 6),
        &v,
        "mfa-challenge",
        "success",
        &lagos("203.0.113.5"),
        "curl/8.5",
        None,
    ));
    // B5: a sign-in through a TOR exit.
    let tor = Net {
        ip: "185.220.101.33".into(),
        place: &TOR_EXIT,
        asn: TOR_EXIT.office_asn,
        anonymous: true,
    };
    out.push(ev(
        at(16, 30),
        &plan.v(7),
        "sign-in",
        "success",
        &tor,
        "Mozilla/5.0 (Windows NT 10.0; rv:115.0) Gecko/20100101 Firefox/115.0",
        None,
    ));
    // B6: the dormant account (no sign-in for 35 days) signs in.
    out.push(ev(
        at(2, 17),
        &plan.v(8),
        "sign-in",
        "success",
        &lagos("203.0.113.88"),
        "curl/8.5",
        None,
    ));
    // C3: the victim's factor removed from their home, a new one added from elsewhere.
    let v = plan.v(9);
    out.push(ev(
        at(11, 0),
        &v,
        "mfa-factor-removed",
        "success",
        &lagos("203.0.113.90"),
        "Mozilla/5.0",
        None,
    ));
    out.push(ev(
        at(11, 20),
        &v,
        "mfa-factor-added",
        "success",
        &lagos("203.0.113.91"),
        "python-requests/2.31",
        None,
    ));
    // E1: forwarding to an outside address.
    let mut e = ev(
        at(18, 0),
        &plan.v(10),
        "inbox-rule-created",
        "success",
        &lagos("203.0.113.92"),
        "python-requests/2.31",
        None,
    );
    e["event"]["category"] = json!(["email"]);
    e["email"] = json!({"to": {"address": "drop@exfil.example"}});
    e["vigil"]["email"] = json!({"forward_external": true});
    out.push(e);
    // F1: a sign-in the ingest-time model scored 0.97.
    let mut e = ev(
        at(19, 0),
        &plan.v(11),
        "sign-in",
        "success",
        &lagos("203.0.113.93"),
        "curl/8.5",
        None,
    );
    e["ml"] = json!({"inference": {"login-risk": {"score": 0.97, "predicted_value": "attack",
        "feature_importance": [{"feature_name": "geo_distance_km", "importance": 2.1}]}}});
    out.push(e);
    c.docs += out.len() as u64;
    out
}

async fn bulk(es: Es, index: String, docs: Vec<Value>) {
    for chunk in docs.chunks(5000) {
        let mut b = String::with_capacity(chunk.len() * 700);
        for d in chunk {
            b.push_str("{\"index\":{}}\n");
            b.push_str(&d.to_string());
            b.push('\n');
        }
        let r = es
            .ndjson("bulk", &format!("/{index}/_bulk"), &[], b)
            .await
            .expect("bulk request");
        assert_eq!(r["errors"], json!(false), "bulk item errors");
    }
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
    let seed: u64 = arg("--seed").and_then(|v| v.parse().ok()).unwrap_or(42);
    let skip_index = args.iter().any(|a| a == "--skip-index");
    let only_windows: Option<usize> = arg("--windows").and_then(|v| v.parse().ok());
    let only_rule = arg("--rule");
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
    let plan = Plan::new(users);

    if !skip_index {
        let _ = es
            .call("delete", Method::Delete, &format!("/{prefix}-*"), &[], None)
            .await;
        let body = json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"}, "mappings": {
            "dynamic_templates": [
                {"locations": {"path_match": "*.location", "mapping": {"type": "geo_point"}}},
                {"ips": {"path_match": "*.ip", "mapping": {"type": "ip"}}},
                {"strings": {"match_mapping_type": "string", "mapping": {"type": "keyword"}}}],
            "properties": {"@timestamp": {"type": "date"}, "source": {"properties": {"as": {"properties": {"number": {"type": "long"}}}}}}}});
        es.call(
            "create",
            Method::Put,
            &format!("/{events}"),
            &[],
            Some(&body),
        )
        .await
        .unwrap();
        // Generate 100 users at a time and index them while the next batch is generated (at
        // most two bulks in flight), so memory stays bounded at any scale.
        let started = Instant::now();
        let mut counts = Counts::default();
        let mut in_flight: Option<tokio::task::JoinHandle<()>> = None;
        let mut u = 0;
        let mut batch = attack_docs(&plan, day, &mut counts);
        while u < users {
            for k in u..(u + 100).min(users) {
                batch.extend(user_docs(
                    k,
                    per_user,
                    day,
                    history_days,
                    seed,
                    &plan,
                    &mut counts,
                ));
            }
            u = (u + 100).min(users);
            if let Some(h) = in_flight.take() {
                h.await.unwrap();
            }
            in_flight = Some(tokio::spawn(bulk(
                es.clone(),
                events.clone(),
                std::mem::take(&mut batch),
            )));
            if u % 1000 == 0 {
                eprintln!(
                    "{u} users, {} documents, {:.0} s",
                    counts.docs,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        if let Some(h) = in_flight.take() {
            h.await.unwrap();
        }
        let bulk_s = started.elapsed().as_secs_f64();
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
        let total_s = started.elapsed().as_secs_f64();
        println!("generated {counts:?}");
        println!(
            "indexed {} documents ({} history sign-ins) for {users} users: bulk {bulk_s:.0} s, with refresh {total_s:.0} s ({:.0} documents/s)",
            counts.docs,
            counts.history,
            counts.docs as f64 / total_s
        );
    }
    // Alerts land in an index the events pattern also matches, as logs-vigil.alert-default
    // matches logs-*: rules with include_alerts read them, the others exclude event.kind: alert.
    for (index, file) in [
        ("logs-alerts", "vigil-alerts.json"),
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
        alerts_index: format!("{prefix}-logs-alerts"),
        state_index: format!("{prefix}-state"),
        risk_index: format!("{prefix}-risk"),
        replica: "bench".into(),
        ..Default::default()
    };
    settings.query.events_index = vec![format!("{prefix}-logs-*")];

    // Baseline, same run: a `_count` of one 5-minute window's events (the cheapest question a
    // rule can ask of the same index), over the day's 288 windows.
    let mut base = Vec::new();
    for k in 1..=288 {
        let end = day + TimeDelta::minutes(5 * k);
        let body = json!({"query": {"range": {"@timestamp": {
            "gte": (end - TimeDelta::minutes(10)).timestamp_millis(),
            "lt": end.timestamp_millis(), "format": "epoch_millis"}}}});
        let t0 = Instant::now();
        es.call(
            "count",
            Method::Post,
            &format!("/{events}/_count"),
            &[],
            Some(&body),
        )
        .await
        .unwrap();
        base.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    base.sort_by(f64::total_cmp);
    let base_median = base[base.len() / 2];
    println!(
        "\nbaseline: _count of a 10-minute window, median {base_median:.1} ms over 288 windows"
    );
    println!("\n| rule | type | windows | median ms | × baseline | p95 ms | max ms | alerts (attack) | alerts (benign) | benign per 1k users/day | fired on its attack |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut all_benign = 0u64;
    let mut missed = Vec::new();
    let mut skipped: BTreeMap<String, u64> = BTreeMap::new();
    let mut benign_examples: Vec<String> = Vec::new();
    for rule in rules
        .iter()
        .filter(|r| only_rule.as_ref().is_none_or(|o| &r.id == o))
    {
        let engine = Engine::new(es.clone(), vec![rule.clone()], settings.clone());
        let mut times = Vec::new();
        let (mut attack, mut benign) = (0u64, 0u64);
        let mut detected = false;
        let expected = plan.expect.get(rule.id.as_str());
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
                if expected == Some(&f.entity) {
                    detected = true;
                }
                if plan.attacked.contains(&f.entity)
                    || f.group.iter().any(|(_, v)| plan.attacked.contains(v))
                {
                    attack += 1;
                } else {
                    benign += 1;
                    if benign_examples.len() < 40 {
                        benign_examples
                            .push(format!("{}: {:?} {:?}", rule.id, f.group, f.evidence));
                    }
                }
            }
            for (k, v) in r.stats.skipped {
                *skipped.entry(k).or_default() += v;
            }
        }
        if expected.is_some() && !detected {
            missed.push(rule.id.clone());
        }
        times.sort_by(f64::total_cmp);
        let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
        all_benign += benign;
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.0} | {:.0} | {attack} | {benign} | {:.2} | {} |",
            rule.id,
            rule.kind.name(),
            times.len(),
            pct(0.5),
            pct(0.5) / base_median,
            pct(0.95),
            pct(1.0),
            benign as f64 * 1000.0 / users as f64,
            match expected {
                None => "no attack injected",
                Some(_) if detected => "yes",
                Some(_) => "NO",
            }
        );
    }
    println!(
        "\nall rules, benign background: {all_benign} alerts = {:.2} per 1,000 users per day",
        all_benign as f64 * 1000.0 / users as f64
    );
    println!(
        "rules that missed their injected attack: {}",
        if missed.is_empty() {
            "none".to_string()
        } else {
            missed.join(", ")
        }
    );
    println!("events skipped by reason: {skipped:?}");
    for b in &benign_examples {
        eprintln!("benign alert: {b}");
    }
    if only_rule.is_some() {
        return;
    }
    // new_terms history cost: the new-country rule with 1, 7, 14 and 30 days of history, over
    // 13 windows of the working day.
    if let Some(base) = rules.iter().find(|r| r.id == "vigil-new-country") {
        println!("\n| new_terms history | median ms per 5-min window | × 1 d | p95 ms |\n|---|---|---|---|");
        let mut one_day = f64::NAN;
        for days in [1, 7, 14, 30] {
            let mut r = base.clone();
            if let vigil::rules::schema::Kind::NewTerms(n) = &mut r.kind {
                n.history = TimeDelta::days(days);
            }
            let engine = Engine::new(es.clone(), vec![r.clone()], settings.clone());
            let mut times = Vec::new();
            // Warm-up: the first window after changing the history pays for loading it.
            engine
                .run_window(&r, Window::ending(&r, day + TimeDelta::hours(6)), day)
                .await
                .unwrap();
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
            let median = times[times.len() / 2];
            if days == 1 {
                one_day = median;
            }
            println!(
                "| {days} d | {median:.0} | {:.2} | {:.0} |",
                median / one_day,
                times[(times.len() * 95 / 100).min(times.len() - 1)]
            );
        }
    }
}
