//! Approve to provider call: how long a message approved by a person through the
//! [`ApprovalInbox`] takes to reach its
//! channel adapter, through a started [`Engine`] with its default configuration (its
//! dispatcher woken by the store's wake-ups, polling every second as the safety net).
//!
//! The host enqueues one message per contact; the manual policy holds each for a
//! person. Once every message waits in the inbox, they are approved one at a time
//! (20 ms apart), each timed from just before the approve call until the adapter is
//! handed its message. Every message must reach the adapter exactly once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use crm_core::DynStore;
use crm_core::channel::{ChannelAdapter, ChannelError, OutboundMessage, SendReceipt};
use crm_core::engine::{Engine, EngineConfig};
use crm_core::ids::{OutboxMessageId, UserId, WorkspaceId};
use crm_core::model::{Channel, Contact, NewContact, OutboxMessage, Workspace};
use crm_core::outreach::approvals::{ApprovalInbox, StaticApprovers};
use crm_core::outreach::dispatch::ChannelRegistry;
use crm_core::outreach::settings::WorkspaceSettings;
use crm_core::store::Page;
use tokio::sync::mpsc;

use crate::check;

/// The gap between two approvals, so each finds the dispatcher idle.
const GAP: Duration = Duration::from_millis(20);

/// An email adapter that reports the instant it was handed each message.
#[derive(Debug, Clone)]
struct Recording {
    calls: mpsc::UnboundedSender<(OutboxMessageId, Instant)>,
    counts: Arc<Mutex<HashMap<OutboxMessageId, u32>>>,
}

#[async_trait]
impl ChannelAdapter for Recording {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn provider(&self) -> &'static str {
        "bench"
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        // A bench measures elapsed real time.
        #[allow(clippy::disallowed_methods)]
        let at = Instant::now();
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(message.id)
            .or_insert(0) += 1;
        let _ = self.calls.send((message.id, at));
        Ok(SendReceipt {
            provider_message_id: Some(format!("bench-{}", message.id)),
            // Informational; the dispatcher stamps the send with its own clock.
            #[allow(clippy::disallowed_methods)]
            accepted_at: Utc::now(),
        })
    }
}

/// Approves `samples` held messages one at a time through `store`'s engine and
/// returns each one's approve-to-adapter delay.
pub async fn approve_to_call(store: Arc<DynStore>, samples: usize) -> Vec<Duration> {
    // The engine runs on the system clock, as a host's does.
    #[allow(clippy::disallowed_methods)]
    let now = Utc::now();
    let (ws, approver) = (WorkspaceId::new(), UserId::new());
    let settings = WorkspaceSettings::default()
        .with_daily_cap(Channel::Email, 1_000_000)
        .with_daily_touch_limit(10);
    let workspace = Workspace::new(ws, "Approvals bench", settings, now).unwrap();
    store.insert_workspace(&workspace).await.unwrap();
    let mut held = Vec::with_capacity(samples);
    for i in 0..samples {
        let email = format!("approve{i}@bench.example");
        let new = NewContact {
            first_name: "Lead".into(),
            last_name: format!("{i}"),
            email: Some(email.clone()),
            ..Default::default()
        };
        let contact = store
            .insert_contact(&Contact::create(ws, new, now).unwrap())
            .await
            .unwrap();
        let message = OutboxMessage::new(
            ws,
            Channel::Email,
            email,
            "Hi Lead, quick question.".to_owned(),
            format!("approve-bench-{i}"),
            now,
        )
        .unwrap()
        .with_contact(contact.id)
        .with_subject("Hello");
        store.enqueue_outbox(&message).await.unwrap();
        held.push(message.id);
    }

    let (calls, mut called) = mpsc::unbounded_channel();
    let adapter = Recording {
        calls,
        counts: Arc::default(),
    };
    let engine = Engine::builder(store)
        .channel_registry(ChannelRegistry::new().with(Arc::new(adapter.clone())))
        .approvers(Arc::new(StaticApprovers::new().with_approver(ws, approver)))
        .config(EngineConfig::default().with_name("approve-bench"))
        .build()
        .unwrap();
    let running = engine.start().unwrap();
    let inbox = running.engine().inbox();
    let items = all_pending(inbox, ws, samples).await;

    let mut delays = Vec::with_capacity(samples);
    for item in items {
        tokio::time::sleep(GAP).await;
        #[allow(clippy::disallowed_methods)]
        let approved = Instant::now();
        approve(inbox, ws, item.id, approver).await;
        let at = loop {
            let (id, at) = tokio::time::timeout(Duration::from_secs(10), called.recv())
                .await
                .ok()
                .flatten()
                .expect("the approved message reaches the adapter");
            if id == item.outbox_message_id {
                break at;
            }
        };
        delays.push(at.saturating_duration_since(approved));
    }
    let report = running.shutdown().await;
    check(report.is_clean(), || {
        format!("approvals: the engine stopped cleanly: {report:?}")
    });
    let counts = adapter
        .counts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    check(
        held.iter().all(|id| counts.get(id) == Some(&1)) && counts.len() == held.len(),
        || format!("approvals: every approved message handed over exactly once: {counts:?}"),
    );
    delays
}

/// Waits (up to a minute) until `samples` messages of `ws` wait for approval.
async fn all_pending(
    inbox: &ApprovalInbox,
    ws: WorkspaceId,
    samples: usize,
) -> Vec<crm_core::model::ApprovalItem> {
    let limit = u32::try_from(samples).unwrap_or(u32::MAX);
    for _ in 0..600 {
        let pending = inbox.list_pending(ws, Page::first(limit)).await.unwrap();
        if pending.len() == samples {
            return pending;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("approvals: the messages never all waited for approval");
}

/// Approves as a host's button does: retrying while the dispatcher holds the message
/// (`MessageBusy` is retryable).
async fn approve(
    inbox: &ApprovalInbox,
    ws: WorkspaceId,
    item: crm_core::ids::ApprovalItemId,
    approver: UserId,
) {
    for _ in 0..2000 {
        match inbox.approve(ws, item, approver).await {
            Ok(_) => return,
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(1)).await,
            Err(e) => panic!("approvals: the approver may approve: {e}"),
        }
    }
    panic!("approvals: the item's message stayed busy");
}
