//! Calendly `Calendly-Webhook-Signature` verification and invitee parsing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers
#![cfg(feature = "calendly")]

mod webhooks_support;

use chrono::{Duration, TimeZone, Utc};
use crm_channels::webhooks::WebhookConfig;
use crm_channels::webhooks::calendly::CalendlyWebhook;
use crm_core::{InboundEvent, InboundWebhook, WebhookError};
use hmac::{Hmac, KeyInit, Mac};
use webhooks_support::{VerifyAt, at, post, secret, tampered};

// CLY-X (self-computed fixture in PROVIDERS.md §5).
const CLYX_KEY: &str = "test-signing-key";
const CLYX_T: i64 = 1_700_000_000;
const CLYX_BODY: &[u8] = br#"{"event":"invitee.created","payload":{}}"#;
const CLYX_V1: &str = "084dbb4e39861b80596aa4c649f5be18b9fbc9a57e4b8fea1166b75df73ed01e";

fn hook() -> CalendlyWebhook {
    CalendlyWebhook::new(secret(CLYX_KEY), WebhookConfig::default()).unwrap()
}

fn verify_at(header: &str, body: &[u8], now: i64) -> Result<(), WebhookError> {
    hook()
        .verify_at(
            &post(&[("Calendly-Webhook-Signature", header)], body),
            at(now),
        )
        .map(|_| ())
}

fn verify(header: &str, body: &[u8]) -> Result<(), WebhookError> {
    verify_at(header, body, CLYX_T)
}

fn sign(t: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(CLYX_KEY.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn clyx_fixture_verifies() {
    verify(&format!("t={CLYX_T},v1={CLYX_V1}"), CLYX_BODY).unwrap();
    // Order and surrounding spaces do not matter.
    verify(&format!("v1={CLYX_V1}, t={CLYX_T}"), CLYX_BODY).unwrap();
}

#[test]
fn multiple_v1_entries_any_may_match() {
    let decoy = "0".repeat(64);
    verify(&format!("t={CLYX_T},v1={decoy},v1={CLYX_V1}"), CLYX_BODY).unwrap();
    assert_eq!(
        verify(&format!("t={CLYX_T},v1={decoy}"), CLYX_BODY).unwrap_err(),
        WebhookError::InvalidSignature
    );
    // Unknown schemes are ignored.
    verify(&format!("t={CLYX_T},v0={decoy},v1={CLYX_V1}"), CLYX_BODY).unwrap();
}

#[test]
fn tampered_wrong_key_truncated_fail() {
    let header = format!("t={CLYX_T},v1={CLYX_V1}");
    assert_eq!(
        verify(&header, &tampered(CLYX_BODY)).unwrap_err(),
        WebhookError::InvalidSignature
    );
    let truncated = format!("t={CLYX_T},v1={}", &CLYX_V1[..40]);
    assert_eq!(
        verify(&truncated, CLYX_BODY).unwrap_err(),
        WebhookError::InvalidSignature
    );
    let other = CalendlyWebhook::new(secret("other-key"), WebhookConfig::default()).unwrap();
    let req = post(&[("Calendly-Webhook-Signature", &header)], CLYX_BODY);
    assert_eq!(
        other.verify_at(&req, at(CLYX_T)).unwrap_err(),
        WebhookError::InvalidSignature
    );
    // The timestamp is part of the signed content.
    let moved = format!("t={},v1={CLYX_V1}", CLYX_T + 1);
    assert_eq!(
        verify(&moved, CLYX_BODY).unwrap_err(),
        WebhookError::InvalidSignature
    );
}

#[test]
fn tolerance_defaults_to_three_minutes_both_directions_and_is_configurable() {
    let header = format!("t={CLYX_T},v1={CLYX_V1}");
    verify_at(&header, CLYX_BODY, CLYX_T + 180).unwrap();
    verify_at(&header, CLYX_BODY, CLYX_T - 180).unwrap();
    for now in [CLYX_T + 181, CLYX_T - 181] {
        assert_eq!(
            verify_at(&header, CLYX_BODY, now).unwrap_err(),
            WebhookError::TimestampOutOfTolerance
        );
    }
    let config = WebhookConfig::default().with_tolerance(Duration::minutes(5));
    let hook = CalendlyWebhook::new(secret(CLYX_KEY), config).unwrap();
    let req = post(&[("Calendly-Webhook-Signature", &header)], CLYX_BODY);
    assert!(hook.verify_at(&req, at(CLYX_T + 300)).is_ok());
}

#[test]
fn malformed_and_missing_headers_are_typed() {
    for header in [
        format!("v1={CLYX_V1}"),
        format!("t={CLYX_T}"),
        "garbage".to_owned(),
        format!("t=abc,v1={CLYX_V1}"),
    ] {
        assert!(
            matches!(
                verify(&header, CLYX_BODY).unwrap_err(),
                WebhookError::MalformedHeader {
                    header: "calendly-webhook-signature",
                    ..
                }
            ),
            "{header}"
        );
    }
    let err = hook()
        .verify_at(&post(&[], CLYX_BODY), at(CLYX_T))
        .unwrap_err();
    assert_eq!(
        err,
        WebhookError::MissingHeader("calendly-webhook-signature")
    );
    assert!(matches!(
        CalendlyWebhook::new(secret(" "), WebhookConfig::default()).unwrap_err(),
        WebhookError::InvalidSecret(_)
    ));
    let text = format!("{:?}", hook());
    assert!(text.contains("redacted") && !text.contains(CLYX_KEY));
}

fn parse(body: &str) -> (Option<String>, Result<Vec<InboundEvent>, WebhookError>) {
    let hook = hook();
    let header = format!("t={CLYX_T},v1={}", sign(CLYX_T, body.as_bytes()));
    let req = post(&[("Calendly-Webhook-Signature", &header)], body.as_bytes());
    let verified = hook.verify_at(&req, at(CLYX_T)).unwrap();
    (
        verified.delivery_id().map(str::to_owned),
        hook.parse(&verified),
    )
}

fn invitee(event: &str) -> String {
    format!(
        r#"{{"created_at":"2023-11-14T22:13:20.000000Z","created_by":"https://api.calendly.com/users/AAA","event":"{event}","payload":{{"email":"ann@example.com","name":"Ann","status":"active","uri":"https://api.calendly.com/scheduled_events/EV1/invitees/INV1","scheduled_event":{{"uri":"https://api.calendly.com/scheduled_events/EV1","start_time":"2023-11-20T15:00:00.000000Z","end_time":"2023-11-20T15:30:00.000000Z"}}}}}}"#
    )
}

const INVITEE_URI: &str = "https://api.calendly.com/scheduled_events/EV1/invitees/INV1";

#[test]
fn parses_invitee_created_and_canceled() {
    let (id, events) = parse(&invitee("invitee.created"));
    assert_eq!(
        id.as_deref(),
        Some("invitee.created:https://api.calendly.com/scheduled_events/EV1/invitees/INV1")
    );
    assert_eq!(
        events.unwrap(),
        vec![InboundEvent::MeetingBooked {
            email: "ann@example.com".into(),
            starts_at: Some(Utc.with_ymd_and_hms(2023, 11, 20, 15, 0, 0).unwrap()),
            booking_id: Some(INVITEE_URI.into())
        }]
    );
    assert_eq!(
        parse(&invitee("invitee.canceled")).1.unwrap(),
        vec![InboundEvent::MeetingCancelled {
            email: "ann@example.com".into(),
            booking_id: Some(INVITEE_URI.into())
        }]
    );
}

#[test]
fn other_events_and_bad_payloads() {
    assert_eq!(
        parse(&invitee("routing_form_submission.created"))
            .1
            .unwrap(),
        vec![]
    );
    assert!(matches!(
        parse(r#"{"event":"invitee.created","payload":{}}"#)
            .1
            .unwrap_err(),
        WebhookError::MalformedPayload(_)
    ));
    assert!(matches!(
        parse("[]").1.unwrap_err(),
        WebhookError::MalformedPayload(_)
    ));
}
