//! The `tally` command line: the top-level arguments and the dispatch to one
//! module per command. Each command module holds its arguments and a thin
//! function that calls the library and prints: results on stdout, errors
//! on stderr.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::store::{self, Store};

mod activity;
mod credits;
mod demo;
mod details;
mod estimate;
mod finance;
mod gen_usage;
mod ingest;
mod invoice;
mod keys;
mod plans;
mod prices;
mod proxy;
mod rejected;
mod serve;

pub use gen_usage::GenArgs;
pub use ingest::IngestArgs;
pub use invoice::{Format, InvoiceArgs, InvoicesArgs};
pub use keys::KeysCommand;
pub use prices::{PricesArgs, PricesCommand};
pub use rejected::RejectedCommand;
pub use serve::ServeArgs;

#[derive(Debug, Parser)]
#[command(
    name = "tally",
    version,
    about = "Usage-metering and billing ledger for the Anthropic Messages API"
)]
pub struct Cli {
    /// Database URL: sqlite://FILE (created on first use) or postgres://…
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "sqlite://tally.db"
    )]
    pub database: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API.
    Serve(serve::ServeArgs),
    /// Apply pending database migrations (they also apply on every start).
    Migrate,
    /// Ingest NDJSON files (or `-` for stdin) into the ledger.
    Ingest(ingest::IngestArgs),
    /// Inspect and retry lines that were not recorded.
    #[command(subcommand)]
    Rejected(rejected::RejectedCommand),
    /// An account's invoice for a period (a draft until finalized).
    Invoice(invoice::InvoiceArgs),
    /// Every account's invoice for a period in one document.
    Invoices(invoice::InvoicesArgs),
    /// The price book: the version in force (or at --at), or `import FILE`.
    Prices(prices::PricesArgs),
    /// Account API keys: create (shown once), list, revoke.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The capture proxy for the Anthropic API (`--upstream`, `--listen`);
    /// `keys map|list|unmap` bind API keys (by their SHA-256) to accounts.
    Proxy(proxy::ProxyArgs),
    /// Monthly budgets per account and their alerts.
    #[command(subcommand)]
    Budget(finance::BudgetCommand),
    /// Account plans: what an account pays for its usage (markup, discount,
    /// overrides, minimum), by version.
    #[command(subcommand)]
    Plan(plans::PlanCommand),
    /// The seller's billing details (name, email, address, tax id).
    #[command(subcommand)]
    Org(details::OrgCommand),
    /// The accounts that have records, their periods and totals; `set` and
    /// `show` their billing details (who is billed, tax, payment terms).
    Accounts(activity::AccountsArgs),
    /// The months that hold records.
    Periods(activity::PeriodsArgs),
    /// Prepaid credit: grant (with expiry, note, low-balance alert), list
    /// with balances, void.
    #[command(subcommand)]
    Credits(credits::CreditsCommand),
    /// Each account's cost, price and margin in a period.
    Margins(plans::MarginsArgs),
    /// Export a period: its charges (FinOps FOCUS CSV) or its finalized invoices (QuickBooks, Xero).
    Export(finance::ExportArgs),
    /// Compare tally with a cost report exported from Anthropic's Admin API.
    Reconcile(finance::ReconcileArgs),
    /// Project the cost of a workload before deploying it, compare models,
    /// or reprice recorded usage on another model.
    Estimate(estimate::EstimateArgs),
    /// Fill an empty ledger with a realistic generated quarter (a dozen
    /// accounts), so `tally serve` has a dashboard worth seeing.
    Demo(demo::DemoArgs),
    /// Write synthetic usage records (NDJSON) for benchmarks and trials.
    #[command(hide = true)]
    GenUsage(gen_usage::GenArgs),
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let database = &cli.database;
    match cli.command {
        Command::Serve(args) => serve::serve(database, args).await,
        Command::Migrate => {
            store::open(database)
                .await
                .context("migrating the database")?;
            println!("migrations applied to {}", redact(database));
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest(args) => ingest::ingest(database, args).await,
        Command::Rejected(cmd) => rejected::rejected(database, cmd).await,
        Command::Invoice(args) => invoice::invoice(database, args).await,
        Command::Invoices(args) => invoice::invoices(database, args).await,
        Command::Prices(args) => prices::prices(database, args).await,
        Command::Keys(cmd) => keys::keys(database, cmd).await,
        Command::Proxy(cmd) => proxy::proxy(database, cmd).await,
        Command::Budget(cmd) => finance::budget_cmd(database, cmd).await,
        Command::Plan(cmd) => plans::plan_cmd(database, cmd).await,
        Command::Org(cmd) => details::org_cmd(database, cmd).await,
        Command::Accounts(args) => activity::accounts(database, args).await,
        Command::Periods(args) => activity::periods(database, args).await,
        Command::Credits(cmd) => credits::credits_cmd(database, cmd).await,
        Command::Margins(args) => plans::margins_cmd(database, args).await,
        Command::Export(args) => finance::export(database, args).await,
        Command::Reconcile(args) => finance::reconcile_cmd(database, args).await,
        Command::Estimate(args) => estimate::estimate_cmd(database, args).await,
        Command::Demo(args) => demo::demo(database, args).await,
        Command::GenUsage(args) => gen_usage::gen_usage(args),
    }
}

/// Hide a password in a database URL before printing it.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = url.get(scheme + 3..at).unwrap_or_default();
            match creds.split_once(':') {
                Some((user, _)) => format!(
                    "{}{user}:***{}",
                    url.get(..scheme + 3).unwrap_or_default(),
                    url.get(at..).unwrap_or_default()
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn open_store(url: &str) -> Result<Arc<dyn Store>> {
    store::open(url)
        .await
        .with_context(|| format!("opening the database {}", redact(url)))
}
