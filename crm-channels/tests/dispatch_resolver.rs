//! The real Resend and Twilio adapters inside the dispatcher, built per workspace by
//! `ProviderChannels` from each workspace's channel configuration and secret
//! references, against loopback fake providers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(all(feature = "resend", feature = "twilio"))]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crm_channels::resolver::ProviderChannels;
use crm_channels::secrets::MemorySecretResolver;
use crm_core::clock::ManualClock;
use crm_core::ids::{ApprovalRuleId, WorkspaceId};
use crm_core::model::{Channel, ChannelConfig, OutboxMessage, OutboxStatus};
use crm_core::outreach::dispatch::{Dispatcher, DispatcherConfig};
use crm_core::outreach::settings::{StaticSettings, WorkspaceSettings};
use crm_core::store::DynStore;
use crm_core::{Clock, SecretRef, SecretResolver};
use crm_store_memory::MemoryStore;
use crm_testkit::engine::dispatch::ApproveAll;
use crm_testkit::store::fixtures::{base, created, new_contact, ok, unique_email};
use serde_json::json;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";

fn secret(text: &str) -> SecretRef {
    SecretRef::parse(text).unwrap()
}

fn resend_config(server: &MockServer, from: &str, key: &str) -> ChannelConfig {
    ChannelConfig::new("resend")
        .with_param("from", from)
        .with_param("base_url", server.uri())
        .with_secret("api_key", secret(key))
}

/// A store, a clock, the secrets and one resolver shared by every dispatcher built
/// from it (as one process would hold them).
struct World {
    store: Arc<DynStore>,
    clock: ManualClock,
    secrets: MemorySecretResolver,
    channels: Arc<ProviderChannels>,
}

impl World {
    fn new() -> Self {
        // Every test logs to the one subscriber, so none runs before it exists.
        Logs::capture();
        let clock = ManualClock::new(base());
        let secrets = MemorySecretResolver::new();
        let channels = ProviderChannels::new(Arc::new(secrets.clone()) as Arc<dyn SecretResolver>)
            .with_clock(Arc::new(clock.clone()));
        Self {
            store: Arc::new(MemoryStore::new()),
            clock,
            secrets,
            channels: Arc::new(channels),
        }
    }

    /// A dispatcher reading `settings` (the workspaces' settings as they are now).
    fn dispatcher(&self, settings: StaticSettings) -> Dispatcher {
        Dispatcher::with_resolver(
            self.store.clone(),
            Arc::new(self.clock.clone()),
            Arc::new(settings),
            self.channels.clone(),
            DispatcherConfig::default().with_env_dry_run(false),
        )
        .with_policy(Arc::new(ApproveAll {
            rule: ApprovalRuleId::new(),
        }))
    }

    /// Enqueues a message on `channel` to `recipient` for a fresh contact of `ws`.
    async fn enqueue(
        &self,
        ws: WorkspaceId,
        channel: Channel,
        recipient: &str,
        metadata: serde_json::Value,
    ) -> OutboxMessage {
        let contact = ok(
            self.store
                .insert_contact(&new_contact(ws, &unique_email()))
                .await,
            "insert a contact",
        );
        let message = OutboxMessage::new(
            ws,
            channel,
            recipient,
            "Hi Ada, a quick question about your roadmap.",
            format!("key-{}", unique_email()),
            self.clock.now(),
        )
        .unwrap()
        .with_subject("Quick question")
        .with_contact(contact.id)
        .with_metadata(metadata);
        created(self.store.enqueue_outbox(&message).await, "enqueue_outbox")
    }

    async fn get(&self, message: &OutboxMessage) -> OutboxMessage {
        ok(
            self.store
                .get_outbox(message.workspace_id, message.id)
                .await,
            "get_outbox",
        )
    }
}

fn settings_with(channel: Channel, config: ChannelConfig) -> WorkspaceSettings {
    WorkspaceSettings::default().with_channel(channel, config)
}

fn header_of(request: &Request, name: &str) -> String {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn json_of(request: &Request) -> serde_json::Value {
    serde_json::from_slice(&request.body).unwrap()
}

/// Everything every test of this binary logged, spans included. One global subscriber,
/// not one per test: tracing caches whether a call site is enabled across threads, so
/// a thread-local subscriber can miss spans first hit by a test without one. Tests
/// look for their own ids and secrets, which no other test uses.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> Self {
        static LOGS: OnceLock<Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Self::default();
            let writer = logs.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            logs
        })
        .clone()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

#[tokio::test]
async fn each_workspace_sends_with_its_own_key_and_sender() {
    let logs = Logs::capture();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "e-1"})))
        .expect(2)
        .mount(&server)
        .await;
    let world = World::new();
    let (a, b) = (WorkspaceId::new(), WorkspaceId::new());
    world
        .secrets
        .insert(&secret("secret://a/resend:1"), "re_key_of_workspace_a");
    world
        .secrets
        .insert(&secret("secret://b/resend:1"), "re_key_of_workspace_b");
    let settings = StaticSettings::default()
        .with_workspace(
            a,
            settings_with(
                Channel::Email,
                resend_config(&server, "A <sales@a.example>", "secret://a/resend:1"),
            ),
        )
        .with_workspace(
            b,
            settings_with(
                Channel::Email,
                resend_config(&server, "B <hello@b.example>", "secret://b/resend:1"),
            ),
        );
    let to_a = world
        .enqueue(a, Channel::Email, "ada@customer-a.example", json!({}))
        .await;
    let to_b = world
        .enqueue(b, Channel::Email, "bob@customer-b.example", json!({}))
        .await;

    let report = world.dispatcher(settings).dispatch_batch().await.unwrap();

    assert_eq!(report.sent, 2, "{report:?}");
    let requests = server.received_requests().await.unwrap();
    let seen: Vec<(String, String, String, String)> = requests
        .iter()
        .map(|r| {
            let body = json_of(r);
            (
                body["to"][0].as_str().unwrap().to_owned(),
                header_of(r, "authorization"),
                body["from"].as_str().unwrap().to_owned(),
                header_of(r, "idempotency-key"),
            )
        })
        .collect();
    for (message, key, from) in [
        (&to_a, "re_key_of_workspace_a", "A <sales@a.example>"),
        (&to_b, "re_key_of_workspace_b", "B <hello@b.example>"),
    ] {
        let expected = (
            message.recipient.clone(),
            format!("Bearer {key}"),
            from.to_owned(),
            message.id.to_string(),
        );
        assert!(seen.contains(&expected), "{expected:?} not in {seen:?}");
        let stored = world.get(message).await;
        assert_eq!(stored.status, OutboxStatus::Sent);
        assert_eq!(stored.provider_message_id.as_deref(), Some("e-1"));
    }
    // The spans carry ids; nothing logged carries a key, an address or a body.
    let text = logs.text();
    assert!(text.contains("outbox.dispatch_batch"), "{text}");
    assert!(text.contains(&to_a.id.to_string()), "{text}");
    assert!(text.contains(&a.to_string()), "{text}");
    for private in [
        "re_key_of_workspace",
        "ada@customer-a.example",
        "bob@customer-b.example",
        "quick question about your roadmap",
    ] {
        assert!(!text.contains(private), "{private:?} logged:\n{text}");
    }
}

#[tokio::test]
async fn a_rotated_secret_version_takes_effect_on_the_next_send() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "e-1"})))
        .mount(&server)
        .await;
    let world = World::new();
    let ws = WorkspaceId::new();
    world
        .secrets
        .insert(&secret("secret://a/resend:1"), "re_old");
    world
        .secrets
        .insert(&secret("secret://a/resend:2"), "re_new");
    let before = StaticSettings::default().with_workspace(
        ws,
        settings_with(
            Channel::Email,
            resend_config(&server, "A <a@a.example>", "secret://a/resend:1"),
        ),
    );
    let after = StaticSettings::default().with_workspace(
        ws,
        settings_with(
            Channel::Email,
            resend_config(&server, "A <a@a.example>", "secret://a/resend:2"),
        ),
    );

    world
        .enqueue(ws, Channel::Email, "ada@x.example", json!({}))
        .await;
    let first = world
        .dispatcher(before.clone())
        .dispatch_batch()
        .await
        .unwrap();
    world
        .enqueue(ws, Channel::Email, "ada@x.example", json!({}))
        .await;
    let unchanged = world.dispatcher(before).dispatch_batch().await.unwrap();
    world
        .enqueue(ws, Channel::Email, "ada@x.example", json!({}))
        .await;
    // The same resolver, the clock not moved: only the settings changed.
    let rotated = world.dispatcher(after).dispatch_batch().await.unwrap();

    assert_eq!((first.sent, unchanged.sent, rotated.sent), (1, 1, 1));
    let keys: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| header_of(r, "authorization"))
        .collect();
    assert_eq!(keys, ["Bearer re_old", "Bearer re_old", "Bearer re_new"]);
}

#[tokio::test]
async fn an_unresolvable_channel_reschedules_the_message_without_leaking_secrets() {
    let logs = Logs::capture();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "x"})))
        .expect(0)
        .mount(&server)
        .await;
    let world = World::new();
    let (missing, unusable, unconfigured) =
        (WorkspaceId::new(), WorkspaceId::new(), WorkspaceId::new());
    // This token resolves, but the sender number is not E.164: the build fails after
    // the secret was read, and its value must not surface anywhere.
    world
        .secrets
        .insert(&secret("secret://b/twilio:1"), "tw_token_value_42");
    let twilio = ChannelConfig::new("twilio")
        .with_param("account_sid", TWILIO_SID)
        .with_param("from", "not-a-number")
        .with_param("base_url", format!("{}/2010-04-01", server.uri()))
        .with_secret("auth_token", secret("secret://b/twilio:1"));
    let settings = StaticSettings::default()
        .with_workspace(
            missing,
            settings_with(
                Channel::Email,
                resend_config(&server, "A <a@a.example>", "secret://a/resend:9"),
            ),
        )
        .with_workspace(unusable, settings_with(Channel::WhatsApp, twilio));
    let m_missing = world
        .enqueue(missing, Channel::Email, "ada@x.example", json!({}))
        .await;
    let m_unusable = world
        .enqueue(unusable, Channel::WhatsApp, "+4915112345678", json!({}))
        .await;
    let m_unconfigured = world
        .enqueue(unconfigured, Channel::Email, "eve@x.example", json!({}))
        .await;

    let report = world.dispatcher(settings).dispatch_batch().await.unwrap();

    assert_eq!((report.claimed, report.retried), (3, 3), "{report:?}");
    assert_eq!(report.sent + report.failed + report.left_to_expire, 0);
    for (message, why) in [
        (&m_missing, "secret://a/resend:9 not found"),
        (&m_unusable, "sender"),
        (&m_unconfigured, "configures no provider for email"),
    ] {
        let stored = world.get(message).await;
        assert_eq!(stored.status, OutboxStatus::Pending, "{why}");
        assert_eq!(stored.attempts, 1, "{why}");
        assert!(stored.not_before > base(), "backs off: {why}");
        let error = stored.last_error.unwrap_or_default();
        assert!(error.contains(why), "{error:?} should say {why:?}");
        assert!(!error.contains("tw_token_value_42"), "{error}");
    }
    let text = logs.text();
    assert!(text.contains("not usable as configured"), "{text}");
    assert!(
        !text.contains("tw_token_value_42"),
        "the token leaked:\n{text}"
    );
    assert!(
        !text.contains("ada@x.example"),
        "an address leaked:\n{text}"
    );
}

#[tokio::test]
async fn a_whatsapp_template_goes_out_through_twilio_as_content_sid() {
    let server = MockServer::start().await;
    let messages = format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json");
    Mock::given(method("POST"))
        .and(path(messages.as_str()))
        // Basic base64("AC…:tw_token"), as Twilio expects.
        .and(header(
            "authorization",
            "Basic QUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjp0d190b2tlbg==",
        ))
        .and(body_string_contains("ContentSid=HX0123456789abcdef"))
        .and(body_string_contains("From=whatsapp%3A%2B14155238886"))
        .and(body_string_contains("To=whatsapp%3A%2B4915112345678"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM42"})))
        .expect(1)
        .mount(&server)
        .await;
    let world = World::new();
    let ws = WorkspaceId::new();
    world
        .secrets
        .insert(&secret("secret://w/twilio:1"), "tw_token");
    let twilio = ChannelConfig::new("twilio")
        .with_param("account_sid", TWILIO_SID)
        .with_param("from", "+14155238886")
        .with_param("base_url", format!("{}/2010-04-01", server.uri()))
        .with_secret("auth_token", secret("secret://w/twilio:1"));
    let settings =
        StaticSettings::default().with_workspace(ws, settings_with(Channel::WhatsApp, twilio));
    // No inbound message ever: only a template may go out.
    let message = world
        .enqueue(
            ws,
            Channel::WhatsApp,
            "+4915112345678",
            json!({"content_sid": "HX0123456789abcdef", "content_variables": {"1": "Ada"}}),
        )
        .await;

    let report = world.dispatcher(settings).dispatch_batch().await.unwrap();

    assert_eq!(report.sent, 1, "{report:?}");
    let stored = world.get(&message).await;
    assert_eq!(stored.status, OutboxStatus::Sent);
    assert_eq!(stored.provider_message_id.as_deref(), Some("SM42"));
    let requests = server.received_requests().await.unwrap();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&requests[0].body)
        .into_owned()
        .collect();
    assert!(
        form.contains(&("ContentVariables".into(), r#"{"1":"Ada"}"#.into())),
        "{form:?}"
    );
    assert!(!form.iter().any(|(k, _)| k == "Body"), "{form:?}");
}
