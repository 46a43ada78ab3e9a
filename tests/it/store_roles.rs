//! Every method of every `Store` role, called on both backends: what one
//! backend answers the other answers too. `every_store_method_is_called_here`
//! reads the role traits from `src/store/mod.rs`, so a method added there
//! without a call here fails the suite.

use rust_decimal::Decimal;
use std::str::FromStr;

use super::store_contract::{batch, statuses};
use crate::support::{Backend, TestDb, fixture};
use tally::record::Dimension;
use tally::store::{BudgetAlert, CreditAlert, CreditDraw, FrozenDocuments, StoreError, UsageQuery};
use tally::time::day_number;

fn usd(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// A seed file's records, each with a workspace and a `project` tag.
fn attributed(seed: &str) -> String {
    fixture(seed)
        .lines()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["workspace"] = "wrk_1".into();
            v["tags"] = serde_json::json!({"project": "search"});
            serde_json::to_string(&v).unwrap()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A query over the whole ledger as it stands.
fn everything(max_seq: i64, dims: Vec<Dimension>) -> UsageQuery {
    UsageQuery {
        account: None,
        from: 0,
        to: i64::MAX,
        max_seq,
        thresholds: Vec::new(),
        use_rollup: false,
        dims,
    }
}

/// Writes and usage reads: what was written is what every read sums.
async fn writes_and_usage_reads(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    let sqlite = matches!(store.backend(), tally::store::Backend::Sqlite);
    assert_eq!(sqlite, backend == Backend::Sqlite);
    assert!(store.max_parallel_writes() >= 1);
    assert!(store.chunk_lines() >= 1);
    store.migrate().await.unwrap(); // again: nothing to do, no error
    store.ping().await.unwrap();
    assert_eq!(store.max_seq().await.unwrap(), 0);
    assert!(!store.has_records("acme").await.unwrap());
    assert!(!store.any_tags().await.unwrap());
    let empty = store.figures_version().await.unwrap();

    // The first record of the seed's container, then the container's reuse.
    let seed = attributed("seed/code_execution.ndjson");
    let out = store.write(&batch(&seed)).await.unwrap();
    assert_eq!(statuses(&out.records), ["recorded"]);
    let out = store
        .write(&batch(&attributed("seed/container_reuse.ndjson")))
        .await
        .unwrap();
    assert!(statuses(&out.records).iter().all(|s| *s == "recorded"));
    let written = 1 + out.records.len() as i64;

    let max_seq = store.max_seq().await.unwrap();
    assert!(max_seq >= written);
    assert!(store.cutoff_seq().await.unwrap() >= max_seq);
    assert_eq!(store.counts().await.unwrap().records, written);
    assert!(store.has_records("acme").await.unwrap());
    assert!(store.any_tags().await.unwrap());
    let after = store.figures_version().await.unwrap();
    assert_eq!(after.max_seq, max_seq);
    assert_ne!(after, empty);
    let record = store
        .record("msg_01BqK2v4FnRs4xTjgL8EuZxz")
        .await
        .unwrap()
        .unwrap();
    let day = day_number(record.recorded_at);

    // The roll-up's days hold every record, and know the newest seq.
    let days = store.account_days().await.unwrap();
    assert_eq!(days.iter().map(|(_, _, n)| n).sum::<i64>(), written);
    assert!(days.iter().all(|(a, _, _)| a == "acme"));
    assert_eq!(
        store.newest_seq_in_days(day, day + 1).await.unwrap(),
        max_seq
    );
    assert_eq!(store.newest_seq_in_days(0, 1).await.unwrap(), 0);

    // Usage by rate key, from the records and from the roll-up, agree.
    let q = everything(max_seq, Vec::new());
    let from_records = store.usage_groups(&q).await.unwrap();
    assert_eq!(from_records.iter().map(|g| g.records).sum::<i64>(), written);
    let from_rollup = store
        .usage_groups(&UsageQuery {
            use_rollup: true,
            ..q.clone()
        })
        .await
        .unwrap();
    assert_eq!(from_rollup.iter().map(|g| g.records).sum::<i64>(), written);
    let counted = store.record_counts(&q).await.unwrap();
    assert_eq!(counted.iter().map(|(_, n)| n).sum::<i64>(), written);
    assert!(store.iteration_groups(&q).await.unwrap().is_empty());
    let by_tag = store
        .usage_groups(&everything(max_seq, vec![Dimension::Tag("project".into())]))
        .await
        .unwrap();
    let tagged: i64 = by_tag
        .iter()
        .filter(|g| g.values == [Some("search".to_owned())])
        .map(|g| g.records)
        .sum();
    assert_eq!(tagged, written);

    // Containers: the records, the day roll-up and the per-value roll-up.
    let dims = [Dimension::Workspace];
    let containers = store
        .container_records(0, i64::MAX, max_seq, &dims)
        .await
        .unwrap();
    assert!(!containers.is_empty());
    let rolled = store.container_days(day - 1, day + 2).await.unwrap();
    let by_workspace = store
        .container_dim_days(
            &Dimension::Workspace.rollup_name().unwrap(),
            day - 1,
            day + 2,
        )
        .await
        .unwrap();
    let inexact = store
        .inexact_container_records(0, i64::MAX, &dims)
        .await
        .unwrap();
    let exact: i64 = rolled.iter().map(|r| r.containers).sum();
    assert!(exact >= 1, "{rolled:?}");
    // Every record carries workspace wrk_1; each container is
    // either in the roll-up exactly or listed among the inexact ones.
    let in_wrk_1: i64 = by_workspace
        .iter()
        .filter(|r| r.dim_value == "wrk_1")
        .map(|r| r.sums.containers)
        .sum();
    assert_eq!(in_wrk_1, exact, "{by_workspace:?}");
    let distinct = |records: &[tally::store::ContainerRecord]| {
        let ids: std::collections::BTreeSet<&str> =
            records.iter().map(|r| r.container_id.as_str()).collect();
        ids.len() as i64
    };
    assert_eq!(exact + distinct(&inexact), distinct(&containers));
    store.compact_rollups().await.unwrap();
    let folded = UsageQuery {
        use_rollup: true,
        ..q
    };
    let folded = store.usage_groups(&folded).await.unwrap();
    assert_eq!(folded.iter().map(|g| g.records).sum::<i64>(), written);
}

/// Rejected lines: kept with their reason, listed, read, marked retried.
async fn rejected_lines(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    store
        .write(&batch("{\"not\": \"a record\"}"))
        .await
        .unwrap();
    let open = store.rejected_list(false, 10).await.unwrap();
    assert_eq!(open.len(), 1);
    let id = open[0].id;
    assert_eq!(store.rejected_get(id).await.unwrap().unwrap().id, id);
    assert!(store.rejected_get(id + 1000).await.unwrap().is_none());
    store.rejected_mark_retried(id).await.unwrap();
    assert!(store.rejected_list(false, 10).await.unwrap().is_empty());
    assert_eq!(
        store.rejected_list(true, 10).await.unwrap()[0].status,
        "retried"
    );
}

fn documents_for(number: &str) -> FrozenDocuments {
    FrozenDocuments {
        json: format!("{{\"number\": \"{number}\"}}"),
        csv: format!("number\n{number}\n"),
        html: format!("<p>{number}</p>"),
        pdf: number.as_bytes().to_vec(),
    }
}

/// Invoices: finalized once, numbered, listed, their event delivered once.
async fn invoices_and_their_events(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    store
        .write(&batch(&fixture("seed/code_execution.ndjson")))
        .await
        .unwrap();
    let cutoff = store.cutoff_seq().await.unwrap();
    assert_eq!(store.finalized_count().await.unwrap(), 0);
    let f = store
        .finalize("acme", "2025-05", cutoff, &[], &documents_for)
        .await
        .unwrap();
    assert_eq!((f.account.as_str(), f.period.as_str()), ("acme", "2025-05"));
    assert_eq!(f.json, documents_for(&f.number).json);
    // Finalizing again returns the invoice there is.
    let again = store
        .finalize("acme", "2025-05", cutoff, &[], &documents_for)
        .await
        .unwrap();
    assert_eq!(again.number, f.number);
    assert_eq!(store.finalized_count().await.unwrap(), 1);
    assert_eq!(
        store.finalized_periods("acme").await.unwrap(),
        [("2025-05".to_owned(), cutoff)]
    );
    assert_eq!(
        store.finalized_accounts_before("2025-06").await.unwrap(),
        ["acme"]
    );
    assert!(
        store
            .finalized_accounts_before("2025-05")
            .await
            .unwrap()
            .is_empty()
    );
    let refs = store.finalized_in_period("2025-05").await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].number, f.number);

    store
        .keep_documents("acme", "2025-05", "<p>again</p>", b"%PDF")
        .await
        .unwrap();
    let kept = store
        .finalized_invoice("acme", "2025-05")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.json, f.json);
    assert!(kept.html.is_some() && kept.pdf.is_some());

    // One claim at a time; a delivered event is gone for good.
    let event = ("acme".to_owned(), "2025-05".to_owned());
    assert_eq!(store.undelivered_invoice_events().await.unwrap(), [event]);
    let claim = |token: &'static str| {
        let store = store.clone();
        async move {
            store
                .claim_invoice_event("acme", "2025-05", token, 60_000_000)
                .await
                .unwrap()
        }
    };
    assert!(claim("a").await);
    assert!(!claim("b").await);
    store
        .settle_invoice_event("acme", "2025-05", "a", false)
        .await
        .unwrap();
    assert!(claim("b").await);
    store
        .settle_invoice_event("acme", "2025-05", "b", true)
        .await
        .unwrap();
    assert!(store.undelivered_invoice_events().await.unwrap().is_empty());
    assert!(!claim("c").await);
}

/// Budgets and their alerts: an alert is recorded once and delivered once.
async fn budgets_and_alerts(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    store.set_budget("acme", usd("500.00")).await.unwrap();
    store.set_budget("acme", usd("600")).await.unwrap();
    let budgets = store.budgets().await.unwrap();
    assert_eq!(budgets.len(), 1);
    assert_eq!(budgets[0].monthly_usd, usd("600"));
    let alert = BudgetAlert {
        account: "acme".into(),
        period: "2026-11".into(),
        threshold: 80,
        spend_usd: usd("481.20"),
        budget_usd: usd("600"),
        crossed_at: 1_000,
        delivered_at: None,
    };
    assert!(store.record_alert(&alert).await.unwrap());
    assert!(!store.record_alert(&alert).await.unwrap());
    assert_eq!(
        store.alerts(Some("2026-11"), true).await.unwrap(),
        std::slice::from_ref(&alert)
    );
    assert!(
        store
            .alerts(Some("2026-10"), false)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .mark_alert_delivered("acme", "2026-11", 80)
        .await
        .unwrap();
    assert!(store.alerts(None, true).await.unwrap().is_empty());
    assert!(
        store.alerts(None, false).await.unwrap()[0]
            .delivered_at
            .is_some()
    );
}

/// Price books: the newest import is the one in force.
async fn price_books(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    assert!(store.price_book().await.unwrap().is_none());
    assert!(store.price_book_id().await.unwrap().is_none());
    let first = store.import_price_book("first", "# one").await.unwrap();
    let second = store.import_price_book("second", "# two").await.unwrap();
    assert!(second > first);
    assert_eq!(store.price_book_id().await.unwrap(), Some(second));
    let book = store.price_book().await.unwrap().unwrap();
    assert_eq!(
        (book.id, book.name.as_str(), book.toml.as_str()),
        (second, "second", "# two")
    );
}

/// Account keys and the proxy's key mappings: stored by hash only.
async fn keys(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    let id = store
        .create_key("acme", "tly_abcd", "hash-1")
        .await
        .unwrap();
    assert_eq!(
        store.key_account("hash-1").await.unwrap().as_deref(),
        Some("acme")
    );
    assert!(store.key_account("hash-2").await.unwrap().is_none());
    let listed = store.list_keys().await.unwrap();
    assert_eq!((listed[0].id, listed[0].prefix.as_str()), (id, "tly_abcd"));
    assert!(store.revoke_key(id).await.unwrap());
    assert!(!store.revoke_key(id).await.unwrap());
    assert!(store.key_account("hash-1").await.unwrap().is_none());
    assert!(store.list_keys().await.unwrap()[0].revoked_at.is_some());

    store.map_proxy_key("sha-1", "acme").await.unwrap();
    store.map_proxy_key("sha-1", "globex").await.unwrap(); // remapped
    assert_eq!(
        store.proxy_key_account("sha-1").await.unwrap().as_deref(),
        Some("globex")
    );
    assert_eq!(store.proxy_keys().await.unwrap().len(), 1);
    assert!(store.unmap_proxy_key("sha-1").await.unwrap());
    assert!(!store.unmap_proxy_key("sha-1").await.unwrap());
    assert!(store.proxy_key_account("sha-1").await.unwrap().is_none());
}

/// Plans: each one set is a version; the one in force at a time is found.
async fn plans(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    let before = store.plans_id().await.unwrap();
    assert!(store.plan("acme").await.unwrap().is_none());
    let first = store.set_plan("acme", "# first").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = store.set_plan("acme", "# second").await.unwrap();
    assert_ne!(store.plans_id().await.unwrap(), before);
    assert_eq!(store.plan("acme").await.unwrap().unwrap().toml, "# second");
    let at = tally::time::parse_rfc3339(&first.set_at).unwrap();
    assert_eq!(
        store.plan_as_of("acme", at).await.unwrap().unwrap().id,
        first.id
    );
    assert!(store.plan_as_of("acme", at - 1).await.unwrap().is_none());
    let all = store.plans().await.unwrap();
    assert_eq!(all.last().map(|p| p.id), Some(second.id));
}

/// Prepaid credit: grants, a draw taken at finalization, voids, alerts.
async fn credits(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    let grant = store
        .grant_credit("acme", usd("100.00"), None, Some("welcome"))
        .await
        .unwrap();
    let other = store
        .grant_credit(
            "globex",
            usd("5"),
            chrono::NaiveDate::from_ymd_opt(2030, 1, 1),
            None,
        )
        .await
        .unwrap();
    assert_eq!(store.credit_grants(None).await.unwrap().len(), 2);
    assert_eq!(
        store.credit_grants(Some("acme")).await.unwrap(),
        std::slice::from_ref(&grant)
    );

    let draw = CreditDraw {
        account: "acme".into(),
        period: "2025-05".into(),
        grant_id: grant.id,
        usd: usd("30.00"),
    };
    store
        .finalize(
            "acme",
            "2025-05",
            0,
            std::slice::from_ref(&draw),
            &documents_for,
        )
        .await
        .unwrap();
    assert_eq!(
        store.credit_draws(Some("acme")).await.unwrap(),
        std::slice::from_ref(&draw)
    );
    assert_eq!(store.credit_draws(None).await.unwrap().len(), 1);
    // A draw that no longer fits its grant changes nothing.
    let too_much = CreditDraw {
        period: "2025-06".into(),
        usd: usd("80.00"),
        ..draw
    };
    let refused = store
        .finalize("acme", "2025-06", 0, &[too_much], &documents_for)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Changed(_))),
        "{refused:?}"
    );
    assert_eq!(store.credit_draws(None).await.unwrap().len(), 1);

    let voided = store.void_credit(other.id).await.unwrap().unwrap();
    assert!(voided.voided_at.is_some());
    assert!(store.void_credit(other.id + 1000).await.unwrap().is_none());

    store.set_low_balance("acme", usd("10")).await.unwrap();
    assert_eq!(
        store.low_balance_thresholds().await.unwrap(),
        [("acme".to_owned(), usd("10"))]
    );
    let alert = CreditAlert {
        account: "acme".into(),
        funded_usd: usd("100.00"),
        threshold_usd: usd("10"),
        balance_usd: usd("9.50"),
        crossed_at: 1_000,
        delivered_at: None,
    };
    assert!(store.record_credit_alert(&alert).await.unwrap());
    assert!(!store.record_credit_alert(&alert).await.unwrap());
    assert_eq!(store.credit_alerts(true).await.unwrap().len(), 1);
    store
        .mark_credit_alert_delivered("acme", &alert.funded_usd.to_string())
        .await
        .unwrap();
    assert!(store.credit_alerts(true).await.unwrap().is_empty());
    assert_eq!(store.credit_alerts(false).await.unwrap().len(), 1);
}

/// Billing details: each one set is kept, the one in force at a time found.
async fn billing_details(backend: Backend) {
    let (_db, store) = TestDb::with_store(backend).await;
    assert!(
        store
            .details_as_of("acme", i64::MAX)
            .await
            .unwrap()
            .is_none()
    );
    store
        .set_details("acme", r#"{"name":"Acme"}"#)
        .await
        .unwrap();
    let first = store
        .details_as_of("acme", i64::MAX)
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store
        .set_details("acme", r#"{"name":"Acme Corp"}"#)
        .await
        .unwrap();
    let now = store
        .details_as_of("acme", i64::MAX)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.details, r#"{"name":"Acme Corp"}"#);
    let then = store
        .details_as_of("acme", first.set_at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(then.details, r#"{"name":"Acme"}"#);
    assert!(
        store
            .details_as_of("acme", first.set_at - 1)
            .await
            .unwrap()
            .is_none()
    );
}

on_both_backends!(
    writes_and_usage_reads,
    rejected_lines,
    invoices_and_their_events,
    budgets_and_alerts,
    price_books,
    keys,
    plans,
    credits,
    billing_details,
);

/// The guard: each method the role traits declare is called in this file.
#[test]
fn every_store_method_is_called_here() {
    let roles = std::fs::read_to_string("src/store/mod.rs").unwrap();
    let here = include_str!("store_roles.rs");
    let mut declared = Vec::new();
    // A role's methods are the trait items, indented once.
    for line in roles.lines() {
        let Some(rest) = line
            .strip_prefix("    async fn ")
            .or_else(|| line.strip_prefix("    fn "))
        else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        declared.push(name);
    }
    assert!(declared.len() >= 60, "read only {declared:?}");
    let uncalled: Vec<_> = declared
        .iter()
        .filter(|m| !here.contains(&format!(".{m}(")))
        .collect();
    assert!(
        uncalled.is_empty(),
        "Store methods no test calls on both backends: {uncalled:?}"
    );
}
