//! What the store's writes share to append their events (`crm_core::events`) in the
//! write's own transaction.

use crm_core::StoreError;
use crm_core::ids::WorkspaceId;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::error::{cas_error, db};
use crate::rows::IntoEntity;

/// Reads and locks the row `sql` selects (`SELECT * FROM t WHERE workspace_id = $1 AND
/// id = $2 FOR UPDATE`) and answers it if it is at `expected`: the row an update
/// replaces, which its events compare against. No row is `NotFound`, another version
/// `VersionConflict`, as a compare-and-set miss.
pub(crate) async fn lock_at_version<R, E>(
    conn: &mut PgConnection,
    sql: &'static str,
    entity: &'static str,
    workspace_id: WorkspaceId,
    id: Uuid,
    expected: i64,
    version: impl Fn(&E) -> i64,
) -> Result<E, StoreError>
where
    R: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin + IntoEntity<Entity = E>,
{
    let row: Option<R> = sqlx::query_as(sql)
        .bind(workspace_id.as_uuid())
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(db(entity))?;
    let current = row.map(IntoEntity::into_entity).transpose()?;
    match current {
        Some(before) if version(&before) == expected => Ok(before),
        other => Err(cas_error(entity, id, expected, other.as_ref().map(version))),
    }
}
