//! Instagram messaging against a loopback server that checks the exact request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "instagram")]

mod common;

use std::time::Duration;

use chrono::Duration as Span;
use common::*;
use crm_channels::http::TransportErrorKind;
use crm_channels::instagram::{InstagramChannel, InstagramConfig, InstagramEndpoint};
use crm_core::model::Channel;
use crm_core::secret::{SecretRef, SecretString};
use crm_core::{ChannelAdapter, ChannelError, ChannelErrorKind, OutboundMessage};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "EAAGpagetoken123";
const IGSID: &str = "1784140000000001";

fn channel_for(base: &str, endpoint: InstagramEndpoint) -> InstagramChannel {
    let reference = SecretRef::parse("secret://instagram/token:1").unwrap();
    let config = InstagramConfig::new(reference, endpoint)
        .unwrap()
        .with_api_version("v23.0")
        .with_http(http_config(base));
    InstagramChannel::new(config, SecretString::from(TOKEN.to_owned()))
        .unwrap()
        .with_clock(clock())
}

fn channel(base: &str) -> InstagramChannel {
    channel_for(base, InstagramEndpoint::Page { page_id: None })
}

fn dm(hours_since_inbound: i64) -> OutboundMessage {
    let mut m = message(Channel::Instagram, IGSID);
    m.metadata =
        json!({"last_inbound_at": (now() - Span::hours(hours_since_inbound)).to_rfc3339()});
    m
}

fn sent() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"recipient_id": IGSID, "message_id": "mid.1"}))
}

fn graph_error(status: u16, code: i64, subcode: Option<i64>) -> ResponseTemplate {
    let mut error =
        json!({"message": "error", "type": "OAuthException", "code": code, "fbtrace_id": "A1"});
    if let Some(sub) = subcode {
        error["error_subcode"] = sub.into();
    }
    ResponseTemplate::new(status).set_body_json(json!({ "error": error }))
}

async fn error_for(response: ResponseTemplate) -> ChannelError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v23.0/me/messages"))
        .respond_with(response)
        .mount(&server)
        .await;
    channel(&server.uri()).send(&dm(1)).await.unwrap_err()
}

#[tokio::test]
async fn page_route_sends_the_documented_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v23.0/me/messages"))
        .and(query_param("access_token", TOKEN))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "recipient": {"id": IGSID},
            "message": {"text": "Hi Ada, do you have 15 minutes this week?"}
        })))
        .respond_with(sent())
        .expect(1)
        .mount(&server)
        .await;
    let receipt = channel(&server.uri()).send(&dm(3)).await.unwrap();
    assert_eq!(receipt.provider_message_id.as_deref(), Some("mid.1"));
}

#[tokio::test]
async fn instagram_login_route_uses_a_bearer_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v23.0/17841400000000099/messages"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(body_json(json!({
            "recipient": {"id": IGSID},
            "message": {"text": "Hi Ada, do you have 15 minutes this week?"}
        })))
        .respond_with(sent())
        .expect(1)
        .mount(&server)
        .await;
    let c = channel_for(
        &server.uri(),
        InstagramEndpoint::InstagramLogin {
            ig_user_id: "17841400000000099".into(),
        },
    );
    c.send(&dm(3)).await.unwrap();
}

#[tokio::test]
async fn human_agents_may_reply_within_seven_days_with_a_tag() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v23.0/me/messages"))
        .and(body_json(json!({
            "recipient": {"id": IGSID},
            "message": {"text": "Hi Ada, do you have 15 minutes this week?"},
            "messaging_type": "MESSAGE_TAG",
            "tag": "HUMAN_AGENT"
        })))
        .respond_with(sent())
        .expect(1)
        .mount(&server)
        .await;
    let mut m = dm(72);
    m.metadata["human_agent"] = true.into();
    channel(&server.uri()).send(&m).await.unwrap();
}

#[tokio::test]
async fn local_rules_fail_before_any_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(sent())
        .expect(0)
        .mount(&server)
        .await;
    let c = channel(&server.uri());
    // 1000 bytes is fine in length terms, 1001 is not (multi-byte characters count in bytes).
    let mut long = dm(1);
    long.body = "é".repeat(501);
    assert_eq!(
        c.send(&long).await.unwrap_err().kind(),
        ChannelErrorKind::Permanent
    );
    let stale = dm(25);
    assert_eq!(
        c.send(&stale).await.unwrap_err().kind(),
        ChannelErrorKind::Permanent
    );
    let mut too_old_for_agent = dm(24 * 8);
    too_old_for_agent.metadata["human_agent"] = true.into();
    assert_eq!(
        c.send(&too_old_for_agent).await.unwrap_err().kind(),
        ChannelErrorKind::Permanent
    );
    let mut username = dm(1);
    username.recipient = "@ada.lovelace".into();
    assert_eq!(
        c.send(&username).await.unwrap_err().kind(),
        ChannelErrorKind::InvalidRecipient
    );
}

#[tokio::test]
async fn exactly_1000_bytes_is_accepted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(sent())
        .expect(1)
        .mount(&server)
        .await;
    let mut m = dm(1);
    m.body = "é".repeat(500);
    channel(&server.uri()).send(&m).await.unwrap();
}

#[tokio::test]
async fn graph_error_codes_are_classified() {
    let cases = [
        (graph_error(401, 190, None), ChannelErrorKind::Auth),
        (graph_error(403, 200, None), ChannelErrorKind::Auth),
        (graph_error(400, 10, None), ChannelErrorKind::Auth),
        (graph_error(400, 613, None), ChannelErrorKind::RateLimited),
        (graph_error(400, 4, None), ChannelErrorKind::RateLimited),
        (
            graph_error(400, 551, None),
            ChannelErrorKind::InvalidRecipient,
        ),
        (
            graph_error(400, 100, Some(2_018_001)),
            ChannelErrorKind::InvalidRecipient,
        ),
        (graph_error(400, 100, None), ChannelErrorKind::Permanent),
        (graph_error(404, 803, None), ChannelErrorKind::Permanent),
        (graph_error(500, 2, None), ChannelErrorKind::Retryable),
        (ResponseTemplate::new(503), ChannelErrorKind::Retryable),
    ];
    for (response, expected) in cases {
        let e = error_for(response).await;
        assert_eq!(e.kind(), expected, "{e}");
        assert!(!e.to_string().contains(TOKEN));
    }
}

#[tokio::test]
async fn http_429_carries_retry_after() {
    let e = error_for(ResponseTemplate::new(429).insert_header("retry-after", "9")).await;
    assert_eq!(e.kind(), ChannelErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(9)));
}

#[tokio::test]
async fn transport_failures_never_leak_the_query_token() {
    let e = error_for(sent().set_delay(Duration::from_secs(2))).await;
    assert_eq!(transport_kind(&e), Some(TransportErrorKind::Timeout));
    assert!(!error_chain(&e).contains(TOKEN), "{}", error_chain(&e));
    let e = channel(&refused_base_url()).send(&dm(1)).await.unwrap_err();
    assert_eq!(transport_kind(&e), Some(TransportErrorKind::Connect));
    assert!(!error_chain(&e).contains(TOKEN), "{}", error_chain(&e));
    assert!(!format!("{e:?}").contains(TOKEN), "{e:?}");
}

#[test]
fn debug_redacts_the_token() {
    assert!(!format!("{:?}", channel("http://127.0.0.1:9")).contains(TOKEN));
}
