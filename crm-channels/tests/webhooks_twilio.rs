//! Twilio `X-Twilio-Signature` verification and WhatsApp parsing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers
#![cfg(feature = "twilio")]

mod webhooks_support;

use crm_channels::webhooks::WebhookConfig;
use crm_channels::webhooks::twilio::TwilioWebhook;
use crm_core::model::Channel;
use crm_core::{InboundEvent, InboundWebhook, WebhookError, WebhookRequest};
use http::Method;
use webhooks_support::{VerifyAt, at, request, secret, tampered};

const TOKEN: &str = "12345";
const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
// TW-1 (PROVIDERS.md §3): Twilio docs worked example.
const TW1_BODY: &[u8] =
    b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
const TW1_EXPECTED: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
// twilio-python tests/unit/test_request_validator.py (published with the library).
const PY_BODY: &[u8] =
    b"CallSid=CA1234567890ABCDE&Digits=1234&From=%2B14158675309&To=%2B18005551212&Caller=%2B14158675309";
const PY_EXPECTED: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
const NOW: i64 = 1_700_000_000;

fn hook() -> TwilioWebhook {
    TwilioWebhook::new(secret(TOKEN), WebhookConfig::default()).unwrap()
}

fn signed(url: &str, sig: &str, body: &[u8]) -> WebhookRequest {
    request(Method::POST, url, &[("X-Twilio-Signature", sig)], body)
}

fn verify(url: &str, sig: &str, body: &[u8]) -> Result<(), WebhookError> {
    hook()
        .verify_at(&signed(url, sig, body), at(NOW))
        .map(|_| ())
}

#[test]
fn tw1_docs_example_verifies() {
    verify(URL, TW1_EXPECTED, TW1_BODY).unwrap();
}

#[test]
fn tw1_sign_matches() {
    let params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    assert_eq!(hook().sign(URL, &params).unwrap(), TW1_EXPECTED);
}

#[test]
fn twilio_python_compute_signature_vector() {
    verify(URL, PY_EXPECTED, PY_BODY).unwrap();
}

#[test]
fn twilio_python_repeated_keys_vector() {
    // test_compute_signature_duplicate_multi_dict: repeated keys are sorted by value.
    verify(
        URL,
        "IK+Dwps556ElfBT0I3Rgjkr1wJU=",
        b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234",
    )
    .unwrap();
}

#[test]
fn twilio_python_port_vectors() {
    // removes_port_on_https: a URL with a port also validates against the port-less form.
    verify(
        "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
        PY_EXPECTED,
        PY_BODY,
    )
    .unwrap();
    // removes_port_on_http: signed with the explicit port kept.
    verify(
        "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
        "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
        PY_BODY,
    )
    .unwrap();
    // adds_port_on_https / adds_port_on_http: signed with the default port added.
    verify(URL, "kvajT1Ptam85bY51eRf/AJRuM3w=", PY_BODY).unwrap();
    verify(
        "http://mycompany.com/myapp.php?foo=1&bar=2",
        "0ZXoZLH/DfblKGATFgpif+LLRf4=",
        PY_BODY,
    )
    .unwrap();
    // TW-1 with an explicit default port validates against the port-less signature.
    verify(
        "https://mycompany.com:443/myapp.php?foo=1&bar=2",
        TW1_EXPECTED,
        TW1_BODY,
    )
    .unwrap();
}

#[test]
fn twilio_python_json_body_vector() {
    // test_validation_of_body_succeeds: bodySHA256 in the URL, signature over the URL alone.
    let body = br#"{"property": "value", "boolean": true}"#;
    let url = format!(
        "{URL}&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    );
    verify(&url, "a9nBmqA0ju/hNViExpshrM61xv4=", body).unwrap();
    // A body that does not match the hash fails even though the URL signature matches.
    assert_eq!(
        verify(&url, "a9nBmqA0ju/hNViExpshrM61xv4=", &tampered(body)).unwrap_err(),
        WebhookError::InvalidSignature
    );
    // A different hash in the URL breaks the signature.
    let other = url.replace("0a1ff", "1a1ff");
    assert!(verify(&other, "a9nBmqA0ju/hNViExpshrM61xv4=", body).is_err());
}

#[test]
fn tampered_wrong_token_truncated_and_missing_fail() {
    assert_eq!(
        verify(URL, TW1_EXPECTED, &tampered(TW1_BODY)).unwrap_err(),
        WebhookError::InvalidSignature
    );
    // An extra parameter is covered by the signature.
    let extra = [TW1_BODY, b"&Extra=1"].concat();
    assert_eq!(
        verify(URL, TW1_EXPECTED, &extra).unwrap_err(),
        WebhookError::InvalidSignature
    );
    // A signature that cannot be an HMAC-SHA1 tag is refused before the body is decoded.
    for truncated in [&TW1_EXPECTED[..20], ""] {
        assert!(matches!(
            verify(URL, truncated, TW1_BODY).unwrap_err(),
            WebhookError::MalformedHeader {
                header: "x-twilio-signature",
                ..
            }
        ));
    }
    assert_eq!(
        verify(
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            TW1_EXPECTED,
            TW1_BODY
        )
        .unwrap_err(),
        WebhookError::InvalidSignature
    );
    let other = TwilioWebhook::new(secret("54321"), WebhookConfig::default()).unwrap();
    assert_eq!(
        other
            .verify_at(&signed(URL, TW1_EXPECTED, TW1_BODY), at(NOW))
            .unwrap_err(),
        WebhookError::InvalidSignature
    );
    let unsigned = request(Method::POST, URL, &[], TW1_BODY);
    assert_eq!(
        hook().verify_at(&unsigned, at(NOW)).unwrap_err(),
        WebhookError::MissingHeader("x-twilio-signature")
    );
    assert!(matches!(
        TwilioWebhook::new(secret(""), WebhookConfig::default()).unwrap_err(),
        WebhookError::InvalidSecret(_)
    ));
}

#[test]
fn debug_redacts_the_token() {
    let hook = TwilioWebhook::new(secret("super-secret-token"), WebhookConfig::default()).unwrap();
    let text = format!("{hook:?}");
    assert!(text.contains("redacted") && !text.contains("super-secret-token"));
}

fn parse(params: &[(&str, &str)]) -> Result<Vec<InboundEvent>, WebhookError> {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let hook = hook();
    let url = "https://crm.example.com/twilio/status";
    let sig = hook.sign(url, &owned).unwrap();
    let req = request(
        Method::POST,
        url,
        &[
            ("X-Twilio-Signature", &sig),
            ("I-Twilio-Idempotency-Token", "tok-1"),
        ],
        body.as_bytes(),
    );
    let verified = hook.verify_at(&req, at(NOW)).unwrap();
    assert_eq!(verified.delivery_id(), Some("tok-1"));
    hook.parse(&verified)
}

#[test]
fn parses_inbound_whatsapp_reply() {
    let events = parse(&[
        ("SmsMessageSid", "SM11"),
        ("NumMedia", "0"),
        ("ProfileName", "Jane"),
        ("SmsSid", "SM11"),
        ("WaId", "14155551234"),
        ("SmsStatus", "received"),
        ("Body", "Yes, Tuesday works"),
        ("To", "whatsapp:+14155238886"),
        ("MessageSid", "SM11"),
        ("AccountSid", "AC1"),
        ("From", "whatsapp:+14155551234"),
        ("OriginalRepliedMessageSid", "SM00"),
        ("ApiVersion", "2010-04-01"),
    ])
    .unwrap();
    assert_eq!(
        events,
        vec![InboundEvent::Reply {
            channel: Channel::WhatsApp,
            from: "+14155551234".into(),
            text: Some("Yes, Tuesday works".into()),
            in_reply_to: Some("SM00".into())
        }]
    );
}

#[test]
fn parses_status_callbacks() {
    let status = |s: &str| {
        parse(&[
            ("MessageSid", "SM22"),
            ("MessageStatus", s),
            ("SmsStatus", s),
            ("To", "whatsapp:+14155551234"),
            ("From", "whatsapp:+14155238886"),
            ("ErrorCode", if s == "undelivered" { "63016" } else { "" }),
        ])
        .unwrap()
    };
    let id = || "SM22".to_owned();
    let ch = Channel::WhatsApp;
    assert_eq!(
        status("delivered"),
        vec![InboundEvent::Delivered {
            channel: ch,
            provider_message_id: id()
        }]
    );
    assert_eq!(
        status("read"),
        vec![InboundEvent::Opened {
            channel: ch,
            provider_message_id: id()
        }]
    );
    assert_eq!(
        status("undelivered"),
        vec![InboundEvent::Failed {
            channel: ch,
            provider_message_id: id(),
            reason: Some("63016".into())
        }]
    );
    assert_eq!(
        status("sent"),
        vec![InboundEvent::StatusChanged {
            channel: ch,
            provider_message_id: id(),
            status: "sent".into()
        }]
    );
}

#[test]
fn status_without_message_sid_is_malformed() {
    assert!(matches!(
        parse(&[("MessageStatus", "delivered")]).unwrap_err(),
        WebhookError::MalformedPayload(_)
    ));
    assert_eq!(parse(&[("AccountSid", "AC1")]).unwrap(), vec![]);
}
