//! Channel adapters, inbound webhook verifiers and enrichment providers for the CRM
//! engine, over `reqwest` with rustls.
//!
//! Every provider sits behind its own cargo feature; nothing is on by default.
//!
//! | Feature | Outbound | Inbound (`webhooks`) | Enrichment |
//! |---|---|---|---|
//! | `resend` | `resend::ResendChannel` (email, `Idempotency-Key`) | Svix / Standard Webhooks | |
//! | `twilio` | `twilio::TwilioWhatsAppChannel` (template vs 24 h window) | `X-Twilio-Signature` | |
//! | `instagram` | `instagram::InstagramChannel` (Graph API, IGSID, 1000 bytes, 24 h) | `X-Hub-Signature-256` | |
//! | `linkedin` | `linkedin::LinkedInAssistedChannel`: assisted send, a drafted message plus a manual task recorded as an activity, because LinkedIn's messaging API is partner-only | | |
//! | `cal-com` | `cal_com::CalComBookingLinkChannel`, `cal_com::CalComClient` (bookings, API v2) | `X-Cal-Signature-256` | |
//! | `calendly` | | `Calendly-Webhook-Signature` | |
//! | `slack` | `slack::SlackNotifier` (approval inbox, approve / reject buttons) | `X-Slack-Signature` | |
//! | `apollo` | | | `apollo::ApolloProvider` (people match, organization enrich) |
//! | `hunter` | | | `hunter::HunterProvider` (email finder, email verifier) |
//! | `zerobounce` | | | `zerobounce::ZeroBounceProvider` (email validation) |
//! | `clearbit` | | | `clearbit::ClearbitProvider` (legacy keys only) |
//!
//! Always available: [`resolver::ProviderChannels`] (a `ChannelResolver` building each
//! workspace's adapters from its channel configuration and secret references; the
//! names each provider reads are in [`build`]), [`dry_run::DryRunChannel`] (records
//! sends, no network),
//! [`secrets`] (`secret://` references from environment variables or files), [`window`]
//! (the 24-hour conversation window), [`fields`] (reading loose JSON answers), and
//! [`http`], the shared HTTP layer.
//!
//! # Shared behaviour
//! - Every client takes an [`http::HttpConfig`] whose base URL can point anywhere (the
//!   tests point it at a loopback server) and whose timeouts bound every call.
//! - Errors are classified into the core kinds in one place ([`http`]): 429 →
//!   `RateLimited` with `Retry-After`; 401/403 → `Auth`; 408, 5xx, timeouts and refused
//!   connections → `Retryable`; other 4xx → `Permanent`; provider codes that mean an
//!   unusable address → `InvalidRecipient`. Error messages never contain URLs (which may
//!   carry API keys), credentials or raw addresses.
//! - Channel provider configs hold credentials as [`crm_core::SecretRef`]s, resolved
//!   through a [`crm_core::SecretResolver`] when the adapter is built (`connect`);
//!   resolved credentials are [`crm_core::secret::SecretString`]s, and every client's
//!   `Debug` prints `[redacted]` for them. Tracing spans record recipients redacted
//!   ([`http::redact_address`]).
//! - Channel adapters pass the conformance kit of `crm_testkit::adapter`.
//!
//! # Example
//! ```
//! use crm_channels::dry_run::DryRunChannel;
//! use crm_core::model::Channel;
//! use crm_core::{ChannelAdapter, OutboundMessage};
//! use crm_core::ids::{OutboxMessageId, WorkspaceId};
//!
//! # async fn demo() -> Result<(), crm_core::ChannelError> {
//! let channel = DryRunChannel::new(Channel::Email);
//! let message = OutboundMessage {
//!     id: OutboxMessageId::new(),
//!     workspace_id: WorkspaceId::new(),
//!     channel: Channel::Email,
//!     recipient: "ada@example.com".into(),
//!     contact_id: None,
//!     subject: Some("Hello".into()),
//!     body: "Hi Ada".into(),
//!     metadata: serde_json::json!({}),
//! };
//! let receipt = channel.send(&message).await?;
//! assert_eq!(channel.sent(), vec![message]);
//! assert!(receipt.provider_message_id.is_some());
//! # Ok(())
//! # }
//! ```
//!
//! With the `resend` feature, the same message goes out through Resend:
//! ```no_run
//! # #[cfg(feature = "resend")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use crm_channels::resend::{ResendChannel, ResendConfig};
//! use crm_channels::secrets::EnvSecretResolver;
//! use crm_core::SecretRef;
//!
//! let secrets = EnvSecretResolver::new(); // reads CRM_SECRET_RESEND_API_KEY_1
//! let key = SecretRef::parse("secret://resend/api-key:1")?;
//! let config = ResendConfig::new(key, "Sales <sales@example.com>")?;
//! let email = ResendChannel::connect(config, &secrets).await?;
//! # let _ = email;
//! # Ok(())
//! # }
//! ```
//!
//! A host serving several workspaces instead hands the dispatcher a
//! [`resolver::ProviderChannels`], which builds each workspace's adapter from the
//! channel configurations of its settings (`WorkspaceSettings::with_channel`):
//! ```
//! # #[cfg(feature = "resend")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use crm_channels::resolver::ProviderChannels;
//! use crm_channels::secrets::MemorySecretResolver;
//! use crm_core::channel::ChannelResolver;
//! use crm_core::ids::WorkspaceId;
//! use crm_core::model::{Channel, ChannelConfig};
//! use crm_core::SecretRef;
//!
//! let key = SecretRef::parse("secret://acme/resend:2")?;
//! let secrets = MemorySecretResolver::new().with(&key, "re_live_123");
//! let channels = ProviderChannels::new(Arc::new(secrets));
//! let email = ChannelConfig::new("resend")
//!     .with_param("from", "Sales <sales@acme.example>")
//!     .with_secret("api_key", key);
//! let adapter = channels.resolve(WorkspaceId::new(), Channel::Email, Some(&email)).await?;
//! assert_eq!(adapter.provider(), "resend");
//! // Dispatcher::with_resolver(store, clock, settings, Arc::new(channels), config)
//! # Ok(())
//! # }
//! //! ```

pub mod build;
pub mod dry_run;
pub mod fields;
pub mod http;
pub mod resolver;
pub mod secrets;
pub mod webhooks;
pub mod window;

#[cfg(feature = "apollo")]
pub mod apollo;
#[cfg(feature = "cal-com")]
pub mod cal_com;
#[cfg(feature = "clearbit")]
pub mod clearbit;
#[cfg(feature = "hunter")]
pub mod hunter;
#[cfg(feature = "instagram")]
pub mod instagram;
#[cfg(feature = "linkedin")]
pub mod linkedin;
#[cfg(feature = "resend")]
pub mod resend;
#[cfg(feature = "slack")]
pub mod slack;
#[cfg(feature = "twilio")]
pub mod twilio;
#[cfg(feature = "zerobounce")]
pub mod zerobounce;
