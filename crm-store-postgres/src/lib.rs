//! The CRM engine's [`Store`](crm_core::Store) on PostgreSQL, through sqlx.
//!
//! Every repository of `crm-core` is implemented with single SQL statements whose
//! preconditions sit in `WHERE ... RETURNING`: claims use `FOR UPDATE SKIP LOCKED`,
//! compare-and-set updates match the row's version, idempotent inserts use unique
//! indexes with `ON CONFLICT`, quotas and leases are conditional upserts. Several host
//! processes can therefore share one database.
//!
//! The few writes that span rows of several tables are one short transaction of such
//! statements: `advance_enrollment` opens with the compare-and-set on the enrollment
//! (a stale change rolls back before touching anything else), `decide_approval` writes
//! the message and then its item, `append_event_with_jobs` enqueues its jobs (one
//! `UNNEST` batch) only when the event is new. A message is always locked before its
//! approval item; `mark_outbox_sent` locks an in-flight message before its enrollment,
//! and `advance_enrollment`, which locks the enrollment first, only touches queued
//! messages, so the two never wait on each other in opposite orders.
//!
//! Optional filters are single static statements (`$n IS NULL OR column = $n`); every
//! pooled connection sets `plan_cache_mode = force_custom_plan` so PostgreSQL plans them
//! with the actual values and uses the matching index.
//!
//! The tables live in their own schema (`crm` unless [`PostgresConfig::with_schema`]
//! says otherwise), created on [`PostgresStore::connect`] if missing; every pooled
//! connection's `search_path` is that schema. The migrations are embedded
//! ([`MIGRATOR`]) and applied by [`PostgresStore::migrate`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use crm_core::DynStore;
//! use crm_store_postgres::{PostgresConfig, PostgresStore};
//!
//! # async fn run() -> Result<(), crm_core::StoreError> {
//! let store = PostgresStore::connect_and_migrate(
//!     "postgres://crm@db.internal:5432/app",
//!     PostgresConfig::default().with_schema("crm").with_max_connections(20),
//! )
//! .await?;
//! let store: Arc<DynStore> = Arc::new(store);
//! assert_eq!(store.backend_name(), "postgres");
//! # Ok(())
//! # }
//! ```
//!
//! Errors map onto [`StoreError`]: unique violations are
//! `Conflict`, foreign-key violations `InvalidReference`, serialization failures,
//! deadlocks, lost connections and pool timeouts `Unavailable` (retryable), anything
//! else `Backend` with the sqlx error as its source.

mod api_keys;
mod compliance;
mod config;
mod coordination;
mod crm;
mod emit;
mod enrichment;
mod error;
mod intake;
mod intake_batch;
mod intake_complete;
mod outbox;
mod page;
mod queue;
mod rows;
mod scoring;
mod sequences;
mod touches;
mod wake;
mod webhook;
mod workspace;
// Test support, behind the `testing` feature because it can drop schemas.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;

use std::fmt;

use crm_core::StoreError;
use crm_core::store::{NamedBackend, WakeSource, Wakeups};
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

pub use config::PostgresConfig;

use crate::error::{db, invalid, map_migrate};

/// The embedded migrations of this crate (`migrations/*.sql`). [`PostgresStore::migrate`]
/// applies them; a host that runs migrations itself can apply them with
/// `MIGRATOR.run(&pool)` on a pool whose `search_path` is the store's schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// The CRM store on PostgreSQL: every repository trait of `crm-core`, hence a
/// [`Store`](crm_core::Store).
///
/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    schema: String,
    /// Signalled by the `LISTEN` task (see `wake`), started by the first subscriber.
    wakeups: Wakeups,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`) with a
    /// pool configured by `config`, and creates the schema if it does not exist.
    ///
    /// Does not migrate; see [`migrate`](Self::migrate) and
    /// [`connect_and_migrate`](Self::connect_and_migrate).
    ///
    /// # Errors
    /// `Invalid` for a malformed URL or configuration (an invalid schema name, zero
    /// connections), `Unavailable` if the server cannot be reached.
    pub async fn connect(url: &str, config: PostgresConfig) -> Result<Self, StoreError> {
        config.validate()?;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid(
                "database_url",
                "must start with postgres:// or postgresql://",
            ));
        }
        let options = url
            .parse::<PgConnectOptions>()
            .map_err(|_| invalid("database_url", "is not a valid PostgreSQL connection URL"))?
            .options([
                ("search_path", config.schema()),
                // Optional filters are written `($n IS NULL OR col = $n)`; a custom plan
                // folds them into index conditions. Measured on 50k rows: a generic plan
                // of a filtered keyset page took 30 ms, the custom plan 0.15 ms.
                ("plan_cache_mode", "force_custom_plan"),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections())
            .min_connections(0)
            .acquire_timeout(config.acquire_timeout())
            .idle_timeout(config.idle_timeout())
            .connect_with(options)
            .await
            .map_err(db("schema"))?;
        let schema = config.schema().to_owned();
        let feed = wake::ListenerFeed::new(pool.clone(), schema.clone());
        let store = Self {
            pool,
            schema,
            wakeups: Wakeups::with_feed(std::sync::Arc::new(feed)),
        };
        store.create_schema().await?;
        Ok(store)
    }

    /// Applies the embedded migrations that are not applied yet. Safe to call on every
    /// start and from several processes at once (sqlx serializes them with an
    /// advisory lock); the bookkeeping table `_sqlx_migrations` lives in the store's
    /// schema.
    ///
    /// # Errors
    /// `Unavailable` if the server cannot be reached, `Backend` if a migration fails or
    /// the applied migrations differ from the embedded ones.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(map_migrate)
    }

    /// [`connect`](Self::connect), then [`migrate`](Self::migrate).
    ///
    /// # Errors
    /// As for those two.
    pub async fn connect_and_migrate(
        url: &str,
        config: PostgresConfig,
    ) -> Result<Self, StoreError> {
        let store = Self::connect(url, config).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// The connection pool, for host code that needs its own queries (its connections'
    /// `search_path` is the store's schema).
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema the tables live in.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.schema
    }

    async fn create_schema(&self) -> Result<(), StoreError> {
        // The one SQL text built at run time: the schema name was checked against
        // [a-z_][a-z0-9_]{0,62} by `PostgresConfig::validate`, and is quoted too.
        let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", self.schema);
        match sqlx::query(AssertSqlSafe(sql)).execute(&self.pool).await {
            Ok(_) => Ok(()),
            // Two processes creating the schema at once: one of them loses the race on
            // pg_namespace's unique index, and the schema exists either way.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => Ok(()),
            Err(e) => Err(db("schema")(e)),
        }
    }
}

impl fmt::Debug for PostgresStore {
    // Hand-written: the pool's connect options hold the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool.size())
            .field("idle_connections", &self.pool.num_idle())
            .field(
                "max_connections",
                &self.pool.options().get_max_connections(),
            )
            .finish_non_exhaustive()
    }
}

impl NamedBackend for PostgresStore {
    const NAME: &'static str = "postgres";
}

impl WakeSource for PostgresStore {
    /// Signals fed by `LISTEN` on the schema's channels (migration 0016): a write
    /// that leaves a job queued or a message pending notifies in its transaction. The
    /// listener task starts when the first loop subscribes (inside a Tokio runtime),
    /// holds one pooled connection, reconnects after losing it and then signals every
    /// topic.
    fn wakeups(&self) -> Wakeups {
        self.wakeups.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_configuration_is_invalid_before_connecting() {
        let err = PostgresStore::connect(
            "postgres://u@127.0.0.1:1/x",
            PostgresConfig::default().with_schema("Bad-Name"),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), crm_core::StoreErrorKind::Invalid);
        let err = PostgresStore::connect("mysql://nope", PostgresConfig::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crm_core::StoreErrorKind::Invalid);
        assert!(!err.to_string().contains("nope"));
    }
}
