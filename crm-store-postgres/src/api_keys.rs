//! API keys: `api_keys` (migration 0021), hashed tokens with a global unique prefix.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::{ApiKeyId, WorkspaceId};
use crm_core::model::{ApiKey, ApiKeyRecord, ApiScope, TokenHash};
use crm_core::store::{ApiKeyStore, Page};
use uuid::Uuid;

use crate::PostgresStore;
use crate::error::{corrupt, db, parse_text};

const API_KEY: &str = "api_key";

/// One `api_keys` row.
#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    workspace_id: Uuid,
    id: Uuid,
    name: String,
    prefix: String,
    token_hash: Vec<u8>,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRow {
    fn into_record(self) -> Result<ApiKeyRecord, StoreError> {
        let scopes = self
            .scopes
            .iter()
            .map(|s| parse_text::<ApiScope>(s))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let token_hash = TokenHash::try_from(self.token_hash.as_slice())
            .map_err(|e| corrupt("api_keys.token_hash", e))?;
        Ok(ApiKeyRecord {
            key: ApiKey {
                id: ApiKeyId::from_uuid(self.id),
                workspace_id: WorkspaceId::from_uuid(self.workspace_id),
                name: self.name,
                prefix: self.prefix,
                scopes,
                created_at: self.created_at,
                expires_at: self.expires_at,
                last_used_at: self.last_used_at,
                revoked_at: self.revoked_at,
            },
            token_hash,
        })
    }

    fn into_key(self) -> Result<ApiKey, StoreError> {
        self.into_record().map(|r| r.key)
    }
}

#[async_trait]
impl ApiKeyStore for PostgresStore {
    async fn insert_api_key(&self, record: &ApiKeyRecord) -> Result<ApiKey, StoreError> {
        record.validate()?;
        let key = &record.key;
        let scopes: Vec<&str> = key.scopes.iter().map(ApiScope::as_str).collect();
        sqlx::query_as::<_, ApiKeyRow>(
            "INSERT INTO api_keys (workspace_id, id, name, prefix, token_hash, scopes,
                                   created_at, expires_at, last_used_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             RETURNING *",
        )
        .bind(key.workspace_id.as_uuid())
        .bind(key.id.as_uuid())
        .bind(key.name.as_str())
        .bind(key.prefix.as_str())
        .bind(record.token_hash.as_bytes().as_slice())
        .bind(scopes)
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(key.last_used_at)
        .bind(key.revoked_at)
        .fetch_one(&self.pool)
        .await
        .map_err(db(API_KEY))?
        .into_key()
    }

    async fn find_api_key_by_prefix(
        &self,
        prefix: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        sqlx::query_as::<_, ApiKeyRow>("SELECT * FROM api_keys WHERE prefix = $1")
            .bind(prefix)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(API_KEY))?
            .map(ApiKeyRow::into_record)
            .transpose()
    }

    async fn touch_api_key(
        &self,
        workspace_id: WorkspaceId,
        id: ApiKeyId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // One statement: the row's existence and whether the time moved forward.
        let changed = sqlx::query_scalar::<_, bool>(
            "WITH target AS (
                 SELECT last_used_at FROM api_keys WHERE workspace_id = $1 AND id = $2
             ), moved AS (
                 UPDATE api_keys SET last_used_at = $3
                 WHERE workspace_id = $1 AND id = $2
                   AND (last_used_at IS NULL OR last_used_at < $3)
                 RETURNING 1
             )
             SELECT EXISTS (SELECT 1 FROM moved) FROM target",
        )
        .bind(workspace_id.as_uuid())
        .bind(id.as_uuid())
        .bind(at)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(API_KEY))?;
        changed.ok_or_else(|| StoreError::not_found(API_KEY, id))
    }

    async fn revoke_api_key(
        &self,
        workspace_id: WorkspaceId,
        id: ApiKeyId,
        at: DateTime<Utc>,
    ) -> Result<ApiKey, StoreError> {
        sqlx::query_as::<_, ApiKeyRow>(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $3)
             WHERE workspace_id = $1 AND id = $2
             RETURNING *",
        )
        .bind(workspace_id.as_uuid())
        .bind(id.as_uuid())
        .bind(at)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(API_KEY))?
        .ok_or_else(|| StoreError::not_found(API_KEY, id))?
        .into_key()
    }

    async fn list_api_keys(
        &self,
        workspace_id: WorkspaceId,
        page: Page<ApiKeyId>,
    ) -> Result<Vec<ApiKey>, StoreError> {
        page.validate()?;
        sqlx::query_as::<_, ApiKeyRow>(
            "SELECT * FROM api_keys
             WHERE workspace_id = $1 AND ($2::uuid IS NULL OR id > $2)
             ORDER BY id
             LIMIT $3",
        )
        .bind(workspace_id.as_uuid())
        .bind(page.after.map(|id| id.as_uuid()))
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db(API_KEY))?
        .into_iter()
        .map(ApiKeyRow::into_key)
        .collect()
    }
}
