//! Checks that keep a hostile CSV file from being read wrong without a word: header
//! names that cannot be told apart, and quotes that never close.
//!
//! # Header names
//! Every header cell must be valid UTF-8 without NUL, not blank after trimming, not
//! the reserved name `_extra` (where cells past the header are kept) and unique after
//! trimming (case-sensitive, as manifests map names exactly). Otherwise
//! [`CsvRows::new`](crate::intake::CsvRows::new) fails with [`IntakeError::Header`]
//! naming every problem, before any row is read: mapping such a file would overwrite
//! one column with another, or drop a column, silently. A trailing comma on the header
//! line is a blank name too.
//!
//! # Unclosed quotes
//! A quote that opens a cell and never closes turns the rest of the file into that one
//! cell; a quote that closes only where the next cell meant to open one merges the
//! lines between into one row. Neither is a read error for the CSV grammar, so the rows
//! are checked, with this rule:
//!
//! - a quote still open at the end of the input makes the row it opened in invalid,
//!   with the line where it opened and the line where the input ended;
//! - a quoted cell that spans line breaks, where a line of the cell after its first one
//!   reads on its own as a whole record with the header's number of cells (two or
//!   more), makes its row invalid, with the line where the quote opened and the line
//!   that looks like a record.
//!
//! Either way the row is stored invalid with the reason, never split or merged by
//! guesswork. A genuine multi-line cell whose later line happens to hold exactly as
//! many comma-separated parts as the header is reported as well: a row reported for
//! a human to check beats rows merged silently. The checks follow the reader's
//! settings (comma, double quote, doubled quotes as escapes, no comments).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};

use crate::intake::IntakeError;
use crate::model::RowError;

/// What is wrong with one CSV header name (columns are 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderProblem {
    /// The same name (after trimming) heads several columns.
    Duplicate {
        /// The name.
        name: String,
        /// Every column it heads.
        columns: Vec<usize>,
    },
    /// The name is empty or whitespace.
    Blank {
        /// The column.
        column: usize,
    },
    /// The name is not valid UTF-8.
    NotUtf8 {
        /// The column.
        column: usize,
    },
    /// The name contains a NUL character.
    Nul {
        /// The column.
        column: usize,
    },
    /// The name is reserved for cells past the header (`_extra`).
    Reserved {
        /// The column.
        column: usize,
        /// The name.
        name: String,
    },
}

impl fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Duplicate { name, columns } => {
                let columns: Vec<String> = columns.iter().map(usize::to_string).collect();
                write!(f, "`{name}` heads columns {}", columns.join(", "))
            }
            Self::Blank { column } => write!(f, "column {column} has a blank name"),
            Self::NotUtf8 { column } => write!(f, "column {column} has a name that is not UTF-8"),
            Self::Nul { column } => write!(f, "column {column} has a name with a NUL character"),
            Self::Reserved { column, name } => {
                write!(f, "column {column} has the reserved name `{name}`")
            }
        }
    }
}

/// The problems of a header, joined for [`IntakeError::Header`]'s message.
pub(crate) fn describe(problems: &[HeaderProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The key under which cells past the header are kept in a raw row.
pub(crate) const EXTRA_KEY: &str = "_extra";

/// The header names, trimmed, or every problem found (see the module docs). A header
/// without any name (an empty input) is [`IntakeError::EmptyHeader`].
pub(crate) fn header_names(record: &csv::ByteRecord) -> Result<Vec<String>, IntakeError> {
    if record.iter().all(|h| h.trim_ascii().is_empty()) {
        return Err(IntakeError::EmptyHeader);
    }
    let mut names = Vec::with_capacity(record.len());
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, cell) in record.iter().enumerate() {
        let column = i + 1;
        let name = match std::str::from_utf8(cell) {
            Ok(text) => text.trim().to_owned(),
            Err(_) => {
                problems.push(HeaderProblem::NotUtf8 { column });
                String::new()
            }
        };
        if name.contains('\0') {
            problems.push(HeaderProblem::Nul { column });
        } else if name == EXTRA_KEY {
            problems.push(HeaderProblem::Reserved {
                column,
                name: name.clone(),
            });
        } else if name.is_empty() {
            if std::str::from_utf8(cell).is_ok() {
                problems.push(HeaderProblem::Blank { column });
            }
        } else {
            seen.entry(name.clone()).or_default().push(column);
        }
        names.push(name);
    }
    let mut duplicates: Vec<HeaderProblem> = seen
        .into_iter()
        .filter(|(_, columns)| columns.len() > 1)
        .map(|(name, columns)| HeaderProblem::Duplicate { name, columns })
        .collect();
    // Report in column order.
    duplicates.sort_by_key(|p| match p {
        HeaderProblem::Duplicate { columns, .. } => columns.first().copied().unwrap_or(0),
        _ => 0,
    });
    problems.extend(duplicates);
    if problems.is_empty() {
        Ok(names)
    } else {
        Err(IntakeError::Header { problems })
    }
}

/// Where the byte scanner is inside the CSV grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// At the start of a cell.
    CellStart,
    /// Inside a cell that did not start with a quote.
    Unquoted,
    /// Inside a quoted cell.
    Quoted,
    /// Just after a quote inside a quoted cell (closing, or the first of a doubled one).
    QuoteInQuoted,
}

/// Passes the input through unchanged while following the CSV grammar byte by byte,
/// so that a quote still open at the end of the input is known, with the line where
/// it opened. Costs one match per byte.
#[derive(Debug)]
pub(crate) struct QuoteWatch<R> {
    inner: R,
    scan: Scan,
    /// 1-based line of the byte being scanned.
    line: u64,
    /// Line where the last quoted cell opened.
    opened: u64,
    /// The last byte read, to tell the last line of the input.
    last: u8,
    /// Set at the end of the input when a quote is still open: (opened, last line).
    unclosed: Option<(u64, u64)>,
}

impl<R> QuoteWatch<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            scan: Scan::CellStart,
            line: 1,
            opened: 1,
            last: b'\n',
            unclosed: None,
        }
    }

    /// `(line where the quote opened, last line of the input)` when the input ended
    /// inside a quoted cell.
    pub(crate) fn unclosed(&self) -> Option<(u64, u64)> {
        self.unclosed
    }

    fn step(&mut self, byte: u8) {
        self.last = byte;
        if byte == b'\n' {
            self.line += 1;
        }
        let ends_cell = matches!(byte, b',' | b'\n' | b'\r');
        self.scan = match (self.scan, byte) {
            (Scan::CellStart, b'"') => {
                self.opened = self.line;
                Scan::Quoted
            }
            (Scan::CellStart | Scan::Unquoted | Scan::QuoteInQuoted, _) if ends_cell => {
                Scan::CellStart
            }
            (Scan::CellStart | Scan::Unquoted, _) => Scan::Unquoted,
            (Scan::Quoted, b'"') => Scan::QuoteInQuoted,
            (Scan::Quoted, _) => Scan::Quoted,
            (Scan::QuoteInQuoted, b'"') => Scan::Quoted,
            // The reader keeps text after a closing quote in the cell.
            (Scan::QuoteInQuoted, _) => Scan::Unquoted,
        };
    }
}

impl<R: Read> Read for QuoteWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.scan == Scan::Quoted {
            let last = if self.last == b'\n' {
                self.line.saturating_sub(1)
            } else {
                self.line
            };
            self.unclosed = Some((self.opened, last));
        }
        for &byte in buf.get(..n).unwrap_or_default() {
            self.step(byte);
        }
        Ok(n)
    }
}

/// The quote problem of one row, if any (see the module docs). `start` is the row's
/// first line, `headers` the header names, `unclosed` what [`QuoteWatch::unclosed`]
/// said after the row was read.
pub(crate) fn quote_error(
    record: &csv::ByteRecord,
    start: Option<u64>,
    headers: &[String],
    unclosed: Option<(u64, u64)>,
) -> Option<RowError> {
    let start = start?;
    if let Some((opened, last)) = unclosed
        && opened >= start
    {
        let column = cell_at_line(record, start, opened).and_then(|i| headers.get(i).cloned());
        return Some(RowError {
            line: Some(opened),
            column,
            reason: format!(
                "a quote opened on line {opened} is never closed: the rest of the input \
                 (to line {last}) was read as one cell; close the quote"
            ),
        });
    }
    if headers.len() < 2 {
        return None;
    }
    let mut line = start;
    for (i, cell) in record.iter().enumerate() {
        let breaks = count_newlines(cell);
        if breaks > 0 {
            let fragments = cell.split(|b| *b == b'\n').enumerate().skip(1);
            for (offset, fragment) in fragments {
                if cells_in_line(fragment) == headers.len() {
                    let offset = u64::try_from(offset).unwrap_or(u64::MAX);
                    let suspect = line.saturating_add(offset);
                    return Some(RowError {
                        line: Some(line),
                        column: headers.get(i).cloned(),
                        reason: format!(
                            "the quoted cell opened on line {line} spans {breaks} line \
                             break(s), and its line {suspect} reads as a whole record of {} \
                             cells: probably an unclosed quote merged rows",
                            headers.len()
                        ),
                    });
                }
            }
        }
        line = line.saturating_add(breaks);
    }
    None
}

fn count_newlines(bytes: &[u8]) -> u64 {
    let n = bytes.iter().filter(|b| **b == b'\n').count();
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The index of the cell that starts on `line`, for a record starting on `start`
/// (the last such cell: a quote opens at the start of a cell).
fn cell_at_line(record: &csv::ByteRecord, start: u64, line: u64) -> Option<usize> {
    let mut current = start;
    let mut found = None;
    for (i, cell) in record.iter().enumerate() {
        if current == line {
            found = Some(i);
        }
        current = current.saturating_add(count_newlines(cell));
        if current > line {
            break;
        }
    }
    found
}

/// How many cells one line holds under the reader's grammar (0 for a blank line).
fn cells_in_line(line: &[u8]) -> usize {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.trim_ascii().is_empty() {
        return 0;
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line);
    let mut record = csv::ByteRecord::new();
    match reader.read_byte_record(&mut record) {
        Ok(true) => record.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::source::{CsvRows, RawRow};

    fn read(data: &[u8]) -> Vec<RawRow> {
        CsvRows::new(data)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    fn header_problems(data: &[u8]) -> Vec<HeaderProblem> {
        match CsvRows::new(data) {
            Err(IntakeError::Header { problems }) => problems,
            other => panic!("expected a header error, got {other:?}"),
        }
    }

    #[test]
    fn duplicate_and_blank_headers_are_an_error_naming_the_columns() {
        let problems = header_problems(b"email,name,email,,,_extra\na,b,c,d,e,f\n");
        assert_eq!(
            problems,
            vec![
                HeaderProblem::Blank { column: 4 },
                HeaderProblem::Blank { column: 5 },
                HeaderProblem::Reserved {
                    column: 6,
                    name: "_extra".into()
                },
                HeaderProblem::Duplicate {
                    name: "email".into(),
                    columns: vec![1, 3]
                },
            ]
        );
        let message = CsvRows::new(&b"email, email \n"[..])
            .unwrap_err()
            .to_string();
        assert!(message.contains("`email` heads columns 1, 2"), "{message}");
        assert_eq!(
            header_problems(b"email,name,\n"),
            vec![HeaderProblem::Blank { column: 3 }],
            "a trailing comma is a blank name"
        );
    }

    #[test]
    fn undecodable_headers_are_an_error() {
        assert_eq!(
            header_problems(b"email,na\xffme\nx,y\n"),
            vec![HeaderProblem::NotUtf8 { column: 2 }]
        );
        assert_eq!(
            header_problems(b"em\0ail,name\nx,y\n"),
            vec![HeaderProblem::Nul { column: 1 }]
        );
        assert!(
            !CsvRows::new(&b"em\0ail,name\n"[..])
                .unwrap_err()
                .is_retryable()
        );
    }

    #[test]
    fn a_quote_open_at_the_end_of_the_file_is_reported_with_its_line() {
        // Opened in the last column: three more records swallowed.
        let data =
            b"email,name,title\na@x.io,Ada,\"CTO\nb@x.io,Bob,CEO\nc@x.io,Cy,CFO\nd@x.io,Di,COO\n";
        let rows = read(data);
        assert_eq!(rows.len(), 1, "the reader itself merges them");
        let errors = &rows[0].errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, Some(2));
        assert_eq!(errors[0].column.as_deref(), Some("title"));
        assert!(errors[0].reason.contains("never closed"), "{errors:?}");
        assert!(errors[0].reason.contains("to line 5"), "{errors:?}");

        // Opened on the last line, nothing else swallowed, no final newline.
        let rows = read(b"email,name\na@x.io,Ada\nb@x.io,\"Bob");
        assert_eq!(rows.len(), 2);
        assert!(rows[0].errors.is_empty());
        assert_eq!(rows[1].errors.len(), 1);
        assert_eq!(rows[1].errors[0].line, Some(3));
        assert_eq!(rows[1].errors[0].column.as_deref(), Some("name"));
    }

    #[test]
    fn a_quote_that_swallows_records_mid_file_is_reported() {
        // The quote opened in `name` on line 2 closes where line 4 meant to open one.
        let data = b"email,name,title\na@x.io,\"Ada,CTO\nb@x.io,Bob,CEO\nc@x.io,\"Cy\",CFO\ne@x.io,Eve,CIO\n";
        let rows = read(data);
        assert_eq!(rows.len(), 2, "{rows:?}");
        let bad = &rows[0];
        let quote = bad
            .errors
            .iter()
            .find(|e| e.reason.contains("unclosed quote"))
            .expect("reported");
        assert_eq!(quote.line, Some(2));
        assert_eq!(quote.column.as_deref(), Some("name"));
        assert!(quote.reason.contains("line 3"), "{quote:?}");
        assert!(rows[1].errors.is_empty(), "the next row reads as usual");
        assert_eq!(rows[1].line, Some(5));
    }

    #[test]
    fn genuine_multi_line_cells_and_escaped_quotes_pass() {
        let data = b"email,note,title\na@x.io,\"line one\nline two, still note\",CTO\nb@x.io,\"say \"\"hi\"\"\",CEO\nc@x.io,5\" disk,CFO\n";
        let rows = read(data);
        assert_eq!(rows.len(), 3);
        for row in &rows {
            assert!(row.errors.is_empty(), "{row:?}");
        }
        assert_eq!(rows[0].columns["note"], "line one\nline two, still note");
        assert_eq!(rows[1].columns["note"], "say \"hi\"");
        assert_eq!(rows[2].line, Some(5));
    }

    #[test]
    fn the_scanner_follows_the_reader_grammar() {
        let mut watch = QuoteWatch::new(&b"a,\"b\"\"c\",d\"e\n\"f"[..]);
        let mut out = Vec::new();
        watch.read_to_end(&mut out).unwrap();
        assert_eq!(watch.unclosed(), Some((2, 2)));
        let mut watch = QuoteWatch::new(&b"a,\"b\nc\"\n"[..]);
        watch.read_to_end(&mut out).unwrap();
        assert_eq!(watch.unclosed(), None);
    }
}
