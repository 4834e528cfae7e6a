//! Wiring: the store, the engine on it, the routes, and serving until a shutdown
//! signal.

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use crm_channels::resolver::ProviderChannels;
use crm_channels::secrets::EnvSecretResolver;
use crm_core::DynStore;
use crm_core::access::{ApiKeyRateLimiter, ApiKeys};
use crm_core::engine::{BuildError, Engine, EngineConfig, ShutdownReport, StartError};
use crm_core::outreach::control::SequenceControl;
use crm_core::secret::{ExposeSecret, SecretResolver};
use crm_store_postgres::{PostgresConfig, PostgresStore};
use tokio::net::TcpListener;

use crate::api::ApiError;
use crate::api::auth::{KeyApprovers, KeyAuth};
use crate::channels::HostChannels;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::web::csrf::CsrfKey;
use crate::webhooks::{self, WebhookEndpoints, WebhookSetupError};
use crate::{api, health, web};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database could not be reached or migrated.
    #[error("the database could not be opened or migrated")]
    Store(#[source] crm_core::StoreError),
    /// The engine could not be built.
    #[error("the engine could not be built")]
    Engine(#[source] BuildError),
    /// The engine's loops could not be started.
    #[error("the engine could not be started")]
    Start(#[source] StartError),
    /// A webhook provider could not be set up.
    #[error(transparent)]
    Webhooks(#[from] WebhookSetupError),
    /// `CRM_CSRF_SECRET` could not be resolved.
    #[error("CRM_CSRF_SECRET could not be resolved")]
    CsrfSecret {
        /// Why.
        #[source]
        source: crm_core::SecretError,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// Connects to the database named by `config` and applies the migrations.
///
/// # Errors
/// [`StartupError::Store`].
pub async fn open_store(config: &Config) -> Result<PostgresStore, StartupError> {
    let pg = PostgresConfig::default()
        .with_schema(config.schema.clone())
        .with_max_connections(config.max_connections);
    PostgresStore::connect_and_migrate(&config.database_url, pg)
        .await
        .map_err(StartupError::Store)
}

/// A started service: its engine loops run; [`serve`](Self::serve) answers HTTP.
#[derive(Debug)]
pub struct Service {
    state: AppState,
    listener: TcpListener,
}

impl Service {
    /// Opens the store, builds and starts the engine, and binds the listen address.
    ///
    /// # Errors
    /// See [`StartupError`].
    pub async fn start(config: Config) -> Result<Self, StartupError> {
        Self::start_with_secrets(config, Arc::new(EnvSecretResolver::new())).await
    }

    /// [`start`](Self::start) resolving `secret://` references through `secrets`
    /// instead of environment variables (a host's secret store, a test's map).
    ///
    /// # Errors
    /// See [`StartupError`].
    pub async fn start_with_secrets(
        config: Config,
        secrets: Arc<dyn SecretResolver>,
    ) -> Result<Self, StartupError> {
        let store = open_store(&config).await?;
        let metrics = Arc::new(Metrics::default());
        let webhooks = WebhookEndpoints::build(&config, &*secrets).await?;
        let channels = HostChannels::new(
            ProviderChannels::new(secrets.clone()),
            config.channels.clone(),
            config.base_urls.clone(),
            metrics.clone(),
        );
        let csrf = match &config.csrf_secret {
            Some(reference) => {
                let secret = secrets
                    .resolve(reference)
                    .await
                    .map_err(|source| StartupError::CsrfSecret { source })?;
                CsrfKey::from_secret(secret.expose_secret().as_bytes())
            }
            None => CsrfKey::random(),
        };
        let dyn_store: Arc<DynStore> = Arc::new(store.clone());
        let mut engine_config = EngineConfig::default()
            .with_dry_run(config.dry_run)
            .with_shutdown_deadline(config.shutdown_deadline);
        if let Some(name) = &config.engine_name {
            engine_config = engine_config.with_name(name.clone());
        }
        if let Some(poll) = config.poll_interval {
            engine_config = engine_config.with_poll_interval(poll);
        }
        let dispatcher = config.dispatch.apply(engine_config.dispatcher.clone());
        engine_config = engine_config.with_dispatcher(dispatcher);
        let clock: Arc<dyn crm_core::Clock> = Arc::new(crm_core::SystemClock);
        let keys = ApiKeys::new(dyn_store.clone(), clock.clone());
        let per_minute = NonZeroU32::new(config.rate_limit_per_minute).unwrap_or(NonZeroU32::MIN);
        let auth = KeyAuth {
            keys: keys.clone(),
            limiter: Arc::new(ApiKeyRateLimiter::new(per_minute, clock.clone())),
        };
        let engine = Engine::builder(dyn_store.clone())
            .clock(clock.clone())
            .channels(Arc::new(channels))
            .approvers(Arc::new(KeyApprovers::new(keys, clock)))
            .config(engine_config)
            .build()
            .map_err(StartupError::Engine)?;
        let running = engine.start().map_err(StartupError::Start)?;
        let listener =
            TcpListener::bind(config.bind)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: config.bind,
                    source,
                })?;
        let state = AppState {
            control: SequenceControl::new(dyn_store, engine.clock().clone()),
            engine,
            auth,
            csrf,
            store,
            config: Arc::new(config),
            metrics,
            webhooks: Arc::new(webhooks),
            running: Arc::new(Mutex::new(Some(running))),
        };
        Ok(Self { state, listener })
    }

    /// The address the service listens on (the port the OS chose for port 0).
    ///
    /// # Errors
    /// The socket's address cannot be read.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `signal` completes, then stops taking requests, lets the ones in
    /// flight finish, and shuts the engine down (in-flight sends finish within
    /// `CRM_SHUTDOWN_SECONDS`).
    ///
    /// # Errors
    /// [`StartupError::Serve`] when the server fails.
    pub async fn serve(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<ShutdownReport, StartupError> {
        let state = self.state.clone();
        let app = router(self.state);
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(signal)
            .await;
        let running = state
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let report = match running {
            Some(running) => running.shutdown().await,
            None => ShutdownReport::default(),
        };
        served.map_err(StartupError::Serve)?;
        Ok(report)
    }
}

/// Every route of the service over `state`.
pub fn router(state: AppState) -> Router {
    let webhook_cap = state.config.webhook_max_body;
    let api_cap = state.config.api_max_body;
    let webhooks = Router::new()
        .route(
            "/webhooks/{provider}",
            post(webhooks::receive_default).get(webhooks::receive_default),
        )
        .route(
            "/webhooks/{provider}/{workspace}",
            post(webhooks::receive_for_workspace).get(webhooks::receive_for_workspace),
        )
        .layer(DefaultBodyLimit::max(webhook_cap));
    Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(metrics))
        .merge(webhooks)
        .merge(api::routes().layer(DefaultBodyLimit::max(api_cap)))
        .merge(web::routes().layer(DefaultBodyLimit::max(api_cap)))
        .fallback(not_found)
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.render(state.store.pool()).await {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::unavailable("metrics", &e).into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
