//! Properties of the billing core over generated ledgers (on real SQLite
//! files; the same SQL runs on PostgreSQL in the example-based suites):
//! - an invoice's total is the sum of its lines' amounts, and the subtotals add up;
//! - the same records in any order, in any batch split, with duplicates mixed
//!   in, give byte-identical invoices;
//! - free-hour parts add up exactly to the allowance used;
//! - no container is billed under the minimum;
//! - re-pricing never changes a finalized invoice;
//! - the usage roll-up gives the same invoices as the records themselves.

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
        let mut b = ChunkBuilder::new("prop", Defaults::default(), 0);
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
