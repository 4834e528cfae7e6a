//! `ProviderChannels` on its own: the cache policy and the configuration errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "resend")]

mod common;

use std::sync::Arc;

use chrono::Duration;
use common::*;
use crm_channels::build::{BuildContext, BuildError};
use crm_channels::resolver::{DEFAULT_TTL, ProviderChannels, ProviderFactory};
use crm_channels::secrets::MemorySecretResolver;
use crm_core::channel::ChannelResolver;
use crm_core::ids::WorkspaceId;
use crm_core::model::{Channel, ChannelConfig};
use crm_core::outreach::dispatch::StubChannel;
use crm_core::{ChannelAdapter, ChannelErrorKind, SecretRef};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn email(server: &MockServer, key: &SecretRef) -> ChannelConfig {
    ChannelConfig::new("resend")
        .with_param("from", "Sales <sales@example.com>")
        .with_param("base_url", server.uri())
        .with_secret("api_key", key.clone())
}

async fn server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "e-1"})))
        .mount(&server)
        .await;
    server
}

async fn last_authorization(server: &MockServer) -> String {
    let requests = server.received_requests().await.unwrap();
    let last = requests.last().unwrap();
    last.headers["authorization"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_latest_version_is_resolved_again_after_the_ttl() {
    let server = server().await;
    let key = SecretRef::parse("secret://ws/resend:latest").unwrap();
    let secrets = MemorySecretResolver::new().with(&key, "re_before");
    let clock = clock();
    let channels = ProviderChannels::new(Arc::new(secrets.clone())).with_clock(clock.clone());
    let ws = WorkspaceId::new();
    let config = email(&server, &key);
    let send = || async {
        let adapter = channels
            .resolve(ws, Channel::Email, Some(&config))
            .await
            .unwrap();
        adapter
            .send(&message(Channel::Email, "ada@example.com"))
            .await
            .unwrap();
        last_authorization(&server).await
    };

    assert_eq!(send().await, "Bearer re_before");
    secrets.insert(&key, "re_after");
    // Within the TTL the built adapter is reused.
    clock.advance(DEFAULT_TTL - Duration::seconds(1));
    assert_eq!(send().await, "Bearer re_before");
    clock.advance(Duration::seconds(1));
    assert_eq!(send().await, "Bearer re_after");
}

#[tokio::test]
async fn workspaces_never_share_an_adapter() {
    let server = server().await;
    let key = SecretRef::parse("secret://shared/resend:1").unwrap();
    let channels = ProviderChannels::new(Arc::new(MemorySecretResolver::new().with(&key, "k")));
    let config = email(&server, &key);
    let a = channels
        .resolve(WorkspaceId::new(), Channel::Email, Some(&config))
        .await
        .unwrap();
    let a_again = channels
        .resolve(WorkspaceId::new(), Channel::Email, Some(&config))
        .await
        .unwrap();
    assert!(!Arc::ptr_eq(&a, &a_again));
}

#[tokio::test]
async fn unusable_configurations_are_retryable_configuration_errors() {
    let server = server().await;
    let key = SecretRef::parse("secret://ws/resend:1").unwrap();
    let channels = ProviderChannels::new(Arc::new(
        MemorySecretResolver::new().with(&key, "re_do_not_print"),
    ));
    let ws = WorkspaceId::new();
    let cases = [
        (Channel::Email, None, "configures no provider"),
        (
            Channel::Email,
            Some(ChannelConfig::new("carrier-pigeon")),
            "unknown provider",
        ),
        (
            Channel::WhatsApp,
            Some(email(&server, &key)),
            "does not send on whatsapp",
        ),
        (
            Channel::Email,
            Some(ChannelConfig::new("resend").with_secret("api_key", key.clone())),
            "from is required",
        ),
        (
            Channel::Email,
            Some(email(&server, &key).with_param("base_url", "ftp://nope")),
            "base URL",
        ),
    ];
    for (channel, config, why) in cases {
        let error = channels
            .resolve(ws, channel, config.as_ref())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ChannelErrorKind::Configuration, "{why}");
        assert!(error.is_retryable(), "{why}");
        let printed = error_chain(&error);
        assert!(printed.contains(why), "{printed:?} should say {why:?}");
        assert!(!printed.contains("re_do_not_print"), "{printed}");
    }
}

/// A host's own provider: counts its builds, slowly, and sends through a stub.
#[derive(Debug, Default)]
struct CountingFactory {
    builds: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl ProviderFactory for CountingFactory {
    async fn build(
        &self,
        channel: Channel,
        config: &ChannelConfig,
        context: &BuildContext,
    ) -> Result<Arc<dyn ChannelAdapter>, BuildError> {
        let reference = config.secrets.get("token").cloned().unwrap();
        context.secrets.resolve(&reference).await?;
        self.builds
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        Ok(Arc::new(StubChannel::ok(channel)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_provider_is_built_once_for_concurrent_sends_until_invalidated() {
    let key = SecretRef::parse("secret://acme/gateway:1").unwrap();
    let factory = Arc::new(CountingFactory::default());
    let channels = Arc::new(
        ProviderChannels::new(Arc::new(MemorySecretResolver::new().with(&key, "t")))
            .with_provider("acme-sms", factory.clone()),
    );
    let ws = WorkspaceId::new();
    let config = ChannelConfig::new("acme-sms").with_secret("token", key);
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (channels, config) = (channels.clone(), config.clone());
        sends.spawn(async move {
            let adapter = channels.resolve(ws, Channel::Sms, Some(&config)).await?;
            adapter.send(&message(Channel::Sms, "+4915112345678")).await
        });
    }
    while let Some(sent) = sends.join_next().await {
        sent.unwrap().unwrap();
    }
    assert_eq!(factory.builds.load(std::sync::atomic::Ordering::SeqCst), 1);

    channels.invalidate(ws);
    channels
        .resolve(ws, Channel::Sms, Some(&config))
        .await
        .unwrap();
    assert_eq!(factory.builds.load(std::sync::atomic::Ordering::SeqCst), 2);
}
