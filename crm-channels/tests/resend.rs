//! Resend against a loopback server that checks the exact request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "resend")]

mod common;

use std::time::Duration;

use common::*;
use crm_channels::http::TransportErrorKind;
use crm_channels::resend::{ResendChannel, ResendConfig};
use crm_core::model::Channel;
use crm_core::secret::{SecretRef, SecretString};
use crm_core::{ChannelAdapter, ChannelError, ChannelErrorKind, OutboundMessage};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "re_test_123456";

fn channel(base: &str) -> ResendChannel {
    let config = ResendConfig::new(
        SecretRef::parse("secret://resend/api-key:1").unwrap(),
        "Sales <sales@example.com>",
    )
    .unwrap()
    .with_http(http_config(base));
    ResendChannel::new(config, SecretString::from(KEY.to_owned()))
        .unwrap()
        .with_clock(clock())
}

fn email() -> OutboundMessage {
    message(Channel::Email, "ada@example.com")
}

/// Answers every POST /emails with `response`.
async fn answering(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

fn error_body(status: u16, name: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"statusCode": status, "message": message, "name": name}))
}

async fn send_expecting_error(response: ResponseTemplate) -> ChannelError {
    let server = answering(response).await;
    channel(&server.uri()).send(&email()).await.unwrap_err()
}

#[tokio::test]
async fn sends_the_documented_request() {
    let server = MockServer::start().await;
    let msg = email();
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("idempotency-key", msg.idempotency_key().as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "from": "Sales <sales@example.com>",
            "to": ["ada@example.com"],
            "subject": "Quick question",
            "text": "Hi Ada, do you have 15 minutes this week?"
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let receipt = channel(&server.uri()).send(&msg).await.unwrap();
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some("49a3999c-0ce1-4ea6-ab68-afcd6dc2e794")
    );
    assert_eq!(receipt.accepted_at, now());
}

#[tokio::test]
async fn metadata_adds_html_reply_to_and_tags() {
    let server = MockServer::start().await;
    let mut msg = email();
    msg.metadata = json!({
        "html": "<p>Hi Ada</p>",
        "reply_to": "owner@example.com",
        "tags": {"campaign": "spring"}
    });
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(body_json(json!({
            "from": "Sales <sales@example.com>",
            "to": ["ada@example.com"],
            "subject": "Quick question",
            "text": "Hi Ada, do you have 15 minutes this week?",
            "html": "<p>Hi Ada</p>",
            "reply_to": "owner@example.com",
            "tags": [{"name": "campaign", "value": "spring"}]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "e1"})))
        .expect(1)
        .mount(&server)
        .await;
    channel(&server.uri()).send(&msg).await.unwrap();
}

#[tokio::test]
async fn bad_input_fails_before_any_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let c = channel(&server.uri());
    let mut bad_address = email();
    bad_address.recipient = "not-an-address".into();
    assert_eq!(
        c.send(&bad_address).await.unwrap_err().kind(),
        ChannelErrorKind::InvalidRecipient
    );
    let mut no_subject = email();
    no_subject.subject = None;
    assert_eq!(
        c.send(&no_subject).await.unwrap_err().kind(),
        ChannelErrorKind::Permanent
    );
}

#[tokio::test]
async fn validation_errors_are_permanent() {
    let e = send_expecting_error(error_body(400, "validation_error", "Invalid `subject`")).await;
    assert_eq!(e.kind(), ChannelErrorKind::Permanent);
    assert!(e.to_string().contains("validation_error"));
}

#[tokio::test]
async fn auth_errors_are_auth() {
    for (status, name) in [
        (401, "missing_api_key"),
        (401, "restricted_api_key"),
        (403, "invalid_api_key"),
    ] {
        let e = send_expecting_error(error_body(status, name, "API key is invalid")).await;
        assert_eq!(e.kind(), ChannelErrorKind::Auth, "{status} {name}");
        assert!(!e.to_string().contains(KEY));
    }
}

#[tokio::test]
async fn unverified_domain_is_permanent_not_auth() {
    let e = send_expecting_error(error_body(
        403,
        "validation_error",
        "The example.com domain is not verified",
    ))
    .await;
    assert_eq!(e.kind(), ChannelErrorKind::Permanent);
}

#[tokio::test]
async fn not_found_is_permanent() {
    let e = send_expecting_error(error_body(
        404,
        "not_found",
        "The requested endpoint does not exist.",
    ))
    .await;
    assert_eq!(e.kind(), ChannelErrorKind::Permanent);
}

#[tokio::test]
async fn idempotency_conflicts_are_told_apart() {
    let e = send_expecting_error(error_body(
        409,
        "invalid_idempotent_request",
        "Same idempotency key used with a different request payload.",
    ))
    .await;
    assert_eq!(e.kind(), ChannelErrorKind::Permanent);
    let e = send_expecting_error(
        error_body(
            409,
            "concurrent_idempotent_requests",
            "Same idempotency key used while original request is still in progress.",
        )
        .insert_header("retry-after", "1"),
    )
    .await;
    assert_eq!(e.kind(), ChannelErrorKind::Retryable);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
}

#[tokio::test]
async fn invalid_to_is_an_invalid_recipient() {
    let e = send_expecting_error(error_body(
        422,
        "validation_error",
        "Invalid `to` field. The email address needs to follow the `email@example.com` format.",
    ))
    .await;
    assert_eq!(e.kind(), ChannelErrorKind::InvalidRecipient);
    assert!(e.suppresses_recipient());
    let e = send_expecting_error(error_body(
        422,
        "invalid_from_address",
        "Invalid `from` field.",
    ))
    .await;
    assert_eq!(e.kind(), ChannelErrorKind::Permanent);
}

#[tokio::test]
async fn rate_limits_carry_retry_after() {
    let server = answering(
        error_body(429, "rate_limit_exceeded", "Too many requests.")
            .insert_header("retry-after", "7")
            .insert_header("ratelimit-limit", "5")
            .insert_header("ratelimit-remaining", "0")
            .insert_header("ratelimit-reset", "7"),
    )
    .await;
    let c = channel(&server.uri());
    let e = c.send(&email()).await.unwrap_err();
    assert_eq!(e.kind(), ChannelErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    let state = c.rate_limit();
    assert_eq!((state.limit, state.remaining), (Some(5), Some(0)));
}

#[tokio::test]
async fn quota_429_without_retry_after_uses_ratelimit_reset() {
    let e = send_expecting_error(
        error_body(
            429,
            "daily_quota_exceeded",
            "You have reached your daily email sending quota.",
        )
        .insert_header("ratelimit-remaining", "0")
        .insert_header("ratelimit-reset", "3"),
    )
    .await;
    assert_eq!(e.kind(), ChannelErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn server_errors_are_retryable() {
    let e = send_expecting_error(error_body(
        500,
        "internal_server_error",
        "An unexpected error occurred.",
    ))
    .await;
    assert_eq!(e.kind(), ChannelErrorKind::Retryable);
    let e =
        send_expecting_error(ResponseTemplate::new(503).insert_header("retry-after", "30")).await;
    assert_eq!(e.kind(), ChannelErrorKind::Retryable);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
}

#[tokio::test]
async fn timeouts_are_retryable() {
    let e = send_expecting_error(
        ResponseTemplate::new(200)
            .set_body_json(json!({"id": "late"}))
            .set_delay(Duration::from_secs(2)),
    )
    .await;
    assert_eq!(e.kind(), ChannelErrorKind::Retryable);
    assert_eq!(transport_kind(&e), Some(TransportErrorKind::Timeout));
    assert!(
        !error_chain(&e).contains("127.0.0.1"),
        "{}",
        error_chain(&e)
    );
}

#[tokio::test]
async fn refused_connections_are_retryable() {
    let e = channel(&refused_base_url())
        .send(&email())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ChannelErrorKind::Retryable);
    assert_eq!(transport_kind(&e), Some(TransportErrorKind::Connect));
    assert!(!error_chain(&e).contains(KEY));
}

#[tokio::test]
async fn a_success_without_an_id_is_still_a_send() {
    let server = answering(ResponseTemplate::new(200).set_body_string("ok")).await;
    let receipt = channel(&server.uri()).send(&email()).await.unwrap();
    assert_eq!(receipt.provider_message_id, None);
}

#[test]
fn debug_redacts_the_key() {
    let c = channel("http://127.0.0.1:9");
    let printed = format!("{c:?}");
    assert!(!printed.contains(KEY), "{printed}");
    assert!(printed.contains("[redacted]"));
    let reference = SecretRef::parse("secret://resend/api-key:1").unwrap();
    let config = ResendConfig::new(reference, "a@example.com").unwrap();
    assert!(!format!("{config:?}").contains(KEY));
}
