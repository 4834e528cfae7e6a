//! Builders shared by the approval scenarios: items waiting in the inbox without a
//! dispatcher, rules, requests, and services wired to a manual clock.

use std::fmt::Debug;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::store::fixtures::{base, created, new_message, ok, unique};
use crm_core::DynStore;
use crm_core::approval::ApprovalRequest;
use crm_core::clock::ManualClock;
use crm_core::ids::{UserId, WorkspaceId};
use crm_core::model::{
    ApprovalItem, ApprovalRule, ApprovalStatus, Channel, OutboxMessage, OutboxStatus,
    RuleConditions,
};
use crm_core::outreach::approvals::{ApprovalInbox, GraduatedRules, InboxError, StaticApprovers};
use crm_core::outreach::settings::{StaticSettings, WorkspaceSettings};

/// The time zone of every scenario workspace: Berlin, so a local day differs from UTC.
pub const TIME_ZONE: Tz = Tz::Europe__Berlin;

/// What an inbox item looks like; `Default` is an email step-0 item without
/// confidence or template, created at [`base`] and expiring a day later.
#[derive(Debug, Clone)]
pub struct ItemSpec {
    /// The channel of item and message.
    pub channel: Channel,
    /// The step index (on message and item).
    pub step_index: Option<i32>,
    /// The drafting confidence.
    pub confidence: Option<f64>,
    /// The template key.
    pub template_key: Option<String>,
    /// Creation time of message and item.
    pub created_at: DateTime<Utc>,
    /// When the item expires.
    pub expires_at: DateTime<Utc>,
}

impl Default for ItemSpec {
    fn default() -> Self {
        Self {
            channel: Channel::Email,
            step_index: Some(0),
            confidence: None,
            template_key: None,
            created_at: base(),
            expires_at: base() + Duration::days(1),
        }
    }
}

impl ItemSpec {
    /// With a confidence.
    #[must_use]
    pub fn confidence(mut self, c: f64) -> Self {
        self.confidence = Some(c);
        self
    }

    /// With a template key.
    #[must_use]
    pub fn template(mut self, key: &str) -> Self {
        self.template_key = Some(key.to_owned());
        self
    }

    /// On a channel.
    #[must_use]
    pub fn channel(mut self, channel: Channel) -> Self {
        self.channel = channel;
        self
    }

    /// Created at `created_at`, expiring `ttl` later.
    #[must_use]
    pub fn lives(mut self, created_at: DateTime<Utc>, ttl: Duration) -> Self {
        self.created_at = created_at;
        self.expires_at = created_at + ttl;
        self
    }
}

/// A message of `spec`'s channel, step and creation time (not stored).
pub fn message_for(ws: WorkspaceId, spec: &ItemSpec) -> OutboxMessage {
    let mut message = new_message(ws);
    if spec.channel != Channel::Email {
        message = OutboxMessage::new(
            ws,
            spec.channel,
            "+4915112345678",
            message.body.clone(),
            unique("send"),
            spec.created_at,
        )
        .expect("valid message");
    }
    message.step_index = spec.step_index;
    message.created_at = spec.created_at;
    message.updated_at = spec.created_at;
    message.not_before = spec.created_at;
    message
}

/// Enqueues a message awaiting approval and inserts its pending item, as the
/// dispatcher does on `RequireHuman`.
pub async fn pending_item(store: &DynStore, ws: WorkspaceId, spec: ItemSpec) -> ApprovalItem {
    let message = message_for(ws, &spec).with_status(OutboxStatus::AwaitingApproval);
    let message = created(store.enqueue_outbox(&message).await, "enqueue a message");
    let mut item = ApprovalItem::pending(
        ws,
        message.id,
        message.channel,
        message.body.clone(),
        spec.created_at,
        spec.expires_at,
    )
    .expect("valid approval item");
    item.step_index = spec.step_index;
    item.confidence = spec.confidence;
    item.template_key = spec.template_key;
    item.reason = Some("manual approval is required for every send".into());
    item.context = serde_json::json!({ "contact": "Ada", "previous_messages": 0 });
    created(
        store.insert_approval(&item).await,
        "insert an approval item",
    )
}

/// The outbox message of `item`, as stored.
pub async fn message_of(store: &DynStore, item: &ApprovalItem) -> OutboxMessage {
    ok(
        store
            .get_outbox(item.workspace_id, item.outbox_message_id)
            .await,
        "get the item's message",
    )
}

/// The item, as stored.
pub async fn reload(store: &DynStore, item: &ApprovalItem) -> ApprovalItem {
    ok(
        store.get_approval(item.workspace_id, item.id).await,
        "get_approval",
    )
}

/// Inserts an enabled email rule with `conditions` and `daily_cap`.
pub async fn rule(
    store: &DynStore,
    ws: WorkspaceId,
    conditions: RuleConditions,
    daily_cap: Option<u32>,
) -> ApprovalRule {
    let mut rule = ApprovalRule::new(ws, Channel::Email, unique("rule"), conditions, base())
        .expect("valid rule");
    rule.daily_cap = daily_cap;
    ok(
        store.insert_approval_rule(&rule).await,
        "insert_approval_rule",
    )
}

/// A policy request for an email message of `ws` at `step`.
pub fn request(
    ws: WorkspaceId,
    step: Option<i32>,
    confidence: Option<f64>,
    template_key: Option<&str>,
    now: DateTime<Utc>,
) -> ApprovalRequest {
    let mut message = new_message(ws);
    message.step_index = step;
    ApprovalRequest {
        message,
        confidence,
        template_key: template_key.map(str::to_owned),
        step_requires_approval: false,
        now,
    }
}

/// Graduated rules over `store`, every workspace in [`TIME_ZONE`], previewing at
/// [`base`] (a manual clock that stays there; decisions take their request's `now`).
pub fn graduated(store: &Arc<DynStore>) -> GraduatedRules {
    let settings =
        StaticSettings::new(WorkspaceSettings::default().with_default_time_zone(TIME_ZONE));
    let clock = Arc::new(ManualClock::new(base()));
    GraduatedRules::new(store.clone(), clock, Arc::new(settings))
}

/// An inbox over `store` where `approver` may decide in every workspace listed, with a
/// manual clock at [`base`].
pub fn inbox(
    store: &Arc<DynStore>,
    approver: UserId,
    workspaces: &[WorkspaceId],
) -> (ApprovalInbox, ManualClock) {
    let approvers = workspaces.iter().fold(StaticApprovers::new(), |a, ws| {
        a.with_approver(*ws, approver)
    });
    let clock = ManualClock::new(base());
    let inbox = ApprovalInbox::new(store.clone(), Arc::new(clock.clone()), Arc::new(approvers));
    (inbox, clock)
}

/// Unwraps an inbox result, failing with `what` and the error.
#[track_caller]
pub fn done<T>(result: Result<T, InboxError>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what}: unexpected error {err:?}"),
    }
}

/// Asserts an inbox result is `AlreadyDecided` with `status`.
#[track_caller]
pub fn already<T: Debug>(result: Result<T, InboxError>, status: ApprovalStatus, rule: &str) {
    match result {
        Err(InboxError::AlreadyDecided { status: s }) if s == status => {}
        other => panic!("{rule}: expected AlreadyDecided {{ {status} }}, got {other:?}"),
    }
}
