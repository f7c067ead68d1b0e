//! Builds the application: loads the bundles, binds the listener, and wires reloads (file
//! changes, SIGHUP, `POST /_vigil/models/_reload`). Tests bind port 0 and call [`Application::build`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::bundle::ModelRegistry;
use crate::config::Config;
use crate::http::{router, AppState};

pub struct Application {
    listener: TcpListener,
    /// The separate `/metrics` listener (`[metrics] listen`), if any.
    metrics_listener: Option<TcpListener>,
    state: AppState,
    _watcher: Option<notify::RecommendedWatcher>,
    rules: Option<RuleScheduler>,
    warm: Option<tokio::task::JoinHandle<()>>,
}

/// The rule scheduler task: ingest never waits on it; shutdown lets its current run finish.
struct RuleScheduler {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Loads the rules (an invalid rule fails startup, naming file, rule and field) and spawns the
/// scheduler.
fn start_rules(config: &Config) -> anyhow::Result<RuleScheduler> {
    let rc = &config.rules;
    let rules = crate::rules::load_dir(&rc.dir, &rc.defaults)?;
    let client = crate::es::client(&config.elasticsearch)?;
    let engine = Arc::new(crate::rules::scheduler::Engine::new(
        crate::rules::esapi::Es::new(client),
        rules,
        rc.engine_settings(),
    ));
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(engine.serve(rc.tick, rx));
    Ok(RuleScheduler { stop, task })
}

/// Seeds the behavioural state from Elasticsearch now and every `interval`, in the background:
/// serving does not wait for it, and each run is bounded in time and entities.
fn start_warm(
    config: &Config,
    registry: Arc<ModelRegistry>,
    settings: crate::features::warm::WarmSettings,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use crate::features::warm::{self, Phase};
    let client = crate::es::client(&config.elasticsearch)?;
    registry.behaviour.warm.set_phase(Phase::Warming);
    Ok(tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            let features = registry.behaviour_features();
            let mut retry_soon = false;
            if features.is_empty() {
                tracing::info!("warm start: no served model reads behavioural features");
                registry.behaviour.warm.set_phase(Phase::Cold);
            } else {
                let started = std::time::Instant::now();
                let result = warm::run_bounded(
                    &client,
                    &registry.behaviour,
                    &features,
                    &settings,
                    settings.until.unwrap_or_else(chrono::Utc::now),
                )
                .await;
                let outcome = match &result {
                    Ok(r) if r.complete => "complete",
                    Ok(_) => "partial",
                    Err(_) => "failed",
                };
                metrics::counter!("vigil_behaviour_warm_runs_total", "outcome" => outcome)
                    .increment(1);
                match &result {
                    Ok(r) => tracing::info!(
                        entities = r.entities, exact = r.exact, spread = r.spread,
                        complete = r.complete, took = ?started.elapsed(),
                        state_bytes = registry.behaviour.weighted_bytes(),
                        "warm start: run finished"
                    ),
                    Err(e) => {
                        failures += 1;
                        retry_soon = failures <= 5;
                        tracing::warn!(error = %e, attempt = failures, "warm start: run failed");
                    }
                }
                registry.behaviour.warm.finish(&result);
            }
            let delay = match settings.interval {
                _ if retry_soon => Duration::from_secs(30),
                Some(i) => i,
                None => break,
            };
            tokio::time::sleep(delay).await;
        }
    }))
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let config = Arc::new(config);
        let registry = Arc::new(ModelRegistry::with_state_bounds(
            config.models.paths.clone(),
            config.features.state_max_bytes,
            Duration::from_secs(30 * 24 * 3600),
        ));
        let initial = {
            let registry = registry.clone();
            tokio::task::spawn_blocking(move || registry.reload()).await?
        };
        if initial.loaded.is_empty() {
            tracing::warn!(
                paths = ?config.models.paths,
                refused = initial.refused.len(),
                "no model bundle loaded; scoring requests will answer 404 until a reload succeeds"
            );
        }
        let watcher = if config.models.watch {
            Some(watch(registry.clone())?)
        } else {
            None
        };
        reload_on_sighup(registry.clone());
        let rules = if config.rules.enabled {
            Some(start_rules(&config).context("cannot start the rule engine")?)
        } else {
            None
        };
        let warm = match config.features.warm_start.clone() {
            Some(settings) => Some(
                start_warm(&config, registry.clone(), settings)
                    .context("cannot start the warm start")?,
            ),
            None => None,
        };
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot bind {}", config.server.listen))?;
        let metrics_listener = match config.metrics.listen {
            Some(addr) if config.metrics.enabled => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot bind metrics.listen {addr}"))?,
            ),
            _ => None,
        };
        let upstream = Arc::new(
            crate::forward::Upstream::new(&config.elasticsearch, !config.auth.tokens.is_empty())
                .context("cannot set up the Elasticsearch upstream")?,
        );
        let es = &config.elasticsearch;
        let probe = crate::health::EsProbe::new(
            upstream.clone(),
            es.credentials.is_none() && es.client_identity.is_none(),
        );
        let mut state = AppState::new(registry, config.clone(), Some(upstream));
        state.es_probe = Some(Arc::new(probe));
        if config.metrics.enabled {
            state.metrics = Some(crate::telemetry::install(config.metrics.drift_window));
        }
        Ok(Application {
            listener,
            metrics_listener,
            state,
            _watcher: watcher,
            rules,
            warm,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn registry(&self) -> Arc<ModelRegistry> {
        self.state.registry.clone()
    }

    /// The address of the separate `/metrics` listener, if one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests and the
    /// rule run in progress finish (at most `server.shutdown_timeout`), and returns.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let scheme = if self.state.config.server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!(addr = %self.local_addr(), scheme, "listening");
        let grace = self.state.config.server.shutdown_timeout;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        // The rule scheduler hears the signal at once and finishes its current run.
        let rules = self.rules.map(|rules| {
            let rx = stop_rx.clone();
            tokio::spawn(async move {
                stopped(rx).await;
                let _ = rules.stop.send(true);
                let _ = rules.task.await;
            })
        });
        if let (Some(listener), Some(handle)) = (self.metrics_listener, self.state.metrics.clone())
        {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "serving /metrics");
            let app = axum::Router::new()
                .route("/metrics", axum::routing::get(crate::http::models::metrics))
                .with_state(AppState {
                    metrics: Some(handle),
                    ..self.state.clone()
                });
            let rx = stop_rx.clone();
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopped(rx))
                    .await
            });
        }
        // The recorder keeps every histogram sample (a score per document) until upkeep folds
        // them into buckets. A scrape of /metrics does that; without a scraper the resident
        // memory grew by 4-7 MB/s at 250-380 k documents/s, so upkeep also runs on a timer.
        if let Some(handle) = self.state.metrics.clone() {
            let rx = stop_rx.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = crate::telemetry::upkeep(handle) => {}
                    () = stopped(rx) => {}
                }
            });
        }
        let app = router(self.state.clone());
        let rx = stop_rx.clone();
        let (listener, tls) = (self.listener, self.state.config.server.tls.clone());
        let served = async move {
            match tls {
                Some(tls) => {
                    let listener = crate::tls::TlsListener::new(listener, &tls)?;
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stopped(rx))
                        .await
                }
                None => {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stopped(rx))
                        .await
                }
            }
        };
        let deadline = async {
            stopped(stop_rx.clone()).await;
            tokio::time::sleep(grace).await;
        };
        let warm = self.warm;
        let drained = async move {
            let served = served.await;
            if let Some(warm) = warm {
                warm.abort();
            }
            if let Some(rules) = rules {
                let _ = rules.await;
            }
            served
        };
        tokio::select! {
            result = drained => {
                tracing::info!("stopped");
                result
            }
            _ = deadline => {
                tracing::warn!(grace_ms = grace.as_millis() as u64, "shutdown timeout reached; exiting with requests still in flight");
                Ok(())
            }
        }
    }
}

/// Reloads after a bundle file changes, debounced so a copy of several files reloads once.
fn watch(registry: Arc<ModelRegistry>) -> anyhow::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event {
            if !e.kind.is_access() {
                let _ = tx.try_send(());
            }
        }
    })?;
    for path in registry.sources() {
        if path.exists() {
            watcher
                .watch(path, RecursiveMode::Recursive)
                .with_context(|| format!("cannot watch {}", path.display()))?;
        }
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            while rx.try_recv().is_ok() {}
            let registry = registry.clone();
            let _ = tokio::task::spawn_blocking(move || {
                tracing::info!("model files changed; reloading");
                registry.reload()
            })
            .await;
        }
    });
    Ok(watcher)
}

fn reload_on_sighup(registry: Arc<ModelRegistry>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let registry = registry.clone();
            let _ = tokio::task::spawn_blocking(move || {
                tracing::info!("SIGHUP; reloading models");
                registry.reload()
            })
            .await;
        }
    });
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: draining in-flight requests");
}
