//! Fuzzes `SlackWebhook`: verification and parsing of arbitrary requests.
#![no_main]

use crm_channels::webhooks::WebhookConfig;
use crm_channels::webhooks::slack::SlackWebhook;
use crm_core::secret::SecretString;
use libfuzzer_sys::fuzz_target;

const HEADERS: &[&str] = &["x-slack-request-timestamp", "x-slack-signature"];

fuzz_target!(|data: &[u8]| {
    let secret = SecretString::from("8f742231b10e8888abcd99yyyzzz85a5");
    if let Ok(hook) = SlackWebhook::new(secret, WebhookConfig::default()) {
        crm_channels_fuzz::exercise(&hook, data, HEADERS);
    }
});
