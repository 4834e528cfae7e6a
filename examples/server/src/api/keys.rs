//! API keys: issuing from the command line (`crm-server keys create`).

use std::sync::Arc;

use crm_core::SystemClock;
use crm_core::access::{ApiKeys, ApiScope};
use crm_core::ids::WorkspaceId;
use crm_core::secret::ExposeSecret;
use crm_core::store::WorkspaceStore;
use crm_store_postgres::PostgresStore;

/// Issues a key of `workspace` with the comma-separated `scopes`, and prints its
/// token once on standard output (details on standard error).
///
/// # Errors
/// An unknown workspace or scope, or the store.
pub async fn create_key_command(
    store: &PostgresStore,
    workspace: &str,
    scopes: &str,
    name: Option<String>,
    expires_days: Option<i64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let workspace_id: WorkspaceId = workspace
        .trim()
        .parse()
        .map_err(|_| format!("--workspace {workspace:?} is not a workspace id"))?;
    store
        .get_workspace(workspace_id)
        .await
        .map_err(|e| format!("workspace {workspace_id}: {e}"))?;
    let scopes = parse_scopes(scopes)?;
    let expires_at = expires_days.map(|d| chrono::Utc::now() + chrono::Duration::days(d));
    let keys = ApiKeys::new(Arc::new(store.clone()), Arc::new(SystemClock));
    let name = name.unwrap_or_else(|| "cli".to_owned());
    let issued = keys.issue(workspace_id, &name, &scopes, expires_at).await?;
    eprintln!(
        "issued key {} (prefix {}) for workspace {workspace_id}; the token is shown once:",
        issued.key.id, issued.key.prefix
    );
    println!("{}", issued.token.expose_secret());
    Ok(())
}

/// `contacts:read,inbox:write` as scopes.
///
/// # Errors
/// An unknown scope, or none.
pub fn parse_scopes(raw: &str) -> Result<Vec<ApiScope>, String> {
    let scopes = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ApiScope>().map_err(|_| {
                format!(
                    "unknown scope {s:?}; known: contacts:read, contacts:write, inbox:read, inbox:write, sequences:write"
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if scopes.is_empty() {
        return Err("--scopes needs at least one scope".to_owned());
    }
    Ok(scopes)
}
