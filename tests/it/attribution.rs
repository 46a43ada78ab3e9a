//! Attribution within an account (docs/input.md, 6 and 7): an invoice's usage
//! split by tag, workspace and user, worked by hand to the cent; the same
//! through `GET …/invoices/{period}?breakdown=` and `tally invoice
//! --breakdown`. On both backends.

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tally::billing::containers::ContainerValues;
use tally::billing::{BreakdownPart, Cutoff, Period, breakdown, container_values, draft_invoice};
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

/// Four calls and a ten-minute container (docs/input.md fields in each):
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

/// A code run in `container` on DAY from `started` to `recorded` (times of
/// day), with attribution fields merged in.
fn run(account: &str, id: &str, container: &str, times: (&str, &str), extra: Value) -> Value {
    let mut v = code_run(account, id, container, Some(&at(times.0)), &at(times.1));
    if let (Value::Object(v), Value::Object(extra)) = (&mut v, extra) {
        v.extend(extra);
    }
    v
}

fn project(p: &str) -> Value {
    json!({"tags": {"project": p}})
}

/// Containers whose first record changes as records arrive, in two batches:
///
/// | container | records (batch) | first record | execution | billed |
/// |---|---|---|---:|---:|
/// | c1 | ads+w1 13:00–13:10 (1), search 13:15–13:20 (2) | ads, w1 | 900 s | 900 s |
/// | c2 | search 13:58–14:00 (1), ads+w3 13:59–14:00 (2) | search (a tie on time: the lower seq) | 120 s | 300 s |
/// | c3 | search 15:20–15:30 (1), ads+w2 15:00–15:10 (2) | ads, w2 (earlier, came later) | 1,200 s | 1,200 s |
/// | c4 | untagged 16:00–16:10 | none | 600 s | 600 s |
/// | c5 | ops 17:00–17:05 (1), web tools 17:06–17:10 (2) | ops (inexact: the web-tools record is free) | 300 s | 300 s |
/// | c6 | ads, the next day, 10:00–10:01 (2) | ads | 60 s | 300 s |
/// | c7 | account beta, ads 09:00–09:20 (1) | ads | 1,200 s | 1,200 s |
fn container_batches() -> (Vec<Value>, Vec<Value>) {
    let w = |p: &str, ws: &str| json!({"tags": {"project": p}, "workspace": ws});
    let mut web = run(
        "acme",
        "msg_b5",
        "c5",
        ("17:06:00", "17:10:00"),
        project("ops"),
    );
    web["request"] = json!({"tools": [{"type": "web_search_20260209", "name": "web_search"},
                                      {"type": "code_execution_20260120", "name": "code_execution"}]});
    let mut next_day = run(
        "acme",
        "msg_b6",
        "c6",
        ("10:00:00", "10:01:00"),
        project("ads"),
    );
    next_day["started_at"] = json!("2026-10-06T10:00:00Z");
    next_day["recorded_at"] = json!("2026-10-06T10:01:00Z");
    let first = vec![
        run(
            "acme",
            "msg_a1",
            "c1",
            ("13:00:00", "13:10:00"),
            w("ads", "w1"),
        ),
        run(
            "acme",
            "msg_a2",
            "c2",
            ("13:58:00", "14:00:00"),
            project("search"),
        ),
        run(
            "acme",
            "msg_a3",
            "c3",
            ("15:20:00", "15:30:00"),
            project("search"),
        ),
        run("acme", "msg_a4", "c4", ("16:00:00", "16:10:00"), json!({})),
        run(
            "acme",
            "msg_a5",
            "c5",
            ("17:00:00", "17:05:00"),
            project("ops"),
        ),
        run(
            "beta",
            "msg_a7",
            "c7",
            ("09:00:00", "09:20:00"),
            project("ads"),
        ),
    ];
    // Account gamma: c8, two records at one instant in one batch (line
    // order is not seq order: a batch is written in key order, so msg_y8,
    // second in the file, takes the lower seq and is the first record); c9,
    // whose first record moves to the day before: [23:45, 23:50] on the 5th
    // and [00:00, 00:10] on the 6th, 900 s, first used on the 5th.
    let mut c9_late = run(
        "gamma",
        "msg_a9",
        "c9",
        ("00:00:00", "00:10:00"),
        project("search"),
    );
    c9_late["started_at"] = json!("2026-10-06T00:00:00Z");
    c9_late["recorded_at"] = json!("2026-10-06T00:10:00Z");
    let first = [
        first,
        vec![
            run(
                "gamma",
                "msg_z8",
                "c8",
                ("11:59:00", "12:00:00"),
                project("ads"),
            ),
            run(
                "gamma",
                "msg_y8",
                "c8",
                ("11:59:00", "12:00:00"),
                project("search"),
            ),
            c9_late,
        ],
    ]
    .concat();
    let second = vec![
        run(
            "gamma",
            "msg_b9",
            "c9",
            ("23:45:00", "23:50:00"),
            project("ads"),
        ),
        run(
            "acme",
            "msg_b1",
            "c1",
            ("13:15:00", "13:20:00"),
            project("search"),
        ),
        run(
            "acme",
            "msg_b2",
            "c2",
            ("13:59:00", "14:00:00"),
            w("ads", "w3"),
        ),
        run(
            "acme",
            "msg_b3",
            "c3",
            ("15:00:00", "15:10:00"),
            w("ads", "w2"),
        ),
        web,
        next_day,
    ];
    (first, second)
}

/// Container seconds by (account, day) and value, for one dimension: from
/// the container roll-up (the ledger now) and from the records.
async fn container_split(
    store: &std::sync::Arc<dyn tally::store::Store>,
    dim: &str,
) -> (ContainerValues, ContainerValues) {
    let book = PriceBook::shipped();
    let period = Period::parse("2026-10").unwrap();
    let dims = [Dimension::parse(dim).unwrap()];
    let seq = store.max_seq().await.unwrap();
    let now = container_values(store.as_ref(), &book, period, Cutoff::Now(seq), &dims)
        .await
        .unwrap();
    let records = container_values(store.as_ref(), &book, period, Cutoff::AsOf(seq), &dims)
        .await
        .unwrap();
    (now, records)
}

fn seconds(values: &ContainerValues, account: &str, day: &str, value: Option<&str>) -> i64 {
    let day = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
    values
        .get(&(account.to_owned(), day))
        .and_then(|by| by.get(&vec![value.map(str::to_owned)]))
        .copied()
        .unwrap_or(0)
}

/// Sums of `container_dim_days` (shards added) and each container's first
/// record and attribution, as text: what the roll-up keeps by dimension.
async fn container_dim_state(db: &TestDb) -> (Vec<String>, Vec<(String, Value)>) {
    let sums = db
        .texts(
            "select dim || '|' || cast(day as text) || '|' || account || '|' || value || '|' || \
             cast(sum(containers) as text) || '|' || cast(sum(execution_seconds) as text) || '|' || \
             cast(sum(short_containers) as text) || '|' || cast(sum(short_seconds) as text) \
             from container_dim_days group by dim, day, account, value \
             having sum(containers) <> 0 order by 1",
        )
        .await;
    let firsts = db
        .texts(
            "select container_id || '|' || coalesce(cast(first_seq as text), '-') || '|' || attribution \
             from containers order by container_id",
        )
        .await;
    let firsts = firsts
        .into_iter()
        .map(|row| {
            let (head, attribution) = row.rsplit_once('|').unwrap();
            let mut pairs: Vec<Value> = if attribution.is_empty() {
                Vec::new()
            } else {
                serde_json::from_str(attribution).unwrap()
            };
            pairs.sort_by_key(|p| p.to_string());
            (head.to_owned(), Value::Array(pairs))
        })
        .collect();
    (sums, firsts)
}

async fn container_time_splits_by_its_first_record(backend: Backend) {
    let (db, store) = TestDb::with_store(backend).await;
    let (first, second) = container_batches();
    ingest(&store, &first).await;
    ingest(&store, &second).await;

    let (now, records) = container_split(&store, "tag:project").await;
    assert_eq!(now, records, "the roll-up and the records agree");
    let day = "2026-10-05";
    assert_eq!(seconds(&now, "acme", day, Some("ads")), 900 + 1200);
    assert_eq!(seconds(&now, "acme", day, Some("search")), 300);
    assert_eq!(seconds(&now, "acme", day, Some("ops")), 300);
    assert_eq!(seconds(&now, "acme", day, None), 600);
    assert_eq!(seconds(&now, "acme", "2026-10-06", Some("ads")), 300);
    assert_eq!(seconds(&now, "beta", day, Some("ads")), 1200);
    assert_eq!(
        db.texts(
            "select record_key from records where record_key in ('msg_y8', 'msg_z8') order by seq"
        )
        .await,
        ["msg_y8", "msg_z8"],
        "the batch was written in key order"
    );
    assert_eq!(
        seconds(&now, "gamma", day, Some("search")),
        300,
        "c8: the lower seq"
    );
    assert_eq!(
        seconds(&now, "gamma", day, Some("ads")),
        900,
        "c9 moved to the 5th"
    );
    assert_eq!(seconds(&now, "gamma", "2026-10-06", Some("search")), 0);
    assert_eq!(now.len(), 4, "{now:?}");

    let (now, records) = container_split(&store, "workspace").await;
    assert_eq!(now, records);
    assert_eq!(seconds(&now, "acme", day, Some("w1")), 900);
    assert_eq!(seconds(&now, "acme", day, Some("w2")), 1200);
    assert_eq!(
        seconds(&now, "acme", day, Some("w3")),
        0,
        "w3 came second in c2"
    );
    assert_eq!(seconds(&now, "acme", day, None), 300 + 600 + 300);
    for dim in ["user", "api_key_id"] {
        let (now, records) = container_split(&store, dim).await;
        assert_eq!(now, records, "{dim}");
        assert_eq!(seconds(&now, "acme", day, None), 3300, "{dim}");
    }

    // The roll-up itself: the exact containers by project (c5 is inexact,
    // so its records decide; c2 ran 120 s and c8 60 s, under the minimum).
    let (sums, _) = container_dim_state(&db).await;
    let by_project: Vec<&String> = sums
        .iter()
        .filter(|r| r.starts_with("tag:project|"))
        .collect();
    let day_number = 20_731; // 2026-10-05
    assert_eq!(
        by_project,
        [
            &format!("tag:project|{day_number}|acme|ads|2|2100|0|0"),
            &format!("tag:project|{day_number}|acme|search|1|120|1|120"),
            &format!("tag:project|{day_number}|beta|ads|1|1200|0|0"),
            &format!("tag:project|{day_number}|gamma|ads|1|900|0|0"),
            &format!("tag:project|{day_number}|gamma|search|1|60|1|60"),
            &format!("tag:project|{}|acme|ads|1|60|1|60", day_number + 1),
        ]
    );
}

/// A ledger written before the container roll-up kept attribution (schema
/// 14) gets the same state from migration 15 as one written since.
async fn the_migration_backfills_container_attribution(backend: Backend) {
    let (db, store) = TestDb::with_store(backend).await;
    let (first, second) = container_batches();
    ingest(&store, &first).await;
    ingest(&store, &second).await;
    let written = container_dim_state(&db).await;
    assert!(!written.0.is_empty());
    drop(store);

    // Back to schema 14, then open the store again (which migrates).
    db.execute(
        "drop table container_dim_days; \
         alter table containers drop column first_seq; \
         alter table containers drop column attribution; \
         delete from _sqlx_migrations where version = 15;",
    )
    .await;
    let store = db.store().await;
    assert_eq!(container_dim_state(&db).await, written);
    for dim in ["tag:project", "workspace"] {
        let (now, records) = container_split(&store, dim).await;
        assert_eq!(now, records, "{dim}");
    }
}

/// Folding the roll-ups' writer shards (after a bulk load, and now and then
/// in a server) changes no figure, and leaves one row per key.
async fn folding_the_rollup_shards_changes_nothing(backend: Backend) {
    let (db, store) = TestDb::with_store(backend).await;
    let (first, second) = container_batches();
    // One batch per line: on PostgreSQL each write takes the next shard.
    for line in ledger().into_iter().chain(first).chain(second) {
        ingest(&store, &[line]).await;
    }
    let book = PriceBook::shipped();
    let period = Period::parse("2026-10").unwrap();
    let figures = || async {
        let mut out = Vec::new();
        for account in ["acme", "beta"] {
            let invoice = draft_invoice(store.as_ref(), &book, account, period)
                .await
                .unwrap();
            let mut parts = Vec::new();
            for dim in ["tag:project", "workspace", "user"] {
                let dim = Dimension::parse(dim).unwrap();
                parts.push(
                    breakdown(store.as_ref(), &book, account, period, &dim)
                        .await
                        .unwrap(),
                );
            }
            out.push((invoice, parts));
        }
        out
    };
    let before = figures().await;
    assert_eq!(
        before[0].0.total,
        d("0.93"),
        "the container time is within the free hours"
    );
    let sharded =
        |table: &str| format!("select cast(count(*) as text) from {table} where shard <> -1");
    if backend == Backend::Postgres {
        for table in [
            "usage_rollup",
            "usage_dim_rollup",
            "container_days",
            "container_dim_days",
        ] {
            assert_ne!(db.texts(&sharded(table)).await, ["0"], "{table}");
        }
    }
    store.compact_rollups().await.unwrap();
    assert_eq!(figures().await, before);
    if backend == Backend::Postgres {
        for table in [
            "usage_rollup",
            "usage_dim_rollup",
            "container_days",
            "container_dim_days",
        ] {
            assert_eq!(db.texts(&sharded(table)).await, ["0"], "{table}");
        }
        // Writes during and after a fold add to the sums: 20 calls of
        // 5,000 input tokens written one by one while the shards fold.
        let writes = {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    let late = call(
                        &format!("msg_late_{i}"),
                        5_000,
                        0,
                        json!({"tags": {"project": "ads"}}),
                    );
                    ingest(&store, &[late]).await;
                }
            })
        };
        while !writes.is_finished() {
            store.compact_rollups().await.unwrap();
        }
        writes.await.unwrap();
        store.compact_rollups().await.unwrap();
        let after = figures().await;
        assert_eq!(
            after[0].0.total,
            d("1.23"),
            "20 × 5,000 more input tokens at $3/MTok"
        );
    }
}

on_both_backends!(
    folding_the_rollup_shards_changes_nothing,
    container_time_splits_by_its_first_record,
    the_migration_backfills_container_attribution,
    the_dashboard_filters_by_tag_and_workspace,
    focus_rows_carry_tags,
    the_cost_report_groups_by_attribution,
    an_invoice_splits_by_tag_workspace_and_user_to_the_cent,
    breakdowns_over_http_and_the_command_line,
);
