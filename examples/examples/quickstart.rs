//! Quickstart: an account, contacts and a deal, then the whole outreach flow through
//! one `Engine`, on the embedded memory store with a manual clock and the dry-run
//! adapter. No services needed:
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! A three-step sequence runs for three contacts over one working week: enrollment (a
//! second one refused), runner ticks, the approval inbox (approved by hand, edited, and
//! approved by a graduated rule), dispatch in dry-run, a reply and an out-of-office
//! answer, and the send forecast. Every line printed reports what the engine did. The
//! simulated week drives the engine's parts by the manual clock; at the end the engine
//! runs its background loops for a moment and shuts down with a report.
//!
//! Set `RUST_LOG=info` to see the engine's tracing spans and logs as well.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::sync::Arc;

use chrono::Weekday::{Fri, Mon, Thu, Tue, Wed};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use crm_core::engine::{Engine, EngineConfig};
use crm_core::ids::{ContactId, EnrollmentId, OutboxMessageId, UserId, WorkspaceId};
use crm_core::model::{
    Account, ApprovalItem, ApprovalRule, ApprovalStatus, Channel, Contact, Deal, EnrollmentState,
    NewAccount, NewContact, NewDeal, OutboxMessage, OutboxStatus, Pipeline, RuleConditions,
    SendWindow, Sequence, SequenceStep, Stage, StageOutcome, StepDelay, Template, Workspace,
    parse_time_zone,
};
use crm_core::outreach::approvals::{ApprovalInbox, StaticApprovers};
use crm_core::outreach::dispatch::{DispatcherConfig, DryRunChannel};
use crm_core::outreach::forecast::{ForecastOutcome, HoldReason};
use crm_core::outreach::inbound::InboundOutcome;
use crm_core::outreach::runner::StaticMergeValues;
use crm_core::outreach::settings::WorkspaceSettings;
use crm_core::store::ApprovalStoreExt;
use crm_core::store::{EnrollmentFilter, Page};
use crm_core::{Clock, Currency, DynStore, InboundEvent, ManualClock, Money};
use crm_store_memory::MemoryStore;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// The engine, one workspace, and what the printout has shown so far.
struct Flow {
    store: Arc<DynStore>,
    clock: ManualClock,
    ws: WorkspaceId,
    engine: Engine,
    contacts: HashMap<ContactId, Contact>,
    enrollments: HashMap<EnrollmentId, (EnrollmentState, i32, Option<DateTime<Utc>>)>,
    messages: HashMap<OutboxMessageId, OutboxStatus>,
}

#[tokio::main]
async fn main() -> Res {
    examples::init_tracing();
    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    let monday = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).single();
    let monday = monday.ok_or("bad date")?; // 10:00 in Berlin, 04:00 in New York
    let clock = ManualClock::new(monday);
    let ws = WorkspaceId::new();
    section(&clock, "CRM basics");
    let contacts = crm_basics(&store, &clock, ws).await?;

    // The engine: the store, the manual clock, the workspace's settings, `extra.*`
    // merge values, graduated approval rules before a person, Maria as approver, and
    // dry-run forced by the configuration. No real adapter is registered: in dry-run
    // every channel goes to the dry-run one.
    let tz = parse_time_zone("Europe/Berlin")?;
    let settings = WorkspaceSettings::default().with_default_time_zone(tz);
    let extra = BTreeMap::from([("sender".to_owned(), "Maria from Northwind".to_owned())]);
    let time: Arc<dyn Clock> = Arc::new(clock.clone());
    let maria = UserId::new();
    let dispatcher = DispatcherConfig::default().with_env_dry_run(false);
    let config = EngineConfig::default()
        .with_name("quickstart")
        // Quick loops, so the short background run at the end shows them working.
        .with_poll_interval(std::time::Duration::from_millis(20))
        .with_dispatcher(dispatcher)
        .with_dry_run(true);
    // The workspace is registered in the store with its settings: the engine reads
    // them from there (and lists the workspace for its periodic jobs).
    store
        .insert_workspace(&Workspace::new(ws, "Northwind", settings, clock.now())?)
        .await?;
    let engine = Engine::builder(store.clone())
        .clock(time.clone())
        .merge_values(Arc::new(StaticMergeValues(extra)))
        .graduated_approval()
        .approvers(Arc::new(StaticApprovers::new().with_approver(ws, maria)))
        .dry_run_channel(DryRunChannel::new(Channel::Email).with_clock(time))
        .config(config)
        .build()?;
    let inbox = engine.inbox().clone();
    let mut flow = Flow {
        store: store.clone(),
        clock: clock.clone(),
        ws,
        engine: engine.clone(),
        contacts: contacts.iter().map(|c| (c.id, c.clone())).collect(),
        enrollments: HashMap::new(),
        messages: HashMap::new(),
    };

    section(&clock, "A three-step sequence");
    let sequence = Sequence::create(ws, "Acme intro", steps(), clock.now())?;
    let mut typo = sequence.clone();
    typo.steps[0].template.body = "Hi {{frist_name}}".into();
    let editor = engine.sequences();
    if let Err(e) = editor.create(&typo).await {
        let why = std::error::Error::source(&e).map(ToString::to_string);
        println!("rejected  {e}: {}", why.unwrap_or_default());
    }
    let sequence = editor.create(&sequence).await?;
    for (i, s) in sequence.steps.iter().enumerate() {
        let (n, channel, body) = (i + 1, s.channel, &s.template.body);
        let when = match s.delay {
            StepDelay::Hours(0) => "at once".to_owned(),
            StepDelay::Hours(h) => format!("after {h} h"),
            StepDelay::BusinessDays(d) => format!("after {d} business days"),
        };
        let person = if s.requires_approval {
            ", a person always approves"
        } else {
            ""
        };
        let window = s
            .window
            .as_ref()
            .map(|w| (w.start_hour, w.end_hour, w.weekdays.len()));
        let (from, to, days) = window.unwrap_or((0, 24, 7));
        println!(
            "step {n}    {channel:<8} {when}, {from}-{to}h local on {days} days a week{person}"
        );
        println!("          \"{body}\"");
    }

    section(&clock, "Enrollment");
    let enroller = engine.enroller();
    for c in &contacts {
        enroller.enroll(ws, c.id, sequence.id).await?;
    }
    flow.changes().await?;
    let again = enroller.enroll(ws, contacts[0].id, sequence.id);
    match again.await {
        Err(e) => println!("refused   Ada again: {e}"),
        Ok(_) => return Err("a second enrollment of Ada should be refused".into()),
    }

    section(&clock, "Monday: tick, then dispatch");
    flow.cycle().await?;

    section(&clock, "Approval inbox: edit one, approve one");
    let pending = flow.pending(&inbox).await?;
    for (item, m) in &pending {
        let line = format!("step {} {} waits: {}", step_no(m), m.channel, reason(item));
        flow.say(m.contact_id, line);
    }
    // Alan's is edited first and Ada's approved as drafted last, so the template's
    // latest decision is a clean approval.
    let is_alan = |m: &OutboxMessage| flow.name(m.contact_id) == "Alan";
    let (alan, ada): (Vec<_>, Vec<_>) = pending.iter().partition(|(_, m)| is_alan(m));
    for (item, m) in alan {
        clock.advance(Duration::minutes(5));
        let body = format!(
            "{}\nP.S. Loved your talk on computable numbers.",
            item.original_body
        );
        inbox.edit_and_approve(ws, item.id, maria, &body).await?;
        flow.say(m.contact_id, "edited (adds a P.S.) and approved by Maria");
    }
    for (item, m) in ada {
        clock.advance(Duration::minutes(5));
        inbox.approve(ws, item.id, maria).await?;
        flow.say(m.contact_id, "approved as drafted by Maria");
    }
    let key = pending.first().and_then(|(i, _)| i.template_key.clone());
    let streak = store
        .clean_approval_streak(ws, &key.unwrap_or_default())
        .await?;
    println!("streak    step 1 approved without edits {streak} time(s) in a row");
    let conditions = RuleConditions {
        max_step_index: Some(0),
        min_clean_approvals: Some(1),
        ..Default::default()
    };
    let name = "first emails once one went out unedited";
    let mut rule = ApprovalRule::new(ws, Channel::Email, name, conditions, clock.now())?;
    rule.daily_cap = Some(20);
    store.insert_approval_rule(&rule).await?;
    println!("rule      \"{name}\" on for email: step index 0 (step 1), streak >= 1, 20 a day");
    flow.dispatch().await?;

    clock.set(monday + Duration::hours(5));
    section(&clock, "Monday afternoon: New York opens");
    flow.cycle().await?;

    section(&clock, "Tuesday, Wednesday: tick and dispatch hourly");
    flow.run_until(monday + Duration::hours(53)).await?;

    clock.advance(Duration::minutes(30));
    section(&clock, "Approval inbox: WhatsApp asks a person");
    let pending = flow.pending(&inbox).await?;
    for (_, m) in &pending {
        let line = format!("step {} {} waits: \"{}\"", step_no(m), m.channel, m.body);
        flow.say(m.contact_id, line);
    }
    let ada = pending
        .iter()
        .find(|(_, m)| flow.name(m.contact_id) == "Ada");
    if let Some((item, m)) = ada {
        inbox.approve(ws, item.id, maria).await?;
        flow.say(
            m.contact_id,
            "approved by Maria; the others stay in the inbox",
        );
    }
    flow.dispatch().await?;

    clock.advance(Duration::minutes(30));
    section(&clock, "Inbound: a reply and an out-of-office");
    let sent = store.list_outbox(ws, Some(OutboxStatus::Sent), Page::first(100));
    let grace = contacts[1].id;
    let intro = sent
        .await?
        .into_iter()
        .find(|m| m.contact_id == Some(grace));
    let reply = InboundEvent::Reply {
        channel: Channel::Email,
        from: "grace@acme.example".into(),
        text: Some("Sounds interesting. Can we talk on Thursday?".into()),
        in_reply_to: intro.and_then(|m| m.provider_message_id),
    };
    flow.say(Some(grace), "replies to the first email");
    flow.inbound(grace, &reply).await?;
    let ooo = InboundEvent::OutOfOffice {
        channel: Channel::Email,
        address: "alan@acme.example".into(),
        return_on: NaiveDate::from_ymd_opt(2026, 11, 30),
    };
    let alan = contacts[2].id;
    flow.say(Some(alan), "auto-replies: out of office until Mon 30 Nov");
    flow.inbound(alan, &ooo).await?;
    flow.changes().await?;
    let items = inbox.list(ws, None, Page::first(100)).await?;
    let count = |s: ApprovalStatus| items.iter().filter(|i| i.status == s).count();
    let pending = count(ApprovalStatus::Pending);
    let withdrawn = count(ApprovalStatus::Withdrawn);
    println!("inbox     {pending} pending, {withdrawn} withdrawn with their cancelled messages");

    section(&clock, "Thursday, Friday: tick and dispatch hourly");
    flow.run_until(monday + Duration::hours(102)).await?;

    section(&clock, "Send forecast for the next 7 days");
    for entry in engine.forecast().forecast(ws, 7).await? {
        let what = match &entry.outcome {
            ForecastOutcome::Planned {
                due_at,
                at,
                needs_approval,
                postponed_by,
            } => {
                let mut line = format!("planned {}", flow.local(entry.contact_id, *at));
                for why in postponed_by {
                    let due = flow.local(entry.contact_id, *due_at);
                    line.push_str(&format!(" (due {due}, moved: {})", hold(why)));
                }
                if *needs_approval {
                    line.push_str(", a person must approve it");
                }
                line
            }
            ForecastOutcome::HeldBack { reason, .. } => format!("held back: {}", hold(reason)),
            other => format!("{other:?}"),
        };
        let line = format!("step {} {:<8} {what}", entry.step + 1, entry.channel);
        flow.say(Some(entry.contact_id), line);
    }

    section(&clock, "Final state of each enrollment");
    let all = EnrollmentFilter::default();
    let outbox = store.list_outbox(ws, None, Page::first(100)).await?;
    for e in store.list_enrollments(ws, &all, Page::first(100)).await? {
        let mut line = e.state.to_string();
        if let Some(t) = e.next_run_at {
            line.push_str(&format!(", next run {}", flow.local(e.contact_id, t)));
        }
        let last = outbox.iter().rfind(|m| m.enrollment_id == Some(e.id));
        if let Some(m) = last {
            let (n, channel, status) = (step_no(m), m.channel, m.status);
            line.push_str(&format!("; last message: step {n} {channel}, {status}"));
        }
        flow.say(Some(e.contact_id), line);
    }
    let recorded = engine.dispatcher().dry_run_channel().total();
    println!("dry run   the dry-run adapter recorded {recorded} message(s); none left the machine");

    section(&clock, "The engine in the background");
    // A host calls `start` once and `shutdown` on exit: the runner, the dispatcher,
    // the job worker (intake, scoring, approval expiry, anomaly scans) and the
    // scheduler of periodic jobs run on Tokio until then.
    let running = engine.start()?;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let report = running.shutdown().await;
    let (routed, periodic, jobs) = (
        report.events_routed,
        report.periodic_enqueued,
        report.jobs.succeeded,
    );
    println!(
        "engine    routed {routed} event(s) to their jobs, scheduled {periodic} periodic job(s), ran {jobs} job(s)"
    );
    let clean = if report.is_clean() {
        "every loop stopped in time"
    } else {
        "some loops were abandoned"
    };
    println!("shutdown  {clean}");
    Ok(())
}

/// An account, three contacts in three time zones, a typed error for bad input, and a
/// deal on a pipeline.
async fn crm_basics(
    store: &Arc<DynStore>,
    clock: &ManualClock,
    ws: WorkspaceId,
) -> Res<Vec<Contact>> {
    println!("workspace {ws} on the {} store", store.backend_name());
    let acme = NewAccount {
        name: "Acme GmbH".into(),
        domain: Some("https://www.acme.example/".into()),
        industry: Some("manufacturing".into()),
        ..Default::default()
    };
    let acme = Account::create(ws, acme, clock.now())?;
    let acme = store.insert_account(&acme).await?;
    let domain = acme.domain.as_ref().map_or("-", |d| d.as_str());
    println!("account   {} (domain {domain})", acme.name);
    let people = [
        ("Ada Lovelace", "+4915112345678", "Europe/Berlin"),
        ("Grace Hopper", "+12125550142", "America/New_York"),
        ("Alan Turing", "+447700900123", "Europe/London"),
    ];
    let mut contacts = Vec::new();
    for (name, phone, tz) in people {
        let (first, last) = name.split_once(' ').ok_or("two names")?;
        let new = NewContact {
            first_name: first.into(),
            last_name: last.into(),
            email: Some(format!("{}@acme.example", first.to_lowercase())),
            phone: Some(phone.into()),
            time_zone: Some(tz.into()),
            account_id: Some(acme.id),
            ..Default::default()
        };
        let contact = Contact::create(ws, new, clock.now())?;
        contacts.push(store.insert_contact(&contact).await?);
        println!("contact   {name:<13} {phone:<15} {tz}");
    }
    // Bad input is a typed error, never a panic.
    let bad = NewContact {
        email: Some("not-an-email".into()),
        ..Default::default()
    };
    if let Err(e) = Contact::create(ws, bad, clock.now()) {
        println!("rejected  {e}");
    }
    let stages = vec![
        Stage::open("Qualified", 20)?,
        Stage::open("Proposal", 50)?,
        Stage::new("Won", 100, StageOutcome::Won)?,
        Stage::new("Lost", 0, StageOutcome::Lost)?,
    ];
    let pipeline = Pipeline::create(ws, "New business", stages, clock.now())?;
    let pipeline = store.insert_pipeline(&pipeline).await?;
    let deal = NewDeal {
        pipeline_id: pipeline.id,
        stage_id: pipeline.stages[0].id,
        name: "Acme rollout".into(),
        amount: Money::new(4_800_000, Currency::new("EUR")?)?,
        account_id: Some(acme.id),
        contact_id: contacts.first().map(|c| c.id),
        owner_id: None,
        expected_close: None,
    };
    let deal = store
        .insert_deal(&Deal::create(ws, deal, clock.now())?)
        .await?;
    let (amount, stage) = (&deal.amount, &pipeline.stages[0].name);
    println!(
        "deal      {} {amount}, stage {stage} of {}",
        deal.name, pipeline.name
    );
    Ok(contacts)
}

/// Email at once, WhatsApp two business days later (a person always approves it), a
/// follow-up email two business days after that; all inside local office hours.
fn steps() -> Vec<SequenceStep> {
    let step = |channel: Channel, subject: Option<&str>, body: &str, delay| SequenceStep {
        channel,
        template: Template {
            subject: subject.map(Into::into),
            body: body.into(),
        },
        delay,
        window: Some(SendWindow {
            start_hour: 9,
            start_minute: 0,
            end_hour: 17,
            end_minute: 0,
            weekdays: vec![Mon, Tue, Wed, Thu, Fri],
        }),
        requires_approval: channel == Channel::WhatsApp,
        options: crm_core::model::StepOptions {
            allow_free_form: channel == Channel::WhatsApp,
            ..Default::default()
        },
    };
    let intro = "Hi {{first_name}}, teams in {{account.industry}} quote twice as fast with us. \
                 Worth 15 minutes? {{extra.sender}}";
    let nudge =
        "Hi {{first_name}}, {{extra.sender}} here. Did my note about {{company}} reach you?";
    let last =
        "{{first_name}}, last nudge: shall I send a two-page summary for the {{title | team}}?";
    let (now, later) = (StepDelay::Hours(0), StepDelay::BusinessDays(2));
    let subject = "{{company}} and faster quotes";
    vec![
        step(Channel::Email, Some(subject), intro, now),
        step(Channel::WhatsApp, None, nudge, later),
        step(Channel::Email, Some(&format!("Re: {subject}")), last, later),
    ]
}

impl Flow {
    /// One runner tick and one dispatch batch at the clock's time.
    async fn cycle(&mut self) -> Res {
        let report = self.engine.runner().tick().await?;
        if let Some(t) = report.tenant(self.ws).filter(|t| t.due > 0) {
            let (due, started, queued, later) = (t.due, t.started, t.enqueued, t.postponed);
            let line = format!("{due} due: {started} started, {queued} queued, {later} postponed");
            self.log("runner", line);
        }
        self.changes().await?;
        self.dispatch().await
    }

    /// One dispatch batch, then what it changed.
    async fn dispatch(&mut self) -> Res {
        let r = self.engine.dispatcher().dispatch_batch().await?;
        let dry = self.engine.dispatcher().forces_dry_run();
        if r.claimed > 0 {
            let (claimed, sent, held) = (r.claimed, r.sent, r.held_for_approval);
            let line = format!("{claimed} claimed: {sent} sent, {held} held for approval");
            self.log("dispatch", format!("{line} (dry-run forced: {dry})"));
        }
        self.changes().await
    }

    /// Ticks and dispatches every hour until `end`.
    async fn run_until(&mut self, end: DateTime<Utc>) -> Res {
        while self.clock.now() + Duration::hours(1) <= end {
            self.clock.advance(Duration::hours(1));
            self.cycle().await?;
        }
        Ok(())
    }

    /// Hands an inbound event to the handler and says what it changed.
    async fn inbound(&mut self, who: ContactId, e: &InboundEvent) -> Res {
        let line = match self.engine.inbound().handle(self.ws, e).await? {
            InboundOutcome::Handled(a) => {
                let (moved, cancelled) = (a.changed.len(), a.cancelled_messages.len());
                format!("handled: {moved} enrollment(s) moved, {cancelled} message(s) cancelled")
            }
            other => format!("{other:?}"),
        };
        self.say(Some(who), line);
        Ok(())
    }

    /// Prints every enrollment and outbox message that changed since the last call.
    async fn changes(&mut self) -> Res {
        let (store, ws, all) = (self.store.clone(), self.ws, EnrollmentFilter::default());
        for e in store.list_enrollments(ws, &all, Page::first(100)).await? {
            let seen = (e.state, e.current_step, e.next_run_at);
            if self.enrollments.insert(e.id, seen) == Some(seen) {
                continue;
            }
            let mut line = format!("enrollment {}", e.state);
            if e.state.is_running() {
                line.push_str(&format!(" at step {}", e.current_step + 1));
            }
            if let Some(t) = e.next_run_at.filter(|_| e.state.is_running()) {
                line.push_str(&format!(", next run {}", self.local(e.contact_id, t)));
            }
            self.say(Some(e.contact_id), line);
        }
        for m in store.list_outbox(ws, None, Page::first(100)).await? {
            let before = self.messages.insert(m.id, m.status);
            if before == Some(m.status) {
                continue;
            }
            let item = store.find_approval_for_outbox(ws, m.id).await?;
            let what = match m.status {
                OutboxStatus::Pending if before.is_none() => {
                    format!("queued \"{}\"", m.subject.as_deref().unwrap_or(&m.body))
                }
                OutboxStatus::Pending => "released to the outbox".to_owned(),
                OutboxStatus::AwaitingApproval => {
                    format!("held for approval: {}", item.as_ref().map_or("-", reason))
                }
                OutboxStatus::Sent => self.sent_line(&m, item).await?,
                OutboxStatus::Cancelled => {
                    format!("cancelled: {}", m.last_error.as_deref().unwrap_or("-"))
                }
                other => other.to_string(),
            };
            let line = format!("step {} {:<8} {what}", step_no(&m), m.channel);
            self.say(m.contact_id, line);
        }
        Ok(())
    }

    /// `sent to <address> "<text>" (who approved it; the dry-run receipt)`.
    async fn sent_line(&self, m: &OutboxMessage, item: Option<ApprovalItem>) -> Res<String> {
        let by = match item {
            Some(ApprovalItem {
                decided_by_rule: Some(id),
                ..
            }) => {
                let rule = self.store.get_approval_rule(self.ws, id).await?;
                format!("auto-approved by rule \"{}\"", rule.name)
            }
            Some(i) if i.edited_body.is_some() => "edited and approved by a person".to_owned(),
            Some(_) => "approved by a person".to_owned(),
            None => "no approval needed".to_owned(),
        };
        let receipt = m.provider_message_id.iter().flat_map(|r| r.chars());
        let receipt: String = receipt.take(12).collect();
        let head: String = m.body.chars().take(30).collect();
        let to = &m.recipient;
        Ok(format!(
            "sent to {to} \"{head}...\" ({by}; receipt {receipt}...)"
        ))
    }

    /// Pending approval items with their messages, oldest first.
    async fn pending(&self, inbox: &ApprovalInbox) -> Res<Vec<(ApprovalItem, OutboxMessage)>> {
        let mut out = Vec::new();
        for item in inbox.list_pending(self.ws, Page::first(100)).await? {
            let m = self.store.get_outbox(self.ws, item.outbox_message_id);
            out.push((item, m.await?));
        }
        Ok(out)
    }

    fn name(&self, id: Option<ContactId>) -> &str {
        let contact = id.and_then(|id| self.contacts.get(&id));
        contact.map_or("-", |c| c.first_name.as_str())
    }

    /// `at` in the contact's time zone.
    fn local(&self, id: ContactId, at: DateTime<Utc>) -> String {
        let format = "%a %d %b %H:%M %Z";
        match self.contacts.get(&id).and_then(|c| c.time_zone) {
            Some(tz) => at.with_timezone(&tz).format(format).to_string(),
            None => at.format(format).to_string(),
        }
    }

    /// One event line about a contact, stamped with the clock's time.
    fn say(&self, who: Option<ContactId>, what: impl Display) {
        self.log(self.name(who), what);
    }

    fn log(&self, who: &str, what: impl Display) {
        println!("{}  {who:<8} {what}", self.clock.now().format("%a %H:%M"));
    }
}

/// Why the forecast holds a step back or sends it later than due.
fn hold(reason: &HoldReason) -> String {
    match reason {
        HoldReason::Window => "outside the send window".into(),
        HoldReason::Quota { channel, cap } => format!("{channel} daily cap of {cap} used up"),
        HoldReason::TouchLimit { limit } => format!("{limit} touches today already"),
        HoldReason::Approval => "waiting for a person's approval".into(),
        HoldReason::Suppression { reason } => format!("suppressed ({reason:?})"),
        HoldReason::Conflict { detail } => format!("cannot be built: {detail}"),
        HoldReason::Paused => "paused with no resume time".into(),
        other => format!("{other:?}"),
    }
}

/// Why an approval item waits for a person.
fn reason(item: &ApprovalItem) -> &str {
    item.reason.as_deref().unwrap_or("-")
}

fn section(clock: &ManualClock, title: &str) {
    println!(
        "\n== {} | {title}",
        clock.now().format("%a %d %b %H:%M UTC")
    );
}

fn step_no(m: &OutboxMessage) -> i32 {
    m.step_index.unwrap_or(0) + 1
}
