//! Clearbit (legacy keys) against a loopback server that checks the exact request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "clearbit")]

mod common;

use std::time::Duration;

use common::*;
use crm_channels::clearbit::{ClearbitConfig, ClearbitProvider};
use crm_core::enrichment::{ContactQuery, EnrichmentError, EnrichmentProvider, Lookup};
use crm_core::secret::{SecretRef, SecretString};
use crm_core::{Domain, EmailAddress};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk_clearbit_legacy";

fn provider(base: &str) -> ClearbitProvider {
    let config = ClearbitConfig::new(SecretRef::parse("secret://clearbit/key:1").unwrap())
        .unwrap()
        .with_http(
            http_config(&format!("{base}/person/v2")),
            http_config(&format!("{base}/company/v2")),
        );
    ClearbitProvider::new(config, SecretString::from(KEY.to_owned())).unwrap()
}

fn by_email() -> ContactQuery {
    ContactQuery {
        email: Some(EmailAddress::parse("alex@clearbit.com").unwrap()),
        ..ContactQuery::default()
    }
}

async fn person_answer(
    response: ResponseTemplate,
) -> Result<Lookup<crm_core::enrichment::ContactData>, EnrichmentError> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/person/v2/combined/find"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(query_param("email", "alex@clearbit.com"))
        .respond_with(response)
        .mount(&server)
        .await;
    provider(&server.uri()).enrich_contact(&by_email()).await
}

#[tokio::test]
async fn combined_find_reads_the_person() {
    let Lookup::Found(c) = person_answer(ResponseTemplate::new(200).set_body_json(json!({
        "person": {"name": {"fullName": "Alex MacCaw", "givenName": "Alex", "familyName": "MacCaw"},
                   "email": "alex@clearbit.com", "location": "San Francisco, CA, US",
                   "employment": {"domain": "clearbit.com", "name": "Clearbit", "title": "CEO", "seniority": "executive"},
                   "linkedin": {"handle": "in/alex"}},
        "company": {"domain": "clearbit.com"}
    }))).await.unwrap() else { panic!() };
    assert_eq!(c.first_name.as_deref(), Some("Alex"));
    assert_eq!(c.title.as_deref(), Some("CEO"));
    assert_eq!(
        c.linkedin_url.as_deref(),
        Some("https://www.linkedin.com/in/alex")
    );
}

#[tokio::test]
async fn misses_and_queued_lookups() {
    assert_eq!(
        person_answer(ResponseTemplate::new(404)).await.unwrap(),
        Lookup::NotFound
    );
    let null_person =
        ResponseTemplate::new(200).set_body_json(json!({"person": null, "company": null}));
    assert_eq!(person_answer(null_person).await.unwrap(), Lookup::NotFound);
    let e = person_answer(ResponseTemplate::new(202)).await.unwrap_err();
    assert!(matches!(e, EnrichmentError::Retryable { .. }), "{e}");
}

#[tokio::test]
async fn companies_find_reads_the_company() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/company/v2/companies/find"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(query_param("domain", "clearbit.com"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "name": "Clearbit", "domain": "clearbit.com", "category": {"industry": "Internet Software & Services"},
            "metrics": {"employees": 140, "annualRevenue": 25000000}, "geo": {"country": "United States"},
            "linkedin": {"handle": "company/clearbit"}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let Lookup::Found(c) = provider(&server.uri())
        .enrich_company(&Domain::parse("clearbit.com").unwrap())
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(c.employee_count, Some(140));
    assert_eq!(c.industry.as_deref(), Some("Internet Software & Services"));
    assert_eq!(
        c.linkedin_url.as_deref(),
        Some("https://www.linkedin.com/company/clearbit")
    );
}

#[tokio::test]
async fn errors_are_classified() {
    let err = |s: u16| {
        ResponseTemplate::new(s).set_body_json(json!({"error": {"type": "x", "message": "m"}}))
    };
    assert!(matches!(
        person_answer(err(401)).await.unwrap_err(),
        EnrichmentError::Auth { .. }
    ));
    assert!(matches!(
        person_answer(err(403)).await.unwrap_err(),
        EnrichmentError::Auth { .. }
    ));
    assert!(matches!(
        person_answer(err(402)).await.unwrap_err(),
        EnrichmentError::QuotaExhausted { .. }
    ));
    assert!(matches!(
        person_answer(err(422)).await.unwrap_err(),
        EnrichmentError::Permanent { .. }
    ));
    let e = person_answer(err(429).insert_header("retry-after", "12"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, EnrichmentError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(12))
    );
    assert!(person_answer(err(500)).await.unwrap_err().is_retryable());
    assert!(
        person_answer(err(200).set_delay(Duration::from_secs(2)))
            .await
            .unwrap_err()
            .is_retryable()
    );
    let e = provider(&refused_base_url())
        .enrich_contact(&by_email())
        .await
        .unwrap_err();
    assert!(e.is_retryable());
    assert!(!error_chain(&e).contains(KEY));
    let e = provider(&refused_base_url())
        .enrich_contact(&ContactQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(e, EnrichmentError::Permanent { .. }));
}
