//! The intake service: imports rows in bounded batches and processes pending rows into
//! contacts, as jobs.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::error::{StoreErrorKind, ValidationError};
use crate::ids::{ContactId, IntakeRecordId, WorkspaceId};
use crate::intake::IntakeError;
use crate::intake::manifest::Manifest;
use crate::intake::merge::{MergePreview, apply_merge, event_key, preview_merge};
use crate::intake::normalize::{NormalizeOptions, NormalizedRow, normalize};
use crate::intake::prepare::prepare;
use crate::intake::resolve::{IdentityMatch, MatchRules, resolve_identity};
use crate::intake::source::{RawRow, payload_row};
use crate::jobs::{JobContext, JobError, JobHandler};
use crate::model::{
    Account, Contact, IntakeRecord, IntakeSource, IntakeStatus, Job, NewEvent, RowError,
};
use crate::store::{ContactWrite, IntakeCompletion, IntakeServiceStore, MAX_INTAKE_BATCH, Page};

/// At most this many contacts of an account are compared by fuzzy rules; bounds the
/// work per row in very large accounts.
pub const MAX_CANDIDATES: u32 = 1000;

/// The job kind that processes a batch of pending intake rows.
pub const PROCESS_JOB: &str = "intake.process";

/// The most rows one [`PROCESS_JOB`] job processes; a larger stored batch gets one job
/// per this many pending rows, so a job stays short whatever the import's batch size.
pub const PROCESS_CHUNK: usize = 1000;

/// Counts of one import. `pending + duplicates + invalid == rows`: nothing is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportReport {
    /// Rows read.
    pub rows: u64,
    /// Rows stored pending (new fingerprints, or rows without one).
    pub pending: u64,
    /// Rows stored as duplicates of an earlier fingerprint.
    pub duplicates: u64,
    /// Rows stored invalid, with their reasons.
    pub invalid: u64,
    /// Processing jobs enqueued (one per [`PROCESS_CHUNK`] pending rows of a batch).
    pub jobs: u64,
}

/// What processing one intake row did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ProcessOutcome {
    /// A new contact was created.
    Created {
        /// The contact.
        contact_id: ContactId,
    },
    /// The row was merged into an existing contact.
    Merged {
        /// The contact.
        contact_id: ContactId,
        /// What the merge set, and the conflicts it left alone.
        preview: MergePreview,
    },
    /// The row was not pending (already processed, a duplicate or invalid): nothing
    /// done. This is what a re-run job sees.
    Skipped {
        /// The row's status.
        status: IntakeStatus,
    },
    /// The row no longer maps or normalises under the job's manifest; it was marked
    /// invalid with the reasons.
    Invalid,
    /// Processing could not turn the row into a contact (the contact built from it is
    /// invalid, or the store refused it for good); the row was marked
    /// [`IntakeStatus::Failed`] with these reasons. Other rows are unaffected.
    Failed {
        /// Why, as stored on the row.
        errors: Vec<RowError>,
    },
}

/// Counts of one run over a list of intake rows ([`IntakeService::process_batch`]).
/// Every row is counted once: `rows == created + merged + skipped + invalid + failed +
/// deferred + missing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ProcessReport {
    /// Rows asked for.
    pub rows: u64,
    /// Rows that created a contact.
    pub created: u64,
    /// Rows merged into an existing contact.
    pub merged: u64,
    /// Rows that were no longer pending (processed by an earlier run, a duplicate,
    /// invalid or failed): what a re-run sees for the rows it already finished.
    pub skipped: u64,
    /// Rows marked invalid because they no longer map or normalise.
    pub invalid: u64,
    /// Rows marked [`IntakeStatus::Failed`] with their reasons.
    pub failed: u64,
    /// Rows left pending after a lost race with concurrent writes; a later run
    /// processes them.
    pub deferred: u64,
    /// Ids that name no row of the workspace (nothing to do).
    pub missing: u64,
}

/// The payload of a [`PROCESS_JOB`] job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessPayload {
    /// The rows to process.
    pub intake_ids: Vec<IntakeRecordId>,
    /// The manifest the rows were imported with (rows are stored raw).
    pub manifest: Manifest,
}

impl ImportReport {
    fn add(&mut self, other: Self) {
        self.rows += other.rows;
        self.pending += other.pending;
        self.duplicates += other.duplicates;
        self.invalid += other.invalid;
        self.jobs += other.jobs;
    }
}

/// Stores one prepared batch and enqueues its processing job; returns its counts.
async fn store_batch(
    store: &dyn IntakeServiceStore,
    clock: &dyn Clock,
    workspace_id: WorkspaceId,
    manifest: Manifest,
    batch: Vec<IntakeRecord>,
) -> Result<ImportReport, IntakeError> {
    let stored = store.insert_intake_batch(workspace_id, batch).await?;
    let mut report = ImportReport::default();
    let mut pending = Vec::new();
    for r in &stored {
        report.rows += 1;
        match r.status {
            IntakeStatus::Duplicate => report.duplicates += 1,
            IntakeStatus::Invalid => report.invalid += 1,
            _ => {
                report.pending += 1;
                pending.push(r.id);
            }
        }
    }
    // The batch is not needed for the job round trips.
    drop(stored);
    for chunk in pending.chunks(PROCESS_CHUNK) {
        let payload = serde_json::to_value(ProcessPayload {
            intake_ids: chunk.to_vec(),
            manifest: manifest.clone(),
        })
        .map_err(|e| ValidationError::new("intake.manifest", e.to_string()))?;
        let job = Job::new(workspace_id, PROCESS_JOB, payload, clock.now())?
            .with_idempotency_key(format!("{PROCESS_JOB}:{}", chunk[0]));
        store.enqueue_job(&job).await?;
        report.jobs += 1;
    }
    Ok(report)
}

/// The outcome of a spawned batch: a panic in it goes on in the caller, as it would
/// have without the task; a task cancelled by a runtime shutdown is `Interrupted`.
fn joined<T>(
    outcome: Result<Result<T, IntakeError>, tokio::task::JoinError>,
) -> Result<T, IntakeError> {
    match outcome {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(IntakeError::Interrupted),
    }
}

/// Imports and processes intake rows against a store.
///
/// Configuration: [`NormalizeOptions`] (phone default region), [`MatchRules`] (fuzzy
/// rules) and the batch size (rows per store write, 1 to
/// [`MAX_INTAKE_BATCH`]; memory use of an import is bounded by two batches).
#[derive(Debug, Clone)]
pub struct IntakeService {
    store: Arc<dyn IntakeServiceStore>,
    clock: Arc<dyn Clock>,
    options: NormalizeOptions,
    rules: MatchRules,
    batch_size: usize,
}

impl IntakeService {
    /// A service with default options, rules and batches of 1000 rows.
    #[must_use]
    pub fn new(store: Arc<dyn IntakeServiceStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            options: NormalizeOptions::default(),
            rules: MatchRules::default(),
            batch_size: 1000,
        }
    }

    /// Sets the normalisation options.
    #[must_use]
    pub fn with_options(mut self, options: NormalizeOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets the identity-matching rules.
    #[must_use]
    pub fn with_rules(mut self, rules: MatchRules) -> Self {
        self.rules = rules;
        self
    }

    /// Sets the batch size (rows per store write), clamped to 1..=[`MAX_INTAKE_BATCH`].
    /// Larger batches import faster where a store write has a fixed cost (PostgreSQL
    /// makes one `COPY` per batch); each batch is held in memory twice at most.
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.clamp(1, MAX_INTAKE_BATCH);
        self
    }

    /// Imports `rows` (from [`CsvRows`](crate::intake::CsvRows) or payloads) into the
    /// intake buffer in batches, and enqueues one processing job per [`PROCESS_CHUNK`]
    /// pending rows of a batch (idempotency key from the chunk's first row id). Stops at
    /// the first read or store error; rows of earlier batches stay stored.
    ///
    /// Batches are stored one at a time and in order (so the first row of a
    /// fingerprint is the one kept pending), each by a spawned task while this one
    /// reads and prepares the next: on a multi-threaded runtime the parsing and the
    /// store's round trips overlap (outside a Tokio runtime a batch is stored in
    /// line). Memory stays bounded by two batches. Dropping the returned future stops
    /// reading, but a batch already handed to its task is still stored, with its jobs.
    pub async fn import<I>(
        &self,
        workspace_id: WorkspaceId,
        source: IntakeSource,
        source_ref: &str,
        manifest: &Manifest,
        rows: I,
    ) -> Result<ImportReport, IntakeError>
    where
        I: IntoIterator<Item = Result<RawRow, IntakeError>>,
    {
        let mut report = ImportReport::default();
        let mut rows = rows.into_iter();
        let mut in_flight: Option<JoinHandle<Result<ImportReport, IntakeError>>> = None;
        loop {
            let batch = self.next_batch(workspace_id, source, source_ref, manifest, &mut rows);
            if let Some(stored) = in_flight.take() {
                report.add(joined(stored.await)?);
            }
            let batch = batch?;
            if batch.is_empty() {
                return Ok(report);
            }
            let (store, clock) = (Arc::clone(&self.store), Arc::clone(&self.clock));
            let manifest = manifest.clone();
            let stored =
                async move { store_batch(&*store, &*clock, workspace_id, manifest, batch).await };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => in_flight = Some(runtime.spawn(stored)),
                // Outside a Tokio runtime there is nothing to spawn on: store in line.
                Err(_) => report.add(stored.await?),
            }
        }
    }

    /// Reads and prepares up to one batch of rows (empty at the end of the input).
    fn next_batch<I>(
        &self,
        workspace_id: WorkspaceId,
        source: IntakeSource,
        source_ref: &str,
        manifest: &Manifest,
        rows: &mut I,
    ) -> Result<Vec<IntakeRecord>, IntakeError>
    where
        I: Iterator<Item = Result<RawRow, IntakeError>>,
    {
        let mut batch = Vec::with_capacity(self.batch_size);
        for row in rows.by_ref().take(self.batch_size) {
            let prepared = prepare(
                workspace_id,
                source,
                source_ref,
                row?,
                manifest,
                &self.options,
                self.clock.now(),
            )?;
            batch.push(prepared.record);
        }
        Ok(batch)
    }

    /// Imports one form or webhook payload (see [`payload_row`]).
    pub async fn import_payload(
        &self,
        workspace_id: WorkspaceId,
        source: IntakeSource,
        source_ref: &str,
        manifest: &Manifest,
        payload: &serde_json::Value,
    ) -> Result<ImportReport, IntakeError> {
        let row = payload_row(payload);
        self.import(workspace_id, source, source_ref, manifest, [Ok(row)])
            .await
    }

    /// Processes one pending row: normalise, resolve identity, create or merge the
    /// contact with per-field provenance, emit `contact.created` / `contact.merged`
    /// (idempotency key `intake:{row id}`), mark the row processed.
    ///
    /// The contact write, its provenance, the event and the processed row go to the
    /// store in one atomic call ([`IntakeStore::complete_intake`]): a crash leaves the
    /// row pending with nothing written, and the re-run processes it from scratch. A
    /// row that is not pending is skipped; a lost race (the row processed by another
    /// run, the contact changed or its email taken meanwhile) is
    /// [`IntakeError::Contended`], and the retry sees the new state.
    ///
    /// A row that cannot become a contact for a reason of its own (the contact built
    /// from it fails validation, or the store refuses it as invalid or with a
    /// non-retryable backend error) is marked [`IntakeStatus::Failed`] with the reason
    /// and returned as [`ProcessOutcome::Failed`]: it never becomes an error of the
    /// caller's batch. Errors are left for what a later attempt can fix: an
    /// unavailable store, or a lost race ([`IntakeError::Contended`], a row that
    /// vanished meanwhile).
    ///
    /// [`IntakeStore::complete_intake`]: crate::store::IntakeStore::complete_intake
    pub async fn process(
        &self,
        workspace_id: WorkspaceId,
        id: IntakeRecordId,
        manifest: &Manifest,
    ) -> Result<ProcessOutcome, IntakeError> {
        let record = self.store.get_intake(workspace_id, id).await?;
        self.process_record(record, manifest).await
    }

    /// [`process`](Self::process) for a row already read.
    async fn process_record(
        &self,
        record: IntakeRecord,
        manifest: &Manifest,
    ) -> Result<ProcessOutcome, IntakeError> {
        if record.status != IntakeStatus::Pending {
            return Ok(ProcessOutcome::Skipped {
                status: record.status,
            });
        }
        match self.process_pending(&record, manifest).await {
            Err(e) if is_row_fault(&e) => self.mark_failed(record, &e).await,
            outcome => outcome,
        }
    }

    /// Processes every row of `ids` in order, each on its own: a row that fails is
    /// marked failed (see [`process`](Self::process)) and the next one goes on. Rows
    /// that are not pending any more are skipped, so a re-run after a crash processes
    /// only the unfinished rows.
    ///
    /// A row that lost a race with concurrent writes stays pending and is counted as
    /// `deferred`, unless `last_attempt` is set: then it is marked failed with the
    /// reason, so that no row of a job that will not run again is left pending.
    ///
    /// Returns `Err` only for an infrastructure failure (a retryable store error or
    /// an interrupted task): it stops at once, and the rows done so far stay done.
    pub async fn process_batch(
        &self,
        workspace_id: WorkspaceId,
        ids: &[IntakeRecordId],
        manifest: &Manifest,
        last_attempt: bool,
    ) -> Result<ProcessReport, IntakeError> {
        let mut report = ProcessReport::default();
        for &id in ids {
            report.rows += 1;
            let record = match self.store.get_intake(workspace_id, id).await {
                Ok(record) => record,
                Err(e) if e.kind() == StoreErrorKind::NotFound => {
                    report.missing += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let outcome = match self.process_record(record, manifest).await {
                Ok(outcome) => outcome,
                Err(e) if is_infrastructure(&e) => return Err(e),
                Err(e) if !last_attempt => {
                    tracing::debug!(intake_id = %id, error = %e, "intake row deferred");
                    report.deferred += 1;
                    continue;
                }
                Err(e) => {
                    let reason = format!("processing kept failing until the last attempt: {e}");
                    match self.fail(workspace_id, id, reason).await {
                        Ok(outcome) => outcome,
                        Err(e) if is_infrastructure(&e) => return Err(e),
                        Err(_) => {
                            // Changed again meanwhile: it is somebody else's now.
                            report.deferred += 1;
                            continue;
                        }
                    }
                }
            };
            match outcome {
                ProcessOutcome::Created { .. } => report.created += 1,
                ProcessOutcome::Merged { .. } => report.merged += 1,
                ProcessOutcome::Skipped { .. } => report.skipped += 1,
                ProcessOutcome::Invalid => report.invalid += 1,
                ProcessOutcome::Failed { .. } => report.failed += 1,
            }
        }
        Ok(report)
    }

    /// Marks a pending row [`IntakeStatus::Failed`] with `reason` (an operator giving
    /// up on it, or a job on its last attempt). A row that is no longer pending is
    /// left alone and returned as [`ProcessOutcome::Skipped`].
    pub async fn fail(
        &self,
        workspace_id: WorkspaceId,
        id: IntakeRecordId,
        reason: String,
    ) -> Result<ProcessOutcome, IntakeError> {
        let record = self.store.get_intake(workspace_id, id).await?;
        if record.status != IntakeStatus::Pending {
            return Ok(ProcessOutcome::Skipped {
                status: record.status,
            });
        }
        let errors = vec![RowError {
            line: record.line,
            column: None,
            reason,
        }];
        self.write_failed(record, errors).await
    }

    /// Marks `record` failed because of `error`.
    async fn mark_failed(
        &self,
        record: IntakeRecord,
        error: &IntakeError,
    ) -> Result<ProcessOutcome, IntakeError> {
        let column = match error {
            IntakeError::Invalid(v) => Some(v.field().to_owned()),
            IntakeError::Store(crate::error::StoreError::Invalid(v)) => Some(v.field().to_owned()),
            _ => None,
        };
        let errors = vec![RowError {
            line: record.line,
            column,
            reason: format!("processing failed: {error}"),
        }];
        self.write_failed(record, errors).await
    }

    async fn write_failed(
        &self,
        record: IntakeRecord,
        errors: Vec<RowError>,
    ) -> Result<ProcessOutcome, IntakeError> {
        let mut failed = record.failed(errors.clone());
        failed.updated_at = self.clock.now();
        match self.store.update_intake(&failed).await {
            Ok(_) => Ok(ProcessOutcome::Failed { errors }),
            Err(e) if e.kind() == StoreErrorKind::VersionConflict => Err(IntakeError::Contended {
                entity: "intake row",
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Resolves and writes one pending row; see [`process`](Self::process).
    async fn process_pending(
        &self,
        record: &IntakeRecord,
        manifest: &Manifest,
    ) -> Result<ProcessOutcome, IntakeError> {
        let workspace_id = record.workspace_id;
        let now = self.clock.now();
        let row = payload_row(&record.raw);
        let normalized = manifest
            .apply(&row.columns, record.line)
            .and_then(|mapped| normalize(&mapped, &self.options, record.line));
        let normalized = match normalized {
            Ok(n) => n,
            Err(errors) => {
                let mut invalid = record.clone().invalid(errors);
                invalid.updated_at = now;
                self.store.update_intake(&invalid).await?;
                return Ok(ProcessOutcome::Invalid);
            }
        };
        let by_email = match &normalized.email {
            Some(email) => {
                self.store
                    .find_contact_by_email(workspace_id, email)
                    .await?
            }
            None => None,
        };
        let account = match &normalized.domain {
            Some(domain) => {
                self.store
                    .find_account_by_domain(workspace_id, domain)
                    .await?
            }
            None => None,
        };
        let candidates = self
            .candidates(workspace_id, by_email.is_none(), account.as_ref())
            .await?;
        let matched = resolve_identity(
            &normalized,
            by_email.as_ref(),
            account.as_ref(),
            &candidates,
            &self.rules,
        );
        let account_id = account.map(|a| a.id);
        let existing = match matched.contact_id() {
            Some(id) => Some(self.store.get_contact(workspace_id, id).await?),
            None => None,
        };
        let creates = existing.is_none();
        let resolved = Resolved {
            record,
            normalized: &normalized,
            matched: &matched,
            account_id,
            now,
        };
        match self.complete(resolved, existing).await {
            // A new contact collides with one holding the row's id only if this row
            // created it before and was then set back to pending: merge into that one
            // instead of creating it twice. (Looked up only on this rare path.)
            Err(IntakeError::Contended { .. }) if creates => {
                let own = ContactId::from_uuid(record.id.as_uuid());
                match self.store.get_contact(workspace_id, own).await {
                    Ok(own) => self.complete(resolved, Some(own)).await,
                    Err(e) if e.kind() == StoreErrorKind::NotFound => {
                        Err(IntakeError::Contended { entity: "contact" })
                    }
                    Err(e) => Err(e.into()),
                }
            }
            outcome => outcome,
        }
    }

    /// Builds and writes a processed row's outcome in one store call: a merge into
    /// `existing`, or a new contact when there is none. A lost race is `Contended`.
    async fn complete(
        &self,
        resolved: Resolved<'_>,
        existing: Option<Contact>,
    ) -> Result<ProcessOutcome, IntakeError> {
        let Resolved {
            record,
            normalized,
            matched,
            account_id,
            now,
        } = resolved;
        let workspace_id = record.workspace_id;
        let (contact, write, preview, kind, outcome) = match existing {
            Some(existing) => {
                let contact_id = existing.id;
                let preview = preview_merge(Some(&existing), normalized, account_id);
                let merged = apply_merge(existing, &preview, now)?;
                let write = if preview.is_empty() {
                    ContactWrite::Keep
                } else {
                    ContactWrite::Update(merged.clone())
                };
                let outcome = ProcessOutcome::Merged {
                    contact_id,
                    preview: preview.clone(),
                };
                (merged, write, preview, "contact.merged", outcome)
            }
            None => {
                let preview = preview_merge(None, normalized, account_id);
                let contact = new_contact(record, normalized, account_id, now)?;
                let outcome = ProcessOutcome::Created {
                    contact_id: contact.id,
                };
                let write = ContactWrite::Create(contact.clone());
                (contact, write, preview, "contact.created", outcome)
            }
        };
        let event = NewEvent::new(
            workspace_id,
            kind,
            contact.id.to_string(),
            event_payload(record, &contact, matched, &preview),
            event_key(record.id),
            now,
        )?;
        let provenance = preview.provenance(&contact, record, now);
        let mut done = record.clone();
        done.status = IntakeStatus::Processed;
        done.contact_id = Some(contact.id);
        done.updated_at = now;
        let completion = IntakeCompletion {
            contact: write,
            provenance,
            event,
            intake: done,
        };
        match self.store.complete_intake(&completion).await {
            Ok(_) => Ok(outcome),
            Err(e)
                if matches!(
                    e.kind(),
                    StoreErrorKind::VersionConflict | StoreErrorKind::Conflict
                ) =>
            {
                Err(IntakeError::Contended { entity: "contact" })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Fuzzy-match candidates: the first [`MAX_CANDIDATES`] contacts of the account the
    /// row's domain named (none when the email already matched or no account did).
    async fn candidates(
        &self,
        workspace_id: WorkspaceId,
        needed: bool,
        account: Option<&Account>,
    ) -> Result<Vec<(Contact, Option<String>)>, IntakeError> {
        let (true, Some(account), false) = (needed, account, self.rules.fuzzy.is_empty()) else {
            return Ok(Vec::new());
        };
        let contacts = self
            .store
            .list_account_contacts(workspace_id, account.id, Page::first(MAX_CANDIDATES))
            .await?;
        Ok(contacts
            .into_iter()
            .map(|c| (c, Some(account.name.clone())))
            .collect())
    }
}

/// Whether `e` is a problem of the row itself, which no retry fixes: the contact built
/// from it is invalid, or the store refuses it (as invalid, unsupported, or with a
/// backend error that retrying will not help).
fn is_row_fault(e: &IntakeError) -> bool {
    match e {
        IntakeError::Invalid(_) => true,
        IntakeError::Store(e) => matches!(
            e.kind(),
            StoreErrorKind::Invalid | StoreErrorKind::Backend | StoreErrorKind::NotSupported
        ),
        _ => false,
    }
}

/// Whether `e` says the infrastructure failed (so the whole job should wait and
/// retry), not the row.
fn is_infrastructure(e: &IntakeError) -> bool {
    match e {
        IntakeError::Store(e) => e.is_retryable(),
        IntakeError::Interrupted => true,
        _ => false,
    }
}

/// What [`IntakeService::complete`] builds a row's outcome from.
#[derive(Clone, Copy)]
struct Resolved<'a> {
    record: &'a IntakeRecord,
    normalized: &'a NormalizedRow,
    matched: &'a IdentityMatch,
    account_id: Option<crate::ids::AccountId>,
    now: DateTime<Utc>,
}

/// The new contact of a row, with the row's id as the contact id.
fn new_contact(
    record: &IntakeRecord,
    row: &NormalizedRow,
    account_id: Option<crate::ids::AccountId>,
    now: DateTime<Utc>,
) -> Result<Contact, ValidationError> {
    let mut contact = Contact::create(record.workspace_id, row.contact_input(account_id), now)?;
    contact.id = ContactId::from_uuid(record.id.as_uuid());
    Ok(contact)
}

/// The event payload: ids and field names only, never contact values (PII).
fn event_payload(
    record: &IntakeRecord,
    contact: &Contact,
    matched: &IdentityMatch,
    preview: &MergePreview,
) -> serde_json::Value {
    let names = |changes: &[crate::intake::merge::FieldChange]| {
        changes.iter().map(|c| c.field.clone()).collect::<Vec<_>>()
    };
    let matched_by = match matched {
        IdentityMatch::Email { .. } => "email",
        IdentityMatch::Fuzzy { .. } => "fuzzy",
        IdentityMatch::New { .. } => "new",
    };
    json!({
        "contact_id": contact.id,
        "intake_id": record.id,
        "source": record.source.as_str(),
        "matched_by": matched_by,
        "fields": names(&preview.changes),
        "conflicts": names(&preview.conflicts),
    })
}

/// The [`PROCESS_JOB`] handler: processes every row of the payload in order, each on
/// its own ([`IntakeService::process_batch`]).
///
/// A row that fails is marked failed with its reason and the job goes on. The job is
/// retried only when the store is unavailable (it stops at once) or when rows lost a
/// race with concurrent writes (after every other row is done); a retry skips the
/// rows already finished. On the job's last attempt, rows still losing races are
/// marked failed, so no row is left pending by a job that will not run again.
#[derive(Debug, Clone)]
pub struct ProcessIntakeJob {
    service: Arc<IntakeService>,
}

impl ProcessIntakeJob {
    /// A handler running `service`.
    #[must_use]
    pub fn new(service: Arc<IntakeService>) -> Self {
        Self { service }
    }
}

#[async_trait]
impl JobHandler for ProcessIntakeJob {
    async fn handle(&self, job: &Job, _ctx: &JobContext) -> Result<(), JobError> {
        let payload: ProcessPayload = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobError::permanent(format!("malformed intake.process payload: {e}")))?;
        let last_attempt = job.attempts >= job.max_attempts;
        let report = self
            .service
            .process_batch(
                job.workspace_id,
                &payload.intake_ids,
                &payload.manifest,
                last_attempt,
            )
            .await
            .map_err(|e| match e {
                IntakeError::Store(e) => JobError::from(e),
                e if e.is_retryable() => JobError::retryable(e.to_string()),
                e => JobError::permanent(e.to_string()),
            })?;
        tracing::info!(
            job_id = %job.id,
            rows = report.rows,
            created = report.created,
            merged = report.merged,
            skipped = report.skipped,
            invalid = report.invalid,
            failed = report.failed,
            deferred = report.deferred,
            missing = report.missing,
            "intake rows processed"
        );
        if report.deferred > 0 {
            return Err(JobError::retryable(format!(
                "{} of {} intake rows lost a race with concurrent writes; retrying them",
                report.deferred, report.rows
            )));
        }
        Ok(())
    }
}
