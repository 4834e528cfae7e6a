//! One keyset page of a workspace's rows, ascending by id: the shape of every plain
//! `list_*` method. The SQL is a literal built by the macros at each call site, so no
//! table name is spliced at run time.

use crm_core::StoreError;
use crm_core::ids::WorkspaceId;
use sqlx::PgPool;
use sqlx::postgres::{PgArguments, PgRow};
use uuid::Uuid;

use crate::error::db;
use crate::rows::{IntoEntity, entities};

/// `SELECT *` of one page of `$table` in workspace `$1`, after id `$2`, at most `$3`.
macro_rules! page_sql {
    ($table:literal) => {
        concat!(
            "SELECT * FROM ",
            $table,
            " WHERE workspace_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
        )
    };
}

/// As [`page_sql!`], with `$4` an optional `status` the rows must have.
macro_rules! status_page_sql {
    ($table:literal) => {
        concat!(
            "SELECT * FROM ",
            $table,
            " WHERE workspace_id = $1 AND ($2::uuid IS NULL OR id > $2)",
            " AND ($4::text IS NULL OR status = $4) ORDER BY id LIMIT $3"
        )
    };
}

pub(crate) use {page_sql, status_page_sql};

type PageQuery<R> = sqlx::query::QueryAs<'static, sqlx::Postgres, R, PgArguments>;

/// The query with the parameters both shapes share bound: `$1` to `$3`.
fn keyset<R>(
    sql: &'static str,
    workspace_id: WorkspaceId,
    after: Option<Uuid>,
    limit: u32,
) -> PageQuery<R>
where
    R: for<'r> sqlx::FromRow<'r, PgRow>,
{
    sqlx::query_as::<_, R>(sql)
        .bind(workspace_id.as_uuid())
        .bind(after)
        .bind(i64::from(limit))
}

async fn rows<R>(
    query: PageQuery<R>,
    pool: &PgPool,
    entity: &'static str,
) -> Result<Vec<R::Entity>, StoreError>
where
    R: IntoEntity + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    entities(query.fetch_all(pool).await.map_err(db(entity))?)
}

/// Runs a [`page_sql!`] query (after `after`, at most `limit` rows, checked by the
/// caller's `Page::validate`) and converts the rows; `entity` names the table in errors.
pub(crate) async fn fetch_page<R>(
    pool: &PgPool,
    sql: &'static str,
    workspace_id: WorkspaceId,
    after: Option<Uuid>,
    limit: u32,
    entity: &'static str,
) -> Result<Vec<R::Entity>, StoreError>
where
    R: IntoEntity + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    rows(keyset::<R>(sql, workspace_id, after, limit), pool, entity).await
}

/// As [`fetch_page`] for a [`status_page_sql!`] query, keeping only rows in `status`
/// when it is given.
pub(crate) async fn fetch_status_page<R>(
    pool: &PgPool,
    sql: &'static str,
    workspace_id: WorkspaceId,
    status: Option<&str>,
    after: Option<Uuid>,
    limit: u32,
    entity: &'static str,
) -> Result<Vec<R::Entity>, StoreError>
where
    R: IntoEntity + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    let query = keyset::<R>(sql, workspace_id, after, limit).bind(status.map(str::to_owned));
    rows(query, pool, entity).await
}
