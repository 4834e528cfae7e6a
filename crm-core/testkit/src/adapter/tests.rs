//! Unit tests of the adapter kit against a toy adapter.

use std::sync::Mutex;

use super::*;
use chrono::{DateTime, Utc};
use crm_core::channel::SendReceipt;
use crm_core::ids::{OutboxMessageId, WorkspaceId};
use crm_core::model::Channel;

#[test]
fn provider_responses_find_headers_case_insensitively() {
    let r = ProviderResponse::status(429).with_header("Retry-After", "7");
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body, b"{}");
}

/// A toy provider in memory: the adapter "sends" by reading the scripted answer.
#[derive(Debug)]
struct Toy {
    answer: Mutex<ProviderResponse>,
    keys: Mutex<Vec<Option<String>>>,
    honours_retry_after: bool,
    /// Calls no provider: every send succeeds with an id derived from the message.
    local: bool,
    /// Sends the idempotency key with each request.
    forwards_key: bool,
}

#[async_trait]
impl ChannelAdapter for Toy {
    fn channel(&self) -> Channel {
        Channel::Sms
    }
    fn provider(&self) -> &'static str {
        "toy"
    }
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        if self.local {
            return Ok(SendReceipt {
                provider_message_id: Some(message.idempotency_key()),
                accepted_at: DateTime::<Utc>::UNIX_EPOCH,
            });
        }
        let key = Some(message.idempotency_key()).filter(|_| self.forwards_key);
        self.keys.lock().unwrap().push(key);
        let answer = self.answer.lock().unwrap().clone();
        let retry_after = answer
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs)
            .filter(|_| self.honours_retry_after);
        let provider = "toy";
        let reason = String::new();
        match answer.status {
            200..=299 => Ok(SendReceipt {
                provider_message_id: Some("1".into()),
                accepted_at: DateTime::<Utc>::UNIX_EPOCH,
            }),
            429 => Err(ChannelError::RateLimited {
                provider,
                retry_after,
            }),
            401 | 403 => Err(ChannelError::Auth { provider, reason }),
            500..=599 => Err(ChannelError::Retryable {
                provider,
                reason,
                retry_after,
                source: None,
            }),
            _ => Err(ChannelError::Permanent { provider, reason }),
        }
    }
}

struct ToyHarness(Arc<Toy>, Idempotency, Support);

#[async_trait]
impl AdapterHarness for ToyHarness {
    fn adapter(&self) -> Arc<dyn ChannelAdapter> {
        self.0.clone()
    }
    fn message(&self) -> OutboundMessage {
        OutboundMessage {
            id: OutboxMessageId::new(),
            workspace_id: WorkspaceId::new(),
            channel: Channel::Sms,
            recipient: "+4915112345678".into(),
            contact_id: None,
            subject: None,
            body: "hi".into(),
            metadata: serde_json::Value::Null,
        }
    }
    fn idempotency(&self) -> Idempotency {
        self.1
    }
    fn error_classes(&self) -> Support {
        self.2.clone()
    }
    fn success(&self) -> ProviderResponse {
        ProviderResponse::status(200)
    }
    async fn respond_with(&self, response: ProviderResponse) {
        *self.0.answer.lock().unwrap() = response;
        self.0.keys.lock().unwrap().clear();
    }
    async fn received_idempotency_keys(&self) -> Vec<Option<String>> {
        self.0.keys.lock().unwrap().clone()
    }
}

fn adapter(honours_retry_after: bool, local: bool, forwards_key: bool) -> Arc<Toy> {
    Arc::new(Toy {
        answer: Mutex::new(ProviderResponse::status(200)),
        keys: Mutex::new(Vec::new()),
        honours_retry_after,
        local,
        forwards_key,
    })
}

fn toy(honours_retry_after: bool) -> ToyHarness {
    ToyHarness(
        adapter(honours_retry_after, false, true),
        Idempotency::Forwarded,
        Support::Runs,
    )
}

const ERROR_CLASS_CASES: [&str; 5] = [
    "rate_limit_honours_retry_after",
    "rate_limit_without_retry_after",
    "server_errors_are_retryable",
    "client_errors_are_permanent",
    "auth_errors_are_not_retried",
];

#[tokio::test]
async fn a_conforming_adapter_passes_every_case() {
    let report = run_adapter_conformance(&toy(true)).await;
    assert_eq!(report.passed.len(), 7, "{report:?}");
    assert!(report.not_run.is_empty(), "{report:?}");
}

#[tokio::test]
#[should_panic(expected = "429 must be RateLimited with retry_after = Retry-After")]
async fn ignoring_retry_after_fails_the_kit() {
    let _ = rate_limit_honours_retry_after(&toy(false)).await;
}

#[tokio::test]
async fn a_declared_local_adapter_reports_the_error_classes_not_run() {
    let reason = "calls no provider";
    let harness = ToyHarness(
        adapter(true, true, true),
        Idempotency::Local,
        Support::not_applicable(reason),
    );
    let report = run_adapter_conformance(&harness).await;
    assert_eq!(
        report.passed,
        vec!["send_succeeds", "idempotency_key_is_forwarded"]
    );
    assert_eq!(
        report.not_run,
        ERROR_CLASS_CASES
            .iter()
            .map(|case| (*case, reason.to_owned()))
            .collect::<Vec<_>>(),
        "every error-class case is reported not run, with the harness's reason"
    );
}

#[tokio::test]
#[should_panic(expected = "declares `error_classes()` not applicable")]
async fn a_local_adapter_that_declares_nothing_fails_the_error_classes() {
    let harness = ToyHarness(adapter(true, true, true), Idempotency::Local, Support::Runs);
    let _ = rate_limit_honours_retry_after(&harness).await;
}

#[tokio::test]
#[should_panic(expected = "has errors to classify")]
async fn declaring_a_calling_adapter_not_applicable_fails() {
    let harness = ToyHarness(
        adapter(true, false, true),
        Idempotency::Forwarded,
        Support::not_applicable("no provider, supposedly"),
    );
    let _ = server_errors_are_retryable(&harness).await;
}

#[tokio::test]
#[should_panic(expected = "must say why")]
async fn a_blank_reason_is_no_declaration() {
    let harness = ToyHarness(
        adapter(true, true, true),
        Idempotency::Local,
        Support::not_applicable(" "),
    );
    let _ = client_errors_are_permanent(&harness).await;
}

#[tokio::test]
async fn a_provider_without_keys_reports_forwarding_not_run() {
    let reason = "the toy API takes no key";
    let harness = ToyHarness(
        adapter(true, false, false),
        Idempotency::NotOffered { reason },
        Support::Runs,
    );
    assert_eq!(
        idempotency_key_is_forwarded(&harness).await,
        CaseOutcome::NotRun {
            reason: reason.to_owned()
        }
    );
}

#[tokio::test]
#[should_panic(expected = "must be called and receive none")]
async fn a_provider_without_keys_must_not_receive_one() {
    let harness = ToyHarness(
        adapter(true, false, true),
        Idempotency::NotOffered {
            reason: "supposedly none",
        },
        Support::Runs,
    );
    let _ = idempotency_key_is_forwarded(&harness).await;
}
