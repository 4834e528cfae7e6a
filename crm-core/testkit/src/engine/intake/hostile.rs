//! Hostile CSV input through the real [`IntakeService`]: byte-order marks, CR and
//! mixed line endings, 1 MB cells, thousands of columns, invalid UTF-8, bidi and
//! zero-width characters, internationalised addresses, spreadsheet formula cells,
//! tens of thousands of duplicates and odd phone formats.
//!
//! Every case asserts that each input row is accounted for (stored pending, invalid
//! with a reason, or a duplicate) with exact counts, the same on every store since the
//! same case runs on each; that every stored row can be listed and read back; and,
//! where it processes, that no row is left pending and every contact reads back.

use std::sync::Arc;

use crm_core::DynStore;
use crm_core::clock::{Clock, ManualClock};
use crm_core::ids::{ContactId, IntakeRecordId, WorkspaceId};
use crm_core::intake::{CsvRows, ImportReport, IntakeService, Manifest};
use crm_core::model::{IntakeRecord, IntakeSource, IntakeStatus};
use crm_core::store::Page;

use crate::store::fixtures::{at, ok, unique};

fn service(store: &Arc<DynStore>) -> IntakeService {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(at(0)));
    IntakeService::new(store.clone(), clock).with_batch_size(1000)
}

/// Imports `csv` bytes with the standard manifest.
async fn import(svc: &IntakeService, ws: WorkspaceId, csv: Vec<u8>) -> ImportReport {
    let rows = match CsvRows::new(std::io::Cursor::new(csv)) {
        Ok(rows) => rows,
        Err(e) => panic!("the header is readable: {e:?}"),
    };
    match svc
        .import(
            ws,
            IntakeSource::Csv,
            "hostile.csv",
            &Manifest::standard(),
            rows,
        )
        .await
    {
        Ok(report) => report,
        Err(e) => panic!("the import completes: {e:?}"),
    }
}

/// Every intake row of `ws`, page by page.
async fn all_rows(store: &DynStore, ws: WorkspaceId) -> Vec<IntakeRecord> {
    let mut rows: Vec<IntakeRecord> = Vec::new();
    loop {
        let page = match rows.last() {
            Some(last) => Page::after(last.id, 1000),
            None => Page::<IntakeRecordId>::first(1000),
        };
        let batch = ok(store.list_intake(ws, None, page).await, "list_intake");
        let done = batch.len() < 1000;
        rows.extend(batch);
        if done {
            return rows;
        }
    }
}

/// Asserts the report has exactly `expected` (rows, pending, duplicates, invalid),
/// that the stored rows agree with it, that each invalid row says why, and that each
/// stored row reads back as listed (a sample of up to 50 for large imports).
async fn accounted(
    store: &DynStore,
    ws: WorkspaceId,
    report: &ImportReport,
    expected: (u64, u64, u64, u64),
    what: &str,
) -> Vec<IntakeRecord> {
    assert_eq!(
        (
            report.rows,
            report.pending,
            report.duplicates,
            report.invalid
        ),
        expected,
        "{what}: (rows, pending, duplicates, invalid)"
    );
    assert_eq!(
        report.pending + report.duplicates + report.invalid,
        report.rows,
        "{what}: every row is accounted for"
    );
    let rows = all_rows(store, ws).await;
    let count = |s: IntakeStatus| rows.iter().filter(|r| r.status == s).count() as u64;
    assert_eq!(
        rows.len() as u64,
        report.rows,
        "{what}: every row is stored"
    );
    assert_eq!(count(IntakeStatus::Pending), report.pending, "{what}");
    assert_eq!(count(IntakeStatus::Duplicate), report.duplicates, "{what}");
    assert_eq!(count(IntakeStatus::Invalid), report.invalid, "{what}");
    for row in &rows {
        if row.status == IntakeStatus::Invalid {
            assert!(
                row.errors.iter().any(|e| !e.reason.is_empty()),
                "{what}: an invalid row says why"
            );
        }
    }
    let step = (rows.len() / 50).max(1);
    for row in rows.iter().step_by(step) {
        let back = ok(store.get_intake(ws, row.id).await, "get_intake");
        assert_eq!(&back, row, "{what}: a stored row reads back as listed");
    }
    rows
}

/// Processes every pending row; asserts none is left pending and returns how many
/// contacts the workspace has, each read back by id.
async fn process_all(
    store: &DynStore,
    svc: &IntakeService,
    ws: WorkspaceId,
    rows: &[IntakeRecord],
    what: &str,
) -> usize {
    let pending: Vec<IntakeRecordId> = rows
        .iter()
        .filter(|r| r.status == IntakeStatus::Pending)
        .map(|r| r.id)
        .collect();
    for chunk in pending.chunks(500) {
        if let Err(e) = svc
            .process_batch(ws, chunk, &Manifest::standard(), true)
            .await
        {
            panic!("{what}: processing completes: {e:?}");
        }
    }
    let after = all_rows(store, ws).await;
    assert!(
        after.iter().all(|r| r.status != IntakeStatus::Pending),
        "{what}: no row is left pending"
    );
    assert!(
        after
            .iter()
            .filter(|r| r.status == IntakeStatus::Failed)
            .all(|r| !r.errors.is_empty()),
        "{what}: a failed row says why"
    );
    let contacts = ok(
        store
            .list_contacts(ws, Page::<ContactId>::first(1000))
            .await,
        "list_contacts",
    );
    for c in &contacts {
        let back = ok(store.get_contact(ws, c.id).await, "get_contact");
        assert_eq!(&back, c, "{what}: a contact reads back as listed");
    }
    let processed = after
        .iter()
        .filter(|r| r.status == IntakeStatus::Processed)
        .count();
    assert!(contacts.len() <= processed, "{what}");
    contacts.len()
}

/// A UTF-8 byte-order mark before the header, and rows ended by CRLF, lone CR and LF
/// in one file: the header still maps and every row is read once.
pub async fn hostile_bom_and_mixed_line_endings(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let svc = service(&store);
    let tag = unique("le");
    let csv = format!(
        "\u{FEFF}email,name\r\na-{tag}@acme.io,Ada Lovelace\rb-{tag}@acme.io,Bob Byte\nc-{tag}@acme.io,Cy Crlf\r\n\r\nd-{tag}@acme.io,Di Last"
    );
    let report = import(&svc, ws, csv.into_bytes()).await;
    let rows = accounted(store.as_ref(), ws, &report, (4, 4, 0, 0), "line endings").await;
    assert!(
        rows.iter().all(|r| r.raw["email"].as_str().is_some()),
        "the BOM does not hide the email column"
    );
    assert_eq!(
        process_all(store.as_ref(), &svc, ws, &rows, "line endings").await,
        4
    );
}

/// A 1 MB cell makes its row invalid (past the name limit) without touching its
/// neighbours; a header of 5,000 columns maps the known ones and keeps the rest.
pub async fn hostile_huge_cells_and_columns(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let svc = service(&store);
    let tag = unique("big");
    let huge = "x".repeat(1 << 20);
    let csv = format!(
        "email,name,title\na-{tag}@acme.io,Ada,CEO\nb-{tag}@acme.io,{huge},CTO\nc-{tag}@acme.io,Cy,{huge}\n"
    );
    let report = import(&svc, ws, csv.into_bytes()).await;
    let rows = accounted(store.as_ref(), ws, &report, (3, 1, 0, 2), "1 MB cells").await;
    assert_eq!(
        process_all(store.as_ref(), &svc, ws, &rows, "1 MB cells").await,
        1
    );

    let ws = WorkspaceId::new();
    let mut header = String::from("email,name");
    let mut row = format!("w-{tag}@acme.io,Wide");
    for i in 0..5000 {
        header.push_str(&format!(",c{i}"));
        row.push_str(&format!(",v{i}"));
    }
    let csv = format!("{header}\n{row}\n{row}\n");
    let report = import(&svc, ws, csv.into_bytes()).await;
    let rows = accounted(store.as_ref(), ws, &report, (2, 1, 1, 0), "5,000 columns").await;
    assert_eq!(
        process_all(store.as_ref(), &svc, ws, &rows, "5,000 columns").await,
        1
    );
}

/// Invalid UTF-8 in a cell makes only that row invalid, with the bytes replaced.
pub async fn hostile_invalid_utf8(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let svc = service(&store);
    let tag = unique("utf");
    let mut csv = format!("email,name\na-{tag}@acme.io,Ada\nb-{tag}@acme.io,B").into_bytes();
    csv.extend_from_slice(&[0xff, 0xfe, b'o', b'b', b'\n']);
    csv.extend_from_slice(format!("c-{tag}@acme.io,Cy\n").as_bytes());
    let report = import(&svc, ws, csv).await;
    let rows = accounted(store.as_ref(), ws, &report, (3, 2, 0, 1), "invalid UTF-8").await;
    assert_eq!(
        process_all(store.as_ref(), &svc, ws, &rows, "invalid UTF-8").await,
        2
    );
}

/// Bidi controls, zero-width characters and internationalised addresses are stored
/// as given or refused with a reason, never lost.
pub async fn hostile_unicode_names_and_addresses(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let svc = service(&store);
    let tag = unique("uni");
    let csv = format!(
        "email,name\n\
         a-{tag}@acme.io,\u{202E}ecalevoL adA\n\
         b-{tag}@acme.io,Zero\u{200B}Width\u{FEFF}Name\n\
         c\u{200B}-{tag}@acme.io,Hidden Space\n\
         josé-{tag}@bücher.example,José Müller\n\
         用户-{tag}@例子.广告,李 小龙\n\
         d-{tag}@xn--bcher-kva.example,Punycode Domain\n\
         e-{tag}@acme.io\u{202E},Trailing Bidi\n"
    );
    let report = import(&svc, ws, csv.into_bytes()).await;
    let rows = accounted(store.as_ref(), ws, &report, (7, 5, 0, 2), "unicode").await;
    assert_eq!(
        process_all(store.as_ref(), &svc, ws, &rows, "unicode").await,
        5
    );
}

/// Spreadsheet formula cells are data: stored as given (raw untouched) or refused
/// with a reason, never evaluated or dropped.
pub async fn hostile_formula_cells(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let svc = service(&store);
    let tag = unique("fx");
    let csv = format!(
        "email,name,title\n\
         a-{tag}@acme.io,=HYPERLINK(\"http://evil.example\";\"click\"),CEO\n\
         b-{tag}@acme.io,Bob,+SUM(A1:A9)\n\
         =1+1,Cy,-2+3\n\
         @SUM(1),Di,CTO\n"
    );
    let report = import(&svc, ws, csv.into_bytes()).await;
    let rows = accounted(store.as_ref(), ws, &report, (4, 2, 0, 2), "formulas").await;
    assert!(
        rows.iter()
            .any(|r| r.raw["name"] == "=HYPERLINK(\"http://evil.example\";\"click\")"),
        "the formula is kept as text"
    );
    assert_eq!(
        process_all(store.as_ref(), &svc, ws, &rows, "formulas").await,
        2
    );
}

/// 20,000 rows with one address: one pending row and 19,999 duplicates.
pub async fn hostile_tens_of_thousands_of_duplicates(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let svc = service(&store);
    let email = format!("{}@acme.io", unique("dup"));
    let mut csv = String::from("email,name\n");
    for i in 0..20_000 {
        csv.push_str(&format!("{email},Copy {i}\n"));
    }
    let report = import(&svc, ws, csv.into_bytes()).await;
    let rows = accounted(
        store.as_ref(),
        ws,
        &report,
        (20_000, 1, 19_999, 0),
        "duplicates",
    )
    .await;
    assert_eq!(
        process_all(store.as_ref(), &svc, ws, &rows, "duplicates").await,
        1
    );
}

/// Odd phone formats: E.164 with punctuation, the 00 prefix, `tel:` links, letters,
/// extensions, doubled plus signs and bare local numbers without a default region.
/// The parser accepts vanity letters, `tel:`, extensions and a doubled plus (5
/// pending); the 00 prefix and a local number without a default region, a lone plus
/// and too many digits are invalid with a reason (4).
pub async fn hostile_odd_phone_formats(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let svc = service(&store);
    let csv = "name,phone\n\
               P1,+1 (415) 555-0100\n\
               P2,0049 30 901820\n\
               P3,tel:+44-20-7946-0958\n\
               P4,1-800-FLOWERS\n\
               P5,+49 30 901820 ext. 5\n\
               P6,++49 30 901820\n\
               P7,030 901820\n\
               P8,+\n\
               P9,+1 415 555 0100 0100 0100 0100\n";
    let report = import(&svc, ws, csv.as_bytes().to_vec()).await;
    let rows = accounted(store.as_ref(), ws, &report, (9, 5, 0, 4), "phones").await;
    assert_eq!(
        process_all(store.as_ref(), &svc, ws, &rows, "phones").await,
        5
    );
}

/// An unclosed quote never merges rows silently: opened in the last column it swallows
/// the following lines into one row that is invalid and names the line where the
/// quote opened; opened mid-file, the swallowing row is invalid and the rows after it
/// read as usual. Duplicate, blank or reserved header names refuse the file before any
/// row is stored.
pub async fn hostile_unclosed_quotes_and_bad_headers(store: Arc<DynStore>) {
    let svc = service(&store);
    let tag = unique("quote");

    let ws = WorkspaceId::new();
    let csv = format!(
        "email,name,title\na-{tag}@x.io,Ada,\"CTO\nb-{tag}@x.io,Bob,CEO\nc-{tag}@x.io,Cy,CFO\nd-{tag}@x.io,Di,COO\n"
    );
    let report = import(&svc, ws, csv.into_bytes()).await;
    let rows = accounted(store.as_ref(), ws, &report, (1, 0, 0, 1), "quote to EOF").await;
    let quote = rows[0]
        .errors
        .iter()
        .find(|e| e.reason.contains("never closed"))
        .unwrap_or_else(|| panic!("the unclosed quote is reported: {:?}", rows[0].errors));
    assert_eq!(quote.line, Some(2), "the line where the quote opened");

    let ws = WorkspaceId::new();
    let csv = format!(
        "email,name,title\na-{tag}@x.io,\"Ada,CTO\nb-{tag}@x.io,Bob,CEO\nc-{tag}@x.io,\"Cy\",CFO\ne-{tag}@x.io,Eve,CIO\n"
    );
    let report = import(&svc, ws, csv.into_bytes()).await;
    let rows = accounted(store.as_ref(), ws, &report, (2, 1, 0, 1), "quote mid-file").await;
    let bad = rows
        .iter()
        .find(|r| r.status == IntakeStatus::Invalid)
        .unwrap_or_else(|| panic!("one row is invalid"));
    assert!(
        bad.errors
            .iter()
            .any(|e| e.reason.contains("unclosed quote")),
        "{:?}",
        bad.errors
    );
    assert_eq!(
        process_all(store.as_ref(), &svc, ws, &rows, "quote mid-file").await,
        1
    );

    let ws = WorkspaceId::new();
    let header = CsvRows::new(std::io::Cursor::new(
        format!("email,name,email,,,_extra\na-{tag}@x.io,Ada,b-{tag}@x.io,,,\n").into_bytes(),
    ));
    let Err(err) = header else {
        panic!("duplicate, blank and reserved header names are refused");
    };
    assert!(
        err.to_string().contains("`email` heads columns 1, 3"),
        "{err}"
    );
    assert!(
        all_rows(store.as_ref(), ws).await.is_empty(),
        "nothing is stored from a refused file"
    );
}
