//! Wake-ups ([`WakeSource`](crm_core::store::WakeSource)): the writes that make work
//! claimable signal their topic, other writes do not, and work written for later
//! signals again when it falls due.

use std::time::Duration;

use serde_json::json;

use super::fixtures::{awaiting_message, base, claim_at, created, message_due, ok};
use crm_core::DynStore;
use crm_core::clock::{Clock, SystemClock};
use crm_core::ids::WorkspaceId;
use crm_core::model::Job;
use crm_core::store::{WakeSubscription, WakeTopic, Woke};

/// How long a signal may take to arrive (a database round trip on a loaded machine).
const ARRIVES: Duration = Duration::from_secs(5);
/// How long to watch for a signal that must not come.
const QUIET: Duration = Duration::from_millis(300);

/// Waits until the subscription stays quiet for [`QUIET`]: a backend may signal
/// every topic once when its listener connects.
async fn settle(sub: &mut WakeSubscription) {
    for _ in 0..20 {
        if sub.wait(QUIET).await == Woke::TimedOut {
            return;
        }
    }
    panic!("the subscription never went quiet");
}

/// Enqueuing a job signals `Jobs`, a pending message `Outbox`; a message awaiting
/// approval and a claim signal nothing; a job retried for later signals at once and
/// again when it falls due.
pub async fn wake_signals_claimable_work_only(store: &DynStore) {
    let ws = WorkspaceId::new();
    let wakeups = store.wakeups();
    assert!(wakeups.is_live(), "a store that wakes its loops");
    let mut jobs = wakeups.subscribe(WakeTopic::Jobs);
    let mut outbox = wakeups.subscribe(WakeTopic::Outbox);
    settle(&mut jobs).await;
    settle(&mut outbox).await;

    let job = Job::new(ws, "wake.case", json!({}), base()).expect("valid job");
    created(store.enqueue_job(&job).await, "enqueue_job");
    assert_eq!(
        jobs.wait(ARRIVES).await,
        Woke::Signalled,
        "enqueue_job wakes"
    );
    message_due(store, ws, base()).await;
    assert_eq!(
        outbox.wait(ARRIVES).await,
        Woke::Signalled,
        "enqueue_outbox wakes"
    );
    assert_eq!(jobs.wait(QUIET).await, Woke::TimedOut, "topics are apart");

    awaiting_message(store, ws).await;
    assert_eq!(
        outbox.wait(QUIET).await,
        Woke::TimedOut,
        "a message awaiting approval is not claimable"
    );
    let claimed = ok(
        store
            .claim_jobs(&claim_at(ws, "w", base() + chrono::Duration::seconds(1)))
            .await,
        "claim_jobs",
    );
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        jobs.wait(QUIET).await,
        Woke::TimedOut,
        "a claim wakes nobody"
    );

    let token = claimed[0].lease.as_ref().expect("leased").token;
    let later = SystemClock.now() + chrono::Duration::milliseconds(600);
    ok(
        store
            .retry_job(ws, job.id, token, later, "try again later")
            .await,
        "retry_job",
    );
    assert_eq!(
        jobs.wait(ARRIVES).await,
        Woke::Signalled,
        "a retry wakes now"
    );
    assert_eq!(
        jobs.wait(ARRIVES).await,
        Woke::Signalled,
        "and again when the retry falls due"
    );
    assert!(
        SystemClock.now() >= later,
        "not before it is due: {} < {later}",
        SystemClock.now()
    );
}
