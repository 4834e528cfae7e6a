//! Fuzzes `TwilioWebhook`: verification and parsing of arbitrary requests.
#![no_main]

use crm_channels::webhooks::WebhookConfig;
use crm_channels::webhooks::twilio::TwilioWebhook;
use crm_core::secret::SecretString;
use libfuzzer_sys::fuzz_target;

const HEADERS: &[&str] = &["x-twilio-signature", "i-twilio-idempotency-token"];

fuzz_target!(|data: &[u8]| {
    let secret = SecretString::from("12345");
    if let Ok(hook) = TwilioWebhook::new(secret, WebhookConfig::default()) {
        crm_channels_fuzz::exercise(&hook, data, HEADERS);
    }
});
