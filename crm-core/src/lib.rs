#![doc = include_str!("../README.md")]

pub mod access;
pub mod address;
pub mod anomaly;
pub mod approval;
pub mod channel;
pub mod clock;
pub mod engine;
pub mod enrichment;
pub mod enrichment_provider;
pub mod error;
pub mod ids;
pub mod inbound;
pub mod intake;
pub mod jobs;
pub mod model;
pub mod money;
pub mod outreach;
mod redact;
pub mod scoring;
pub mod secret;
pub mod store;
mod text_enum;

pub use access::{AccessError, ApiKeyRateLimiter, ApiKeys, ApiScope, IssuedApiKey};
pub use address::{Domain, EmailAddress, PhoneNumber};
pub use approval::{
    ApprovalDecision, ApprovalPolicy, ApprovalRequest, ManualApproval, PolicyError,
};
pub use channel::{ChannelAdapter, ChannelError, ChannelErrorKind, OutboundMessage, SendReceipt};
pub use clock::{Clock, ManualClock, SystemClock};
pub use enrichment_provider::{EnrichmentError, EnrichmentProvider, Lookup, LookupKind};
pub use error::{BoxError, StoreError, StoreErrorKind, ValidationError};
pub use inbound::{
    InboundEvent, InboundWebhook, MAX_DELIVERY_ID_BYTES, UnverifiedWebhook, VerifiedWebhook,
    WebhookError, WebhookRequest, verify_webhook,
};
pub use model::catalogue as events;
pub use money::{Currency, Money};
pub use secret::{SecretError, SecretRef, SecretResolver};
pub use store::{DynStore, Store};

/// Compile-time guard: the four pluggable traits stay usable as `dyn`.
#[allow(dead_code)]
fn _assert_dyn_compatible(
    _: &dyn ChannelAdapter,
    _: &dyn EnrichmentProvider,
    _: &dyn Store,
    _: &dyn ApprovalPolicy,
    _: &dyn InboundWebhook,
    _: &dyn Clock,
    _: &dyn SecretResolver,
) {
}
