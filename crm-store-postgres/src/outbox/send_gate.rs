//! `begin_sends` and `release_send_quota`: the send gate on PostgreSQL.
//!
//! One transaction per call, three statements and the commit: the advisory locks of
//! every contact, address and counter of the starts ([`super::gate_locks`]); one read
//! of everything the checks need, which also row-locks the messages (so nothing
//! changes them before the write); then one write of the marks, grants, counter
//! deltas and cancellations decided in order here. Cancellations (rare) add their
//! events and enrollment releases.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use crm_core::StoreError;
use crm_core::ids::{OutboxMessageId, WorkspaceId};
use crm_core::model::{ConsentStatus, OutboxStatus, SuppressionReason, normalize_address};
use crm_core::store::{QuotaKey, SendStart, SendStartOutcome};
use sqlx::Row;
use uuid::Uuid;

use super::gate_locks::{address_key, contact_key, counter_key, lock_keys};
use super::{OUTBOX, finish};
use crate::PostgresStore;
use crate::error::{db, parse_text};
use crate::queue::insert_events_in;
use crate::rows::{IntoEntity, OutboxRow};

/// What the checks read, per start by position; locks the messages.
const READ: &str = "
    WITH t AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                             $6::text[], $7::date[], $8::timestamptz[], $9::timestamptz[])
            WITH ORDINALITY AS t(ws, id, contact, channel, address, counter, period,
                                 day_start, day_end, ord)
    ), locked AS MATERIALIZED (
        SELECT m.workspace_id, m.id, m.status, m.lease_token
        FROM outbox_messages m
        WHERE (m.workspace_id, m.id) IN (SELECT ws, id FROM t)
        ORDER BY m.workspace_id, m.id
        FOR UPDATE
    )
    SELECT t.ord, l.status, l.lease_token,
        (SELECT s.reason FROM suppressions s
         WHERE s.workspace_id = t.ws AND s.address = t.address
           AND (s.channel IS NULL OR s.channel = t.channel)
         ORDER BY (s.channel IS NULL) DESC LIMIT 1) AS suppressed,
        (SELECT c.status FROM consents c
         WHERE c.workspace_id = t.ws AND c.contact_id = t.contact AND c.channel = t.channel
         ORDER BY c.recorded_at DESC, c.id DESC LIMIT 1) AS consent,
        CASE WHEN t.day_start IS NULL THEN 0 ELSE
            (SELECT count(*) FROM outbox_messages o
             WHERE o.workspace_id = t.ws AND o.contact_id = t.contact AND o.id <> t.id
               AND o.send_started_at >= t.day_start AND o.send_started_at < t.day_end
               AND o.status IN ('in_flight', 'sent'))
        END AS touches,
        EXISTS (SELECT 1 FROM quota_grants g
                WHERE g.workspace_id = t.ws AND g.counter = t.counter
                  AND g.period = t.period AND g.outbox_id = t.id) AS granted,
        coalesce((SELECT q.used FROM quota_counters q
                  WHERE q.workspace_id = t.ws AND q.counter = t.counter
                    AND q.period = t.period), 0) AS used
    FROM t LEFT JOIN locked l ON l.workspace_id = t.ws AND l.id = t.id
    ORDER BY t.ord";

/// Everything the checks decided, in one statement; answers the cancelled rows.
const WRITE: &str = "
    WITH mark AS (
        UPDATE outbox_messages m
        SET send_started_at = $1, updated_at = $1, version = m.version + 1
        FROM unnest($2::uuid[], $3::uuid[]) AS g(ws, id)
        WHERE m.workspace_id = g.ws AND m.id = g.id
        RETURNING m.id
    ), granted AS (
        INSERT INTO quota_grants (workspace_id, counter, period, outbox_id, granted_at)
        SELECT ws, counter, period, id, $1
        FROM unnest($4::uuid[], $5::text[], $6::date[], $7::uuid[]) AS n(ws, counter, period, id)
        ON CONFLICT DO NOTHING
        RETURNING 1
    ), released AS (
        DELETE FROM quota_grants q
        USING unnest($8::uuid[], $9::text[], $10::date[], $11::uuid[]) AS r(ws, counter, period, id)
        WHERE q.workspace_id = r.ws AND q.counter = r.counter AND q.period = r.period
          AND q.outbox_id = r.id
        RETURNING 1
    ), taken AS (
        INSERT INTO quota_counters AS q (workspace_id, counter, period, used)
        SELECT ws, counter, period, n
        FROM unnest($12::uuid[], $13::text[], $14::date[], $15::int8[]) AS d(ws, counter, period, n)
        ON CONFLICT (workspace_id, counter, period) DO UPDATE SET used = q.used + EXCLUDED.used
        RETURNING 1
    ), given_back AS (
        UPDATE quota_counters q SET used = greatest(q.used - d.n, 0)
        FROM unnest($16::uuid[], $17::text[], $18::date[], $19::int8[]) AS d(ws, counter, period, n)
        WHERE q.workspace_id = d.ws AND q.counter = d.counter AND q.period = d.period
        RETURNING 1
    )
    UPDATE outbox_messages m
    SET status = 'cancelled', last_error = c.reason, lease_owner = NULL,
        lease_expires_at = NULL, send_started_at = NULL, updated_at = $1,
        version = m.version + 1
    FROM unnest($20::uuid[], $21::uuid[], $22::text[]) AS c(ws, id, reason)
    WHERE m.workspace_id = c.ws AND m.id = c.id
    RETURNING m.*";

/// Gives a message's grant back, if it ended unsent; answers whether it did.
const RELEASE: &str = "
    WITH gone AS (
        DELETE FROM quota_grants g
        USING outbox_messages m
        WHERE g.workspace_id = $1 AND g.outbox_id = $2 AND g.counter = $3 AND g.period = $4
          AND m.workspace_id = g.workspace_id AND m.id = g.outbox_id
          AND m.status IN ('failed', 'dead_lettered', 'cancelled')
        RETURNING g.workspace_id, g.counter, g.period
    ), counted AS (
        UPDATE quota_counters q SET used = greatest(q.used - 1, 0)
        FROM gone
        WHERE q.workspace_id = gone.workspace_id AND q.counter = gone.counter
          AND q.period = gone.period
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM outbox_messages WHERE workspace_id = $1 AND id = $2) AS found,
           EXISTS (SELECT 1 FROM gone) AS released";

/// One start's row of [`READ`].
struct Read {
    status: Option<String>,
    token: Option<i64>,
    suppressed: Option<String>,
    consent: Option<String>,
    touches: i64,
    granted: bool,
    used: i64,
}

/// The columns of [`WRITE`], filled in order.
#[derive(Default)]
struct Writes {
    go: (Vec<Uuid>, Vec<Uuid>),
    grants: Vec<(WorkspaceId, QuotaKey, OutboxMessageId)>,
    releases: Vec<(WorkspaceId, QuotaKey, OutboxMessageId)>,
    deltas: HashMap<(WorkspaceId, QuotaKey), i64>,
    cancels: Vec<(Uuid, Uuid, String)>,
}

type KeyColumns = (Vec<Uuid>, Vec<String>, Vec<NaiveDate>, Vec<Uuid>);

fn key_columns(rows: &[(WorkspaceId, QuotaKey, OutboxMessageId)]) -> KeyColumns {
    let mut out: KeyColumns = Default::default();
    for (ws, key, id) in rows {
        out.0.push(ws.as_uuid());
        out.1.push(key.counter.clone());
        out.2.push(key.period);
        out.3.push(id.as_uuid());
    }
    out
}

type DeltaColumns = (Vec<Uuid>, Vec<String>, Vec<NaiveDate>, Vec<i64>);

fn delta_columns<'a>(
    deltas: impl Iterator<Item = (&'a (WorkspaceId, QuotaKey), i64)>,
) -> DeltaColumns {
    let mut out: DeltaColumns = Default::default();
    for ((ws, key), n) in deltas {
        out.0.push(ws.as_uuid());
        out.1.push(key.counter.clone());
        out.2.push(key.period);
        out.3.push(n);
    }
    out
}

/// Decides every start in order from what was read, as the memory store does under
/// its lock: earlier `Go`s of the call count as touches and as quota units.
fn decide(
    starts: &[SendStart],
    reads: &[Read],
    now: DateTime<Utc>,
) -> Result<(Vec<SendStartOutcome>, Writes), StoreError> {
    let mut w = Writes::default();
    let mut outcomes = Vec::with_capacity(starts.len());
    let mut used: HashMap<(WorkspaceId, QuotaKey), i64> = HashMap::new();
    let mut gone: Vec<(WorkspaceId, crm_core::ids::ContactId)> = Vec::new();
    for (s, r) in starts.iter().zip(reads) {
        let ws = s.workspace_id;
        let key = (ws, s.quota_key.clone());
        let counter = used.entry(key.clone()).or_insert(r.used);
        let grant = (ws, s.quota_key.clone(), s.outbox_id);
        let give_back = |w: &mut Writes, counter: &mut i64| {
            if r.granted {
                w.releases.push(grant.clone());
                *w.deltas.entry(key.clone()).or_insert(0) -= 1;
                *counter -= 1;
            }
        };
        let outcome = if r.status.as_deref() != Some(OutboxStatus::InFlight.as_str()) {
            SendStartOutcome::NotInFlight
        } else if r.token != Some(s.lease_token) {
            SendStartOutcome::LeaseLost
        } else if let Some(reason) = &r.suppressed {
            let reason: SuppressionReason = parse_text(reason)?;
            give_back(&mut w, counter);
            let text = format!("recipient is suppressed ({reason})");
            w.cancels.push((ws.as_uuid(), s.outbox_id.as_uuid(), text));
            SendStartOutcome::Suppressed { reason }
        } else if r.consent.as_deref() == Some(ConsentStatus::Withdrawn.as_str()) {
            give_back(&mut w, counter);
            let text = format!("contact withdrew consent for {}", s.channel);
            w.cancels.push((ws.as_uuid(), s.outbox_id.as_uuid(), text));
            SendStartOutcome::ConsentWithdrawn
        } else if s.touch_limit.is_some_and(|t| {
            let earlier = gone.iter().filter(|&&g| g == (ws, s.contact_id)).count();
            let earlier = if now >= t.day_start && now < t.day_end {
                earlier
            } else {
                0
            };
            r.touches
                .saturating_add(i64::try_from(earlier).unwrap_or(i64::MAX))
                >= i64::from(t.limit)
        }) {
            give_back(&mut w, counter);
            SendStartOutcome::TouchLimit
        } else if !r.granted && *counter + 1 > i64::from(s.cap) {
            SendStartOutcome::OverCap
        } else {
            if !r.granted {
                w.grants.push(grant.clone());
                *w.deltas.entry(key.clone()).or_insert(0) += 1;
                *counter += 1;
            }
            w.go.0.push(ws.as_uuid());
            w.go.1.push(s.outbox_id.as_uuid());
            gone.push((ws, s.contact_id));
            SendStartOutcome::Go
        };
        outcomes.push(outcome);
    }
    Ok((outcomes, w))
}

impl PostgresStore {
    /// `OutboxStore::begin_sends`.
    pub(super) async fn begin_sends_tx(
        &self,
        starts: &[SendStart],
        now: DateTime<Utc>,
    ) -> Result<Vec<SendStartOutcome>, StoreError> {
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        let addresses: Vec<String> = starts
            .iter()
            .map(|s| normalize_address(&s.recipient))
            .collect();
        let mut keys = Vec::with_capacity(starts.len() * 3);
        for (s, address) in starts.iter().zip(&addresses) {
            keys.push(contact_key(s.workspace_id, s.contact_id));
            keys.push(address_key(s.workspace_id, address));
            keys.push(counter_key(s.workspace_id, &s.quota_key));
        }
        let mut tx = self.pool.begin().await.map_err(db(OUTBOX))?;
        lock_keys(&mut tx, keys).await?;
        let limits: Vec<_> = starts.iter().map(|s| s.touch_limit).collect();
        let rows = sqlx::query(READ)
            .bind(
                starts
                    .iter()
                    .map(|s| s.workspace_id.as_uuid())
                    .collect::<Vec<_>>(),
            )
            .bind(
                starts
                    .iter()
                    .map(|s| s.outbox_id.as_uuid())
                    .collect::<Vec<_>>(),
            )
            .bind(
                starts
                    .iter()
                    .map(|s| s.contact_id.as_uuid())
                    .collect::<Vec<_>>(),
            )
            .bind(
                starts
                    .iter()
                    .map(|s| s.channel.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(&addresses)
            .bind(
                starts
                    .iter()
                    .map(|s| s.quota_key.counter.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                starts
                    .iter()
                    .map(|s| s.quota_key.period)
                    .collect::<Vec<_>>(),
            )
            .bind(
                limits
                    .iter()
                    .map(|l| l.map(|l| l.day_start))
                    .collect::<Vec<_>>(),
            )
            .bind(
                limits
                    .iter()
                    .map(|l| l.map(|l| l.day_end))
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(db(OUTBOX))?;
        let reads = rows
            .iter()
            .map(|row| {
                Ok(Read {
                    status: row.try_get("status")?,
                    token: row.try_get("lease_token")?,
                    suppressed: row.try_get("suppressed")?,
                    consent: row.try_get("consent")?,
                    touches: row.try_get("touches")?,
                    granted: row.try_get("granted")?,
                    used: row.try_get("used")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(db(OUTBOX))?;
        if reads.len() != starts.len() {
            return Err(crate::error::invalid(
                "starts",
                "each start must name one message",
            ));
        }
        let (outcomes, w) = decide(starts, &reads, now)?;
        let nothing = w.go.0.is_empty() && w.cancels.is_empty() && w.releases.is_empty();
        if nothing {
            drop(tx);
            return Ok(outcomes);
        }
        let grants = key_columns(&w.grants);
        let releases = key_columns(&w.releases);
        let up = delta_columns(
            w.deltas
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| (k, *n)),
        );
        let down = delta_columns(
            w.deltas
                .iter()
                .filter(|(_, n)| **n < 0)
                .map(|(k, n)| (k, -*n)),
        );
        let (cancel_ws, cancel_ids, cancel_reasons): (Vec<_>, Vec<_>, Vec<_>) = w
            .cancels
            .into_iter()
            .fold(Default::default(), |mut acc, (a, b, c)| {
                acc.0.push(a);
                acc.1.push(b);
                acc.2.push(c);
                acc
            });
        let cancelled = sqlx::query_as::<_, OutboxRow>(WRITE)
            .bind(now)
            .bind(w.go.0)
            .bind(w.go.1)
            .bind(grants.0)
            .bind(grants.1)
            .bind(grants.2)
            .bind(grants.3)
            .bind(releases.0)
            .bind(releases.1)
            .bind(releases.2)
            .bind(releases.3)
            .bind(up.0)
            .bind(up.1)
            .bind(up.2)
            .bind(up.3)
            .bind(down.0)
            .bind(down.1)
            .bind(down.2)
            .bind(down.3)
            .bind(cancel_ws)
            .bind(cancel_ids)
            .bind(cancel_reasons)
            .fetch_all(&mut *tx)
            .await
            .map_err(db(OUTBOX))?;
        let mut appended = Vec::new();
        for row in cancelled {
            let stored = row.into_entity()?;
            let reason = stored.last_error.clone().unwrap_or_default();
            appended.extend(finish::finished_in(&mut tx, &stored, &reason, now).await?);
        }
        insert_events_in(&mut tx, &appended).await?;
        tx.commit().await.map_err(db(OUTBOX))?;
        Ok(outcomes)
    }

    /// `OutboxStore::release_send_quota`.
    pub(super) async fn release_send_quota_one(
        &self,
        workspace_id: WorkspaceId,
        id: OutboxMessageId,
        key: &QuotaKey,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(RELEASE)
            .bind(workspace_id.as_uuid())
            .bind(id.as_uuid())
            .bind(key.counter.as_str())
            .bind(key.period)
            .fetch_one(&self.pool)
            .await
            .map_err(db(OUTBOX))?;
        let found: bool = row.try_get("found").map_err(db(OUTBOX))?;
        if !found {
            return Err(StoreError::not_found(OUTBOX, id));
        }
        row.try_get("released").map_err(db(OUTBOX))
    }
}
