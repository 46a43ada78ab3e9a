//! Prepaid credit (docs/plans.md), worked by hand on both backends: grants drawn
//! in order (the one expiring first, then the oldest), a grant drawn across
//! two months and expiring in a third, drafts that show what they would
//! draw, finalizing that makes draws permanent, voiding, the balance a
//! gateway reads, and a low-balance alert delivered once to a webhook.
//!
//! Each month holds one Claude Sonnet 4 request of 200,000 input and
//! 100,000 output tokens: $0.60 + $1.50 = $2.10 (no plan: price = cost).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::billing::{ingest, record};
use crate::support::{Backend, TestApp, TestDb};

const SONNET: &str = "claude-sonnet-4-20250514";

fn month(id: &str, at: &str) -> Value {
    record(
        "acme",
        id,
        SONNET,
        at,
        json!({"input_tokens": 200_000, "output_tokens": 100_000}),
    )
}

/// (charge, description, amount) of an invoice's lines after the usage.
fn credit_lines(invoice: &Value) -> Vec<(String, String)> {
    invoice["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["charge"] == "credit")
        .map(|l| {
            (
                l["description"].as_str().unwrap().to_owned(),
                l["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pair(description: &str, amount: &str) -> (String, String) {
    (description.to_owned(), amount.to_owned())
}

async fn credit_is_drawn_in_order_across_months_and_expires(backend: Backend) {
    let app = TestApp::on(backend).account_key("acme").serve().await;
    ingest(
        &app.store,
        &[
            month("msg_may", "2025-05-23T12:00:00Z"),
            month("msg_jun", "2025-06-05T12:00:00Z"),
            month("msg_jul", "2025-07-05T12:00:00Z"),
        ],
    )
    .await;
    let grant = |args: &[&str]| {
        let mut all = vec!["credits", "grant", "--account", "acme"];
        all.extend_from_slice(args);
        let (code, out, err) = app.tally(&all);
        assert_eq!(code, 0, "{err}");
        out
    };
    // #1: $1.50 without expiry; #2: $5 usable by periods starting by June
    // 30; #3: $1 without expiry. Granted (back-dated here) on April 20,
    // May 1 and May 3, 2025.
    assert!(grant(&["--usd", "1.50"]).contains("credit #1 granted to acme: $1.50"));
    grant(&["--usd", "5", "--expires", "2025-06-30", "--note", "launch"]);
    grant(&["--usd", "1"]);
    for (id, day) in [(1, "2025-04-20"), (2, "2025-05-01"), (3, "2025-05-03")] {
        let micros = tally::time::to_micros(
            chrono::DateTime::parse_from_rfc3339(&format!("{day}T09:00:00Z"))
                .unwrap()
                .to_utc(),
        );
        app.db
            .execute(&format!(
                "update credit_grants set granted_at = {micros} where id = {id}"
            ))
            .await;
    }
    let admin = app.admin();
    let invoice = |period: &'static str| {
        let admin = admin.clone();
        async move {
            admin
                .get_json(&format!("/v1/accounts/acme/invoices/{period}"))
                .await
        }
    };
    let finalize = |period: &'static str| {
        let admin = admin.clone();
        async move {
            let r = admin
                .post(&format!("/v1/accounts/acme/invoices/{period}/finalize"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };

    // May: #2 expires first, so it is drawn before the older #1: $2.10 of
    // its $5. The draft shows the draw; the total is what is due.
    let may = invoice("2025-05").await;
    assert_eq!(
        credit_lines(&may),
        [pair("prepaid credit #2 (launch)", "-2.10")]
    );
    assert_eq!(may["total"], "0.00");
    let may = finalize("2025-05").await;
    assert_eq!(
        credit_lines(&may),
        [pair("prepaid credit #2 (launch)", "-2.10")]
    );
    let may_frozen = admin.get_text("/v1/accounts/acme/invoices/2025-05").await;

    // June: #2 again ($2.10 of its $2.90 left): drawn across two months.
    let june = finalize("2025-06").await;
    assert_eq!(
        credit_lines(&june),
        [pair("prepaid credit #2 (launch)", "-2.10")]
    );

    // July: #2 expired with $0.80 undrawn; #1 (the oldest) pays $1.50, then
    // #3 $0.60.
    let july = invoice("2025-07").await;
    assert_eq!(
        credit_lines(&july),
        [
            pair("prepaid credit #1", "-1.50"),
            pair("prepaid credit #3", "-0.60")
        ]
    );
    assert_eq!(july["total"], "0.00");
    let csv = admin
        .get_text("/v1/accounts/acme/invoices/2025-07?format=csv")
        .await;
    assert!(
        csv.contains(",prepaid credit #3,,credit,false,false,1,usd,-0.60,-0.60\r\n"),
        "{csv}"
    );

    // The account reads its credit: $7.50 granted = $4.20 drawn by
    // finalized invoices + $2.10 pending on July's draft + $0.80 expired +
    // $0.40 left.
    let account = app.account();
    let credits = account.get_json("/v1/accounts/acme/credits").await;
    for (field, amount) in [
        ("granted_usd", "7.50"),
        ("drawn_usd", "4.20"),
        ("pending_usd", "2.10"),
        ("expired_usd", "0.80"),
        ("voided_usd", "0.00"),
        ("balance_usd", "0.40"),
    ] {
        assert_eq!(credits[field], amount, "{field}: {credits:#}");
    }
    let states: Vec<(i64, &str, &str)> = credits["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["id"].as_i64().unwrap(),
                g["state"].as_str().unwrap(),
                g["left_usd"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (1, "used", "0.00"),
            (2, "expired", "0.00"),
            (3, "active", "0.40")
        ]
    );
    let draws: Vec<(String, i64, String, bool)> = credits["draws"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["period"].as_str().unwrap().to_owned(),
                d["grant_id"].as_i64().unwrap(),
                d["usd"].as_str().unwrap().to_owned(),
                d["finalized"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        draws,
        [
            ("2025-05".into(), 2, "2.10".into(), true),
            ("2025-06".into(), 2, "2.10".into(), true),
            ("2025-07".into(), 1, "1.50".into(), false),
            ("2025-07".into(), 3, "0.60".into(), false),
        ]
    );
    assert_eq!(
        account.status_of_get("/v1/accounts/beta/credits").await,
        StatusCode::NOT_FOUND
    );
    let r = account
        .post("/v1/accounts/acme/credits")
        .body(r#"{"usd": "100"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Finalizing July makes its draws permanent; a later grant (today's)
    // is not available to 2025 and rewrites nothing.
    finalize("2025-07").await;
    let r = admin
        .post("/v1/accounts/acme/credits")
        .body(r#"{"usd": "10", "note": "top-up"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let credits: Value = r.json().await.unwrap();
    assert_eq!(credits["balance_usd"], "10.40");
    assert_eq!(credits["drawn_usd"], "6.30");
    assert_eq!(
        admin.get_text("/v1/accounts/acme/invoices/2025-05").await,
        may_frozen
    );
    let bad = admin
        .post("/v1/accounts/acme/credits")
        .body(r#"{"usd": "1.005"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("usd: 1.005 has fractions of a cent")
    );

    // The gateway's question.
    let balance = account.get_json("/v1/accounts/acme/balance").await;
    assert_eq!(
        balance,
        json!({"account": "acme", "balance_usd": "10.40", "month_to_date_usd": "0.00",
               "budget_usd": null, "allowed": true})
    );
    // Voiding ends what is left of a grant (#3's $0.40, then #4's $10).
    let (code, out, _) = app.tally(&["credits", "void", "3"]);
    assert_eq!(code, 0);
    assert!(out.contains("credit #3 of acme voided"), "{out}");
    let (code, _, err) = app.tally(&["credits", "void", "3"]);
    assert_eq!(code, 1);
    assert!(err.contains("no credit grant #3"), "{err}");
    app.tally(&["credits", "void", "4"]);
    let balance = account.get_json("/v1/accounts/acme/balance").await;
    assert_eq!(
        (&balance["balance_usd"], &balance["allowed"]),
        (&json!("0.00"), &json!(false))
    );
    let (_, out, _) = app.tally(&["credits", "list", "--account", "acme", "--json"]);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["voided_usd"], "10.40");
    // An account never granted credit is not prepaid: it may spend.
    let beta = admin.get_json("/v1/accounts/beta/balance").await;
    assert_eq!(
        (&beta["balance_usd"], &beta["allowed"]),
        (&Value::Null, &json!(true))
    );
    // The finalized invoices never changed.
    assert_eq!(
        admin.get_text("/v1/accounts/acme/invoices/2025-05").await,
        may_frozen
    );
}

async fn a_low_balance_alerts_once(backend: Backend) {
    // The CLI alone checks balances here: a server started now would check
    // at its start too, and might record the alert first.
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let tally = |args: &[&str]| crate::support::tally(&db, args);
    let (hook, got) = crate::finance::receiver().await;
    // Usage this month: $2.10, drawn from a $3 grant: $0.90 left, under $1.
    let now = chrono::Utc::now().to_rfc3339();
    ingest(&store, &[month("msg_now", &now)]).await;
    let (code, _, err) = tally(&[
        "credits",
        "grant",
        "--account",
        "acme",
        "--usd",
        "3",
        "--low-balance-usd",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = tally(&["budget", "check", "--webhook", &hook]);
    assert!(
        out.contains("1 new alert(s)") && out.contains("1 alert(s) delivered"),
        "{out}"
    );
    let (_, out, _) = tally(&["budget", "check", "--webhook", &hook]);
    assert!(out.contains("0 new alert(s)"), "{out}");
    let seen = got.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "credit_balance_low");
    assert_eq!(seen[0]["account"], "acme");
    assert_eq!(seen[0]["balance_usd"], "0.90");
    assert_eq!(seen[0]["funded_usd"], "3.00");
    // A new grant lifts the balance over the threshold: no alert.
    tally(&["credits", "grant", "--account", "acme", "--usd", "5"]);
    let (_, out, _) = tally(&["budget", "check", "--webhook", &hook]);
    assert!(out.contains("0 new alert(s)"), "{out}");
    let app = TestApp::on(backend).serve_on(db).await;
    let balance = app.admin().get_json("/v1/accounts/acme/balance").await;
    assert_eq!(balance["balance_usd"], "5.90");
    assert_eq!(balance["month_to_date_usd"], "2.10");
    // The alert is listed too.
    let alerts = app.admin().get_json("/v1/alerts").await;
    let low: Vec<&Value> = alerts["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "credit_balance_low")
        .collect();
    assert_eq!(low.len(), 1, "{alerts:#}");
    assert_eq!(low[0]["delivered"], true);
}

/// A prepaid account with a monthly minimum: this month's minimum is owed
/// only once the month is over, so it does not use up the credit while the
/// month runs; and a grant expiring within this month is still usable.
async fn a_minimum_does_not_spend_credit_before_the_month_ends(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    let admin = app.admin();
    let plan = "[[version]]\neffective_from = \"2025-01-01\"\nminimum_monthly_usd = \"100\"\n";
    let r = admin
        .put("/v1/accounts/acme/plan")
        .body(plan)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let today = chrono::Utc::now();
    ingest(&app.store, &[month("msg_now", &today.to_rfc3339())]).await;
    let first = format!("{}-01", today.format("%Y-%m"));
    let grant = json!({"usd": "100", "expires": first});
    let r = admin
        .post("/v1/accounts/acme/credits")
        .body(grant.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // $2.10 spent of $100: $97.90 left, and it may spend.
    let balance = admin.get_json("/v1/accounts/acme/balance").await;
    assert_eq!(
        (
            &balance["balance_usd"],
            &balance["allowed"],
            &balance["month_to_date_usd"]
        ),
        (&json!("97.90"), &json!(true), &json!("2.10"))
    );
    let credits = admin.get_json("/v1/accounts/acme/credits").await;
    assert_eq!(credits["grants"][0]["state"], "active", "{credits:#}");
    // The draft, if finalized now, would owe the minimum and draw it all.
    let period = today.format("%Y-%m").to_string();
    let draft = admin
        .get_json(&format!("/v1/accounts/acme/invoices/{period}"))
        .await;
    assert_eq!(credit_lines(&draft), [pair("prepaid credit #1", "-100.00")]);
    assert_eq!(draft["total"], "0.00");
}

on_both_backends!(
    credit_is_drawn_in_order_across_months_and_expires,
    a_low_balance_alerts_once,
    a_minimum_does_not_spend_credit_before_the_month_ends,
);
