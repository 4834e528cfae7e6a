//! A full rescore on PostgreSQL: `Scorer::rescore_all` over every contact of a
//! workspace (pages of 1000: read the scoring inputs, score, write the page's scores in
//! one statement, append the page's tier events in one statement), against a raw SQL
//! baseline in the same database and run: the same keyset pages read with a plain
//! contacts + accounts + activity-count query, scored by hand-written Rust, and written
//! with one `INSERT ... SELECT FROM unnest ... ON CONFLICT DO UPDATE` per page into an
//! equivalent table. Prints time ratios (target: at most 1.5x the baseline) for the
//! first rescore (every contact changes tier, so every contact gets its events) and for
//! a steady-state rescore (the nightly decay run, few tier changes: most scores are
//! unchanged and the engine skips writing them), and for the rescore after a model
//! change (every score gets the new model version, so every row is rewritten).
//!
//! `cargo bench -p benches --bench rescore` (PostgreSQL from `DATABASE_URL`; size:
//! `BENCH_RESCORE_CONTACTS`, default 1,000,000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration as StdDuration;

use benches::{size, timed};
use chrono::{Duration, TimeZone, Utc};
use crm_core::ids::WorkspaceId;
use crm_core::money::Currency;
use crm_core::scoring::{
    Behavior, BehavioralFactor, Firmographics, IndustryFactor, RangeFactor, Scorer, ScoringModel,
    Weights,
};
use crm_core::{Clock, DynStore, ManualClock};
use sqlx::PgPool;
use uuid::Uuid;

const PAGE: i64 = 1000;

fn model(ws: WorkspaceId, now: chrono::DateTime<Utc>) -> ScoringModel {
    let mut m = ScoringModel::new(
        ws,
        Weights {
            firmographic: 60,
            behavioral: 40,
            intent: 0,
        },
        now,
    )
    .unwrap();
    m.firmographics = Firmographics {
        employee_ranges: vec![
            RangeFactor {
                min: 0,
                max: Some(49),
                points: 10,
            },
            RangeFactor {
                min: 50,
                max: Some(999),
                points: 60,
            },
            RangeFactor {
                min: 1000,
                max: None,
                points: 40,
            },
        ],
        industries: vec![IndustryFactor {
            industry: "Software".into(),
            points: 40,
        }],
        revenue_ranges: vec![RangeFactor {
            min: 100_000_000_i64,
            max: None,
            points: 30,
        }],
        revenue_currency: Some(Currency::new("USD").unwrap()),
    };
    m.behavioral = vec![
        BehavioralFactor {
            behavior: Behavior::Open,
            points: 20,
            max_points: 60,
            decay_days: 30,
        },
        BehavioralFactor {
            behavior: Behavior::Click,
            points: 40,
            max_points: 80,
            decay_days: 30,
        },
    ];
    m
}

/// `count` contacts over 100 accounts, a fifth of them with recent opens and clicks.
async fn fill(pool: &PgPool, ws: WorkspaceId, count: i64, now: chrono::DateTime<Utc>) {
    let ws = ws.as_uuid();
    sqlx::query(
        "INSERT INTO accounts (workspace_id, id, name, domain, industry, employee_count,
             annual_revenue_minor, annual_revenue_currency, created_at, updated_at, version)
         SELECT $1, gen_random_uuid(), 'Account ' || n, 'a' || n || '.example',
             (ARRAY['Software', 'Retail', 'Food'])[1 + n % 3], (n * 37) % 5000,
             (n * 7919) % 500000000, 'USD', $2, $2, 1
         FROM generate_series(1, 100) n",
    )
    .bind(ws)
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO contacts (workspace_id, id, first_name, last_name, email, account_id,
             custom_fields, created_at, updated_at, version)
         SELECT $1, gen_random_uuid(), 'Lead', n::text, 'lead' || n || '@bench.example',
             a.ids[1 + n % 100], '{}', $2, $2, 1
         FROM generate_series(1, $3) n,
              (SELECT array_agg(id ORDER BY id) AS ids FROM accounts WHERE workspace_id = $1) a",
    )
    .bind(ws)
    .bind(now)
    .bind(count)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO activities (workspace_id, id, contact_id, kind, summary, details,
             occurred_at)
         SELECT $1, gen_random_uuid(), c.id, k.kind, k.kind, '{}',
             $2 - make_interval(hours => (abs(hashtext(c.id::text || k.kind)) % 960))
         FROM contacts c CROSS JOIN (VALUES ('opened'), ('clicked')) k(kind)
         WHERE c.workspace_id = $1 AND abs(hashtext(c.id::text)) % 5 = 0",
    )
    .bind(ws)
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
}

const RAW_TABLE: &str = "CREATE TABLE raw_scores (
    workspace_id uuid NOT NULL, contact_id uuid NOT NULL, total smallint NOT NULL,
    tier text NOT NULL, computed_at timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, contact_id))";

const RAW_READ: &str = "
    SELECT c.id, a.employee_count, a.industry, a.annual_revenue_minor,
        (SELECT count(*) FROM activities x WHERE x.workspace_id = $1 AND x.contact_id = c.id
            AND x.kind = 'opened' AND x.occurred_at >= $3) AS opens,
        (SELECT count(*) FROM activities x WHERE x.workspace_id = $1 AND x.contact_id = c.id
            AND x.kind = 'clicked' AND x.occurred_at >= $3) AS clicks
    FROM contacts c LEFT JOIN accounts a ON a.workspace_id = $1 AND a.id = c.account_id
    WHERE c.workspace_id = $1 AND ($2::uuid IS NULL OR c.id > $2)
    ORDER BY c.id LIMIT $4";

const RAW_WRITE: &str = "
    INSERT INTO raw_scores (workspace_id, contact_id, total, tier, computed_at)
    SELECT $1, u.id, u.total, u.tier, $5
    FROM unnest($2::uuid[], $3::smallint[], $4::text[]) AS u(id, total, tier)
    ON CONFLICT (workspace_id, contact_id) DO UPDATE
    SET total = excluded.total, tier = excluded.tier, computed_at = excluded.computed_at";

type RawRow = (Uuid, Option<i64>, Option<String>, Option<i64>, i64, i64);

fn raw_score(row: &RawRow) -> (i16, &'static str) {
    let employees = match row.1 {
        Some(0..=49) => 10,
        Some(50..=999) => 60,
        Some(_) => 40,
        None => 0,
    };
    let industry = if row.2.as_deref() == Some("Software") {
        40
    } else {
        0
    };
    let revenue = if row.3.unwrap_or(0) >= 100_000_000 {
        30
    } else {
        0
    };
    let firmographic = (employees + industry + revenue).min(100);
    let behavioral = ((row.4 * 20).min(60) + (row.5 * 40).min(80)).min(100);
    let total = (firmographic * 60 + behavioral * 40) / 100;
    let tier = match total {
        90.. => "sales_ready",
        70.. => "hot",
        50.. => "warm",
        _ => "cold",
    };
    (i16::try_from(total).unwrap(), tier)
}

/// The baseline: keyset pages of raw reads, scored in Rust, one batched upsert a page.
async fn raw_rescore(pool: &PgPool, ws: WorkspaceId, now: chrono::DateTime<Utc>) -> u64 {
    let since = now - Duration::days(30);
    let mut after: Option<Uuid> = None;
    let mut done = 0;
    loop {
        let rows: Vec<RawRow> = sqlx::query_as(RAW_READ)
            .bind(ws.as_uuid())
            .bind(after)
            .bind(since)
            .bind(PAGE)
            .fetch_all(pool)
            .await
            .unwrap();
        let Some(last) = rows.last().map(|r| r.0) else {
            return done;
        };
        let (mut ids, mut totals, mut tiers) = (Vec::new(), Vec::new(), Vec::new());
        for row in &rows {
            let (total, tier) = raw_score(row);
            ids.push(row.0);
            totals.push(total);
            tiers.push(tier);
        }
        sqlx::query(RAW_WRITE)
            .bind(ws.as_uuid())
            .bind(ids)
            .bind(totals)
            .bind(tiers)
            .bind(now)
            .execute(pool)
            .await
            .unwrap();
        done += rows.len() as u64;
        if (rows.len() as i64) < PAGE {
            return done;
        }
        after = Some(last);
    }
}

fn ratio(engine: StdDuration, baseline: StdDuration) -> f64 {
    engine.as_secs_f64() / baseline.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let count = i64::try_from(size("BENCH_RESCORE_CONTACTS", 1_000_000, 2_000)).unwrap();
    let pg = crm_store_postgres::testing::fresh_store().await;
    let pool = pg.pool().clone();
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap());
    let store: Arc<DynStore> = Arc::new(pg);
    let ws = WorkspaceId::new();
    fill(&pool, ws, count, clock.now()).await;
    sqlx::query(RAW_TABLE).execute(&pool).await.unwrap();
    let scorer = Scorer::new(store, Arc::new(clock.clone()));
    scorer.save_model(&model(ws, clock.now())).await.unwrap();

    let (first, engine_first) = timed(scorer.rescore_all(ws, "bench-first")).await;
    let first = first.unwrap();
    assert_eq!(first.scored as i64, count);
    let (raw_first, baseline_first) = timed(raw_rescore(&pool, ws, clock.now())).await;
    assert_eq!(raw_first as i64, count);

    clock.advance(Duration::days(1));
    let (steady, engine_steady) = timed(scorer.rescore_all(ws, "bench-nightly")).await;
    let steady = steady.unwrap();
    let (_, baseline_steady) = timed(raw_rescore(&pool, ws, clock.now())).await;

    // A model change: every score gets the new version, so every row is rewritten.
    let mut changed = model(ws, clock.now()).next_version(clock.now());
    changed.weights = Weights {
        firmographic: 50,
        behavioral: 50,
        intent: 0,
    };
    scorer.save_model(&changed).await.unwrap();
    let (remodel, engine_remodel) = timed(scorer.rescore_all(ws, "bench-model-change")).await;
    let remodel = remodel.unwrap();
    let (_, baseline_remodel) = timed(raw_rescore(&pool, ws, clock.now())).await;

    println!(
        "rescore/postgres first run   {count} contacts: engine {:.2} s ({} tier events), raw {:.2} s; engine/raw = {:.2}x (target <= 1.50x)",
        engine_first.as_secs_f64(),
        first.tier_changes + first.qualified,
        baseline_first.as_secs_f64(),
        ratio(engine_first, baseline_first)
    );
    println!(
        "rescore/postgres steady run  {count} contacts: engine {:.2} s ({} tier events), raw {:.2} s; engine/raw = {:.2}x (target <= 1.50x)",
        engine_steady.as_secs_f64(),
        steady.tier_changes + steady.qualified,
        baseline_steady.as_secs_f64(),
        ratio(engine_steady, baseline_steady)
    );
    println!(
        "rescore/postgres model change {count} contacts: engine {:.2} s ({} tier events), raw {:.2} s; engine/raw = {:.2}x (target <= 1.50x)",
        engine_remodel.as_secs_f64(),
        remodel.tier_changes + remodel.qualified,
        baseline_remodel.as_secs_f64(),
        ratio(engine_remodel, baseline_remodel)
    );
}
