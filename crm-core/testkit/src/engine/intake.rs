//! Intake scenarios against a real store: CSV and payload imports, deduplication by
//! fingerprint, bad rows kept with reasons, processing into contacts with merge
//! provenance and events emitted once.
//!
//! Each case is a `pub async fn name(store: Arc<DynStore>)` that panics with the rule
//! it checks.

use std::sync::Arc;

use serde_json::json;

use crate::store::fixtures::{at, new_account, ok, unique};
use crm_core::DynStore;
use crm_core::clock::{Clock, ManualClock};
use crm_core::ids::WorkspaceId;
use crm_core::intake::service::{ProcessOutcome, ProcessPayload};
use crm_core::intake::{
    Field, ImportReport, IntakeService, Manifest, PROCESS_JOB, ProcessIntakeJob,
};
use crm_core::jobs::{JobContext, JobHandler};
use crm_core::model::{Event, IntakeRecord, IntakeSource, IntakeStatus, Job};
use crm_core::store::{Page, Scope};

mod hostile;
pub use hostile::*;

/// Expands to one `#[tokio::test]` per intake scenario, in a module named `intake`.
///
/// `$make` is a path to an `async fn() -> S` where `S: crm_core::Store`, called once
/// per test; the cases run on `Arc<DynStore>`.
#[macro_export]
macro_rules! intake_conformance_tests {
    ($make:path) => {
        mod intake {
            #[allow(unused_imports)]
            use super::*;

            $crate::__intake_case!($make; csv_import_dedups_and_keeps_bad_rows);
            $crate::__intake_case!($make; processing_creates_then_merges_with_provenance);
            $crate::__intake_case!($make; process_job_is_idempotent);
            $crate::__intake_case!($make; payload_import_matches_account_by_domain);
            $crate::__intake_case!($make; fuzzy_rule_merges_a_similar_name_in_the_account);
            $crate::__intake_case!($make; large_import_streams_in_batches);
            $crate::__intake_case!($make; nul_characters_keep_the_import_going);
            $crate::__intake_case!($make; bad_rows_never_strand_their_job);
            // hostile input: every row accounted for, exact counts on every store
            $crate::__intake_case!($make; hostile_bom_and_mixed_line_endings);
            $crate::__intake_case!($make; hostile_huge_cells_and_columns);
            $crate::__intake_case!($make; hostile_invalid_utf8);
            $crate::__intake_case!($make; hostile_unicode_names_and_addresses);
            $crate::__intake_case!($make; hostile_formula_cells);
            $crate::__intake_case!($make; hostile_tens_of_thousands_of_duplicates);
            $crate::__intake_case!($make; hostile_odd_phone_formats);
            $crate::__intake_case!($make; hostile_unclosed_quotes_and_bad_headers);
        }
    };
}

/// One intake case as a test; used by [`intake_conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __intake_case {
    ($make:path; $case:ident) => {
        #[$crate::tokio::test(
            flavor = "multi_thread",
            worker_threads = 2,
            crate = "crm_testkit::tokio"
        )]
        async fn $case() {
            let store: ::std::sync::Arc<$crate::__core::DynStore> =
                ::std::sync::Arc::new($make().await);
            $crate::engine::intake::$case(store).await;
        }
    };
}

fn service(store: &Arc<DynStore>) -> IntakeService {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(at(0)));
    IntakeService::new(store.clone(), clock).with_batch_size(2)
}

/// Imports `csv` under `source_ref` with the standard manifest.
async fn import_csv(
    svc: &IntakeService,
    ws: WorkspaceId,
    source_ref: &str,
    csv: &str,
) -> ImportReport {
    let rows = ok_intake(crm_core::intake::CsvRows::new(csv.as_bytes()));
    ok_intake(
        svc.import(
            ws,
            IntakeSource::Csv,
            source_ref,
            &Manifest::standard(),
            rows,
        )
        .await,
    )
}

async fn events(store: &Arc<DynStore>, ws: WorkspaceId) -> Vec<Event> {
    ok(
        store.list_events(Scope::Workspace(ws), 0, 100).await,
        "list_events",
    )
}

/// A CSV import stores every row: the second row with a seen fingerprint is a
/// duplicate (also across batches), malformed rows are invalid with line, column and
/// reason, and one processing job is enqueued per batch with pending rows.
pub async fn csv_import_dedups_and_keeps_bad_rows(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let svc = service(&store);
    let csv = "email,name,phone\n\
               ada@acme.io,Ada Lovelace,+4930901820\n\
               not-an-email,Bob,\n\
               \x20ADA@acme.io ,Ada L.,\n\
               grace@navy.mil,Grace Hopper,12\n\
               short-row\n";
    let report = import_csv(&svc, ws, "leads.csv", csv).await;
    assert_eq!(report.rows, 5, "nothing is dropped");
    assert_eq!(
        (report.pending, report.duplicates, report.invalid),
        (1, 1, 3)
    );
    assert_eq!(
        report.jobs, 1,
        "one job for the one batch with a pending row"
    );

    let all = ok(store.list_intake(ws, None, Page::first(100)).await, "list");
    let by_line = |line: u64| {
        all.iter()
            .find(|r| r.line == Some(line))
            .expect("row by line")
    };
    assert_eq!(by_line(2).status, IntakeStatus::Pending);
    assert_eq!(
        by_line(4).status,
        IntakeStatus::Duplicate,
        "same email, other case"
    );
    assert_eq!(by_line(4).duplicate_of, Some(by_line(2).id));
    assert_eq!(
        by_line(4).raw["email"],
        " ADA@acme.io ",
        "raw row untouched"
    );
    let bad = by_line(3);
    assert_eq!(bad.status, IntakeStatus::Invalid);
    assert_eq!(bad.errors[0].line, Some(3));
    assert_eq!(bad.errors[0].column.as_deref(), Some("email"));
    assert_eq!(by_line(5).errors[0].column.as_deref(), Some("phone"));
    assert_eq!(by_line(6).errors[0].reason, "expected 3 cells, found 1");
    let jobs = ok(
        store.list_jobs(ws, None, Page::first(10)).await,
        "list_jobs",
    );
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].kind, PROCESS_JOB);
}

fn ok_intake<T>(r: Result<T, crm_core::intake::IntakeError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("intake: unexpected error {e:?}"),
    }
}

/// Processing a new row creates a contact with provenance for every field and emits
/// `contact.created`; a later row with the same email from another source merges:
/// it fills empty fields (with their own provenance), keeps conflicting values, and
/// emits `contact.merged`.
pub async fn processing_creates_then_merges_with_provenance(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let svc = service(&store);
    let email = format!("{}@acme.io", unique("ada"));
    let csv = format!("email,name,title\n{email},Ada Lovelace,CTO\n");
    let manifest = Manifest::standard();
    import_csv(&svc, ws, "leads.csv", &csv).await;
    let first = ok(
        store
            .list_intake(ws, Some(IntakeStatus::Pending), Page::first(10))
            .await,
        "list",
    )
    .remove(0);
    let created = ok_intake(svc.process(ws, first.id, &manifest).await);
    let ProcessOutcome::Created { contact_id } = created else {
        panic!("a new email creates a contact, got {created:?}");
    };
    let contact = ok(store.get_contact(ws, contact_id).await, "get_contact");
    assert_eq!(
        contact.email.as_ref().map(|e| e.as_str()),
        Some(email.as_str())
    );
    assert_eq!(contact.last_name, "Lovelace");
    let prov = ok(
        store.list_field_provenance(ws, contact_id).await,
        "provenance",
    );
    let fields: Vec<_> = prov.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, vec!["email", "first_name", "last_name", "title"]);
    assert!(
        prov.iter()
            .all(|p| p.intake_id == first.id && p.source == IntakeSource::Csv)
    );
    let processed = ok(store.get_intake(ws, first.id).await, "get_intake");
    assert_eq!(processed.status, IntakeStatus::Processed);
    assert_eq!(processed.contact_id, Some(contact_id));

    // A form with the same email (other case), a phone and a different title.
    let form = Manifest::default()
        .with("mail", Field::Email)
        .with("tel", Field::Phone)
        .with("job", Field::Title);
    let payload = json!({"mail": email.to_uppercase(), "tel": "+1 415 555 2671", "job": "CEO"});
    ok_intake(
        svc.import_payload(ws, IntakeSource::Form, "signup", &form, &payload)
            .await,
    );
    // The fingerprint is that of the processed row: the form row is a duplicate, and
    // duplicates are never merged. Re-fingerprint by domain to test merging instead.
    let pending = ok(
        store
            .list_intake(ws, Some(IntakeStatus::Duplicate), Page::first(10))
            .await,
        "list",
    );
    assert_eq!(pending.len(), 1, "same identity: recorded as a duplicate");

    let web = Manifest::default()
        .with("mail", Field::Email)
        .with("tel", Field::Phone)
        .with("job", Field::Title)
        .with("profile", Field::LinkedinUrl);
    let payload = json!({"mail": email, "tel": "+1 415 555 2671", "job": "CEO",
        "profile": "https://linkedin.com/in/ada"});
    ok_intake(
        svc.import_payload(ws, IntakeSource::Webhook, "crm-hook", &web, &payload)
            .await,
    );
    let second = ok(
        store
            .list_intake(ws, Some(IntakeStatus::Pending), Page::first(10))
            .await,
        "list",
    )
    .remove(0);
    let merged = ok_intake(svc.process(ws, second.id, &web).await);
    let ProcessOutcome::Merged {
        contact_id: into,
        preview,
    } = merged
    else {
        panic!("same email merges, got {merged:?}");
    };
    assert_eq!(into, contact_id);
    let changed: Vec<_> = preview.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(changed, vec!["phone", "linkedin_url"]);
    assert_eq!(preview.conflicts.len(), 1, "the title conflict is reported");
    let contact = ok(store.get_contact(ws, contact_id).await, "get_contact");
    assert_eq!(
        contact.title.as_deref(),
        Some("CTO"),
        "conflicts keep the old value"
    );
    assert_eq!(
        contact.phone.as_ref().map(|p| p.as_str()),
        Some("+14155552671")
    );
    let prov = ok(
        store.list_field_provenance(ws, contact_id).await,
        "provenance",
    );
    let phone = prov
        .iter()
        .find(|p| p.field == "phone")
        .expect("phone provenance");
    assert_eq!(
        (phone.source, phone.intake_id),
        (IntakeSource::Webhook, second.id)
    );
    let title = prov
        .iter()
        .find(|p| p.field == "title")
        .expect("title provenance");
    assert_eq!(
        title.intake_id, first.id,
        "a kept value keeps its provenance"
    );

    let kinds: Vec<_> = events(&store, ws)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec!["contact.created", "contact.merged"]);
}

/// Running the processing job twice creates one contact and one event per row.
pub async fn process_job_is_idempotent(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let svc = Arc::new(service(&store));
    let csv = "name,phone\nAda Lovelace,+4930901820\nGrace Hopper,+14155552671\n";
    import_csv(&svc, ws, "phones.csv", csv).await;
    let job = ok(
        store.list_jobs(ws, None, Page::first(10)).await,
        "list_jobs",
    )
    .remove(0);
    let handler = ProcessIntakeJob::new(Arc::clone(&svc));
    let ctx = JobContext::new("test", at(1), 1);
    for run in 0..2 {
        if let Err(e) = handler.handle(&job, &ctx).await {
            panic!("run {run}: {e}");
        }
    }
    let contacts = ok(
        store.list_contacts(ws, Page::first(10)).await,
        "list_contacts",
    );
    assert_eq!(
        contacts.len(),
        2,
        "one contact per row, even when the job re-runs"
    );
    let evs = events(&store, ws).await;
    assert_eq!(evs.len(), 2, "one event per row");
    assert!(evs.iter().all(|e| e.kind == "contact.created"));
    assert!(
        evs.iter().all(|e| !e.payload.to_string().contains("+49")),
        "events carry no raw phone numbers"
    );
    // A processed row set back to pending by hand (processing itself writes contact,
    // provenance, event and row at once): the re-run finds the contact by its id (the
    // row's) instead of creating another.
    let mut row = ok(store.list_intake(ws, None, Page::first(10)).await, "list").remove(0);
    row.status = IntakeStatus::Pending;
    row.contact_id = None;
    ok(store.update_intake(&row).await, "reset the row to pending");
    ok_intake(svc.process(ws, row.id, &Manifest::standard()).await);
    assert_eq!(
        ok(store.list_contacts(ws, Page::first(10)).await, "list").len(),
        2,
        "no second contact"
    );
    assert_eq!(events(&store, ws).await.len(), 2, "no second event");
}

/// A payload whose email domain names an account creates the contact in that account.
pub async fn payload_import_matches_account_by_domain(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let domain = format!("{}.io", unique("acme"));
    let account = ok(
        store.insert_account(&new_account(ws, &domain)).await,
        "insert_account",
    );
    let svc = service(&store);
    let hook = Manifest::default()
        .with("contact.email", Field::Email)
        .with("contact.name", Field::FullName);
    let payload = json!({"contact": {"email": format!("grace@{domain}"), "name": "Grace Hopper"}});
    let report = ok_intake(
        svc.import_payload(ws, IntakeSource::Webhook, "hook", &hook, &payload)
            .await,
    );
    assert_eq!(report.pending, 1);
    let row = ok(store.list_intake(ws, None, Page::first(10)).await, "list").remove(0);
    let outcome = ok_intake(svc.process(ws, row.id, &hook).await);
    let ProcessOutcome::Created { contact_id } = outcome else {
        panic!("expected a new contact, got {outcome:?}");
    };
    let contact = ok(store.get_contact(ws, contact_id).await, "get_contact");
    assert_eq!(contact.account_id, Some(account.id), "domain -> account");
    let bad = ok_intake(
        svc.import_payload(ws, IntakeSource::Webhook, "hook", &hook, &json!("nope"))
            .await,
    );
    assert_eq!(bad.invalid, 1, "a non-object payload is kept as invalid");
}

/// A row without a known email whose domain names an account merges into the
/// account's contact with a near-identical name (default fuzzy rule), filling the
/// email; a clearly different name in the same account becomes a new contact.
pub async fn fuzzy_rule_merges_a_similar_name_in_the_account(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let domain = format!("{}.io", unique("acme"));
    let account = ok(
        store.insert_account(&new_account(ws, &domain)).await,
        "insert_account",
    );
    let mut jon = crate::store::fixtures::new_contact(ws, "x@example.com");
    jon.email = None;
    jon.phone = Some(crm_core::address::PhoneNumber::parse("+4930901820").expect("phone"));
    jon.first_name = "Jonathan".into();
    jon.last_name = "Smith".into();
    jon.account_id = Some(account.id);
    let jon = ok(store.insert_contact(&jon).await, "insert_contact");
    let svc = service(&store);
    let manifest = Manifest::standard();
    let csv = format!("email,name\njon@{domain},Jonathon Smith\ngrace@{domain},Grace Hopper\n");
    import_csv(&svc, ws, "leads.csv", &csv).await;
    let pending = ok(
        store
            .list_intake(ws, Some(IntakeStatus::Pending), Page::first(10))
            .await,
        "list",
    );
    assert_eq!(pending.len(), 2);
    let outcome = ok_intake(svc.process(ws, pending[0].id, &manifest).await);
    let ProcessOutcome::Merged {
        contact_id,
        preview,
    } = outcome
    else {
        panic!("a near-identical name in the domain's account merges, got {outcome:?}");
    };
    assert_eq!(contact_id, jon.id);
    assert!(
        preview.changes.iter().any(|c| c.field == "email"),
        "the email is filled"
    );
    let outcome = ok_intake(svc.process(ws, pending[1].id, &manifest).await);
    assert!(
        matches!(outcome, ProcessOutcome::Created { .. }),
        "another name in the account is another person, got {outcome:?}"
    );
    let merged = ok(store.get_contact(ws, jon.id).await, "get_contact");
    assert_eq!(
        merged.first_name, "Jonathan",
        "fuzzy merges never overwrite"
    );
    assert!(merged.email.is_some());
}

/// Rows produced lazily, so the whole file never exists in memory.
#[derive(Debug)]
struct GeneratedCsv {
    next: usize,
    rows: usize,
    pending: Vec<u8>,
}

impl std::io::Read for GeneratedCsv {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            if self.next == 0 {
                self.pending.extend_from_slice(b"email,name\n");
            } else if self.next <= self.rows {
                // Every 10th row repeats the previous address: a duplicate.
                let n = if self.next.is_multiple_of(10) {
                    self.next - 1
                } else {
                    self.next
                };
                self.pending
                    .extend_from_slice(format!("user{n}@bulk.example,User {n}\n").as_bytes());
            } else {
                return Ok(0);
            }
            self.next += 1;
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

/// A 3,000-row import streamed from a reader counts every row exactly once, whether it
/// is written in batches of 1,000 rows or in one batch of up to 10,000: either way its
/// pending rows get one processing job per 1,000 ([`PROCESS_CHUNK`]).
///
/// [`PROCESS_CHUNK`]: crm_core::intake::PROCESS_CHUNK
pub async fn large_import_streams_in_batches(store: Arc<DynStore>) {
    for batch_size in [1000, 10_000] {
        let ws = WorkspaceId::new();
        let svc = service(&store).with_batch_size(batch_size);
        let input = GeneratedCsv {
            next: 0,
            rows: 3000,
            pending: Vec::new(),
        };
        let rows = ok_intake(crm_core::intake::CsvRows::new(input));
        let report = ok_intake(
            svc.import(
                ws,
                IntakeSource::Csv,
                "bulk.csv",
                &Manifest::standard(),
                rows,
            )
            .await,
        );
        assert_eq!(report.rows, 3000, "batch size {batch_size}");
        assert_eq!(
            (report.pending, report.duplicates, report.invalid),
            (2700, 300, 0),
            "batch size {batch_size}"
        );
        assert_eq!(report.jobs, 3, "one job per 1000 pending rows");
        let jobs = ok(
            store.list_jobs(ws, None, Page::first(10)).await,
            "list_jobs",
        );
        let ids_per_job: Vec<usize> = jobs
            .iter()
            .map(|j| j.payload["intake_ids"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(ids_per_job.len(), 3, "batch size {batch_size}");
        assert_eq!(ids_per_job.iter().sum::<usize>(), 2700);
        assert!(ids_per_job.iter().all(|n| *n <= 1000));
    }
}

/// A NUL character (no store can hold one) does not stop an import: its row is stored
/// invalid with the character replaced and the reason given, the other rows as usual.
pub async fn nul_characters_keep_the_import_going(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let csv = "email,name\nada@acme.io,A\0da\ngrace@navy.mil,Grace\n";
    let report = import_csv(&service(&store), ws, "leads.csv", csv).await;
    assert_eq!(
        (report.rows, report.pending, report.invalid),
        (2, 1, 1),
        "both rows are stored"
    );
    let all = ok(store.list_intake(ws, None, Page::first(10)).await, "list");
    let bad = all
        .iter()
        .find(|r| r.line == Some(2))
        .expect("the row with the NUL");
    assert_eq!(bad.status, IntakeStatus::Invalid);
    assert_eq!(bad.raw["name"], "A\u{FFFD}da");
    assert_eq!(bad.errors[0].column.as_deref(), Some("name"));
}

/// One bad row never strands the others of its job. At intake, a profile link of only
/// slashes is no contact point: a row with nothing else is invalid with the reason,
/// never pending. Rows that still cannot become a contact at processing (here raw rows
/// an earlier release stored pending: a blank name and a slash-only link) are marked
/// failed with their reasons, while every good row around them is processed; a run
/// after a crash processes only the unfinished rows, and the job handler succeeds.
pub async fn bad_rows_never_strand_their_job(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let svc = Arc::new(service(&store));
    let report = import_csv(&svc, ws, "links.csv", "name,linkedin_url\n,///\n").await;
    assert_eq!(
        (report.rows, report.pending, report.invalid),
        (1, 0, 1),
        "a slash-only link alone is invalid at intake"
    );
    let invalid = ok(store.list_intake(ws, None, Page::first(10)).await, "list").remove(0);
    assert_eq!(invalid.status, IntakeStatus::Invalid);
    assert_eq!(invalid.errors[0].line, Some(2));
    assert!(!invalid.errors[0].reason.is_empty());

    let good = format!(
        "name,email\nAda Lovelace,{a}@acme.io\nGrace Hopper,{b}@navy.mil\nAlan Turing,{c}@npl.uk\n",
        a = unique("ada"),
        b = unique("grace"),
        c = unique("alan"),
    );
    import_csv(&svc, ws, "good.csv", &good).await;
    let good_rows = ok(
        store
            .list_intake(ws, Some(IntakeStatus::Pending), Page::first(10))
            .await,
        "list",
    );
    assert_eq!(good_rows.len(), 3);
    let mut bad_ids = Vec::new();
    for raw in [
        json!({"name": "", "linkedin_url": "///"}),
        json!({"name": "   ", "linkedin_url": "/"}),
    ] {
        let record = match IntakeRecord::new(ws, IntakeSource::Csv, "legacy.csv", raw, None, at(0))
        {
            Ok(record) => record,
            Err(e) => panic!("legacy row: {e}"),
        };
        bad_ids.push(ok(store.insert_intake(&record).await, "insert_intake").id);
    }
    // good, bad, good, bad, good
    let ids = vec![
        good_rows[0].id,
        bad_ids[0],
        good_rows[1].id,
        bad_ids[1],
        good_rows[2].id,
    ];
    let manifest = Manifest::standard();

    // A crash after the first row: the re-run processes only the unfinished rows.
    ok_intake(svc.process(ws, ids[0], &manifest).await);
    let report = ok_intake(svc.process_batch(ws, &ids, &manifest, false).await);
    assert_eq!(report.rows, 5);
    assert_eq!(
        (
            report.created,
            report.skipped,
            report.failed,
            report.deferred
        ),
        (2, 1, 2, 0),
        "{report:?}"
    );
    for id in &ids {
        let row = ok(store.get_intake(ws, *id).await, "get_intake");
        if bad_ids.contains(id) {
            assert_eq!(row.status, IntakeStatus::Failed, "bad row {id}");
            assert_eq!(row.errors.len(), 1);
            assert!(row.errors[0].reason.starts_with("processing failed"));
            assert_eq!(row.contact_id, None);
        } else {
            assert_eq!(row.status, IntakeStatus::Processed, "good row {id}");
        }
    }
    let failed = ok(
        store
            .list_intake(ws, Some(IntakeStatus::Failed), Page::first(10))
            .await,
        "list failed rows",
    );
    assert_eq!(failed.len(), 2, "failed rows are listed by status");

    // The job over the same rows succeeds and changes nothing twice.
    let payload = match serde_json::to_value(ProcessPayload {
        intake_ids: ids.clone(),
        manifest,
    }) {
        Ok(p) => p,
        Err(e) => panic!("payload: {e}"),
    };
    let job = match Job::new(ws, PROCESS_JOB, payload, at(0)) {
        Ok(job) => job,
        Err(e) => panic!("job: {e}"),
    };
    let handler = ProcessIntakeJob::new(Arc::clone(&svc));
    if let Err(e) = handler
        .handle(&job, &JobContext::new("test", at(1), 1))
        .await
    {
        panic!("a job with bad rows still succeeds: {e}");
    }
    let created = events(&store, ws)
        .await
        .into_iter()
        .filter(|e| e.kind == "contact.created")
        .count();
    assert_eq!(created, 3, "one contact per good row, none for bad rows");
    assert_eq!(
        ok(store.list_contacts(ws, Page::first(10)).await, "list").len(),
        3
    );
}
