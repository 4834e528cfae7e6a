//! The Slack approval notifier against a loopback server that checks the exact request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "slack")]

mod common;

use std::time::Duration;

use chrono::Duration as Span;
use common::*;
use crm_channels::http::TransportErrorKind;
use crm_channels::slack::{SlackConfig, SlackNotifier};
use crm_core::approval::Notifier;
use crm_core::ids::{ApprovalItemId, OutboxMessageId, WorkspaceId};
use crm_core::model::{ApprovalItem, ApprovalStatus, Channel};
use crm_core::secret::{SecretRef, SecretString};
use crm_core::{ChannelError, ChannelErrorKind};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "xoxb-test-token";

fn notifier(base: &str) -> SlackNotifier {
    let config = SlackConfig::new(
        SecretRef::parse("secret://slack/key:1").unwrap(),
        "C0APPROVALS",
    )
    .unwrap()
    .with_http(http_config(base));
    SlackNotifier::new(config, SecretString::from(TOKEN.to_owned())).unwrap()
}

fn item() -> ApprovalItem {
    ApprovalItem {
        id: ApprovalItemId::new(),
        workspace_id: WorkspaceId::new(),
        outbox_message_id: OutboxMessageId::new(),
        channel: Channel::Email,
        status: ApprovalStatus::Pending,
        confidence: Some(0.82),
        template_key: None,
        step_index: Some(0),
        original_body: "Hi Ada, do you have 15 minutes?".into(),
        edited_body: None,
        context: json!({}),
        reason: Some("manual approval is required".into()),
        decided_by: None,
        decided_by_rule: None,
        decided_at: None,
        expires_at: now() + Span::days(2),
        created_at: now(),
        updated_at: now(),
        version: 1,
    }
}

fn ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "ok": true, "channel": "C0APPROVALS", "ts": "1503435956.000247", "message": {}
    }))
}

fn not_ok(error: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": error}))
}

async fn error_for(response: ResponseTemplate) -> ChannelError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/chat.postMessage"))
        .respond_with(response)
        .mount(&server)
        .await;
    notifier(&server.uri())
        .approval_needed(&item())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn posts_the_draft_with_approve_and_reject_buttons() {
    let server = MockServer::start().await;
    let item = item();
    let id = item.id.to_string();
    Mock::given(method("POST"))
        .and(path("/chat.postMessage"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("content-type", "application/json; charset=utf-8"))
        .and(body_json(json!({
            "channel": "C0APPROVALS",
            "text": "Approval needed: email message",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text":
                    "*Channel:* email\n*Confidence:* 82%\n*Why:* manual approval is required\n*Expires:* 2024-05-03T12:00:00+00:00"}},
                {"type": "section", "text": {"type": "plain_text", "text": "Hi Ada, do you have 15 minutes?"}},
                {"type": "actions", "block_id": id, "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Approve"},
                     "style": "primary", "action_id": "approve", "value": id},
                    {"type": "button", "text": {"type": "plain_text", "text": "Reject"},
                     "style": "danger", "action_id": "reject", "value": id}
                ]}
            ]
        })))
        .respond_with(ok())
        .expect(1)
        .mount(&server)
        .await;
    let posted = notifier(&server.uri()).post_approval(&item).await.unwrap();
    assert_eq!(posted.ts, "1503435956.000247");
}

#[tokio::test]
async fn edited_text_is_what_the_approver_sees() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/chat.postMessage"))
        .respond_with(ok())
        .mount(&server)
        .await;
    let mut edited = item();
    edited.edited_body = Some("Edited text".into());
    notifier(&server.uri())
        .approval_needed(&edited)
        .await
        .unwrap();
    let body: serde_json::Value = server.received_requests().await.unwrap()[0]
        .body_json()
        .unwrap();
    assert_eq!(body["blocks"][1]["text"]["text"], "Edited text");
}

#[tokio::test]
async fn ok_false_is_an_error_classified_by_its_code() {
    let cases = [
        ("invalid_auth", ChannelErrorKind::Auth),
        ("not_authed", ChannelErrorKind::Auth),
        ("missing_scope", ChannelErrorKind::Auth),
        ("channel_not_found", ChannelErrorKind::Permanent),
        ("not_in_channel", ChannelErrorKind::Permanent),
        ("is_archived", ChannelErrorKind::Permanent),
        ("msg_too_long", ChannelErrorKind::Permanent),
        ("rate_limited", ChannelErrorKind::RateLimited),
        ("internal_error", ChannelErrorKind::Retryable),
    ];
    for (code, expected) in cases {
        let e = error_for(not_ok(code)).await;
        assert_eq!(e.kind(), expected, "{code}");
        assert!(e.to_string().contains(code) || expected == ChannelErrorKind::RateLimited);
    }
}

#[tokio::test]
async fn http_errors_are_classified() {
    let e = error_for(ResponseTemplate::new(429).insert_header("retry-after", "30")).await;
    assert_eq!(e.kind(), ChannelErrorKind::RateLimited);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    let e = error_for(ResponseTemplate::new(500)).await;
    assert_eq!(e.kind(), ChannelErrorKind::Retryable);
    let e = error_for(ResponseTemplate::new(404)).await;
    assert_eq!(e.kind(), ChannelErrorKind::Permanent);
    let e = error_for(ok().set_delay(Duration::from_secs(2))).await;
    assert_eq!(transport_kind(&e), Some(TransportErrorKind::Timeout));
    let e = notifier(&refused_base_url())
        .approval_needed(&item())
        .await
        .unwrap_err();
    assert_eq!(transport_kind(&e), Some(TransportErrorKind::Connect));
}

#[test]
fn debug_redacts_the_token() {
    assert!(!format!("{:?}", notifier("http://127.0.0.1:9")).contains(TOKEN));
}
