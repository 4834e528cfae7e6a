//! [`ChannelRegistry`]: one adapter per channel, for every workspace.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::channel::{ChannelAdapter, ChannelError, ChannelResolver};
use crate::ids::WorkspaceId;
use crate::model::{Channel, ChannelConfig};

/// The adapters of a dispatcher, one per [`Channel`], shared by every workspace: a
/// [`ChannelResolver`] for tests and hosts that serve one sender.
///
/// It ignores the workspaces' channel configurations. A message on a channel without
/// an adapter gets a [`ChannelError::Configuration`]: it is retried with backoff and
/// finally dead-lettered with the reason (so a configuration fixed in time rescues
/// it); in dry-run no adapter is needed.
#[derive(Clone, Default)]
pub struct ChannelRegistry {
    adapters: BTreeMap<Channel, Arc<dyn ChannelAdapter>>,
}

impl ChannelRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `adapter` for the channel it reports
    /// ([`ChannelAdapter::channel`]), replacing any earlier one.
    #[must_use]
    pub fn with(mut self, adapter: Arc<dyn ChannelAdapter>) -> Self {
        self.insert(adapter);
        self
    }

    /// Registers `adapter` for its channel and returns the adapter it replaced.
    pub fn insert(&mut self, adapter: Arc<dyn ChannelAdapter>) -> Option<Arc<dyn ChannelAdapter>> {
        self.adapters.insert(adapter.channel(), adapter)
    }

    /// The adapter of `channel`, if one is registered.
    #[must_use]
    pub fn get(&self, channel: Channel) -> Option<&Arc<dyn ChannelAdapter>> {
        self.adapters.get(&channel)
    }

    /// The channels that have an adapter, in order.
    pub fn channels(&self) -> impl Iterator<Item = Channel> + '_ {
        self.adapters.keys().copied()
    }
}

impl fmt::Debug for ChannelRegistry {
    /// Lists channels and provider names only: adapters may hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.adapters
                    .iter()
                    .map(|(channel, adapter)| (channel.as_str(), adapter.provider())),
            )
            .finish()
    }
}

#[async_trait]
impl ChannelResolver for ChannelRegistry {
    async fn resolve(
        &self,
        _workspace_id: WorkspaceId,
        channel: Channel,
        _config: Option<&ChannelConfig>,
    ) -> Result<Arc<dyn ChannelAdapter>, ChannelError> {
        self.get(channel).cloned().ok_or_else(|| {
            ChannelError::configuration(channel, format!("no adapter registered for {channel}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::ChannelErrorKind;
    use crate::outreach::dispatch::StubChannel;

    #[tokio::test]
    async fn serves_every_workspace_the_same_adapter_and_refuses_the_rest_retryably() {
        let registry = ChannelRegistry::new().with(Arc::new(StubChannel::ok(Channel::Email)));
        let config = ChannelConfig::new("resend");
        let a = registry
            .resolve(WorkspaceId::new(), Channel::Email, Some(&config))
            .await
            .unwrap_or_else(|e| panic!("email is registered: {e}"));
        let b = registry
            .resolve(WorkspaceId::new(), Channel::Email, None)
            .await
            .unwrap_or_else(|e| panic!("email is registered: {e}"));
        assert!(Arc::ptr_eq(&a, &b));
        let missing = registry
            .resolve(WorkspaceId::new(), Channel::WhatsApp, Some(&config))
            .await
            .err()
            .unwrap_or_else(|| panic!("no WhatsApp adapter is registered"));
        assert_eq!(missing.kind(), ChannelErrorKind::Configuration);
        assert!(missing.is_retryable());
        assert!(
            missing
                .to_string()
                .contains("no adapter registered for whatsapp")
        );
    }
}
