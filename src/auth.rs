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

/// Hex digits of an Anthropic API key's SHA-256 that name it on records
/// (`api_key_id`): enough to tell keys apart, too few to look one up.
pub const API_KEY_ID_DIGITS: usize = 12;

/// The `api_key_id` of a key whose SHA-256 (hex) is `key_sha256`.
pub fn api_key_id(key_sha256: &str) -> &str {
    key_sha256.get(..API_KEY_ID_DIGITS).unwrap_or(key_sha256)
}

/// A SHA-256 given in hex (as `tally proxy keys` takes it), checked and in
/// lowercase.
pub fn parse_sha256_hex(text: &str) -> Result<String, String> {
    let hex = text.trim().to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(format!(
            "expected 64 hex digits (the SHA-256 of the API key, e.g. from `printf %s \"$KEY\" | sha256sum`), got {} characters",
            text.trim().chars().count()
        ))
    }
}

/// Compare secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_sha256_is_64_hex_digits_and_its_id_the_first_12() {
        let sha = hash_key("sk-ant-api03-x");
        assert_eq!(parse_sha256_hex(&sha.to_ascii_uppercase()), Ok(sha.clone()));
        assert_eq!(api_key_id(&sha), &sha[..12]);
        let e = parse_sha256_hex("sk-ant-api03-x").unwrap_err();
        assert!(
            e.contains("got 14 characters") && !e.contains("sk-ant"),
            "{e}"
        );
        assert!(parse_sha256_hex(&format!("{}g", &sha[..63])).is_err());
    }

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
