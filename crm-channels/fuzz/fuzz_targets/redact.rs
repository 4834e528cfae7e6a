//! Fuzzes the log redaction of emails and phone numbers.
#![no_main]

use crm_channels::webhooks::redact::redact_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = redact_bytes(data);
});
