//! From a raw row to an intake record: map, normalise, fingerprint, or keep the row
//! as `Invalid` with every reason found.

use chrono::{DateTime, Utc};

use crate::error::ValidationError;
use crate::ids::WorkspaceId;
use crate::intake::manifest::Manifest;
use crate::intake::normalize::{NormalizeOptions, NormalizedRow, normalize};
use crate::intake::source::RawRow;
use crate::model::{Contact, IntakeRecord, IntakeSource, RowError};

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
            .and_then(|n| storable(workspace_id, n, line, now))
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

/// Checks the contact processing would create from `row` by the rules every store
/// applies ([`Contact::validate`]: lengths, NUL, reachability), so a row no store
/// would accept is `Invalid` now, with the reason, instead of failing at processing.
/// A merge into an existing contact keeps the same per-field rules.
fn storable(
    workspace_id: WorkspaceId,
    row: NormalizedRow,
    line: Option<u64>,
    now: DateTime<Utc>,
) -> Result<NormalizedRow, Vec<RowError>> {
    match Contact::create(workspace_id, row.contact_input(None), now) {
        Ok(_) => Ok(row),
        Err(e) => {
            let field = e.field();
            let column = field.strip_prefix("contact.").unwrap_or(field);
            Err(vec![RowError {
                line,
                column: Some(column.to_owned()),
                reason: e.reason().to_owned(),
            }])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::source::CsvRows;
    use crate::model::IntakeStatus;

    /// Prepares every row of `data` as a CSV import named `name`.
    fn prepare_csv(ws: WorkspaceId, name: &str, data: &str, now: DateTime<Utc>) -> Vec<Prepared> {
        CsvRows::new(data.as_bytes())
            .unwrap()
            .map(|row| {
                prepare(
                    ws,
                    IntakeSource::Csv,
                    name,
                    row.unwrap(),
                    &Manifest::standard(),
                    &NormalizeOptions::default(),
                    now,
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn every_csv_row_becomes_a_record_good_or_invalid() {
        let data = "email,name,phone\n Ada@Acme.io ,Ada Lovelace,+49 30 901820\nbroken,Bob,\n,,\n";
        let ws = WorkspaceId::new();
        let now = DateTime::UNIX_EPOCH;
        let prepared: Vec<_> = prepare_csv(ws, "leads.csv", data, now);
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
        let rows: Vec<_> = prepare_csv(ws, "links.csv", data, DateTime::UNIX_EPOCH);
        assert_eq!(rows[0].record.status, IntakeStatus::Invalid);
        assert_eq!(
            rows[0].record.errors[0].reason,
            "row has no name and no contact point"
        );
        assert_eq!(rows[1].record.status, IntakeStatus::Pending);
        let ada = rows[1].normalized.as_ref().unwrap();
        assert_eq!(ada.linkedin_url, None, "a named row keeps no empty link");
    }

    #[test]
    fn an_oversized_field_is_invalid_at_intake_with_the_limit() {
        let link = format!("https://linkedin.com/in/{}", "a".repeat(4096));
        let data = format!(
            "name,linkedin_url,title\nAda,{link},CEO\nBob,,{}\n",
            "t".repeat(501)
        );
        let rows: Vec<_> = prepare_csv(WorkspaceId::new(), "big.csv", &data, DateTime::UNIX_EPOCH);
        let ada = &rows[0].record;
        assert_eq!(ada.status, IntakeStatus::Invalid);
        assert!(rows[0].normalized.is_none());
        assert_eq!(ada.errors[0].column.as_deref(), Some("linkedin_url"));
        assert_eq!(ada.errors[0].line, Some(2));
        assert_eq!(
            ada.errors[0].reason,
            "is 4120 bytes, longer than the limit of 2048"
        );
        let bob = &rows[1].record;
        assert_eq!(bob.status, IntakeStatus::Invalid);
        assert_eq!(bob.errors[0].column.as_deref(), Some("title"));
    }
}
