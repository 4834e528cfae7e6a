//! Fuzzes `ResendWebhook`: verification and parsing of arbitrary requests.
#![no_main]

use crm_channels::webhooks::WebhookConfig;
use crm_channels::webhooks::resend::ResendWebhook;
use crm_core::secret::SecretString;
use libfuzzer_sys::fuzz_target;

const HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
];

fuzz_target!(|data: &[u8]| {
    let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    if let Ok(hook) = ResendWebhook::new(secret, WebhookConfig::default()) {
        crm_channels_fuzz::exercise(&hook, data, HEADERS);
    }
});
