//! `tally credits grant|list|void`: prepaid credit per account.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::Subcommand;

use super::open_store;
use crate::billing::credits::CreditStatus;
use crate::finance::credits::{Figures, parse_grant, status};
use crate::finance::usd;

#[derive(Debug, Subcommand)]
pub enum CreditsCommand {
    /// Grant prepaid credit: invoices draw on it (the grant expiring first,
    /// then the oldest) up to their total.
    Grant {
        #[arg(long)]
        account: String,
        /// The amount in USD (at most cents), e.g. 100 or 49.99.
        #[arg(long)]
        usd: String,
        /// The last day it may be drawn by (YYYY-MM-DD): invoices of
        /// periods that start by then may draw on it.
        #[arg(long)]
        expires: Option<String>,
        #[arg(long)]
        note: Option<String>,
        /// Alert (and POST to the webhook) once when the account's balance
        /// falls below this (USD); kept for the account until set again.
        #[arg(long)]
        low_balance_usd: Option<String>,
    },
    /// Grants with what was drawn on them, and each account's balance.
    List {
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Void a grant: what is left of it can no longer be drawn (invoices
    /// that drew on it keep their draws).
    Void { id: i64 },
}

fn account_arg(account: &str) -> Result<()> {
    crate::record::validate_account(account).map_err(|m| anyhow!("--account {account:?} {m}"))
}

pub async fn credits_cmd(database: &str, cmd: CreditsCommand) -> Result<ExitCode> {
    match cmd {
        CreditsCommand::Grant {
            account,
            usd: amount,
            expires,
            note,
            low_balance_usd,
        } => {
            account_arg(&account)?;
            let amount = parse_grant(&amount).map_err(|m| anyhow!("--usd: {m}"))?;
            let expires = expires
                .map(|e| crate::estimate::parse_day(&e).map_err(|m| anyhow!("--expires: {m}")))
                .transpose()?;
            let threshold = low_balance_usd
                .map(|t| {
                    crate::finance::budget::parse_amount(&t)
                        .map_err(|m| anyhow!("--low-balance-usd: {m}"))
                })
                .transpose()?;
            let store = open_store(database).await?;
            let grant = store
                .grant_credit(&account, amount, expires, note.as_deref())
                .await?;
            if let Some(t) = threshold {
                store.set_low_balance(&account, t).await?;
            }
            println!(
                "credit #{} granted to {account}: {}{}",
                grant.id,
                usd(amount),
                expires.map_or_else(String::new, |e| format!(
                    ", usable by periods starting by {e}"
                ))
            );
        }
        CreditsCommand::List { account, json } => {
            if let Some(a) = &account {
                account_arg(a)?;
            }
            let store = open_store(database).await?;
            let book = crate::pricing::current_book(store.as_ref()).await?;
            let mut accounts: Vec<String> = store
                .credit_grants(account.as_deref())
                .await?
                .into_iter()
                .map(|g| g.account)
                .collect();
            accounts.dedup();
            let now = chrono::Utc::now();
            let mut statuses = Vec::with_capacity(accounts.len());
            for a in &accounts {
                statuses.push(status(store.as_ref(), &Figures::Fresh(&book), a, now).await?);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
            } else {
                for s in &statuses {
                    print_status(s);
                }
            }
        }
        CreditsCommand::Void { id } => {
            let store = open_store(database).await?;
            match store.void_credit(id).await? {
                Some(g) => println!("credit #{id} of {} voided", g.account),
                None => {
                    eprintln!("no credit grant #{id} that is not voided already");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(s: &CreditStatus) {
    println!(
        "{}: balance {} (granted {}, drawn {}, pending {}, expired {}, voided {})",
        s.account,
        usd(s.balance_usd),
        usd(s.granted_usd),
        usd(s.drawn_usd),
        usd(s.pending_usd),
        usd(s.expired_usd),
        usd(s.voided_usd)
    );
    for g in &s.grants {
        println!(
            "  #{:<5} {:>12} granted {}  expires {:<10}  drawn {:>10}  left {:>10}  {}{}",
            g.id,
            usd(g.usd),
            g.granted_at.get(..10).unwrap_or(&g.granted_at),
            g.expires_on.map_or("-".into(), |e| e.to_string()),
            usd(g.drawn_usd + g.pending_usd),
            usd(g.left_usd),
            g.state,
            g.note
                .as_deref()
                .map_or_else(String::new, |n| format!("  {n}"))
        );
    }
}
