//! Scenarios of settings that cannot be read: the dispatcher fails closed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::Duration;

use super::{ApproveAll, Harness, config, once};
use crate::store::fixtures::{new_contact, new_message, ok, unique_email};
use crm_core::DynStore;
use crm_core::clock::Clock;
use crm_core::ids::WorkspaceId;
use crm_core::model::{Channel, OutboxStatus, Workspace};
use crm_core::outreach::dispatch::{ChannelRegistry, Dispatcher};
use crm_core::outreach::settings::{
    SettingsError, SettingsProvider, StoreSettings, WorkspaceSettings,
};

/// Default settings for every workspace, except that reading those of a workspace in
/// `failing` fails as a store outage would.
#[derive(Debug, Default)]
pub struct FlakySettings {
    failing: Mutex<HashSet<WorkspaceId>>,
}

impl FlakySettings {
    /// Makes reads of `workspace_id` fail (`true`) or succeed again (`false`).
    pub fn set_failing(&self, workspace_id: WorkspaceId, failing: bool) {
        let mut set = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        if failing {
            set.insert(workspace_id);
        } else {
            set.remove(&workspace_id);
        }
    }
}

#[async_trait]
impl SettingsProvider for FlakySettings {
    async fn settings(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<WorkspaceSettings, SettingsError> {
        let failing = self
            .failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&workspace_id);
        if failing {
            Err(SettingsError::Unavailable {
                workspace_id,
                source: "settings store unreachable".into(),
            })
        } else {
            Ok(WorkspaceSettings::default())
        }
    }
}

/// A dispatcher of `h`'s stub with `settings`.
fn dispatcher(h: &Harness, settings: Arc<dyn SettingsProvider>) -> Dispatcher {
    Dispatcher::new(
        h.store.clone(),
        Arc::new(h.clock.clone()),
        settings,
        ChannelRegistry::new().with(Arc::new(h.stub.clone())),
        config(),
    )
    .with_policy(Arc::new(ApproveAll { rule: h.rule }))
}

/// While a workspace's settings cannot be read, its due message is not sent: it is
/// put back for the configured delay (pending, no lease, attempt given back, no quota
/// consumed) and the report counts it as `settings_unavailable`; another workspace in
/// the same batch sends. Once the read succeeds again, the message is sent once.
pub async fn dispatch_unreadable_settings_hold_the_workspace_until_they_read(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let held = h.enqueue().await;
    let other_ws = WorkspaceId::new();
    let email = unique_email();
    let other_contact = ok(
        h.store.insert_contact(&new_contact(other_ws, &email)).await,
        "insert a contact",
    );
    let mut other = new_message(other_ws)
        .with_contact(other_contact.id)
        .with_not_before(h.clock.now());
    other.recipient = email;
    h.store
        .enqueue_outbox(&other)
        .await
        .expect("enqueue_outbox");
    let settings = Arc::new(FlakySettings::default());
    settings.set_failing(h.ws, true);
    let d = dispatcher(&h, settings.clone());
    let start = h.clock.now();

    let report = once(&d).await;
    assert_eq!(
        (report.claimed, report.sent, report.settings_unavailable),
        (2, 1, 1),
        "the readable workspace sends, the unreadable one is held: {report:?}"
    );
    let delivered = h.stub.delivered();
    assert_eq!(delivered.len(), 1, "only the readable workspace's message");
    assert_eq!(delivered[0].idempotency_key(), other.id.to_string());
    let stored = h.get(held.id).await;
    assert_eq!(
        stored.status,
        OutboxStatus::Pending,
        "held back, not failed"
    );
    assert!(
        stored.lease.is_none(),
        "the claim is ended, not left to expire"
    );
    assert_eq!(stored.attempts, 0, "the attempt is given back");
    assert_eq!(
        stored.not_before,
        start + d.config().settings_retry_delay(),
        "it waits the configured short delay"
    );
    let key = WorkspaceSettings::default().send_quota_key(Channel::Email, start);
    assert_eq!(
        ok(h.store.quota_usage(h.ws, &key).await, "quota_usage"),
        0,
        "no quota is consumed for a held message"
    );

    h.clock.advance(d.config().settings_retry_delay());
    let still = once(&d).await;
    assert_eq!(
        (still.claimed, still.sent, still.settings_unavailable),
        (1, 0, 1),
        "still unreadable, still held: {still:?}"
    );

    settings.set_failing(h.ws, false);
    h.clock.advance(d.config().settings_retry_delay());
    let resumed = once(&d).await;
    assert_eq!(
        (resumed.claimed, resumed.sent),
        (1, 1),
        "sent once the settings read: {resumed:?}"
    );
    assert_eq!(h.get(held.id).await.status, OutboxStatus::Sent);
    assert_eq!(h.stub.handed_count(), 2, "each message handed over once");
}

/// With store-backed settings, a workspace the registry does not know sends nothing
/// (no defaults); once registered, its stored settings apply (here: dry-run, so the
/// message goes to the dry-run adapter, not the provider).
pub async fn dispatch_store_settings_send_nothing_for_an_unknown_workspace(store: Arc<DynStore>) {
    let h = Harness::new(store);
    let message = h.enqueue().await;
    let d = dispatcher(&h, Arc::new(StoreSettings::new(h.store.clone())));

    let report = once(&d).await;
    assert_eq!(
        (report.claimed, report.sent, report.settings_unavailable),
        (1, 0, 1),
        "an unregistered workspace is never sent with defaults: {report:?}"
    );
    assert_eq!(h.stub.handed_count(), 0, "nothing reached the provider");
    assert!(d.dry_run_channel().is_empty(), "nothing was dry-run either");
    assert_eq!(h.get(message.id).await.status, OutboxStatus::Pending);

    let settings = WorkspaceSettings::default().with_dry_run(true);
    let workspace = Workspace::new(h.ws, "Acme", settings, h.clock.now()).expect("valid workspace");
    ok(
        h.store.insert_workspace(&workspace).await,
        "insert_workspace",
    );
    h.clock
        .advance(d.config().settings_retry_delay() + Duration::seconds(1));
    let registered = once(&d).await;
    assert_eq!(
        (registered.claimed, registered.sent),
        (1, 1),
        "a registered workspace sends: {registered:?}"
    );
    assert_eq!(
        h.stub.handed_count(),
        0,
        "the stored dry-run setting keeps it off the provider"
    );
    assert_eq!(
        d.dry_run_channel().len(),
        1,
        "recorded by the dry-run adapter"
    );
    assert_eq!(h.get(message.id).await.status, OutboxStatus::Sent);
}
