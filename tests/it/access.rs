//! Access control (docs/running.md): the admin token, account keys, and no key, on
//! every endpoint; `tally keys create|list|revoke`. Both backends.

use crate::support::{Backend, TestApp, TestDb, create_key, fixture, tally};
use reqwest::StatusCode;
use serde_json::Value;

const ADMIN: &str = "admin-secret";

fn seed(account: &str, id: &str) -> String {
    let mut v: Value = serde_json::from_str(&fixture("seed/files_preloaded.ndjson")).unwrap();
    v["account"] = account.into();
    v["response"]["id"] = id.into();
    v["response"]["container"]["id"] = format!("container-{id}").into();
    v.to_string()
}

async fn every_endpoint_for_every_role(backend: Backend) {
    let app = TestApp::on(backend)
        .admin_token(ADMIN)
        .account_key("acme")
        .serve()
        .await;
    let acme = app.key().to_owned();
    let post =
        |path: &str, key: Option<&str>, body: String| app.api(key).post(path).body(body).send();
    let get = |path: &str, key: Option<&str>| app.api(key).get(path).send();

    // No key, or a wrong one: 401 everywhere under /v1.
    for key in [None, Some("tk_wrong")] {
        assert_eq!(
            post("/v1/usage", key, seed("acme", "m0"))
                .await
                .unwrap()
                .status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            post("/v1/usage/batch", key, seed("acme", "m0"))
                .await
                .unwrap()
                .status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get("/v1/accounts/acme/invoices/2025-05", key)
                .await
                .unwrap()
                .status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            post(
                "/v1/accounts/acme/invoices/2025-05/finalize",
                key,
                String::new()
            )
            .await
            .unwrap()
            .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Probes stay open.
    assert_eq!(
        get("/healthz", None).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/metrics", None).await.unwrap().status(),
        StatusCode::OK
    );

    // The account key ingests for its own account only.
    assert_eq!(
        post("/v1/usage", Some(&acme), seed("acme", "m1"))
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    let other = post("/v1/usage", Some(&acme), seed("globex", "m2"))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["error"]["type"], "forbidden");
    // A bare response is filed under the key's account.
    let bare: Value = serde_json::from_str(&seed("x", "m3")).unwrap();
    let r = post("/v1/usage", Some(&acme), bare["response"].to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap()["account"], "acme");
    assert_eq!(
        post("/v1/usage?account=globex", Some(&acme), seed("acme", "m4"))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    // In a batch, lines for other accounts are rejected; the rest is kept.
    let batch = [seed("acme", "m5"), seed("globex", "m6"), seed("acme", "m7")].join("\n");
    let v: Value = post("/v1/usage/batch", Some(&acme), batch)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    assert_eq!(v["results"][1]["error"]["type"], "forbidden");
    let store = app.store.clone();
    assert!(
        store.record("m2").await.unwrap().is_none() && store.record("m6").await.unwrap().is_none()
    );

    // Reading: its own invoices; another account's do not exist for it.
    assert_eq!(
        get("/v1/accounts/acme/invoices/2025-05", Some(&acme))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/v1/accounts/globex/invoices/2025-05", Some(&acme))
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    // Finalizing is for the admin.
    assert_eq!(
        post(
            "/v1/accounts/acme/invoices/2025-05/finalize",
            Some(&acme),
            String::new()
        )
        .await
        .unwrap()
        .status(),
        StatusCode::FORBIDDEN
    );

    // The admin token does everything.
    assert_eq!(
        post("/v1/usage", Some(ADMIN), seed("globex", "m8"))
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        get("/v1/accounts/globex/invoices/2025-05", Some(ADMIN))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        post(
            "/v1/accounts/acme/invoices/2025-05/finalize",
            Some(ADMIN),
            String::new()
        )
        .await
        .unwrap()
        .status(),
        StatusCode::OK
    );

    // A revoked key stops working at once.
    let id = store.list_keys().await.unwrap()[0].id;
    assert!(store.revoke_key(id).await.unwrap());
    assert_eq!(
        post("/v1/usage", Some(&acme), seed("acme", "m9"))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn without_admin_token_account_keys_still_restrict(backend: Backend) {
    let app = TestApp::on(backend).account_key("acme").serve().await;
    // Loopback, no admin token: no bearer acts as admin…
    let r = app
        .anonymous()
        .post("/v1/usage")
        .body(seed("globex", "g1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // …but an account key is still held to its account, and a bad key is refused.
    let r = app
        .account()
        .post("/v1/usage")
        .body(seed("globex", "g2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .api(Some("tk_nope"))
        .get("/v1/accounts/acme/invoices/2025-05")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

async fn keys_commands(backend: Backend) {
    let db = TestDb::new(backend).await;
    let key = create_key(&db, "acme");
    assert!(key.starts_with("tk_") && key.len() == 67, "{key}");
    let (_, text, _) = tally(&db, &["keys", "list", "--json"]);
    assert!(!text.contains(&key), "the key itself is never shown again");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v[0]["account"], "acme");
    assert!(key.starts_with(v[0]["prefix"].as_str().unwrap()));
    let id = v[0]["id"].as_i64().unwrap().to_string();
    let (revoke, _, _) = tally(&db, &["keys", "revoke", &id]);
    assert_eq!(revoke, 0);
    let (again, _, _) = tally(&db, &["keys", "revoke", &id]);
    assert_eq!(again, 1);
    let (bad, _, _) = tally(&db, &["keys", "create", "--account", "no spaces"]);
    assert_eq!(bad, 1);
}

on_both_backends!(
    every_endpoint_for_every_role,
    without_admin_token_account_keys_still_restrict,
    keys_commands
);
