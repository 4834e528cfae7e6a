//! Signs webhook deliveries the way the providers do, so the tests post requests a
//! real provider could have sent. Written from the published schemes, not with the
//! verifiers under test, and checked against the published vectors.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A Standard Webhooks / Svix signing secret (`whsec_<base64 key>`).
#[derive(Clone)]
pub struct StandardWebhooksSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for StandardWebhooksSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StandardWebhooksSigner([redacted])")
    }
}

impl StandardWebhooksSigner {
    /// A signer for `secret` (`whsec_` followed by the base64 of the key).
    pub fn new(secret: &str) -> Self {
        let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
        let key = STANDARD
            .decode(encoded)
            .unwrap_or_else(|e| panic!("a webhook secret must be whsec_<base64>: {e}"));
        Self { key }
    }

    /// A fresh random secret in the `whsec_` form, 32 bytes.
    pub fn random_secret() -> String {
        let bytes: [u8; 32] = rand::random();
        format!("whsec_{}", STANDARD.encode(bytes))
    }

    /// The `v1,<base64>` signature of `{msg_id}.{timestamp}.{payload}`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, payload: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|e| panic!("HMAC takes a key of any length: {e}"));
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// The three headers Resend (Svix) sends with a delivery: `svix-id`,
    /// `svix-timestamp`, `svix-signature`.
    pub fn svix_headers(
        &self,
        msg_id: &str,
        timestamp: i64,
        payload: &[u8],
    ) -> [(&'static str, String); 3] {
        [
            ("svix-id", msg_id.to_owned()),
            ("svix-timestamp", timestamp.to_string()),
            ("svix-signature", self.sign(msg_id, timestamp, payload)),
        ]
    }
}

/// The body of a Resend `email.bounced` event for one recipient of one email.
pub fn resend_bounce(email_id: &str, to: &str, permanent: bool) -> Vec<u8> {
    let kind = if permanent { "Permanent" } else { "Transient" };
    serde_json::to_vec(&serde_json::json!({
        "type": "email.bounced",
        "created_at": chrono::Utc::now().to_rfc3339(),
        "data": {
            "email_id": email_id,
            "created_at": chrono::Utc::now().to_rfc3339(),
            "from": "Sales <sales@example.com>",
            "to": [to],
            "subject": "bounced",
            "bounce": {
                "type": kind,
                "subType": "General",
                "message": "The recipient's mailbox does not exist."
            }
        }
    }))
    .unwrap_or_default()
}

/// The body of a Resend `email.received` event: `from` answered.
pub fn resend_reply(from: &str, to: &str, text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": "email.received",
        "created_at": chrono::Utc::now().to_rfc3339(),
        "data": {
            "email_id": uuid::Uuid::now_v7().to_string(),
            "created_at": chrono::Utc::now().to_rfc3339(),
            "from": from,
            "to": [to],
            "subject": "Re: hello",
            "text": text
        }
    }))
    .unwrap_or_default()
}

/// The body of a Resend `email.delivered` event.
pub fn resend_delivered(email_id: &str, to: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": "email.delivered",
        "created_at": chrono::Utc::now().to_rfc3339(),
        "data": {
            "email_id": email_id,
            "created_at": chrono::Utc::now().to_rfc3339(),
            "from": "Sales <sales@example.com>",
            "to": [to],
            "subject": "hello"
        }
    }))
    .unwrap_or_default()
}
