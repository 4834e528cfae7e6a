//! Slack `v0` request signing and approval button parsing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers
#![cfg(feature = "slack")]

mod webhooks_support;

use chrono::Duration;
use crm_channels::webhooks::WebhookConfig;
use crm_channels::webhooks::slack::SlackWebhook;
use crm_core::{InboundEvent, InboundWebhook, WebhookError};
use webhooks_support::{VerifyAt, at, post, secret};

// SL-1 (PROVIDERS.md §8): Slack docs worked example, also in python-slack-sdk tests.
const SL1_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SL1_TS: i64 = 1_531_420_618;
const SL1_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SL1_EXPECTED: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

fn hook() -> SlackWebhook {
    SlackWebhook::new(secret(SL1_SECRET), WebhookConfig::default()).unwrap()
}

fn verify_at(ts: &str, sig: &str, body: &[u8], now: i64) -> Result<Option<String>, WebhookError> {
    let req = post(
        &[
            ("X-Slack-Request-Timestamp", ts),
            ("X-Slack-Signature", sig),
        ],
        body,
    );
    hook()
        .verify_at(&req, at(now))
        .map(|v| v.delivery_id().map(str::to_owned))
}

fn verify(sig: &str, body: &[u8]) -> Result<Option<String>, WebhookError> {
    verify_at(&SL1_TS.to_string(), sig, body, SL1_TS)
}

#[test]
fn sl1_published_vector_verifies_and_signs() {
    assert_eq!(
        verify(SL1_EXPECTED, SL1_BODY).unwrap().as_deref(),
        Some("398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
    );
    assert_eq!(hook().sign(SL1_TS, SL1_BODY).unwrap(), SL1_EXPECTED);
}

#[test]
fn sl1_appended_body_fails() {
    // python-slack-sdk: body + "------" must fail.
    let body = [SL1_BODY, b"------"].concat();
    assert_eq!(
        verify(SL1_EXPECTED, &body).unwrap_err(),
        WebhookError::InvalidSignature
    );
}

#[test]
fn sl1_expired_and_future_fail() {
    let ts = SL1_TS.to_string();
    assert!(verify_at(&ts, SL1_EXPECTED, SL1_BODY, SL1_TS + 300).is_ok());
    assert!(verify_at(&ts, SL1_EXPECTED, SL1_BODY, SL1_TS - 300).is_ok());
    for now in [SL1_TS + 301, SL1_TS - 301, 1_700_000_000] {
        assert_eq!(
            verify_at(&ts, SL1_EXPECTED, SL1_BODY, now).unwrap_err(),
            WebhookError::TimestampOutOfTolerance
        );
    }
    let relaxed = SlackWebhook::new(
        secret(SL1_SECRET),
        WebhookConfig::default().with_tolerance(Duration::hours(1)),
    )
    .unwrap();
    let req = post(
        &[
            ("X-Slack-Request-Timestamp", &ts),
            ("X-Slack-Signature", SL1_EXPECTED),
        ],
        SL1_BODY,
    );
    assert!(relaxed.verify_at(&req, at(SL1_TS + 3600)).is_ok());
}

#[test]
fn wrong_secret_truncated_and_malformed_fail() {
    let other = SlackWebhook::new(
        secret("8f742231b10e8888abcd99yyyzzz85a6"),
        WebhookConfig::default(),
    )
    .unwrap();
    let ts = SL1_TS.to_string();
    let req = post(
        &[
            ("X-Slack-Request-Timestamp", &ts),
            ("X-Slack-Signature", SL1_EXPECTED),
        ],
        SL1_BODY,
    );
    assert_eq!(
        other.verify_at(&req, at(SL1_TS)).unwrap_err(),
        WebhookError::InvalidSignature
    );
    assert_eq!(
        verify(&SL1_EXPECTED[..60], SL1_BODY).unwrap_err(),
        WebhookError::InvalidSignature
    );
    assert_eq!(
        verify("v0=", SL1_BODY).unwrap_err(),
        WebhookError::InvalidSignature
    );
    let v1 = SL1_EXPECTED.replacen("v0=", "v1=", 1);
    assert!(matches!(
        verify(&v1, SL1_BODY).unwrap_err(),
        WebhookError::MalformedHeader {
            header: "x-slack-signature",
            ..
        }
    ));
    // The timestamp is part of the signed content.
    let moved = (SL1_TS + 1).to_string();
    assert_eq!(
        verify_at(&moved, SL1_EXPECTED, SL1_BODY, SL1_TS).unwrap_err(),
        WebhookError::InvalidSignature
    );
    assert!(matches!(
        verify_at("yesterday", SL1_EXPECTED, SL1_BODY, SL1_TS).unwrap_err(),
        WebhookError::MalformedHeader {
            header: "x-slack-request-timestamp",
            ..
        }
    ));
}

#[test]
fn missing_headers_and_empty_secret() {
    let ts = SL1_TS.to_string();
    let err = hook()
        .verify_at(
            &post(&[("X-Slack-Signature", SL1_EXPECTED)], SL1_BODY),
            at(SL1_TS),
        )
        .unwrap_err();
    assert_eq!(
        err,
        WebhookError::MissingHeader("x-slack-request-timestamp")
    );
    let err = hook()
        .verify_at(
            &post(&[("X-Slack-Request-Timestamp", &ts)], SL1_BODY),
            at(SL1_TS),
        )
        .unwrap_err();
    assert_eq!(err, WebhookError::MissingHeader("x-slack-signature"));
    assert!(matches!(
        SlackWebhook::new(secret(""), WebhookConfig::default()).unwrap_err(),
        WebhookError::InvalidSecret(_)
    ));
    let text = format!("{:?}", hook());
    assert!(text.contains("redacted") && !text.contains(SL1_SECRET));
}

fn signed_parse(body: &[u8]) -> Result<Vec<InboundEvent>, WebhookError> {
    let hook = hook();
    let ts = 1_700_000_000;
    let sig = hook.sign(ts, body).unwrap();
    let req = post(
        &[
            ("X-Slack-Request-Timestamp", &ts.to_string()),
            ("X-Slack-Signature", &sig),
        ],
        body,
    );
    let verified = hook.verify_at(&req, at(ts)).unwrap();
    hook.parse(&verified)
}

fn block_actions(actions: &str) -> Vec<u8> {
    let payload = format!(
        r#"{{"type":"block_actions","user":{{"id":"U123","username":"ann","team_id":"T1"}},"trigger_id":"123.456.abc","channel":{{"id":"C1"}},"response_url":"https://hooks.slack.com/actions/T1/1/abc","actions":[{actions}]}}"#
    );
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload)
        .finish()
        .into_bytes()
}

#[test]
fn approve_and_reject_buttons_become_decisions() {
    let approve = r#"{"type":"button","action_id":"approve","block_id":"deal_123","value":"deal_123","action_ts":"1700000000.1"}"#;
    assert_eq!(
        signed_parse(&block_actions(approve)).unwrap(),
        vec![InboundEvent::ApprovalDecision {
            item_id: "deal_123".into(),
            approve: true,
            user: "U123".into()
        }]
    );
    let reject =
        r#"{"type":"button","action_id":"reject:item-9","block_id":"blk","value":"item-9"}"#;
    assert_eq!(
        signed_parse(&block_actions(reject)).unwrap(),
        vec![InboundEvent::ApprovalDecision {
            item_id: "item-9".into(),
            approve: false,
            user: "U123".into()
        }]
    );
    // Without a value the block id names the item; unrelated buttons are ignored.
    let mixed = r#"{"type":"button","action_id":"approve_1","block_id":"item-7"},{"type":"button","action_id":"approved_by_bot","value":"x"},{"type":"button","action_id":"snooze","value":"x"}"#;
    assert_eq!(
        signed_parse(&block_actions(mixed)).unwrap(),
        vec![InboundEvent::ApprovalDecision {
            item_id: "item-7".into(),
            approve: true,
            user: "U123".into()
        }]
    );
}

#[test]
fn other_requests_produce_nothing() {
    assert_eq!(signed_parse(SL1_BODY).unwrap(), vec![]);
    let hook = hook();
    let body = br#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let sig = hook.sign(1_700_000_000, body).unwrap();
    let req = post(
        &[
            ("X-Slack-Request-Timestamp", "1700000000"),
            ("X-Slack-Signature", &sig),
        ],
        body,
    );
    let verified = hook.verify_at(&req, at(1_700_000_000)).unwrap();
    assert_eq!(hook.parse(&verified).unwrap(), vec![]);
    assert_eq!(
        hook.url_verification_challenge(&verified).as_deref(),
        Some("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    );
}

#[test]
fn malformed_interaction_payloads_are_typed() {
    assert!(matches!(
        signed_parse(b"payload=%7Bnot-json").unwrap_err(),
        WebhookError::MalformedPayload(_)
    ));
    let no_user = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(
            "payload",
            r#"{"type":"block_actions","actions":[{"action_id":"approve","value":"i"}]}"#,
        )
        .finish();
    assert!(matches!(
        signed_parse(no_user.as_bytes()).unwrap_err(),
        WebhookError::MalformedPayload(_)
    ));
}
