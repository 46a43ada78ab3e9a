//! Attribution within an account (SPEC 3.1, 6 and 7): an invoice's usage
//! split by tag, workspace and user, worked by hand to the cent; the same
//! through `GET …/invoices/{period}?breakdown=` and `tally invoice
//! --breakdown`. On both backends.

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tally::billing::{BreakdownPart, Period, breakdown, draft_invoice};
use tally::pricing::PriceBook;
use tally::record::Dimension;

use crate::billing::{code_run, d, ingest, record};
use crate::support::{Backend, TestApp, TestDb};

const MODEL: &str = "claude-sonnet-4-5-20250929";
const DAY: &str = "2026-10-05";

fn at(time: &str) -> String {
    format!("{DAY}T{time}Z")
}

/// `input` and `output` tokens on the day, with attribution fields merged in.
fn call(id: &str, input: i64, output: i64, extra: Value) -> Value {
    let mut v = record(
        "acme",
        id,
        MODEL,
        &at("12:00:00"),
        json!({"input_tokens": input, "output_tokens": output}),
    );
    if let (Value::Object(v), Value::Object(extra)) = (&mut v, extra) {
        v.extend(extra);
    }
    v
}

/// Four calls and a ten-minute container (SPEC 3.1 fields in each):
///
/// | id | input | output | project | workspace | user |
/// |---|---:|---:|---|---|---|
/// | a | 100,000 | | search | w1 | u1 (request metadata) |
/// | b | 50,000 | | search | | |
/// | c | 100,000 | 10,000 | ads | w2 | |
/// | d | 10,001 | | | | |
/// | container | 600 s | | ads | | |
fn ledger() -> Vec<Value> {
    let mut a = call(
        "msg_a",
        100_000,
        0,
        json!({"tags": {"project": "search", "team": "core"}, "workspace": "w1"}),
    );
    a["request"] = json!({"model": MODEL, "messages": [], "metadata": {"user_id": "u1"}});
    let mut container = code_run(
        "acme",
        "msg_e",
        "container_e",
        Some(&at("13:00:00")),
        &at("13:10:00"),
    );
    container["tags"] = json!({"project": "ads"});
    vec![
        a,
        call("msg_b", 50_000, 0, json!({"tags": {"project": "search"}})),
        call(
            "msg_c",
            100_000,
            10_000,
            json!({"tags": {"project": "ads"}, "workspace": "w2"}),
        ),
        call("msg_d", 10_001, 0, json!({})),
        container,
    ]
}

fn part(parts: &[BreakdownPart], value: Option<&str>) -> (Decimal, Decimal, Decimal, Decimal) {
    let p = parts
        .iter()
        .find(|p| p.value.as_deref() == value)
        .unwrap_or_else(|| panic!("no part {value:?} in {parts:?}"));
    (
        p.subtotals.tokens,
        p.subtotals.web_search,
        p.subtotals.code_execution,
        p.total,
    )
}

async fn an_invoice_splits_by_tag_workspace_and_user_to_the_cent(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    ingest(&store, &ledger()).await;
    // No free hours, so the container's cent shows.
    let book = PriceBook::shipped().with_free_container_hours(Decimal::ZERO);
    let period = Period::parse("2026-10").unwrap();
    let split = |dim: &str| {
        let (store, book, dim) = (store.clone(), book.clone(), Dimension::parse(dim).unwrap());
        async move {
            breakdown(store.as_ref(), &book, "acme", period, &dim)
                .await
                .unwrap()
        }
    };

    // The invoice: input 260,001 × $3/MTok = $0.780003 → $0.78; output
    // 10,000 × $15/MTok = $0.15; the container's 600 s × $0.05/h = $0.0083 → $0.01.
    let invoice = draft_invoice(store.as_ref(), &book, "acme", period)
        .await
        .unwrap();
    assert_eq!(invoice.total, d("0.94"));

    // By project. Input's 78 cents by tokens 150,000 : 100,000 : 10,001
    // → 44.9998, 29.9999, 3.0003: floors 44, 29, 3, and the two cents left
    // go to the largest remainders (ads, then search): 45, 30, 3. Output
    // (15) and the container (1) are all ads'.
    let by_project = split("tag:project").await;
    assert_eq!(
        part(&by_project, Some("ads")),
        (d("0.45"), d("0.00"), d("0.01"), d("0.46"))
    );
    assert_eq!(
        part(&by_project, Some("search")),
        (d("0.45"), d("0.00"), d("0.00"), d("0.45"))
    );
    assert_eq!(
        part(&by_project, None),
        (d("0.03"), d("0.00"), d("0.00"), d("0.03"))
    );
    // Largest first, the records without the tag last.
    let order: Vec<Option<&str>> = by_project.iter().map(|p| p.value.as_deref()).collect();
    assert_eq!(order, [Some("ads"), Some("search"), None]);

    // By workspace. Input by 100,000 : 100,000 : 60,001 → floors 29, 29, 18,
    // the two cents left to w1 and w2; output to w2; the container (no
    // workspace) to null.
    let by_workspace = split("workspace").await;
    assert_eq!(part(&by_workspace, Some("w1")).3, d("0.30"));
    assert_eq!(part(&by_workspace, Some("w2")).3, d("0.45"));
    assert_eq!(part(&by_workspace, None).3, d("0.19"));

    // By user: u1 came from the request's metadata.
    let by_user = split("user").await;
    assert_eq!(part(&by_user, Some("u1")).3, d("0.30"));
    assert_eq!(part(&by_user, None).3, d("0.64"));

    for parts in [&by_project, &by_workspace, &by_user] {
        let total: Decimal = parts.iter().map(|p| p.total).sum();
        assert_eq!(total, invoice.total, "the parts add up to the invoice");
    }

    // The same from the records: a book with a tier threshold the roll-ups
    // do not keep (150,001 input tokens, which no call here reaches) makes
    // billing read the records instead of the dimension roll-up.
    let text = std::fs::read_to_string(crate::support::fixture_path("prices.toml")).unwrap();
    let records_book = PriceBook::parse(
        &text.replace("above_input_tokens = 200000", "above_input_tokens = 150001"),
    )
    .unwrap()
    .with_free_container_hours(Decimal::ZERO);
    for (dim, from_rollup) in [
        ("tag:project", &by_project),
        ("workspace", &by_workspace),
        ("user", &by_user),
    ] {
        let dim = Dimension::parse(dim).unwrap();
        let from_records = breakdown(store.as_ref(), &records_book, "acme", period, &dim)
            .await
            .unwrap();
        assert_eq!(&from_records, from_rollup, "{dim:?}");
    }
}

async fn breakdowns_over_http_and_the_command_line(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    ingest(&app.store, &ledger()).await;
    let admin = app.admin();

    let invoice = admin
        .get_json("/v1/accounts/acme/invoices/2026-10?breakdown=tag:project")
        .await;
    let parts = invoice["breakdown"].as_array().unwrap();
    let values: Vec<&Value> = parts.iter().map(|p| &p["value"]).collect();
    assert_eq!(values, [&json!("ads"), &json!("search"), &Value::Null]);
    assert_eq!(
        parts[0]["total"], "0.45",
        "the container is inside the free hours"
    );
    let total: Decimal = parts
        .iter()
        .map(|p| p["total"].as_str().unwrap().parse::<Decimal>().unwrap())
        .sum();
    assert_eq!(total.to_string(), invoice["total"].as_str().unwrap());
    // Without it, the document is the invoice alone.
    let plain = admin.get_json("/v1/accounts/acme/invoices/2026-10").await;
    assert!(plain.get("breakdown").is_none());

    for bad in [
        "breakdown=project",
        "breakdown=tag:Project",
        "breakdown=tag:x&format=csv",
    ] {
        let status = admin
            .status_of_get(&format!("/v1/accounts/acme/invoices/2026-10?{bad}"))
            .await;
        assert_eq!(status, 400, "{bad}");
    }

    let args = [
        "invoice",
        "--account",
        "acme",
        "--period",
        "2026-10",
        "--breakdown",
        "workspace",
    ];
    let (code, out, err) = app.tally(&args);
    assert_eq!(code, 0, "{err}");
    let cli: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cli["breakdown"][0]["value"], "w2");
    assert_eq!(cli["lines"], plain["lines"]);
    let (code, _, err) = app.tally(&[
        "invoice",
        "--account",
        "acme",
        "--period",
        "2026-10",
        "--breakdown",
        "team:x",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--breakdown"), "{err}");
}

/// The cost report grouped by a tag and by workspace: the same split, each
/// result naming its values.
async fn the_cost_report_groups_by_attribution(backend: Backend) {
    let app = TestApp::on(backend)
        .configure(|c| c.finance_max_age = std::time::Duration::ZERO)
        .serve()
        .await;
    ingest(&app.store, &ledger()).await;
    let admin = app.admin();
    let range = "starting_at=2026-10-05T00:00:00Z&ending_at=2026-10-06T00:00:00Z";
    let cents = |report: &Value, key: &str| -> Vec<(Value, String, String)> {
        let mut rows: Vec<(Value, String, String)> = report["data"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r[key].clone(),
                    r["cost_type"].as_str().unwrap().to_owned(),
                    r["amount"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        rows.sort_by(|a, b| (a.0.to_string(), &a.1).cmp(&(b.0.to_string(), &b.1)));
        rows
    };

    let by_tag = admin
        .get_json(&format!("/v1/cost_report?{range}&group_by[]=tag:project"))
        .await;
    // As the breakdown: tokens 45 / 45 / 3 cents; the container's cent is
    // netted by the free hours (0 for ads' code execution).
    assert_eq!(
        cents(&by_tag, "tags"),
        [
            (
                json!({"project": "ads"}),
                "code_execution".into(),
                "0".into()
            ),
            (json!({"project": "ads"}), "tokens".into(), "45".into()),
            (json!({"project": "search"}), "tokens".into(), "45".into()),
            (json!({"project": null}), "tokens".into(), "3".into()),
        ]
    );
    assert!(by_tag["data"][0]["results"][0].get("user").is_none());

    let by_workspace = admin
        .get_json(&format!(
            "/v1/cost_report?{range}&group_by[]=workspace_id&group_by[]=account"
        ))
        .await;
    let tokens: Vec<(Value, String)> = cents(&by_workspace, "workspace_id")
        .into_iter()
        .filter(|(_, t, _)| t == "tokens")
        .map(|(w, _, a)| (w, a))
        .collect();
    assert_eq!(
        tokens,
        [
            (json!("w1"), "30".into()),
            (json!("w2"), "45".into()),
            (Value::Null, "18".into()),
        ]
    );
    assert_eq!(by_workspace["data"][0]["results"][0]["account"], "acme");

    let status = admin
        .status_of_get(&format!("/v1/cost_report?{range}&group_by[]=tag:Bad"))
        .await;
    assert_eq!(status, 400);
}

/// FOCUS rows carry their records' tags (`Tags`, a JSON object), and still
/// add up to the invoice; SubAccountId stays the account.
async fn focus_rows_carry_tags(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    ingest(&app.store, &ledger()).await;
    let admin = app.admin();
    let text = admin.get_text("/v1/exports/focus?period=2026-10").await;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (tags, cost, sub, charge) = (
        col("Tags"),
        col("BilledCost"),
        col("SubAccountId"),
        col("x_Charge"),
    );
    let mut total = Decimal::ZERO;
    let mut input_tags = Vec::new();
    for row in reader.records() {
        let row = row.unwrap();
        assert_eq!(&row[sub], "acme");
        total += row[cost].parse::<Decimal>().unwrap();
        if &row[charge] == "input_tokens" {
            input_tags.push(row[tags].to_owned());
        }
    }
    input_tags.sort();
    assert_eq!(
        input_tags,
        [
            "",
            r#"{"project":"ads"}"#,
            r#"{"project":"search","team":"core"}"#,
            r#"{"project":"search"}"#,
        ]
    );
    let invoice = admin.get_json("/v1/accounts/acme/invoices/2026-10").await;
    assert_eq!(total.to_string(), invoice["total"].as_str().unwrap());
}

/// The dashboard filtered by tag and by workspace (in a real browser), and
/// its cost-by-tag panel: each figure the filtered records' share.
async fn the_dashboard_filters_by_tag_and_workspace(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    ingest(&app.store, &ledger()).await;
    let url = app.url("/?period=2026-10&tag=project:ads&tag_key=project");
    let dom = tokio::task::spawn_blocking(move || {
        crate::dashboard_browser::browser(&["--dump-dom"], &url)
    })
    .await
    .unwrap();
    let dom = String::from_utf8(dom).unwrap();
    // ads: 45 cents of tokens; its container's cent is netted by the free hours.
    assert!(dom.contains(r#"id="total" data-usd="0.45""#), "{dom}");
    assert!(dom.contains(r#"id="filtered""#) && dom.contains("tag project = ads"));
    let panel = &dom[dom.find(r#"id="by-tag""#).unwrap()..];
    assert!(panel.contains("<td>ads</td>") && !panel.contains("<td>search</td>"));

    let admin = app.admin();
    let all = admin.get_text("/?period=2026-10&tag_key=project").await;
    let panel = &all[all.find(r#"id="by-tag""#).unwrap()..];
    let order: Vec<usize> = ["<td>ads</td>", "<td>search</td>", "<td>(no tag)</td>"]
        .iter()
        .map(|cell| panel.find(cell).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "largest first, untagged last"
    );
    for cents in [r#"data-usd="0.45""#, r#"data-usd="0.03""#] {
        assert!(panel.contains(cents), "{cents}");
    }
    assert!(all.contains(r#"id="total" data-usd="0.93""#));
    let w1 = admin.get_text("/?period=2026-10&workspace=w1").await;
    assert!(w1.contains(r#"id="total" data-usd="0.30""#));
    let status = admin.status_of_get("/?period=2026-10&tag=project").await;
    assert_eq!(status, 400);
}

on_both_backends!(
    the_dashboard_filters_by_tag_and_workspace,
    focus_rows_carry_tags,
    the_cost_report_groups_by_attribution,
    an_invoice_splits_by_tag_workspace_and_user_to_the_cent,
    breakdowns_over_http_and_the_command_line,
);
