//! Hunter enrichment against a loopback server that checks the exact request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "hunter")]

mod common;

use std::time::Duration;

use common::*;
use crm_channels::hunter::{HunterConfig, HunterProvider};
use crm_core::enrichment::{
    ContactQuery, EmailStatus, EnrichmentError, EnrichmentProvider, Lookup,
};
use crm_core::secret::{SecretRef, SecretString};
use crm_core::{Domain, EmailAddress};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "hunter-key-123";

fn provider(base: &str) -> HunterProvider {
    let config = HunterConfig::new(SecretRef::parse("secret://hunter/key:1").unwrap())
        .unwrap()
        .with_http(http_config(&format!("{base}/v2")));
    HunterProvider::new(config, SecretString::from(KEY.to_owned())).unwrap()
}

fn named() -> ContactQuery {
    ContactQuery {
        first_name: Some("Alexis".into()),
        last_name: Some("Ohanian".into()),
        domain: Some(Domain::parse("reddit.com").unwrap()),
        ..ContactQuery::default()
    }
}

fn email() -> EmailAddress {
    EmailAddress::parse("patrick@stripe.com").unwrap()
}

async fn verifier_answer(
    response: ResponseTemplate,
) -> Result<Lookup<crm_core::enrichment::EmailVerification>, EnrichmentError> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/email-verifier"))
        .and(header("x-api-key", KEY))
        .and(query_param("email", "patrick@stripe.com"))
        .respond_with(response)
        .mount(&server)
        .await;
    provider(&server.uri()).verify_email(&email()).await
}

fn hunter_error(status: u16, id: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({"errors": [{"id": id, "code": status, "details": "x"}]}))
}

#[tokio::test]
async fn email_finder_sends_domain_and_names() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/email-finder"))
        .and(header("x-api-key", KEY))
        .and(query_param("domain", "reddit.com"))
        .and(query_param("first_name", "Alexis"))
        .and(query_param("last_name", "Ohanian"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
            "first_name": "Alexis", "last_name": "Ohanian", "email": "alexis@reddit.com", "score": 97,
            "domain": "reddit.com", "position": "Cofounder", "linkedin_url": null, "phone_number": null,
            "verification": {"date": "2024-01-01", "status": "valid"}, "sources": []
        }, "meta": {"params": {}}})))
        .expect(1)
        .mount(&server)
        .await;
    let Lookup::Found(c) = provider(&server.uri())
        .enrich_contact(&named())
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(c.email.as_deref(), Some("alexis@reddit.com"));
    assert_eq!(c.title.as_deref(), Some("Cofounder"));
}

#[tokio::test]
async fn a_null_email_is_a_miss() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/email-finder"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {"email": null}})))
        .mount(&server)
        .await;
    assert_eq!(
        provider(&server.uri())
            .enrich_contact(&named())
            .await
            .unwrap(),
        Lookup::NotFound
    );
    let e = provider(&server.uri())
        .enrich_contact(&ContactQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(e, EnrichmentError::Permanent { .. }));
}

#[tokio::test]
async fn verifier_statuses_are_mapped() {
    for (status, result, expected) in [
        ("valid", "deliverable", EmailStatus::Valid),
        ("invalid", "undeliverable", EmailStatus::Invalid),
        ("accept_all", "risky", EmailStatus::CatchAll),
        ("disposable", "deliverable", EmailStatus::Invalid),
        ("webmail", "deliverable", EmailStatus::Valid),
        ("unknown", "risky", EmailStatus::Unknown),
    ] {
        let answer = verifier_answer(ResponseTemplate::new(200).set_body_json(json!({"data": {
            "status": status, "result": result, "score": 91, "email": "patrick@stripe.com"
        }})))
        .await
        .unwrap();
        let Lookup::Found(v) = answer else { panic!() };
        assert_eq!(v.status, expected, "{status}");
        assert_eq!(v.score, Some(91));
    }
}

#[tokio::test]
async fn http_202_means_pending() {
    let answer = verifier_answer(ResponseTemplate::new(202).set_body_json(json!({"data": null})))
        .await
        .unwrap();
    let Lookup::Found(v) = answer else { panic!() };
    assert_eq!(v.status, EmailStatus::Pending);
}

#[tokio::test]
async fn hunter_specific_statuses_are_classified() {
    let e = verifier_answer(hunter_error(401, "authentication_failed"))
        .await
        .unwrap_err();
    assert!(matches!(e, EnrichmentError::Auth { .. }), "{e}");
    let e = verifier_answer(hunter_error(403, "too_many_requests"))
        .await
        .unwrap_err();
    assert!(matches!(e, EnrichmentError::RateLimited { .. }), "{e}");
    let e = verifier_answer(hunter_error(429, "usage_limit_reached"))
        .await
        .unwrap_err();
    assert!(matches!(e, EnrichmentError::QuotaExhausted { .. }), "{e}");
    let e = verifier_answer(hunter_error(400, "wrong_params"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EnrichmentError::Permanent { reason, .. } if reason.contains("wrong_params")),
        "{e}"
    );
    let e = verifier_answer(hunter_error(404, "not_found"))
        .await
        .unwrap_err();
    assert!(matches!(e, EnrichmentError::Permanent { .. }), "{e}");
    let e = verifier_answer(hunter_error(503, "unavailable"))
        .await
        .unwrap_err();
    assert!(e.is_retryable());
    let e = verifier_answer(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert!(e.is_retryable());
    let e = provider(&refused_base_url())
        .verify_email(&email())
        .await
        .unwrap_err();
    assert!(e.is_retryable());
    assert!(!error_chain(&e).contains(KEY));
}
