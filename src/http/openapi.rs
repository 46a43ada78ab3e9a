//! `GET /openapi.json`: an OpenAPI 3.1 description of every endpoint.
//! Written out by hand (the handlers take raw bodies and streams that
//! derive macros describe poorly); `tests/openapi.rs` checks that every
//! route the router registers is described here.

use axum::Json;
use serde_json::{Value, json};

fn error_responses(codes: &[&str]) -> Value {
    let mut map = serde_json::Map::new();
    for code in codes {
        let text = match *code {
            "400" => "invalid request: the message names the field",
            "401" => "missing or unknown key",
            "403" => "the key may not do this",
            "404" => "not found (or another account's)",
            "409" => "conflict",
            "413" => "body too large",
            "422" => "the record was rejected (see `problems`)",
            "500" => {
                "internal error (e.g. stored data tally cannot read): the cause is in the server's log"
            }
            _ => "storage unavailable: nothing was recorded; retry",
        };
        map.insert(
            (*code).to_owned(),
            json!({"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    Value::Object(map)
}

fn op(summary: &str, params: Value, ok: Value, errors: &[&str]) -> Value {
    let mut responses = error_responses(errors);
    if let (Some(r), Some(ok)) = (responses.as_object_mut(), ok.as_object()) {
        for (k, v) in ok {
            r.insert(k.clone(), v.clone());
        }
    }
    json!({"summary": summary, "parameters": params, "responses": responses})
}

fn path_param(name: &str, desc: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": desc, "schema": {"type": "string"}})
}

fn query_param(name: &str, desc: &str, required: bool) -> Value {
    json!({"name": name, "in": "query", "required": required, "description": desc, "schema": {"type": "string"}})
}

fn content(kind: &str, desc: &str) -> Value {
    json!({"200": {"description": desc, "content": {kind: {}}}})
}

/// The document.
pub fn document() -> Value {
    let account = path_param("account", "account name");
    let period = path_param("period", "YYYY-MM");
    let q_period = query_param("period", "YYYY-MM", true);
    let q_period_opt = query_param("period", "YYYY-MM (default: the current month)", false);
    let std_err = ["400", "401", "403", "500", "503"];
    json!({
        "openapi": "3.1.0",
        "info": {"title": "tally", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Usage-metering and billing ledger for the Anthropic Messages API. Authenticate with `Authorization: Bearer KEY` (the admin token or an account key); HTTP Basic with the key as password is accepted too."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "basic": {"type": "http", "scheme": "basic"}},
            "schemas": {"Details": {"type": "object", "additionalProperties": false, "properties": {
                "name": {"type": "string"}, "email": {"type": "string"}, "address": {"type": "string"}, "tax_id": {"type": "string"},
                "tax_rate_percent": {"type": "string", "example": "20"}, "tax_label": {"type": "string"}, "reverse_charge": {"type": "boolean"},
                "terms_days": {"type": "integer", "minimum": 0, "maximum": 365},
                "paper": {"type": "string", "enum": ["a4", "letter"], "description": "the seller's only: the paper PDF invoices are laid out on (default a4)"}}},
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}}
        },
        "security": [{"bearer": []}, {"basic": []}],
        "paths": {
            "/": {"get": op("Finance dashboard (HTML)", json!([q_period_opt]), content("text/html", "the dashboard"), &["400", "401", "500", "503"])},
            "/healthz": {"get": op("Liveness and database reachability", json!([]), content("application/json", "healthy"), &["503"])},
            "/metrics": {"get": op("Prometheus metrics", json!([]), content("text/plain", "metrics"), &[])},
            "/openapi.json": {"get": op("This document", json!([]), content("application/json", "OpenAPI 3.1"), &[])},
            "/v1/usage": {"post": {
                "summary": "Record one Messages API response (envelope, bare response, streamed events or batch result line)",
                "parameters": [query_param("account", "account for a bare response", false), query_param("recorded_at", "RFC 3339 time for a record without one", false)],
                "requestBody": {"required": true, "content": {"application/json": {}}},
                "responses": op("", json!([]), json!({"201": {"description": "recorded"}, "200": {"description": "duplicate of a recorded response"}}), &["400", "401", "403", "409", "413", "422", "500", "503"])["responses"].clone()
            }},
            "/v1/usage/batch": {"post": {
                "summary": "Record many responses (NDJSON, streamed); per-line results",
                "parameters": [query_param("account", "account for bare responses", false), query_param("recorded_at", "RFC 3339 time for records without one", false), query_param("results", "all | problems | none", false)],
                "requestBody": {"required": true, "content": {"application/x-ndjson": {}}},
                "responses": op("", json!([]), content("application/x-ndjson", "a summary and per-line results"), &["400", "401", "413", "500", "503"])["responses"].clone()
            }},
            "/v1/accounts/{account}/invoices/{period}": {"get": op("An account's invoice (JSON; CSV with Accept: text/csv or ?format=csv)", json!([account, period, query_param("format", "json | csv", false)]), json!({"200": {"description": "the invoice", "content": {"application/json": {}, "text/csv": {}}}}), &["400", "401", "404", "500", "503"])},
            "/v1/accounts/{account}/invoices/{period}.html": {"get": op("An account's invoice as a self-contained printable HTML document (a finalized invoice's as frozen)", json!([account, period]), content("text/html", "the invoice document"), &["400", "401", "404", "500", "503"])},
            "/v1/accounts/{account}/invoices/{period}.pdf": {"get": op("An account's invoice as a PDF on the seller's paper (a finalized invoice's as frozen)", json!([account, period]), content("application/pdf", "the invoice document"), &["400", "401", "404", "500", "503"])},
            "/v1/accounts/{account}/invoices/{period}/finalize": {"post": op("Finalize (freeze) an invoice (admin)", json!([account, period, query_param("allow_unpriced", "true to finalize despite unpriced usage", false)]), content("application/json", "the finalized invoice"), &["400", "401", "403", "409", "500", "503"])},
            "/v1/invoices": {"get": op("Every invoice of a period the caller may see", json!([q_period, query_param("format", "json | csv", false)]), json!({"200": {"description": "invoices", "content": {"application/json": {}, "text/csv": {}}}}), &std_err)},
            "/v1/accounts/{account}/budget": {
                "get": op("Budget, month-to-date spend, forecast and alerts", json!([account, q_period_opt]), content("application/json", "budget status"), &["400", "401", "404", "500", "503"]),
                "put": {
                    "summary": "Set an account's monthly budget (admin)",
                    "parameters": [account],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["monthly_usd"], "properties": {"monthly_usd": {"type": "string", "example": "500.00"}}, "additionalProperties": false}}}},
                    "responses": op("", json!([]), content("application/json", "budget status"), &std_err)["responses"].clone()
                }
            },
            "/v1/accounts/{account}/plan": {
                "get": op("An account's plan in force: versions (amounts as strings) and its TOML (admin)", json!([account]), content("application/json", "the plan"), &["400", "401", "403", "404", "500", "503"]),
                "put": {
                    "summary": "Set an account's plan from its TOML file (admin); a bad file is refused with its line and changes nothing",
                    "parameters": [account],
                    "requestBody": {"required": true, "content": {"application/toml": {"schema": {"type": "string"}}, "text/plain": {"schema": {"type": "string"}}}},
                    "responses": op("", json!([]), content("application/json", "the plan as set"), &std_err)["responses"].clone()
                }
            },
            "/v1/accounts/{account}/credits": {
                "get": op("Prepaid credit: balance, grants, what each invoice drew (finalized) or would draw (open)", json!([account]), content("application/json", "credit status"), &["400", "401", "404", "500", "503"]),
                "post": {
                    "summary": "Grant prepaid credit (admin)",
                    "parameters": [account],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["usd"], "properties": {"usd": {"type": "string", "example": "100.00"}, "expires": {"type": "string", "format": "date"}, "note": {"type": "string"}, "low_balance_usd": {"type": "string"}}, "additionalProperties": false}}}},
                    "responses": op("", json!([]), content("application/json", "credit status"), &std_err)["responses"].clone()
                }
            },
            "/v1/accounts/{account}/balance": {"get": op("May the account keep spending: balance_usd, month_to_date_usd, budget_usd, allowed", json!([account]), content("application/json", "balance"), &["400", "401", "404", "500", "503"])},
            "/v1/accounts/{account}/details": {
                "get": op("An account's billing details (its own for an account key)", json!([account]), content("application/json", "billing details"), &["400", "401", "404", "500", "503"]),
                "put": {
                    "summary": "Set an account's billing details, whole (admin)",
                    "parameters": [account],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Details"}}}},
                    "responses": op("", json!([]), content("application/json", "billing details"), &std_err)["responses"].clone()
                }
            },
            "/v1/org": {
                "get": op("The seller's billing details (admin)", json!([]), content("application/json", "billing details"), &std_err),
                "put": {
                    "summary": "Set the seller's billing details, whole (admin)",
                    "parameters": [],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Details"}}}},
                    "responses": op("", json!([]), content("application/json", "billing details"), &std_err)["responses"].clone()
                }
            },
            "/v1/alerts": {"get": op("Budget alerts (50/80/100 %), then low-balance credit alerts", json!([query_param("period", "YYYY-MM", false)]), content("application/json", "alerts"), &std_err)},
            "/v1/cost_report": {"get": op("Cost report in the shape of Anthropic's Admin API, plus account grouping",
                json!([query_param("starting_at", "RFC 3339", true), query_param("ending_at", "RFC 3339", false), query_param("bucket_width", "1d", false),
                       query_param("group_by[]", "account | description | model | workspace_id (repeatable)", false), query_param("limit", "buckets per page, 1-31 (default 7)", false), query_param("page", "next_page of the previous answer", false),
                       query_param("view", "price (default: what accounts pay) | cost | margin (admin only)", false)]),
                content("application/json", "daily buckets"), &std_err)},
            "/v1/exports/focus": {"get": op("FinOps FOCUS cost-and-usage CSV of a period", json!([q_period]), content("text/csv", "FOCUS rows"), &std_err)},
            "/v1/exports/quickbooks": {"get": op("A period's finalized invoices in QuickBooks Online's invoice import CSV (drafts are never exported)", json!([q_period, query_param("date_format", "mdy (default) | dmy | iso", false)]), content("text/csv", "one row per invoice line"), &std_err)},
            "/v1/exports/xero": {"get": op("A period's finalized invoices in Xero's sales invoice import CSV (drafts are never exported)", json!([q_period, query_param("date_format", "dmy (default) | mdy | iso", false), query_param("account_code", "revenue account code of every line (default 200)", false), query_param("tax_type", "Xero tax rate name of every line (default Tax Exempt)", false)]), content("text/csv", "one row per invoice line"), &std_err)},
            "/v1/estimate": {"post": {
                "summary": "Project a workload's cost before deploying it (the workload document of SPEC 8 as JSON)",
                "parameters": [query_param("at", "YYYY-MM-DD: price with the version in force then (default today)", false), query_param("compare_models", "comma-separated models: the same workloads on each, side by side", false), query_param("account", "price at this account's plan (an account key: its own, the default)", false)],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["workload"], "properties": {"days": {"type": "integer", "default": 30}, "workload": {"type": "array", "items": {"type": "object", "required": ["name", "model", "requests_per_day"]}}}}}}},
                "responses": op("", json!([]), content("application/json", "the estimate (or the comparison)"), &["400", "401", "500", "503"])["responses"].clone()
            }}
        }
    })
}

pub async fn serve() -> Json<Value> {
    Json(document())
}
