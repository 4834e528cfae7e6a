//! Intake: raw rows from CSV files, forms and webhooks become contacts.
//!
//! The flow, pure parts first:
//! 1. [`source`] reads raw rows ([`CsvRows`] streams any `std::io::Read`;
//!    [`payload_row`] takes a form or webhook JSON object).
//! 2. [`prepare()`] maps a raw row through a [`Manifest`], normalises it and computes its
//!    [`Fingerprint`](crate::model::Fingerprint); a row that does not map or normalise
//!    becomes an `Invalid` intake record with per-row errors (line, column, reason).
//!    Nothing is dropped: the raw row is stored untouched either way.
//! 3. [`service::IntakeService::import`] writes prepared rows in bounded batches with
//!    [`IntakeStore::insert_intake_batch`](crate::store::IntakeStore::insert_intake_batch),
//!    which records duplicates by fingerprint, and enqueues one `intake.process` job per
//!    [`PROCESS_CHUNK`] pending rows. The next batch is prepared while the current one
//!    is stored.
//! 4. The job ([`service::ProcessIntakeJob`]) resolves identity ([`resolve`]: exact
//!    email, then domain to account, then fuzzy rules), builds a merge preview
//!    ([`merge`]) with per-field provenance, and writes the contact, its provenance, a
//!    `contact.created` / `contact.merged` event keyed by the intake row and the
//!    processed row in one atomic store call, so a crash leaves the row pending with
//!    nothing written and a re-run job changes nothing twice.

pub mod csv_check;
mod error;
pub mod manifest;
pub mod merge;
pub mod normalize;
pub mod prepare;
pub mod resolve;
pub mod service;
pub mod source;

pub use csv_check::HeaderProblem;
pub use error::IntakeError;
pub use manifest::{ColumnMapping, Field, Manifest, MappedRow, Transform};
pub use merge::{FieldChange, MergePreview, preview_merge};
pub use normalize::{NormalizeOptions, NormalizedRow, normalize};
pub use prepare::{Prepared, prepare};
pub use resolve::{FuzzyRule, IdentityMatch, MatchRules, resolve_identity};
pub use service::{
    ImportReport, IntakeService, PROCESS_CHUNK, PROCESS_JOB, ProcessIntakeJob, ProcessReport,
};
pub use source::{CsvRows, RawRow, payload_row};
