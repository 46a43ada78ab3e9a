//! `tally invoice` (one account's invoice for a period, or finalizing it)
//! and `tally invoices` (every account's for a period).

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

use super::open_store;
use crate::billing::{self, Period};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Csv,
    /// A self-contained printable page.
    Html,
    /// A PDF (on the seller's paper: A4 unless `tally org set --paper letter`).
    Pdf,
    /// A readable table for a terminal.
    Text,
}

#[derive(Debug, Args)]
pub struct InvoiceArgs {
    #[arg(long)]
    pub account: String,
    /// The month, YYYY-MM.
    #[arg(long)]
    pub period: String,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Freeze the invoice: it gets a number and never changes again.
    #[arg(long)]
    pub finalize: bool,
    /// With --finalize: freeze even though some usage has no price.
    #[arg(long, requires = "finalize")]
    pub allow_unpriced: bool,
    /// Add the usage split by workspace, api_key_id, user or tag:KEY (JSON).
    #[arg(long, value_name = "DIM")]
    pub breakdown: Option<String>,
    /// Exit 1 (after printing the empty invoice) when the account has no
    /// records at all, as a typo would.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct InvoicesArgs {
    /// The month, YYYY-MM.
    #[arg(long)]
    pub period: String,
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
}

pub async fn invoice(database: &str, args: InvoiceArgs) -> Result<ExitCode> {
    let period = Period::parse(&args.period).map_err(|m| anyhow::anyhow!("--period: {m}"))?;
    crate::record::validate_account(&args.account)
        .map_err(|m| anyhow::anyhow!("--account {:?} {m}", args.account))?;
    let breakdown = match &args.breakdown {
        Some(d) if !matches!(args.format, Format::Json) => {
            bail!(
                "--breakdown {d:?}: the breakdown is part of the JSON invoice (use --format json)"
            )
        }
        Some(d) => Some(
            crate::record::Dimension::parse(d).map_err(|m| anyhow::anyhow!("--breakdown: {m}"))?,
        ),
        None => None,
    };
    let store = open_store(database).await?;
    let book = crate::pricing::current_book(store.as_ref()).await?;
    let no_records = billing::activity::no_records(store.as_ref(), &args.account).await?;
    if let Some(n) = no_records.as_ref().filter(|n| args.finalize && !n.known) {
        // Finalizing takes the period's next invoice number for good: never
        // for a name that is most likely a typo.
        eprintln!(
            "error: not finalized: tally knows nothing of account {:?} (no records, plan, billing details, credit or budget); {}",
            args.account,
            hint(n.closest.as_deref())
        );
        return Ok(ExitCode::FAILURE);
    }
    let (json, csv) = if args.finalize {
        match billing::finalize(
            store.as_ref(),
            &book,
            &args.account,
            period,
            args.allow_unpriced,
        )
        .await
        {
            Ok(f) => (f.json, f.csv),
            Err(billing::FinalizeError::Unpriced(models)) => {
                eprintln!(
                    "error: not finalized: the invoice has unpriced usage ({models}); import prices for it, or use --allow-unpriced"
                );
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        let r = billing::invoice(store.as_ref(), &book, &args.account, period).await?;
        (r.json, r.csv)
    };
    let json = match &breakdown {
        Some(dim) => {
            let parts =
                billing::breakdown(store.as_ref(), &book, &args.account, period, dim).await?;
            billing::with_breakdown(&json, &parts)
        }
        None => json,
    };
    match args.format {
        Format::Json => print!("{json}"),
        Format::Csv => print!("{csv}"),
        Format::Text => print!("{}", billing::documents::text(&json, &book, period)?),
        Format::Html | Format::Pdf => {
            let kind = match args.format {
                Format::Pdf => billing::DocumentKind::Pdf,
                _ => billing::DocumentKind::Html,
            };
            let bytes =
                billing::invoice_document(store.as_ref(), &book, &args.account, period, kind)
                    .await?;
            write_stdout(&bytes)?;
        }
    }
    // No records at all is most likely a typo: say so on stderr, naming
    // the closest known account; `--strict` makes it an error.
    let Some(n) = no_records else {
        return Ok(ExitCode::SUCCESS);
    };
    eprintln!(
        "warning: the ledger has no records for account {:?}; {}",
        args.account,
        hint(n.closest.as_deref())
    );
    Ok(if args.strict {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What to suggest for an unknown account.
fn hint(closest: Option<&str>) -> String {
    match closest {
        Some(name) => format!("did you mean {name:?}?"),
        None => "`tally accounts` lists the accounts that have records".to_owned(),
    }
}

/// Bytes to standard output as they are (a PDF is not text).
fn write_stdout(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

pub async fn invoices(database: &str, args: InvoicesArgs) -> Result<ExitCode> {
    let period = Period::parse(&args.period).map_err(|m| anyhow::anyhow!("--period: {m}"))?;
    let store = open_store(database).await?;
    let book = crate::pricing::current_book(store.as_ref()).await?;
    match args.format {
        Format::Html | Format::Pdf => {
            bail!(
                "--format {:?}: documents are per invoice (tally invoice --account A --format html|pdf)",
                args.format
            )
        }
        Format::Csv => print!(
            "{}",
            billing::period_csv(store.as_ref(), &book, period).await?
        ),
        Format::Text => {
            let all = billing::period_invoices(store.as_ref(), &book, period).await?;
            if all.is_empty() {
                println!("No invoices for {period}.");
            }
            let mut first = true;
            for r in all {
                if !first {
                    println!();
                }
                first = false;
                print!("{}", billing::documents::text(&r.json, &book, period)?);
            }
        }
        Format::Json => {
            let mut docs = Vec::new();
            for r in billing::period_invoices(store.as_ref(), &book, period).await? {
                docs.push(serde_json::from_str::<serde_json::Value>(&r.json)?);
            }
            println!("{}", serde_json::to_string_pretty(&docs)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
