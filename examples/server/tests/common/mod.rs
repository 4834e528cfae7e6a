//! The shared harness of the crm-server tests: the service in this process on a
//! loopback port, on a fresh PostgreSQL schema, with a workspace and API keys.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_channels::secrets::MemorySecretResolver;
use crm_core::access::{ApiKeys, ApiScope};
use crm_core::ids::WorkspaceId;
use crm_core::model::Workspace;
use crm_core::outreach::settings::WorkspaceSettings;
use crm_core::secret::ExposeSecret;
use crm_core::store::WorkspaceStore;
use crm_core::{Clock, SecretRef, SystemClock};
use crm_server::{Config, Service};
use crm_store_postgres::testing::{database_url, fresh_schema_name};
use crm_store_postgres::{PostgresConfig, PostgresStore};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every scope.
pub const ALL_SCOPES: [ApiScope; 5] = [
    ApiScope::ContactsRead,
    ApiScope::ContactsWrite,
    ApiScope::InboxRead,
    ApiScope::InboxWrite,
    ApiScope::SequencesWrite,
];

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `f` every 100 ms for up to a minute.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running service and what the tests need to talk to it.
pub struct Harness {
    pub base: String,
    pub workspace: WorkspaceId,
    pub keys: ApiKeys,
    pub token: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<crm_core::engine::ShutdownReport, crm_server::StartupError>>>,
}

impl Harness {
    /// Starts the service with `env` on top of the database settings, resolving the
    /// `secrets` (reference, value) in memory; issues a key with every scope.
    pub async fn start(env: &[(&str, String)], secrets: &[(&str, &str)]) -> Self {
        let schema = fresh_schema_name();
        let pg = PostgresConfig::default().with_schema(schema.clone());
        let store = PostgresStore::connect_and_migrate(&database_url(), pg)
            .await
            .expect("PostgreSQL at DATABASE_URL (see the repository README)");
        let workspace = WorkspaceId::new();
        let ws = Workspace::new(
            workspace,
            "Test",
            WorkspaceSettings::default(),
            SystemClock.now(),
        )
        .expect("a valid workspace");
        store.insert_workspace(&ws).await.expect("workspace stored");
        let keys = ApiKeys::new(Arc::new(store.clone()), Arc::new(SystemClock));
        let issued = keys
            .issue(workspace, "all", &ALL_SCOPES, None)
            .await
            .expect("a key");
        let token = issued.token.expose_secret().to_owned();

        let mut vars: BTreeMap<String, String> = BTreeMap::from([
            ("DATABASE_URL".to_owned(), database_url()),
            ("CRM_DB_SCHEMA".to_owned(), schema),
            ("CRM_BIND".to_owned(), format!("127.0.0.1:{}", free_port())),
            ("CRM_POLL_INTERVAL_MS".to_owned(), "50".to_owned()),
        ]);
        for (k, v) in env {
            vars.insert((*k).to_owned(), v.clone());
        }
        let config = Config::from(&vars).expect("a valid configuration");
        let resolver = secrets
            .iter()
            .fold(MemorySecretResolver::new(), |r, (k, v)| {
                r.with(&SecretRef::parse(k).expect("a reference"), *v)
            });
        let service = Service::start_with_secrets(config, Arc::new(resolver))
            .await
            .expect("the service starts");
        let base = format!("http://{}", service.local_addr().expect("an address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(service.serve(async {
            let _ = stopped.await;
        }));
        Self {
            base,
            workspace,
            keys,
            token,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// A key of the workspace with only `scopes`.
    pub async fn key_with(&self, scopes: &[ApiScope]) -> String {
        let issued = self
            .keys
            .issue(self.workspace, "limited", scopes, None)
            .await
            .expect("a key");
        issued.token.expose_secret().to_owned()
    }

    /// A JSON API client with the all-scopes key.
    pub fn api(&self) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: self.base.clone(),
            token: Some(self.token.clone()),
        }
    }

    /// Stops the service and checks the engine drained within its deadline.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let report = server
                .await
                .expect("the server task")
                .expect("the server stops cleanly");
            assert!(report.is_clean(), "the engine drained: {report:?}");
        }
    }
}

/// A JSON API client.
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

impl Api {
    /// The same client with another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            token: token.map(str::to_owned),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let value = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, headers, value)
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, _, value) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!(
            (200..300).contains(&status),
            "POST {path}: {status} {value}"
        );
        value
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, _, value) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {value}");
        value
    }
}
