//! Transforms: one JSON value becomes one float (see `docs/bundle-format.md`, "Transforms").
//!
//! The Python trainer (`models/vigil_models/features.py`) implements the same definitions; the
//! golden files pin the two together.

use std::collections::HashSet;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use serde_json::Value;

use crate::bundle::manifest::UrlPart;

/// A transform with its lookup tables built once.
#[derive(Debug, Clone)]
pub enum Transform {
    Numeric,
    Boolean,
    Categorical {
        index: std::collections::HashMap<String, f32>,
        unknown: f32,
    },
    Text(UrlPart, TextOp),
    Time(TimeOp),
    /// Read from the entity state, not from the value (see `behaviour`).
    Behaviour(std::sync::Arc<super::behaviour::BehaviourFeature>),
}

#[derive(Debug, Clone)]
pub enum TextOp {
    Length,
    DigitRatio,
    Entropy,
    CharCount(Vec<char>),
    TokenPresence(Vec<String>),
    TokenCount(Vec<String>),
    IsIp,
    LabelCount,
    SegmentCount,
    ParamCount,
    Equals(String),
    SuffixIn(HashSet<String>),
    InSet(HashSet<String>),
}

#[derive(Debug, Clone, Copy)]
pub enum TimeOp {
    HourOfDay,
    DayOfWeek,
    IsWeekend,
}

/// Why a value could not be turned into a float; the caller adds the feature name and path.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    WrongType { expected: &'static str },
    Invalid(String),
}

impl Transform {
    pub fn apply(&self, value: &Value) -> Result<f32, Rejection> {
        match self {
            Transform::Numeric => numeric(value),
            Transform::Boolean => match value {
                Value::Bool(b) => Ok(f32::from(u8::from(*b))),
                Value::String(s) if s == "true" => Ok(1.0),
                Value::String(s) if s == "false" => Ok(0.0),
                _ => Err(Rejection::WrongType {
                    expected: "a boolean",
                }),
            },
            Transform::Categorical { index, unknown } => {
                let key = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(Rejection::WrongType {
                            expected: "a string, number or boolean",
                        })
                    }
                };
                Ok(index.get(&key).copied().unwrap_or(*unknown))
            }
            Transform::Text(part, op) => match value {
                Value::String(s) => Ok(op.apply(&url_part(s, *part))),
                _ => Err(Rejection::WrongType {
                    expected: "a string",
                }),
            },
            Transform::Behaviour(_) => Err(Rejection::Invalid(
                "behavioural features are computed from the entity state".into(),
            )),
            Transform::Time(op) => {
                let ts = timestamp(value)?;
                Ok(match op {
                    TimeOp::HourOfDay => ts.hour() as f32,
                    TimeOp::DayOfWeek => ts.weekday().num_days_from_monday() as f32,
                    TimeOp::IsWeekend => {
                        f32::from(u8::from(ts.weekday().num_days_from_monday() >= 5))
                    }
                })
            }
        }
    }
}

fn numeric(value: &Value) -> Result<f32, Rejection> {
    let x = match value {
        Value::Number(n) => return number(n),
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| Rejection::WrongType {
            expected: "a number",
        })?,
        _ => {
            return Err(Rejection::WrongType {
                expected: "a number",
            })
        }
    };
    narrowed(x)
}

/// The numeric transform of a JSON number (what [`Transform::apply`] gives for
/// `Value::Number(n)` with [`Transform::Numeric`]).
pub(crate) fn number(n: &serde_json::Number) -> Result<f32, Rejection> {
    narrowed(n.as_f64().ok_or(Rejection::WrongType {
        expected: "a number",
    })?)
}

fn narrowed(x: f64) -> Result<f32, Rejection> {
    if !x.is_finite() {
        return Err(Rejection::Invalid(format!("{x} is not a finite number")));
    }
    let narrowed = x as f32;
    if !narrowed.is_finite() {
        return Err(Rejection::Invalid(format!(
            "{x} is outside the range of a 32-bit float"
        )));
    }
    Ok(narrowed)
}

/// RFC 3339 (or a naive ISO date-time taken as UTC), or epoch milliseconds.
pub fn timestamp(value: &Value) -> Result<DateTime<Utc>, Rejection> {
    match value {
        Value::String(s) => DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| {
                NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc())
            })
            .map_err(|_| Rejection::Invalid(format!("{s:?} is not an RFC 3339 date"))),
        Value::Number(n) => n
            .as_i64()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| Rejection::Invalid(format!("{n} is not epoch milliseconds"))),
        _ => Err(Rejection::WrongType {
            expected: "a date string or epoch milliseconds",
        }),
    }
}

impl TextOp {
    fn apply(&self, s: &str) -> f32 {
        match self {
            TextOp::Length => s.chars().count() as f32,
            TextOp::DigitRatio => {
                let len = s.chars().count();
                if len == 0 {
                    0.0
                } else {
                    (s.bytes().filter(u8::is_ascii_digit).count() as f64 / len as f64) as f32
                }
            }
            TextOp::Entropy => entropy(s) as f32,
            TextOp::CharCount(chars) => s.chars().filter(|c| chars.contains(c)).count() as f32,
            TextOp::TokenPresence(tokens) => {
                let lower = s.to_lowercase();
                f32::from(u8::from(tokens.iter().any(|t| lower.contains(t.as_str()))))
            }
            TextOp::TokenCount(tokens) => {
                let lower = s.to_lowercase();
                tokens.iter().filter(|t| lower.contains(t.as_str())).count() as f32
            }
            TextOp::IsIp => f32::from(u8::from(is_ip(s))),
            TextOp::LabelCount => s.split('.').filter(|l| !l.is_empty()).count() as f32,
            TextOp::SegmentCount => s.split('/').filter(|l| !l.is_empty()).count() as f32,
            TextOp::ParamCount => s.split('&').filter(|l| !l.is_empty()).count() as f32,
            TextOp::Equals(v) => f32::from(u8::from(s.to_lowercase() == *v)),
            TextOp::SuffixIn(set) => {
                let last = s.rsplit('.').next().unwrap_or("").to_lowercase();
                f32::from(u8::from(set.contains(&last)))
            }
            TextOp::InSet(set) => {
                let lower = s.to_lowercase();
                let key = lower.strip_prefix("www.").unwrap_or(&lower);
                f32::from(u8::from(set.contains(key)))
            }
        }
    }
}

/// Shannon entropy in bits of the character distribution.
fn entropy(s: &str) -> f64 {
    let mut counts: std::collections::HashMap<char, u32> = std::collections::HashMap::new();
    let mut total = 0u32;
    for c in s.chars() {
        *counts.entry(c).or_default() += 1;
        total += 1;
    }
    if total == 0 {
        return 0.0;
    }
    // Sum in a fixed order so the result does not depend on hash iteration order.
    let mut ps: Vec<(char, u32)> = counts.into_iter().collect();
    ps.sort_unstable();
    let n = f64::from(total);
    -ps.iter()
        .map(|&(_, c)| {
            let p = f64::from(c) / n;
            p * p.log2()
        })
        .sum::<f64>()
}

fn is_ip(s: &str) -> bool {
    if s.starts_with('[') && s.ends_with(']') && s.len() > 2 {
        return true;
    }
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() == 4
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 3
                && l.bytes().all(|b| b.is_ascii_digit())
                && l.parse::<u16>().is_ok_and(|v| v <= 255)
        })
}

/// The URL split of the bundle contract: simple, without normalisation, identical in Python.
pub fn url_part(raw: &str, part: UrlPart) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if part == UrlPart::Whole {
        return Cow::Borrowed(raw);
    }
    let s = raw.trim_matches(|c: char| c.is_ascii_whitespace());
    let (scheme, rest) = match scheme_end(s) {
        Some(end) => (&s[..end], &s[end + 3..]),
        None => ("", s),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, remainder) = rest.split_at(authority_end);
    match part {
        UrlPart::Whole => unreachable!("handled above"),
        UrlPart::Scheme => Cow::Owned(scheme.to_ascii_lowercase()),
        UrlPart::Host => {
            let host = authority.rsplit('@').next().unwrap_or("");
            let host = if host.starts_with('[') {
                match host.find(']') {
                    Some(i) => &host[..=i],
                    None => host,
                }
            } else {
                host.split(':').next().unwrap_or("")
            };
            Cow::Owned(host.to_lowercase())
        }
        UrlPart::Path => {
            let end = remainder.find(['?', '#']).unwrap_or(remainder.len());
            Cow::Borrowed(&remainder[..end])
        }
        UrlPart::Query => match remainder.find(['?', '#']) {
            Some(i) if remainder.as_bytes()[i] == b'?' => {
                let q = &remainder[i + 1..];
                Cow::Borrowed(&q[..q.find('#').unwrap_or(q.len())])
            }
            _ => Cow::Borrowed(""),
        },
    }
}

/// Byte offset of `://` when the string starts with `[A-Za-z][A-Za-z0-9+.-]*://`.
fn scheme_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    let end = bytes
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-')))?;
    s[end..].starts_with("://").then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(op: TextOp, part: UrlPart, s: &str) -> f32 {
        Transform::Text(part, op).apply(&json!(s)).unwrap()
    }

    #[test]
    fn url_split_follows_the_contract() {
        let u = " HTTPS://user:pw@Login.Example.COM:8443/a/b/../c?x=1&y=&&z=2#frag ";
        assert_eq!(url_part(u, UrlPart::Scheme), "https");
        assert_eq!(url_part(u, UrlPart::Host), "login.example.com");
        assert_eq!(url_part(u, UrlPart::Path), "/a/b/../c");
        assert_eq!(url_part(u, UrlPart::Query), "x=1&y=&&z=2");
        assert_eq!(url_part("example.com/x?q", UrlPart::Host), "example.com");
        assert_eq!(url_part("example.com/x?q", UrlPart::Scheme), "");
        assert_eq!(url_part("http://[::1]:80/p", UrlPart::Host), "[::1]");
        assert_eq!(url_part("http://h#a?b", UrlPart::Query), "");
        assert_eq!(url_part("1http://h/p", UrlPart::Host), "1http");
    }

    #[test]
    fn string_measures() {
        assert_eq!(text(TextOp::Length, UrlPart::Whole, "héllo"), 5.0);
        assert_eq!(text(TextOp::DigitRatio, UrlPart::Whole, "a1b2"), 0.5);
        assert_eq!(text(TextOp::DigitRatio, UrlPart::Whole, ""), 0.0);
        assert_eq!(text(TextOp::Entropy, UrlPart::Whole, "aaaa"), 0.0);
        assert_eq!(text(TextOp::Entropy, UrlPart::Whole, "ab"), 1.0);
        assert_eq!(text(TextOp::Entropy, UrlPart::Whole, "abcd"), 2.0);
        assert_eq!(
            text(TextOp::CharCount(vec!['.', '-']), UrlPart::Whole, "a.b-c.d"),
            3.0
        );
        let tokens = vec!["login".to_string(), "verify".to_string()];
        assert_eq!(
            text(
                TextOp::TokenPresence(tokens.clone()),
                UrlPart::Whole,
                "x/LOGIN"
            ),
            1.0
        );
        assert_eq!(
            text(
                TextOp::TokenCount(tokens),
                UrlPart::Whole,
                "login-verify-login"
            ),
            2.0
        );
        assert_eq!(text(TextOp::IsIp, UrlPart::Host, "http://10.0.0.1/x"), 1.0);
        assert_eq!(
            text(TextOp::IsIp, UrlPart::Host, "http://10.0.0.256/x"),
            0.0
        );
        assert_eq!(text(TextOp::IsIp, UrlPart::Host, "http://1.2.3/x"), 0.0);
        assert_eq!(
            text(TextOp::LabelCount, UrlPart::Host, "http://a.b..c/"),
            3.0
        );
        assert_eq!(
            text(TextOp::SegmentCount, UrlPart::Path, "http://h//a/b/"),
            2.0
        );
        assert_eq!(
            text(TextOp::ParamCount, UrlPart::Query, "http://h/?a=1&&b"),
            2.0
        );
        let tlds: HashSet<String> = ["tk".to_string()].into();
        assert_eq!(
            text(TextOp::SuffixIn(tlds), UrlPart::Host, "http://x.TK/"),
            1.0
        );
        let set: HashSet<String> = ["google.com".to_string()].into();
        assert_eq!(
            text(TextOp::InSet(set), UrlPart::Host, "https://www.Google.com/"),
            1.0
        );
    }

    #[test]
    fn numeric_coerces_strings_and_rejects_everything_else() {
        assert_eq!(Transform::Numeric.apply(&json!(2.5)), Ok(2.5));
        assert_eq!(Transform::Numeric.apply(&json!(" 42 ")), Ok(42.0));
        for bad in [json!("abc"), json!(true), json!({"a": 1}), json!([1])] {
            assert!(matches!(
                Transform::Numeric.apply(&bad),
                Err(Rejection::WrongType { .. })
            ));
        }
        for bad in [json!("NaN"), json!("inf"), json!("-Infinity"), json!(1e300)] {
            assert!(matches!(
                Transform::Numeric.apply(&bad),
                Err(Rejection::Invalid(_))
            ));
        }
    }

    #[test]
    fn boolean_and_categorical() {
        assert_eq!(Transform::Boolean.apply(&json!(true)), Ok(1.0));
        assert_eq!(Transform::Boolean.apply(&json!("false")), Ok(0.0));
        assert!(Transform::Boolean.apply(&json!(1)).is_err());
        let cat = Transform::Categorical {
            index: [("FR".to_string(), 0.0), ("7".to_string(), 1.0)].into(),
            unknown: 2.0,
        };
        assert_eq!(cat.apply(&json!("FR")), Ok(0.0));
        assert_eq!(cat.apply(&json!(7)), Ok(1.0));
        assert_eq!(cat.apply(&json!("DE")), Ok(2.0));
        assert!(cat.apply(&json!({})).is_err());
    }

    #[test]
    fn time_features_in_utc() {
        // 2026-11-21 is a Saturday.
        let t = json!("2026-11-21T23:30:00+02:00");
        assert_eq!(Transform::Time(TimeOp::HourOfDay).apply(&t), Ok(21.0));
        assert_eq!(Transform::Time(TimeOp::DayOfWeek).apply(&t), Ok(5.0));
        assert_eq!(Transform::Time(TimeOp::IsWeekend).apply(&t), Ok(1.0));
        let millis = json!(0);
        assert_eq!(Transform::Time(TimeOp::DayOfWeek).apply(&millis), Ok(3.0));
        assert_eq!(
            Transform::Time(TimeOp::HourOfDay).apply(&json!("2026-01-01T05:00:00.123")),
            Ok(5.0)
        );
        assert!(Transform::Time(TimeOp::HourOfDay)
            .apply(&json!("yesterday"))
            .is_err());
        assert!(Transform::Time(TimeOp::HourOfDay)
            .apply(&json!(true))
            .is_err());
    }
}
