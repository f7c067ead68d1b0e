//! The set of served bundles. Readers take an `Arc` snapshot without locking; a reload builds a
//! new snapshot off to the side and swaps it in at once. A bundle that fails its checks never
//! replaces the version already serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;

use super::{load, Bundle, MANIFEST_FILE};

#[derive(Debug, Default)]
pub struct Snapshot {
    pub models: BTreeMap<String, Arc<Bundle>>,
    /// Bundles that failed their checks on the last reload, with the reason.
    pub refused: Vec<Refusal>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    pub dir: String,
    pub reason: String,
    /// The version still serving in its place, if any.
    pub kept_version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ReloadReport {
    pub loaded: Vec<LoadedModel>,
    pub refused: Vec<Refusal>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadedModel {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

#[derive(Debug)]
pub struct ModelRegistry {
    sources: Vec<PathBuf>,
    /// Per-entity history for behavioural features, shared by every model and request.
    pub behaviour: crate::features::behaviour::BehaviourState,
    current: ArcSwap<Snapshot>,
    /// Serialises reloads so two of them never interleave their swaps.
    reloading: Mutex<()>,
}

impl ModelRegistry {
    /// An empty registry over `sources` (each a bundle folder or a folder of bundle folders).
    pub fn new(sources: Vec<PathBuf>) -> Self {
        Self::with_state_bounds(
            sources,
            256 * 1024 * 1024,
            Duration::from_secs(30 * 24 * 3600),
        )
    }

    /// As [`ModelRegistry::new`], with the entity state bounded to `max_bytes` and entries
    /// expiring after `idle` without events.
    pub fn with_state_bounds(sources: Vec<PathBuf>, max_bytes: u64, idle: Duration) -> Self {
        ModelRegistry {
            behaviour: crate::features::behaviour::BehaviourState::new(max_bytes, idle),
            sources,
            current: ArcSwap::from_pointee(Snapshot::default()),
            reloading: Mutex::new(()),
        }
    }

    pub fn sources(&self) -> &[PathBuf] {
        &self.sources
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Bundle>> {
        self.current.load().models.get(name).cloned()
    }

    /// The behavioural features of every served bundle (warm start seeds their streams).
    pub fn behaviour_features(&self) -> Vec<Arc<crate::features::behaviour::BehaviourFeature>> {
        self.current
            .load()
            .models
            .values()
            .flat_map(|b| b.extractor.behaviour_features())
            .collect()
    }

    /// Computes the behavioural features `bundles` declare for `docs` (in event-time order) and
    /// records the documents' events, once per document. One map per document.
    pub fn observe<D: crate::features::Fields + ?Sized>(
        &self,
        docs: &[&D],
        bundles: &[&Bundle],
    ) -> Option<Vec<crate::inference::BehaviourValues>> {
        let features: Vec<_> = bundles
            .iter()
            .flat_map(|b| b.extractor.behaviour_features())
            .collect();
        if features.is_empty() {
            return None;
        }
        Some(self.behaviour.process(docs, &features, chrono::Utc::now()))
    }

    /// Loads every bundle again. Blocking (it reads files and checks golden outputs): call it
    /// from a blocking thread in async code.
    pub fn reload(&self) -> ReloadReport {
        let _guard = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let previous = self.current.load_full();
        let mut next = Snapshot::default();
        let mut report = ReloadReport::default();
        for dir in discover(&self.sources, &mut next.refused) {
            match load(&dir) {
                Ok(bundle) => {
                    let name = bundle.name().to_string();
                    if let Some(other) = next.models.get(&name) {
                        next.refused.push(Refusal {
                            dir: dir.display().to_string(),
                            reason: format!(
                                "model name [{name}] is already served from {}",
                                other.dir.display()
                            ),
                            kept_version: None,
                        });
                        continue;
                    }
                    report.loaded.push(LoadedModel {
                        name: name.clone(),
                        version: bundle.version().to_string(),
                        sha256: bundle.sha256.clone(),
                    });
                    next.models.insert(name, bundle);
                }
                Err(err) => {
                    let kept = previous.models.values().find(|b| b.dir == dir).cloned();
                    let kept_version = kept.as_ref().map(|b| b.version().to_string());
                    if let Some(bundle) = kept {
                        next.models
                            .entry(bundle.name().to_string())
                            .or_insert(bundle);
                    }
                    next.refused.push(Refusal {
                        dir: dir.display().to_string(),
                        reason: err.reason,
                        kept_version,
                    });
                }
            }
        }
        report.refused = next.refused.clone();
        for refusal in &report.refused {
            tracing::warn!(dir = %refusal.dir, reason = %refusal.reason, kept_version = ?refusal.kept_version, "model bundle refused");
        }
        for model in &report.loaded {
            tracing::info!(model = %model.name, version = %model.version, "model bundle loaded");
        }
        self.current.store(Arc::new(next));
        report
    }
}

/// Bundle folders under the sources, in a stable order.
fn discover(sources: &[PathBuf], refused: &mut Vec<Refusal>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for source in sources {
        if source.join(MANIFEST_FILE).is_file() {
            dirs.push(source.clone());
            continue;
        }
        match std::fs::read_dir(source) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| is_bundle_dir(p))
                    .collect();
                found.sort();
                dirs.extend(found);
            }
            Err(e) => refused.push(Refusal {
                dir: source.display().to_string(),
                reason: format!("cannot read model directory: {e}"),
                kept_version: None,
            }),
        }
    }
    dirs
}

fn is_bundle_dir(path: &Path) -> bool {
    path.is_dir() && path.join(MANIFEST_FILE).is_file()
}
