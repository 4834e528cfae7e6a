//! Limits in the model, the same on every store: text lengths (so no store-specific
//! index limit is ever reached), JSON numbers only where every store returns them
//! exactly, and a JSON nesting limit. Values at a limit round-trip exactly; values
//! past it are `Invalid` with the model's own reason, and at intake the row is stored
//! `Invalid` with that reason.

use chrono::DateTime;
use serde_json::{Value, json};

use crm_core::DynStore;
use crm_core::ids::WorkspaceId;
use crm_core::intake::{CsvRows, Manifest, NormalizeOptions, prepare};
use crm_core::model::rules::{
    MAX_JSON_DEPTH, MAX_JSON_FLOAT_MAGNITUDE, MAX_KEY_BYTES, MAX_NAME_BYTES, MAX_NOTE_BYTES,
    MAX_TITLE_BYTES, MAX_URL_BYTES,
};
use crm_core::model::{IntakeRecord, IntakeSource, IntakeStatus};
use crm_core::store::{EventStoreExt, Scope};

use super::fixtures::{
    created, new_contact, new_event, new_job, ok, same_invalid, unique, unique_email,
};

/// A LinkedIn profile link of exactly `bytes` bytes.
fn link(bytes: usize) -> String {
    let prefix = "https://www.linkedin.com/in/";
    format!("{prefix}{}", "a".repeat(bytes - prefix.len()))
}

/// `[[...[leaf]...]]` nested `depth` levels deep.
fn nested(depth: usize, leaf: Value) -> Value {
    (0..depth).fold(leaf, |v, _| json!([v]))
}

/// Makes one field of a contact one step too long.
type Grow = fn(&mut crm_core::model::Contact);

/// A contact whose indexed and free-text fields are exactly at their limits is stored
/// and reads back exactly (on PostgreSQL the link at [`MAX_URL_BYTES`] goes through
/// the contacts index); one byte more in any of them is `Invalid` naming the limit.
pub async fn text_at_the_limit_round_trips_and_past_it_is_invalid(store: &DynStore) {
    let ws = WorkspaceId::new();
    let mut c = new_contact(ws, &unique_email());
    c.first_name = "é".repeat(MAX_NAME_BYTES / 2);
    c.last_name = "L".repeat(MAX_NAME_BYTES);
    c.title = Some("T".repeat(MAX_TITLE_BYTES));
    c.linkedin_url = Some(link(MAX_URL_BYTES));
    c.instagram_id = Some("9".repeat(MAX_KEY_BYTES));
    c.custom_fields
        .insert("k".repeat(MAX_KEY_BYTES), "v".repeat(MAX_NOTE_BYTES));
    let stored = ok(store.insert_contact(&c).await, "a contact at every limit");
    assert_eq!(stored, c, "stored as given");
    assert_eq!(
        ok(store.get_contact(ws, c.id).await, "get_contact"),
        c,
        "reads back exactly"
    );

    let over: [(&str, Grow); 5] = [
        ("first_name", |c| c.first_name.push('x')),
        ("title", |c| c.title = Some("T".repeat(MAX_TITLE_BYTES + 1))),
        ("linkedin_url", |c| {
            c.linkedin_url = Some(link(MAX_URL_BYTES + 1))
        }),
        ("instagram_id", |c| {
            c.instagram_id = Some("9".repeat(MAX_KEY_BYTES + 1));
        }),
        ("custom field", |c| {
            c.custom_fields
                .insert("plan".into(), "v".repeat(MAX_NOTE_BYTES + 1));
        }),
    ];
    for (what, grow) in over {
        let mut c = new_contact(ws, &unique_email());
        c.first_name = "F".repeat(MAX_NAME_BYTES);
        grow(&mut c);
        let expected = c.validate();
        assert!(
            expected
                .as_ref()
                .is_err_and(|e| e.reason().contains("longer than the limit")),
            "{what}: the model names the limit: {expected:?}"
        );
        same_invalid(store.insert_contact(&c).await, expected, what);
    }
    let mut edited = stored.clone();
    edited.linkedin_url = Some(link(4096));
    same_invalid(
        store.update_contact(&edited).await,
        edited.validate(),
        "update with a 4 KB link",
    );
}

/// A row whose profile link is 4 KB is `Invalid` at intake, with the column and the
/// limit as its reason, and is stored and read back as such; a link at the limit
/// stays pending.
pub async fn oversized_profile_link_is_invalid_at_intake(store: &DynStore) {
    let ws = WorkspaceId::new();
    let csv = format!(
        "name,linkedin_url\nAda,{}\nGrace,{}\n",
        link(4096),
        link(MAX_URL_BYTES)
    );
    let rows = match CsvRows::new(csv.as_bytes()) {
        Ok(rows) => rows,
        Err(e) => panic!("csv: {e:?}"),
    };
    let mut stored = Vec::new();
    for row in rows {
        let row = match row {
            Ok(row) => row,
            Err(e) => panic!("row: {e:?}"),
        };
        let prepared = match prepare(
            ws,
            IntakeSource::Csv,
            "links.csv",
            row,
            &Manifest::standard(),
            &NormalizeOptions::default(),
            DateTime::UNIX_EPOCH,
        ) {
            Ok(p) => p,
            Err(e) => panic!("prepare: {e:?}"),
        };
        stored.push(ok(
            store.insert_intake(&prepared.record).await,
            "insert_intake",
        ));
    }
    let ada = ok(store.get_intake(ws, stored[0].id).await, "get_intake");
    assert_eq!(ada.status, IntakeStatus::Invalid, "a 4 KB link is invalid");
    assert_eq!(ada.errors.len(), 1);
    assert_eq!(ada.errors[0].column.as_deref(), Some("linkedin_url"));
    assert_eq!(ada.errors[0].line, Some(2));
    assert_eq!(
        ada.errors[0].reason,
        format!("is 4096 bytes, longer than the limit of {MAX_URL_BYTES}")
    );
    let grace = ok(store.get_intake(ws, stored[1].id).await, "get_intake");
    assert_eq!(grace.status, IntakeStatus::Pending, "a link at the limit");
}

/// JSON numbers no store returns exactly (`f64::MAX`, any float past
/// [`MAX_JSON_FLOAT_MAGNITUDE`]) and nesting past [`MAX_JSON_DEPTH`] are `Invalid` in
/// event and job payloads and intake rows, with the model's error.
pub async fn unreadable_json_is_refused_everywhere(store: &DynStore) {
    let ws = WorkspaceId::new();
    let bad = [
        ("f64::MAX", json!({ "n": f64::MAX })),
        ("-f64::MAX", json!([f64::MIN])),
        (
            "past the float limit",
            json!(MAX_JSON_FLOAT_MAGNITUDE * 10.0),
        ),
        ("too deep", nested(MAX_JSON_DEPTH + 1, json!(1))),
        (
            "too deep in an object",
            json!({ "a": nested(MAX_JSON_DEPTH, json!({})) }),
        ),
    ];
    for (what, value) in bad {
        let mut event = new_event(ws, &unique("limits"));
        event.payload = value.clone();
        same_invalid(store.append_event(&event).await, event.validate(), what);
        let mut job = new_job(ws, "conformance.limits", 3);
        job.payload = value.clone();
        same_invalid(store.enqueue_job(&job).await, job.validate(), what);
        let record = IntakeRecord::new(
            ws,
            IntakeSource::Webhook,
            "hook",
            json!({ "ok": "x" }),
            None,
            DateTime::UNIX_EPOCH,
        );
        let mut record = match record {
            Ok(r) => r,
            Err(e) => panic!("record: {e:?}"),
        };
        record.raw = value;
        same_invalid(store.insert_intake(&record).await, record.validate(), what);
    }
    let events = ok(store.list_events(Scope::Workspace(ws), 0, 10).await, "list");
    assert!(events.is_empty(), "nothing refused was written");
}

/// JSON at every limit (the deepest nesting, the largest floats, the integer
/// extremes, tiny and fractional floats) reads back exactly from events and intake
/// rows.
pub async fn json_at_the_limits_round_trips_exactly(store: &DynStore) {
    let ws = WorkspaceId::new();
    let value = json!({
        "deep": nested(MAX_JSON_DEPTH - 1, json!("leaf")),
        "floats": [MAX_JSON_FLOAT_MAGNITUDE, -MAX_JSON_FLOAT_MAGNITUDE, 0.1, -0.125,
                   123_456.789, 1e-7, 2.5e-300, 5e-324, 0.0],
        "ints": [i64::MIN, i64::MAX, u64::MAX, 0],
    });
    let mut event = new_event(ws, &unique("limits"));
    event.payload = value.clone();
    assert!(event.validate().is_ok(), "at the limits is valid");
    created(store.append_event(&event).await, "append at the limits");
    let events = ok(store.list_events(Scope::Workspace(ws), 0, 10).await, "list");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload, value, "event payload reads back exactly");

    let record = IntakeRecord::new(
        ws,
        IntakeSource::Webhook,
        "hook",
        value.clone(),
        None,
        DateTime::UNIX_EPOCH,
    );
    let record = match record {
        Ok(r) => r,
        Err(e) => panic!("record: {e:?}"),
    };
    ok(store.insert_intake(&record).await, "insert_intake");
    let back = ok(store.get_intake(ws, record.id).await, "get_intake");
    assert_eq!(back.raw, value, "intake raw reads back exactly");
}
