//! The environment variables the server reads (its README, "Configuration"), named once.

/// The PostgreSQL URL.
pub const DATABASE_URL: &str = "DATABASE_URL";
/// The schema of the tables.
pub const SCHEMA: &str = "CRM_DB_SCHEMA";
/// The listen address.
pub const BIND: &str = "CRM_BIND";
/// The name of the process's lease holders.
pub const ENGINE_NAME: &str = "CRM_ENGINE_NAME";
/// One poll interval for every engine loop, in milliseconds.
pub const POLL_INTERVAL_MS: &str = "CRM_POLL_INTERVAL_MS";
/// The service-wide Resend API key, a `secret://` reference.
pub const RESEND_API_KEY: &str = "CRM_RESEND_API_KEY";
/// The service-wide Resend sender.
pub const RESEND_FROM: &str = "CRM_RESEND_FROM";
/// Resend's API base URL.
pub const RESEND_BASE_URL: &str = "CRM_RESEND_BASE_URL";
/// Resend's webhook signing secret, a `secret://` reference.
pub const WEBHOOK_RESEND_SECRET: &str = "CRM_WEBHOOK_RESEND_SECRET";
/// The workspace of `POST /webhooks/{provider}`.
pub const WEBHOOK_WORKSPACE: &str = "CRM_WEBHOOK_WORKSPACE";
/// Requests per minute per API key.
pub const RATE_LIMIT_PER_MINUTE: &str = "CRM_RATE_LIMIT_PER_MINUTE";
/// The pool size.
pub const DB_MAX_CONNECTIONS: &str = "CRM_DB_MAX_CONNECTIONS";

/// The variable the server's `EnvSecretResolver` reads `reference` from.
pub fn secret_variable(reference: &str) -> String {
    let parsed = crm_core::SecretRef::parse(reference)
        .unwrap_or_else(|e| panic!("{reference} is not a secret reference: {e}"));
    crm_channels::secrets::EnvSecretResolver::new().variable_name(&parsed)
}
