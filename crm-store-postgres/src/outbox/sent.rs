//! `mark_outbox_sent_many`: a wave of accepted sends recorded in one transaction, one
//! statement for every message, activity and enrollment, then their events.

use std::collections::{HashMap, HashSet};

use crm_core::StoreError;
use crm_core::events;
use crm_core::ids::{OutboxMessageId, WorkspaceId};
use crm_core::model::rules::require_expected_version;
use crm_core::model::{Activity, Enrollment, NewEvent, OutboxMessage};
use crm_core::store::SentMark;
use sqlx::types::Json;
use sqlx::{FromRow, Row};
use uuid::Uuid;

use super::OUTBOX;
use crate::PostgresStore;
use crate::error::{Ref, db, db_refs, invalid, parse_text};
use crate::queue::insert_events_in;
use crate::rows::{IntoEntity, OutboxRow};

/// Marks every held message sent (each fenced by its own token), inserts the
/// activities of those that matched and moves their enrollments on (compare-and-set;
/// a stale version changes nothing). Answers the sent rows with their position in the
/// call and the state each enrollment left (NULL if it was not moved).
const MARK_SENT_MANY: &str = "
    WITH u AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::text[],
                             $5::timestamptz[])
            WITH ORDINALITY AS u(ws, id, token, provider_id, sent_at, ord)
    ), sent AS (
        UPDATE outbox_messages m
        SET status = 'sent', provider_message_id = u.provider_id, sent_at = u.sent_at,
            updated_at = u.sent_at, send_started_at = coalesce(m.send_started_at, u.sent_at),
            lease_owner = NULL, lease_expires_at = NULL, version = m.version + 1
        FROM u
        WHERE m.workspace_id = u.ws AND m.id = u.id AND m.status = 'in_flight'
          AND m.lease_token = u.token
        RETURNING m.*, u.ord AS mark_ord
    ), activity AS (
        INSERT INTO activities (workspace_id, id, contact_id, deal_id, kind, channel,
            outbox_message_id, summary, details, occurred_at)
        SELECT s.workspace_id, a.id, a.contact_id, a.deal_id, a.kind, a.channel,
            a.outbox_message_id, a.summary, a.details, a.occurred_at
        FROM unnest($6::uuid[], $7::uuid[], $8::uuid[], $9::text[], $10::text[],
                    $11::uuid[], $12::text[], $13::jsonb[], $14::timestamptz[])
            WITH ORDINALITY AS a(id, contact_id, deal_id, kind, channel,
                                 outbox_message_id, summary, details, occurred_at, ord)
        JOIN sent s ON s.mark_ord = a.ord
        RETURNING id
    ), x AS (
        SELECT x.*, s.workspace_id AS ws
        FROM unnest($15::int8[], $16::uuid[], $17::uuid[], $18::int8[], $19::uuid[],
                    $20::text[], $21::int4[], $22::timestamptz[], $23::timestamptz[],
                    $24::int8[])
            AS x(ord, id, sequence_id, sequence_version, contact_id, state, current_step,
                 next_run_at, updated_at, version)
        JOIN sent s ON s.mark_ord = x.ord
    ), advanced AS (
        UPDATE enrollments e
        SET sequence_id = x.sequence_id, sequence_version = x.sequence_version,
            contact_id = x.contact_id, state = x.state, current_step = x.current_step,
            next_run_at = x.next_run_at, updated_at = x.updated_at,
            version = e.version + 1
        FROM x, enrollments old
        WHERE e.workspace_id = x.ws AND e.id = x.id AND e.version = x.version
          AND old.workspace_id = e.workspace_id AND old.id = e.id
        RETURNING x.ord, old.state AS before_state
    )
    SELECT sent.*, adv.before_state AS enrollment_before_state
    FROM sent LEFT JOIN advanced adv ON adv.ord = sent.mark_ord";

/// Which of the named messages exist.
const EXISTING: &str = "
    SELECT m.workspace_id, m.id FROM outbox_messages m
    JOIN unnest($1::uuid[], $2::uuid[]) AS k(ws, id) ON m.workspace_id = k.ws AND m.id = k.id";

/// The events of one recorded send: `outbox.sent` (with `enrollment.step_sent` for a
/// step), the activity's `activity.logged`, and the enrollment's transition events
/// when it was moved on from `before_state`. The activity and the enrollment were
/// written as given (the enrollment one version on), so the events are built from them.
pub(super) fn sent_events(
    stored: &OutboxMessage,
    activity: &Activity,
    enrollment: Option<&Enrollment>,
    before_state: Option<&str>,
) -> Result<Vec<NewEvent>, StoreError> {
    let mut appended = events::outbox_finished(stored, None)?;
    appended.push(events::activity_logged(activity)?);
    if let (Some(after), Some(before_state)) = (enrollment, before_state) {
        let mut before = after.clone();
        before.state = parse_text(before_state)?;
        let mut after = after.clone();
        after.version += 1;
        appended.extend(events::enrollment_transition(&before, &after)?);
    }
    Ok(appended)
}

/// Refuses what the single call refuses before its write: an invalid activity, an
/// activity or enrollment of another workspace, a stale-less enrollment version, and
/// (for the batch) a message named twice.
fn check_marks(marks: &[SentMark]) -> Result<(), StoreError> {
    let mut named = HashSet::with_capacity(marks.len());
    for m in marks {
        if !named.insert((m.workspace_id, m.id)) {
            return Err(invalid("marks", "name each message once"));
        }
        let a = &m.sent.activity;
        a.validate()?;
        if a.workspace_id != m.workspace_id {
            return Err(invalid(
                "sent.activity.workspace_id",
                "must be the message's workspace",
            ));
        }
        if let Some(e) = &m.sent.enrollment {
            require_expected_version(e.version)?;
            if e.workspace_id != m.workspace_id {
                return Err(invalid(
                    "sent.enrollment.workspace_id",
                    "must be the message's workspace",
                ));
            }
        }
    }
    Ok(())
}

/// One column of a batch, for `unnest`.
fn col<'a, M: 'a, T>(marks: impl IntoIterator<Item = &'a M>, f: impl Fn(&'a M) -> T) -> Vec<T> {
    marks.into_iter().map(f).collect()
}

impl PostgresStore {
    /// `OutboxStore::mark_outbox_sent_many`.
    pub(super) async fn mark_sent_many_tx(
        &self,
        marks: &[SentMark],
    ) -> Result<Vec<Result<OutboxMessage, StoreError>>, StoreError> {
        if marks.is_empty() {
            return Ok(Vec::new());
        }
        check_marks(marks)?;
        let activities: Vec<&Activity> = marks.iter().map(|m| &m.sent.activity).collect();
        let steps: Vec<(i64, &Enrollment)> = (1_i64..)
            .zip(marks)
            .filter_map(|(ord, m)| m.sent.enrollment.as_ref().map(|e| (ord, e)))
            .collect();
        let refs = [
            Ref::new("activities_contact_fk", "contact", None),
            Ref::new("activities_deal_fk", "deal", None),
            Ref::new("enrollments_sequence_fk", "sequence", None),
            Ref::new("enrollments_contact_fk", "contact", None),
        ];
        let mut tx = self.pool.begin().await.map_err(db(OUTBOX))?;
        let rows = sqlx::query(MARK_SENT_MANY)
            .bind(col(marks, |m| m.workspace_id.as_uuid()))
            .bind(col(marks, |m| m.id.as_uuid()))
            .bind(marks.iter().map(|m| m.lease_token).collect::<Vec<_>>())
            .bind(
                marks
                    .iter()
                    .map(|m| m.sent.provider_message_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(marks.iter().map(|m| m.sent.sent_at).collect::<Vec<_>>())
            .bind(
                activities
                    .iter()
                    .map(|a| a.id.as_uuid())
                    .collect::<Vec<_>>(),
            )
            .bind(
                activities
                    .iter()
                    .map(|a| a.contact_id.map(|i| i.as_uuid()))
                    .collect::<Vec<_>>(),
            )
            .bind(
                activities
                    .iter()
                    .map(|a| a.deal_id.map(|i| i.as_uuid()))
                    .collect::<Vec<_>>(),
            )
            .bind(
                activities
                    .iter()
                    .map(|a| a.kind.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                activities
                    .iter()
                    .map(|a| a.channel.map(|c| c.as_str()))
                    .collect::<Vec<_>>(),
            )
            .bind(
                activities
                    .iter()
                    .map(|a| a.outbox_message_id.map(|i| i.as_uuid()))
                    .collect::<Vec<_>>(),
            )
            .bind(
                activities
                    .iter()
                    .map(|a| a.summary.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                activities
                    .iter()
                    .map(|a| Json(&a.details))
                    .collect::<Vec<_>>(),
            )
            .bind(activities.iter().map(|a| a.occurred_at).collect::<Vec<_>>())
            .bind(steps.iter().map(|(ord, _)| *ord).collect::<Vec<_>>())
            .bind(
                steps
                    .iter()
                    .map(|(_, e)| e.id.as_uuid())
                    .collect::<Vec<_>>(),
            )
            .bind(
                steps
                    .iter()
                    .map(|(_, e)| e.sequence_id.as_uuid())
                    .collect::<Vec<_>>(),
            )
            .bind(
                steps
                    .iter()
                    .map(|(_, e)| e.sequence_version)
                    .collect::<Vec<_>>(),
            )
            .bind(
                steps
                    .iter()
                    .map(|(_, e)| e.contact_id.as_uuid())
                    .collect::<Vec<_>>(),
            )
            .bind(
                steps
                    .iter()
                    .map(|(_, e)| e.state.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                steps
                    .iter()
                    .map(|(_, e)| e.current_step)
                    .collect::<Vec<_>>(),
            )
            .bind(steps.iter().map(|(_, e)| e.next_run_at).collect::<Vec<_>>())
            .bind(steps.iter().map(|(_, e)| e.updated_at).collect::<Vec<_>>())
            .bind(steps.iter().map(|(_, e)| e.version).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await
            .map_err(db_refs(OUTBOX, &refs))?;
        let mut sent: HashMap<usize, OutboxMessage> = HashMap::with_capacity(rows.len());
        let mut appended = Vec::with_capacity(rows.len() * 2);
        for row in rows {
            let ord: i64 = row.try_get("mark_ord").map_err(db(OUTBOX))?;
            let before: Option<String> =
                row.try_get("enrollment_before_state").map_err(db(OUTBOX))?;
            let stored = OutboxRow::from_row(&row)
                .map_err(db(OUTBOX))?
                .into_entity()?;
            let i = usize::try_from(ord - 1).map_err(|_| invalid("marks", "out of range"))?;
            let mark = marks
                .get(i)
                .ok_or_else(|| invalid("marks", "out of range"))?;
            appended.extend(sent_events(
                &stored,
                &mark.sent.activity,
                mark.sent.enrollment.as_ref(),
                before.as_deref(),
            )?);
            sent.insert(i, stored);
        }
        let missed: Vec<&SentMark> = (0..marks.len())
            .filter(|i| !sent.contains_key(i))
            .filter_map(|i| marks.get(i))
            .collect();
        let mut exists: HashSet<(WorkspaceId, OutboxMessageId)> = HashSet::new();
        if !missed.is_empty() {
            let found: Vec<(Uuid, Uuid)> = sqlx::query_as(EXISTING)
                .bind(col(missed.iter().copied(), |m| m.workspace_id.as_uuid()))
                .bind(col(missed.iter().copied(), |m| m.id.as_uuid()))
                .fetch_all(&mut *tx)
                .await
                .map_err(db(OUTBOX))?;
            exists.extend(
                found
                    .into_iter()
                    .map(|(ws, id)| (WorkspaceId::from_uuid(ws), OutboxMessageId::from_uuid(id))),
            );
        }
        insert_events_in(&mut tx, &appended).await?;
        tx.commit().await.map_err(db(OUTBOX))?;
        Ok(marks
            .iter()
            .enumerate()
            .map(|(i, m)| match sent.remove(&i) {
                Some(stored) => Ok(stored),
                None if exists.contains(&(m.workspace_id, m.id)) => {
                    Err(StoreError::lease_lost(OUTBOX, m.id))
                }
                None => Err(StoreError::not_found(OUTBOX, m.id)),
            })
            .collect())
    }
}
