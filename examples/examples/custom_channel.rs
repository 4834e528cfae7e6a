//! A third-party channel adapter, written outside `crm-channels`, passing crm-core's
//! adapter conformance kit.
//!
//! The adapter sends SMS through a generic HTTP gateway:
//!
//! ```text
//! POST {base}/messages
//! Authorization: Bearer <api key>
//! Idempotency-Key: <outbox id>
//! {"to": "+4915112345678", "text": "..."}
//! -> 202 {"id": "msg_123"}
//! ```
//!
//! The example starts a loopback server (wiremock) standing in for the gateway, writes a
//! harness over it, and runs every case of the kit.
//!
//! Run it with `cargo run -p examples --example custom_channel`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use crm_core::channel::SendReceipt;
use crm_core::ids::{OutboxMessageId, WorkspaceId};
use crm_core::model::Channel;
use crm_core::secret::{ExposeSecret, SecretString};
use crm_core::{ChannelAdapter, ChannelError, Clock, OutboundMessage, PhoneNumber, SystemClock};
use crm_testkit::adapter::{
    AdapterHarness, Idempotency, ProviderResponse, run_adapter_conformance,
};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

const PROVIDER: &str = "sms-gateway";

/// SMS through a generic HTTP gateway.
struct SmsGatewayChannel {
    http: reqwest::Client,
    base_url: String,
    api_key: SecretString,
}

impl fmt::Debug for SmsGatewayChannel {
    // Never print the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsGatewayChannel")
            .field("base_url", &self.base_url)
            .field("api_key", &"[redacted]")
            .finish()
    }
}

impl SmsGatewayChannel {
    fn new(base_url: &str, api_key: SecretString) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
        })
    }
}

/// `Retry-After` in seconds, if present.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

#[async_trait]
impl ChannelAdapter for SmsGatewayChannel {
    fn channel(&self) -> Channel {
        Channel::Sms
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        let to =
            PhoneNumber::parse(&message.recipient).map_err(|e| ChannelError::InvalidRecipient {
                provider: PROVIDER,
                reason: e.to_string(),
            })?;
        let response = self
            .http
            .post(format!("{}/messages", self.base_url))
            .bearer_auth(self.api_key.expose_secret())
            // The contract: the outbox id goes to the provider as idempotency key.
            .header("Idempotency-Key", message.idempotency_key())
            .json(&serde_json::json!({"to": to.as_str(), "text": message.body}))
            .send()
            .await
            // Transport failures are retryable; drop the URL from the error.
            .map_err(|e| ChannelError::Retryable {
                provider: PROVIDER,
                reason: if e.is_timeout() {
                    "timeout"
                } else {
                    "transport failure"
                }
                .into(),
                retry_after: None,
                source: Some(Box::new(e.without_url())),
            })?;
        let status = response.status().as_u16();
        let wait = retry_after(&response);
        let reason = format!("HTTP {status}");
        match status {
            200..=299 => {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                Ok(SendReceipt {
                    provider_message_id: body["id"].as_str().map(str::to_owned),
                    // Time comes from a Clock, never from `Utc::now()` (clippy.toml).
                    accepted_at: SystemClock.now(),
                })
            }
            429 => Err(ChannelError::RateLimited {
                provider: PROVIDER,
                retry_after: wait,
            }),
            401 | 403 => Err(ChannelError::Auth {
                provider: PROVIDER,
                reason,
            }),
            408 | 500..=599 => Err(ChannelError::Retryable {
                provider: PROVIDER,
                reason,
                retry_after: wait,
                source: None,
            }),
            _ => {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                if body["error"] == "invalid_number" {
                    Err(ChannelError::InvalidRecipient {
                        provider: PROVIDER,
                        reason,
                    })
                } else {
                    Err(ChannelError::Permanent {
                        provider: PROVIDER,
                        reason,
                    })
                }
            }
        }
    }
}

/// The kit's view of the fake gateway.
struct GatewayHarness {
    server: MockServer,
    adapter: Arc<SmsGatewayChannel>,
}

#[async_trait]
impl AdapterHarness for GatewayHarness {
    fn adapter(&self) -> Arc<dyn ChannelAdapter> {
        self.adapter.clone()
    }

    fn message(&self) -> OutboundMessage {
        OutboundMessage {
            id: OutboxMessageId::new(),
            workspace_id: WorkspaceId::new(),
            channel: Channel::Sms,
            recipient: "+4915112345678".into(),
            contact_id: None,
            subject: None,
            body: "Your demo is confirmed for Tuesday 10:00.".into(),
            metadata: serde_json::json!({}),
        }
    }

    fn idempotency(&self) -> Idempotency {
        Idempotency::Forwarded
    }

    fn success(&self) -> ProviderResponse {
        ProviderResponse::json(202, &serde_json::json!({"id": "msg_123"}))
    }

    async fn respond_with(&self, response: ProviderResponse) {
        self.server.reset().await;
        let mut template = ResponseTemplate::new(response.status).set_body_bytes(response.body);
        for (name, value) in &response.headers {
            template = template.insert_header(name.as_str(), value.as_str());
        }
        Mock::given(any())
            .respond_with(template)
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = MockServer::start().await;
    let adapter = Arc::new(SmsGatewayChannel::new(
        &server.uri(),
        SecretString::from("gw_live_example".to_owned()),
    )?);
    println!("adapter under test: {adapter:?}");
    let harness = GatewayHarness { server, adapter };

    // `run_adapter_conformance` panics, naming the broken rule, on the first failure. A
    // harness that cannot run a case declares why (for example `error_classes()` for an
    // adapter without provider calls); the report lists those as not run.
    let report = run_adapter_conformance(&harness).await;
    for case in &report.passed {
        println!("  ok       {case}");
    }
    for (case, reason) in &report.not_run {
        println!("  not run  {case}: {reason}");
    }
    println!(
        "{PROVIDER}: {} conformance cases passed, {} not run",
        report.passed.len(),
        report.not_run.len()
    );
    Ok(())
}
