//! Twilio WhatsApp against a loopback server that checks the exact request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "twilio")]

mod common;

use std::time::Duration;

use base64::Engine as _;
use chrono::Duration as Span;
use common::*;
use crm_channels::http::TransportErrorKind;
use crm_channels::twilio::{TwilioConfig, TwilioSender, TwilioWhatsAppChannel};
use crm_core::model::Channel;
use crm_core::secret::{SecretRef, SecretString};
use crm_core::{ChannelAdapter, ChannelError, ChannelErrorKind, OutboundMessage};
use serde_json::json;
use wiremock::matchers::{body_string, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token-xyz";
const MESSAGES: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";

fn channel_with(base: &str, sender: TwilioSender) -> TwilioWhatsAppChannel {
    let config = TwilioConfig::new(SID, token_ref(), sender)
        .unwrap()
        .with_status_callback(
            "https://crm.example.com/hooks/twilio/status"
                .parse()
                .unwrap(),
        )
        .with_http(http_config(&format!("{base}/2010-04-01")));
    TwilioWhatsAppChannel::new(config, SecretString::from(TOKEN.to_owned()))
        .unwrap()
        .with_clock(clock())
}

fn token_ref() -> SecretRef {
    SecretRef::parse("secret://twilio/auth-token:1").unwrap()
}

fn channel(base: &str) -> TwilioWhatsAppChannel {
    channel_with(base, TwilioSender::From("+14155238886".into()))
}

fn basic_auth() -> String {
    let raw = format!("{SID}:{TOKEN}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A message inside the 24-hour window.
fn in_window() -> OutboundMessage {
    let mut m = message(Channel::WhatsApp, "+4915112345678");
    m.metadata = json!({"last_inbound_at": (now() - Span::hours(2)).to_rfc3339()});
    m
}

fn created(sid: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "sid": sid, "status": "queued", "to": "whatsapp:+4915112345678",
        "from": "whatsapp:+14155238886", "error_code": null
    }))
}

fn twilio_error(status: u16, code: u32, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "code": code, "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status
    }))
}

async fn error_for(response: ResponseTemplate) -> ChannelError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(response)
        .mount(&server)
        .await;
    channel(&server.uri()).send(&in_window()).await.unwrap_err()
}

#[tokio::test]
async fn free_form_inside_the_window_sends_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(header("authorization", basic_auth().as_str()))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string(
            "To=whatsapp%3A%2B4915112345678&From=whatsapp%3A%2B14155238886\
             &Body=Hi+Ada%2C+do+you+have+15+minutes+this+week%3F\
             &StatusCallback=https%3A%2F%2Fcrm.example.com%2Fhooks%2Ftwilio%2Fstatus",
        ))
        .respond_with(created("SM1"))
        .expect(1)
        .mount(&server)
        .await;
    let receipt = channel(&server.uri()).send(&in_window()).await.unwrap();
    assert_eq!(receipt.provider_message_id.as_deref(), Some("SM1"));
    assert_eq!(receipt.accepted_at, now());
}

#[tokio::test]
async fn templates_go_out_as_content_sid_with_variables() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(header("authorization", basic_auth().as_str()))
        .and(body_string(
            "To=whatsapp%3A%2B4915112345678&MessagingServiceSid=MG123\
             &ContentSid=HX0123&ContentVariables=%7B%221%22%3A%22Ada%22%7D\
             &StatusCallback=https%3A%2F%2Fcrm.example.com%2Fhooks%2Ftwilio%2Fstatus",
        ))
        .respond_with(created("SM2"))
        .expect(1)
        .mount(&server)
        .await;
    let c = channel_with(
        &server.uri(),
        TwilioSender::MessagingService("MG123".into()),
    );
    let mut m = message(Channel::WhatsApp, "whatsapp:+4915112345678");
    m.metadata = json!({"content_sid": "HX0123", "content_variables": {"1": "Ada"}});
    let receipt = c.send(&m).await.unwrap();
    assert_eq!(receipt.provider_message_id.as_deref(), Some("SM2"));
}

#[tokio::test]
async fn outside_the_window_free_form_is_refused_without_a_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(created("never"))
        .expect(0)
        .mount(&server)
        .await;
    let c = channel(&server.uri());
    let mut stale = message(Channel::WhatsApp, "+4915112345678");
    stale.metadata = json!({"last_inbound_at": (now() - Span::hours(25)).to_rfc3339()});
    let unknown = message(Channel::WhatsApp, "+4915112345678");
    let mut garbled = message(Channel::WhatsApp, "+4915112345678");
    garbled.metadata = json!({"last_inbound_at": "yesterday"});
    for m in [stale, unknown, garbled] {
        let e = c.send(&m).await.unwrap_err();
        assert_eq!(e.kind(), ChannelErrorKind::Permanent, "{e}");
    }
    let mut long = in_window();
    long.body = "x".repeat(1601);
    assert_eq!(
        c.send(&long).await.unwrap_err().kind(),
        ChannelErrorKind::Permanent
    );
    let mut bad_number = in_window();
    bad_number.recipient = "015112345678".into();
    assert_eq!(
        c.send(&bad_number).await.unwrap_err().kind(),
        ChannelErrorKind::InvalidRecipient
    );
}

#[tokio::test]
async fn invalid_number_codes_are_invalid_recipients() {
    for (code, text) in [
        (
            21211,
            "The 'To' number +4915112345678 is not a valid phone number.",
        ),
        (21614, "'To' number is not a valid mobile number"),
        (63003, "Channel could not find To address"),
    ] {
        let e = error_for(twilio_error(400, code, text)).await;
        assert_eq!(e.kind(), ChannelErrorKind::InvalidRecipient, "{code}");
        assert!(!e.to_string().contains("15112345678"), "{e}");
    }
}

#[tokio::test]
async fn other_client_errors_are_permanent() {
    let e = error_for(twilio_error(400, 21602, "Message body is required.")).await;
    assert_eq!(e.kind(), ChannelErrorKind::Permanent);
    let e = error_for(twilio_error(
        404,
        20404,
        "The requested resource was not found",
    ))
    .await;
    assert_eq!(e.kind(), ChannelErrorKind::Permanent);
}

#[tokio::test]
async fn auth_failures_are_auth() {
    let e = error_for(twilio_error(401, 20003, "Authenticate")).await;
    assert_eq!(e.kind(), ChannelErrorKind::Auth);
    let e = error_for(twilio_error(403, 20003, "Permission denied")).await;
    assert_eq!(e.kind(), ChannelErrorKind::Auth);
    assert!(!e.to_string().contains(TOKEN));
}

#[tokio::test]
async fn too_many_requests_is_rate_limited() {
    let e =
        error_for(twilio_error(429, 20429, "Too Many Requests").insert_header("retry-after", "4"))
            .await;
    assert_eq!(e.kind(), ChannelErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(4)));
    let e = error_for(twilio_error(429, 20429, "Too Many Requests")).await;
    assert_eq!(e.kind(), ChannelErrorKind::RateLimited);
    assert_eq!(e.retry_after(), None);
}

#[tokio::test]
async fn server_errors_and_transport_failures_are_retryable() {
    let e = error_for(twilio_error(500, 20500, "Internal Server Error")).await;
    assert_eq!(e.kind(), ChannelErrorKind::Retryable);
    let e = error_for(ResponseTemplate::new(503).insert_header("retry-after", "10")).await;
    assert_eq!(e.retry_after(), Some(Duration::from_secs(10)));
    let e = error_for(created("late").set_delay(Duration::from_secs(2))).await;
    assert_eq!(transport_kind(&e), Some(TransportErrorKind::Timeout));
    let e = channel(&refused_base_url())
        .send(&in_window())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ChannelErrorKind::Retryable);
    assert_eq!(transport_kind(&e), Some(TransportErrorKind::Connect));
    assert!(!error_chain(&e).contains(TOKEN));
}

#[test]
fn debug_redacts_the_token() {
    let c = channel("http://127.0.0.1:9");
    assert!(!format!("{c:?}").contains(TOKEN));
    let config =
        TwilioConfig::new(SID, token_ref(), TwilioSender::From("+14155238886".into())).unwrap();
    assert!(!format!("{config:?}").contains(TOKEN));
}
