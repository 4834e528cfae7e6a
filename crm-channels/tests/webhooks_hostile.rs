//! Hostile webhook bodies, per provider verifier: oversized bodies refused before any
//! work, delivery ids capped, escaped NULs replaced, numeric ids kept exact. Pure
//! functions over bytes: no server needed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers
// The helpers serve the provider modules, each behind its feature.
#![cfg_attr(
    not(all(
        feature = "resend",
        feature = "twilio",
        feature = "instagram",
        feature = "cal-com",
        feature = "calendly",
        feature = "slack"
    )),
    allow(dead_code, unused_imports)
)]

mod webhooks_support;

use crm_channels::webhooks::{DEFAULT_MAX_BODY_BYTES, WebhookConfig};
use crm_core::{InboundEvent, InboundWebhook, MAX_DELIVERY_ID_BYTES, WebhookError};
use hmac::{Hmac, KeyInit, Mac};
use webhooks_support::{VerifyAt, at, post, secret};

/// A config with a small body limit, so the tests stay small.
fn small() -> WebhookConfig {
    WebhookConfig::default().with_max_body_bytes(64)
}

fn too_large(result: Result<impl Sized, WebhookError>, size: usize, limit: usize) {
    match result {
        Err(WebhookError::TooLarge { size: s, limit: l }) => assert_eq!((s, l), (size, limit)),
        Err(other) => panic!("expected TooLarge, got {other:?}"),
        Ok(_) => panic!("expected TooLarge, got a verified request"),
    }
}

fn hex_sha256_hmac(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn the_default_limit_is_one_mebibyte() {
    assert_eq!(DEFAULT_MAX_BODY_BYTES, 1024 * 1024);
    assert_eq!(WebhookConfig::default().max_body_bytes(), 1024 * 1024);
    assert_eq!(small().max_body_bytes(), 64);
    assert_eq!(MAX_DELIVERY_ID_BYTES, 256);
}

#[cfg(feature = "resend")]
mod resend {
    use super::*;
    use crm_channels::webhooks::resend::ResendWebhook;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const TS: i64 = 1_614_265_330;

    fn hook(config: WebhookConfig) -> ResendWebhook {
        ResendWebhook::new(secret(SECRET), config).unwrap()
    }

    fn signed(hook: &ResendWebhook, id: &str, body: &[u8]) -> crm_core::WebhookRequest {
        let sig = hook.verifier().sign(id, TS, body).unwrap();
        post(
            &[
                ("webhook-id", id),
                ("webhook-timestamp", &TS.to_string()),
                ("webhook-signature", &sig),
            ],
            body,
        )
    }

    #[test]
    fn oversized_bodies_are_refused_before_headers_are_read() {
        let body = vec![b' '; 65];
        // No headers at all: the size is still what is reported.
        too_large(hook(small()).verify_at(&post(&[], &body), at(TS)), 65, 64);
        let fits = vec![b' '; 64];
        assert_eq!(
            hook(small())
                .verify_at(&post(&[], &fits), at(TS))
                .unwrap_err(),
            WebhookError::MissingHeader("webhook-id")
        );
        // The default limit: 1 MiB passes the size check, one byte more does not.
        let hook = hook(WebhookConfig::default());
        let big = vec![b' '; DEFAULT_MAX_BODY_BYTES];
        assert!(
            hook.verify_at(&signed(&hook, "msg_1", &big), at(TS))
                .is_ok()
        );
        let bigger = vec![b' '; DEFAULT_MAX_BODY_BYTES + 1];
        too_large(
            hook.verify_at(&signed(&hook, "msg_1", &bigger), at(TS)),
            DEFAULT_MAX_BODY_BYTES + 1,
            DEFAULT_MAX_BODY_BYTES,
        );
    }

    #[test]
    fn delivery_ids_are_capped_even_when_signed() {
        let hook = hook(WebhookConfig::default());
        let body = br#"{"type":"email.opened","data":{"email_id":"e1"}}"#;
        let longest = "m".repeat(MAX_DELIVERY_ID_BYTES);
        let request = signed(&hook, &longest, body);
        let ok = hook.verify_at(&request, at(TS)).unwrap();
        assert_eq!(ok.delivery_id(), Some(longest.as_str()));
        let huge = "m".repeat(100 * 1024);
        match hook.verify_at(&signed(&hook, &huge, body), at(TS)) {
            Err(WebhookError::MalformedHeader { header, reason }) => {
                assert_eq!(header, "webhook-id");
                assert!(reason.contains("256"), "{reason}");
            }
            other => panic!("expected MalformedHeader, got {other:?}"),
        }
    }

    #[test]
    fn escaped_nuls_become_replacement_characters() {
        let hook = hook(WebhookConfig::default());
        let body = br#"{"type":"email.received","data":{"from":"Ada <ada@acme.io>","text":"hi\u0000there"}}"#;
        let request = signed(&hook, "msg_nul", body);
        let verified = hook.verify_at(&request, at(TS)).unwrap();
        let events = hook.parse(&verified).unwrap();
        match &events[..] {
            [InboundEvent::Reply { text, from, .. }] => {
                assert_eq!(text.as_deref(), Some("hi\u{FFFD}there"));
                assert_eq!(from, "ada@acme.io");
            }
            other => panic!("expected one reply, got {other:?}"),
        }
    }
}

#[cfg(feature = "twilio")]
mod twilio {
    use super::*;
    use crm_channels::webhooks::twilio::TwilioWebhook;
    use http::Method;
    use sha2::Digest;
    use webhooks_support::request;

    const URL: &str = "https://crm.example.com/twilio";

    fn hook(config: WebhookConfig) -> TwilioWebhook {
        TwilioWebhook::new(secret("12345"), config).unwrap()
    }

    /// A well-formed signature that does not match.
    const WRONG_SIG: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    #[test]
    fn a_huge_form_body_is_refused_before_it_is_decoded() {
        let body = "Body=x&".repeat(10 * 1024 * 1024 / 7 + 1).into_bytes();
        let size = body.len();
        // A well-formed but wrong signature: had the body been decoded and hashed, the
        // answer would be InvalidSignature. (No timing assertion: timings flake on a
        // loaded machine.)
        let request = post(&[("X-Twilio-Signature", WRONG_SIG)], &body);
        too_large(
            hook(WebhookConfig::default()).verify_at(&request, at(0)),
            size,
            DEFAULT_MAX_BODY_BYTES,
        );
        // Raising the limit lets the same request reach the signature check.
        let roomy = WebhookConfig::default().with_max_body_bytes(size);
        assert_eq!(
            hook(roomy).verify_at(&request, at(0)).unwrap_err(),
            WebhookError::InvalidSignature
        );
    }

    #[test]
    fn a_malformed_signature_is_refused_before_the_body_is_decoded() {
        for bad in [
            "",
            "not base64!",
            "AAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            match hook(WebhookConfig::default())
                .verify_at(&post(&[("X-Twilio-Signature", bad)], b"Body=x"), at(0))
            {
                Err(WebhookError::MalformedHeader { header, .. }) => {
                    assert_eq!(header, "x-twilio-signature");
                }
                other => panic!("{bad:?}: expected MalformedHeader, got {other:?}"),
            }
        }
        // Well-formed but wrong: the signature check itself answers.
        assert_eq!(
            hook(WebhookConfig::default())
                .verify_at(
                    &post(&[("X-Twilio-Signature", WRONG_SIG)], b"Body=x"),
                    at(0)
                )
                .unwrap_err(),
            WebhookError::InvalidSignature
        );
    }

    #[test]
    fn a_long_idempotency_token_is_malformed() {
        let hook = hook(WebhookConfig::default());
        let params = vec![("Body".to_owned(), "hi".to_owned())];
        let sig = hook.sign(URL, &params).unwrap();
        let token = "t".repeat(MAX_DELIVERY_ID_BYTES + 1);
        let req = request(
            Method::POST,
            URL,
            &[
                ("X-Twilio-Signature", &sig),
                ("I-Twilio-Idempotency-Token", &token),
            ],
            b"Body=hi",
        );
        assert!(matches!(
            hook.verify_at(&req, at(0)).unwrap_err(),
            WebhookError::MalformedHeader {
                header: "i-twilio-idempotency-token",
                ..
            }
        ));
    }

    #[test]
    fn form_nuls_are_replaced_after_the_signature_matches() {
        let hook = hook(WebhookConfig::default());
        let params = vec![
            ("Body".to_owned(), "a\0b".to_owned()),
            ("From".to_owned(), "whatsapp:+14155550100".to_owned()),
        ];
        let sig = hook.sign(URL, &params).unwrap();
        let req = request(
            Method::POST,
            URL,
            &[("X-Twilio-Signature", &sig)],
            b"Body=a%00b&From=whatsapp%3A%2B14155550100",
        );
        let verified = hook.verify_at(&req, at(0)).unwrap();
        match &hook.parse(&verified).unwrap()[..] {
            [InboundEvent::Reply { text, .. }] => {
                assert_eq!(text.as_deref(), Some("a\u{FFFD}b"));
            }
            other => panic!("expected one reply, got {other:?}"),
        }
    }

    #[test]
    fn numeric_ids_in_json_bodies_keep_their_exact_text() {
        let hook = hook(WebhookConfig::default());
        let body = br#"{"MessageSid":123456789012345678901234567890,"MessageStatus":"delivered","Note":"x\u0000"}"#;
        let hash = hex::encode(sha2::Sha256::digest(body));
        let url = format!("{URL}?bodySHA256={hash}");
        let sig = hook.sign(&url, &[]).unwrap();
        let req = request(Method::POST, &url, &[("X-Twilio-Signature", &sig)], body);
        let verified = hook.verify_at(&req, at(0)).unwrap();
        match &hook.parse(&verified).unwrap()[..] {
            [
                InboundEvent::Delivered {
                    provider_message_id,
                    ..
                },
            ] => assert_eq!(provider_message_id, "123456789012345678901234567890"),
            other => panic!("expected one delivery, got {other:?}"),
        }
    }
}

#[cfg(feature = "cal-com")]
mod cal_com {
    use super::*;
    use crm_channels::webhooks::cal_com::CalComWebhook;

    const KEY: &str = "test-secret";

    fn hook(config: WebhookConfig) -> CalComWebhook {
        CalComWebhook::new(secret(KEY), config).unwrap()
    }

    fn signed(body: &[u8]) -> crm_core::WebhookRequest {
        let sig = hex_sha256_hmac(KEY.as_bytes(), &[body]);
        post(&[("X-Cal-Signature-256", &sig)], body)
    }

    #[test]
    fn oversized_bodies_are_refused_first() {
        too_large(
            hook(small()).verify_at(&post(&[], &[b'{'; 65]), at(0)),
            65,
            64,
        );
        let body = vec![b' '; 65];
        too_large(hook(small()).verify_at(&signed(&body), at(0)), 65, 64);
    }

    #[test]
    fn numeric_booking_ids_keep_their_exact_text() {
        let body = br#"{"triggerEvent":"BOOKING_CREATED","payload":{"bookingId":123456789012345678901234567890,"attendees":[{"email":"ada@acme.io"}]}}"#;
        let hook = hook(WebhookConfig::default());
        let request = signed(body);
        let verified = hook.verify_at(&request, at(0)).unwrap();
        match &hook.parse(&verified).unwrap()[..] {
            [InboundEvent::MeetingBooked { booking_id, .. }] => assert_eq!(
                booking_id.as_deref(),
                Some("123456789012345678901234567890")
            ),
            other => panic!("expected one booking, got {other:?}"),
        }
        let decimal = br#"{"triggerEvent":"BOOKING_CREATED","payload":{"bookingId":1.50,"attendees":[{"email":"ada@acme.io"}]}}"#;
        let request = signed(decimal);
        let verified = hook.verify_at(&request, at(0)).unwrap();
        match &hook.parse(&verified).unwrap()[..] {
            [InboundEvent::MeetingBooked { booking_id, .. }] => {
                assert_eq!(booking_id.as_deref(), Some("1.50"));
            }
            other => panic!("expected one booking, got {other:?}"),
        }
    }

    #[test]
    fn long_body_delivery_ids_are_malformed() {
        let uid = "u".repeat(MAX_DELIVERY_ID_BYTES);
        let body = format!(r#"{{"triggerEvent":"BOOKING_CREATED","payload":{{"uid":"{uid}"}}}}"#);
        assert!(matches!(
            hook(WebhookConfig::default())
                .verify_at(&signed(body.as_bytes()), at(0))
                .unwrap_err(),
            WebhookError::MalformedPayload(_)
        ));
    }
}

#[cfg(feature = "instagram")]
mod instagram {
    use super::*;
    use crm_channels::webhooks::meta::InstagramWebhook;

    #[test]
    fn oversized_bodies_are_refused_first() {
        let hook = InstagramWebhook::new(secret("app-secret"), small()).unwrap();
        too_large(hook.verify_at(&post(&[], &[b' '; 65]), at(0)), 65, 64);
        let sig = format!("sha256={}", hex_sha256_hmac(b"app-secret", &[&[b' '; 65]]));
        too_large(
            hook.verify_at(&post(&[("X-Hub-Signature-256", &sig)], &[b' '; 65]), at(0)),
            65,
            64,
        );
    }

    #[test]
    fn escaped_nuls_in_messages_are_replaced() {
        let hook = InstagramWebhook::new(secret("app-secret"), WebhookConfig::default()).unwrap();
        let body = br#"{"object":"instagram","entry":[{"messaging":[{"sender":{"id":"1"},"recipient":{"id":"2"},"message":{"mid":"m1","text":"a\u0000b"}}]}]}"#;
        let sig = format!("sha256={}", hex_sha256_hmac(b"app-secret", &[body]));
        let request = post(&[("X-Hub-Signature-256", &sig)], body);
        let verified = hook.verify_at(&request, at(0)).unwrap();
        let events = hook.parse(&verified).unwrap();
        let [
            InboundEvent::Reply {
                text: Some(text), ..
            },
        ] = events.as_slice()
        else {
            panic!("expected one reply, got {} events", events.len());
        };
        assert_eq!(text, "a\u{FFFD}b");
    }
}

#[cfg(feature = "calendly")]
mod calendly {
    use super::*;
    use crm_channels::webhooks::calendly::CalendlyWebhook;

    #[test]
    fn oversized_bodies_are_refused_first() {
        let hook = CalendlyWebhook::new(secret("key"), small()).unwrap();
        too_large(hook.verify_at(&post(&[], &[b' '; 65]), at(0)), 65, 64);
    }

    #[test]
    fn long_body_delivery_ids_are_malformed() {
        let hook = CalendlyWebhook::new(secret("key"), WebhookConfig::default()).unwrap();
        let uri = "u".repeat(MAX_DELIVERY_ID_BYTES);
        let body = format!(r#"{{"event":"invitee.created","payload":{{"uri":"{uri}"}}}}"#);
        let ts = "1700000000";
        let sig = hex_sha256_hmac(b"key", &[ts.as_bytes(), b".", body.as_bytes()]);
        let header = format!("t={ts},v1={sig}");
        let request = post(&[("Calendly-Webhook-Signature", &header)], body.as_bytes());
        assert!(matches!(
            hook.verify_at(&request, at(1_700_000_000)).unwrap_err(),
            WebhookError::MalformedPayload(_)
        ));
    }
}

#[cfg(feature = "slack")]
mod slack {
    use super::*;
    use crm_channels::webhooks::slack::SlackWebhook;

    #[test]
    fn oversized_bodies_are_refused_first() {
        let hook = SlackWebhook::new(secret("slack-secret"), small()).unwrap();
        too_large(hook.verify_at(&post(&[], &[b' '; 65]), at(0)), 65, 64);
        let body = vec![b'a'; 65];
        let sig = hook.sign(0, &body).unwrap();
        let request = post(
            &[
                ("X-Slack-Request-Timestamp", "0"),
                ("X-Slack-Signature", &sig),
            ],
            &body,
        );
        too_large(hook.verify_at(&request, at(0)), 65, 64);
    }
}
