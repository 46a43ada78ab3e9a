//! `--retain billing`: nothing of what people said is kept, and every figure
//! is the same as with the lines kept whole; on both backends.

use reqwest::StatusCode;

use crate::support::{Backend, TestApp, TestDb, fixture, fixture_arg, tally_ok, tally_output};

/// What the fixtures and the generated records say (prompts, completions,
/// tool input and output), none of which billing needs.
const SAID: [&str; 6] = [
    "Calculate the mean",
    "import numpy",
    "Mean: 5.5",
    "The mean of the dataset",
    "Summarise the attached file",
    "quarterly figures",
];

/// The raw lines in a pool: record bodies (text) and rejected lines (bytes).
macro_rules! raw_lines {
    ($pool:expr) => {{
        let pool = $pool;
        let bodies: Vec<String> = sqlx::query_scalar("select raw from record_bodies")
            .fetch_all(&pool)
            .await
            .unwrap();
        let rejected: Vec<Vec<u8>> = sqlx::query_scalar("select raw from rejected")
            .fetch_all(&pool)
            .await
            .unwrap();
        (bodies, rejected)
    }};
}

/// Every stored line (records and rejected lines), as text.
async fn kept_lines(db: &TestDb) -> String {
    let (bodies, rejected) = match db.backend {
        Backend::Sqlite => raw_lines!(sqlx::SqlitePool::connect(&db.url).await.unwrap()),
        Backend::Postgres => raw_lines!(sqlx::PgPool::connect(&db.url).await.unwrap()),
    };
    let mut text = bodies.join("\n");
    for raw in rejected {
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(&raw));
    }
    text
}

/// The bytes of a SQLite database's files (the main file and its WAL).
fn sqlite_file_bytes(db: &TestDb) -> Vec<u8> {
    let path = db.url.trim_start_matches("sqlite://");
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        if let Ok(b) = std::fs::read(format!("{path}{suffix}")) {
            bytes.extend(b);
        }
    }
    bytes
}

async fn billing_retention_keeps_no_prompt_and_bills_the_same(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("generated.ndjson");
    let mut text = Vec::new();
    tally::synth::write_ndjson(&mut text, 2_000, 11).unwrap();
    std::fs::write(&generated, text).unwrap();
    let inputs = [
        fixture_arg("sample.ndjson"),
        fixture_arg("streamed.ndjson"),
        fixture_arg("batch_results.ndjson"),
        fixture_arg("seed/code_execution.ndjson"),
        fixture_arg("seed/files_preloaded.ndjson"),
        fixture_arg("seed/container_reuse.ndjson"),
        fixture_arg("seed/stream_cut_off.ndjson"),
        fixture_arg("seed/trailing_comma.ndjson"),
        generated.display().to_string(),
    ];

    let full = TestDb::new(backend).await;
    let billing = TestDb::new(backend).await;
    let mut summaries = Vec::new();
    for (db, retain) in [(&full, "full"), (&billing, "billing")] {
        let mut args = vec!["ingest", "--json", "--retain", retain, "--account", "acme"];
        args.extend(inputs.iter().map(String::as_str));
        let out = tally_output(db, &args);
        let mut summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // The problems' messages name the source files, which are the same.
        summary.as_object_mut().unwrap().remove("problems");
        summaries.push(summary);
    }
    assert_eq!(summaries[0], summaries[1]);
    assert!(summaries[0]["accepted"].as_u64().unwrap() > 2_000);
    assert!(summaries[0]["rejected"].as_u64().unwrap() >= 2);

    // Every figure is the same.
    for period in ["2025-05", "2026-03"] {
        for args in [
            vec!["invoices", "--period", period, "--format", "json"],
            vec!["invoices", "--period", period, "--format", "csv"],
            vec!["export", "--format", "focus", "--period", period],
        ] {
            let figures = tally_ok(&full, &args);
            assert!(figures.contains("claude-"), "{args:?}: {figures}");
            assert_eq!(figures, tally_ok(&billing, &args), "{args:?}");
        }
    }

    // Nothing of what people said is kept under billing; all of it under full.
    let (kept_full, kept_billing) = (kept_lines(&full).await, kept_lines(&billing).await);
    for said in SAID {
        assert!(kept_full.contains(said), "{said} is in the full lines");
        assert!(
            !kept_billing.contains(said),
            "{said} was kept under billing"
        );
    }
    if backend == Backend::Sqlite {
        let bytes = sqlite_file_bytes(&billing);
        for said in SAID {
            assert!(
                !bytes.windows(said.len()).any(|w| w == said.as_bytes()),
                "{said} is in the SQLite file"
            );
        }
    }

    // A record says what it kept.
    let key = "msg_01BqK2v4FnRs4xTjgL8EuZxz";
    let stored = billing.store().await.record(key).await.unwrap().unwrap();
    assert_eq!(stored.retention, "billing");
    assert!(stored.raw.contains("\"retained\":\"billing\""));
    let stored = full.store().await.record(key).await.unwrap().unwrap();
    assert_eq!(stored.retention, "full");
}

/// `tally serve --retain billing`: both ingest endpoints keep the billing view.
async fn the_server_keeps_what_its_retention_says(backend: Backend) {
    let app = TestApp::on(backend)
        .configure(|c| c.retention = tally::record::Retention::Billing)
        .serve()
        .await;
    let api = app.admin();
    let (status, body) = api
        .post_json(
            "/v1/usage",
            fixture("sample.ndjson").lines().next().unwrap().to_owned(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let batch = [
        fixture("streamed.ndjson"),
        fixture("seed/trailing_comma.ndjson"),
        fixture("seed/stream_cut_off.ndjson"),
    ]
    .concat();
    let (status, body) = api.post_json("/v1/usage/batch", batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["accepted"], &body["rejected"]),
        (&1.into(), &2.into())
    );
    let kept = kept_lines(&app.db).await;
    assert!(kept.contains("\"retained\":\"billing\""), "{kept}");
    for said in SAID {
        assert!(!kept.contains(said), "{said} was kept: {kept}");
    }
    let streamed = fixture("streamed.ndjson");
    let text_of_stream = "\"text_delta\"";
    assert!(streamed.contains(text_of_stream) && !kept.contains(text_of_stream));
}

on_both_backends!(
    billing_retention_keeps_no_prompt_and_bills_the_same,
    the_server_keeps_what_its_retention_says,
);
