//! End to end: the started [`Engine`] with the real crm-channels adapters, built per
//! workspace by [`ProviderChannels`] from the workspace's settings in the store
//! (Resend for email, Twilio for WhatsApp, credentials as `secret://` references),
//! pointed at loopback fake providers (wiremock); webhooks signed with Resend's real
//! scheme go through the engine's [`InboundPipeline`](crm_core::outreach::inbound::InboundPipeline).
//!
//! The scenario observes only through the engine's public handles, the anomaly
//! notifier it was given and the store's reads (the event log among them); the only
//! row it writes is the workspace registration a host makes. Time is a
//! [`ManualClock`] the case moves forward while the loops run.
//!
//! The sequence is an email step and a WhatsApp step with an approved template
//! (`ContentSid`): email is paused by the failure-rate anomaly, WhatsApp still goes out,
//! and every enrollment ends (completed, bounced, replied) with none left pending.
//!
//! The workspace turns auto-enrichment on and the engine is given a waterfall with a
//! scripted provider: every imported contact is enriched by the engine's worker.

mod fakes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crm_channels::resolver::ProviderChannels;
use crm_core::anomaly::{FAILURE_RATE, RecordingAnomalyNotifier};
use crm_core::clock::{Clock, ManualClock};
use crm_core::engine::{Engine, EngineConfig};
use crm_core::enrichment::{LookupKind, Waterfall};
use crm_core::events::kinds::{
    ACTIVITY_LOGGED, ANOMALY_RAISED, APPROVAL_DECIDED, APPROVAL_REQUESTED, CONTACT_CREATED,
    CONTACT_ENRICHED, ENROLLMENT_BOUNCED, ENROLLMENT_COMPLETED, ENROLLMENT_ENROLLED,
    ENROLLMENT_REPLIED, ENROLLMENT_STEP_SENT, OUTBOX_FAILED, OUTBOX_SENT, SEQUENCE_CREATED,
};
use crm_core::ids::{ContactId, UserId, WorkspaceId};
use crm_core::inbound::InboundWebhook;
use crm_core::intake::{CsvRows, Manifest};
use crm_core::model::{
    ActivityKind, Channel, Contact, EnrollmentState, IntakeSource, OutboxMessage, OutboxStatus,
    StepDelay, WhatsAppTemplate,
};
use crm_core::outreach::approvals::StaticApprovers;
use crm_core::outreach::dispatch::DispatcherConfig;
use crm_core::outreach::inbound::{DeliveryOutcome, InboundEndpoint};
use crm_core::store::{ActivityFilter, DynStore, EnrollmentFilter, Page, Scope};
use serde_json::json;
use wiremock::MockServer;

use self::fakes::{
    CONTENT_SID, FakeResend, REFUSED, leads, mount_twilio, resend_webhook, settings, signed,
};
use super::engine_lifecycle::{approve, eventually, register};
use crate::enrichment::{CallLog, Script, ScriptedProvider};
use crate::store::fixtures::{base, new_sequence, ok};

/// How many contacts the provider refuses, enough for the failure-rate rule (more
/// than 20 % of at least 10 attempts in the last hour).
const REFUSED_COUNT: usize = 10;

/// CSV import, scoring, enrollment, approval, a send that fails twice with 500 and
/// then succeeds, delivered and opened webhooks, a bounce for one contact, a reply for
/// another, then a batch the provider refuses until the failure-rate anomaly pauses
/// the channel, and shutdown. See the module docs for what waits on other pieces.
#[allow(clippy::too_many_lines)] // one story, told in order
pub async fn csv_to_reply_through_real_adapters(store: Arc<DynStore>) {
    let (ws, approver, clock) = (WorkspaceId::new(), UserId::new(), ManualClock::new(base()));
    let time: Arc<dyn Clock> = Arc::new(clock.clone());
    let (resend, resend_server) = FakeResend::start(2).await;
    let twilio_server = MockServer::start().await;
    mount_twilio(&twilio_server).await;

    // The host registers the workspace with its settings; the engine reads them.
    let (settings, secrets) = settings(&resend_server, &twilio_server);
    register(&*store, ws, settings).await;
    let channels = ProviderChannels::new(Arc::new(secrets)).with_clock(time.clone());
    let notifier = RecordingAnomalyNotifier::new();
    // A fake enrichment provider `p` that knows every contact's title.
    let calls = CallLog::new();
    let enrichment =
        Arc::new(ScriptedProvider::new("p", &calls).answering(LookupKind::Contact, Script::Hit));
    let dispatcher = DispatcherConfig::default()
        .with_env_dry_run(false)
        .with_backoff(chrono::Duration::seconds(1), chrono::Duration::seconds(5));
    let config = EngineConfig::default()
        .with_dispatcher(dispatcher)
        .with_poll_interval(Duration::from_millis(5))
        .with_schedules("0 * * * * *", "0 * * * * *", "0 0 3 * * *");
    let engine = Engine::builder(store.clone())
        .clock(time)
        .channels(Arc::new(channels))
        .approvers(Arc::new(StaticApprovers::new().with_approver(ws, approver)))
        .anomaly_notifier(Arc::new(notifier.clone()))
        .enrichment(Waterfall::new().then(LookupKind::Contact, enrichment))
        .config(config)
        .build()
        .expect("a valid engine");
    let running = engine.start().expect("the engine starts");

    // CSV import: the engine's worker turns the rows into contacts.
    let contacts = import(
        &engine,
        ws,
        "first.csv",
        &leads("Lead", 3, "+49151123456"),
        3,
    )
    .await;
    let (ada, grace, alan) = (contacts[0].id, contacts[1].id, contacts[2].id);

    // Auto-enrichment: each new contact's `contact.created` is routed to an enrichment
    // job; the provider's title is written back with its provenance.
    let store_ = store.clone();
    eventually("the imported contacts are enriched", || async {
        let found = store_.list_contacts(ws, Page::first(100)).await.ok()?;
        found
            .iter()
            .all(|c| c.title.as_deref() == Some("p"))
            .then_some(())
    })
    .await;

    // Enrollment in two email steps, the second two business days after the first;
    // a person approves each message.
    let mut sequence = new_sequence(ws);
    let mut follow_up = sequence.steps[0].clone();
    follow_up.channel = Channel::WhatsApp;
    follow_up.template.subject = None;
    follow_up.delay = StepDelay::BusinessDays(2);
    follow_up.options.whatsapp_template = Some(WhatsAppTemplate {
        content_sid: CONTENT_SID.into(),
        variables: [("1".to_owned(), "{{first_name}}".to_owned())].into(),
    });
    sequence.steps.push(follow_up);
    let sequence = engine
        .sequences()
        .create(&sequence)
        .await
        .expect("sequence");
    enroll_and_approve(&engine, ws, approver, &contacts, sequence.id).await;

    // Sends: the provider fails twice with 500; retries wait for the (manual) clock.
    let sent: Vec<OutboxMessage> = eventually("every message is sent", || async {
        clock.advance(chrono::Duration::seconds(2));
        let all = store.list_outbox(ws, None, Page::first(10)).await.ok()?;
        all.iter()
            .all(|m| m.status == OutboxStatus::Sent)
            .then_some(all)
    })
    .await;
    let calls = resend.calls();
    assert_eq!(
        calls.iter().filter(|c| c.status == 500).count(),
        2,
        "{calls:?}"
    );
    let mut succeeded: HashMap<String, u32> = HashMap::new();
    for call in calls.iter().filter(|c| c.status == 200) {
        *succeeded.entry(call.key.clone()).or_default() += 1;
    }
    for m in &sent {
        let key = m.id.to_string();
        assert_eq!(
            succeeded.get(&key),
            Some(&1),
            "sent once, keyed by its outbox id"
        );
        let expected = format!("re-{key}");
        assert_eq!(m.provider_message_id.as_deref(), Some(expected.as_str()));
    }
    assert_eq!(succeeded.len(), 3, "nothing else was sent: {calls:?}");

    // Webhooks, signed as Resend signs them, through the engine's inbound pipeline:
    // verified, deduplicated in the store, parsed and handled in one call each.
    let webhook = resend_webhook();
    let endpoint = InboundEndpoint::new(ws, Arc::new(resend_webhook()));
    let provider_id = |contact: ContactId| {
        let m = sent
            .iter()
            .find(|m| m.contact_id == Some(contact))
            .expect("sent");
        m.provider_message_id.clone().expect("provider id")
    };
    let now = clock.now().timestamp();
    let deliveries = [
        (
            "msg_1",
            json!({ "type": "email.delivered", "data": { "email_id": provider_id(ada) } }),
        ),
        (
            "msg_2",
            json!({ "type": "email.opened", "data": { "email_id": provider_id(ada) } }),
        ),
        (
            "msg_3",
            json!({ "type": "email.bounced", "data": {
            "email_id": provider_id(grace), "to": ["lead1@e2e.example"],
            "bounce": { "type": "Permanent" } } }),
        ),
        (
            "msg_4",
            json!({ "type": "email.received", "data": {
            "from": "Lead2 Lead <lead2@e2e.example>", "text": "Tell me more" } }),
        ),
    ];
    for (id, body) in &deliveries {
        let outcome = engine
            .inbound_pipeline()
            .receive(&endpoint, &signed(&webhook, id, now, body))
            .await;
        assert!(outcome.is_accepted(), "{id}: {outcome:?}");
    }
    let again = signed(&webhook, "msg_1", now, &deliveries[0].1);
    let outcome = engine.inbound_pipeline().receive(&endpoint, &again).await;
    assert!(
        matches!(outcome, DeliveryOutcome::Duplicate { .. }),
        "{outcome:?}"
    );
    let mut tampered = signed(&webhook, "msg_5", now, &json!({ "type": "email.opened" }));
    tampered.body = br#"{"type":"email.clicked"}"#.to_vec();
    let outcome = engine
        .inbound_pipeline()
        .receive(&endpoint, &tampered)
        .await;
    assert!(
        matches!(outcome, DeliveryOutcome::BadSignature(_)),
        "{outcome:?}"
    );
    assert_eq!(webhook.provider(), endpoint.provider());

    // A batch the provider refuses for good: each failed send records `SendFailed`,
    // and the engine's periodic scan raises the failure-rate anomaly, which pauses
    // email for the workspace and reaches the notifier.
    let batch = import(
        &engine,
        ws,
        "batch.csv",
        &leads(REFUSED, REFUSED_COUNT, "+49151987654"),
        3 + REFUSED_COUNT,
    )
    .await;
    let batch: Vec<Contact> = batch
        .into_iter()
        .filter(|c| c.first_name.starts_with(REFUSED))
        .collect();
    enroll_and_approve(&engine, ws, approver, &batch, sequence.id).await;
    eventually("the refused messages failed", || async {
        clock.advance(chrono::Duration::seconds(2));
        let all = store
            .list_outbox(ws, Some(OutboxStatus::Failed), Page::first(100))
            .await
            .ok()?;
        (all.len() == REFUSED_COUNT).then_some(())
    })
    .await;
    // The scheduler enqueues the runs of its last two ticks (in clock time), so the
    // clock stands still on the scan's instant (every minute here) until it runs.
    let second = i64::from(chrono::Timelike::second(&clock.now()));
    clock.advance(chrono::Duration::seconds((60 - second) % 60 + 60));
    let raised = eventually("the failure-rate anomaly reaches the notifier", || async {
        let seen = notifier.notified();
        (!seen.is_empty()).then_some(seen)
    })
    .await;
    assert_eq!(raised.len(), 1, "raised once: {raised:?}");
    assert_eq!(raised[0].rule, FAILURE_RATE, "{raised:?}");
    assert!(
        engine
            .anomalies()
            .is_channel_paused(ws, Channel::Email)
            .await
            .expect("pause state"),
        "email is paused for the workspace"
    );

    let report = running.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    let outbox = ok(
        store.list_outbox(ws, None, Page::first(100)).await,
        "outbox",
    );
    assert!(outbox.iter().all(|m| m.lease.is_none()), "no lease left");

    // Four days on, the WhatsApp follow-up is due. Email is paused, WhatsApp is not:
    // the approved template goes out through Twilio to Ada and to the refused
    // contacts (whose failed email step was skipped); the bounced and replied
    // contacts get nothing more.
    clock.advance(chrono::Duration::days(4));
    let calls_before = resend.calls().len();
    engine.run_due().await.expect("one pass");
    let pending = engine
        .inbox()
        .list_pending(ws, Page::first(100))
        .await
        .expect("pending");
    for item in pending {
        approve(engine.inbox(), ws, item.id, approver).await;
    }
    engine.run_due().await.expect("another pass");
    engine.run_due().await.expect("the sends");
    // After the last step the enrollment waits for a reply, then completes.
    clock.advance(chrono::Duration::days(30));
    engine.run_due().await.expect("a last pass");
    assert_eq!(resend.calls().len(), calls_before, "email stays paused");
    let twilio: Vec<_> = twilio_server.received_requests().await.unwrap_or_default();
    assert_eq!(twilio.len(), 1 + REFUSED_COUNT, "one WhatsApp message each");
    let body = String::from_utf8_lossy(&twilio[0].body).into_owned();
    assert!(
        body.contains(&format!("ContentSid={CONTENT_SID}")),
        "{body}"
    );
    // Each goes to the contact's imported mobile number, unaltered, in E.164.
    let bodies: Vec<String> = twilio
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    let phones = std::iter::once("+4915112345600".to_owned())
        .chain((0..REFUSED_COUNT).map(|i| format!("+49151987654{i:02}")));
    for phone in phones {
        let to = format!("To=whatsapp%3A{}", phone.replace('+', "%2B"));
        assert_eq!(
            bodies.iter().filter(|b| b.contains(&to)).count(),
            1,
            "one WhatsApp message to {phone}: {bodies:?}"
        );
    }
    let outbox = ok(
        store.list_outbox(ws, None, Page::first(100)).await,
        "outbox",
    );
    let count = |contact| {
        outbox
            .iter()
            .filter(|m| m.contact_id == Some(contact))
            .count()
    };
    assert_eq!(
        (count(ada), count(grace), count(alan)),
        (2, 1, 1),
        "nothing after the bounce and reply"
    );
    let sent = outbox
        .iter()
        .filter(|m| m.status == OutboxStatus::Sent)
        .count();
    assert_eq!(
        sent,
        3 + 1 + REFUSED_COUNT,
        "three emails, the WhatsApp messages"
    );

    // Enrollments: none left pending. Ada completed the sequence, the bounced and the
    // replied ones stopped, the refused ones completed it past their skipped step.
    let enrollments = ok(
        store
            .list_enrollments(ws, &EnrollmentFilter::default(), Page::first(100))
            .await,
        "list enrollments",
    );
    let state = |contact| {
        enrollments
            .iter()
            .find(|e| e.contact_id == contact)
            .expect("enrolled")
            .state
    };
    assert_eq!(state(grace), EnrollmentState::Bounced);
    assert_eq!(state(alan), EnrollmentState::Replied);
    assert_eq!(state(ada), EnrollmentState::Completed);
    let states: Vec<_> = enrollments.iter().map(|e| e.state).collect();
    assert!(
        states.iter().all(|s| matches!(
            s,
            EnrollmentState::Completed
                | EnrollmentState::Bounced
                | EnrollmentState::Replied
                | EnrollmentState::Failed
                | EnrollmentState::Stopped
        )),
        "no enrollment left pending: {states:?}"
    );

    // Activities: the feedback loops recorded what the provider told.
    let activities = ok(
        store
            .list_activities(ws, &ActivityFilter::default(), 1000)
            .await,
        "activities",
    );
    let of = |kind: ActivityKind| activities.iter().filter(|a| a.kind == kind).count();
    let whatsapp = 1 + REFUSED_COUNT;
    assert_eq!(of(ActivityKind::MessageSent), 3 + whatsapp);
    assert_eq!(of(ActivityKind::Delivered), 1);
    assert_eq!(of(ActivityKind::Opened), 1);
    assert_eq!(of(ActivityKind::Bounced), 1);
    assert_eq!(of(ActivityKind::ReplyReceived), 1);
    assert_eq!(of(ActivityKind::SendFailed), REFUSED_COUNT);

    // The event log: every state change above appended its event, in order.
    let events = ok(
        store.list_events(Scope::Workspace(ws), 0, 1000).await,
        "list events",
    );
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let count = |kind: &str| kinds.iter().filter(|k| **k == kind).count();
    let first = |kind: &str| {
        kinds
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_else(|| panic!("no {kind} event in {kinds:?}"))
    };
    let total = 3 + REFUSED_COUNT;
    assert_eq!(
        count(CONTACT_CREATED),
        total,
        "one per imported row: {kinds:?}"
    );
    assert_eq!(count(ENROLLMENT_ENROLLED), total, "{kinds:?}");
    assert_eq!(count(APPROVAL_DECIDED), total + whatsapp, "{kinds:?}");
    assert!(count(APPROVAL_REQUESTED) >= total, "{kinds:?}");
    assert_eq!(
        count(OUTBOX_SENT),
        3 + whatsapp,
        "each sent once: {kinds:?}"
    );
    assert_eq!(count(ENROLLMENT_STEP_SENT), 3 + whatsapp, "{kinds:?}");
    assert_eq!(count(ENROLLMENT_COMPLETED), whatsapp, "{kinds:?}");
    assert_eq!(count(ENROLLMENT_BOUNCED), 1, "{kinds:?}");
    assert_eq!(count(ENROLLMENT_REPLIED), 1, "{kinds:?}");
    assert_eq!(count(OUTBOX_FAILED), REFUSED_COUNT, "{kinds:?}");
    assert_eq!(count(ANOMALY_RAISED), 1, "{kinds:?}");
    assert!(count(ACTIVITY_LOGGED) >= 3 + 4 + REFUSED_COUNT, "{kinds:?}");
    assert!(count(CONTACT_ENRICHED) >= 3, "{kinds:?}");
    let order = [
        CONTACT_CREATED,
        CONTACT_ENRICHED,
        SEQUENCE_CREATED,
        ENROLLMENT_ENROLLED,
        APPROVAL_REQUESTED,
        APPROVAL_DECIDED,
        OUTBOX_SENT,
        ENROLLMENT_STEP_SENT,
        ENROLLMENT_BOUNCED,
        ENROLLMENT_REPLIED,
        OUTBOX_FAILED,
        ANOMALY_RAISED,
        ENROLLMENT_COMPLETED,
    ];
    for pair in order.windows(2) {
        assert!(
            first(pair[0]) < first(pair[1]),
            "{} comes before {}: {kinds:?}",
            pair[0],
            pair[1]
        );
    }
}

/// Imports `csv` through the engine's intake and waits until the workspace has
/// `total` contacts; returns them in import order (by email).
async fn import(
    engine: &Engine,
    ws: WorkspaceId,
    name: &str,
    csv: &str,
    total: usize,
) -> Vec<Contact> {
    let rows = CsvRows::new(csv.as_bytes()).expect("csv");
    engine
        .intake()
        .import(ws, IntakeSource::Csv, name, &Manifest::standard(), rows)
        .await
        .expect("import");
    let store = engine.store().clone();
    let mut found: Vec<Contact> = eventually("the worker created the contacts", || async {
        let found = store.list_contacts(ws, Page::first(100)).await.ok()?;
        (found.len() == total).then_some(found)
    })
    .await;
    found.sort_by(|a, b| a.first_name.cmp(&b.first_name));
    found
}

/// Enrolls `contacts` in `sequence` and approves each first message as `approver`.
async fn enroll_and_approve(
    engine: &Engine,
    ws: WorkspaceId,
    approver: UserId,
    contacts: &[Contact],
    sequence: crm_core::ids::SequenceId,
) {
    for c in contacts {
        engine
            .enroller()
            .enroll(ws, c.id, sequence)
            .await
            .expect("enrolled");
    }
    let items = eventually("the messages wait for approval", || async {
        let items = engine
            .inbox()
            .list_pending(ws, Page::first(100))
            .await
            .ok()?;
        (items.len() == contacts.len()).then_some(items)
    })
    .await;
    for item in items {
        approve(engine.inbox(), ws, item.id, approver).await;
    }
}
