//! The HTTP surface against a real database, in this process: health, metrics, API
//! keys (401 without or with a bad key, 403 without the scope, 429 with `Retry-After`
//! past the per-key limit), typed JSON errors, and the webhook answers (401 bad or
//! stale signature, 400 malformed, 200 accepted then duplicate, 413 above the cap,
//! 404 unknown provider, Meta's `hub.challenge`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)]

mod common;

use common::Harness;
use crm_channels::webhooks::WebhookConfig;
use crm_channels::webhooks::standard::StandardWebhookVerifier;
use crm_core::access::ApiScope;
use crm_core::secret::SecretString;
use reqwest::Method;
use serde_json::json;

/// `whsec_` + base64 of 32 bytes.
const RESEND_SECRET: &str = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const CAP: usize = 4096;

fn signed(id: &str, ts: i64, body: &[u8]) -> String {
    let verifier =
        StandardWebhookVerifier::new(&SecretString::from(RESEND_SECRET), WebhookConfig::new())
            .unwrap();
    verifier.sign(id, ts, body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_http_surface_answers_as_documented() {
    let harness = Harness::start(
        &[
            (
                "CRM_WEBHOOK_RESEND_SECRET",
                "secret://t/resend_webhook:1".to_owned(),
            ),
            (
                "CRM_WEBHOOK_INSTAGRAM_APP_SECRET",
                "secret://t/ig_app:1".to_owned(),
            ),
            (
                "CRM_WEBHOOK_INSTAGRAM_VERIFY_TOKEN",
                "secret://t/ig_token:1".to_owned(),
            ),
            ("CRM_WEBHOOK_MAX_BODY_BYTES", CAP.to_string()),
        ],
        &[
            ("secret://t/resend_webhook:1", RESEND_SECRET),
            ("secret://t/ig_app:1", "app-secret"),
            ("secret://t/ig_token:1", "verify-me"),
        ],
    )
    .await;
    let api = harness.api();
    let http = reqwest::Client::new();

    // Health.
    let health = http
        .get(format!("{}/health", harness.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok", "{health}");

    // Keys: none, bad, missing scope.
    let (status, _, body) = api
        .with_token(None)
        .call(Method::GET, "/api/v1/inbox", None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (status, _, _) = api
        .with_token(Some("crm_AAAAAAAA_notarealtoken"))
        .call(Method::GET, "/api/v1/inbox", None)
        .await;
    assert_eq!(status, 401);
    let reader = api.with_token(Some(&harness.key_with(&[ApiScope::InboxRead]).await));
    let (status, _, body) = reader.call(Method::GET, "/api/v1/inbox", None).await;
    assert_eq!(status, 200, "{body}");
    let item = "0190a3b2-0000-7000-8000-000000000001";
    let (status, _, body) = reader
        .call(Method::POST, &format!("/api/v1/inbox/{item}/approve"), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    // Typed errors and a contact round trip.
    let (status, _, body) = api
        .call(
            Method::POST,
            "/api/v1/contacts",
            Some(json!({"email": "not an address"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("validation_failed"))
    );
    let contact = api
        .post(
            "/api/v1/contacts",
            json!({"first_name": "Ada", "email": "ada@example.com"}),
        )
        .await;
    let id = contact["id"].as_str().unwrap().to_owned();
    assert_eq!(
        api.get(&format!("/api/v1/contacts/{id}")).await["first_name"],
        "Ada"
    );
    let (status, _, body) = api.call(Method::GET, "/api/v1/contacts/nope", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );

    // Webhooks.
    let url = format!("{}/webhooks/resend/{}", harness.base, harness.workspace);
    let now = chrono::Utc::now().timestamp();
    let event = json!({"type": "email.delivered", "created_at": "2026-12-07T10:00:00Z",
        "data": {"email_id": "re_unknown", "to": ["ada@example.com"]}})
    .to_string();
    let post = |id: &str, ts: i64, signature: String, body: Vec<u8>| {
        http.post(&url)
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let wrong = post(
        "msg_1",
        now,
        "v1,AAAA".to_owned(),
        event.clone().into_bytes(),
    );
    assert_eq!(wrong.await.unwrap().status(), 401);
    let stale_ts = now - 3600;
    let stale = post(
        "msg_1",
        stale_ts,
        signed("msg_1", stale_ts, event.as_bytes()),
        event.clone().into_bytes(),
    );
    assert_eq!(stale.await.unwrap().status(), 401);
    let good = post(
        "msg_1",
        now,
        signed("msg_1", now, event.as_bytes()),
        event.clone().into_bytes(),
    );
    let good = good.await.unwrap();
    assert_eq!(good.status(), 200);
    assert_eq!(
        good.json::<serde_json::Value>().await.unwrap()["outcome"],
        "accepted"
    );
    let again = post(
        "msg_1",
        now,
        signed("msg_1", now, event.as_bytes()),
        event.clone().into_bytes(),
    );
    let again = again.await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.json::<serde_json::Value>().await.unwrap()["outcome"],
        "duplicate"
    );
    let junk = b"{not json".to_vec();
    let malformed = post("msg_2", now, signed("msg_2", now, &junk), junk.clone());
    assert_eq!(malformed.await.unwrap().status(), 400);
    let big = vec![b' '; CAP + 1];
    let too_large = post("msg_3", now, signed("msg_3", now, &big), big.clone());
    assert_eq!(too_large.await.unwrap().status(), 413);
    let unknown = http
        .post(format!(
            "{}/webhooks/nobody/{}",
            harness.base, harness.workspace
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // Meta's subscription handshake.
    let ig = format!("{}/webhooks/instagram/{}", harness.base, harness.workspace);
    let ok = http
        .get(format!(
            "{ig}?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=4242"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "4242");
    let refused = http
        .get(format!(
            "{ig}?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=4242"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // Metrics.
    let metrics = http
        .get(format!("{}/metrics", harness.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"crm_webhooks_total{provider="resend",result="accepted",outcome="accepted"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"outcome="bad_signature"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"crm_jobs{status="dead"}"#), "{metrics}");

    // The per-key limit: 100 requests a minute (a continuously refilling bucket, so a
    // slow machine may get a few more in before the 429), then 429 with Retry-After.
    let limited = api.with_token(Some(&harness.key_with(&[ApiScope::ContactsRead]).await));
    let mut ok = 0;
    let (status, headers, body) = loop {
        let answer = limited
            .call(Method::GET, &format!("/api/v1/contacts/{id}"), None)
            .await;
        if answer.0 != 200 || ok > 200 {
            break answer;
        }
        ok += 1;
    };
    assert!(
        ok >= 100,
        "only {ok} requests passed before {status}: {body}"
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");

    harness.stop().await;
}
