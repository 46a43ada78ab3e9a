//! `tally demo`: fill an empty ledger with a realistic generated quarter, so
//! the dashboard, the invoices and the reports have something to show.
//!
//! The quarter is the last three calendar months up to now: the two full
//! months before this one (their invoices finalized, as a finance team
//! would have done) and this month so far. A dozen accounts of very
//! different sizes; the generator's demo mix (several models, prompt
//! caching, batch results, streams, web search, code execution in reused
//! containers, files preloaded, refusals, workspace, key, user and tag
//! attribution); and budgets on three accounts, one of them on course to
//! overrun.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::{Months, NaiveDate, Utc};
use clap::Args;
use rust_decimal::Decimal;

use super::{open_store, redact};
use crate::billing::{self, Period, activity};
use crate::ingest::files::ingest_files;
use crate::ingest::lines::MAX_LINE_BYTES;
use crate::record::{Defaults, Retention};
use crate::synth::{Generator, Profile};

/// The demo's accounts and the share of traffic each gets.
const ACCOUNTS: [(&str, u64); 12] = [
    ("northwind", 26),
    ("acme", 18),
    ("globex", 13),
    ("initech", 10),
    ("umbrella", 8),
    ("hooli", 6),
    ("vandelay", 5),
    ("soylent", 4),
    ("tyrell", 3),
    ("wonka", 3),
    ("cyberdyne", 2),
    ("stark", 2),
];

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many records to generate.
    #[arg(long, default_value_t = 20_000)]
    pub records: u64,
    /// Seed of the generator (the same seed and --now give the same ledger).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// When the quarter ends (RFC 3339; default: now).
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
}

pub async fn demo(database: &str, args: DemoArgs) -> Result<ExitCode> {
    if args.records == 0 {
        bail!("--records must be at least 1");
    }
    let now = match &args.now {
        Some(t) => crate::time::from_micros(
            crate::time::parse_rfc3339(t).map_err(|m| anyhow::anyhow!("--now: {m}"))?,
        ),
        None => Utc::now(),
    };
    let store = open_store(database).await?;
    if store.max_seq().await? > 0 {
        bail!(
            "the ledger at {} already holds records; tally demo fills an empty ledger only \
             (try --database sqlite://demo.db)",
            redact(database)
        );
    }
    let this_month = Period::of_day(now.date_naive());
    let first = this_month
        .first_day()
        .checked_sub_months(Months::new(2))
        .unwrap_or(this_month.first_day());
    let from = first.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    // The last record lands within the minute before `to`: in this month,
    // even in its first minutes.
    let month_start = this_month
        .first_day()
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    let to = now.max(month_start + chrono::Duration::seconds(120));

    // Generate to a temporary file (removed when dropped, whatever happens)
    // and ingest it as `tally ingest` would: streamed, in group commits,
    // memory flat.
    let file = tempfile::Builder::new()
        .prefix("tally-demo-")
        .suffix(".ndjson")
        .tempfile()
        .context("creating a temporary file for the demo's records")?;
    {
        let mut out = std::io::BufWriter::new(file.as_file());
        let lines = Generator::new(args.records, args.seed, ACCOUNTS.len() as u64)
            .profile(Profile::Demo)
            .accounts_named(&ACCOUNTS)
            .over(from.timestamp(), to.timestamp());
        for line in lines {
            serde_json::to_writer(&mut out, &line)?;
            std::io::Write::write_all(&mut out, b"\n")?;
        }
        std::io::Write::flush(&mut out)?;
    }
    let filled = fill(store, &file, first, this_month).await;
    drop(file);
    let Filled {
        accepted,
        accounts,
        finalized,
        budgets,
        last_month,
    } = filled.with_context(|| {
        format!(
            "the ledger at {} may now hold part of a demo: delete it (or give another \
             --database) before trying again",
            redact(database)
        )
    })?;

    let months = |d: NaiveDate| d.format("%B %Y").to_string();
    println!(
        "demo ledger ready in {}: {accepted} records across {accounts} accounts, {} to {}",
        redact(database),
        months(first),
        months(now.date_naive()),
    );
    println!(
        "  {finalized} invoices finalized for the full months; monthly budgets: {}",
        budgets.join(", ")
    );
    println!();
    // The commands to try next, on this ledger.
    let on = if database == "sqlite://tally.db" {
        String::new()
    } else {
        format!(" --database {}", redact(database))
    };
    println!("next:");
    println!("  tally serve{on}    (then open http://127.0.0.1:8080/)");
    println!("  tally accounts{on}");
    println!(
        "  tally invoice{on} --account {} --period {last_month} --format text",
        ACCOUNTS[0].0
    );
    Ok(ExitCode::SUCCESS)
}

/// What [`fill`] did.
struct Filled {
    accepted: u64,
    accounts: usize,
    finalized: usize,
    budgets: Vec<String>,
    last_month: Period,
}

/// Ingest the generated records, finalize the full months, set budgets.
async fn fill(
    store: std::sync::Arc<dyn crate::store::Store>,
    file: &tempfile::NamedTempFile,
    first: NaiveDate,
    this_month: Period,
) -> Result<Filled> {
    let files = [file.path().to_string_lossy().into_owned()];
    let summary = ingest_files(
        store.clone(),
        &files,
        Defaults::default(),
        Retention::Full,
        MAX_LINE_BYTES,
        |_| {},
    )
    .await?;
    if !summary.all_good() {
        bail!(
            "the demo's records were not all accepted ({} rejected, {} conflicts): {:?}",
            summary.rejected,
            summary.conflicts,
            summary.problems.first().map(|p| &p.error)
        );
    }

    // Finalize the full months, as a finance team would have.
    let book = crate::pricing::current_book(store.as_ref()).await?;
    let mut finalized = 0;
    let mut period = Period::of_day(first);
    while period < this_month {
        for a in activity::accounts(store.as_ref(), &book, Some(period)).await? {
            billing::finalize(store.as_ref(), &book, &a.account, period, false)
                .await
                .with_context(|| format!("finalizing {}'s {period} invoice", a.account))?;
            finalized += 1;
        }
        period = period.next();
    }

    // Budgets on the three largest accounts, from last month's spend: one
    // comfortable, one tight, one on course to overrun.
    let last_month = Period::of_day(
        this_month
            .first_day()
            .pred_opt()
            .unwrap_or(this_month.first_day()),
    );
    let spent = activity::accounts(store.as_ref(), &book, Some(last_month)).await?;
    let mut budgets = Vec::new();
    for ((account, _), percent) in ACCOUNTS.iter().zip([150, 110, 70]) {
        let Some(total) = spent
            .iter()
            .find(|a| a.account == *account)
            .and_then(|a| a.periods.first())
            .map(|p| p.total_usd)
        else {
            continue;
        };
        let monthly = (total * Decimal::from(percent) / Decimal::from(100))
            .round()
            .max(Decimal::ONE);
        store.set_budget(account, monthly).await?;
        budgets.push(format!("{account} ${monthly}"));
    }
    let mut accounts: Vec<String> = activity::account_periods(store.as_ref())
        .await?
        .into_iter()
        .map(|ap| ap.account)
        .collect();
    accounts.dedup();
    Ok(Filled {
        accepted: summary.accepted,
        accounts: accounts.len(),
        finalized,
        budgets,
        last_month,
    })
}
