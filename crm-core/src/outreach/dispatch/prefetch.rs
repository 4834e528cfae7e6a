//! The reads of stages 2 and 3 for a whole batch: per workspace, one round trip each
//! for the approval items, the suppressions and the consents of its claimed messages,
//! instead of three per message. A workspace whose reads fail is left out; its
//! messages then read one by one in the gates, so a failure here costs speed only.

use std::collections::{BTreeMap, HashMap};

use crate::error::StoreError;
use crate::ids::{OutboxMessageId, WorkspaceId};
use crate::model::{ApprovalItem, Consent, OutboxMessage, Suppression};
use crate::store::DispatcherStore;

/// What the gates of one message need to read, read ahead.
#[derive(Debug, Default)]
pub(super) struct Prefetched {
    /// The message's approval item, if it has one.
    pub(super) approval: Option<ApprovalItem>,
    /// The suppression blocking its recipient on its channel, if any.
    pub(super) suppression: Option<Suppression>,
    /// Its contact's consent in force for the channel, if any was recorded.
    pub(super) consent: Option<Consent>,
}

/// Reads ahead for every message of the batch, keyed by message id.
pub(super) async fn prefetch(
    store: &dyn DispatcherStore,
    messages: &[OutboxMessage],
) -> HashMap<OutboxMessageId, Prefetched> {
    let mut by_workspace: BTreeMap<WorkspaceId, Vec<&OutboxMessage>> = BTreeMap::new();
    for m in messages {
        by_workspace.entry(m.workspace_id).or_default().push(m);
    }
    let reads = by_workspace.into_iter().map(|(ws, messages)| async move {
        match read_workspace(store, ws, &messages).await {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(
                    workspace_id = %ws,
                    error = %e,
                    "batched gate reads failed; the messages are checked one by one"
                );
                Vec::new()
            }
        }
    });
    futures::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn read_workspace(
    store: &dyn DispatcherStore,
    ws: WorkspaceId,
    messages: &[&OutboxMessage],
) -> Result<Vec<(OutboxMessageId, Prefetched)>, StoreError> {
    let ids: Vec<_> = messages.iter().map(|m| m.id).collect();
    let targets: Vec<_> = messages
        .iter()
        .map(|m| (m.channel, m.recipient.as_str()))
        .collect();
    // Only messages with a contact have a consent to read; the rest fail later anyway.
    let with_contact: Vec<_> = messages
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.contact_id.map(|c| (i, (c, m.channel))))
        .collect();
    let keys: Vec<_> = with_contact.iter().map(|&(_, key)| key).collect();
    let (approvals, suppressions, consents) = futures::future::try_join3(
        store.find_approvals_for_outbox(ws, &ids),
        store.find_suppressions(ws, &targets),
        store.current_consents(ws, &keys),
    )
    .await?;
    let mut read: Vec<_> = ids
        .into_iter()
        .zip(approvals.into_iter().zip(suppressions))
        .map(|(id, (approval, suppression))| {
            let consent = None;
            (
                id,
                Prefetched {
                    approval,
                    suppression,
                    consent,
                },
            )
        })
        .collect();
    for ((i, _), consent) in with_contact.into_iter().zip(consents) {
        if let Some((_, p)) = read.get_mut(i) {
            p.consent = consent;
        }
    }
    Ok(read)
}
