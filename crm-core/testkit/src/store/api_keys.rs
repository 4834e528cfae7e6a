//! Cases for [`ApiKeyStore`](crm_core::store::ApiKeyStore): hashed keys found by a
//! prefix unique across workspaces, forward-only last use, idempotent revocation, and
//! every scoped method blind to other workspaces.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{ApiKeyId, WorkspaceId};
use crm_core::model::{ApiKey, ApiKeyRecord, ApiScope, TokenHash};
use crm_core::store::Page;

use super::fixtures::{assert_pagination, at, base, expect_err, ok, race, same_invalid};

/// A fresh visible prefix: 8 random hex characters (from the random tail of a v7 id).
pub fn unique_prefix() -> String {
    let id = Uuid::now_v7().simple().to_string();
    id[id.len() - 8..].to_owned()
}

/// A valid key record of `ws` with a fresh prefix, created at [`base`].
pub fn new_api_key(ws: WorkspaceId, hash_byte: u8) -> ApiKeyRecord {
    ApiKeyRecord {
        key: ApiKey {
            id: ApiKeyId::new(),
            workspace_id: ws,
            name: "importer".into(),
            prefix: unique_prefix(),
            scopes: BTreeSet::from([ApiScope::ContactsRead, ApiScope::InboxWrite]),
            created_at: base(),
            expires_at: Some(at(60)),
            last_used_at: None,
            revoked_at: None,
        },
        token_hash: TokenHash::from_bytes([hash_byte; 32]),
    }
}

/// insert_api_key returns the key as given (times to the microsecond) and
/// find_api_key_by_prefix returns it with its hash, whatever the workspace; an unknown
/// prefix is `None`. A prefix already used, in any workspace, is Conflict; so is the
/// same id again. Bad keys are the model's Invalid.
pub async fn api_key_round_trip_and_insert_rules(store: &DynStore) {
    let ws = WorkspaceId::new();
    let mut record = new_api_key(ws, 1);
    record.key.created_at = base() + Duration::nanoseconds(1_234_567);
    let stored = ok(store.insert_api_key(&record).await, "insert_api_key");
    let expected = record.key.clone().at_stored_precision();
    assert_eq!(
        stored, expected,
        "insert returns the key as stored, times kept to the microsecond"
    );
    let found = ok(
        store.find_api_key_by_prefix(&record.key.prefix).await,
        "find_api_key_by_prefix",
    );
    assert_eq!(
        found,
        Some(ApiKeyRecord {
            key: expected.clone(),
            token_hash: record.token_hash,
        }),
        "the prefix finds the key with its token hash and workspace"
    );
    assert_eq!(
        ok(
            store.find_api_key_by_prefix(&unique_prefix()).await,
            "find unknown"
        ),
        None,
        "an unknown prefix finds nothing"
    );

    let mut same_prefix = new_api_key(WorkspaceId::new(), 2);
    same_prefix.key.prefix = record.key.prefix.clone();
    expect_err(
        store.insert_api_key(&same_prefix).await,
        Kind::Conflict,
        "a prefix MUST be unique across all workspaces (it is the lookup key)",
    );
    let mut same_id = new_api_key(ws, 3);
    same_id.key.id = record.key.id;
    expect_err(
        store.insert_api_key(&same_id).await,
        Kind::Conflict,
        "an id MUST NOT be stored twice",
    );
    assert_eq!(
        ok(
            store.find_api_key_by_prefix(&record.key.prefix).await,
            "find"
        )
        .map(|r| r.key),
        Some(expected),
        "a refused insert changes nothing"
    );

    let mut blank = new_api_key(ws, 4);
    blank.key.name = " ".into();
    let mut no_scope = new_api_key(ws, 4);
    no_scope.key.scopes.clear();
    let mut bad_prefix = new_api_key(ws, 4);
    bad_prefix.key.prefix = "abc+defg".into();
    let mut expired_at_birth = new_api_key(ws, 4);
    expired_at_birth.key.expires_at = Some(expired_at_birth.key.created_at);
    let mut nul = new_api_key(ws, 4);
    nul.key.name = "a\0b".into();
    for (bad, what) in [
        (blank, "a blank name"),
        (no_scope, "no scope"),
        (bad_prefix, "a prefix outside the URL-safe alphabet"),
        (expired_at_birth, "an expiry not after creation"),
        (nul, "a NUL in the name"),
    ] {
        let expected = bad.validate();
        same_invalid(
            store.insert_api_key(&bad).await,
            expected,
            &format!("{what} MUST be Invalid"),
        );
        assert_eq!(
            ok(store.find_api_key_by_prefix(&bad.key.prefix).await, "find").map(|r| r.key.id),
            None,
            "{what}: nothing is stored"
        );
    }
}

/// touch_api_key sets last_used_at when unset or earlier and says whether it changed;
/// an earlier or equal time changes nothing. Another workspace's key, or an unknown
/// one, is NotFound and untouched.
pub async fn api_key_last_use_only_moves_forward(store: &DynStore) {
    let ws = WorkspaceId::new();
    let record = new_api_key(ws, 1);
    let key = ok(store.insert_api_key(&record).await, "insert_api_key");
    assert!(ok(store.touch_api_key(ws, key.id, at(5)).await, "touch"));
    assert_eq!(last_used(store, &key.prefix).await, Some(Some(at(5))));
    assert!(
        !ok(store.touch_api_key(ws, key.id, at(5)).await, "touch same"),
        "the same time changes nothing"
    );
    assert!(
        !ok(
            store.touch_api_key(ws, key.id, at(2)).await,
            "touch earlier"
        ),
        "an earlier use (a slower process) changes nothing"
    );
    assert_eq!(last_used(store, &key.prefix).await, Some(Some(at(5))));
    assert!(ok(
        store.touch_api_key(ws, key.id, at(9)).await,
        "touch later"
    ));
    assert_eq!(last_used(store, &key.prefix).await, Some(Some(at(9))));

    expect_err(
        store
            .touch_api_key(WorkspaceId::new(), key.id, at(20))
            .await,
        Kind::NotFound,
        "another workspace MUST NOT touch the key",
    );
    expect_err(
        store.touch_api_key(ws, ApiKeyId::new(), at(20)).await,
        Kind::NotFound,
        "an unknown key is NotFound",
    );
    assert_eq!(last_used(store, &key.prefix).await, Some(Some(at(9))));
}

/// The stored `last_used_at` of the key with `prefix` (`None` if no such key).
async fn last_used(store: &DynStore, prefix: &str) -> Option<Option<DateTime<Utc>>> {
    ok(store.find_api_key_by_prefix(prefix).await, "find").map(|r| r.key.last_used_at)
}

/// revoke_api_key sets revoked_at and returns the key; revoking again keeps the first
/// time. Another workspace's key, or an unknown one, is NotFound and stays valid.
pub async fn api_key_revocation_is_idempotent_and_scoped(store: &DynStore) {
    let ws = WorkspaceId::new();
    let key = ok(store.insert_api_key(&new_api_key(ws, 1)).await, "insert");
    expect_err(
        store
            .revoke_api_key(WorkspaceId::new(), key.id, at(1))
            .await,
        Kind::NotFound,
        "another workspace MUST NOT revoke the key",
    );
    expect_err(
        store.revoke_api_key(ws, ApiKeyId::new(), at(1)).await,
        Kind::NotFound,
        "an unknown key is NotFound",
    );
    let found = ok(store.find_api_key_by_prefix(&key.prefix).await, "find");
    assert_eq!(
        found.map(|r| r.key.revoked_at),
        Some(None),
        "a refused revocation changes nothing"
    );

    let revoked = ok(store.revoke_api_key(ws, key.id, at(2)).await, "revoke");
    assert_eq!(revoked.revoked_at, Some(at(2)));
    assert_eq!(
        ApiKey {
            revoked_at: None,
            ..revoked.clone()
        },
        key,
        "revocation changes nothing else"
    );
    let again = ok(
        store.revoke_api_key(ws, key.id, at(3)).await,
        "revoke again",
    );
    assert_eq!(again, revoked, "revoking twice keeps the first revoked_at");
    let found = ok(store.find_api_key_by_prefix(&key.prefix).await, "find");
    assert_eq!(
        found.map(|r| r.key),
        Some(revoked),
        "a revoked key is still found, so authentication can say it was revoked"
    );
}

/// list_api_keys pages through one workspace's keys (revoked ones included) by id,
/// never another's.
pub async fn api_key_list_pages_by_workspace(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let mut mine = Vec::new();
    for i in 0..3 {
        mine.push(ok(store.insert_api_key(&new_api_key(ws, i)).await, "insert").id);
    }
    let theirs = ok(
        store.insert_api_key(&new_api_key(other, 9)).await,
        "insert other",
    );
    ok(store.revoke_api_key(ws, mine[1], at(1)).await, "revoke");
    assert_pagination(
        "list_api_keys",
        mine.clone(),
        |k: &ApiKey| k.id,
        |page| store.list_api_keys(ws, page),
    )
    .await;
    let listed = ok(
        store.list_api_keys(other, Page::first(10)).await,
        "list other",
    );
    assert_eq!(
        listed,
        vec![theirs],
        "each workspace lists its own keys only"
    );
    assert!(
        ok(
            store
                .list_api_keys(WorkspaceId::new(), Page::first(10))
                .await,
            "list empty"
        )
        .is_empty()
    );
}

/// Of many concurrent inserts drawing the same prefix, exactly one is stored; the
/// others are Conflict.
pub async fn concurrent_api_key_inserts_one_prefix_wins(store: &DynStore) {
    let prefix = unique_prefix();
    let results = race(8, |i| {
        let mut record = new_api_key(WorkspaceId::new(), 1);
        record.key.prefix = prefix.clone();
        async move { (i, store.insert_api_key(&record).await) }
    })
    .await;
    let winners: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one insert of a prefix wins");
    for (_, result) in &results {
        if let Err(e) = result {
            assert_eq!(e.kind(), Kind::Conflict, "the losers are Conflict: {e:?}");
        }
    }
    let found = ok(store.find_api_key_by_prefix(&prefix).await, "find");
    assert_eq!(
        found.map(|r| r.key.id),
        winners
            .first()
            .and_then(|(_, r)| r.as_ref().ok())
            .map(|k| k.id),
        "the prefix finds the winner"
    );
}
