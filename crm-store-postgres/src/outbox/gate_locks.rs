//! Advisory transaction locks that order the send gate against unsubscribes.
//!
//! `begin_sends` locks, in ascending key order and in its first statement, the keys of
//! every contact, recipient address and quota counter of its starts; an unsubscribe
//! locks the one key of its address (`add_suppression`) or contact (`record_consent`)
//! before it writes. So per contact, per address and per counter, gate calls and
//! unsubscribes run one after the other, and each statement that follows a lock sees
//! what the previous holder committed (READ COMMITTED takes a snapshot per statement).

use crm_core::StoreError;
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::store::QuotaKey;
use sqlx::PgConnection;

use super::OUTBOX;
use crate::error::db;

/// 64-bit FNV-1a: the same key in every process, for every build.
fn fnv1a(parts: &[&[u8]]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// The lock of a contact's sends (touch counting, consent).
pub(crate) fn contact_key(ws: WorkspaceId, contact: ContactId) -> i64 {
    fnv1a(&[
        b"crm.send_gate.contact",
        ws.as_uuid().as_bytes(),
        contact.as_uuid().as_bytes(),
    ])
}

/// The lock of the sends to a normalised address, on every channel.
pub(crate) fn address_key(ws: WorkspaceId, address: &str) -> i64 {
    fnv1a(&[
        b"crm.send_gate.address",
        ws.as_uuid().as_bytes(),
        address.as_bytes(),
    ])
}

/// The lock of a quota counter.
pub(crate) fn counter_key(ws: WorkspaceId, key: &QuotaKey) -> i64 {
    let period = key.period.to_string();
    fnv1a(&[
        b"crm.send_gate.quota",
        ws.as_uuid().as_bytes(),
        key.counter.as_bytes(),
        period.as_bytes(),
    ])
}

/// Takes the transaction-scoped advisory locks of `keys` in ascending order (sorted
/// and deduplicated here), in one statement: callers that lock overlapping sets this
/// way cannot deadlock on each other.
pub(crate) async fn lock_keys(
    conn: &mut PgConnection,
    mut keys: Vec<i64>,
) -> Result<(), StoreError> {
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return Ok(());
    }
    // A function scan yields the array in order, so the locks are taken in order.
    sqlx::query("SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) AS u(k)")
        .bind(keys)
        .execute(&mut *conn)
        .await
        .map_err(db(OUTBOX))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_distinct() {
        let ws = WorkspaceId::new();
        let a = address_key(ws, "a@example.com");
        assert_eq!(a, address_key(ws, "a@example.com"));
        assert_ne!(a, address_key(ws, "b@example.com"));
        assert_ne!(a, address_key(WorkspaceId::new(), "a@example.com"));
        assert_eq!(fnv1a(&[b"a"]), fnv1a(&[b"a"]));
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
    }
}
