//! Test support for the cross-process tests: a fresh schema on the PostgreSQL at
//! `DATABASE_URL`, the loopback fake provider, the server as a real process, signed
//! webhooks, and an HTTP client for the JSON API.
//!
//! Each test binary uses part of it.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::panic,
    clippy::expect_used,
    clippy::unwrap_used
)]

pub mod api;
pub mod env;
pub mod fake_provider;
pub mod outreach;
pub mod process;
pub mod signing;

use std::time::Duration;

use crm_store_postgres::PostgresStore;
use crm_store_postgres::testing::{database_url, fresh_store};

use fake_provider::FakeProvider;
use process::ServerProcess;
use signing::StandardWebhooksSigner;

/// The bearer key the fake provider accepts, and the `secret://` reference the
/// server resolves it through.
pub const RESEND_KEY: &str = "re_test_key_for_the_fake_provider";
const RESEND_KEY_REF: &str = "secret://resend/api_key:1";
const RESEND_WEBHOOK_REF: &str = "secret://resend/webhook:1";
/// Every scope an API key can have.
pub const ALL_SCOPES: &str = "contacts:read,contacts:write,inbox:read,inbox:write,sequences:write";
/// The sender every workspace's email goes out as.
pub const FROM: &str = "Sales <sales@example.com>";

/// Fails the test, saying how to provide a server, when no PostgreSQL answers at
/// `DATABASE_URL`.
pub async fn require_postgres() {
    let url = database_url();
    let attempt = tokio::time::timeout(
        Duration::from_secs(10),
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&url),
    )
    .await;
    match attempt {
        Ok(Ok(pool)) => pool.close().await,
        Ok(Err(e)) => panic!(
            "the crm-server tests start the server against a real PostgreSQL, and none \
             answered at DATABASE_URL ({}): {e}. Start PostgreSQL on 127.0.0.1:5432 with a \
             `postgres` user allowed to connect without a password (trust auth), or set \
             DATABASE_URL=postgres://user@host:port/db to a server and database where that \
             user may create schemas.",
            redacted(&url)
        ),
        Err(_) => panic!(
            "the crm-server tests need a real PostgreSQL; connecting to DATABASE_URL ({}) \
             did not finish within 10 s. Start PostgreSQL on 127.0.0.1:5432 (trust auth for \
             `postgres`) or set DATABASE_URL to a reachable server.",
            redacted(&url)
        ),
    }
}

fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = url[scheme + 3..at].split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// One deployment under test: a fresh schema, the fake provider, the webhook signing
/// secret, and the environment every server process of it starts with.
pub struct Deployment {
    /// The test's own handle on the schema (setup the API does not offer, and checks).
    pub store: PostgresStore,
    /// The loopback stand-in for Resend.
    pub provider: FakeProvider,
    /// Signs Resend webhooks with the secret the servers verify with.
    pub signer: StandardWebhooksSigner,
    env: Vec<(String, String)>,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("schema", &self.store.schema())
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl Deployment {
    /// A fresh migrated schema and a fake provider answering after `provider_latency`.
    pub async fn new(provider_latency: Duration) -> Self {
        require_postgres().await;
        let store = fresh_store().await;
        let provider = FakeProvider::start(RESEND_KEY, provider_latency).await;
        let secret = StandardWebhooksSigner::random_secret();
        let env = vec![
            (env::DATABASE_URL.to_owned(), database_url()),
            (env::SCHEMA.to_owned(), store.schema().to_owned()),
            (env::RESEND_API_KEY.to_owned(), RESEND_KEY_REF.to_owned()),
            (env::secret_variable(RESEND_KEY_REF), RESEND_KEY.to_owned()),
            (env::RESEND_FROM.to_owned(), FROM.to_owned()),
            (env::RESEND_BASE_URL.to_owned(), provider.base_url()),
            (
                env::WEBHOOK_RESEND_SECRET.to_owned(),
                RESEND_WEBHOOK_REF.to_owned(),
            ),
            (env::secret_variable(RESEND_WEBHOOK_REF), secret.clone()),
            (env::POLL_INTERVAL_MS.to_owned(), "100".to_owned()),
            ("RUST_LOG".to_owned(), "info".to_owned()),
            ("NO_COLOR".to_owned(), "1".to_owned()),
        ];
        Self {
            store,
            provider,
            signer: StandardWebhooksSigner::new(&secret),
            env,
        }
    }

    /// Sets (or replaces) a variable for the servers started from now on.
    pub fn set_env(&mut self, name: &str, value: impl Into<String>) {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_owned(), value.into()));
    }

    /// Runs an admin subcommand of `crm-server` (`workspaces create ...`, `keys create
    /// ...`) against the deployment's database and returns what it printed, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_crm-server"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap_or_else(|e| panic!("cannot run crm-server {args:?}: {e}"));
        assert!(
            output.status.success(),
            "crm-server {args:?} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Registers a workspace through the CLI and returns its id.
    pub fn create_workspace(&self, name: &str) -> String {
        self.cli(&["workspaces", "create", "--name", name])
    }

    /// Issues an API key of `workspace` with every scope through the CLI and returns
    /// the token.
    pub fn create_key(&self, workspace: &str) -> String {
        let printed = self.cli(&[
            "keys",
            "create",
            "--workspace",
            workspace,
            "--scopes",
            ALL_SCOPES,
            "--name",
            "tests",
        ]);
        // The token is the last word printed (the CLI may print a label before it).
        printed
            .split_whitespace()
            .last()
            .unwrap_or_else(|| panic!("keys create printed nothing"))
            .to_owned()
    }

    /// Starts a server process named `label` (its engine name too).
    pub async fn start_server(&self, label: &str) -> ServerProcess {
        let mut env = self.env.clone();
        env.push((env::ENGINE_NAME.to_owned(), label.to_owned()));
        ServerProcess::start(label, env).await
    }
}

/// How long [`eventually`] waits: the server's loops poll every 100 ms here, but the
/// machine may be shared with builds.
pub const EVENTUALLY: Duration = Duration::from_secs(90);

/// Polls `check` every 100 ms until it gives a value, or fails naming `what` after
/// [`EVENTUALLY`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + EVENTUALLY;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {EVENTUALLY:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
