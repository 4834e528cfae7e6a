//! The order in which readers page through the event log ([`EventStore::list_events`]),
//! kept without any lock on the appends.
//!
//! # Order
//! Appends take no lock, so two concurrent transactions draw positions (from the
//! identity sequence) in one order and may commit in the other. Each row records its
//! writing top-level transaction, `tx_id` (migration 0014; 0 for the rows written
//! before it), and the log is read in **(`tx_id`, position)** order: positions
//! within one transaction, and transaction ids between transactions. That is the
//! position order for appends that do not overlap in time (one committed before the
//! other began), and for every event of one transaction.
//!
//! # Horizon
//! A listing only returns events whose transaction is older than the oldest
//! transaction still running in its snapshot (`pg_snapshot_xmin(pg_current_snapshot())`).
//! Every transaction below that horizon has ended, so what is listed is final; a
//! transaction that commits later has an id at or above the horizon, so its events
//! sort after everything listed so far. Hence the guarantee a paging reader needs: a
//! reader that has been given event E never later finds a new event that sorts before
//! E, and a reader that pages with the position of the last event it received sees
//! every event exactly once.
//!
//! The price is latency: a committed event is held back while a transaction that took
//! its id earlier (anywhere on the server: the horizon is server-wide) is still
//! running. When a listing comes back short and events are held back, it waits up to
//! [`HOLD_BACK_WAIT`] for the transactions before them to end, then lists again, so a
//! caller that appended and then lists sees its events unless a writing transaction
//! older than its append stays open longer than that.
//!
//! # Cursor
//! `after_position` names an event: the listing resumes after that event's
//! (`tx_id`, position). A position that names no event (0, say) resumes at
//! (0, position): after the older rows up to it, and before every event appended since
//! migration 0014. A reader that resumes from a position it was given never skips an
//! event; one that makes a position up may be given events again.
//!
//! [`EventStore::list_events`]: crm_core::store::EventStore::list_events

use std::time::Duration;

use crm_core::StoreError;
use crm_core::model::Event;
use crm_core::store::Scope;
use sqlx::PgPool;

use super::{EVENT, event_columns};
use crate::error::db;
use crate::rows::{EventRow, entities};

/// How long a short listing waits for the transactions that hold events back.
pub(crate) const HOLD_BACK_WAIT: Duration = Duration::from_secs(2);

/// The first and the longest pause between two looks at the horizon.
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const LONGEST_PAUSE: Duration = Duration::from_millis(50);

/// The events of scope `$2` (a workspace, or `NULL` with the first condition) after
/// the cursor `$1` in log order, below the horizon, at most `$3`: through
/// `events_log_order_idx` or `events_workspace_log_order_idx`.
macro_rules! list_sql {
    ($scope:literal) => {
        concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE ",
            $scope,
            " AND (tx_id, position) > (
                  coalesce((SELECT c.tx_id FROM events c WHERE c.position = $1), '0'), $1)
              AND tx_id < (SELECT pg_snapshot_xmin(pg_current_snapshot()))
              ORDER BY tx_id, position LIMIT $3"
        )
    };
}
pub(crate) const LIST_ALL: &str = list_sql!("$2::uuid IS NULL");
pub(crate) const LIST_WORKSPACE: &str = list_sql!("workspace_id = $2");

/// The newest transaction (as text) of the committed events after the cursor that the
/// horizon holds back, or `NULL` when none is.
macro_rules! held_back_sql {
    ($scope:literal) => {
        concat!(
            "SELECT max(tx_id)::text FROM events WHERE ",
            $scope,
            " AND (tx_id, position) > (
                  coalesce((SELECT c.tx_id FROM events c WHERE c.position = $1), '0'), $1)
              AND tx_id >= (SELECT pg_snapshot_xmin(pg_current_snapshot()))"
        )
    };
}
const HELD_BACK_ALL: &str = held_back_sql!("$2::uuid IS NULL");
const HELD_BACK_WORKSPACE: &str = held_back_sql!("workspace_id = $2");

/// Whether the horizon has passed transaction `$1`; if not, sleeps `$2` seconds on
/// the server before answering, so the next look takes a fresh snapshot.
const HORIZON_PASSED: &str = "
    SELECT CASE WHEN (SELECT pg_snapshot_xmin(pg_current_snapshot())) > $1::xid8 THEN true
                ELSE (SELECT false FROM pg_sleep($2)) END";

/// `list_events`: a page in log order (see the module docs), `limit` already checked.
pub(crate) async fn list(
    pool: &PgPool,
    scope: Scope,
    after_position: i64,
    limit: u32,
) -> Result<Vec<Event>, StoreError> {
    let page = fetch(pool, scope, after_position, limit).await?;
    if u32::try_from(page.len()).unwrap_or(u32::MAX) >= limit {
        return entities(page);
    }
    let held_sql = match scope {
        Scope::All => HELD_BACK_ALL,
        Scope::Workspace(_) => HELD_BACK_WORKSPACE,
    };
    let newest_held: Option<String> = sqlx::query_scalar(held_sql)
        .bind(after_position)
        .bind(scope.workspace().map(|ws| ws.as_uuid()))
        .fetch_one(pool)
        .await
        .map_err(db(EVENT))?;
    let Some(newest_held) = newest_held else {
        return entities(page);
    };
    wait_for_horizon(pool, &newest_held).await?;
    entities(fetch(pool, scope, after_position, limit).await?)
}

/// One listing statement.
async fn fetch(
    pool: &PgPool,
    scope: Scope,
    after_position: i64,
    limit: u32,
) -> Result<Vec<EventRow>, StoreError> {
    let sql = match scope {
        Scope::All => LIST_ALL,
        Scope::Workspace(_) => LIST_WORKSPACE,
    };
    sqlx::query_as::<_, EventRow>(sql)
        .bind(after_position)
        .bind(scope.workspace().map(|ws| ws.as_uuid()))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(db(EVENT))
}

/// Waits until the horizon passes transaction `tx_id`, or [`HOLD_BACK_WAIT`] has gone
/// by, whichever comes first; pauses double from [`FIRST_PAUSE`].
async fn wait_for_horizon(pool: &PgPool, tx_id: &str) -> Result<(), StoreError> {
    let mut waited = Duration::ZERO;
    let mut pause = FIRST_PAUSE;
    while waited < HOLD_BACK_WAIT {
        let passed: bool = sqlx::query_scalar(HORIZON_PASSED)
            .bind(tx_id)
            .bind(pause.as_secs_f64())
            .fetch_one(pool)
            .await
            .map_err(db(EVENT))?;
        if passed {
            break;
        }
        waited += pause;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
    Ok(())
}
