//! Cal.com: the booking-link step and API v2 bookings against a loopback server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(all(feature = "cal-com", feature = "resend"))]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use common::*;
use crm_channels::cal_com::{
    Attendee, BookingRequest, CalComBookingLinkChannel, CalComClient, CalComConfig, EventTypeRef,
    SlotsQuery,
};
use crm_channels::dry_run::DryRunChannel;
use crm_channels::http::TransportErrorKind;
use crm_channels::resend::{ResendChannel, ResendConfig};
use crm_core::model::Channel;
use crm_core::secret::{SecretRef, SecretString};
use crm_core::{ChannelAdapter, ChannelError, ChannelErrorKind, EmailAddress};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "cal_live_test123";

fn client(base: &str) -> CalComClient {
    let config = CalComConfig::new(SecretRef::parse("secret://cal_com/key:1").unwrap())
        .unwrap()
        .with_http(http_config(&format!("{base}/v2")));
    CalComClient::new(config, SecretString::from(KEY.to_owned())).unwrap()
}

fn booking() -> BookingRequest {
    BookingRequest::new(
        chrono::DateTime::parse_from_rfc3339("2024-05-02T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc),
        EventTypeRef::Id(42),
        Attendee {
            name: "Ada Lovelace".into(),
            email: EmailAddress::parse("ada@example.com").unwrap(),
            time_zone: "Europe/London".into(),
            phone_number: None,
            language: Some("en".into()),
        },
    )
    .with_metadata("contact_id", json!("c-1"))
}

fn booked() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "status": "success",
        "data": {"id": 123, "uid": "bFJeNb2uX8ANpT3JL5EfXw", "title": "30 min", "status": "accepted",
                 "start": "2024-05-02T10:00:00.000Z", "end": "2024-05-02T10:30:00.000Z",
                 "meetingUrl": "https://cal.com/video/x", "attendees": []}
    }))
}

async fn booking_error(response: ResponseTemplate) -> ChannelError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(response)
        .mount(&server)
        .await;
    client(&server.uri())
        .create_booking(&booking())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn creates_a_booking_with_the_configured_api_version() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("cal-api-version", "2024-08-13"))
        .and(body_json(json!({
            "start": "2024-05-02T10:00:00Z",
            "eventTypeId": 42,
            "attendee": {"name": "Ada Lovelace", "email": "ada@example.com",
                         "timeZone": "Europe/London", "language": "en"},
            "metadata": {"contact_id": "c-1"}
        })))
        .respond_with(booked())
        .expect(1)
        .mount(&server)
        .await;
    let b = client(&server.uri())
        .create_booking(&booking())
        .await
        .unwrap();
    assert_eq!(b.uid.as_deref(), Some("bFJeNb2uX8ANpT3JL5EfXw"));
    assert_eq!(b.id, Some(123));
}

#[tokio::test]
async fn the_api_version_is_configurable_and_slugs_are_supported() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .and(header("cal-api-version", "2026-02-25"))
        .and(body_json(json!({
            "start": "2024-05-02T10:00:00Z",
            "eventTypeSlug": "30min", "username": "ada", "organizationSlug": "acme",
            "attendee": {"name": "Ada Lovelace", "email": "ada@example.com",
                         "timeZone": "Europe/London", "language": "en"},
            "guests": ["bob@example.com"],
            "lengthInMinutes": 30,
            "metadata": {"contact_id": "c-1"}
        })))
        .respond_with(booked())
        .expect(1)
        .mount(&server)
        .await;
    let config = CalComConfig::new(SecretRef::parse("secret://cal_com/key:1").unwrap())
        .unwrap()
        .with_bookings_api_version("2026-02-25")
        .with_http(http_config(&format!("{}/v2", server.uri())));
    let mut request = booking()
        .with_guest(EmailAddress::parse("bob@example.com").unwrap())
        .with_length_in_minutes(30);
    request.event_type = EventTypeRef::UserSlug {
        slug: "30min".into(),
        username: "ada".into(),
        organization_slug: Some("acme".into()),
    };
    // Built as a host would: the key resolved from its reference.
    let secrets = crm_channels::secrets::MemorySecretResolver::new()
        .with(&SecretRef::parse("secret://cal_com/key:1").unwrap(), KEY);
    CalComClient::connect(config, &secrets)
        .await
        .unwrap()
        .create_booking(&request)
        .await
        .unwrap();
}

#[tokio::test]
async fn lists_slots() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/slots"))
        .and(header("cal-api-version", "2024-09-04"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(query_param("eventTypeId", "42"))
        .and(query_param("start", "2024-05-02"))
        .and(query_param("end", "2024-05-03"))
        .and(query_param("timeZone", "Europe/London"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "success",
            "data": {"2024-05-02": [{"start": "2024-05-02T10:00:00.000+01:00"}]}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let slots = client(&server.uri())
        .slots(&SlotsQuery {
            event_type_id: 42,
            start: NaiveDate::from_ymd_opt(2024, 5, 2).unwrap(),
            end: NaiveDate::from_ymd_opt(2024, 5, 3).unwrap(),
            time_zone: "Europe/London".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        slots["2024-05-02"][0].start,
        "2024-05-02T10:00:00.000+01:00"
    );
}

#[tokio::test]
async fn booking_errors_are_classified() {
    let err = |status: u16, code: &str| {
        ResponseTemplate::new(status).set_body_json(json!({
            "status": "error", "timestamp": "2024-05-01T12:00:00Z", "path": "/v2/bookings",
            "error": {"code": code, "message": "failed"}
        }))
    };
    let cases = [
        (err(400, "BadRequestException"), ChannelErrorKind::Permanent),
        (err(401, "UnauthorizedException"), ChannelErrorKind::Auth),
        (err(403, "ForbiddenException"), ChannelErrorKind::Auth),
        (err(404, "NotFoundException"), ChannelErrorKind::Permanent),
        (err(409, "ConflictException"), ChannelErrorKind::Permanent),
        (
            err(422, "UnprocessableEntityException"),
            ChannelErrorKind::Permanent,
        ),
        (
            err(503, "ServiceUnavailableException"),
            ChannelErrorKind::Retryable,
        ),
        (
            err(500, "InternalServerErrorException"),
            ChannelErrorKind::Retryable,
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"status": "error"})),
            ChannelErrorKind::Permanent,
        ),
    ];
    for (response, expected) in cases {
        let e = booking_error(response).await;
        assert_eq!(e.kind(), expected, "{e}");
        assert!(!e.to_string().contains(KEY));
    }
    let e = booking_error(ResponseTemplate::new(429).insert_header("retry-after", "5")).await;
    assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
    let e = booking_error(booked().set_delay(Duration::from_secs(2))).await;
    assert_eq!(transport_kind(&e), Some(TransportErrorKind::Timeout));
    let e = client(&refused_base_url())
        .create_booking(&booking())
        .await
        .unwrap_err();
    assert_eq!(transport_kind(&e), Some(TransportErrorKind::Connect));
}

#[tokio::test]
async fn the_booking_link_replaces_the_placeholder() {
    let delivery = DryRunChannel::new(Channel::Email);
    let step = CalComBookingLinkChannel::new(
        "https://cal.com/ada/30min".parse().unwrap(),
        Arc::new(delivery.clone()),
    );
    assert_eq!(step.channel(), Channel::CalCom);
    let mut m = message(Channel::CalCom, "ada@example.com");
    m.body = "Pick a time: {{booking_link}}".into();
    step.send(&m).await.unwrap();
    let mut appended = message(Channel::CalCom, "bob@example.com");
    appended.body = "Shall we talk?".into();
    appended.metadata = json!({"booking_url": "https://cal.com/team/intro"});
    step.send(&appended).await.unwrap();
    let sent = delivery.sent();
    assert_eq!(sent[0].body, "Pick a time: https://cal.com/ada/30min");
    assert_eq!(sent[0].id, m.id);
    assert_eq!(sent[1].body, "Shall we talk?\n\nhttps://cal.com/team/intro");
    let mut bad = message(Channel::CalCom, "ada@example.com");
    bad.metadata = json!({"booking_url": "javascript:alert(1)"});
    assert_eq!(
        step.send(&bad).await.unwrap_err().kind(),
        ChannelErrorKind::Permanent
    );
}

#[tokio::test]
async fn the_booking_link_goes_out_through_resend_with_the_same_idempotency_key() {
    let server = MockServer::start().await;
    let mut m = message(Channel::CalCom, "ada@example.com");
    m.body = "Book here: {{booking_link}}".into();
    Mock::given(method("POST"))
        .and(path("/emails"))
        .and(header("idempotency-key", m.idempotency_key().as_str()))
        .and(body_json(json!({
            "from": "sales@example.com", "to": ["ada@example.com"],
            "subject": "Quick question", "text": "Book here: https://cal.com/ada/30min"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "e-1"})))
        .expect(1)
        .mount(&server)
        .await;
    let reference = crm_core::SecretRef::parse("secret://resend/x:1").unwrap();
    let resend = ResendChannel::new(
        ResendConfig::new(reference, "sales@example.com")
            .unwrap()
            .with_http(http_config(&server.uri())),
        SecretString::from("re_x".to_owned()),
    )
    .unwrap();
    let step = CalComBookingLinkChannel::new(
        "https://cal.com/ada/30min".parse().unwrap(),
        Arc::new(resend),
    );
    let receipt = step.send(&m).await.unwrap();
    assert_eq!(receipt.provider_message_id.as_deref(), Some("e-1"));
}

#[test]
fn debug_redacts_the_key() {
    assert!(!format!("{:?}", client("http://127.0.0.1:9")).contains(KEY));
}
