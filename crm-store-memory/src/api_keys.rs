//! API keys: rows by (workspace, id) and the global prefix index authentication uses.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crm_core::StoreError;
use crm_core::ids::{ApiKeyId, WorkspaceId};
use crm_core::model::rules::stored_time;
use crm_core::model::{ApiKey, ApiKeyRecord};
use crm_core::store::{ApiKeyStore, Page};

use crate::MemoryStore;
use crate::table::limit;

const API_KEY: &str = "api_key";

/// Every workspace's keys, and which key holds each prefix.
#[derive(Default)]
pub(crate) struct ApiKeyTables {
    keys: HashMap<WorkspaceId, BTreeMap<ApiKeyId, ApiKeyRecord>>,
    /// The unique lookup key: prefix -> (workspace, id), across workspaces.
    by_prefix: HashMap<String, (WorkspaceId, ApiKeyId)>,
}

impl ApiKeyTables {
    pub(crate) fn sizes(&self, out: &mut Vec<(&'static str, usize)>) {
        out.push(("api_keys", self.keys.values().map(BTreeMap::len).sum()));
    }

    fn insert(&mut self, record: &ApiKeyRecord) -> Result<ApiKey, StoreError> {
        record.validate()?;
        let record = ApiKeyRecord {
            key: record.key.clone().at_stored_precision(),
            token_hash: record.token_hash,
        };
        let (ws, id) = (record.key.workspace_id, record.key.id);
        if self.by_prefix.contains_key(&record.key.prefix) {
            return Err(StoreError::conflict(API_KEY, "prefix is already used"));
        }
        // The primary key is (workspace, id), as in PostgreSQL.
        let rows = self.keys.entry(ws).or_default();
        if rows.contains_key(&id) {
            return Err(StoreError::conflict(
                API_KEY,
                format!("id {id} is already used"),
            ));
        }
        self.by_prefix.insert(record.key.prefix.clone(), (ws, id));
        let stored = record.key.clone();
        rows.insert(id, record);
        Ok(stored)
    }

    fn get_mut(
        &mut self,
        workspace_id: WorkspaceId,
        id: ApiKeyId,
    ) -> Result<&mut ApiKeyRecord, StoreError> {
        self.keys
            .get_mut(&workspace_id)
            .and_then(|rows| rows.get_mut(&id))
            .ok_or_else(|| StoreError::not_found(API_KEY, id))
    }

    fn touch(
        &mut self,
        workspace_id: WorkspaceId,
        id: ApiKeyId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let at = stored_time(at);
        let key = &mut self.get_mut(workspace_id, id)?.key;
        if key.last_used_at.is_some_and(|last| last >= at) {
            return Ok(false);
        }
        key.last_used_at = Some(at);
        Ok(true)
    }

    fn revoke(
        &mut self,
        workspace_id: WorkspaceId,
        id: ApiKeyId,
        at: DateTime<Utc>,
    ) -> Result<ApiKey, StoreError> {
        let key = &mut self.get_mut(workspace_id, id)?.key;
        key.revoked_at.get_or_insert(stored_time(at));
        Ok(key.clone())
    }

    fn list(
        &self,
        workspace_id: WorkspaceId,
        page: &Page<ApiKeyId>,
    ) -> Result<Vec<ApiKey>, StoreError> {
        page.validate()?;
        let Some(rows) = self.keys.get(&workspace_id) else {
            return Ok(Vec::new());
        };
        let lower = page.after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(rows
            .range((lower, Bound::Unbounded))
            .map(|(_, record)| record.key.clone())
            .take(limit(page.limit))
            .collect())
    }
}

#[async_trait]
impl ApiKeyStore for MemoryStore {
    async fn insert_api_key(&self, record: &ApiKeyRecord) -> Result<ApiKey, StoreError> {
        self.with(|t| t.api_keys.insert(record))
    }

    async fn find_api_key_by_prefix(
        &self,
        prefix: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.with(|t| {
            Ok(t.api_keys
                .by_prefix
                .get(prefix)
                .and_then(|(ws, id)| t.api_keys.keys.get(ws)?.get(id))
                .cloned())
        })
    }

    async fn touch_api_key(
        &self,
        workspace_id: WorkspaceId,
        id: ApiKeyId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.with(|t| t.api_keys.touch(workspace_id, id, at))
    }

    async fn revoke_api_key(
        &self,
        workspace_id: WorkspaceId,
        id: ApiKeyId,
        at: DateTime<Utc>,
    ) -> Result<ApiKey, StoreError> {
        self.with(|t| t.api_keys.revoke(workspace_id, id, at))
    }

    async fn list_api_keys(
        &self,
        workspace_id: WorkspaceId,
        page: Page<ApiKeyId>,
    ) -> Result<Vec<ApiKey>, StoreError> {
        self.with(|t| t.api_keys.list(workspace_id, &page))
    }
}
