//! The building blocks every repository shares: a table keyed by (workspace, id), a
//! per-workspace unique index, compare-and-set and keyset paging.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::hash::Hash;
use std::ops::Bound;

use chrono::{DateTime, Duration, Utc};
use crm_core::ValidationError;
use crm_core::ids::{
    AccountId, ActivityId, AnomalyId, ApprovalItemId, ApprovalRuleId, AuditEntryId, ConsentId,
    ContactId, DealId, EnrollmentId, EventId, IntakeRecordId, JobId, OutboxMessageId, PipelineId,
    SequenceId, SuppressionId, WorkspaceId,
};
use crm_core::store::{Page, Scope};
use crm_core::{StoreError, model};

/// A typed id with the entity name errors use.
pub(crate) trait EntityId: Copy + Ord + Hash + Display {
    /// Entity name, e.g. `"contact"`.
    const ENTITY: &'static str;
}

macro_rules! entity_ids {
    ($($id:ident),+ $(,)?) => {
        $(impl EntityId for $id {
            const ENTITY: &'static str = $id::ENTITY;
        })+
    };
}

entity_ids!(
    AccountId,
    ActivityId,
    AnomalyId,
    ApprovalItemId,
    ApprovalRuleId,
    AuditEntryId,
    ConsentId,
    ContactId,
    DealId,
    EnrollmentId,
    EventId,
    IntakeRecordId,
    JobId,
    OutboxMessageId,
    PipelineId,
    SequenceId,
    SuppressionId,
);

/// A stored row: it belongs to one workspace and has an id.
pub(crate) trait Row {
    /// The id type.
    type Id: EntityId;
    /// The owning workspace.
    fn workspace_id(&self) -> WorkspaceId;
    /// The id.
    fn id(&self) -> Self::Id;
}

/// A row written with compare-and-set on `version`.
pub(crate) trait Versioned: Row {
    /// The row's version.
    fn version(&self) -> i64;
    /// Turns `self` (the caller's row) into the row to store over `stored`: version
    /// `stored + 1`, fields that never change (such as `created_at`) kept from `stored`.
    fn succeed(&mut self, stored: &Self);
}

macro_rules! rows {
    ($($ty:ty => $id:ty),+ $(,)?) => {
        $(impl Row for $ty {
            type Id = $id;
            fn workspace_id(&self) -> WorkspaceId {
                self.workspace_id
            }
            fn id(&self) -> $id {
                self.id
            }
        })+
    };
}

macro_rules! versioned {
    ($($ty:ty $(=> $kept:ident)?),+ $(,)?) => {
        $(impl Versioned for $ty {
            fn version(&self) -> i64 {
                self.version
            }
            fn succeed(&mut self, stored: &Self) {
                self.version = stored.version + 1;
                $(self.$kept = stored.$kept;)?
            }
        })+
    };
}

rows!(
    model::Contact => ContactId,
    model::Account => AccountId,
    model::Pipeline => PipelineId,
    model::Deal => DealId,
    model::Activity => ActivityId,
    model::Consent => ConsentId,
    model::Suppression => SuppressionId,
    model::AuditEntry => AuditEntryId,
    model::IntakeRecord => IntakeRecordId,
    model::Sequence => SequenceId,
    model::Enrollment => EnrollmentId,
    model::OutboxMessage => OutboxMessageId,
    model::ApprovalItem => ApprovalItemId,
    model::ApprovalRule => ApprovalRuleId,
    model::Job => JobId,
    model::Anomaly => AnomalyId,
);

// The field named after `=>` never changes after insert (the contract says so for
// `created_at`; `received_at` and `detected_at` are kept the same way, as an UPDATE
// that does not list the column would).
versioned!(
    model::Contact => created_at,
    model::Account => created_at,
    model::Pipeline => created_at,
    model::Deal => created_at,
    model::IntakeRecord => received_at,
    model::Sequence => created_at,
    model::Enrollment => created_at,
    model::OutboxMessage => created_at,
    model::ApprovalItem => created_at,
    model::ApprovalRule => created_at,
    model::Anomaly => detected_at,
);

/// A claimable row plus the fencing token of its latest claim, which outlives the
/// lease itself (a reaped or rescheduled row keeps its token so the next claim grows it).
#[derive(Clone)]
pub(crate) struct Fenced<T> {
    /// The row as callers see it.
    pub(crate) row: T,
    /// The token of the latest claim; 0 if never claimed.
    pub(crate) fence: i64,
}

impl<T: Row> Row for Fenced<T> {
    type Id = T::Id;
    fn workspace_id(&self) -> WorkspaceId {
        self.row.workspace_id()
    }
    fn id(&self) -> T::Id {
        self.row.id()
    }
}

impl<T: Versioned> Versioned for Fenced<T> {
    fn version(&self) -> i64 {
        self.row.version()
    }
    fn succeed(&mut self, stored: &Self) {
        self.row.succeed(&stored.row);
        self.fence = stored.fence;
    }
}

/// Rows keyed by workspace, then by id in ascending order.
pub(crate) struct Table<T: Row> {
    rows: HashMap<WorkspaceId, BTreeMap<T::Id, T>>,
    len: usize,
}

impl<T: Row> Default for Table<T> {
    fn default() -> Self {
        Self {
            rows: HashMap::new(),
            len: 0,
        }
    }
}

impl<T: Row> Table<T> {
    /// Number of rows over all workspaces.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The row, if it exists in `ws`.
    pub(crate) fn get(&self, ws: WorkspaceId, id: T::Id) -> Option<&T> {
        self.rows.get(&ws).and_then(|m| m.get(&id))
    }

    /// The row, or `NotFound`.
    pub(crate) fn find(&self, ws: WorkspaceId, id: T::Id) -> Result<&T, StoreError> {
        self.get(ws, id)
            .ok_or_else(|| StoreError::not_found(T::Id::ENTITY, id))
    }

    /// Whether the row exists in `ws`.
    pub(crate) fn contains(&self, ws: WorkspaceId, id: T::Id) -> bool {
        self.get(ws, id).is_some()
    }

    /// `InvalidReference` unless `id` (when set) exists in `ws`.
    pub(crate) fn ensure_ref(&self, ws: WorkspaceId, id: Option<T::Id>) -> Result<(), StoreError> {
        match id {
            Some(id) if !self.contains(ws, id) => {
                Err(StoreError::invalid_reference(T::Id::ENTITY, id))
            }
            _ => Ok(()),
        }
    }

    /// `Conflict` if the row's id is already taken in its workspace.
    pub(crate) fn ensure_vacant(&self, row: &T) -> Result<(), StoreError> {
        if self.contains(row.workspace_id(), row.id()) {
            Err(StoreError::conflict(
                T::Id::ENTITY,
                format!("id {} is already used", row.id()),
            ))
        } else {
            Ok(())
        }
    }

    /// Inserts or replaces the row; returns the stored row.
    pub(crate) fn put(&mut self, row: T) -> &T {
        let rows = self.rows.entry(row.workspace_id()).or_default();
        let id = row.id();
        match rows.entry(id) {
            Entry::Occupied(mut e) => {
                e.insert(row);
                e.into_mut()
            }
            Entry::Vacant(e) => {
                self.len += 1;
                e.insert(row)
            }
        }
    }

    /// Removes the row; returns it if it existed.
    pub(crate) fn remove(&mut self, ws: WorkspaceId, id: T::Id) -> Option<T> {
        let removed = self.rows.get_mut(&ws).and_then(|m| m.remove(&id));
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// The rows of `ws`, ascending by id.
    pub(crate) fn rows(&self, ws: WorkspaceId) -> impl Iterator<Item = &T> {
        self.rows.get(&ws).into_iter().flat_map(BTreeMap::values)
    }

    /// The rows of every workspace `scope` covers, each workspace ascending by id.
    pub(crate) fn in_scope(&self, scope: Scope) -> impl Iterator<Item = &T> {
        self.rows
            .iter()
            .filter(move |(ws, _)| scope.covers(**ws))
            .flat_map(|(_, rows)| rows.values())
    }

    /// The rows of `ws` after `page.after` (exclusive) that match `keep`, ascending by
    /// id, at most `page.limit`. `Invalid` for a bad limit.
    pub(crate) fn page(
        &self,
        ws: WorkspaceId,
        page: &Page<T::Id>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<&T>, StoreError> {
        page.validate()?;
        let lower = page.after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .rows
            .get(&ws)
            .into_iter()
            .flat_map(|m| m.range((lower, Bound::Unbounded)).map(|(_, row)| row))
            .filter(|row| keep(row))
            .take(limit(page.limit))
            .collect())
    }
}

impl<T: Versioned> Table<T> {
    /// The compare-and-set precondition: the stored row with `new`'s id exists in `new`'s
    /// workspace (`NotFound`) and has `new.version()` (`VersionConflict`). Returns the
    /// row to store (see [`Versioned::succeed`]) and the stored row. Nothing is written.
    pub(crate) fn cas(&self, new: &T) -> Result<(T, &T), StoreError>
    where
        T: Clone,
    {
        let stored = self.find(new.workspace_id(), new.id())?;
        if stored.version() == new.version() {
            let mut next = new.clone();
            next.succeed(stored);
            Ok((next, stored))
        } else {
            Err(StoreError::VersionConflict {
                entity: T::Id::ENTITY,
                id: new.id().to_string(),
                expected: new.version(),
                actual: stored.version(),
            })
        }
    }
}

/// Clones the rows of a page.
pub(crate) fn cloned<T: Clone>(rows: Result<Vec<&T>, StoreError>) -> Result<Vec<T>, StoreError> {
    rows.map(|rows| rows.into_iter().cloned().collect())
}

/// `now + ttl` (a lease's end), or `Invalid` when it leaves chrono's range.
pub(crate) fn deadline(now: DateTime<Utc>, ttl: Duration) -> Result<DateTime<Utc>, StoreError> {
    now.checked_add_signed(ttl).ok_or_else(|| {
        ValidationError::new("ttl", "ends beyond the representable time range").into()
    })
}

/// A validated row limit as a `usize`.
pub(crate) fn limit(limit: u32) -> usize {
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// A per-workspace unique index from a key to the id of the row holding it.
pub(crate) struct Unique<K, I> {
    map: HashMap<WorkspaceId, HashMap<K, I>>,
}

impl<K, I> Default for Unique<K, I> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq, I: EntityId> Unique<K, I> {
    /// The id holding `key` in `ws`.
    pub(crate) fn get<Q>(&self, ws: WorkspaceId, key: &Q) -> Option<I>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(&ws).and_then(|m| m.get(key)).copied()
    }

    /// `Conflict` if `key` (when set) is held in `ws` by a row other than `id`.
    pub(crate) fn check(
        &self,
        ws: WorkspaceId,
        key: Option<&K>,
        id: I,
        what: &str,
    ) -> Result<(), StoreError> {
        match key.and_then(|k| self.get(ws, k)) {
            Some(holder) if holder != id => Err(StoreError::conflict(
                I::ENTITY,
                format!("{what} is already used by {} {holder}", I::ENTITY),
            )),
            _ => Ok(()),
        }
    }

    /// Moves `id` from `old` to `new` (either may be absent). Call after [`Self::check`].
    pub(crate) fn replace(&mut self, ws: WorkspaceId, old: Option<K>, new: Option<K>, id: I) {
        if let Some(old) = old
            && let Some(m) = self.map.get_mut(&ws)
            && m.get(&old) == Some(&id)
        {
            m.remove(&old);
        }
        if let Some(new) = new {
            self.map.entry(ws).or_default().insert(new, id);
        }
    }
}
