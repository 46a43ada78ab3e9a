//! The one way into a handler for a JSON body: parsed, checked against the
//! very schema `GET /openapi.json` states for the operation, then turned
//! into the handler's type.
//!
//! Checking against the document (not against rules written again here)
//! keeps the two from drifting: a body the document forbids (an array where
//! it says object, `null` where it says string, a number where it says a
//! decimal string, a field it does not list, a value off its pattern) is
//! refused with a 400 that names the field, before anything is changed.
//! serde alone would take some of those: an array fills a struct by
//! position, `null` reads as "absent", and `"1e3"` parses as a decimal.
//!
//! The body schemas of these operations do not depend on the price book,
//! so they are taken once from the document built with the shipped one.

use std::sync::LazyLock;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::ApiError;

/// An operation whose JSON body is checked here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyOf {
    /// `PUT /v1/accounts/{account}/budget`
    Budget,
    /// `POST /v1/accounts/{account}/credits`
    CreditGrant,
    /// `PUT /v1/accounts/{account}/details`
    AccountDetails,
    /// `PATCH /v1/accounts/{account}/details`
    AccountDetailsPatch,
    /// `PUT /v1/org`
    SellerDetails,
    /// `PATCH /v1/org`
    SellerDetailsPatch,
}

impl BodyOf {
    const ALL: [BodyOf; 6] = [
        BodyOf::Budget,
        BodyOf::CreditGrant,
        BodyOf::AccountDetails,
        BodyOf::AccountDetailsPatch,
        BodyOf::SellerDetails,
        BodyOf::SellerDetailsPatch,
    ];

    /// Where the document describes it: method, path and media type.
    fn operation(self) -> (&'static str, &'static str, &'static str) {
        match self {
            BodyOf::Budget => ("put", "/v1/accounts/{account}/budget", JSON),
            BodyOf::CreditGrant => ("post", "/v1/accounts/{account}/credits", JSON),
            BodyOf::AccountDetails => ("put", "/v1/accounts/{account}/details", JSON),
            BodyOf::AccountDetailsPatch => ("patch", "/v1/accounts/{account}/details", MERGE),
            BodyOf::SellerDetails => ("put", "/v1/org", JSON),
            BodyOf::SellerDetailsPatch => ("patch", "/v1/org", MERGE),
        }
    }

    /// What the 400 shows as the expected shape.
    fn expected(self) -> &'static str {
        match self {
            BodyOf::Budget => r#"{"monthly_usd": "500.00"}"#,
            BodyOf::CreditGrant => {
                r#"{"usd": "100.00", "expires": "YYYY-MM-DD", "note": "…", "low_balance_usd": "10"} (all but usd optional)"#
            }
            BodyOf::AccountDetails | BodyOf::AccountDetailsPatch => {
                "the billing details: name, email, address, tax_id, tax_rate_percent, tax_label, reverse_charge, terms_days"
            }
            BodyOf::SellerDetails | BodyOf::SellerDetailsPatch => {
                "the seller's details: name, email, address, tax_id, paper"
            }
        }
    }
}

const JSON: &str = "application/json";
/// RFC 7396's media type: what a `PATCH` body is.
const MERGE: &str = "application/merge-patch+json";

/// A checker per operation, in [`BodyOf::ALL`] order.
static CHECKERS: LazyLock<Vec<jsonschema::Validator>> = LazyLock::new(|| {
    let document = super::openapi::document();
    BodyOf::ALL
        .iter()
        .map(|&of| {
            let (method, path, media) = of.operation();
            let schema =
                &document["paths"][path][method]["requestBody"]["content"][media]["schema"];
            assert!(
                schema.is_object(),
                "the document describes no {media} body for {method} {path}"
            );
            // The schema may refer to the document's components: they go
            // along, so `#/components/schemas/…` resolves.
            let root = serde_json::json!({
                "allOf": [schema],
                "components": document["components"],
            });
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&root)
                .unwrap_or_else(|e| panic!("the schema of {method} {path} does not compile: {e}"))
        })
        .collect()
});

/// The body as the document's JSON object for `of`: a 400 naming the field
/// (or the shape) at fault otherwise.
pub fn object(of: BodyOf, bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let map = shape(of, bytes)?;
    check(of, &Value::Object(map.clone()))?;
    Ok(map)
}

/// The body as a JSON object, not yet checked against the schema.
fn shape(of: BodyOf, bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::BadRequest(format!(
            "body: not JSON (line {}, column {}: {e}); expected {}",
            e.line(),
            e.column(),
            of.expected()
        ))
    })?;
    let Value::Object(map) = value else {
        return Err(ApiError::BadRequest(format!(
            "body: expected a JSON object ({}), not {}",
            of.expected(),
            kind(&value)
        )));
    };
    Ok(map)
}

/// The body read as `T` and then by `read` (the domain's own checks and
/// parsing, whose messages say most plainly what is wrong), and checked
/// against the document's schema, which refuses whatever else it forbids
/// (`null` for a string, a number for a decimal string, …).
pub fn parse<T: DeserializeOwned, U>(
    of: BodyOf,
    bytes: &[u8],
    read: impl FnOnce(T) -> Result<U, ApiError>,
) -> Result<U, ApiError> {
    let value = Value::Object(shape(of, bytes)?);
    let parsed: T = serde_json::from_value(value.clone())
        .map_err(|e| ApiError::BadRequest(format!("body: {e}; expected {}", of.expected())))?;
    let read = read(parsed)?;
    check(of, &value)?;
    Ok(read)
}

/// Check `value` against the document's schema for `of`.
fn check(of: BodyOf, value: &Value) -> Result<(), ApiError> {
    let index = BodyOf::ALL.iter().position(|&o| o == of).unwrap_or(0);
    match CHECKERS[index].iter_errors(value).next() {
        None => Ok(()),
        Some(error) => {
            let at = error.instance_path().to_string();
            let field = at.trim_start_matches('/').replace('/', ".");
            Err(ApiError::BadRequest(if field.is_empty() {
                format!("body: {error}; expected {}", of.expected())
            } else {
                format!("body: {field}: {error}")
            }))
        }
    }
}

/// RFC 7396 merge patch of one flat object (what details are): a `null`
/// removes the field, any other value replaces it.
pub fn merge(mut target: Map<String, Value>, patch: Map<String, Value>) -> Map<String, Value> {
    for (key, value) in patch {
        if value.is_null() {
            target.remove(&key);
        } else {
            target.insert(key, value);
        }
    }
    target
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn refused(of: BodyOf, body: &str) -> String {
        match object(of, body.as_bytes()) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{body} was not refused: {other:?}"),
        }
    }

    #[test]
    fn every_schema_compiles() {
        assert_eq!(CHECKERS.len(), BodyOf::ALL.len());
    }

    #[test]
    fn shapes_the_document_forbids_are_refused_with_the_field() {
        for body in ["[]", "[null, null]", r#"["Evil"]"#, "null", "7", r#""x""#] {
            assert!(
                refused(BodyOf::AccountDetails, body).contains("expected a JSON object"),
                "{body}"
            );
        }
        assert!(refused(BodyOf::Budget, r#"{"monthly_usd": "1e3"}"#).contains("monthly_usd"));
        assert!(refused(BodyOf::Budget, r#"{"monthly_usd": 7}"#).contains("monthly_usd"));
        assert!(refused(BodyOf::Budget, "{}").contains("monthly_usd"));
        assert!(
            refused(BodyOf::AccountDetails, r#"{"tax_rate_percent": 20}"#)
                .contains("tax_rate_percent")
        );
        assert!(refused(BodyOf::AccountDetails, r#"{"name": null}"#).contains("name"));
        assert!(refused(BodyOf::AccountDetails, r#"{"nmae": "x"}"#).contains("nmae"));
        assert!(refused(BodyOf::CreditGrant, r#"{"usd": "5", "note": null}"#).contains("note"));
        assert!(
            refused(
                BodyOf::CreditGrant,
                r#"{"usd": "5", "expires": "2026-02-30"}"#
            )
            .contains("expires")
        );
        assert!(refused(BodyOf::SellerDetails, r#"{"terms_days": 30}"#).contains("terms_days"));
        // A patch may clear a field with null, and only a listed one.
        assert!(object(BodyOf::AccountDetailsPatch, br#"{"name": null}"#).is_ok());
        assert!(refused(BodyOf::AccountDetailsPatch, r#"{"nmae": null}"#).contains("nmae"));
        assert!(refused(BodyOf::SellerDetailsPatch, "[]").contains("expected a JSON object"));
    }

    #[test]
    fn what_the_document_allows_passes() {
        object(BodyOf::Budget, br#"{"monthly_usd": "500.00"}"#).unwrap();
        object(
            BodyOf::CreditGrant,
            br#"{"usd": "100.00", "expires": "2026-12-31", "note": "", "low_balance_usd": "10"}"#,
        )
        .unwrap();
        object(
            BodyOf::AccountDetails,
            br#"{"name": "Acme", "tax_rate_percent": "20", "reverse_charge": false, "terms_days": 30}"#,
        )
        .unwrap();
        object(
            BodyOf::SellerDetails,
            br#"{"name": "Us", "paper": "letter"}"#,
        )
        .unwrap();
    }

    #[test]
    fn a_merge_patch_clears_with_null_and_keeps_the_rest() {
        let target = serde_json::json!({"name": "Acme", "email": "a@b"});
        let patch = serde_json::json!({"email": null, "tax_id": "X1"});
        let merged = merge(
            target.as_object().unwrap().clone(),
            patch.as_object().unwrap().clone(),
        );
        assert_eq!(
            Value::Object(merged),
            serde_json::json!({"name": "Acme", "tax_id": "X1"})
        );
    }
}
