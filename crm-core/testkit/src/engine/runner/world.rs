//! A workspace with its services, and builders for the runner scenarios.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

use crate::store::fixtures::{ok, unique, unique_domain, unique_email};
use crm_core::DynStore;
use crm_core::clock::{Clock, ManualClock};
use crm_core::ids::{AccountId, EnrollmentId, WorkspaceId};
use crm_core::inbound::InboundEvent;
use crm_core::model::{
    Account, Activity, ActivityKind, Channel, Contact, Enrollment, EnrollmentState, NewAccount,
    NewContact, OutboxMessage, SendWindow, Sequence, SequenceStep, StepDelay, Template,
};
use crm_core::outreach::enroll::Enroller;
use crm_core::outreach::enrollment::{EnrollmentEvent, transition};
use crm_core::outreach::forecast::Forecast;
use crm_core::outreach::inbound::{InboundError, InboundHandler, InboundOutcome};
use crm_core::outreach::runner::{RUNNER_LEASE, Runner, RunnerConfig, RunnerError, TickReport};
use crm_core::outreach::schedule::{apply_delay, next_allowed};
use crm_core::outreach::settings::{
    SettingsError, SettingsProvider, StaticSettings, WorkspaceSettings,
};
use crm_core::store::{Claim, EnrollmentFilter, Page, Scope, SentRecord};

/// The simulated dispatcher waits this long for a reply after the last step.
pub fn reply_wait() -> Duration {
    Duration::days(3)
}

/// `y-m-d h:min` UTC.
pub fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .expect("valid instant")
}

/// Monday to Friday, 09:00 to 17:00 local.
pub fn office_hours() -> SendWindow {
    SendWindow {
        start_hour: 9,
        start_minute: 0,
        end_hour: 17,
        end_minute: 0,
        weekdays: vec![
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
        ],
    }
}

/// A step on `channel` with a body, no subject, no delay, no window.
pub fn step(channel: Channel, body: &str) -> SequenceStep {
    SequenceStep {
        channel,
        template: Template {
            subject: None,
            body: body.to_owned(),
        },
        delay: StepDelay::Hours(0),
        window: None,
        requires_approval: false,
        options: Default::default(),
    }
}

/// An email step with a subject.
pub fn email(subject: &str, body: &str) -> SequenceStep {
    let mut s = step(Channel::Email, body);
    s.template.subject = Some(subject.to_owned());
    s
}

/// `s` with a delay.
pub fn after(mut s: SequenceStep, delay: StepDelay) -> SequenceStep {
    s.delay = delay;
    s
}

/// `s` with a send window.
pub fn within(mut s: SequenceStep, window: SendWindow) -> SequenceStep {
    s.window = Some(window);
    s
}

/// One workspace of a store, with its settings and services.
#[derive(Debug, Clone)]
pub struct World {
    /// The store.
    pub store: Arc<DynStore>,
    /// The workspace.
    pub ws: WorkspaceId,
    /// Its settings.
    pub settings: WorkspaceSettings,
    /// The clock every service of the world reads; starts at [`base_time`].
    pub clock: ManualClock,
}

impl World {
    /// A fresh workspace with `settings`.
    pub fn new(store: &Arc<DynStore>, settings: WorkspaceSettings) -> Self {
        Self {
            store: Arc::clone(store),
            ws: WorkspaceId::new(),
            settings,
            clock: ManualClock::new(base_time()),
        }
    }

    /// The world's clock, for services built outside the world.
    pub fn time(&self) -> Arc<dyn Clock> {
        Arc::new(self.clock.clone())
    }

    /// Ticks `runner` (built on [`World::time`]) with the clock set to `now`.
    pub async fn tick(
        &self,
        runner: &Runner,
        now: DateTime<Utc>,
    ) -> Result<TickReport, RunnerError> {
        self.clock.set(now);
        runner.tick().await
    }

    /// Hands `event` to an [`InboundHandler`] of the workspace with the clock set to
    /// `now`.
    pub async fn handle(
        &self,
        event: &InboundEvent,
        now: DateTime<Utc>,
    ) -> Result<InboundOutcome, InboundError> {
        self.clock.set(now);
        self.inbound().handle(self.ws, event).await
    }

    /// The settings provider of this workspace.
    pub fn provider(&self) -> Arc<dyn SettingsProvider> {
        Arc::new(StaticSettings::new(self.settings.clone()))
    }

    /// An enroller.
    pub fn enroller(&self) -> Enroller {
        Enroller::new(self.store.clone(), self.time(), self.provider())
    }

    /// A runner named `holder` with the default configuration otherwise.
    pub fn runner(&self, holder: &str) -> Runner {
        let config = RunnerConfig::default().with_holder(holder);
        Runner::new(self.store.clone(), self.time(), self.provider(), config).expect("valid runner")
    }

    /// An inbound handler.
    pub fn inbound(&self) -> InboundHandler {
        InboundHandler::new(self.store.clone(), self.time(), self.provider())
    }

    /// A forecast.
    pub fn forecast(&self) -> Forecast {
        Forecast::new(self.store.clone(), self.time(), self.provider())
    }

    /// Inserts an account.
    pub async fn account(&self) -> Account {
        let input = NewAccount {
            name: "Acme".into(),
            domain: Some(unique_domain()),
            ..NewAccount::default()
        };
        let account = Account::create(self.ws, input, base_time()).expect("valid account");
        ok(self.store.insert_account(&account).await, "insert_account")
    }

    /// Inserts Ada Lovelace with a unique email, in Europe/Berlin, after `edit`.
    pub async fn contact_with(&self, edit: impl FnOnce(&mut NewContact)) -> Contact {
        let mut input = NewContact {
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            email: Some(unique_email()),
            time_zone: Some("Europe/Berlin".into()),
            ..NewContact::default()
        };
        edit(&mut input);
        let contact = Contact::create(self.ws, input, base_time()).expect("valid contact");
        ok(self.store.insert_contact(&contact).await, "insert_contact")
    }

    /// Inserts Ada with a unique email in Europe/Berlin.
    pub async fn contact(&self) -> Contact {
        self.contact_with(|_| {}).await
    }

    /// Inserts a contact of `account`.
    pub async fn colleague(&self, account: AccountId) -> Contact {
        self.contact_with(|c| c.account_id = Some(account)).await
    }

    /// Inserts a sequence of `steps`.
    pub async fn sequence(&self, steps: Vec<SequenceStep>) -> Sequence {
        let sequence = Sequence::create(self.ws, unique("Sequence"), steps, base_time())
            .expect("valid sequence");
        ok(
            self.store.insert_sequence(&sequence).await,
            "insert_sequence",
        )
    }

    /// Enrolls through the [`Enroller`] with the clock set to `now`; it must accept.
    pub async fn enroll(
        &self,
        contact: &Contact,
        sequence: &Sequence,
        now: DateTime<Utc>,
    ) -> Enrollment {
        self.clock.set(now);
        match self
            .enroller()
            .enroll(self.ws, contact.id, sequence.id)
            .await
        {
            Ok(e) => e,
            Err(err) => panic!("enroll: unexpected refusal {err:?}"),
        }
    }

    /// Inserts an enrollment directly in `state`, due at `next_run_at`.
    pub async fn insert_enrollment(
        &self,
        contact: &Contact,
        sequence: &Sequence,
        state: EnrollmentState,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Enrollment {
        let mut e = Enrollment::new(
            self.ws,
            sequence.id,
            sequence.version,
            contact.id,
            base_time(),
        );
        e.state = state;
        e.next_run_at = next_run_at;
        ok(self.store.insert_enrollment(&e).await, "insert_enrollment")
    }

    /// The enrollment as stored.
    pub async fn enrollment(&self, id: EnrollmentId) -> Enrollment {
        ok(
            self.store.get_enrollment(self.ws, id).await,
            "get_enrollment",
        )
    }

    /// Every enrollment of the workspace.
    pub async fn enrollments(&self) -> Vec<Enrollment> {
        let filter = EnrollmentFilter::default();
        ok(
            self.store
                .list_enrollments(self.ws, &filter, Page::first(1000))
                .await,
            "list_enrollments",
        )
    }

    /// Every outbox message of the workspace, ascending by id.
    pub async fn outbox(&self) -> Vec<OutboxMessage> {
        ok(
            self.store
                .list_outbox(self.ws, None, Page::first(1000))
                .await,
            "list_outbox",
        )
    }

    /// The outbox messages of one enrollment.
    pub async fn messages_of(&self, id: EnrollmentId) -> Vec<OutboxMessage> {
        let all = self.outbox().await;
        all.into_iter()
            .filter(|m| m.enrollment_id == Some(id))
            .collect()
    }

    /// Records a `MessageSent` activity for `contact` at `at`.
    pub async fn touch(&self, contact: &Contact, at: DateTime<Utc>) {
        let activity =
            Activity::for_contact(self.ws, contact.id, ActivityKind::MessageSent, "Sent", at)
                .expect("valid activity")
                .with_channel(Channel::Email);
        ok(
            self.store.record_activity(&activity).await,
            "record_activity",
        );
    }

    /// Plays the dispatcher: claims every due message at `at`, marks it sent with a
    /// provider id, records `MessageSent` and moves its enrollment to the next step
    /// (due after the next step's delay, or after [`reply_wait`] after the last).
    pub async fn dispatch_all(&self, at: DateTime<Utc>) -> Vec<OutboxMessage> {
        let claim = Claim::new(
            Scope::Workspace(self.ws),
            "test-dispatcher",
            at,
            Duration::minutes(5),
            100,
        );
        let claimed = ok(self.store.claim_outbox(&claim).await, "claim_outbox");
        let mut sent = Vec::new();
        for m in claimed {
            let token = m.lease.as_ref().expect("claimed").token;
            let contact_id = m.contact_id.expect("enrollment messages have a contact");
            let enrollment = match m.enrollment_id {
                Some(id) => Some(self.step_sent(id, m.step_index.unwrap_or(0), at).await),
                None => None,
            };
            let record = SentRecord {
                provider_message_id: Some(format!("prov-{}", m.id)),
                sent_at: at,
                activity: Activity::for_contact(
                    self.ws,
                    contact_id,
                    ActivityKind::MessageSent,
                    "Sent",
                    at,
                )
                .expect("valid activity")
                .with_channel(m.channel)
                .with_outbox_message(m.id),
                enrollment,
            };
            sent.push(ok(
                self.store
                    .mark_outbox_sent(self.ws, m.id, token, &record)
                    .await,
                "mark_outbox_sent",
            ));
        }
        sent
    }

    async fn step_sent(&self, id: EnrollmentId, step: i32, at: DateTime<Utc>) -> Enrollment {
        let e = self.enrollment(id).await;
        let sequence = ok(
            self.store
                .get_sequence_version(self.ws, e.sequence_id, e.sequence_version)
                .await,
            "get_sequence_version",
        );
        let contact = ok(
            self.store.get_contact(self.ws, e.contact_id).await,
            "get_contact",
        );
        let tz: Tz = contact.time_zone.unwrap_or(self.settings.default_time_zone);
        let next = usize::try_from(step + 1)
            .ok()
            .and_then(|k| sequence.steps.get(k));
        let next_due = match next {
            Some(s) => {
                let due = apply_delay(s.delay, tz, at).expect("a saved delay is in range");
                next_allowed(s.window.as_ref(), tz, due)
            }
            None => at + reply_wait(),
        };
        let n = i32::try_from(sequence.steps.len()).expect("few steps");
        let t =
            transition(&e, n, &EnrollmentEvent::StepSent { step, next_due }).expect("step sent");
        t.applied_to(&e, at)
    }
}

/// 2026-01-05T09:00:00Z, a Monday (10:00 in Berlin).
pub fn base_time() -> DateTime<Utc> {
    crate::store::fixtures::base()
}

/// Settings that watch the runner: every pass over a workspace reads them once, so the
/// spy sees passes begin. It holds each workspace "busy" for `hold` while it answers,
/// and records overlaps (the same workspace busy twice at once) and the most
/// workspaces busy at once.
#[derive(Debug)]
pub struct SpySettings {
    settings: WorkspaceSettings,
    hold: std::time::Duration,
    busy: Mutex<HashSet<WorkspaceId>>,
    current: AtomicUsize,
    /// The most workspaces busy at once.
    pub max_concurrent: AtomicUsize,
    /// How often a workspace was entered while busy.
    pub overlaps: AtomicUsize,
    /// Passes per workspace.
    pub passes: Mutex<HashMap<WorkspaceId, usize>>,
    /// Passes during which the runner lease of the workspace was free.
    pub unleased: AtomicUsize,
    lease_check: Option<(Arc<DynStore>, DateTime<Utc>)>,
}

impl SpySettings {
    /// A spy answering `settings` after holding the workspace for `hold`.
    pub fn new(settings: WorkspaceSettings, hold: std::time::Duration) -> Self {
        Self {
            settings,
            hold,
            busy: Mutex::new(HashSet::new()),
            current: AtomicUsize::new(0),
            max_concurrent: AtomicUsize::new(0),
            overlaps: AtomicUsize::new(0),
            passes: Mutex::new(HashMap::new()),
            unleased: AtomicUsize::new(0),
            lease_check: None,
        }
    }

    /// Also checks, during each pass, that the runner lease of the workspace is held
    /// (the spy cannot take it at `now`).
    pub fn checking_leases(mut self, store: &Arc<DynStore>, now: DateTime<Utc>) -> Self {
        self.lease_check = Some((Arc::clone(store), now));
        self
    }
}

#[async_trait]
impl SettingsProvider for SpySettings {
    async fn settings(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<WorkspaceSettings, SettingsError> {
        {
            let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
            if !busy.insert(workspace_id) {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            *self
                .passes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(workspace_id)
                .or_insert(0) += 1;
        }
        let now_busy = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_concurrent.fetch_max(now_busy, Ordering::SeqCst);
        if let Some((store, now)) = &self.lease_check {
            let taken = store
                .try_acquire_lease(
                    workspace_id,
                    RUNNER_LEASE,
                    "spy",
                    Duration::minutes(1),
                    *now,
                )
                .await
                .expect("try_acquire_lease");
            if let Some(grant) = taken {
                self.unleased.fetch_add(1, Ordering::SeqCst);
                store.release_lease(&grant).await.expect("release_lease");
            }
        }
        tokio::time::sleep(self.hold).await;
        self.current.fetch_sub(1, Ordering::SeqCst);
        self.busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&workspace_id);
        Ok(self.settings.clone())
    }
}
