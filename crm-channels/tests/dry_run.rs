//! The dry-run adapter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use crm_channels::dry_run::DryRunChannel;
use crm_core::ChannelAdapter;
use crm_core::model::Channel;

#[tokio::test]
async fn records_instead_of_sending() {
    let dry = DryRunChannel::new(Channel::WhatsApp).with_clock(clock());
    assert!(dry.is_empty());
    let first = message(Channel::WhatsApp, "+4915112345678");
    let second = message(Channel::WhatsApp, "+4915112345679");
    let r1 = dry.send(&first).await.unwrap();
    dry.send(&second).await.unwrap();
    assert_eq!(dry.sent(), vec![first.clone(), second]);
    assert_eq!(dry.channel(), Channel::WhatsApp);
    assert_eq!(dry.provider(), "dry-run");
    assert_eq!(r1.accepted_at, now());
    assert_eq!(
        r1.provider_message_id,
        Some(format!("dry-run:{}", first.idempotency_key()))
    );
    dry.clear();
    assert_eq!(dry.len(), 0);
}

#[tokio::test]
async fn the_same_outbox_id_is_recorded_once() {
    let dry = DryRunChannel::new(Channel::Email);
    let msg = message(Channel::Email, "ada@example.com");
    let a = dry.send(&msg).await.unwrap();
    let b = dry.send(&msg).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(dry.len(), 1);
    assert_eq!(dry.records()[0].receipt, a);
}
