//! Touches for the daily touch limit: scans of the workspace's outbox rows and
//! activities.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::model::{ActivityKind, Channel, OutboxMessage, OutboxStatus};
use crm_core::store::{ContactDay, TouchStore, validate_day_count};

use crate::{MemoryStore, Tables};

/// Whether `m` is a queued touch of its contact (see the trait's contract), due before
/// `before`.
fn queued_touch(m: &OutboxMessage, before: DateTime<Utc>) -> bool {
    m.channel != Channel::ManualTask
        && matches!(
            m.status,
            OutboxStatus::Pending | OutboxStatus::AwaitingApproval | OutboxStatus::InFlight
        )
        && m.not_before < before
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The day touches of each of `days`, in one pass over the workspace's rows.
fn day_touches(t: &Tables, ws: WorkspaceId, days: &[ContactDay]) -> Vec<u64> {
    let mut wanted: HashMap<ContactId, Vec<usize>> = HashMap::new();
    for (i, day) in days.iter().enumerate() {
        wanted.entry(day.contact_id).or_default().push(i);
    }
    let mut totals = vec![0_u64; days.len()];
    let messages = t.outbox.messages.rows(ws).map(|fenced| &fenced.row);
    for m in messages {
        let Some(slots) = m.contact_id.and_then(|c| wanted.get(&c)) else {
            continue;
        };
        for &i in slots {
            totals[i] += u64::from(queued_touch(m, days[i].before));
        }
    }
    for a in t.crm.activities.rows(ws) {
        if a.kind != ActivityKind::MessageSent {
            continue;
        }
        let Some(slots) = a.contact_id.and_then(|c| wanted.get(&c)) else {
            continue;
        };
        for &i in slots {
            totals[i] += u64::from(a.occurred_at >= days[i].since);
        }
    }
    totals
}

#[async_trait]
impl TouchStore for MemoryStore {
    async fn count_queued_touches(
        &self,
        workspace_id: WorkspaceId,
        contact_id: ContactId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.with(|t| {
            let n = t
                .outbox
                .messages
                .rows(workspace_id)
                .map(|fenced| &fenced.row)
                .filter(|m| m.contact_id == Some(contact_id) && queued_touch(m, before))
                .count();
            Ok(count(n))
        })
    }

    async fn count_day_touches(
        &self,
        workspace_id: WorkspaceId,
        days: &[ContactDay],
    ) -> Result<Vec<u64>, StoreError> {
        validate_day_count(days)?;
        self.with(|t| Ok(day_touches(t, workspace_id, days)))
    }
}
