//! `tally serve`: run the HTTP API until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::open_store;
use crate::http::{self, AppState, ServeConfig};
use crate::ingest::lines::MAX_LINE_BYTES;
use crate::ledger::Ledger;
use crate::record::Retention;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Admin bearer token; without it tally serves on loopback only.
    #[arg(long, env = "TALLY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Largest body of `POST /v1/usage`, and longest line of a batch, in bytes.
    #[arg(long, default_value_t = MAX_LINE_BYTES)]
    pub max_body_bytes: usize,
    /// What to keep of each ingested line: `full` (verbatim) or `billing`
    /// (no prompts or completions; every figure tally produces is the same).
    #[arg(long, value_enum, default_value_t = Retention::Full)]
    pub retain: Retention,
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
    /// The oldest day a record may claim (YYYY-MM-DD, default 2000-01-01):
    /// older ones are refused as mistakes unless a backfill that old is meant.
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = crate::time::parse_oldest)]
    pub oldest: Option<i64>,
}

pub async fn serve(database: &str, args: ServeArgs) -> Result<ExitCode> {
    let config = ServeConfig {
        admin_token: args.admin_token.filter(|t| !t.is_empty()),
        max_body_bytes: args.max_body_bytes,
        max_batch_bytes: args.max_batch_bytes,
        retention: args.retain,
        alert_webhook: args.alert_webhook.filter(|u| !u.is_empty()),
        alert_interval: std::time::Duration::from_secs(args.alert_interval.max(1)),
        finance_max_age: std::time::Duration::from_secs(args.finance_max_age),
        oldest: args.oldest,
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

pub(super) async fn shutdown_signal() {
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
