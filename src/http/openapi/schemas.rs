//! The document's schemas: records, usage, the estimate's workload (whose
//! models and dates come from the price book), and every answer's shape.

use super::*;

/// What the estimate may name: models every price-book version from the
/// one in force today on prices (the same workloads must price on any
/// `at` allowed), and the first day `at` may be.
pub(super) struct EstimateScope {
    pub(super) models: Vec<String>,
    pub(super) from: Option<NaiveDate>,
}

impl EstimateScope {
    pub(super) fn of(book: &PriceBook, today: NaiveDate) -> EstimateScope {
        let versions = book.versions();
        let from = book
            .version_at(today)
            .or(versions.first())
            .map(|v| v.effective_from);
        let mut later = versions
            .iter()
            .filter(|v| from.is_some_and(|f| v.effective_from >= f));
        let mut models: Vec<String> = later
            .next()
            .map(|v| v.models.iter().map(|m| m.id.clone()).collect())
            .unwrap_or_default();
        for v in later {
            models.retain(|m| v.model(m).is_some());
        }
        models.sort();
        models.dedup();
        EstimateScope { models, from }
    }
}

/// The digit strings of `digits`'s length greater than it, as regex
/// alternatives (none for all nines).
pub(super) fn greater_digits(digits: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, c) in digits.char_indices() {
        let d = c.to_digit(10).unwrap_or(9);
        if d < 9 {
            let rest = digits.len() - i - 1;
            let tail = if rest > 0 {
                format!("[0-9]{{{rest}}}")
            } else {
                String::new()
            };
            out.push(format!("{}[{}-9]{tail}", &digits[..i], d + 1));
        }
    }
    out
}

/// A pattern of the `YYYY-MM-DD` dates on or after `from` (the calendar's
/// own rules, such as February's length, are `format: date`'s).
pub(super) fn dates_from(from: NaiveDate) -> String {
    const MONTH: &str = "(0[1-9]|1[0-2])";
    const DAY: &str = "(0[1-9]|[12][0-9]|3[01])";
    let year = format!("{:04}", from.year());
    let mut alternatives = Vec::new();
    let later_years = greater_digits(&year);
    if !later_years.is_empty() {
        alternatives.push(format!("({})-{MONTH}-{DAY}", later_years.join("|")));
    }
    let later_months: Vec<String> = (from.month() + 1..=12).map(|m| format!("{m:02}")).collect();
    if !later_months.is_empty() {
        alternatives.push(format!("{year}-({})-{DAY}", later_months.join("|")));
    }
    let days: Vec<String> = (from.day()..=31).map(|d| format!("{d:02}")).collect();
    alternatives.push(format!("{year}-{:02}-({})", from.month(), days.join("|")));
    format!("^({})$", alternatives.join("|"))
}

/// The counters of a Messages API `usage` (each a non-negative integer or
/// null), as a response, a stream event or an iteration carries them.
pub(super) fn usage_schema() -> Value {
    // At most 2^53 - 1, so that a count is exact in any JSON reader (and
    // written as `39.0` too).
    let count =
        json!({"type": ["integer", "null"], "minimum": 0, "maximum": 9_007_199_254_740_991_i64});
    json!({
        "type": ["object", "null"],
        "description": "token and server-tool counters; fields tally does not bill are kept, not read",
        "properties": {
            "input_tokens": count, "output_tokens": count,
            "cache_creation_input_tokens": count, "cache_read_input_tokens": count,
            "cache_creation": {"type": ["object", "null"], "properties": {
                "ephemeral_5m_input_tokens": count, "ephemeral_1h_input_tokens": count}},
            "server_tool_use": {"type": ["object", "null"], "properties": {
                "web_search_requests": count, "web_fetch_requests": count, "code_execution_requests": count}},
            "iterations": {"type": ["array", "null"], "items": {"$ref": "#/components/schemas/UsageIteration"}},
            "service_tier": {"pattern": NO_NUL}, "inference_geo": {"pattern": NO_NUL}, "speed": {"pattern": NO_NUL},
            "type": {"pattern": NO_NUL}, "model": {"pattern": NO_NUL}
        }
    })
}

/// The schemas of the request bodies `POST /v1/usage` takes (docs/input.md).
pub(super) fn record_schemas(schemas: &mut Map<String, Value>) {
    let label = json!({"type": ["string", "null"], "maxLength": crate::record::MAX_LABEL_CHARS, "pattern": NO_NUL});
    schemas.insert("Usage".into(), usage_schema());
    let mut iteration = usage_schema();
    iteration["type"] = json!("object");
    iteration["description"] =
        json!("one iteration's counters; `type` is e.g. `message`, `advisor`, `compaction`");
    schemas.insert("UsageIteration".into(), iteration);
    // The message fields billing reads; anything else is kept verbatim.
    let message_properties = json!({
        "type": {"const": "message"},
        "id": {"type": "string", "minLength": 1, "pattern": NO_NUL, "description": "the message id: a record's identity"},
        "model": {"type": "string", "pattern": NO_NUL},
        "usage": {"$ref": "#/components/schemas/Usage"},
        "container": {"type": ["object", "null"], "properties": {"id": {"type": ["string", "null"], "pattern": NO_NUL}}},
        "content": {"type": ["array", "null"]},
        "stop_details": {"properties": {"category": {"pattern": NO_NUL}}}
    });
    schemas.insert(
        "Message".into(),
        json!({"type": "object", "description": "a Messages API response", "required": ["id", "model"], "properties": message_properties}),
    );
    // Fields that may stand beside any shape.
    let envelope = json!({
        "account": {"type": ["string", "null"], "pattern": ACCOUNT_PATTERN, "description": "with an account key it must be its own (403). Rule: required here unless given by `?account=` or an account-bound key (else 422)"},
        "recorded_at": {"type": ["string", "null"], "format": "date-time", "pattern": YEAR_2000_ON, "description": "RFC 3339, from the year 2000 on (default: `?recorded_at=`, else the time received). Rule: not more than a day after the time received (else 422)"},
        "started_at": {"type": ["string", "null"], "format": "date-time", "pattern": YEAR_2000_ON, "description": "RFC 3339, from the year 2000 on. Rule: not after `recorded_at` (else 422)"},
        "batch": {"type": ["boolean", "null"]},
        "files_preloaded": {"type": ["boolean", "null"]},
        "workspace": label, "api_key_id": label, "user": label,
        "tags": {"type": ["object", "null"], "maxProperties": crate::record::MAX_TAGS,
                 "propertyNames": {"pattern": TAG_KEY_PATTERN},
                 "additionalProperties": {"type": "string", "maxLength": crate::record::MAX_LABEL_CHARS, "pattern": NO_NUL}},
        "request": {"description": "the Messages API request; `metadata.user_id`, when a string, is at most 256 characters",
                    "properties": {"metadata": {"properties": {"user_id": {"maxLength": crate::record::MAX_LABEL_CHARS, "pattern": NO_NUL}}}}}
    });
    let with = |extra: Value| -> Value {
        let mut props = envelope.as_object().cloned().unwrap_or_default();
        if let Value::Object(extra) = extra {
            props.extend(extra);
        }
        Value::Object(props)
    };
    let absent = json!({"type": "null"});
    schemas.insert(
        "EnvelopeRecord".into(),
        json!({"type": "object", "title": "envelope with the response", "required": ["response"],
               "properties": with(json!({"response": {"$ref": "#/components/schemas/Message"}}))}),
    );
    let mut bare = message_properties.as_object().cloned().unwrap_or_default();
    bare.extend(
        with(json!({"response": absent, "events": absent, "result": absent}))
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    schemas.insert(
        "BareRecord".into(),
        json!({"type": "object", "title": "a bare Messages API response", "required": ["type", "id", "model"], "properties": bare}),
    );
    // A streamed response's events: a message_start with the message, a
    // message_delta with the final usage; content blocks by index.
    let delta = json!({"type": "object", "description": "fields here replace the message's",
        "properties": {"type": {"const": "message"}, "id": {"type": "string", "minLength": 1, "pattern": NO_NUL}, "model": {"type": "string", "pattern": NO_NUL},
                       "content": {"type": ["array", "null"]},
                       "container": {"type": ["object", "null"], "properties": {"id": {"type": ["string", "null"], "pattern": NO_NUL}}},
                       "stop_details": {"properties": {"category": {"pattern": NO_NUL}}},
                       "usage": {"$ref": "#/components/schemas/Usage"}}});
    let event = json!({"type": "object", "required": ["type"], "anyOf": [
        {"properties": {"type": {"const": "message_start"}, "message": {"$ref": "#/components/schemas/Message"}}, "required": ["message"]},
        {"properties": {"type": {"enum": ["content_block_start", "content_block_delta", "content_block_stop"]},
                        "index": {"type": "integer", "minimum": 0, "maximum": 99_999}}, "required": ["index"]},
        {"properties": {"type": {"const": "message_delta"}, "delta": delta, "usage": {"$ref": "#/components/schemas/Usage"}}},
        {"properties": {"type": {"enum": ["message_stop", "ping", "error"]}}}
    ]});
    schemas.insert(
        "StreamRecord".into(),
        json!({"type": "object", "title": "envelope with a streamed response's events", "required": ["events"],
               "properties": with(json!({"response": absent, "events": {"type": "array", "items": event,
                   "allOf": [{"contains": {"properties": {"type": {"const": "message_start"}}}},
                             {"contains": {"properties": {"type": {"const": "message_delta"}}}}]}}))}),
    );
    schemas.insert(
        "BatchResultRecord".into(),
        json!({"type": "object", "title": "a Message Batches result line", "required": ["custom_id", "result"],
               "properties": with(json!({"response": absent, "events": absent, "custom_id": {"type": "string", "pattern": NO_NUL},
                   "result": {"type": "object", "required": ["type"], "anyOf": [
                       {"properties": {"type": {"const": "succeeded"}, "message": {"$ref": "#/components/schemas/Message"}}, "required": ["message"]},
                       {"properties": {"type": {"enum": ["errored", "canceled", "expired"]}}}]}}))}),
    );
    schemas.insert(
        "Record".into(),
        json!({"description": "one Messages API response to record, in one of the shapes docs/input.md describes; fields not listed are kept verbatim",
               "anyOf": [schema_ref("EnvelopeRecord"), schema_ref("BareRecord"), schema_ref("StreamRecord"), schema_ref("BatchResultRecord")]}),
    );
    schemas.insert(
        "LineResult".into(),
        json!({"type": "object", "required": ["line", "status"], "properties": {
            "line": {"type": "integer"}, "status": {"enum": ["recorded", "duplicate", "conflict", "rejected", "not_stored"]},
            "id": {"type": "string"}, "account": {"type": "string"}, "rejected_id": {"type": "integer"},
            "retryable": {"type": "boolean", "description": "on a line not stored: whether sending it again may succeed"},
            "error": {"type": "object", "required": ["type", "message"], "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}),
    );
    schemas.insert(
        "BatchSummary".into(),
        json!({"type": "object", "required": ["accepted", "duplicates", "conflicts", "rejected", "results"], "properties": {
            "accepted": {"type": "integer"}, "duplicates": {"type": "integer"}, "conflicts": {"type": "integer"}, "rejected": {"type": "integer"},
            "rejected_lines": {"type": "array", "items": {"type": "integer"}}, "conflict_lines": {"type": "array", "items": {"type": "integer"}},
            "problems": {"type": "array"}, "problems_omitted": {"type": "integer"},
            "not_stored": {"type": "integer", "description": "lines storage failed to take (only when it did)"},
            "results": {"type": "array", "items": schema_ref("LineResult")},
            "error": {"type": "object", "required": ["type", "message"], "description": "why the body was not processed to its end (413, 400 incomplete_body, 503 storage_unavailable)",
                      "properties": {"type": {"type": "string"}, "message": {"type": "string"}, "last_complete_line": {"type": "integer"}, "last_read_line": {"type": "integer"}}}}}),
    );
}

/// A JSON merge patch (RFC 7396) of an object with these `properties`:
/// each may be given to set it or `null` to clear it; the rest stay.
fn patch_of(properties: &Map<String, Value>, what: &str) -> Value {
    let nullable: Map<String, Value> = properties
        .iter()
        .map(|(k, v)| (k.clone(), json!({"anyOf": [v, {"type": "null"}]})))
        .collect();
    json!({"type": "object", "additionalProperties": false,
           "description": format!("a merge patch of {what}: a field given is set, a field given as null is cleared, a field left out stays as it is"),
           "properties": nullable})
}

/// The schemas of the JSON answers and of the other request bodies.
pub(super) fn schemas(scope: &EstimateScope) -> Value {
    let mut s = Map::new();
    let amount = json!({"type": "string", "pattern": DECIMAL_PATTERN});
    let opt_amount = json!({"type": ["string", "null"], "pattern": DECIMAL_PATTERN});
    s.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}),
    );
    record_schemas(&mut s);
    let party = json!({
        "name": line(200), "email": {"type": "string", "maxLength": 254, "pattern": EMAIL_PATTERN},
        "address": {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": LINES_PATTERN, "description": "may have line breaks"},
        "tax_id": line(64)
    });
    let mut seller = party.as_object().cloned().unwrap_or_default();
    seller.insert("paper".into(), json!({"type": "string", "enum": ["a4", "letter"], "description": "the paper PDF invoices are laid out on (default a4)"}));
    s.insert(
        "SellerDetails".into(),
        json!({"type": "object", "additionalProperties": false, "description": "the seller's details; fields left out are cleared", "properties": seller}),
    );
    let mut account = party.as_object().cloned().unwrap_or_default();
    account.extend(
        json!({
            "tax_rate_percent": {"type": "string", "pattern": PERCENT_PATTERN, "example": "20"},
            "tax_label": line(32),
            "reverse_charge": {"type": "boolean"},
            "terms_days": {"type": "integer", "minimum": 0, "maximum": 365}
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
    );
    s.insert(
        "SellerDetailsPatch".into(),
        patch_of(&seller, "the seller's details"),
    );
    s.insert(
        "AccountDetailsPatch".into(),
        patch_of(&account, "an account's details"),
    );
    s.insert(
        "AccountDetails".into(),
        json!({"type": "object", "additionalProperties": false, "description": "an account's details; fields left out are cleared", "properties": account}),
    );
    s.insert(
        "BudgetStatus".into(),
        json!({"type": "object", "required": ["account", "period", "monthly_budget_usd", "month_to_date_usd", "forecast_usd", "share_used", "alerts"],
               "properties": {"account": {"type": "string"}, "period": {"type": "string", "pattern": PERIOD_PATTERN},
                              "monthly_budget_usd": opt_amount, "month_to_date_usd": amount, "forecast_usd": amount,
                              "share_used": opt_amount, "alerts": {"type": "array"}}}),
    );
    s.insert(
        "CreditStatus".into(),
        json!({"type": "object", "required": ["account", "balance_usd", "granted_usd", "drawn_usd", "pending_usd", "expired_usd", "voided_usd", "grants", "draws"],
               "properties": {"account": {"type": "string"}, "balance_usd": amount, "granted_usd": amount, "drawn_usd": amount,
                              "pending_usd": amount, "expired_usd": amount, "voided_usd": amount,
                              "grants": {"type": "array"}, "draws": {"type": "array"}}}),
    );
    s.insert(
        "Balance".into(),
        json!({"type": "object", "required": ["account", "balance_usd", "month_to_date_usd", "budget_usd", "allowed"],
               "properties": {"account": {"type": "string"}, "balance_usd": opt_amount, "month_to_date_usd": amount,
                              "budget_usd": opt_amount, "allowed": {"type": "boolean"}}}),
    );
    s.insert(
        "Plan".into(),
        json!({"type": "object", "required": ["account", "id", "set_at", "in_force", "versions", "toml"],
               "properties": {"account": {"type": "string"}, "id": {"type": "integer"}, "versions": {"type": "array"}, "toml": {"type": "string"},
                              "in_force": {"type": ["string", "null"], "format": "date"}}}),
    );
    s.insert(
        "Invoice".into(),
        json!({"type": "object", "required": ["account", "period"], "description": "an invoice (a draft until finalized); amounts are decimal strings",
               "properties": {"account": {"type": "string"}, "period": {"type": "string", "pattern": PERIOD_PATTERN}}}),
    );
    s.insert(
        "Invoices".into(),
        json!({"type": "object", "required": ["period", "invoices"], "properties": {
            "period": {"type": "string", "pattern": PERIOD_PATTERN}, "invoices": {"type": "array", "items": schema_ref("Invoice")}}}),
    );
    s.insert(
        "Alerts".into(),
        json!({"type": "object", "required": ["data"], "properties": {"data": {"type": "array", "items": {"type": "object", "required": ["type", "account"]}}}}),
    );
    s.insert(
        "CostReport".into(),
        json!({"type": "object", "required": ["data", "has_more", "next_page"], "properties": {
            "data": {"type": "array", "items": {"type": "object", "required": ["starting_at", "ending_at", "results"]}},
            "has_more": {"type": "boolean"}, "next_page": {"type": ["string", "null"]}}}),
    );
    let model = if scope.models.is_empty() {
        json!({"type": "string", "pattern": r"\S"})
    } else {
        json!({"type": "string", "enum": scope.models, "description": "a model the price book prices from the first day `at` may be on"})
    };
    let count = |what: &str| json!({"type": "number", "minimum": 0, "maximum": 1_000_000_000, "description": what});
    let share =
        |what: &str| json!({"type": "number", "minimum": 0, "maximum": 1, "description": what});
    s.insert(
        "Workload".into(),
        json!({"type": "object", "additionalProperties": false, "required": ["name", "model", "requests_per_day"],
               "description": "one kind of traffic; counts are averages per request. Rule: code_execution_share + files_preloaded_share is at most 1; requests_per_day × container seconds a day (code_execution_share × container_minutes × 60, each container at least the book's minimum, plus files_preloaded_share × that minimum) is at most 10^12",
               "properties": {
                   "name": {"type": "string", "pattern": r"\S"}, "model": model,
                   "requests_per_day": count("requests a day"),
                   "input_tokens": count("per request"), "output_tokens": count("per request"),
                   "cache_write_5m_tokens": count("per request"), "cache_write_1h_tokens": count("per request"),
                   "cache_read_tokens": count("per request"), "web_searches": count("per request"),
                   "batch_share": share("share of requests sent through the Batches API"),
                   "code_execution_share": share("share of requests that run code, each in a container of its own"),
                   "container_minutes": count("average execution minutes of such a container"),
                   "files_preloaded_share": share("share of requests that preload files and run no code")}}),
    );
    s.insert(
        "WorkloadFile".into(),
        json!({"type": "object", "additionalProperties": false, "required": ["workload"], "properties": {
            "days": {"type": "integer", "minimum": 1, "maximum": crate::estimate::workload::MAX_DAYS, "default": 30},
            "workload": {"type": "array", "minItems": 1, "maxItems": crate::estimate::MAX_WORKLOADS, "items": schema_ref("Workload")}}}),
    );
    s.insert(
        "Estimate".into(),
        json!({"anyOf": [
            {"type": "object", "title": "an estimate", "required": ["days", "at", "workloads", "subtotals", "total"], "properties": {
                "days": {"type": "integer"}, "at": {"type": "string", "format": "date"}, "total": amount,
                "workloads": {"type": "array"}, "subtotals": {"type": "object"}}},
            {"type": "object", "title": "a comparison (compare_models)", "required": ["days", "at", "models", "cheapest"], "properties": {
                "days": {"type": "integer"}, "at": {"type": "string", "format": "date"},
                "models": {"type": "array", "items": {"type": "object", "required": ["model", "subtotals", "total"], "properties": {"total": amount}}},
                "cheapest": {"type": "string"}}}]}),
    );
    Value::Object(s)
}
