//! The loopback fake providers of the end-to-end scenario and the workspace it
//! registers: channel configurations with `secret://` references the
//! [`MemorySecretResolver`] resolves, and webhooks signed as Resend signs them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crm_channels::secrets::MemorySecretResolver;
use crm_channels::webhooks::resend::ResendWebhook;
use crm_core::SecretRef;
use crm_core::inbound::WebhookRequest;
use crm_core::model::{Channel, ChannelConfig, WorkspaceSettings};
use serde_json::json;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers};

/// The signing secret of the Resend webhook endpoint.
pub(super) const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Recipients whose address contains this are refused by the fake Resend with a
/// permanent error (an unverified sending domain).
pub(super) const REFUSED: &str = "batch";

/// One call the fake Resend answered.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Call {
    /// The `Idempotency-Key` header.
    pub(super) key: String,
    /// The status it answered.
    pub(super) status: u16,
}

/// The fake Resend: the first `failures` calls answer 500; later ones answer 200
/// with an id derived from the `Idempotency-Key`, except for recipients containing
/// [`REFUSED`], answered 403 `validation_error` (permanent). Records every call.
#[derive(Debug, Clone, Default)]
pub(super) struct FakeResend {
    failures: usize,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Call>>>,
}

impl FakeResend {
    /// Mounts a fake failing its first `failures` calls on a new server.
    pub(super) async fn start(failures: usize) -> (Self, MockServer) {
        let server = MockServer::start().await;
        let fake = Self {
            failures,
            ..Self::default()
        };
        Mock::given(matchers::method("POST"))
            .and(matchers::path("/emails"))
            .respond_with(fake.clone())
            .mount(&server)
            .await;
        (fake, server)
    }

    /// Every call so far, in order.
    pub(super) fn calls(&self) -> Vec<Call> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Respond for FakeResend {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = request
            .headers
            .get("Idempotency-Key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let refused = serde_json::from_slice::<serde_json::Value>(&request.body)
            .ok()
            .and_then(|body| body.get("to").map(ToString::to_string))
            .is_some_and(|to| to.contains(REFUSED));
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let status = match (call < self.failures, refused) {
            (true, _) => 500,
            (false, true) => 403,
            (false, false) => 200,
        };
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Call {
                key: key.clone(),
                status,
            });
        match status {
            500 => ResponseTemplate::new(500).set_body_json(json!({ "message": "boom" })),
            403 => ResponseTemplate::new(403).set_body_json(json!({
                "statusCode": 403, "name": "validation_error",
                "message": "The sending domain is not verified."
            })),
            _ => ResponseTemplate::new(200).set_body_json(json!({ "id": format!("re-{key}") })),
        }
    }
}

/// A secret reference from its text.
pub(super) fn secret(reference: &str) -> SecretRef {
    SecretRef::parse(reference).expect("a valid secret reference")
}

/// The workspace's settings: email through Resend and WhatsApp through Twilio, both
/// pointed at loopback fakes, their credentials as `secret://` references; channels
/// pause on an error anomaly; new contacts are enriched automatically. With the resolver holding the referenced secrets.
pub(super) fn settings(
    resend: &MockServer,
    twilio: &MockServer,
) -> (WorkspaceSettings, MemorySecretResolver) {
    let (api_key, token) = (
        secret("secret://resend/api_key:1"),
        secret("secret://twilio/auth_token:1"),
    );
    let secrets = MemorySecretResolver::new()
        .with(&api_key, "re_test")
        .with(&token, "twilio-token");
    let mut settings = WorkspaceSettings::default();
    settings.pause_channel_on_error_anomaly = true;
    settings.auto_enrich = true;
    settings.channels.insert(
        Channel::Email,
        ChannelConfig::new("resend")
            .with_param("from", "Sales <sales@e2e.example>")
            .with_param("base_url", resend.uri())
            .with_secret("api_key", api_key),
    );
    settings.channels.insert(
        Channel::WhatsApp,
        ChannelConfig::new("twilio")
            .with_param("account_sid", TWILIO_ACCOUNT)
            .with_param("from", "+15005550006")
            .with_param("base_url", twilio.uri())
            .with_secret("auth_token", token),
    );
    (settings, secrets)
}

/// The Resend webhook endpoint's verifier and parser.
pub(super) fn resend_webhook() -> ResendWebhook {
    ResendWebhook::new(
        crm_core::secret::SecretString::from(WEBHOOK_SECRET),
        crm_channels::webhooks::WebhookConfig::new(),
    )
    .expect("webhook")
}

/// A Resend webhook signed with the Standard Webhooks scheme Resend uses (Svix):
/// `webhook-id`, `webhook-timestamp` and `webhook-signature` headers.
pub(super) fn signed(
    webhook: &ResendWebhook,
    id: &str,
    now: i64,
    body: &serde_json::Value,
) -> WebhookRequest {
    let body = serde_json::to_vec(body).expect("json");
    let signature = webhook.verifier().sign(id, now, &body).expect("sign");
    let mut headers = http::HeaderMap::new();
    headers.insert("webhook-id", id.parse().expect("header"));
    headers.insert(
        "webhook-timestamp",
        now.to_string().parse().expect("header"),
    );
    headers.insert("webhook-signature", signature.parse().expect("header"));
    WebhookRequest {
        method: http::Method::POST,
        url: "https://crm.e2e.example/webhooks/resend".into(),
        headers,
        body,
    }
}

/// `count` CSV rows (with a header) named `{prefix}{i}` at `{prefix}{i}@e2e.example`
/// (lowercased), with the mobile number `{phones}{i:02}`.
pub(super) fn leads(prefix: &str, count: usize, phones: &str) -> String {
    let mut csv = String::from("first_name,last_name,email,phone\n");
    for i in 0..count {
        let email = format!("{prefix}{i}@e2e.example").to_lowercase();
        let phone = format!("{phones}{i:02}");
        csv.push_str(&format!("{prefix}{i},Lead,{email},{phone}\n"));
    }
    csv
}

/// The Twilio account of the workspace's WhatsApp channel.
pub(super) const TWILIO_ACCOUNT: &str = "AC00000000000000000000000000000000";

/// The approved WhatsApp template the sequence's second step sends.
pub(super) const CONTENT_SID: &str = "HX0123";

/// Mounts the fake Twilio: a WhatsApp message sent with [`CONTENT_SID`] is queued.
pub(super) async fn mount_twilio(server: &MockServer) {
    Mock::given(matchers::method("POST"))
        // `base_url` stands for Twilio's API root with its version.
        .and(matchers::path(format!(
            "/Accounts/{TWILIO_ACCOUNT}/Messages.json"
        )))
        .and(matchers::body_string_contains(format!(
            "ContentSid={CONTENT_SID}"
        )))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "sid": "SM0001", "status": "queued", "to": "whatsapp:+4915112345600",
        })))
        .mount(server)
        .await;
}
