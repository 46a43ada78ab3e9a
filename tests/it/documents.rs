//! Invoice documents and accounting exports (docs/invoices.md), on both backends:
//! one golden HTML document per case (domestic tax with code execution,
//! reverse charge, minimum commitment with credit), the PDF's text read by
//! `pdftotext` and its first page rendered by `pdftoppm` and looked at,
//! documents frozen at finalization (and rendered once for an invoice
//! finalized before tally kept them), gapless per-period numbers even when
//! finalizations race, and the QuickBooks and Xero exports, which hold
//! finalized invoices only.
//!
//! `TALLY_BLESS=1 cargo test --test it documents::` rewrites the golden
//! files from what tally renders now.

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::billing::{code_run, ingest, record};
use crate::support::{Backend, TestApp, fixture_path};

const SONNET: &str = "claude-sonnet-4-20250514";

/// $0.60 + $1.50 = $2.10 of Sonnet 4.
fn request(account: &str, id: &str, at: &str) -> Value {
    record(
        account,
        id,
        SONNET,
        at,
        json!({"input_tokens": 200_000, "output_tokens": 100_000}),
    )
}

/// Run a poppler tool; its standard output.
fn poppler(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("{tool} is needed (Debian's poppler-utils; .ci/run installs it): {e}")
    });
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn pdf_text(pdf: &Path) -> String {
    let text = poppler("pdftotext", &["-layout", pdf.to_str().unwrap(), "-"]);
    String::from_utf8(text).unwrap()
}

fn pdf_info(pdf: &Path) -> String {
    String::from_utf8(poppler("pdfinfo", &[pdf.to_str().unwrap()])).unwrap()
}

/// A grey-scale picture: width, height, one byte per pixel (0 black).
struct Gray {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Gray {
    /// The first page of `pdf` at `dpi`, through `pdftoppm -gray` (a PGM).
    fn first_page(pdf: &Path, dpi: u32) -> Gray {
        let pgm = poppler(
            "pdftoppm",
            &[
                "-gray",
                "-r",
                &dpi.to_string(),
                "-f",
                "1",
                "-l",
                "1",
                pdf.to_str().unwrap(),
            ],
        );
        // "P5\n<w> <h>\n255\n" then the pixels.
        let mut fields = Vec::new();
        let mut at = 0;
        while fields.len() < 4 {
            while pgm[at].is_ascii_whitespace() {
                at += 1;
            }
            let start = at;
            while !pgm[at].is_ascii_whitespace() {
                at += 1;
            }
            fields.push(String::from_utf8(pgm[start..at].to_vec()).unwrap());
        }
        assert_eq!(fields[0], "P5");
        let (width, height) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
        let pixels = pgm[at + 1..].to_vec();
        assert_eq!(pixels.len(), width * height);
        Gray {
            width,
            height,
            pixels,
        }
    }

    /// Share of the pixels in rows `from..to` (fractions of the height)
    /// whose grey is within `range`.
    fn share(&self, from: f64, to: f64, range: std::ops::RangeInclusive<u8>) -> f64 {
        let (a, b) = (
            (from * self.height as f64) as usize,
            (to * self.height as f64) as usize,
        );
        let area = &self.pixels[a * self.width..b * self.width];
        area.iter().filter(|p| range.contains(p)).count() as f64 / area.len() as f64
    }
}

/// The golden document `name`, or write it when blessing.
fn golden(name: &str, actual: &str) {
    let path = fixture_path(&format!("expected/documents/{name}"));
    if std::env::var_os("TALLY_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (TALLY_BLESS=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{name} differs from {} (TALLY_BLESS=1 rewrites it); rendered:\n{actual}",
        path.display()
    );
}

/// The finalized document with its issue and due dates (which depend on
/// the day the test runs) written as placeholders.
fn dated(html: &str, issued: chrono::NaiveDate, due: chrono::NaiveDate) -> String {
    let words = tally::documents::date_words;
    html.replace(&words(due), "DUE-DATE")
        .replace(&words(issued), "ISSUE-DATE")
}

async fn bytes(api: &crate::support::Api, path: &str) -> (StatusCode, String, String, Vec<u8>) {
    let r = api.get(path).send().await.unwrap();
    let header = |h| {
        r.headers()
            .get(h)
            .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (status, ct, cd) = (
        r.status(),
        header(CONTENT_TYPE),
        header(CONTENT_DISPOSITION),
    );
    (status, ct, cd, r.bytes().await.unwrap().to_vec())
}

async fn documents_are_rendered_frozen_and_exported(backend: Backend) {
    let app = TestApp::on(backend).account_key("acme").serve().await;
    ingest(
        &app.store,
        &[
            request("acme", "msg_acme", "2025-05-23T12:00:00Z"),
            code_run(
                "acme",
                "msg_acme_code",
                "container_acme",
                Some("2025-05-23T12:01:00Z"),
                "2025-05-23T12:02:00Z",
            ),
            request("globex", "msg_globex", "2025-05-23T12:00:00Z"),
            request("gamma", "msg_gamma", "2025-05-23T12:00:00Z"),
            request("delta", "msg_delta", "2025-05-23T12:00:00Z"),
            record(
                "omega",
                "msg_omega",
                "claude-unreleased-9",
                "2025-05-23T12:00:00Z",
                json!({"input_tokens": 10, "output_tokens": 10}),
            ),
            request("acme", "msg_acme_june", "2025-06-23T12:00:00Z"),
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
        "1 Main Street\\nLondon EC1A 1AA\\nUnited Kingdom",
        "--tax-id",
        "GB123456789",
    ]);
    ok(&[
        "accounts",
        "set",
        "acme",
        "--name",
        "Acme GmbH & Co. <KG>",
        "--address",
        "Hauptstraße 5\\n10115 Berlin\\nGermany",
        "--tax-id",
        "DE987654321",
        "--tax-rate-percent",
        "20",
        "--tax-label",
        "VAT",
        "--terms-days",
        "14",
    ]);
    ok(&[
        "accounts",
        "set",
        "globex",
        "--name",
        "Globex SARL",
        "--tax-id",
        "FR12345678901",
        "--reverse-charge",
    ]);
    // Minimum and credit: $2.10 topped up to $10, $3 of credit drawn: $7.
    let admin = app.admin();
    let plan = "[[version]]\neffective_from = \"2025-01-01\"\nminimum_monthly_usd = \"10\"\n";
    let r = admin
        .put("/v1/accounts/gamma/plan")
        .body(plan)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    ok(&[
        "credits",
        "grant",
        "--account",
        "gamma",
        "--usd",
        "3",
        "--note",
        "welcome",
    ]);
    app.db
        .execute("update credit_grants set granted_at = 1746057600000000 where account = 'gamma'")
        .await;

    // A draft's document says it is one, and has no number.
    let (status, ct, cd, draft) = bytes(&admin, "/v1/accounts/acme/invoices/2025-05.html").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "text/html; charset=utf-8");
    assert_eq!(cd, "inline; filename=\"acme-2025-05-draft.html\"");
    let draft = String::from_utf8(draft).unwrap();
    assert!(draft.contains("DRAFT · NOT A BILL"), "{draft}");
    assert!(draft.contains("none (draft)"));

    // Finalize in order; a refused finalization (unpriced usage) takes no
    // number: the period's numbers run 1, 2, 3 without a gap.
    ok(&[
        "invoice",
        "--account",
        "acme",
        "--period",
        "2025-05",
        "--finalize",
    ]);
    let (code, _, err) = app.tally(&[
        "invoice",
        "--account",
        "omega",
        "--period",
        "2025-05",
        "--finalize",
    ]);
    assert_eq!(code, 1, "unpriced usage is refused: {err}");
    let r = admin
        .post("/v1/accounts/globex/invoices/2025-05/finalize")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    ok(&[
        "invoice",
        "--account",
        "gamma",
        "--period",
        "2025-05",
        "--finalize",
    ]);
    ok(&[
        "invoice",
        "--account",
        "acme",
        "--period",
        "2025-06",
        "--finalize",
    ]);
    let number = |account: &str, period: &str| {
        let json = ok(&["invoice", "--account", account, "--period", period]);
        serde_json::from_str::<Value>(&json).unwrap()["number"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(number("acme", "2025-05"), "INV-2025-05-0001");
    assert_eq!(number("globex", "2025-05"), "INV-2025-05-0002");
    assert_eq!(number("gamma", "2025-05"), "INV-2025-05-0003");
    assert_eq!(number("acme", "2025-06"), "INV-2025-06-0001");

    // One golden document per case; both backends render the same bytes.
    let today = chrono::Utc::now().date_naive();
    for (account, terms, file) in [
        ("acme", 14, "domestic_tax.html"),
        ("globex", 30, "reverse_charge.html"),
        ("gamma", 30, "minimum_and_credit.html"),
    ] {
        let (status, ct, _, html) = bytes(
            &admin,
            &format!("/v1/accounts/{account}/invoices/2025-05.html"),
        )
        .await;
        assert_eq!(
            (status, ct.as_str()),
            (StatusCode::OK, "text/html; charset=utf-8")
        );
        let html = String::from_utf8(html).unwrap();
        let due = today + chrono::Days::new(terms);
        golden(file, &dated(&html, today, due));
        // The command line serves the same bytes.
        let cli = ok(&[
            "invoice",
            "--account",
            account,
            "--period",
            "2025-05",
            "--format",
            "html",
        ]);
        assert_eq!(cli, html);
    }
    let acme_html = admin
        .get_text("/v1/accounts/acme/invoices/2025-05.html")
        .await;
    // Self-contained: no script, no external asset; text escaped.
    for outside in ["<script", "src=", "href=", "url(", "@import"] {
        assert!(!acme_html.contains(outside), "{outside} in the document");
    }
    assert!(acme_html.contains("Acme GmbH &amp; Co. &lt;KG&gt;"));

    // The PDF: its text, its paper, its look.
    let dir = tempfile::tempdir().unwrap();
    let (status, ct, cd, pdf) = bytes(&admin, "/v1/accounts/acme/invoices/2025-05.pdf").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "application/pdf");
    assert_eq!(cd, "inline; filename=\"INV-2025-05-0001.pdf\"");
    let acme_pdf = dir.path().join("acme.pdf");
    std::fs::write(&acme_pdf, &pdf).unwrap();
    let text = pdf_text(&acme_pdf);
    for expected in [
        "Invoice",
        "INV-2025-05-0001",
        "Reseller Ltd",
        "Tax ID: GB123456789",
        "Acme GmbH & Co. <KG>",
        "Hauptstraße 5",
        "May 2025",
        "Tokens",
        "claude-sonnet-4-20250514 input tokens",
        "200,000",
        "$3.00 / MTok",
        "Subtotal: tokens",
        "Code execution",
        "VAT 20% on 2.10",
        "$0.42",
        "Amount due (USD)",
        "$2.52",
        "minimum of 5 minutes per container",
        "Page 1 of 1",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} not in the PDF:\n{text}"
        );
    }
    assert!(pdf_info(&acme_pdf).contains("(A4)"));
    let page = Gray::first_page(&acme_pdf, 40);
    // A4 at 40 dpi: 331 × 468 pixels.
    assert_eq!((page.width, page.height), (331, 468));
    // Ink at the top (title, parties), the shaded amount-due box, the
    // footer at the bottom, and a page that is mostly paper.
    assert!(page.share(0.0, 0.25, 0..=128) > 0.005, "no heading");
    assert!(
        page.share(0.25, 0.45, 230..=250) > 0.02,
        "no amount-due box"
    );
    assert!(page.share(0.93, 1.0, 0..=200) > 0.0005, "no footer");
    assert!(page.share(0.0, 1.0, 250..=255) > 0.8, "mostly paper");

    let globex_pdf = dir.path().join("globex.pdf");
    let (_, _, _, pdf) = bytes(&admin, "/v1/accounts/globex/invoices/2025-05.pdf").await;
    std::fs::write(&globex_pdf, &pdf).unwrap();
    let text = pdf_text(&globex_pdf);
    assert!(text.contains("Reverse charge: no tax is charged"), "{text}");
    assert!(!text.contains("VAT"), "{text}");

    // The HTML prints: Chromium turns it into one page with the total.
    let printed = dir.path().join("printed.pdf");
    let html_file = dir.path().join("acme.html");
    std::fs::write(&html_file, &acme_html).unwrap();
    crate::dashboard_browser::browser(
        &[
            &format!("--print-to-pdf={}", printed.display()),
            "--no-pdf-header-footer",
        ],
        &format!("file://{}", html_file.display()),
    );
    assert!(pdf_info(&printed).contains("Pages:           1"));
    assert!(pdf_text(&printed).contains("$2.52"));

    // Frozen: later edits, late usage and a new paper change nothing.
    let frozen_html = acme_html.clone();
    let frozen_pdf = std::fs::read(&acme_pdf).unwrap();
    ok(&[
        "accounts",
        "set",
        "acme",
        "--name",
        "Acme AG",
        "--tax-rate-percent",
        "10",
    ]);
    ok(&[
        "org",
        "set",
        "--name",
        "Reseller Two Ltd",
        "--paper",
        "letter",
    ]);
    ingest(
        &app.store,
        &[request("acme", "msg_acme_late", "2025-05-30T12:00:00Z")],
    )
    .await;
    assert_eq!(
        admin
            .get_text("/v1/accounts/acme/invoices/2025-05.html")
            .await,
        frozen_html
    );
    assert_eq!(
        bytes(&admin, "/v1/accounts/acme/invoices/2025-05.pdf")
            .await
            .3,
        frozen_pdf
    );
    // A draft uses the seller's paper now.
    let (_, _, _, pdf) = bytes(&admin, "/v1/accounts/acme/invoices/2025-07.pdf").await;
    let letter = dir.path().join("letter.pdf");
    std::fs::write(&letter, &pdf).unwrap();
    assert!(pdf_info(&letter).contains("612 x 792 pts (letter)"));

    // An invoice finalized before tally kept documents gets them rendered
    // once from its frozen JSON, then kept.
    app.db
        .execute("update invoices set html = null, pdf = null where account = 'globex'")
        .await;
    let again = admin
        .get_text("/v1/accounts/globex/invoices/2025-05.html")
        .await;
    assert!(again.contains("INV-2025-05-0002") && again.contains("Globex SARL"));
    let kept = app
        .db
        .texts("select html from invoices where account = 'globex' and html is not null")
        .await;
    assert_eq!(kept, [again]);

    // Access: an account key reads its own documents only.
    let own = app.account();
    assert_eq!(
        own.status_of_get("/v1/accounts/acme/invoices/2025-05.pdf")
            .await,
        StatusCode::OK
    );
    assert_eq!(
        own.status_of_get("/v1/accounts/globex/invoices/2025-05.html")
            .await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin
            .status_of_get("/v1/accounts/acme/invoices/2025-05.docx")
            .await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin
            .status_of_get("/v1/accounts/acme/invoices/2025-13.html")
            .await,
        StatusCode::BAD_REQUEST
    );

    // QuickBooks: finalized invoices only (delta's draft and omega's
    // refused one are not there), one row per line, each invoice's
    // amounts adding up to its total; US dates.
    let qb = ok(&["export", "--format", "quickbooks", "--period", "2025-05"]);
    let rows = csv_rows(&qb);
    assert_eq!(
        rows[0].join(","),
        tally::finance::accounting::QUICKBOOKS_HEADER.join(",")
    );
    let col = |name: &str| rows[0].iter().position(|h| h == name).unwrap();
    let totals = [
        ("INV-2025-05-0001", "2.52"),
        ("INV-2025-05-0002", "2.10"),
        ("INV-2025-05-0003", "7.00"),
    ];
    check_export(&rows, col("InvoiceNo"), col("ItemAmount"), &totals);
    assert!(!qb.contains("delta") && !qb.contains("omega"));
    let first = &rows[1];
    assert_eq!(first[col("Customer")], "Acme GmbH & Co. <KG>");
    assert_eq!(
        first[col("InvoiceDate")],
        today.format("%m/%d/%Y").to_string()
    );
    assert_eq!(
        first[col("DueDate")],
        (today + chrono::Days::new(14))
            .format("%m/%d/%Y")
            .to_string()
    );
    assert_eq!(first[col("Service Date")], "05/31/2025");
    assert_eq!(
        first[col("ItemDescription")],
        "claude-sonnet-4-20250514 input tokens: 200,000 tokens at $3.00 / MTok"
    );
    assert!(
        rows.iter()
            .any(|r| r[col("Item(Product/Service)")] == "Tax" && r[col("ItemAmount")] == "0.42")
    );

    // Xero: its template's columns; the minimum and the credit as lines.
    let xero = ok(&[
        "export",
        "--format",
        "xero",
        "--period",
        "2025-05",
        "--account-code",
        "4000",
        "--date-format",
        "iso",
    ]);
    let rows = csv_rows(&xero);
    assert_eq!(
        rows[0].join(","),
        tally::finance::accounting::XERO_HEADER.join(",")
    );
    let col = |name: &str| rows[0].iter().position(|h| h == name).unwrap();
    check_export(&rows, col("*InvoiceNumber"), col("*UnitAmount"), &totals);
    let gamma: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r[col("*InvoiceNumber")] == "INV-2025-05-0003")
        .collect();
    let units: Vec<&str> = gamma
        .iter()
        .map(|r| r[col("*UnitAmount")].as_str())
        .collect();
    assert_eq!(units, ["0.60", "1.50", "7.90", "-3.00"]);
    assert!(gamma.iter().all(|r| r[col("*AccountCode")] == "4000"
        && r[col("*TaxType")] == "Tax Exempt"
        && r[col("*Quantity")] == "1"
        && r[col("*InvoiceDate")] == today.to_string()));
    assert_eq!(rows[1][col("POAddressLine2")], "10115 Berlin");

    // Over HTTP an account key exports its own invoices only.
    let r = own
        .get("/v1/exports/xero?period=2025-05")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let own_rows = csv_rows(&r.text().await.unwrap());
    assert!(
        own_rows[1..].iter().all(|r| r[10] == "INV-2025-05-0001"),
        "{own_rows:?}"
    );
    assert_eq!(
        admin
            .status_of_get("/v1/exports/quickbooks?period=2025-05&date_format=ymd")
            .await,
        StatusCode::BAD_REQUEST
    );
    // A period with no finalized invoice: the header alone, and a warning.
    let (code, out, err) = app.tally(&["export", "--format", "xero", "--period", "2025-07"]);
    assert_eq!((code, csv_rows(&out).len()), (0, 1));
    assert!(err.contains("no finalized invoice in 2025-07"), "{err}");
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// Each invoice's rows add up to its total, and no other invoice is there.
fn check_export(rows: &[Vec<String>], number: usize, amount: usize, totals: &[(&str, &str)]) {
    let mut sums: std::collections::BTreeMap<String, rust_decimal::Decimal> = Default::default();
    for r in &rows[1..] {
        *sums.entry(r[number].clone()).or_default() +=
            r[amount].parse::<rust_decimal::Decimal>().unwrap();
    }
    let expected: std::collections::BTreeMap<String, rust_decimal::Decimal> = totals
        .iter()
        .map(|(n, t)| (n.to_string(), t.parse().unwrap()))
        .collect();
    assert_eq!(sums, expected);
}

/// Finalizations of one period racing on several connections still number
/// it 1…N without a gap or a repeat.
async fn racing_finalizations_number_without_gaps(backend: Backend) {
    let app = TestApp::on(backend).serve().await;
    let accounts: Vec<String> = (0..8).map(|i| format!("team{i}")).collect();
    let records: Vec<Value> = accounts
        .iter()
        .map(|a| request(a, &format!("msg_{a}"), "2025-05-23T08:00:00Z"))
        .collect();
    ingest(&app.store, &records).await;
    let admin = app.admin();
    let finalizing = accounts.iter().map(|a| {
        let api = admin.fresh();
        let path = format!("/v1/accounts/{a}/invoices/2025-05/finalize");
        async move {
            let r = api.post(&path).send().await.unwrap();
            let status = r.status();
            let v: Value = r.json().await.unwrap();
            assert_eq!(status, StatusCode::OK, "{v}");
            v["number"].as_str().unwrap().to_owned()
        }
    });
    let mut numbers = futures_util::future::join_all(finalizing).await;
    numbers.sort();
    let expected: Vec<String> = (1..=8).map(|n| format!("INV-2025-05-{n:04}")).collect();
    assert_eq!(numbers, expected);
}

on_both_backends!(
    documents_are_rendered_frozen_and_exported,
    racing_finalizations_number_without_gaps
);
