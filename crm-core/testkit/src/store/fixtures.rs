//! Builders of valid entities, fixed instants and assertion helpers shared by the cases.
//!
//! Builders return rows that pass validation, with unique emails, domains and keys, so
//! cases sharing one store never collide. Instants count from [`base`], never from the
//! wall clock, so every run sees the same times.

use std::fmt::Debug;
use std::future::Future;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::future::join_all;
use serde_json::json;
use tokio::runtime::{Handle, RuntimeFlavor};
use uuid::Uuid;

use crm_core::DynStore;
use crm_core::error::{StoreError, StoreErrorKind, ValidationError};
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::model::{
    Account, Activity, ActivityKind, Actor, Anomaly, ApprovalItem, ApprovalRule, AuditEntry,
    Channel, Consent, ConsentStatus, Contact, Deal, Enrollment, Fingerprint, IntakeRecord,
    IntakeSource, Job, NewAccount, NewContact, NewDeal, NewEvent, OutboxMessage, OutboxStatus,
    Pipeline, RuleConditions, Sequence, SequenceStep, Severity, Stage, StageOutcome, StepDelay,
    Suppression, SuppressionReason, Template,
};
use crm_core::money::{Currency, Money};
use crm_core::store::{Claim, Inserted, Page, Scope, SentRecord};

mod events;
mod outreach;

pub use events::*;
pub use outreach::*;

/// 2026-01-05T09:00:00Z, a Monday: the instant every case counts from.
pub fn base() -> DateTime<Utc> {
    era(2026) + Duration::days(4) + Duration::hours(9)
}

/// [`base`] plus `minutes`.
pub fn at(minutes: i64) -> DateTime<Utc> {
    base() + Duration::minutes(minutes)
}

/// Midnight UTC on 1 January of `year`. Cases that act on [`Scope::All`] work in a
/// far-past era of their own so they never claim, reap or expire another case's rows.
pub fn era(year: i32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(year, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("valid date")
        .and_utc()
}

/// The lease length used by claims in the cases: five minutes.
pub fn lease_ttl() -> Duration {
    Duration::minutes(5)
}

/// A string unique to this call, such as `key-0194...`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::now_v7().simple())
}

/// A unique, valid email address at `example.com`.
pub fn unique_email() -> String {
    format!("{}@example.com", unique("ada"))
}

/// A unique, valid domain below `example.com`.
pub fn unique_domain() -> String {
    format!("{}.example.com", unique("acme"))
}

/// `minor` cents of EUR.
pub fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::new("EUR").expect("EUR")).expect("non-negative")
}

/// Unwraps a store result, failing with `what` and the error.
#[track_caller]
pub fn ok<T>(result: Result<T, StoreError>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what}: unexpected error {err:?}"),
    }
}

/// Asserts `result` is the `Invalid` error that `expected` (the model's own
/// validation of the same value) gives: the same on every store.
#[track_caller]
pub fn same_invalid<T: Debug>(
    result: Result<T, StoreError>,
    expected: Result<(), ValidationError>,
    what: &str,
) {
    let expected = expected.expect_err("the model refuses the value itself");
    match expect_err(result, StoreErrorKind::Invalid, what) {
        StoreError::Invalid(e) => assert_eq!(e, expected, "{what}: the model's error"),
        other => panic!("{what}: expected Invalid, got {other:?}"),
    }
}

/// Asserts a store result is an error of `kind`; `rule` says which contract demands it.
#[track_caller]
pub fn expect_err<T: Debug>(
    result: Result<T, StoreError>,
    kind: StoreErrorKind,
    rule: &str,
) -> StoreError {
    match result {
        Ok(value) => panic!("{rule}: expected {kind:?}, got Ok({value:?})"),
        Err(err) => {
            assert_eq!(err.kind(), kind, "{rule}: expected {kind:?}, got {err:?}");
            err
        }
    }
}

/// Asserts an idempotent insert created its row and returns it.
#[track_caller]
pub fn created<T: Debug>(inserted: Result<Inserted<T>, StoreError>, what: &str) -> T {
    let inserted = ok(inserted, what);
    assert!(
        inserted.created,
        "{what}: a new key MUST create a row (created: true)"
    );
    inserted.value
}

/// Asserts an idempotent insert found an existing row and returns it.
#[track_caller]
pub fn existing<T: Debug>(inserted: Result<Inserted<T>, StoreError>, what: &str) -> T {
    let inserted = ok(inserted, what);
    assert!(
        !inserted.created,
        "{what}: an existing key MUST return the stored row with created: false"
    );
    inserted.value
}

/// The ids of `rows` in order.
pub fn ids<T, I>(rows: &[T], id: impl Fn(&T) -> I) -> Vec<I> {
    rows.iter().map(id).collect()
}

/// `ids` sorted ascending.
pub fn sorted<I: Ord>(mut ids: Vec<I>) -> Vec<I> {
    ids.sort();
    ids
}

/// Checks keyset pagination of one list method whose workspace holds exactly `expected`
/// rows: a full page lists them ascending by id, pages of two with `after` walk them
/// without gaps or repeats, a page after the last id is empty, and a limit of 0 or
/// above [`Page::MAX_LIMIT`] is `Invalid`.
pub async fn assert_pagination<T: Debug, I, F, Fut>(
    what: &str,
    expected: Vec<I>,
    id: impl Fn(&T) -> I,
    list: F,
) where
    I: Copy + Ord + Debug,
    F: Fn(Page<I>) -> Fut,
    Fut: Future<Output = Result<Vec<T>, StoreError>>,
{
    let expected = sorted(expected);
    let all = ok(list(Page::first(Page::<I>::MAX_LIMIT)).await, what);
    assert_eq!(
        ids(&all, &id),
        expected,
        "{what}: a page lists exactly the workspace's rows, ascending by id"
    );
    let mut walked = Vec::new();
    let mut after = None;
    for _ in 0..=expected.len() {
        let page = ok(list(Page { after, limit: 2 }).await, what);
        assert!(page.len() <= 2, "{what}: a page holds at most `limit` rows");
        let Some(last) = page.last() else { break };
        after = Some(id(last));
        walked.extend(ids(&page, &id));
    }
    assert_eq!(
        walked, expected,
        "{what}: pages of 2 chained with `after` return every row once, in id order"
    );
    if let Some(last) = expected.last() {
        let past_end = ok(list(Page::after(*last, 10)).await, what);
        assert!(
            past_end.is_empty(),
            "{what}: no rows follow the greatest id"
        );
        let first = ok(list(Page::after(expected[0], 1)).await, what);
        assert_eq!(
            ids(&first, &id),
            expected.get(1).copied().into_iter().collect::<Vec<_>>(),
            "{what}: `after` is exclusive and `limit` caps the page"
        );
    }
    for limit in [0, Page::<I>::MAX_LIMIT + 1] {
        expect_err(
            list(Page { after: None, limit }).await,
            StoreErrorKind::Invalid,
            &format!("{what}: a page limit of {limit} MUST be Invalid (1 to 1000)"),
        );
    }
}

/// Runs `n` futures made by `make` at once and returns their outputs in index order.
///
/// On a multi-thread runtime they are split over four OS threads (each driving its
/// share with `join_all`), so a store's locks and transactions see real parallelism;
/// otherwise they are joined on the current task.
pub async fn race<T, F, Fut>(n: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut + Sync,
    Fut: Future<Output = T>,
    T: Send,
{
    const THREADS: usize = 4;
    let handle = Handle::current();
    if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
        return join_all((0..n).map(make)).await;
    }
    let mut slots: Vec<(usize, T)> = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (make, handle) = (&make, &handle);
                    scope.spawn(move || {
                        let mine: Vec<usize> = (t..n).step_by(THREADS).collect();
                        let outputs = handle.block_on(join_all(mine.iter().map(|&i| make(i))));
                        mine.into_iter().zip(outputs).collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("a racing task panicked"))
                .collect()
        })
    });
    slots.sort_by_key(|(i, _)| *i);
    slots.into_iter().map(|(_, v)| v).collect()
}

/// A version-1 contact named Ada with `email` and a time zone.
pub fn new_contact(ws: WorkspaceId, email: &str) -> Contact {
    let input = NewContact {
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        email: Some(email.into()),
        time_zone: Some("Europe/Berlin".into()),
        ..NewContact::default()
    };
    Contact::create(ws, input, base()).expect("valid contact")
}

/// Inserts a contact with a unique email.
pub async fn contact(store: &DynStore, ws: WorkspaceId) -> Contact {
    ok(
        store
            .insert_contact(&new_contact(ws, &unique_email()))
            .await,
        "insert a valid contact",
    )
}

/// A version-1 account named Acme with `domain`.
pub fn new_account(ws: WorkspaceId, domain: &str) -> Account {
    let input = NewAccount {
        name: "Acme".into(),
        domain: Some(domain.into()),
        industry: Some("Software".into()),
        employee_count: Some(42),
        annual_revenue: Some(eur(100_000_000)),
        owner_id: None,
    };
    Account::create(ws, input, base()).expect("valid account")
}

/// Inserts an account with a unique domain.
pub async fn account(store: &DynStore, ws: WorkspaceId) -> Account {
    ok(
        store
            .insert_account(&new_account(ws, &unique_domain()))
            .await,
        "insert a valid account",
    )
}

/// A version-1 pipeline with stages Lead (open), Proposal (open) and Won.
pub fn new_pipeline(ws: WorkspaceId) -> Pipeline {
    let stages = vec![
        Stage::open("Lead", 10).expect("stage"),
        Stage::open("Proposal", 60).expect("stage"),
        Stage::new("Won", 100, StageOutcome::Won).expect("stage"),
    ];
    Pipeline::create(ws, "Sales", stages, base()).expect("valid pipeline")
}

/// Inserts a pipeline.
pub async fn pipeline(store: &DynStore, ws: WorkspaceId) -> Pipeline {
    ok(
        store.insert_pipeline(&new_pipeline(ws)).await,
        "insert a valid pipeline",
    )
}

/// A version-1 deal on the first stage of `pipeline`, without account or contact.
pub fn new_deal(pipeline: &Pipeline) -> Deal {
    let input = NewDeal {
        pipeline_id: pipeline.id,
        stage_id: pipeline.stages[0].id,
        name: "Annual licence".into(),
        amount: eur(500_000),
        account_id: None,
        contact_id: None,
        owner_id: None,
        expected_close: NaiveDate::from_ymd_opt(2026, 3, 31),
    };
    Deal::create(pipeline.workspace_id, input, base()).expect("valid deal")
}

/// A note about `contact` that occurred at `occurred_at`.
pub fn note(ws: WorkspaceId, contact: ContactId, occurred_at: DateTime<Utc>) -> Activity {
    activity(ws, contact, ActivityKind::Note, occurred_at)
}

/// An activity of `kind` about `contact`.
pub fn activity(
    ws: WorkspaceId,
    contact: ContactId,
    kind: ActivityKind,
    occurred_at: DateTime<Utc>,
) -> Activity {
    Activity::for_contact(ws, contact, kind, "Talked about pricing", occurred_at)
        .expect("valid activity")
}

/// A consent entry for `contact` on email.
pub fn consent(
    ws: WorkspaceId,
    contact: ContactId,
    status: ConsentStatus,
    recorded_at: DateTime<Utc>,
) -> Consent {
    Consent::new(ws, contact, Channel::Email, status, "web form", recorded_at)
        .expect("valid consent")
}

/// A suppression of `address` on `channel` (`None`: every channel).
pub fn suppression(ws: WorkspaceId, channel: Option<Channel>, address: &str) -> Suppression {
    Suppression::new(ws, channel, address, SuppressionReason::Bounced, base())
        .expect("valid suppression")
}

/// A system audit entry about `subject`.
pub fn audit(ws: WorkspaceId, subject: &str) -> AuditEntry {
    AuditEntry::new(
        ws,
        Actor::System,
        "score.override",
        subject,
        json!({ "reason": "manual review" }),
        base(),
    )
    .expect("valid audit entry")
}

/// The fingerprint of `seed@example.com`.
pub fn fingerprint(seed: &str) -> Fingerprint {
    Fingerprint::compute(Some(&format!("{seed}@example.com")), None, None)
}

/// A pending CSV intake row with `fingerprint`.
pub fn new_intake(ws: WorkspaceId, fingerprint: Option<Fingerprint>) -> IntakeRecord {
    IntakeRecord::new(
        ws,
        IntakeSource::Csv,
        "leads.csv",
        json!({ "email": "ada@example.com", "company": "Acme" }),
        fingerprint,
        base(),
    )
    .expect("valid intake row")
    .with_line(2)
}

/// A version-1 sequence with one email step.
pub fn new_sequence(ws: WorkspaceId) -> Sequence {
    let step = SequenceStep {
        channel: Channel::Email,
        template: Template {
            subject: Some("Hello {{first_name}}".into()),
            body: "Hi {{first_name}}, quick question.".into(),
        },
        delay: StepDelay::Hours(0),
        window: None,
        requires_approval: true,
        options: Default::default(),
    };
    Sequence::create(ws, "Onboarding", vec![step], base()).expect("valid sequence")
}

/// Inserts a sequence.
pub async fn sequence(store: &DynStore, ws: WorkspaceId) -> Sequence {
    ok(
        store.insert_sequence(&new_sequence(ws)).await,
        "insert a valid sequence",
    )
}

/// A pending enrollment of `contact` in `sequence`, due at [`base`].
pub fn new_enrollment(sequence: &Sequence, contact: ContactId) -> Enrollment {
    Enrollment::new(
        sequence.workspace_id,
        sequence.id,
        sequence.version,
        contact,
        base(),
    )
}

/// A pending email message due at [`base`] with a unique recipient and key.
pub fn new_message(ws: WorkspaceId) -> OutboxMessage {
    OutboxMessage::new(
        ws,
        Channel::Email,
        unique_email(),
        "Hi Ada, quick question.",
        unique("send"),
        base(),
    )
    .expect("valid outbox message")
    .with_subject("Hello")
}

/// Enqueues a pending message due at `not_before`.
pub async fn message_due(
    store: &DynStore,
    ws: WorkspaceId,
    not_before: DateTime<Utc>,
) -> OutboxMessage {
    created(
        store
            .enqueue_outbox(&new_message(ws).with_not_before(not_before))
            .await,
        "enqueue a valid message",
    )
}

/// Enqueues a message awaiting approval.
pub async fn awaiting_message(store: &DynStore, ws: WorkspaceId) -> OutboxMessage {
    let message = new_message(ws).with_status(OutboxStatus::AwaitingApproval);
    created(
        store.enqueue_outbox(&message).await,
        "enqueue a message awaiting approval",
    )
}

/// A claim of up to 100 rows of `ws` at `now` with a [`lease_ttl`] lease.
pub fn claim_at(ws: WorkspaceId, worker: &str, now: DateTime<Utc>) -> Claim {
    Claim::new(Scope::Workspace(ws), worker, now, lease_ttl(), 100)
}

/// Claims exactly one message of `ws` at `now` (the workspace must hold one due).
pub async fn claim_one_message(
    store: &DynStore,
    ws: WorkspaceId,
    now: DateTime<Utc>,
) -> OutboxMessage {
    let mut claim = claim_at(ws, "dispatcher-1", now);
    claim.limit = 1;
    let mut claimed = ok(store.claim_outbox(&claim).await, "claim_outbox");
    assert_eq!(claimed.len(), 1, "claim_outbox returns the due message");
    claimed.remove(0)
}

/// Enqueues a message to `contact` (when given) and claims it at [`base`].
pub async fn in_flight_message(
    store: &DynStore,
    ws: WorkspaceId,
    contact: Option<&Contact>,
) -> OutboxMessage {
    let mut message = new_message(ws);
    if let Some(contact) = contact {
        message = message.with_contact(contact.id);
    }
    created(store.enqueue_outbox(&message).await, "enqueue a message");
    claim_one_message(store, ws, base()).await
}

/// What a dispatcher records when `message` to `contact` was accepted at `sent_at`.
pub fn sent_record(
    message: &OutboxMessage,
    contact: ContactId,
    sent_at: DateTime<Utc>,
) -> SentRecord {
    SentRecord {
        provider_message_id: Some(unique("provider")),
        sent_at,
        activity: activity(
            message.workspace_id,
            contact,
            ActivityKind::MessageSent,
            sent_at,
        )
        .with_channel(message.channel)
        .with_outbox_message(message.id),
        enrollment: None,
    }
}

/// The fencing token of a claimed row.
#[track_caller]
pub fn token(lease: Option<&crm_core::model::Lease>) -> i64 {
    lease.expect("a claimed row carries its lease").token
}

/// A pending approval item for `message`, expiring at `expires_at`.
pub fn new_approval(message: &OutboxMessage, expires_at: DateTime<Utc>) -> ApprovalItem {
    let created_at = expires_at.min(base());
    ApprovalItem::pending(
        message.workspace_id,
        message.id,
        message.channel,
        message.body.clone(),
        created_at,
        expires_at,
    )
    .expect("valid approval item")
}

/// Enqueues a message awaiting approval and inserts its item, expiring at `expires_at`.
pub async fn approval(
    store: &DynStore,
    ws: WorkspaceId,
    expires_at: DateTime<Utc>,
) -> ApprovalItem {
    let message = awaiting_message(store, ws).await;
    created(
        store
            .insert_approval(&new_approval(&message, expires_at))
            .await,
        "insert an approval item",
    )
}

/// An enabled approval rule on `channel`.
pub fn new_rule(ws: WorkspaceId, channel: Channel) -> ApprovalRule {
    let conditions = RuleConditions {
        max_step_index: Some(0),
        min_confidence: Some(0.9),
        min_clean_approvals: Some(3),
    };
    ApprovalRule::new(ws, channel, "First steps", conditions, base()).expect("valid rule")
}

/// A queued job of `kind` due at [`base`], allowed `max_attempts` attempts.
pub fn new_job(ws: WorkspaceId, kind: &str, max_attempts: i32) -> Job {
    Job::new(ws, kind, json!({ "contact": "c-1" }), base())
        .expect("valid job")
        .with_max_attempts(max_attempts)
}

/// Enqueues a job of kind `conformance.work` due at `run_at`.
pub async fn job_due(store: &DynStore, ws: WorkspaceId, run_at: DateTime<Utc>) -> Job {
    let job = new_job(ws, "conformance.work", Job::DEFAULT_MAX_ATTEMPTS).with_run_at(run_at);
    created(store.enqueue_job(&job).await, "enqueue a valid job")
}

/// Claims exactly one job of `ws` at `now` (the workspace must hold one due).
pub async fn claim_one_job(store: &DynStore, ws: WorkspaceId, now: DateTime<Utc>) -> Job {
    let mut claim = claim_at(ws, "worker-1", now);
    claim.limit = 1;
    let mut claimed = ok(store.claim_jobs(&claim).await, "claim_jobs");
    assert_eq!(claimed.len(), 1, "claim_jobs returns the due job");
    claimed.remove(0)
}

/// Enqueues a job allowing `max_attempts` and claims it at [`base`].
pub async fn running_job(store: &DynStore, ws: WorkspaceId, max_attempts: i32) -> Job {
    let job = new_job(ws, "conformance.work", max_attempts);
    created(store.enqueue_job(&job).await, "enqueue a job");
    claim_one_job(store, ws, base()).await
}

/// An event of kind `contact.created` with idempotency key `key`.
pub fn new_event(ws: WorkspaceId, key: &str) -> NewEvent {
    NewEvent::new(
        ws,
        "contact.created",
        unique("contact"),
        json!({ "source": "csv" }),
        key,
        base(),
    )
    .expect("valid event")
}

/// An active warning anomaly with `dedup_key`.
pub fn new_anomaly(ws: WorkspaceId, dedup_key: &str) -> Anomaly {
    Anomaly::new(
        ws,
        "failure_rate",
        Severity::Warning,
        dedup_key,
        "Failure rate above 20 %",
        base(),
    )
    .expect("valid anomaly")
}
