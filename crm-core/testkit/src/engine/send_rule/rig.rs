//! A workspace with the real runner and dispatcher, ticked together on its clock, and
//! the checks every send must pass.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::engine::dispatch::ApproveAll;
use crate::engine::runner::World;
use crm_core::DynStore;
use crm_core::approval::ApprovalPolicy;
use crm_core::ids::{ApprovalRuleId, ContactId, EnrollmentId};
use crm_core::model::{Channel, OutboxMessage, OutboxStatus, Sequence};
use crm_core::outreach::dispatch::{ChannelRegistry, Dispatcher, DispatcherConfig, StubChannel};
use crm_core::outreach::runner::{Runner, RunnerConfig};
use crm_core::outreach::schedule::{local_day, within_window};
use crm_core::outreach::settings::WorkspaceSettings;

/// A world with its runner and dispatcher, and what each enrollment runs.
pub(super) struct Rig {
    pub(super) w: World,
    pub(super) runner: Runner,
    pub(super) dispatcher: Dispatcher,
    /// Enrollment -> (its sequence, its contact, the contact's zone).
    pub(super) plan: HashMap<EnrollmentId, (Arc<Sequence>, ContactId, Tz)>,
}

impl Rig {
    /// A rig whose dispatcher approves every send by rule.
    pub(super) fn new(store: &Arc<DynStore>, settings: WorkspaceSettings) -> Self {
        let policy = Arc::new(ApproveAll {
            rule: ApprovalRuleId::new(),
        });
        Self::with_policy(store, settings, policy, crate::store::fixtures::base())
    }

    /// A rig with an approval policy, its clock at `start`.
    pub(super) fn with_policy(
        store: &Arc<DynStore>,
        settings: WorkspaceSettings,
        policy: Arc<dyn ApprovalPolicy>,
        start: DateTime<Utc>,
    ) -> Self {
        let w = World::new(store, settings);
        w.clock.set(start);
        let config = RunnerConfig::default().with_holder("send-rule-runner");
        let runner = Runner::new(store.clone(), w.time(), w.provider(), config).expect("runner");
        let email = StubChannel::ok(Channel::Email).with_clock(w.time());
        let dispatcher = Dispatcher::new(
            store.clone(),
            w.time(),
            w.provider(),
            ChannelRegistry::new().with(Arc::new(email)),
            DispatcherConfig::default()
                .with_worker("send-rule-dispatcher")
                .with_env_dry_run(false),
        )
        .with_policy(policy);
        Self {
            w,
            runner,
            dispatcher,
            plan: HashMap::new(),
        }
    }

    /// Runs the runner once and the dispatcher until nothing is due, at `at`.
    pub(super) async fn tick(&self, at: DateTime<Utc>) {
        self.w.clock.set(at);
        let report = self.runner.tick().await.expect("runner tick");
        assert!(
            report.failed.is_empty() && report.tenants.iter().all(|t| t.failed.is_empty()),
            "runner tick at {at}: {report:?}"
        );
        for _ in 0..100 {
            let report = self.dispatcher.dispatch_batch().await.expect("dispatch");
            if report.claimed == 0 {
                return;
            }
        }
        panic!("the dispatcher never ran out of due messages at {at}");
    }

    /// The workspace's sent step messages.
    pub(super) async fn sent(&self) -> Vec<OutboxMessage> {
        self.w
            .outbox()
            .await
            .into_iter()
            .filter(|m| m.status == OutboxStatus::Sent && m.enrollment_id.is_some())
            .collect()
    }

    /// No send outside its step's window in the contact's zone, over the touch limit of
    /// the contact's local day, or over the channel's daily cap of the workspace's day.
    pub(super) async fn assert_every_send_kept_the_rule(&self, what: &str) {
        let settings = &self.w.settings;
        let mut touches: HashMap<(ContactId, NaiveDate), u32> = HashMap::new();
        let mut caps: HashMap<(Channel, NaiveDate), u32> = HashMap::new();
        for m in self.sent().await {
            let enrollment = m.enrollment_id.expect("a step message");
            let (sequence, contact, tz) = self.plan.get(&enrollment).expect("a planned enrollment");
            let sent_at = m.sent_at.expect("sent_at");
            let step = usize::try_from(m.step_index.expect("step")).expect("index");
            if let Some(window) = sequence.steps.get(step).and_then(|s| s.window.as_ref()) {
                assert!(
                    within_window(window, *tz, sent_at),
                    "{what}: step {step} sent at {sent_at} ({}) outside {window:?}",
                    sent_at.with_timezone(tz)
                );
            }
            let t = touches
                .entry((*contact, local_day(*tz, sent_at)))
                .or_insert(0);
            *t += 1;
            assert!(
                *t <= settings.daily_touch_limit,
                "{what}: contact {contact} got {t} messages on its local day of {sent_at}"
            );
            let day = local_day(settings.default_time_zone, sent_at);
            let c = caps.entry((m.channel, day)).or_insert(0);
            *c += 1;
            assert!(
                *c <= settings.daily_cap(m.channel),
                "{what}: {c} {} sends on the workspace's day {day}",
                m.channel
            );
        }
    }
}
