//! One vocabulary of fields: Okta System Log, Entra ID sign-in logs, Windows Security 4624/4625
//! (Winlogbeat shape) and OpenSSH `sshd` syslog lines are mapped onto the ECS fields the rules
//! read. The same mapping exists as ingest pipelines (`pipelines/normalize-*.json`) for clusters
//! that have the ingest modules; this is the drop-in path's copy.
//!
//! Written fields: `@timestamp`, `event.{kind,category,type,action,outcome,code,reason,provider,id}`,
//! `user.{name,id,email,domain}`, `source.{ip,port}`, `source.geo.{country_iso_code,country_name,
//! city_name,location}`, `source.as.{number,organization.name}`, `user_agent.original`,
//! `vigil.session.id`, `vigil.source.anonymous`, `related.{user,ip}`, `winlog.logon.type`.
//!
//! Vigil's `event.action` vocabulary: `sign-in`, `mfa-challenge`, `mfa-factor-added`,
//! `mfa-factor-removed`, `password-reset`, `account-locked`, `role-assigned`. The vendor's own
//! event type is kept in `event.code`.

use serde_json::{json, Map, Value};

use crate::features::Fields;
use crate::rules::doc;

/// Which source a document was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Okta,
    Entra,
    Windows,
    Sshd,
    /// Not one of the known sources (or already normalised): left as is.
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{source_name} event: {message}")]
pub struct NormalizeError {
    pub source_name: &'static str,
    pub message: String,
}

fn err(source_name: &'static str, message: impl Into<String>) -> NormalizeError {
    NormalizeError {
        source_name,
        message: message.into(),
    }
}

/// Normalises `doc` in place. A recognised event whose essential fields are missing or malformed
/// is an error (the document is left unchanged); unknown documents pass through.
pub fn normalize(doc: &mut Value) -> Result<Source, NormalizeError> {
    let mut out = Map::new();
    let source = recognise(&*doc);
    match source {
        Source::Okta => okta(doc, &mut out)?,
        Source::Entra => entra(doc, &mut out)?,
        Source::Windows => windows(doc, &mut out)?,
        Source::Sshd => {
            if !sshd(doc, &mut out)? {
                return Ok(Source::Unchanged);
            }
        }
        Source::Unchanged => return Ok(Source::Unchanged),
    }
    let target = doc
        .as_object_mut()
        .expect("recognised documents are objects");
    for (k, v) in out {
        crate::enrich::write_at(target, &k, v).map_err(|e| err("normalised", e.to_string()))?;
    }
    Ok(source)
}

/// Every dotted path [`recognise`] reads: a document that holds none of them is not one of the
/// known sources.
pub const RECOGNITION_PATHS: &[&str] = &[
    "eventType",
    "actor",
    "category",
    "userPrincipalName",
    "createdDateTime",
    "status.errorCode",
    "winlog.event_id",
    "process.name",
    "syslog.appname",
    "appname",
    "program",
];

/// Which source `doc` looks like, reading only [`RECOGNITION_PATHS`] (`Unchanged`: none, or not
/// an object). [`normalize`] maps what this recognises; `_bulk` asks it of a scanned document to
/// know whether the document must be parsed whole to be normalised.
pub fn recognise<D: Fields + ?Sized>(doc: &D) -> Source {
    if doc.not_object().is_some() {
        return Source::Unchanged;
    }
    // Whether the field's first value (read as `s` reads it) is one of `texts`.
    let is = |path: &str, texts: &[&str]| {
        doc.leaf(path)
            .is_some_and(|v| v.as_str().is_some_and(|x| texts.contains(&x)))
    };
    let present = |path: &str| doc.leaf(path).is_some();
    if doc.has_key("eventType") && doc.has_key("actor") {
        Source::Okta
    } else if is("category", &["SignInLogs", "NonInteractiveUserSignInLogs"])
        || (present("userPrincipalName")
            && present("createdDateTime")
            && present("status.errorCode"))
    {
        Source::Entra
    } else if matches!(
        doc.leaf("winlog.event_id")
            .and_then(|v| doc::scalar_key(&v))
            .as_deref(),
        Some("4624" | "4625")
    ) {
        Source::Windows
    } else if ["process.name", "syslog.appname", "appname", "program"]
        .iter()
        .any(|f| is(f, &["sshd"]))
    {
        Source::Sshd
    } else {
        Source::Unchanged
    }
}

fn s<'a>(d: &'a Value, path: &str) -> Option<&'a str> {
    doc::first(d, path)
        .and_then(Value::as_str)
        .filter(|x| !x.is_empty())
}

fn set(out: &mut Map<String, Value>, field: &str, v: impl Into<Value>) {
    let v = v.into();
    if !v.is_null() {
        out.insert(field.to_string(), v);
    }
}

fn set_user(out: &mut Map<String, Value>, name: &str) {
    set(out, "user.name", name);
    if name.contains('@') {
        set(out, "user.email", name);
    }
    set(out, "related.user", json!([name]));
}

fn set_ip(out: &mut Map<String, Value>, ip: Option<&str>) {
    if let Some(ip) = ip
        .map(str::trim)
        .filter(|i| i.parse::<std::net::IpAddr>().is_ok())
    {
        set(out, "source.ip", ip);
        set(out, "related.ip", json!([ip]));
    }
}

// ----------------------------------------------------------------------------------------- Okta

/// Okta `eventType` → (Vigil action, ECS category, about the target user rather than the actor).
pub fn okta_action(event_type: &str) -> Option<(&'static str, &'static str, bool)> {
    Some(match event_type {
        "user.session.start" => ("sign-in", "authentication", false),
        "user.authentication.sso" => ("sign-in", "authentication", false),
        "user.authentication.auth_via_mfa" | "user.authentication.verify" => {
            ("mfa-challenge", "authentication", false)
        }
        "user.mfa.okta_verify.deny_push" => ("mfa-challenge", "authentication", false),
        "user.mfa.factor.activate" => ("mfa-factor-added", "iam", true),
        "user.mfa.factor.deactivate" | "user.mfa.factor.reset_all" => {
            ("mfa-factor-removed", "iam", true)
        }
        "user.account.reset_password" | "user.account.update_password" => {
            ("password-reset", "iam", true)
        }
        "user.account.lock" => ("account-locked", "iam", true),
        "user.account.privilege.grant" => ("role-assigned", "iam", true),
        _ => return None,
    })
}

fn okta(d: &Value, out: &mut Map<String, Value>) -> Result<(), NormalizeError> {
    let et = s(d, "eventType").ok_or_else(|| err("okta", "eventType is not a string"))?;
    let actor =
        s(d, "actor.alternateId").ok_or_else(|| err("okta", "actor.alternateId is missing"))?;
    let published = s(d, "published")
        .filter(|p| doc::parse_time(&json!(p)).is_some())
        .ok_or_else(|| err("okta", "published is missing or not a time"))?;
    set(out, "@timestamp", published);
    set(out, "event.kind", "event");
    set(out, "event.provider", "okta");
    set(out, "event.code", et);
    if let Some(id) = s(d, "uuid") {
        set(out, "event.id", id);
    }
    let result = s(d, "outcome.result").unwrap_or("");
    let mut outcome = match result {
        "SUCCESS" | "ALLOW" => "success",
        "FAILURE" | "DENY" => "failure",
        _ => "unknown",
    };
    let mut user = actor.to_string();
    if let Some((action, category, about_target)) = okta_action(et) {
        if et == "user.mfa.okta_verify.deny_push" {
            outcome = "failure";
        }
        set(out, "event.action", action);
        set(out, "event.category", json!([category]));
        if about_target {
            if let Some(t) = d.get("target").and_then(Value::as_array).and_then(|ts| {
                ts.iter()
                    .find(|t| t.get("type").and_then(Value::as_str) == Some("User"))
            }) {
                if let Some(name) = t.get("alternateId").and_then(Value::as_str) {
                    user = name.to_string();
                }
            }
        }
    }
    set(out, "event.outcome", outcome);
    if let Some(r) = s(d, "outcome.reason") {
        set(out, "event.reason", r);
    }
    set_user(out, &user);
    if user != actor {
        set(out, "related.user", json!([user, actor]));
    } else if let Some(id) = s(d, "actor.id") {
        set(out, "user.id", id);
    }
    set_ip(out, s(d, "client.ipAddress"));
    if let Some(country) = s(d, "client.geographicalContext.country") {
        set(out, "source.geo.country_name", country);
        if let Some(iso) = country_iso(country) {
            set(out, "source.geo.country_iso_code", iso);
        }
    }
    if let Some(city) = s(d, "client.geographicalContext.city") {
        set(out, "source.geo.city_name", city);
    }
    if let (Some(lat), Some(lon)) = (
        doc::first(d, "client.geographicalContext.geolocation.lat").and_then(Value::as_f64),
        doc::first(d, "client.geographicalContext.geolocation.lon").and_then(Value::as_f64),
    ) {
        set(out, "source.geo.location", json!({"lat": lat, "lon": lon}));
    }
    if let Some(ua) = s(d, "client.userAgent.rawUserAgent") {
        set(out, "user_agent.original", ua);
    }
    if let Some(sid) = s(d, "authenticationContext.externalSessionId") {
        set(out, "vigil.session.id", sid);
    }
    if let Some(p) = doc::first(d, "securityContext.isProxy").and_then(Value::as_bool) {
        set(out, "vigil.source.anonymous", p);
    }
    if let Some(n) = doc::first(d, "securityContext.asNumber").and_then(Value::as_u64) {
        set(out, "source.as.number", n);
    }
    if let Some(o) = s(d, "securityContext.asOrg") {
        set(out, "source.as.organization.name", o);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------- Entra

/// Entra sign-in error codes Vigil distinguishes.
pub fn entra_outcome(code: i64) -> (&'static str, &'static str) {
    match code {
        0 => ("sign-in", "success"),
        500121 => ("mfa-challenge", "failure"),
        50074 | 50076 => ("sign-in", "unknown"),
        50053 => ("account-locked", "failure"),
        _ => ("sign-in", "failure"),
    }
}

fn entra(d: &Value, out: &mut Map<String, Value>) -> Result<(), NormalizeError> {
    let p = d.get("properties").filter(|p| p.is_object()).unwrap_or(d);
    let upn =
        s(p, "userPrincipalName").ok_or_else(|| err("entra", "userPrincipalName is missing"))?;
    let ts = s(p, "createdDateTime")
        .or_else(|| s(d, "time"))
        .filter(|t| doc::parse_time(&json!(t)).is_some())
        .ok_or_else(|| err("entra", "createdDateTime/time is missing or not a time"))?;
    let code = doc::first(p, "status.errorCode")
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|x| x.parse().ok()))
        })
        .ok_or_else(|| err("entra", "status.errorCode is missing or not a number"))?;
    let (action, outcome) = entra_outcome(code);
    set(out, "@timestamp", ts);
    set(out, "event.kind", "event");
    set(out, "event.provider", "entra_id");
    set(out, "event.category", json!(["authentication"]));
    set(out, "event.action", action);
    set(out, "event.outcome", outcome);
    set(out, "event.code", code.to_string());
    if let Some(r) = s(p, "status.failureReason") {
        set(out, "event.reason", r);
    }
    if let Some(id) = s(p, "id") {
        set(out, "event.id", id);
    }
    set_user(out, upn);
    if let Some(id) = s(p, "userId") {
        set(out, "user.id", id);
    }
    if let Some((_, dom)) = upn.split_once('@') {
        set(out, "user.domain", dom);
    }
    set_ip(out, s(p, "ipAddress").or_else(|| s(d, "callerIpAddress")));
    if let Some(c) = s(p, "location.countryOrRegion") {
        set(out, "source.geo.country_iso_code", c);
    }
    if let Some(c) = s(p, "location.city") {
        set(out, "source.geo.city_name", c);
    }
    if let (Some(lat), Some(lon)) = (
        doc::first(p, "location.geoCoordinates.latitude").and_then(Value::as_f64),
        doc::first(p, "location.geoCoordinates.longitude").and_then(Value::as_f64),
    ) {
        set(out, "source.geo.location", json!({"lat": lat, "lon": lon}));
    }
    if let Some(n) = doc::first(p, "autonomousSystemNumber").and_then(Value::as_u64) {
        set(out, "source.as.number", n);
    }
    if let Some(ua) = s(p, "userAgent") {
        set(out, "user_agent.original", ua);
    }
    if let Some(sid) = s(p, "sessionId").or_else(|| s(p, "correlationId")) {
        set(out, "vigil.session.id", sid);
    }
    let risks: Vec<&str> = doc::values(p, "riskEventTypes_v2")
        .into_iter()
        .chain(doc::values(p, "riskEventTypes"))
        .filter_map(Value::as_str)
        .collect();
    if !risks.is_empty() || doc::first(p, "riskEventTypes_v2").is_some() {
        set(
            out,
            "vigil.source.anonymous",
            risks.contains(&"anonymizedIPAddress"),
        );
    }
    Ok(())
}

// -------------------------------------------------------------------------------------- Windows

/// Logon type numbers → Winlogbeat's names.
pub fn logon_type(n: &str) -> Option<&'static str> {
    Some(match n {
        "2" => "Interactive",
        "3" => "Network",
        "4" => "Batch",
        "5" => "Service",
        "7" => "Unlock",
        "8" => "NetworkCleartext",
        "9" => "NewCredentials",
        "10" => "RemoteInteractive",
        "11" => "CachedInteractive",
        _ => return None,
    })
}

fn windows(d: &Value, out: &mut Map<String, Value>) -> Result<(), NormalizeError> {
    let id = doc::first(d, "winlog.event_id")
        .and_then(doc::scalar_key)
        .unwrap_or_default();
    let user = s(d, "winlog.event_data.TargetUserName")
        .filter(|u| *u != "-")
        .ok_or_else(|| err("windows", "winlog.event_data.TargetUserName is missing"))?;
    if doc::first(d, "@timestamp")
        .and_then(doc::parse_time)
        .is_none()
    {
        return Err(err("windows", "@timestamp is missing or not a time"));
    }
    set(out, "event.kind", "event");
    set(out, "event.provider", "Microsoft-Windows-Security-Auditing");
    set(out, "event.category", json!(["authentication"]));
    set(out, "event.action", "sign-in");
    set(out, "event.code", id.clone());
    set(
        out,
        "event.outcome",
        if id == "4624" { "success" } else { "failure" },
    );
    set_user(out, user);
    if let Some(dom) = s(d, "winlog.event_data.TargetDomainName").filter(|x| *x != "-") {
        set(out, "user.domain", dom);
    }
    set_ip(
        out,
        s(d, "winlog.event_data.IpAddress").filter(|ip| !["-", "::1", "127.0.0.1"].contains(ip)),
    );
    if let Some(port) = s(d, "winlog.event_data.IpPort")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p > 0)
    {
        set(out, "source.port", port);
    }
    if let Some(t) = doc::first(d, "winlog.event_data.LogonType").and_then(doc::scalar_key) {
        if let Some(name) = logon_type(&t) {
            set(out, "winlog.logon.type", name);
        }
    }
    if let Some(status) = s(d, "winlog.event_data.SubStatus")
        .filter(|x| *x != "0x0")
        .or_else(|| s(d, "winlog.event_data.Status"))
    {
        let reason = match status.to_ascii_lowercase().as_str() {
            "0xc000006a" => "bad password",
            "0xc0000064" => "no such user",
            "0xc0000234" => "account locked",
            "0xc0000072" => "account disabled",
            "0xc000006f" => "outside logon hours",
            "0xc0000071" => "password expired",
            "0xc0000193" => "account expired",
            _ => status,
        };
        set(out, "event.reason", reason);
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------- sshd

/// What an sshd authentication line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshLogin {
    pub outcome: &'static str,
    pub user: String,
    pub ip: String,
    pub port: Option<u16>,
    /// `password`, `publickey`, ... (absent for "Invalid user" lines).
    pub method: Option<String>,
}

/// Parses an sshd authentication line.
pub fn parse_sshd(msg: &str) -> Option<SshLogin> {
    let msg = msg.trim();
    let (outcome, rest) = if let Some(r) = msg.strip_prefix("Accepted ") {
        ("success", r)
    } else if let Some(r) = msg.strip_prefix("Failed ") {
        ("failure", r)
    } else if let Some(r) = msg.strip_prefix("Invalid user ") {
        let (user, tail) = r.split_once(" from ")?;
        let mut it = tail.split_whitespace();
        let ip = it.next()?.to_string();
        let port = match (it.next(), it.next()) {
            (Some("port"), Some(p)) => p.parse().ok(),
            _ => None,
        };
        ip.parse::<std::net::IpAddr>().ok()?;
        return Some(SshLogin {
            outcome: "failure",
            user: user.to_string(),
            ip,
            port,
            method: None,
        });
    } else {
        return None;
    };
    // "<method> for [invalid user ]<user> from <ip> port <port> ssh2"
    let (method, rest) = rest.split_once(" for ")?;
    let rest = rest.strip_prefix("invalid user ").unwrap_or(rest);
    let (user, tail) = rest.rsplit_once(" from ")?;
    let mut it = tail.split_whitespace();
    let ip = it.next()?.to_string();
    ip.parse::<std::net::IpAddr>().ok()?;
    let port = match (it.next(), it.next()) {
        (Some("port"), Some(p)) => p.parse().ok(),
        _ => None,
    };
    Some(SshLogin {
        outcome,
        user: user.to_string(),
        ip,
        port,
        method: Some(method.to_string()),
    })
}

fn sshd(d: &Value, out: &mut Map<String, Value>) -> Result<bool, NormalizeError> {
    let Some(msg) = s(d, "message") else {
        return Ok(false);
    };
    let Some(SshLogin {
        outcome,
        user,
        ip,
        port,
        method,
    }) = parse_sshd(msg)
    else {
        return Ok(false);
    };
    if doc::first(d, "@timestamp")
        .and_then(doc::parse_time)
        .is_none()
    {
        return Err(err("sshd", "@timestamp is missing or not a time"));
    }
    set(out, "event.kind", "event");
    set(out, "event.provider", "sshd");
    set(out, "event.category", json!(["authentication"]));
    set(out, "event.action", "sign-in");
    set(out, "event.outcome", outcome);
    if let Some(m) = method {
        set(out, "event.reason", m);
    }
    set_user(out, &user);
    set_ip(out, Some(&ip));
    if let Some(p) = port {
        set(out, "source.port", p);
    }
    Ok(true)
}

// ------------------------------------------------------------------------------------ countries

/// Country names as identity providers spell them → ISO 3166-1 alpha-2. Also used by the Okta
/// pipeline (a test keeps both in step).
pub const COUNTRIES: &[(&str, &str)] = &[
    ("Argentina", "AR"),
    ("Australia", "AU"),
    ("Austria", "AT"),
    ("Bangladesh", "BD"),
    ("Belgium", "BE"),
    ("Brazil", "BR"),
    ("Bulgaria", "BG"),
    ("Canada", "CA"),
    ("Chile", "CL"),
    ("China", "CN"),
    ("Colombia", "CO"),
    ("Czechia", "CZ"),
    ("Czech Republic", "CZ"),
    ("Denmark", "DK"),
    ("Egypt", "EG"),
    ("Finland", "FI"),
    ("France", "FR"),
    ("Germany", "DE"),
    ("Greece", "GR"),
    ("Hong Kong", "HK"),
    ("Hungary", "HU"),
    ("India", "IN"),
    ("Indonesia", "ID"),
    ("Iran", "IR"),
    ("Ireland", "IE"),
    ("Israel", "IL"),
    ("Italy", "IT"),
    ("Japan", "JP"),
    ("Kenya", "KE"),
    ("Luxembourg", "LU"),
    ("Malaysia", "MY"),
    ("Mexico", "MX"),
    ("Morocco", "MA"),
    ("Netherlands", "NL"),
    ("The Netherlands", "NL"),
    ("New Zealand", "NZ"),
    ("Nigeria", "NG"),
    ("North Korea", "KP"),
    ("Norway", "NO"),
    ("Pakistan", "PK"),
    ("Peru", "PE"),
    ("Philippines", "PH"),
    ("Poland", "PL"),
    ("Portugal", "PT"),
    ("Romania", "RO"),
    ("Russia", "RU"),
    ("Russian Federation", "RU"),
    ("Saudi Arabia", "SA"),
    ("Singapore", "SG"),
    ("South Africa", "ZA"),
    ("South Korea", "KR"),
    ("Korea, Republic of", "KR"),
    ("Spain", "ES"),
    ("Sweden", "SE"),
    ("Switzerland", "CH"),
    ("Taiwan", "TW"),
    ("Thailand", "TH"),
    ("Turkey", "TR"),
    ("Türkiye", "TR"),
    ("Ukraine", "UA"),
    ("United Arab Emirates", "AE"),
    ("United Kingdom", "GB"),
    ("United States", "US"),
    ("United States of America", "US"),
    ("Vietnam", "VN"),
    ("Viet Nam", "VN"),
];

pub fn country_iso(name: &str) -> Option<&'static str> {
    COUNTRIES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(d: &'a Value, p: &str) -> Option<&'a Value> {
        doc::first(d, p)
    }

    #[test]
    fn okta_session_start() {
        let mut d = json!({
            "uuid": "e1", "published": "2026-05-01T11:58:00.000Z", "eventType": "user.session.start",
            "actor": {"id": "00u1", "alternateId": "alice@corp.example", "type": "User"},
            "client": {"ipAddress": "203.0.113.5", "userAgent": {"rawUserAgent": "Mozilla/5.0"},
                "geographicalContext": {"country": "France", "city": "Paris", "geolocation": {"lat": 48.85, "lon": 2.35}}},
            "outcome": {"result": "FAILURE", "reason": "INVALID_CREDENTIALS"},
            "authenticationContext": {"externalSessionId": "idx123"},
            "securityContext": {"isProxy": true, "asNumber": 9009, "asOrg": "M247"}
        });
        assert_eq!(normalize(&mut d).unwrap(), Source::Okta);
        assert_eq!(get(&d, "user.name"), Some(&json!("alice@corp.example")));
        assert_eq!(get(&d, "user.email"), Some(&json!("alice@corp.example")));
        assert_eq!(get(&d, "event.action"), Some(&json!("sign-in")));
        assert_eq!(get(&d, "event.outcome"), Some(&json!("failure")));
        assert_eq!(get(&d, "event.code"), Some(&json!("user.session.start")));
        assert_eq!(get(&d, "source.ip"), Some(&json!("203.0.113.5")));
        assert_eq!(get(&d, "source.geo.country_iso_code"), Some(&json!("FR")));
        assert_eq!(get(&d, "vigil.session.id"), Some(&json!("idx123")));
        assert_eq!(get(&d, "vigil.source.anonymous"), Some(&json!(true)));
        assert_eq!(get(&d, "source.as.number"), Some(&json!(9009)));
        assert_eq!(
            get(&d, "@timestamp"),
            Some(&json!("2026-05-01T11:58:00.000Z"))
        );
        // The original fields stay.
        assert_eq!(d["eventType"], "user.session.start");
        // Idempotent.
        let before = d.clone();
        normalize(&mut d).unwrap();
        assert_eq!(d, before);
    }

    #[test]
    fn okta_factor_reset_is_about_the_target_and_deny_push_is_a_failed_challenge() {
        let mut d = json!({
            "published": "2026-05-01T11:58:00Z", "eventType": "user.mfa.factor.reset_all",
            "actor": {"alternateId": "helpdesk@corp.example"},
            "target": [{"type": "User", "alternateId": "alice@corp.example"}],
            "outcome": {"result": "SUCCESS"}
        });
        normalize(&mut d).unwrap();
        assert_eq!(get(&d, "user.name"), Some(&json!("alice@corp.example")));
        assert_eq!(get(&d, "event.action"), Some(&json!("mfa-factor-removed")));
        assert_eq!(doc::values(&d, "related.user").len(), 2);
        let mut p = json!({"published": "2026-05-01T11:58:00Z", "eventType": "user.mfa.okta_verify.deny_push",
            "actor": {"alternateId": "alice@corp.example"}, "outcome": {"result": "SUCCESS"}});
        normalize(&mut p).unwrap();
        assert_eq!(get(&p, "event.action"), Some(&json!("mfa-challenge")));
        assert_eq!(get(&p, "event.outcome"), Some(&json!("failure")));
    }

    #[test]
    fn malformed_okta_is_an_error_and_leaves_the_document_alone() {
        let mut d = json!({"eventType": "user.session.start", "actor": {"id": 1}, "published": "2026-05-01T11:58:00Z"});
        let before = d.clone();
        let e = normalize(&mut d).unwrap_err();
        assert!(e.to_string().contains("actor.alternateId"), "{e}");
        assert_eq!(d, before);
        let mut bad_time =
            json!({"eventType": "x", "actor": {"alternateId": "a"}, "published": "yesterday"});
        assert!(normalize(&mut bad_time).is_err());
    }

    #[test]
    fn entra_diagnostic_and_graph_shapes() {
        let mut d = json!({
            "time": "2026-05-01T11:58:00Z", "category": "SignInLogs",
            "properties": {"userPrincipalName": "bob@corp.example", "ipAddress": "198.51.100.4",
                "createdDateTime": "2026-05-01T11:57:59Z", "status": {"errorCode": 50126, "failureReason": "Invalid username or password"},
                "location": {"city": "Lagos", "countryOrRegion": "NG", "geoCoordinates": {"latitude": 6.5, "longitude": 3.4}},
                "autonomousSystemNumber": 37148, "userAgent": "curl/8", "sessionId": "s-9", "riskEventTypes_v2": ["anonymizedIPAddress"]}
        });
        assert_eq!(normalize(&mut d).unwrap(), Source::Entra);
        assert_eq!(get(&d, "event.outcome"), Some(&json!("failure")));
        assert_eq!(get(&d, "event.code"), Some(&json!("50126")));
        assert_eq!(get(&d, "user.domain"), Some(&json!("corp.example")));
        assert_eq!(get(&d, "source.geo.country_iso_code"), Some(&json!("NG")));
        assert_eq!(
            get(&d, "source.geo.location"),
            Some(&json!({"lat": 6.5, "lon": 3.4}))
        );
        assert_eq!(get(&d, "vigil.source.anonymous"), Some(&json!(true)));
        assert_eq!(get(&d, "@timestamp"), Some(&json!("2026-05-01T11:57:59Z")));
        let mut g = json!({"userPrincipalName": "c@corp.example", "createdDateTime": "2026-05-01T11:57:59Z", "status": {"errorCode": 500121}});
        normalize(&mut g).unwrap();
        assert_eq!(get(&g, "event.action"), Some(&json!("mfa-challenge")));
        assert_eq!(get(&g, "event.outcome"), Some(&json!("failure")));
        let mut ok = json!({"userPrincipalName": "c@corp.example", "createdDateTime": "2026-05-01T11:57:59Z", "status": {"errorCode": 0}});
        normalize(&mut ok).unwrap();
        assert_eq!(get(&ok, "event.outcome"), Some(&json!("success")));
        let mut bad = json!({"category": "SignInLogs", "properties": {"userPrincipalName": "x", "createdDateTime": "2026-05-01T11:57:59Z", "status": {"errorCode": "n/a"}}});
        assert!(normalize(&mut bad).is_err());
    }

    #[test]
    fn windows_logons() {
        let mut d = json!({"@timestamp": "2026-05-01T11:58:00Z", "winlog": {"event_id": 4625, "event_data": {
            "TargetUserName": "alice", "TargetDomainName": "CORP", "IpAddress": "192.0.2.7", "IpPort": "51234",
            "LogonType": "3", "Status": "0xC000006D", "SubStatus": "0xC000006A"}}});
        assert_eq!(normalize(&mut d).unwrap(), Source::Windows);
        assert_eq!(get(&d, "event.outcome"), Some(&json!("failure")));
        assert_eq!(get(&d, "event.code"), Some(&json!("4625")));
        assert_eq!(get(&d, "user.name"), Some(&json!("alice")));
        assert_eq!(get(&d, "user.domain"), Some(&json!("CORP")));
        assert_eq!(get(&d, "winlog.logon.type"), Some(&json!("Network")));
        assert_eq!(get(&d, "event.reason"), Some(&json!("bad password")));
        assert_eq!(get(&d, "source.port"), Some(&json!(51234)));
        let mut local = json!({"@timestamp": "2026-05-01T11:58:00Z", "winlog": {"event_id": "4624", "event_data": {"TargetUserName": "bob", "IpAddress": "-", "LogonType": 2}}});
        normalize(&mut local).unwrap();
        assert_eq!(get(&local, "event.outcome"), Some(&json!("success")));
        assert!(get(&local, "source.ip").is_none());
        let mut anon = json!({"@timestamp": "2026-05-01T11:58:00Z", "winlog": {"event_id": "4625", "event_data": {"TargetUserName": "-"}}});
        assert!(normalize(&mut anon).is_err());
    }

    #[test]
    fn sshd_lines() {
        assert_eq!(
            parse_sshd("Failed password for invalid user admin from 203.0.113.5 port 4242 ssh2"),
            Some(SshLogin {
                outcome: "failure",
                user: "admin".into(),
                ip: "203.0.113.5".into(),
                port: Some(4242),
                method: Some("password".into())
            })
        );
        assert_eq!(
            parse_sshd("Accepted publickey for alice from 2001:db8::1 port 22 ssh2"),
            Some(SshLogin {
                outcome: "success",
                user: "alice".into(),
                ip: "2001:db8::1".into(),
                port: Some(22),
                method: Some("publickey".into())
            })
        );
        assert_eq!(
            parse_sshd("Invalid user bob from 198.51.100.3 port 50000")
                .unwrap()
                .user,
            "bob"
        );
        assert!(parse_sshd("Connection closed by 1.2.3.4").is_none());
        let mut d = json!({"@timestamp": "2026-05-01T11:58:00Z", "process": {"name": "sshd"}, "message": "Failed password for root from 203.0.113.5 port 4242 ssh2"});
        assert_eq!(normalize(&mut d).unwrap(), Source::Sshd);
        assert_eq!(get(&d, "user.name"), Some(&json!("root")));
        assert_eq!(get(&d, "event.action"), Some(&json!("sign-in")));
        let mut other = json!({"@timestamp": "2026-05-01T11:58:00Z", "process": {"name": "sshd"}, "message": "Server listening on 0.0.0.0 port 22."});
        assert_eq!(normalize(&mut other).unwrap(), Source::Unchanged);
        let mut unknown = json!({"message": "hello"});
        assert_eq!(normalize(&mut unknown).unwrap(), Source::Unchanged);
    }
}
