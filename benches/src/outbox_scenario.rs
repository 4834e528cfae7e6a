//! The dispatch scenario shared by the engine's run and the hand-written baselines:
//! contacts over [`WORKSPACES`] workspaces, each workspace with an enabled graduated
//! auto-approval rule, every contact's email consent granted, a few consents withdrawn
//! and a few addresses suppressed, and due outbox messages for every contact.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use crm_core::DynStore;
use crm_core::ids::{ContactId, OutboxMessageId, WorkspaceId};
use crm_core::model::{
    ApprovalRule, Channel, Consent, ConsentStatus, Contact, NewContact, OutboxMessage,
    RuleConditions, Suppression, SuppressionReason,
};
use crm_core::outreach::approvals::META_CONFIDENCE;
use crm_core::outreach::dispatch::DispatchReport;
use crm_core::outreach::settings::{StaticSettings, WorkspaceSettings};
use futures::StreamExt;

use crate::adapter::CountingAdapter;
use crate::check;

/// Workspaces in the scenario.
pub const WORKSPACES: usize = 10;
/// Every `BLOCK_EVERY`th contact withdrew consent, and every `BLOCK_EVERY`th (offset by
/// half) is suppressed: 2 in 50 contacts, whose messages must be cancelled.
pub const BLOCK_EVERY: usize = 50;
/// The daily send cap per workspace: far above what the bench sends, so the quota is
/// consumed but never refuses.
pub const DAILY_CAP: u32 = 100_000_000;
/// How many store writes the set-up runs at once.
const SETUP_CONCURRENCY: usize = 16;

/// The instant every run works at (a Monday morning).
#[must_use]
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
}

/// One contact of the scenario.
#[derive(Debug, Clone)]
pub struct ScenarioContact {
    /// Its workspace.
    pub workspace_id: WorkspaceId,
    /// Its id.
    pub id: ContactId,
    /// Its email address.
    pub email: String,
    /// Whether its consent is withdrawn or its address suppressed.
    pub blocked: bool,
}

/// The workspaces and contacts of one store.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The workspaces.
    pub workspaces: Vec<WorkspaceId>,
    /// The contacts, over every workspace.
    pub contacts: Vec<ScenarioContact>,
}

/// The messages put in the outbox.
#[derive(Debug, Clone, Default)]
pub struct Filled {
    /// Messages that must be handed to the adapter exactly once.
    pub deliver: Vec<OutboxMessageId>,
    /// Messages of blocked contacts: cancelled, never handed over.
    pub blocked: Vec<OutboxMessageId>,
}

/// The settings every workspace uses: the default, with the email cap [`DAILY_CAP`].
#[must_use]
pub fn settings() -> StaticSettings {
    StaticSettings::new(WorkspaceSettings::default().with_daily_cap(Channel::Email, DAILY_CAP))
}

/// The graduated rule of a workspace: emails drafted with confidence 0.5 or more go
/// without a person.
fn rule(ws: WorkspaceId) -> ApprovalRule {
    let conditions = RuleConditions {
        min_confidence: Some(0.5),
        ..RuleConditions::default()
    };
    ApprovalRule::new(ws, Channel::Email, "confident emails", conditions, now()).unwrap()
}

/// Creates the workspaces, rules, `contacts` contacts, consents and suppressions.
pub async fn build(store: &Arc<DynStore>, contacts: usize) -> Scenario {
    let workspaces: Vec<WorkspaceId> = (0..WORKSPACES).map(|_| WorkspaceId::new()).collect();
    for &ws in &workspaces {
        store.insert_approval_rule(&rule(ws)).await.unwrap();
    }
    let made: Vec<ScenarioContact> = futures::stream::iter(0..contacts)
        .map(|i| {
            let ws = workspaces[i % WORKSPACES];
            let store = store.clone();
            async move {
                let email = format!("lead{i}@bench.example");
                let contact = Contact::create(
                    ws,
                    NewContact {
                        first_name: "Lead".into(),
                        last_name: format!("{i}"),
                        email: Some(email.clone()),
                        ..Default::default()
                    },
                    now(),
                )
                .unwrap();
                let contact = store.insert_contact(&contact).await.unwrap();
                let granted = Consent::new(
                    ws,
                    contact.id,
                    Channel::Email,
                    ConsentStatus::Granted,
                    "web form",
                    now() - chrono::Duration::days(30),
                )
                .unwrap();
                store.record_consent(&granted).await.unwrap();
                let withdrawn = i % BLOCK_EVERY == 7;
                let suppressed = i % BLOCK_EVERY == 7 + BLOCK_EVERY / 2;
                if withdrawn {
                    let consent = Consent::new(
                        ws,
                        contact.id,
                        Channel::Email,
                        ConsentStatus::Withdrawn,
                        "unsubscribe link",
                        now() - chrono::Duration::days(1),
                    )
                    .unwrap();
                    store.record_consent(&consent).await.unwrap();
                }
                if suppressed {
                    let s = Suppression::new(
                        ws,
                        Some(Channel::Email),
                        &email,
                        SuppressionReason::Unsubscribed,
                        now() - chrono::Duration::days(1),
                    )
                    .unwrap();
                    store.add_suppression(&s).await.unwrap();
                }
                ScenarioContact {
                    workspace_id: ws,
                    id: contact.id,
                    email,
                    blocked: withdrawn || suppressed,
                }
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    Scenario {
        workspaces,
        contacts: made,
    }
}

/// Enqueues `per_contact` due messages for every contact (drafted with confidence
/// 0.9, so the rule approves them).
pub async fn fill(store: &Arc<DynStore>, scenario: &Scenario, per_contact: usize) -> Filled {
    let messages: Vec<(OutboxMessage, bool)> = (0..per_contact)
        .flat_map(|round| {
            scenario.contacts.iter().map(move |c| {
                let message = OutboxMessage::new(
                    c.workspace_id,
                    Channel::Email,
                    c.email.clone(),
                    format!("Hello Lead, this is message {round}."),
                    format!("bench-{}-{round}", c.id),
                    now(),
                )
                .unwrap()
                .with_contact(c.id)
                .with_subject("Hello")
                .with_metadata(serde_json::json!({ META_CONFIDENCE: 0.9 }));
                (message, c.blocked)
            })
        })
        .collect();
    let mut filled = Filled::default();
    for (m, blocked) in &messages {
        if *blocked {
            filled.blocked.push(m.id);
        } else {
            filled.deliver.push(m.id);
        }
    }
    futures::stream::iter(messages)
        .for_each_concurrent(SETUP_CONCURRENCY * 4, |(m, _)| {
            let store = store.clone();
            async move {
                store.enqueue_outbox(&m).await.unwrap();
            }
        })
        .await;
    filled
}

/// What a run did, as the run itself counted it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Messages recorded as sent.
    pub sent: u64,
    /// Messages cancelled (suppressed or consent withdrawn).
    pub cancelled: u64,
}

impl From<&DispatchReport> for Counted {
    fn from(r: &DispatchReport) -> Self {
        Self {
            sent: r.sent,
            cancelled: r.cancelled,
        }
    }
}

/// The correctness checks of one run: every deliverable message handed to the adapter
/// exactly once, no blocked message handed over, and the run's own counts agree.
/// Exits non-zero (see [`check`]) on any failure.
pub fn verify(label: &str, filled: &Filled, adapter: &CountingAdapter, counted: Counted) {
    let dup = adapter.duplicates();
    check(dup.is_empty(), || {
        format!("{label}: {} messages handed over more than once", dup.len())
    });
    let missing = filled
        .deliver
        .iter()
        .filter(|id| adapter.count(**id) != 1)
        .count();
    check(missing == 0, || {
        format!("{label}: {missing} deliverable messages not handed over exactly once")
    });
    let leaked = filled
        .blocked
        .iter()
        .filter(|id| adapter.count(**id) != 0)
        .count();
    check(leaked == 0, || {
        format!("{label}: {leaked} suppressed or withdrawn messages were handed over")
    });
    check(adapter.total() == filled.deliver.len() as u64, || {
        format!(
            "{label}: {} hand-overs for {} deliverable messages",
            adapter.total(),
            filled.deliver.len()
        )
    });
    check(
        counted.sent == filled.deliver.len() as u64
            && counted.cancelled == filled.blocked.len() as u64,
        || {
            format!(
                "{label}: counted {counted:?}, expected {} sent and {} cancelled",
                filled.deliver.len(),
                filled.blocked.len()
            )
        },
    );
}
