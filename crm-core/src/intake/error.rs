//! Errors of intake imports and processing.

use crate::error::{StoreError, ValidationError};

/// Why an import or a processing step failed as a whole. Problems of single rows are
/// not errors: they are kept on the row ([`RowError`](crate::model::RowError)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntakeError {
    /// The CSV input could not be read at `line` (I/O or a broken header).
    #[error("CSV input unreadable at line {line}")]
    Csv {
        /// 1-based line where reading stopped.
        line: u64,
        /// The reader's error.
        #[source]
        source: csv::Error,
    },
    /// The CSV input has no header line.
    #[error("CSV input has no header line")]
    EmptyHeader,
    /// The CSV header names columns that cannot be told apart or read (duplicate,
    /// blank, not UTF-8, NUL, reserved); found before any row is read, since mapping
    /// such a file would overwrite or drop cells silently.
    #[error(
        "CSV header unusable: {}",
        crate::intake::csv_check::describe(problems)
    )]
    Header {
        /// Every problem, in column order (duplicates last).
        problems: Vec<crate::intake::csv_check::HeaderProblem>,
    },
    /// A value the caller passed is invalid (blank source name, batch size 0).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A concurrent import or job changed the rows this step depends on (for example
    /// another row created a contact with the same email); running it again resolves.
    #[error("intake {entity} changed concurrently; retry")]
    Contended {
        /// What changed.
        entity: &'static str,
    },
    /// The task storing a batch was cancelled (its runtime is shutting down); rows of
    /// earlier batches stay stored.
    #[error("intake import interrupted while storing a batch")]
    Interrupted,
    /// The store failed; retry when [`IntakeError::is_retryable`] says so.
    #[error("intake store operation failed")]
    Store(#[from] StoreError),
}

impl IntakeError {
    pub(crate) fn csv(line: u64, source: csv::Error) -> Self {
        Self::Csv { line, source }
    }

    /// Whether the same call may succeed later (an unavailable store). Input problems
    /// are permanent.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Csv { source, .. } => source.is_io_error(),
            Self::Contended { .. } | Self::Interrupted => true,
            Self::EmptyHeader | Self::Header { .. } | Self::Invalid(_) => false,
        }
    }
}
