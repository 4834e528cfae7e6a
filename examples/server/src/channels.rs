//! [`HostChannels`]: the dispatcher's channel resolver, wrapping crm-channels'
//! `ProviderChannels` with the service's defaults and metrics.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use crm_channels::resolver::ProviderChannels;
use crm_core::channel::ChannelResolver;
use crm_core::ids::WorkspaceId;
use crm_core::model::{Channel, ChannelConfig};
use crm_core::{ChannelAdapter, ChannelError, OutboundMessage, SendReceipt};

use crate::metrics::Metrics;

/// Resolves each workspace's adapters through [`ProviderChannels`], and
/// - uses the service-wide configuration of a channel (from the environment) for a
///   workspace whose settings configure no provider for it;
/// - points every configuration of a provider without its own `base_url` at the
///   service's base URL for that provider (`CRM_<PROVIDER>_BASE_URL`), so a test or a
///   proxy reroutes every workspace at once;
/// - times every send into the metrics' latency histogram.
pub struct HostChannels {
    inner: ProviderChannels,
    defaults: BTreeMap<Channel, ChannelConfig>,
    base_urls: BTreeMap<String, String>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for HostChannels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostChannels")
            .field("inner", &self.inner)
            .field("default_channels", &self.defaults.keys())
            .field("base_urls", &self.base_urls.keys())
            .finish_non_exhaustive()
    }
}

impl HostChannels {
    /// Wraps `inner` with the service's channel `defaults` and provider `base_urls`.
    #[must_use]
    pub fn new(
        inner: ProviderChannels,
        defaults: BTreeMap<Channel, ChannelConfig>,
        base_urls: BTreeMap<String, String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner,
            defaults,
            base_urls,
            metrics,
        }
    }

    /// The configuration to build from: the workspace's, else the service's, with the
    /// service's base URL when it names none.
    fn effective(&self, channel: Channel, config: Option<&ChannelConfig>) -> Option<ChannelConfig> {
        let mut config = config.or_else(|| self.defaults.get(&channel))?.clone();
        if !config.params.contains_key("base_url")
            && let Some(base) = self.base_urls.get(&config.provider)
        {
            config.params.insert("base_url".to_owned(), base.clone());
        }
        Some(config)
    }
}

#[async_trait]
impl ChannelResolver for HostChannels {
    async fn resolve(
        &self,
        workspace_id: WorkspaceId,
        channel: Channel,
        config: Option<&ChannelConfig>,
    ) -> Result<Arc<dyn ChannelAdapter>, ChannelError> {
        let config = self.effective(channel, config);
        let adapter = self
            .inner
            .resolve(workspace_id, channel, config.as_ref())
            .await?;
        Ok(Arc::new(Timed {
            inner: adapter,
            metrics: self.metrics.clone(),
        }))
    }
}

/// An adapter whose sends are timed into the latency histogram.
#[derive(Debug)]
struct Timed {
    inner: Arc<dyn ChannelAdapter>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl ChannelAdapter for Timed {
    fn channel(&self) -> Channel {
        self.inner.channel()
    }

    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ChannelError> {
        // Latency is elapsed real time, not domain time: the clock seam does not apply.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        let result = self.inner.send(message).await;
        self.metrics
            .observe_send(self.inner.channel(), started.elapsed(), result.is_ok());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_channels::secrets::MemorySecretResolver;

    #[test]
    fn the_service_default_and_base_url_fill_in() {
        let defaults = BTreeMap::from([(Channel::Email, ChannelConfig::new("resend"))]);
        let base_urls = BTreeMap::from([("resend".to_owned(), "http://127.0.0.1:1".to_owned())]);
        let channels = HostChannels::new(
            ProviderChannels::new(Arc::new(MemorySecretResolver::new())),
            defaults,
            base_urls,
            Arc::new(Metrics::default()),
        );
        let filled = channels.effective(Channel::Email, None).unwrap();
        assert_eq!(filled.params["base_url"], "http://127.0.0.1:1");
        let own = ChannelConfig::new("resend").with_param("base_url", "https://api.resend.com");
        let kept = channels.effective(Channel::Email, Some(&own)).unwrap();
        assert_eq!(kept.params["base_url"], "https://api.resend.com");
        assert!(channels.effective(Channel::WhatsApp, None).is_none());
    }
}
