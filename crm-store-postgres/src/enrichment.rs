//! The enrichment cache, usage log, monthly spend and spend reservations.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use crm_core::ids::WorkspaceId;
use crm_core::store::{
    CachedEnrichment, EnrichmentDataType, EnrichmentStore, EnrichmentUsage, ReserveOutcome,
    SpendReservation, SpendReservationId, SpendTotals, validate_limit, validate_month,
    validate_settlement,
};
use crm_core::{Currency, Money, StoreError};
use sqlx::PgConnection;

use crate::PostgresStore;
use crate::error::{backend, db};

const CACHE: &str = "enrichment_cache";
const USAGE: &str = "enrichment_usage";
const SPEND: &str = "enrichment_spend";
const RESERVATION: &str = "enrichment_reservation";

/// Last write wins on the cache key.
const PUT_CACHE: &str = "
    INSERT INTO enrichment_cache (workspace_id, data_type, subject, provider, payload, fetched_at)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (workspace_id, data_type, subject) DO UPDATE
    SET provider = EXCLUDED.provider, payload = EXCLUDED.payload,
        fetched_at = EXCLUDED.fetched_at";

const GET_CACHE: &str = "
    SELECT provider, payload, fetched_at FROM enrichment_cache
    WHERE workspace_id = $1 AND data_type = $2 AND subject = $3";

/// Adds the cost to the month's spend and appends the usage row in one statement. The
/// upsert's row lock orders racing callers; `spent - $4` is the total just before.
const RECORD: &str = "
    WITH spend AS (
        INSERT INTO enrichment_spend AS s (workspace_id, month, currency, spent)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (workspace_id, month, currency) DO UPDATE SET spent = s.spent + EXCLUDED.spent
        RETURNING spent
    ), usage AS (
        INSERT INTO enrichment_usage (workspace_id, month, currency, cost_minor_units,
            provider, data_type, hit, credits, at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    )
    SELECT spent - $4, spent FROM spend";

/// Locks the month's spend row (creating it at zero) and returns the settled spend. The
/// no-op update takes the row lock even when the row exists, so racing reservations of
/// one budget queue here; the sum of reservations that follows is a later statement and
/// so sees every reservation committed before the lock was granted.
const LOCK_SPEND: &str = "
    INSERT INTO enrichment_spend AS s (workspace_id, month, currency, spent)
    VALUES ($1, $2, $3, 0)
    ON CONFLICT (workspace_id, month, currency) DO UPDATE SET spent = s.spent
    RETURNING spent";

/// The live reservations of one budget, and whether id `$5` is taken already.
const LIVE_RESERVED: &str = "
    SELECT (SELECT coalesce(sum(amount), 0)::bigint FROM enrichment_reservations
            WHERE workspace_id = $1 AND month = $2 AND currency = $3 AND expires_at > $4),
           EXISTS (SELECT 1 FROM enrichment_reservations WHERE workspace_id = $1 AND id = $5)";

const INSERT_RESERVATION: &str = "
    INSERT INTO enrichment_reservations (workspace_id, id, month, currency, amount, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6)";

const END_RESERVATION: &str = "
    DELETE FROM enrichment_reservations WHERE workspace_id = $1 AND id = $2
    RETURNING month, currency, amount";

const LIST_USAGE: &str = "
    SELECT provider, data_type, hit, credits, cost_minor_units, currency, at
    FROM enrichment_usage
    WHERE workspace_id = $1 AND month = $2
    ORDER BY at, seq
    LIMIT $3";

type UsageRow = (String, String, bool, i64, i64, String, DateTime<Utc>);

fn usage_from_row(workspace_id: WorkspaceId, row: UsageRow) -> Result<EnrichmentUsage, StoreError> {
    let (provider, data_type, hit, credits, cost, currency, at) = row;
    let currency: Currency = currency.parse().map_err(backend)?;
    Ok(EnrichmentUsage {
        workspace_id,
        provider,
        data_type: data_type.parse().map_err(backend)?,
        hit,
        credits: u32::try_from(credits).map_err(backend)?,
        cost: Money::new(cost, currency).map_err(backend)?,
        at,
    })
}

/// Runs [`RECORD`] for `usage` on `conn`.
async fn record(
    conn: &mut PgConnection,
    usage: &EnrichmentUsage,
) -> Result<SpendTotals, StoreError> {
    let (before, after) = sqlx::query_as::<_, (i64, i64)>(RECORD)
        .bind(usage.workspace_id.as_uuid())
        .bind(usage.month())
        .bind(usage.cost.currency().as_str())
        .bind(usage.cost.minor_units())
        .bind(usage.provider.as_str())
        .bind(usage.data_type.as_str())
        .bind(usage.hit)
        .bind(i64::from(usage.credits))
        .bind(usage.at)
        .fetch_one(conn)
        .await
        .map_err(db(USAGE))?;
    Ok(SpendTotals { before, after })
}

/// Inserts reservation `r` on `conn`.
async fn insert_reservation(
    conn: &mut PgConnection,
    r: &SpendReservation,
) -> Result<(), StoreError> {
    sqlx::query(INSERT_RESERVATION)
        .bind(r.workspace_id.as_uuid())
        .bind(r.id.as_uuid())
        .bind(r.month)
        .bind(r.amount.currency().as_str())
        .bind(r.amount.minor_units())
        .bind(r.expires_at)
        .execute(conn)
        .await
        .map_err(db(RESERVATION))?;
    Ok(())
}

#[async_trait]
impl EnrichmentStore for PostgresStore {
    async fn get_cached_enrichment(
        &self,
        workspace_id: WorkspaceId,
        data_type: EnrichmentDataType,
        subject: &str,
    ) -> Result<Option<CachedEnrichment>, StoreError> {
        let row = sqlx::query_as::<_, (String, serde_json::Value, DateTime<Utc>)>(GET_CACHE)
            .bind(workspace_id.as_uuid())
            .bind(data_type.as_str())
            .bind(subject)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(CACHE))?;
        Ok(row.map(|(provider, payload, fetched_at)| CachedEnrichment {
            workspace_id,
            data_type,
            subject: subject.to_owned(),
            provider,
            payload,
            fetched_at,
        }))
    }

    async fn put_cached_enrichment(&self, entry: &CachedEnrichment) -> Result<(), StoreError> {
        entry.validate()?;
        sqlx::query(PUT_CACHE)
            .bind(entry.workspace_id.as_uuid())
            .bind(entry.data_type.as_str())
            .bind(entry.subject.as_str())
            .bind(entry.provider.as_str())
            .bind(&entry.payload)
            .bind(entry.fetched_at)
            .execute(&self.pool)
            .await
            .map_err(db(CACHE))?;
        Ok(())
    }

    async fn record_enrichment_usage(
        &self,
        usage: &EnrichmentUsage,
    ) -> Result<SpendTotals, StoreError> {
        usage.validate()?;
        let mut conn = self.pool.acquire().await.map_err(db(USAGE))?;
        record(&mut conn, usage).await
    }

    async fn reserve_enrichment_spend(
        &self,
        r: &SpendReservation,
        now: DateTime<Utc>,
    ) -> Result<ReserveOutcome, StoreError> {
        r.validate()?;
        let Some(cap) = r.cap else {
            let mut conn = self.pool.acquire().await.map_err(db(RESERVATION))?;
            insert_reservation(&mut conn, r).await?;
            return Ok(ReserveOutcome::Reserved);
        };
        let ws = r.workspace_id.as_uuid();
        let currency = r.amount.currency();
        let mut tx = self.pool.begin().await.map_err(db(RESERVATION))?;
        let spent = sqlx::query_scalar::<_, i64>(LOCK_SPEND)
            .bind(ws)
            .bind(r.month)
            .bind(currency.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(db(SPEND))?;
        let (reserved, taken) = sqlx::query_as::<_, (i64, bool)>(LIVE_RESERVED)
            .bind(ws)
            .bind(r.month)
            .bind(currency.as_str())
            .bind(now)
            .bind(r.id.as_uuid())
            .fetch_one(&mut *tx)
            .await
            .map_err(db(RESERVATION))?;
        if taken {
            return Err(StoreError::conflict(
                RESERVATION,
                "the reservation id is already in use",
            ));
        }
        let committed = spent
            .saturating_add(reserved)
            .saturating_add(r.amount.minor_units());
        if spent >= cap || committed > cap {
            // Dropping the transaction rolls it back and frees the lock.
            return Ok(ReserveOutcome::Refused { spent, reserved });
        }
        insert_reservation(&mut tx, r).await?;
        tx.commit().await.map_err(db(RESERVATION))?;
        Ok(ReserveOutcome::Reserved)
    }

    async fn settle_enrichment_spend(
        &self,
        id: SpendReservationId,
        usage: &EnrichmentUsage,
    ) -> Result<SpendTotals, StoreError> {
        usage.validate()?;
        let mut tx = self.pool.begin().await.map_err(db(RESERVATION))?;
        let row = sqlx::query_as::<_, (NaiveDate, String, i64)>(END_RESERVATION)
            .bind(usage.workspace_id.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(RESERVATION))?;
        let Some((month, currency, amount)) = row else {
            return Err(StoreError::not_found(RESERVATION, id));
        };
        let currency: Currency = currency.parse().map_err(backend)?;
        let amount = Money::new(amount, currency).map_err(backend)?;
        validate_settlement(month, amount, usage)?;
        let totals = record(&mut tx, usage).await?;
        tx.commit().await.map_err(db(RESERVATION))?;
        Ok(totals)
    }

    async fn release_enrichment_spend(
        &self,
        workspace_id: WorkspaceId,
        id: SpendReservationId,
    ) -> Result<(), StoreError> {
        sqlx::query(END_RESERVATION)
            .bind(workspace_id.as_uuid())
            .bind(id.as_uuid())
            .execute(&self.pool)
            .await
            .map_err(db(RESERVATION))?;
        Ok(())
    }

    async fn enrichment_spend(
        &self,
        workspace_id: WorkspaceId,
        month: NaiveDate,
        currency: Currency,
    ) -> Result<Money, StoreError> {
        validate_month(month)?;
        let spent = sqlx::query_scalar::<_, i64>(
            "SELECT spent FROM enrichment_spend
             WHERE workspace_id = $1 AND month = $2 AND currency = $3",
        )
        .bind(workspace_id.as_uuid())
        .bind(month)
        .bind(currency.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db(SPEND))?;
        Money::new(spent.unwrap_or(0), currency).map_err(backend)
    }

    async fn list_enrichment_usage(
        &self,
        workspace_id: WorkspaceId,
        month: NaiveDate,
        limit: u32,
    ) -> Result<Vec<EnrichmentUsage>, StoreError> {
        validate_month(month)?;
        validate_limit(limit)?;
        let rows = sqlx::query_as::<_, UsageRow>(LIST_USAGE)
            .bind(workspace_id.as_uuid())
            .bind(month)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db(USAGE))?;
        rows.into_iter()
            .map(|row| usage_from_row(workspace_id, row))
            .collect()
    }
}
