//! Ten days, hour by hour: the forecast made at the start is what happens.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc, Weekday};
use chrono_tz::Tz;

use super::rig::Rig;
use crate::engine::runner::world::{after, email, utc, within};
use crm_core::DynStore;
use crm_core::ids::EnrollmentId;
use crm_core::model::{Channel, ParallelSequencePolicy, SendWindow, StepDelay};
use crm_core::outreach::forecast::ForecastOutcome;
use crm_core::outreach::settings::WorkspaceSettings;

/// The zones of the thirty contacts, five each: whole, half-hour and quarter offsets
/// from -11 to +14, and a half-hour DST change (Lord Howe, 4 October 2026).
pub(super) const ZONES: [&str; 6] = [
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "Australia/Lord_Howe",
];

fn weekdays() -> Vec<Weekday> {
    vec![
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
    ]
}

/// Thirty contacts in six zones, each in a three-step or a two-step sequence, with
/// windows on the minute, a daily email cap of ten (binding: 75 sends want to go in
/// ten days) and a touch limit of one a day. The runner and the dispatcher run every
/// hour for ten days; each (enrollment, step) is sent exactly at the instant the
/// forecast made at the start said, and nothing the forecast did not plan is sent.
pub async fn send_rule_forecast_is_exact_under_a_binding_cap(store: Arc<DynStore>) {
    ten_days(store, false).await;
}

/// [`send_rule_forecast_is_exact_under_a_binding_cap`] with every other contact in
/// both sequences at once (105 sends want to go): the touch limit binds across
/// sequences, and a message the cap moved into a day that already had the contact's
/// touch waits for the next one.
///
/// Needs the dispatcher's touch check at send time (a message whose contact was already
/// sent `daily_touch_limit` messages that local day waits for its window's first
/// opening in the next one): without it, two messages queued on different local days
/// and both moved by the cap into the same one both go.
pub async fn send_rule_forecast_is_exact_with_parallel_sequences(store: Arc<DynStore>) {
    ten_days(store, true).await;
}

async fn ten_days(store: Arc<DynStore>, parallel: bool) {
    let berlin: Tz = "Europe/Berlin".parse().expect("zone");
    let settings = WorkspaceSettings::default()
        .with_default_time_zone(berlin)
        .with_daily_cap(Channel::Email, 10)
        .with_daily_touch_limit(1)
        .with_parallel_sequences(ParallelSequencePolicy::Allow);
    let mut rig = Rig::new(&store, settings);
    let office = SendWindow::hours(9, 17, weekdays()).with_minutes(30, 15);
    let mornings = SendWindow::hours(8, 12, weekdays()).with_minutes(0, 45);
    let every_day = SendWindow::hours(
        10,
        19,
        vec![
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
            Weekday::Sat,
            Weekday::Sun,
        ],
    );
    let three = rig
        .w
        .sequence(vec![
            within(email("Hi", "Hello {{first_name}}"), office.clone()),
            within(
                after(email("Re", "Following up"), StepDelay::BusinessDays(1)),
                mornings,
            ),
            after(email("Last", "Closing the loop"), StepDelay::Hours(30)),
        ])
        .await;
    let two = rig
        .w
        .sequence(vec![
            within(
                after(email("Invite", "Join us"), StepDelay::Hours(5)),
                every_day,
            ),
            within(
                after(email("Reminder", "Tomorrow"), StepDelay::Hours(26)),
                office,
            ),
        ])
        .await;
    let (three, two) = (Arc::new(three), Arc::new(two));

    // Thursday 2026-10-01 00:00 UTC; Lord Howe moves to +11:00 on Sunday 4 October.
    let start = utc(2026, 10, 1, 0, 0);
    for i in 0..30 {
        let zone = ZONES[i % ZONES.len()];
        let tz: Tz = zone.parse().expect("zone");
        let contact = rig
            .w
            .contact_with(|c| c.time_zone = Some(zone.to_owned()))
            .await;
        if parallel || i % 2 == 1 {
            let e = rig.w.enroll(&contact, &three, start).await;
            rig.plan.insert(e.id, (three.clone(), contact.id, tz));
        }
        if i % 2 == 0 {
            let e = rig.w.enroll(&contact, &two, start).await;
            rig.plan.insert(e.id, (two.clone(), contact.id, tz));
        }
    }

    rig.w.clock.set(start);
    let days = 10;
    let entries = rig
        .w
        .forecast()
        .with_tick(Duration::hours(1))
        .forecast(rig.w.ws, days)
        .await
        .expect("forecast");
    let end = start + Duration::days(i64::from(days));
    let mut forecast: BTreeMap<(EnrollmentId, i32), DateTime<Utc>> = BTreeMap::new();
    for entry in &entries {
        if let ForecastOutcome::Planned { at, .. } = entry.outcome {
            forecast.insert((entry.enrollment_id, entry.step), at);
        }
    }
    let capped = entries
        .iter()
        .filter(|e| match &e.outcome {
            ForecastOutcome::Planned { postponed_by, .. } => postponed_by
                .iter()
                .any(|r| matches!(r, crm_core::outreach::forecast::HoldReason::Quota { .. })),
            ForecastOutcome::HeldBack { reason, .. } => {
                matches!(
                    reason,
                    crm_core::outreach::forecast::HoldReason::Quota { .. }
                )
            }
            _ => false,
        })
        .count();
    assert!(capped >= 10, "the cap binds: {capped} steps wait for it");
    assert!(forecast.len() >= 50, "most steps go: {}", forecast.len());

    let mut at = start;
    while at < end {
        rig.tick(at).await;
        at += Duration::hours(1);
    }

    let mut happened: BTreeMap<(EnrollmentId, i32), DateTime<Utc>> = BTreeMap::new();
    for m in rig.sent().await {
        let key = (
            m.enrollment_id.expect("enrollment"),
            m.step_index.expect("step"),
        );
        let sent_at = m.sent_at.expect("sent_at");
        assert!(
            happened.insert(key, sent_at).is_none(),
            "step {key:?} sent twice"
        );
    }
    let mut wrong = Vec::new();
    for (key, planned) in &forecast {
        match happened.get(key) {
            Some(sent) if sent == planned => {}
            other => {
                let (seq, _, tz) = rig.plan.get(&key.0).expect("planned");
                let why = entries
                    .iter()
                    .find(|e| (e.enrollment_id, e.step) == *key)
                    .map(|e| format!("{:?}", e.outcome));
                wrong.push(format!(
                    "{key:?} {tz} {} steps: forecast {planned}, sent {other:?} ({why:?})",
                    seq.steps.len()
                ));
            }
        }
    }
    for (key, sent) in &happened {
        if !forecast.contains_key(key) {
            wrong.push(format!("{key:?}: sent {sent}, not in the forecast"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} forecast sends did not happen as forecast:\n{}",
        wrong.len(),
        forecast.len(),
        wrong.join("\n")
    );
    rig.assert_every_send_kept_the_rule("ten days").await;
    assert!(
        happened.len() >= 50,
        "the run sends most steps: {}",
        happened.len()
    );
}
