//! [`AppState`]: what every route shares.

use std::sync::{Arc, Mutex};

use crm_core::engine::{Engine, RunningEngine};
use crm_core::outreach::control::SequenceControl;
use crm_store_postgres::PostgresStore;

use crate::api::auth::KeyAuth;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::web::csrf::CsrfKey;
use crate::webhooks::WebhookEndpoints;

/// The shared state of the routes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine: every handle the routes call.
    pub engine: Engine,
    /// The store, for the health check's own queries and the metrics' counts.
    pub store: PostgresStore,
    /// Enrollment pause, resume and stop.
    pub control: SequenceControl,
    /// The configuration.
    pub config: Arc<Config>,
    /// In-process counters.
    pub metrics: Arc<Metrics>,
    /// The inbound providers' verifiers.
    pub webhooks: Arc<WebhookEndpoints>,
    /// API keys and the per-key rate limit.
    pub auth: KeyAuth,
    /// The key of the inbox page's CSRF tokens.
    pub csrf: CsrfKey,
    /// The engine's loops while they run (taken out at shutdown), for the health check.
    pub running: Arc<Mutex<Option<RunningEngine>>>,
}
