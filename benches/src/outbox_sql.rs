//! The hand-written dispatch baseline: the same durable work as the engine's send
//! path, on the store's own tables, in the fewest statements a skilled engineer would
//! write by hand.
//!
//! Per claim of `batch` rows (1 for the single-row loop):
//!
//! 1. **Claim** with a lease token: `UPDATE ... WHERE (workspace_id, id) IN (SELECT ...
//!    FOR UPDATE SKIP LOCKED LIMIT n) RETURNING`, the engine's claim.
//! 2. **Check**: one read of the workspaces' enabled email rules (the graduated rule's
//!    confidence condition is checked in Rust), and one read of suppressions and the
//!    latest consent of every claimed message.
//! 3. **Cancel** the blocked ones under their token, with their `outbox.cancelled`
//!    events.
//! 4. **Check and mark**: one statement marks the rest `sending` (token-fenced),
//!    writes their approved approval items naming the rule (the engine's audit
//!    trail) with `approval.requested` events, and consumes the daily quota once per
//!    workspace.
//! 5. **Send** through the adapter, up to `concurrency` at once.
//! 6. **Mark sent**: one statement marks them sent (token-fenced), inserts the
//!    `message_sent` activities and the `outbox.sent` and `activity.logged` events.
//!
//! Events are appended with no lock, as the store appends them (its readers wait for
//! appends in flight instead).

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::StreamExt;
use sqlx::PgPool;
use uuid::Uuid;

use crate::adapter::CountingAdapter;
use crate::check;
use crate::outbox_scenario::{Counted, DAILY_CAP};
use crm_core::ids::OutboxMessageId;

const CLAIM: &str = "
    UPDATE outbox_messages m
    SET status = 'in_flight', lease_owner = $1, lease_token = m.lease_token + 1,
        lease_expires_at = $2, attempts = m.attempts + 1, updated_at = $3,
        version = m.version + 1
    WHERE (m.workspace_id, m.id) IN (
        SELECT workspace_id, id FROM outbox_messages
        WHERE status = 'pending' AND not_before <= $3
        ORDER BY not_before, id LIMIT $4 FOR UPDATE SKIP LOCKED)
    RETURNING m.workspace_id, m.id, m.contact_id, m.recipient, m.body, m.lease_token,
        (m.metadata ->> 'confidence')::float8 AS confidence";

const RULES: &str = "
    SELECT DISTINCT ON (workspace_id) workspace_id, id,
        (conditions ->> 'min_confidence')::float8 AS min_confidence
    FROM approval_rules
    WHERE workspace_id = ANY($1) AND channel = 'email' AND enabled
    ORDER BY workspace_id, id";

const BLOCKED: &str = "
    SELECT t.ord FROM unnest($1::uuid[], $2::uuid[], $3::text[]) WITH ORDINALITY
        AS t(ws, contact_id, address, ord)
    WHERE EXISTS (SELECT 1 FROM suppressions s
                  WHERE s.workspace_id = t.ws AND s.address = t.address
                    AND (s.channel IS NULL OR s.channel = 'email'))
       OR (SELECT c.status FROM consents c
           WHERE c.workspace_id = t.ws AND c.contact_id = t.contact_id AND c.channel = 'email'
           ORDER BY c.recorded_at DESC, c.id DESC LIMIT 1) = 'withdrawn'";

const CANCEL: &str = "WITH
        u AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::uuid[])
              AS u(ws, id, token, event_id)),
        done AS (
            UPDATE outbox_messages m
            SET status = 'cancelled', last_error = 'recipient is suppressed or withdrew consent',
                lease_owner = NULL, lease_expires_at = NULL, updated_at = $5,
                version = m.version + 1
            FROM u WHERE m.workspace_id = u.ws AND m.id = u.id AND m.status = 'in_flight'
                AND m.lease_token = u.token
            RETURNING m.workspace_id, m.id, m.contact_id, m.attempts, u.event_id)
        INSERT INTO events (workspace_id, id, kind, subject, payload, idempotency_key,
            occurred_at)
        SELECT d.workspace_id, d.event_id, 'outbox.cancelled', d.id::text,
            jsonb_build_object('outbox_message_id', d.id, 'channel', 'email',
                'contact_id', d.contact_id, 'enrollment_id', NULL, 'step_index', NULL,
                'status', 'cancelled', 'attempts', d.attempts,
                'error', 'recipient is suppressed or withdrew consent'),
            'outbox.cancelled:' || d.id, $5
        FROM done d";

const SENDING: &str = "WITH
        u AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::uuid[], $5::uuid[],
                  $6::text[], $7::uuid[], $8::float8[])
              AS u(ws, id, token, approval_id, event_id, body, rule_id, confidence)),
        sending AS (
            UPDATE outbox_messages m SET status = 'sending', updated_at = $9,
                version = m.version + 1
            FROM u WHERE m.workspace_id = u.ws AND m.id = u.id AND m.status = 'in_flight'
                AND m.lease_token = u.token
            RETURNING m.workspace_id, m.id),
        approved AS (
            INSERT INTO approval_items (workspace_id, id, outbox_message_id, channel, status,
                confidence, template_key, step_index, original_body, edited_body, context,
                reason, decided_by, decided_by_rule, decided_at, expires_at, created_at,
                updated_at, version)
            SELECT u.ws, u.approval_id, u.id, 'email', 'approved', u.confidence, NULL, NULL,
                u.body, NULL, 'null'::jsonb, NULL, NULL, u.rule_id, $9, $10, $9, $9, 1
            FROM u JOIN sending s ON s.workspace_id = u.ws AND s.id = u.id
            ON CONFLICT (workspace_id, outbox_message_id) DO NOTHING
            RETURNING workspace_id, id, outbox_message_id),
        quota AS (
            INSERT INTO quota_counters AS q (workspace_id, counter, period, used)
            SELECT workspace_id, 'send:email', $11, count(*) FROM sending
            GROUP BY workspace_id ORDER BY workspace_id
            ON CONFLICT (workspace_id, counter, period)
            DO UPDATE SET used = q.used + EXCLUDED.used WHERE q.used + EXCLUDED.used <= $12
            RETURNING workspace_id),
        requested AS (
            INSERT INTO events (workspace_id, id, kind, subject, payload, idempotency_key,
                occurred_at)
            SELECT a.workspace_id, u.event_id, 'approval.requested', a.id::text,
                jsonb_build_object('approval_id', a.id, 'outbox_message_id',
                    a.outbox_message_id, 'channel', 'email'),
                'approval.requested:' || a.id, $9
            FROM approved a JOIN u ON u.ws = a.workspace_id AND u.id = a.outbox_message_id
            RETURNING 1)
        SELECT (SELECT count(*) FROM sending), (SELECT count(*) FROM quota),
            (SELECT count(DISTINCT workspace_id) FROM sending), (SELECT count(*) FROM requested)";

const SENT: &str = "WITH
        u AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::text[], $5::uuid[],
                  $6::uuid[], $7::uuid[])
              AS u(ws, id, token, provider_id, activity_id, sent_event, activity_event)),
        sent AS (
            UPDATE outbox_messages m
            SET status = 'sent', provider_message_id = u.provider_id, sent_at = $8,
                updated_at = $8, lease_owner = NULL, lease_expires_at = NULL,
                version = m.version + 1
            FROM u WHERE m.workspace_id = u.ws AND m.id = u.id AND m.status = 'sending'
                AND m.lease_token = u.token
            RETURNING m.workspace_id, m.id, m.contact_id, m.attempts, m.provider_message_id,
                u.activity_id, u.sent_event, u.activity_event),
        activity AS (
            INSERT INTO activities (workspace_id, id, contact_id, deal_id, kind, channel,
                outbox_message_id, summary, details, occurred_at)
            SELECT workspace_id, activity_id, contact_id, NULL, 'message_sent', 'email', id,
                'Sent email message',
                jsonb_build_object('provider', 'bench', 'dry_run', false,
                    'provider_message_id', provider_message_id, 'step_index', NULL),
                $8
            FROM sent RETURNING 1),
        appended AS (
            INSERT INTO events (workspace_id, id, kind, subject, payload, idempotency_key,
                occurred_at)
            SELECT s.workspace_id, e.id, e.kind, e.subject, e.payload, e.key, $8
            FROM sent s CROSS JOIN LATERAL (VALUES
                (s.sent_event, 'outbox.sent', s.id::text,
                 jsonb_build_object('outbox_message_id', s.id, 'channel', 'email',
                     'contact_id', s.contact_id, 'enrollment_id', NULL, 'step_index', NULL,
                     'status', 'sent', 'attempts', s.attempts),
                 'outbox.sent:' || s.id),
                (s.activity_event, 'activity.logged', s.contact_id::text,
                 jsonb_build_object('activity_id', s.activity_id, 'contact_id', s.contact_id,
                     'deal_id', NULL, 'kind', 'message_sent', 'channel', 'email',
                     'outbox_message_id', s.id),
                 'activity.logged:' || s.activity_id)) AS e(id, kind, subject, payload, key)
            RETURNING 1)
        SELECT (SELECT count(*) FROM sent), (SELECT count(*) FROM activity),
            (SELECT count(*) FROM appended)";

/// One claimed row.
#[derive(Debug, sqlx::FromRow)]
struct Claimed {
    workspace_id: Uuid,
    id: Uuid,
    contact_id: Option<Uuid>,
    recipient: String,
    body: String,
    lease_token: i64,
    confidence: Option<f64>,
}

/// The hand-written dispatcher: the statements above over one pool.
#[derive(Debug, Clone)]
pub struct HandWritten {
    pool: PgPool,
    adapter: CountingAdapter,
    batch: i64,
    concurrency: usize,
    now: DateTime<Utc>,
}

impl HandWritten {
    /// A baseline claiming `batch` rows at a time (1: the single-row loop), sending up to
    /// `concurrency` at once through `adapter`, at `now`.
    #[must_use]
    pub fn new(
        pool: PgPool,
        adapter: CountingAdapter,
        batch: i64,
        concurrency: usize,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            pool,
            adapter,
            batch,
            concurrency,
            now,
        }
    }

    /// Claims and completes until nothing is due; answers what it did.
    pub async fn drain(&self, worker: &str) -> Counted {
        let mut counted = Counted::default();
        let day: NaiveDate = self.now.date_naive();
        loop {
            let claimed: Vec<Claimed> = sqlx::query_as(CLAIM)
                .bind(worker)
                .bind(self.now + Duration::minutes(5))
                .bind(self.now)
                .bind(self.batch)
                .fetch_all(&self.pool)
                .await
                .unwrap();
            if claimed.is_empty() {
                return counted;
            }
            let mut workspaces: Vec<Uuid> = claimed.iter().map(|c| c.workspace_id).collect();
            workspaces.sort_unstable();
            workspaces.dedup();
            let rules: Vec<(Uuid, Uuid, Option<f64>)> = sqlx::query_as(RULES)
                .bind(&workspaces)
                .fetch_all(&self.pool)
                .await
                .unwrap();
            let rules: HashMap<Uuid, (Uuid, Option<f64>)> = rules
                .into_iter()
                .map(|(ws, id, min)| (ws, (id, min)))
                .collect();
            let blocked: Vec<i64> = sqlx::query_scalar(BLOCKED)
                .bind(claimed.iter().map(|c| c.workspace_id).collect::<Vec<_>>())
                .bind(claimed.iter().map(|c| c.contact_id).collect::<Vec<_>>())
                .bind(
                    claimed
                        .iter()
                        .map(|c| c.recipient.as_str())
                        .collect::<Vec<_>>(),
                )
                .fetch_all(&self.pool)
                .await
                .unwrap();
            let (mut stop, mut go) = (Vec::new(), Vec::new());
            for (i, c) in claimed.into_iter().enumerate() {
                let ord = i64::try_from(i + 1).unwrap();
                if blocked.contains(&ord) {
                    stop.push(c);
                } else {
                    go.push(c);
                }
            }
            counted.cancelled += self.cancel(&stop).await;
            // Every message of the scenario matches its workspace's rule; one that did
            // not would wait for a person, which the scenario never asks for.
            let rule_of = |c: &Claimed| {
                let (rule, min) = rules.get(&c.workspace_id).copied().unwrap();
                check(c.confidence >= min, || {
                    "the baseline met a message its rule does not approve".to_owned()
                });
                rule
            };
            let rule_ids: Vec<Uuid> = go.iter().map(rule_of).collect();
            self.mark_sending(&go, &rule_ids, day).await;
            let provider_ids: Vec<String> = futures::stream::iter(go.iter())
                .map(|c| self.adapter.hand_over(OutboxMessageId::from_uuid(c.id)))
                .buffered(self.concurrency)
                .collect()
                .await;
            counted.sent += self.mark_sent(&go, &provider_ids).await;
        }
    }

    async fn cancel(&self, stop: &[Claimed]) -> u64 {
        if stop.is_empty() {
            return 0;
        }
        let done = sqlx::query(CANCEL)
            .bind(stop.iter().map(|c| c.workspace_id).collect::<Vec<_>>())
            .bind(stop.iter().map(|c| c.id).collect::<Vec<_>>())
            .bind(stop.iter().map(|c| c.lease_token).collect::<Vec<_>>())
            .bind(ids(stop.len()))
            .bind(self.now)
            .execute(&self.pool)
            .await
            .unwrap();
        done.rows_affected()
    }

    async fn mark_sending(&self, go: &[Claimed], rules: &[Uuid], day: NaiveDate) {
        if go.is_empty() {
            return;
        }
        let (marked, granted, workspaces, requested): (i64, i64, i64, i64) =
            sqlx::query_as(SENDING)
                .bind(go.iter().map(|c| c.workspace_id).collect::<Vec<_>>())
                .bind(go.iter().map(|c| c.id).collect::<Vec<_>>())
                .bind(go.iter().map(|c| c.lease_token).collect::<Vec<_>>())
                .bind(ids(go.len()))
                .bind(ids(go.len()))
                .bind(go.iter().map(|c| c.body.as_str()).collect::<Vec<_>>())
                .bind(rules)
                .bind(go.iter().map(|c| c.confidence).collect::<Vec<_>>())
                .bind(self.now)
                .bind(self.now + Duration::days(3))
                .bind(day)
                .bind(i64::from(DAILY_CAP))
                .fetch_one(&self.pool)
                .await
                .unwrap();
        check(
            marked == go.len() as i64 && granted == workspaces && requested == marked,
            || {
                format!(
                    "baseline: {marked} of {} marked sending, {granted} of {workspaces} quotas granted, {requested} approvals",
                    go.len()
                )
            },
        );
    }

    async fn mark_sent(&self, go: &[Claimed], provider_ids: &[String]) -> u64 {
        if go.is_empty() {
            return 0;
        }
        let (sent, activities, events): (i64, i64, i64) = sqlx::query_as(SENT)
            .bind(go.iter().map(|c| c.workspace_id).collect::<Vec<_>>())
            .bind(go.iter().map(|c| c.id).collect::<Vec<_>>())
            .bind(go.iter().map(|c| c.lease_token).collect::<Vec<_>>())
            .bind(provider_ids)
            .bind(ids(go.len()))
            .bind(ids(go.len()))
            .bind(ids(go.len()))
            .bind(self.now)
            .fetch_one(&self.pool)
            .await
            .unwrap();
        check(
            sent == go.len() as i64 && activities == sent && events == 2 * sent,
            || {
                format!(
                    "baseline: {sent} of {} marked sent, {activities} activities, {events} events",
                    go.len()
                )
            },
        );
        u64::try_from(sent).unwrap()
    }
}

/// `n` fresh time-ordered ids, as the engine makes them.
fn ids(n: usize) -> Vec<Uuid> {
    (0..n).map(|_| Uuid::now_v7()).collect()
}
