//! [`ChannelResolver`]: which adapter sends a workspace's messages on a channel.
//!
//! One process may serve many workspaces, each with its own provider account, sender
//! and credentials. The dispatcher therefore asks a resolver for the adapter of every
//! message's (workspace, channel), handing it the channel configuration it read from
//! the workspace's settings in the same batch, so settings are read once and the
//! resolver need not know where they live.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::channel::{ChannelAdapter, ChannelError};
use crate::ids::WorkspaceId;
use crate::model::{Channel, ChannelConfig};

/// Finds (or builds) the adapter that sends one workspace's messages on one channel.
///
/// # Contract
/// - `config` is the workspace's configuration of `channel` as the caller read it from
///   the workspace's settings (`None`: the workspace configures nothing for it). A
///   resolver MAY ignore it (one adapter for every workspace) but MUST NOT serve one
///   workspace with another workspace's configuration.
/// - A channel that cannot be served (no configuration, unknown provider, missing
///   parameter, unresolvable secret) MUST be
///   [`ChannelError::Configuration`]: the dispatcher reschedules the message with
///   backoff. It MUST NOT panic, and its error MUST NOT carry a secret's value.
/// - SHOULD be cheap when nothing changed (cache what was built); a changed `config`
///   (for example a rotated secret version) MUST take effect on the next call.
/// - The returned adapter's [`ChannelAdapter::channel`] SHOULD be `channel`.
///
/// # Implementing
/// `ChannelRegistry` (in the dispatcher module) serves one adapter per channel for
/// every workspace; crm-channels' `ProviderChannels` builds adapters from each
/// workspace's configuration and its secret references.
#[async_trait]
pub trait ChannelResolver: Send + Sync + Debug + 'static {
    /// The adapter for `channel` in `workspace_id`, configured by `config`.
    async fn resolve(
        &self,
        workspace_id: WorkspaceId,
        channel: Channel,
        config: Option<&ChannelConfig>,
    ) -> Result<Arc<dyn ChannelAdapter>, ChannelError>;
}

// Keeps the trait dyn-compatible: the dispatcher holds `Arc<dyn ChannelResolver>`.
fn _assert_dyn(_: &dyn ChannelResolver) {}
