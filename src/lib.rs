//! tally: a usage-metering and billing ledger for the Anthropic Messages API.
//!
//! Module map, from the bottom up (a module uses only those above it in
//! this list, never the other way round):
//! - [`whole`]: integers in JSON (`39` or `39.0`);
//! - [`time`]: instants as UTC microseconds, day numbers, RFC 3339;
//!   [`net`]: listening sockets;
//! - [`record`]: the ledger record, its invariants, and rejected lines;
//! - [`store`]: the storage role traits and their SQLite and PostgreSQL
//!   backends, with the schema migrations;
//! - [`pricing`]: the price book (parsing, the book in force, importing);
//! - [`plans`]: account plans, which price an account's usage from its cost;
//! - [`ingest`]: reading NDJSON lines, parsing every accepted input shape,
//!   ingesting files, retrying rejected lines, and ingest summaries;
//! - [`ledger`]: group commit in front of a store (used by the HTTP API);
//! - [`billing`]: usage → priced invoices; [`finance`]: the views built on
//!   it; [`estimate`]: costs of workloads not yet run;
//! - [`http`]: the axum API; [`dashboard`]: its HTML page; [`cli`]: the
//!   command line; [`synth`]: synthetic data; [`auth`]: API keys;
//!   [`proxy`]: the capture proxy, recording through [`ingest`].

// The OpenAPI document is one `json!` literal, deeper than the default allows.
#![recursion_limit = "256"]

pub mod auth;
pub mod billing;
pub mod charge;
pub mod cli;
pub mod dashboard;
pub mod documents;
pub mod estimate;
pub mod finance;
pub mod html;
pub mod http;
pub mod ingest;
pub mod ledger;
pub mod net;
pub mod plans;
pub mod pricing;
pub mod proxy;
pub mod record;
pub mod store;
pub mod synth;
pub mod time;
pub mod whole;
