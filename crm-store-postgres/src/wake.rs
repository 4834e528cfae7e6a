//! Wake-ups over `LISTEN/NOTIFY`.
//!
//! Migration 0016 adds statement-level triggers: a write that leaves a job `queued`
//! or an outbox message `pending` calls `pg_notify` in its own transaction, on the
//! channel `crm_wake_<md5(schema)>_jobs` or `..._outbox`, with the earliest due time
//! of those rows (Unix milliseconds) as payload. PostgreSQL delivers it at commit, so
//! a rolled-back write wakes nobody.
//!
//! One listener task per store (started when the first loop subscribes, on that
//! loop's Tokio runtime) holds one pooled connection that `LISTEN`s on both channels
//! and turns each notification into a signal of the store's
//! [`Wakeups`](crm_core::store::Wakeups): at once, and again when rows written for
//! later fall due (so a retry or a scheduled message starts on time without a poll). A lost connection is re-established with backoff,
//! and every (re)connect signals every topic, so work notified while the listener was
//! away is claimed at once; until then the loops' polls find it.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use crm_core::store::{WakeFeed, WakeTopic, WeakWakeups};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::task::JoinHandle;

/// The wait before reconnecting after the listener's connection failed, doubling up
/// to [`MAX_RECONNECT_DELAY`].
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(50);
/// The longest wait between reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// The notification channel of `topic` for the schema whose md5 digest is `digest`.
/// Must match migration 0016.
pub(crate) fn channel(digest: &str, topic: WakeTopic) -> String {
    format!("crm_wake_{digest}_{}", topic.as_str())
}

/// The notification channel of `topic` for `schema`, asking the database for the
/// digest (PostgreSQL's `md5`, exactly as the triggers compute it).
pub(crate) async fn channel_for(
    pool: &PgPool,
    schema: &str,
    topic: WakeTopic,
) -> Result<String, sqlx::Error> {
    let digest: String = sqlx::query_scalar("SELECT md5($1)")
        .bind(schema)
        .fetch_one(pool)
        .await?;
    Ok(channel(&digest, topic))
}

/// The feed of a [`PostgresStore`](crate::PostgresStore)'s wake-ups: its listener task.
#[derive(Debug)]
pub(crate) struct ListenerFeed {
    pool: PgPool,
    schema: String,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl ListenerFeed {
    pub(crate) fn new(pool: PgPool, schema: String) -> Self {
        Self {
            pool,
            schema,
            task: Mutex::new(None),
        }
    }
}

impl WakeFeed for ListenerFeed {
    fn ensure_running(&self, wakeups: WeakWakeups) {
        let mut task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        // Outside a runtime there is nothing to run the listener on: the loops poll,
        // and the next subscription inside a runtime starts it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (pool, schema) = (self.pool.clone(), self.schema.clone());
        *task = Some(runtime.spawn(listen(pool, schema, wakeups)));
    }
}

impl Drop for ListenerFeed {
    fn drop(&mut self) {
        let task = self
            .task
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(task) = task.take() {
            task.abort();
        }
    }
}

/// Connects a listener to both channels of `schema`.
async fn connect(pool: &PgPool, schema: &str) -> Result<PgListener, sqlx::Error> {
    let jobs = channel_for(pool, schema, WakeTopic::Jobs).await?;
    let outbox = channel_for(pool, schema, WakeTopic::Outbox).await?;
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([jobs.as_str(), outbox.as_str()])
        .await?;
    Ok(listener)
}

/// The listener loop: runs until the signals are dropped or the pool is closed.
async fn listen(pool: PgPool, schema: String, wakeups: WeakWakeups) {
    let mut delay = FIRST_RECONNECT_DELAY;
    loop {
        match connect(&pool, &schema).await {
            Ok(mut listener) => {
                delay = FIRST_RECONNECT_DELAY;
                // Anything notified before LISTEN took effect is visible now.
                let Some(live) = wakeups.upgrade() else {
                    return;
                };
                live.wake_all();
                drop(live);
                tracing::debug!("wake-up listener connected");
                loop {
                    match listener.try_recv().await {
                        Ok(Some(note)) => {
                            if !signal(&wakeups, note.channel(), note.payload()) {
                                return;
                            }
                        }
                        // The connection was lost and re-established (LISTEN again):
                        // whatever was notified in between was lost, so wake everyone.
                        Ok(None) => {
                            let Some(live) = wakeups.upgrade() else {
                                return;
                            };
                            live.wake_all();
                            tracing::info!("wake-up listener reconnected");
                        }
                        Err(sqlx::Error::PoolClosed) => return,
                        Err(e) => {
                            tracing::warn!(error = %e, "wake-up listener lost its connection");
                            break;
                        }
                    }
                }
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => tracing::warn!(error = %e, "wake-up listener cannot connect"),
        }
        if wakeups.upgrade().is_none() {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
}

/// Signals the topic of one notification, now and (through
/// [`Wakeups::wake_at`](crm_core::store::Wakeups::wake_at)) when its payload's due time
/// comes. Returns `false` when the signals are gone.
fn signal(wakeups: &WeakWakeups, channel: &str, payload: &str) -> bool {
    let topic = if channel.ends_with("_jobs") {
        WakeTopic::Jobs
    } else if channel.ends_with("_outbox") {
        WakeTopic::Outbox
    } else {
        return true;
    };
    let Some(live) = wakeups.upgrade() else {
        return false;
    };
    match payload
        .parse::<i64>()
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
    {
        Some(due) => live.wake_at(topic, due),
        None => live.wake(topic),
    }
    true
}
