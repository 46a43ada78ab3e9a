//! `tally keys`: create (the key is shown once), list and revoke account API keys.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;

use super::open_store;

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

pub async fn keys(database: &str, cmd: KeysCommand) -> Result<ExitCode> {
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
