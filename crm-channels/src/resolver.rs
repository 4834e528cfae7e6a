//! [`ProviderChannels`]: a [`ChannelResolver`] that builds each workspace's adapters
//! from its settings' [`ChannelConfig`] and a [`SecretResolver`].
//!
//! # Providers
//! A configuration's `provider` picks the builder: the built-in `resend` (email),
//! `twilio` (WhatsApp) and `instagram` (Instagram), each behind its cargo feature
//! (see [`crate::build`] for the `params` and `secrets` each reads), or one a host
//! registers with [`ProviderChannels::with_provider`] (which takes precedence). The
//! LinkedIn assisted channel (which records tasks in a store) and the Cal.com
//! booking-link channel (which wraps a delivery adapter) need more than a
//! configuration; a host that uses them per workspace registers a [`ProviderFactory`]
//! that has what they need.
//!
//! # Cache policy
//! A built adapter is kept per (workspace, channel) together with the configuration it
//! was built from, including its secret references with their versions, and reused
//! while
//! - the workspace's configuration is equal to the cached one: a change of provider,
//!   parameter or secret version (a rotation written into the settings) builds a new
//!   adapter on the next send, without a restart; and
//! - it is younger than the TTL ([`DEFAULT_TTL`], [`ProviderChannels::with_ttl`]):
//!   after it the adapter is rebuilt and its secrets resolved again, so a version
//!   whose value changes in place (a `latest`-style version) takes effect within the
//!   TTL.
//!
//! A failed build is not cached: the next send tries again (the dispatcher backs off
//! between attempts). [`ProviderChannels::invalidate`] drops a workspace's adapters at
//! once. Builds are single-flight per (workspace, channel): sends racing on a cold or
//! stale entry wait for one build (one secret lookup, one HTTP client) instead of each
//! making their own. The cache holds one entry per (workspace, channel) ever resolved.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use crm_core::channel::ChannelResolver;
use crm_core::ids::WorkspaceId;
use crm_core::model::{Channel, ChannelConfig};
use crm_core::secret::SecretResolver;
use crm_core::{ChannelAdapter, ChannelError, Clock, SystemClock};

use crate::build::{BuildContext, BuildError};

/// How long a built adapter is reused before its secrets are resolved again.
pub const DEFAULT_TTL: Duration = Duration::minutes(5);

/// Builds the adapter of one provider from a workspace's channel configuration.
///
/// # Contract
/// - MUST resolve the configuration's secrets through `context.secrets` and MUST NOT
///   put a secret's value in an error or a log.
/// - SHOULD refuse a channel it does not send on with [`BuildError::WrongChannel`].
#[async_trait]
pub trait ProviderFactory: Send + Sync + fmt::Debug + 'static {
    /// The adapter for `channel` configured by `config`.
    async fn build(
        &self,
        channel: Channel,
        config: &ChannelConfig,
        context: &BuildContext,
    ) -> Result<Arc<dyn ChannelAdapter>, BuildError>;
}

/// The cache slot of one (workspace, channel): its lock makes builds single-flight.
type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// One cached adapter and what it was built from.
struct Cached {
    config: ChannelConfig,
    adapter: Arc<dyn ChannelAdapter>,
    built_at: DateTime<Utc>,
}

/// Builds and caches adapters per workspace and channel; see the [module
/// docs](self).
pub struct ProviderChannels {
    context: BuildContext,
    ttl: Duration,
    factories: BTreeMap<String, Arc<dyn ProviderFactory>>,
    cache: Mutex<HashMap<(WorkspaceId, Channel), Slot>>,
}

impl fmt::Debug for ProviderChannels {
    /// Names providers and counts cached adapters: adapters hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("ProviderChannels")
            .field("secrets", &self.context.secrets)
            .field("ttl", &self.ttl)
            .field("custom_providers", &self.factories.keys())
            .field("cached", &cached)
            .finish_non_exhaustive()
    }
}

impl ProviderChannels {
    /// A resolver with the built-in providers of the enabled features, resolving
    /// secrets through `secrets`, on the system clock, with the [`DEFAULT_TTL`].
    #[must_use]
    pub fn new(secrets: Arc<dyn SecretResolver>) -> Self {
        Self {
            context: BuildContext {
                secrets,
                clock: Arc::new(SystemClock),
            },
            ttl: DEFAULT_TTL,
            factories: BTreeMap::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Gives built adapters `clock` and measures the TTL by it.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.context.clock = clock;
        self
    }

    /// Reuses a built adapter for at most `ttl` (zero: rebuild on every send).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::zero());
        self
    }

    /// Builds configurations naming `provider` with `factory`, replacing a built-in
    /// provider of that name.
    #[must_use]
    pub fn with_provider(
        mut self,
        provider: impl Into<String>,
        factory: Arc<dyn ProviderFactory>,
    ) -> Self {
        self.factories.insert(provider.into(), factory);
        self
    }

    /// Drops the cached adapters of `workspace_id`: the next send builds them again.
    pub fn invalidate(&self, workspace_id: WorkspaceId) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(ws, _), _| *ws != workspace_id);
    }

    /// The slot of `key`, made on first use.
    fn slot(&self, key: (WorkspaceId, Channel)) -> Slot {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone()
    }

    async fn build(
        &self,
        channel: Channel,
        config: &ChannelConfig,
    ) -> Result<Arc<dyn ChannelAdapter>, BuildError> {
        if let Some(factory) = self.factories.get(&config.provider) {
            return factory.build(channel, config, &self.context).await;
        }
        builtin(channel, config, &self.context).await
    }
}

#[async_trait]
impl ChannelResolver for ProviderChannels {
    async fn resolve(
        &self,
        workspace_id: WorkspaceId,
        channel: Channel,
        config: Option<&ChannelConfig>,
    ) -> Result<Arc<dyn ChannelAdapter>, ChannelError> {
        let Some(config) = config else {
            return Err(ChannelError::configuration(
                channel,
                format!("the workspace configures no provider for {channel}"),
            ));
        };
        let slot = self.slot((workspace_id, channel));
        // Held across the build on purpose: concurrent sends wait for this one.
        let mut cached = slot.lock().await;
        let now = self.context.clock.now();
        if let Some(entry) = cached.as_ref()
            && entry.config == *config
            && now - entry.built_at < self.ttl
        {
            return Ok(entry.adapter.clone());
        }
        let adapter = self
            .build(channel, config)
            .await
            .map_err(|e| e.into_channel_error(channel, &config.provider))?;
        tracing::debug!(
            workspace_id = %workspace_id,
            channel = channel.as_str(),
            provider = adapter.provider(),
            "channel adapter built"
        );
        *cached = Some(Cached {
            config: config.clone(),
            adapter: adapter.clone(),
            built_at: now,
        });
        Ok(adapter)
    }
}

/// Checks that `provider` sends on `channel`.
#[cfg_attr(
    not(any(feature = "resend", feature = "twilio", feature = "instagram")),
    allow(dead_code)
)]
fn expect_channel(
    provider: &'static str,
    sends_on: Channel,
    channel: Channel,
) -> Result<(), BuildError> {
    if sends_on == channel {
        Ok(())
    } else {
        Err(BuildError::WrongChannel { provider, channel })
    }
}

/// The built-in providers of the enabled features.
async fn builtin(
    channel: Channel,
    config: &ChannelConfig,
    context: &BuildContext,
) -> Result<Arc<dyn ChannelAdapter>, BuildError> {
    let _ = (channel, context);
    match config.provider.as_str() {
        #[cfg(feature = "resend")]
        "resend" => {
            use crate::resend::{ResendChannel, ResendConfig};
            expect_channel("resend", Channel::Email, channel)?;
            let built = ResendChannel::connect(
                ResendConfig::from_channel_config(config)?,
                &*context.secrets,
            )
            .await?;
            Ok(Arc::new(built.with_clock(context.clock.clone())))
        }
        #[cfg(feature = "twilio")]
        "twilio" => {
            use crate::twilio::{TwilioConfig, TwilioWhatsAppChannel};
            expect_channel("twilio", Channel::WhatsApp, channel)?;
            let built = TwilioWhatsAppChannel::connect(
                TwilioConfig::from_channel_config(config)?,
                &*context.secrets,
            )
            .await?;
            Ok(Arc::new(built.with_clock(context.clock.clone())))
        }
        #[cfg(feature = "instagram")]
        "instagram" => {
            use crate::instagram::{InstagramChannel, InstagramConfig};
            expect_channel("instagram", Channel::Instagram, channel)?;
            let built = InstagramChannel::connect(
                InstagramConfig::from_channel_config(config)?,
                &*context.secrets,
            )
            .await?;
            Ok(Arc::new(built.with_clock(context.clock.clone())))
        }
        other => Err(BuildError::UnknownProvider {
            provider: other.to_owned(),
        }),
    }
}
