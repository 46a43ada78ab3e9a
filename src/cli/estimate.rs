//! `tally estimate`: project a workload's cost, compare models, or reprice
//! recorded usage (docs/estimates.md).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Args, ValueEnum};
use rust_decimal::Decimal;

use super::open_store;
use crate::billing::Period;
use crate::estimate::{self, WorkloadFile, parse_day, text};
use crate::pricing::PriceBook;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EstimateFormat {
    Json,
    Text,
}

#[derive(Debug, Args)]
pub struct EstimateArgs {
    /// Workload file, TOML or JSON (`-` reads standard input).
    #[arg(long, required_unless_present = "reprice")]
    pub workload: Option<PathBuf>,
    /// Price with the version in force on this date (YYYY-MM-DD; default: today, UTC).
    #[arg(long)]
    pub at: Option<String>,
    #[arg(long, value_enum, default_value = "json")]
    pub format: EstimateFormat,
    /// The same workloads on each of these models, side by side (comma-separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "reprice")]
    pub compare_models: Vec<String>,
    /// Reprice an account's recorded usage of a period on --model instead.
    #[arg(long, requires_all = ["account", "period", "model"], conflicts_with_all = ["workload", "at"])]
    pub reprice: bool,
    /// With --workload: price it at this account's plan (at cost without
    /// one). With --reprice: the account whose usage to reprice.
    #[arg(long)]
    pub account: Option<String>,
    /// Period to reprice (YYYY-MM).
    #[arg(long, requires = "reprice")]
    pub period: Option<String>,
    /// Model to reprice on.
    #[arg(long, requires = "reprice")]
    pub model: Option<String>,
    /// Volume factor for --reprice (e.g. 2.5).
    #[arg(
        long,
        default_value = "1",
        requires = "reprice",
        allow_hyphen_values = true
    )]
    pub scale: String,
}

fn read_workload(path: &PathBuf) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the workload from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn print<T: serde::Serialize>(value: &T, format: EstimateFormat, as_text: impl Fn(&T) -> String) {
    match format {
        EstimateFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into())
        ),
        EstimateFormat::Text => print!("{}", as_text(value)),
    }
}

pub async fn estimate_cmd(database: &str, args: EstimateArgs) -> Result<ExitCode> {
    if args.reprice {
        let store = open_store(database).await?;
        let book = crate::pricing::current_book(store.as_ref()).await?;
        let (Some(account), Some(period), Some(model)) = (&args.account, &args.period, &args.model)
        else {
            return Err(anyhow!("--reprice needs --account, --period and --model"));
        };
        let period = Period::parse(period).map_err(|m| anyhow!("--period: {m}"))?;
        let scale: Decimal = args
            .scale
            .trim()
            .parse()
            .map_err(|_| anyhow!("--scale: {:?} is not a number", args.scale))?;
        let e = estimate::reprice(store.as_ref(), &book, account, period, model, scale)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        print(&e, args.format, text::estimate);
        return Ok(ExitCode::SUCCESS);
    }
    // A workload needs only the price book (and the account's plan): the
    // shipped book unless one was imported, so a ledger that does not exist
    // yet is not created for it.
    let (book, plan) = if crate::store::sqlite_file_missing(database) {
        (PriceBook::shipped(), None)
    } else {
        let store = open_store(database).await?;
        let plan = match &args.account {
            Some(a) => {
                crate::record::validate_account(a).map_err(|m| anyhow!("--account {a:?} {m}"))?;
                crate::plans::plan_of(store.as_ref(), a).await?
            }
            None => None,
        };
        (crate::pricing::current_book(store.as_ref()).await?, plan)
    };
    let path = args
        .workload
        .as_ref()
        .ok_or_else(|| anyhow!("--workload FILE is required"))?;
    let at = match &args.at {
        Some(s) => parse_day(s).map_err(|m| anyhow!("--at: {m}"))?,
        None => chrono::Utc::now().date_naive(),
    };
    let name = path.display();
    let file = WorkloadFile::parse(&read_workload(path)?).map_err(|e| anyhow!("{name}: {e}"))?;
    if args.compare_models.is_empty() {
        let mut e =
            estimate::estimate_for(&book, plan, at, &file).map_err(|e| anyhow!("{name}: {e}"))?;
        e.account = args.account.clone();
        print(&e, args.format, text::estimate);
    } else {
        let c = estimate::compare_models(&book, plan, at, &file, &args.compare_models)
            .map_err(|e| anyhow!("{name}: {e}"))?;
        print(&c, args.format, text::comparison);
    }
    Ok(ExitCode::SUCCESS)
}
