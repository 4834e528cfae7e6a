//! A workspace whose first steps went out through the real dispatcher, and signed
//! Resend webhooks about them.

use std::sync::Arc;

use chrono::Duration;
use crm_channels::webhooks::WebhookConfig;
use crm_channels::webhooks::resend::ResendWebhook;
use crm_core::DynStore;
use crm_core::clock::Clock;
use crm_core::ids::ApprovalRuleId;
use crm_core::inbound::WebhookRequest;
use crm_core::model::{
    Activity, ActivityKind, Channel, Contact, OutboxMessage, OutboxStatus, Sequence, StepDelay,
};
use crm_core::outreach::dispatch::{ChannelRegistry, Dispatcher, StubChannel};
use crm_core::outreach::inbound::{
    DeliveryOutcome, DeliveryReport, InboundEndpoint, InboundPipeline,
};
use crm_core::outreach::settings::WorkspaceSettings;
use crm_core::secret::SecretString;
use crm_core::store::ActivityFilter;
use serde_json::{Value, json};

use crate::engine::dispatch::{ApproveAll, config, drain};
use crate::engine::runner::world::{World, after, base_time, email};
use crate::store::fixtures::ok;

/// The Standard Webhooks reference libraries' published test secret (PROVIDERS.md SW-1):
/// the endpoint's signing secret.
pub(super) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Another valid secret: requests signed with it are forged for the endpoint.
pub(super) const OTHER_SECRET: &str = "whsec_dGhpcyBpcyBub3QgdGhlIGVuZHBvaW50cyBzZWNyZXQ=";

/// A Resend verifier with `secret` and `config`.
pub(super) fn resend(secret: &str, config: WebhookConfig) -> Arc<ResendWebhook> {
    Arc::new(
        ResendWebhook::new(SecretString::from(secret.to_owned()), config).expect("valid secret"),
    )
}

/// One workspace with its services, a stub email provider and its Resend endpoint.
pub(super) struct Inbound {
    pub(super) w: World,
    pub(super) stub: StubChannel,
    pub(super) endpoint: InboundEndpoint,
    pub(super) pipeline: InboundPipeline,
    hook: Arc<ResendWebhook>,
    rule: ApprovalRuleId,
}

impl Inbound {
    /// A fresh workspace of `store` with `settings`.
    pub(super) fn new(store: &Arc<DynStore>, settings: WorkspaceSettings) -> Self {
        let w = World::new(store, settings);
        let stub = StubChannel::ok(Channel::Email).with_clock(w.time());
        let hook = resend(SECRET, WebhookConfig::default());
        let endpoint = InboundEndpoint::new(w.ws, hook.clone());
        let pipeline = InboundPipeline::new(store.clone(), w.time(), w.provider());
        Self {
            w,
            stub,
            endpoint,
            pipeline,
            hook,
            rule: ApprovalRuleId::new(),
        }
    }

    /// Another pipeline over the same store: what a second host process runs.
    pub(super) fn another_pipeline(&self) -> InboundPipeline {
        InboundPipeline::new(self.w.store.clone(), self.w.time(), self.w.provider())
    }

    /// The real dispatcher, sending email through the stub, approving every send.
    pub(super) fn dispatcher(&self) -> Dispatcher {
        Dispatcher::new(
            self.w.store.clone(),
            self.w.time(),
            self.w.provider(),
            ChannelRegistry::new().with(Arc::new(self.stub.clone())),
            config(),
        )
        .with_policy(Arc::new(ApproveAll { rule: self.rule }))
    }

    /// Two email steps, the second two days after the first.
    pub(super) async fn sequence(&self) -> Sequence {
        self.w
            .sequence(vec![
                email("Hi", "One"),
                after(email("Again", "Two"), StepDelay::Hours(48)),
            ])
            .await
    }

    /// Enrolls each contact through the enroller, ticks the runner and drains the
    /// dispatcher a minute later: the first step of each goes out. Returns each
    /// contact's sent message, in the order of `contacts`.
    pub(super) async fn send_first_steps(
        &self,
        contacts: &[Contact],
        sequence: &Sequence,
    ) -> Vec<OutboxMessage> {
        let mut enrollments = Vec::new();
        for contact in contacts {
            enrollments.push(self.w.enroll(contact, sequence, base_time()).await);
        }
        self.w
            .tick(&self.w.runner("inbound-runner"), base_time())
            .await
            .expect("tick");
        self.w.clock.set(base_time() + Duration::minutes(1));
        let report = drain(&self.dispatcher()).await;
        assert_eq!(
            report.sent,
            contacts.len() as u64,
            "every first step is sent: {report:?}"
        );
        let mut sent = Vec::new();
        for e in enrollments {
            let messages = self.w.messages_of(e.id).await;
            let message = messages
                .into_iter()
                .find(|m| m.status == OutboxStatus::Sent)
                .expect("the enrollment's first step was sent");
            assert!(
                message.provider_message_id.is_some(),
                "the send kept the provider's id"
            );
            sent.push(message);
        }
        sent
    }

    /// `body` as Resend would post it: signed with the endpoint's secret at the clock's
    /// now, with delivery id `delivery_id`.
    pub(super) fn signed(&self, delivery_id: &str, body: &[u8]) -> WebhookRequest {
        sign(
            &self.hook,
            delivery_id,
            self.w.clock.now().timestamp(),
            body,
        )
    }

    /// Posts `event` (signed, with `delivery_id`) to the endpoint through the pipeline.
    pub(super) async fn deliver(&self, delivery_id: &str, event: &Value) -> DeliveryOutcome {
        let request = self.signed(delivery_id, &body(event));
        self.pipeline.receive(&self.endpoint, &request).await
    }

    /// The activities of `kind` about `contact`.
    pub(super) async fn activities(&self, contact: &Contact, kind: ActivityKind) -> Vec<Activity> {
        let filter = ActivityFilter {
            contact_id: Some(contact.id),
            kinds: vec![kind],
            ..ActivityFilter::default()
        };
        ok(
            self.w.store.list_activities(self.w.ws, &filter, 100).await,
            "list_activities",
        )
    }
}

/// The JSON bytes of `event`.
pub(super) fn body(event: &Value) -> Vec<u8> {
    serde_json::to_vec(event).expect("serializable")
}

/// A Standard Webhooks request: `webhook-id`, `webhook-timestamp` and a `v1` signature
/// by `hook`'s secret over `{id}.{timestamp}.{body}`.
pub(super) fn sign(
    hook: &ResendWebhook,
    delivery_id: &str,
    timestamp: i64,
    body: &[u8],
) -> WebhookRequest {
    let signature = hook
        .verifier()
        .sign(delivery_id, timestamp, body)
        .expect("signs");
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("webhook-id", delivery_id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
        ("content-type", "application/json".to_owned()),
    ] {
        headers.insert(name, value.parse().expect("a valid header value"));
    }
    WebhookRequest {
        method: http::Method::POST,
        url: "https://crm.example.com/hooks/resend".to_owned(),
        headers,
        body: body.to_vec(),
    }
}

/// A Resend email event of `kind` (`email.delivered`, ...) about `message`, with
/// `extra` merged into its `data`.
pub(super) fn resend_event(kind: &str, message: &OutboxMessage, extra: Value) -> Value {
    let mut data = json!({
        "email_id": message.provider_message_id,
        "created_at": "2026-01-05T09:01:00.000Z",
        "from": "Sales <sales@example.com>",
        "to": [message.recipient],
        "subject": "Hi",
    });
    if let (Some(data), Value::Object(extra)) = (data.as_object_mut(), extra) {
        data.extend(extra);
    }
    json!({ "type": kind, "created_at": "2026-01-05T09:02:00.000Z", "data": data })
}

/// A hard (`Permanent`) or soft (`Transient`) bounce of `message`.
pub(super) fn bounce(message: &OutboxMessage, permanent: bool) -> Value {
    let kind = if permanent { "Permanent" } else { "Transient" };
    resend_event(
        "email.bounced",
        message,
        json!({ "bounce": { "type": kind, "subType": "General", "message": "mailbox unavailable" } }),
    )
}

/// The report of an accepted delivery; panics naming `what` otherwise.
#[track_caller]
pub(super) fn accepted(outcome: DeliveryOutcome, what: &str) -> DeliveryReport {
    assert_eq!(outcome.http_status(), 200, "{what}: {outcome:?}");
    match outcome {
        DeliveryOutcome::Accepted(report) => report,
        other => panic!("{what}: expected Accepted, got {other:?}"),
    }
}
