//! API keys and who is calling.
//!
//! Account keys are 32 random bytes, shown once (`tk_` + hex); the ledger
//! keeps only their SHA-256, so a leaked database does not leak keys.
//! The admin token (`TALLY_ADMIN_TOKEN`) may do everything; an account key
//! may ingest for its own account and read only its own invoices.

use sha2::{Digest, Sha256};

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Account(String),
}

impl Principal {
    /// May this principal read or write `account`'s data?
    pub fn may_access(&self, account: &str) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Account(own) => own == account,
        }
    }
}

pub const KEY_PREFIX: &str = "tk_";

/// A new key: `(key, short prefix for listings, hash to store)`.
pub fn new_key() -> Result<(String, String, String), String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness available: {e}"))?;
    let key = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let prefix = key.chars().take(KEY_PREFIX.len() + 8).collect();
    let hash = hash_key(&key);
    Ok((key, prefix, hash))
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Compare secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hashed() {
        let (a, pa, ha) = new_key().expect("randomness");
        let (b, _, hb) = new_key().expect("randomness");
        assert_ne!(a, b);
        assert!(a.starts_with("tk_") && a.len() == 3 + 64);
        assert!(a.starts_with(&pa));
        assert_eq!(ha, hash_key(&a));
        assert_ne!(ha, hb);
        assert!(Principal::Account("x".into()).may_access("x"));
        assert!(!Principal::Account("x".into()).may_access("y"));
        assert!(Principal::Admin.may_access("y"));
    }
}
