//! Finance views (docs/finance.md) against invoices: the cost report and the FOCUS
//! export sum to the invoices to the cent; budgets raise each alert once and
//! deliver it to a real webhook receiver; reconciliation finds differences;
//! the new endpoints' access rules; `/openapi.json` lists every route.
//! Both backends.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::support::{Api, Backend, TestApp, TestAppBuilder, TestDb, fixture, tally};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::Value;

const ADMIN: &str = "finance-admin";
const PERIOD: &str = "2026-03";

/// A month of generated usage (12 accounts, code execution, files, batches,
/// web search, iterations) in March 2026.
fn seed_month(db: &TestDb, records: u32) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("month.ndjson");
    let file = file.to_str().unwrap();
    let (code, _, err) = tally(
        db,
        &[
            "gen-usage",
            "--records",
            &records.to_string(),
            "--seed",
            "11",
            "--out",
            file,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = tally(db, &["ingest", file]);
    assert_eq!(code, 0, "{err}");
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

/// Invoice totals per account of the period, from the invoices endpoint.
async fn invoice_totals(admin: &Api) -> BTreeMap<String, Decimal> {
    let all = admin
        .get_json(&format!("/v1/invoices?period={PERIOD}"))
        .await;
    all["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["account"].as_str().unwrap().to_owned(), dec(&i["total"])))
        .collect()
}

/// A server with the admin token `ADMIN`.
///
/// These tests read figures right after writing records, so the server may
/// not serve a snapshot older than the ledger (the default allows 10 s: the
/// warm-up taken at start-up would otherwise still be fresh enough).
fn finance_app<'a>(backend: Backend) -> TestAppBuilder<'a> {
    TestApp::on(backend)
        .admin_token(ADMIN)
        .configure(|c| c.finance_max_age = std::time::Duration::ZERO)
}

/// Every page of a cost report, following `next_page`.
async fn cost_report_pages(api: &Api, query: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let mut path = format!("/v1/cost_report?{query}");
        if let Some(p) = &page {
            path.push_str(&format!("&page={p}"));
        }
        let r = api.get(&path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        page = body["next_page"].as_str().map(str::to_owned);
        let more = body["has_more"].as_bool().unwrap();
        pages.push(body);
        if !more {
            assert!(page.is_none());
            return pages;
        }
    }
}

fn sum_by_account(pages: &[Value]) -> BTreeMap<String, Decimal> {
    let mut sums = BTreeMap::new();
    for p in pages {
        for b in p["data"].as_array().unwrap() {
            for r in b["results"].as_array().unwrap() {
                assert_eq!(r["currency"], "USD");
                let account = r["account"].as_str().unwrap_or("(all)").to_owned();
                *sums.entry(account).or_insert(Decimal::ZERO) +=
                    dec(&r["amount"]) / Decimal::ONE_HUNDRED;
            }
        }
    }
    sums
}

async fn cost_report_sums_equal_invoices(backend: Backend) {
    let app = finance_app(backend)
        .given(|db| seed_month(db, 1500))
        .serve()
        .await;
    let admin = app.admin();
    let invoices = invoice_totals(&admin).await;
    assert_eq!(invoices.len(), 12);
    let range = "starting_at=2026-03-01T00:00:00Z&ending_at=2026-04-01T00:00:00Z&bucket_width=1d";

    // By account, 7 daily buckets a page: 31 buckets over 5 pages.
    let pages = cost_report_pages(&admin, &format!("{range}&group_by[]=account")).await;
    assert_eq!(pages.len(), 5);
    let buckets: Vec<&Value> = pages
        .iter()
        .flat_map(|p| p["data"].as_array().unwrap())
        .collect();
    assert_eq!(buckets.len(), 31);
    assert_eq!(buckets[0]["starting_at"], "2026-03-01T00:00:00Z");
    assert_eq!(buckets[30]["ending_at"], "2026-04-01T00:00:00Z");
    assert_eq!(
        sum_by_account(&pages),
        invoices,
        "cost report by account = invoice totals"
    );

    // By description and account: every token type and cost type, same sums.
    let pages = cost_report_pages(
        &admin,
        &format!("{range}&limit=31&group_by[]=description&group_by[]=account"),
    )
    .await;
    assert_eq!(pages.len(), 1);
    assert_eq!(sum_by_account(&pages), invoices);
    let results: Vec<&Value> = pages[0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["results"].as_array().unwrap())
        .collect();
    for kind in ["tokens", "web_search", "code_execution"] {
        assert!(
            results.iter().any(|r| r["cost_type"] == kind),
            "{kind} present"
        );
    }
    let batch = results
        .iter()
        .find(|r| r["service_tier"] == "batch" && r["token_type"] == "uncached_input_tokens")
        .expect("a batch input-token result");
    assert!(
        batch["description"]
            .as_str()
            .unwrap()
            .ends_with("Usage - Input Tokens")
    );
    assert!(batch["model"].as_str().unwrap().starts_with("claude-"));
    let code = results
        .iter()
        .find(|r| r["cost_type"] == "code_execution")
        .unwrap();
    assert_eq!(code["description"], "Code Execution Usage");
    assert_eq!(code["model"], Value::Null);
    // No day is ever negative, though free hours are credited per day.
    for r in &results {
        assert!(dec(&r["amount"]) >= Decimal::ZERO, "{r}");
    }

    // Without grouping: one org-wide figure per cost type, same total.
    let pages = cost_report_pages(&admin, &format!("{range}&limit=31")).await;
    let org: Decimal = sum_by_account(&pages).values().copied().sum();
    assert_eq!(org, invoices.values().copied().sum::<Decimal>());

    // Bad requests name the parameter.
    for (q, word) in [
        (
            "bucket_width=1h&starting_at=2026-03-01T00:00:00Z",
            "bucket_width",
        ),
        ("starting_at=March", "starting_at"),
        (
            "starting_at=2026-03-01T00:00:00Z&group_by[]=project",
            "project",
        ),
        ("starting_at=2026-03-01T00:00:00Z&limit=0", "limit"),
        ("ending_at=2026-03-01T00:00:00Z", "starting_at"),
    ] {
        let r = admin
            .get(&format!("/v1/cost_report?{q}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
        assert!(r.text().await.unwrap().contains(word), "{q}");
    }
}

async fn focus_export_sums_equal_invoices(backend: Backend) {
    let app = finance_app(backend)
        .given(|db| {
            seed_month(db, 1200);
            // An account name a spreadsheet would read as a formula.
            ingest_lines(
                db,
                &[priced_record(
                    "-evil",
                    "msg_formula",
                    "2026-03-09T10:00:00Z",
                )],
            );
        })
        .serve()
        .await;
    let admin = app.admin();
    let invoices = invoice_totals(&admin).await;

    let (code, out, err) = app.tally(&["export", "--format", "focus", "--period", PERIOD]);
    assert_eq!(code, 0, "{err}");
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    for column in [
        "BilledCost",
        "EffectiveCost",
        "ListCost",
        "BillingCurrency",
        "ChargeCategory",
        "ChargeDescription",
        "ChargePeriodStart",
        "ChargePeriodEnd",
        "BillingPeriodStart",
        "BillingPeriodEnd",
        "ConsumedQuantity",
        "ConsumedUnit",
        "PricingQuantity",
        "PricingUnit",
        "ServiceName",
        "SkuId",
        "SubAccountId",
    ] {
        assert!(header.iter().any(|h| h == column), "FOCUS column {column}");
    }
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let mut sums: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut credits = 0;
    for row in reader.records() {
        let row = row.unwrap();
        let billed: Decimal = row[col("BilledCost")].parse().unwrap();
        assert_eq!(row[col("EffectiveCost")], row[col("BilledCost")]);
        assert_eq!(&row[col("BillingCurrency")], "USD");
        assert_eq!(&row[col("BillingPeriodStart")], "2026-03-01T00:00:00Z");
        assert_eq!(&row[col("BillingPeriodEnd")], "2026-04-01T00:00:00Z");
        let start = chrono::DateTime::parse_from_rfc3339(&row[col("ChargePeriodStart")]).unwrap();
        let end = chrono::DateTime::parse_from_rfc3339(&row[col("ChargePeriodEnd")]).unwrap();
        assert_eq!(end - start, chrono::Duration::days(1));
        match &row[col("ChargeCategory")] {
            "Usage" => {
                assert!(billed >= Decimal::ZERO);
                let _: Decimal = row[col("ConsumedQuantity")].parse().unwrap();
            }
            "Credit" => {
                credits += 1;
                assert!(billed <= Decimal::ZERO);
            }
            other => panic!("unexpected ChargeCategory {other}"),
        }
        // Text cells that start like a formula are prefixed with a quote.
        let account = &row[col("SubAccountId")];
        assert!(!account.starts_with('-'), "formula guard: {account}");
        *sums
            .entry(account.trim_start_matches('\'').to_owned())
            .or_default() += billed;
    }
    assert!(sums.contains_key("-evil"));
    assert!(credits > 0, "free container hours appear as credits");
    assert_eq!(sums, invoices, "BilledCost per account = invoice totals");

    // The dashboard's download link serves the same rows.
    let r = admin
        .get(&format!("/v1/exports/focus?period={PERIOD}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(r.text().await.unwrap(), out);
}

/// A webhook receiver on a loopback port, keeping what it is sent.
pub(crate) async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), got)
}

/// A files-preloaded Claude Sonnet 4 record of `account` with 2M input
/// tokens (dollars, not fractions of a cent), recorded at `at`.
fn priced_record(account: &str, id: &str, at: &str) -> Value {
    let mut v: Value = serde_json::from_str(&fixture("seed/files_preloaded.ndjson")).unwrap();
    v["account"] = account.into();
    v["response"]["id"] = id.into();
    v["response"]["container"]["id"] = format!("container-{id}").into();
    v["recorded_at"] = at.into();
    v["response"]["usage"]["input_tokens"] = 2_000_000.into();
    v.as_object_mut().unwrap().remove("started_at");
    v
}

/// [`priced_record`] recorded now (this month).
fn record_now(account: &str, id: &str) -> String {
    priced_record(account, id, &chrono::Utc::now().to_rfc3339()).to_string()
}

fn ingest_lines(db: &TestDb, lines: &[Value]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lines.ndjson");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&file, text.join("\n")).unwrap();
    let (code, out, err) = tally(db, &["ingest", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

async fn budgets_alert_once_and_reach_the_webhook(backend: Backend) {
    let (hook, got) = receiver().await;
    let app = finance_app(backend).serve().await;
    let (db, admin) = (&app.db, app.admin());
    for (account, id) in [("acme", "msg_budget_1"), ("globex", "msg_budget_2")] {
        let r = admin
            .post("/v1/usage")
            .body(record_now(account, id))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let spend = |v: &Value| dec(&v["month_to_date_usd"]);
    let status = admin.get_json("/v1/accounts/acme/budget").await;
    let acme_spend = spend(&status);
    assert!(acme_spend > Decimal::ZERO, "{status}");
    assert_eq!(status["monthly_budget_usd"], Value::Null);

    // A budget of 1.5 × the spend: 50 % crossed, 80 % and 100 % not.
    let budget = (acme_spend * Decimal::new(15, 1)).round_dp(2);
    let (code, _, err) = tally(
        db,
        &[
            "budget",
            "set",
            "--account",
            "acme",
            "--monthly",
            &budget.to_string(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = tally(db, &["budget", "check", "--webhook", &hook]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 new alert"), "{out}");
    assert_eq!(got.lock().unwrap().len(), 1);
    // Checking again records and sends nothing new.
    let (_, out, _) = tally(db, &["budget", "check", "--webhook", &hook]);
    assert!(out.contains("0 new alert"), "{out}");
    assert_eq!(got.lock().unwrap().len(), 1);
    let first = got.lock().unwrap()[0].clone();
    assert_eq!(first["type"], "budget_threshold_crossed");
    assert_eq!(first["account"], "acme");
    assert_eq!(first["threshold_percent"], 50);
    assert_eq!(dec(&first["spend_usd"]), acme_spend);

    // Lowering the budget crosses 80 % and 100 %: two more, once each.
    let low = (acme_spend * Decimal::new(9, 1)).round_dp(2);
    let r = admin
        .put("/v1/accounts/acme/budget")
        .json(&serde_json::json!({"monthly_usd": low.to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let status: Value = r.json().await.unwrap();
    assert_eq!(dec(&status["monthly_budget_usd"]), low);
    assert!(dec(&status["share_used"]) > Decimal::ONE);
    assert!(dec(&status["forecast_usd"]) >= acme_spend);
    tally(db, &["budget", "check", "--webhook", &hook]);
    tally(db, &["budget", "check", "--webhook", &hook]);
    let thresholds: Vec<i64> = got
        .lock()
        .unwrap()
        .iter()
        .map(|v| v["threshold_percent"].as_i64().unwrap())
        .collect();
    assert_eq!(thresholds, [50, 80, 100]);
    let (_, listed, _) = tally(db, &["budget", "alerts", "--json"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["delivered"] == true)
    );

    // The server checks on its own and posts to its configured webhook.
    let (hook2, got2) = receiver().await;
    let server2 = app
        .another_server(|c| {
            c.alert_webhook = Some(hook2);
            c.alert_interval = std::time::Duration::from_millis(200);
        })
        .await;
    tally(
        db,
        &["budget", "set", "--account", "globex", "--monthly", "0.01"],
    );
    for _ in 0..100 {
        if got2.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let globex: Vec<Value> = got2.lock().unwrap().clone();
    assert_eq!(globex.len(), 3, "{globex:?}");
    assert!(globex.iter().all(|a| a["account"] == "globex"));
    let r = admin.to(&server2).get("/v1/alerts").send().await.unwrap();
    let all: Value = r.json().await.unwrap();
    assert_eq!(all["data"].as_array().unwrap().len(), 6);

    // Bad budgets are refused with the field named.
    let (code, _, err) = tally(db, &["budget", "set", "--account", "acme", "--monthly=-3"]);
    assert_eq!(code, 1);
    assert!(err.contains("--monthly"), "{err}");
    let r = admin
        .put("/v1/accounts/acme/budget")
        .json(&serde_json::json!({"monthly": "5"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("monthly_usd"));
}

/// A webhook that is down does not lose alerts: they stay undelivered and
/// go out, once, at the next check.
async fn undelivered_alerts_are_retried(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (hook, got) = receiver().await;
    ingest_lines(
        &db,
        &[priced_record(
            "initech",
            "msg_retry",
            &chrono::Utc::now().to_rfc3339(),
        )],
    );
    tally(
        &db,
        &["budget", "set", "--account", "initech", "--monthly", "0.01"],
    );
    let down = format!("{hook}-gone");
    let (code, out, err) = tally(&db, &["budget", "check", "--webhook", &down]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("3 new alert") && out.contains("0 alert(s) delivered"),
        "{out}"
    );
    let (_, listed, _) = tally(&db, &["budget", "alerts", "--json"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["delivered"] == false)
    );
    assert!(got.lock().unwrap().is_empty());

    let (_, out, _) = tally(&db, &["budget", "check", "--webhook", &hook]);
    assert!(
        out.contains("0 new alert") && out.contains("3 alert(s) delivered"),
        "{out}"
    );
    let (_, out, _) = tally(&db, &["budget", "check", "--webhook", &hook]);
    assert!(out.contains("0 alert(s) delivered"), "{out}");
    let thresholds: Vec<i64> = got
        .lock()
        .unwrap()
        .iter()
        .map(|v| v["threshold_percent"].as_i64().unwrap())
        .collect();
    assert_eq!(thresholds, [50, 80, 100]);
}

/// Importing a price book changes what the server shows at once, cache or not.
async fn a_new_price_book_reprices_the_views(backend: Backend) {
    let app = finance_app(backend)
        .given(|db| seed_month(db, 400))
        .serve()
        .await;
    let (db, admin) = (&app.db, app.admin());
    let query = "starting_at=2026-03-01T00:00:00Z&ending_at=2026-04-01T00:00:00Z&limit=31&group_by[]=description";
    let web = |pages: &[Value]| -> Decimal {
        pages
            .iter()
            .flat_map(|p| p["data"].as_array().unwrap())
            .flat_map(|b| b["results"].as_array().unwrap())
            .filter(|r| r["cost_type"] == "web_search")
            .map(|r| dec(&r["amount"]))
            .sum()
    };
    let before = web(&cost_report_pages(&admin, query).await);
    assert!(before > Decimal::ZERO);
    // The same book with web searches at $0.02.
    let book = fixture("prices.toml").replace(
        "web_search_per_request = \"0.01\"",
        "web_search_per_request = \"0.02\"",
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prices.toml");
    std::fs::write(&file, book).unwrap();
    let (code, _, err) = tally(db, &["prices", "import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let after = web(&cost_report_pages(&admin, query).await);
    assert_eq!(after, before * Decimal::TWO);
}

async fn reconcile_reports_differences(backend: Backend) {
    let app = finance_app(backend)
        .given(|db| seed_month(db, 800))
        .serve()
        .await;
    let db = &app.db;
    // An "Anthropic" export: tally's own report by description, as pages.
    let pages = cost_report_pages(
        &app.admin(),
        "starting_at=2026-03-01T00:00:00Z&ending_at=2026-04-01T00:00:00Z&group_by[]=description",
    )
    .await;
    // `tally reconcile` of an export for the period, with `extra` options.
    let reconcile = |export: &std::path::Path, extra: &[&str]| {
        let export = export.to_str().unwrap();
        let args = ["reconcile", "--cost-report", export, "--period", PERIOD];
        tally(db, &[&args[..], extra].concat())
    };
    let dir = tempfile::tempdir().unwrap();
    let same = dir.path().join("same.json");
    let text: Vec<String> = pages.iter().map(Value::to_string).collect();
    std::fs::write(&same, text.join("\n")).unwrap();
    let (code, out, err) = reconcile(&same, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 of"), "{out}");

    // Anthropic billed $5 more code execution on 2026-03-10.
    let mut changed = pages.clone();
    let bucket = changed
        .iter_mut()
        .flat_map(|p| p["data"].as_array_mut().unwrap().iter_mut())
        .find(|b| b["starting_at"] == "2026-03-10T00:00:00Z")
        .unwrap();
    bucket["results"].as_array_mut().unwrap().push(serde_json::json!(
        {"amount": "500", "currency": "USD", "cost_type": "code_execution", "description": "Code Execution Usage"}));
    let diff = dir.path().join("diff.json");
    std::fs::write(&diff, Value::Array(changed).to_string()).unwrap();
    let (code, out, _) = reconcile(&diff, &["--json"]);
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["mismatches"], 1);
    let bad: Vec<&Value> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["within_tolerance"] == false)
        .collect();
    assert_eq!(bad[0]["day"], "2026-03-10");
    assert_eq!(bad[0]["cost_type"], "code_execution");
    assert_eq!(dec(&bad[0]["difference_usd"]), Decimal::from(-5));
    // A wide enough tolerance accepts it.
    let (code, _, _) = reconcile(&diff, &["--tolerance", "5"]);
    assert_eq!(code, 0);

    // A malformed export names the page and field.
    let broken = dir.path().join("broken.json");
    std::fs::write(
        &broken,
        r#"{"data":[{"starting_at":"2026-03-01T00:00:00Z","results":[{"amount":12}]}]}"#,
    )
    .unwrap();
    let (code, _, err) = reconcile(&broken, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("page 1") && err.contains("amount"), "{err}");
}

async fn finance_endpoints_for_every_role(backend: Backend) {
    let app = finance_app(backend)
        .given(|db| {
            seed_month(db, 300);
            tally(
                db,
                &["budget", "set", "--account", "team-01", "--monthly", "100"],
            );
            // Another account's later month, which team-01's key must not see.
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("may.ndjson");
            std::fs::write(
                &file,
                r#"{"account":"other-co","recorded_at":"2026-05-04T10:00:00Z","response":{"id":"msg_may_1","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],"stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":5}}}"#,
            )
            .unwrap();
            assert_eq!(tally(db, &["ingest", file.to_str().unwrap()]).0, 0);
        })
        .account_key("team-01")
        .serve()
        .await;
    let key = app.key().to_owned();
    let report = "/v1/cost_report?starting_at=2026-03-01T00:00:00Z&ending_at=2026-04-01T00:00:00Z&limit=31&group_by[]=account";
    let get = |path: &str, bearer: Option<&str>| app.api(bearer).get(path).send();
    // No key and a wrong key: 401 everywhere (with a Basic challenge for browsers).
    for path in [
        "/",
        report,
        "/v1/accounts/team-01/budget",
        "/v1/alerts",
        "/v1/exports/focus?period=2026-03",
        "/v1/invoices?period=2026-03",
    ] {
        for bearer in [None, Some("tk_wrong")] {
            let r = get(path, bearer).await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path} {bearer:?}");
            assert!(r.headers().contains_key("www-authenticate"));
        }
        assert_eq!(
            get(path, Some(ADMIN)).await.unwrap().status(),
            StatusCode::OK,
            "{path}"
        );
        assert_eq!(
            get(path, Some(&key)).await.unwrap().status(),
            StatusCode::OK,
            "{path}"
        );
    }
    // An account key sees only its own rows.
    let mine: Value = get(report, Some(&key)).await.unwrap().json().await.unwrap();
    let accounts: std::collections::BTreeSet<&str> = mine["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["results"].as_array().unwrap())
        .map(|r| r["account"].as_str().unwrap())
        .collect();
    assert_eq!(accounts.into_iter().collect::<Vec<_>>(), ["team-01"]);
    let focus = get("/v1/exports/focus?period=2026-03", Some(&key))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(focus.lines().skip(1).all(|l| l.contains(",team-01,")));
    let page = get("/?period=2026-03", Some(&key))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("team-01") && !page.contains("team-02"));
    // The period picker lists the key's own months, and the page opens on
    // its own latest month; the admin's lists every account's.
    let options = |page: &str| -> Vec<String> {
        page.split("<option value=\"")
            .skip(1)
            .map(|o| o.split('"').next().unwrap().to_owned())
            .collect()
    };
    let own = get("/", Some(&key)).await.unwrap().text().await.unwrap();
    assert_eq!(options(&own), ["2026-03"], "only team-01's months");
    assert!(own.contains("Total 2026-03"));
    let all = app.admin().get_text("/").await;
    assert_eq!(options(&all), ["2026-05", "2026-03"]);
    assert!(
        all.contains("Total 2026-05"),
        "the latest month with records"
    );
    // Another account's budget does not exist for this key; setting budgets is admin-only.
    assert_eq!(
        get("/v1/accounts/team-02/budget", Some(&key))
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let r = app
        .account()
        .put("/v1/accounts/team-01/budget")
        .json(&serde_json::json!({"monthly_usd": "1000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The browser path: HTTP Basic with the key as password.
    let r = app
        .anonymous()
        .get("/?period=2026-03")
        .basic_auth("finance", Some(ADMIN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // OpenAPI is public.
    assert_eq!(
        get("/openapi.json", None).await.unwrap().status(),
        StatusCode::OK
    );
}

/// A finalized month is shown as billed (frozen), late usage for it as a
/// warning there and as an adjustment on the next month, in every view.
async fn finalized_months_stay_as_billed(backend: Backend) {
    let db = TestDb::new(backend).await;
    seed_month(&db, 600);
    let frozen_total = |db: &TestDb, period: &str| {
        let (code, out, err) = tally(db, &["invoice", "--account", "team-01", "--period", period]);
        assert_eq!(code, 0, "{err}");
        dec(&serde_json::from_str::<Value>(&out).unwrap()["total"])
    };
    let (code, _, err) = tally(
        &db,
        &[
            "invoice",
            "--account",
            "team-01",
            "--period",
            PERIOD,
            "--finalize",
            "--allow-unpriced",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let march = frozen_total(&db, PERIOD);

    // A late record for March: $6 of input tokens on Claude Sonnet 4.
    let mut late = priced_record("team-01", "msg_late_march", "2026-03-15T12:00:00Z");
    late["response"]["container"] = Value::Null;
    ingest_lines(&db, &[late]);
    assert_eq!(
        frozen_total(&db, PERIOD),
        march,
        "the finalized invoice never changes"
    );
    let april = frozen_total(&db, "2026-04");
    assert!(
        april >= Decimal::from(6),
        "the adjustment lands on April: {april}"
    );

    let focus_sum = |period: &str, category: &str| -> Decimal {
        let (code, out, err) = tally(&db, &["export", "--format", "focus", "--period", period]);
        assert_eq!(code, 0, "{err}");
        let mut r = csv::Reader::from_reader(out.as_bytes());
        let h: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
        let col = |n: &str| h.iter().position(|x| x == n).unwrap();
        r.records()
            .map(Result::unwrap)
            .filter(|row| &row[col("SubAccountId")] == "team-01")
            .filter(|row| category.is_empty() || &row[col("ChargeCategory")] == category)
            .map(|row| row[col("BilledCost")].parse::<Decimal>().unwrap())
            .sum()
    };
    assert_eq!(focus_sum(PERIOD, ""), march, "FOCUS bills March as frozen");
    assert_eq!(
        focus_sum("2026-04", "Adjustment"),
        april,
        "and April's adjustment"
    );

    let app = finance_app(backend).serve_on(db).await;
    let admin = app.admin();
    let pages = cost_report_pages(
        &admin,
        "starting_at=2026-03-01T00:00:00Z&ending_at=2026-04-01T00:00:00Z&limit=31&group_by[]=account",
    )
    .await;
    assert_eq!(sum_by_account(&pages)["team-01"], march);
    let page = admin.get_text("/?period=2026-03").await;
    assert!(
        page.contains("recorded after invoice INV-2026-03-"),
        "late-usage warning"
    );
    let page = admin.get_text("/?period=2026-04").await;
    assert!(
        page.contains("adjustment for 2026-03"),
        "adjustment shown on April"
    );
    // Without ?period the dashboard shows the current month, or, as here,
    // when it holds no records, the latest month that does.
    let page = admin.get_text("/").await;
    assert!(
        page.contains("Total 2026-03"),
        "the latest month with records by default"
    );
}

/// The server's cached figures of a period are reused while nothing changes,
/// even for an hour, and recomputed as soon as any invoice is finalized (an
/// earlier period's finalization can move adjustments into this one).
async fn cached_figures_follow_every_finalization(backend: Backend) {
    let (db, store) = TestDb::with_store(backend).await;
    let lines = [
        priced_record("acme", "msg_cache_1", "2026-01-10T10:00:00Z"),
        priced_record("acme", "msg_cache_2", "2026-03-10T10:00:00Z"),
    ];
    ingest_lines(&db, &lines);
    let finance = tally::finance::FinanceCache::new(std::time::Duration::from_secs(3600));
    let march = tally::billing::Period::parse("2026-03").unwrap();
    let first = finance.costs(store.as_ref(), march).await.unwrap();
    let again = finance.costs(store.as_ref(), march).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again), "nothing changed: reused");
    let book = tally::pricing::PriceBook::shipped();
    let january = tally::billing::Period::parse("2026-01").unwrap();
    tally::billing::finalize(store.as_ref(), &book, "acme", january, false)
        .await
        .unwrap();
    let after = finance.costs(store.as_ref(), march).await.unwrap();
    assert!(
        !Arc::ptr_eq(&first, &after),
        "finalizing January (two periods back) recomputes March"
    );
}

/// `/metrics` carries month-to-date spend per account and cost type, equal
/// to the invoices, for those who may read it: the admin sees every account,
/// an account key its own, a scrape without credentials none.
async fn spend_gauges_equal_the_invoices(backend: Backend) {
    let app = finance_app(backend).account_key("acme").serve().await;
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let period = &now[..7];
    let mut lines = Vec::new();
    for (i, account) in ["acme", "acme", "globex"].iter().enumerate() {
        lines.push(serde_json::json!({"account": account, "recorded_at": now,
            "response": {"id": format!("msg_spend_{i}"), "type": "message", "role": "assistant",
                "model": "claude-sonnet-4-5-20250929", "content": [],
                "stop_reason": if i == 1 { "refusal" } else { "end_turn" },
                "usage": {"input_tokens": 123_457 * (i as i64 + 1), "output_tokens": 999,
                    "server_tool_use": {"web_search_requests": 3}}}}));
    }
    crate::billing::ingest(&app.store, &lines).await;

    let gauge = |text: &str, name: &str| -> BTreeMap<String, String> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .map(|l| {
                let (labels, value) = l.rsplit_once(' ').unwrap();
                (labels.to_owned(), value.to_owned())
            })
            .collect()
    };
    let admin = app.admin().get_text("/metrics").await;
    let spend = gauge(&admin, "tally_spend_usd");
    for account in ["acme", "globex"] {
        let invoice = app
            .admin()
            .get_json(&format!("/v1/accounts/{account}/invoices/{period}"))
            .await;
        for cost_type in ["tokens", "web_search", "code_execution"] {
            let label = format!(
                "tally_spend_usd{{account=\"{account}\",cost_type=\"{cost_type}\",period=\"{period}\"}}"
            );
            assert_eq!(
                spend.get(&label).map(String::as_str),
                invoice["subtotals"][cost_type].as_str(),
                "{label} in {admin}"
            );
        }
        let total = format!("tally_spend_total_usd{{account=\"{account}\",period=\"{period}\"}}");
        assert_eq!(
            gauge(&admin, "tally_spend_total_usd")
                .get(&total)
                .map(String::as_str),
            invoice["total"].as_str()
        );
    }
    // The refusal was not charged (the book in force since 2026-06-02).
    let refusals = gauge(&admin, "tally_unbilled_refusals");
    assert_eq!(
        refusals.get(&format!(
            "tally_unbilled_refusals{{account=\"acme\",period=\"{period}\"}}"
        )),
        Some(&"1".to_owned())
    );

    // An account key: its own account only; no credentials: no spend at all.
    let own = app.account().get_text("/metrics").await;
    assert!(
        own.contains("account=\"acme\"") && !own.contains("globex"),
        "{own}"
    );
    let anonymous = app.anonymous().get_text("/metrics").await;
    assert!(anonymous.contains("tally_ingested_lines_total"));
    assert!(!anonymous.contains("tally_spend"), "{anonymous}");
}

/// The Grafana dashboard in `docs/` is valid JSON and charts only metrics
/// `/metrics` serves.
#[test]
fn the_grafana_dashboard_charts_served_metrics() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana/tally-spend.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let served = [
        "tally_spend_usd",
        "tally_spend_total_usd",
        "tally_unbilled_refusals",
    ];
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 4);
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(
                served.iter().any(|m| expr.contains(&format!("{m}{{"))),
                "{expr}"
            );
        }
    }
}

on_both_backends!(
    spend_gauges_equal_the_invoices,
    cached_figures_follow_every_finalization,
    finalized_months_stay_as_billed,
    cost_report_sums_equal_invoices,
    focus_export_sums_equal_invoices,
    budgets_alert_once_and_reach_the_webhook,
    undelivered_alerts_are_retried,
    a_new_price_book_reprices_the_views,
    reconcile_reports_differences,
    finance_endpoints_for_every_role,
);

/// Every route the router registers is described in `/openapi.json`.
#[test]
fn openapi_describes_every_route() {
    let source = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/mod.rs"));
    let doc = tally::http::openapi::document();
    let paths = doc["paths"].as_object().unwrap();
    let mut routes = Vec::new();
    for part in source.split(".route(").skip(1) {
        let path = part.trim_start().trim_start_matches('"');
        let path = &path[..path.find('"').unwrap()];
        routes.push(path.to_owned());
    }
    assert!(routes.len() >= 13, "found {routes:?}");
    for route in &routes {
        assert!(paths.contains_key(route), "{route} is not in openapi.json");
    }
    for path in paths.keys() {
        // An invoice's documents (`{period}.html`, `.pdf`) are served by
        // the invoice's own route, which reads the suffix.
        let served = path
            .strip_suffix(".html")
            .or_else(|| path.strip_suffix(".pdf"))
            .filter(|p| p.ends_with("/invoices/{period}"))
            .unwrap_or(path);
        assert!(
            routes.iter().any(|r| r == served),
            "openapi.json describes {path}, which no route serves"
        );
    }
}
