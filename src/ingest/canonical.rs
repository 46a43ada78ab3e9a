//! The canonical form of a JSON value for hashing: what makes two bodies
//! that differ only in key order or spacing the same content.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// SHA-256 of a JSON value with object keys sorted and no white space, so two
/// bodies that differ only in key order or spacing hash the same.
pub fn canonical_hash(value: &Value) -> String {
    let mut hasher = Sha256::new();
    write_canonical(value, &mut hasher);
    hex::encode(hasher.finalize())
}

fn write_canonical(value: &Value, h: &mut Sha256) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by_key(|(k, _)| *k);
            write_list(h, b"{", b"}", entries, |(k, v), h| {
                write_canonical_str(k, h);
                h.update(b":");
                write_canonical(v, h);
            });
        }
        Value::Array(items) => write_list(h, b"[", b"]", items, write_canonical),
        Value::String(s) => write_canonical_str(s, h),
        other => h.update(other.to_string().as_bytes()),
    }
}

/// `open`, the items written by `each` separated by commas, `close`.
fn write_list<T>(
    h: &mut Sha256,
    open: &[u8],
    close: &[u8],
    items: impl IntoIterator<Item = T>,
    mut each: impl FnMut(T, &mut Sha256),
) {
    h.update(open);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            h.update(b",");
        }
        each(item, h);
    }
    h.update(close);
}

fn write_canonical_str(s: &str, h: &mut Sha256) {
    // serde_json's string escaping is deterministic, so reuse it.
    h.update(Value::String(s.to_owned()).to_string().as_bytes());
}
