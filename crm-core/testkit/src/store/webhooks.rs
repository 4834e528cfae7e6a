//! Conformance: inbound webhook deliveries (durable deduplication).

use chrono::Duration;
use crm_core::error::StoreErrorKind;
use crm_core::ids::WorkspaceId;
use crm_core::inbound::MAX_DELIVERY_ID_BYTES;
use crm_core::store::{DynStore, MAX_PROVIDER_NAME_BYTES};

use super::fixtures::{base, era, expect_err, ok, race, unique};

/// A delivery is recorded once: the first call answers `true`, every later one `false`;
/// the same id under another provider or in another workspace is another key; a
/// forgotten key records again; bad keys are `Invalid`.
pub async fn webhook_delivery_recorded_once_per_key(store: &DynStore) {
    let (ws, other_ws) = (WorkspaceId::new(), WorkspaceId::new());
    let id = unique("msg");
    let now = base();
    let record = |ws: WorkspaceId, provider: &'static str, id: String| async move {
        ok(
            store.record_webhook_delivery(ws, provider, &id, now).await,
            "record_webhook_delivery",
        )
    };
    assert!(record(ws, "resend", id.clone()).await, "the first delivery");
    assert!(
        !record(ws, "resend", id.clone()).await,
        "a retry of a recorded delivery is a duplicate"
    );
    assert!(
        record(ws, "twilio", id.clone()).await,
        "the same id from another provider is another delivery"
    );
    assert!(
        record(other_ws, "resend", id.clone()).await,
        "the same id in another workspace is another delivery"
    );

    assert!(
        ok(
            store.forget_webhook_delivery(ws, "resend", &id).await,
            "forget"
        ),
        "forgetting a recorded delivery removes it"
    );
    assert!(
        !ok(
            store.forget_webhook_delivery(ws, "resend", &id).await,
            "forget again"
        ),
        "forgetting an unknown delivery is not an error and removes nothing"
    );
    assert!(
        record(ws, "resend", id.clone()).await,
        "a forgotten delivery is handled again when the provider retries"
    );
    assert!(
        !record(other_ws, "resend", id.clone()).await,
        "forgetting in one workspace leaves the other's record"
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
                .record_webhook_delivery(ws, provider, delivery, now)
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
    let longest = "y".repeat(MAX_DELIVERY_ID_BYTES);
    assert!(
        record(ws, "resend", longest).await,
        "a delivery id of the maximum length is accepted"
    );
}

/// Concurrent deliveries of the same key (retries reaching several processes at once):
/// exactly one is first.
pub async fn webhook_delivery_concurrent_duplicates_have_one_winner(store: &DynStore) {
    let ws = WorkspaceId::new();
    for round in 0..3 {
        let id = unique(&format!("race-{round}"));
        let answers = race(16, |_| {
            let id = id.clone();
            async move {
                ok(
                    store
                        .record_webhook_delivery(ws, "resend", &id, base())
                        .await,
                    "record_webhook_delivery",
                )
            }
        })
        .await;
        let winners = answers.iter().filter(|first| **first).count();
        assert_eq!(
            winners, 1,
            "round {round}: exactly one of 16 concurrent deliveries is first"
        );
    }
}

/// The purge deletes deliveries received strictly before the cutoff, in every
/// workspace, and nothing newer; a purged key records again.
pub async fn webhook_delivery_purge_keeps_recent(store: &DynStore) {
    // A far-past era of its own: the purge spans every workspace.
    let t0 = era(1993);
    let (ws, other_ws) = (WorkspaceId::new(), WorkspaceId::new());
    let (old, cutoff_exact, recent) = (unique("old"), unique("edge"), unique("recent"));
    let record = |ws: WorkspaceId, id: String, at| async move {
        ok(
            store.record_webhook_delivery(ws, "resend", &id, at).await,
            "record_webhook_delivery",
        )
    };
    let cutoff = t0 + Duration::days(2);
    assert!(record(ws, old.clone(), t0).await);
    assert!(record(other_ws, old.clone(), t0 + Duration::hours(1)).await);
    assert!(record(ws, cutoff_exact.clone(), cutoff).await);
    assert!(record(ws, recent.clone(), cutoff + Duration::hours(1)).await);

    let purged = ok(store.purge_webhook_deliveries(cutoff).await, "purge");
    assert_eq!(
        purged, 2,
        "the two deliveries received before the cutoff, in both workspaces, are purged"
    );
    assert!(
        !record(ws, cutoff_exact, cutoff).await,
        "a delivery received exactly at the cutoff is kept"
    );
    assert!(
        !record(ws, recent, cutoff).await,
        "a delivery after the cutoff is kept"
    );
    assert!(
        record(ws, old.clone(), cutoff).await,
        "a purged delivery records again"
    );
    assert!(record(other_ws, old, cutoff).await);
    assert_eq!(
        ok(store.purge_webhook_deliveries(t0).await, "purge again"),
        0,
        "nothing is older than the first delivery"
    );
}
