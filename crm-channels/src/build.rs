//! Building adapters from a workspace's [`ChannelConfig`]: the parameter and secret
//! names each provider reads, and the error when a configuration cannot be used.
//!
//! Every provider config has a `from_channel_config` that reads its plain `params`
//! (every provider reads `base_url`, its API root, for proxies and loopback tests) and
//! keeps its credentials as [`SecretRef`]s; the adapter's `connect` resolves them
//! through a [`SecretResolver`] when it is built, so no raw secret sits in settings.
//!
//! | Provider | `secrets` | `params` (required in bold) |
//! |---|---|---|
//! | `resend` | **`api_key`** | **`from`**, `base_url` |
//! | `twilio` | **`auth_token`** | **`account_sid`**, **`from`** or **`messaging_service_sid`**, `status_callback`, `base_url` |
//! | `instagram` | **`access_token`** | `page_id` or `ig_user_id` (Instagram Login route), `api_version`, `base_url` |

use std::sync::Arc;

use crm_core::model::{Channel, ChannelConfig};
use crm_core::secret::{SecretError, SecretRef, SecretResolver};
use crm_core::{ChannelError, Clock};

use crate::http::{ConfigError, HttpConfig};

/// Why an adapter could not be built from its configuration. Messages name parameters
/// and secret references, never secret values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A parameter is missing or unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A secret reference could not be resolved.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The configuration names a provider this resolver does not know.
    #[error("unknown provider {provider:?}")]
    UnknownProvider {
        /// The provider name from the configuration.
        provider: String,
    },
    /// The provider does not send on the channel it is configured for.
    #[error("provider {provider} does not send on {channel}")]
    WrongChannel {
        /// The provider name.
        provider: &'static str,
        /// The channel it was configured for.
        channel: Channel,
    },
}

impl BuildError {
    /// The dispatcher's view: a retryable [`ChannelError::Configuration`] of
    /// `channel`, keeping this error as its source.
    #[must_use]
    pub fn into_channel_error(self, channel: Channel, provider: &str) -> ChannelError {
        ChannelError::Configuration {
            channel,
            reason: format!("provider {provider:?}: {self}"),
            source: Some(Box::new(self)),
        }
    }
}

/// A required plain parameter.
pub fn param<'c>(config: &'c ChannelConfig, name: &'static str) -> Result<&'c str, ConfigError> {
    optional_param(config, name).ok_or(ConfigError::Missing { field: name })
}

/// An optional plain parameter; an empty or blank value counts as absent.
#[must_use]
pub fn optional_param<'c>(config: &'c ChannelConfig, name: &str) -> Option<&'c str> {
    config
        .params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

/// A required secret reference.
pub fn secret_ref(config: &ChannelConfig, name: &'static str) -> Result<SecretRef, ConfigError> {
    config
        .secrets
        .get(name)
        .cloned()
        .ok_or(ConfigError::Missing { field: name })
}

/// The [`HttpConfig`] for the `base_url` parameter, or `default` without one.
pub fn http_config(config: &ChannelConfig, default: &str) -> Result<HttpConfig, ConfigError> {
    HttpConfig::new(optional_param(config, "base_url").unwrap_or(default))
}

/// What a provider needs to build an adapter besides its configuration.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Resolves the configuration's secret references.
    pub secrets: Arc<dyn SecretResolver>,
    /// The adapters' clock (receipts, conversation windows).
    pub clock: Arc<dyn Clock>,
}
