//! The storage contract: every rule of identity, idempotency and quarantine,
//! run unchanged on SQLite and on PostgreSQL.

use std::sync::Arc;

use crate::support::{Backend, TestDb, fixture};
use tally::ingest::ChunkBuilder;
use tally::record::Defaults;
use tally::store::{RecordOutcome, Store, WriteBatch};
use tally::time::to_micros;

fn batch_of(text: &str, source: &str, defaults: Defaults) -> WriteBatch {
    let mut b = ChunkBuilder::new(source, defaults, to_micros(chrono::Utc::now()));
    for (i, line) in text.lines().enumerate() {
        b.push_line(i as u64 + 1, line.as_bytes());
    }
    b.take()
}

pub(crate) fn batch(text: &str) -> WriteBatch {
    batch_of(text, "test", Defaults::default())
}

pub(crate) fn statuses(outcomes: &[RecordOutcome]) -> Vec<&'static str> {
    outcomes
        .iter()
        .map(|o| match o {
            RecordOutcome::Recorded => "recorded",
            RecordOutcome::Duplicate => "duplicate",
            RecordOutcome::Conflict { .. } => "conflict",
        })
        .collect()
}

/// Rewrite one JSON line with a closure.
fn edit(line: &str, f: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
    f(&mut v);
    serde_json::to_string(&v).unwrap()
}

async fn stores_every_column_of_the_seed_record(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    let text = fixture("seed/code_execution.ndjson");
    let out = store.write(&batch(&text)).await.unwrap();
    assert_eq!(statuses(&out.records), ["recorded"]);

    let r = store
        .record("msg_01BqK2v4FnRs4xTjgL8EuZxz")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.account, "acme");
    assert_eq!(r.kind, "message");
    assert_eq!(r.model.as_deref(), Some("claude-opus-4-20250514"));
    assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (45, 187));
    assert_eq!(
        r.container_id.as_deref(),
        Some("container_011CPR5CNjB747bTd36fQLFk")
    );
    assert!(r.uses_code_execution);
    assert!(!r.files_preloaded);
    assert!(!r.batch);
    // 2025-05-23T20:13:31Z and 20:12:02Z in microseconds.
    assert_eq!(r.recorded_at, 1_748_031_211_000_000);
    assert_eq!(r.started_at, Some(1_748_031_122_000_000));
    // The raw line is kept byte for byte.
    assert_eq!(r.raw, text.trim_end());
}

async fn same_record_twice_is_a_duplicate_stored_once(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    let text = fixture("sample.ndjson");
    let first = store.write(&batch(&text)).await.unwrap();
    assert!(first.records.iter().all(|o| *o == RecordOutcome::Recorded));
    let n = first.records.len() as i64;
    let second = store.write(&batch(&text)).await.unwrap();
    assert!(
        second
            .records
            .iter()
            .all(|o| *o == RecordOutcome::Duplicate)
    );
    assert_eq!(store.counts().await.unwrap().records, n);

    // A retry with another recorded_at and reordered keys is still a duplicate,
    // and the first envelope stands.
    let line = fixture("seed/code_execution.ndjson");
    let retry = edit(&line, |v| {
        v["recorded_at"] = "2025-05-23T23:59:59+02:00".into();
        let resp = v["response"].take();
        let mut reordered = serde_json::Map::new();
        for (k, val) in resp.as_object().unwrap().iter().rev() {
            reordered.insert(k.clone(), val.clone());
        }
        v["response"] = serde_json::Value::Object(reordered);
    });
    let out = store.write(&batch(&retry)).await.unwrap();
    assert_eq!(statuses(&out.records), ["duplicate"]);
    let r = store
        .record("msg_01BqK2v4FnRs4xTjgL8EuZxz")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.recorded_at, 1_748_031_211_000_000);
    assert_eq!(store.counts().await.unwrap().records, n);
}

async fn same_id_with_other_body_or_account_is_a_quarantined_conflict(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    let line = fixture("seed/code_execution.ndjson");
    store.write(&batch(&line)).await.unwrap();

    let other_body = edit(&line, |v| {
        v["response"]["usage"]["output_tokens"] = 999.into()
    });
    // (Without its container, so the id rule, not the container rule, decides.)
    let other_account = edit(&line, |v| {
        v["account"] = "globex".into();
        v["response"]["container"] = serde_json::Value::Null;
    });
    let out = store
        .write(&batch(&format!("{other_body}\n{other_account}")))
        .await
        .unwrap();
    assert_eq!(statuses(&out.records), ["conflict", "conflict"]);
    let RecordOutcome::Conflict {
        message,
        rejected_id,
    } = &out.records[0]
    else {
        unreachable!()
    };
    assert!(message.contains("different response body"), "{message}");
    let quarantined = store.rejected_get(*rejected_id).await.unwrap().unwrap();
    assert_eq!(quarantined.reason, "conflict");
    assert_eq!(quarantined.raw, other_body);
    let RecordOutcome::Conflict { message, .. } = &out.records[1] else {
        unreachable!()
    };
    assert!(message.contains("under account \"acme\""), "{message}");

    // The stored record is untouched.
    let r = store
        .record("msg_01BqK2v4FnRs4xTjgL8EuZxz")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.account.as_str(), r.usage.output_tokens), ("acme", 187));
    assert_eq!(store.counts().await.unwrap().records, 1);
}

async fn a_container_belongs_to_one_account(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    let line = fixture("seed/code_execution.ndjson");
    store.write(&batch(&line)).await.unwrap();

    // A new response id in acme's container, under another account: conflict.
    let stolen = edit(&line, |v| {
        v["account"] = "globex".into();
        v["response"]["id"] = "msg_other".into();
    });
    let out = store.write(&batch(&stolen)).await.unwrap();
    assert_eq!(statuses(&out.records), ["conflict"]);
    let RecordOutcome::Conflict { message, .. } = &out.records[0] else {
        unreachable!()
    };
    assert!(
        message.contains("container_011CPR5CNjB747bTd36fQLFk"),
        "{message}"
    );

    // The same container reused by its own account is fine.
    let reuse = fixture("seed/container_reuse.ndjson");
    let out = store.write(&batch(&reuse)).await.unwrap();
    assert_eq!(statuses(&out.records), ["recorded", "recorded"]);
    assert_eq!(store.counts().await.unwrap().containers, 1);
}

async fn a_conflicting_record_never_claims_a_container(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    let line = fixture("seed/code_execution.ndjson");
    store.write(&batch(&line)).await.unwrap();
    // Same id under another account, naming a brand-new container: the record
    // is a conflict, so the container must stay free for its real owner.
    let conflicting = edit(&line, |v| {
        v["account"] = "globex".into();
        v["response"]["container"]["id"] = "container_new".into();
    });
    let out = store.write(&batch(&conflicting)).await.unwrap();
    assert_eq!(statuses(&out.records), ["conflict"]);
    let rightful = edit(&line, |v| {
        v["account"] = "initech".into();
        v["response"]["id"] = "msg_initech".into();
        v["response"]["container"]["id"] = "container_new".into();
    });
    let out = store.write(&batch(&rightful)).await.unwrap();
    assert_eq!(statuses(&out.records), ["recorded"]);
}

async fn repeats_inside_one_batch_are_judged_like_repeats_across_batches(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    let line = fixture("seed/code_execution.ndjson");
    let changed = edit(&line, |v| {
        v["response"]["usage"]["input_tokens"] = 46.into()
    });
    let other_account = edit(&line, |v| {
        v["account"] = "globex".into();
        v["response"]["id"] = "msg_globex".into();
    });
    let text = [line.trim_end(), line.trim_end(), &changed, &other_account].join("\n");
    let out = store.write(&batch(&text)).await.unwrap();
    // First stored; exact repeat duplicate; other body conflict; globex in acme's container conflict.
    assert_eq!(
        statuses(&out.records),
        ["recorded", "duplicate", "conflict", "conflict"]
    );
    assert_eq!(store.counts().await.unwrap().records, 1);
}

async fn batch_results_without_a_message_are_kept_once_and_never_duplicated(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    let text = fixture("batch_results.ndjson");
    let defaults = Defaults {
        account: Some("acme".into()),
        recorded_at: None,
        oldest: None,
    };
    let first = store
        .write(&batch_of(&text, "results", defaults.clone()))
        .await
        .unwrap();
    assert_eq!(statuses(&first.records), ["recorded"; 5]);
    let second = store
        .write(&batch_of(&text, "results", defaults))
        .await
        .unwrap();
    assert_eq!(statuses(&second.records), ["duplicate"; 5]);
    assert_eq!(store.counts().await.unwrap().records, 5);
    let r = store
        .record("msg_01BatchResult000000000000001")
        .await
        .unwrap()
        .unwrap();
    assert!(r.batch);
    assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (1200, 300));

    // The same errored result under another account is another record.
    let globex = Defaults {
        account: Some("globex".into()),
        recorded_at: None,
        oldest: None,
    };
    let errored = text.lines().nth(2).unwrap();
    let out = store
        .write(&batch_of(errored, "results", globex))
        .await
        .unwrap();
    assert_eq!(statuses(&out.records), ["recorded"]);
}

async fn rejected_lines_are_kept_and_counted_once_per_content(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    let bad = fixture("seed/trailing_comma.ndjson");
    let good = fixture("seed/files_preloaded.ndjson");
    let text = format!("{}\n{}", bad.trim_end(), good.trim_end());
    let out = store.write(&batch(&text)).await.unwrap();
    assert_eq!(statuses(&out.records), ["recorded"]);
    assert_eq!(out.rejections.len(), 1);
    let again = store.write(&batch(&text)).await.unwrap();
    assert_eq!(
        again.rejections, out.rejections,
        "same bad line, same entry"
    );

    let entry = store
        .rejected_get(out.rejections[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.occurrences, 2);
    assert_eq!(entry.reason, "malformed");
    assert_eq!((entry.line, entry.column), (Some(1), Some(1264)));
    assert_eq!(entry.raw_bytes, bad.trim_end().as_bytes());
    let listed = store.rejected_list(false, 100).await.unwrap();
    assert_eq!(listed.len(), 1);

    store.rejected_mark_retried(entry.id).await.unwrap();
    assert!(store.rejected_list(false, 100).await.unwrap().is_empty());
    assert_eq!(store.rejected_list(true, 100).await.unwrap().len(), 1);
}

async fn iterations_and_stream_usage_are_stored(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    let streamed = fixture("streamed.ndjson");
    let with_iterations = edit(&fixture("seed/files_preloaded.ndjson"), |v| {
        v["response"]["id"] = "msg_iter".into();
        v["response"]["container"] = serde_json::Value::Null;
        v["response"]["usage"]["iterations"] = serde_json::json!([
            {"type": "message", "input_tokens": 1520, "output_tokens": 28},
            {"type": "advisor_message", "model": "claude-opus-4-6", "input_tokens": 900, "output_tokens": 120},
            {"type": "compaction", "input_tokens": 5000, "output_tokens": 400}
        ]);
    });
    let out = store
        .write(&batch(&format!(
            "{}\n{with_iterations}",
            streamed.trim_end()
        )))
        .await
        .unwrap();
    assert_eq!(statuses(&out.records), ["recorded", "recorded"]);
    let s = store
        .record("msg_01StreamedWebSearch00000001")
        .await
        .unwrap()
        .unwrap();
    // Last message_delta wins (cumulative), never the sum of deltas.
    assert_eq!(
        (
            s.usage.input_tokens,
            s.usage.output_tokens,
            s.usage.web_search_requests
        ),
        (10682, 510, 1)
    );
    let it = store.record("msg_iter").await.unwrap().unwrap();
    assert_eq!(
        it.iterations, 2,
        "the `message` iteration is in the top-level counters"
    );
    assert!(
        it.files_preloaded,
        "derived from the container_upload block"
    );
}

/// Many writers (separate connection pools, like separate processes) send
/// the same records at the same moment: each record is stored exactly once.
async fn concurrent_writers_store_each_record_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut text = Vec::new();
    tally::synth::write_ndjson(&mut text, 400, 7).unwrap();
    let text = String::from_utf8(text).unwrap();
    let expected_records = text.lines().count() as i64;

    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..4 {
        stores.push(db.store().await);
    }
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = stores[i % stores.len()].clone();
        // Every task sends every record, in its own order and chunking.
        let mut lines: Vec<&str> = text.lines().collect();
        if i % 2 == 1 {
            lines.reverse();
        }
        let chunks: Vec<String> = lines.chunks(50 + i * 7).map(|c| c.join("\n")).collect();
        tasks.push(tokio::spawn(async move {
            let mut recorded = 0;
            for chunk in chunks {
                let out = store.write(&batch(&chunk)).await.unwrap();
                for o in out.records {
                    match o {
                        RecordOutcome::Recorded => recorded += 1,
                        RecordOutcome::Duplicate => {}
                        RecordOutcome::Conflict { message, .. } => {
                            panic!("unexpected conflict: {message}")
                        }
                    }
                }
            }
            recorded
        }));
    }
    let mut recorded = 0;
    for t in tasks {
        recorded += t.await.unwrap();
    }
    assert_eq!(
        recorded, expected_records,
        "each record acknowledged as new exactly once"
    );
    assert_eq!(stores[0].counts().await.unwrap().records, expected_records);
}

on_both_backends!(
    stores_every_column_of_the_seed_record,
    same_record_twice_is_a_duplicate_stored_once,
    same_id_with_other_body_or_account_is_a_quarantined_conflict,
    a_container_belongs_to_one_account,
    a_conflicting_record_never_claims_a_container,
    repeats_inside_one_batch_are_judged_like_repeats_across_batches,
    batch_results_without_a_message_are_kept_once_and_never_duplicated,
    rejected_lines_are_kept_and_counted_once_per_content,
    iterations_and_stream_usage_are_stored,
    concurrent_writers_store_each_record_once,
);

#[test]
fn migration_folders_have_the_same_versions() {
    let list = |dir: &str| {
        let mut v: Vec<String> = std::fs::read_dir(
            crate::support::fixture_path("..")
                .join("migrations")
                .join(dir),
        )
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
        v.sort();
        v
    };
    let sqlite = list("sqlite");
    assert_eq!(sqlite, list("postgres"));
    let versions: Vec<i64> = sqlite
        .iter()
        .map(|f| f.split('_').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(versions, tally::store::migrations::versions());
}

/// A real store whose writes of batches holding `slow_key` take a while, so
/// a later batch would overtake them if the committer let it.
struct SlowFor {
    inner: Arc<dyn Store>,
    slow_key: String,
}

#[async_trait::async_trait]
impl tally::ingest::pipeline::BatchWriter for SlowFor {
    fn max_parallel_writes(&self) -> usize {
        4
    }
    async fn write(&self, batch: &WriteBatch) -> tally::store::Result<tally::store::WriteOutcome> {
        if batch.records.iter().any(|r| r.key == self.slow_key) && batch.records.len() > 1 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        self.inner.write(batch).await
    }
}

async fn ordered_committer_never_lets_a_later_chunk_overtake(backend: Backend) {
    let db = TestDb::new(backend).await;
    let seed = fixture("seed/code_execution.ndjson");
    let key = "msg_01BqK2v4FnRs4xTjgL8EuZxz";
    let store = db.store().await;
    let slow = Arc::new(SlowFor {
        inner: store.clone(),
        slow_key: key.into(),
    });
    let first = format!(
        "{}\n{}",
        seed.trim_end(),
        fixture("seed/files_preloaded.ndjson").trim_end()
    );
    let later = edit(&seed, |v| v["recorded_at"] = "2025-06-01T00:00:00Z".into());

    let mut committer = tally::ingest::pipeline::OrderedCommitter::new(slow);
    let mut order = Vec::new();
    let mut on_done = |b: WriteBatch, o: tally::store::WriteOutcome, tag: u64| {
        order.push((tag, b.records.len(), statuses(&o.records)))
    };
    committer
        .submit(batch(&first), 1, &mut on_done)
        .await
        .unwrap();
    committer
        .submit(batch(&later), 2, &mut on_done)
        .await
        .unwrap();
    committer.finish(&mut on_done).await.unwrap();

    assert_eq!(
        order,
        [
            (1, 2, vec!["recorded", "recorded"]),
            (2, 1, vec!["duplicate"])
        ]
    );
    let r = store.record(key).await.unwrap().unwrap();
    assert_eq!(
        r.recorded_at, 1_748_031_211_000_000,
        "the first envelope stands"
    );
}

mod ordering {
    use super::*;
    on_both_backends!(ordered_committer_never_lets_a_later_chunk_overtake);
}

/// A ledger created before the usage roll-up (migrations 1–4) gets its
/// roll-up backfilled by migration 5: invoices from the roll-up then match
/// invoices from the records.
async fn rollup_backfill_matches_the_records(backend: Backend) {
    let db = TestDb::new(backend).await;
    let records = "insert into records (record_key, account, kind, message_id, custom_id, model, recorded_at, \
        started_at, batch, files_preloaded, uses_code_execution, web_tools_20260209, container_id, input_tokens, \
        output_tokens, cache_creation_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, \
        web_search_requests, web_fetch_requests, code_execution_requests, service_tier, inference_geo, speed, \
        content_hash, source, source_line, ingested_at) values \
        ('m1', 'acme', 'message', 'm1', null, 'claude-sonnet-4-5-20250929', 1759399200000000, null, false, false, false, false, null, 150000, 1000, 0, 0, 0, 60000, 2, 0, 0, null, null, null, 'h1', 't', 1, 0), \
        ('m2', 'acme', 'message', 'm2', null, 'claude-haiku-4-5-20251001', 1761000000000000, null, true, false, false, false, null, 1200, 300, 0, 0, 0, 0, 0, 0, 0, null, null, null, 'h2', 't', 2, 0), \
        ('b1', 'acme', 'batch_errored', null, 'c1', null, 1761000000000000, null, true, false, false, false, null, 0, 0, 0, 0, 0, 0, 0, 0, 0, null, null, null, 'h3', 't', 3, 0)";
    let iteration = "insert into record_iterations (seq, position, kind, model, input_tokens, output_tokens, \
        cache_creation_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, web_search_requests) \
        select seq, 0, 'advisor_message', 'claude-opus-4-1-20250805', 2000, 200, 0, 0, 0, 0, 0 from records where record_key = 'm1'";
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rwc", db.url))
                .await
                .unwrap();
            tally::store::migrations::until(tally::store::Backend::Sqlite, 4)
                .run(&pool)
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(
                records.replace("false", "0").replace("true", "1"),
            ))
            .execute(&pool)
            .await
            .unwrap();
            sqlx::raw_sql(iteration).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            tally::store::migrations::until(tally::store::Backend::Postgres, 4)
                .run(&pool)
                .await
                .unwrap();
            sqlx::raw_sql(records).execute(&pool).await.unwrap();
            sqlx::raw_sql(iteration).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
    let store = db.store().await; // applies migration 5 and its backfill
    let book = tally::pricing::PriceBook::shipped();
    let period = tally::billing::Period::parse("2025-10").unwrap();
    let now = tally::billing::draft_as_of(
        store.as_ref(),
        &book,
        "acme",
        period,
        tally::billing::Cutoff::Now(i64::MAX),
    )
    .await
    .unwrap();
    let raw = tally::billing::draft_as_of(
        store.as_ref(),
        &book,
        "acme",
        period,
        tally::billing::Cutoff::AsOf(i64::MAX),
    )
    .await
    .unwrap();
    assert_eq!(
        tally::billing::render::json(&now),
        tally::billing::render::json(&raw)
    );
    assert_eq!(now.records, 3);
    // m1 is long context (150,000 + 60,000 > 200,000): 150,000 × $6/MTok = $0.90.
    assert!(
        now.lines
            .iter()
            .any(|l| l.long_context && l.amount_exact == "0.9".parse().unwrap()),
        "{:#?}",
        now.lines
    );
    // The advisor iteration at Opus 4.1: 2,000 × $15/MTok = $0.03.
    assert!(
        now.lines
            .iter()
            .any(|l| l.model.as_deref() == Some("claude-opus-4-1-20250805")
                && l.amount_exact == "0.03".parse().unwrap())
    );
}

mod upgrades {
    use super::*;
    on_both_backends!(rollup_backfill_matches_the_records);
}

/// Container lines of account `acme` in March 2026: `(id, container, started
/// seconds, recorded seconds, web tools)`, seconds after 2026-03-02T00:00Z;
/// `None` start = files preloaded, no tool run.
const CONTAINER_LINES: [(&str, &str, Option<i64>, i64, bool); 8] = [
    // c-a, in order: [0, 100] ∪ [50, 200] ∪ [1000, 1400] (twice) = 600 s.
    ("m-a1", "c-a", Some(0), 100, false),
    ("m-a2", "c-a", Some(50), 200, false),
    ("m-a3", "c-a", Some(1000), 1400, false),
    ("m-a4", "c-a", Some(1000), 1400, false),
    // c-b, out of order: [1000, 1100] then [0, 50] = 150 s, billed 300 s.
    ("m-b1", "c-b", Some(1000), 1100, false),
    ("m-b2", "c-b", Some(0), 50, false),
    // c-c: files preloaded, the tool never ran: the 300 s minimum.
    ("m-c1", "c-c", None, 10, false),
    // c-d: web tools of 20260209 make code execution free from 2026-02-17.
    ("m-d1", "c-d", Some(0), 4000, true),
];

fn container_line(
    (id, container, started, recorded, web): (&str, &str, Option<i64>, i64, bool),
) -> String {
    let at = |s: i64| {
        (chrono::DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z").unwrap()
            + chrono::Duration::seconds(s))
        .to_rfc3339()
    };
    edit(fixture("seed/code_execution.ndjson").trim(), |v| {
        v["response"]["id"] = id.into();
        v["response"]["model"] = "claude-sonnet-4-5-20250929".into();
        v["response"]["container"]["id"] = container.into();
        v["recorded_at"] = at(recorded).into();
        match started {
            Some(s) => v["started_at"] = at(s).into(),
            None => {
                v.as_object_mut().unwrap().remove("started_at");
                v["response"]["content"] = serde_json::json!([{"type": "text", "text": "ok"}]);
                v["request"]["messages"] = serde_json::json!([{"role": "user", "content": [
                    {"type": "container_upload", "file_id": "file_1"}]}]);
            }
        }
        if web {
            v["request"]["tools"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"type": "web_search_20260209", "name": "web_search"}));
        }
    })
}

/// What March 2026's container bill must hold, from the roll-up and from the records alike.
async fn assert_container_bill(store: &dyn Store) {
    let book = tally::pricing::PriceBook::shipped();
    let period = tally::billing::Period::parse("2026-03").unwrap();
    let bill = |rollup| {
        tally::billing::container_bill(store, &book, period, crate::support::whole_ledger(rollup))
    };
    let (rolled, records) = (bill(true).await.unwrap(), bill(false).await.unwrap());
    assert_eq!(rolled.containers, records.containers);
    assert_eq!(rolled.credits, records.credits);
    let [day] = rolled.containers.as_slice() else {
        panic!("one account-day: {:#?}", rolled.containers)
    };
    assert_eq!((day.containers, day.execution_seconds), (3, 750));
    assert_eq!(day.billed_seconds, 600 + 300 + 300);
}

/// A price book whose minimum is not the 300 s the roll-up counts apart is
/// billed from the records, and still equal: at a 60 s minimum, c-a 600 s,
/// c-b 150 s, c-c 60 s.
async fn other_minimums_are_billed_from_the_records(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    let lines: Vec<String> = CONTAINER_LINES.into_iter().map(container_line).collect();
    store.write(&batch(&lines.join("\n"))).await.unwrap();
    let text = tally::pricing::SHIPPED.replace(
        "container_minimum_seconds = 300",
        "container_minimum_seconds = 60",
    );
    assert_ne!(text, tally::pricing::SHIPPED);
    let book = tally::pricing::PriceBook::parse(&text).unwrap();
    let period = tally::billing::Period::parse("2026-03").unwrap();
    let bill = |rollup| {
        tally::billing::container_bill(
            store.as_ref(),
            &book,
            period,
            crate::support::whole_ledger(rollup),
        )
    };
    let (rolled, records) = (bill(true).await.unwrap(), bill(false).await.unwrap());
    assert_eq!(rolled.containers, records.containers);
    assert_eq!(rolled.containers[0].billed_seconds, 600 + 150 + 60);
}

/// The container roll-up kept at ingest bills what the records bill: in
/// order, out of order, files only, web tools; one line at a time or all at once.
async fn container_rollup_matches_the_records(backend: Backend) {
    for one_by_one in [true, false] {
        let (_db, store) = TestDb::with_store(backend).await;
        let lines: Vec<String> = CONTAINER_LINES.into_iter().map(container_line).collect();
        if one_by_one {
            for l in &lines {
                store.write(&batch(l)).await.unwrap();
            }
        } else {
            store.write(&batch(&lines.join("\n"))).await.unwrap();
        }
        assert_container_bill(store.as_ref()).await;
    }
}

/// A ledger written before the container roll-up (migrations 1–8) gets it
/// backfilled by migrations 9 and 10, equal to what the records bill.
async fn container_rollup_backfill_matches_the_records(backend: Backend) {
    ledger_at_migration(backend, 8, "").await;
}

/// A ledger of migration 9 whose containers all went inexact (records out of
/// order, as that version could not merge them) is recomputed by migration
/// 10: every container but the web-tools one is exact again, and the day sums
/// bill what the records bill.
async fn container_spans_backfill_makes_containers_exact(backend: Backend) {
    let db = ledger_at_migration(
        backend,
        9,
        "update containers set exact = 0; delete from container_days;",
    )
    .await;
    let inexact: i64 = match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query_scalar("select count(*) from containers where exact = 0")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query_scalar("select count(*) from containers where exact = 0")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(inexact, 1, "only the web-tools container reads its records");
}

/// Build a ledger of `CONTAINER_LINES` as it was at migration `at` (records
/// and container claims copied from one written today), run `then` on it,
/// migrate it to today, and check its container bill.
async fn ledger_at_migration(backend: Backend, at: i64, then: &str) -> TestDb {
    let db = TestDb::new(backend).await;
    // Write the lines with today's schema, then rebuild the ledger as it was
    // at migration 8 from a copy of its records and container claims.
    let (staging, store) = TestDb::with_store(backend).await;
    let lines: Vec<String> = CONTAINER_LINES.into_iter().map(container_line).collect();
    store.write(&batch(&lines.join("\n"))).await.unwrap();
    let columns = "record_key, account, kind, message_id, custom_id, model, recorded_at, started_at, batch, \
        files_preloaded, uses_code_execution, web_tools_20260209, container_id, input_tokens, output_tokens, \
        cache_creation_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens, \
        web_search_requests, web_fetch_requests, code_execution_requests, service_tier, inference_geo, speed, \
        content_hash, source, source_line, ingested_at";
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rwc", db.url))
                .await
                .unwrap();
            tally::store::migrations::until(tally::store::Backend::Sqlite, at)
                .run(&pool)
                .await
                .unwrap();
            let staged = staging.url.trim_start_matches("sqlite://").to_owned();
            let mut conn = pool.acquire().await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "attach database '{staged}' as staged; \
                 insert into records ({columns}) select {columns} from staged.records; \
                 insert into containers (container_id, account) select container_id, account from staged.containers; \
                 {then}"
            )))
            .execute(&mut *conn)
            .await
            .unwrap();
            drop(conn);
            pool.close().await;
        }
        Backend::Postgres => {
            let from = sqlx::PgPool::connect(&staging.url).await.unwrap();
            let rows: Vec<(String, String)> =
                sqlx::query_as("select record_key, account from records order by seq")
                    .fetch_all(&from)
                    .await
                    .unwrap();
            assert_eq!(rows.len(), CONTAINER_LINES.len());
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            tally::store::migrations::until(tally::store::Backend::Postgres, at)
                .run(&pool)
                .await
                .unwrap();
            // Same server: copy through a dblink-free route, row by row as JSON.
            let records: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "select row_to_json(t)::text from (select {columns} from records order by seq) t"
            )))
            .fetch_all(&from)
            .await
            .unwrap();
            for (r,) in records {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "insert into records ({columns}) select {columns} from json_populate_record(null::records, $1::json)"
                )))
                .bind(r)
                .execute(&pool)
                .await
                .unwrap();
            }
            sqlx::query("insert into containers (container_id, account) select distinct container_id, account from records where container_id is not null")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(then.to_owned()))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            from.close().await;
        }
    }
    let store = db.store().await; // applies the later migrations and their backfills
    assert_container_bill(store.as_ref()).await;
    db
}

/// A record in `container`: `(id, account, runs code)`.
fn in_container(id: &str, account: &str, container: &str, runs_code: bool) -> String {
    edit(fixture("seed/code_execution.ndjson").trim(), |v| {
        v["response"]["id"] = id.into();
        v["account"] = account.into();
        v["response"]["container"]["id"] = container.into();
        if !runs_code {
            v["response"]["content"] = serde_json::json!([{"type": "text", "text": "ok"}]);
        }
    })
}

/// The first account to use a container owns it, even when that first
/// record adds no container time (no code run, no files preloaded).
async fn a_container_first_used_without_code_is_owned(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    let first = store
        .write(&batch(&in_container("m1", "acme", "c-1", false)))
        .await
        .unwrap();
    assert_eq!(statuses(&first.records), ["recorded"]);
    let second = store
        .write(&batch(&in_container("m2", "globex", "c-1", true)))
        .await
        .unwrap();
    assert_eq!(statuses(&second.records), ["conflict"]);
}

/// Inside one batch, the container goes to the account of the earliest line
/// naming it, whatever the response ids sort like.
async fn a_container_goes_to_the_earliest_line_of_a_batch(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    let lines = [
        in_container("msg_z", "globex", "c-9", true),
        in_container("msg_a", "acme", "c-9", true),
    ];
    let out = store.write(&batch(&lines.join("\n"))).await.unwrap();
    assert_eq!(statuses(&out.records), ["recorded", "conflict"]);
    assert_eq!(
        store.record("msg_z").await.unwrap().unwrap().account,
        "globex"
    );
}

mod container_owners {
    use super::*;
    on_both_backends!(
        a_container_first_used_without_code_is_owned,
        a_container_goes_to_the_earliest_line_of_a_batch
    );
}

mod container_rollup {
    use super::*;
    on_both_backends!(
        other_minimums_are_billed_from_the_records,
        container_rollup_matches_the_records,
        container_rollup_backfill_matches_the_records,
        container_spans_backfill_makes_containers_exact
    );
}

/// Wait (up to 5 s) until a session of this test's database waits on a lock.
async fn until_something_waits_on_a_lock(pool: &sqlx::PgPool) {
    for _ in 0..250 {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("nothing waited on a lock");
}

/// Write the seed record on a task of its own, as another writer would.
fn write_seed_meanwhile(
    store: &Arc<dyn Store>,
) -> tokio::task::JoinHandle<tally::store::Result<tally::store::WriteOutcome>> {
    let store = store.clone();
    tokio::spawn(async move {
        store
            .write(&batch(&fixture("seed/code_execution.ndjson")))
            .await
    })
}

/// Another writer claims a container for another account after this write
/// read the owners and before it locked them: the record that was inserted
/// meanwhile is taken out again and quarantined as a conflict, and the ledger
/// keeps the container's first owner. (PostgreSQL: the only backend with
/// concurrent writers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_container_claimed_meanwhile_undoes_the_record() {
    let (db, store) = TestDb::with_store(Backend::Postgres).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let container = "container_011CPR5CNjB747bTd36fQLFk";

    // Account `rival` claims the container in a transaction left open.
    let mut rival = pool.begin().await.unwrap();
    sqlx::query("insert into containers (container_id, account) values ($1, 'rival')")
        .bind(container)
        .execute(&mut *rival)
        .await
        .unwrap();

    // `acme` writes a record in that container: it reads no owner (the claim
    // is not committed), inserts the record, then waits on the claim's lock.
    let writer = write_seed_meanwhile(&store);
    until_something_waits_on_a_lock(&pool).await;
    rival.commit().await.unwrap();

    let out = writer.await.unwrap().unwrap();
    let RecordOutcome::Conflict {
        message,
        rejected_id,
    } = &out.records[0]
    else {
        panic!("expected a conflict: {:?}", out.records)
    };
    assert!(
        message.contains("already belongs to account \"rival\""),
        "{message}"
    );
    assert!(
        store
            .record("msg_01BqK2v4FnRs4xTjgL8EuZxz")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.rejected_get(*rejected_id).await.unwrap().is_some());
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.records, 0, "{counts:?}");
    let (rollup_rows, bodies): (i64, i64) = sqlx::query_as(
        "select (select count(*) from usage_rollup), (select count(*) from record_bodies)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((rollup_rows, bodies), (0, 0));
}

/// A finalizing cutoff waits for the writes in flight, and writes wait for
/// a cutoff being taken (PostgreSQL, where writers run concurrently): a record
/// numbered below a cutoff can never commit after it and be missed for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cutoffs_and_writes_exclude_each_other() {
    // The advisory lock of src/store/postgres.rs (WRITERS_LOCK).
    const WRITERS_LOCK: i64 = 0x7461_6c6c_7900;
    let (db, store) = TestDb::with_store(Backend::Postgres).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();

    // A writer in flight (holding the writers' lock shared): the cutoff waits.
    let mut writer = pool.begin().await.unwrap();
    sqlx::query("select pg_advisory_xact_lock_shared($1)")
        .bind(WRITERS_LOCK)
        .execute(&mut *writer)
        .await
        .unwrap();
    let cutoff = {
        let store = store.clone();
        tokio::spawn(async move { store.cutoff_seq().await })
    };
    until_something_waits_on_a_lock(&pool).await;
    assert!(!cutoff.is_finished());
    writer.commit().await.unwrap();
    assert_eq!(cutoff.await.unwrap().unwrap(), 0);

    // A cutoff being taken (the lock held exclusively): the write waits.
    let mut taking = pool.begin().await.unwrap();
    sqlx::query("select pg_advisory_xact_lock($1)")
        .bind(WRITERS_LOCK)
        .execute(&mut *taking)
        .await
        .unwrap();
    let write = write_seed_meanwhile(&store);
    until_something_waits_on_a_lock(&pool).await;
    assert!(!write.is_finished());
    taking.commit().await.unwrap();
    let out = write.await.unwrap().unwrap();
    assert_eq!(statuses(&out.records), ["recorded"]);
    assert!(store.cutoff_seq().await.unwrap() > 0);
}
