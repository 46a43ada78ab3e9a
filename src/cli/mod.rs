//! The `tally` command line: argument parsing (clap) and one function per
//! command. Commands print results on stdout and errors on stderr.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::billing::{self, Period};
use crate::http::{self, AppState, ServeConfig};
use crate::ingest::parse::parse_record;
use crate::ingest::pipeline::OrderedCommitter;
use crate::ingest::{ChunkBuilder, Summary};
use crate::ledger::Ledger;
use crate::pricing::PriceBook;
use crate::record::{Defaults, Origin};
use crate::store::{self, RecordOutcome, Store, WriteBatch, WriteOutcome};
use crate::time::parse_rfc3339;
use crate::time::to_micros;

mod estimate;
mod finance;

#[derive(Debug, Parser)]
#[command(
    name = "tally",
    version,
    about = "Usage-metering and billing ledger for the Anthropic Messages API"
)]
pub struct Cli {
    /// Database URL: sqlite://FILE (created on first use) or postgres://…
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "sqlite://tally.db"
    )]
    pub database: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API.
    Serve(ServeArgs),
    /// Apply pending database migrations (they also apply on every start).
    Migrate,
    /// Ingest NDJSON files (or `-` for stdin) into the ledger.
    Ingest(IngestArgs),
    /// Inspect and retry lines that were not recorded.
    #[command(subcommand)]
    Rejected(RejectedCommand),
    /// An account's invoice for a period (a draft until finalized).
    Invoice(InvoiceArgs),
    /// Every account's invoice for a period in one document.
    Invoices(InvoicesArgs),
    /// The price book: the version in force (or at --at), or `import FILE`.
    Prices(PricesArgs),
    /// Account API keys: create (shown once), list, revoke.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Monthly budgets per account and their alerts.
    #[command(subcommand)]
    Budget(finance::BudgetCommand),
    /// Export a period's charges (FinOps FOCUS CSV).
    Export(finance::ExportArgs),
    /// Compare tally with a cost report exported from Anthropic's Admin API.
    Reconcile(finance::ReconcileArgs),
    /// Project the cost of a workload before deploying it, compare models,
    /// or reprice recorded usage on another model.
    Estimate(estimate::EstimateArgs),
    /// Write synthetic usage records (NDJSON) for benchmarks and trials.
    #[command(hide = true)]
    GenUsage(GenArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Admin bearer token; without it tally serves on loopback only.
    #[arg(long, env = "TALLY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Largest body of `POST /v1/usage`, and longest line of a batch, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body_bytes: usize,
    /// Largest body of `POST /v1/usage/batch`, in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    pub max_batch_bytes: u64,
    /// URL budget alerts are POSTed to (JSON).
    #[arg(long, env = "TALLY_ALERT_WEBHOOK")]
    pub alert_webhook: Option<String>,
    /// Seconds between budget checks (and retries of undelivered alerts).
    #[arg(long, default_value_t = 60)]
    pub alert_interval: u64,
    /// Seconds finance views may reuse a period's figures while records keep arriving.
    #[arg(long, default_value_t = 10)]
    pub finance_max_age: u64,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Account for lines that do not name one.
    #[arg(long)]
    pub account: Option<String>,
    /// `recorded_at` for lines that lack it (RFC 3339); default: now.
    #[arg(long)]
    pub recorded_at: Option<String>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// NDJSON files; `-` reads standard input.
    #[arg(required = true)]
    pub files: Vec<String>,
}

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
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key for an account; the key is printed once, alone on the last line.
    Create {
        #[arg(long)]
        account: String,
    },
    /// List keys (never the keys themselves).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id.
    Revoke { id: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Csv,
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
}

#[derive(Debug, Args)]
pub struct InvoicesArgs {
    /// The month, YYYY-MM.
    #[arg(long)]
    pub period: String,
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
}

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

pub async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(&cli.database, args).await,
        Command::Migrate => {
            store::open(&cli.database)
                .await
                .context("migrating the database")?;
            println!("migrations applied to {}", redact(&cli.database));
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest(args) => ingest(&cli.database, args).await,
        Command::Rejected(cmd) => rejected(&cli.database, cmd).await,
        Command::Invoice(args) => invoice(&cli.database, args).await,
        Command::Invoices(args) => invoices(&cli.database, args).await,
        Command::Prices(args) => prices(&cli.database, args).await,
        Command::Keys(cmd) => keys(&cli.database, cmd).await,
        Command::Budget(cmd) => finance::budget_cmd(&cli.database, cmd).await,
        Command::Export(args) => finance::export(&cli.database, args).await,
        Command::Reconcile(args) => finance::reconcile_cmd(&cli.database, args).await,
        Command::Estimate(args) => estimate::estimate_cmd(&cli.database, args).await,
        Command::GenUsage(args) => {
            let out: Box<dyn Write> = match &args.out {
                Some(p) => Box::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                ),
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
    }
}

/// Hide a password in a database URL before printing it.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = url.get(scheme + 3..at).unwrap_or_default();
            match creds.split_once(':') {
                Some((user, _)) => format!(
                    "{}{user}:***{}",
                    url.get(..scheme + 3).unwrap_or_default(),
                    url.get(at..).unwrap_or_default()
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn open_store(url: &str) -> Result<Arc<dyn Store>> {
    store::open(url)
        .await
        .with_context(|| format!("opening the database {}", redact(url)))
}

async fn serve(database: &str, args: ServeArgs) -> Result<ExitCode> {
    let config = ServeConfig {
        admin_token: args.admin_token.filter(|t| !t.is_empty()),
        max_body_bytes: args.max_body_bytes,
        max_batch_bytes: args.max_batch_bytes,
        alert_webhook: args.alert_webhook.filter(|u| !u.is_empty()),
        alert_interval: std::time::Duration::from_secs(args.alert_interval.max(1)),
        finance_max_age: std::time::Duration::from_secs(args.finance_max_age),
    };
    if let Err(msg) = http::check_listen_policy(&args.listen, &config) {
        bail!(msg);
    }
    let store = open_store(database).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let state = AppState::new(Ledger::start(store), config);
    http::serve(listener, state, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

fn defaults(account: Option<String>, recorded_at: Option<&str>) -> Result<Defaults> {
    let recorded_at = recorded_at
        .map(parse_rfc3339)
        .transpose()
        .map_err(|m| anyhow::anyhow!("--recorded-at: {m}"))?;
    if let Some(a) = &account {
        crate::record::validate_account(a).map_err(|m| anyhow::anyhow!("--account {a:?} {m}"))?;
    }
    Ok(Defaults {
        account,
        recorded_at,
    })
}

/// What the reader thread sends to the writer.
enum Feed {
    File { name: String },
    Chunk { batch: WriteBatch, bytes: u64 },
}

async fn ingest(database: &str, args: IngestArgs) -> Result<ExitCode> {
    let defaults = defaults(args.account.clone(), args.recorded_at.as_deref())?;
    for f in args.files.iter().filter(|f| f.as_str() != "-") {
        std::fs::metadata(f).with_context(|| format!("cannot read {f}"))?;
    }
    let store = open_store(database).await?;

    let total: u64 = args
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok().map(|m| m.len()))
        .sum();
    let progress = if std::io::stderr().is_terminal() && args.files.iter().any(|f| f == "-") {
        // Standard input has no known length: show a running byte count.
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    } else if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    // One thread reads and parses; this task commits. The bounded channel
    // keeps at most a few chunks in memory whatever the input size.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Feed>(2);
    let files = args.files.clone();
    let chunk_lines = store.chunk_lines();
    let reader = std::thread::spawn(move || read_inputs(&files, &defaults, chunk_lines, &tx));

    let mut summary = Summary::default();
    let mut committer = OrderedCommitter::new(store);
    let mut on_done = |batch: WriteBatch, outcome: WriteOutcome, bytes: u64| {
        summary.absorb(&batch, &outcome);
        progress.inc(bytes);
    };
    while let Some(feed) = rx.recv().await {
        match feed {
            Feed::File { name } => progress.set_message(name),
            Feed::Chunk { batch, bytes } => {
                committer
                    .submit(batch, bytes, &mut on_done)
                    .await
                    .context("committing to the ledger")?;
            }
        }
    }
    committer
        .finish(&mut on_done)
        .await
        .context("committing to the ledger")?;
    progress.finish_and_clear();
    match reader.join() {
        Ok(result) => result?,
        Err(_) => bail!("the reader thread failed"),
    }

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

fn read_inputs(
    files: &[String],
    defaults: &Defaults,
    chunk_lines: usize,
    tx: &tokio::sync::mpsc::Sender<Feed>,
) -> Result<()> {
    for name in files {
        let input: Box<dyn Read> = if name == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(std::fs::File::open(name).with_context(|| format!("opening {name}"))?)
        };
        let label = if name == "-" {
            "stdin".to_owned()
        } else {
            name.clone()
        };
        if tx
            .blocking_send(Feed::File {
                name: label.clone(),
            })
            .is_err()
        {
            return Ok(()); // the writer stopped; its error is reported there
        }
        let mut reader = BufReader::with_capacity(1 << 20, input);
        let mut builder = ChunkBuilder::new(
            label.clone(),
            defaults.clone(),
            to_micros(chrono::Utc::now()),
        )
        .with_chunk_lines(chunk_lines);
        let mut line = Vec::with_capacity(4096);
        let mut number = 0u64;
        let mut bytes = 0u64;
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("reading {label} after line {number}"))?;
            if n == 0 {
                break;
            }
            number += 1;
            bytes += n as u64;
            builder.push_line(number, &line);
            if builder.is_full() {
                let batch = builder.take();
                builder.set_now(to_micros(chrono::Utc::now()));
                if tx
                    .blocking_send(Feed::Chunk {
                        batch,
                        bytes: std::mem::take(&mut bytes),
                    })
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
        if !builder.is_empty() || bytes > 0 {
            let batch = builder.take();
            if tx.blocking_send(Feed::Chunk { batch, bytes }).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
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

async fn rejected(database: &str, cmd: RejectedCommand) -> Result<ExitCode> {
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
        } => {
            let Some(e) = store.rejected_get(id).await? else {
                bail!("no rejected line with id {id}");
            };
            let mut d = Defaults {
                account: e.account_default.clone(),
                recorded_at: e
                    .recorded_at_default
                    .as_deref()
                    .and_then(|t| parse_rfc3339(t).ok()),
            };
            let given = defaults(account, recorded_at.as_deref())?;
            d.account = given.account.or(d.account);
            d.recorded_at = given.recorded_at.or(d.recorded_at);
            let origin = Origin {
                source: format!("retry of #{id}"),
                line: e.line.unwrap_or(1).max(1) as u64,
            };
            let record =
                match parse_record(&e.raw_bytes, &origin, &d, to_micros(chrono::Utc::now())) {
                    Ok(r) => r,
                    Err(err) => {
                        eprintln!("still rejected: {err}");
                        return Ok(ExitCode::FAILURE);
                    }
                };
            let key = record.key.clone();
            let batch = WriteBatch {
                records: vec![record],
                rejections: Vec::new(),
            };
            let outcome = store.write(&batch).await?;
            match outcome.records.first() {
                Some(RecordOutcome::Recorded) => {
                    store.rejected_mark_retried(id).await?;
                    println!("recorded {key}");
                    Ok(ExitCode::SUCCESS)
                }
                Some(RecordOutcome::Duplicate) => {
                    store.rejected_mark_retried(id).await?;
                    println!("duplicate: {key} was already recorded");
                    Ok(ExitCode::SUCCESS)
                }
                Some(RecordOutcome::Conflict { message, .. }) => {
                    eprintln!("still a conflict: {message}");
                    Ok(ExitCode::FAILURE)
                }
                None => bail!("the store returned no outcome"),
            }
        }
    }
}

async fn invoice(database: &str, args: InvoiceArgs) -> Result<ExitCode> {
    let period = Period::parse(&args.period).map_err(|m| anyhow::anyhow!("--period: {m}"))?;
    crate::record::validate_account(&args.account)
        .map_err(|m| anyhow::anyhow!("--account {:?} {m}", args.account))?;
    let store = open_store(database).await?;
    let book = crate::pricing::current_book(store.as_ref()).await?;
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
    match args.format {
        Format::Json => print!("{json}"),
        Format::Csv => print!("{csv}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn invoices(database: &str, args: InvoicesArgs) -> Result<ExitCode> {
    let period = Period::parse(&args.period).map_err(|m| anyhow::anyhow!("--period: {m}"))?;
    let store = open_store(database).await?;
    let book = crate::pricing::current_book(store.as_ref()).await?;
    match args.format {
        Format::Csv => print!(
            "{}",
            billing::period_csv(store.as_ref(), &book, period).await?
        ),
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

async fn prices(database: &str, args: PricesArgs) -> Result<ExitCode> {
    let store = open_store(database).await?;
    if let Some(PricesCommand::Import { file }) = args.command {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let book = match PriceBook::parse(&text) {
            Ok(book) => book,
            Err(e) => {
                eprintln!(
                    "error: {}: {e}; the price book in force is unchanged",
                    file.display()
                );
                return Ok(ExitCode::FAILURE);
            }
        };
        let id = store
            .import_price_book(&file.display().to_string(), &text)
            .await?;
        println!(
            "imported price book #{id} from {}: {} versions, {} to {}",
            file.display(),
            book.versions().len(),
            book.versions()
                .first()
                .map(|v| v.label())
                .unwrap_or_default(),
            book.versions()
                .last()
                .map(|v| v.label())
                .unwrap_or_default()
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

async fn keys(database: &str, cmd: KeysCommand) -> Result<ExitCode> {
    let store = open_store(database).await?;
    match cmd {
        KeysCommand::Create { account } => {
            crate::record::validate_account(&account)
                .map_err(|m| anyhow::anyhow!("--account {account:?} {m}"))?;
            let (key, prefix, hash) = crate::auth::new_key().map_err(|m| anyhow::anyhow!(m))?;
            let id = store.create_key(&account, &prefix, &hash).await?;
            println!("created key #{id} for account {account} ({prefix}…); it is shown only now:");
            println!("{key}");
        }
        KeysCommand::List { json } => {
            let keys = store.list_keys().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else if keys.is_empty() {
                println!("no keys");
            } else {
                for k in keys {
                    let state = k
                        .revoked_at
                        .map_or_else(|| "active".to_owned(), |t| format!("revoked {t}"));
                    println!(
                        "#{:<5} {:<20} {}…  created {}  {state}",
                        k.id, k.account, k.prefix, k.created_at
                    );
                }
            }
        }
        KeysCommand::Revoke { id } => {
            if !store.revoke_key(id).await? {
                bail!("no active key with id {id}");
            }
            println!("revoked key #{id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
