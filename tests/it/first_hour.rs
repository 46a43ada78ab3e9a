//! What a newcomer meets in the first hour: the invoice as a terminal
//! table, finding one's accounts and periods, the warning for a mistyped
//! account, and `tally demo`. Through the real binary, on both backends.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::support::{Backend, TestDb, fixture_arg, tally, tally_ok};

/// A response of `model` for `account` at `at`.
fn response(account: &str, id: &str, at: &str, model: &str) -> Value {
    json!({"account": account, "recorded_at": at, "response": {
        "id": id, "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 120000, "output_tokens": 30000}}})
}

/// A refusal before any output; after 2026-06-02 it is not charged.
fn refusal(account: &str, id: &str, at: &str) -> Value {
    json!({"account": account, "recorded_at": at, "response": {
        "id": id, "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
        "content": [], "stop_reason": "refusal",
        "stop_details": {"type": "refusal", "category": "cyber"},
        "usage": {"input_tokens": 800, "output_tokens": 0}}})
}

fn ingest(db: &TestDb, lines: &[Value]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.ndjson");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    tally_ok(db, &["ingest", path.to_str().unwrap()]);
}

async fn text_invoice_and_finding_data(backend: Backend) {
    let db = TestDb::new(backend).await;
    tally_ok(&db, &["ingest", &fixture_arg("sample.ndjson")]);
    ingest(
        &db,
        &[
            response(
                "initech",
                "msg_t1",
                "2026-07-03T10:00:00Z",
                "claude-sonnet-4-6",
            ),
            response(
                "initech",
                "msg_t2",
                "2026-07-04T10:00:00Z",
                "claude-mystery-9",
            ),
            response(
                "initech",
                "msg_t3",
                "2026-07-05T10:00:00Z",
                "claude-mystery-9",
            ),
            refusal("initech", "msg_t4", "2026-07-06T10:00:00Z"),
            refusal("initech", "msg_t5", "2026-07-07T10:00:00Z"),
        ],
    );

    // The text invoice: categories, subtotals, total, and both notes.
    let (code, text, err) = tally(
        &db,
        &[
            "invoice",
            "--account",
            "initech",
            "--period",
            "2026-07",
            "--format",
            "text",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "a known account gets no warning: {err}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Draft invoice for initech, July 2026", "{text}");
    assert!(
        lines.iter().any(|l| l.starts_with("Description")
            && l.contains("Quantity")
            && l.trim_end().ends_with("Amount")),
        "{text}"
    );
    assert!(lines.contains(&"Tokens"), "{text}");
    let row = lines
        .iter()
        .find(|l| l.contains("claude-sonnet-4-6 input tokens"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        row.contains("120,000 tokens") && row.contains("$3.00 / MTok") && row.ends_with("$0.36"),
        "{row}"
    );
    let subtotal = lines
        .iter()
        .find(|l| l.trim_start().starts_with("Subtotal"))
        .unwrap();
    assert!(subtotal.ends_with("$0.81"), "{subtotal}");
    let total = lines.iter().find(|l| l.starts_with("Total (USD)")).unwrap();
    assert!(total.ends_with("$0.81"), "{total}");
    // Amounts line up in one column.
    assert_eq!(row.len(), total.len(), "{text}");
    let notes = text
        .split("\nNotes\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{text}"));
    let notes_flat = notes.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        notes_flat.contains("claude-mystery-9 (2 records)"),
        "unpriced usage is noted: {notes}"
    );
    assert!(
        notes.contains("2 refused requests were not charged."),
        "{notes}"
    );
    assert!(
        notes.lines().all(|l| l.chars().count() <= 80),
        "notes wrap at 80 columns: {notes}"
    );

    // Container hours: at most 6 decimals in CSV and text, exact in JSON.
    let csv = tally_ok(
        &db,
        &[
            "invoice",
            "--account",
            "acme",
            "--period",
            "2025-05",
            "--format",
            "csv",
        ],
    );
    assert!(
        csv.contains(",container_hours,false,false,0.166667,hour,"),
        "{csv}"
    );
    let json: Value = serde_json::from_str(&tally_ok(
        &db,
        &["invoice", "--account", "acme", "--period", "2025-05"],
    ))
    .unwrap();
    let hours = json["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["charge"] == "container_hours")
        .unwrap()["quantity"]
        .as_str()
        .unwrap()
        .parse::<Decimal>()
        .unwrap();
    assert_eq!((hours * Decimal::from(3600)).round(), Decimal::from(600));
    assert!(hours.scale() > 6, "the JSON keeps the exact quotient");
    let text = tally_ok(
        &db,
        &[
            "invoice",
            "--account",
            "acme",
            "--period",
            "2025-05",
            "--format",
            "text",
        ],
    );
    assert!(text.contains("0.166667 hours"), "{text}");
    assert!(text.contains("-0.166667 hours"), "{text}");
    assert!(text.contains("Code execution\n"), "{text}");

    // Every account's invoice as text, one after another.
    let all = tally_ok(
        &db,
        &["invoices", "--period", "2025-10", "--format", "text"],
    );
    assert!(
        all.contains("Draft invoice for acme, October 2025"),
        "{all}"
    );
    assert!(
        all.contains("Draft invoice for globex, October 2025"),
        "{all}"
    );

    // Periods and accounts.
    let periods: Value = serde_json::from_str(&tally_ok(&db, &["periods", "--json"])).unwrap();
    assert_eq!(
        periods,
        json!([
            {"period": "2025-05", "records": 4, "accounts": 1},
            {"period": "2025-10", "records": 6, "accounts": 2},
            {"period": "2026-07", "records": 5, "accounts": 1},
        ])
    );
    let table = tally_ok(&db, &["periods"]);
    assert!(
        table.lines().next().unwrap().starts_with("period"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 4, "{table}");

    let accounts: Value = serde_json::from_str(&tally_ok(&db, &["accounts", "--json"])).unwrap();
    let names: Vec<&str> = accounts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme", "globex", "initech"]);
    assert_eq!(
        accounts[0]["periods"][0],
        json!({"period": "2025-05", "records": 4, "total_usd": "0.05", "status": "draft"})
    );
    assert_eq!(accounts[0]["periods"].as_array().unwrap().len(), 2);
    // Totals are the invoices' own.
    for a in accounts.as_array().unwrap() {
        for p in a["periods"].as_array().unwrap() {
            let inv: Value = serde_json::from_str(&tally_ok(
                &db,
                &[
                    "invoice",
                    "--account",
                    a["account"].as_str().unwrap(),
                    "--period",
                    p["period"].as_str().unwrap(),
                ],
            ))
            .unwrap();
            assert_eq!(p["total_usd"], inv["total"], "{a}");
            assert_eq!(p["records"], inv["records"], "{a}");
        }
    }
    // A finalized period says so; --period keeps only that month.
    tally_ok(
        &db,
        &[
            "invoice",
            "--account",
            "globex",
            "--period",
            "2025-10",
            "--finalize",
        ],
    );
    let october: Value = serde_json::from_str(&tally_ok(
        &db,
        &["accounts", "--period", "2025-10", "--json"],
    ))
    .unwrap();
    assert_eq!(october.as_array().unwrap().len(), 2, "{october}");
    assert_eq!(october[1]["account"], "globex");
    assert_eq!(october[1]["periods"][0]["status"], "finalized");
    assert_eq!(october[1]["periods"].as_array().unwrap().len(), 1);
    let table = tally_ok(&db, &["accounts"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("globex") && l.contains("2025-10") && l.ends_with("finalized")),
        "{table}"
    );
    // The billing-details subcommands still answer under `accounts`.
    tally_ok(
        &db,
        &["accounts", "set", "initech", "--name", "Initech LLC"],
    );
    assert!(tally_ok(&db, &["accounts", "show", "initech"]).contains("Initech LLC"));
    let (code, _, err) = tally(&db, &["accounts", "--period", "2025-13"]);
    assert_eq!(code, 1);
    assert!(err.contains("--period"), "{err}");

    // A mistyped account: the empty invoice, a warning naming the closest
    // known account, exit 0; with --strict, exit 1.
    let (code, out, err) = tally(
        &db,
        &["invoice", "--account", "initec", "--period", "2026-07"],
    );
    assert_eq!(code, 0, "{err}");
    let empty: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(empty["total"], "0.00");
    assert_eq!(empty["lines"], json!([]));
    assert!(
        err.contains("no records for account \"initec\"")
            && err.contains("did you mean \"initech\"?"),
        "{err}"
    );
    let (code, out, err) = tally(
        &db,
        &[
            "invoice",
            "--account",
            "Globex",
            "--period",
            "2026-07",
            "--format",
            "text",
            "--strict",
        ],
    );
    assert_eq!(code, 1, "--strict fails on an unknown account");
    assert!(out.contains("No usage in this period."), "{out}");
    assert!(err.contains("did you mean \"globex\"?"), "{err}");
    let (code, _, err) = tally(
        &db,
        &[
            "invoice",
            "--account",
            "zzzz",
            "--period",
            "2026-07",
            "--strict",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("no records for account \"zzzz\"") && err.contains("tally accounts"),
        "nothing close: points at the list instead: {err}"
    );
    // Finalizing a name tally knows nothing of is refused: no number is
    // used up.
    let (code, _, err) = tally(
        &db,
        &[
            "invoice",
            "--account",
            "initec",
            "--period",
            "2026-07",
            "--finalize",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("not finalized") && err.contains("did you mean \"initech\"?"),
        "{err}"
    );
    let numbered = db
        .texts("select cast(count(*) as text) from invoices where account = 'initec'")
        .await;
    assert_eq!(numbered, ["0"]);
    // An account with a budget (or plan, details, credit) but no records
    // still gets the warning (it has no records), but it is a real account:
    // it may be finalized (a minimum commitment needs no usage).
    tally_ok(
        &db,
        &["budget", "set", "--account", "hooli", "--monthly", "10"],
    );
    let (code, _, err) = tally(
        &db,
        &[
            "invoice",
            "--account",
            "hooli",
            "--period",
            "2026-07",
            "--strict",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no records for account \"hooli\""), "{err}");
    let (code, out, err) = tally(
        &db,
        &[
            "invoice",
            "--account",
            "hooli",
            "--period",
            "2026-07",
            "--finalize",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"number\": \"INV-2026-07-"), "{out}");
    let (code, _, err) = tally(
        &db,
        &[
            "invoice",
            "--account",
            "initech",
            "--period",
            "2025-05",
            "--strict",
        ],
    );
    assert_eq!(code, 0, "an account with records elsewhere is known: {err}");
    assert!(err.is_empty(), "{err}");
}

/// `tally demo`: an empty ledger becomes a quarter of a dozen accounts'
/// usage, up to `--now` (the dashboard's test runs it up to the real now),
/// with everything the dashboard shows; a second run refuses to mix its
/// records into the first's.
async fn demo_fills_a_quarter(backend: Backend) {
    let db = TestDb::new(backend).await;
    // Half a minute into a month: its records still reach into it.
    let (code, out, err) = tally(
        &db,
        &["demo", "--records", "3000", "--now", "2026-09-01T00:00:30Z"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tally serve"), "says what to do next: {out}");
    assert!(out.contains("3000 records across 12 accounts"), "{out}");
    assert!(out.contains("July 2026 to September 2026"), "{out}");

    let this_month = tally::billing::Period::parse("2026-09").unwrap();
    let last = tally::billing::Period::parse("2026-08").unwrap();
    let first = tally::billing::Period::parse("2026-07").unwrap();
    let periods: Value = serde_json::from_str(&tally_ok(&db, &["periods", "--json"])).unwrap();
    let listed: Vec<String> = periods
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["period"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed,
        [first.to_string(), last.to_string(), this_month.to_string()],
        "the last three calendar months, up to --now"
    );
    let records: i64 = periods
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["records"].as_i64().unwrap())
        .sum();
    assert_eq!(records, 3000);

    let accounts: Value = serde_json::from_str(&tally_ok(&db, &["accounts", "--json"])).unwrap();
    let accounts = accounts.as_array().unwrap();
    assert_eq!(accounts.len(), 12);
    // The full months are finalized, this one is a draft.
    for a in accounts {
        for p in a["periods"].as_array().unwrap() {
            let expected = if p["period"] == this_month.to_string() {
                "draft"
            } else {
                "finalized"
            };
            assert_eq!(p["status"], expected, "{a}");
        }
    }
    // Accounts of very different sizes.
    let size = |name: &str| -> i64 {
        accounts.iter().find(|a| a["account"] == name).unwrap()["periods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["records"].as_i64().unwrap())
            .sum()
    };
    assert!(size("northwind") > 5 * size("stark"));

    // What the quarter holds, across all invoices of last month.
    let all: Value = serde_json::from_str(&tally_ok(
        &db,
        &[
            "invoices",
            "--period",
            &last.to_string(),
            "--format",
            "json",
        ],
    ))
    .unwrap();
    let charges: std::collections::BTreeSet<String> = all
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["lines"].as_array().unwrap().iter())
        .map(|l| {
            let batch = if l["batch"] == true { " batch" } else { "" };
            format!("{}{batch}", l["charge"].as_str().unwrap())
        })
        .collect();
    for c in [
        "input_tokens",
        "output_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
        "cache_read_tokens",
        "input_tokens batch",
        "web_search_requests",
        "container_hours",
        "container_free_hours",
    ] {
        assert!(charges.contains(c), "{c} in {charges:?}");
    }
    let refusals: i64 = all
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["unbilled_refusals"].as_i64().unwrap())
        .sum();
    assert!(refusals > 0, "refusals not charged");
    let containers: i64 = all
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["containers"].as_i64().unwrap())
        .sum();
    assert!(containers > 0);
    let preloads = db
        .texts("select cast(count(*) as text) from records where files_preloaded")
        .await;
    assert_ne!(preloads, ["0"], "files preloaded into containers");
    // Containers reused by several requests.
    let reused = db
        .texts(
            "select cast(count(*) as text) from (select container_id from records \
             where container_id is not null group by container_id having count(*) > 1) r",
        )
        .await;
    assert_ne!(reused, ["0"], "containers reused");
    // Attribution: tags to split by.
    let by_team: Value = serde_json::from_str(&tally_ok(
        &db,
        &[
            "invoice",
            "--account",
            "northwind",
            "--period",
            &last.to_string(),
            "--breakdown",
            "tag:team",
        ],
    ))
    .unwrap();
    assert!(
        by_team["breakdown"].as_array().unwrap().len() >= 3,
        "{by_team}"
    );
    // Budgets on the three largest accounts.
    let budgets: Value =
        serde_json::from_str(&tally_ok(&db, &["budget", "list", "--json"])).unwrap();
    let with_budget = budgets
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| !b["monthly_budget_usd"].is_null())
        .count();
    assert_eq!(with_budget, 3, "{budgets}");

    // Never into a ledger that holds records.
    let (code, _, err) = tally(&db, &["demo", "--records", "10"]);
    assert_eq!(code, 1);
    assert!(err.contains("already holds records"), "{err}");
    let (_, again, _) = tally(&db, &["periods", "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), periods);
}

on_both_backends!(text_invoice_and_finding_data, demo_fills_a_quarter);
