//! CSV import: a few thousand synthetic leads (with duplicates and bad rows) go through
//! intake into the embedded memory store, are enriched by a local fixture provider,
//! linked to accounts and scored, all through one `Engine`. No services needed:
//!
//! ```text
//! cargo run --release --example import_csv
//! ```
//!
//! Prints what the engine did: import counts, contacts created and merged, enrichment
//! lookups with cache hits and spend against the monthly budget, the tier summary with
//! the top three contacts explained, and every rejected row with its line and reason.
//! The intake rows are turned into contacts by the engine's own job worker, and the
//! counts come from the event log (`contact.created`, `contact.merged`).
//!
//! Set `RUST_LOG=info` to see the engine's tracing spans and logs as well.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Duration, TimeZone, Utc};
use crm_core::engine::{Engine, EngineConfig};
use crm_core::enrichment::{
    BudgetPolicy, CompanyData, EnrichmentError, EnrichmentProvider, Lookup, LookupCost, LookupKind,
    RateLimitState, Source, Waterfall,
};
use crm_core::events::kinds::{CONTACT_CREATED, CONTACT_MERGED};
use crm_core::ids::{AccountId, ContactId, WorkspaceId};
use crm_core::intake::{ColumnMapping, CsvRows, Field, Manifest, Transform};
use crm_core::model::{
    Account, Activity, ActivityKind, IntakeSource, IntakeStatus, NewAccount, Workspace,
};
use crm_core::outreach::settings::WorkspaceSettings;
use crm_core::scoring::inputs::SIGNAL_KEY;
use crm_core::scoring::{
    Behavior, BehavioralFactor, Contribution, Factor, Firmographics, IndustryFactor, Intent,
    IntentFactor, RangeFactor, ScoringModel, Tier, Weights,
};
use crm_core::store::{Page, Scope, month_of};
use crm_core::{Clock, Currency, Domain, DynStore, ManualClock, Money};
use crm_store_memory::MemoryStore;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

const CSV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/leads.csv");

/// Company data of the fixture provider: domain, name, head count, industry and
/// annual revenue in millions of US dollars.
const COMPANIES: &[(&str, &str, u32, &str, i64)] = &[
    (
        "acme.example",
        "Acme Corporation",
        1_800,
        "Manufacturing",
        420,
    ),
    ("globex.example", "Globex", 650, "Software", 140),
    ("initech.example", "Initech", 240, "Software", 38),
    (
        "umbrella.example",
        "Umbrella Corporation",
        9_500,
        "Healthcare",
        3_100,
    ),
    ("hooli.example", "Hooli", 12_000, "Internet", 8_700),
    (
        "stark.example",
        "Stark Industries",
        25_000,
        "Manufacturing",
        24_000,
    ),
    (
        "wayne.example",
        "Wayne Enterprises",
        31_000,
        "Financial Services",
        31_000,
    ),
    (
        "cyberdyne.example",
        "Cyberdyne Systems",
        1_200,
        "Software",
        310,
    ),
    ("soylent.example", "Soylent", 3_400, "Food", 900),
    (
        "tyrell.example",
        "Tyrell Corporation",
        5_200,
        "Biotech",
        2_200,
    ),
    ("wonka.example", "Wonka Industries", 45, "Food", 9),
    ("vandelay.example", "Vandelay Industries", 12, "Retail", 2),
    (
        "massive.example",
        "Massive Dynamic",
        7_800,
        "Research",
        4_100,
    ),
    ("oscorp.example", "Oscorp", 2_600, "Biotech", 1_300),
    (
        "nakatomi.example",
        "Nakatomi Trading",
        900,
        "Real Estate",
        260,
    ),
];

/// A local provider answering company lookups from [`COMPANIES`], at 50 cents each.
#[derive(Debug)]
struct FixtureProvider {
    usd: Currency,
}

#[async_trait]
impl EnrichmentProvider for FixtureProvider {
    fn name(&self) -> &'static str {
        "fixture"
    }

    fn kinds(&self) -> &'static [LookupKind] {
        &[LookupKind::Company]
    }

    fn cost(&self, _kind: LookupKind) -> LookupCost {
        let money = Money::new(50, self.usd).ok();
        LookupCost { credits: 1, money }
    }

    fn rate_limit(&self) -> RateLimitState {
        RateLimitState::default()
    }

    async fn enrich_company(
        &self,
        domain: &Domain,
    ) -> Result<Lookup<CompanyData>, EnrichmentError> {
        let Some(&(d, name, employees, industry, revenue)) =
            COMPANIES.iter().find(|c| c.0 == domain.as_str())
        else {
            return Ok(Lookup::NotFound);
        };
        let revenue = Money::new(revenue * 1_000_000 * 100, self.usd);
        Ok(Lookup::Found(CompanyData {
            name: Some(name.into()),
            domain: Some(d.into()),
            industry: Some(industry.into()),
            employee_count: Some(employees),
            annual_revenue: revenue.ok(),
            ..CompanyData::default()
        }))
    }
}

#[tokio::main]
async fn main() -> Res {
    examples::init_tracing();
    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    let start = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).single();
    let clock = ManualClock::new(start.ok_or("bad date")?);
    let time: Arc<dyn Clock> = Arc::new(clock.clone());
    let ws = WorkspaceId::new();

    // The engine: the fixture provider as the company waterfall, a monthly budget,
    // and the manual clock.
    let usd = Currency::new("USD")?;
    let monthly = Money::new(2_000, usd)?;
    let provider = Arc::new(FixtureProvider { usd });
    let price = provider.cost(LookupKind::Company).money;
    let settings = WorkspaceSettings::default();
    let workspace = Workspace::new(ws, "Import demo", settings, clock.now())?;
    store.insert_workspace(&workspace).await?;
    let engine = Engine::builder(store.clone())
        .clock(time.clone())
        .enrichment(Waterfall::new().then(LookupKind::Company, provider))
        .enrichment_budget(ws, BudgetPolicy::new(monthly))
        .config(EngineConfig::default().with_name("import-csv"))
        .build()?;

    // 1. Intake: buffer every row; the engine's worker runs the `intake.process` jobs
    // the import enqueued, turning pending rows into contacts.
    let manifest = manifest();
    let intake = engine.intake();
    let rows = CsvRows::new(BufReader::new(File::open(CSV)?))?;
    let bar = progress(None, "reading rows");
    let rows = rows.inspect(|_| bar.inc(1));
    let report = intake
        .import(ws, IntakeSource::Csv, "leads.csv", &manifest, rows)
        .await?;
    bar.finish_and_clear();
    let bar = progress(None, "creating contacts");
    let jobs = engine.worker().drain().await?;
    bar.finish_and_clear();
    let (created, merged) = contact_events(&store, ws).await?;
    let invalid = rejected(&store, ws).await?.len();
    println!("== Import of examples/data/leads.csv");
    println!("rows read        {}", report.rows);
    println!("stored pending   {}", report.pending);
    println!(
        "duplicates       {} (same fingerprint as an earlier row)",
        report.duplicates
    );
    println!("rejected         {invalid}");
    println!(
        "contacts         {created} created, {merged} merged into existing ones ({} intake job(s) run by the engine's worker)",
        jobs.succeeded
    );

    // 2. Enrichment: company data per contact; each domain is asked once, then cached.
    let enricher = engine.enricher();
    let contacts = all_contacts(&store, ws).await?;
    let bar = progress(Some(contacts.len() as u64), "enriching");
    let (mut asked, mut cached, mut missed) = (0, 0, 0);
    let mut accounts: HashMap<String, AccountId> = HashMap::new();
    for mut contact in contacts {
        bar.inc(1);
        let Some(email) = &contact.email else {
            continue;
        };
        let domain = Domain::parse(email.domain())?;
        let enriched = enricher.enrich_company(ws, &domain).await?;
        match enriched.source {
            Source::Cache { .. } => cached += 1,
            Source::Provider(_) => asked += 1,
            _ => missed += 1,
        }
        let Some(company) = enriched.data else {
            continue;
        };
        let account_id = match accounts.get(domain.as_str()) {
            Some(id) => *id,
            None => {
                let id = upsert_account(&store, &clock, ws, &domain, company).await?;
                *accounts.entry(domain.as_str().to_owned()).or_insert(id)
            }
        };
        if contact.account_id != Some(account_id) {
            contact.account_id = Some(account_id);
            contact.updated_at = clock.now();
            store.update_contact(&contact).await?;
        }
    }
    bar.finish_and_clear();
    let spent = store
        .enrichment_spend(ws, month_of(clock.now()), usd)
        .await?;
    let price = price.as_ref().map_or("free".into(), dollars);
    println!("\n== Enrichment (fixture provider, {price} a lookup)");
    println!(
        "lookups          {} contacts: {asked} asked the provider, {cached} cache hits, {missed} unknown",
        asked + cached + missed
    );
    println!(
        "accounts         {} created or updated with head count, industry, revenue",
        accounts.len()
    );
    let (spent, monthly) = (dollars(&spent), dollars(&monthly));
    println!("spend            {spent} of a {monthly} monthly budget");

    // 3. Engagement and intent for some contacts, then score everyone.
    let activities = record_engagement(&store, &clock, ws).await?;
    println!("activities       {activities} opens, clicks and intent signals recorded");
    let scorer = engine.scorer();
    let model = scorer.save_model(&scoring_model(ws, &clock)?).await?;
    let rescored = scorer.rescore_all(ws, "import_csv").await?;
    println!(
        "\n== Scores (model v{}, {} contacts scored)",
        model.version, rescored.scored
    );
    let mut top = Vec::new();
    for tier in Tier::ALL.iter().rev() {
        let scores = all_scores(&store, ws, *tier).await?;
        println!("{:<16} {}", tier.as_str().to_uppercase(), scores.len());
        top.extend(scores);
    }
    top.sort_by(|a, b| b.total.cmp(&a.total).then(a.contact_id.cmp(&b.contact_id)));
    println!("top 3:");
    for score in top.iter().take(3) {
        let contact = store.get_contact(ws, score.contact_id).await?;
        let who = format!("{} {}", contact.first_name, contact.last_name);
        let why: Vec<String> = score.breakdown.iter().map(explain).collect();
        println!(
            "  {who:<20} {:>3} {}: {}",
            score.total,
            score.tier,
            why.join(", ")
        );
    }

    // 4. Every rejected row, with its line and reasons.
    println!("\n== Rejected rows");
    for row in rejected(&store, ws).await? {
        let line = row.line.map_or("-".into(), |l| l.to_string());
        let reasons: Vec<String> = row
            .errors
            .iter()
            .map(|e| match &e.column {
                Some(column) => format!("{column}: {}", e.reason),
                None => e.reason.clone(),
            })
            .collect();
        println!("line {line:>5}  {}", reasons.join("; "));
    }
    Ok(())
}

/// How this host's CSV headers map to contact fields. Every column is trimmed; rows
/// without an email are refused (the team only imports leads it can write to).
fn manifest() -> Manifest {
    let map = |column: &str, field, extra: Vec<Transform>, required| ColumnMapping {
        column: column.into(),
        field,
        transforms: [vec![Transform::Trim], extra].concat(),
        required,
    };
    let custom = |name: &str| Field::Custom(name.into());
    let lower = || vec![Transform::Lowercase];
    Manifest {
        columns: vec![
            map("First Name", Field::FirstName, vec![], false),
            map("Last Name", Field::LastName, vec![], false),
            map("E-mail", Field::Email, vec![], true),
            map("Phone", Field::Phone, vec![], false),
            map("Company", Field::Company, vec![], false),
            map("Website", Field::Website, vec![], false),
            map(
                "Job Title",
                Field::Title,
                vec![Transform::CollapseWhitespace],
                false,
            ),
            map("LinkedIn", Field::LinkedinUrl, vec![], false),
            // Self-reported, kept as merge fields; firmographics come from enrichment.
            map("Employees", custom("employees_reported"), vec![], false),
            map("Industry", custom("industry_reported"), vec![], false),
            map("Lead Source", custom("lead_source"), lower(), false),
        ],
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    let (bar, template) = match len {
        Some(len) => (
            ProgressBar::new(len),
            "{msg:<18} [{bar:40}] {pos}/{len} ({elapsed})",
        ),
        None => (
            ProgressBar::no_length(),
            "{msg:<18} {spinner} {pos} ({elapsed})",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// The account of `domain` with the enriched data: found and updated, or created.
async fn upsert_account(
    store: &Arc<DynStore>,
    clock: &ManualClock,
    ws: WorkspaceId,
    domain: &Domain,
    company: CompanyData,
) -> Res<AccountId> {
    if let Some(mut account) = store.find_account_by_domain(ws, domain).await? {
        account.industry = company.industry;
        account.employee_count = company.employee_count;
        account.annual_revenue = company.annual_revenue;
        account.updated_at = clock.now();
        return Ok(store.update_account(&account).await?.id);
    }
    let new = NewAccount {
        name: company.name.unwrap_or_else(|| domain.as_str().to_owned()),
        domain: Some(domain.as_str().to_owned()),
        industry: company.industry,
        employee_count: company.employee_count,
        annual_revenue: company.annual_revenue,
        ..NewAccount::default()
    };
    let account = Account::create(ws, new, clock.now())?;
    Ok(store.insert_account(&account).await?.id)
}

/// Opens and clicks for some contacts, demo requests and pricing views for fewer; a
/// deterministic pattern over the contact list so every run spreads the same way.
async fn record_engagement(
    store: &Arc<DynStore>,
    clock: &ManualClock,
    ws: WorkspaceId,
) -> Res<u64> {
    let mut recorded = 0;
    for (n, contact) in all_contacts(store, ws).await?.iter().enumerate() {
        let mut plan: Vec<(ActivityKind, Option<Intent>, i64)> = Vec::new();
        if n % 3 == 0 {
            plan.extend((1..=3).map(|d| (ActivityKind::Opened, None, d)));
        }
        if n % 5 == 0 {
            plan.extend((1..=2).map(|d| (ActivityKind::Clicked, None, d)));
        }
        if n % 11 == 0 || n % 17 == 0 {
            plan.push((ActivityKind::Note, Some(Intent::PricingView), 1));
        }
        if n % 17 == 0 {
            plan.push((ActivityKind::MeetingBooked, None, 0));
        }
        for (kind, intent, days_ago) in plan {
            let at = clock.now() - Duration::days(days_ago);
            let summary = intent.map_or(kind.as_str(), |i| i.as_str());
            let mut activity = Activity::for_contact(ws, contact.id, kind, summary, at)?;
            if let Some(intent) = intent {
                activity = activity.with_details(json!({ SIGNAL_KEY: intent.as_str() }));
            }
            store.record_activity(&activity).await?;
            recorded += 1;
        }
    }
    Ok(recorded)
}

/// Firmographics 40 %, behavior 30 %, intent 30 %, default thresholds (50/70/90).
fn scoring_model(ws: WorkspaceId, clock: &ManualClock) -> Res<ScoringModel> {
    let weights = Weights {
        firmographic: 40,
        behavioral: 30,
        intent: 30,
    };
    let mut model = ScoringModel::new(ws, weights, clock.now())?;
    let million: i64 = 100_000_000; // in cents
    model.firmographics = Firmographics {
        employee_ranges: vec![
            range(1_000, None, 60),
            range(200, Some(999), 35),
            range(1, Some(199), 10),
        ],
        industries: ["Software", "Internet", "Financial Services"]
            .into_iter()
            .map(|i| IndustryFactor {
                industry: i.into(),
                points: 40,
            })
            .collect(),
        revenue_ranges: vec![
            range(1_000 * million, None, 20),
            range(100 * million, Some(1_000 * million - 1), 10),
        ],
        revenue_currency: Some(Currency::new("USD")?),
    };
    let behave = |behavior, points, max_points| BehavioralFactor {
        behavior,
        points,
        max_points,
        decay_days: 30,
    };
    model.behavioral = vec![
        behave(Behavior::Open, 15, 45),
        behave(Behavior::Click, 30, 60),
    ];
    model.intent = vec![
        IntentFactor {
            intent: Intent::DemoRequest,
            points: 70,
        },
        IntentFactor {
            intent: Intent::PricingView,
            points: 40,
        },
    ];
    model.validate()?;
    Ok(model)
}

/// One contribution in words: `employees 1000+ +20.0`.
fn explain(c: &Contribution) -> String {
    let what = match &c.factor {
        Factor::EmployeeRange {
            min,
            max: Some(max),
        } => format!("employees {min}-{max}"),
        Factor::EmployeeRange { min, max: None } => format!("employees {min}+"),
        Factor::Industry { industry } => format!("industry {industry}"),
        Factor::RevenueRange { min, .. } => format!("revenue >= {}M USD", min / 100_000_000),
        Factor::Behavior {
            behavior,
            occurrences,
        } => format!("{occurrences}x {behavior}"),
        Factor::Intent { intent } => format!("intent {intent}"),
        Factor::ComponentCap => format!("{} cap", c.component),
        Factor::Rounding => "rounding".to_owned(),
        other => format!("{other:?}"),
    };
    format!("{what} {:+.1}", f64::from(c.centipoints) / 100.0)
}

fn dollars(m: &Money) -> String {
    format!(
        "{}.{:02} {}",
        m.minor_units() / 100,
        m.minor_units() % 100,
        m.currency()
    )
}

/// `contact.created` and `contact.merged` events of the workspace, from the event log.
async fn contact_events(store: &Arc<DynStore>, ws: WorkspaceId) -> Res<(usize, usize)> {
    let (mut created, mut merged, mut after) = (0, 0, 0);
    loop {
        let events = store.list_events(Scope::Workspace(ws), after, 1000).await?;
        let Some(last) = events.last() else {
            return Ok((created, merged));
        };
        after = last.position;
        created += events.iter().filter(|e| e.kind == CONTACT_CREATED).count();
        merged += events.iter().filter(|e| e.kind == CONTACT_MERGED).count();
    }
}

async fn all_contacts(
    store: &Arc<DynStore>,
    ws: WorkspaceId,
) -> Res<Vec<crm_core::model::Contact>> {
    let mut out: Vec<crm_core::model::Contact> = Vec::new();
    loop {
        let page = match out.last() {
            Some(c) => Page::after(c.id, 1000),
            None => Page::first(1000),
        };
        let batch = store.list_contacts(ws, page).await?;
        if batch.is_empty() {
            return Ok(out);
        }
        out.extend(batch);
    }
}

async fn all_scores(
    store: &Arc<DynStore>,
    ws: WorkspaceId,
    tier: Tier,
) -> Res<Vec<crm_core::scoring::ContactScore>> {
    let mut out: Vec<crm_core::scoring::ContactScore> = Vec::new();
    loop {
        let after: Option<ContactId> = out.last().map(|s| s.contact_id);
        let page = after.map_or(Page::first(1000), |id| Page::after(id, 1000));
        let batch = store.list_scores_by_tier(ws, tier, page).await?;
        if batch.is_empty() {
            return Ok(out);
        }
        out.extend(batch);
    }
}

async fn rejected(
    store: &Arc<DynStore>,
    ws: WorkspaceId,
) -> Res<Vec<crm_core::model::IntakeRecord>> {
    let mut out: Vec<crm_core::model::IntakeRecord> = Vec::new();
    loop {
        let page = out
            .last()
            .map_or(Page::first(1000), |r| Page::after(r.id, 1000));
        let batch = store
            .list_intake(ws, Some(IntakeStatus::Invalid), page)
            .await?;
        if batch.is_empty() {
            out.sort_by_key(|r| r.line);
            return Ok(out);
        }
        out.extend(batch);
    }
}

fn range<T>(min: T, max: Option<T>, points: u8) -> RangeFactor<T> {
    RangeFactor { min, max, points }
}
