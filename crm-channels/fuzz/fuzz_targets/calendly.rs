//! Fuzzes `CalendlyWebhook`: verification and parsing of arbitrary requests.
#![no_main]

use crm_channels::webhooks::WebhookConfig;
use crm_channels::webhooks::calendly::CalendlyWebhook;
use crm_core::secret::SecretString;
use libfuzzer_sys::fuzz_target;

const HEADERS: &[&str] = &["calendly-webhook-signature"];

fuzz_target!(|data: &[u8]| {
    let secret = SecretString::from("test-signing-key");
    if let Ok(hook) = CalendlyWebhook::new(secret, WebhookConfig::default()) {
        crm_channels_fuzz::exercise(&hook, data, HEADERS);
    }
});
