//! tally: a usage-metering and billing ledger for the Anthropic Messages API.
//!
//! Module map:
//! - [`record`]: the ledger record and its invariants;
//! - [`ingest`]: reading NDJSON lines, parsing every accepted input shape,
//!   ingesting files, retrying rejected lines, and ingest summaries;
//! - [`price_import`]: validating and storing a price book;
//! - [`store`]: the storage trait and its SQLite and PostgreSQL backends;
//! - [`ledger`]: group commit in front of a store (used by the HTTP API);
//! - [`http`]: the axum API; [`cli`]: the command line;
//! - [`migrations`]: embedded schema migrations; [`synth`]: synthetic data.

pub mod auth;
pub mod billing;
pub mod cli;
pub mod dashboard;
pub mod estimate;
pub mod finance;
pub mod http;
pub mod ingest;
pub mod ledger;
pub mod migrations;
pub mod price_import;
pub mod pricing;
pub mod record;
pub mod store;
pub mod synth;
