//! Every channel adapter of this crate passes crm-core's adapter conformance kit, each
//! against a loopback provider (wiremock) or, for adapters without provider calls, as a
//! local adapter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// With no provider feature on, only the local adapters run.
#![cfg_attr(not(feature = "resend"), allow(dead_code))]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use crm_core::{ChannelAdapter, OutboundMessage};
use crm_testkit::adapter::{AdapterHarness, Idempotency, ProviderResponse, Support};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A fake provider on loopback answering every request with the configured response.
struct WiremockHarness {
    server: MockServer,
    adapter: Arc<dyn ChannelAdapter>,
    message: fn() -> OutboundMessage,
    idempotency: Idempotency,
    success: ProviderResponse,
}

fn template(response: ProviderResponse) -> ResponseTemplate {
    let content_type = response
        .header("content-type")
        .unwrap_or("application/octet-stream")
        .to_owned();
    let mut template =
        ResponseTemplate::new(response.status).set_body_raw(response.body, &content_type);
    for (name, value) in response.headers {
        if !name.eq_ignore_ascii_case("content-type") {
            template = template.insert_header(name.as_str(), value.as_str());
        }
    }
    template
}

#[async_trait]
impl AdapterHarness for WiremockHarness {
    fn adapter(&self) -> Arc<dyn ChannelAdapter> {
        self.adapter.clone()
    }

    fn message(&self) -> OutboundMessage {
        (self.message)()
    }

    fn idempotency(&self) -> Idempotency {
        self.idempotency
    }

    fn success(&self) -> ProviderResponse {
        self.success.clone()
    }

    async fn respond_with(&self, response: ProviderResponse) {
        self.server.reset().await;
        Mock::given(any())
            .respond_with(template(response))
            .mount(&self.server)
            .await;
    }

    async fn received_idempotency_keys(&self) -> Vec<Option<String>> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| {
                r.headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .collect()
    }
}

/// An adapter that calls no provider.
struct LocalHarness {
    adapter: Arc<dyn ChannelAdapter>,
    message: fn() -> OutboundMessage,
}

#[async_trait]
impl AdapterHarness for LocalHarness {
    fn adapter(&self) -> Arc<dyn ChannelAdapter> {
        self.adapter.clone()
    }

    fn message(&self) -> OutboundMessage {
        (self.message)()
    }

    fn idempotency(&self) -> Idempotency {
        Idempotency::Local
    }

    fn error_classes(&self) -> Support {
        Support::not_applicable(
            "the adapter calls no provider, so there is no provider error to classify",
        )
    }

    fn success(&self) -> ProviderResponse {
        ProviderResponse::status(200)
    }

    async fn respond_with(&self, _response: ProviderResponse) {}

    async fn received_idempotency_keys(&self) -> Vec<Option<String>> {
        Vec::new()
    }
}

mod dry_run {
    use super::*;
    use crm_channels::dry_run::DryRunChannel;
    use crm_core::model::Channel;

    async fn harness() -> LocalHarness {
        LocalHarness {
            adapter: Arc::new(DryRunChannel::new(Channel::Sms)),
            message: || message(Channel::Sms, "+4915112345678"),
        }
    }

    crm_testkit::adapter_conformance_tests!(harness);
}

#[cfg(feature = "linkedin")]
mod linkedin {
    use super::*;
    use crm_channels::linkedin::LinkedInAssistedChannel;
    use crm_core::ids::ContactId;
    use crm_core::model::Channel;

    async fn harness() -> LocalHarness {
        LocalHarness {
            adapter: Arc::new(LinkedInAssistedChannel::new(Arc::new(
                RecordingActivities::default(),
            ))),
            message: || {
                let mut m = message(Channel::LinkedIn, "https://www.linkedin.com/in/ada");
                m.contact_id = Some(ContactId::new());
                m
            },
        }
    }

    crm_testkit::adapter_conformance_tests!(harness);
}

#[cfg(feature = "resend")]
mod resend {
    use super::*;
    use crm_channels::resend::{ResendChannel, ResendConfig};
    use crm_core::model::Channel;
    use crm_core::secret::{SecretRef, SecretString};

    pub(super) fn channel(base: &str) -> ResendChannel {
        let reference = SecretRef::parse("secret://resend/kit:1").unwrap();
        let config = ResendConfig::new(reference, "a@example.com")
            .unwrap()
            .with_http(http_config(base));
        ResendChannel::new(config, SecretString::from("re_kit".to_owned())).unwrap()
    }

    pub(super) fn success() -> ProviderResponse {
        ProviderResponse::json(200, &serde_json::json!({"id": "e-1"}))
    }

    async fn harness() -> WiremockHarness {
        let server = MockServer::start().await;
        WiremockHarness {
            adapter: Arc::new(channel(&server.uri())),
            server,
            message: || message(Channel::Email, "ada@example.com"),
            idempotency: Idempotency::Forwarded,
            success: success(),
        }
    }

    crm_testkit::adapter_conformance_tests!(harness);
}

#[cfg(all(feature = "cal-com", feature = "resend"))]
mod cal_com_booking_link {
    use super::*;
    use crm_channels::cal_com::CalComBookingLinkChannel;
    use crm_core::model::Channel;

    async fn harness() -> WiremockHarness {
        let server = MockServer::start().await;
        let delivery = Arc::new(super::resend::channel(&server.uri()));
        WiremockHarness {
            adapter: Arc::new(CalComBookingLinkChannel::new(
                "https://cal.com/ada/30min".parse().unwrap(),
                delivery,
            )),
            server,
            message: || message(Channel::CalCom, "ada@example.com"),
            idempotency: Idempotency::Forwarded,
            success: super::resend::success(),
        }
    }

    crm_testkit::adapter_conformance_tests!(harness);
}

#[cfg(feature = "twilio")]
mod twilio {
    use super::*;
    use crm_channels::twilio::{TwilioConfig, TwilioSender, TwilioWhatsAppChannel};
    use crm_core::model::Channel;
    use crm_core::secret::{SecretRef, SecretString};

    async fn harness() -> WiremockHarness {
        let server = MockServer::start().await;
        let config = TwilioConfig::new(
            "AC1",
            SecretRef::parse("secret://twilio/kit:1").unwrap(),
            TwilioSender::From("+14155238886".into()),
        )
        .unwrap()
        .with_http(http_config(&server.uri()));
        WiremockHarness {
            adapter: Arc::new(
                TwilioWhatsAppChannel::new(config, SecretString::from("token".to_owned()))
                    .unwrap()
                    .with_clock(clock()),
            ),
            server,
            message: || {
                let mut m = message(Channel::WhatsApp, "+4915112345678");
                m.metadata = serde_json::json!({"last_inbound_at": now().to_rfc3339()});
                m
            },
            idempotency: Idempotency::NotOffered {
                reason: "Twilio's Messages API takes no idempotency key",
            },
            success: ProviderResponse::json(201, &serde_json::json!({"sid": "SM1"})),
        }
    }

    crm_testkit::adapter_conformance_tests!(harness);
}

#[cfg(feature = "instagram")]
mod instagram {
    use super::*;
    use crm_channels::instagram::{InstagramChannel, InstagramConfig, InstagramEndpoint};
    use crm_core::model::Channel;
    use crm_core::secret::{SecretRef, SecretString};

    async fn harness() -> WiremockHarness {
        let server = MockServer::start().await;
        let config = InstagramConfig::new(
            SecretRef::parse("secret://instagram/kit:1").unwrap(),
            InstagramEndpoint::Page { page_id: None },
        )
        .unwrap()
        .with_http(http_config(&server.uri()));
        WiremockHarness {
            adapter: Arc::new(
                InstagramChannel::new(config, SecretString::from("token".to_owned()))
                    .unwrap()
                    .with_clock(clock()),
            ),
            server,
            message: || {
                let mut m = message(Channel::Instagram, "1784140000000001");
                m.metadata = serde_json::json!({"last_inbound_at": now().to_rfc3339()});
                m
            },
            idempotency: Idempotency::NotOffered {
                reason: "Meta's Send API takes no idempotency key",
            },
            success: ProviderResponse::json(
                200,
                &serde_json::json!({"recipient_id": "1784140000000001", "message_id": "mid.1"}),
            ),
        }
    }

    crm_testkit::adapter_conformance_tests!(harness);
}
