//! `vigil setup`: installs what Vigil ships for Elasticsearch and Kibana, idempotently.
//!
//! Assets come from files under one root folder (the repository, or wherever a release
//! unpacks them):
//!
//! - `mappings/*.json`: a file with `index_patterns` is an index template, any other a
//!   component template; the asset's name is the file stem. An index template with
//!   `data_stream` is installed only where the cluster supports data streams (probed with
//!   `POST _index_template/_simulate`, never guessed from the version).
//! - `pipelines/*.json`: ingest pipelines named after the file stem, installed only where every
//!   node has every processor they use (`GET _nodes/ingest`) and, for `script` processors and
//!   `if` conditions, Painless (`POST _scripts/painless/_execute`).
//! - `pipelines/_inference/<task_type>/<id>.json`: Inference API endpoints (`PUT
//!   _inference/<task_type>/<id>`), installed only where the Inference API answers and when
//!   the URL at which Elasticsearch reaches Vigil is given; `{{VIGIL_URL}}` and
//!   `{{VIGIL_TOKEN}}` in their strings are replaced.
//! - `kibana/**/*.ndjson`: saved objects (lines with `type` and `attributes`) and detection
//!   rules (lines with `rule_id`), imported with `overwrite=true` when a Kibana URL is given.
//!
//! Every Elasticsearch asset carries `_meta.version` (an integer) and `_meta.managed_by:
//! vigil`. Setup plans first and changes nothing when any asset on the cluster is newer than
//! the shipped file or is not managed by Vigil.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::request::JsonBody;
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde_json::{json, Value};

use crate::config::Secret;

/// Value of `_meta.managed_by` on everything Vigil installs.
pub const MANAGED_BY: &str = "vigil";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    ComponentTemplate,
    IndexTemplate,
    IngestPipeline,
    InferenceEndpoint { task_type: String },
    KibanaSavedObjects,
    KibanaRules,
}

impl Kind {
    pub fn label(&self) -> &'static str {
        match self {
            Kind::ComponentTemplate => "component template",
            Kind::IndexTemplate => "index template",
            Kind::IngestPipeline => "ingest pipeline",
            Kind::InferenceEndpoint { .. } => "inference endpoint",
            Kind::KibanaSavedObjects => "kibana saved objects",
            Kind::KibanaRules => "kibana detection rules",
        }
    }

    /// Installation order: component templates before the index templates composed of them,
    /// inference endpoints before the pipelines that call them, Kibana last.
    fn order(&self) -> u8 {
        match self {
            Kind::ComponentTemplate => 0,
            Kind::IndexTemplate => 1,
            Kind::InferenceEndpoint { .. } => 2,
            Kind::IngestPipeline => 3,
            Kind::KibanaSavedObjects => 4,
            Kind::KibanaRules => 5,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Payload {
    Json(Value),
    Ndjson(String),
}

#[derive(Debug, Clone)]
pub struct Asset {
    pub kind: Kind,
    pub name: String,
    pub payload: Payload,
    /// `_meta.version` (Elasticsearch assets).
    pub version: Option<i64>,
    pub file: PathBuf,
}

impl Asset {
    pub fn json(&self) -> Option<&Value> {
        match &self.payload {
            Payload::Json(v) => Some(v),
            Payload::Ndjson(_) => None,
        }
    }

    pub fn json_mut(&mut self) -> Option<&mut Value> {
        match &mut self.payload {
            Payload::Json(v) => Some(v),
            Payload::Ndjson(_) => None,
        }
    }

    fn path(&self) -> String {
        match &self.kind {
            Kind::ComponentTemplate => format!("/_component_template/{}", self.name),
            Kind::IndexTemplate => format!("/_index_template/{}", self.name),
            Kind::IngestPipeline => format!("/_ingest/pipeline/{}", self.name),
            Kind::InferenceEndpoint { task_type } => {
                format!("/_inference/{task_type}/{}", self.name)
            }
            Kind::KibanaSavedObjects | Kind::KibanaRules => String::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Load(String),
    #[error("setup refused, nothing was changed:\n  - {}", .0.join("\n  - "))]
    Refused(Vec<String>),
    #[error("{what}: Elasticsearch answered {status}: {body}")]
    Es {
        what: String,
        status: u16,
        body: String,
    },
    #[error("{what}: {reason}")]
    Transport { what: String, reason: String },
    #[error("{what}: Kibana answered {status}: {body}")]
    Kibana {
        what: String,
        status: u16,
        body: String,
    },
}

/// What setup did (or, with `dry_run`, would do) with one asset.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Created { version: Option<i64> },
    Updated { from: Option<i64>, to: Option<i64> },
    Unchanged { version: Option<i64> },
    SkippedUnsupported(String),
    Skipped(String),
    Imported { objects: u64 },
}

impl Outcome {
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Created { .. } => "created",
            Outcome::Updated { .. } => "updated",
            Outcome::Unchanged { .. } => "unchanged",
            Outcome::SkippedUnsupported(_) => "skipped-unsupported",
            Outcome::Skipped(_) => "skipped",
            Outcome::Imported { .. } => "imported",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Change {
    pub kind: Kind,
    pub name: String,
    pub outcome: Outcome,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = |v: &Option<i64>| v.map_or("none".to_string(), |v| v.to_string());
        write!(
            f,
            "{:<20} {} [{}]",
            self.outcome.word(),
            self.kind.label(),
            self.name
        )?;
        match &self.outcome {
            Outcome::Created { version } | Outcome::Unchanged { version } => {
                if version.is_some() {
                    write!(f, " version {}", v(version))?;
                }
            }
            Outcome::Updated { from, to } => write!(f, " version {} -> {}", v(from), v(to))?,
            Outcome::SkippedUnsupported(why) | Outcome::Skipped(why) => write!(f, ": {why}")?,
            Outcome::Imported { objects } => write!(f, " ({objects} objects)")?,
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub changes: Vec<Change>,
}

impl Report {
    pub fn outcome(&self, name: &str) -> Option<&Outcome> {
        self.changes
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.outcome)
    }

    pub fn count(&self, word: &str) -> usize {
        self.changes
            .iter()
            .filter(|c| c.outcome.word() == word)
            .count()
    }
}

/// Where Kibana is and how to authenticate to it (Kibana takes Elasticsearch credentials).
#[derive(Debug, Clone)]
pub struct KibanaTarget {
    pub url: url::Url,
    pub authorization: Option<String>,
    pub http: reqwest::Client,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub kibana: Option<KibanaTarget>,
    /// The URL at which Elasticsearch reaches Vigil (for inference endpoints).
    pub vigil_url: Option<url::Url>,
    /// The bearer token Elasticsearch presents to Vigil (for inference endpoints).
    pub vigil_token: Option<Secret>,
    /// Plan and report, change nothing.
    pub dry_run: bool,
}

// ------------------------------------------------------------------------------------ loading

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['_', '-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

fn sorted_files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, SetupError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SetupError::Load(format!("cannot read {}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    Ok(files)
}

fn read_json(path: &Path) -> Result<Value, SetupError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SetupError::Load(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| SetupError::Load(format!("{}: invalid JSON: {e}", path.display())))
}

fn stem(path: &Path) -> Result<String, SetupError> {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    if valid_name(&name) {
        Ok(name)
    } else {
        Err(SetupError::Load(format!(
            "{}: [{name}] is not a valid asset name (letters, digits, - _ . @)",
            path.display()
        )))
    }
}

/// `_meta.version` and `_meta.managed_by` of a body, checked.
fn shipped_version(path: &Path, body: &Value) -> Result<i64, SetupError> {
    let meta = body.get("_meta");
    let version = meta.and_then(|m| m.get("version")).and_then(Value::as_i64);
    let managed = meta
        .and_then(|m| m.get("managed_by"))
        .and_then(Value::as_str);
    match (version, managed) {
        (Some(v), Some(MANAGED_BY)) if v >= 1 => Ok(v),
        _ => Err(SetupError::Load(format!(
            "{}: needs \"_meta\": {{\"version\": <integer >= 1>, \"managed_by\": \"{MANAGED_BY}\"}}",
            path.display()
        ))),
    }
}

/// Reads every asset under `root` (see the module documentation), in installation order.
pub fn load(root: &Path) -> Result<Vec<Asset>, SetupError> {
    let mut assets = Vec::new();
    let mappings = root.join("mappings");
    if !mappings.is_dir() {
        return Err(SetupError::Load(format!(
            "{} does not exist; run from the folder that holds mappings/ or pass --root",
            mappings.display()
        )));
    }
    for file in sorted_files(&mappings, "json")? {
        let body = read_json(&file)?;
        let kind = if body.get("index_patterns").is_some() {
            Kind::IndexTemplate
        } else if body.get("template").is_some() {
            Kind::ComponentTemplate
        } else {
            return Err(SetupError::Load(format!(
                "{}: neither an index template (index_patterns) nor a component template (template)",
                file.display()
            )));
        };
        assets.push(Asset {
            kind,
            name: stem(&file)?,
            version: Some(shipped_version(&file, &body)?),
            payload: Payload::Json(body),
            file,
        });
    }
    let pipelines = root.join("pipelines");
    if pipelines.is_dir() {
        for file in sorted_files(&pipelines, "json")? {
            let body = read_json(&file)?;
            if body.get("processors").and_then(Value::as_array).is_none() {
                return Err(SetupError::Load(format!(
                    "{}: an ingest pipeline needs a [processors] array",
                    file.display()
                )));
            }
            assets.push(Asset {
                kind: Kind::IngestPipeline,
                name: stem(&file)?,
                version: Some(shipped_version(&file, &body)?),
                payload: Payload::Json(body),
                file,
            });
        }
        let inference = pipelines.join("_inference");
        if inference.is_dir() {
            let mut tasks: Vec<PathBuf> = std::fs::read_dir(&inference)
                .map_err(|e| SetupError::Load(format!("cannot read {}: {e}", inference.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            tasks.sort();
            for task_dir in tasks {
                let task_type = stem(&task_dir)?;
                for file in sorted_files(&task_dir, "json")? {
                    let body = read_json(&file)?;
                    assets.push(Asset {
                        kind: Kind::InferenceEndpoint {
                            task_type: task_type.clone(),
                        },
                        name: stem(&file)?,
                        version: None,
                        payload: Payload::Json(body),
                        file,
                    });
                }
            }
        }
    }
    let kibana = root.join("kibana");
    if kibana.is_dir() {
        let mut files = Vec::new();
        collect_ndjson(&kibana, &mut files)?;
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| SetupError::Load(format!("cannot read {}: {e}", file.display())))?;
            let kind = kibana_kind(&file, &text)?;
            assets.push(Asset {
                kind,
                name: file
                    .strip_prefix(root)
                    .unwrap_or(&file)
                    .display()
                    .to_string(),
                version: None,
                payload: Payload::Ndjson(text),
                file,
            });
        }
    }
    assets.sort_by_key(|a| a.kind.order());
    Ok(assets)
}

fn collect_ndjson(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SetupError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SetupError::Load(format!("cannot read {}: {e}", dir.display())))?;
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            collect_ndjson(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "ndjson") {
            out.push(path);
        }
    }
    Ok(())
}

/// Saved objects or detection rules, decided by the lines' keys; every line must agree.
fn kibana_kind(file: &Path, text: &str) -> Result<Kind, SetupError> {
    let mut kind = None;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line).map_err(|e| {
            SetupError::Load(format!(
                "{} line {}: invalid JSON: {e}",
                file.display(),
                i + 1
            ))
        })?;
        // An export's trailing summary line ({"exported_count": ...}) is neither; ignore it.
        let this = if v.get("rule_id").is_some() {
            Kind::KibanaRules
        } else if v.get("type").is_some() && v.get("attributes").is_some() {
            Kind::KibanaSavedObjects
        } else if v.get("exported_count").is_some() || v.get("exportedCount").is_some() {
            continue;
        } else {
            return Err(SetupError::Load(format!(
                "{} line {}: neither a saved object (type, attributes) nor a detection rule (rule_id)",
                file.display(),
                i + 1
            )));
        };
        match &kind {
            None => kind = Some(this),
            Some(k) if *k == this => {}
            Some(_) => {
                return Err(SetupError::Load(format!(
                    "{}: mixes saved objects and detection rules; split them into two files",
                    file.display()
                )))
            }
        }
    }
    kind.ok_or_else(|| SetupError::Load(format!("{}: no objects", file.display())))
}

// --------------------------------------------------------------------------- cluster probes

/// What the cluster supports, probed once per run.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// `Err(reason)` when index templates with `data_stream` are refused.
    pub data_streams: Option<Result<(), String>>,
    /// Ingest processor types every node has.
    pub processors: Option<BTreeSet<String>>,
    pub painless: Option<Result<(), String>>,
    pub inference_api: Option<Result<(), String>>,
}

struct Es<'a>(&'a Elasticsearch);

impl Es<'_> {
    async fn call(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), SetupError> {
        let response = self
            .0
            .send(
                method,
                path,
                HeaderMap::new(),
                Option::<&()>::None,
                body.map(|b| JsonBody::new(b.clone())),
                None,
            )
            .await
            .map_err(|e| SetupError::Transport {
                what: what.to_string(),
                reason: format!("cannot reach Elasticsearch: {e}"),
            })?;
        let status = response.status_code().as_u16();
        let text = response.text().await.map_err(|e| SetupError::Transport {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }
}

fn error_reason(body: &Value) -> String {
    body.pointer("/error/reason")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            body.get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.to_string())
}

impl Capabilities {
    async fn data_streams(&mut self, es: &Es<'_>) -> Result<Result<(), String>, SetupError> {
        if let Some(r) = &self.data_streams {
            return Ok(r.clone());
        }
        let probe = json!({
            "index_patterns": ["vigil-setup-probe-*"],
            "data_stream": {},
            "template": {"mappings": {"properties": {"@timestamp": {"type": "date"}}}}
        });
        let (status, body) = es
            .call(
                "data stream probe",
                Method::Post,
                "/_index_template/_simulate",
                Some(&probe),
            )
            .await?;
        let r = if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!(
                "the cluster refuses data stream templates ({status}: {})",
                error_reason(&body)
            ))
        };
        self.data_streams = Some(r.clone());
        Ok(r)
    }

    async fn processors(&mut self, es: &Es<'_>) -> Result<BTreeSet<String>, SetupError> {
        if let Some(p) = &self.processors {
            return Ok(p.clone());
        }
        let (status, body) = es
            .call(
                "ingest processor probe",
                Method::Get,
                "/_nodes/ingest?filter_path=nodes.*.ingest.processors",
                None,
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(SetupError::Es {
                what: "GET _nodes/ingest".into(),
                status,
                body: body.to_string(),
            });
        }
        let mut common: Option<BTreeSet<String>> = None;
        for node in body
            .get("nodes")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|n| n.values())
        {
            let types: BTreeSet<String> = node
                .pointer("/ingest/processors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("type").and_then(Value::as_str).map(str::to_string))
                .collect();
            common = Some(match common {
                None => types,
                Some(c) => c.intersection(&types).cloned().collect(),
            });
        }
        let p = common.unwrap_or_default();
        self.processors = Some(p.clone());
        Ok(p)
    }

    async fn painless(&mut self, es: &Es<'_>) -> Result<Result<(), String>, SetupError> {
        if let Some(r) = &self.painless {
            return Ok(r.clone());
        }
        let (status, body) = es
            .call(
                "painless probe",
                Method::Post,
                "/_scripts/painless/_execute",
                Some(&json!({"script": {"source": "1"}})),
            )
            .await?;
        let r = if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!(
                "Painless is not available ({status}: {})",
                error_reason(&body)
            ))
        };
        self.painless = Some(r.clone());
        Ok(r)
    }

    async fn inference_api(&mut self, es: &Es<'_>) -> Result<Result<(), String>, SetupError> {
        if let Some(r) = &self.inference_api {
            return Ok(r.clone());
        }
        let (status, body) = es
            .call("inference API probe", Method::Get, "/_inference/_all", None)
            .await?;
        let r = if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!(
                "the Inference API is not available (needs the ML plugin, 8.19+/9.1+ and an Enterprise licence; {status}: {})",
                error_reason(&body)
            ))
        };
        self.inference_api = Some(r.clone());
        Ok(r)
    }
}

/// Processor types a pipeline uses (nested `on_failure` and `foreach` included), and whether
/// it needs Painless (`script` processors or `if` conditions).
pub fn pipeline_needs(pipeline: &Value) -> (BTreeSet<String>, bool) {
    fn walk(list: Option<&Value>, types: &mut BTreeSet<String>, painless: &mut bool) {
        for p in list.and_then(Value::as_array).into_iter().flatten() {
            let Some(obj) = p.as_object() else { continue };
            for (kind, config) in obj {
                types.insert(kind.clone());
                if kind == "script" || config.get("if").is_some() {
                    *painless = true;
                }
                walk(config.get("on_failure"), types, painless);
                if let Some(inner) = config.get("processor") {
                    walk(Some(&Value::Array(vec![inner.clone()])), types, painless);
                }
            }
        }
    }
    let mut types = BTreeSet::new();
    let mut painless = false;
    walk(pipeline.get("processors"), &mut types, &mut painless);
    walk(pipeline.get("on_failure"), &mut types, &mut painless);
    (types, painless)
}

// ------------------------------------------------------------------------------- planning

#[derive(Debug, Clone)]
enum Action {
    Put { installed: Option<Option<i64>> },
    Keep(Option<i64>),
    Skip(Outcome),
    Import,
}

fn installed_meta(asset: &Asset, body: &Value) -> Option<Value> {
    let found = match asset.kind {
        Kind::ComponentTemplate => body
            .get("component_templates")?
            .as_array()?
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(&asset.name))?
            .get("component_template")?,
        Kind::IndexTemplate => body
            .get("index_templates")?
            .as_array()?
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(&asset.name))?
            .get("index_template")?,
        Kind::IngestPipeline => body.get(&asset.name)?,
        _ => return None,
    };
    Some(found.get("_meta").cloned().unwrap_or(Value::Null))
}

async fn plan_one(
    es: &Es<'_>,
    caps: &mut Capabilities,
    asset: &Asset,
    opts: &Options,
    refusals: &mut Vec<String>,
) -> Result<Action, SetupError> {
    let body = asset.json();
    match &asset.kind {
        Kind::KibanaSavedObjects | Kind::KibanaRules => {
            return Ok(if opts.kibana.is_some() {
                Action::Import
            } else {
                Action::Skip(Outcome::Skipped("no --kibana URL given".into()))
            });
        }
        Kind::IndexTemplate if body.is_some_and(|b| b.get("data_stream").is_some()) => {
            if let Err(why) = caps.data_streams(es).await? {
                return Ok(Action::Skip(Outcome::SkippedUnsupported(why)));
            }
        }
        Kind::IngestPipeline => {
            let (types, painless) = pipeline_needs(body.unwrap_or(&Value::Null));
            let have = caps.processors(es).await?;
            let missing: Vec<&String> = types.iter().filter(|t| !have.contains(*t)).collect();
            if !missing.is_empty() {
                return Ok(Action::Skip(Outcome::SkippedUnsupported(format!(
                    "the cluster lacks ingest processor(s) {missing:?}"
                ))));
            }
            if painless {
                if let Err(why) = caps.painless(es).await? {
                    return Ok(Action::Skip(Outcome::SkippedUnsupported(why)));
                }
            }
        }
        Kind::InferenceEndpoint { .. } => {
            if let Err(why) = caps.inference_api(es).await? {
                return Ok(Action::Skip(Outcome::SkippedUnsupported(why)));
            }
            if opts.vigil_url.is_none() {
                return Ok(Action::Skip(Outcome::Skipped(
                    "pass --vigil-url (the URL at which Elasticsearch reaches Vigil)".into(),
                )));
            }
            let what = format!("GET {}", asset.path());
            let (status, found) = es.call(&what, Method::Get, &asset.path(), None).await?;
            return match status {
                200..=299 => Ok(Action::Keep(None)),
                404 => Ok(Action::Put { installed: None }),
                _ => Err(SetupError::Es {
                    what,
                    status,
                    body: found.to_string(),
                }),
            };
        }
        _ => {}
    }
    let what = format!("GET {}", asset.path());
    let (status, found) = es.call(&what, Method::Get, &asset.path(), None).await?;
    let meta = match status {
        404 => return Ok(Action::Put { installed: None }),
        200..=299 => installed_meta(asset, &found),
        _ => {
            return Err(SetupError::Es {
                what,
                status,
                body: found.to_string(),
            })
        }
    };
    let Some(meta) = meta else {
        return Ok(Action::Put { installed: None });
    };
    let installed = meta.get("version").and_then(Value::as_i64);
    let managed = meta.get("managed_by").and_then(Value::as_str);
    if managed != Some(MANAGED_BY) {
        refusals.push(format!(
            "{} [{}] exists on the cluster and is not managed by vigil (_meta.managed_by is {}); \
             delete or rename it first",
            asset.kind.label(),
            asset.name,
            managed.map_or("absent".to_string(), |m| format!("[{m}]"))
        ));
        return Ok(Action::Keep(installed));
    }
    match (installed, asset.version) {
        (Some(on_cluster), Some(shipped)) if on_cluster > shipped => {
            refusals.push(format!(
                "{} [{}]: the cluster has version {on_cluster}, {} has older version {shipped}; \
                 refusing to downgrade (run the newer vigil's setup, or delete the asset to force)",
                asset.kind.label(),
                asset.name,
                asset.file.display()
            ));
            Ok(Action::Keep(installed))
        }
        (Some(on_cluster), Some(shipped)) if on_cluster == shipped => Ok(Action::Keep(installed)),
        _ => Ok(Action::Put {
            installed: Some(installed),
        }),
    }
}

/// Replaces `{{VIGIL_URL}}` and `{{VIGIL_TOKEN}}` in every string of `v`.
fn substitute(v: &mut Value, url: &str, token: &str) {
    match v {
        Value::String(s) if s.contains("{{VIGIL_") => {
            *s = s
                .replace("{{VIGIL_URL}}", url.trim_end_matches('/'))
                .replace("{{VIGIL_TOKEN}}", token);
        }
        Value::Array(items) => items.iter_mut().for_each(|i| substitute(i, url, token)),
        Value::Object(map) => map.values_mut().for_each(|i| substitute(i, url, token)),
        _ => {}
    }
}

// -------------------------------------------------------------------------------- applying

/// Plans every asset, refuses (changing nothing) on any downgrade or foreign asset, then
/// installs in order and reports what changed.
pub async fn apply(
    client: &Elasticsearch,
    assets: &[Asset],
    opts: &Options,
) -> Result<Report, SetupError> {
    let es = Es(client);
    let mut caps = Capabilities::default();
    let mut refusals = Vec::new();
    let mut plan = Vec::with_capacity(assets.len());
    for asset in assets {
        plan.push(plan_one(&es, &mut caps, asset, opts, &mut refusals).await?);
    }
    if !refusals.is_empty() {
        return Err(SetupError::Refused(refusals));
    }
    let mut report = Report::default();
    for (asset, action) in assets.iter().zip(plan) {
        let outcome = match action {
            Action::Skip(outcome) => outcome,
            Action::Keep(version) => Outcome::Unchanged { version },
            Action::Put { installed } => {
                if !opts.dry_run {
                    put(&es, asset, opts).await?;
                }
                match installed {
                    None => Outcome::Created {
                        version: asset.version,
                    },
                    Some(from) => Outcome::Updated {
                        from,
                        to: asset.version,
                    },
                }
            }
            Action::Import => {
                let target = opts.kibana.as_ref().expect("planned only with --kibana");
                if opts.dry_run {
                    Outcome::Skipped("dry run".into())
                } else {
                    kibana_import(target, asset).await?
                }
            }
        };
        report.changes.push(Change {
            kind: asset.kind.clone(),
            name: asset.name.clone(),
            outcome,
        });
    }
    Ok(report)
}

async fn put(es: &Es<'_>, asset: &Asset, opts: &Options) -> Result<(), SetupError> {
    let mut body = asset.json().cloned().unwrap_or(Value::Null);
    if let Kind::InferenceEndpoint { .. } = asset.kind {
        let url = opts.vigil_url.as_ref().map(|u| u.as_str()).unwrap_or("");
        let token = opts.vigil_token.as_ref().map_or("", |t| t.expose());
        substitute(&mut body, url, token);
    }
    let what = format!("PUT {} (from {})", asset.path(), asset.file.display());
    let (status, answer) = es
        .call(&what, Method::Put, &asset.path(), Some(&body))
        .await?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(SetupError::Es {
            what,
            status,
            body: answer.to_string(),
        })
    }
}

/// `multipart/form-data` with one part named `file`, as Kibana's import APIs expect.
pub fn multipart_file(filename: &str, content: &str) -> (String, Vec<u8>) {
    let boundary = format!(
        "vigil-{:016x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    );
    let safe_name: String = filename
        .chars()
        .map(|c| if c == '"' || c == '\\' { '_' } else { c })
        .collect();
    let mut body = Vec::with_capacity(content.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{safe_name}\"\r\n\
             Content-Type: application/ndjson\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content.as_bytes());
    if !content.ends_with('\n') {
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn kibana_import(target: &KibanaTarget, asset: &Asset) -> Result<Outcome, SetupError> {
    let Payload::Ndjson(text) = &asset.payload else {
        unreachable!("kibana assets are NDJSON")
    };
    let path = match asset.kind {
        Kind::KibanaRules => "api/detection_engine/rules/_import",
        _ => "api/saved_objects/_import",
    };
    let mut url = target.url.clone();
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    let mut url = url.join(path).map_err(|e| SetupError::Transport {
        what: format!("kibana import of {}", asset.name),
        reason: e.to_string(),
    })?;
    url.set_query(Some("overwrite=true"));
    let filename = asset
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("vigil.ndjson");
    let (content_type, body) = multipart_file(filename, text);
    let mut request = target
        .http
        .post(url.clone())
        .header("kbn-xsrf", "vigil")
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body);
    if let Some(auth) = &target.authorization {
        request = request.header(reqwest::header::AUTHORIZATION, auth);
    }
    let what = format!("POST {url} ({})", asset.file.display());
    let response = request.send().await.map_err(|e| SetupError::Transport {
        what: what.clone(),
        reason: format!("cannot reach Kibana: {e}"),
    })?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let success = answer.get("success").and_then(Value::as_bool);
    if !(200..300).contains(&status) || success != Some(true) {
        return Err(SetupError::Kibana {
            what,
            status,
            body: text,
        });
    }
    let objects = answer
        .get("successCount")
        .or_else(|| answer.get("success_count"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(Outcome::Imported { objects })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_needs_walks_nested_processors() {
        let p = json!({"processors": [
            {"script": {"source": "x"}},
            {"inference": {"model_id": "m", "on_failure": [{"set": {"field": "a", "value": 1}}]}},
            {"foreach": {"field": "f", "processor": {"json": {"field": "_ingest._value"}}}},
            {"remove": {"field": "t", "if": "ctx.t != null"}}
        ], "on_failure": [{"append": {"field": "e", "value": "x"}}]});
        let (types, painless) = pipeline_needs(&p);
        let expected: BTreeSet<String> = [
            "append",
            "foreach",
            "inference",
            "json",
            "remove",
            "script",
            "set",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(types, expected);
        assert!(painless);
        assert!(!pipeline_needs(&json!({"processors": [{"set": {}}]})).1);
    }

    #[test]
    fn substitution_reaches_nested_strings() {
        let mut v = json!({"service_settings": {"url": "{{VIGIL_URL}}/_vigil/es/inference",
            "secret_parameters": {"token": "{{VIGIL_TOKEN}}"}, "headers": {"Authorization": "Bearer ${token}"}}});
        substitute(&mut v, "http://vigil:9280/", "s3");
        assert_eq!(
            v["service_settings"]["url"],
            "http://vigil:9280/_vigil/es/inference"
        );
        assert_eq!(v["service_settings"]["secret_parameters"]["token"], "s3");
        assert_eq!(
            v["service_settings"]["headers"]["Authorization"],
            "Bearer ${token}"
        );
    }

    #[test]
    fn kibana_files_are_classified_by_content() {
        let p = Path::new("k.ndjson");
        assert_eq!(
            kibana_kind(p, "{\"rule_id\":\"a\"}\n{\"exported_count\":1}\n").unwrap(),
            Kind::KibanaRules
        );
        assert_eq!(
            kibana_kind(
                p,
                "{\"type\":\"index-pattern\",\"id\":\"x\",\"attributes\":{}}\n"
            )
            .unwrap(),
            Kind::KibanaSavedObjects
        );
        assert!(kibana_kind(
            p,
            "{\"rule_id\":\"a\"}\n{\"type\":\"x\",\"attributes\":{}}\n"
        )
        .is_err());
        assert!(kibana_kind(p, "{\"nope\":1}\n").is_err());
    }

    #[test]
    fn multipart_has_one_file_part() {
        let (ct, body) = multipart_file("rules.ndjson", "{\"a\":1}\n");
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"file\"; filename=\"rules.ndjson\""));
        assert!(text.contains("\r\n\r\n{\"a\":1}\n\r\n"));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }

    #[test]
    fn shipped_assets_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let assets = load(&root).unwrap();
        let first_index = assets
            .iter()
            .position(|a| a.kind == Kind::IndexTemplate)
            .unwrap();
        assert!(assets[..first_index]
            .iter()
            .all(|a| a.kind == Kind::ComponentTemplate));
        let names: Vec<&str> = assets.iter().map(|a| a.name.as_str()).collect();
        for expected in [
            "vigil-ecs-events",
            "vigil-ml-inference",
            "vigil-events",
            "vigil-events-ds",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        // Every index template's components are shipped too.
        for a in assets.iter().filter(|a| a.kind == Kind::IndexTemplate) {
            for c in a.json().unwrap()["composed_of"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let c = c.as_str().unwrap();
                assert!(
                    assets
                        .iter()
                        .any(|x| x.kind == Kind::ComponentTemplate && x.name == c),
                    "{} is composed of [{c}], which mappings/ does not ship",
                    a.name
                );
            }
        }
    }
}
