//! Detected anomalies (see the anomaly scanner).

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::{AnomalyId, WorkspaceId};
use crate::model::Anomaly;
use crate::store::{Inserted, Page};

/// Detected anomalies.
///
/// # Contract
/// Tenant scoping as for [`ContactStore`](crate::store::ContactStore).
#[async_trait]
pub trait AnomalyStore: Send + Sync + Debug {
    /// Records an anomaly (`version` 1, status `Active`). Deduplicated while open: if an
    /// `Active` or `Acknowledged` anomaly with the same `dedup_key` exists in the
    /// workspace, it is returned unchanged with `created: false`. Atomic.
    async fn raise_anomaly(&self, anomaly: &Anomaly) -> Result<Inserted<Anomaly>, StoreError>;

    /// The anomaly, or `NotFound`.
    async fn get_anomaly(
        &self,
        workspace_id: WorkspaceId,
        id: AnomalyId,
    ) -> Result<Anomaly, StoreError>;

    /// Compare-and-set update (acknowledge, resolve).
    async fn update_anomaly(&self, anomaly: &Anomaly) -> Result<Anomaly, StoreError>;

    /// Anomalies of the workspace, only open ones if `open_only`, ascending by id.
    async fn list_anomalies(
        &self,
        workspace_id: WorkspaceId,
        open_only: bool,
        page: Page<AnomalyId>,
    ) -> Result<Vec<Anomaly>, StoreError>;
}
