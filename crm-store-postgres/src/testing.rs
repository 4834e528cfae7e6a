//! Test support: a fresh, migrated store in its own schema on a real PostgreSQL.
//!
//! **Not part of the stable API.** Used by this crate's tests and by the workspace's
//! benches. Every call creates a new schema `crm_test_<unix seconds>_<random>`; once per
//! process, the oldest schemas of that form older than an hour are dropped (best
//! effort, a bounded number, one statement each), so repeated runs do not pile up.
#![allow(clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crm_core::{Clock, StoreErrorKind, SystemClock};

use crate::{PostgresConfig, PostgresStore};

/// Where the tests look for a server unless `DATABASE_URL` is set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Connections per test store: the concurrency cases run 16+ tasks at once, and the
/// server's default `max_connections` is 100 with two test binaries running together.
pub const TEST_MAX_CONNECTIONS: u32 = 20;

static CLEANED: AtomicBool = AtomicBool::new(false);

/// At most this many stale schemas are dropped per test process: enough to keep up with
/// what a full run creates, few enough (about 30 ms each) not to hold up a test.
const STALE_SCHEMAS_PER_PROCESS: i64 = 150;

/// The `DROP` statements for the oldest `crm_test_*` schemas whose timestamp is more
/// than an hour old. Names are matched by the pattern and quoted with `%I` by the
/// server, so no SQL text is built in Rust. Each is run on its own: dropping many
/// schemas in one transaction holds a lock per object until it ends and exhausts the
/// server's lock table for every other session.
const STALE_SCHEMA_DROPS: &str = r"
    SELECT format('DROP SCHEMA IF EXISTS %I CASCADE', nspname) FROM pg_namespace
    WHERE nspname ~ '^crm_test_[0-9]{1,12}_[a-z0-9]+$'
      AND split_part(nspname, '_', 3)::bigint < extract(epoch FROM now()) - 3600
    ORDER BY nspname
    LIMIT $1";

/// Best effort: a failure here (another process dropping the same schema, say) must
/// not fail the test.
async fn drop_stale_schemas(pool: &sqlx::PgPool) {
    let Ok(drops) = sqlx::query_scalar::<_, String>(STALE_SCHEMA_DROPS)
        .bind(STALE_SCHEMAS_PER_PROCESS)
        .fetch_all(pool)
        .await
    else {
        return;
    };
    for statement in drops {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(pool)
            .await;
    }
}

/// The database URL the tests use: `DATABASE_URL`, or [`DEFAULT_DATABASE_URL`].
#[must_use]
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// A schema name no other call (in this or another process) uses.
#[must_use]
pub fn fresh_schema_name() -> String {
    let secs = SystemClock.now().timestamp();
    // The low bits of a v7 UUID are random.
    let random = uuid::Uuid::now_v7().simple().to_string();
    let tail = random.get(random.len().saturating_sub(10)..).unwrap_or("0");
    format!("crm_test_{secs}_{tail}")
}

/// A migrated store in a new schema, with a small pool.
///
/// # Panics
/// If no PostgreSQL is reachable (with instructions to start one or set
/// `DATABASE_URL`), or if connecting or migrating fails otherwise: tests never skip.
pub async fn fresh_store() -> PostgresStore {
    let url = database_url();
    let config = PostgresConfig::default()
        .with_schema(fresh_schema_name())
        .with_max_connections(TEST_MAX_CONNECTIONS)
        .with_acquire_timeout(Duration::from_secs(30))
        .with_idle_timeout(Some(Duration::from_secs(2)));
    let store = match PostgresStore::connect_and_migrate(&url, config).await {
        Ok(store) => store,
        Err(e) if e.kind() == StoreErrorKind::Unavailable => panic!(
            "the crm-store-postgres tests need a real PostgreSQL and none answered at \
             {target}: {e} ({source}). Start PostgreSQL on 127.0.0.1:5432 with a `postgres` \
             user allowed to connect without a password (trust auth), or set \
             DATABASE_URL=postgres://user@host:port/db to a server and database where that \
             user may create schemas.",
            target = redact(&url),
            source = std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
        Err(e) => panic!(
            "could not prepare a test store at {}: {e} ({})",
            redact(&url),
            std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_default()
        ),
    };
    if !CLEANED.swap(true, Ordering::SeqCst) {
        drop_stale_schemas(store.pool()).await;
    }
    store
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme_end + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_valid_and_distinct() {
        let a = fresh_schema_name();
        let b = fresh_schema_name();
        assert_ne!(a, b);
        assert!(crate::config::validate_schema_name(&a).is_ok(), "{a}");
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
