//! From a raw row to an intake record: map, normalise, fingerprint, or keep the row
//! as `Invalid` with every reason found.

use chrono::{DateTime, Utc};

use crate::error::ValidationError;
use crate::ids::WorkspaceId;
use crate::intake::manifest::Manifest;
use crate::intake::normalize::{NormalizeOptions, NormalizedRow, normalize};
use crate::intake::source::RawRow;
use crate::model::{IntakeRecord, IntakeSource, RowError};

/// A prepared row: the record to store and, for a usable row, its normalised form.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The intake record, `Pending` or `Invalid`.
    pub record: IntakeRecord,
    /// The normalised row, `None` for an invalid one.
    pub normalized: Option<NormalizedRow>,
}

/// Maps and normalises `row`. Reading errors, mapping errors and normalisation errors
/// all make the record `Invalid` with their reasons; a row with neither a name nor any
/// contact point is invalid too (it could never become a contact). Only a blank
/// `source_ref` fails (`Err`).
pub fn prepare(
    workspace_id: WorkspaceId,
    source: IntakeSource,
    source_ref: &str,
    row: RawRow,
    manifest: &Manifest,
    options: &NormalizeOptions,
    now: DateTime<Utc>,
) -> Result<Prepared, ValidationError> {
    let RawRow {
        line,
        raw,
        columns,
        errors,
    } = row;
    let outcome = if errors.is_empty() {
        manifest
            .apply(&columns, line)
            .and_then(|mapped| normalize(&mapped, options, line))
            .and_then(|n| usable(n, line))
    } else {
        Err(errors)
    };
    let (fingerprint, normalized, errors) = match outcome {
        Ok(n) => (n.fingerprint(), Some(n), Vec::new()),
        Err(errors) => (None, None, errors),
    };
    let mut record = IntakeRecord::new(workspace_id, source, source_ref, raw, fingerprint, now)?;
    if let Some(line) = line {
        record = record.with_line(line);
    }
    if !errors.is_empty() {
        record = record.invalid(errors);
    }
    Ok(Prepared { record, normalized })
}

fn usable(row: NormalizedRow, line: Option<u64>) -> Result<NormalizedRow, Vec<RowError>> {
    let named = row.first_name.is_some() || row.last_name.is_some();
    let reachable = row.email.is_some() || row.phone.is_some() || row.linkedin_url.is_some();
    if named || reachable {
        Ok(row)
    } else {
        Err(vec![RowError {
            line,
            column: None,
            reason: "row has no name and no contact point".into(),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::source::CsvRows;
    use crate::model::IntakeStatus;

    #[test]
    fn every_csv_row_becomes_a_record_good_or_invalid() {
        let data = "email,name,phone\n Ada@Acme.io ,Ada Lovelace,+49 30 901820\nbroken,Bob,\n,,\n";
        let ws = WorkspaceId::new();
        let now = DateTime::UNIX_EPOCH;
        let prepared: Vec<_> = CsvRows::new(data.as_bytes())
            .unwrap()
            .map(|row| {
                prepare(
                    ws,
                    IntakeSource::Csv,
                    "leads.csv",
                    row.unwrap(),
                    &Manifest::standard(),
                    &NormalizeOptions::default(),
                    now,
                )
                .unwrap()
            })
            .collect();
        assert_eq!(prepared.len(), 3);
        let good = &prepared[0];
        assert_eq!(good.record.status, IntakeStatus::Pending);
        assert_eq!(good.record.line, Some(2));
        assert!(good.record.fingerprint.is_some());
        assert_eq!(
            good.record.raw["email"], " Ada@Acme.io ",
            "raw stays untouched"
        );
        let n = good.normalized.as_ref().unwrap();
        assert_eq!(n.email.as_ref().unwrap().as_str(), "ada@acme.io");
        assert_eq!(n.phone.as_ref().unwrap().as_str(), "+4930901820");
        assert_eq!(n.domain.as_ref().unwrap().as_str(), "acme.io");
        assert_eq!(n.last_name.as_deref(), Some("Lovelace"));

        let bad = &prepared[1].record;
        assert_eq!(bad.status, IntakeStatus::Invalid);
        assert_eq!(bad.errors[0].line, Some(3));
        assert_eq!(bad.errors[0].column.as_deref(), Some("email"));
        let empty = &prepared[2].record;
        assert_eq!(empty.status, IntakeStatus::Invalid);
        assert_eq!(
            empty.errors[0].reason,
            "row has no name and no contact point"
        );
    }

    #[test]
    fn a_link_of_only_slashes_is_no_contact_point() {
        let data = "name,linkedin_url\n,///\nAda,///\n";
        let ws = WorkspaceId::new();
        let rows: Vec<_> = CsvRows::new(data.as_bytes())
            .unwrap()
            .map(|row| {
                prepare(
                    ws,
                    IntakeSource::Csv,
                    "links.csv",
                    row.unwrap(),
                    &Manifest::standard(),
                    &NormalizeOptions::default(),
                    DateTime::UNIX_EPOCH,
                )
                .unwrap()
            })
            .collect();
        assert_eq!(rows[0].record.status, IntakeStatus::Invalid);
        assert_eq!(
            rows[0].record.errors[0].reason,
            "row has no name and no contact point"
        );
        assert_eq!(rows[1].record.status, IntakeStatus::Pending);
        let ada = rows[1].normalized.as_ref().unwrap();
        assert_eq!(ada.linkedin_url, None, "a named row keeps no empty link");
    }
}
