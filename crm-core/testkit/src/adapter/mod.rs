//! The adapter conformance kit: the executable form of the [`ChannelAdapter`] and
//! [`InboundWebhook`](crm_core::inbound::InboundWebhook) contracts, for anyone writing an adapter.
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
//! Each case is a `pub async fn case(harness: &dyn _) -> CaseOutcome` that panics naming
//! the rule it checks.
//!
//! # Cases that cannot run
//! The kit never skips a case silently. A harness whose adapter cannot run a group of
//! cases declares it, with a reason: [`AdapterHarness::error_classes`] answers
//! [`Support::NotApplicable`] for an adapter that calls no provider,
//! [`Idempotency::NotOffered`] names why the provider takes no key, and
//! [`VerifierHarness::timestamps`] answers [`Timestamps::NotSigned`] for a scheme that
//! signs no time. The case then checks that the declaration holds (the adapter really
//! calls no provider, really sends no key; the verifier really accepts an old request),
//! prints `crm-testkit: <case>: NOT RUN: <reason>` on stderr, and returns
//! [`CaseOutcome::NotRun`]; [`run_adapter_conformance`] lists it under
//! [`ConformanceReport::not_run`]. [`adapter_conformance_tests!`](crate::adapter_conformance_tests) and
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

use crm_core::channel::{ChannelAdapter, ChannelError, ChannelErrorKind, OutboundMessage};

mod verifier;

pub use verifier::{
    SigningKey, Timestamps, VerifierHarness, run_webhook_conformance,
    verifier_accepts_a_valid_request, verifier_rejects_a_tampered_body,
    verifier_rejects_a_wrong_secret, verifier_rejects_an_expired_timestamp,
};

/// Whether a harness can run a group of cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// The kit runs the cases.
    Runs,
    /// The cases cannot run against this adapter; `reason` says why. The kit checks
    /// that the declaration holds, reports the cases as not run and runs nothing else.
    NotApplicable {
        /// Why the cases do not apply, shown in the report.
        reason: String,
    },
}

impl Support {
    /// [`Support::NotApplicable`] with `reason`.
    #[must_use]
    pub fn not_applicable(reason: impl Into<String>) -> Self {
        Self::NotApplicable {
            reason: reason.into(),
        }
    }
}

/// What one case did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum CaseOutcome {
    /// Every rule of the case was checked and held.
    Passed,
    /// The harness declared the case not applicable; the kit checked only that the
    /// declaration holds.
    NotRun {
        /// The harness's reason.
        reason: String,
    },
}

/// What [`run_adapter_conformance`] and [`run_webhook_conformance`] did, case by case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConformanceReport {
    /// Cases that ran and held.
    pub passed: Vec<&'static str>,
    /// Cases the harness declared not applicable, with its reason.
    pub not_run: Vec<(&'static str, String)>,
}

impl ConformanceReport {
    fn record(&mut self, case: &'static str, outcome: CaseOutcome) {
        match outcome {
            CaseOutcome::Passed => self.passed.push(case),
            CaseOutcome::NotRun { reason } => self.not_run.push((case, reason)),
        }
    }
}

/// Reports `case` as not run on stderr and returns [`CaseOutcome::NotRun`]. A blank
/// reason is no declaration: it fails the case.
fn not_run(case: &str, reason: &str) -> CaseOutcome {
    assert!(
        !reason.trim().is_empty(),
        "{case}: a case declared not applicable must say why"
    );
    eprintln!("crm-testkit: {case}: NOT RUN: {reason}");
    CaseOutcome::NotRun {
        reason: reason.to_owned(),
    }
}

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
    /// The forwarding case then only checks that no key is sent and reports itself
    /// not run with `reason`.
    NotOffered {
        /// Why the provider takes no key (for example "Twilio's Messages API has no
        /// idempotency key").
        reason: &'static str,
    },
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

    /// Whether the error-class cases (429, 5xx, 4xx, 401/403) can run. An adapter that
    /// calls no provider has no provider errors to classify: it answers
    /// [`Support::NotApplicable`] with a reason, and the kit checks that a send against
    /// a failing provider indeed succeeds without calling it.
    fn error_classes(&self) -> Support {
        Support::Runs
    }

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

/// `Some(NotRun)` when the harness declares the error-class cases not applicable,
/// after checking that declaration: a send against a failing provider succeeds and
/// reaches no provider.
async fn error_classes_not_applicable(h: &dyn AdapterHarness, case: &str) -> Option<CaseOutcome> {
    let Support::NotApplicable { reason } = h.error_classes() else {
        return None;
    };
    let message = h.message();
    let result = send_against(h, ProviderResponse::status(500), &message).await;
    assert!(
        result.is_ok(),
        "{case}: the harness declares the error classes not applicable ({reason}), but the \
         adapter failed on a provider answer, so it has errors to classify: {result:?}"
    );
    let calls = h.received_idempotency_keys().await;
    assert!(
        calls.is_empty(),
        "{case}: the harness declares the error classes not applicable ({reason}), but the \
         adapter called the provider {} time(s)",
        calls.len()
    );
    Some(not_run(case, &reason))
}

/// Sends against `response` and checks the error with `check`.
async fn expect_class(
    h: &dyn AdapterHarness,
    response: ProviderResponse,
    rule: &str,
    check: impl Fn(&ChannelError) -> bool,
) {
    let message = h.message();
    let described = format!("HTTP {} {:?}", response.status, response.headers);
    match send_against(h, response, &message).await {
        Ok(receipt) => panic!(
            "{rule}: {described} was reported as a success: {receipt:?} (an adapter that calls \
             no provider declares `error_classes()` not applicable)"
        ),
        Err(error) => assert!(check(&error), "{rule}: {described} gave {error:?}"),
    }
}

/// A success answer yields a receipt, and the provider was called.
pub async fn send_succeeds(h: &dyn AdapterHarness) -> CaseOutcome {
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
    CaseOutcome::Passed
}

/// The outbox id reaches the provider as idempotency key, the same on every attempt
/// (or, for local adapters, a repeated send gives the same receipt). For a provider
/// without idempotency keys it checks that none is sent and reports itself not run.
pub async fn idempotency_key_is_forwarded(h: &dyn AdapterHarness) -> CaseOutcome {
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
        Idempotency::NotOffered { reason } => {
            assert!(
                !keys.is_empty() && keys.iter().all(Option::is_none),
                "a provider without idempotency keys must be called and receive none: {keys:?}"
            );
            return not_run("idempotency_key_is_forwarded", reason);
        }
        Idempotency::Local => {
            assert!(keys.is_empty(), "a local adapter must not call a provider");
            assert_eq!(
                first.provider_message_id, second.provider_message_id,
                "a repeated local send must give the same receipt"
            );
        }
    }
    CaseOutcome::Passed
}

/// 429 with `Retry-After: 7` is `RateLimited` with `retry_after` of 7 seconds.
pub async fn rate_limit_honours_retry_after(h: &dyn AdapterHarness) -> CaseOutcome {
    if let Some(outcome) = error_classes_not_applicable(h, "rate_limit_honours_retry_after").await {
        return outcome;
    }
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
    CaseOutcome::Passed
}

/// 429 without `Retry-After` is still `RateLimited`.
pub async fn rate_limit_without_retry_after(h: &dyn AdapterHarness) -> CaseOutcome {
    if let Some(outcome) = error_classes_not_applicable(h, "rate_limit_without_retry_after").await {
        return outcome;
    }
    expect_class(
        h,
        ProviderResponse::status(429),
        "429 must be RateLimited",
        |e| e.kind() == ChannelErrorKind::RateLimited,
    )
    .await;
    CaseOutcome::Passed
}

/// 500, 502 and 503 are retryable; a `Retry-After` on a 503 is kept if reported.
pub async fn server_errors_are_retryable(h: &dyn AdapterHarness) -> CaseOutcome {
    if let Some(outcome) = error_classes_not_applicable(h, "server_errors_are_retryable").await {
        return outcome;
    }
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
    CaseOutcome::Passed
}

/// 400, 404 and 422 are permanent (or an invalid recipient), never retried.
pub async fn client_errors_are_permanent(h: &dyn AdapterHarness) -> CaseOutcome {
    if let Some(outcome) = error_classes_not_applicable(h, "client_errors_are_permanent").await {
        return outcome;
    }
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
    CaseOutcome::Passed
}

/// 401 is `Auth`; 403 is not retryable.
pub async fn auth_errors_are_not_retried(h: &dyn AdapterHarness) -> CaseOutcome {
    if let Some(outcome) = error_classes_not_applicable(h, "auth_errors_are_not_retried").await {
        return outcome;
    }
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
    CaseOutcome::Passed
}

/// Runs every adapter case in order and reports which passed and which the harness
/// declared not applicable. Panics on the first failure.
pub async fn run_adapter_conformance(h: &dyn AdapterHarness) -> ConformanceReport {
    let mut report = ConformanceReport::default();
    report.record("send_succeeds", send_succeeds(h).await);
    report.record(
        "idempotency_key_is_forwarded",
        idempotency_key_is_forwarded(h).await,
    );
    report.record(
        "rate_limit_honours_retry_after",
        rate_limit_honours_retry_after(h).await,
    );
    report.record(
        "rate_limit_without_retry_after",
        rate_limit_without_retry_after(h).await,
    );
    report.record(
        "server_errors_are_retryable",
        server_errors_are_retryable(h).await,
    );
    report.record(
        "client_errors_are_permanent",
        client_errors_are_permanent(h).await,
    );
    report.record(
        "auth_errors_are_not_retried",
        auth_errors_are_not_retried(h).await,
    );
    report
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
                let _outcome = $crate::adapter::$case(&harness).await;
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
                let _outcome = $crate::adapter::$case(&harness).await;
            }
        )*
    };
}

#[cfg(test)]
mod tests;
