//! Cal.com `X-Cal-Signature-256` verification and booking parsing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers
#![cfg(feature = "cal-com")]

mod webhooks_support;

use chrono::{TimeZone, Utc};
use crm_channels::webhooks::WebhookConfig;
use crm_channels::webhooks::cal_com::CalComWebhook;
use crm_core::{InboundEvent, InboundWebhook, WebhookError};
use hmac::{Hmac, KeyInit, Mac};
use webhooks_support::{VerifyAt, at, post, secret, tampered};

// CAL-X (self-computed fixture in PROVIDERS.md §4).
const CALX_SECRET: &str = "test-secret";
const CALX_BODY: &[u8] = br#"{"triggerEvent":"BOOKING_CREATED","createdAt":"2023-05-24T09:30:00.538Z","payload":{"uid":"bFJeNb2uX8ANpT3JL5EfXw"}}"#;
const CALX_SIG: &str = "8e30376b7049f907d178094b18af84156b178b0f0a87f8646da85ce16d1eb5d3";
// META-1 (PROVIDERS.md Appendix A) is the same HMAC-SHA256 hex construction.
const META1_SIG: &str = "0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914";

fn hook(key: &str) -> CalComWebhook {
    CalComWebhook::new(secret(key), WebhookConfig::default()).unwrap()
}

fn verify(key: &str, sig: &str, body: &[u8]) -> Result<Option<String>, WebhookError> {
    hook(key)
        .verify_at(&post(&[("X-Cal-Signature-256", sig)], body), at(0))
        .map(|v| v.delivery_id().map(str::to_owned))
}

fn sign(key: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn calx_fixture_verifies_with_delivery_id() {
    assert_eq!(
        verify(CALX_SECRET, CALX_SIG, CALX_BODY).unwrap().as_deref(),
        Some("BOOKING_CREATED:bFJeNb2uX8ANpT3JL5EfXw")
    );
}

#[test]
fn meta1_vector_verifies_as_cal_com_signature() {
    assert_eq!(verify("secret", META1_SIG, b"test").unwrap(), None);
}

#[test]
fn no_secret_provided_is_refused() {
    for sentinel in ["no-secret-provided", "NO-SECRET-PROVIDED"] {
        assert!(matches!(
            verify(CALX_SECRET, sentinel, CALX_BODY).unwrap_err(),
            WebhookError::MalformedHeader {
                header: "x-cal-signature-256",
                ..
            }
        ));
    }
}

#[test]
fn tampered_wrong_secret_truncated_missing_fail() {
    assert_eq!(
        verify(CALX_SECRET, CALX_SIG, &tampered(CALX_BODY)).unwrap_err(),
        WebhookError::InvalidSignature
    );
    assert_eq!(
        verify("test-secreT", CALX_SIG, CALX_BODY).unwrap_err(),
        WebhookError::InvalidSignature
    );
    assert_eq!(
        verify(CALX_SECRET, &CALX_SIG[..62], CALX_BODY).unwrap_err(),
        WebhookError::InvalidSignature
    );
    assert_eq!(
        verify(CALX_SECRET, &format!("sha256={CALX_SIG}"), CALX_BODY).unwrap_err(),
        WebhookError::InvalidSignature
    );
    assert_eq!(
        verify(CALX_SECRET, "", CALX_BODY).unwrap_err(),
        WebhookError::InvalidSignature
    );
    let err = hook(CALX_SECRET)
        .verify_at(&post(&[], CALX_BODY), at(0))
        .unwrap_err();
    assert_eq!(err, WebhookError::MissingHeader("x-cal-signature-256"));
    assert!(matches!(
        CalComWebhook::new(secret(""), WebhookConfig::default()).unwrap_err(),
        WebhookError::InvalidSecret(_)
    ));
    let text = format!("{:?}", hook("cal-very-secret"));
    assert!(text.contains("redacted") && !text.contains("cal-very-secret"));
}

fn parse(body: &str) -> Result<Vec<InboundEvent>, WebhookError> {
    let hook = hook(CALX_SECRET);
    let sig = sign(CALX_SECRET, body.as_bytes());
    let req = post(&[("X-Cal-Signature-256", &sig)], body.as_bytes());
    let verified = hook.verify_at(&req, at(0)).unwrap();
    hook.parse(&verified)
}

fn booking(trigger: &str, extra: &str) -> String {
    format!(
        r#"{{"triggerEvent":"{trigger}","createdAt":"2023-05-24T09:30:00.538Z","payload":{{"type":"30min","title":"30 min between Pro and Ann","startTime":"2023-05-25T09:30:00Z","endTime":"2023-05-25T10:00:00Z","organizer":{{"id":5,"name":"Pro","email":"pro@example.com","timeZone":"Europe/London"}},"responses":{{"email":{{"label":"email_address","value":"ann@example.com"}}}},"attendees":[{{"email":"ann@example.com","name":"Ann","timeZone":"Europe/London"}}],"bookingId":91,"uid":"bFJeNb2uX8ANpT3JL5EfXw","status":"ACCEPTED"{extra}}}}}"#
    )
}

#[test]
fn parses_booking_created() {
    assert_eq!(
        parse(&booking("BOOKING_CREATED", "")).unwrap(),
        vec![InboundEvent::MeetingBooked {
            email: "ann@example.com".into(),
            starts_at: Some(Utc.with_ymd_and_hms(2023, 5, 25, 9, 30, 0).unwrap()),
            booking_id: Some("bFJeNb2uX8ANpT3JL5EfXw".into())
        }]
    );
}

#[test]
fn parses_cancelled_rejected_and_rescheduled() {
    let cancelled = vec![InboundEvent::MeetingCancelled {
        email: "ann@example.com".into(),
        booking_id: Some("bFJeNb2uX8ANpT3JL5EfXw".into()),
    }];
    assert_eq!(
        parse(&booking(
            "BOOKING_CANCELLED",
            r#","cancellationReason":"clash""#
        ))
        .unwrap(),
        cancelled
    );
    assert_eq!(parse(&booking("BOOKING_REJECTED", "")).unwrap(), cancelled);
    let events = parse(&booking(
        "BOOKING_RESCHEDULED",
        r#","rescheduleUid":"oldUid""#,
    ))
    .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0],
        InboundEvent::MeetingCancelled {
            email: "ann@example.com".into(),
            booking_id: Some("oldUid".into())
        }
    );
    assert!(
        matches!(&events[1], InboundEvent::MeetingBooked { booking_id: Some(id), .. } if id == "bFJeNb2uX8ANpT3JL5EfXw")
    );
}

#[test]
fn other_triggers_produce_nothing_and_bad_payloads_are_typed() {
    assert_eq!(parse(&booking("MEETING_ENDED", "")).unwrap(), vec![]);
    assert_eq!(parse(r#"{"triggerEvent":"PING"}"#).unwrap(), vec![]);
    assert!(matches!(
        parse(r#"{"payload":{}}"#).unwrap_err(),
        WebhookError::MalformedPayload(_)
    ));
    assert!(matches!(
        parse(r#"{"triggerEvent":"BOOKING_CREATED","payload":{"uid":"x"}}"#).unwrap_err(),
        WebhookError::MalformedPayload(_)
    ));
    assert!(matches!(
        parse("name=x").unwrap_err(),
        WebhookError::MalformedPayload(_)
    ));
}
