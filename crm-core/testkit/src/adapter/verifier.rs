//! The inbound-webhook verifier cases of the kit.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crm_core::inbound::{InboundWebhook, WebhookError, WebhookRequest, verify_webhook};

use super::{CaseOutcome, ConformanceReport, not_run};

/// Whether a webhook scheme signs a timestamp, which decides whether the timestamp case
/// can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timestamps {
    /// The scheme signs a timestamp, accepted up to `tolerance` from "now".
    Signed {
        /// How far a signed timestamp may be from "now".
        tolerance: Duration,
    },
    /// The scheme signs no timestamp (Twilio, Meta, Cal.com), so the kit cannot check
    /// expiry; `reason` says how replays are stopped instead. The case checks that an
    /// old request indeed verifies and reports itself not run.
    NotSigned {
        /// Why there is no timestamp to check, shown in the report.
        reason: String,
    },
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

    /// Whether the scheme signs a timestamp, and with which tolerance.
    fn timestamps(&self) -> Timestamps;

    /// The "now" the cases verify at.
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(1_714_564_800, 0).unwrap_or_default()
    }
}

fn signed(h: &dyn VerifierHarness, at: DateTime<Utc>, key: SigningKey) -> WebhookRequest {
    h.sign(&h.body(), at, key)
}

/// A correctly signed, fresh request verifies.
pub async fn verifier_accepts_a_valid_request(h: &dyn VerifierHarness) -> CaseOutcome {
    let request = signed(h, h.now(), SigningKey::Configured);
    let result = verify_webhook(h.verifier(), &request, h.now()).map(|_| ());
    assert_eq!(result, Ok(()), "a valid request must verify");
    CaseOutcome::Passed
}

/// Changing the body after signing breaks verification.
pub async fn verifier_rejects_a_tampered_body(h: &dyn VerifierHarness) -> CaseOutcome {
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
    CaseOutcome::Passed
}

/// A request signed with another secret is `InvalidSignature`.
pub async fn verifier_rejects_a_wrong_secret(h: &dyn VerifierHarness) -> CaseOutcome {
    let request = signed(h, h.now(), SigningKey::Other);
    let result = verify_webhook(h.verifier(), &request, h.now()).map(|_| ());
    assert_eq!(
        result,
        Err(WebhookError::InvalidSignature),
        "a wrong secret must be rejected as InvalidSignature"
    );
    CaseOutcome::Passed
}

/// A timestamp just outside the tolerance (past or future) is rejected, one just
/// inside is accepted. A harness declaring [`Timestamps::NotSigned`] is checked to
/// verify an old request (the scheme cannot tell its age) and the case is reported not
/// run.
pub async fn verifier_rejects_an_expired_timestamp(h: &dyn VerifierHarness) -> CaseOutcome {
    let now = h.now();
    let tolerance = match h.timestamps() {
        Timestamps::Signed { tolerance } => tolerance,
        Timestamps::NotSigned { reason } => {
            let old = signed(h, now - chrono::Duration::days(30), SigningKey::Configured);
            assert!(
                verify_webhook(h.verifier(), &old, now).is_ok(),
                "the harness declares no signed timestamp ({reason}), but a 30-day-old request \
                 was rejected; if the scheme checks time, declare Timestamps::Signed"
            );
            return not_run("verifier_rejects_an_expired_timestamp", &reason);
        }
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
    CaseOutcome::Passed
}

/// Runs every verifier case in order and reports which passed and which the harness
/// declared not applicable. Panics on the first failure.
pub async fn run_webhook_conformance(h: &dyn VerifierHarness) -> ConformanceReport {
    let mut report = ConformanceReport::default();
    report.record(
        "verifier_accepts_a_valid_request",
        verifier_accepts_a_valid_request(h).await,
    );
    report.record(
        "verifier_rejects_a_tampered_body",
        verifier_rejects_a_tampered_body(h).await,
    );
    report.record(
        "verifier_rejects_a_wrong_secret",
        verifier_rejects_a_wrong_secret(h).await,
    );
    report.record(
        "verifier_rejects_an_expired_timestamp",
        verifier_rejects_an_expired_timestamp(h).await,
    );
    report
}
