//! Billing details, tax and the `invoice.finalized` webhook (docs/invoices.md), on
//! both backends: the seller and bill-to blocks, a tax line on the total
//! after the minimum commitment and credit, reverse charge, snapshots that
//! later edits never change, and one webhook delivery per finalization
//! however many servers run.
//!
//! One Claude Sonnet 4 request of 200,000 input and 100,000 output tokens
//! costs $0.60 + $1.50 = $2.10.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::billing::{ingest, record};
use crate::support::{Backend, TestApp};

const SONNET: &str = "claude-sonnet-4-20250514";

fn request(account: &str, id: &str, at: &str) -> Value {
    record(
        account,
        id,
        SONNET,
        at,
        json!({"input_tokens": 200_000, "output_tokens": 100_000}),
    )
}

/// (charge, amount) of every line.
fn charges(invoice: &Value) -> Vec<(String, String)> {
    invoice["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["charge"].as_str().unwrap().to_owned(),
                l["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn c(charge: &str, amount: &str) -> (String, String) {
    (charge.to_owned(), amount.to_owned())
}

async fn invoices_carry_parties_and_tax(backend: Backend) {
    let app = TestApp::on(backend).account_key("acme").serve().await;
    ingest(
        &app.store,
        &[
            request("acme", "msg_acme_may", "2025-05-23T12:00:00Z"),
            request("acme", "msg_acme_jun", "2025-06-23T12:00:00Z"),
            request("beta", "msg_beta_may", "2025-05-23T12:00:00Z"),
            request("gamma", "msg_gamma_may", "2025-05-23T12:00:00Z"),
        ],
    )
    .await;
    let ok = |args: &[&str]| {
        let (code, out, err) = app.tally(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    ok(&[
        "org",
        "set",
        "--name",
        "Reseller Ltd",
        "--email",
        "billing@reseller.example",
        "--address",
        "1 Main Street\\nLondon",
        "--tax-id",
        "GB123456789",
    ]);
    ok(&[
        "accounts",
        "set",
        "acme",
        "--name",
        "Acme GmbH",
        "--tax-id",
        "DE987",
        "--tax-rate-percent",
        "20",
        "--tax-label",
        "VAT",
        "--terms-days",
        "14",
    ]);
    let (code, _, err) = app.tally(&["accounts", "set", "acme", "--email", "nobody"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("email \"nobody\" is not an email address"),
        "{err}"
    );
    let shown = ok(&["accounts", "show", "acme", "--json"]);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["tax_rate_percent"], "20");
    assert!(
        shown.get("email").is_none(),
        "a refused change changes nothing"
    );

    // The draft: both parties, and VAT 20 % of $2.10 = $0.42.
    let admin = app.admin();
    let may = admin.get_json("/v1/accounts/acme/invoices/2025-05").await;
    assert_eq!(may["seller"]["name"], "Reseller Ltd");
    assert_eq!(may["seller"]["address"], "1 Main Street\nLondon");
    assert_eq!(
        may["bill_to"],
        json!({"name": "Acme GmbH", "tax_id": "DE987"})
    );
    assert_eq!(
        charges(&may),
        [
            c("input_tokens", "0.60"),
            c("output_tokens", "1.50"),
            c("tax", "0.42")
        ]
    );
    let tax = may["lines"][2].clone();
    assert_eq!(tax["description"], "VAT 20% on 2.10");
    assert_eq!(
        (&tax["quantity"], &tax["unit_price"]),
        (&json!("2.10"), &json!("0.2"))
    );
    assert_eq!(may["total"], "2.52");
    assert!(may.get("issued_at").is_none(), "a draft is not issued");

    // Finalized: issued today, due in 14 days; frozen against later edits.
    let r = admin
        .post("/v1/accounts/acme/invoices/2025-05/finalize")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let frozen = admin.get_text("/v1/accounts/acme/invoices/2025-05").await;
    let doc: Value = serde_json::from_str(&frozen).unwrap();
    let today = chrono::Utc::now().date_naive();
    assert_eq!(doc["issued_at"], today.to_string());
    assert_eq!(doc["due_at"], (today + chrono::Days::new(14)).to_string());
    assert_eq!(doc["total"], "2.52");
    ok(&[
        "accounts",
        "set",
        "acme",
        "--name",
        "Acme AG",
        "--tax-rate-percent",
        "10",
    ]);
    ok(&["org", "set", "--name", "Reseller Two Ltd"]);
    assert_eq!(
        admin.get_text("/v1/accounts/acme/invoices/2025-05").await,
        frozen
    );
    let june = admin.get_json("/v1/accounts/acme/invoices/2025-06").await;
    assert_eq!(june["bill_to"]["name"], "Acme AG");
    assert_eq!(june["seller"]["name"], "Reseller Two Ltd");
    assert_eq!(charges(&june).last().unwrap(), &c("tax", "0.21")); // 10 % of $2.10
    // The finance views of May still show what was finalized: $2.52 in all.
    let focus = admin.get_text("/v1/exports/focus?period=2025-05").await;
    let billed: rust_decimal::Decimal = csv::Reader::from_reader(focus.as_bytes())
        .records()
        .map(|r| r.unwrap())
        .filter(|r| &r[1] == "acme")
        .map(|r| crate::billing::d(&r[0]))
        .sum();
    assert_eq!(billed, crate::billing::d("2.52"));

    // The views follow a change of details at once (they are cached): 19 %
    // of $2.10 = $0.399, $0.40.
    let beta_billed = |focus: &str| -> rust_decimal::Decimal {
        csv::Reader::from_reader(focus.as_bytes())
            .records()
            .map(|r| r.unwrap())
            .filter(|r| &r[1] == "beta")
            .map(|r| crate::billing::d(&r[0]))
            .sum()
    };
    let before = admin.get_text("/v1/exports/focus?period=2025-05").await;
    assert_eq!(beta_billed(&before), crate::billing::d("2.10"));
    let body = json!({"name": "Beta SARL", "tax_rate_percent": "19"});
    let r = admin
        .put("/v1/accounts/beta/details")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let after = admin.get_text("/v1/exports/focus?period=2025-05").await;
    assert_eq!(beta_billed(&after), crate::billing::d("2.50"));

    // Reverse charge: no tax line, and the note.
    let body = json!({"name": "Beta SARL", "tax_id": "FR111", "tax_rate_percent": "19",
        "reverse_charge": true});
    let r = admin
        .put("/v1/accounts/beta/details")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let beta = admin.get_json("/v1/accounts/beta/invoices/2025-05").await;
    assert_eq!(
        charges(&beta),
        [c("input_tokens", "0.60"), c("output_tokens", "1.50")]
    );
    assert_eq!(beta["reverse_charge"], true);
    assert!(
        beta["notes"][0]
            .as_str()
            .unwrap()
            .starts_with("Reverse charge"),
        "{beta:#}"
    );
    assert_eq!(beta["total"], "2.10");
    let focus = admin.get_text("/v1/exports/focus?period=2025-05").await;
    assert_eq!(beta_billed(&focus), crate::billing::d("2.10"));
    // Nothing to tax, no tax line: a month without usage.
    let idle = admin.get_json("/v1/accounts/acme/invoices/2025-08").await;
    assert_eq!(charges(&idle), []);
    assert_eq!(idle["total"], "0.00");

    // Minimum, then credit, then tax on what is left: $2.10 topped up to
    // $10, $3 of credit drawn, 20 % of $7 = $1.40: $8.40 due.
    let plan = "[[version]]\neffective_from = \"2025-01-01\"\nminimum_monthly_usd = \"10\"\n";
    admin
        .put("/v1/accounts/gamma/plan")
        .body(plan)
        .send()
        .await
        .unwrap();
    let grant = admin
        .post("/v1/accounts/gamma/credits")
        .body(r#"{"usd": "3"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(grant.status(), StatusCode::OK);
    app.db
        .execute("update credit_grants set granted_at = 1746057600000000 where account = 'gamma'")
        .await; // 2025-05-01, so May may draw on it
    ok(&["accounts", "set", "gamma", "--tax-rate-percent", "20"]);
    let gamma = admin.get_json("/v1/accounts/gamma/invoices/2025-05").await;
    assert_eq!(
        charges(&gamma),
        [
            c("input_tokens", "0.60"),
            c("output_tokens", "1.50"),
            c("minimum_commitment", "7.90"),
            c("credit", "-3.00"),
            c("tax", "1.40"),
        ]
    );
    assert_eq!(gamma["total"], "8.40");
    let csv = admin
        .get_text("/v1/accounts/gamma/invoices/2025-05?format=csv")
        .await;
    assert!(
        csv.contains(",tax,false,false,7.00,usd,0.2,1.40\r\n"),
        "{csv}"
    );
    assert!(csv.ends_with(",total,,,,,,8.40\r\n"), "{csv}");

    // Bad details over HTTP: a 400 naming the field; nothing changes.
    for (body, message) in [
        (json!({"vat": "1"}), "unknown field `vat`"),
        (
            json!({"tax_rate_percent": "150"}),
            "tax_rate_percent 150 must be from 0 to 100",
        ),
        (json!({"terms_days": -1}), "terms_days"),
        (
            json!({"name": "Acme\nAG"}),
            "name holds a control character",
        ),
    ] {
        let r = admin
            .put("/v1/accounts/acme/details")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(message), "{body}: {text}");
    }
    assert_eq!(
        admin.get_json("/v1/accounts/acme/details").await["name"],
        "Acme AG"
    );
    // The seller's details hold no tax or terms (they are per account).
    let r = admin
        .put("/v1/org")
        .body(r#"{"tax_rate_percent": "20"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(admin.get_json("/v1/org").await["name"], "Reseller Two Ltd");
    // Terms back to the default: an empty value clears them.
    ok(&["accounts", "set", "acme", "--terms-days", ""]);
    let shown: Value = serde_json::from_str(&ok(&["accounts", "show", "acme", "--json"])).unwrap();
    assert!(shown.get("terms_days").is_none(), "{shown}");

    // An account key reads its own details, no one else's, and sets none.
    let account = app.account();
    assert_eq!(
        account.get_json("/v1/accounts/acme/details").await["tax_label"],
        "VAT"
    );
    assert_eq!(
        account.status_of_get("/v1/accounts/beta/details").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        account.status_of_get("/v1/org").await,
        StatusCode::FORBIDDEN
    );
    let r = account
        .put("/v1/accounts/acme/details")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

async fn each_finalization_reaches_the_webhook_once(backend: Backend) {
    let (hook, got) = crate::finance::receiver().await;
    let fast = {
        let hook = hook.clone();
        move |c: &mut tally::http::ServeConfig| {
            c.alert_webhook = Some(hook.clone());
            c.alert_interval = Duration::from_millis(50);
        }
    };
    let app = TestApp::on(backend).configure(fast.clone()).serve().await;
    // A second server on the same ledger, checking as often.
    let _other = app.another_server(fast).await;
    ingest(
        &app.store,
        &[
            request("acme", "msg_may", "2025-05-23T12:00:00Z"),
            request("acme", "msg_jun", "2025-06-23T12:00:00Z"),
        ],
    )
    .await;
    app.tally(&["accounts", "set", "acme", "--terms-days", "7"]);

    // Over HTTP, and from the command line (the servers' checks send that one).
    let r = app
        .admin()
        .post("/v1/accounts/acme/invoices/2025-05/finalize")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (code, _, err) = app.tally(&[
        "invoice",
        "--account",
        "acme",
        "--period",
        "2025-06",
        "--finalize",
    ]);
    assert_eq!(code, 0, "{err}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both servers kept checking meanwhile; let them go on a little longer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut seen: Vec<Value> = got.lock().unwrap().clone();
    seen.sort_by_key(|e| e["period"].as_str().unwrap_or_default().to_owned());
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let due = (chrono::Utc::now().date_naive() + chrono::Days::new(7)).to_string();
    for (e, period) in seen.iter().zip(["2025-05", "2025-06"]) {
        assert_eq!(e["type"], "invoice.finalized");
        assert_eq!(
            (e["account"].as_str(), e["period"].as_str()),
            (Some("acme"), Some(period))
        );
        assert_eq!(e["total"], "2.10");
        assert_eq!(e["due_at"], due);
        assert!(
            e["number"]
                .as_str()
                .unwrap()
                .starts_with(&format!("INV-{period}-")),
            "{e}"
        );
    }
    // Delivered: a check sends nothing more.
    let (_, out, _) = app.tally(&["budget", "check", "--webhook", &hook]);
    assert!(out.contains("0 alert(s) delivered"), "{out}");
    assert_eq!(got.lock().unwrap().len(), 2);
}

on_both_backends!(
    invoices_carry_parties_and_tax,
    each_finalization_reaches_the_webhook_once,
);
