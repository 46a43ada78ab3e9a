//! `tally rejected`: list and show stored rejected lines, and retry one.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;

use super::ingest::defaults;
use super::open_store;
use crate::ingest::retry::{Retried, retry_rejected};
use crate::time::to_micros;

#[derive(Debug, Subcommand)]
pub enum RejectedCommand {
    /// List rejected lines, newest first.
    List {
        #[arg(long)]
        json: bool,
        /// Include lines that a retry has since recorded.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// Show one rejected line: the error and its raw bytes.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Parse and ingest a rejected line again (e.g. with the account it lacked).
    Retry {
        id: i64,
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        recorded_at: Option<String>,
        /// The oldest day the record may claim (default 2000-01-01).
        #[arg(long, value_name = "YYYY-MM-DD")]
        oldest: Option<String>,
    },
}

pub async fn rejected(database: &str, cmd: RejectedCommand) -> Result<ExitCode> {
    let store = open_store(database).await?;
    match cmd {
        RejectedCommand::List { json, all, limit } => {
            let entries = store.rejected_list(all, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                println!("no rejected lines");
            } else {
                for e in &entries {
                    println!(
                        "#{:<6} {}  {:<12} {}: {}",
                        e.id, e.time, e.reason, e.source, e.error
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RejectedCommand::Show { id, json } => {
            let Some(e) = store.rejected_get(id).await? else {
                bail!("no rejected line with id {id}");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                println!("id:          {}", e.id);
                println!("first seen:  {}", e.time);
                println!("last seen:   {} ({} times)", e.last_seen, e.occurrences);
                println!("status:      {}", e.status);
                println!("reason:      {}", e.reason);
                println!("source:      {}", e.source);
                println!("error:       {}", e.error);
                println!("raw:");
                println!("{}", e.raw);
            }
            Ok(ExitCode::SUCCESS)
        }
        RejectedCommand::Retry {
            id,
            account,
            recorded_at,
            oldest,
        } => {
            let given = defaults(account, recorded_at.as_deref(), oldest.as_deref())?;
            let now = to_micros(chrono::Utc::now());
            match retry_rejected(store.as_ref(), id, given, now).await? {
                Retried::Recorded { key } => {
                    println!("recorded {key}");
                    Ok(ExitCode::SUCCESS)
                }
                Retried::Duplicate { key } => {
                    println!("duplicate: {key} was already recorded");
                    Ok(ExitCode::SUCCESS)
                }
                Retried::StillRejected(err) => {
                    eprintln!("still rejected: {err}");
                    Ok(ExitCode::FAILURE)
                }
                Retried::StillConflict { message } => {
                    eprintln!("still a conflict: {message}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
