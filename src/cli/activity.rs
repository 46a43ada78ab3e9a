//! `tally accounts` (the accounts with records, their periods and totals)
//! and `tally periods` (the months that hold records): finding one's data.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::Args;

use super::details::AccountsCommand;
use super::open_store;
use crate::billing::{Period, activity};
use crate::documents::usd;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AccountsArgs {
    #[command(subcommand)]
    pub command: Option<AccountsCommand>,
    /// Only this month (YYYY-MM).
    #[arg(long)]
    pub period: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PeriodsArgs {
    #[arg(long)]
    pub json: bool,
}

pub async fn accounts(database: &str, args: AccountsArgs) -> Result<ExitCode> {
    if let Some(cmd) = args.command {
        return super::details::accounts_cmd(database, cmd).await;
    }
    let only = args
        .period
        .as_deref()
        .map(Period::parse)
        .transpose()
        .map_err(|m| anyhow!("--period: {m}"))?;
    let store = open_store(database).await?;
    let book = crate::pricing::current_book(store.as_ref()).await?;
    let accounts = activity::accounts(store.as_ref(), &book, only).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&accounts)?);
        return Ok(ExitCode::SUCCESS);
    }
    if accounts.is_empty() {
        match only {
            Some(p) => println!("no account has records in {p}"),
            None => println!("no records yet"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let w = accounts
        .iter()
        .map(|a| a.account.chars().count())
        .chain(["account".len()])
        .max()
        .unwrap_or_default();
    println!(
        "{:<w$}  {:<7}  {:>9}  {:>14}  status",
        "account", "period", "records", "total"
    );
    for a in &accounts {
        for p in &a.periods {
            println!(
                "{:<w$}  {:<7}  {:>9}  {:>14}  {}",
                a.account,
                p.period.to_string(),
                p.records,
                usd(p.total_usd),
                p.status
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn periods(database: &str, args: PeriodsArgs) -> Result<ExitCode> {
    let store = open_store(database).await?;
    let periods = activity::periods(store.as_ref()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&periods)?);
    } else if periods.is_empty() {
        println!("no records yet");
    } else {
        println!("{:<7}  {:>9}  {:>8}", "period", "records", "accounts");
        for p in &periods {
            println!(
                "{:<7}  {:>9}  {:>8}",
                p.period.to_string(),
                p.records,
                p.accounts
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
