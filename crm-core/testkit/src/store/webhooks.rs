//! Conformance: inbound webhook deliveries (claimed under a lease, then done).

use chrono::{DateTime, Duration, Utc};
use crm_core::error::StoreErrorKind;
use crm_core::ids::WorkspaceId;
use crm_core::inbound::MAX_DELIVERY_ID_BYTES;
use crm_core::store::{DeliveryClaim, DynStore, MAX_CLOCK_SKEW, MAX_PROVIDER_NAME_BYTES};

use super::fixtures::{base, era, expect_err, ok, race, unique};

/// The lease every case claims with.
const LEASE: Duration = Duration::seconds(60);

async fn claim(
    store: &DynStore,
    ws: WorkspaceId,
    provider: &str,
    id: &str,
    at: DateTime<Utc>,
) -> DeliveryClaim {
    ok(
        store
            .record_webhook_delivery(ws, provider, id, at, LEASE)
            .await,
        "record_webhook_delivery",
    )
}

async fn complete(store: &DynStore, ws: WorkspaceId, id: &str, at: DateTime<Utc>) -> bool {
    ok(
        store.complete_webhook_delivery(ws, "resend", id, at).await,
        "complete_webhook_delivery",
    )
}

/// A new delivery is claimed; a second arrival while the claim holds is in progress
/// (naming the lease's expiry), after completion it is done; the same id under another
/// provider or in another workspace is another key; a released claim is claimed again,
/// a done delivery cannot be released; bad keys and leases are `Invalid`.
pub async fn webhook_delivery_recorded_once_per_key(store: &DynStore) {
    let (ws, other_ws) = (WorkspaceId::new(), WorkspaceId::new());
    let id = unique("msg");
    let now = base();
    let held = DeliveryClaim::InProgress {
        lease_expires_at: now + LEASE,
    };
    assert_eq!(
        claim(store, ws, "resend", &id, now).await,
        DeliveryClaim::Claimed,
        "the first delivery"
    );
    assert_eq!(
        claim(store, ws, "resend", &id, now + Duration::seconds(1)).await,
        held,
        "a retry while the first is handled is in progress, not a duplicate"
    );
    assert_eq!(
        claim(store, ws, "twilio", &id, now).await,
        DeliveryClaim::Claimed,
        "the same id from another provider is another delivery"
    );
    assert_eq!(
        claim(store, other_ws, "resend", &id, now).await,
        DeliveryClaim::Claimed,
        "the same id in another workspace is another delivery"
    );

    let released = ok(
        store.forget_webhook_delivery(ws, "resend", &id).await,
        "forget",
    );
    assert!(released, "releasing a claim removes it");
    assert!(
        !ok(
            store.forget_webhook_delivery(ws, "resend", &id).await,
            "forget again"
        ),
        "releasing an unknown delivery is not an error and removes nothing"
    );
    assert_eq!(
        claim(store, ws, "resend", &id, now).await,
        DeliveryClaim::Claimed,
        "a released delivery is handled again when the provider retries"
    );
    assert_eq!(
        claim(store, other_ws, "resend", &id, now).await,
        held,
        "releasing in one workspace leaves the other's claim"
    );

    assert!(complete(store, ws, &id, now).await, "completing a claim");
    assert!(
        !complete(store, ws, &id, now).await,
        "completing twice changes nothing"
    );
    for later in [Duration::seconds(1), Duration::days(1)] {
        assert_eq!(
            claim(store, ws, "resend", &id, now + later).await,
            DeliveryClaim::Done,
            "a completed delivery is a duplicate, however late the retry"
        );
    }
    assert!(
        !ok(
            store.forget_webhook_delivery(ws, "resend", &id).await,
            "forget a done delivery"
        ),
        "a done delivery cannot be released"
    );
    assert_eq!(
        claim(store, ws, "resend", &id, now).await,
        DeliveryClaim::Done
    );
    let unclaimed = unique("unclaimed");
    assert!(
        complete(store, ws, &unclaimed, now).await,
        "completing an unrecorded delivery records it done"
    );
    assert_eq!(
        claim(store, ws, "resend", &unclaimed, now).await,
        DeliveryClaim::Done
    );

    let too_long = "x".repeat(MAX_DELIVERY_ID_BYTES + 1);
    let long_provider = "p".repeat(MAX_PROVIDER_NAME_BYTES + 1);
    for (provider, delivery, what) in [
        ("resend", "", "an empty delivery id"),
        ("", "msg-1", "an empty provider"),
        ("resend", too_long.as_str(), "an over-long delivery id"),
        (long_provider.as_str(), "msg-1", "an over-long provider"),
        ("resend", "msg\0one", "a delivery id holding U+0000"),
    ] {
        expect_err(
            store
                .record_webhook_delivery(ws, provider, delivery, now, LEASE)
                .await,
            StoreErrorKind::Invalid,
            what,
        );
        expect_err(
            store
                .complete_webhook_delivery(ws, provider, delivery, now)
                .await,
            StoreErrorKind::Invalid,
            what,
        );
        expect_err(
            store.forget_webhook_delivery(ws, provider, delivery).await,
            StoreErrorKind::Invalid,
            what,
        );
    }
    for (lease, at, what) in [
        (Duration::zero(), now, "a zero lease"),
        (Duration::seconds(-5), now, "a negative lease"),
        (
            LEASE,
            DateTime::<Utc>::MAX_UTC,
            "a lease past the last instant",
        ),
    ] {
        expect_err(
            store
                .record_webhook_delivery(ws, "resend", &unique("lease"), at, lease)
                .await,
            StoreErrorKind::Invalid,
            what,
        );
    }
    let longest = "y".repeat(MAX_DELIVERY_ID_BYTES);
    assert_eq!(
        claim(store, ws, "resend", &longest, now).await,
        DeliveryClaim::Claimed,
        "a delivery id of the maximum length is accepted"
    );
}

/// A claim whose handler died is taken over by the first arrival whose clock has
/// passed the lease's expiry plus [`MAX_CLOCK_SKEW`], not before; the takeover holds a
/// fresh lease; the dead handler completing late still leaves the delivery done.
pub async fn webhook_delivery_expired_claim_is_taken_over(store: &DynStore) {
    let ws = WorkspaceId::new();
    let id = unique("crashed");
    let t0 = base();
    let expiry = t0 + LEASE;
    assert_eq!(
        claim(store, ws, "resend", &id, t0).await,
        DeliveryClaim::Claimed
    );
    for at in [expiry, expiry + MAX_CLOCK_SKEW - Duration::milliseconds(1)] {
        assert_eq!(
            claim(store, ws, "resend", &id, at).await,
            DeliveryClaim::InProgress {
                lease_expires_at: expiry
            },
            "at {at}: the holder's clock may not have reached its expiry yet"
        );
    }
    let takeover = expiry + MAX_CLOCK_SKEW;
    assert_eq!(
        claim(store, ws, "resend", &id, takeover).await,
        DeliveryClaim::Claimed,
        "expired by every clock: the earlier handler is presumed dead"
    );
    assert_eq!(
        claim(store, ws, "resend", &id, takeover + Duration::seconds(1)).await,
        DeliveryClaim::InProgress {
            lease_expires_at: takeover + LEASE
        },
        "the takeover holds a fresh lease"
    );
    assert!(
        complete(store, ws, &id, takeover + Duration::seconds(2)).await,
        "the taker completes"
    );
    assert!(
        !complete(store, ws, &id, takeover + Duration::seconds(3)).await,
        "the presumed-dead handler completing late changes nothing"
    );
    assert_eq!(
        claim(store, ws, "resend", &id, takeover + Duration::hours(1)).await,
        DeliveryClaim::Done,
        "a done delivery is never taken over"
    );
}

/// Concurrent arrivals of the same key (retries reaching several processes at once):
/// of a new key exactly one claims it and the others find it in progress; of an expired
/// claim exactly one takes it over; of a completed key every one finds it done.
pub async fn webhook_delivery_concurrent_duplicates_have_one_winner(store: &DynStore) {
    let ws = WorkspaceId::new();
    let at = base();
    let later = at + LEASE + MAX_CLOCK_SKEW;
    for round in 0..3 {
        let id = unique(&format!("race-{round}"));
        let arrive = |at: DateTime<Utc>| {
            let id = id.clone();
            race(16, move |_| {
                let id = id.clone();
                async move { claim(store, ws, "resend", &id, at).await }
            })
        };
        let new = arrive(at).await;
        let claimed = new.iter().filter(|c| **c == DeliveryClaim::Claimed).count();
        let held = DeliveryClaim::InProgress {
            lease_expires_at: at + LEASE,
        };
        assert_eq!(
            claimed, 1,
            "round {round}: one of 16 concurrent arrivals claims: {new:?}"
        );
        assert_eq!(
            new.iter().filter(|c| **c == held).count(),
            15,
            "round {round}: the others find it in progress: {new:?}"
        );

        let expired = arrive(later).await;
        let taken = expired
            .iter()
            .filter(|c| **c == DeliveryClaim::Claimed)
            .count();
        assert_eq!(
            taken, 1,
            "round {round}: one of 16 concurrent arrivals takes the expired claim over: {expired:?}"
        );

        assert!(complete(store, ws, &id, later).await);
        let done = arrive(later + Duration::seconds(1)).await;
        assert!(
            done.iter().all(|c| *c == DeliveryClaim::Done),
            "round {round}: {done:?}"
        );
    }
}

/// The purge deletes deliveries last received strictly before the cutoff, done or in
/// progress, in every workspace, and nothing newer; a purged key is claimed again; a
/// takeover counts as a new arrival.
pub async fn webhook_delivery_purge_keeps_recent(store: &DynStore) {
    // A far-past era of its own: the purge spans every workspace.
    let t0 = era(1993);
    let (ws, other_ws) = (WorkspaceId::new(), WorkspaceId::new());
    let (old, cutoff_exact, recent, retaken) = (
        unique("old"),
        unique("edge"),
        unique("recent"),
        unique("retaken"),
    );
    let cutoff = t0 + Duration::days(2);
    let claimed = DeliveryClaim::Claimed;
    assert_eq!(claim(store, ws, "resend", &old, t0).await, claimed);
    assert!(
        complete(store, ws, &old, t0).await,
        "one old delivery is done"
    );
    assert_eq!(
        claim(store, other_ws, "resend", &old, t0 + Duration::hours(1)).await,
        claimed,
        "the other is left in progress"
    );
    assert_eq!(
        claim(store, ws, "resend", &cutoff_exact, cutoff).await,
        claimed
    );
    assert!(complete(store, ws, &cutoff_exact, cutoff).await);
    assert_eq!(
        claim(store, ws, "resend", &recent, cutoff + Duration::hours(1)).await,
        claimed
    );
    assert_eq!(claim(store, ws, "resend", &retaken, t0).await, claimed);
    assert_eq!(
        claim(store, ws, "resend", &retaken, cutoff).await,
        claimed,
        "taken over at the cutoff"
    );

    let purged = ok(store.purge_webhook_deliveries(cutoff).await, "purge");
    assert_eq!(
        purged, 2,
        "the two deliveries received before the cutoff, done or not, in both workspaces"
    );
    assert_eq!(
        claim(store, ws, "resend", &cutoff_exact, cutoff).await,
        DeliveryClaim::Done,
        "a delivery received exactly at the cutoff is kept"
    );
    assert!(
        matches!(
            claim(store, ws, "resend", &recent, cutoff).await,
            DeliveryClaim::InProgress { .. }
        ),
        "a delivery after the cutoff is kept"
    );
    assert!(
        matches!(
            claim(store, ws, "resend", &retaken, cutoff).await,
            DeliveryClaim::InProgress { .. }
        ),
        "a delivery taken over after the cutoff is kept"
    );
    assert_eq!(
        claim(store, ws, "resend", &old, cutoff).await,
        claimed,
        "a purged delivery is claimed again"
    );
    assert_eq!(
        claim(store, other_ws, "resend", &old, cutoff).await,
        claimed
    );
    assert_eq!(
        ok(store.purge_webhook_deliveries(t0).await, "purge again"),
        0,
        "nothing is older than the first delivery"
    );
}
