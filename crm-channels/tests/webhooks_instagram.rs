//! Meta `X-Hub-Signature-256` verification, the `hub.challenge` handshake and Instagram
//! message parsing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers
#![cfg(feature = "instagram")]

mod webhooks_support;

use crm_channels::webhooks::WebhookConfig;
use crm_channels::webhooks::meta::InstagramWebhook;
use crm_core::model::Channel;
use crm_core::{InboundEvent, InboundWebhook, WebhookError};
use webhooks_support::{VerifyAt, at, post, secret, tampered, unchecked};

// META-1 (PROVIDERS.md §6 and Appendix A): HMAC-SHA256(key "secret", "test").
const META1_SIG: &str = "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914";
// META-X (self-computed fixture in PROVIDERS.md §6).
const METAX_BODY: &[u8] = br#"{"object":"instagram","entry":[]}"#;
const METAX_SIG: &str = "sha256=4868ba1823ceabaf8b38db993057d6e01e2dea967330aad8444f60a4531cd687";

fn hook(key: &str) -> InstagramWebhook {
    InstagramWebhook::new(secret(key), WebhookConfig::default()).unwrap()
}

fn verify(key: &str, sig: &str, body: &[u8]) -> Result<(), WebhookError> {
    hook(key)
        .verify_at(&post(&[("X-Hub-Signature-256", sig)], body), at(0))
        .map(|_| ())
}

#[test]
fn meta1_published_vector_verifies() {
    verify("secret", META1_SIG, b"test").unwrap();
    // Hex case does not matter.
    verify(
        "secret",
        &META1_SIG.to_uppercase().replacen("SHA256=", "sha256=", 1),
        b"test",
    )
    .unwrap();
}

#[test]
fn metax_fixture_verifies() {
    verify("app-secret", METAX_SIG, METAX_BODY).unwrap();
}

#[test]
fn tampered_wrong_secret_truncated_fail() {
    assert_eq!(
        verify("app-secret", METAX_SIG, &tampered(METAX_BODY)).unwrap_err(),
        WebhookError::InvalidSignature
    );
    assert_eq!(
        verify("app-secreT", METAX_SIG, METAX_BODY).unwrap_err(),
        WebhookError::InvalidSignature
    );
    assert_eq!(
        verify("app-secret", &METAX_SIG[..METAX_SIG.len() - 2], METAX_BODY).unwrap_err(),
        WebhookError::InvalidSignature
    );
    assert_eq!(
        verify("app-secret", &METAX_SIG[..METAX_SIG.len() - 1], METAX_BODY).unwrap_err(),
        WebhookError::InvalidSignature
    );
    assert_eq!(
        verify("app-secret", "sha256=", METAX_BODY).unwrap_err(),
        WebhookError::InvalidSignature
    );
}

#[test]
fn prefix_and_header_are_required() {
    let bare = METAX_SIG.trim_start_matches("sha256=");
    assert!(matches!(
        verify("app-secret", bare, METAX_BODY).unwrap_err(),
        WebhookError::MalformedHeader {
            header: "x-hub-signature-256",
            ..
        }
    ));
    let sha1 = METAX_SIG.replacen("sha256=", "sha1=", 1);
    assert!(matches!(
        verify("app-secret", &sha1, METAX_BODY).unwrap_err(),
        WebhookError::MalformedHeader { .. }
    ));
    let err = hook("app-secret")
        .verify_at(&post(&[], METAX_BODY), at(0))
        .unwrap_err();
    assert_eq!(err, WebhookError::MissingHeader("x-hub-signature-256"));
    assert!(matches!(
        InstagramWebhook::new(secret(""), WebhookConfig::default()).unwrap_err(),
        WebhookError::InvalidSecret(_)
    ));
}

#[test]
fn subscription_handshake() {
    let hook = hook("app-secret");
    let token = secret("my-verify-token");
    let query = "hub.mode=subscribe&hub.verify_token=my-verify-token&hub.challenge=1158201444";
    assert_eq!(
        hook.verify_subscription(query, &token).unwrap(),
        "1158201444"
    );
    let url = format!("https://crm.example.com/hooks/ig?{query}");
    assert_eq!(
        hook.verify_subscription(&url, &token).unwrap(),
        "1158201444"
    );

    let wrong = query.replace("my-verify-token", "my-verify-tokem");
    assert_eq!(
        hook.verify_subscription(&wrong, &token).unwrap_err(),
        WebhookError::InvalidSignature
    );
    let longer = query.replace("my-verify-token", "my-verify-token2");
    assert_eq!(
        hook.verify_subscription(&longer, &token).unwrap_err(),
        WebhookError::InvalidSignature
    );
    let mode = query.replace("subscribe", "unsubscribe");
    assert!(matches!(
        hook.verify_subscription(&mode, &token).unwrap_err(),
        WebhookError::MalformedPayload(_)
    ));
    let no_challenge = "hub.mode=subscribe&hub.verify_token=my-verify-token";
    assert!(matches!(
        hook.verify_subscription(no_challenge, &token).unwrap_err(),
        WebhookError::MalformedPayload(_)
    ));
    assert!(matches!(
        hook.verify_subscription(query, &secret("")).unwrap_err(),
        WebhookError::InvalidSecret(_)
    ));
}

#[test]
fn debug_redacts_the_secret() {
    let text = format!("{:?}", hook("very-secret-app-secret"));
    assert!(text.contains("redacted") && !text.contains("very-secret-app-secret"));
}

#[test]
fn parses_instagram_messages() {
    let body = br#"{"object":"instagram","entry":[{"id":"17841400000000000","time":1700000000,"messaging":[
        {"sender":{"id":"IGSID-1"},"recipient":{"id":"17841400000000000"},"timestamp":1700000000000,
         "message":{"mid":"m-1","text":"Sounds good, call me","reply_to":{"mid":"m-0"}}},
        {"sender":{"id":"17841400000000000"},"recipient":{"id":"IGSID-1"},"timestamp":1700000000001,
         "message":{"mid":"m-2","text":"our own echo","is_echo":true}},
        {"sender":{"id":"IGSID-1"},"recipient":{"id":"17841400000000000"},"timestamp":1700000000002,
         "read":{"mid":"m-0"}}
    ]}]}"#;
    let key = "app-secret";
    let sig = {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let hook = hook(key);
    let req = post(&[("X-Hub-Signature-256", &sig)], body);
    let verified = hook.verify_at(&req, at(0)).unwrap();
    assert_eq!(verified.delivery_id().map(str::len), Some(64));
    assert_eq!(
        hook.parse(&verified).unwrap(),
        vec![
            InboundEvent::Reply {
                channel: Channel::Instagram,
                from: "IGSID-1".into(),
                text: Some("Sounds good, call me".into()),
                in_reply_to: Some("m-0".into())
            },
            InboundEvent::Opened {
                channel: Channel::Instagram,
                provider_message_id: "m-0".into()
            },
        ]
    );
}

#[test]
fn other_objects_produce_nothing_and_bad_json_is_typed() {
    let hook = hook("secret");
    let req = post(&[("X-Hub-Signature-256", METAX_SIG)], METAX_BODY);
    let verified = unchecked(&req);
    assert_eq!(hook.parse(&verified).unwrap(), vec![]);
    let req = post(&[], br#"{"object":"page","entry":[{"messaging":[{"sender":{"id":"x"},"message":{"text":"hi"}}]}]}"#);
    assert_eq!(hook.parse(&unchecked(&req)).unwrap(), vec![]);
    let req = post(&[], b"test");
    assert!(matches!(
        hook.parse(&unchecked(&req)).unwrap_err(),
        WebhookError::MalformedPayload(_)
    ));
}
