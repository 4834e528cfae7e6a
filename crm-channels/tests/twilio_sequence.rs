//! A WhatsApp sequence step through the real runner, dispatcher and Twilio adapter,
//! against a loopback fake of Twilio's API: the step's template goes out as
//! `ContentSid` + `ContentVariables`, and a free-form step uses the contact's last
//! inbound message from the store for the 24-hour window.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "twilio")]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use common::{http_config, now};
use crm_channels::twilio::{TwilioConfig, TwilioSender, TwilioWhatsAppChannel};
use crm_core::approval::{ApprovalDecision, ApprovalPolicy, ApprovalRequest, PolicyError};
use crm_core::ids::{ApprovalRuleId, WorkspaceId};
use crm_core::model::{
    Activity, ActivityKind, Channel, Contact, EnrollmentState, NewContact, OutboxStatus, Sequence,
    SequenceStep, StepDelay, Template, WhatsAppTemplate,
};
use crm_core::outreach::dispatch::{ChannelRegistry, Dispatcher, DispatcherConfig};
use crm_core::outreach::enroll::{Enroller, SequenceEditor};
use crm_core::outreach::runner::{Runner, RunnerConfig};
use crm_core::outreach::settings::{StaticSettings, WorkspaceSettings};
use crm_core::secret::{SecretRef, SecretString};
use crm_core::store::Page;
use crm_core::{Clock, DynStore, ManualClock};
use crm_store_memory::MemoryStore;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const MESSAGES: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";
const PHONE: &str = "+4915112345678";

/// Approves every send: the test is about what the adapter receives.
#[derive(Debug)]
struct ApproveAll;

#[async_trait]
impl ApprovalPolicy for ApproveAll {
    async fn decide(&self, _: &ApprovalRequest) -> Result<ApprovalDecision, PolicyError> {
        Ok(ApprovalDecision::AutoApprove {
            rule: ApprovalRuleId::new(),
        })
    }
}

struct Setup {
    store: Arc<DynStore>,
    clock: ManualClock,
    ws: WorkspaceId,
    runner: Runner,
    dispatcher: Dispatcher,
}

fn setup(server: &MockServer) -> Setup {
    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(now());
    let time: Arc<dyn Clock> = Arc::new(clock.clone());
    let settings = Arc::new(StaticSettings::new(WorkspaceSettings::default()));
    let config = TwilioConfig::new(
        SID,
        SecretRef::parse("secret://twilio/auth-token:1").unwrap(),
        TwilioSender::From("+14155238886".into()),
    )
    .unwrap()
    .with_http(http_config(&format!("{}/2010-04-01", server.uri())));
    let twilio =
        TwilioWhatsAppChannel::new(config, SecretString::from("twilio-auth-token".to_owned()))
            .unwrap()
            .with_clock(Arc::new(clock.clone()));
    let runner = Runner::new(
        store.clone(),
        time.clone(),
        settings.clone(),
        RunnerConfig::default().with_holder("twilio-sequence-runner"),
    )
    .unwrap();
    let dispatcher = Dispatcher::new(
        store.clone(),
        time,
        settings,
        ChannelRegistry::new().with(Arc::new(twilio)),
        DispatcherConfig::default()
            .with_worker("twilio-sequence-dispatcher")
            .with_env_dry_run(false),
    )
    .with_policy(Arc::new(ApproveAll));
    Setup {
        store,
        clock,
        ws: WorkspaceId::new(),
        runner,
        dispatcher,
    }
}

async fn ada(s: &Setup) -> Contact {
    let contact = Contact::create(
        s.ws,
        NewContact {
            first_name: "Ada".into(),
            phone: Some(PHONE.into()),
            ..NewContact::default()
        },
        now(),
    )
    .unwrap();
    s.store.insert_contact(&contact).await.unwrap()
}

async fn save(s: &Setup, step: SequenceStep) -> Sequence {
    let sequence = Sequence::create(s.ws, "WhatsApp", vec![step], now()).unwrap();
    let editor = SequenceEditor::new(s.store.clone(), Arc::new(s.clock.clone()));
    editor.create(&sequence).await.unwrap()
}

fn whatsapp(body: &str) -> SequenceStep {
    SequenceStep::new(
        Channel::WhatsApp,
        Template {
            subject: None,
            body: body.into(),
        },
        StepDelay::Hours(0),
    )
}

/// Enrolls, ticks and dispatches once; returns the sent message's provider id.
async fn run(s: &Setup, contact: &Contact, sequence: &Sequence) -> Option<String> {
    let enroller = Enroller::new(
        s.store.clone(),
        Arc::new(s.clock.clone()),
        Arc::new(StaticSettings::new(WorkspaceSettings::default())),
    );
    let e = enroller
        .enroll(s.ws, contact.id, sequence.id)
        .await
        .unwrap();
    s.runner.tick().await.unwrap();
    let report = s.dispatcher.dispatch_batch().await.unwrap();
    assert_eq!(report.sent, 1, "{report:?}");
    let enrollment = s.store.get_enrollment(s.ws, e.id).await.unwrap();
    assert_eq!(enrollment.state, EnrollmentState::StepSent);
    let sent = s
        .store
        .list_outbox(s.ws, Some(OutboxStatus::Sent), Page::first(10))
        .await
        .unwrap();
    assert_eq!(sent.len(), 1);
    sent[0].provider_message_id.clone()
}

fn created(sid: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(serde_json::json!({
        "sid": sid, "status": "queued", "to": "whatsapp:+4915112345678",
    }))
}

#[tokio::test]
async fn a_whatsapp_step_with_a_template_sends_content_sid_and_variables() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(body_string_contains("To=whatsapp%3A%2B4915112345678"))
        .and(body_string_contains("ContentSid=HX0123"))
        // {"1":"Ada","2":"Acme"} rendered per contact from the step's variables.
        .and(body_string_contains(
            "ContentVariables=%7B%221%22%3A%22Ada%22%2C%222%22%3A%22Acme%22%7D",
        ))
        .respond_with(created("SM1"))
        .expect(1)
        .mount(&server)
        .await;
    let s = setup(&server);
    let contact = ada(&s).await;
    let mut step = whatsapp("Hi {{first_name}}, shall we talk?");
    step.options.whatsapp_template = Some(WhatsAppTemplate {
        content_sid: "HX0123".into(),
        variables: BTreeMap::from([
            ("1".to_owned(), "{{first_name}}".to_owned()),
            ("2".to_owned(), "{{company | Acme}}".to_owned()),
        ]),
    });
    let sequence = save(&s, step).await;

    let provider_id = run(&s, &contact, &sequence).await;
    assert_eq!(provider_id.as_deref(), Some("SM1"));
    let requests = server.received_requests().await.unwrap();
    let body = String::from_utf8(requests[0].body.clone()).unwrap();
    assert!(
        !body.contains("Body="),
        "a template sends no free-form body: {body}"
    );
}

#[tokio::test]
async fn a_free_form_whatsapp_step_goes_inside_the_window_from_the_stores_last_inbound() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(body_string_contains("Body=Hi+Ada"))
        .respond_with(created("SM2"))
        .expect(1)
        .mount(&server)
        .await;
    let s = setup(&server);
    let contact = ada(&s).await;
    // The contact wrote two hours ago: the 24-hour window is open.
    let reply = Activity::for_contact(
        s.ws,
        contact.id,
        ActivityKind::ReplyReceived,
        "Reply",
        now() - Duration::hours(2),
    )
    .unwrap()
    .with_channel(Channel::WhatsApp);
    s.store.record_activity(&reply).await.unwrap();
    let mut step = whatsapp("Hi {{first_name}}");
    step.options.allow_free_form = true;
    let sequence = save(&s, step).await;

    let provider_id = run(&s, &contact, &sequence).await;
    assert_eq!(provider_id.as_deref(), Some("SM2"));
}
