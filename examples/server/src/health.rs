//! `GET /health`: the database answers, every embedded migration is applied, and
//! every engine loop runs. 200 with the checks when all hold, 503 otherwise.

use std::collections::BTreeSet;
use std::sync::PoisonError;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crm_store_postgres::MIGRATOR;
use serde_json::json;

use crate::state::AppState;

/// The health answer.
pub async fn health(State(state): State<AppState>) -> Response {
    let pool = state.store.pool();
    let database = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(pool)
        .await
        .is_ok();
    let migrations = if database {
        migrations_current(pool).await
    } else {
        Err("database unreachable".to_owned())
    };
    let loops = {
        let running = state.running.lock().unwrap_or_else(PoisonError::into_inner);
        match running.as_ref() {
            Some(running) => {
                let stopped = running.stopped_loops();
                if stopped.is_empty() {
                    Ok(())
                } else {
                    Err(format!("stopped: {}", stopped.join(", ")))
                }
            }
            None => Err("the engine is not running".to_owned()),
        }
    };
    let healthy = database && migrations.is_ok() && loops.is_ok();
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let check = |r: &Result<(), String>| match r {
        Ok(()) => json!({"ok": true}),
        Err(why) => json!({"ok": false, "reason": why}),
    };
    let body = json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "engine": state.engine.config().name,
        "checks": {
            "database": {"ok": database},
            "migrations": check(&migrations),
            "loops": check(&loops),
        }
    });
    (status, Json(body)).into_response()
}

/// Every embedded migration is applied successfully, and none unknown to this build
/// is (a newer build migrated the database: this one may misread it).
async fn migrations_current(pool: &sqlx::PgPool) -> Result<(), String> {
    let applied: Vec<(i64, bool)> = sqlx::query_as("SELECT version, success FROM _sqlx_migrations")
        .fetch_all(pool)
        .await
        .map_err(|_| "cannot read _sqlx_migrations".to_owned())?;
    if applied.iter().any(|(_, ok)| !ok) {
        return Err("a migration failed".to_owned());
    }
    let applied: BTreeSet<i64> = applied.into_iter().map(|(v, _)| v).collect();
    let embedded: BTreeSet<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    let missing: Vec<String> = embedded.difference(&applied).map(i64::to_string).collect();
    if !missing.is_empty() {
        return Err(format!("not applied: {}", missing.join(", ")));
    }
    let unknown: Vec<String> = applied.difference(&embedded).map(i64::to_string).collect();
    if !unknown.is_empty() {
        return Err(format!("applied by a newer build: {}", unknown.join(", ")));
    }
    Ok(())
}
