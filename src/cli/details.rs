//! `tally org set|show` (the seller's billing details) and `tally accounts
//! set|show A` (an account's: who is billed, its tax and payment terms).
//! `set` changes only the fields given; an empty value (`--name ""`)
//! clears one.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::{Args, Subcommand};
use rust_decimal::Decimal;

use super::open_store;
use crate::billing::details::{Details, SELLER};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Set the seller's details (printed on every invoice).
    Set {
        #[command(flatten)]
        party: PartyArgs,
        /// The paper PDF invoices are laid out on.
        #[arg(long, value_enum)]
        paper: Option<crate::documents::Paper>,
    },
    /// The seller's details.
    Show {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Set an account's billing details.
    Set {
        account: String,
        #[command(flatten)]
        party: PartyArgs,
        /// Tax added on the total after credit, in percent (e.g. 20).
        #[arg(long)]
        tax_rate_percent: Option<String>,
        /// What the tax is called on the invoice (e.g. VAT).
        #[arg(long)]
        tax_label: Option<String>,
        /// No tax: the customer accounts for it (the invoice says so).
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        reverse_charge: Option<bool>,
        /// Days from issue to due date (default 30; empty: back to the default).
        #[arg(long)]
        terms_days: Option<String>,
    },
    /// An account's billing details.
    Show {
        account: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct PartyArgs {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    email: Option<String>,
    /// The postal address (lines separated by `\n` or a newline).
    #[arg(long)]
    address: Option<String>,
    #[arg(long)]
    tax_id: Option<String>,
}

/// `Some("")` clears a field, `Some(v)` sets it, `None` keeps it.
fn merge(field: &mut Option<String>, given: Option<String>) {
    if let Some(v) = given {
        *field = Some(v).filter(|v| !v.is_empty());
    }
}

impl PartyArgs {
    fn merge_into(self, d: &mut Details) {
        merge(&mut d.name, self.name);
        merge(&mut d.email, self.email);
        // `\n` in an address is a line break (a shell argument has none).
        merge(&mut d.address, self.address.map(|a| a.replace("\\n", "\n")));
        merge(&mut d.tax_id, self.tax_id);
    }
}

async fn current(store: &dyn Store, party: &str) -> Result<Details> {
    Ok(match store.details_as_of(party, i64::MAX).await? {
        Some(s) => Details::from_stored(&s.details)?,
        None => Details::default(),
    })
}

async fn save(store: &dyn Store, party: &str, d: &Details, what: &str) -> Result<()> {
    d.validate().map_err(|m| anyhow!("{what}: {m}"))?;
    store.set_details(party, &serde_json::to_string(d)?).await?;
    Ok(())
}

fn print(d: &Details, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(d)?);
        return Ok(());
    }
    let rows = [
        ("name", d.name.clone()),
        ("email", d.email.clone()),
        ("address", d.address.as_ref().map(|a| a.replace('\n', ", "))),
        ("tax id", d.tax_id.clone()),
        ("tax rate", d.tax_rate_percent.map(|r| format!("{r}%"))),
        ("tax label", d.tax_label.clone()),
        ("reverse charge", d.reverse_charge.then(|| "yes".to_owned())),
        ("terms", d.terms_days.map(|t| format!("{t} days"))),
        ("paper", d.paper.map(|p| format!("{p:?}").to_lowercase())),
    ];
    for (k, v) in rows {
        if let Some(v) = v {
            println!("{k:<15} {v}");
        }
    }
    Ok(())
}

pub async fn org_cmd(database: &str, cmd: OrgCommand) -> Result<ExitCode> {
    let store = open_store(database).await?;
    match cmd {
        OrgCommand::Set { party, paper } => {
            let mut d = current(store.as_ref(), SELLER).await?;
            party.merge_into(&mut d);
            if paper.is_some() {
                d.paper = paper;
            }
            save(store.as_ref(), SELLER, &d, "org").await?;
            println!("seller details set");
        }
        OrgCommand::Show { json } => print(&current(store.as_ref(), SELLER).await?, json)?,
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn accounts_cmd(database: &str, cmd: AccountsCommand) -> Result<ExitCode> {
    match cmd {
        AccountsCommand::Set {
            account,
            party,
            tax_rate_percent,
            tax_label,
            reverse_charge,
            terms_days,
        } => {
            crate::record::validate_account(&account)
                .map_err(|m| anyhow!("account {account:?} {m}"))?;
            let store = open_store(database).await?;
            let mut d = current(store.as_ref(), &account).await?;
            party.merge_into(&mut d);
            if let Some(r) = tax_rate_percent {
                d.tax_rate_percent = if r.is_empty() {
                    None
                } else {
                    Some(r.trim().parse::<Decimal>().map_err(|_| {
                        anyhow!("--tax-rate-percent {r:?} is not a number (e.g. 20 or 7.5)")
                    })?)
                };
            }
            merge(&mut d.tax_label, tax_label);
            if let Some(rc) = reverse_charge {
                d.reverse_charge = rc;
            }
            if let Some(t) = terms_days {
                d.terms_days = if t.is_empty() {
                    None
                } else {
                    Some(t.trim().parse().map_err(|_| {
                        anyhow!("--terms-days {t:?} is not a number of days (0 to 365)")
                    })?)
                };
            }
            save(store.as_ref(), &account, &d, "--account").await?;
            println!("billing details of {account} set");
        }
        AccountsCommand::Show { account, json } => {
            crate::record::validate_account(&account)
                .map_err(|m| anyhow!("account {account:?} {m}"))?;
            let store = open_store(database).await?;
            print(&current(store.as_ref(), &account).await?, json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
