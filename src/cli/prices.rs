//! `tally prices`: the price-book version in force (or at `--at`), or
//! `tally prices import FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use super::open_store;
use crate::pricing::import::{ImportError, import_price_book};

#[derive(Debug, Args)]
pub struct PricesArgs {
    /// Show the version in force on this date (YYYY-MM-DD); default: today.
    #[arg(long)]
    pub at: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<PricesCommand>,
}

#[derive(Debug, Subcommand)]
pub enum PricesCommand {
    /// Validate a price book file and make it the book in force.
    Import { file: PathBuf },
}

pub async fn prices(database: &str, args: PricesArgs) -> Result<ExitCode> {
    let store = open_store(database).await?;
    if let Some(PricesCommand::Import { file }) = args.command {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let name = file.display().to_string();
        let imported = match import_price_book(store.as_ref(), &name, &text).await {
            Ok(imported) => imported,
            Err(ImportError::Invalid(e)) => {
                eprintln!("error: {name}: {e}; the price book in force is unchanged");
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => return Err(e.into()),
        };
        println!(
            "imported price book #{} from {name}: {} versions, {} to {}",
            imported.id, imported.versions, imported.first, imported.last
        );
        return Ok(ExitCode::SUCCESS);
    }
    let at = match &args.at {
        Some(d) => chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| anyhow::anyhow!("--at {d:?}: expected a date, YYYY-MM-DD"))?,
        None => chrono::Utc::now().date_naive(),
    };
    let book = crate::pricing::current_book(store.as_ref()).await?;
    let Some(v) = book.version_at(at) else {
        bail!("no price-book version is in force on {at}");
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("price book version {} (in force on {at})", v.label());
    if let Some(s) = &v.summary {
        println!("  {s}");
    }
    println!("  source: {}", v.source);
    println!(
        "  batch discount {}; web search ${} per request; containers ${} per hour, minimum {} s; free {} h per {:?} ({:?}); code execution free with new web tools: {}",
        v.batch_discount,
        v.web_search_per_request,
        v.container_hour,
        v.container_minimum_seconds,
        v.free_container_hours,
        v.free_allowance_period,
        v.free_allowance_scope,
        v.web_tools_make_code_execution_free
    );
    println!("  refusals: {}", v.refusal_policy.describe());
    println!();
    println!(
        "{:<28} {:>8} {:>8} {:>9} {:>9} {:>9}  notes (USD per million tokens)",
        "model", "input", "output", "write 5m", "write 1h", "read"
    );
    for m in &v.models {
        let r = &m.rates;
        let mut notes = Vec::new();
        if !m.aliases.is_empty() {
            notes.push(format!("aliases {}", m.aliases.join(", ")));
        }
        for t in &m.tiers {
            notes.push(format!(
                "above {} input tokens: {}/{}/{}/{}/{}",
                t.above_input_tokens,
                t.rates.input,
                t.rates.output,
                t.rates.cache_write_5m,
                t.rates.cache_write_1h,
                t.rates.cache_read
            ));
        }
        if let Some(x) = m.us_multiplier {
            notes.push(format!("US-only inference x{x}"));
        }
        if let Some(f) = &m.fast {
            notes.push(format!("fast {}/{}", f.input, f.output));
        }
        println!(
            "{:<28} {:>8} {:>8} {:>9} {:>9} {:>9}  {}",
            m.id,
            r.input,
            r.output,
            r.cache_write_5m,
            r.cache_write_1h,
            r.cache_read,
            notes.join("; ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
