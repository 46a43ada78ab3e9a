//! Plans (docs/plans.md), worked by hand on both backends: a markup, a discount,
//! a fixed-price override, a markup override on container time (the free
//! hours follow it), a minimum commitment, plan versions by `recorded_at`,
//! a late record after finalization, and an account key that sees prices
//! only on every endpoint it can call. The admin sees cost, price and margin
//! (margins, the cost report's views, FOCUS), all adding up to the invoices.
//!
//! The shipped 2025 prices (from 2025-05-22): Sonnet 4 input $3/MTok and
//! output $15/MTok; Opus 4 output $75/MTok; container time $0.05/hour with
//! 50 free hours a day. A Sonnet request of 200,000 input and 100,000
//! output tokens costs $0.60 + $1.50.

use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::billing::{code_run, d, ingest, record};
use crate::support::{Backend, TestApp, write_file};

const SONNET: &str = "claude-sonnet-4-20250514";
const OPUS: &str = "claude-opus-4-20250514";

/// Version 1 (from January 2025): 20 % on everything, Opus output at a
/// fixed $0.0001 a token, container time marked up 100 %, and a $12 monthly
/// minimum. Version 2 (from June): 10 % up, then 5 % off, no minimum.
const PLAN: &str = r#"
[[version]]
effective_from = "2025-01-01"
markup_percent = "20"
minimum_monthly_usd = "12"

[[version.override]]
model = "claude-opus-4-20250514"
charge = "output_tokens"
unit_price = "0.0001"

[[version.override]]
charge = "container_hours"
markup_percent = "100"

[[version]]
effective_from = "2025-06-01"
markup_percent = "10"
discount_percent = "5"
"#;

fn ledger() -> Vec<Value> {
    vec![
        // May, version 1.
        record(
            "acme",
            "msg_may_sonnet",
            SONNET,
            "2025-05-23T12:00:00Z",
            json!({"input_tokens": 200_000, "output_tokens": 100_000}),
        ),
        record(
            "acme",
            "msg_may_opus",
            OPUS,
            "2025-05-24T12:00:00Z",
            json!({"input_tokens": 0, "output_tokens": 1000}),
        ),
        code_run(
            "acme",
            "msg_may_code",
            "container_may",
            Some("2025-05-26T10:00:00Z"),
            "2025-05-26T12:00:00Z",
        ),
        // June, version 2.
        record(
            "acme",
            "msg_jun_sonnet",
            SONNET,
            "2025-06-05T12:00:00Z",
            json!({"input_tokens": 200_000, "output_tokens": 100_000}),
        ),
        record(
            "acme",
            "msg_jun_opus",
            OPUS,
            "2025-06-06T12:00:00Z",
            json!({"input_tokens": 0, "output_tokens": 1000}),
        ),
        // An account without a plan pays cost.
        record(
            "beta",
            "msg_may_beta",
            SONNET,
            "2025-05-23T13:00:00Z",
            json!({"input_tokens": 200_000, "output_tokens": 100_000}),
        ),
    ]
}

fn lines(invoice: &Value) -> Vec<(String, String, String, String)> {
    invoice["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (s("charge"), s("model"), s("unit_price"), s("amount"))
        })
        .collect()
}

fn row(
    charge: &str,
    model: &str,
    unit_price: &str,
    amount: &str,
) -> (String, String, String, String) {
    (
        charge.into(),
        model.into(),
        unit_price.into(),
        amount.into(),
    )
}

/// Sum of a cost report's amounts (cents) per account, as dollars.
fn report_total(report: &Value, account: &str) -> Decimal {
    let mut sum = Decimal::ZERO;
    for bucket in report["data"].as_array().unwrap() {
        for r in bucket["results"].as_array().unwrap() {
            if r["account"] == account {
                sum += d(r["amount"].as_str().unwrap());
            }
        }
    }
    sum / Decimal::ONE_HUNDRED
}

/// Sums of two FOCUS columns over an account's rows.
fn focus_sums(csv_text: &str, account: &str) -> (Decimal, Decimal) {
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (billed, list, sub) = (col("BilledCost"), col("ListCost"), col("SubAccountId"));
    let mut sums = (Decimal::ZERO, Decimal::ZERO);
    for r in reader.records() {
        let r = r.unwrap();
        if &r[sub] == account {
            sums.0 += d(&r[billed]);
            sums.1 += d(&r[list]);
        }
    }
    sums
}

const MAY_REPORT: &str = "/v1/cost_report?starting_at=2025-05-01T00:00:00Z&ending_at=2025-06-01T00:00:00Z&limit=31&group_by[]=account";

async fn plans_price_what_accounts_pay(backend: Backend) {
    let app = TestApp::on(backend).account_key("acme").serve().await;
    ingest(&app.store, &ledger()).await;
    let admin = app.admin();

    // A bad plan is refused with its line, and changes nothing.
    let bad = admin
        .put("/v1/accounts/acme/plan")
        .body("[[version]]\neffective_from = \"2025-01-01\"\nmarkup_percent = 20\n")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let message = bad.text().await.unwrap();
    assert!(
        message.contains("line 3") && message.contains("expected a string"),
        "{message}"
    );
    assert_eq!(
        admin.status_of_get("/v1/accounts/acme/plan").await,
        StatusCode::NOT_FOUND
    );

    let set = admin
        .put("/v1/accounts/acme/plan")
        .body(PLAN)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);
    let plan: Value = set.json().await.unwrap();
    assert_eq!(plan["versions"][0]["markup_percent"], "20");
    assert_eq!(plan["versions"][0]["overrides"][0]["unit_price"], "0.0001");
    assert_eq!(plan["versions"][1]["discount_percent"], "5");

    // May, version 1. Sonnet: $0.60 + $1.50 at cost, × 1.20 = $0.72 + $1.80
    // (units $0.000003 and $0.000015 × 1.2). Opus output: the fixed $0.0001
    // × 1,000 = $0.10 (cost $0.075). Two container hours: $0.10 at cost,
    // × 2 = $0.20, and the free hours credit the same (-$0.20). Usage
    // $2.62; topped up to the $12 minimum by $9.38.
    let may = admin.get_json("/v1/accounts/acme/invoices/2025-05").await;
    assert_eq!(
        lines(&may),
        [
            row("output_tokens", OPUS, "0.0001", "0.10"),
            row("input_tokens", SONNET, "0.0000036", "0.72"),
            row("output_tokens", SONNET, "0.000018", "1.80"),
            row("container_hours", "", "0.1", "0.20"),
            row("container_free_hours", "", "0.1", "-0.20"),
            row("minimum_commitment", "", "9.38", "9.38"),
        ]
    );
    assert_eq!(may["lines"][0]["plan_version"], "2025-01-01");
    assert_eq!(may["total"], "12.00");
    assert_eq!(may["subtotals"]["tokens"], "2.62");
    let may_csv = admin
        .get_text("/v1/accounts/acme/invoices/2025-05?format=csv")
        .await;
    assert!(
        may_csv.contains(",minimum_commitment,false,false,1,usd,9.38,9.38\r\n"),
        "{may_csv}"
    );
    assert!(may_csv.ends_with(",total,,,,,,12.00\r\n"), "{may_csv}");

    // June, version 2: × 1.10 × 0.95 = × 1.045. Sonnet $0.627 → $0.63 and
    // $1.5675 → $1.57; Opus output $0.078375 → $0.08. No minimum.
    let june = admin.get_json("/v1/accounts/acme/invoices/2025-06").await;
    assert_eq!(
        lines(&june),
        [
            row("output_tokens", OPUS, "0.000078375", "0.08"),
            row("input_tokens", SONNET, "0.000003135", "0.63"),
            row("output_tokens", SONNET, "0.000015675", "1.57"),
        ]
    );
    assert_eq!(june["lines"][0]["plan_version"], "2025-06-01");
    assert_eq!(june["total"], "2.28");

    // A minimum commitment is owed without any usage: gamma's plan (from
    // June) bills it $5 in June, and every view of June lists it.
    let gamma = "[[version]]\neffective_from = \"2025-06-01\"\nminimum_monthly_usd = \"5\"\n";
    let r = admin
        .put("/v1/accounts/gamma/plan")
        .body(gamma)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let all_june = admin.get_json("/v1/invoices?period=2025-06").await;
    let gamma_june: Vec<&Value> = all_june["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["account"] == "gamma")
        .collect();
    assert_eq!(gamma_june.len(), 1, "{all_june:#}");
    assert_eq!(gamma_june[0]["total"], "5.00");
    assert_eq!(
        lines(gamma_june[0]),
        [row("minimum_commitment", "", "5.00", "5.00")]
    );
    let june_focus = admin.get_text("/v1/exports/focus?period=2025-06").await;
    assert_eq!(focus_sums(&june_focus, "gamma"), (d("5.00"), d("0")));

    // Without a plan, price is cost, and no plan_version is written.
    let beta = admin.get_json("/v1/accounts/beta/invoices/2025-05").await;
    assert_eq!(
        lines(&beta),
        [
            row("input_tokens", SONNET, "0.000003", "0.60"),
            row("output_tokens", SONNET, "0.000015", "1.50"),
        ]
    );
    assert!(beta["lines"][0].get("plan_version").is_none());

    // The admin: margins (usage only), the cost report's three views and
    // FOCUS, each adding up to the invoices. May's cost: $0.60 + $1.50 +
    // $0.08 + $0.10 − $0.10 = $2.18.
    let (code, out, err) = app.tally(&["margins", "--period", "2025-05", "--json"]);
    assert_eq!(code, 0, "{err}");
    let margins: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        margins,
        json!([
            {"account": "acme", "cost": "2.18", "price": "2.62", "margin": "0.44", "margin_percent": "16.8"},
            {"account": "beta", "cost": "2.10", "price": "2.10", "margin": "0.00", "margin_percent": "0.0"},
        ])
    );
    let price = admin.get_json(MAY_REPORT).await;
    assert_eq!(report_total(&price, "acme"), d("2.62"));
    let cost = admin.get_json(&format!("{MAY_REPORT}&view=cost")).await;
    assert_eq!(report_total(&cost, "acme"), d("2.18"));
    let margin = admin.get_json(&format!("{MAY_REPORT}&view=margin")).await;
    assert_eq!(report_total(&margin, "acme"), d("0.44"));
    assert_eq!(report_total(&margin, "beta"), d("0"));
    let focus = admin.get_text("/v1/exports/focus?period=2025-05").await;
    // BilledCost: the invoice total, minimum included; ListCost: the cost.
    assert_eq!(focus_sums(&focus, "acme"), (d("12.00"), d("2.18")));
    assert_eq!(focus_sums(&focus, "beta"), (d("2.10"), d("2.10")));
    let dashboard = admin.get_text("/?period=2025-05").await;
    assert!(
        dashboard.contains(r#"id="margins""#),
        "the admin's dashboard shows margins"
    );
    assert!(
        dashboard.contains(r#"id="margin-total">$0.44<"#),
        "{dashboard}"
    );

    // The account key: prices everywhere, never a cost.
    let account = app.account();
    assert_eq!(
        account.get_json("/v1/accounts/acme/invoices/2025-05").await,
        may
    );
    let seen = account.get_json(MAY_REPORT).await;
    assert_eq!(report_total(&seen, "acme"), d("2.62"));
    for view in ["cost", "margin"] {
        let path = format!("{MAY_REPORT}&view={view}");
        assert_eq!(
            account.status_of_get(&path).await,
            StatusCode::FORBIDDEN,
            "{view}"
        );
    }
    let own_focus = account.get_text("/v1/exports/focus?period=2025-05").await;
    assert_eq!(focus_sums(&own_focus, "acme"), (d("12.00"), d("12.00")));
    assert!(
        !own_focus.contains("0.000003,"),
        "a cost unit price in {own_focus}"
    );
    for path in ["/v1/accounts/acme/plan", "/v1/accounts/beta/plan"] {
        assert_eq!(
            account.status_of_get(path).await,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    let put = account
        .put("/v1/accounts/acme/plan")
        .body(PLAN)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::FORBIDDEN);
    // Its budget's spend is its usage at its prices (not the minimum).
    let budget = account
        .get_json("/v1/accounts/acme/budget?period=2025-05")
        .await;
    assert_eq!(budget["month_to_date_usd"], "2.62");
    let listed = account.get_json("/v1/invoices?period=2025-05").await;
    assert_eq!(listed["invoices"], json!([may.clone()]));
    let own_csv = account
        .get_text("/v1/invoices?period=2025-05&format=csv")
        .await;
    assert_eq!(own_csv, may_csv);
    let own_dashboard = account.get_text("/?period=2025-05").await;
    assert!(!own_dashboard.contains(r#"id="margins""#));
    assert!(
        !own_dashboard.contains("$2.18"),
        "a cost on the account's dashboard"
    );
    // An estimate is priced at its plan: 1,000 requests of 1,000 Sonnet
    // input tokens on one day of June = $3.00 at cost, × 1.045 = $3.135.
    let workload = json!({"days": 1, "workload": [{"name": "w", "model": SONNET,
        "requests_per_day": 1000, "input_tokens": 1000}]});
    let (status, own) = account
        .post_json("/v1/estimate?at=2025-06-10", workload.to_string())
        .await;
    assert_eq!(status, StatusCode::OK, "{own}");
    assert_eq!(
        (own["total"].as_str(), own["account"].as_str()),
        (Some("3.14"), Some("acme"))
    );
    let (_, at_cost) = admin
        .post_json("/v1/estimate?at=2025-06-10", workload.to_string())
        .await;
    assert_eq!(at_cost["total"], "3.00");
    let (status, _) = account
        .post_json(
            "/v1/estimate?at=2025-06-10&account=beta",
            workload.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn a_late_record_after_finalization_is_an_adjustment_at_the_plan(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    ingest(&app.store, &ledger()).await;
    let admin = app.admin();
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = app.tally(&[
        "plan",
        "set",
        "--account",
        "acme",
        "--file",
        &write_file(&dir, "plan.toml", PLAN),
    ]);
    assert_eq!(code, 0, "{err}");

    let fin = admin
        .post("/v1/accounts/acme/invoices/2025-05/finalize")
        .send()
        .await
        .unwrap();
    assert_eq!(fin.status(), StatusCode::OK);
    let frozen = admin.get_text("/v1/accounts/acme/invoices/2025-05").await;
    let frozen: Value = serde_json::from_str(&frozen).unwrap();
    assert_eq!(frozen["total"], "12.00");

    // A Sonnet request of May arrives late: 200,000 input and 1,000,000
    // output tokens, $0.60 + $15.00 at cost. May's lines now come to
    // $1.44 + $19.80 + $0.10 = $21.34 at version 1 (over the minimum)
    // against the $12.00 billed: June carries a $9.34 adjustment. Its cost,
    // $17.78 − $2.18 = $15.60, is the admin's to see (FOCUS), never on the
    // account's invoice.
    ingest(
        &app.store,
        &[record(
            "acme",
            "msg_may_late",
            SONNET,
            "2025-05-28T12:00:00Z",
            json!({"input_tokens": 200_000, "output_tokens": 1_000_000}),
        )],
    )
    .await;
    let june = admin.get_json("/v1/accounts/acme/invoices/2025-06").await;
    let adjustment = june["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["charge"] == "adjustment")
        .unwrap()
        .clone();
    assert_eq!(adjustment["amount"], "9.34");
    assert_eq!(june["total"], "11.62"); // $2.28 of June's own usage + $9.34
    let focus = admin.get_text("/v1/exports/focus?period=2025-06").await;
    // BilledCost: June's $2.28 + $9.34; cost: $2.18 + $15.60.
    assert_eq!(focus_sums(&focus, "acme"), (d("11.62"), d("17.78")));

    // The finalized invoice never changes: not with the late record, not
    // when the plan changes afterwards.
    let after = admin.get_json("/v1/accounts/acme/invoices/2025-05").await;
    assert_eq!(after, frozen);
    let (code, _, err) = app.tally(&[
        "plan",
        "set",
        "--account",
        "acme",
        "--file",
        &write_file(
            &dir,
            "dearer.toml",
            "[[version]]\neffective_from = \"2025-01-01\"\nmarkup_percent = \"50\"\n",
        ),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        admin.get_json("/v1/accounts/acme/invoices/2025-05").await,
        frozen
    );
    // The finance views of the finalized month still add up to it: they
    // price it by the plan as it was when it was finalized.
    let focus = admin.get_text("/v1/exports/focus?period=2025-05").await;
    assert_eq!(focus_sums(&focus, "acme").0, d("12.00"));
    let (code, out, _) = app.tally(&["invoice", "--account", "acme", "--period", "2025-05"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), frozen);
}

async fn plan_commands_check_show_and_list(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    let dir = tempfile::tempdir().unwrap();
    let good = write_file(&dir, "plan.toml", PLAN);
    let bad = write_file(
        &dir,
        "bad.toml",
        &format!("{PLAN}\n[[version.override]]\ncharge = \"output\"\nunit_price = \"1\"\n"),
    );

    // A bad file: exit 1, its line and reason, nothing stored.
    let (code, _, err) = app.tally(&["plan", "set", "--account", "acme", "--file", &bad]);
    assert_eq!(code, 1);
    assert!(
        err.contains("line 21") && err.contains("override charge \"output\""),
        "{err}"
    );
    let (code, _, err) = app.tally(&["plan", "show", "--account", "acme"]);
    assert_eq!(code, 1);
    assert!(err.contains("acme has no plan"), "{err}");

    let (code, out, err) = app.tally(&["plan", "set", "--account", "acme", "--file", &good]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 version(s)"), "{out}");
    let (_, out, _) = app.tally(&["plan", "show", "--account", "acme", "--json"]);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["toml"], PLAN);
    assert_eq!(shown["in_force"], "2025-06-01");
    assert_eq!(shown["versions"][0]["minimum_monthly_usd"], "12");
    let (_, out, _) = app.tally(&["plan", "list"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("acme") && l.contains("2025-06-01") && l.contains("10%")),
        "{out}"
    );
    let (_, out, _) = app.tally(&["plan", "list", "--json"]);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // The CLI estimate prices at the account's plan too.
    let workload = write_file(
        &dir,
        "w.toml",
        &format!(
            "days = 1\n[[workload]]\nname = \"w\"\nmodel = \"{SONNET}\"\nrequests_per_day = 1000\ninput_tokens = 1000\n"
        ),
    );
    let (code, out, err) = app.tally(&[
        "estimate",
        "--workload",
        &workload,
        "--at",
        "2025-05-23",
        "--account",
        "acme",
    ]);
    assert_eq!(code, 0, "{err}");
    let e: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["total"], "3.60"); // $3.00 × 1.20 (no minimum in a projection)
    let (_, out, _) = app.tally(&["estimate", "--workload", &workload, "--at", "2025-05-23"]);
    let e: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["total"], "3.00");
}

on_both_backends!(
    plans_price_what_accounts_pay,
    a_late_record_after_finalization_is_an_adjustment_at_the_plan,
    plan_commands_check_show_and_list,
);
