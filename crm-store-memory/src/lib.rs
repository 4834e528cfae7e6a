//! The CRM engine's [`Store`](crm_core::Store) in process memory: the embedded default
//! and the test double.
//!
//! [`MemoryStore`] keeps every table behind one lock and honours the same contracts as
//! the PostgreSQL store (tenant scoping, compare-and-set on `version`, fenced claims,
//! atomic quotas and leases); both run the same conformance suite from
//! the `crm-testkit` crate. State lives only as long as the process.
//!
//! # Cookbook
//!
//! Create a store, hold it as `Arc<DynStore>` (or any single repository trait), and
//! pass the workspace to every call:
//!
//! ```
//! use std::sync::Arc;
//!
//! use chrono::{Duration, TimeZone, Utc};
//! use crm_core::DynStore;
//! use crm_core::ids::WorkspaceId;
//! use crm_core::model::{Channel, Contact, NewContact, OutboxMessage, OutboxStatus};
//! use crm_core::store::{Claim, Page, QuotaKey, Scope};
//! use crm_store_memory::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store: Arc<DynStore> = Arc::new(MemoryStore::new());
//! let ws = WorkspaceId::new();
//! let now = Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap();
//!
//! // Versioned rows: insert at version 1, update with compare-and-set.
//! let input = NewContact {
//!     first_name: "Ada".into(),
//!     email: Some("ada@example.com".into()),
//!     ..Default::default()
//! };
//! let ada = store.insert_contact(&Contact::create(ws, input, now)?).await?;
//! let mut edit = ada.clone();
//! edit.title = Some("CTO".into());
//! let ada = store.update_contact(&edit).await?;
//! assert_eq!(ada.version, 2);
//! assert!(store.update_contact(&edit).await.is_err()); // stale version
//! assert_eq!(store.list_contacts(ws, Page::first(10)).await?.len(), 1);
//!
//! // The outbox: enqueue idempotently, claim under a lease, complete with the token.
//! let message = OutboxMessage::new(ws, Channel::Email, "ada@example.com", "Hi Ada", "step-1", now)?
//!     .with_contact(ada.id);
//! assert!(store.enqueue_outbox(&message).await?.created);
//! assert!(!store.enqueue_outbox(&message).await?.created);
//! let claim = Claim::new(Scope::All, "worker-1", now, Duration::minutes(5), 10);
//! let claimed = store.claim_outbox(&claim).await?;
//! let token = claimed[0].lease.as_ref().map(|l| l.token).unwrap_or_default();
//! let done = store
//!     .finish_outbox(ws, message.id, token, OutboxStatus::Cancelled, "changed our mind", now)
//!     .await?;
//! assert_eq!(done.status, OutboxStatus::Cancelled);
//!
//! // Quotas never pass their cap, however many callers race.
//! let key = QuotaKey::new("send:email", now.date_naive());
//! assert!(store.try_consume_quota(ws, &key, 1, 1).await?.is_granted());
//! assert!(!store.try_consume_quota(ws, &key, 1, 1).await?.is_granted());
//! # Ok(())
//! # }
//! ```
//!
//! Clones of a [`MemoryStore`] share their tables, so a host can hand one to each engine.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crm_core::store::{NamedBackend, WakeSource, WakeTopic, Wakeups};

mod api_keys;
mod approval;
mod compliance;
mod coordination;
mod crm;
mod enrichment;
mod intake;
mod outbox;
mod queue;
mod scoring;
mod send_gate;
mod sent;
mod sequences;
mod table;
mod touches;
mod webhook;
mod workspace;

/// A [`Store`](crm_core::Store) in process memory.
///
/// Every table sits behind one mutex; each call does its work synchronously while
/// holding it, so every method is atomic and the lock is never held across `.await`.
/// Clones share the same tables. `Debug` prints table sizes, never rows (rows hold
/// personal data).
#[derive(Clone, Default)]
pub struct MemoryStore {
    tables: Arc<Mutex<Tables>>,
    /// In-process wake-ups, signalled after a call that made work claimable.
    wakeups: Wakeups,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` on the tables under the lock. A poisoned lock is recovered: no method
    /// panics while holding it, so the tables are consistent.
    ///
    /// A call that queued a job or made an outbox message pending signals its wake-up
    /// topic once the lock is released (so a woken loop finds the change), and again
    /// when the earliest of them falls due.
    fn with<R>(&self, f: impl FnOnce(&mut Tables) -> R) -> R {
        let mut tables: MutexGuard<'_, Tables> =
            self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let out = f(&mut tables);
        let jobs = std::mem::take(&mut tables.queue.wake);
        let outbox = std::mem::take(&mut tables.outbox.wake);
        drop(tables);
        if let Some(due) = jobs {
            self.wakeups.wake_at(WakeTopic::Jobs, due);
        }
        if let Some(due) = outbox {
            self.wakeups.wake_at(WakeTopic::Outbox, due);
        }
        out
    }
}

impl NamedBackend for MemoryStore {
    const NAME: &'static str = "memory";
}

impl WakeSource for MemoryStore {
    /// In-process signals shared by every clone of the store.
    fn wakeups(&self) -> Wakeups {
        self.wakeups.clone()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes = self.with(|t| t.sizes());
        let mut s = f.debug_struct("MemoryStore");
        for (name, len) in sizes {
            s.field(name, &len);
        }
        s.finish()
    }
}

/// Every table of the store, grouped like `crm_core::store`'s repository modules.
#[derive(Default)]
struct Tables {
    api_keys: api_keys::ApiKeyTables,
    crm: crm::CrmTables,
    compliance: compliance::ComplianceTables,
    intake: intake::IntakeTables,
    sequences: sequences::SequenceTables,
    outbox: outbox::OutboxTables,
    queue: queue::QueueTables,
    coordination: coordination::CoordinationTables,
    enrichment: enrichment::EnrichmentTables,
    scoring: scoring::ScoringTables,
    webhook: webhook::WebhookTables,
    workspaces: workspace::WorkspaceTables,
}

impl Tables {
    /// Row counts per table, for `Debug`.
    fn sizes(&self) -> Vec<(&'static str, usize)> {
        let mut sizes = Vec::new();
        self.api_keys.sizes(&mut sizes);
        self.crm.sizes(&mut sizes);
        self.compliance.sizes(&mut sizes);
        self.intake.sizes(&mut sizes);
        self.sequences.sizes(&mut sizes);
        self.outbox.sizes(&mut sizes);
        self.queue.sizes(&mut sizes);
        self.coordination.sizes(&mut sizes);
        self.enrichment.sizes(&mut sizes);
        self.scoring.sizes(&mut sizes);
        self.webhook.sizes(&mut sizes);
        self.workspaces.sizes(&mut sizes);
        sizes
    }
}

#[cfg(test)]
mod tests;
