//! Enrolling: conflicts listed together, the touch limit, the parallel-sequence policy.

use std::sync::Arc;

use chrono::Duration;

use crate::store::fixtures::{activity, ok, race};
use crm_core::DynStore;
use crm_core::model::{
    Channel, Consent, ConsentStatus, EnrollmentState, Suppression, SuppressionReason,
};
use crm_core::outreach::enroll::{Conflict, EnrollError};
use crm_core::outreach::settings::{ParallelSequencePolicy, WorkspaceSettings};
use crm_core::store::{EnrollmentFilter, Page};

use super::world::{World, base_time, email, step};

fn conflicts_of<T: std::fmt::Debug>(result: Result<T, EnrollError>, what: &str) -> Vec<Conflict> {
    match result {
        Err(EnrollError::Conflicts(c)) => c,
        other => panic!("{what}: expected EnrollError::Conflicts, got {other:?}"),
    }
}

fn assert_same_set(mut got: Vec<Conflict>, expected: &[Conflict], what: &str) {
    for want in expected {
        let at = got.iter().position(|c| c == want);
        match at {
            Some(i) => {
                got.remove(i);
            }
            None => panic!("{what}: missing conflict {want:?}"),
        }
    }
    assert!(got.is_empty(), "{what}: unexpected conflicts {got:?}");
}

/// Every blocking reason comes back in one list, and nothing is enrolled.
pub async fn enroll_conflicts_are_listed_together(store: Arc<DynStore>) {
    let w = World::new(&store, WorkspaceSettings::default());
    let now = base_time();
    w.clock.set(now);
    let first = w.sequence(vec![email("Hi", "Hello {{first_name}}")]).await;
    let second = w
        .sequence(vec![
            email("Hi", "Hello"),
            step(Channel::WhatsApp, "Ping"),
            step(Channel::ManualTask, "Call them"),
        ])
        .await;
    let ada = w.contact().await;
    let address = ada.email.clone().expect("email").to_string();
    let running = w.enroll(&ada, &first, now).await;

    for minutes in [60, 30] {
        w.touch(&ada, now - Duration::minutes(minutes)).await;
    }
    let s = Suppression::new(
        w.ws,
        Some(Channel::Email),
        &address,
        SuppressionReason::Bounced,
        now,
    )
    .expect("suppression");
    ok(
        store.add_suppression(&s).await.map(|r| r.result),
        "add_suppression",
    );
    let c = Consent::new(
        w.ws,
        ada.id,
        Channel::Email,
        ConsentStatus::Withdrawn,
        "request",
        now,
    )
    .expect("consent");
    ok(
        store.record_consent(&c).await.map(|r| r.result),
        "record_consent",
    );

    let enroller = w.enroller();
    let expected = [
        Conflict::InAnotherSequence {
            sequence_id: first.id,
        },
        Conflict::DailyTouchLimitReached {
            sent_today: 2,
            limit: 2,
        },
        Conflict::Suppressed {
            channel: Channel::Email,
            reason: SuppressionReason::Bounced,
        },
        Conflict::Unsubscribed {
            channel: Channel::Email,
        },
        Conflict::NoAddress {
            channel: Channel::WhatsApp,
        },
    ];
    let got = conflicts_of(
        enroller.enroll(w.ws, ada.id, second.id).await,
        "enroll with five conflicts",
    );
    assert_same_set(
        got,
        &expected,
        "every blocking reason is listed (manual tasks need no address)",
    );
    let checked = enroller
        .check(w.ws, ada.id, second.id)
        .await
        .expect("check");
    assert_same_set(
        checked,
        &expected,
        "check lists the same reasons without enrolling",
    );

    let again = conflicts_of(
        enroller.enroll(w.ws, ada.id, first.id).await,
        "enroll in the running sequence",
    );
    assert!(
        again.contains(&Conflict::AlreadyEnrolled {
            enrollment_id: Some(running.id)
        }),
        "enrolling twice names the running enrollment: {again:?}"
    );
    let filter = EnrollmentFilter {
        contact_id: Some(ada.id),
        ..EnrollmentFilter::default()
    };
    let listed = ok(
        store.list_enrollments(w.ws, &filter, Page::first(10)).await,
        "list",
    );
    assert_eq!(
        listed.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![running.id],
        "nothing is enrolled when any conflict blocks"
    );
}

/// The touch limit counts `MessageSent` since the start of the contact's local day.
pub async fn enroll_touch_limit_follows_the_local_day(store: Arc<DynStore>) {
    let w = World::new(&store, WorkspaceSettings::default());
    let now = base_time(); // Monday 10:00 in Berlin
    w.clock.set(now);
    let seq = w.sequence(vec![email("Hi", "Hello")]).await;
    let berlin = w.contact().await;
    let utc = w.contact_with(|c| c.time_zone = None).await; // workspace default: UTC
    let midnight_berlin = now - Duration::hours(10); // Sunday 23:00 UTC
    for c in [&berlin, &utc] {
        w.touch(c, midnight_berlin - Duration::minutes(1)).await;
        w.touch(c, midnight_berlin).await;
        let note = activity(w.ws, c.id, crm_core::model::ActivityKind::Note, now);
        ok(store.record_activity(&note).await, "record a note");
    }
    let enroller = w.enroller();
    let check = |id| enroller.check(w.ws, id, seq.id);
    assert!(
        check(berlin.id).await.expect("check").is_empty(),
        "one message since Berlin midnight is under the limit of 2; notes do not count"
    );
    w.touch(&berlin, now - Duration::minutes(5)).await;
    assert_eq!(
        check(berlin.id).await.expect("check"),
        vec![Conflict::DailyTouchLimitReached {
            sent_today: 2,
            limit: 2
        }],
        "two messages today in Berlin reach the default limit"
    );
    w.touch(&utc, now - Duration::minutes(5)).await;
    assert!(
        check(utc.id).await.expect("check").is_empty(),
        "without a time zone the workspace's (UTC) day counts: only one message today"
    );
    let relaxed = World {
        settings: WorkspaceSettings::default().with_daily_touch_limit(3),
        ..w.clone()
    };
    assert!(
        relaxed
            .enroller()
            .check(w.ws, berlin.id, seq.id)
            .await
            .expect("check")
            .is_empty(),
        "the limit is the workspace's setting"
    );
}

/// Refuse lists the other sequence; Allow enrolls; a race enrolls once.
pub async fn enroll_parallel_sequence_policy(store: Arc<DynStore>) {
    let refuse = World::new(&store, WorkspaceSettings::default());
    let now = base_time();
    refuse.clock.set(now);
    let a = refuse.sequence(vec![email("Hi", "A")]).await;
    let b = refuse.sequence(vec![email("Hi", "B")]).await;
    let ada = refuse.contact().await;
    refuse.enroll(&ada, &a, now).await;
    let got = conflicts_of(
        refuse.enroller().enroll(refuse.ws, ada.id, b.id).await,
        "a second sequence under Refuse",
    );
    assert_eq!(got, vec![Conflict::InAnotherSequence { sequence_id: a.id }]);

    let allow = World {
        settings: WorkspaceSettings::default()
            .with_parallel_sequences(ParallelSequencePolicy::Allow),
        ..refuse.clone()
    };
    let second = allow.enroll(&ada, &b, now).await;
    assert_eq!(
        second.state,
        EnrollmentState::Pending,
        "Allow enrolls in parallel"
    );
    assert_eq!(
        second.sequence_version, b.version,
        "the current version is enrolled"
    );

    let grace = refuse.contact().await;
    let enroller = refuse.enroller();
    let results = race(8, |_| enroller.enroll(refuse.ws, grace.id, a.id)).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        wins, 1,
        "concurrent enrollments of one contact in one sequence: one wins"
    );
    for r in results.into_iter().filter(Result::is_err) {
        let c = conflicts_of(r, "a losing concurrent enrollment");
        assert!(
            c.iter()
                .all(|c| matches!(c, Conflict::AlreadyEnrolled { .. })),
            "losers are told AlreadyEnrolled: {c:?}"
        );
    }
}
