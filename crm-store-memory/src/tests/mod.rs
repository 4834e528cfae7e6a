//! Unit tests of the memory store's tricky parts. The full contract is checked by the
//! shared conformance suite in `tests/conformance.rs`.

mod queues;
mod records;

use chrono::{DateTime, TimeZone, Utc};
use crm_core::StoreErrorKind;
use crm_core::ids::WorkspaceId;
use crm_core::model::{Channel, Contact, NewContact, Sequence, SequenceStep, StepDelay, Template};
use crm_core::store::ContactStore;

use crate::MemoryStore;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap()
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

fn sequence(ws: WorkspaceId) -> Sequence {
    let step = SequenceStep {
        channel: Channel::Email,
        template: Template {
            subject: None,
            body: "Hi".into(),
        },
        delay: StepDelay::Hours(0),
        window: None,
        requires_approval: false,
        options: Default::default(),
    };
    Sequence::create(ws, "Intro", vec![step], t0()).unwrap()
}

async fn stored_contact(store: &MemoryStore, ws: WorkspaceId, email: &str) -> Contact {
    store.insert_contact(&contact(ws, email)).await.unwrap()
}

#[track_caller]
fn assert_kind<T: std::fmt::Debug>(result: Result<T, crm_core::StoreError>, kind: StoreErrorKind) {
    match result {
        Err(e) => assert_eq!(e.kind(), kind, "{e}"),
        Ok(v) => panic!("expected {kind:?}, got Ok({v:?})"),
    }
}

#[test]
fn debug_prints_sizes_not_rows() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(stored_contact(&store, ws, "secret.person@example.com"));
    let debug = format!("{store:?}");
    assert!(debug.contains("contacts: 1"), "{debug}");
    assert!(!debug.contains("secret"), "{debug}");
    assert!(!debug.contains("Ada"), "{debug}");
}

#[tokio::test]
async fn clones_share_state_and_the_backend_is_named() {
    use crm_core::store::BackendName;
    let store = MemoryStore::new();
    let clone = store.clone();
    let ws = WorkspaceId::new();
    let c = stored_contact(&store, ws, "ada@example.com").await;
    assert_eq!(clone.get_contact(ws, c.id).await.unwrap(), c);
    assert_eq!(store.backend_name(), "memory");
}
