//! Fuzzes `CalComWebhook`: verification and parsing of arbitrary requests.
#![no_main]

use crm_channels::webhooks::WebhookConfig;
use crm_channels::webhooks::cal_com::CalComWebhook;
use crm_core::secret::SecretString;
use libfuzzer_sys::fuzz_target;

const HEADERS: &[&str] = &["x-cal-signature-256"];

fuzz_target!(|data: &[u8]| {
    let secret = SecretString::from("test-secret");
    if let Ok(hook) = CalComWebhook::new(secret, WebhookConfig::default()) {
        crm_channels_fuzz::exercise(&hook, data, HEADERS);
    }
});
