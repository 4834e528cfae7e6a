//! The order in which [`list_events`](crm_core::store::EventStore::list_events) hands
//! out the event log, without a lock shared by appenders.
//!
//! # Design
//! An event's position is drawn from the `events.position` identity sequence while
//! its row is inserted, so positions increase within one append and from one append
//! to any that begins after it returned. Appends take no lock of their own: two
//! transactions appending at once never wait on each other (unless they append the
//! same idempotency key), so they may draw positions in one order and commit in the
//! other, or roll back.
//!
//! A reader paging with a cursor (the position of the last event it was given) must
//! then never be given a position while a lower one may still commit. So the listing
//! stops at a *settled* position: one that every transaction that drew a position at
//! or below it has ended. The reader finds it without any help from the writers:
//!
//! 1. It reads the sequence's last drawn value `S`, then the transactions that hold
//!    a write lock on the `events` table (`pg_locks`), in that order, in one
//!    statement. Every insert takes `ROW EXCLUSIVE` on the table before it draws a
//!    position and keeps it until its transaction ends, so a transaction that drew a
//!    position at or below `S` and has not ended is in that list.
//! 2. It waits for exactly those transactions to end (commit or roll back), polling,
//!    up to [`PATIENCE`]. Transactions that start later draw above `S` and are not
//!    waited for; transactions of other schemas and databases never are: the lock is
//!    on this schema's table.
//! 3. It reads the events in `(cursor, S]` with a new snapshot, taken after they
//!    ended, so it sees every committed one; a rolled-back one never appears.
//!
//! `S` is then settled for good, and a later listing only ever adds events above it.
//! The store remembers the highest settled position: when a transaction of this
//! schema stays open past [`PATIENCE`], the listing stops at that remembered position
//! instead (a short or empty page; the events come with a later call).
//!
//! The order is the position order; it agrees with the commit order for appends that
//! do not overlap in time. The router does not use it: it lists unrouted events
//! without a cursor and marks them routed, which is at-least-once on its own.
//!
//! On a database sharded by workspace the check runs where the events table lives,
//! with no lock or counter shared by appenders: nothing here serializes writers.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crm_core::StoreError;
use sqlx::PgPool;

use crate::error::db;

/// How long a listing waits for the appends in flight below its horizon to end
/// before it falls back to the last settled position. The store's own write
/// transactions last milliseconds; one open longer is a host's, or stuck.
pub(super) const PATIENCE: Duration = Duration::from_secs(2);

/// The first pause between two looks at the appends in flight; doubled up to
/// [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(1);
const MAX_POLL: Duration = Duration::from_millis(25);

/// The last drawn position (0 before the first) and the other transactions that may
/// still commit an event at or below it. The sequence is read first (a materialized
/// CTE), the locks after (a subquery of its row), so a transaction that drew at or
/// below it is listed. Modes from `ROW EXCLUSIVE` up are those of writers; readers
/// hold `ACCESS SHARE`.
const HORIZON: &str = "
    WITH drawn AS MATERIALIZED (
        SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS position
        FROM events_position_seq
    )
    SELECT d.position, ARRAY(
        SELECT DISTINCT l.virtualtransaction FROM pg_locks l
        WHERE l.locktype = 'relation' AND l.relation = 'events'::regclass
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.granted AND l.pid <> pg_backend_pid() AND d.position IS NOT NULL
          AND l.mode IN ('RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareLock',
                         'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
    ) AS writers
    FROM drawn d";

/// Which of the transactions `$1` still hold their lock on the table.
const STILL_WRITING: &str = "
    SELECT ARRAY(
        SELECT DISTINCT l.virtualtransaction FROM pg_locks l
        WHERE l.locktype = 'relation' AND l.relation = 'events'::regclass
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.granted AND l.virtualtransaction = ANY($1))";

/// The highest position known to be settled, shared by the clones of a store.
#[derive(Debug, Default)]
pub(crate) struct Settled(AtomicI64);

impl Settled {
    fn raise(&self, position: i64) -> i64 {
        self.0.fetch_max(position, Ordering::AcqRel).max(position)
    }

    fn get(&self) -> i64 {
        self.0.load(Ordering::Acquire)
    }
}

/// A settled position (see the module docs): every event at or below it that will
/// ever be listed is committed now. Waits up to [`PATIENCE`] for appends in flight,
/// then answers the last position known settled.
pub(super) async fn settled_position(pool: &PgPool, known: &Settled) -> Result<i64, StoreError> {
    let (drawn, mut writers): (i64, Vec<String>) = sqlx::query_as(HORIZON)
        .fetch_one(pool)
        .await
        .map_err(db("event"))?;
    if drawn <= known.get() {
        return Ok(known.get());
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut pause = FIRST_POLL;
    while !writers.is_empty() {
        if tokio::time::Instant::now() + pause > deadline {
            return Ok(known.get());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_POLL);
        writers = sqlx::query_scalar(STILL_WRITING)
            .bind(&writers)
            .fetch_one(pool)
            .await
            .map_err(db("event"))?;
    }
    Ok(known.raise(drawn))
}
