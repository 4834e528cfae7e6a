//! Cases for [`QuotaStore`], [`LeaseStore`] and [`AnomalyStore`].

use chrono::{Duration, NaiveDate};

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{AnomalyId, UserId, WorkspaceId};
use crm_core::model::{Anomaly, AnomalyStatus};
use crm_core::store::{MAX_CLOCK_SKEW, Page, QuotaDecision, QuotaKey};

use super::fixtures::{
    assert_pagination, at, base, created, existing, expect_err, new_anomaly, ok, unique,
};

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, d).expect("valid day")
}

/// try_consume_quota grants while the total stays at or under cap and consumes nothing
/// when it would pass; quota_usage reports the total; amount 0 is Invalid.
pub async fn quota_consume_until_exhausted(store: &DynStore) {
    let ws = WorkspaceId::new();
    let key = QuotaKey::new("send:email", day(5));
    let consume = |amount| store.try_consume_quota(ws, &key, 3, amount);
    assert_eq!(
        ok(store.quota_usage(ws, &key).await, "quota_usage"),
        0,
        "an unused key has used 0"
    );
    assert_eq!(
        ok(consume(2).await, "consume"),
        QuotaDecision::Granted {
            used: 2,
            remaining: 1
        },
        "2 of 3 granted"
    );
    assert_eq!(
        ok(consume(2).await, "consume"),
        QuotaDecision::Exhausted { used: 2, cap: 3 },
        "2 more would pass 3"
    );
    assert_eq!(
        ok(store.quota_usage(ws, &key).await, "quota_usage"),
        2,
        "an exhausted call consumes nothing"
    );
    assert_eq!(
        ok(consume(1).await, "consume"),
        QuotaDecision::Granted {
            used: 3,
            remaining: 0
        },
        "up to the cap"
    );
    assert_eq!(
        ok(consume(1).await, "consume"),
        QuotaDecision::Exhausted { used: 3, cap: 3 },
        "the cap is reached"
    );
    assert_eq!(
        ok(store.quota_usage(ws, &key).await, "quota_usage"),
        3,
        "usage never passes the cap"
    );
    expect_err(
        consume(0).await,
        Kind::Invalid,
        "try_consume_quota with amount 0",
    );
    let big = QuotaKey::new("send:sms", day(5));
    assert_eq!(
        ok(store.try_consume_quota(ws, &big, 5, 6).await, "consume"),
        QuotaDecision::Exhausted { used: 0, cap: 5 },
        "an amount above the cap is never granted"
    );
}

/// Quota counters are independent per workspace, counter and period.
pub async fn quota_keys_are_independent(store: &DynStore) {
    let ws = WorkspaceId::new();
    let key = QuotaKey::new(unique("send"), day(5));
    ok(store.try_consume_quota(ws, &key, 10, 7).await, "consume");
    let neighbours = [
        (WorkspaceId::new(), key.clone(), "another workspace"),
        (ws, QuotaKey::new(unique("send"), day(5)), "another counter"),
        (
            ws,
            QuotaKey::new(key.counter.clone(), day(6)),
            "another period",
        ),
    ];
    for (workspace, other_key, what) in &neighbours {
        assert_eq!(
            ok(store.quota_usage(*workspace, other_key).await, "usage"),
            0,
            "{what} starts at 0"
        );
        assert_eq!(
            ok(
                store.try_consume_quota(*workspace, other_key, 10, 10).await,
                "consume"
            ),
            QuotaDecision::Granted {
                used: 10,
                remaining: 0
            },
            "{what} has its own cap"
        );
    }
    assert_eq!(
        ok(store.quota_usage(ws, &key).await, "usage"),
        7,
        "neighbours never change a counter"
    );
}

/// A lease is refused to others while unexpired and for MAX_CLOCK_SKEW after, taken
/// over at expiry + MAX_CLOCK_SKEW with token + 1; the old grant can neither renew nor
/// release it.
pub async fn lease_acquire_refuse_and_take_over(store: &DynStore) {
    let ws = WorkspaceId::new();
    let name = unique("runner");
    let minute = Duration::minutes(1);
    let acquire =
        |holder: &'static str, ttl, now| store.try_acquire_lease(ws, &name, holder, ttl, now);
    let first = ok(acquire("a", minute, base()).await, "try_acquire_lease")
        .expect("a free lease is granted");
    assert_eq!(
        (
            first.workspace_id,
            first.name.as_str(),
            first.holder.as_str(),
            first.expires_at
        ),
        (ws, name.as_str(), "a", base() + minute),
        "the grant names workspace, lease, holder and now + ttl"
    );
    let refused = ok(
        acquire("b", minute, at(0) + Duration::seconds(30)).await,
        "try_acquire_lease",
    );
    assert_eq!(
        refused, None,
        "another holder is refused while the lease is unexpired"
    );
    let within_skew = ok(
        acquire(
            "b",
            minute,
            at(1) + MAX_CLOCK_SKEW - Duration::microseconds(1),
        )
        .await,
        "try_acquire_lease",
    );
    assert_eq!(
        within_skew, None,
        "another holder is refused until MAX_CLOCK_SKEW after the expiry"
    );
    let second = ok(
        acquire("b", minute, at(1) + MAX_CLOCK_SKEW).await,
        "try_acquire_lease",
    )
    .expect("expired at now - MAX_CLOCK_SKEW: taken over");
    assert_eq!(
        (second.holder.as_str(), second.token),
        ("b", first.token + 1),
        "a takeover bumps the token"
    );
    expect_err(
        store.renew_lease(&first, minute, at(1)).await,
        Kind::LeaseLost,
        "renew_lease by the old holder",
    );
    assert!(
        !ok(store.release_lease(&first).await, "release_lease"),
        "the old holder's release is false"
    );
    let still = ok(
        acquire("c", minute, at(1) + Duration::seconds(1)).await,
        "try_acquire_lease",
    );
    assert_eq!(still, None, "the old holder's release changed nothing");

    let renewed = ok(
        store
            .renew_lease(&second, Duration::minutes(5), at(2))
            .await,
        "renew_lease",
    );
    assert_eq!(
        (renewed.token, renewed.expires_at, renewed.holder.as_str()),
        (second.token, at(7), "b"),
        "renew_lease extends to now + ttl and keeps the token"
    );
    assert_eq!(
        ok(acquire("c", minute, at(6)).await, "acquire"),
        None,
        "the renewal holds the lease"
    );
    assert!(
        ok(store.release_lease(&renewed).await, "release_lease"),
        "the holder's release is true"
    );
    let third =
        ok(acquire("c", minute, at(6)).await, "acquire").expect("a released lease is free at once");
    assert_eq!(
        third.token,
        second.token + 1,
        "passing to a new holder after release bumps the token"
    );
    expect_err(
        store.renew_lease(&renewed, minute, at(6)).await,
        Kind::LeaseLost,
        "renew after release and takeover",
    );
}

/// Re-acquiring by the current holder extends the lease and keeps its token.
pub async fn lease_same_holder_keeps_token(store: &DynStore) {
    let ws = WorkspaceId::new();
    let name = unique("runner");
    let first = ok(
        store
            .try_acquire_lease(ws, &name, "a", Duration::minutes(1), base())
            .await,
        "acquire",
    )
    .expect("a free lease is granted");
    let again = ok(
        store
            .try_acquire_lease(
                ws,
                &name,
                "a",
                Duration::minutes(2),
                at(0) + Duration::seconds(30),
            )
            .await,
        "acquire",
    )
    .expect("the holder may re-acquire");
    assert_eq!(
        again.token, first.token,
        "re-acquiring by the same holder keeps the token"
    );
    assert_eq!(
        again.expires_at,
        base() + Duration::seconds(150),
        "and extends the lease to now + ttl"
    );
    let refused = ok(
        store
            .try_acquire_lease(ws, &name, "b", Duration::minutes(1), at(2))
            .await,
        "acquire",
    );
    assert_eq!(
        refused, None,
        "the extension holds off others until the new expiry"
    );
    ok(
        store.renew_lease(&first, Duration::minutes(1), at(2)).await,
        "the first grant (same holder, same token) still renews",
    );
}

/// Lease arguments are validated; leases of equal name in different workspaces are independent.
pub async fn lease_validation_and_isolation(store: &DynStore) {
    let ws = WorkspaceId::new();
    let name = unique("runner");
    for (what, lease, holder, ttl) in [
        ("a zero ttl", name.as_str(), "a", Duration::zero()),
        ("a negative ttl", name.as_str(), "a", Duration::seconds(-1)),
        ("a blank name", " ", "a", Duration::minutes(1)),
        ("a blank holder", name.as_str(), "", Duration::minutes(1)),
    ] {
        expect_err(
            store
                .try_acquire_lease(ws, lease, holder, ttl, base())
                .await,
            Kind::Invalid,
            &format!("try_acquire_lease with {what}"),
        );
    }
    let mine = ok(
        store
            .try_acquire_lease(ws, &name, "a", Duration::minutes(1), base())
            .await,
        "acquire",
    );
    assert!(mine.is_some(), "a refused call took nothing");
    let theirs = ok(
        store
            .try_acquire_lease(WorkspaceId::new(), &name, "b", Duration::minutes(1), base())
            .await,
        "acquire",
    );
    assert!(
        theirs.is_some(),
        "a lease name in another workspace is another lease"
    );
}

/// raise_anomaly deduplicates while an anomaly with the key is Active or Acknowledged and
/// raises anew once it is resolved.
pub async fn anomaly_dedup_while_open(store: &DynStore) {
    let ws = WorkspaceId::new();
    let key = unique("failure_rate:email");
    let first = new_anomaly(ws, &key);
    let stored = created(store.raise_anomaly(&first).await, "raise_anomaly");
    assert_eq!(stored, first, "raise_anomaly returns the row as stored");
    assert_eq!(
        ok(store.get_anomaly(ws, first.id).await, "get"),
        first,
        "get_anomaly round trip"
    );
    let same = existing(
        store.raise_anomaly(&new_anomaly(ws, &key)).await,
        "raise while Active",
    );
    assert_eq!(same, first, "an open anomaly is returned unchanged");

    let mut ack = first.clone();
    ack.status = AnomalyStatus::Acknowledged;
    ack.acknowledged_by = Some(UserId::new());
    ack.updated_at = at(5);
    let ack = ok(store.update_anomaly(&ack).await, "update_anomaly");
    assert_eq!(ack.version, 2, "update_anomaly bumps the version");
    let same = existing(
        store.raise_anomaly(&new_anomaly(ws, &key)).await,
        "raise while Acknowledged",
    );
    assert_eq!(same, ack, "an acknowledged anomaly still deduplicates");

    let mut resolved = ack.clone();
    resolved.status = AnomalyStatus::Resolved;
    resolved.resolved_at = Some(at(10));
    ok(store.update_anomaly(&resolved).await, "update_anomaly");
    let again = new_anomaly(ws, &key);
    assert_eq!(
        created(store.raise_anomaly(&again).await, "raise after resolve"),
        again,
        "a new anomaly is raised"
    );
    created(
        store
            .raise_anomaly(&new_anomaly(WorkspaceId::new(), &key))
            .await,
        "dedup keys are per workspace",
    );

    let mut v2 = new_anomaly(ws, &unique("k"));
    v2.version = 2;
    expect_err(
        store.raise_anomaly(&v2).await,
        Kind::Invalid,
        "raise_anomaly with version 2",
    );
    let mut closed = new_anomaly(ws, &unique("k"));
    closed.status = AnomalyStatus::Resolved;
    expect_err(
        store.raise_anomaly(&closed).await,
        Kind::Invalid,
        "raise_anomaly with status Resolved",
    );
    let mut blank = new_anomaly(ws, "k");
    blank.dedup_key = " ".into();
    expect_err(
        store.raise_anomaly(&blank).await,
        Kind::Invalid,
        "raise_anomaly with a blank dedup key",
    );
}

/// update_anomaly is compare-and-set; list_anomalies pages by id, optionally open only.
pub async fn anomaly_update_and_list(store: &DynStore) {
    let ws = WorkspaceId::new();
    let mut all = Vec::new();
    for _ in 0..3 {
        all.push(created(
            store.raise_anomaly(&new_anomaly(ws, &unique("k"))).await,
            "raise_anomaly",
        ));
    }
    let mut resolve = all[1].clone();
    resolve.status = AnomalyStatus::Resolved;
    resolve.resolved_at = Some(at(3));
    resolve.updated_at = at(3);
    let updated = ok(store.update_anomaly(&resolve).await, "update_anomaly");
    let mut expected = resolve.clone();
    expected.version = 2;
    assert_eq!(
        updated, expected,
        "update_anomaly stores every field with version + 1"
    );
    expect_err(
        store.update_anomaly(&resolve).await,
        Kind::VersionConflict,
        "update_anomaly with a stale version",
    );
    let mut ghost = new_anomaly(ws, "ghost");
    ghost.id = AnomalyId::new();
    expect_err(
        store.update_anomaly(&ghost).await,
        Kind::NotFound,
        "update_anomaly of an unknown id",
    );

    let open = ok(
        store.list_anomalies(ws, true, Page::first(10)).await,
        "list_anomalies",
    );
    let open: Vec<AnomalyId> = open.iter().map(|a| a.id).collect();
    assert_eq!(
        open,
        vec![all[0].id, all[2].id],
        "list_anomalies(open_only) skips resolved ones"
    );
    let ids: Vec<AnomalyId> = all.iter().map(|a| a.id).collect();
    assert_pagination(
        "list_anomalies",
        ids,
        |a: &Anomaly| a.id,
        |page| store.list_anomalies(ws, false, page),
    )
    .await;
}

/// Another workspace can neither read, list nor update an anomaly.
pub async fn anomaly_tenant_isolation(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let anomaly = created(
        store.raise_anomaly(&new_anomaly(ws, &unique("k"))).await,
        "raise_anomaly",
    );
    expect_err(
        store.get_anomaly(other, anomaly.id).await,
        Kind::NotFound,
        "get_anomaly from another workspace",
    );
    for open_only in [true, false] {
        let listed = ok(
            store
                .list_anomalies(other, open_only, Page::first(10))
                .await,
            "list_anomalies",
        );
        assert!(
            listed.is_empty(),
            "list_anomalies never returns another workspace's rows"
        );
    }
    let mut hijack = anomaly.clone();
    hijack.workspace_id = other;
    hijack.status = AnomalyStatus::Resolved;
    expect_err(
        store.update_anomaly(&hijack).await,
        Kind::NotFound,
        "update_anomaly from another workspace",
    );
    assert_eq!(
        ok(store.get_anomaly(ws, anomaly.id).await, "get"),
        anomaly,
        "the anomaly is untouched"
    );
}
