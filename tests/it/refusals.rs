//! Refusals (docs/billing.md), worked by hand for each of Anthropic's three eras:
//! charged like any response until 2026-06-01; not charged before any output
//! from 2026-06-02; charged again from 2026-09-24 when the category is `bio`,
//! `frontier_llm` or `reasoning_extraction`. Plain, streamed and batch
//! responses; a refusal in a container with files preloaded; a mid-stream
//! refusal; an unknown category. On both backends, from the roll-ups and
//! from the records, and again under a re-imported book.

use std::sync::Arc;

use serde_json::{Value, json};
use tally::billing::{Cutoff, Invoice, Period, draft_as_of, draft_invoice};
use tally::pricing::PriceBook;
use tally::store::Store;

use crate::billing::{d, ingest, line, lines_of, secs};
use crate::support::{Backend, TestApp, TestDb};

const MODEL: &str = "claude-sonnet-4-5-20250929";
/// Input of one request: well under the 200K long-context threshold.
const K: i64 = 100_000;

/// A response ending in `stop_reason: "refusal"` with no content, its
/// `stop_details.category` when given.
fn refusal(id: &str, at: &str, category: Option<&str>, usage: Value) -> Value {
    let mut v = json!({
        "account": "acme",
        "recorded_at": at,
        "response": {"id": id, "type": "message", "role": "assistant", "model": MODEL,
            "content": [], "stop_reason": "refusal", "usage": usage},
    });
    if let Some(c) = category {
        v["response"]["stop_details"] = json!({"type": "refusal", "category": c,
            "explanation": "declined"});
    }
    v
}

fn answered(id: &str, at: &str, input: i64) -> Value {
    crate::billing::record(
        "acme",
        id,
        MODEL,
        at,
        json!({"input_tokens": input, "output_tokens": 0}),
    )
}

/// A streamed response: its events, a text block first when `text` is given,
/// ending in a refusal of `category`.
fn streamed_refusal(
    id: &str,
    at: &str,
    text: Option<&str>,
    category: &str,
    input: i64,
    output: i64,
) -> Value {
    let mut events = vec![
        json!({"type": "message_start", "message": {"id": id, "type": "message",
        "role": "assistant", "model": MODEL, "content": [],
        "usage": {"input_tokens": input, "output_tokens": 1}}}),
    ];
    if let Some(t) = text {
        events.push(json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}));
        events.push(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": t}}));
        events.push(json!({"type": "content_block_stop", "index": 0}));
    }
    events.push(json!({"type": "message_delta",
        "delta": {"stop_reason": "refusal", "stop_sequence": null,
            "stop_details": {"type": "refusal", "category": category}},
        "usage": {"output_tokens": output}}));
    events.push(json!({"type": "message_stop"}));
    json!({"account": "acme", "recorded_at": at, "events": events})
}

/// A refusal before output in a container that files were preloaded into,
/// its request running for ten minutes.
fn refusal_in_container(id: &str, day: &str, category: Option<&str>) -> Value {
    let mut v = refusal(
        id,
        &format!("{day}T10:10:00Z"),
        category,
        json!({"input_tokens": 0, "output_tokens": 0}),
    );
    v["started_at"] = json!(format!("{day}T10:00:00Z"));
    v["files_preloaded"] = json!(true);
    v["response"]["container"] = json!({"id": format!("container_{id}"),
        "expires_at": format!("{day}T11:00:00Z")});
    v
}

/// The invoice from the roll-ups (as it is now) and from the records (as of
/// the newest record), which must agree.
async fn invoice_both_ways(store: &Arc<dyn Store>, book: &PriceBook, period: &str) -> Invoice {
    let period = Period::parse(period).unwrap();
    let now = draft_invoice(store.as_ref(), book, "acme", period)
        .await
        .unwrap();
    let seq = store.max_seq().await.unwrap();
    let exact = draft_as_of(store.as_ref(), book, "acme", period, Cutoff::AsOf(seq))
        .await
        .unwrap();
    assert_eq!(now, exact, "roll-ups and records disagree");
    now
}

fn ledger() -> Vec<Value> {
    vec![
        // Until 2026-06-01 every refusal is charged.
        refusal(
            "msg_may_refusal",
            "2026-05-10T12:00:00Z",
            None,
            json!({"input_tokens": K, "output_tokens": 0,
                "server_tool_use": {"web_search_requests": 2}}),
        ),
        refusal_in_container("msg_may_container", "2026-05-11", None),
        // From 2026-06-02 a refusal before output is free, whatever the category.
        refusal(
            "msg_jul_bio",
            "2026-07-10T12:00:00Z",
            Some("bio"),
            json!({"input_tokens": K, "output_tokens": 0,
                "server_tool_use": {"web_search_requests": 1}}),
        ),
        refusal_in_container("msg_jul_container", "2026-07-11", None),
        // A mid-stream refusal bills what was read and written.
        streamed_refusal(
            "msg_jul_midstream",
            "2026-07-12T12:00:00Z",
            Some("Sure, here is"),
            "cyber",
            2 * K,
            100_000,
        ),
        answered("msg_jul_answer", "2026-07-13T12:00:00Z", K),
        // From 2026-09-24 the listed categories are charged again.
        refusal(
            "msg_oct_bio",
            "2026-10-10T12:00:00Z",
            Some("bio"),
            json!({"input_tokens": K, "output_tokens": 0}),
        ),
        refusal(
            "msg_oct_cyber",
            "2026-10-10T12:01:00Z",
            Some("cyber"),
            json!({"input_tokens": K, "output_tokens": 0}),
        ),
        refusal(
            "msg_oct_none",
            "2026-10-10T12:02:00Z",
            None,
            json!({"input_tokens": K, "output_tokens": 0}),
        ),
        refusal(
            "msg_oct_unknown",
            "2026-10-10T12:03:00Z",
            Some("a_category_from_2027"),
            json!({"input_tokens": K, "output_tokens": 0}),
        ),
        streamed_refusal(
            "msg_oct_stream_llm",
            "2026-10-11T12:00:00Z",
            None,
            "frontier_llm",
            K / 2,
            0,
        ),
        streamed_refusal(
            "msg_oct_stream_cyber",
            "2026-10-11T12:01:00Z",
            None,
            "cyber",
            K / 2,
            0,
        ),
        json!({"account": "acme", "recorded_at": "2026-10-12T12:00:00Z",
            "custom_id": "req-1", "result": {"type": "succeeded", "message": {
                "id": "msg_oct_batch", "type": "message", "role": "assistant", "model": MODEL,
                "content": [], "stop_reason": "refusal",
                "stop_details": {"type": "refusal", "category": "reasoning_extraction"},
                "usage": {"input_tokens": K, "output_tokens": 0}}}}),
    ]
}

async fn refusals_are_charged_as_each_era_says(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    ingest(&store, &ledger()).await;
    let book = PriceBook::shipped();

    // May: charged. 100,000 input × $3/MTok = $0.30; 2 searches × $0.01 = $0.02;
    // the container: 600 s, inside the month's free hours.
    let may = invoice_both_ways(&store, &book, "2026-05").await;
    assert_eq!(line(&may, "input_tokens", Some(MODEL)).amount, d("0.30"));
    assert_eq!(line(&may, "web_search_requests", None).amount, d("0.02"));
    assert_eq!(line(&may, "container_hours", None).quantity, secs(600));
    assert_eq!(may.unbilled_refusals, 0);
    assert_eq!((may.records, may.total), (2, d("0.32")));

    // July: the bio refusal and the one in the container add nothing (no
    // tokens, no search, no container time). Input: 200,000 (mid-stream)
    // + 100,000 (answered) = 300,000 × $3/MTok = $0.90; output 100,000 ×
    // $15/MTok = $1.50.
    let jul = invoice_both_ways(&store, &book, "2026-07").await;
    let input = line(&jul, "input_tokens", Some(MODEL));
    assert_eq!((input.quantity, input.amount), (d("300000"), d("0.90")));
    assert_eq!(line(&jul, "output_tokens", Some(MODEL)).amount, d("1.50"));
    assert!(lines_of(&jul, "web_search_requests").is_empty());
    assert!(lines_of(&jul, "container_hours").is_empty());
    assert_eq!((jul.records, jul.containers), (4, 0));
    assert_eq!(jul.unbilled_refusals, 2);
    assert_eq!(jul.total, d("2.40"));

    // October: bio (100,000) and the streamed frontier_llm refusal (50,000)
    // are charged: 150,000 × $3/MTok = $0.45; the batch reasoning_extraction
    // refusal (100,000) at half price: $0.15. Cyber, none, an unknown
    // category and the streamed cyber refusal are not (4).
    let oct = invoice_both_ways(&store, &book, "2026-10").await;
    let inputs = lines_of(&oct, "input_tokens");
    let plain = inputs.iter().find(|l| !l.batch).unwrap();
    let batch = inputs.iter().find(|l| l.batch).unwrap();
    assert_eq!((plain.quantity, plain.amount), (d("150000"), d("0.45")));
    assert_eq!((batch.quantity, batch.amount), (d("100000"), d("0.15")));
    assert_eq!(oct.unbilled_refusals, 4);
    assert_eq!((oct.records, oct.total), (7, d("0.60")));

    // The JSON says it too.
    let json: Value = serde_json::from_str(&tally::billing::render::json(&oct)).unwrap();
    assert_eq!(json["unbilled_refusals"], 4);
}

/// The ledger keeps what each refusal was, not whether it was charged: a
/// book that charges every refusal (re-imported) charges July's again.
async fn a_reimported_book_decides_again(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    ingest(&store, &ledger()).await;
    let text = std::fs::read_to_string(crate::support::fixture_path("prices.toml")).unwrap();
    let charging = text.replace(
        "refusal_policy = \"free_before_output\"\n",
        "refusal_policy = \"charged\"\n",
    );
    let charging = charging.replace(
        "refusal_billed_categories = [\"bio\", \"frontier_llm\", \"reasoning_extraction\"]   # still charged before output\n",
        "",
    );
    let book = PriceBook::parse(&charging).unwrap();
    let jul = invoice_both_ways(&store, &book, "2026-07").await;
    // + the bio refusal's 100,000 input ($0.30) and its search ($0.01), and
    // the container's 600 s.
    assert_eq!(line(&jul, "input_tokens", Some(MODEL)).amount, d("1.20"));
    assert_eq!(line(&jul, "web_search_requests", None).amount, d("0.01"));
    assert_eq!(line(&jul, "container_hours", None).quantity, secs(600));
    assert_eq!((jul.unbilled_refusals, jul.containers), (0, 1));
}

/// The same counts on the dashboard, in the cost report's buckets, and the
/// policy in force in `tally prices`.
async fn unbilled_refusals_are_shown_everywhere(backend: Backend) {
    let app = TestApp::on(backend)
        .configure(|c| c.finance_max_age = std::time::Duration::ZERO)
        .serve()
        .await;
    ingest(&app.store, &ledger()).await;
    let admin = app.admin();

    let report = admin
        .get_json("/v1/cost_report?starting_at=2026-10-10T00:00:00Z&ending_at=2026-10-13T00:00:00Z")
        .await;
    let counts: Vec<i64> = report["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["unbilled_refusals"].as_i64().unwrap())
        .collect();
    // 10 Oct: cyber, none, unknown; 11 Oct: the streamed cyber refusal; 12 Oct: none.
    assert_eq!(counts, [3, 1, 0], "{report}");
    // The charged ones are in the amounts: 10 Oct is bio alone, 100,000 × $3/MTok = 30 cents.
    assert_eq!(report["data"][0]["results"][0]["amount"], "30");

    let page = admin.get_text("/?period=2026-10").await;
    assert!(
        page.contains(r#"id="unbilled-refusals">4<"#),
        "the dashboard shows the 4 refusals not charged"
    );

    let (_, may, _) = app.tally(&["prices", "--at", "2026-05-01"]);
    assert!(
        may.contains("refusals: refusals are charged like any response"),
        "{may}"
    );
    let (_, jul, _) = app.tally(&["prices", "--at", "2026-07-01"]);
    assert!(
        jul.contains("refusals: a refusal before any output is not charged\n"),
        "{jul}"
    );
    let (_, oct, _) = app.tally(&["prices", "--at", "2026-10-01"]);
    assert!(
        oct.contains(
            "not charged, except in the categories bio, frontier_llm, reasoning_extraction"
        ),
        "{oct}"
    );
}

on_both_backends!(
    refusals_are_charged_as_each_era_says,
    a_reimported_book_decides_again,
    unbilled_refusals_are_shown_everywhere,
);
