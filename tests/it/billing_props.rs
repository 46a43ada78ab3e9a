//! Properties of the billing core over generated ledgers (on real SQLite
//! files; the same SQL runs on PostgreSQL in the example-based suites):
//! - an invoice's total is the sum of its lines' amounts, and the subtotals add up;
//! - the same records in any order, in any batch split, with duplicates mixed
//!   in, give byte-identical invoices;
//! - free-hour parts add up exactly to the allowance used;
//! - no container is billed under the minimum;
//! - re-pricing never changes a finalized invoice;
//! - the usage roll-up gives the same invoices as the records themselves;
//! - under random plans, an account's price lines add up to the cost
//!   report's price view over the period's days (and its cost lines to the
//!   cost view), cost never depends on the plan, and an empty plan prices
//!   every line at its cost exactly.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::support::{Backend, TestDb};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tally::billing::{self, Period, render};
use tally::ingest::ChunkBuilder;
use tally::pricing::PriceBook;
use tally::record::Defaults;
use tally::store::Store;

const MODELS: [&str; 5] = [
    "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5-20251001",
    "claude-opus-4-5-20251101",
    "claude-sonnet-4-5",
    "claude-unknown-1",
];

#[derive(Debug, Clone)]
struct Spec {
    account: u8,
    model: usize,
    day: u8,
    second: u32,
    input: u32,
    output: u32,
    cache_read: u32,
    batch: bool,
    searches: u8,
    /// Code execution in container `(account, n)`, running `run` seconds.
    container: Option<(u8, u16)>,
    /// With a container: files preloaded and no run (no `started_at`).
    files_only: bool,
    /// The request declares web tools of 20260209 (free code execution
    /// from 2026-02-17; here it only makes the roll-up read the records).
    web_tools: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    spec_with(0.4)
}

/// Code-execution-heavy ledgers: most records in a few reused containers.
fn heavy_spec() -> impl Strategy<Value = Spec> {
    spec_with(0.9)
}

fn ledger_specs() -> impl Strategy<Value = Vec<Spec>> {
    prop_oneof![
        proptest::collection::vec(spec(), 1..40),
        proptest::collection::vec(heavy_spec(), 1..60),
    ]
}

fn spec_with(container_weight: f64) -> impl Strategy<Value = Spec> {
    (
        0u8..3,
        0usize..MODELS.len(),
        1u8..4,
        0u32..80_000,
        (0u32..300_000, 0u32..5000, 0u32..50_000),
        any::<bool>(),
        0u8..3,
        proptest::option::weighted(container_weight, (0u8..3, 1u16..4000)),
        proptest::bool::weighted(0.15),
        proptest::bool::weighted(0.1),
    )
        .prop_map(
            |(
                account,
                model,
                day,
                second,
                (input, output, cache_read),
                batch,
                searches,
                container,
                files_only,
                web_tools,
            )| Spec {
                account,
                model,
                day,
                second,
                input,
                output,
                cache_read,
                batch,
                searches,
                container,
                files_only,
                web_tools,
            },
        )
}

fn to_line(i: usize, s: &Spec) -> Value {
    let recorded = chrono::DateTime::parse_from_rfc3339(&format!("2025-11-0{}T00:00:00Z", s.day))
        .unwrap()
        + chrono::Duration::seconds(i64::from(s.second) + 5000);
    let account = format!("acct-{}", s.account);
    let mut v = json!({
        "account": account,
        "recorded_at": recorded.to_rfc3339(),
        "batch": s.batch,
        "response": {"id": format!("msg_{i}"), "type": "message", "model": MODELS[s.model],
            "content": [{"type": "text", "text": "x"}],
            "usage": {"input_tokens": s.input, "output_tokens": s.output, "cache_read_input_tokens": s.cache_read,
                      "server_tool_use": {"web_search_requests": s.searches}}}
    });
    if let Some((n, run)) = s.container {
        v["response"]["container"] =
            json!({"id": format!("c-{account}-{n}"), "expires_at": recorded.to_rfc3339()});
        let mut request =
            json!({"model": MODELS[s.model], "messages": [{"role": "user", "content": "x"}]});
        if s.files_only {
            request["messages"] = json!([{"role": "user", "content": [
                {"type": "container_upload", "file_id": "file_1"}]}]);
        } else {
            let started = recorded - chrono::Duration::seconds(i64::from(run));
            v["started_at"] = json!(started.to_rfc3339());
            v["response"]["content"] = json!([{"type": "server_tool_use", "id": "s", "name": "code_execution", "input": {}}]);
        }
        if s.web_tools {
            request["tools"] = json!([{"type": "web_search_20260209", "name": "web_search"}]);
        }
        v["request"] = request;
    }
    v
}

/// The lines in a random order, deterministic for `seed`.
fn shuffle(lines: &[String], seed: u64) -> Vec<String> {
    let mut shuffled = lines.to_vec();
    let mut x = seed | 1;
    for i in (1..shuffled.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        shuffled.swap(i, (x % (i as u64 + 1)) as usize);
    }
    shuffled
}

async fn write_in_chunks(store: &Arc<dyn Store>, lines: &[String], sizes: &[usize]) {
    let mut rest = lines;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        let mut b = ChunkBuilder::new("prop", Defaults::default(), tally::time::now_micros());
        for (i, l) in chunk.iter().enumerate() {
            b.push_line(i as u64 + 1, l.as_bytes());
        }
        store.write(&b.take()).await.unwrap();
        rest = tail;
    }
}

async fn rendered_invoices(store: &Arc<dyn Store>, book: &PriceBook) -> Vec<(String, String)> {
    let period = Period::parse("2025-11").unwrap();
    let mut out = Vec::new();
    for inv in billing::draft_invoices(store.as_ref(), book, period)
        .await
        .unwrap()
    {
        out.push((render::json(&inv), render::csv(&inv)));
    }
    out
}

fn small_allowance_book() -> PriceBook {
    // Half an hour free per day, so the allowance binds in generated ledgers.
    PriceBook::parse(&tally::pricing::SHIPPED.replace(
        "free_container_hours = \"50\"",
        "free_container_hours = \"0.5\"",
    ))
    .unwrap()
}

/// A random plan: a markup and a discount, perhaps an override (a fixed
/// unit price or a markup of one charge), perhaps a second version from a
/// day of the month, perhaps a minimum.
#[derive(Debug, Clone)]
struct PlanSpec {
    markup: u8,
    discount: u8,
    overrides: Option<(usize, bool, u32)>,
    second_from: Option<u8>,
    minimum: Option<u16>,
}

fn plan_spec() -> impl Strategy<Value = PlanSpec> {
    (
        0u8..150,
        0u8..60,
        proptest::option::of((
            0usize..tally::charge::Charge::PRICED_BY_PLANS.len(),
            any::<bool>(),
            0u32..1000,
        )),
        proptest::option::of(2u8..4),
        proptest::option::of(0u16..20),
    )
        .prop_map(
            |(markup, discount, overrides, second_from, minimum)| PlanSpec {
                markup,
                discount,
                overrides,
                second_from,
                minimum,
            },
        )
}

impl PlanSpec {
    fn toml(&self) -> String {
        let mut t = format!(
            "[[version]]\neffective_from = \"2025-01-01\"\nmarkup_percent = \"{}\"\ndiscount_percent = \"{}\"\n",
            self.markup, self.discount
        );
        if let Some(m) = self.minimum {
            t.push_str(&format!("minimum_monthly_usd = \"{m}\"\n"));
        }
        if let Some((charge, fixed, value)) = self.overrides {
            let charge = tally::charge::Charge::PRICED_BY_PLANS[charge].as_str();
            let price = if fixed {
                format!("unit_price = \"0.{value:07}\"")
            } else {
                format!("markup_percent = \"{value}\"")
            };
            t.push_str(&format!(
                "[[version.override]]\ncharge = \"{charge}\"\n{price}\n"
            ));
        }
        if let Some(day) = self.second_from {
            t.push_str(&format!(
                "[[version]]\neffective_from = \"2025-11-0{day}\"\nmarkup_percent = \"{}\"\n",
                self.markup / 2
            ));
        }
        t
    }
}

/// The cost report's sum for one account over November, in dollars.
fn report_sum(costs: &billing::daily::PeriodCosts, account: &str, view: &str) -> Decimal {
    use tally::finance::cost_report::{CostReportQuery, build};
    let pairs: Vec<(String, String)> = [
        ("starting_at", "2025-11-01T00:00:00Z"),
        ("ending_at", "2025-12-01T00:00:00Z"),
        ("limit", "31"),
        ("group_by[]", "account"),
        ("view", view),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let today = chrono::NaiveDate::from_ymd_opt(2025, 12, 1).unwrap();
    let query = CostReportQuery::parse(&pairs, today).unwrap();
    let report = build(&query, costs.days(), costs.unbilled_refusals());
    let cents: Decimal = report
        .data
        .iter()
        .flat_map(|b| b.results.iter())
        .filter(|r| r.account.as_deref() == Some(account))
        .map(|r| r.amount.parse::<Decimal>().unwrap())
        .sum();
    cents / Decimal::ONE_HUNDRED
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(crate::support::proptest_config(24))]

    #[test]
    fn invoices_do_not_depend_on_order_split_or_duplicates(
        specs in ledger_specs(),
        seed in any::<u64>(),
        sizes in proptest::collection::vec(1usize..12, 1..5),
        dup_every in 2usize..6,
    ) {
        runtime().block_on(async {
            let book = small_allowance_book();
            let lines: Vec<String> = specs.iter().enumerate().map(|(i, s)| to_line(i, s).to_string()).collect();

            let (_a, store_a) = TestDb::with_store(Backend::Sqlite).await;
            write_in_chunks(&store_a, &lines, &[lines.len()]).await;
            let expected = rendered_invoices(&store_a, &book).await;

            // Shuffle deterministically, mix in repeats, and split differently.
            let shuffled = shuffle(&lines, seed);
            let mut with_dups = Vec::new();
            for (i, l) in shuffled.iter().enumerate() {
                with_dups.push(l.clone());
                if i % dup_every == 0 {
                    with_dups.push(l.clone());
                }
            }
            let (_b, store_b) = TestDb::with_store(Backend::Sqlite).await;
            write_in_chunks(&store_b, &with_dups, &sizes).await;
            let actual = rendered_invoices(&store_b, &book).await;
            prop_assert_eq!(actual, expected);
            Ok(())
        })?;
    }

    #[test]
    fn totals_allowance_and_minimum_invariants(specs in proptest::collection::vec(spec(), 1..40)) {
        runtime().block_on(async {
            let book = small_allowance_book();
            let (_db, store) = TestDb::with_store(Backend::Sqlite).await;
            let lines: Vec<String> = specs.iter().enumerate().map(|(i, s)| to_line(i, s).to_string()).collect();
            write_in_chunks(&store, &lines, &[7]).await;
            let period = Period::parse("2025-11").unwrap();

            for inv in billing::draft_invoices(store.as_ref(), &book, period).await.unwrap() {
                let sum: Decimal = inv.lines.iter().map(|l| l.amount).sum();
                prop_assert_eq!(inv.total, sum);
                prop_assert_eq!(inv.total, inv.subtotals.tokens + inv.subtotals.web_search + inv.subtotals.code_execution);
                for l in &inv.lines {
                    prop_assert_eq!(l.amount, billing::cents(l.amount_exact));
                }
            }

            // The roll-up and the records agree, to the byte.
            for account in ["acct-0", "acct-1", "acct-2"] {
                let now = billing::draft_as_of(store.as_ref(), &book, account, period, billing::Cutoff::Now(i64::MAX)).await.unwrap();
                let raw = billing::draft_as_of(store.as_ref(), &book, account, period, billing::Cutoff::AsOf(i64::MAX)).await.unwrap();
                prop_assert_eq!(render::json(&now), render::json(&raw));
            }

            let bill = billing::container_bill(store.as_ref(), &book, period, crate::support::whole_ledger(false)).await.unwrap();
            for c in &bill.containers {
                prop_assert!(c.billed_seconds >= 300 * c.containers && c.billed_seconds >= c.execution_seconds);
            }
            // The container roll-up bills exactly what the records do.
            let rolled = billing::container_bill(store.as_ref(), &book, period, crate::support::whole_ledger(true)).await.unwrap();
            prop_assert_eq!(&rolled.containers, &bill.containers);
            prop_assert_eq!(&rolled.credits, &bill.credits);
            // Per day: the free parts add up to min(billed, allowance) exactly.
            let mut billed: BTreeMap<chrono::NaiveDate, i64> = BTreeMap::new();
            for c in &bill.containers {
                *billed.entry(c.day).or_default() += c.billed_seconds;
            }
            let credited: i64 = bill.credits.iter().map(|c| c.seconds).sum();
            let expected: i64 = billed.values().map(|&s| s.min(1800)).sum();
            prop_assert_eq!(credited, expected);
            for u in &bill.allowance {
                prop_assert_eq!(u.allowance_seconds, 1800);
            }
            Ok(())
        })?;
    }

    #[test]
    fn container_rollup_bills_what_the_records_bill(
        specs in ledger_specs(),
        sizes in proptest::collection::vec(1usize..12, 1..5),
        late_every in 3usize..12,
        seed in any::<u64>(),
    ) {
        runtime().block_on(async {
            let book = small_allowance_book();
            let period = Period::parse("2025-11").unwrap();
            let mut lines: Vec<Value> = specs.iter().enumerate().map(|(i, s)| to_line(i, s)).collect();
            // In order of start, as a live service sends them.
            let start = |v: &Value| v.get("started_at").unwrap_or(&v["recorded_at"]).as_str().unwrap().to_owned();
            lines.sort_by_key(start);
            let in_order: Vec<String> = lines.iter().map(Value::to_string).collect();
            // The same with some lines held back to the end (late, out of order).
            let (on_time, late): (Vec<_>, Vec<_>) = in_order.iter().cloned().enumerate().partition(|(i, _)| i % late_every != 0);
            let late: Vec<String> = on_time.into_iter().chain(late).map(|(_, l)| l).collect();
            // And in no order at all (a backfill of several files).
            let shuffled = shuffle(&in_order, seed);

            // In any order, only containers with a web-tools record are read
            // from the records: late records are merged into the spans.
            let web: std::collections::BTreeSet<(u8, u8)> = specs
                .iter()
                .filter(|s| s.web_tools)
                .filter_map(|s| s.container.map(|(n, _)| (s.account, n)))
                .collect();
            for lines in [in_order, late, shuffled] {
                let (db, store) = TestDb::with_store(Backend::Sqlite).await;
                write_in_chunks(&store, &lines, &sizes).await;
                let records = billing::container_bill(store.as_ref(), &book, period, crate::support::whole_ledger(false)).await.unwrap();
                let rolled = billing::container_bill(store.as_ref(), &book, period, crate::support::whole_ledger(true)).await.unwrap();
                prop_assert_eq!(&rolled.containers, &records.containers);
                prop_assert_eq!(&rolled.credits, &records.credits);
                prop_assert_eq!(&rolled.allowance, &records.allowance);
                let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
                let inexact: i64 = sqlx::query_scalar("select count(*) from containers where exact = 0")
                    .fetch_one(&pool).await.unwrap();
                prop_assert_eq!(inexact, web.len() as i64);
            }
            Ok(())
        })?;
    }

    #[test]
    fn plans_add_up_to_the_cost_report_and_an_empty_plan_is_cost(
        specs in proptest::collection::vec(spec(), 1..40),
        plans in (plan_spec(), plan_spec()),
    ) {
        runtime().block_on(async {
            let book = small_allowance_book();
            let (_db, store) = TestDb::with_store(Backend::Sqlite).await;
            let lines: Vec<String> = specs.iter().enumerate().map(|(i, s)| to_line(i, s).to_string()).collect();
            write_in_chunks(&store, &lines, &[9]).await;
            let period = Period::parse("2025-11").unwrap();
            let at_cost = billing::draft_invoices(store.as_ref(), &book, period).await.unwrap();

            store.set_plan("acct-0", &plans.0.toml()).await.unwrap();
            store.set_plan("acct-1", &plans.1.toml()).await.unwrap();
            store.set_plan("acct-2", "[[version]]\neffective_from = \"2025-01-01\"\n").await.unwrap();
            let costs = billing::daily::period_costs(store.as_ref(), &book, period, None, &[]).await.unwrap();
            for a in &costs.accounts {
                let name = &a.invoice.account;
                let (cost, price) = a.usage_cost_and_price();
                prop_assert_eq!(report_sum(&costs, name, "price"), price, "{} price", name);
                prop_assert_eq!(report_sum(&costs, name, "cost"), cost, "{} cost", name);
                prop_assert_eq!(report_sum(&costs, name, "margin"), price - cost, "{} margin", name);
                let sum: Decimal = a.invoice.lines.iter().map(|l| l.amount).sum();
                prop_assert_eq!(a.invoice.total, sum);
                // What the usage cost does not depend on the plan: the same
                // exact cost, and line by line where no second plan version
                // splits the month's lines.
                let Some(before) = at_cost.iter().find(|i| &i.account == name) else {
                    // Listed for its plan's minimum alone: no usage at all.
                    prop_assert_eq!(a.invoice.usage_lines().count(), 0);
                    continue;
                };
                let exact = |l: &[&billing::Line]| l.iter().map(|l| l.cost.amount_exact).sum::<Decimal>();
                let now: Vec<&billing::Line> = a.invoice.usage_lines().collect();
                let was: Vec<&billing::Line> = before.lines.iter().collect();
                // (Container hours are seconds ÷ 3600: 28 digits, the last
                // one rounded; a line split by version rounds it twice.)
                prop_assert_eq!(exact(&now).round_dp(20), exact(&was).round_dp(20));
                let split = match name.as_str() {
                    "acct-0" => plans.0.second_from.is_some(),
                    "acct-1" => plans.1.second_from.is_some(),
                    _ => false,
                };
                if !split {
                    let costed: Vec<_> = now.iter().map(|l| (l.charge, l.quantity, l.cost.amount)).collect();
                    let at: Vec<_> = was.iter().map(|l| (l.charge, l.quantity, l.cost.amount)).collect();
                    prop_assert_eq!(costed, at);
                }
                if name == "acct-2" {
                    // An empty plan: price = cost, line by line, exactly.
                    for l in &a.invoice.lines {
                        prop_assert_eq!(l.amount_exact, l.cost.amount_exact);
                        prop_assert_eq!(l.amount, l.cost.amount);
                        prop_assert_eq!(l.unit_price, l.cost.unit_price);
                    }
                    prop_assert_eq!(a.invoice.total, before.total);
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn repricing_never_changes_a_finalized_invoice(specs in proptest::collection::vec(spec(), 1..20), factor in 2u32..9) {
        runtime().block_on(async {
            let book = PriceBook::shipped();
            let (_db, store) = TestDb::with_store(Backend::Sqlite).await;
            let lines: Vec<String> = specs.iter().enumerate().map(|(i, s)| to_line(i, s).to_string()).collect();
            write_in_chunks(&store, &lines, &[5]).await;
            let period = Period::parse("2025-11").unwrap();
            let frozen = billing::finalize(store.as_ref(), &book, "acct-0", period, true).await.unwrap();
            let repriced = PriceBook::parse(&tally::pricing::SHIPPED.replace("input = \"3\"", &format!("input = \"{}\"", 3 * factor))).unwrap();
            let after = billing::invoice(store.as_ref(), &repriced, "acct-0", period).await.unwrap();
            prop_assert_eq!(after.json, frozen.json);
            prop_assert_eq!(after.csv, frozen.csv);
            Ok(())
        })?;
    }
}
