//! Duplicate-delivery detection and log redaction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crm_channels::webhooks::redact::{redact, redact_bytes};
use crm_channels::webhooks::{DeliveryLog, DeliveryStatus, MemoryDeliveryLog};

#[test]
fn concurrent_records_of_one_key_have_exactly_one_winner() {
    let log = Arc::new(MemoryDeliveryLog::new(1_000));
    let firsts = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (log, firsts) = (Arc::clone(&log), Arc::clone(&firsts));
            std::thread::spawn(move || {
                for i in 0..50 {
                    if log.try_record("resend", &format!("msg_{i}")) == DeliveryStatus::First {
                        firsts.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(firsts.load(Ordering::SeqCst), 50);
    assert_eq!(log.len(), 50);
}

#[test]
fn keys_are_scoped_by_provider_and_log_is_bounded() {
    let log: Arc<dyn DeliveryLog> = Arc::new(MemoryDeliveryLog::new(3));
    assert_eq!(log.try_record("slack", "1"), DeliveryStatus::First);
    assert_eq!(log.try_record("twilio", "1"), DeliveryStatus::First);
    assert_eq!(log.try_record("slack", "1"), DeliveryStatus::Duplicate);
    for id in ["2", "3", "4"] {
        assert_eq!(log.try_record("slack", id), DeliveryStatus::First);
    }
    // The oldest keys were evicted.
    assert_eq!(log.try_record("slack", "1"), DeliveryStatus::First);
    assert!(format!("{log:?}").contains("capacity"));
}

#[test]
fn logged_payloads_hide_emails_and_phone_numbers() {
    let form = "From=whatsapp:+14155551234&To=whatsapp:+14155238886&Body=mail me at ann.lee@example.co.uk or call +44 20 7946 0958";
    let out = redact(form);
    for secret in [
        "14155551234",
        "14155238886",
        "ann.lee@example.co.uk",
        "7946",
    ] {
        assert!(!out.contains(secret), "{out}");
    }
    assert!(out.contains("Body=mail me at [email] or call [phone]"));
    let json = br#"{"attendees":[{"email":"ann@example.com","phone":"(555) 123-4567"}],"startTime":"2023-05-25T09:30:00Z","bookingId":91}"#;
    assert_eq!(
        redact_bytes(json),
        r#"{"attendees":[{"email":"[email]","phone":"[phone]"}],"startTime":"2023-05-25T09:30:00Z","bookingId":91}"#
    );
}
