//! One call per provider request: verify, deduplicate in the store, parse, resolve the
//! workspace, hand every event to the [`InboundHandler`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::Instrument as _;

use super::{InboundError, InboundHandler, InboundOutcome};
use crate::clock::Clock;
use crate::error::StoreError;
use crate::ids::WorkspaceId;
use crate::inbound::{InboundWebhook, WebhookError, WebhookRequest, verify_webhook};
use crate::outreach::settings::SettingsProvider;
use crate::store::InboundPipelineStore;

/// One workspace's webhook endpoint for one provider: the verifier and parser built
/// with the signing secret of the provider account that workspace configured.
///
/// **How the workspace is resolved.** Per endpoint: a host mounts one URL per
/// workspace and provider (for example `/hooks/{workspace}/resend`) and registers that
/// URL with the workspace's provider account, so the URL names the workspace and the
/// workspace's own secret verifies the request. A request signed with another
/// workspace's secret fails verification, so one workspace cannot write into another.
/// The provider message ids in the events are then looked up inside that workspace
/// only.
#[derive(Debug, Clone)]
pub struct InboundEndpoint {
    workspace_id: WorkspaceId,
    webhook: Arc<dyn InboundWebhook>,
}

impl InboundEndpoint {
    /// The endpoint of `workspace_id` verified and parsed by `webhook`.
    #[must_use]
    pub fn new(workspace_id: WorkspaceId, webhook: Arc<dyn InboundWebhook>) -> Self {
        Self {
            workspace_id,
            webhook,
        }
    }

    /// The workspace the endpoint belongs to.
    #[must_use]
    pub fn workspace_id(&self) -> WorkspaceId {
        self.workspace_id
    }

    /// The provider's name (`"resend"`, ...).
    #[must_use]
    pub fn provider(&self) -> &'static str {
        self.webhook.provider()
    }
}

/// What handling one delivery did, when it was accepted.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeliveryReport {
    /// The provider's delivery id, when its scheme has one.
    pub delivery_id: Option<String>,
    /// What the handler did with each event of the delivery, in order (a delivery may
    /// carry none: an event type the engine does not act on).
    pub outcomes: Vec<InboundOutcome>,
}

/// Why an authentic, well-formed delivery could not be handled. The delivery is not
/// kept as seen, so the provider's retry is handled again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// Recording the delivery failed.
    #[error("recording the delivery failed")]
    Dedup(#[source] StoreError),
    /// The inbound handler failed on one of the delivery's events.
    #[error("handling the delivery's events failed")]
    Handler(#[source] InboundError),
}

impl PipelineError {
    /// Whether the same request may succeed later.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Dedup(e) => e.is_retryable(),
            Self::Handler(e) => e.is_retryable(),
        }
    }
}

/// The answer to one provider request, typed for an HTTP layer to map directly
/// ([`DeliveryOutcome::http_status`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum DeliveryOutcome {
    /// Verified, recorded and handled: answer 200.
    Accepted(DeliveryReport),
    /// This delivery was handled before (a provider retry, or the same delivery
    /// reaching another process): answer 200 so the provider stops retrying.
    Duplicate {
        /// The provider's delivery id.
        delivery_id: String,
    },
    /// The answer to a provider's subscription handshake (Meta's `hub.challenge`):
    /// answer 200 with exactly this body.
    Challenge(String),
    /// The request is not authentic (missing, malformed or wrong signature, stale
    /// timestamp, or a refused handshake): answer 401. Nothing was parsed.
    BadSignature(WebhookError),
    /// Authentic but unreadable: answer 400.
    Malformed(WebhookError),
    /// The body is over the verifier's limit: answer 413. Nothing was hashed or parsed.
    TooLarge {
        /// The body's size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The endpoint's own configuration is unusable (an invalid signing secret):
    /// answer 500 and fix the configuration.
    Misconfigured(WebhookError),
    /// Handling failed; the delivery is not kept as seen: answer 503 when
    /// [`PipelineError::is_retryable`], else 500, so the provider retries.
    Failed(PipelineError),
}

impl DeliveryOutcome {
    /// The HTTP status to answer the provider with.
    #[must_use]
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Accepted(_) | Self::Duplicate { .. } | Self::Challenge(_) => 200,
            Self::BadSignature(_) => 401,
            Self::Malformed(_) => 400,
            Self::TooLarge { .. } => 413,
            Self::Misconfigured(_) => 500,
            Self::Failed(e) if e.is_retryable() => 503,
            Self::Failed(_) => 500,
        }
    }

    /// A short name of the outcome, for metrics and logs.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Accepted(_) => "accepted",
            Self::Duplicate { .. } => "duplicate",
            Self::Challenge(_) => "challenge",
            Self::BadSignature(_) => "bad_signature",
            Self::Malformed(_) => "malformed",
            Self::TooLarge { .. } => "too_large",
            Self::Misconfigured(_) => "misconfigured",
            Self::Failed(_) => "failed",
        }
    }

    /// Whether the request was authentic and its events are (or were) applied.
    #[must_use]
    pub fn is_accepted(&self) -> bool {
        matches!(self, Self::Accepted(_) | Self::Duplicate { .. })
    }
}

/// Why a request failed verification, as the outcome to answer.
fn refused(error: WebhookError) -> DeliveryOutcome {
    match error {
        WebhookError::TooLarge { size, limit } => DeliveryOutcome::TooLarge { size, limit },
        WebhookError::MalformedPayload(_) => DeliveryOutcome::Malformed(error),
        WebhookError::InvalidSecret(_) => DeliveryOutcome::Misconfigured(error),
        // A verifier wrapped in the in-process `Deduplicated` of crm-channels.
        WebhookError::Duplicate(delivery_id) => DeliveryOutcome::Duplicate { delivery_id },
        _ => DeliveryOutcome::BadSignature(error),
    }
}

/// The inbound path a host calls once per provider request.
///
/// [`InboundPipeline::receive`]:
/// 1. answers a subscription handshake ([`InboundWebhook::handshake`]) if the request
///    is one;
/// 2. verifies the request with the endpoint's verifier ([`verify_webhook`]);
/// 3. parses it into events with the endpoint's parser;
/// 4. records the provider's delivery id in the store
///    ([`WebhookStore`](crate::store::WebhookStore)): of any number of processes
///    receiving the same delivery, exactly one goes on, the others answer
///    [`DeliveryOutcome::Duplicate`]. A scheme without a delivery id is not
///    deduplicated here; the handler's activity fingerprints still keep a redelivery
///    from being recorded twice;
/// 5. hands every event, in order, to the [`InboundHandler`] in the endpoint's
///    workspace. If one fails, the delivery record is removed again, so the provider's
///    retry is handled (the handler is idempotent: events already applied are not
///    applied twice).
///
/// Each call runs in a `tracing` span `inbound.delivery` with the provider, workspace,
/// delivery id and outcome; never addresses or bodies.
///
/// A crash between step 4 and the end of step 5 leaves the delivery recorded: the
/// provider's retry is then answered as a duplicate.
#[derive(Debug, Clone)]
pub struct InboundPipeline {
    store: Arc<dyn InboundPipelineStore>,
    clock: Arc<dyn Clock>,
    handler: InboundHandler,
}

impl InboundPipeline {
    /// A pipeline over `store`, timed by `clock`, handing events to an
    /// [`InboundHandler`] over the same store with the workspaces' `settings`.
    #[must_use]
    pub fn new(
        store: Arc<dyn InboundPipelineStore>,
        clock: Arc<dyn Clock>,
        settings: Arc<dyn SettingsProvider>,
    ) -> Self {
        let handler = InboundHandler::new(store.clone(), clock.clone(), settings);
        Self {
            store,
            clock,
            handler,
        }
    }

    /// The handler events are handed to.
    #[must_use]
    pub fn handler(&self) -> &InboundHandler {
        &self.handler
    }

    /// Handles one provider request received on `endpoint` (see the type's docs).
    pub async fn receive(
        &self,
        endpoint: &InboundEndpoint,
        request: &WebhookRequest,
    ) -> DeliveryOutcome {
        let span = tracing::info_span!(
            "inbound.delivery",
            provider = endpoint.provider(),
            workspace = %endpoint.workspace_id,
            delivery_id = tracing::field::Empty,
            events = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        async {
            let outcome = self.run(endpoint, request).await;
            let span = tracing::Span::current();
            span.record("outcome", outcome.as_str());
            match &outcome {
                DeliveryOutcome::Failed(e) => {
                    tracing::warn!(error = %e, retryable = e.is_retryable(), "inbound delivery failed");
                }
                DeliveryOutcome::BadSignature(e)
                | DeliveryOutcome::Malformed(e)
                | DeliveryOutcome::Misconfigured(e) => {
                    tracing::warn!(error = %e, "inbound delivery refused");
                }
                _ => tracing::debug!("inbound delivery answered"),
            }
            outcome
        }
        .instrument(span)
        .await
    }

    async fn run(&self, endpoint: &InboundEndpoint, request: &WebhookRequest) -> DeliveryOutcome {
        let webhook = &*endpoint.webhook;
        match webhook.handshake(request) {
            Some(Ok(challenge)) => return DeliveryOutcome::Challenge(challenge),
            Some(Err(e)) => return refused(e),
            None => {}
        }
        let now = self.clock.now();
        let verified = match verify_webhook(webhook, request, now) {
            Ok(verified) => verified,
            Err(e) => return refused(e),
        };
        let delivery_id = verified.delivery_id().map(str::to_owned);
        if let Some(id) = &delivery_id {
            tracing::Span::current().record("delivery_id", id.as_str());
        }
        let events = match webhook.parse(&verified) {
            Ok(events) => events,
            Err(e) => return DeliveryOutcome::Malformed(e),
        };
        tracing::Span::current().record("events", events.len());
        let ws = endpoint.workspace_id;
        let provider = endpoint.provider();
        if let Some(id) = &delivery_id {
            match self.record(ws, provider, id, now).await {
                Ok(true) => {}
                Ok(false) => {
                    return DeliveryOutcome::Duplicate {
                        delivery_id: id.clone(),
                    };
                }
                Err(e) => return DeliveryOutcome::Failed(PipelineError::Dedup(e)),
            }
        }
        let mut outcomes = Vec::with_capacity(events.len());
        for event in &events {
            match self
                .handler
                .handle_delivery(ws, event, delivery_id.as_deref())
                .await
            {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    if let Some(id) = &delivery_id {
                        self.forget(ws, provider, id).await;
                    }
                    return DeliveryOutcome::Failed(PipelineError::Handler(e));
                }
            }
        }
        DeliveryOutcome::Accepted(DeliveryReport {
            delivery_id,
            outcomes,
        })
    }

    async fn record(
        &self,
        ws: WorkspaceId,
        provider: &str,
        delivery_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.store
            .record_webhook_delivery(ws, provider, delivery_id, now)
            .await
    }

    /// Removes the record of a delivery whose handling failed. If that fails too, the
    /// provider's retry is answered as a duplicate: logged, as nothing else can be done.
    async fn forget(&self, ws: WorkspaceId, provider: &str, delivery_id: &str) {
        if let Err(e) = self
            .store
            .forget_webhook_delivery(ws, provider, delivery_id)
            .await
        {
            tracing::error!(error = %e, "could not forget a failed delivery; its retry will be answered as a duplicate");
        }
    }

    /// Deletes the delivery records (of every workspace) received before `before`; see
    /// [`WebhookStore::purge_webhook_deliveries`](crate::store::WebhookStore::purge_webhook_deliveries).
    /// Keep them longer than the providers retry (Svix-based providers retry for
    /// about a day and a half; a few days is safe).
    pub async fn purge_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.store.purge_webhook_deliveries(before).await
    }
}
