//! The adapter conformance kit: the executable form of the [`ChannelAdapter`] and
//! [`InboundWebhook`] contracts, for anyone writing an adapter.
//!
//! The kit knows nothing about HTTP. The adapter author implements a small harness over
//! their own fake provider (typically a loopback HTTP server such as `wiremock`):
//!
//! - [`AdapterHarness`]: make the fake provider answer a given [`ProviderResponse`], and
//!   report the idempotency key each request carried. The cases then check that
//!   [`OutboundMessage::idempotency_key`] is forwarded, that 429 is `RateLimited` with
//!   `retry_after` equal to the `Retry-After` seconds, that 5xx is retryable, and that
//!   4xx is not (401 being `Auth`).
//! - [`VerifierHarness`]: sign a request body with the configured secret or another
//!   one, at a given time. The cases check that a valid request verifies, and that a
//!   tampered body, a wrong secret and an expired (or future) timestamp are rejected.
//!
//! Each case is a `pub async fn case(harness: &dyn _)` that panics naming the rule it
//! checks. [`adapter_conformance_tests!`](crate::adapter_conformance_tests) and
//! [`webhook_conformance_tests!`](crate::webhook_conformance_tests) expand to one
//! `#[tokio::test]` per case; [`run_adapter_conformance`] and
//! [`run_webhook_conformance`] run every case in sequence (for an example binary).
//!
//! ```ignore
//! // tests/conformance.rs of an adapter crate
//! async fn harness() -> MyHarness { MyHarness::start().await }
//! crm_testkit::adapter_conformance_tests!(harness);
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crm_core::channel::{ChannelAdapter, ChannelError, ChannelErrorKind, OutboundMessage};
use crm_core::inbound::{InboundWebhook, WebhookError, WebhookRequest, verify_webhook};

/// One answer of the fake provider, independent of any HTTP library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderResponse {
    /// HTTP status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl ProviderResponse {
    /// `status` with an empty JSON object as body (`content-type: application/json`),
    /// the shape of a provider error without provider-specific detail.
    #[must_use]
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: b"{}".to_vec(),
        }
    }

    /// `status` with `body` serialized as JSON.
    #[must_use]
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            body: body.to_string().into_bytes(),
            ..Self::status(status)
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The first value of header `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the adapter's provider offers for idempotency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// The provider takes an idempotency key; the adapter MUST send
    /// [`OutboundMessage::idempotency_key`] on every attempt.
    Forwarded,
    /// The provider's API has no idempotency key; the adapter MUST NOT invent one.
    NotOffered,
    /// The adapter calls no provider (dry run, assisted send). It MUST be idempotent
    /// itself: the same message sent twice yields the same provider message id.
    Local,
}

/// What an adapter author implements to run the adapter cases.
#[async_trait]
pub trait AdapterHarness: Send + Sync {
    /// The adapter under test, talking to the harness's fake provider.
    fn adapter(&self) -> Arc<dyn ChannelAdapter>;

    /// A message the adapter accepts (valid recipient, body and metadata). Each call
    /// SHOULD return a message with a fresh id.
    fn message(&self) -> OutboundMessage;

    /// What the provider offers for idempotency.
    fn idempotency(&self) -> Idempotency;

    /// A successful provider answer to a send.
    fn success(&self) -> ProviderResponse;

    /// Makes the fake provider answer every following request with `response`, and
    /// forgets the requests received so far. A no-op for [`Idempotency::Local`].
    async fn respond_with(&self, response: ProviderResponse);

    /// For each request received since the last [`AdapterHarness::respond_with`], in
    /// order, the idempotency key it carried (`None` when it carried none).
    async fn received_idempotency_keys(&self) -> Vec<Option<String>>;
}

/// Sends `message` after making the provider answer `response`.
async fn send_against(
    h: &dyn AdapterHarness,
    response: ProviderResponse,
    message: &OutboundMessage,
) -> Result<crm_core::channel::SendReceipt, ChannelError> {
    h.respond_with(response).await;
    h.adapter().send(message).await
}

/// For a local adapter, a provider failure must not matter: the send succeeds.
async fn expect_class(
    h: &dyn AdapterHarness,
    response: ProviderResponse,
    rule: &str,
    check: impl Fn(&ChannelError) -> bool,
) {
    let message = h.message();
    let described = format!("HTTP {} {:?}", response.status, response.headers);
    let result = send_against(h, response, &message).await;
    if h.idempotency() == Idempotency::Local {
        assert!(
            result.is_ok(),
            "an adapter without provider calls must not fail on a provider answer ({described}): {result:?}"
        );
        return;
    }
    match result {
        Ok(receipt) => panic!("{rule}: {described} was reported as a success: {receipt:?}"),
        Err(error) => assert!(check(&error), "{rule}: {described} gave {error:?}"),
    }
}

/// A success answer yields a receipt, and the provider was called.
pub async fn send_succeeds(h: &dyn AdapterHarness) {
    let message = h.message();
    let receipt = send_against(h, h.success(), &message).await;
    assert!(
        receipt.is_ok(),
        "a success answer must give a receipt: {receipt:?}"
    );
    let calls = h.received_idempotency_keys().await.len();
    match h.idempotency() {
        Idempotency::Local => assert_eq!(calls, 0, "a local adapter must not call a provider"),
        _ => assert!(calls >= 1, "the provider received no request"),
    }
}

/// The outbox id reaches the provider as idempotency key, the same on every attempt
/// (or, for local adapters, a repeated send gives the same receipt).
pub async fn idempotency_key_is_forwarded(h: &dyn AdapterHarness) {
    let message = h.message();
    h.respond_with(h.success()).await;
    let adapter = h.adapter();
    let first = adapter.send(&message).await;
    let second = adapter.send(&message).await;
    let (Ok(first), Ok(second)) = (first, second) else {
        panic!("both attempts must succeed against a success answer");
    };
    let keys = h.received_idempotency_keys().await;
    match h.idempotency() {
        Idempotency::Forwarded => {
            let expected = Some(message.idempotency_key());
            assert_eq!(
                keys.len(),
                2,
                "expected one request per attempt, got {keys:?}"
            );
            assert!(
                keys.iter().all(|k| *k == expected),
                "every attempt must carry the outbox id {expected:?} as idempotency key, got {keys:?}"
            );
        }
        Idempotency::NotOffered => assert!(
            keys.iter().all(Option::is_none),
            "a provider without idempotency keys must not receive one: {keys:?}"
        ),
        Idempotency::Local => {
            assert!(keys.is_empty(), "a local adapter must not call a provider");
            assert_eq!(
                first.provider_message_id, second.provider_message_id,
                "a repeated local send must give the same receipt"
            );
        }
    }
}

/// 429 with `Retry-After: 7` is `RateLimited` with `retry_after` of 7 seconds.
pub async fn rate_limit_honours_retry_after(h: &dyn AdapterHarness) {
    expect_class(
        h,
        ProviderResponse::status(429).with_header("retry-after", "7"),
        "429 must be RateLimited with retry_after = Retry-After",
        |e| {
            e.kind() == ChannelErrorKind::RateLimited
                && e.retry_after() == Some(Duration::from_secs(7))
                && e.is_retryable()
        },
    )
    .await;
}

/// 429 without `Retry-After` is still `RateLimited`.
pub async fn rate_limit_without_retry_after(h: &dyn AdapterHarness) {
    expect_class(
        h,
        ProviderResponse::status(429),
        "429 must be RateLimited",
        |e| e.kind() == ChannelErrorKind::RateLimited,
    )
    .await;
}

/// 500, 502 and 503 are retryable; a `Retry-After` on a 503 is kept if reported.
pub async fn server_errors_are_retryable(h: &dyn AdapterHarness) {
    for status in [500, 502, 503] {
        expect_class(
            h,
            ProviderResponse::status(status),
            "5xx must be retryable",
            ChannelError::is_retryable,
        )
        .await;
    }
    expect_class(
        h,
        ProviderResponse::status(503).with_header("retry-after", "3"),
        "503 with Retry-After must be retryable and keep the wait if it reports one",
        |e| {
            e.is_retryable()
                && e.retry_after()
                    .is_none_or(|wait| wait == Duration::from_secs(3))
        },
    )
    .await;
}

/// 400, 404 and 422 are permanent (or an invalid recipient), never retried.
pub async fn client_errors_are_permanent(h: &dyn AdapterHarness) {
    for status in [400, 404, 422] {
        expect_class(
            h,
            ProviderResponse::status(status),
            "4xx must not be retryable",
            |e| {
                !e.is_retryable()
                    && matches!(
                        e.kind(),
                        ChannelErrorKind::Permanent | ChannelErrorKind::InvalidRecipient
                    )
            },
        )
        .await;
    }
}

/// 401 is `Auth`; 403 is not retryable.
pub async fn auth_errors_are_not_retried(h: &dyn AdapterHarness) {
    expect_class(h, ProviderResponse::status(401), "401 must be Auth", |e| {
        e.kind() == ChannelErrorKind::Auth
    })
    .await;
    expect_class(
        h,
        ProviderResponse::status(403),
        "403 must not be retryable",
        |e| !e.is_retryable(),
    )
    .await;
}

/// Which key a [`VerifierHarness`] signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// The secret the verifier is configured with.
    Configured,
    /// Any other secret of the same shape.
    Other,
}

/// What an inbound-webhook author implements to run the verifier cases.
pub trait VerifierHarness: Send + Sync {
    /// The verifier under test, configured with its secret.
    fn verifier(&self) -> &dyn InboundWebhook;

    /// A representative raw payload.
    fn body(&self) -> Vec<u8>;

    /// The request a provider would send with `body`, signed with `key` at `signed_at`.
    fn sign(&self, body: &[u8], signed_at: DateTime<Utc>, key: SigningKey) -> WebhookRequest;

    /// How far a signed timestamp may be from "now"; `None` when the scheme signs no
    /// timestamp (Twilio, Meta, Cal.com), in which case replays are stopped by
    /// de-duplication instead.
    fn tolerance(&self) -> Option<Duration>;

    /// The "now" the cases verify at.
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(1_714_564_800, 0).unwrap_or_default()
    }
}

fn signed(h: &dyn VerifierHarness, at: DateTime<Utc>, key: SigningKey) -> WebhookRequest {
    h.sign(&h.body(), at, key)
}

/// A correctly signed, fresh request verifies.
pub async fn verifier_accepts_a_valid_request(h: &dyn VerifierHarness) {
    let request = signed(h, h.now(), SigningKey::Configured);
    let result = verify_webhook(h.verifier(), &request, h.now()).map(|_| ());
    assert_eq!(result, Ok(()), "a valid request must verify");
}

/// Changing the body after signing breaks verification.
pub async fn verifier_rejects_a_tampered_body(h: &dyn VerifierHarness) {
    let original = signed(h, h.now(), SigningKey::Configured);
    let mut appended = original.clone();
    appended.body.push(b' ');
    let mut flipped = original.clone();
    if let Some(last) = flipped.body.last_mut() {
        *last ^= 0x01;
    }
    let mut emptied = original;
    emptied.body.clear();
    for (what, request) in [
        ("appended", appended),
        ("flipped", flipped),
        ("emptied", emptied),
    ] {
        let result = verify_webhook(h.verifier(), &request, h.now()).map(|_| ());
        assert!(result.is_err(), "a tampered body ({what}) must be rejected");
    }
}

/// A request signed with another secret is `InvalidSignature`.
pub async fn verifier_rejects_a_wrong_secret(h: &dyn VerifierHarness) {
    let request = signed(h, h.now(), SigningKey::Other);
    let result = verify_webhook(h.verifier(), &request, h.now()).map(|_| ());
    assert_eq!(
        result,
        Err(WebhookError::InvalidSignature),
        "a wrong secret must be rejected as InvalidSignature"
    );
}

/// A timestamp just outside the tolerance (past or future) is rejected, one just
/// inside is accepted. Without a signed timestamp, an old request still verifies (the
/// scheme cannot tell) and the harness must say so by returning `None`.
pub async fn verifier_rejects_an_expired_timestamp(h: &dyn VerifierHarness) {
    let now = h.now();
    let Some(tolerance) = h.tolerance() else {
        let old = signed(h, now - chrono::Duration::days(30), SigningKey::Configured);
        assert!(
            verify_webhook(h.verifier(), &old, now).is_ok(),
            "a scheme without signed timestamps verifies old requests; if yours checks time, report a tolerance"
        );
        return;
    };
    let tolerance = chrono::Duration::from_std(tolerance).unwrap_or(chrono::Duration::MAX);
    let second = chrono::Duration::seconds(1);
    for (what, at) in [
        ("expired", now - tolerance - second),
        ("from the future", now + tolerance + second),
    ] {
        let request = signed(h, at, SigningKey::Configured);
        let result = verify_webhook(h.verifier(), &request, now).map(|_| ());
        assert!(result.is_err(), "a timestamp {what} must be rejected");
    }
    let inside = signed(h, now - tolerance + second, SigningKey::Configured);
    assert!(
        verify_webhook(h.verifier(), &inside, now).is_ok(),
        "a timestamp inside the tolerance must verify"
    );
}

/// Runs every adapter case in order; returns their names. Panics on the first failure.
pub async fn run_adapter_conformance(h: &dyn AdapterHarness) -> Vec<&'static str> {
    send_succeeds(h).await;
    idempotency_key_is_forwarded(h).await;
    rate_limit_honours_retry_after(h).await;
    rate_limit_without_retry_after(h).await;
    server_errors_are_retryable(h).await;
    client_errors_are_permanent(h).await;
    auth_errors_are_not_retried(h).await;
    vec![
        "send_succeeds",
        "idempotency_key_is_forwarded",
        "rate_limit_honours_retry_after",
        "rate_limit_without_retry_after",
        "server_errors_are_retryable",
        "client_errors_are_permanent",
        "auth_errors_are_not_retried",
    ]
}

/// Runs every verifier case in order; returns their names. Panics on the first failure.
pub async fn run_webhook_conformance(h: &dyn VerifierHarness) -> Vec<&'static str> {
    verifier_accepts_a_valid_request(h).await;
    verifier_rejects_a_tampered_body(h).await;
    verifier_rejects_a_wrong_secret(h).await;
    verifier_rejects_an_expired_timestamp(h).await;
    vec![
        "verifier_accepts_a_valid_request",
        "verifier_rejects_a_tampered_body",
        "verifier_rejects_a_wrong_secret",
        "verifier_rejects_an_expired_timestamp",
    ]
}

/// Expands to one `#[tokio::test]` per adapter case.
///
/// `$make` is a path to an `async fn() -> H` where `H: AdapterHarness`; it is called once
/// per test, so each case gets a fresh fake provider. Invoke it once per module to test
/// several adapters in one file. The invoking crate must depend on `crm-testkit`
/// (named `crm_testkit`).
#[macro_export]
macro_rules! adapter_conformance_tests {
    ($make:path) => {
        $crate::adapter_conformance_tests!(@cases $make;
            send_succeeds
            idempotency_key_is_forwarded
            rate_limit_honours_retry_after
            rate_limit_without_retry_after
            server_errors_are_retryable
            client_errors_are_permanent
            auth_errors_are_not_retried
        );
    };
    (@cases $make:path; $($case:ident)*) => {
        $(
            #[$crate::tokio::test(
                flavor = "multi_thread",
                worker_threads = 2,
                crate = "crm_testkit::tokio"
            )]
            async fn $case() {
                let harness = $make().await;
                $crate::adapter::$case(&harness).await;
            }
        )*
    };
}

/// Expands to one `#[tokio::test]` per inbound-verifier case; `$make` is a path to an
/// `async fn() -> H` where `H: VerifierHarness`.
#[macro_export]
macro_rules! webhook_conformance_tests {
    ($make:path) => {
        $crate::webhook_conformance_tests!(@cases $make;
            verifier_accepts_a_valid_request
            verifier_rejects_a_tampered_body
            verifier_rejects_a_wrong_secret
            verifier_rejects_an_expired_timestamp
        );
    };
    (@cases $make:path; $($case:ident)*) => {
        $(
            #[$crate::tokio::test(crate = "crm_testkit::tokio")]
            async fn $case() {
                let harness = $make().await;
                $crate::adapter::$case(&harness).await;
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
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
            self.keys
                .lock()
                .unwrap()
                .push(Some(message.idempotency_key()));
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

    struct ToyHarness(Arc<Toy>);

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
            Idempotency::Forwarded
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

    fn toy(honours_retry_after: bool) -> ToyHarness {
        ToyHarness(Arc::new(Toy {
            answer: Mutex::new(ProviderResponse::status(200)),
            keys: Mutex::new(Vec::new()),
            honours_retry_after,
        }))
    }

    #[tokio::test]
    async fn a_conforming_adapter_passes_every_case() {
        let passed = run_adapter_conformance(&toy(true)).await;
        assert_eq!(passed.len(), 7);
    }

    #[tokio::test]
    #[should_panic(expected = "429 must be RateLimited with retry_after = Retry-After")]
    async fn ignoring_retry_after_fails_the_kit() {
        rate_limit_honours_retry_after(&toy(false)).await;
    }
}
