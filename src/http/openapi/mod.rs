//! `GET /openapi.json`: an OpenAPI 3.1 description of every endpoint.
//!
//! Written out by hand (the handlers take raw bodies and streams that
//! derive macros describe poorly), and meant to be trusted by clients:
//!
//! - every constraint the server enforces on a parameter or a body is
//!   stated (patterns, formats, enums, required fields, lengths, ranges),
//!   so a request the document allows is not refused with a 400 or 422;
//!   the few rules that relate two values (which JSON Schema cannot
//!   express) are stated in the descriptions, under "Rule:";
//! - every status an operation can answer is listed with its content type,
//!   and JSON answers have a schema.
//!
//! `tests/it/finance.rs` checks that every route the router registers is
//! described here; `tests/it/schemathesis.rs` runs schemathesis against a
//! live server with it (no 5xx, documented statuses and content types,
//! response schemas, and schema-valid requests accepted).
//!
//! The estimate's `model` values and earliest `at` come from the price
//! book in force, so the document served is built per request.

mod schemas;

use axum::Json;
use axum::extract::State;
use chrono::{Datelike, NaiveDate, Utc};
use serde_json::{Map, Value, json};

use super::{ApiError, AppState};
use crate::pricing::PriceBook;
use schemas::{EstimateScope, dates_from, schemas};

/// What an account name may be (see [`crate::record::validate_account`]).
const ACCOUNT_PATTERN: &str = r"^[A-Za-z0-9._:-]{1,128}$";
/// `YYYY-MM` (see [`crate::billing::Period::parse`]).
const PERIOD_PATTERN: &str = r"^[0-9]{4}-(0[1-9]|1[0-2])$";
/// A tag key (see [`crate::record::validate_tag_key`]).
const TAG_KEY_PATTERN: &str = r"^[a-z0-9_.:-]{1,64}$";
/// A budget or threshold in USD: 0 to under 10^15, as a decimal string.
const AMOUNT_PATTERN: &str = r"^[0-9]{1,15}(\.[0-9]{1,10})?$";
/// A credit grant in USD: more than 0, whole cents, under 10^12.
const GRANT_PATTERN: &str = r"^([1-9][0-9]{0,11}(\.[0-9]{1,2})?|0\.(0[1-9]|[1-9][0-9]?))$";
/// A time or date from the year 2000 to 2099 (see [`crate::time::EARLIEST`]).
const YEAR_2000_ON: &str = r"^20[0-9]{2}-";
/// A plan file, for the example.
const PLAN_EXAMPLE: &str =
    "[[version]]\neffective_from = \"2025-01-01\"\nmarkup_percent = \"25\"\n";
/// Text the ledger stores: PostgreSQL's text holds no NUL (U+0000), so
/// none is accepted (on either backend). Without a `type`, it applies to
/// strings only.
const NO_NUL: &str = r"^[^\x00]*$";
/// A decimal amount as the server writes it.
const DECIMAL_PATTERN: &str = r"^-?[0-9]+(\.[0-9]+)?$";
/// One line of text: no control character, not only white space.
const LINE_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$";
/// Lines of text (line breaks allowed, no other control character), not
/// only white space.
const LINES_PATTERN: &str =
    r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x09\x0b-\x1f\x7f-\x9f]*$";
/// An email address as the details accept it: an `@`, no white space.
const EMAIL_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f\s]*@[^\x00-\x1f\x7f-\x9f\s]*$";
/// A tax rate: 0 to 100 percent, at most 4 decimals.
const PERCENT_PATTERN: &str = r"^(100(\.0{1,4})?|[0-9]{1,2}(\.[0-9]{1,4})?)$";

/// The JSON schema of one-line text of at most `max` characters.
fn line(max: usize) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": LINE_PATTERN})
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn error_text(code: u16) -> &'static str {
    match code {
        400 => "invalid request: the message names the parameter or field at fault",
        401 => "missing or unknown key",
        403 => "the key may not do this",
        404 => "not found (or another account's), or no such endpoint",
        409 => "conflicts with the ledger's state (e.g. `unpriced_usage`; `changed`: retry)",
        413 => "body too large",
        422 => "the record was rejected (see `error`)",
        500 => {
            "internal error (e.g. stored data tally cannot read): the cause is in the server's log"
        }
        _ => {
            "storage unavailable: retry later (a single write was not made; a batch's answer lists which lines were stored)"
        }
    }
}

/// An operation's responses: `ok` (status → response) and the JSON errors
/// of `errors`.
fn responses(ok: Value, errors: &[u16]) -> Value {
    let mut map = Map::new();
    for code in errors {
        map.insert(
            code.to_string(),
            json_response(error_text(*code), schema_ref("Error")),
        );
    }
    if let Value::Object(ok) = ok {
        map.extend(ok);
    }
    Value::Object(map)
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// A 200 of one content type (a schema for JSON).
fn ok(kind: &str, description: &str, schema: Option<Value>) -> Value {
    let media = match schema {
        Some(s) => json!({"schema": s}),
        None => json!({}),
    };
    json!({"200": {"description": description, "content": {kind: media}}})
}

fn ok_json(description: &str, schema: Value) -> Value {
    ok("application/json", description, Some(schema))
}

/// 200 with a JSON document or its CSV.
fn ok_json_or_csv(description: &str, schema: Value) -> Value {
    json!({"200": {"description": description, "content": {
        "application/json": {"schema": schema},
        "text/csv": {"schema": {"type": "string"}}
    }}})
}

/// `responses` with a `Content-Disposition` header on its 200: the file
/// name a download is saved under (`when`: which answers carry it).
fn named(mut responses: Value, when: &str) -> Value {
    if let Some(ok) = responses.get_mut("200").and_then(Value::as_object_mut) {
        ok.insert(
            "headers".into(),
            json!({"Content-Disposition": {"description": format!("the file name to save it under ({when})"), "schema": {"type": "string"}}}),
        );
    }
    responses
}

fn path_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
}

fn query(name: &str, description: &str, required: bool, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": required, "description": description, "schema": schema})
}

fn op(summary: &str, parameters: Value, responses: Value) -> Value {
    json!({"summary": summary, "parameters": parameters, "responses": responses})
}

fn op_with_body(summary: &str, parameters: Value, body: Value, responses: Value) -> Value {
    json!({"summary": summary, "parameters": parameters, "requestBody": {"required": true, "content": body}, "responses": responses})
}

/// The document, with the shipped price book's models for the estimate.
pub fn document() -> Value {
    document_for(&PriceBook::shipped(), Utc::now().date_naive())
}

/// The document as served while `book` is in force on `today`.
pub fn document_for(book: &PriceBook, today: NaiveDate) -> Value {
    let scope = EstimateScope::of(book, today);
    let account_schema = json!({"type": "string", "pattern": ACCOUNT_PATTERN});
    let period_schema = json!({"type": "string", "pattern": PERIOD_PATTERN});
    let account = path_param(
        "account",
        "account name: 1 to 128 letters, digits and . _ : -",
        account_schema.clone(),
    );
    let period = path_param("period", "YYYY-MM", period_schema.clone());
    let q_period = query("period", "YYYY-MM", true, period_schema.clone());
    let q_period_opt = query(
        "period",
        "YYYY-MM (default: the current month)",
        false,
        period_schema.clone(),
    );
    let format = query(
        "format",
        "json (default) or csv",
        false,
        json!({"type": "string", "enum": ["json", "csv"]}),
    );
    let dimension = json!({"type": "string", "pattern": r"^(workspace|workspace_id|api_key_id|user|tag:[a-z0-9_.:-]{1,64})$"});
    let export_code =
        json!({"type": "string", "minLength": 1, "maxLength": 64, "pattern": LINE_PATTERN});
    let body_json = |schema: Value| json!({"application/json": {"schema": schema}});
    // A merge patch is sent as RFC 7396's media type or as plain JSON.
    let merge_patch = |schema: Value| json!({"application/merge-patch+json": {"schema": schema.clone()}, "application/json": {"schema": schema}});
    // Every /v1 route and the dashboard authenticate first (401, and the
    // key lookup's 500/503); those with a path answer 404 for a path that
    // matches no route (e.g. an empty account).
    let estimate_at = match scope.from {
        Some(from) => json!({"type": "string", "format": "date", "pattern": dates_from(from),
                             "description": format!("YYYY-MM-DD, from {from} (the price-book version in force today)")}),
        None => json!({"type": "string", "format": "date"}),
    };
    let compared = {
        let mut items = schemas(&scope)["Workload"]["properties"]["model"].clone();
        if let Value::Object(m) = &mut items {
            m.remove("description");
        }
        json!({"type": "array", "minItems": 1, "maxItems": crate::estimate::MAX_COMPARED, "items": items})
    };
    json!({
        "openapi": "3.1.0",
        "info": {"title": "tally", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Usage-metering and billing ledger for the Anthropic Messages API. Authenticate with `Authorization: Bearer KEY` (the admin token or an account key); HTTP Basic with the key as password is accepted too. A request this document allows is not refused as invalid (400, 413 aside for bodies over the limits, 422) except where a described Rule relating two values is broken; every answer's status and content type is listed here; errors are `{\"error\": {\"type\", \"message\"}}`."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "basic": {"type": "http", "scheme": "basic"}},
            "schemas": schemas(&scope)
        },
        "security": [{"bearer": []}, {"basic": []}],
        "paths": {
            "/": {"get": op("Finance dashboard (HTML)",
                json!([query(
                           "period",
                           "YYYY-MM (default: the current month, or the latest month with records when the current one has none)",
                           false,
                           period_schema.clone(),
                       ),
                       query("workspace", "only the records of this workspace (empty: all, as the dashboard's filter form sends a blank field)", false, json!({"type": "string"})),
                       query("tag", "only the records with this tag, KEY:VALUE (empty: no filter)", false, json!({"type": "string", "pattern": r"^$|^[a-z0-9_.-]{1,64}:"})),
                       query("tag_key", "add the cost-by-tag panel for this key (empty: none)", false, json!({"type": "string", "pattern": r"^$|^[a-z0-9_.:-]{1,64}$"}))]),
                responses(ok("text/html", "the dashboard", None), &[400, 401, 500, 503]))},
            "/healthz": {"get": {"summary": "Liveness and database reachability", "security": [], "parameters": [], "responses": {
                "200": json_response("healthy", json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}})),
                "503": json_response("the database does not answer", json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "unavailable"}}}))}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (spend too with a key)", "security": [{}, {"bearer": []}, {"basic": []}], "parameters": [],
                "responses": responses(ok("text/plain", "metrics in Prometheus' text format 0.0.4", Some(json!({"type": "string"}))), &[500, 503])}},
            "/openapi.json": {"get": {"summary": "This document", "security": [], "parameters": [],
                "responses": responses(ok_json("OpenAPI 3.1", json!({"type": "object", "required": ["openapi", "paths"]})), &[500, 503])}},
            "/v1/usage": {"post": op_with_body(
                "Record one Messages API response (envelope, bare response, streamed events or batch result line)",
                json!([query("account", "account for a record without one (an account key: its own only)", false, account_schema.clone()),
                       query("recorded_at", "RFC 3339 time for a record without one, from the year 2000 on", false, json!({"type": "string", "format": "date-time", "pattern": YEAR_2000_ON}))]),
                body_json(schema_ref("Record")),
                {
                    let mut r = responses(json!({
                        "201": json_response("recorded", schema_ref("LineResult")),
                        "200": json_response("duplicate of a recorded response", schema_ref("LineResult")),
                        "422": json_response(error_text(422), schema_ref("LineResult"))
                    }), &[401, 413, 500, 503]);
                    for (code, what) in [("400", "malformed JSON (see `error`), or a bad query parameter"),
                                         ("403", "the record or query names another account than the key's"),
                                         ("409", "the id is recorded with other content (`conflict`), or `changed`: retry")] {
                        r[code] = json_response(what, json!({"anyOf": [schema_ref("LineResult"), schema_ref("Error")]}));
                    }
                    r
                })},
            "/v1/usage/batch": {"post": op_with_body(
                "Record many responses (NDJSON, streamed); per-line results (every line's outcome is in `results`, a bad line included)",
                json!([query("account", "account for records without one (an account key: its own only)", false, account_schema.clone()),
                       query("recorded_at", "RFC 3339 time for records without one, from the year 2000 on", false, json!({"type": "string", "format": "date-time", "pattern": YEAR_2000_ON})),
                       query("results", "which lines `results` lists: all (default), problems or none", false, json!({"type": "string", "enum": ["all", "problems", "none"]}))]),
                json!({"application/x-ndjson": {"schema": {"type": "string", "minLength": 1, "description": "one record (see Record) per line; not empty"}}}),
                responses(json!({
                    "200": json_response("a summary and per-line results", schema_ref("BatchSummary")),
                    "413": json_response("over the limit: the lines before it were processed (see `results`), the rest was not read; or declared over it", json!({"anyOf": [schema_ref("BatchSummary"), schema_ref("Error")]})),
                    "400": json_response("the body ended before it was complete (`error.type` incomplete_body: the lines up to `error.last_complete_line` were processed, see `results`), or the request is wrong (an empty body, a bad parameter)", json!({"anyOf": [schema_ref("BatchSummary"), schema_ref("Error")]})),
                    "503": json_response("storage failed part-way (`error.type` storage_unavailable): `results` says which lines were stored and which were not (`not_stored`, `retryable`), and lines after `error.last_read_line` were not read; or storage failed before any line", json!({"anyOf": [schema_ref("BatchSummary"), schema_ref("Error")]}))
                }), &[401, 403, 500]))},
            "/v1/accounts/{account}/invoices/{period}": {"get": op(
                "An account's invoice (JSON; CSV with Accept: text/csv or ?format=csv)",
                json!([account.clone(), period.clone(), format.clone(),
                       query("breakdown", "split the JSON invoice's lines by an attribution dimension. Rule: JSON only (not with format=csv or Accept: text/csv)", false, dimension.clone())]),
                named(responses(ok_json_or_csv("the invoice", schema_ref("Invoice")), &[400, 401, 404, 500, 503]), "its number, or ACCOUNT-PERIOD-draft; the CSV as an attachment"))},
            "/v1/accounts/{account}/invoices/{period}.html": {"get": op(
                "An account's invoice as a self-contained printable HTML document (a finalized invoice's as frozen)",
                json!([account.clone(), period.clone()]),
                named(responses(ok("text/html", "the invoice document", None), &[400, 401, 404, 500, 503]), "inline"))},
            "/v1/accounts/{account}/invoices/{period}.pdf": {"get": op(
                "An account's invoice as a PDF on the seller's paper (a finalized invoice's as frozen)",
                json!([account.clone(), period.clone()]),
                named(responses(ok("application/pdf", "the invoice document", None), &[400, 401, 404, 500, 503]), "inline"))},
            "/v1/accounts/{account}/invoices/{period}/finalize": {"post": op(
                "Finalize (freeze) an invoice (admin); answers its JSON, or its CSV with Accept: text/csv; finalizing again answers the frozen invoice",
                json!([account.clone(), period.clone(),
                       query("allow_unpriced", "true to finalize despite unpriced usage (else 409 unpriced_usage)", false, json!({"type": "boolean"}))]),
                named(responses(ok_json_or_csv("the finalized invoice", schema_ref("Invoice")), &[400, 401, 403, 404, 409, 500, 503]), "its number"))},
            "/v1/invoices": {"get": op("Every invoice of a period the caller may see",
                json!([q_period.clone(), format.clone()]),
                named(responses(ok_json_or_csv("invoices", schema_ref("Invoices")), &[400, 401, 500, 503]), "the CSV, as an attachment"))},
            "/v1/accounts/{account}/budget": {
                "get": op("Budget, month-to-date spend, forecast and alerts", json!([account.clone(), q_period_opt.clone()]),
                    responses(ok_json("budget status", schema_ref("BudgetStatus")), &[400, 401, 404, 500, 503])),
                "put": op_with_body("Set an account's monthly budget (admin)", json!([account.clone()]),
                    body_json(json!({"type": "object", "required": ["monthly_usd"], "additionalProperties": false,
                        "properties": {"monthly_usd": {"type": "string", "pattern": AMOUNT_PATTERN, "example": "500.00", "description": "USD, 0 to under 10^15"}}})),
                    responses(ok_json("budget status", schema_ref("BudgetStatus")), &[400, 401, 403, 404, 413, 500, 503]))
            },
            "/v1/accounts/{account}/plan": {
                "get": op("An account's plan in force: versions (amounts as strings) and its TOML (admin)", json!([account.clone()]),
                    responses(ok_json("the plan", schema_ref("Plan")), &[400, 401, 403, 404, 500, 503])),
                "put": op_with_body("Set an account's plan from its TOML file (admin); a bad file is refused with its line and changes nothing",
                    json!([account.clone()]),
                    json!({"application/toml": {"schema": {"type": "string", "description": "the plan file (TOML): [[version]] tables with effective_from and markup, discount, minimum and overrides. Rule: TOML, which JSON Schema does not describe", "example": PLAN_EXAMPLE}},
                           "text/plain": {"schema": {"type": "string", "description": "the same, as text", "example": PLAN_EXAMPLE}}}),
                    responses(ok_json("the plan as set", schema_ref("Plan")), &[400, 401, 403, 404, 413, 500, 503]))
            },
            "/v1/accounts/{account}/credits": {
                "get": op("Prepaid credit: balance, grants, what each invoice drew (finalized) or would draw (open)", json!([account.clone()]),
                    responses(ok_json("credit status", schema_ref("CreditStatus")), &[400, 401, 404, 500, 503])),
                "post": op_with_body("Grant prepaid credit (admin)", json!([account.clone()]),
                    body_json(json!({"type": "object", "required": ["usd"], "additionalProperties": false, "properties": {
                        "usd": {"type": "string", "pattern": GRANT_PATTERN, "example": "100.00", "description": "USD, more than 0, whole cents, under 10^12"},
                        "expires": {"type": "string", "format": "date", "pattern": YEAR_2000_ON, "description": "YYYY-MM-DD, from 2000 to 2099"},
                        "note": {"type": "string", "pattern": NO_NUL},
                        "low_balance_usd": {"type": "string", "pattern": AMOUNT_PATTERN, "description": "alert when the balance falls below this"}}})),
                    responses(ok_json("credit status", schema_ref("CreditStatus")), &[400, 401, 403, 404, 413, 500, 503]))
            },
            "/v1/accounts/{account}/balance": {"get": op("May the account keep spending: balance_usd, month_to_date_usd, budget_usd, allowed",
                json!([account.clone()]), responses(ok_json("balance", schema_ref("Balance")), &[400, 401, 404, 500, 503]))},
            "/v1/accounts/{account}/details": {
                "get": op("An account's billing details (its own for an account key)", json!([account.clone()]),
                    responses(ok_json("billing details", schema_ref("AccountDetails")), &[400, 401, 404, 500, 503])),
                "put": op_with_body("Set an account's billing details, whole: fields left out are cleared (admin)", json!([account.clone()]),
                    body_json(schema_ref("AccountDetails")),
                    responses(ok_json("billing details", schema_ref("AccountDetails")), &[400, 401, 403, 404, 413, 500, 503])),
                "patch": op_with_body("Change some of an account's billing details (a JSON merge patch: null clears a field, fields left out stay; admin)", json!([account.clone()]),
                    merge_patch(schema_ref("AccountDetailsPatch")),
                    responses(ok_json("billing details", schema_ref("AccountDetails")), &[400, 401, 403, 404, 413, 500, 503]))
            },
            "/v1/org": {
                "get": op("The seller's billing details (admin)", json!([]),
                    responses(ok_json("billing details", schema_ref("SellerDetails")), &[401, 403, 500, 503])),
                "put": op_with_body("Set the seller's billing details, whole: fields left out are cleared (admin)", json!([]),
                    body_json(schema_ref("SellerDetails")),
                    responses(ok_json("billing details", schema_ref("SellerDetails")), &[400, 401, 403, 413, 500, 503])),
                "patch": op_with_body("Change some of the seller's billing details (a JSON merge patch: null clears a field, fields left out stay; admin)", json!([]),
                    merge_patch(schema_ref("SellerDetailsPatch")),
                    responses(ok_json("billing details", schema_ref("SellerDetails")), &[400, 401, 403, 413, 500, 503]))
            },
            "/v1/alerts": {"get": op("Budget alerts (50/80/100 %), then low-balance credit alerts",
                json!([query("period", "YYYY-MM: only those raised in it", false, period_schema.clone())]),
                responses(ok_json("alerts", schema_ref("Alerts")), &[400, 401, 500, 503]))},
            "/v1/cost_report": {"get": op("Cost report in the shape of Anthropic's Admin API, plus account grouping",
                json!([query("starting_at", "RFC 3339: the first daily bucket is this time's UTC day. Rule: its day is not after today's unless ending_at is given", true, json!({"type": "string", "format": "date-time"})),
                       query("ending_at", "RFC 3339 (default: the end of today, UTC). Rule: after starting_at", false, json!({"type": "string", "format": "date-time"})),
                       query("bucket_width", "daily buckets only", false, json!({"type": "string", "enum": ["1d"]})),
                       {"name": "group_by[]", "in": "query", "required": false, "style": "form", "explode": true,
                        "description": "group by these (at most 4 of workspace_id, api_key_id, user and tag:KEY)",
                        "schema": {"type": "array", "maxItems": 4, "items": {"type": "string", "pattern": r"^(account|description|model|workspace_id|api_key_id|user|tag:[a-z0-9_.:-]{1,64})$"}}},
                       query("limit", "buckets per page (default 7)", false, json!({"type": "integer", "minimum": 1, "maximum": 31})),
                       query("page", "next_page of the previous answer. Rule: within starting_at..ending_at", false, json!({"type": "string", "format": "date"})),
                       query("view", "price (default: what accounts pay) | cost | margin (admin only: 403 for an account key)", false, json!({"type": "string", "enum": ["price", "cost", "margin"]}))]),
                named(responses(ok_json("daily buckets", schema_ref("CostReport")), &[400, 401, 403, 500, 503]), "inline"))},
            "/v1/exports/focus": {"get": op("FinOps FOCUS cost-and-usage CSV of a period", json!([q_period.clone()]),
                named(responses(ok("text/csv", "FOCUS rows", Some(json!({"type": "string"}))), &[400, 401, 500, 503]), "an attachment"))},
            "/v1/exports/quickbooks": {"get": op("A period's finalized invoices in QuickBooks Online's invoice import CSV (drafts are never exported)",
                json!([q_period.clone(), query("date_format", "mdy (default), dmy or iso", false, json!({"type": "string", "enum": ["mdy", "dmy", "iso"]})),
                       query("account_code", "revenue account code of every line", false, export_code.clone()),
                       query("tax_type", "tax rate name of every line", false, export_code.clone())]),
                named(responses(ok("text/csv", "one row per invoice line", Some(json!({"type": "string"}))), &[400, 401, 500, 503]), "an attachment"))},
            "/v1/exports/xero": {"get": op("A period's finalized invoices in Xero's sales invoice import CSV (drafts are never exported)",
                json!([q_period.clone(), query("date_format", "dmy (default), mdy or iso", false, json!({"type": "string", "enum": ["mdy", "dmy", "iso"]})),
                       query("account_code", "revenue account code of every line (default 200)", false, export_code.clone()),
                       query("tax_type", "Xero tax rate name of every line (default Tax Exempt)", false, export_code)]),
                named(responses(ok("text/csv", "one row per invoice line", Some(json!({"type": "string"}))), &[400, 401, 500, 503]), "an attachment"))},
            "/v1/estimate": {"post": op_with_body(
                "Project a workload's cost before deploying it (the workload document of docs/estimates.md, as JSON)",
                json!([query("at", "price with the version in force then (default today)", false, estimate_at),
                       {"name": "compare_models", "in": "query", "required": false, "style": "form", "explode": false,
                        "description": "comma-separated models: the same workloads on each, side by side", "schema": compared},
                       query("account", "price at this account's plan (an account key: its own only, the default)", false, account_schema)]),
                body_json(schema_ref("WorkloadFile")),
                responses(ok_json("the estimate (or the comparison)", schema_ref("Estimate")), &[400, 401, 403, 413, 500, 503]))}
        }
    })
}

/// `GET /openapi.json`, built with the price book in force.
pub async fn serve(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (_, book) = state.finance.book(state.ledger.store().as_ref()).await?;
    Ok(Json(document_for(&book, Utc::now().date_naive())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::schemas::greater_digits;
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn greater_digit_strings() {
        assert_eq!(
            greater_digits("2024"),
            [
                "[3-9][0-9]{3}",
                "2[1-9][0-9]{2}",
                "20[3-9][0-9]{1}",
                "202[5-9]"
            ]
        );
        assert!(greater_digits("9999").is_empty());
    }

    fn admits(pattern: &str, s: &str) -> bool {
        regex_automata::meta::Regex::new(pattern)
            .unwrap()
            .is_match(s)
    }

    /// The `at` pattern admits exactly the dates from its first day on.
    #[test]
    fn dates_from_matches_exactly_the_later_dates() {
        for from in ["2024-03-04", "2025-12-31", "2019-01-01", "9999-12-01"] {
            let from = day(from);
            let pattern = dates_from(from);
            let mut d = from - chrono::Days::new(400);
            while d.year() <= 9999 && d < from + chrono::Days::new(400) {
                let s = d.format("%Y-%m-%d").to_string();
                assert_eq!(admits(&pattern, &s), d >= from, "{pattern} on {s}");
                d = d + chrono::Days::new(1);
            }
        }
    }

    /// What a pattern admits the server accepts (the reverse may not hold:
    /// a pattern can be stricter, e.g. about leading zeros), and the usual
    /// values are admitted.
    #[test]
    fn patterns_admit_only_what_the_server_accepts() {
        fn check(pattern: &str, samples: &[&str], accepted: impl Fn(&str) -> bool, usual: &[&str]) {
            for s in samples.iter().chain(usual) {
                assert!(!admits(pattern, s) || accepted(s), "{pattern} admits {s:?}");
            }
            for s in usual {
                assert!(admits(pattern, s), "{pattern} refuses {s:?}");
            }
        }
        let long = "a".repeat(129);
        check(
            ACCOUNT_PATTERN,
            &["", "a b", "é", &long, "a/b", "a\n", "acme\n"],
            |s| crate::record::validate_account(s).is_ok(),
            &["a", "acme:prod-1.x_y", &long[..128]],
        );
        check(
            PERIOD_PATTERN,
            &[
                "2025-13",
                "2025-5",
                "25-05",
                "2025-05-01",
                "2025-00",
                "+202-05",
                "2025-05\n",
            ],
            |s| crate::billing::Period::parse(s).is_ok(),
            &["2025-05", "0000-01", "9999-12"],
        );
        check(
            GRANT_PATTERN,
            &[
                "0",
                "0.00",
                "0.001",
                "1000000000000",
                "-1",
                "1e3",
                "1.005",
                "0.0",
                ".5",
            ],
            |s| crate::finance::credits::parse_grant(s).is_ok(),
            &["1", "0.01", "0.5", "0.10", "100.00", "999999999999.99"],
        );
        check(
            AMOUNT_PATTERN,
            &["-1", "-0", "1e3", "1000000000000001", "1.", ".5"],
            |s| crate::finance::budget::parse_amount(s).is_ok(),
            &["0", "500", "1234.50", "999999999999999.9999999999"],
        );
        check(
            PERCENT_PATTERN,
            &["100.5", "101", "-1", "1.23456", "1000"],
            |s| {
                s.parse::<rust_decimal::Decimal>().is_ok_and(|r| {
                    let d = crate::billing::details::Details {
                        tax_rate_percent: Some(r),
                        ..Default::default()
                    };
                    d.validate().is_ok()
                })
            },
            &["0", "20", "7.5", "100", "100.0000", "99.9999"],
        );
        let name = |s: &str| {
            let d = crate::billing::details::Details {
                name: Some(s.to_owned()),
                ..Default::default()
            };
            d.validate().is_ok()
        };
        check(
            LINE_PATTERN,
            &[
                "",
                " ",
                "\t",
                "a\tb",
                "a\nb",
                "\u{85}",
                "\u{a0}",
                "\u{2003}\u{3000}",
                "x\u{7f}",
                "\u{1c}",
            ],
            name,
            &["Acme Ltd", " x ", "\u{a0}x", "\u{200b}"],
        );
        let address = |s: &str| {
            let d = crate::billing::details::Details {
                address: Some(s.to_owned()),
                ..Default::default()
            };
            d.validate().is_ok()
        };
        check(
            LINES_PATTERN,
            &["", "\n", " \n ", "a\tb", "a\rb"],
            address,
            &["1 Main St\nSpringfield"],
        );
        let email = |s: &str| {
            let d = crate::billing::details::Details {
                email: Some(s.to_owned()),
                ..Default::default()
            };
            d.validate().is_ok()
        };
        check(
            EMAIL_PATTERN,
            &["", "a b@c", "abc", " @", "a@\u{a0}"],
            email,
            &["billing@example.com", "@"],
        );
        check(NO_NUL, &["a\u{0}b"], |s| !s.contains('\0'), &["", "a"]);
    }

    #[test]
    fn the_estimate_names_the_books_models() {
        let doc = document_for(&PriceBook::shipped(), day("2025-06-01"));
        let models = &doc["components"]["schemas"]["Workload"]["properties"]["model"]["enum"];
        let models: Vec<&str> = models
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        assert!(models.contains(&"claude-sonnet-4-20250514"), "{models:?}");
        let book = PriceBook::shipped();
        let version = book.version_at(day("2025-06-01")).unwrap();
        for m in &models {
            assert!(version.model(m).is_some(), "{m}");
        }
    }
}
