//! The one place where sqlx errors become [`StoreError`]s, and the shared answers to
//! "why did that conditional write change nothing?".

use std::fmt::Display;
use std::str::FromStr;

use crm_core::ids::WorkspaceId;
use crm_core::{BoxError, StoreError, ValidationError};
use sqlx::PgPool;
use uuid::Uuid;

/// The backend name used in errors.
pub(crate) const BACKEND: &str = "postgres";

/// A foreign key a statement may break: when PostgreSQL reports `constraint`, the
/// error names the referenced `entity` and the `id` the caller gave.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ref {
    constraint: &'static str,
    entity: &'static str,
    id: Option<Uuid>,
}

impl Ref {
    /// A reference checked by the foreign key `constraint`.
    pub(crate) fn new(constraint: &'static str, entity: &'static str, id: Option<Uuid>) -> Self {
        Self {
            constraint,
            entity,
            id,
        }
    }
}

/// Maps a sqlx error of a statement writing or reading `entity`.
///
/// - unique violation (23505) -> `Conflict`, naming the rule broken
/// - foreign-key violation (23503) -> `InvalidReference`, naming the entity from `refs`
/// - check violation (23514) and data exceptions (class 22: NUL bytes, out-of-range
///   numbers) -> `Invalid`
/// - serialization failure, deadlock, lock timeout, connection loss, server shutdown,
///   too many connections, pool timeout, I/O and TLS errors -> `Unavailable`
/// - anything else -> `Backend`, with the typed sqlx error as source.
pub(crate) fn map_sqlx(err: sqlx::Error, entity: &'static str, refs: &[Ref]) -> StoreError {
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let constraint = db.constraint().map(str::to_owned);
            match code.as_str() {
                "23505" => StoreError::conflict(entity, unique_detail(constraint.as_deref())),
                "23503" => {
                    let hit = refs
                        .iter()
                        .find(|r| constraint.as_deref() == Some(r.constraint));
                    match hit {
                        Some(r) => StoreError::InvalidReference {
                            entity: r.entity,
                            id: r.id.map(|id| id.to_string()).unwrap_or_default(),
                        },
                        None => StoreError::InvalidReference {
                            entity: "row",
                            id: constraint.unwrap_or_default(),
                        },
                    }
                }
                "23514" => StoreError::Invalid(ValidationError::new(
                    entity,
                    format!(
                        "breaks the rule {}",
                        constraint.as_deref().unwrap_or("of a check constraint")
                    ),
                )),
                c if c.starts_with("22") => {
                    StoreError::Invalid(ValidationError::new(entity, db.message().to_owned()))
                }
                c if is_transient_sqlstate(c) => StoreError::Unavailable {
                    backend: BACKEND,
                    source: Box::new(sqlx::Error::Database(db)),
                },
                _ => backend(sqlx::Error::Database(db)),
            }
        }
        e @ (sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed) => StoreError::Unavailable {
            backend: BACKEND,
            source: Box::new(e),
        },
        other => backend(other),
    }
}

/// Maps a failed migration: a database error as [`map_sqlx`] does (a lost connection
/// stays retryable), anything else (a changed or missing migration) as `Backend`.
pub(crate) fn map_migrate(err: sqlx::migrate::MigrateError) -> StoreError {
    match err {
        sqlx::migrate::MigrateError::Execute(inner) => map_sqlx(inner, "migration", &[]),
        other => backend(other),
    }
}

/// Shorthand for [`map_sqlx`] without foreign keys, for `map_err`.
pub(crate) fn db(entity: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| map_sqlx(e, entity, &[])
}

/// Shorthand for [`map_sqlx`] with foreign keys, for `map_err`.
pub(crate) fn db_refs(entity: &'static str, refs: &[Ref]) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| map_sqlx(e, entity, refs)
}

/// SQLSTATEs after which the same call may succeed later.
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || matches!(
            code,
            "40001" // serialization_failure
                | "40P01" // deadlock_detected
                | "55P03" // lock_not_available
                | "53300" // too_many_connections
                | "57P01" // admin_shutdown
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now
        )
}

/// Says which uniqueness rule a constraint stands for.
fn unique_detail(constraint: Option<&str>) -> String {
    let known = match constraint {
        Some("contacts_email_key") => "email already used by another contact of the workspace",
        Some("accounts_domain_key") => "domain already used by another account of the workspace",
        Some("enrollments_running_key") => {
            "the contact already has a running enrollment in this sequence"
        }
        Some("intake_records_fingerprint_key") => {
            "another pending or processed row has this fingerprint"
        }
        Some("api_keys_prefix") => "prefix is already used",
        Some("anomalies_open_key") => "an open anomaly with this dedup key exists",
        Some("approval_items_outbox_key") => "the outbox message already has an approval item",
        Some("suppressions_address_key") => "the address is already suppressed on this channel",
        Some(
            "outbox_messages_idempotency_key" | "jobs_idempotency_key" | "events_idempotency_key",
        ) => "idempotency key already used",
        Some(c) if c.ends_with("_pkey") => "id already used",
        Some(c) => return format!("unique constraint {c} violated"),
        None => "unique constraint violated",
    };
    known.to_owned()
}

/// A `Backend` error with `source`.
pub(crate) fn backend(source: impl Into<BoxError>) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        source: source.into(),
    }
}

/// A stored value that does not decode: a `Backend` error naming the column.
pub(crate) fn corrupt(column: &'static str, reason: impl Display) -> StoreError {
    backend(ValidationError::new(
        column,
        format!("stored value does not decode: {reason}"),
    ))
}

/// Parses a text column holding an enum's `as_str` name; unknown text is `Backend`.
pub(crate) fn parse_text<T>(text: &str) -> Result<T, StoreError>
where
    T: FromStr<Err = ValidationError>,
{
    text.parse::<T>().map_err(backend)
}

/// An `Invalid` error.
pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Invalid(ValidationError::new(field, reason.into()))
}

/// The stored version of a row, read with `sql` (`SELECT version FROM t WHERE
/// workspace_id = $1 AND id = $2`), or `None` if the workspace has no such row.
pub(crate) async fn current_version(
    pool: &PgPool,
    sql: &'static str,
    entity: &'static str,
    workspace_id: WorkspaceId,
    id: Uuid,
) -> Result<Option<i64>, StoreError> {
    sqlx::query_scalar::<_, i64>(sql)
        .bind(workspace_id.as_uuid())
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(db(entity))
}

/// Why a compare-and-set changed nothing, given the version stored now: `NotFound` if
/// there is no row, else `VersionConflict`.
pub(crate) fn cas_error(
    entity: &'static str,
    id: Uuid,
    expected: i64,
    current: Option<i64>,
) -> StoreError {
    match current {
        None => StoreError::not_found(entity, id),
        Some(actual) => StoreError::VersionConflict {
            entity,
            id: id.to_string(),
            expected,
            actual,
        },
    }
}

/// Resolves a compare-and-set (`UPDATE ... WHERE version = $expected`) that changed no
/// row: reads the stored version with `version_sql` and answers `NotFound` or
/// `VersionConflict`.
pub(crate) async fn cas_miss(
    pool: &PgPool,
    version_sql: &'static str,
    entity: &'static str,
    workspace_id: WorkspaceId,
    id: Uuid,
    expected: i64,
) -> StoreError {
    match current_version(pool, version_sql, entity, workspace_id, id).await {
        Ok(current) => cas_error(entity, id, expected, current),
        Err(e) => e,
    }
}

/// Resolves a lease-checked write that changed no row: `NotFound` if the workspace has
/// no such row (read with `version_sql`), else `LeaseLost`.
pub(crate) async fn lease_miss(
    pool: &PgPool,
    version_sql: &'static str,
    entity: &'static str,
    workspace_id: WorkspaceId,
    id: Uuid,
) -> StoreError {
    match current_version(pool, version_sql, entity, workspace_id, id).await {
        Ok(None) => StoreError::not_found(entity, id),
        Ok(Some(_)) => StoreError::lease_lost(entity, id),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_core::StoreErrorKind;

    #[test]
    fn pool_timeouts_and_io_errors_are_retryable() {
        let e = map_sqlx(sqlx::Error::PoolTimedOut, "contact", &[]);
        assert_eq!(e.kind(), StoreErrorKind::Unavailable);
        assert!(e.is_retryable());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(map_sqlx(sqlx::Error::Io(io), "contact", &[]).is_retryable());
    }

    #[test]
    fn other_errors_keep_their_typed_source() {
        let e = map_sqlx(sqlx::Error::RowNotFound, "contact", &[]);
        assert_eq!(e.kind(), StoreErrorKind::Backend);
        let source = std::error::Error::source(&e).expect("source");
        assert!(source.downcast_ref::<sqlx::Error>().is_some());
    }

    #[test]
    fn transient_states() {
        for code in ["40001", "40P01", "08006", "57P01", "53300"] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        assert!(!is_transient_sqlstate("42P01"));
    }
}
