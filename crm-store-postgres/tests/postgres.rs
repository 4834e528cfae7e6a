//! PostgreSQL-specific behaviour, against a real server: migrations, connection errors,
//! credentials kept out of `Debug`, rows the database holds but Rust cannot read, and
//! text PostgreSQL itself refuses. Everything the `Store` contract says is checked by
//! the shared conformance suite (`tests/conformance.rs`), not repeated here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, TimeZone, Utc};
use crm_core::StoreErrorKind;
use crm_core::ids::WorkspaceId;
use crm_core::model::{Channel, Contact, NewContact, OutboxMessage};
use crm_core::store::BackendName;
use crm_core::store::{ContactStore, OutboxStore};
use crm_store_postgres::testing::fresh_store;
use crm_store_postgres::{PostgresConfig, PostgresStore};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

fn contact(ws: WorkspaceId, email: &str) -> Contact {
    Contact::create(
        ws,
        NewContact {
            first_name: "Ada".into(),
            email: Some(email.into()),
            ..Default::default()
        },
        t0(),
    )
    .unwrap()
}

fn message(ws: WorkspaceId, key: &str) -> OutboxMessage {
    OutboxMessage::new(ws, Channel::Email, "ada@example.com", "Hello", key, t0()).unwrap()
}

#[tokio::test]
async fn migrations_are_idempotent_and_live_in_the_schema() {
    let store = fresh_store().await;
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let (tables,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM information_schema.tables
         WHERE table_schema = $1 AND table_name IN ('_sqlx_migrations', 'contacts', 'jobs')",
    )
    .bind(store.schema())
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(tables, 3);
    assert_eq!(store.backend_name(), "postgres");
}

#[tokio::test]
async fn debug_output_has_no_credentials() {
    let store = fresh_store().await;
    let shown = format!("{store:?}");
    assert!(shown.contains(store.schema()), "{shown}");
    assert!(!shown.contains("postgres://"), "{shown}");
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let config = PostgresConfig::default().with_acquire_timeout(std::time::Duration::from_secs(2));
    let err = PostgresStore::connect("postgres://nobody:secret@127.0.0.1:1/none", config)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err:?}");
    assert!(err.is_retryable());
    assert!(!format!("{err} {err:?}").contains("secret"));
}

#[tokio::test]
async fn unknown_stored_enum_is_a_backend_error() {
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    let m = store.enqueue_outbox(&message(ws, "k")).await.unwrap().value;
    sqlx::query("UPDATE outbox_messages SET status = 'teleported' WHERE id = $1")
        .bind(m.id.as_uuid())
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.get_outbox(ws, m.id).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Backend);
}

#[tokio::test]
async fn bad_text_is_invalid_not_a_crash() {
    let store = fresh_store().await;
    let ws = WorkspaceId::new();
    let mut c = contact(ws, "nul@example.com");
    c.title = Some("a\0b".into());
    let err = store.insert_contact(&c).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err:?}");
}
