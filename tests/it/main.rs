//! The integration tests, in one binary: one module per area, sharing the
//! helpers in `support` (a fresh database per test on either backend, a
//! running server, the `tally` binary, fixtures). One binary links once
//! instead of once per area.
//!
//! `cargo test --test it access::` runs one area; `… postgres::` one backend.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod support;

mod access;
mod architecture;
mod attribution;
mod billing;
mod billing_details;
mod billing_props;
mod cli;
mod credits;
mod dashboard_browser;
mod documents;
mod estimate;
mod finance;
mod first_hour;
mod http_ingest;
mod invoices_e2e;
mod large_records;
mod multiprocess;
mod parse;
mod plans;
mod proxy;
mod proxy_crash;
mod refusals;
mod retention;
mod schemathesis;
mod store_contract;
mod store_roles;
mod strict_input;
