//! The service's configuration, read once from environment variables.
//!
//! Every setting and its variable is listed in the crate's README ("Configuration").
//! A missing or unusable setting is a [`ConfigError`] naming the variable; a value is
//! never echoed back when the variable may hold a secret.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crm_core::SecretRef;
use crm_core::model::{Channel, ChannelConfig};

/// Why the configuration could not be read: the variable and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration variable {variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with it (never its value when it may be secret).
    pub reason: String,
}

impl ConfigError {
    fn new(variable: &'static str, reason: impl Into<String>) -> Self {
        Self {
            variable,
            reason: reason.into(),
        }
    }
}

/// Where the configuration reads variables from: the process environment, or a map
/// in tests.
pub trait Env {
    /// The variable's value; `None` when unset. An empty value counts as unset.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.trim().is_empty()).cloned()
    }
}

/// The webhook signing secrets of one inbound provider, as secret references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSecrets {
    /// The signing secret (Resend `whsec_...`, Twilio auth token, Meta app secret, ...).
    pub secret: SecretRef,
    /// Meta only: the verify token of the `hub.challenge` handshake.
    pub verify_token: Option<SecretRef>,
}

/// The whole service configuration.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// `DATABASE_URL`: the PostgreSQL URL.
    pub database_url: String,
    /// `CRM_DB_SCHEMA`: the schema of the tables (default `crm`).
    pub schema: String,
    /// `CRM_DB_MAX_CONNECTIONS`: the pool size (default 10).
    pub max_connections: u32,
    /// `CRM_BIND`: the listen address (default `127.0.0.1:8080`).
    pub bind: SocketAddr,
    /// `CRM_PUBLIC_URL`: the URL providers call, without a trailing slash (default
    /// `http://{CRM_BIND}`); Twilio signs the full URL, so it must match what the
    /// provider was given.
    pub public_url: String,
    /// `CRM_ENGINE_NAME`: the name of this process's lease holders (default random).
    pub engine_name: Option<String>,
    /// `CRM_DRY_RUN`: force dry-run sends for every workspace (default false).
    pub dry_run: bool,
    /// `CRM_POLL_INTERVAL_MS`: one poll interval for every engine loop (default: the
    /// engine's own intervals).
    pub poll_interval: Option<Duration>,
    /// `CRM_SHUTDOWN_SECONDS`: how long shutdown waits for in-flight work (default 30).
    pub shutdown_deadline: Duration,
    /// `CRM_WEBHOOK_MAX_BODY_BYTES`: the body cap of webhooks (default 1 MiB).
    pub webhook_max_body: usize,
    /// `CRM_API_MAX_BODY_BYTES`: the body cap of the JSON API and the page (default 256 KiB).
    pub api_max_body: usize,
    /// `CRM_WEBHOOK_WORKSPACE`: the workspace of `POST /webhooks/{provider}` (the
    /// URL without a workspace id, for single-tenant deployments).
    pub webhook_workspace: Option<crm_core::ids::WorkspaceId>,
    /// `CRM_RATE_LIMIT_PER_MINUTE`: requests per minute per API key (default 100).
    pub rate_limit_per_minute: u32,
    /// `CRM_DISPATCH_*`: the outbox dispatcher's batch, concurrency, lease and reaping
    /// (see [`DispatchTuning`](crate::tuning::DispatchTuning)).
    pub dispatch: crate::tuning::DispatchTuning,
    /// `CRM_COOKIE_SECURE`: mark the inbox login cookie `Secure` (default false, for
    /// plain-HTTP loopback; set it behind TLS).
    pub cookie_secure: bool,
    /// `CRM_CSRF_SECRET`: the key the inbox page's CSRF tokens are derived with, a
    /// `secret://` reference (default: random per process, so a form opened on one
    /// process is refused by another; set it when several processes serve the page).
    pub csrf_secret: Option<SecretRef>,
    /// The service-wide channel configurations, used for a workspace that configures
    /// no provider for a channel (see [`channel_defaults`]).
    pub channels: BTreeMap<Channel, ChannelConfig>,
    /// The API base URL per provider name (`CRM_<PROVIDER>_BASE_URL`), applied to any
    /// configuration of that provider without its own `base_url`.
    pub base_urls: BTreeMap<String, String>,
    /// The inbound providers with their signing secrets (`CRM_WEBHOOK_*`).
    pub webhooks: BTreeMap<&'static str, WebhookSecrets>,
}

/// The inbound providers, their secret variables and the verify-token variable.
pub const WEBHOOK_PROVIDERS: &[(&str, &str, Option<&str>)] = &[
    ("resend", "CRM_WEBHOOK_RESEND_SECRET", None),
    ("twilio", "CRM_WEBHOOK_TWILIO_AUTH_TOKEN", None),
    (
        "instagram",
        "CRM_WEBHOOK_INSTAGRAM_APP_SECRET",
        Some("CRM_WEBHOOK_INSTAGRAM_VERIFY_TOKEN"),
    ),
    ("cal_com", "CRM_WEBHOOK_CAL_COM_SECRET", None),
    ("calendly", "CRM_WEBHOOK_CALENDLY_SIGNING_KEY", None),
    ("slack", "CRM_WEBHOOK_SLACK_SIGNING_SECRET", None),
];

/// The providers whose API base URL a `CRM_<PROVIDER>_BASE_URL` variable sets.
const BASE_URL_VARIABLES: &[(&str, &str)] = &[
    ("resend", "CRM_RESEND_BASE_URL"),
    ("twilio", "CRM_TWILIO_BASE_URL"),
    ("instagram", "CRM_INSTAGRAM_BASE_URL"),
];

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// The first missing or unusable variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(&ProcessEnv)
    }

    /// Reads the configuration from `env`.
    ///
    /// # Errors
    /// The first missing or unusable variable.
    pub fn from(env: &dyn Env) -> Result<Self, ConfigError> {
        let database_url = env.var("DATABASE_URL").ok_or_else(|| {
            ConfigError::new(
                "DATABASE_URL",
                "is not set; e.g. postgres://postgres@127.0.0.1:5432/postgres",
            )
        })?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must start with postgres:// or postgresql://",
            ));
        }
        let bind: SocketAddr = parse_or(env, "CRM_BIND", "127.0.0.1:8080".parse().ok())?
            .ok_or_else(|| ConfigError::new("CRM_BIND", "is not set"))?;
        let public_url = match env.var("CRM_PUBLIC_URL") {
            Some(raw) => {
                let parsed = url::Url::parse(&raw).map_err(|_| {
                    ConfigError::new(
                        "CRM_PUBLIC_URL",
                        "is not a URL such as https://crm.example.com",
                    )
                })?;
                parsed.as_str().trim_end_matches('/').to_owned()
            }
            None => format!("http://{bind}"),
        };
        let poll_ms: Option<u64> = parse_or(env, "CRM_POLL_INTERVAL_MS", None)?;
        if poll_ms == Some(0) {
            return Err(ConfigError::new("CRM_POLL_INTERVAL_MS", "must be positive"));
        }
        let shutdown: u64 = parse_or(env, "CRM_SHUTDOWN_SECONDS", Some(30))?.unwrap_or(30);
        if shutdown == 0 {
            return Err(ConfigError::new("CRM_SHUTDOWN_SECONDS", "must be positive"));
        }
        let rate: u32 = parse_or(env, "CRM_RATE_LIMIT_PER_MINUTE", Some(100))?.unwrap_or(100);
        if rate == 0 {
            return Err(ConfigError::new(
                "CRM_RATE_LIMIT_PER_MINUTE",
                "must be positive",
            ));
        }
        let webhook_workspace = match env.var("CRM_WEBHOOK_WORKSPACE") {
            Some(raw) => Some(raw.trim().parse().map_err(|_| {
                ConfigError::new("CRM_WEBHOOK_WORKSPACE", "is not a workspace id (a UUID)")
            })?),
            None => None,
        };
        let mut base_urls = BTreeMap::new();
        for (provider, variable) in BASE_URL_VARIABLES {
            if let Some(raw) = env.var(variable) {
                url::Url::parse(&raw).map_err(|_| {
                    ConfigError::new(variable, "is not a URL such as http://127.0.0.1:9000")
                })?;
                base_urls.insert((*provider).to_owned(), raw);
            }
        }
        let mut webhooks = BTreeMap::new();
        for (provider, variable, token_variable) in WEBHOOK_PROVIDERS {
            let Some(secret) = secret_var(env, variable)? else {
                continue;
            };
            let verify_token = match token_variable {
                Some(v) => secret_var(env, v)?,
                None => None,
            };
            webhooks.insert(
                *provider,
                WebhookSecrets {
                    secret,
                    verify_token,
                },
            );
        }
        Ok(Self {
            database_url,
            schema: env.var("CRM_DB_SCHEMA").unwrap_or_else(|| "crm".to_owned()),
            max_connections: parse_or(env, "CRM_DB_MAX_CONNECTIONS", Some(10))?.unwrap_or(10),
            bind,
            public_url,
            engine_name: env.var("CRM_ENGINE_NAME"),
            dry_run: flag(env, "CRM_DRY_RUN")?,
            poll_interval: poll_ms.map(Duration::from_millis),
            shutdown_deadline: Duration::from_secs(shutdown),
            webhook_max_body: parse_or(env, "CRM_WEBHOOK_MAX_BODY_BYTES", Some(1024 * 1024))?
                .unwrap_or(1024 * 1024),
            api_max_body: parse_or(env, "CRM_API_MAX_BODY_BYTES", Some(256 * 1024))?
                .unwrap_or(256 * 1024),
            webhook_workspace,
            rate_limit_per_minute: rate,
            dispatch: crate::tuning::DispatchTuning::read(env)?,
            cookie_secure: flag(env, "CRM_COOKIE_SECURE")?,
            csrf_secret: secret_var(env, "CRM_CSRF_SECRET")?,
            channels: channel_defaults(env)?,
            base_urls,
            webhooks,
        })
    }
}

/// The service-wide channel configurations from the environment:
///
/// | channel | provider | variables (required in bold) |
/// |---|---|---|
/// | email | `resend` | **`CRM_RESEND_API_KEY`** (`secret://`), **`CRM_RESEND_FROM`** |
/// | WhatsApp | `twilio` | **`CRM_TWILIO_AUTH_TOKEN`** (`secret://`), **`CRM_TWILIO_ACCOUNT_SID`**, **`CRM_TWILIO_FROM`** |
/// | Instagram | `instagram` | **`CRM_INSTAGRAM_ACCESS_TOKEN`** (`secret://`), `CRM_INSTAGRAM_PAGE_ID` |
///
/// A channel is configured when its first variable is set; its other required
/// variables must then be set too.
///
/// # Errors
/// A required variable missing, or a secret variable that is not a `secret://`
/// reference.
pub fn channel_defaults(env: &dyn Env) -> Result<BTreeMap<Channel, ChannelConfig>, ConfigError> {
    let mut channels = BTreeMap::new();
    if let Some(key) = secret_var(env, "CRM_RESEND_API_KEY")? {
        let from = required(
            env,
            "CRM_RESEND_FROM",
            "is required with CRM_RESEND_API_KEY",
        )?;
        channels.insert(
            Channel::Email,
            ChannelConfig::new("resend")
                .with_param("from", from)
                .with_secret("api_key", key),
        );
    }
    if let Some(token) = secret_var(env, "CRM_TWILIO_AUTH_TOKEN")? {
        let why = "is required with CRM_TWILIO_AUTH_TOKEN";
        channels.insert(
            Channel::WhatsApp,
            ChannelConfig::new("twilio")
                .with_param("account_sid", required(env, "CRM_TWILIO_ACCOUNT_SID", why)?)
                .with_param("from", required(env, "CRM_TWILIO_FROM", why)?)
                .with_secret("auth_token", token),
        );
    }
    if let Some(token) = secret_var(env, "CRM_INSTAGRAM_ACCESS_TOKEN")? {
        let mut config = ChannelConfig::new("instagram").with_secret("access_token", token);
        if let Some(page) = env.var("CRM_INSTAGRAM_PAGE_ID") {
            config = config.with_param("page_id", page);
        }
        channels.insert(Channel::Instagram, config);
    }
    Ok(channels)
}

fn required(env: &dyn Env, variable: &'static str, why: &str) -> Result<String, ConfigError> {
    env.var(variable)
        .ok_or_else(|| ConfigError::new(variable, why))
}

/// A `secret://<id>:<version>` reference; the value is never quoted in the error.
fn secret_var(env: &dyn Env, variable: &'static str) -> Result<Option<SecretRef>, ConfigError> {
    env.var(variable)
        .map(|raw| {
            SecretRef::parse(raw.trim()).map_err(|_| {
                ConfigError::new(
                    variable,
                    "must be a secret reference secret://<id>:<version> (the value itself goes in the variable that reference names, e.g. CRM_SECRET_<ID>_<VERSION>)",
                )
            })
        })
        .transpose()
}

fn flag(env: &dyn Env, variable: &'static str) -> Result<bool, ConfigError> {
    match env.var(variable).as_deref().map(str::trim) {
        None => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(_) => Err(ConfigError::new(
            variable,
            "must be 1/0, true/false, yes/no or on/off",
        )),
    }
}

fn parse_or<T: std::str::FromStr>(
    env: &dyn Env,
    variable: &'static str,
    default: Option<T>,
) -> Result<Option<T>, ConfigError> {
    match env.var(variable) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map(Some).map_err(|_| {
            ConfigError::new(
                variable,
                format!("cannot be parsed as a {}", short_type_name::<T>()),
            )
        }),
    }
}

fn short_type_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    name.rsplit("::").next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const DB: (&str, &str) = (
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );

    #[test]
    fn defaults_need_only_the_database() {
        let config = Config::from(&env(&[DB])).unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.public_url, "http://127.0.0.1:8080");
        assert_eq!(config.schema, "crm");
        assert_eq!(config.rate_limit_per_minute, 100);
        assert!(!config.dry_run);
        assert!(config.channels.is_empty() && config.webhooks.is_empty());
    }

    #[test]
    fn errors_name_the_variable() {
        let missing = Config::from(&env(&[])).unwrap_err();
        assert_eq!(missing.variable, "DATABASE_URL");
        let bad_bind = Config::from(&env(&[DB, ("CRM_BIND", "nowhere")])).unwrap_err();
        assert_eq!(bad_bind.variable, "CRM_BIND");
        let bad_flag = Config::from(&env(&[DB, ("CRM_DRY_RUN", "maybe")])).unwrap_err();
        assert_eq!(bad_flag.variable, "CRM_DRY_RUN");
        let raw_secret =
            Config::from(&env(&[DB, ("CRM_WEBHOOK_RESEND_SECRET", "whsec_abc")])).unwrap_err();
        assert_eq!(raw_secret.variable, "CRM_WEBHOOK_RESEND_SECRET");
        assert!(!raw_secret.to_string().contains("whsec_abc"));
        let half_channel = Config::from(&env(&[
            DB,
            ("CRM_RESEND_API_KEY", "secret://resend/api_key:1"),
        ]))
        .unwrap_err();
        assert_eq!(half_channel.variable, "CRM_RESEND_FROM");
    }

    #[test]
    fn channels_webhooks_and_base_urls_are_read() {
        let config = Config::from(&env(&[
            DB,
            ("CRM_RESEND_API_KEY", "secret://resend/api_key:1"),
            ("CRM_RESEND_FROM", "Sales <sales@example.com>"),
            ("CRM_RESEND_BASE_URL", "http://127.0.0.1:9999"),
            ("CRM_WEBHOOK_RESEND_SECRET", "secret://resend/webhook:1"),
            ("CRM_POLL_INTERVAL_MS", "50"),
        ]))
        .unwrap();
        assert_eq!(config.channels[&Channel::Email].provider, "resend");
        assert_eq!(config.base_urls["resend"], "http://127.0.0.1:9999");
        assert!(config.webhooks.contains_key("resend"));
        assert_eq!(config.poll_interval, Some(Duration::from_millis(50)));
    }
}
