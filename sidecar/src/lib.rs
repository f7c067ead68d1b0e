//! Vigil scores security events with ML models while they are indexed, explains every score,
//! and hunts compromised accounts in the indexed data.
//!
//! Modules follow a document through the ingest path, in order:
//!
//! - [`config`]: typed, validated configuration (raw serde structs become checked values).
//! - [`bundle`]: model bundles on disk: manifest, checks (hash, width, golden outputs), the
//!   registry that swaps them atomically on reload.
//! - [`features`]: a JSON document becomes a feature row (dotted ECS paths, transforms).
//! - [`score`]: a batch of rows becomes scores: our own tree-ensemble evaluator, tract for other graphs.
//! - [`explain`]: scores become per-feature contributions (TreeSHAP, linear, sampled Shapley).
//! - [`enrich`]: results are written into the document in the Elasticsearch `inference` shape.
//! - [`http`]: the axum surface: scoring API, KServe v2, model admin, Elasticsearch-shaped errors.
//! - [`startup`]: builds the application and binds it.
//!
//! Beside the ingest path, [`rules`] hunts compromised accounts in the indexed data (alerts,
//! per-user risk), and [`normalize`] maps identity-provider events onto the ECS fields rules read.
pub mod bundle;
pub mod config;
pub mod enrich;
pub mod es;
pub mod explain;
pub mod features;
pub mod fields;
pub mod http;
pub mod inference;
pub mod normalize;
pub mod rules;
pub mod score;
pub mod startup;
