//! ZeroBounce validation against a loopback server that checks the exact request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "zerobounce")]

mod common;

use std::time::Duration;

use common::*;
use crm_channels::zerobounce::{ZeroBounceConfig, ZeroBounceProvider};
use crm_core::EmailAddress;
use crm_core::enrichment::{
    EmailStatus, EmailVerification, EnrichmentError, EnrichmentProvider, Lookup,
};
use crm_core::secret::{SecretRef, SecretString};
use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "zb-key-123";

fn provider(base: &str) -> ZeroBounceProvider {
    let config = ZeroBounceConfig::new(SecretRef::parse("secret://zerobounce/key:1").unwrap())
        .unwrap()
        .with_http(http_config(&format!("{base}/v2")));
    ZeroBounceProvider::new(config, SecretString::from(KEY.to_owned())).unwrap()
}

fn email() -> EmailAddress {
    EmailAddress::parse("valid@example.com").unwrap()
}

async fn server_answering(validate: ResponseTemplate, credits: Option<&str>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/validate"))
        .and(query_param("api_key", KEY))
        .and(query_param("email", "valid@example.com"))
        .respond_with(validate)
        .mount(&server)
        .await;
    if let Some(credits) = credits {
        Mock::given(method("GET"))
            .and(path("/v2/getcredits"))
            .and(query_param("api_key", KEY))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"Credits": credits})))
            .expect(1)
            .mount(&server)
            .await;
    }
    server
}

async fn verify(
    validate: ResponseTemplate,
    credits: Option<&str>,
) -> Result<Lookup<EmailVerification>, EnrichmentError> {
    let server = server_answering(validate, credits).await;
    provider(&server.uri()).verify_email(&email()).await
}

fn validated(status: &str, sub_status: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "address": "valid@example.com", "status": status, "sub_status": sub_status,
        "free_email": false, "did_you_mean": null, "domain": "example.com", "mx_found": "true",
        "processed_at": "2024-05-01 12:00:00.000"
    }))
}

#[tokio::test]
async fn verdicts_are_mapped() {
    for (status, sub, expected) in [
        ("valid", "", EmailStatus::Valid),
        ("invalid", "mailbox_not_found", EmailStatus::Invalid),
        ("spamtrap", "", EmailStatus::Invalid),
        ("do_not_mail", "role_based", EmailStatus::Invalid),
        ("catch-all", "", EmailStatus::CatchAll),
        ("unknown", "greylisted", EmailStatus::Pending),
        (
            "unknown",
            "mail_server_did_not_respond",
            EmailStatus::Unknown,
        ),
    ] {
        let Lookup::Found(v) = verify(validated(status, sub), None).await.unwrap() else {
            panic!()
        };
        assert_eq!(v.status, expected, "{status}/{sub}");
    }
}

const ERROR_200: &str = "Invalid API Key or your account ran out of credits";

#[tokio::test]
async fn an_error_inside_a_200_is_an_error() {
    let body = ResponseTemplate::new(200).set_body_json(json!({"error": ERROR_200}));
    let e = verify(body.clone(), Some("-1")).await.unwrap_err();
    assert!(matches!(e, EnrichmentError::Auth { .. }), "{e}");
    let e = verify(body.clone(), Some("0")).await.unwrap_err();
    assert!(matches!(e, EnrichmentError::QuotaExhausted { .. }), "{e}");
    let e = verify(body, Some("250")).await.unwrap_err();
    assert!(
        matches!(&e, EnrichmentError::Permanent { reason, .. } if reason.contains("Invalid API Key")),
        "{e}"
    );
    let array = ResponseTemplate::new(200).set_body_json(json!({"error": [ERROR_200]}));
    let e = verify(array, Some("0")).await.unwrap_err();
    assert!(matches!(e, EnrichmentError::QuotaExhausted { .. }), "{e}");
}

#[tokio::test]
async fn http_errors_are_classified() {
    let e = verify(ResponseTemplate::new(429), None).await.unwrap_err();
    assert!(
        matches!(e, EnrichmentError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(60)),
        "{e}"
    );
    let e = verify(ResponseTemplate::new(403), None).await.unwrap_err();
    assert!(matches!(e, EnrichmentError::RateLimited { .. }), "{e}");
    let e = verify(ResponseTemplate::new(401), None).await.unwrap_err();
    assert!(matches!(e, EnrichmentError::Auth { .. }), "{e}");
    let e = verify(ResponseTemplate::new(400), None).await.unwrap_err();
    assert!(matches!(e, EnrichmentError::Permanent { .. }), "{e}");
    let e = verify(ResponseTemplate::new(500), None).await.unwrap_err();
    assert!(e.is_retryable());
    let e = verify(
        validated("valid", "").set_delay(Duration::from_secs(2)),
        None,
    )
    .await
    .unwrap_err();
    assert!(e.is_retryable());
    assert!(!error_chain(&e).contains(KEY), "{}", error_chain(&e));
    let e = provider(&refused_base_url())
        .verify_email(&email())
        .await
        .unwrap_err();
    assert!(e.is_retryable());
    assert!(!error_chain(&e).contains(KEY), "{}", error_chain(&e));
    assert!(!format!("{e:?}").contains(KEY));
}

#[tokio::test]
async fn credits_are_readable() {
    let server = server_answering(validated("valid", ""), Some("1234")).await;
    assert_eq!(provider(&server.uri()).credits().await.unwrap(), 1234);
}
