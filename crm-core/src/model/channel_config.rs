//! How a workspace reaches a provider on one channel: which provider, and its
//! parameters, where credentials are `secret://` references, never raw secrets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::secret::SecretRef;

/// The provider configuration of one channel in one workspace.
///
/// `provider` names an adapter kind known to the host's channel resolver (for example
/// `"resend"` or `"twilio"`); `params` holds its plain settings (base URL, sender,
/// account id) and `secrets` its credentials as references that the resolver turns
/// into values at send time, so a rotated secret takes effect without a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelConfig {
    /// The adapter kind, e.g. `"resend"`.
    pub provider: String,
    /// Plain, non-secret parameters by name.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Credentials by name, as secret references.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
}

impl ChannelConfig {
    /// A configuration for `provider` with no parameters yet.
    #[must_use]
    pub fn new(provider: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            ..Self::default()
        }
    }

    /// Adds a plain parameter.
    #[must_use]
    pub fn with_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(name.into(), value.into());
        self
    }

    /// Adds a credential reference.
    #[must_use]
    pub fn with_secret(mut self, name: impl Into<String>, secret: SecretRef) -> Self {
        self.secrets.insert(name.into(), secret);
        self
    }
}
