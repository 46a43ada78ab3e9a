//! `tally proxy`: the capture proxy's account mappings (`keys map|list|unmap`).
//!
//! A mapping binds the SHA-256 of an Anthropic API key to the account whose
//! calls it makes; the key itself is never given to tally, stored or shown.

use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;

use super::open_store;
use crate::auth::{api_key_id, parse_sha256_hex};

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

pub async fn proxy(database: &str, cmd: ProxyCommand) -> Result<ExitCode> {
    let ProxyCommand::Keys(cmd) = cmd;
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
