//! Fuzzes `InstagramWebhook`: verification, parsing and the `hub.challenge` handshake.
#![no_main]

use crm_channels::webhooks::WebhookConfig;
use crm_channels::webhooks::meta::InstagramWebhook;
use crm_core::secret::SecretString;
use libfuzzer_sys::fuzz_target;

const HEADERS: &[&str] = &["x-hub-signature-256"];

fuzz_target!(|data: &[u8]| {
    let secret = SecretString::from("app-secret");
    if let Ok(hook) = InstagramWebhook::new(secret, WebhookConfig::default()) {
        crm_channels_fuzz::exercise(&hook, data, HEADERS);
        let query = String::from_utf8_lossy(data);
        let _ = hook.verify_subscription(&query, &SecretString::from("verify-token"));
    }
});
