//! `POST /webhooks/{provider}/{workspace_id}` (and `POST /webhooks/{provider}` with
//! `CRM_WEBHOOK_WORKSPACE`): every inbound provider of crm-channels, through the
//! Engine's inbound pipeline. `GET` on the same paths answers Meta's `hub.challenge`.
//!
//! | answer | when |
//! |---|---|
//! | 200 `{"outcome":"accepted"}` | verified and handled |
//! | 200 `{"outcome":"duplicate"}` | this delivery was handled before |
//! | 200, the challenge as body | Meta's subscription handshake |
//! | 400 `malformed` | authentic but unreadable |
//! | 401 `bad_signature` | missing, wrong or expired signature, refused handshake |
//! | 404 `unknown_provider` / `unknown_workspace` | no such provider configured, no such workspace |
//! | 413 `too_large` | body over `CRM_WEBHOOK_MAX_BODY_BYTES` |
//! | 503 `in_progress` + `Retry-After` | another process is handling this delivery |

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use crm_channels::webhooks::WebhookConfig;
use crm_channels::webhooks::cal_com::CalComWebhook;
use crm_channels::webhooks::calendly::CalendlyWebhook;
use crm_channels::webhooks::meta::InstagramWebhook;
use crm_channels::webhooks::resend::ResendWebhook;
use crm_channels::webhooks::slack::SlackWebhook;
use crm_channels::webhooks::twilio::TwilioWebhook;
use crm_core::ids::WorkspaceId;
use crm_core::outreach::inbound::{DeliveryOutcome, InboundEndpoint};
use crm_core::secret::{SecretResolver, SecretString};
use crm_core::{InboundWebhook, WebhookRequest};
use serde_json::json;

use crate::api::ApiError;
use crate::config::{Config, WebhookSecrets};
use crate::state::AppState;

/// Why a configured webhook provider could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookSetupError {
    /// A secret reference could not be resolved.
    #[error("webhook provider {provider}: secret {reference} could not be resolved")]
    Secret {
        /// The provider.
        provider: &'static str,
        /// The reference (never the value).
        reference: String,
        /// Why.
        #[source]
        source: crm_core::secret::SecretError,
    },
    /// The verifier refused its secret (empty, or not the provider's format).
    #[error("webhook provider {provider}: the signing secret is unusable")]
    Verifier {
        /// The provider.
        provider: &'static str,
        /// Why.
        #[source]
        source: crm_core::WebhookError,
    },
}

/// The verifier of every configured inbound provider, by URL name, and the
/// workspaces known to exist.
#[derive(Debug)]
pub struct WebhookEndpoints {
    verifiers: BTreeMap<&'static str, Arc<dyn InboundWebhook>>,
    known: Mutex<HashSet<WorkspaceId>>,
}

impl WebhookEndpoints {
    /// Builds a verifier for every provider of `config.webhooks`, resolving their
    /// secrets through `secrets` now, so a bad secret stops the start.
    ///
    /// # Errors
    /// A secret that cannot be resolved or that its verifier refuses.
    pub async fn build(
        config: &Config,
        secrets: &dyn SecretResolver,
    ) -> Result<Self, WebhookSetupError> {
        let limits = WebhookConfig::new().with_max_body_bytes(config.webhook_max_body);
        let mut verifiers: BTreeMap<&'static str, Arc<dyn InboundWebhook>> = BTreeMap::new();
        for (provider, refs) in &config.webhooks {
            let secret = resolve(provider, &refs.secret, secrets).await?;
            let verifier = verifier(provider, secret, refs, secrets, limits)
                .await?
                .map_err(|source| WebhookSetupError::Verifier { provider, source })?;
            verifiers.insert(provider, verifier);
        }
        Ok(Self {
            verifiers,
            known: Mutex::new(HashSet::new()),
        })
    }

    /// The configured providers' URL names.
    pub fn providers(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.verifiers.keys().copied()
    }
}

async fn resolve(
    provider: &'static str,
    reference: &crm_core::SecretRef,
    secrets: &dyn SecretResolver,
) -> Result<SecretString, WebhookSetupError> {
    secrets
        .resolve(reference)
        .await
        .map_err(|source| WebhookSetupError::Secret {
            provider,
            reference: reference.to_string(),
            source,
        })
}

type Built = Result<Arc<dyn InboundWebhook>, crm_core::WebhookError>;

async fn verifier(
    provider: &'static str,
    secret: SecretString,
    refs: &WebhookSecrets,
    secrets: &dyn SecretResolver,
    limits: WebhookConfig,
) -> Result<Built, WebhookSetupError> {
    fn arc<W: InboundWebhook>(w: W) -> Arc<dyn InboundWebhook> {
        Arc::new(w)
    }
    Ok(match provider {
        "resend" => ResendWebhook::new(secret, limits).map(arc),
        "twilio" => TwilioWebhook::new(secret, limits).map(arc),
        "instagram" => {
            let token = match &refs.verify_token {
                Some(r) => Some(resolve(provider, r, secrets).await?),
                None => None,
            };
            InstagramWebhook::new(secret, limits).map(|w| match token {
                Some(token) => arc(w.with_verify_token(token)),
                None => arc(w),
            })
        }
        "cal_com" => CalComWebhook::new(secret, limits).map(arc),
        "calendly" => CalendlyWebhook::new(secret, limits).map(arc),
        "slack" => SlackWebhook::new(secret, limits).map(arc),
        other => Err(crm_core::WebhookError::InvalidSecret(format!(
            "no verifier for provider {other}"
        ))),
    })
}

/// `/webhooks/{provider}/{workspace_id}`.
pub async fn receive_for_workspace(
    State(state): State<AppState>,
    Path((provider, workspace)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let workspace = match workspace.parse::<WorkspaceId>() {
        Ok(ws) => ws,
        Err(_) => return unknown_workspace(&state, &provider),
    };
    receive(&state, &provider, workspace, method, &uri, headers, body).await
}

/// `/webhooks/{provider}`: the workspace of `CRM_WEBHOOK_WORKSPACE`.
pub async fn receive_default(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(workspace) = state.config.webhook_workspace else {
        state.metrics.count_webhook(&provider, "unknown_workspace");
        return ApiError::not_found(
            "this URL needs CRM_WEBHOOK_WORKSPACE; use /webhooks/{provider}/{workspace_id}",
        )
        .into_response();
    };
    receive(&state, &provider, workspace, method, &uri, headers, body).await
}

fn unknown_workspace(state: &AppState, provider: &str) -> Response {
    state.metrics.count_webhook(provider, "unknown_workspace");
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_workspace",
        "no such workspace",
    )
    .into_response()
}

async fn receive(
    state: &AppState,
    provider: &str,
    workspace: WorkspaceId,
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let endpoints = &state.webhooks;
    let Some(verifier) = endpoints.verifiers.get(provider) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_provider",
            "no webhook provider of that name is configured",
        )
        .into_response();
    };
    let provider = verifier.provider();
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            state.metrics.count_webhook(provider, "too_large");
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is over {} bytes", state.config.webhook_max_body),
            )
            .into_response();
        }
        Err(rejection) => {
            state.metrics.count_webhook(provider, "malformed");
            return ApiError::new(StatusCode::BAD_REQUEST, "malformed", rejection.body_text())
                .into_response();
        }
    };
    if !workspace_exists(state, workspace).await {
        return unknown_workspace(state, provider);
    }
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = WebhookRequest {
        method,
        url: format!("{}{}", state.config.public_url, path_and_query),
        headers,
        body: body.to_vec(),
    };
    let endpoint = InboundEndpoint::new(workspace, verifier.clone());
    let outcome = state
        .engine
        .inbound_pipeline()
        .receive(&endpoint, &request)
        .await;
    state.metrics.count_webhook(provider, outcome.as_str());
    answer(outcome)
}

/// Whether the workspace is registered; remembered once seen (workspaces are never
/// deleted), so a delivery costs no extra query after the first.
async fn workspace_exists(state: &AppState, workspace: WorkspaceId) -> bool {
    let endpoints = &state.webhooks;
    if endpoints
        .known
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&workspace)
    {
        return true;
    }
    let found = state.engine.store().get_workspace(workspace).await.is_ok();
    if found {
        endpoints
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(workspace);
    }
    found
}

fn answer(outcome: DeliveryOutcome) -> Response {
    let status = StatusCode::from_u16(outcome.http_status()).unwrap_or(StatusCode::OK);
    let code = outcome.as_str();
    match outcome {
        DeliveryOutcome::Challenge(challenge) => (StatusCode::OK, challenge).into_response(),
        DeliveryOutcome::Accepted(_) | DeliveryOutcome::Duplicate { .. } => {
            (status, Json(json!({ "outcome": code }))).into_response()
        }
        DeliveryOutcome::InProgress { retry_after, .. } => ApiError::new(
            status,
            "in_progress",
            "this delivery is being handled; retry shortly",
        )
        .with_retry_after(retry_after.as_secs())
        .into_response(),
        DeliveryOutcome::BadSignature(e) => {
            ApiError::new(status, "bad_signature", e.to_string()).into_response()
        }
        DeliveryOutcome::Malformed(e) => {
            ApiError::new(status, "malformed", e.to_string()).into_response()
        }
        DeliveryOutcome::TooLarge { limit, .. } => ApiError::new(
            status,
            "too_large",
            format!("the body is over {limit} bytes"),
        )
        .into_response(),
        DeliveryOutcome::Misconfigured(e) => {
            ApiError::internal("webhook verifier", &e).into_response()
        }
        DeliveryOutcome::Failed(e) if e.is_retryable() => {
            ApiError::unavailable("inbound pipeline", &e).into_response()
        }
        DeliveryOutcome::Failed(e) => ApiError::internal("inbound pipeline", &e).into_response(),
        other => ApiError::new(status, "unhandled", other.as_str()).into_response(),
    }
}
