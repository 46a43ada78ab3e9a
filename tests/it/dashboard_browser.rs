//! The dashboard in a real browser: tally serves a month of generated usage
//! on a loopback port, headless Chromium (Debian's `chromium`; `.ci/run`
//! installs it, `TALLY_CHROMIUM` names another binary) loads the page, and
//! the total it shows equals the sum of the invoices' totals. A screenshot
//! is saved to `target/dashboard-<backend>.png`. Both backends.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{Backend, TestApp, tally_ok};
use rust_decimal::Decimal;
use serde_json::Value;

fn chromium() -> String {
    let bin = std::env::var("TALLY_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&bin).arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "the browser test needs Chromium ({bin}): `apt-get install chromium`, or run .ci/run"
    );
    bin
}

pub(crate) fn browser(args: &[&str], url: &str) -> Vec<u8> {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.path().display()),
        ])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

async fn dashboard_total_matches_invoices(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("month.ndjson");
    let file = file.to_str().unwrap();
    // No admin token: loopback only, and the browser needs no credentials.
    let app = TestApp::on(backend)
        .given(|db| {
            tally_ok(
                db,
                &[
                    "gen-usage",
                    "--records",
                    "2000",
                    "--seed",
                    "5",
                    "--out",
                    file,
                ],
            );
            tally_ok(db, &["ingest", file]);
            tally_ok(
                db,
                &["budget", "set", "--account", "team-03", "--monthly", "5"],
            );
        })
        .serve()
        .await;
    let url = app.url("/?period=2026-03");
    let dom = tokio::task::spawn_blocking(move || browser(&["--dump-dom"], &url))
        .await
        .unwrap();
    let dom = String::from_utf8(dom).unwrap();
    let shown = dom
        .split("id=\"total\"")
        .nth(1)
        .and_then(|rest| rest.split('>').nth(1))
        .and_then(|text| text.split('<').next())
        .unwrap_or_else(|| panic!("no total on the page: {dom}"))
        .to_owned();

    let invoices: Value = serde_json::from_str(&tally_ok(
        &app.db,
        &["invoices", "--period", "2026-03", "--format", "json"],
    ))
    .unwrap();
    let total: Decimal = invoices
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["total"].as_str().unwrap().parse::<Decimal>().unwrap())
        .sum();
    assert!(total > Decimal::ZERO);
    assert_eq!(
        shown,
        tally::finance::usd(total),
        "the page's total is the invoices' total"
    );
    for part in [
        "Cost per day",
        "Cost by model",
        "Accounts by cost",
        "free allowance",
        "FOCUS",
        "team-03",
    ] {
        assert!(dom.contains(part), "the page shows {part}");
    }
    // Every account's row shows its invoice total.
    for inv in invoices.as_array().unwrap() {
        let amount = tally::finance::usd(inv["total"].as_str().unwrap().parse().unwrap());
        assert!(
            dom.contains(&format!("<b>{amount}</b>")),
            "{} {amount}",
            inv["account"]
        );
    }

    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("dashboard-{backend:?}.png").to_lowercase());
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    let url = app.url("/?period=2026-03");
    tokio::task::spawn_blocking(move || browser(&[&arg, "--window-size=1280,2400"], &url))
        .await
        .unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "a real screenshot"
    );
}

on_both_backends!(dashboard_total_matches_invoices);
