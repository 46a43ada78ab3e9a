//! A running tally: [`TestServer`] (a server on a loopback port), and
//! [`TestApp`], the server together with its database, its admin token and
//! an account key, and clients already holding those credentials.
//!
//! ```ignore
//! let app = TestApp::on(Backend::Postgres)
//!     .admin_token("s3cret")
//!     .account_key("acme")
//!     .serve()
//!     .await;
//! app.account().post("/v1/usage").body(line).send().await?;
//! ```

use std::sync::Arc;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use tally::http::{AppState, ServeConfig};
use tally::ledger::Ledger;
use tally::store::Store;

use super::{Backend, TestDb, create_key, tally};

/// A tally HTTP server on a loopback port, stopped when dropped.
pub struct TestServer {
    pub base: String,
    pub store: Arc<dyn Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start(db: &TestDb, config: ServeConfig) -> TestServer {
        TestServer::serve(db.store().await, config).await
    }

    /// Like `start`, on a store the test opened itself.
    pub async fn serve(store: Arc<dyn Store>, config: ServeConfig) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AppState::new(Ledger::start(store.clone()), config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            tally::http::serve(listener, state, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            base: format!("http://{addr}"),
            store,
            stop: Some(stop),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A step preparing the ledger before the server starts.
type Prepare<'a> = Box<dyn FnOnce(&TestDb) + 'a>;

/// How to set up a [`TestApp`]: see [`TestApp::on`].
#[must_use = "nothing runs until `serve`"]
pub struct TestAppBuilder<'a> {
    backend: Backend,
    config: ServeConfig,
    account: Option<String>,
    given: Vec<Prepare<'a>>,
}

impl<'a> TestAppBuilder<'a> {
    /// Requests must carry this token (or an account key); without one the
    /// server is loopback-only and a request with no key acts as the admin.
    pub fn admin_token(mut self, token: &str) -> Self {
        self.config.admin_token = Some(token.to_owned());
        self
    }

    /// Create a key for `account` with the CLI before the server starts; see
    /// [`TestApp::account`].
    pub fn account_key(mut self, account: &str) -> Self {
        self.account = Some(account.to_owned());
        self
    }

    /// Change any other setting of the server.
    pub fn configure(mut self, change: impl FnOnce(&mut ServeConfig)) -> Self {
        change(&mut self.config);
        self
    }

    /// Prepare the ledger before the server starts (and before the account
    /// key is created), in the order given: records, budgets, price books.
    pub fn given(mut self, prepare: impl FnOnce(&TestDb) + 'a) -> Self {
        self.given.push(Box::new(prepare));
        self
    }

    /// A fresh database, prepared, migrated, with the account key, and the
    /// server running on it.
    pub async fn serve(self) -> TestApp {
        let db = TestDb::new(self.backend).await;
        self.serve_on(db).await
    }

    /// The same on a database the test has already prepared.
    pub async fn serve_on(self, db: TestDb) -> TestApp {
        assert_eq!(db.backend, self.backend, "the app's backend");
        for prepare in self.given {
            prepare(&db);
        }
        db.store().await;
        let key = self.account.map(|account| create_key(&db, &account));
        let server = TestServer::start(&db, self.config.clone()).await;
        TestApp {
            store: server.store.clone(),
            server,
            db,
            config: self.config,
            key,
            http: reqwest::Client::new(),
        }
    }
}

/// A tally server running on a fresh database of its own; the server stops
/// and the database goes away when this is dropped.
pub struct TestApp {
    /// Declared first: dropped (stopped) before its database is.
    pub server: TestServer,
    /// The server's store.
    pub store: Arc<dyn Store>,
    pub db: TestDb,
    config: ServeConfig,
    key: Option<String>,
    /// One connection pool for every [`Api`] of this app.
    http: reqwest::Client,
}

impl TestApp {
    /// Start describing an app on `backend`: no admin token, no account key,
    /// the default server settings, an empty ledger.
    pub fn on<'a>(backend: Backend) -> TestAppBuilder<'a> {
        TestAppBuilder {
            backend,
            config: ServeConfig::default(),
            account: None,
            given: Vec::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// The settings the server runs with.
    pub fn config(&self) -> ServeConfig {
        self.config.clone()
    }

    /// The account key; panics when the app has none.
    pub fn key(&self) -> &str {
        self.key
            .as_deref()
            .expect("the app has no account key: `.account_key(…)`")
    }

    /// A client acting as the admin: with the admin token, or with no key
    /// when the app has no token (loopback requests then act as the admin).
    pub fn admin(&self) -> Api {
        self.api(self.config.admin_token.as_deref())
    }

    /// A client with the account key.
    pub fn account(&self) -> Api {
        self.api(Some(self.key()))
    }

    /// A client sending no key.
    pub fn anonymous(&self) -> Api {
        self.api(None)
    }

    /// A client sending `bearer` as its key, or none.
    pub fn api(&self, bearer: Option<&str>) -> Api {
        Api {
            http: self.http.clone(),
            base: self.server.base.clone(),
            bearer: bearer.map(str::to_owned),
        }
    }

    /// Another server on the app's database, with the app's settings as
    /// `change` leaves them.
    pub async fn another_server(&self, change: impl FnOnce(&mut ServeConfig)) -> TestServer {
        let mut config = self.config();
        change(&mut config);
        TestServer::start(&self.db, config).await
    }

    /// Run the `tally` binary on the app's database: (exit code, stdout,
    /// stderr).
    pub fn tally(&self, args: &[&str]) -> (i32, String, String) {
        tally(&self.db, args)
    }
}

/// A client of one [`TestApp`] with one key (or none): requests built with
/// it go to the app's server and carry the key as a bearer token.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    bearer: Option<String>,
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The same client, key and connection pool, sending to `server`.
    pub fn to(&self, server: &TestServer) -> Api {
        Api {
            base: server.base.clone(),
            ..self.clone()
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.bearer {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    pub fn put(&self, path: &str) -> RequestBuilder {
        self.request(Method::PUT, path)
    }

    /// The same key on a connection pool of its own. The server closes a
    /// connection whose body it refused unread; the next request on a fresh
    /// client does not race that close.
    pub fn fresh(&self) -> Api {
        Api {
            http: reqwest::Client::new(),
            ..self.clone()
        }
    }

    /// POST `body` to `path` on a fresh client (see [`Api::fresh`]): the
    /// status and the JSON answer.
    pub async fn post_json(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let resp = self.fresh().post(path).body(body).send().await.unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        (status, body)
    }

    /// GET `path`: the JSON answer, whatever the status.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).send().await.unwrap().json().await.unwrap()
    }

    /// GET `path`: the body as text, whatever the status.
    pub async fn get_text(&self, path: &str) -> String {
        self.get(path).send().await.unwrap().text().await.unwrap()
    }

    /// GET `path`: the status alone.
    pub async fn status_of_get(&self, path: &str) -> StatusCode {
        self.get(path).send().await.unwrap().status()
    }
}
