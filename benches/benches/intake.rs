//! CSV intake on PostgreSQL: `IntakeService::import` streaming a generated CSV (one
//! million rows by default) through mapping, normalization (E.164 phones, domains),
//! fingerprinting and one `COPY` per 10,000-row batch into the intake buffer (with its
//! fingerprint lookup and processing jobs), against a raw
//! `COPY ... FROM STDIN` of the same rows into the same table in the same run (the
//! baseline parses the CSV and computes the fingerprint too, but normalizes nothing).
//! Prints the rate ratio (target: at least 0.5x the COPY rate).
//!
//! `cargo bench -p benches --bench intake` (PostgreSQL from `DATABASE_URL`; size:
//! `BENCH_INTAKE_ROWS`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fmt::Write as _;
use std::sync::Arc;

use benches::{rate, seeded, size, timed};
use chrono::{TimeZone, Utc};
use crm_core::ids::WorkspaceId;
use crm_core::intake::{CsvRows, IntakeService, Manifest};
use crm_core::model::{Fingerprint, IntakeSource};
use crm_core::{Clock, DynStore, ManualClock, SystemClock};
use rand::RngExt;
use sqlx::PgPool;
use sqlx::postgres::PgPoolCopyExt;
use uuid::Uuid;

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
            "Lead,Number {n},lead{n}@c{company}.example,+49 151 {:07},Company {company},https://www.c{company}.example,Buyer,https://www.linkedin.com/in/lead{n}",
            rng.random_range(0..10_000_000)
        )
        .unwrap();
    }
    out
}

/// The baseline: parse the CSV, fingerprint each row, and `COPY` the rows in as
/// pending intake records.
async fn raw_copy(pool: &PgPool, ws: WorkspaceId, data: &str) -> u64 {
    let now = SystemClock.now().to_rfc3339();
    let mut reader = csv::Reader::from_reader(data.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let mut copy = pool
        .copy_in_raw(
            "COPY intake_records (workspace_id, id, source, source_ref, line, raw, fingerprint,
                 status, errors, received_at, updated_at, version)
             FROM STDIN WITH (FORMAT csv)",
        )
        .await
        .unwrap();
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
                now.as_str(),
                now.as_str(),
                "1",
            ])
            .unwrap();
        rows += 1;
        if rows.is_multiple_of(10_000) {
            let full = std::mem::replace(&mut writer, csv::Writer::from_writer(Vec::new()));
            copy.send(full.into_inner().unwrap()).await.unwrap();
        }
    }
    copy.send(writer.into_inner().unwrap()).await.unwrap();
    copy.finish().await.unwrap();
    rows
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rows = size("BENCH_INTAKE_ROWS", 1_000_000, 2_000);
    let data = csv(rows);
    let pg = crm_store_postgres::testing::fresh_store().await;
    let pool = pg.pool().clone();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap());
    let store: Arc<DynStore> = Arc::new(pg);
    let service = IntakeService::new(store, Arc::new(clock.clone())).with_batch_size(10_000);

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
    assert_eq!(report.rows as usize, rows);
    assert_eq!(report.pending as usize, rows, "{report:?}");

    let (copied, baseline) = timed(raw_copy(&pool, WorkspaceId::new(), &data)).await;
    assert_eq!(copied as usize, rows);

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
    println!(
        "intake/postgres ratio import/COPY = {:.2}x (target >= 0.50x)",
        engine_rate / copy_rate
    );
}
