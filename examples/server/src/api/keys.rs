//! API keys: issuing from the command line.

use crm_store_postgres::PostgresStore;

/// `crm-server keys create`: issues a key and prints its token once.
///
/// # Errors
/// Until the key store is wired, always.
pub async fn create_key_command(
    _store: &PostgresStore,
    _workspace: &str,
    _scopes: &str,
    _name: Option<String>,
    _expires_days: Option<i64>,
) -> Result<(), Box<dyn std::error::Error>> {
    Err("API keys are not wired in this build yet".into())
}
