//! Meta (Instagram messaging) webhooks: `X-Hub-Signature-256` and the `hub.challenge`
//! subscription handshake.
//!
//! Event notifications are signed `sha256=<hex>` with HMAC-SHA256 of the raw body keyed
//! by the App Secret. There is no timestamp, so the tolerance is unused. The delivery id
//! is the SHA-256 of the body (Meta's retries resend the same bytes).
//!
//! Parsing: `entry[].messaging[]` items with a `message` (not an echo of our own) become
//! [`InboundEvent::Reply`] from the sender's Instagram-scoped id; `read` receipts become
//! [`InboundEvent::Opened`]. Other objects and fields produce no event.

use std::fmt;

use chrono::{DateTime, Utc};
use crm_core::model::Channel;
use crm_core::secret::{ExposeSecret, SecretString};
use crm_core::{
    InboundEvent, InboundWebhook, UnverifiedWebhook, VerifiedWebhook, WebhookError, WebhookRequest,
};
use serde_json::Value;

use super::WebhookConfig;
use super::crypto::check_body_size;
use super::crypto::{ct_eq_hashed, require_secret, required_header, sha256_hex, verify_body_hex};
use super::payload::{log_body, parse_json, str_at, string_at};

/// The provider name.
pub const PROVIDER: &str = "instagram";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The prefix of the signature header value.
pub const SIGNATURE_PREFIX: &str = "sha256=";

/// Verifies and parses Instagram messaging webhooks.
pub struct InstagramWebhook {
    app_secret: SecretString,
    config: WebhookConfig,
    verify_token: Option<SecretString>,
}

impl InstagramWebhook {
    /// A verifier for the app's App Secret.
    ///
    /// # Errors
    /// [`WebhookError::InvalidSecret`] when the secret is empty.
    pub fn new(app_secret: SecretString, config: WebhookConfig) -> Result<Self, WebhookError> {
        require_secret(&app_secret)?;
        Ok(Self {
            app_secret,
            config,
            verify_token: None,
        })
    }

    /// Answers the subscription handshake through
    /// [`InboundWebhook::handshake`] with `verify_token` (the token entered in the app's
    /// webhook settings), so a pipeline answers it like any other request.
    #[must_use]
    pub fn with_verify_token(mut self, verify_token: SecretString) -> Self {
        self.verify_token = Some(verify_token);
        self
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// Answers Meta's subscription handshake
    /// (`GET ?hub.mode=subscribe&hub.verify_token=..&hub.challenge=..`).
    ///
    /// `query` is the query string (a leading `?` or a whole URL is accepted). On success
    /// the returned challenge is the exact body to answer with status 200; on error answer
    /// 403. The token is compared in constant time.
    ///
    /// # Errors
    /// `MalformedPayload` when a parameter is missing or the mode is not `subscribe`,
    /// `InvalidSignature` when the token does not match, `InvalidSecret` when the expected
    /// token is empty.
    pub fn verify_subscription(
        &self,
        query: &str,
        verify_token: &SecretString,
    ) -> Result<String, WebhookError> {
        require_secret(verify_token)?;
        let query = query.split_once('?').map_or(query, |(_, q)| q);
        let query = query.split('#').next().unwrap_or_default();
        let (mut mode, mut token, mut challenge) = (None, None, None);
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "hub.mode" => &mut mode,
                "hub.verify_token" => &mut token,
                "hub.challenge" => &mut challenge,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.into_owned());
            }
        }
        let missing = |name: &str| WebhookError::MalformedPayload(format!("missing {name}"));
        let mode = mode.ok_or_else(|| missing("hub.mode"))?;
        let token = token.ok_or_else(|| missing("hub.verify_token"))?;
        let challenge = challenge.ok_or_else(|| missing("hub.challenge"))?;
        if mode != "subscribe" {
            return Err(WebhookError::MalformedPayload(
                "hub.mode is not subscribe".to_owned(),
            ));
        }
        if !ct_eq_hashed(token.as_bytes(), verify_token.expose_secret().as_bytes()) {
            return Err(WebhookError::InvalidSignature);
        }
        Ok(challenge)
    }
}

impl fmt::Debug for InstagramWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstagramWebhook")
            .field("app_secret", &"[redacted]")
            .field("config", &self.config)
            .field(
                "verify_token",
                &self.verify_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl InboundWebhook for InstagramWebhook {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn verify<'r>(
        &self,
        unverified: UnverifiedWebhook<'r>,
        _now: DateTime<Utc>,
    ) -> Result<VerifiedWebhook<'r>, WebhookError> {
        let request = unverified.request();
        check_body_size(request, self.config.max_body_bytes())?;
        let header = required_header(request, SIGNATURE_HEADER)?;
        let digest =
            header
                .strip_prefix(SIGNATURE_PREFIX)
                .ok_or_else(|| WebhookError::MalformedHeader {
                    header: SIGNATURE_HEADER,
                    reason: "expected sha256=<hex>".to_owned(),
                })?;
        verify_body_hex(&self.app_secret, &request.body, digest)?;
        Ok(unverified.accept(Some(sha256_hex(&request.body))))
    }

    /// A `GET` whose query holds `hub.mode` is the subscription handshake, answered
    /// with [`InstagramWebhook::verify_subscription`] and the token of
    /// [`InstagramWebhook::with_verify_token`] (without one, `InvalidSecret`).
    fn handshake(&self, request: &WebhookRequest) -> Option<Result<String, WebhookError>> {
        if request.method != http::Method::GET {
            return None;
        }
        let query = request.url.split_once('?').map(|(_, q)| q)?;
        let asks = url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "hub.mode");
        if !asks {
            return None;
        }
        Some(match &self.verify_token {
            Some(token) => self.verify_subscription(query, token),
            None => Err(WebhookError::InvalidSecret(
                "no verify token is configured for the subscription handshake".to_owned(),
            )),
        })
    }

    fn parse(&self, webhook: &VerifiedWebhook<'_>) -> Result<Vec<InboundEvent>, WebhookError> {
        let body = &webhook.request().body;
        log_body(PROVIDER, body);
        let root = parse_json(body)?;
        if str_at(&root, &["object"]) != Some("instagram") {
            return Ok(Vec::new());
        }
        let entries = root.get("entry").and_then(Value::as_array);
        let messaging = entries
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.get("messaging").and_then(Value::as_array))
            .flatten();
        Ok(messaging.filter_map(messaging_event).collect())
    }
}

fn messaging_event(item: &Value) -> Option<InboundEvent> {
    let channel = Channel::Instagram;
    if let Some(message) = item.get("message") {
        if message.get("is_echo").and_then(Value::as_bool) == Some(true) {
            return None;
        }
        return Some(InboundEvent::Reply {
            channel,
            from: string_at(item, &["sender", "id"])?,
            text: string_at(message, &["text"]),
            in_reply_to: string_at(message, &["reply_to", "mid"]),
        });
    }
    let read = item.get("read")?;
    Some(InboundEvent::Opened {
        channel,
        provider_message_id: string_at(read, &["mid"])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str) -> WebhookRequest {
        WebhookRequest {
            method: http::Method::GET,
            url: url.to_owned(),
            headers: http::HeaderMap::new(),
            body: Vec::new(),
        }
    }

    fn hook() -> InstagramWebhook {
        InstagramWebhook::new(SecretString::from("app-secret"), WebhookConfig::default())
            .unwrap_or_else(|e| unreachable!("a valid secret: {e}"))
    }

    const SUBSCRIBE: &str = "https://crm.example.com/hooks/instagram?hub.mode=subscribe&hub.verify_token=tok-1&hub.challenge=1158201444";

    #[test]
    fn handshake_answers_the_challenge_with_the_configured_token() {
        let hook = hook().with_verify_token(SecretString::from("tok-1"));
        assert_eq!(
            hook.handshake(&get(SUBSCRIBE)),
            Some(Ok("1158201444".to_owned()))
        );
        let wrong = SUBSCRIBE.replace("tok-1", "tok-2");
        assert_eq!(
            hook.handshake(&get(&wrong)),
            Some(Err(WebhookError::InvalidSignature))
        );
        let mut post = get(SUBSCRIBE);
        post.method = http::Method::POST;
        assert_eq!(hook.handshake(&post), None, "a POST is a delivery");
        assert_eq!(
            hook.handshake(&get("https://crm.example.com/hooks/instagram?x=1")),
            None,
            "a GET without hub.mode is no handshake"
        );
    }

    #[test]
    fn handshake_without_a_token_is_a_configuration_error() {
        assert!(matches!(
            hook().handshake(&get(SUBSCRIBE)),
            Some(Err(WebhookError::InvalidSecret(_)))
        ));
    }
}
