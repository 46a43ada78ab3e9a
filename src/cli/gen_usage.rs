//! `tally gen-usage` (hidden): synthetic usage records as NDJSON, for
//! benchmarks and trials.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct GenArgs {
    /// How many records.
    #[arg(long, default_value_t = 1000)]
    pub records: u64,
    /// Seed of the generator (same seed, same file).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output file (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The traffic mix: `default`, or `code-execution` (about a third of
    /// records in reused containers, some with files preloaded).
    #[arg(long, value_enum, default_value_t)]
    pub profile: crate::synth::Profile,
    /// Write the records in random order, as a backfill of several log files
    /// would arrive (holds the whole file in memory).
    #[arg(long)]
    pub shuffle: bool,
}

pub fn gen_usage(args: GenArgs) -> Result<ExitCode> {
    let out: Box<dyn Write> = match &args.out {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let options = crate::synth::Options {
        profile: args.profile,
        shuffle: args.shuffle,
    };
    crate::synth::write_ndjson_with(
        std::io::BufWriter::new(out),
        args.records,
        args.seed,
        options,
    )?;
    Ok(ExitCode::SUCCESS)
}
