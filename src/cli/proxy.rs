//! `tally proxy`: run the capture proxy, or manage its account mappings
//! (`keys map|list|unmap`).
//!
//! A mapping binds the SHA-256 of an Anthropic API key to the account whose
//! calls it makes; the key itself is never given to tally, stored or shown.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};

use super::{open_store, redact};
use crate::auth::{api_key_id, parse_sha256_hex};
use crate::net::without_delay;
use crate::proxy::{LedgerLink, OPEN_PATIENCE, ProxyConfig, ProxyState};
use crate::record::Retention;
use crate::store::StoreError;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ProxyArgs {
    #[command(subcommand)]
    pub command: Option<ProxyCommand>,
    #[command(flatten)]
    pub run: ProxyRunArgs,
}

#[derive(Debug, Args)]
pub struct ProxyRunArgs {
    /// The Anthropic API the proxy forwards to.
    #[arg(long, default_value = "https://api.anthropic.com")]
    pub upstream: reqwest::Url,
    /// Address applications send their calls to (their SDK's base URL).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Address of the admin surface (`/healthz`, `/metrics`), apart from
    /// the proxied one.
    #[arg(long, default_value = "127.0.0.1:8082")]
    pub admin_listen: SocketAddr,
    /// Account of calls that name none and whose API key is not mapped.
    #[arg(long)]
    pub default_account: Option<String>,
    /// What to keep of each recorded call: `billing` (no prompts or
    /// completions) or `full`.
    #[arg(long, value_enum, default_value_t = Retention::Billing)]
    pub retain: Retention,
    /// Directory where calls wait (fsynced) while the ledger cannot take them.
    #[arg(long)]
    pub spool: Option<std::path::PathBuf>,
    /// PEM file of the certificate authorities the upstream's certificate
    /// is checked against (instead of the system's and the bundled roots).
    #[arg(long)]
    pub upstream_ca: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Which account each Anthropic API key's calls are billed to.
    #[command(subcommand)]
    Keys(ProxyKeysCommand),
}

#[derive(Debug, Subcommand)]
pub enum ProxyKeysCommand {
    /// Bind a key (by its SHA-256) to an account, replacing an earlier binding.
    Map {
        /// SHA-256 of the API key, 64 hex digits (`printf %s "$KEY" | sha256sum`).
        #[arg(long)]
        api_key_sha256: String,
        #[arg(long)]
        account: String,
    },
    /// List the mappings (each key by its id: the first 12 hex digits of its hash).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a key's mapping.
    Unmap {
        #[arg(long)]
        api_key_sha256: String,
    },
}

pub async fn proxy(database: &str, args: ProxyArgs) -> Result<ExitCode> {
    match args.command {
        Some(ProxyCommand::Keys(cmd)) => keys(database, cmd).await,
        None => run(database, args.run).await,
    }
}

async fn run(database: &str, args: ProxyRunArgs) -> Result<ExitCode> {
    if let Some(a) = &args.default_account {
        crate::record::validate_account(a).map_err(|m| anyhow!("--default-account {a:?} {m}"))?;
    }
    let mut config = ProxyConfig::new(args.upstream);
    config.default_account = args.default_account;
    config.retention = args.retain;
    config.spool = args.spool;
    if let Some(file) = &args.upstream_ca {
        let pem =
            std::fs::read(file).with_context(|| format!("--upstream-ca {}", file.display()))?;
        config.upstream_ca = Some(pem);
    }
    let link = open_ledger(database, config.spool.is_some()).await?;
    let state = ProxyState::with_link(link, config).context("setting up the proxy")?;
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))
    };
    let (listener, admin) = (bind(args.listen).await?, bind(args.admin_listen).await?);
    tracing::info!(listen = %args.listen, admin = %args.admin_listen, "tally proxy listening");
    let admin = axum::serve(admin, crate::proxy::admin_router(state.clone()));
    let proxy = axum::serve(without_delay(listener), crate::proxy::router(state))
        .with_graceful_shutdown(super::serve::shutdown_signal());
    tokio::select! {
        served = proxy => served?,
        served = admin => served?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The ledger, opened within [`OPEN_PATIENCE`]. A proxy with a spool
/// starts without it when it cannot be reached (calls wait in the spool
/// until it can; `/healthz` says `degraded`); without a spool it cannot
/// record anything, so it does not start.
async fn open_ledger(database: &str, spooling: bool) -> Result<LedgerLink> {
    let opened = tokio::time::timeout(OPEN_PATIENCE, crate::store::open(database)).await;
    let error = match opened {
        Ok(Ok(store)) => return Ok(LedgerLink::open(store)),
        // A URL tally cannot use is a mistake to fix, not an outage.
        Ok(Err(e @ StoreError::Invalid(_))) => return Err(e.into()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} s", OPEN_PATIENCE.as_secs()),
    };
    let shown = redact(database);
    if !spooling {
        bail!(
            "opening the database {shown}: {error} (with --spool DIR the proxy starts all the same and keeps calls there until the ledger answers)"
        );
    }
    tracing::warn!(
        %error,
        "the ledger {shown} cannot be reached: serving, and keeping calls in the spool until it answers"
    );
    Ok(LedgerLink::unreachable(database))
}

async fn keys(database: &str, cmd: ProxyKeysCommand) -> Result<ExitCode> {
    let hash = |text: &str| parse_sha256_hex(text).map_err(|m| anyhow!("--api-key-sha256: {m}"));
    match cmd {
        ProxyKeysCommand::Map {
            api_key_sha256,
            account,
        } => {
            let sha = hash(&api_key_sha256)?;
            crate::record::validate_account(&account)
                .map_err(|m| anyhow!("--account {account:?} {m}"))?;
            open_store(database)
                .await?
                .map_proxy_key(&sha, &account)
                .await?;
            println!("key {} is billed to account {account}", api_key_id(&sha));
        }
        ProxyKeysCommand::List { json } => {
            let keys = open_store(database).await?.proxy_keys().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else if keys.is_empty() {
                println!("no key mappings");
            } else {
                for k in keys {
                    println!("{}  {:<20} since {}", k.api_key_id, k.account, k.created_at);
                }
            }
        }
        ProxyKeysCommand::Unmap { api_key_sha256 } => {
            let sha = hash(&api_key_sha256)?;
            if !open_store(database).await?.unmap_proxy_key(&sha).await? {
                bail!("no mapping for key {}", api_key_id(&sha));
            }
            println!("removed the mapping of key {}", api_key_id(&sha));
        }
    }
    Ok(ExitCode::SUCCESS)
}
