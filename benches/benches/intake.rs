//! CSV intake on PostgreSQL: `IntakeService::import` streaming a generated CSV (one
//! million rows by default) through mapping, normalization (E.164 phones, domains),
//! fingerprinting and one `COPY` per 10,000-row batch into the intake buffer (with its
//! fingerprint lookup and processing jobs), the next batch prepared while the current
//! one is stored; against a hand-written `COPY ... FROM STDIN` of the same rows into an
//! equally empty intake buffer (a fresh schema of the same database), parsed,
//! fingerprinted and encoded on a blocking thread one batch ahead of the `COPY`, the
//! same overlap (the baseline normalizes nothing and looks nothing up). Target: at
//! least 0.5x the baseline's rate.
//!
//! `cargo bench -p benches --bench intake` (PostgreSQL from `DATABASE_URL`; size:
//! `BENCH_INTAKE_ROWS`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fmt::Write as _;
use std::sync::Arc;

use benches::{Bound, check, rate, report_ratio, seeded, size, timed};
use chrono::{TimeZone, Utc};
use crm_core::ids::WorkspaceId;
use crm_core::intake::{CsvRows, IntakeService, Manifest};
use crm_core::model::{Fingerprint, IntakeSource};
use crm_core::{Clock, DynStore, ManualClock, SystemClock};
use rand::RngExt;
use sqlx::PgPool;
use sqlx::postgres::PgPoolCopyExt;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Rows per batch, for the engine and the baseline.
const BATCH: usize = 10_000;

const HEADER: &str = "first_name,last_name,email,phone,company,website,title,linkedin_url\n";

/// `rows` distinct leads in the standard manifest's columns.
fn csv(rows: usize) -> String {
    let mut rng = seeded(7);
    let mut out = String::with_capacity(rows * 160);
    out.push_str(HEADER);
    for n in 0..rows {
        let company = rng.random_range(0..5000);
        writeln!(
            out,
            "Lead,Number {n},lead{n}@c{company}.example,+49 151 1{:07},Company {company},https://www.c{company}.example,Buyer,https://www.linkedin.com/in/lead{n}",
            rng.random_range(0..10_000_000)
        )
        .unwrap();
    }
    out
}

/// Parses `data` and encodes each batch of `BATCH` rows as `COPY` text (the raw row as
/// JSON, its fingerprint), sending each encoded batch to `out` as soon as it is ready.
fn encode_batches(ws: WorkspaceId, data: &str, now: &str, out: &mpsc::Sender<Vec<u8>>) -> u64 {
    let mut reader = csv::Reader::from_reader(data.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let mut rows = 0u64;
    let mut writer = csv::Writer::from_writer(Vec::new());
    for (line, record) in reader.records().enumerate() {
        let record = record.unwrap();
        let raw: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .zip(record.iter())
            .map(|(h, v)| (h.to_owned(), serde_json::Value::from(v)))
            .collect();
        let email = record.get(2).unwrap_or("");
        let domain = email.rsplit('@').next();
        let fingerprint = Fingerprint::compute(Some(email), domain, record.get(7));
        writer
            .write_record([
                ws.to_string().as_str(),
                Uuid::now_v7().to_string().as_str(),
                "csv",
                "bench.csv",
                (line + 2).to_string().as_str(),
                serde_json::Value::Object(raw).to_string().as_str(),
                fingerprint.as_str(),
                "pending",
                "[]",
                now,
                now,
                "1",
            ])
            .unwrap();
        rows += 1;
        if rows.is_multiple_of(BATCH as u64) {
            let full = std::mem::replace(&mut writer, csv::Writer::from_writer(Vec::new()));
            out.blocking_send(full.into_inner().unwrap()).unwrap();
        }
    }
    out.blocking_send(writer.into_inner().unwrap()).unwrap();
    rows
}

/// The baseline: the CSV parsed, fingerprinted and encoded on a blocking thread one
/// batch ahead of the `COPY` (the engine's overlap: the next batch is prepared while
/// the current one is stored), streamed into the intake buffer of a fresh, empty
/// schema as pending records.
async fn raw_copy(pool: &PgPool, ws: WorkspaceId, data: Arc<String>) -> u64 {
    let now = SystemClock.now().to_rfc3339();
    let mut copy = pool
        .copy_in_raw(
            "COPY intake_records (workspace_id, id, source, source_ref, line, raw, fingerprint,
                 status, errors, received_at, updated_at, version)
             FROM STDIN WITH (FORMAT csv)",
        )
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1);
    let producer = tokio::task::spawn_blocking(move || encode_batches(ws, &data, &now, &tx));
    while let Some(batch) = rx.recv().await {
        copy.send(batch).await.unwrap();
    }
    let rows = producer.await.unwrap();
    let copied = copy.finish().await.unwrap();
    check(copied == rows, || {
        format!("intake: COPY stored {copied} of {rows} rows")
    });
    rows
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rows = size("BENCH_INTAKE_ROWS", 1_000_000, 2_000);
    let data = csv(rows);
    let pg = crm_store_postgres::testing::fresh_store().await;
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap());
    let store: Arc<DynStore> = Arc::new(pg);
    let service = IntakeService::new(store, Arc::new(clock.clone())).with_batch_size(BATCH);

    let ws = WorkspaceId::new();
    let (report, engine) = timed(async {
        let source = CsvRows::new(data.as_bytes()).unwrap();
        service
            .import(
                ws,
                IntakeSource::Csv,
                "bench.csv",
                &Manifest::standard(),
                source,
            )
            .await
            .unwrap()
    })
    .await;
    check(
        report.rows as usize == rows && report.pending as usize == rows,
        || format!("intake: the import reported {report:?} for {rows} rows"),
    );

    // The baseline writes into an equally empty intake buffer: a fresh schema.
    let empty = crm_store_postgres::testing::fresh_store().await;
    let data = Arc::new(data);
    let (copied, baseline) = timed(raw_copy(empty.pool(), WorkspaceId::new(), data)).await;
    check(copied as usize == rows, || {
        format!("intake: the baseline copied {copied} of {rows} rows")
    });

    let engine_rate = rate(report.rows, engine);
    let copy_rate = rate(copied, baseline);
    println!(
        "intake/postgres import {rows} rows in {:.2} s = {engine_rate:>8.0} rows/s ({} processing jobs queued)",
        engine.as_secs_f64(),
        report.jobs
    );
    println!(
        "intake/postgres raw COPY {copied} rows in {:.2} s = {copy_rate:>8.0} rows/s",
        baseline.as_secs_f64()
    );
    report_ratio(
        "intake.import_vs_copy",
        engine_rate / copy_rate,
        Bound::AtLeast,
        0.5,
    );
}
