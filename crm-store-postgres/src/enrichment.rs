//! The enrichment cache, usage log and monthly spend.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use crm_core::ids::WorkspaceId;
use crm_core::store::{
    CachedEnrichment, EnrichmentDataType, EnrichmentStore, EnrichmentUsage, SpendTotals,
    validate_limit, validate_month,
};
use crm_core::{Currency, Money, StoreError};

use crate::PostgresStore;
use crate::error::{backend, db};

const CACHE: &str = "enrichment_cache";
const USAGE: &str = "enrichment_usage";
const SPEND: &str = "enrichment_spend";

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
            .fetch_one(&self.pool)
            .await
            .map_err(db(USAGE))?;
        Ok(SpendTotals { before, after })
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
