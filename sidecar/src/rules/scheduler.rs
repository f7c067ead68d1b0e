//! Running rules on a schedule. Each rule runs every `interval` over `[end − lookback, end)`,
//! with window ends aligned to the interval grid so every replica (and every rerun) computes the
//! same windows and therefore the same alert ids. Progress is a checkpoint per rule in Vigil's
//! state index; replicas claim a rule by writing a short lease with `if_seq_no`/`if_primary_term`
//! (a 409 means another replica won), so there is no leader election of our own. A rule's first
//! run (no checkpoint yet) covers the last `max_catchup` windows, so events indexed shortly before
//! the rule was deployed are judged; after downtime at most `max_catchup` missed windows are run
//! (the rest are recorded as missed). A failing rule
//! records its error in its state, backs off until its next interval, and does not stop the others.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::alert;
use super::doc;
use super::esapi::{Es, EsError};
use super::eval::{Finding, Stats, Window};
use super::query::{self, QueryOptions};
use super::schema::Rule;
use crate::fields::alert as af;

/// What the engine needs besides the rules.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub alerts_index: String,
    pub state_index: String,
    pub risk_index: String,
    pub query: QueryOptions,
    /// Missed windows run after downtime, at most.
    pub max_catchup: u32,
    /// How long a claim on a rule lasts without being renewed.
    pub lease: TimeDelta,
    /// This replica's name in leases.
    pub replica: String,
    /// `refresh` for alert writes. `wait_for` (the default) makes a window's alerts visible to the
    /// next window's suppression check even when catch-up runs windows back to back; it only
    /// costs anything when a window wrote alerts.
    pub refresh: String,
    /// Per-user risk: how often and over how many days of alerts.
    pub risk_interval: TimeDelta,
    pub risk_lookback: TimeDelta,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            alerts_index: "logs-vigil.alert-default".into(),
            state_index: "vigil-rules-state".into(),
            risk_index: "vigil-risk-score".into(),
            query: QueryOptions::default(),
            max_catchup: 12,
            lease: TimeDelta::minutes(5),
            replica: default_replica(),
            refresh: "wait_for".into(),
            risk_interval: TimeDelta::hours(1),
            risk_lookback: TimeDelta::days(30),
        }
    }
}

/// `<hostname>-<pid>`.
pub fn default_replica() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "vigil".into());
    format!("{host}-{}", std::process::id())
}

/// The latest window end at or before `now` on the rule's grid.
pub fn align_down(t: DateTime<Utc>, interval: TimeDelta) -> DateTime<Utc> {
    let step = interval.num_milliseconds().max(1);
    let ms = t.timestamp_millis();
    doc::millis(ms - ms.rem_euclid(step)).expect("in range")
}

/// The window ends a run must cover: after `checkpoint` up to `due`, capped at `max_catchup`
/// (the earliest are dropped). Returns `(ends, missed)`. Without a checkpoint (the rule's first
/// run) the last `max_catchup` windows up to `due`, none counted as missed.
pub fn due_windows(
    checkpoint: Option<DateTime<Utc>>,
    due: DateTime<Utc>,
    interval: TimeDelta,
    max_catchup: u32,
) -> (Vec<DateTime<Utc>>, u64) {
    let Some(cp) = checkpoint else {
        let ends = (0..max_catchup.max(1))
            .rev()
            .map(|k| due - interval * (k as i32))
            .collect();
        return (ends, 0);
    };
    if cp >= due {
        return (Vec::new(), 0);
    }
    let first = align_down(cp, interval) + interval;
    let total = ((due - first).num_milliseconds() / interval.num_milliseconds().max(1)) as u64 + 1;
    let keep = total.min(u64::from(max_catchup.max(1)));
    let ends = (0..keep)
        .rev()
        .map(|k| due - interval * (k as i32))
        .collect();
    (ends, total - keep)
}

/// One rule's result for one run.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub rule: String,
    /// Not due, or claimed by another replica.
    pub skipped: Option<String>,
    pub windows: u64,
    pub missed_windows: u64,
    pub alerts_written: u64,
    /// Already present (a rerun of a window).
    pub alerts_existing: u64,
    pub suppressed: u64,
    pub stats: Stats,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// The rule state document and its concurrency token.
#[derive(Debug, Clone)]
struct State {
    source: Value,
    /// `(seq_no, primary_term)`; `None` when the document does not exist yet.
    version: Option<(i64, i64)>,
}

impl State {
    fn checkpoint(&self) -> Option<DateTime<Utc>> {
        self.source.get("checkpoint").and_then(doc::parse_time)
    }
    fn time(&self, ptr: &str) -> Option<DateTime<Utc>> {
        self.source.pointer(ptr).and_then(doc::parse_time)
    }
    fn u64(&self, key: &str) -> u64 {
        self.source.get(key).and_then(Value::as_u64).unwrap_or(0)
    }
}

pub struct Engine {
    es: Es,
    rules: Arc<Vec<Rule>>,
    settings: EngineSettings,
}

impl Engine {
    pub fn new(es: Es, rules: Vec<Rule>, settings: EngineSettings) -> Engine {
        Engine {
            es,
            rules: Arc::new(rules),
            settings,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    pub fn es(&self) -> &Es {
        &self.es
    }

    /// Runs every enabled rule that is due at `now`, one after the other; one rule's failure
    /// is reported and does not stop the others.
    pub async fn run_due(&self, now: DateTime<Utc>) -> Vec<RunReport> {
        let mut out = Vec::new();
        for rule in self.rules.iter().filter(|r| r.enabled) {
            out.push(self.run_rule_due(rule, now).await);
        }
        out
    }

    async fn get_state(&self, id: &str) -> Result<State, EsError> {
        match self
            .es
            .call(
                "read rule state",
                Method::Get,
                &format!("/{}/_doc/{}", self.settings.state_index, enc(id)),
                &[],
                None,
            )
            .await
        {
            Ok(v) => Ok(State {
                source: v.get("_source").cloned().unwrap_or(json!({})),
                version: Some((
                    v.get("_seq_no").and_then(Value::as_i64).unwrap_or(0),
                    v.get("_primary_term").and_then(Value::as_i64).unwrap_or(1),
                )),
            }),
            Err(e) if e.is_not_found() => Ok(State {
                source: json!({}),
                version: None,
            }),
            Err(e) => Err(e),
        }
    }

    /// Writes the state only if nobody else wrote it since we read it (409 otherwise).
    async fn put_state(&self, id: &str, state: &mut State) -> Result<(), EsError> {
        let mut q: Vec<(&str, String)> = vec![("refresh", "true".into())];
        match state.version {
            Some((seq, term)) => {
                q.push(("if_seq_no", seq.to_string()));
                q.push(("if_primary_term", term.to_string()));
            }
            None => q.push(("op_type", "create".into())),
        }
        let resp = self
            .es
            .call(
                "write rule state",
                Method::Put,
                &format!("/{}/_doc/{}", self.settings.state_index, enc(id)),
                &q,
                Some(&state.source),
            )
            .await?;
        state.version = Some((
            resp.get("_seq_no").and_then(Value::as_i64).unwrap_or(0),
            resp.get("_primary_term")
                .and_then(Value::as_i64)
                .unwrap_or(1),
        ));
        Ok(())
    }

    /// Claims `id` for this replica at `now` unless another replica holds a live lease.
    /// `Ok(None)` = someone else has it (or won the race).
    async fn claim(
        &self,
        id: &str,
        now: DateTime<Utc>,
        mut state: State,
    ) -> Result<Option<State>, EsError> {
        let owner = state
            .source
            .pointer("/lease/owner")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !owner.is_empty()
            && owner != self.settings.replica
            && state.time("/lease/until").is_some_and(|u| u > now)
        {
            return Ok(None);
        }
        state.source["lease"] = json!({
            "owner": self.settings.replica,
            "until": doc::fmt_time(Utc::now().max(now) + self.settings.lease),
        });
        state.source["status"] = json!("running");
        match self.put_state(id, &mut state).await {
            Ok(()) => Ok(Some(state)),
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs the windows of `rule` that are due at `now`, if this replica can claim it.
    pub async fn run_rule_due(&self, rule: &Rule, now: DateTime<Utc>) -> RunReport {
        let started = std::time::Instant::now();
        let mut report = RunReport {
            rule: rule.id.clone(),
            ..Default::default()
        };
        let result = self.run_rule_inner(rule, now, &mut report).await;
        if let Err(e) = result {
            tracing::warn!(rule = %rule.id, error = %e, "rule run failed; retrying on its next interval");
            report.error = Some(e.to_string());
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        crate::telemetry::rule_run(&report);
        report
    }

    async fn run_rule_inner(
        &self,
        rule: &Rule,
        now: DateTime<Utc>,
        report: &mut RunReport,
    ) -> Result<(), EsError> {
        let due = align_down(now, rule.interval);
        let state = self.get_state(&rule.id).await?;
        let checkpoint = state.checkpoint();
        if checkpoint.is_some_and(|c| c >= due) {
            report.skipped = Some("not due".into());
            return Ok(());
        }
        if state.time("/next_attempt").is_some_and(|t| t > now) {
            report.skipped = Some("backing off after an error".into());
            return Ok(());
        }
        let Some(mut state) = self.claim(&rule.id, now, state).await? else {
            report.skipped = Some("claimed by another replica".into());
            return Ok(());
        };
        let (ends, missed) = due_windows(checkpoint, due, rule.interval, self.settings.max_catchup);
        report.missed_windows = missed;
        if missed > 0 {
            tracing::warn!(rule = %rule.id, missed, "catching up after downtime: oldest windows skipped");
        }
        for end in ends {
            let window = Window::ending(rule, end);
            match self.run_window(rule, window, now).await {
                Ok(w) => {
                    report.windows += 1;
                    report.alerts_written += w.alerts_written;
                    report.alerts_existing += w.alerts_existing;
                    report.suppressed += w.suppressed;
                    report.stats.merge(w.stats);
                    state.source["checkpoint"] = json!(doc::fmt_time(end));
                    state.source["status"] = json!("running");
                    state.source["lease"]["until"] =
                        json!(doc::fmt_time(Utc::now().max(now) + self.settings.lease));
                    state.source["runs_total"] = json!(state.u64("runs_total") + 1);
                    state.source["alerts_total"] =
                        json!(state.u64("alerts_total") + w.alerts_written);
                    match self.put_state(&rule.id, &mut state).await {
                        Ok(()) => {}
                        Err(e) if e.is_conflict() => {
                            report.error =
                                Some("lost the claim on this rule to another replica".into());
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => {
                    let failures = state.u64("consecutive_failures") + 1;
                    state.source["status"] = json!("error");
                    state.source["last_error"] = json!({
                        "message": e.to_string(),
                        "at": doc::fmt_time(now),
                        "window_end": doc::fmt_time(end),
                    });
                    state.source["consecutive_failures"] = json!(failures);
                    state.source["next_attempt"] = json!(doc::fmt_time(
                        align_down(now, rule.interval) + rule.interval
                    ));
                    state.source["lease"] = json!({"owner": "", "until": doc::fmt_time(now)});
                    let _ = self.put_state(&rule.id, &mut state).await;
                    return Err(e);
                }
            }
        }
        state.source["status"] = json!("ok");
        state.source["consecutive_failures"] = json!(0);
        if let Some(o) = state.source.as_object_mut() {
            o.remove("next_attempt");
        }
        state.source["rule"] = json!({"id": rule.id, "version": rule.version, "name": rule.name});
        state.source["lease"] = json!({"owner": "", "until": doc::fmt_time(now)});
        state.source["last_run"] = json!({
            "at": doc::fmt_time(now),
            "replica": self.settings.replica,
            "windows": report.windows,
            "missed_windows": report.missed_windows,
            "alerts": report.alerts_written,
            "existing": report.alerts_existing,
            "suppressed": report.suppressed,
            "events_read": report.stats.events_read,
            "events_skipped": report.stats.skipped_total(),
            "skipped_by_reason": report.stats.skipped,
        });
        match self.put_state(&rule.id, &mut state).await {
            Err(e) if e.is_conflict() => {
                report.error = Some("lost the claim on this rule to another replica".into());
                Ok(())
            }
            other => other,
        }
    }

    /// Evaluates one window and writes its alerts (suppressed ones are not written).
    pub async fn run_window(
        &self,
        rule: &Rule,
        window: Window,
        now: DateTime<Utc>,
    ) -> Result<WindowReport, EsError> {
        let (findings, stats) = query::run(&self.es, &self.settings.query, rule, window).await?;
        let mut report = WindowReport {
            stats,
            ..Default::default()
        };
        if findings.is_empty() {
            return Ok(report);
        }
        let suppressed = self.suppressed_groups(rule, window).await?;
        let mut body = String::new();
        for f in &findings {
            if suppressed.contains(&group_key(&f.group)) {
                report.suppressed += 1;
                continue;
            }
            let (id, doc) = alert::alert_doc(rule, f, window, now);
            body.push_str(
                &json!({"create": {"_index": self.settings.alerts_index, "_id": id}}).to_string(),
            );
            body.push('\n');
            body.push_str(&doc.to_string());
            body.push('\n');
            report.findings.push(f.clone());
        }
        if body.is_empty() {
            return Ok(report);
        }
        let resp = self
            .es
            .ndjson(
                "write alerts",
                "/_bulk",
                &[("refresh", self.settings.refresh.clone())],
                body,
            )
            .await?;
        for item in resp
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = &item["create"];
            match r.get("status").and_then(Value::as_u64) {
                Some(200..=299) => report.alerts_written += 1,
                Some(409) => report.alerts_existing += 1,
                _ => {
                    return Err(EsError {
                        what: "write alerts".into(),
                        status: r.get("status").and_then(Value::as_u64).map(|s| s as u16),
                        message: r
                            .pointer("/error/reason")
                            .and_then(Value::as_str)
                            .unwrap_or("unknown")
                            .to_string(),
                    })
                }
            }
        }
        Ok(report)
    }

    /// Groups this rule already alerted on in earlier windows within the suppression duration.
    async fn suppressed_groups(
        &self,
        rule: &Rule,
        window: Window,
    ) -> Result<BTreeSet<String>, EsError> {
        let body = json!({
            "size": 10000,
            "_source": [af::GROUP],
            "query": {"bool": {"filter": [
                {"term": {af::RULE_ID: rule.id}},
                {"range": {af::WINDOW_END: {
                    "gte": (window.end - rule.suppression).timestamp_millis(),
                    "lt": window.end.timestamp_millis(),
                    "format": "epoch_millis"}}}
            ]}}
        });
        let resp = match self
            .es
            .call(
                "read earlier alerts",
                Method::Post,
                &format!("/{}/_search", self.settings.alerts_index),
                &[("ignore_unavailable", "true".into())],
                Some(&body),
            )
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Ok(BTreeSet::new()),
            Err(e) => return Err(e),
        };
        Ok(resp
            .pointer("/hits/hits")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|h| {
                let g: Vec<String> = doc::values(h.get("_source")?, af::GROUP)
                    .into_iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                Some(g.join("\u{1f}"))
            })
            .collect())
    }

    /// Runs forever: every `tick`, the due rules (and the risk job), until `shutdown` turns true.
    /// A rule run in progress when the signal arrives finishes (its windows, checkpoint and lease
    /// release); no further rule and no risk job starts after it.
    pub async fn serve(
        self: Arc<Self>,
        tick: std::time::Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        tracing::info!(rules = self.rules.len(), replica = %self.settings.replica, "rule scheduler started");
        'ticks: loop {
            let now = Utc::now();
            for rule in self.rules.iter().filter(|r| r.enabled) {
                if *shutdown.borrow() {
                    break 'ticks;
                }
                let r = self.run_rule_due(rule, now).await;
                if r.skipped.is_none() {
                    tracing::info!(rule = %r.rule, windows = r.windows, alerts = r.alerts_written, suppressed = r.suppressed,
                        skipped_events = r.stats.skipped_total(), error = r.error.as_deref().unwrap_or(""), ms = r.duration_ms, "rule run");
                }
            }
            if *shutdown.borrow() {
                break;
            }
            if let Err(e) = super::risk::run_due(&self, now).await {
                tracing::warn!(error = %e, "risk scoring failed; retrying on its next interval");
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!("rule scheduler stopped");
    }
}

/// The result of one window.
#[derive(Debug, Clone, Default)]
pub struct WindowReport {
    pub findings: Vec<Finding>,
    pub alerts_written: u64,
    pub alerts_existing: u64,
    pub suppressed: u64,
    pub stats: Stats,
}

fn group_key(group: &[(String, String)]) -> String {
    group
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\u{1f}")
}

/// Percent-encodes a document id for a URL path.
fn enc(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        doc::parse_time(&json!(s)).unwrap()
    }

    #[test]
    fn windows_align_and_catch_up_is_bounded() {
        let i = TimeDelta::minutes(5);
        assert_eq!(
            align_down(t("2026-05-01T12:07:31Z"), i),
            t("2026-05-01T12:05:00Z")
        );
        // First run: the catch-up span up to the latest window, nothing recorded as missed.
        assert_eq!(
            due_windows(None, t("2026-05-01T12:05:00Z"), i, 3),
            (
                vec![
                    t("2026-05-01T11:55:00Z"),
                    t("2026-05-01T12:00:00Z"),
                    t("2026-05-01T12:05:00Z")
                ],
                0
            )
        );
        assert_eq!(
            due_windows(None, t("2026-05-01T12:05:00Z"), i, 0),
            (vec![t("2026-05-01T12:05:00Z")], 0)
        );
        // Up to date.
        assert!(due_windows(
            Some(t("2026-05-01T12:05:00Z")),
            t("2026-05-01T12:05:00Z"),
            i,
            12
        )
        .0
        .is_empty());
        // Three missed windows.
        let (ends, missed) = due_windows(
            Some(t("2026-05-01T11:50:00Z")),
            t("2026-05-01T12:05:00Z"),
            i,
            12,
        );
        assert_eq!(
            ends,
            vec![
                t("2026-05-01T11:55:00Z"),
                t("2026-05-01T12:00:00Z"),
                t("2026-05-01T12:05:00Z")
            ]
        );
        assert_eq!(missed, 0);
        // A day down with a cap of 12: the latest 12 windows run, 276 are recorded as missed.
        let (ends, missed) = due_windows(
            Some(t("2026-04-30T12:05:00Z")),
            t("2026-05-01T12:05:00Z"),
            i,
            12,
        );
        assert_eq!(ends.len(), 12);
        assert_eq!(*ends.last().unwrap(), t("2026-05-01T12:05:00Z"));
        assert_eq!(missed, 288 - 12);
        // An unaligned checkpoint (interval changed) resumes on the new grid.
        let (ends, _) = due_windows(
            Some(t("2026-05-01T11:58:00Z")),
            t("2026-05-01T12:05:00Z"),
            i,
            12,
        );
        assert_eq!(
            ends,
            vec![t("2026-05-01T12:00:00Z"), t("2026-05-01T12:05:00Z")]
        );
    }
}
