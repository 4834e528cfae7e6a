//! Apollo enrichment against a loopback server that checks the exact request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "apollo")]

mod common;

use std::time::Duration;

use common::*;
use crm_channels::apollo::{ApolloConfig, ApolloProvider};
use crm_core::enrichment::{ContactQuery, EnrichmentError, EnrichmentProvider, Lookup, LookupKind};
use crm_core::secret::{SecretRef, SecretString};
use crm_core::{Domain, EmailAddress};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "apollo-key-123";

fn provider(base: &str) -> ApolloProvider {
    let config = ApolloConfig::new(SecretRef::parse("secret://apollo/key:1").unwrap())
        .unwrap()
        .with_http(http_config(&format!("{base}/api/v1")));
    ApolloProvider::new(config, SecretString::from(KEY.to_owned())).unwrap()
}

fn by_email() -> ContactQuery {
    ContactQuery {
        email: Some(EmailAddress::parse("tim@apollo.io").unwrap()),
        ..ContactQuery::default()
    }
}

async fn contact_error(response: ResponseTemplate) -> EnrichmentError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/people/match"))
        .respond_with(response)
        .mount(&server)
        .await;
    provider(&server.uri())
        .enrich_contact(&by_email())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn people_match_sends_identifiers_as_query_params() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/people/match"))
        .and(header("x-api-key", KEY))
        .and(query_param("email", "tim@apollo.io"))
        .and(query_param("first_name", "Tim"))
        .and(query_param("domain", "apollo.io"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-rate-limit-minute", "1000")
                .insert_header("x-minute-requests-left", "998")
                .set_body_json(json!({"person": {
                    "id": "p1", "first_name": "Tim", "last_name": "Zheng", "title": "Founder & CEO",
                    "email": "tim@apollo.io", "email_status": "verified", "seniority": "founder",
                    "linkedin_url": "http://www.linkedin.com/in/tim-zheng-677ba010",
                    "city": "San Francisco", "state": "California", "country": "United States",
                    "organization": {"name": "Apollo.io", "primary_domain": "apollo.io"}
                }, "request_id": "r1"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server.uri());
    let mut query = by_email();
    query.first_name = Some("Tim".into());
    query.domain = Some(Domain::parse("apollo.io").unwrap());
    let Lookup::Found(c) = p.enrich_contact(&query).await.unwrap() else {
        panic!("expected a hit")
    };
    assert_eq!(c.last_name.as_deref(), Some("Zheng"));
    assert_eq!(c.company_domain.as_deref(), Some("apollo.io"));
    assert_eq!(
        c.location.as_deref(),
        Some("San Francisco, California, United States")
    );
    let state = p.rate_limit();
    assert_eq!((state.limit, state.remaining), (Some(1000), Some(998)));
}

#[tokio::test]
async fn a_200_without_person_is_a_miss() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/people/match"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"person": null})))
        .mount(&server)
        .await;
    assert_eq!(
        provider(&server.uri())
            .enrich_contact(&by_email())
            .await
            .unwrap(),
        Lookup::NotFound
    );
}

#[tokio::test]
async fn organization_enrich_reads_the_company() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/organizations/enrich"))
        .and(header("x-api-key", KEY))
        .and(query_param("domain", "apollo.io"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"organization": {
            "name": "Apollo.io", "primary_domain": "apollo.io", "industry": "information technology & services",
            "estimated_num_employees": 1600, "annual_revenue": 100000000.0, "country": "United States",
            "linkedin_url": "http://www.linkedin.com/company/apolloio"
        }})))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server.uri());
    let Lookup::Found(c) = p
        .enrich_company(&Domain::parse("apollo.io").unwrap())
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(c.employee_count, Some(1600));
    assert_eq!(c.annual_revenue.unwrap().minor_units(), 10_000_000_000);
    assert_eq!(p.kinds(), &[LookupKind::Contact, LookupKind::Company]);
    assert_eq!(p.cost(LookupKind::Contact).credits, 1);
}

#[tokio::test]
async fn errors_are_classified() {
    let e =
        contact_error(ResponseTemplate::new(401).set_body_string(
            "Invalid API key. See https://docs.apollo.io/reference/authentication",
        ))
        .await;
    assert!(matches!(e, EnrichmentError::Auth { .. }), "{e}");
    let e = contact_error(
        ResponseTemplate::new(403).set_body_json(json!({"error": "master key required"})),
    )
    .await;
    assert!(matches!(e, EnrichmentError::Auth { .. }), "{e}");
    let e = contact_error(ResponseTemplate::new(429).insert_header("retry-after", "60").set_body_json(json!({
        "message": "The maximum number of api calls allowed for api/v1/people/match is 600 times per hour."
    }))).await;
    assert!(
        matches!(e, EnrichmentError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(60)),
        "{e}"
    );
    let e = contact_error(ResponseTemplate::new(422).set_body_json(json!({"error": "bad"}))).await;
    assert!(matches!(e, EnrichmentError::Permanent { .. }), "{e}");
    let e = contact_error(ResponseTemplate::new(500)).await;
    assert!(e.is_retryable());
    let e = contact_error(ResponseTemplate::new(200).set_body_string("<html>")).await;
    assert!(matches!(e, EnrichmentError::Permanent { .. }), "{e}");
    let e = contact_error(ResponseTemplate::new(200).set_delay(Duration::from_secs(2))).await;
    assert!(e.is_retryable());
    let e = provider(&refused_base_url())
        .enrich_contact(&by_email())
        .await
        .unwrap_err();
    assert!(e.is_retryable());
    assert!(!error_chain(&e).contains(KEY));
}

#[tokio::test]
async fn a_query_without_identifiers_is_refused_locally() {
    let p = provider(&refused_base_url());
    let e = p
        .enrich_contact(&ContactQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(e, EnrichmentError::Permanent { .. }));
    assert!(!format!("{p:?}").contains(KEY));
}
