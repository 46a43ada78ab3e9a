//! `tally ingest`: NDJSON files (or `-` for standard input) into the ledger,
//! with a progress display on a terminal and a summary on stdout.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::open_store;
use crate::ingest::Summary;
use crate::ingest::files::{Progress, STDIN, ingest_files};
use crate::ingest::lines::MAX_LINE_BYTES;
use crate::record::{Defaults, Retention};
use crate::time::parse_rfc3339;

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Account for lines that do not name one.
    #[arg(long)]
    pub account: Option<String>,
    /// `recorded_at` for lines that lack it (RFC 3339); default: now.
    #[arg(long)]
    pub recorded_at: Option<String>,
    /// The oldest day a record may claim (YYYY-MM-DD, default 2000-01-01):
    /// older ones are refused as mistakes unless a backfill that old is meant.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub oldest: Option<String>,
    /// What to keep of each line: `full` (verbatim) or `billing` (no prompts
    /// or completions; every figure tally produces is the same).
    #[arg(long, value_enum, default_value_t = Retention::Full)]
    pub retain: Retention,
    /// The longest line taken as a record, in bytes (a longer one is a
    /// rejected line; the lines after it are still read).
    #[arg(long, default_value_t = MAX_LINE_BYTES)]
    pub max_body_bytes: usize,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// NDJSON files; `-` reads standard input.
    #[arg(required = true)]
    pub files: Vec<String>,
}

/// The defaults given by `--account`, `--recorded-at` and `--oldest`, checked.
pub(super) fn defaults(
    account: Option<String>,
    recorded_at: Option<&str>,
    oldest: Option<&str>,
) -> Result<Defaults> {
    let oldest = oldest
        .map(crate::time::parse_oldest)
        .transpose()
        .map_err(|m| anyhow::anyhow!("--oldest: {m}"))?;
    let recorded_at = recorded_at
        .map(parse_rfc3339)
        .transpose()
        .map_err(|m| anyhow::anyhow!("--recorded-at: {m}"))?;
    if let Some(t) = recorded_at
        && let Some(why) = crate::time::out_of_range(
            t,
            oldest.unwrap_or(crate::time::EARLIEST),
            crate::time::now_micros(),
        )
    {
        anyhow::bail!("--recorded-at: {why}");
    }
    if let Some(a) = &account {
        crate::record::validate_account(a).map_err(|m| anyhow::anyhow!("--account {a:?} {m}"))?;
    }
    Ok(Defaults {
        account,
        recorded_at,
        oldest,
    })
}

pub async fn ingest(database: &str, args: IngestArgs) -> Result<ExitCode> {
    let defaults = defaults(
        args.account.clone(),
        args.recorded_at.as_deref(),
        args.oldest.as_deref(),
    )?;
    for f in args.files.iter().filter(|f| f.as_str() != STDIN) {
        std::fs::metadata(f).with_context(|| format!("cannot read {f}"))?;
    }
    let store = open_store(database).await?;

    let total: u64 = args
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok().map(|m| m.len()))
        .sum();
    let bar = progress_bar(total, args.files.iter().any(|f| f == STDIN));
    let summary = ingest_files(
        store,
        &args.files,
        defaults,
        args.retain,
        args.max_body_bytes,
        |p| match p {
            Progress::File(name) => bar.set_message(name.to_owned()),
            Progress::Committed(bytes) => bar.inc(bytes),
        },
    )
    .await;
    bar.finish_and_clear();
    let summary = summary?;

    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(if summary.all_good() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A progress bar on a terminal's stderr (hidden otherwise): bytes of
/// `total`, or a running byte count when standard input is among the inputs.
fn progress_bar(total: u64, stdin: bool) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    if stdin {
        // Standard input has no known length: show a running byte count.
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        return bar;
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn print_summary(s: &Summary) {
    println!(
        "accepted {}, duplicates {}, conflicts {}, rejected {}",
        s.accepted, s.duplicates, s.conflicts, s.rejected
    );
    for p in &s.problems {
        let what = if p.kind == "conflict" {
            "conflict"
        } else {
            "rejected"
        };
        println!(
            "  {what}: {}: {} (tally rejected show {})",
            p.source, p.error, p.rejected_id
        );
    }
    if s.problems_omitted > 0 {
        println!("  … and {} more (tally rejected list)", s.problems_omitted);
    }
}
