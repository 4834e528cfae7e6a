//! Raw rows from the three sources: CSV (any `std::io::Read`, streamed row by row),
//! form payloads and webhook payloads (JSON objects).

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::{Map, Value};

use crate::intake::IntakeError;
use crate::intake::csv_check::{EXTRA_KEY, QuoteWatch, header_names, quote_error};
use crate::model::RowError;
use crate::model::contains_nul;

/// One row as received, before mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    /// 1-based line in the source file (CSV only).
    pub line: Option<u64>,
    /// The row exactly as received, stored untouched in the intake buffer. For CSV a
    /// JSON object of header -> text (cells past the header under `"_extra"`); for
    /// payloads the payload itself.
    pub raw: Value,
    /// Column (or dotted payload path) -> text, what the manifest maps.
    pub columns: BTreeMap<String, String>,
    /// Problems found while reading the row; a row with any is stored `Invalid`.
    pub errors: Vec<RowError>,
}

/// Streams a CSV file row by row: memory stays bounded by one row, whatever the size
/// of the input. Rows with the wrong number of cells or cells that are not UTF-8 are
/// returned with row errors, never skipped; so are rows an unclosed quote merged (see
/// [`csv_check`](crate::intake::csv_check) for the exact rule).
#[derive(Debug)]
pub struct CsvRows<R: Read> {
    reader: csv::Reader<QuoteWatch<R>>,
    headers: Vec<String>,
    record: csv::ByteRecord,
}

impl<R: Read> CsvRows<R> {
    /// Reads the header line. A missing or unreadable header is
    /// [`IntakeError::Csv`] or [`IntakeError::EmptyHeader`]: without headers no row
    /// can be mapped. Duplicate, blank, undecodable or reserved names are
    /// [`IntakeError::Header`], naming every one.
    pub fn new(input: R) -> Result<Self, IntakeError> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .from_reader(QuoteWatch::new(input));
        let headers = header_names(reader.byte_headers().map_err(|e| IntakeError::csv(1, e))?)?;
        Ok(Self {
            reader,
            headers,
            record: csv::ByteRecord::new(),
        })
    }

    /// The header names, trimmed.
    #[must_use]
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    fn current_row(&self) -> RawRow {
        let line = self.record.position().map(csv::Position::line);
        let mut errors = Vec::new();
        let mut raw = Map::new();
        let mut columns = BTreeMap::new();
        if self.record.len() != self.headers.len() {
            errors.push(RowError {
                line,
                column: None,
                reason: format!(
                    "expected {} cells, found {}",
                    self.headers.len(),
                    self.record.len()
                ),
            });
        }
        let mut extra = Vec::new();
        for (i, cell) in self.record.iter().enumerate() {
            let mut text = match std::str::from_utf8(cell) {
                Ok(text) => text.to_owned(),
                Err(_) => {
                    errors.push(RowError {
                        line,
                        column: self.headers.get(i).cloned(),
                        reason: "is not valid UTF-8".into(),
                    });
                    String::from_utf8_lossy(cell).into_owned()
                }
            };
            if text.contains('\0') {
                errors.push(RowError {
                    line,
                    column: self.headers.get(i).cloned(),
                    reason: NUL_REASON.into(),
                });
                text = without_nul(&text);
            }
            match self.headers.get(i) {
                Some(header) => {
                    raw.insert(header.clone(), Value::String(text.clone()));
                    columns.insert(header.clone(), text);
                }
                None => extra.push(Value::String(text)),
            }
        }
        if !extra.is_empty() {
            raw.insert(EXTRA_KEY.into(), Value::Array(extra));
        }
        let unclosed = self.reader.get_ref().unclosed();
        if let Some(error) = quote_error(&self.record, line, &self.headers, unclosed) {
            errors.push(error);
        }
        RawRow {
            line,
            raw: Value::Object(raw),
            columns,
            errors,
        }
    }
}

impl<R: Read> Iterator for CsvRows<R> {
    type Item = Result<RawRow, IntakeError>;

    /// The next row; `Err` only when the input itself cannot be read (I/O).
    fn next(&mut self) -> Option<Self::Item> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(true) => Some(Ok(self.current_row())),
            Ok(false) => None,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                Some(Err(IntakeError::csv(line, e)))
            }
        }
    }
}

/// A form or webhook payload as a raw row. Object members become columns by dotted
/// path (`{"contact": {"email": ..}}` -> `contact.email`); scalars are kept as text,
/// arrays are not mapped. A payload that is not an object is kept with a row error.
///
/// A NUL character (which no store can hold) is replaced by U+FFFD, in `raw` too, and
/// the row gets an error saying so.
#[must_use]
pub fn payload_row(payload: &Value) -> RawRow {
    let mut columns = BTreeMap::new();
    let mut errors = Vec::new();
    let sanitized;
    let payload = if contains_nul(payload) {
        errors.push(RowError {
            line: None,
            column: None,
            reason: NUL_REASON.into(),
        });
        sanitized = replace_nul(payload);
        &sanitized
    } else {
        payload
    };
    match payload {
        Value::Object(map) => flatten("", map, &mut columns, 0),
        _ => errors.push(RowError {
            line: None,
            column: None,
            reason: "payload is not a JSON object".into(),
        }),
    }
    RawRow {
        line: None,
        raw: payload.clone(),
        columns,
        errors,
    }
}

/// Why a cell or payload with U+0000 is invalid: stores cannot hold the character, so
/// it is kept as U+FFFD.
const NUL_REASON: &str = "contains a NUL character (kept as U+FFFD)";

fn without_nul(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// `value` with every NUL in its keys and strings replaced by U+FFFD.
fn replace_nul(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(without_nul(s)),
        Value::Array(items) => Value::Array(items.iter().map(replace_nul).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (without_nul(k), replace_nul(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Nesting deeper than this is not mapped (it is still kept in `raw`).
const MAX_DEPTH: usize = 8;

fn flatten(
    prefix: &str,
    map: &Map<String, Value>,
    out: &mut BTreeMap<String, String>,
    depth: usize,
) {
    for (key, value) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::String(s) => {
                out.insert(path, s.clone());
            }
            Value::Number(n) => {
                out.insert(path, n.to_string());
            }
            Value::Bool(b) => {
                out.insert(path, b.to_string());
            }
            Value::Object(inner) if depth < MAX_DEPTH => flatten(&path, inner, out, depth + 1),
            Value::Object(_) | Value::Array(_) | Value::Null => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_keep_bad_rows_with_line_and_reason() {
        let data = b"email,first_name\nada@acme.io,Ada\nonly-one-cell\nbob@x.io,\xff\xfe\n";
        let rows: Vec<_> = CsvRows::new(&data[..])
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 3, "no row is dropped");
        assert!(rows[0].errors.is_empty());
        assert_eq!(rows[0].line, Some(2));
        assert_eq!(rows[0].columns["first_name"], "Ada");
        assert_eq!(rows[1].errors[0].line, Some(3));
        assert_eq!(rows[1].errors[0].reason, "expected 2 cells, found 1");
        assert_eq!(rows[2].errors[0].column.as_deref(), Some("first_name"));
        assert_eq!(
            rows[2].raw["email"], "bob@x.io",
            "raw keeps what was readable"
        );
    }

    #[test]
    fn extra_cells_are_kept_in_raw() {
        let data = "email\na@b.io,surplus\n";
        let row = CsvRows::new(data.as_bytes())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(row.raw["_extra"][0], "surplus");
        assert_eq!(row.errors.len(), 1);
    }

    #[test]
    fn payloads_flatten_by_dotted_path() {
        let p = serde_json::json!({"contact": {"email": "a@b.io", "age": 3}, "tags": ["x"]});
        let row = payload_row(&p);
        assert_eq!(row.columns["contact.email"], "a@b.io");
        assert_eq!(row.columns["contact.age"], "3");
        assert!(!row.columns.contains_key("tags"));
        assert_eq!(row.raw, p);
        let bad = payload_row(&serde_json::json!([1, 2]));
        assert_eq!(bad.errors.len(), 1);
    }

    #[test]
    fn nul_characters_are_replaced_and_reported() {
        let data = b"email,first_name\nada@acme.io,A\0da\n";
        let row = CsvRows::new(&data[..]).unwrap().next().unwrap().unwrap();
        assert_eq!(row.raw["first_name"], "A\u{FFFD}da");
        assert_eq!(row.columns["first_name"], "A\u{FFFD}da");
        assert_eq!(row.errors.len(), 1);
        assert_eq!(row.errors[0].column.as_deref(), Some("first_name"));
        assert_eq!(row.errors[0].line, Some(2));

        let p = serde_json::json!({"contact": {"na\0me": ["x\0"], "email": "a@b.io"}});
        let row = payload_row(&p);
        assert!(!contains_nul(&row.raw), "{:?}", row.raw);
        assert_eq!(row.raw["contact"]["na\u{FFFD}me"][0], "x\u{FFFD}");
        assert_eq!(row.columns["contact.email"], "a@b.io");
        assert_eq!(row.errors.len(), 1);
    }

    #[test]
    fn a_file_without_header_is_an_error() {
        assert!(matches!(
            CsvRows::new(&b""[..]),
            Err(IntakeError::EmptyHeader)
        ));
    }
}
