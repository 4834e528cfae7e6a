//! A full rescore on PostgreSQL: `Scorer::rescore_all` over every contact of a
//! workspace (pages of 1000: read the scoring inputs, score, write the page's scores
//! and their events in one transaction, the next page read meanwhile), against a
//! hand-written baseline in the same database and run: the same keyset pages read
//! with a contacts + accounts + activity-count query (the next page read while the
//! current one is written), scored by hand-written Rust, and written with one
//! statement per page (`RAW_WRITE`) that, like the engine, skips a row whose score is
//! unchanged (`IS DISTINCT FROM`) and appends the same events for the rows that
//! changed: `score.changed`, and on a tier change `contact.scored` (plus
//! `lead.qualified` on reaching `hot`), with no lock, as the store. Prints time ratios
//! (target: at most 1.5x the baseline) for the first scoring of the workspace (every
//! contact gets its tier events, in both), the nightly run (few changes) and the
//! rescore after a model change (every row rewritten with the new model version).
//!
//! `cargo bench -p benches --bench rescore` (PostgreSQL from `DATABASE_URL`; size:
//! `BENCH_RESCORE_CONTACTS`, default 1,000,000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration as StdDuration;

use benches::{Bound, check, report_ratio, size, timed};
use chrono::{Duration, TimeZone, Utc};
use crm_core::ids::WorkspaceId;
use crm_core::money::Currency;
use crm_core::scoring::{
    Behavior, BehavioralFactor, Firmographics, IndustryFactor, RangeFactor, RescoreReport, Scorer,
    ScoringModel, Weights,
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
        "INSERT INTO contacts (workspace_id, id, first_name, last_name, email, email_key,
             account_id, custom_fields, created_at, updated_at, version)
         SELECT $1, gen_random_uuid(), 'Lead', n::text, 'lead' || n || '@bench.example',
             'lead' || n || '@bench.example',
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
    sqlx::query("ANALYZE accounts, contacts, activities")
        .execute(pool)
        .await
        .unwrap();
}

const RAW_TABLE: &str = "CREATE TABLE raw_scores (
    workspace_id uuid NOT NULL, contact_id uuid NOT NULL, total smallint NOT NULL,
    tier text NOT NULL, model_version bigint NOT NULL, computed_at timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, contact_id)) WITH (fillfactor = 50)";

const RAW_READ: &str = "
    SELECT c.id, a.employee_count, a.industry, a.annual_revenue_minor,
        (SELECT count(*) FROM activities x WHERE x.workspace_id = $1 AND x.contact_id = c.id
            AND x.kind = 'opened' AND x.occurred_at >= $3) AS opens,
        (SELECT count(*) FROM activities x WHERE x.workspace_id = $1 AND x.contact_id = c.id
            AND x.kind = 'clicked' AND x.occurred_at >= $3) AS clicks
    FROM contacts c LEFT JOIN accounts a ON a.workspace_id = $1 AND a.id = c.account_id
    WHERE c.workspace_id = $1 AND ($2::uuid IS NULL OR c.id > $2)
    ORDER BY c.id LIMIT $4";

/// One page's write, in one statement (its events' keys say `raw`, so they never meet
/// the engine's events of the same contacts in the shared log): the upsert skips a row whose total, tier and
/// model version are unchanged (`IS DISTINCT FROM`), and for every row whose score or
/// tier changed appends what the engine appends: `score.changed`, and on a tier change
/// `contact.scored`, plus `lead.qualified` when the lead reaches `hot` or above. The
/// events go in with no lock, as the store's do.
const RAW_WRITE: &str = "
    WITH input AS (
        SELECT * FROM unnest($2::uuid[], $3::smallint[], $4::text[], $5::uuid[], $6::uuid[],
            $7::uuid[]) AS u(id, total, tier, changed_event, scored_event, qualified_event)
    ), old AS (
        SELECT s.contact_id, s.total, s.tier, s.model_version FROM raw_scores s
        WHERE s.workspace_id = $1 AND s.contact_id = ANY($2)
    ), up AS (
        INSERT INTO raw_scores AS s (workspace_id, contact_id, total, tier, model_version,
            computed_at)
        SELECT $1, i.id, i.total, i.tier, $8, $9 FROM input i
        ON CONFLICT (workspace_id, contact_id) DO UPDATE
        SET total = excluded.total, tier = excluded.tier,
            model_version = excluded.model_version, computed_at = excluded.computed_at
        WHERE (s.total, s.tier, s.model_version)
            IS DISTINCT FROM (excluded.total, excluded.tier, excluded.model_version)
        RETURNING s.contact_id
    ), changed AS (
        SELECT i.*, o.total AS old_total, o.tier AS old_tier
        FROM up JOIN input i ON i.id = up.contact_id
        LEFT JOIN old o ON o.contact_id = up.contact_id
        WHERE o.contact_id IS NULL OR (o.total, o.tier) IS DISTINCT FROM (i.total, i.tier)
    ), appended AS (
        INSERT INTO events (workspace_id, id, kind, subject, payload, idempotency_key,
            occurred_at)
        SELECT $1, e.id, e.kind, c.id::text, e.payload, e.key, $9
        FROM changed c CROSS JOIN LATERAL (VALUES
            (c.changed_event, 'score.changed',
             jsonb_build_object('contact_id', c.id, 'score', c.total, 'tier', c.tier,
                 'previous_score', c.old_total, 'previous_tier', c.old_tier,
                 'model_version', $8, 'overridden', false, 'breakdown', NULL),
             'score.changed:raw:' || c.id || ':' || $10 || ':0:' || c.total || ':' || c.tier,
             true),
            (c.scored_event, 'contact.scored',
             jsonb_build_object('contact_id', c.id, 'previous_tier', c.old_tier,
                 'tier', c.tier, 'total', c.total, 'model_version', $8),
             'contact.scored:' || c.id || ':' || $11,
             c.old_tier IS DISTINCT FROM c.tier),
            (c.qualified_event, 'lead.qualified',
             jsonb_build_object('contact_id', c.id, 'previous_tier', c.old_tier,
                 'tier', c.tier, 'total', c.total, 'model_version', $8),
             'lead.qualified:' || c.id || ':' || $11,
             c.old_tier IS DISTINCT FROM c.tier AND c.tier IN ('hot', 'sales_ready')
                 AND (c.old_tier IS NULL OR c.old_tier NOT IN ('hot', 'sales_ready'))))
            AS e(id, kind, payload, key, wanted)
        WHERE e.wanted
        ON CONFLICT (workspace_id, idempotency_key) DO NOTHING
        RETURNING kind
    )
    SELECT (SELECT count(*) FROM up),
        (SELECT count(*) FROM appended WHERE kind <> 'score.changed')";

type RawRow = (Uuid, Option<i64>, Option<String>, Option<i64>, i64, i64);

/// The score with firmographic weight `firmographic` (the behavioral weight is the rest).
fn raw_score(row: &RawRow, firmographic: i64) -> (i16, &'static str) {
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
    let firmographic_points = (employees + industry + revenue).min(100);
    let behavioral = ((row.4 * 20).min(60) + (row.5 * 40).min(80)).min(100);
    let total = (firmographic_points * firmographic + behavioral * (100 - firmographic)) / 100;
    let tier = match total {
        90.. => "sales_ready",
        70.. => "hot",
        50.. => "warm",
        _ => "cold",
    };
    (i16::try_from(total).unwrap(), tier)
}

/// What a baseline run did.
#[derive(Debug, Default, Clone, Copy)]
struct RawRun {
    scored: u64,
    written: u64,
    tier_events: u64,
}

/// The baseline: keyset pages of raw reads, scored in Rust, one write a page
/// (`RAW_WRITE`), the next page read while the current one is written, as the engine
/// does.
async fn raw_rescore(
    pool: &PgPool,
    ws: WorkspaceId,
    now: chrono::DateTime<Utc>,
    model_version: i64,
    firmographic: i64,
    trigger: &str,
) -> RawRun {
    let since = now - Duration::days(30);
    let read = |after: Option<Uuid>| {
        sqlx::query_as::<_, RawRow>(RAW_READ)
            .bind(ws.as_uuid())
            .bind(after)
            .bind(since)
            .bind(PAGE)
            .fetch_all(pool)
    };
    let mut run = RawRun::default();
    let mut rows: Vec<RawRow> = read(None).await.unwrap();
    loop {
        let Some(last) = rows.last().map(|r| r.0) else {
            return run;
        };
        let (mut ids, mut totals, mut tiers) = (Vec::new(), Vec::new(), Vec::new());
        for row in &rows {
            let (total, tier) = raw_score(row, firmographic);
            ids.push(row.0);
            totals.push(total);
            tiers.push(tier);
        }
        let fresh = || (0..ids.len()).map(|_| Uuid::now_v7()).collect::<Vec<_>>();
        let write = sqlx::query_as::<_, (i64, i64)>(RAW_WRITE)
            .bind(ws.as_uuid())
            .bind(&ids)
            .bind(totals)
            .bind(tiers)
            .bind(fresh())
            .bind(fresh())
            .bind(fresh())
            .bind(model_version)
            .bind(now)
            .bind(now.timestamp_micros().to_string())
            .bind(trigger)
            .fetch_one(pool);
        let last_page = (rows.len() as i64) < PAGE;
        let next = async {
            if last_page {
                Vec::new()
            } else {
                read(Some(last)).await.unwrap()
            }
        };
        let (written, next) = futures::future::join(write, next).await;
        let (written, tier_events) = written.unwrap();
        run.scored += rows.len() as u64;
        run.written += written as u64;
        run.tier_events += tier_events as u64;
        if last_page {
            return run;
        }
        rows = next;
    }
}

fn ratio(engine: StdDuration, baseline: StdDuration) -> f64 {
    engine.as_secs_f64() / baseline.as_secs_f64()
}

/// One rescore of the engine against the baseline: prints both and the time ratio.
fn compare(
    name: &str,
    count: i64,
    engine: (RescoreReport, StdDuration),
    raw: (RawRun, StdDuration),
) {
    let ((report, engine), (run, baseline)) = (engine, raw);
    check(
        report.scored as i64 == count && run.scored as i64 == count,
        || {
            format!(
                "rescore {name}: engine scored {}, baseline {}, of {count}",
                report.scored, run.scored
            )
        },
    );
    println!(
        "rescore/postgres {name:<13} {count} contacts: engine {:.2} s ({} tier events), baseline {:.2} s ({} rows written, {} tier events)",
        engine.as_secs_f64(),
        report.tier_changes + report.qualified,
        baseline.as_secs_f64(),
        run.written,
        run.tier_events,
    );
    report_ratio(
        &format!("rescore.{name}_time_vs_baseline"),
        ratio(engine, baseline),
        Bound::AtMost,
        1.5,
    );
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

    // The first scoring of the workspace: every contact gets its score and tier events.
    let (first, engine_first) = timed(scorer.rescore_all(ws, "bench-first")).await;
    let first = first.unwrap();
    let raw_first = timed(raw_rescore(&pool, ws, clock.now(), 1, 60, "raw-first")).await;
    check(raw_first.0.tier_events as i64 >= count, || {
        format!(
            "rescore first: the baseline wrote {} tier events for {count} contacts",
            raw_first.0.tier_events
        )
    });
    compare("first", count, (first, engine_first), raw_first);

    // The nightly run: decay moves few scores; unchanged ones are not rewritten.
    clock.advance(Duration::days(1));
    let (steady, engine_steady) = timed(scorer.rescore_all(ws, "bench-nightly")).await;
    let raw_steady = timed(raw_rescore(&pool, ws, clock.now(), 1, 60, "raw-nightly")).await;
    compare(
        "nightly",
        count,
        (steady.unwrap(), engine_steady),
        raw_steady,
    );

    // A model change: every score gets the new version, so every row is rewritten.
    let mut changed = model(ws, clock.now()).next_version(clock.now());
    changed.weights = Weights {
        firmographic: 50,
        behavioral: 50,
        intent: 0,
    };
    scorer.save_model(&changed).await.unwrap();
    let (remodel, engine_remodel) = timed(scorer.rescore_all(ws, "bench-model-change")).await;
    let raw_remodel = timed(raw_rescore(
        &pool,
        ws,
        clock.now(),
        2,
        50,
        "raw-model-change",
    ))
    .await;
    compare(
        "model_change",
        count,
        (remodel.unwrap(), engine_remodel),
        raw_remodel,
    );
}
