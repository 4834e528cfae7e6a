//! Quotas, named leases and anomalies.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use crm_core::StoreError;
use crm_core::events;
use crm_core::ids::{AnomalyId, WorkspaceId};
use crm_core::model::rules::{
    require_new_version, require_positive_ttl, validate_lease_request, validate_quota_amount,
};
use crm_core::model::{Anomaly, AnomalyStatus, LeaseGrant};
use crm_core::store::takeover_cutoff;
use crm_core::store::{
    AnomalyStore, Inserted, LeaseStore, Page, QuotaDecision, QuotaKey, QuotaStore,
};

use crate::PostgresStore;
use crate::error::{backend, cas_miss, db, invalid};
use crate::queue::insert_events_in;
use crate::rows::{AnomalyRow, IntoEntity, entities};

/// A row written by the anomaly update: the stored anomaly and when the row it
/// replaced was resolved, read by a self-join, which decides its event.
#[derive(Debug, sqlx::FromRow)]
struct ChangedAnomalyRow {
    #[sqlx(flatten)]
    after: AnomalyRow,
    before_resolved_at: Option<DateTime<Utc>>,
}

const QUOTA: &str = "quota";
const LEASE: &str = "lease";
const ANOMALY: &str = "anomaly";

const ANOMALY_VERSION: &str = "SELECT version FROM anomalies WHERE workspace_id = $1 AND id = $2";

/// How often `raise_anomaly` retries when the open anomaly it collided with was
/// resolved before it could be read.
const DEDUP_RETRIES: usize = 3;

/// Consumes `$4` units if the total stays at or under `$5`, in one statement: the row
/// lock of the upsert orders racing callers, and the `WHERE` re-checks the cap against
/// the latest total. A first consumption larger than the cap inserts nothing.
const CONSUME: &str = "
    INSERT INTO quota_counters AS q (workspace_id, counter, period, used)
    SELECT $1, $2, $3, $4 WHERE $4 <= $5
    ON CONFLICT (workspace_id, counter, period)
    DO UPDATE SET used = q.used + EXCLUDED.used WHERE q.used + EXCLUDED.used <= $5
    RETURNING used";

/// The units used of one counter.
const QUOTA_USED: &str = "SELECT used FROM quota_counters
    WHERE workspace_id = $1 AND counter = $2 AND period = $3";

/// Takes the lease if it is free (released), expired at or before the takeover cutoff
/// `$5` (the caller's now minus the clock-skew allowance), or held by the same holder.
/// The token grows by one when the lease changes hands and stays for the same holder.
const ACQUIRE: &str = "
    INSERT INTO leases AS l (workspace_id, name, holder, token, expires_at)
    VALUES ($1, $2, $3, 1, $4)
    ON CONFLICT (workspace_id, name) DO UPDATE
    SET token = CASE WHEN l.holder = EXCLUDED.holder THEN l.token ELSE l.token + 1 END,
        holder = EXCLUDED.holder,
        expires_at = EXCLUDED.expires_at
    WHERE l.holder IS NULL OR l.expires_at <= $5 OR l.holder = EXCLUDED.holder
    RETURNING token, expires_at";

fn expiry(now: DateTime<Utc>, ttl: Duration) -> Result<DateTime<Utc>, StoreError> {
    require_positive_ttl(ttl)?;
    now.checked_add_signed(ttl)
        .ok_or_else(|| invalid("ttl", "is too long"))
}

fn to_u32(used: i64) -> Result<u32, StoreError> {
    u32::try_from(used).map_err(backend)
}

#[async_trait]
impl QuotaStore for PostgresStore {
    async fn try_consume_quota(
        &self,
        workspace_id: WorkspaceId,
        key: &QuotaKey,
        cap: u32,
        amount: u32,
    ) -> Result<QuotaDecision, StoreError> {
        validate_quota_amount(amount)?;
        let consume = || {
            sqlx::query_scalar::<_, i64>(CONSUME)
                .bind(workspace_id.as_uuid())
                .bind(key.counter.as_str())
                .bind(key.period)
                .bind(i64::from(amount))
                .bind(i64::from(cap))
        };
        let granted = |used: i64| -> Result<QuotaDecision, StoreError> {
            let used = to_u32(used)?;
            Ok(QuotaDecision::Granted {
                used,
                remaining: cap.saturating_sub(used),
            })
        };
        // The common case, a grant, is one statement.
        if let Some(used) = consume()
            .fetch_optional(&self.pool)
            .await
            .map_err(db(QUOTA))?
        {
            return granted(used);
        }
        // Refused: ask again in a transaction. The upsert locks the counter row even
        // when its `WHERE` refuses, and the lock holds until commit, so the total read
        // after it is the one that decided the refusal.
        let mut tx = self.pool.begin().await.map_err(db(QUOTA))?;
        let decision = match consume()
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(QUOTA))?
        {
            Some(used) => granted(used)?,
            None => {
                let used = sqlx::query_scalar::<_, i64>(QUOTA_USED)
                    .bind(workspace_id.as_uuid())
                    .bind(key.counter.as_str())
                    .bind(key.period)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db(QUOTA))?;
                QuotaDecision::Exhausted {
                    used: to_u32(used.unwrap_or(0))?,
                    cap,
                }
            }
        };
        tx.commit().await.map_err(db(QUOTA))?;
        Ok(decision)
    }

    async fn quota_usage(
        &self,
        workspace_id: WorkspaceId,
        key: &QuotaKey,
    ) -> Result<u32, StoreError> {
        let used = sqlx::query_scalar::<_, i64>(QUOTA_USED)
            .bind(workspace_id.as_uuid())
            .bind(key.counter.as_str())
            .bind(key.period)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(QUOTA))?;
        to_u32(used.unwrap_or(0))
    }
}

#[async_trait]
impl LeaseStore for PostgresStore {
    async fn try_acquire_lease(
        &self,
        workspace_id: WorkspaceId,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<LeaseGrant>, StoreError> {
        validate_lease_request(name, holder, ttl)?;
        let expires_at = expiry(now, ttl)?;
        let taken = sqlx::query_as::<_, (i64, DateTime<Utc>)>(ACQUIRE)
            .bind(workspace_id.as_uuid())
            .bind(name)
            .bind(holder)
            .bind(expires_at)
            .bind(takeover_cutoff(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(db(LEASE))?;
        Ok(taken.map(|(token, expires_at)| LeaseGrant {
            workspace_id,
            name: name.to_owned(),
            holder: holder.to_owned(),
            token,
            expires_at,
        }))
    }

    async fn renew_lease(
        &self,
        grant: &LeaseGrant,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<LeaseGrant, StoreError> {
        let expires_at = expiry(now, ttl)?;
        let renewed = sqlx::query_scalar::<_, DateTime<Utc>>(
            "UPDATE leases SET expires_at = $5
             WHERE workspace_id = $1 AND name = $2 AND holder = $3 AND token = $4
             RETURNING expires_at",
        )
        .bind(grant.workspace_id.as_uuid())
        .bind(grant.name.as_str())
        .bind(grant.holder.as_str())
        .bind(grant.token)
        .bind(expires_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(LEASE))?;
        match renewed {
            Some(expires_at) => Ok(LeaseGrant {
                expires_at,
                ..grant.clone()
            }),
            None => Err(StoreError::lease_lost(LEASE, &grant.name)),
        }
    }

    async fn release_lease(&self, grant: &LeaseGrant) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE leases SET holder = NULL
             WHERE workspace_id = $1 AND name = $2 AND holder = $3 AND token = $4",
        )
        .bind(grant.workspace_id.as_uuid())
        .bind(grant.name.as_str())
        .bind(grant.holder.as_str())
        .bind(grant.token)
        .execute(&self.pool)
        .await
        .map_err(db(LEASE))?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl AnomalyStore for PostgresStore {
    async fn raise_anomaly(&self, anomaly: &Anomaly) -> Result<Inserted<Anomaly>, StoreError> {
        anomaly.validate()?;
        require_new_version(anomaly.version)?;
        if anomaly.status != AnomalyStatus::Active {
            return Err(invalid("anomaly.status", "a new anomaly must be active"));
        }
        for _ in 0..DEDUP_RETRIES {
            let mut tx = self.pool.begin().await.map_err(db(ANOMALY))?;
            let inserted = sqlx::query_as::<_, AnomalyRow>(
                "INSERT INTO anomalies (workspace_id, id, rule, channel, severity, status,
                     dedup_key, summary, details, detected_at, acknowledged_by, resolved_at,
                     updated_at, version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT (workspace_id, dedup_key)
                     WHERE status IN ('active', 'acknowledged')
                 DO NOTHING
                 RETURNING *",
            )
            .bind(anomaly.workspace_id.as_uuid())
            .bind(anomaly.id.as_uuid())
            .bind(anomaly.rule.clone())
            .bind(anomaly.channel.map(|c| c.as_str()))
            .bind(anomaly.severity.as_str())
            .bind(anomaly.status.as_str())
            .bind(anomaly.dedup_key.clone())
            .bind(anomaly.summary.clone())
            .bind(anomaly.details.clone())
            .bind(anomaly.detected_at)
            .bind(anomaly.acknowledged_by.map(|id| id.as_uuid()))
            .bind(anomaly.resolved_at)
            .bind(anomaly.updated_at)
            .bind(anomaly.version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(ANOMALY))?;
            if let Some(row) = inserted {
                let value = row.into_entity()?;
                let raised = events::anomaly_changed(None, &value)?;
                insert_events_in(&mut tx, raised.as_slice()).await?;
                tx.commit().await.map_err(db(ANOMALY))?;
                return Ok(Inserted {
                    value,
                    created: true,
                });
            }
            // Deduplicated: nothing was written, and an open anomaly raises no event.
            drop(tx);
            let open = sqlx::query_as::<_, AnomalyRow>(
                "SELECT * FROM anomalies
                 WHERE workspace_id = $1 AND dedup_key = $2
                   AND status IN ('active', 'acknowledged')",
            )
            .bind(anomaly.workspace_id.as_uuid())
            .bind(anomaly.dedup_key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db(ANOMALY))?;
            if let Some(row) = open {
                return Ok(Inserted {
                    value: row.into_entity()?,
                    created: false,
                });
            }
            // The open anomaly was resolved in between: try again.
        }
        Err(StoreError::conflict(
            ANOMALY,
            "the open anomaly with this key changed concurrently; try again",
        ))
    }

    async fn get_anomaly(
        &self,
        workspace_id: WorkspaceId,
        id: AnomalyId,
    ) -> Result<Anomaly, StoreError> {
        sqlx::query_as::<_, AnomalyRow>(
            "SELECT * FROM anomalies WHERE workspace_id = $1 AND id = $2",
        )
        .bind(workspace_id.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(ANOMALY))?
        .ok_or_else(|| StoreError::not_found(ANOMALY, id))?
        .into_entity()
    }

    async fn update_anomaly(&self, anomaly: &Anomaly) -> Result<Anomaly, StoreError> {
        anomaly.validate()?;
        let mut tx = self.pool.begin().await.map_err(db(ANOMALY))?;
        let row = sqlx::query_as::<_, ChangedAnomalyRow>(
            "UPDATE anomalies a
             SET rule = $3, channel = $4, severity = $5, status = $6, dedup_key = $7,
                 summary = $8, details = $9, acknowledged_by = $10, resolved_at = $11,
                 updated_at = $12, version = a.version + 1
             FROM anomalies old
             WHERE a.workspace_id = $1 AND a.id = $2 AND a.version = $13
               AND old.workspace_id = a.workspace_id AND old.id = a.id
             RETURNING a.*, old.resolved_at AS before_resolved_at",
        )
        .bind(anomaly.workspace_id.as_uuid())
        .bind(anomaly.id.as_uuid())
        .bind(anomaly.rule.clone())
        .bind(anomaly.channel.map(|c| c.as_str()))
        .bind(anomaly.severity.as_str())
        .bind(anomaly.status.as_str())
        .bind(anomaly.dedup_key.clone())
        .bind(anomaly.summary.clone())
        .bind(anomaly.details.clone())
        .bind(anomaly.acknowledged_by.map(|id| id.as_uuid()))
        .bind(anomaly.resolved_at)
        .bind(anomaly.updated_at)
        .bind(anomaly.version)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(ANOMALY))?;
        match row {
            Some(row) => {
                let after = row.after.into_entity()?;
                // Only `resolved_at` of the row replaced decides the event.
                let mut before = after.clone();
                before.resolved_at = row.before_resolved_at;
                let changed = events::anomaly_changed(Some(&before), &after)?;
                insert_events_in(&mut tx, changed.as_slice()).await?;
                tx.commit().await.map_err(db(ANOMALY))?;
                Ok(after)
            }
            None => {
                drop(tx);
                let (ws, id) = (anomaly.workspace_id, anomaly.id.as_uuid());
                Err(cas_miss(
                    &self.pool,
                    ANOMALY_VERSION,
                    ANOMALY,
                    ws,
                    id,
                    anomaly.version,
                )
                .await)
            }
        }
    }

    async fn list_anomalies(
        &self,
        workspace_id: WorkspaceId,
        open_only: bool,
        page: Page<AnomalyId>,
    ) -> Result<Vec<Anomaly>, StoreError> {
        page.validate()?;
        let rows = sqlx::query_as::<_, AnomalyRow>(
            "SELECT * FROM anomalies
             WHERE workspace_id = $1
               AND (NOT $2 OR status IN ('active', 'acknowledged'))
               AND ($3::uuid IS NULL OR id > $3)
             ORDER BY id LIMIT $4",
        )
        .bind(workspace_id.as_uuid())
        .bind(open_only)
        .bind(page.after.map(|id| id.as_uuid()))
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db(ANOMALY))?;
        entities(rows)
    }
}
