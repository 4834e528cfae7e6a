//! A page of enrollment change-sets (`advance_enrollments`) in one transaction, a
//! statement per kind of write instead of one transaction per change: the
//! compare-and-sets of every change in one `UPDATE ... FROM unnest(...)`, the enqueues
//! in one idempotent `INSERT ... SELECT unnest(...)`, the events in one append.
//!
//! Changes of one enrollment are split into layers (its first change in layer 0, its
//! second in layer 1, ...) applied in order, so a later change sees the version the
//! earlier one stored. A change whose compare-and-set matches no row is answered
//! `VersionConflict` or `NotFound` and changes nothing. A statement that fails for good
//! (a constraint a change breaks) rolls the page back and the page is applied again
//! one change per transaction, so the bad change gets its own error and the others
//! still apply; a retryable failure (connection, deadlock) is the caller's.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::model::rules::stored_time;
use crm_core::model::{NewEvent, OutboxMessage, normalize_address};
use crm_core::store::{EnrollmentAdvanced, EnrollmentChange, Inserted};
use sqlx::PgConnection;
use uuid::Uuid;

use super::advance::{cancel_queued_in, validate};
use super::{ChangedEnrollmentRow, ENROLLMENT};
use crate::PostgresStore;
use crate::error::{Ref, cas_error, corrupt, db, db_refs};
use crate::queue::insert_events_in;
use crate::rows::{BATCH_ORD, IntoEntity, OutboxRow};

const OUTBOX: &str = "outbox_message";

/// Compare-and-set of a layer: one row per change, answered with its position.
const SET_ENROLLMENTS: &str = "
    UPDATE enrollments e SET sequence_id = u.sequence_id,
        sequence_version = u.sequence_version, contact_id = u.contact_id, state = u.state,
        current_step = u.current_step, next_run_at = u.next_run_at, updated_at = u.now,
        end_reason = u.end_reason, ended_at = u.ended_at,
        step_message_id = u.step_message_id, version = e.version + 1
    FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], $5::uuid[], $6::text[],
            $7::int4[], $8::timestamptz[], $9::int8[], $10::text[], $11::timestamptz[],
            $12::uuid[], $13::timestamptz[])
         WITH ORDINALITY AS u(workspace_id, id, sequence_id, sequence_version, contact_id,
            state, current_step, next_run_at, version, end_reason, ended_at,
            step_message_id, now, batch_ord),
         enrollments old
    WHERE e.workspace_id = u.workspace_id AND e.id = u.id AND e.version = u.version
      AND old.workspace_id = e.workspace_id AND old.id = e.id
    RETURNING e.*, old.state AS before_state, u.batch_ord";

/// The versions stored now of enrollments whose compare-and-set missed.
const VERSIONS: &str = "
    SELECT e.id, e.version FROM enrollments e
    JOIN unnest($1::uuid[], $2::uuid[]) AS k(workspace_id, id)
      ON e.workspace_id = k.workspace_id AND e.id = k.id";

/// The idempotent enqueue of a layer's messages (as `enqueue_outbox`, one statement).
const INSERT_MESSAGES: &str = "
    INSERT INTO outbox_messages (workspace_id, id, channel, recipient, contact_id,
        enrollment_id, step_index, subject, body, idempotency_key, status, not_before,
        attempts, lease_owner, lease_token, lease_expires_at, provider_message_id,
        last_error, metadata, created_at, updated_at, sent_at, version, recipient_key)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[],
        $6::uuid[], $7::int4[], $8::text[], $9::text[], $10::text[], $11::text[],
        $12::timestamptz[], $13::int4[], $14::text[], $15::int8[], $16::timestamptz[],
        $17::text[], $18::text[], $19::jsonb[], $20::timestamptz[], $21::timestamptz[],
        $22::timestamptz[], $23::int8[], $24::text[])
    ON CONFLICT (workspace_id, idempotency_key) DO NOTHING
    RETURNING id";

/// The messages holding keys the enqueue found taken.
const MESSAGES_BY_KEY: &str = "
    SELECT m.* FROM outbox_messages m
    JOIN unnest($1::uuid[], $2::text[]) AS k(workspace_id, idempotency_key)
      ON m.workspace_id = k.workspace_id AND m.idempotency_key = k.idempotency_key";

/// A row written by [`SET_ENROLLMENTS`] with the position of its change in the layer.
#[derive(Debug, sqlx::FromRow)]
struct LayerRow {
    #[sqlx(flatten)]
    changed: ChangedEnrollmentRow,
    batch_ord: i64,
}

/// One answer per change, `None` until the change is decided.
type Answers = Vec<Option<Result<EnrollmentAdvanced, StoreError>>>;

impl PostgresStore {
    /// See `SequenceStore::advance_enrollments`.
    pub(super) async fn advance_page(
        &self,
        changes: &[EnrollmentChange],
    ) -> Result<Vec<Result<EnrollmentAdvanced, StoreError>>, StoreError> {
        let mut answers: Answers = changes
            .iter()
            .map(|change| validate(change).err().map(Err))
            .collect();
        match self.page_in_one_transaction(changes, &answers).await {
            Ok(decided) => {
                for (i, answer) in decided {
                    if let Some(slot) = answers.get_mut(i) {
                        *slot = Some(answer);
                    }
                }
            }
            Err(error) if error.is_retryable() => return Err(error),
            Err(error) => {
                tracing::debug!(error = %error, "enrollment page failed as a whole; applying its changes one by one");
                for (change, slot) in changes.iter().zip(answers.iter_mut()) {
                    if slot.is_none() {
                        *slot = Some(self.advance(change).await);
                    }
                }
            }
        }
        Ok(answers
            .into_iter()
            .map(|answer| {
                answer.unwrap_or_else(|| {
                    Err(corrupt("enrollment_page", "a change was left undecided"))
                })
            })
            .collect())
    }

    /// Applies every change not yet answered (invalid ones are) in one transaction;
    /// answers each by its index. Any error rolls the whole page back.
    async fn page_in_one_transaction(
        &self,
        changes: &[EnrollmentChange],
        answers: &Answers,
    ) -> Result<Vec<(usize, Result<EnrollmentAdvanced, StoreError>)>, StoreError> {
        let layers = layers(changes, answers);
        if layers.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(db(ENROLLMENT))?;
        let mut applied: Vec<(usize, EnrollmentAdvanced, Vec<NewEvent>)> = Vec::new();
        let mut missed = Vec::new();
        for layer in &layers {
            let (written, layer_missed) = set_layer(&mut tx, changes, layer).await?;
            missed.extend(layer_missed);
            let mut to_enqueue = Vec::new();
            for (i, enrollment, mut events) in written {
                let Some(change) = changes.get(i) else {
                    continue;
                };
                let cancelled = match &change.cancel_queued {
                    Some(reason) => {
                        cancel_queued_in(&mut tx, &enrollment, reason, change.now, &mut events)
                            .await?
                    }
                    None => Vec::new(),
                };
                if let Some(message) = &change.enqueue {
                    to_enqueue.push((applied.len(), message));
                }
                let advanced = EnrollmentAdvanced {
                    enrollment,
                    enqueued: None,
                    cancelled,
                };
                applied.push((i, advanced, events));
            }
            let messages: Vec<&OutboxMessage> = to_enqueue.iter().map(|(_, m)| *m).collect();
            let inserted = insert_messages(&mut tx, &messages).await?;
            for ((slot, _), message) in to_enqueue.into_iter().zip(inserted) {
                if let Some((_, advanced, _)) = applied.get_mut(slot) {
                    advanced.enqueued = Some(message);
                }
            }
        }
        let mut decided = miss_errors(&mut tx, changes, &missed).await?;
        applied.sort_by_key(|(i, _, _)| *i);
        let events: Vec<NewEvent> = applied
            .iter()
            .flat_map(|(_, _, events)| events.iter().cloned())
            .collect();
        insert_events_in(&mut tx, &events).await?;
        tx.commit().await.map_err(db(ENROLLMENT))?;
        decided.extend(applied.into_iter().map(|(i, a, _)| (i, Ok(a))));
        Ok(decided)
    }
}

/// The indexes of the changes to apply, by layer: an enrollment's n-th change in layer n.
fn layers(changes: &[EnrollmentChange], answers: &Answers) -> Vec<Vec<usize>> {
    let mut seen: HashMap<(Uuid, Uuid), usize> = HashMap::new();
    let mut layers: Vec<Vec<usize>> = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        if answers.get(i).is_some_and(Option::is_some) {
            continue;
        }
        let e = &change.enrollment;
        let depth = seen
            .entry((e.workspace_id.as_uuid(), e.id.as_uuid()))
            .or_insert(0);
        if layers.len() <= *depth {
            layers.push(Vec::new());
        }
        if let Some(layer) = layers.get_mut(*depth) {
            layer.push(i);
        }
        *depth += 1;
    }
    layers
}

/// A change written by a layer: its index, the stored enrollment, its events.
type Written = (usize, crm_core::model::Enrollment, Vec<NewEvent>);

/// The compare-and-set of one layer; answers the changes written (in the layer's
/// order) and the indexes of those whose row did not match.
async fn set_layer(
    tx: &mut PgConnection,
    changes: &[EnrollmentChange],
    layer: &[usize],
) -> Result<(Vec<Written>, Vec<usize>), StoreError> {
    let picked: Vec<&EnrollmentChange> = layer.iter().filter_map(|&i| changes.get(i)).collect();
    let col = |f: fn(&EnrollmentChange) -> Uuid| picked.iter().map(|c| f(c)).collect::<Vec<_>>();
    let rows = sqlx::query_as::<_, LayerRow>(SET_ENROLLMENTS)
        .bind(col(|c| c.enrollment.workspace_id.as_uuid()))
        .bind(col(|c| c.enrollment.id.as_uuid()))
        .bind(col(|c| c.enrollment.sequence_id.as_uuid()))
        .bind(
            picked
                .iter()
                .map(|c| c.enrollment.sequence_version)
                .collect::<Vec<_>>(),
        )
        .bind(col(|c| c.enrollment.contact_id.as_uuid()))
        .bind(
            picked
                .iter()
                .map(|c| c.enrollment.state.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            picked
                .iter()
                .map(|c| c.enrollment.current_step)
                .collect::<Vec<_>>(),
        )
        .bind(
            picked
                .iter()
                .map(|c| c.enrollment.next_run_at)
                .collect::<Vec<_>>(),
        )
        .bind(
            picked
                .iter()
                .map(|c| c.enrollment.version)
                .collect::<Vec<_>>(),
        )
        .bind(
            picked
                .iter()
                .map(|c| c.enrollment.end_reason.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            picked
                .iter()
                .map(|c| c.enrollment.ended_at)
                .collect::<Vec<_>>(),
        )
        .bind(
            picked
                .iter()
                .map(|c| c.enrollment.step_message_id.map(|id| id.as_uuid()))
                .collect::<Vec<_>>(),
        )
        .bind(picked.iter().map(|c| c.now).collect::<Vec<DateTime<Utc>>>())
        .fetch_all(&mut *tx)
        .await
        .map_err(db(ENROLLMENT))?;
    let mut hit = vec![false; layer.len()];
    let mut written = Vec::with_capacity(rows.len());
    for row in rows {
        let position = usize::try_from(row.batch_ord)
            .ok()
            .and_then(|o| o.checked_sub(1))
            .filter(|&p| p < layer.len())
            .ok_or_else(|| corrupt(BATCH_ORD, "position out of range"))?;
        if let Some(flag) = hit.get_mut(position) {
            *flag = true;
        }
        let (stored, events) = row.changed.into_change()?;
        if let Some(&i) = layer.get(position) {
            written.push((i, stored, events));
        }
    }
    written.sort_by_key(|(i, _, _)| *i);
    let missed = layer
        .iter()
        .zip(hit)
        .filter(|(_, hit)| !hit)
        .map(|(&i, _)| i)
        .collect();
    Ok((written, missed))
}

/// `NotFound` or `VersionConflict` for each change whose compare-and-set missed, read
/// in the page's transaction.
async fn miss_errors(
    tx: &mut PgConnection,
    changes: &[EnrollmentChange],
    missed: &[usize],
) -> Result<Vec<(usize, Result<EnrollmentAdvanced, StoreError>)>, StoreError> {
    if missed.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&EnrollmentChange> = missed.iter().filter_map(|&i| changes.get(i)).collect();
    let rows = sqlx::query_as::<_, (Uuid, i64)>(VERSIONS)
        .bind(
            keys.iter()
                .map(|c| c.enrollment.workspace_id.as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            keys.iter()
                .map(|c| c.enrollment.id.as_uuid())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db(ENROLLMENT))?;
    let current: HashMap<Uuid, i64> = rows.into_iter().collect();
    Ok(missed
        .iter()
        .zip(keys)
        .map(|(&i, change)| {
            let id = change.enrollment.id.as_uuid();
            let error = cas_error(
                ENROLLMENT,
                id,
                change.enrollment.version,
                current.get(&id).copied(),
            );
            (i, Err(error))
        })
        .collect())
}

/// `m` as a store keeps it: its times at microsecond precision (the values written,
/// so the rows need not be read back).
fn as_stored(m: &OutboxMessage) -> OutboxMessage {
    let mut stored = m.clone();
    stored.not_before = stored_time(m.not_before);
    stored.created_at = stored_time(m.created_at);
    stored.updated_at = stored_time(m.updated_at);
    stored.sent_at = m.sent_at.map(stored_time);
    if let Some(lease) = stored.lease.as_mut() {
        lease.expires_at = stored_time(lease.expires_at);
    }
    stored
}

/// Enqueues `messages` idempotently in one statement; answers each, in order, as
/// `enqueue_outbox` would: the new row, or the row already holding its key.
async fn insert_messages(
    tx: &mut PgConnection,
    messages: &[&OutboxMessage],
) -> Result<Vec<Inserted<OutboxMessage>>, StoreError> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    macro_rules! column {
        ($f:expr) => {
            messages.iter().map(|m| $f(*m)).collect::<Vec<_>>()
        };
    }
    let refs = [Ref::new("outbox_messages_contact_fk", "contact", None)];
    let inserted: HashSet<Uuid> = sqlx::query_scalar::<_, Uuid>(INSERT_MESSAGES)
        .bind(column!(|m: &OutboxMessage| m.workspace_id.as_uuid()))
        .bind(column!(|m: &OutboxMessage| m.id.as_uuid()))
        .bind(column!(|m: &OutboxMessage| m.channel.as_str()))
        .bind(column!(|m: &OutboxMessage| m.recipient.clone()))
        .bind(column!(|m: &OutboxMessage| m
            .contact_id
            .map(|id| id.as_uuid())))
        .bind(column!(|m: &OutboxMessage| m
            .enrollment_id
            .map(|id| id.as_uuid())))
        .bind(column!(|m: &OutboxMessage| m.step_index))
        .bind(column!(|m: &OutboxMessage| m.subject.clone()))
        .bind(column!(|m: &OutboxMessage| m.body.clone()))
        .bind(column!(|m: &OutboxMessage| m.idempotency_key.clone()))
        .bind(column!(|m: &OutboxMessage| m.status.as_str()))
        .bind(column!(|m: &OutboxMessage| m.not_before))
        .bind(column!(|m: &OutboxMessage| m.attempts))
        .bind(column!(|m: &OutboxMessage| m
            .lease
            .as_ref()
            .map(|l| l.owner.clone())))
        .bind(column!(|m: &OutboxMessage| m
            .lease
            .as_ref()
            .map_or(0, |l| l.token)))
        .bind(column!(|m: &OutboxMessage| m
            .lease
            .as_ref()
            .map(|l| l.expires_at)))
        .bind(column!(|m: &OutboxMessage| m.provider_message_id.clone()))
        .bind(column!(|m: &OutboxMessage| m.last_error.clone()))
        .bind(column!(|m: &OutboxMessage| m.metadata.clone()))
        .bind(column!(|m: &OutboxMessage| m.created_at))
        .bind(column!(|m: &OutboxMessage| m.updated_at))
        .bind(column!(|m: &OutboxMessage| m.sent_at))
        .bind(column!(|m: &OutboxMessage| m.version))
        .bind(column!(|m: &OutboxMessage| normalize_address(&m.recipient)))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_refs(OUTBOX, &refs))?
        .into_iter()
        .collect();
    let taken: Vec<&OutboxMessage> = messages
        .iter()
        .copied()
        .filter(|m| !inserted.contains(&m.id.as_uuid()))
        .collect();
    let mut holders: HashMap<(Uuid, String), OutboxMessage> = HashMap::new();
    if !taken.is_empty() {
        // The keys are taken; messages are never deleted, so the holders are still there.
        let rows = sqlx::query_as::<_, OutboxRow>(MESSAGES_BY_KEY)
            .bind(
                taken
                    .iter()
                    .map(|m| m.workspace_id.as_uuid())
                    .collect::<Vec<_>>(),
            )
            .bind(
                taken
                    .iter()
                    .map(|m| m.idempotency_key.clone())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(db(OUTBOX))?;
        for row in rows {
            let m = row.into_entity()?;
            holders.insert((m.workspace_id.as_uuid(), m.idempotency_key.clone()), m);
        }
    }
    messages
        .iter()
        .map(|m| {
            if inserted.contains(&m.id.as_uuid()) {
                return Ok(Inserted {
                    value: as_stored(m),
                    created: true,
                });
            }
            holders
                .get(&(m.workspace_id.as_uuid(), m.idempotency_key.clone()))
                .cloned()
                .map(|value| Inserted {
                    value,
                    created: false,
                })
                .ok_or_else(|| corrupt("idempotency_key", "no message holds the taken key"))
        })
        .collect()
}
