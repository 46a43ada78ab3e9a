//! The dashboard in a real browser: tally serves a month of generated usage
//! on a loopback port, headless Chromium (Debian's `chromium`; `.ci/run`
//! installs it, `TALLY_CHROMIUM` names another binary) loads the page, and
//! the total it shows equals the sum of the invoices' totals. A screenshot
//! is saved to `target/dashboard-<backend>.png`. Both backends.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{Backend, TestApp, fixture_arg, tally_ok};
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

/// The page at `path` as the browser built it.
async fn dom_of(app: &TestApp, path: &str) -> String {
    let url = app.url(path);
    let dom = tokio::task::spawn_blocking(move || browser(&["--dump-dom"], &url))
        .await
        .unwrap();
    String::from_utf8(dom).unwrap()
}

/// The text right after `marker` (up to the next tag).
fn text_after<'a>(dom: &'a str, marker: &str) -> &'a str {
    dom.split(marker)
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_else(|| panic!("no {marker} on the page: {dom}"))
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
            // Two older months (May 2025: a per-day free allowance).
            tally_ok(db, &["ingest", &fixture_arg("sample.ndjson")]);
            tally_ok(
                db,
                &["budget", "set", "--account", "team-03", "--monthly", "4"],
            );
        })
        .serve()
        .await;
    // No period asked for, and none of the records is this month's: the page
    // opens on the latest month that has records.
    let dom = dom_of(&app, "/").await;
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
    dashboard_details(&app, &dom).await;
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

/// The details a reader notices: the picker, round axis ticks, dashes for
/// missing budgets, the allowance in words, and a file name on every
/// download the page links to.
async fn dashboard_details(app: &TestApp, dom: &str) {
    let picker = dom
        .split("<select")
        .nth(1)
        .and_then(|s| s.split("</select>").next())
        .unwrap_or_else(|| panic!("no period picker: {dom}"));
    let options: Vec<&str> = picker.split("<option").skip(1).collect();
    let values: Vec<&str> = options
        .iter()
        .filter_map(|o| o.split("value=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(
        values,
        ["2026-03", "2025-10", "2025-05"],
        "the months with records, newest first: {picker}"
    );
    assert!(
        options[0].contains("selected") && options[0].contains("March 2026"),
        "{picker}"
    );

    // Y-axis ticks: $0 then equal round steps (1, 2 or 5 × a power of ten).
    let ticks: Vec<Decimal> = dom
        .split("text-anchor=\"end\">")
        .skip(1)
        .filter_map(|t| t.split('<').next())
        .filter(|t| t.starts_with('$'))
        .map(|t| t.trim_start_matches('$').replace(',', "").parse().unwrap())
        .collect();
    assert!(ticks.len() >= 2 && ticks.len() <= 6, "{ticks:?}");
    assert_eq!(ticks[0], Decimal::ZERO);
    let step = ticks[1];
    let mut unit = step;
    while unit >= Decimal::TEN {
        unit /= Decimal::TEN;
    }
    while unit < Decimal::ONE {
        unit *= Decimal::TEN;
    }
    assert!(
        [Decimal::ONE, Decimal::TWO, Decimal::from(5)].contains(&unit.normalize()),
        "a round step: {ticks:?}"
    );
    for (i, t) in ticks.iter().enumerate() {
        assert_eq!(*t, step * Decimal::from(i), "{ticks:?}");
    }

    // A budget cell without a budget reads "—" (team-03 has one).
    let rows: Vec<&str> = dom
        .split("<tbody>")
        .nth(1)
        .unwrap()
        .split("</tbody>")
        .next()
        .unwrap()
        .split("<tr>")
        .skip(1)
        .collect();
    for row in &rows {
        let cells: Vec<&str> = row.split("<td").collect();
        let budget = cells[7];
        if row.contains(">team-03<") {
            assert!(budget.contains("$4.00"), "{row}");
            // Its month came to more than the budget: the forecast says so.
            assert!(
                cells[9].contains("class=\"over\""),
                "a forecast past the budget is flagged: {row}"
            );
        } else {
            assert!(budget.contains(">—<"), "no budget reads as a dash: {row}");
        }
    }

    // The allowance in plain words: hours used of hours free, on which day.
    let allowance = text_after(dom, "id=\"allowance-use\">");
    assert!(
        allowance.starts_with("17.33 h used of 1,550 h free in March 2026"),
        "a monthly allowance: {allowance}"
    );
    // A month under a per-day allowance names the day.
    let may = dom_of(app, "/?period=2025-05").await;
    let allowance = text_after(&may, "id=\"allowance-use\">");
    assert!(
        allowance.starts_with("50 h free each UTC day (organization-wide). Busiest day: 0.08 h used of 50 h free on 23 May. In all: 0.17 h used on 2 days, 0 h charged"),
        "a per-day allowance: {allowance}"
    );

    // Every link under /v1 is a download with a file name.
    let links: Vec<String> = dom
        .split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .filter(|h| h.starts_with("/v1/"))
        .map(|h| h.replace("&amp;", "&"))
        .collect();
    assert!(
        links
            .iter()
            .any(|l| l.ends_with("?format=csv") && l.contains("/accounts/"))
    );
    let api = app.admin();
    for link in links {
        let r = api.get(&link).send().await.unwrap();
        assert_eq!(r.status(), 200, "{link}");
        let disposition = r
            .headers()
            .get("content-disposition")
            .unwrap_or_else(|| panic!("{link} has no Content-Disposition"))
            .to_str()
            .unwrap()
            .to_owned();
        assert!(disposition.contains("filename=\""), "{link}: {disposition}");
    }
}

/// The README's screenshot: `tally demo`, then the dashboard as it opens.
/// `TALLY_BLESS=1` copies it to docs/dashboard.png.
async fn demo_dashboard_screenshot() {
    let app = TestApp::on(Backend::Sqlite)
        .given(|db| {
            tally_ok(db, &["demo", "--records", "6000"]);
        })
        .serve()
        .await;
    let dom = dom_of(&app, "/").await;
    let this_month = chrono::Utc::now().format("%Y-%m").to_string();
    assert!(
        dom.contains(&format!("<option value=\"{this_month}\" selected")),
        "opens on this month"
    );
    assert_eq!(dom.matches("<option").count(), 3, "three months of data");
    for part in ["northwind", "refusals not charged", "id=\"allowance-use\""] {
        assert!(dom.contains(part), "the demo's page shows {part}");
    }
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("dashboard-demo.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    let url = app.url("/");
    tokio::task::spawn_blocking(move || browser(&[&arg, "--window-size=1280,1500"], &url))
        .await
        .unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000);
    if std::env::var_os("TALLY_BLESS").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::write(docs, png).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_dashboard_screenshot_sqlite() {
    demo_dashboard_screenshot().await;
}
