//! Every inbound webhook verifier of this crate passes crm-core's verifier conformance
//! kit: requests are signed here from each provider's documented scheme (not through
//! the verifiers' own helpers), then tampered with, signed with another secret, or
//! signed at an expired time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Inbound verifiers, each fed requests signed here from the provider's documented
/// scheme (not through the verifier's own signing helpers).
#[cfg(any(
    feature = "resend",
    feature = "twilio",
    feature = "instagram",
    feature = "cal-com",
    feature = "calendly",
    feature = "slack"
))]
mod webhooks {
    use base64::Engine as _;
    use chrono::{DateTime, Utc};
    use crm_core::WebhookRequest;
    use crm_testkit::adapter::SigningKey;
    use hmac::{Hmac, KeyInit, Mac};

    pub(super) const FIXED_NOW: i64 = 1_714_564_800;

    pub(super) fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(FIXED_NOW, 0).unwrap()
    }

    pub(super) fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }

    pub(super) fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// The configured secret or a different one.
    pub(super) fn pick<'a>(key: SigningKey, configured: &'a str, other: &'a str) -> &'a str {
        match key {
            SigningKey::Configured => configured,
            SigningKey::Other => other,
        }
    }

    pub(super) fn request(url: &str, headers: &[(&str, String)], body: &[u8]) -> WebhookRequest {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        WebhookRequest {
            method: http::Method::POST,
            url: url.to_owned(),
            headers: map,
            body: body.to_vec(),
        }
    }
}

#[cfg(feature = "resend")]
mod resend_webhook {
    use std::time::Duration;

    use chrono::{DateTime, Utc};
    use crm_channels::webhooks::WebhookConfig;
    use crm_channels::webhooks::resend::ResendWebhook;
    use crm_core::secret::SecretString;
    use crm_core::{InboundWebhook, WebhookRequest};
    use crm_testkit::adapter::{SigningKey, Timestamps, VerifierHarness};

    use super::webhooks::*;

    // SW-1's secret, and another 24-byte key.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OTHER: &str = "whsec_b3RoZXItc2VjcmV0LTI0LWJ5dGVzLWxvbmch";

    struct Harness(ResendWebhook);

    impl VerifierHarness for Harness {
        fn verifier(&self) -> &dyn InboundWebhook {
            &self.0
        }
        fn body(&self) -> Vec<u8> {
            br#"{"type":"email.delivered","created_at":"2024-05-01T12:00:00.000Z","data":{"email_id":"e-1","created_at":"2024-05-01T12:00:00.000Z","from":"a@example.com","to":["ada@example.com"],"subject":"Hi"}}"#.to_vec()
        }
        fn sign(&self, body: &[u8], at: DateTime<Utc>, key: SigningKey) -> WebhookRequest {
            let secret = pick(key, SECRET, OTHER).trim_start_matches("whsec_");
            let key =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, secret).unwrap();
            let (id, ts) = ("msg_kit", at.timestamp().to_string());
            let mut signed = format!("{id}.{ts}.").into_bytes();
            signed.extend_from_slice(body);
            let signature = format!("v1,{}", b64(&hmac_sha256(&key, &signed)));
            request(
                "https://crm.example.com/hooks/resend",
                &[
                    ("svix-id", id.to_owned()),
                    ("svix-timestamp", ts),
                    ("svix-signature", signature),
                ],
                body,
            )
        }
        fn timestamps(&self) -> Timestamps {
            Timestamps::Signed {
                tolerance: Duration::from_secs(300),
            }
        }
        fn now(&self) -> DateTime<Utc> {
            now()
        }
    }

    async fn harness() -> Harness {
        Harness(
            ResendWebhook::new(SecretString::from(SECRET.to_owned()), WebhookConfig::new())
                .unwrap(),
        )
    }

    crm_testkit::webhook_conformance_tests!(harness);
}

#[cfg(feature = "twilio")]
mod twilio_webhook {
    use chrono::{DateTime, Utc};
    use crm_channels::webhooks::WebhookConfig;
    use crm_channels::webhooks::twilio::TwilioWebhook;
    use crm_core::secret::SecretString;
    use crm_core::{InboundWebhook, WebhookRequest};
    use crm_testkit::adapter::{SigningKey, Timestamps, VerifierHarness};
    use hmac::{Hmac, KeyInit, Mac};

    use super::webhooks::*;

    const URL: &str = "https://crm.example.com/hooks/twilio/status";

    struct Harness(TwilioWebhook);

    impl VerifierHarness for Harness {
        fn verifier(&self) -> &dyn InboundWebhook {
            &self.0
        }
        fn body(&self) -> Vec<u8> {
            b"MessageSid=SM1&MessageStatus=delivered&To=whatsapp%3A%2B4915112345678&AccountSid=AC1"
                .to_vec()
        }
        fn sign(&self, body: &[u8], _at: DateTime<Utc>, key: SigningKey) -> WebhookRequest {
            let mut params: Vec<(String, String)> =
                url::form_urlencoded::parse(body).into_owned().collect();
            params.sort();
            let mut signed = URL.to_owned();
            for (k, v) in &params {
                signed.push_str(k);
                signed.push_str(v);
            }
            let token = pick(key, "twilio-token", "another-token");
            let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(token.as_bytes()).unwrap();
            mac.update(signed.as_bytes());
            let signature = b64(&mac.finalize().into_bytes());
            request(URL, &[("x-twilio-signature", signature)], body)
        }
        fn timestamps(&self) -> Timestamps {
            Timestamps::NotSigned {
                reason: "Twilio signs the URL and parameters, no timestamp; replays are stopped by de-duplication".to_owned(),
            }
        }
        fn now(&self) -> DateTime<Utc> {
            now()
        }
    }

    async fn harness() -> Harness {
        Harness(
            TwilioWebhook::new(
                SecretString::from("twilio-token".to_owned()),
                WebhookConfig::new(),
            )
            .unwrap(),
        )
    }

    crm_testkit::webhook_conformance_tests!(harness);
}

/// Schemes that sign the raw body with HMAC-SHA256 in hex, without a timestamp.
#[cfg(any(feature = "instagram", feature = "cal-com"))]
mod hex_body_webhooks {
    use chrono::{DateTime, Utc};
    use crm_core::{InboundWebhook, WebhookRequest};
    use crm_testkit::adapter::{SigningKey, Timestamps, VerifierHarness};

    use super::webhooks::*;

    pub(super) struct Harness {
        pub(super) verifier: Box<dyn InboundWebhook>,
        pub(super) header: &'static str,
        pub(super) prefix: &'static str,
        pub(super) secret: &'static str,
        pub(super) body: &'static [u8],
    }

    impl VerifierHarness for Harness {
        fn verifier(&self) -> &dyn InboundWebhook {
            self.verifier.as_ref()
        }
        fn body(&self) -> Vec<u8> {
            self.body.to_vec()
        }
        fn sign(&self, body: &[u8], _at: DateTime<Utc>, key: SigningKey) -> WebhookRequest {
            let secret = pick(key, self.secret, "a-different-secret");
            let signature = format!(
                "{}{}",
                self.prefix,
                hex::encode(hmac_sha256(secret.as_bytes(), body))
            );
            request(
                "https://crm.example.com/hooks",
                &[(self.header, signature)],
                body,
            )
        }
        fn timestamps(&self) -> Timestamps {
            Timestamps::NotSigned {
                reason: "this scheme signs the raw body only, no timestamp; replays are stopped by de-duplication".to_owned(),
            }
        }
        fn now(&self) -> DateTime<Utc> {
            now()
        }
    }
}

#[cfg(feature = "instagram")]
mod instagram_webhook {
    use crm_channels::webhooks::WebhookConfig;
    use crm_channels::webhooks::meta::InstagramWebhook;
    use crm_core::secret::SecretString;

    use super::hex_body_webhooks::Harness;

    async fn harness() -> Harness {
        Harness {
            verifier: Box::new(
                InstagramWebhook::new(
                    SecretString::from("app-secret".to_owned()),
                    WebhookConfig::new(),
                )
                .unwrap(),
            ),
            header: "x-hub-signature-256",
            prefix: "sha256=",
            secret: "app-secret",
            body: br#"{"object":"instagram","entry":[]}"#,
        }
    }

    crm_testkit::webhook_conformance_tests!(harness);
}

#[cfg(feature = "cal-com")]
mod cal_com_webhook {
    use crm_channels::webhooks::WebhookConfig;
    use crm_channels::webhooks::cal_com::CalComWebhook;
    use crm_core::secret::SecretString;

    use super::hex_body_webhooks::Harness;

    async fn harness() -> Harness {
        Harness {
            verifier: Box::new(CalComWebhook::new(SecretString::from("test-secret".to_owned()), WebhookConfig::new()).unwrap()),
            header: "x-cal-signature-256",
            prefix: "",
            secret: "test-secret",
            body: br#"{"triggerEvent":"BOOKING_CREATED","createdAt":"2023-05-24T09:30:00.538Z","payload":{"uid":"bFJeNb2uX8ANpT3JL5EfXw"}}"#,
        }
    }

    crm_testkit::webhook_conformance_tests!(harness);
}

#[cfg(feature = "calendly")]
mod calendly_webhook {
    use std::time::Duration;

    use chrono::{DateTime, Utc};
    use crm_channels::webhooks::WebhookConfig;
    use crm_channels::webhooks::calendly::CalendlyWebhook;
    use crm_core::secret::SecretString;
    use crm_core::{InboundWebhook, WebhookRequest};
    use crm_testkit::adapter::{SigningKey, Timestamps, VerifierHarness};

    use super::webhooks::*;

    struct Harness(CalendlyWebhook);

    impl VerifierHarness for Harness {
        fn verifier(&self) -> &dyn InboundWebhook {
            &self.0
        }
        fn body(&self) -> Vec<u8> {
            br#"{"event":"invitee.created","payload":{}}"#.to_vec()
        }
        fn sign(&self, body: &[u8], at: DateTime<Utc>, key: SigningKey) -> WebhookRequest {
            let t = at.timestamp();
            let mut signed = format!("{t}.").into_bytes();
            signed.extend_from_slice(body);
            let secret = pick(key, "test-signing-key", "another-signing-key");
            let v1 = hex::encode(hmac_sha256(secret.as_bytes(), &signed));
            request(
                "https://crm.example.com/hooks/calendly",
                &[("calendly-webhook-signature", format!("t={t},v1={v1}"))],
                body,
            )
        }
        fn timestamps(&self) -> Timestamps {
            Timestamps::Signed {
                tolerance: Duration::from_secs(180),
            }
        }
        fn now(&self) -> DateTime<Utc> {
            now()
        }
    }

    async fn harness() -> Harness {
        Harness(
            CalendlyWebhook::new(
                SecretString::from("test-signing-key".to_owned()),
                WebhookConfig::new(),
            )
            .unwrap(),
        )
    }

    crm_testkit::webhook_conformance_tests!(harness);
}

#[cfg(feature = "slack")]
mod slack_webhook {
    use std::time::Duration;

    use chrono::{DateTime, Utc};
    use crm_channels::webhooks::WebhookConfig;
    use crm_channels::webhooks::slack::SlackWebhook;
    use crm_core::secret::SecretString;
    use crm_core::{InboundWebhook, WebhookRequest};
    use crm_testkit::adapter::{SigningKey, Timestamps, VerifierHarness};

    use super::webhooks::*;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

    struct Harness(SlackWebhook);

    impl VerifierHarness for Harness {
        fn verifier(&self) -> &dyn InboundWebhook {
            &self.0
        }
        fn body(&self) -> Vec<u8> {
            b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&command=%2Fwebhook-collect&text="
                .to_vec()
        }
        fn sign(&self, body: &[u8], at: DateTime<Utc>, key: SigningKey) -> WebhookRequest {
            let ts = at.timestamp().to_string();
            let mut signed = format!("v0:{ts}:").into_bytes();
            signed.extend_from_slice(body);
            let secret = pick(key, SECRET, "another-signing-secret");
            let signature = format!(
                "v0={}",
                hex::encode(hmac_sha256(secret.as_bytes(), &signed))
            );
            request(
                "https://crm.example.com/hooks/slack",
                &[
                    ("x-slack-request-timestamp", ts),
                    ("x-slack-signature", signature),
                ],
                body,
            )
        }
        fn timestamps(&self) -> Timestamps {
            Timestamps::Signed {
                tolerance: Duration::from_secs(300),
            }
        }
        fn now(&self) -> DateTime<Utc> {
            now()
        }
    }

    async fn harness() -> Harness {
        Harness(
            SlackWebhook::new(SecretString::from(SECRET.to_owned()), WebhookConfig::new()).unwrap(),
        )
    }

    crm_testkit::webhook_conformance_tests!(harness);
}
