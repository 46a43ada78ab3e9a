//! `tally proxy`: the account mappings of API keys; on both backends.

use crate::support::{Backend, TestDb, tally, tally_ok};

/// `tally proxy keys map --api-key-sha256 SHA --account ACCOUNT`: exit code, stdout, stderr.
fn map(db: &TestDb, sha: &str, account: &str) -> (i32, String, String) {
    let args = [
        "proxy",
        "keys",
        "map",
        "--api-key-sha256",
        sha,
        "--account",
        account,
    ];
    tally(db, &args)
}

/// [`map`], which must succeed: its stdout.
fn map_ok(db: &TestDb, sha: &str, account: &str) -> String {
    let (code, out, err) = map(db, sha, account);
    assert_eq!(code, 0, "{err}");
    out
}

/// SHA-256 of a made-up Anthropic API key, as `sha256sum` prints it.
fn sha256_hex(key: &str) -> String {
    tally::auth::hash_key(key)
}

async fn key_mappings_map_list_and_unmap(backend: Backend) {
    let db = TestDb::new(backend).await;
    let key = "sk-ant-api03-not-a-real-key";
    let sha = sha256_hex(key);
    let id = &sha[..12];

    let out = map_ok(&db, &sha, "acme");
    assert!(out.contains(id) && out.contains("acme"), "{out}");
    // Upper case is the same hash; mapping again moves the key to another account.
    let upper = sha.to_ascii_uppercase();
    map_ok(&db, &upper, "globex");
    let store = db.store().await;
    assert_eq!(
        store.proxy_key_account(&sha).await.unwrap().as_deref(),
        Some("globex")
    );

    let list: serde_json::Value =
        serde_json::from_str(&tally_ok(&db, &["proxy", "keys", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        (&list[0]["api_key_id"], &list[0]["account"]),
        (&id.into(), &"globex".into())
    );
    // Listed by its id only: neither the key nor its whole hash.
    let text = tally_ok(&db, &["proxy", "keys", "list"]);
    assert!(
        text.contains(id) && !text.contains(&sha) && !text.contains(key),
        "{text}"
    );

    tally_ok(&db, &["proxy", "keys", "unmap", "--api-key-sha256", &sha]);
    assert_eq!(store.proxy_key_account(&sha).await.unwrap(), None);
    let (code, _, err) = tally(&db, &["proxy", "keys", "unmap", "--api-key-sha256", &sha]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("no mapping for key {id}")), "{err}");
}

async fn bad_mappings_are_refused_and_change_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let sha = sha256_hex("sk-ant-api03-another");
    // A key given instead of its hash is refused, and not echoed back.
    let (code, out, err) = map(&db, "sk-ant-api03-secret", "acme");
    assert_eq!(code, 1);
    assert!(
        err.contains("--api-key-sha256: expected 64 hex digits"),
        "{err}"
    );
    assert!(!err.contains("sk-ant-api03-secret") && !out.contains("sk-ant-api03-secret"));
    let (code, _, err) = map(&db, &sha, "no spaces");
    assert_eq!(code, 1);
    assert!(err.contains("--account \"no spaces\""), "{err}");
    assert_eq!(
        tally_ok(&db, &["proxy", "keys", "list"]).trim(),
        "no key mappings"
    );
}

on_both_backends!(
    key_mappings_map_list_and_unmap,
    bad_mappings_are_refused_and_change_nothing,
);
