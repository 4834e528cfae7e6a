//! Cases for processes whose clocks disagree: a named lease, a claimed outbox message
//! and a claimed job are never held by two processes at once while their clocks are
//! up to [`MAX_CLOCK_SKEW`] apart.
//!
//! Each case plays two processes on one store. Time is "real" seconds since the first
//! process took the lease; each process reads it through its own clock, one of them
//! [`MAX_CLOCK_SKEW`] ahead of the other. The holder believes it holds the lease until
//! its own clock reaches the lease's expiry, so the other process must be refused until
//! then, and must get it from then on.

use chrono::{DateTime, Duration, Utc};

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::WorkspaceId;
use crm_core::model::{JobStatus, OutboxStatus};
use crm_core::store::{Claim, MAX_CLOCK_SKEW, Reschedule, Scope};

use super::fixtures::{base, created, expect_err, new_job, new_message, ok, token, unique};

/// The lease length the cases take: one minute.
fn ttl() -> Duration {
    Duration::minutes(1)
}

/// Real seconds after the lease was taken at which the holder's own clock still says
/// it holds it: from the start to the last second before `ttl`, around the skew.
fn while_held() -> Vec<Duration> {
    let skew = MAX_CLOCK_SKEW.num_seconds();
    let last = ttl().num_seconds() - 1;
    [0, 1, skew - 1, skew, skew + 1, last]
        .into_iter()
        .map(Duration::seconds)
        .chain([ttl() - Duration::milliseconds(1)])
        .collect()
}

/// One process's clock: real time since the case started, plus its own offset.
#[derive(Debug, Clone, Copy)]
struct Clock {
    offset: Duration,
}

impl Clock {
    const ON_TIME: Self = Self {
        offset: Duration::zero(),
    };
    const AHEAD: Self = Self {
        offset: MAX_CLOCK_SKEW,
    };

    fn at(self, real: Duration) -> DateTime<Utc> {
        base() + self.offset + real
    }
}

/// A named lease held by one process is refused to a process whose clock runs up to
/// MAX_CLOCK_SKEW ahead (or behind) until it has run out by the holder's clock; a
/// clock that far ahead takes it over exactly then, with the token bumped.
pub async fn lease_is_exclusive_across_skewed_clocks(store: &DynStore) {
    for (holder_clock, other_clock, other_ahead) in [
        (Clock::ON_TIME, Clock::AHEAD, true),
        (Clock::AHEAD, Clock::ON_TIME, false),
    ] {
        let ws = WorkspaceId::new();
        let name = unique("runner");
        let held = ok(
            store
                .try_acquire_lease(ws, &name, "a", ttl(), holder_clock.at(Duration::zero()))
                .await,
            "try_acquire_lease",
        )
        .expect("a free lease is granted");
        for real in while_held() {
            let taken = ok(
                store
                    .try_acquire_lease(ws, &name, "b", ttl(), other_clock.at(real))
                    .await,
                "try_acquire_lease",
            );
            assert_eq!(
                taken,
                None,
                "{real} after the holder took it (its clock {}), a clock {} is refused",
                if other_ahead { "behind" } else { "ahead" },
                if other_ahead { "ahead" } else { "behind" },
            );
        }
        let renewed = ok(
            store
                .renew_lease(&held, ttl(), holder_clock.at(ttl() - Duration::seconds(1)))
                .await,
            "renew_lease",
        );
        assert_eq!(
            renewed.token, held.token,
            "the holder still holds it at the end of its lease by its own clock"
        );
        ok(store.release_lease(&renewed).await, "release_lease");
    }

    // Once the lease ran out by the holder's clock, a clock MAX_CLOCK_SKEW ahead reads
    // exactly `expires_at + MAX_CLOCK_SKEW` and takes it over.
    let ws = WorkspaceId::new();
    let name = unique("runner");
    let held = ok(
        store
            .try_acquire_lease(ws, &name, "a", ttl(), Clock::ON_TIME.at(Duration::zero()))
            .await,
        "try_acquire_lease",
    )
    .expect("a free lease is granted");
    let taken = ok(
        store
            .try_acquire_lease(ws, &name, "b", ttl(), Clock::AHEAD.at(ttl()))
            .await,
        "try_acquire_lease",
    )
    .expect("at expires_at + MAX_CLOCK_SKEW the lease is taken over");
    assert_eq!(
        (taken.holder.as_str(), taken.token),
        ("b", held.token + 1),
        "a takeover bumps the token"
    );
    expect_err(
        store
            .renew_lease(&held, ttl(), Clock::ON_TIME.at(ttl()))
            .await,
        Kind::LeaseLost,
        "renew_lease by the holder whose lease ran out",
    );
}

/// A message claimed by one process is neither reaped nor claimed by a process whose
/// clock runs MAX_CLOCK_SKEW ahead while the claimer's own clock says its lease lasts;
/// once it ran out, that process reaps and claims it and the first claim is fenced off.
pub async fn outbox_claim_is_exclusive_across_skewed_clocks(store: &DynStore) {
    let ws = WorkspaceId::new();
    let claim = |worker: &str, clock: Clock, real| {
        Claim::new(Scope::Workspace(ws), worker, clock.at(real), ttl(), 10)
    };
    let message = created(
        store
            .enqueue_outbox(&new_message(ws).with_not_before(base()))
            .await,
        "enqueue_outbox",
    );
    let first = ok(
        store
            .claim_outbox(&claim("a", Clock::ON_TIME, Duration::zero()))
            .await,
        "claim_outbox",
    );
    assert_eq!(first.len(), 1, "the due message is claimed");
    let held = first[0].clone();
    for real in while_held() {
        let now = Clock::AHEAD.at(real);
        assert_eq!(
            ok(
                store.reap_outbox_leases(Scope::Workspace(ws), now).await,
                "reap_outbox_leases"
            ),
            0,
            "{real} after the claim, a clock MAX_CLOCK_SKEW ahead reaps nothing"
        );
        let second = ok(
            store.claim_outbox(&claim("b", Clock::AHEAD, real)).await,
            "claim_outbox",
        );
        assert!(
            second.is_empty(),
            "{real} after the claim, a clock MAX_CLOCK_SKEW ahead claims nothing: {second:?}"
        );
    }
    assert_eq!(
        ok(store.get_outbox(ws, message.id).await, "get_outbox"),
        held,
        "the message is still the first claimer's, unchanged"
    );

    assert_eq!(
        ok(
            store
                .reap_outbox_leases(Scope::Workspace(ws), Clock::AHEAD.at(ttl()))
                .await,
            "reap_outbox_leases"
        ),
        1,
        "once the lease ran out by the claimer's clock it is reaped"
    );
    let again = ok(
        store.claim_outbox(&claim("b", Clock::AHEAD, ttl())).await,
        "claim_outbox",
    );
    assert_eq!(
        (again.len(), again.first().map(|m| token(m.lease.as_ref()))),
        (1, Some(token(held.lease.as_ref()) + 1)),
        "and claimed by the other process with the next token"
    );
    let reschedule = Reschedule {
        not_before: Clock::ON_TIME.at(ttl()),
        reason: None,
        count_attempt: true,
    };
    expect_err(
        store
            .reschedule_outbox(ws, message.id, token(held.lease.as_ref()), &reschedule)
            .await,
        Kind::LeaseLost,
        "the first claimer is fenced off",
    );
    assert_eq!(
        ok(store.get_outbox(ws, message.id).await, "get_outbox").status,
        OutboxStatus::InFlight,
        "the message stays with the second claimer"
    );
}

/// A job claimed by one process is neither reaped nor claimed by a process whose clock
/// runs MAX_CLOCK_SKEW ahead while the claimer's own clock says its lease lasts; once
/// it ran out, that process reaps and claims it and the first claim is fenced off.
pub async fn job_claim_is_exclusive_across_skewed_clocks(store: &DynStore) {
    let ws = WorkspaceId::new();
    let claim = |worker: &str, clock: Clock, real| {
        Claim::new(Scope::Workspace(ws), worker, clock.at(real), ttl(), 10)
    };
    let job = created(
        store
            .enqueue_job(&new_job(ws, "conformance.skew", 5).with_run_at(base()))
            .await,
        "enqueue_job",
    );
    let first = ok(
        store
            .claim_jobs(&claim("a", Clock::ON_TIME, Duration::zero()))
            .await,
        "claim_jobs",
    );
    assert_eq!(first.len(), 1, "the due job is claimed");
    let held = first[0].clone();
    for real in while_held() {
        let now = Clock::AHEAD.at(real);
        assert_eq!(
            ok(
                store.reap_expired_jobs(Scope::Workspace(ws), now).await,
                "reap_expired_jobs"
            ),
            0,
            "{real} after the claim, a clock MAX_CLOCK_SKEW ahead reaps nothing"
        );
        let second = ok(
            store.claim_jobs(&claim("b", Clock::AHEAD, real)).await,
            "claim_jobs",
        );
        assert!(
            second.is_empty(),
            "{real} after the claim, a clock MAX_CLOCK_SKEW ahead claims nothing: {second:?}"
        );
    }
    assert_eq!(
        ok(store.get_job(ws, job.id).await, "get_job"),
        held,
        "the job is still the first claimer's, unchanged"
    );

    assert_eq!(
        ok(
            store
                .reap_expired_jobs(Scope::Workspace(ws), Clock::AHEAD.at(ttl()))
                .await,
            "reap_expired_jobs"
        ),
        1,
        "once the lease ran out by the claimer's clock it is reaped"
    );
    let again = ok(
        store.claim_jobs(&claim("b", Clock::AHEAD, ttl())).await,
        "claim_jobs",
    );
    assert_eq!(
        (again.len(), again.first().map(|j| token(j.lease.as_ref()))),
        (1, Some(token(held.lease.as_ref()) + 1)),
        "and claimed by the other process with the next token"
    );
    expect_err(
        store
            .complete_job(
                ws,
                job.id,
                token(held.lease.as_ref()),
                Clock::ON_TIME.at(ttl()),
            )
            .await,
        Kind::LeaseLost,
        "the first claimer is fenced off",
    );
    assert_eq!(
        ok(store.get_job(ws, job.id).await, "get_job").status,
        JobStatus::Running,
        "the job stays with the second claimer"
    );
}
