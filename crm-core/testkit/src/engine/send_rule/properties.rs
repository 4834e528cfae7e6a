//! Random scenarios: whatever the zones, windows, caps, approvals and clock steps, no
//! send is outside its window, over the touch limit or over the cap.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Duration, Weekday};
use chrono_tz::Tz;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

use super::rig::Rig;
use crate::engine::runner::world::{after, email, utc};
use crm_core::DynStore;
use crm_core::approval::{ApprovalDecision, ApprovalPolicy, ApprovalRequest, PolicyError};
use crm_core::ids::{ApprovalRuleId, UserId};
use crm_core::model::{
    ApprovalStatus, Channel, OutboxStatus, ParallelSequencePolicy, SendWindow, StepDelay,
};
use crm_core::outreach::settings::WorkspaceSettings;
use crm_core::store::Page;

const ZONES: [&str; 9] = [
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "Australia/Lord_Howe",
    "Africa/Cairo",
    "Asia/Kathmandu",
    "America/St_Johns",
];

/// Asks a person exactly for the steps that say so; approves the rest by rule.
#[derive(Debug, Clone, Copy)]
struct HumanWhenAsked(ApprovalRuleId);

#[async_trait]
impl ApprovalPolicy for HumanWhenAsked {
    async fn decide(&self, request: &ApprovalRequest) -> Result<ApprovalDecision, PolicyError> {
        Ok(if request.step_requires_approval {
            ApprovalDecision::RequireHuman {
                reason: "the step asks for a person".into(),
            }
        } else {
            ApprovalDecision::AutoApprove { rule: self.0 }
        })
    }
}

/// One step: delay (hours or business days), window (opening minute, length in
/// minutes, weekday mask) and whether it needs a person.
type StepSpec = (bool, u32, Option<(u16, u16, u8)>, bool);

/// One scenario.
#[derive(Debug, Clone)]
struct Scenario {
    ws_zone: usize,
    cap: u32,
    touch_limit: u32,
    sequences: Vec<Vec<StepSpec>>,
    /// Per contact: its zone and which sequences it is enrolled in (bit mask).
    contacts: Vec<(usize, u8)>,
    /// Clock steps in minutes, and per step whether a person approves what waits.
    steps: Vec<(u16, bool)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let step = (
        any::<bool>(),
        0u32..40,
        proptest::option::weighted(0.8, (0u16..1380, 15u16..720, 1u8..128)),
        proptest::bool::weighted(0.3),
    );
    (
        0..ZONES.len(),
        1u32..6,
        1u32..3,
        proptest::collection::vec(proptest::collection::vec(step, 1..4), 1..4),
        proptest::collection::vec((0..ZONES.len(), 1u8..8), 3..8),
        proptest::collection::vec((5u16..240, any::<bool>()), 60..110),
    )
        .prop_map(
            |(ws_zone, cap, touch_limit, sequences, contacts, steps)| Scenario {
                ws_zone,
                cap,
                touch_limit,
                sequences,
                contacts,
                steps,
            },
        )
}

fn window(opens: u16, len: u16, days: u8) -> SendWindow {
    let closes = (opens + len).min(24 * 60);
    let hm = |m: u16| {
        (
            u8::try_from(m / 60).expect("hour"),
            u8::try_from(m % 60).expect("minute"),
        )
    };
    let ((sh, sm), (eh, em)) = (hm(opens), hm(closes));
    let weekdays = (0..7u8)
        .filter(|i| days & (1 << i) != 0)
        .map(|i| Weekday::try_from(i).expect("weekday"))
        .collect();
    SendWindow::hours(sh, eh, weekdays).with_minutes(sm, em)
}

/// Sixteen random scenarios on the real runner and dispatcher: contacts in random
/// zones (DST changes in March), one to three sequences of one to three steps with
/// random delays, windows on the minute and approvals, a random cap and touch limit,
/// the clock moved in random steps of 5 minutes to 4 hours over about a week, and the
/// people approving what waits at random moments. No send is ever outside its window,
/// over the touch limit or over the cap.
pub async fn send_rule_holds_under_random_zones_windows_caps_and_approvals(store: Arc<DynStore>) {
    let mut runner = TestRunner::new(Config {
        cases: 16,
        ..Config::default()
    });
    let strategy = scenario();
    for case in 0..16 {
        let s = strategy
            .new_tree(&mut runner)
            .expect("a scenario")
            .current();
        // Each scenario lives in an earlier era than the one before, so the runner and
        // the dispatcher (which work on every workspace) never see an older one's steps
        // as due.
        run(&store, &s, 2060 - case).await;
    }
}

async fn run(store: &Arc<DynStore>, s: &Scenario, year: i32) {
    let ws_tz: Tz = ZONES[s.ws_zone].parse().expect("zone");
    let settings = WorkspaceSettings::default()
        .with_default_time_zone(ws_tz)
        .with_daily_cap(Channel::Email, s.cap)
        .with_daily_touch_limit(s.touch_limit)
        .with_parallel_sequences(ParallelSequencePolicy::Allow);
    let start = utc(year, 3, 20, 7, 0);
    let policy = Arc::new(HumanWhenAsked(ApprovalRuleId::new()));
    let mut rig = Rig::with_policy(store, settings, policy, start);
    let mut sequences = Vec::new();
    for spec in &s.sequences {
        let steps = spec
            .iter()
            .map(|&(business, amount, win, approval)| {
                let delay = if business {
                    StepDelay::BusinessDays(amount % 3)
                } else {
                    StepDelay::Hours(amount)
                };
                let mut step = after(email("Hi", "Hello {{first_name}}"), delay);
                step.window = win.map(|(o, l, d)| window(o, l, d));
                step.requires_approval = approval;
                step
            })
            .collect();
        sequences.push(Arc::new(rig.w.sequence(steps).await));
    }
    for &(zone, mask) in &s.contacts {
        let tz: Tz = ZONES[zone].parse().expect("zone");
        let contact = rig
            .w
            .contact_with(|c| c.time_zone = Some(ZONES[zone].to_owned()))
            .await;
        for (k, sequence) in sequences.iter().enumerate() {
            if mask & (1 << k) != 0 {
                let e = rig.w.enroll(&contact, sequence, start).await;
                rig.plan.insert(e.id, (sequence.clone(), contact.id, tz));
            }
        }
    }
    let mut at = start;
    for &(minutes, approve) in &s.steps {
        rig.tick(at).await;
        if approve {
            approve_waiting(&rig).await;
        }
        at += Duration::minutes(i64::from(minutes));
    }
    rig.assert_every_send_kept_the_rule(&format!("{s:?}")).await;
}

/// A person approves every item waiting, releasing its message at once.
async fn approve_waiting(rig: &Rig) {
    use crm_core::clock::Clock;
    let now = rig.w.clock.now();
    let store = &rig.w.store;
    let items = store
        .list_approvals(rig.w.ws, Some(ApprovalStatus::Pending), Page::first(1000))
        .await
        .expect("list_approvals");
    for item in items {
        let message = store
            .get_outbox(rig.w.ws, item.outbox_message_id)
            .await
            .expect("get_outbox");
        if message.status != OutboxStatus::AwaitingApproval {
            continue;
        }
        let mut approved = item.clone();
        approved.status = ApprovalStatus::Approved;
        approved.decided_by = Some(UserId::new());
        approved.decided_at = Some(now);
        approved.updated_at = now;
        let mut release = message.clone();
        release.status = OutboxStatus::Pending;
        release.not_before = now;
        release.updated_at = now;
        store
            .decide_approval(&approved, Some(&release))
            .await
            .expect("decide_approval");
    }
}
