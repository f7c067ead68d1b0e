//! Reading events: dotted field paths (nested objects or flat dotted keys, as Elasticsearch
//! accepts both), timestamps, geo points, IP addresses and CIDR ranges.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use std::net::IpAddr;

/// One event as the evaluators see it: its id and index (for the alert's references), its time
/// and its source.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub index: String,
    pub ts: DateTime<Utc>,
    pub source: Value,
}

impl Event {
    /// Every value at `path` (arrays are flattened; `null` is absent).
    pub fn values(&self, path: &str) -> Vec<&Value> {
        values(&self.source, path)
    }

    /// The single scalar at `path` as a string key (first value of an array).
    pub fn key(&self, path: &str) -> Option<String> {
        self.values(path).first().and_then(|v| scalar_key(v))
    }
}

/// Every value at a dotted `path` in `doc`. Both `{"user": {"name": x}}` and `{"user.name": x}`
/// (and mixes like `{"user": {"geo.name": x}}`) resolve, and arrays on the way fan out.
pub fn values<'a>(doc: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    collect(doc, path, &mut out);
    out
}

fn collect<'a>(doc: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    match doc {
        Value::Array(items) => {
            for item in items {
                collect(item, path, out);
            }
        }
        Value::Object(map) => {
            if let Some(v) = map.get(path) {
                push_leaf(v, out);
            }
            // Try every split point: "a.b.c" → "a" + "b.c", "a.b" + "c".
            let mut from = 0;
            while let Some(dot) = path[from..].find('.') {
                let at = from + dot;
                if let Some(inner) = map.get(&path[..at]) {
                    collect(inner, &path[at + 1..], out);
                }
                from = at + 1;
            }
        }
        _ => {}
    }
}

fn push_leaf<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Null => {}
        Value::Array(items) => {
            for item in items {
                push_leaf(item, out);
            }
        }
        other => out.push(other),
    }
}

/// The first value at `path`, if any.
pub fn first<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    values(doc, path).into_iter().next()
}

/// A scalar as a grouping key: strings as is, numbers and booleans in their JSON spelling.
/// Objects are not keys.
pub fn scalar_key(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses an RFC 3339 timestamp or epoch milliseconds (number or digit string).
pub fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| s.parse::<i64>().ok().and_then(millis)),
        Value::Number(n) => n.as_i64().and_then(millis),
        _ => None,
    }
}

pub fn millis(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

/// Formats a time the way alerts store it (RFC 3339, milliseconds, `Z`).
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A geo point in any of Elasticsearch's common spellings: `{lat, lon}`, `"lat,lon"`,
/// `[lon, lat]` or `POINT (lon lat)`.
pub fn parse_geo(v: &Value) -> Option<(f64, f64)> {
    let (lat, lon) = match v {
        Value::Object(m) => (m.get("lat")?.as_f64()?, m.get("lon")?.as_f64()?),
        Value::String(s) => {
            let s = s.trim();
            if let Some(rest) = s
                .strip_prefix("POINT")
                .map(|r| r.trim().trim_start_matches('(').trim_end_matches(')'))
            {
                let mut it = rest.split_whitespace();
                let lon: f64 = it.next()?.parse().ok()?;
                let lat: f64 = it.next()?.parse().ok()?;
                (lat, lon)
            } else {
                let (a, b) = s.split_once(',')?;
                (a.trim().parse().ok()?, b.trim().parse().ok()?)
            }
        }
        _ => return None,
    };
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
}

/// The geo point at `path`; `[lon, lat]` arrays are flattened by [`values`], so they are read
/// from the raw value first.
pub fn geo_at(doc: &Value, path: &str) -> Option<(f64, f64)> {
    raw_at(doc, path)
        .and_then(|raw| match raw {
            Value::Array(a) if a.len() == 2 && a.iter().all(Value::is_number) => {
                let lon = a[0].as_f64()?;
                let lat = a[1].as_f64()?;
                ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
                    .then_some((lat, lon))
            }
            other => parse_geo(other),
        })
        .or_else(|| {
            // `source.geo.location` may also be split as `.lat` / `.lon` dotted keys.
            let lat = first(doc, &format!("{path}.lat"))?.as_f64()?;
            let lon = first(doc, &format!("{path}.lon"))?.as_f64()?;
            parse_geo(&serde_json::json!({"lat": lat, "lon": lon}))
        })
}

/// The value at `path` without flattening arrays.
pub fn raw_at<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let map = doc.as_object()?;
    if let Some(v) = map.get(path) {
        return Some(v);
    }
    let mut from = 0;
    while let Some(dot) = path[from..].find('.') {
        let at = from + dot;
        if let Some(inner) = map.get(&path[..at]) {
            if let Some(v) = raw_at(inner, &path[at + 1..]) {
                return Some(v);
            }
        }
        from = at + 1;
    }
    None
}

/// Great-circle distance in kilometres (haversine, mean Earth radius).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * 6371.0088 * h.sqrt().asin()
}

/// An IP network such as `10.0.0.0/8` or `2001:db8::/32` (a bare address is a /32 or /128).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|e| format!("[{s}] is not an IP network: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("[{s}]: prefix must be 0..={max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_and_nested_paths_resolve_alike() {
        let a = json!({"user": {"name": "alice"}});
        let b = json!({"user.name": "alice"});
        let c = json!({"source": {"geo.country_iso_code": "FR"}});
        assert_eq!(first(&a, "user.name"), Some(&json!("alice")));
        assert_eq!(first(&b, "user.name"), Some(&json!("alice")));
        assert_eq!(first(&c, "source.geo.country_iso_code"), Some(&json!("FR")));
        let arr = json!({"related": {"user": ["a", "b"]}});
        assert_eq!(values(&arr, "related.user").len(), 2);
        assert!(first(&json!({"user": null}), "user.name").is_none());
    }

    #[test]
    fn geo_spellings_and_distance() {
        let paris = (48.8566, 2.3522);
        let nyc = (40.7128, -74.0060);
        let d = distance_km(paris, nyc);
        assert!((d - 5837.0).abs() < 10.0, "{d}");
        assert_eq!(
            geo_at(
                &json!({"source": {"geo": {"location": [2.3522, 48.8566]}}}),
                "source.geo.location"
            ),
            Some(paris)
        );
        assert_eq!(
            geo_at(
                &json!({"source.geo.location": "48.8566,2.3522"}),
                "source.geo.location"
            ),
            Some(paris)
        );
        assert_eq!(
            geo_at(
                &json!({"source.geo.location": "POINT (2.3522 48.8566)"}),
                "source.geo.location"
            ),
            Some(paris)
        );
        assert!(geo_at(
            &json!({"source.geo.location": "north"}),
            "source.geo.location"
        )
        .is_none());
        assert!(geo_at(
            &json!({"source.geo.location": {"lat": 95, "lon": 0}}),
            "source.geo.location"
        )
        .is_none());
    }

    #[test]
    fn cidrs() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("10.1.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    }

    #[test]
    fn times() {
        let t = parse_time(&json!("2026-05-01T12:00:00Z")).unwrap();
        assert_eq!(parse_time(&json!(t.timestamp_millis())), Some(t));
        assert_eq!(fmt_time(t), "2026-05-01T12:00:00.000Z");
        assert!(parse_time(&json!("yesterday")).is_none());
    }
}
