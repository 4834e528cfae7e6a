//! The intake buffer: raw rows as they arrived, never dropped.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ValidationError, require_non_blank};
use crate::ids::{ContactId, IntakeRecordId, WorkspaceId};
use crate::text_enum::text_enum;

text_enum! {
    /// Where a row came from.
    pub enum IntakeSource {
        /// A CSV import.
        Csv = "csv",
        /// A web form.
        Form = "form",
        /// A webhook payload.
        Webhook = "webhook",
    }
}

text_enum! {
    /// What became of a row.
    pub enum IntakeStatus {
        /// Waiting to be processed.
        Pending = "pending",
        /// Same fingerprint as an earlier row; `duplicate_of` names it.
        Duplicate = "duplicate",
        /// Malformed; `errors` says why.
        Invalid = "invalid",
        /// Turned into (or merged into) a contact.
        Processed = "processed",
        /// Valid at intake, but processing could not turn it into a contact (the
        /// contact built from it is invalid, the store refused it, or it kept
        /// conflicting with concurrent writes); `errors` says why. Like `Invalid`, it
        /// holds no fingerprint, and it is never retried by itself: fix the cause and
        /// set it back to `Pending` (or import the row again).
        Failed = "failed",
    }
}

/// The SHA-256 of normalised email, domain and profile link, lower-case hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Fingerprints the identity parts of a row. Each part is trimmed and lower-cased;
    /// parts are joined with a separator that cannot occur in them, so
    /// ("a", "bc") and ("ab", "c") differ.
    #[must_use]
    pub fn compute(email: Option<&str>, domain: Option<&str>, profile_url: Option<&str>) -> Self {
        let mut hasher = Sha256::new();
        for part in [email, domain, profile_url] {
            hasher.update(part.unwrap_or("").trim().to_lowercase().as_bytes());
            hasher.update([0x1f]);
        }
        Self(hex_lower(&hasher.finalize()))
    }

    /// Parses 64 lower-case hex digits.
    pub fn parse(hex: &str) -> Result<Self, ValidationError> {
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(hex.to_owned()))
        } else {
            Err(ValidationError::new(
                "fingerprint",
                "must be 64 lower-case hex digits",
            ))
        }
    }

    /// The hex digest.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", &self.0[..12.min(self.0.len())])
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Fingerprint> for String {
    fn from(f: Fingerprint) -> String {
        f.0
    }
}

/// Why a row could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// 1-based line in the source file, if any.
    pub line: Option<u64>,
    /// Column or field name, if the problem is in one.
    pub column: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// One raw row in the intake buffer.
// Debug is hand-written in model/debug.rs: it masks personal data.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct IntakeRecord {
    /// Id.
    pub id: IntakeRecordId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// Source kind.
    pub source: IntakeSource,
    /// Source name (file name, form id, webhook name).
    pub source_ref: String,
    /// 1-based line in the source, if any.
    pub line: Option<u64>,
    /// The row exactly as received.
    pub raw: serde_json::Value,
    /// Identity fingerprint; `None` when the row is too malformed to have one.
    pub fingerprint: Option<Fingerprint>,
    /// Status.
    pub status: IntakeStatus,
    /// For duplicates, the first record with the same fingerprint.
    pub duplicate_of: Option<IntakeRecordId>,
    /// Problems found.
    pub errors: Vec<RowError>,
    /// The contact the row became, once processed.
    pub contact_id: Option<ContactId>,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version.
    pub version: i64,
}

impl IntakeRecord {
    /// A pending row with a fingerprint.
    pub fn new(
        workspace_id: WorkspaceId,
        source: IntakeSource,
        source_ref: impl Into<String>,
        raw: serde_json::Value,
        fingerprint: Option<Fingerprint>,
        received_at: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let received_at = crate::model::rules::stored_time(received_at);
        let record = Self {
            id: IntakeRecordId::new(),
            workspace_id,
            source,
            source_ref: source_ref.into(),
            line: None,
            raw,
            fingerprint,
            status: IntakeStatus::Pending,
            duplicate_of: None,
            errors: Vec::new(),
            contact_id: None,
            received_at,
            updated_at: received_at,
            version: 1,
        };
        record.validate()?;
        Ok(record)
    }

    /// Sets the source line.
    #[must_use]
    pub fn with_line(mut self, line: u64) -> Self {
        self.line = Some(line);
        self
    }

    /// Marks the row invalid with `errors`.
    #[must_use]
    pub fn invalid(mut self, errors: Vec<RowError>) -> Self {
        self.status = IntakeStatus::Invalid;
        self.errors = errors;
        self
    }

    /// Marks the row failed at processing with `errors` (see [`IntakeStatus::Failed`]).
    #[must_use]
    pub fn failed(mut self, errors: Vec<RowError>) -> Self {
        self.status = IntakeStatus::Failed;
        self.errors = errors;
        self
    }

    /// Rules for a stored row.
    pub fn validate(&self) -> Result<(), ValidationError> {
        require_non_blank("intake.source_ref", &self.source_ref)?;
        // Stores keep the line as a signed 64-bit integer (PostgreSQL `bigint`).
        if self.line.is_some_and(|line| i64::try_from(line).is_err()) {
            return Err(ValidationError::new("intake.line", "is too large"));
        }
        // PostgreSQL text and jsonb cannot hold U+0000; every store refuses it alike.
        let nul = self.source_ref.contains('\0')
            || contains_nul(&self.raw)
            || self.errors.iter().any(|e| {
                e.reason.contains('\0') || e.column.as_deref().is_some_and(|c| c.contains('\0'))
            });
        if nul {
            return Err(ValidationError::new(
                "intake.raw",
                "must not contain NUL characters (intake sources replace them)",
            ));
        }
        if matches!(self.status, IntakeStatus::Invalid | IntakeStatus::Failed)
            && self.errors.is_empty()
        {
            return Err(ValidationError::new(
                "intake.errors",
                "an invalid or failed row must say why",
            ));
        }
        Ok(())
    }
}

/// Whether any key or string of `value` holds U+0000.
#[must_use]
pub(crate) fn contains_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(contains_nul),
        serde_json::Value::Object(map) => {
            map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v))
        }
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_normalise_and_separate_parts() {
        let a = Fingerprint::compute(Some(" Ada@Example.com"), Some("example.com"), None);
        let b = Fingerprint::compute(Some("ada@example.com "), Some("EXAMPLE.com"), None);
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), 64);
        let c = Fingerprint::compute(Some("a"), Some("bc"), None);
        let d = Fingerprint::compute(Some("ab"), Some("c"), None);
        assert_ne!(c, d);
        assert!(Fingerprint::parse(a.as_str()).is_ok());
        assert!(Fingerprint::parse("xyz").is_err());
    }
}
