//! `tally plan set|show|list` (an account's prices) and `tally margins`
//! (what each account's usage cost, what it is priced at, and the margin).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand};

use super::open_store;
use crate::billing::Period;
use crate::billing::daily::period_costs;
use crate::finance::{margins, usd};
use crate::plans::Plan;

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Set an account's plan from a TOML file (validated whole first: a bad
    /// file changes nothing). It replaces the account's plan; the earlier
    /// one stays on record.
    Set {
        #[arg(long)]
        account: String,
        /// The plan file (TOML; `-` = stdin).
        #[arg(long)]
        file: PathBuf,
    },
    /// An account's plan in force: its file and its versions.
    Show {
        #[arg(long)]
        account: String,
        #[arg(long)]
        json: bool,
    },
    /// Every account with a plan, and the version in force today.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct MarginsArgs {
    #[arg(long)]
    pub period: String,
    #[arg(long)]
    pub json: bool,
}

fn account_arg(account: &str) -> Result<()> {
    crate::record::validate_account(account).map_err(|m| anyhow!("--account {account:?} {m}"))
}

pub async fn plan_cmd(database: &str, cmd: PlanCommand) -> Result<ExitCode> {
    match cmd {
        PlanCommand::Set { account, file } => {
            account_arg(&account)?;
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading the plan from stdin")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            // Checked before the database is touched: a bad file changes nothing.
            let plan = Plan::parse(&text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            let store = open_store(database).await?;
            let stored = store.set_plan(&account, &text).await?;
            println!(
                "plan of {account} set (#{}): {} version(s), {}",
                stored.id,
                plan.versions().len(),
                in_force_today(&plan)
            );
        }
        PlanCommand::Show { account, json } => {
            account_arg(&account)?;
            let store = open_store(database).await?;
            let Some(stored) = store.plan(&account).await? else {
                eprintln!("{account} has no plan: it is billed at cost");
                return Ok(ExitCode::FAILURE);
            };
            let plan = Plan::parse(&stored.toml)
                .map_err(|e| anyhow!("the stored plan of {account} no longer parses: {e}"))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&crate::plans::as_json(&stored, &plan))?
                );
            } else {
                println!(
                    "plan of {account}, set {} (#{}); {}",
                    stored.set_at,
                    stored.id,
                    in_force_today(&plan)
                );
                print!("{}", stored.toml);
            }
        }
        PlanCommand::List { json } => {
            let store = open_store(database).await?;
            let mut out = Vec::new();
            for stored in store.plans().await? {
                let plan = Plan::parse(&stored.toml).map_err(|e| {
                    anyhow!(
                        "the stored plan of {} no longer parses: {e}",
                        stored.account
                    )
                })?;
                out.push((stored, plan));
            }
            if json {
                let listed: Vec<serde_json::Value> = out
                    .iter()
                    .map(|(s, p)| crate::plans::as_json(s, p))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else {
                println!(
                    "{:<24} {:>8} {:>12} {:>8} {:>9} {:>12} {:>9}",
                    "account", "versions", "in force", "markup", "discount", "minimum", "overrides"
                );
                let today = chrono::Utc::now().date_naive();
                for (stored, plan) in &out {
                    let v = plan.version_at(today);
                    let pct = |d: rust_decimal::Decimal| format!("{d}%");
                    println!(
                        "{:<24} {:>8} {:>12} {:>8} {:>9} {:>12} {:>9}",
                        stored.account,
                        plan.versions().len(),
                        v.map_or("-".into(), |v| v.effective_from.to_string()),
                        v.map_or("-".into(), |v| pct(v.markup_percent)),
                        v.map_or("-".into(), |v| pct(v.discount_percent)),
                        v.and_then(|v| v.minimum_monthly_usd)
                            .map_or("-".into(), usd),
                        v.map_or(0, |v| v.overrides.len()),
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn in_force_today(plan: &Plan) -> String {
    match plan.version_at(chrono::Utc::now().date_naive()) {
        Some(v) => format!("version of {} in force today", v.effective_from),
        None => "no version in force yet (billed at cost until the first)".into(),
    }
}

pub async fn margins_cmd(database: &str, args: MarginsArgs) -> Result<ExitCode> {
    let period = Period::parse(&args.period).map_err(|m| anyhow!("--period: {m}"))?;
    let store = open_store(database).await?;
    let book = crate::pricing::current_book(store.as_ref()).await?;
    let costs = period_costs(store.as_ref(), &book, period, None, &[]).await?;
    let rows = margins::of_period(&costs);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<24} {:>14} {:>14} {:>14} {:>9}",
            "account", "cost", "price", "margin", "margin %"
        );
        for r in &rows {
            println!(
                "{:<24} {:>14} {:>14} {:>14} {:>9}",
                r.account,
                usd(r.cost),
                usd(r.price),
                usd(r.margin),
                r.margin_percent.map_or("-".into(), |p| format!("{p}%"))
            );
        }
        let total = margins::total(&rows);
        println!(
            "{:<24} {:>14} {:>14} {:>14}",
            "all accounts",
            usd(total.cost),
            usd(total.price),
            usd(total.margin)
        );
    }
    Ok(ExitCode::SUCCESS)
}
