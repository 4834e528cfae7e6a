//! Webhook verification: Resend's verifier (Standard Webhooks / Svix `v1`, the scheme
//! of the email events the inbound pipeline receives most: delivered, opened,
//! clicked) through `crm_core::verify_webhook`, against a bare HMAC-SHA256 of the same
//! bytes (`{id}.{timestamp}.{body}`) checked in constant time against the
//! already-decoded tag: no headers, no timestamp, no base64. Target: at least 0.9x
//! the bare HMAC's rate.
//!
//! `cargo bench -p benches --bench webhooks` (size: `BENCH_WEBHOOKS`, 200,000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;

use base64::Engine as _;
use benches::{Bound, check, rate, report_ratio, size, timed_sync};
use chrono::{TimeZone, Utc};
use crm_channels::webhooks::WebhookConfig;
use crm_channels::webhooks::resend::ResendWebhook;
use crm_core::secret::SecretString;
use crm_core::{WebhookRequest, verify_webhook};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const KEY: &[u8] = b"bench webhook signing key, 32 b.";

/// A Resend `email.opened` event of typical size.
fn body(n: usize) -> Vec<u8> {
    serde_json::json!({
        "type": "email.opened",
        "created_at": "2026-01-05T09:00:00.000Z",
        "data": {
            "created_at": "2026-01-05T08:59:58.000Z",
            "email_id": format!("4ef9a417-02e9-4d39-ad75-{n:012}"),
            "from": "Acme <onboarding@acme.example>",
            "to": ["lead@example.com"],
            "subject": "Following up on our conversation",
            "headers": [{"name": "X-Entity-Ref-ID", "value": "bench"}],
            "tags": {"category": "outreach", "sequence": "welcome"}
        }
    })
    .to_string()
    .into_bytes()
}

fn main() {
    let count = size("BENCH_WEBHOOKS", 200_000, 2_000);
    let now = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
    let ts = now.timestamp().to_string();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(KEY)
    );
    let webhook = ResendWebhook::new(SecretString::from(secret), WebhookConfig::default()).unwrap();
    // A few distinct deliveries, signed as the provider would.
    let requests: Vec<(WebhookRequest, Vec<u8>)> = (0..64)
        .map(|n| {
            let id = format!("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W{n:02}");
            let body = body(n);
            let header = webhook
                .verifier()
                .sign(&id, now.timestamp(), &body)
                .unwrap();
            let tag = base64::engine::general_purpose::STANDARD
                .decode(header.trim_start_matches("v1,"))
                .unwrap();
            let mut headers = http::HeaderMap::new();
            headers.insert("svix-id", id.parse().unwrap());
            headers.insert("svix-timestamp", ts.parse().unwrap());
            headers.insert("svix-signature", header.parse().unwrap());
            let request = WebhookRequest {
                method: http::Method::POST,
                url: "https://crm.example/webhooks/resend".to_owned(),
                headers,
                body,
            };
            (request, tag)
        })
        .collect();

    let engine_once = || {
        let mut ok = 0_u64;
        for i in 0..count {
            let (request, _) = &requests[i % requests.len()];
            ok += u64::from(verify_webhook(&webhook, black_box(request), now).is_ok());
        }
        ok
    };
    let bare_once = || {
        let mut ok = 0_u64;
        for i in 0..count {
            let (request, tag) = &requests[i % requests.len()];
            let id = request.header("svix-id").unwrap_or_default();
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(KEY).unwrap();
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(ts.as_bytes());
            mac.update(b".");
            mac.update(black_box(&request.body));
            ok += u64::from(mac.verify_slice(tag).is_ok());
        }
        ok
    };
    // Best of three runs each, alternating, after one warm-up of each.
    engine_once();
    bare_once();
    let mut engine = std::time::Duration::MAX;
    let mut bare = std::time::Duration::MAX;
    for _ in 0..3 {
        let (ok, took) = timed_sync(engine_once);
        check(ok == count as u64, || {
            format!(
                "webhooks: the verifier refused {} signed requests",
                count as u64 - ok
            )
        });
        engine = engine.min(took);
        let (ok, took) = timed_sync(bare_once);
        check(ok == count as u64, || {
            format!(
                "webhooks: the bare HMAC refused {} requests",
                count as u64 - ok
            )
        });
        bare = bare.min(took);
    }
    // A tampered body is refused by both.
    let mut tampered = requests[0].0.clone();
    tampered.body.push(b' ');
    check(verify_webhook(&webhook, &tampered, now).is_err(), || {
        "webhooks: a tampered body was accepted".to_owned()
    });

    let n = count as u64;
    let (engine_rate, bare_rate) = (rate(n, engine), rate(n, bare));
    println!(
        "webhooks/resend verify {count} requests ({} byte bodies) = {engine_rate:>10.0}/s; bare HMAC-SHA256 = {bare_rate:>10.0}/s",
        requests[0].0.body.len()
    );
    report_ratio(
        "webhooks.verify_vs_bare_hmac",
        engine_rate / bare_rate,
        Bound::AtLeast,
        0.9,
    );
}
