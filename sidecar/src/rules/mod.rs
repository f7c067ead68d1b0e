//! The rule engine: hunts compromised accounts in the indexed data.
//!
//! - [`schema`]: rule files (`rules/*.toml`) → validated [`schema::Rule`]s, with example events.
//! - [`filter`]: the filter language (compiles to a `bool` query, evaluates in memory alike).
//! - [`eval`]: pure evaluation of the six rule types over events → findings.
//! - [`query`]: the same on Elasticsearch (composite aggregations, point in time + `search_after`).
//! - [`alert`]: findings → ECS alerts with deterministic ids.
//! - [`scheduler`]: interval and look-back, a checkpoint per rule, replicas coordinating through
//!   optimistic concurrency, bounded catch-up, suppression.
//! - [`risk`]: per-user risk from alerts, the way Elastic's entity risk engine computes it.
pub mod alert;
pub mod doc;
pub mod esapi;
pub mod eval;
pub mod filter;
pub mod kibana;
pub mod mitre;
pub mod query;
pub mod risk;
pub mod scheduler;
pub mod schema;

pub use schema::{load_dir, Rule, RuleDefaults, RuleError, RuleSetError};
