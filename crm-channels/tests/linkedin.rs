//! LinkedIn assisted send: a drafted message becomes a manual task, no network.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "linkedin")]

mod common;

use std::sync::Arc;

use common::*;
use crm_channels::linkedin::LinkedInAssistedChannel;
use crm_core::ids::{ContactId, OutboxMessageId, WorkspaceId};
use crm_core::model::{Activity, ActivityKind, Channel};
use crm_core::{ChannelAdapter, ChannelErrorKind, OutboundMessage};

fn draft() -> OutboundMessage {
    let mut m = message(Channel::LinkedIn, "linkedin.com/in/ada-lovelace/");
    m.contact_id = Some(ContactId::new());
    m
}

#[tokio::test]
async fn a_send_becomes_a_task_with_the_draft() {
    let store = Arc::new(RecordingActivities::default());
    let channel = LinkedInAssistedChannel::new(store.clone()).with_clock(clock());
    let m = draft();
    let receipt = channel.send(&m).await.unwrap();
    assert_eq!(
        receipt.provider_message_id,
        Some(format!("linkedin-task:{}", m.id))
    );
    assert_eq!(receipt.accepted_at, now());
    let rows = store.rows.lock().unwrap().clone();
    assert_eq!(rows.len(), 1);
    let task = &rows[0];
    assert_eq!(task.kind, ActivityKind::TaskCreated);
    assert_eq!(task.channel, Some(Channel::LinkedIn));
    assert_eq!(task.outbox_message_id, Some(m.id));
    assert_eq!(task.contact_id, m.contact_id);
    assert_eq!(task.workspace_id, m.workspace_id);
    assert_eq!(task.details["draft"], m.body.as_str());
    assert_eq!(
        task.details["profile_url"],
        "https://www.linkedin.com/in/ada-lovelace"
    );
    assert_eq!(task.details["assisted_send"], true);
    assert!(
        task.details["instructions"]
            .as_str()
            .unwrap()
            .contains("partner-only")
    );
}

#[tokio::test]
async fn a_retry_does_not_create_a_second_task() {
    let store = Arc::new(RecordingActivities::default());
    let channel = LinkedInAssistedChannel::new(store.clone()).with_clock(clock());
    let m = draft();
    let first = channel.send(&m).await.unwrap();
    let second = channel.send(&m).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(store.rows.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_input_is_refused() {
    let channel = LinkedInAssistedChannel::new(Arc::new(RecordingActivities::default()));
    for bad in [
        "ada@example.com",
        "https://example.com/in/ada",
        "https://www.linkedin.com/company/acme",
    ] {
        let mut m = draft();
        m.recipient = bad.into();
        assert_eq!(
            channel.send(&m).await.unwrap_err().kind(),
            ChannelErrorKind::InvalidRecipient,
            "{bad}"
        );
    }
    let mut no_contact = draft();
    no_contact.contact_id = None;
    assert_eq!(
        channel.send(&no_contact).await.unwrap_err().kind(),
        ChannelErrorKind::Permanent
    );
    let mut empty = draft();
    empty.body = "  ".into();
    assert_eq!(
        channel.send(&empty).await.unwrap_err().kind(),
        ChannelErrorKind::Permanent
    );
}

#[tokio::test]
async fn an_unavailable_store_is_retryable() {
    let store = Arc::new(RecordingActivities {
        unavailable: true,
        ..Default::default()
    });
    let e = LinkedInAssistedChannel::new(store)
        .send(&draft())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ChannelErrorKind::Retryable);
}

#[tokio::test]
async fn a_retry_returns_the_first_tasks_time() {
    let store = Arc::new(RecordingActivities::default());
    let clock = clock();
    let channel = LinkedInAssistedChannel::new(store.clone()).with_clock(clock.clone());
    let m = draft();
    let first = channel.send(&m).await.unwrap();
    clock.advance(chrono::Duration::minutes(5));
    let second = channel.send(&m).await.unwrap();
    assert_eq!(second, first, "the retry reports the task recorded first");
    assert_eq!(store.rows.lock().unwrap().len(), 1);
}

/// An activity that is not `m`'s task but holds the id derived for it.
fn squatter(m: &OutboundMessage, workspace_id: WorkspaceId) -> Activity {
    let mut other = Activity::for_contact(
        workspace_id,
        m.contact_id.unwrap(),
        ActivityKind::Note,
        "someone else's note",
        now(),
    )
    .unwrap();
    other.id = LinkedInAssistedChannel::task_id(m);
    other
}

#[tokio::test]
async fn a_conflict_with_an_activity_that_is_not_the_task_is_an_error() {
    let m = draft();
    for (what, holder) in [
        ("a note in the same workspace", squatter(&m, m.workspace_id)),
        (
            "an activity in another workspace",
            squatter(&m, WorkspaceId::new()),
        ),
        (
            "a task for another outbox message",
            Activity {
                outbox_message_id: Some(OutboxMessageId::new()),
                kind: ActivityKind::TaskCreated,
                channel: Some(Channel::LinkedIn),
                ..squatter(&m, m.workspace_id)
            },
        ),
    ] {
        let store = Arc::new(RecordingActivities::default());
        store.rows.lock().unwrap().push(holder);
        let channel = LinkedInAssistedChannel::new(store.clone()).with_clock(clock());
        let error = channel.send(&m).await.unwrap_err();
        assert_eq!(error.kind(), ChannelErrorKind::Permanent, "{what}");
        assert_eq!(store.rows.lock().unwrap().len(), 1, "{what}");
    }
}

#[tokio::test]
async fn a_conflict_for_another_reason_is_an_error() {
    let store = Arc::new(RecordingActivities {
        always_conflict: true,
        ..Default::default()
    });
    let channel = LinkedInAssistedChannel::new(store.clone()).with_clock(clock());
    let error = channel.send(&draft()).await.unwrap_err();
    assert_eq!(error.kind(), ChannelErrorKind::Permanent);
    assert!(store.rows.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_conflict_that_cannot_be_checked_is_retryable() {
    let store = Arc::new(RecordingActivities {
        always_conflict: true,
        list_unavailable: true,
        ..Default::default()
    });
    let error = LinkedInAssistedChannel::new(store)
        .send(&draft())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ChannelErrorKind::Retryable);
}

#[tokio::test]
async fn the_task_is_found_behind_a_full_page_of_newer_tasks() {
    let store = Arc::new(RecordingActivities::default());
    let clock = clock();
    let channel = LinkedInAssistedChannel::new(store.clone()).with_clock(clock.clone());
    let m = draft();
    let first = channel.send(&m).await.unwrap();
    // A thousand newer LinkedIn tasks for the same contact fill the first page.
    for _ in 0..1000 {
        clock.advance(chrono::Duration::seconds(1));
        let mut newer = draft();
        newer.workspace_id = m.workspace_id;
        newer.contact_id = m.contact_id;
        channel.send(&newer).await.unwrap();
    }
    assert_eq!(channel.send(&m).await.unwrap(), first);
    assert_eq!(store.rows.lock().unwrap().len(), 1001);
}
