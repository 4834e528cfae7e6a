//! The API key service ([`ApiKeys`]) against a real store:
//! issue, authenticate, expiry, revocation, unknown and malformed tokens, scopes,
//! last use, and workspace isolation.
//!
//! Each case is a `pub async fn name(store: Arc<DynStore>)` that panics with the rule
//! it checks.

use std::sync::Arc;

use chrono::Duration;
use sha2::{Digest, Sha256};

use crate::store::fixtures::{at, base};
use crm_core::DynStore;
use crm_core::access::{AccessError, ApiKeys, ApiScope, IssuedApiKey, TOKEN_LEN};
use crm_core::clock::{Clock, ManualClock};
use crm_core::error::StoreErrorKind;
use crm_core::ids::WorkspaceId;
use crm_core::secret::ExposeSecret;

/// Expands to one `#[tokio::test]` per API key scenario, in a module named
/// `access_service`. `$make` is a path to an `async fn() -> S` where
/// `S: crm_core::Store`, called once per test.
#[macro_export]
macro_rules! access_conformance_tests {
    ($make:path) => {
        mod access_service {
            #[allow(unused_imports)]
            use super::*;

            $crate::__access_case!($make;
                api_key_is_shown_once_and_stored_as_a_hash
                api_key_unknown_malformed_and_missing_are_refused
                api_key_expires_by_the_clock
                api_key_revocation_is_immediate_in_every_process
                api_key_scopes_are_enforced
                api_key_last_use_is_recorded_and_coalesced
                api_key_never_reaches_another_workspace
            );
        }
    };
}

/// One test per case; called by [`access_conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __access_case {
    ($make:path; $($case:ident)*) => {
        $(
            #[$crate::tokio::test(
                flavor = "multi_thread",
                worker_threads = 2,
                crate = "crm_testkit::tokio"
            )]
            async fn $case() {
                let store: ::std::sync::Arc<$crate::__core::DynStore> =
                    ::std::sync::Arc::new($make().await);
                $crate::engine::access::$case(store).await;
            }
        )*
    };
}

struct World {
    store: Arc<DynStore>,
    clock: Arc<ManualClock>,
    keys: ApiKeys,
    ws: WorkspaceId,
}

fn world(store: Arc<DynStore>) -> World {
    let clock = Arc::new(ManualClock::new(base()));
    let keys = ApiKeys::new(store.clone(), clock.clone());
    World {
        store,
        clock,
        keys,
        ws: WorkspaceId::new(),
    }
}

impl World {
    async fn issue(&self, scopes: &[ApiScope]) -> IssuedApiKey {
        self.keys
            .issue(self.ws, "importer", scopes, None)
            .await
            .expect("issue a key")
    }
}

#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, AccessError>) -> AccessError {
    result.expect_err("the key must be refused")
}

/// A key is issued with a token of the documented format that authenticates to the
/// key; the store holds the token's SHA-256 and never the token, and no `Debug`
/// output (issued key, key, stored record) shows the token or its secret part.
pub async fn api_key_is_shown_once_and_stored_as_a_hash(store: Arc<DynStore>) {
    let w = world(store);
    let issued = w.issue(&[ApiScope::ContactsRead]).await;
    let token = issued.token.expose_secret().to_owned();
    assert_eq!(token.len(), TOKEN_LEN);
    assert!(token.starts_with("crm_"));
    assert_eq!(
        &token[4..12],
        issued.key.prefix,
        "the visible prefix follows `crm_`"
    );
    assert_eq!(issued.key.workspace_id, w.ws);
    assert_eq!(issued.key.name, "importer");
    assert_eq!(issued.key.created_at, base());
    assert_eq!(issued.key.last_used_at, None);

    let key = w.keys.authenticate(&token).await.expect("authenticates");
    assert_eq!(key.id, issued.key.id);
    assert_eq!(key.workspace_id, w.ws);

    let record = w
        .store
        .find_api_key_by_prefix(&issued.key.prefix)
        .await
        .expect("find")
        .expect("the key is stored");
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    assert_eq!(
        record.token_hash.as_bytes(),
        &digest,
        "the store keeps SHA-256 of the token"
    );
    let secret = &token[13..];
    for (what, text) in [
        ("issued key", format!("{issued:?}")),
        ("key", format!("{key:?}")),
        ("stored record", format!("{record:?}")),
        (
            "key list",
            format!("{:?}", w.keys.list(w.ws).await.expect("list")),
        ),
    ] {
        assert!(
            !text.contains(secret) && !text.contains(&token),
            "{what}: Debug MUST NOT show the token"
        );
    }

    let second = w.issue(&[ApiScope::ContactsRead]).await;
    assert_ne!(second.key.prefix, issued.key.prefix);
    assert_ne!(
        second.token.expose_secret(),
        token,
        "every key has its own token"
    );
}

/// A token with an unknown prefix, or a known prefix with a wrong secret, is Unknown;
/// text not in the token format is Malformed; nothing is Missing. All are
/// unauthenticated (401), none forbidden.
pub async fn api_key_unknown_malformed_and_missing_are_refused(store: Arc<DynStore>) {
    let w = world(store);
    let issued = w.issue(&[ApiScope::ContactsRead]).await;
    let token = issued.token.expose_secret().to_owned();
    let other = w.issue(&[ApiScope::ContactsRead]).await;

    // The right prefix with another key's secret: well-formed, but not this key.
    let wrong_secret = format!("{}{}", &token[..13], &other.token.expose_secret()[13..]);
    assert!(matches!(
        refused(w.keys.authenticate(&wrong_secret).await),
        AccessError::Unknown
    ));
    // A prefix no key has.
    let mut unknown_prefix = token.clone();
    let flipped = if &token[4..5] == "A" { "B" } else { "A" };
    unknown_prefix.replace_range(4..5, flipped);
    assert!(matches!(
        refused(w.keys.authenticate(&unknown_prefix).await),
        AccessError::Unknown
    ));
    for bad in [
        "not-a-key".to_owned(),
        format!("Bearer {token}"),
        token[..TOKEN_LEN - 1].to_owned(),
        format!("{token}x"),
        token.replacen("crm_", "crx_", 1),
    ] {
        let e = refused(w.keys.authenticate(&bad).await);
        assert!(matches!(e, AccessError::Malformed), "{e:?}");
        assert!(e.is_unauthenticated() && !e.is_forbidden());
    }
    for empty in ["", "   "] {
        assert!(matches!(
            refused(w.keys.authenticate(empty).await),
            AccessError::Missing
        ));
    }
    w.keys
        .authenticate(&token)
        .await
        .expect("the real token still works");
}

/// A key expires when the clock reaches `expires_at` (not before); an expiry that is
/// not in the future is refused at issue.
pub async fn api_key_expires_by_the_clock(store: Arc<DynStore>) {
    let w = world(store);
    let issued = w
        .keys
        .issue(w.ws, "temp", &[ApiScope::InboxRead], Some(at(60)))
        .await
        .expect("issue");
    assert_eq!(issued.key.expires_at, Some(at(60)));
    let token = issued.token.expose_secret().to_owned();
    w.clock.set(at(60) - Duration::microseconds(1));
    w.keys
        .authenticate(&token)
        .await
        .expect("valid until its expiry");
    w.clock.set(at(60));
    let e = refused(w.keys.authenticate(&token).await);
    assert!(matches!(e, AccessError::Expired) && e.is_unauthenticated());
    w.clock.set(at(600));
    assert!(matches!(
        refused(w.keys.authenticate(&token).await),
        AccessError::Expired
    ));

    for past in [at(600), at(599)] {
        let e = refused(
            w.keys
                .issue(w.ws, "late", &[ApiScope::InboxRead], Some(past))
                .await,
        );
        assert!(matches!(e, AccessError::Invalid(_)), "{e:?}");
    }
    let e = refused(w.keys.issue(w.ws, " ", &[ApiScope::InboxRead], None).await);
    assert!(matches!(e, AccessError::Invalid(_)), "a blank name: {e:?}");
    let e = refused(w.keys.issue(w.ws, "none", &[], None).await);
    assert!(matches!(e, AccessError::Invalid(_)), "no scope: {e:?}");
    assert_eq!(
        w.keys.list(w.ws).await.expect("list").len(),
        1,
        "refused issues store nothing"
    );
}

/// Revoking a key refuses it from the next request on, also in another process
/// sharing the store (a second service), whose earlier successful authentication
/// is no cache. Revoking again is harmless and keeps the first time.
pub async fn api_key_revocation_is_immediate_in_every_process(store: Arc<DynStore>) {
    let w = world(store.clone());
    let elsewhere = ApiKeys::new(store, w.clock.clone());
    let issued = w.issue(&[ApiScope::ContactsWrite]).await;
    let token = issued.token.expose_secret().to_owned();
    elsewhere
        .authenticate(&token)
        .await
        .expect("valid before revocation");

    w.clock.set(at(5));
    let revoked = w.keys.revoke(w.ws, issued.key.id).await.expect("revoke");
    assert_eq!(revoked.revoked_at, Some(at(5)));
    for keys in [&w.keys, &elsewhere] {
        let e = refused(keys.authenticate(&token).await);
        assert!(matches!(e, AccessError::Revoked) && e.is_unauthenticated());
    }
    w.clock.set(at(9));
    let again = w
        .keys
        .revoke(w.ws, issued.key.id)
        .await
        .expect("revoke again");
    assert_eq!(
        again.revoked_at,
        Some(at(5)),
        "the first revocation time stays"
    );
    let listed = w.keys.list(w.ws).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].revoked_at,
        Some(at(5)),
        "the list shows the revocation"
    );
}

/// `authorize` passes exactly the scopes the key holds; a missing one is
/// `MissingScope` (403, not 401). `authenticate_for` combines both.
pub async fn api_key_scopes_are_enforced(store: Arc<DynStore>) {
    let w = world(store);
    let issued = w
        .issue(&[ApiScope::ContactsRead, ApiScope::InboxRead])
        .await;
    let token = issued.token.expose_secret().to_owned();
    let key = w.keys.authenticate(&token).await.expect("authenticates");
    for scope in ApiScope::ALL {
        let held = matches!(scope, ApiScope::ContactsRead | ApiScope::InboxRead);
        match ApiKeys::authorize(&key, *scope) {
            Ok(()) => assert!(held, "{scope} was not granted"),
            Err(e) => {
                assert!(!held, "{scope} was granted");
                assert!(matches!(e, AccessError::MissingScope(s) if s == *scope));
                assert!(e.is_forbidden() && !e.is_unauthenticated());
            }
        }
    }
    let e = refused(w.keys.authenticate_for(&token, ApiScope::InboxWrite).await);
    assert!(matches!(e, AccessError::MissingScope(ApiScope::InboxWrite)));
    let ok = w.keys.authenticate_for(&token, ApiScope::InboxRead).await;
    assert_eq!(ok.expect("holds inbox:read").id, issued.key.id);
    let e = refused(w.keys.authenticate_for("", ApiScope::InboxRead).await);
    assert!(
        e.is_unauthenticated(),
        "no key is 401 before any scope check"
    );
}

/// Authentication records last_used_at in the store, at most once per touch interval
/// (one minute by default): a use within the minute is not written, the first one
/// after it is. A zero interval records every use.
pub async fn api_key_last_use_is_recorded_and_coalesced(store: Arc<DynStore>) {
    let w = world(store.clone());
    let issued = w.issue(&[ApiScope::ContactsRead]).await;
    let token = issued.token.expose_secret().to_owned();
    let stored_last_use = || async { w.keys.list(w.ws).await.expect("list")[0].last_used_at };
    assert_eq!(stored_last_use().await, None, "never used");

    w.clock.set(at(1));
    let key = w.keys.authenticate(&token).await.expect("authenticates");
    assert_eq!(key.last_used_at, Some(at(1)));
    assert_eq!(
        stored_last_use().await,
        Some(at(1)),
        "the first use is recorded"
    );

    w.clock.set(at(1) + Duration::seconds(30));
    let key = w.keys.authenticate(&token).await.expect("authenticates");
    assert_eq!(
        key.last_used_at,
        Some(at(1)),
        "within the minute: coalesced"
    );
    assert_eq!(stored_last_use().await, Some(at(1)));

    w.clock.set(at(2));
    w.keys.authenticate(&token).await.expect("authenticates");
    assert_eq!(
        stored_last_use().await,
        Some(at(2)),
        "a minute later: recorded"
    );

    let every_use = ApiKeys::new(store, w.clock.clone()).with_touch_interval(Duration::zero());
    w.clock.set(at(2) + Duration::seconds(1));
    every_use.authenticate(&token).await.expect("authenticates");
    assert_eq!(
        stored_last_use().await,
        Some(at(2) + Duration::seconds(1)),
        "a zero interval records every use"
    );
    // A refused key records nothing.
    w.keys.revoke(w.ws, issued.key.id).await.expect("revoke");
    w.clock.set(at(30));
    refused(w.keys.authenticate(&token).await);
    assert_eq!(stored_last_use().await, Some(at(2) + Duration::seconds(1)));
}

/// A key authenticates to its own workspace only; another workspace can neither
/// list nor revoke it (NotFound, as for a key that does not exist), and its keys do
/// not appear in another workspace's list.
pub async fn api_key_never_reaches_another_workspace(store: Arc<DynStore>) {
    let w = world(store);
    let other = WorkspaceId::new();
    let mine = w.issue(&[ApiScope::ContactsRead]).await;
    let theirs = w
        .keys
        .issue(other, "theirs", &[ApiScope::ContactsRead], None)
        .await
        .expect("issue in the other workspace");

    let key = w
        .keys
        .authenticate(mine.token.expose_secret())
        .await
        .expect("authenticates");
    assert_eq!(
        key.workspace_id, w.ws,
        "the key's workspace is the only scope"
    );

    let e = refused(w.keys.revoke(other, mine.key.id).await);
    assert!(
        matches!(&e, AccessError::Store(s) if s.kind() == StoreErrorKind::NotFound),
        "{e:?}"
    );
    w.keys
        .authenticate(mine.token.expose_secret())
        .await
        .expect("a refused cross-workspace revoke changes nothing");
    let listed = |ws| {
        let keys = w.keys.clone();
        async move {
            keys.list(ws)
                .await
                .expect("list")
                .into_iter()
                .map(|k| k.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(w.ws).await, vec![mine.key.id]);
    assert_eq!(listed(other).await, vec![theirs.key.id]);
    assert!(listed(WorkspaceId::new()).await.is_empty());
    assert_eq!(w.clock.now(), base(), "nothing here needed time to pass");
}
