//! Vigil scores security events with ML models while they are indexed, explains every score,
//! and hunts compromised accounts in the indexed data.
//!
//! Modules follow a document through the ingest path, in order (see `ARCHITECTURE.md`):
//!
//! - [`http`]: the axum surface: drop-in Elasticsearch endpoint, scoring API, KServe v2, model
//!   admin, Elasticsearch-shaped errors.
//! - [`bulk`]: a `_bulk` body becomes items, split over `Bytes`; bad lines fail in place.
//! - [`route`]: target index and field conditions decide which models score a document.
//! - [`features`]: a JSON document becomes a feature row (dotted ECS paths, transforms, and the
//!   per-entity behavioural state, warmed from Elasticsearch at startup by `features::warm`).
//! - [`score`]: a batch of rows becomes scores: our own tree-ensemble evaluator, tract for other graphs.
//! - [`explain`]: scores become per-feature contributions (TreeSHAP, linear, sampled Shapley).
//! - [`inference`]: one batch through one bundle, per-document results in the `inference` shape.
//! - [`enrich`]: results are written into the document at `ml.inference.<model>`.
//! - [`rewrite`]: the body to forward: untouched lines byte for byte, scored ones re-serialised.
//! - [`forward`]: the raw HTTP client to Elasticsearch, a deadline on every call.
//! - [`merge`]: Elasticsearch's items and Vigil's failed items, in request order; `filter_path`.
//!
//! Around the path: [`bundle`] (model bundles, checks, atomic reload), [`config`] (validated
//! configuration), [`es`] (clients to Elasticsearch), [`fields`] (every field name Vigil writes),
//! [`setup`] (`vigil setup`: templates, pipelines, Kibana assets), [`startup`] (build and bind,
//! drain on SIGTERM), [`tls`] (HTTPS on the listener), [`health`] (readiness), [`telemetry`]
//! (metrics, drift, ECS logs).
//!
//! Beside the ingest path, [`normalize`] maps identity-provider events (Okta, Entra ID, Windows,
//! sshd) onto the ECS fields features and rules read, and [`rules`] hunts compromised accounts in
//! the indexed data (`scheduler → query → evaluate → alert`, then per-user risk).
/// mimalloc instead of the system allocator, for every binary built on this crate (the `vigil`
/// binary, tests, benches, examples): parsing and re-serialising JSON allocates per field, and
/// under glibc's malloc a third of the scoring API's time went to malloc/free
/// (`docs/benchmarks.md`, "Scoring API").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod bulk;
pub mod bundle;
pub mod config;
pub mod enrich;
pub mod es;
pub mod explain;
pub mod features;
pub mod fields;
pub mod forward;
pub mod health;
pub mod http;
pub mod inference;
pub mod merge;
pub mod normalize;
pub mod rewrite;
pub mod route;
pub mod rules;
pub mod score;
pub mod setup;
pub mod startup;
pub mod telemetry;
pub mod tls;
