//! Scoring inputs in one query per page: contacts, their accounts, and their recent
//! activities aggregated per behavior and intent (with each intent's latest time),
//! following `crm_core::model::scoring::{behavior_of, intent_of}` exactly.

use chrono::{DateTime, Utc};
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::model::scoring::{Intent, IntentSet, ScoringInput};
use crm_core::{Currency, Money, StoreError};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{corrupt, db};

// $1 workspace, $2 after (keyset), $3 only these contacts (NULL: all), $4 limit,
// $5 activities at or after. Activity kinds `opened`/`clicked` are behaviors by kind,
// every other kind by `details.signal`; a booked meeting is a demo request, any other
// kind an intent by `details.signal`. One pass over each contact's recent activities
// (one index probe) yields every behavior's times and every intent's latest time.
const LOAD_INPUTS: &str = "
WITH page AS (
    SELECT c.id, c.account_id FROM contacts c
    WHERE c.workspace_id = $1
      AND ($2::uuid IS NULL OR c.id > $2)
      AND ($3::uuid[] IS NULL OR c.id = ANY($3))
    ORDER BY c.id LIMIT $4
)
SELECT p.id AS contact_id, a.employee_count, a.industry, a.annual_revenue_minor,
       a.annual_revenue_currency,
       coalesce(x.opens, '{}') AS opens, coalesce(x.clicks, '{}') AS clicks,
       coalesce(x.visits, '{}') AS visits, x.contact_form, x.demo_request, x.pricing_view,
       x.trial_signup
FROM page p
LEFT JOIN accounts a ON a.workspace_id = $1 AND a.id = p.account_id
LEFT JOIN LATERAL (
    SELECT
        array_agg(occurred_at ORDER BY occurred_at) FILTER (WHERE kind = 'opened'
            OR (kind NOT IN ('opened', 'clicked') AND details ->> 'signal' = 'open')) AS opens,
        array_agg(occurred_at ORDER BY occurred_at) FILTER (WHERE kind = 'clicked'
            OR (kind NOT IN ('opened', 'clicked') AND details ->> 'signal' = 'click')) AS clicks,
        array_agg(occurred_at ORDER BY occurred_at) FILTER (WHERE
            kind NOT IN ('opened', 'clicked') AND details ->> 'signal' = 'visit') AS visits,
        max(occurred_at) FILTER (WHERE kind <> 'meeting_booked'
            AND details ->> 'signal' = 'contact_form') AS contact_form,
        max(occurred_at) FILTER (WHERE kind = 'meeting_booked'
            OR details ->> 'signal' = 'demo_request') AS demo_request,
        max(occurred_at) FILTER (WHERE kind <> 'meeting_booked'
            AND details ->> 'signal' = 'pricing_view') AS pricing_view,
        max(occurred_at) FILTER (WHERE kind <> 'meeting_booked'
            AND details ->> 'signal' = 'trial_signup') AS trial_signup
    FROM activities act
    WHERE act.workspace_id = $1 AND act.contact_id = p.id AND act.occurred_at >= $5
) x ON true
ORDER BY p.id";

#[derive(Debug, sqlx::FromRow)]
struct InputRow {
    contact_id: Uuid,
    employee_count: Option<i64>,
    industry: Option<String>,
    annual_revenue_minor: Option<i64>,
    annual_revenue_currency: Option<String>,
    opens: Vec<DateTime<Utc>>,
    clicks: Vec<DateTime<Utc>>,
    visits: Vec<DateTime<Utc>>,
    /// The latest occurrence of each intent, if any.
    contact_form: Option<DateTime<Utc>>,
    demo_request: Option<DateTime<Utc>>,
    pricing_view: Option<DateTime<Utc>>,
    trial_signup: Option<DateTime<Utc>>,
}

impl InputRow {
    fn into_input(self, ws: WorkspaceId) -> Result<ScoringInput, StoreError> {
        let annual_revenue = match (self.annual_revenue_minor, self.annual_revenue_currency) {
            (Some(minor), Some(code)) => Some(
                Money::new(
                    minor,
                    Currency::new(&code).map_err(|e| corrupt("accounts.currency", e))?,
                )
                .map_err(|e| corrupt("accounts.annual_revenue", e))?,
            ),
            _ => None,
        };
        let mut intents = IntentSet::default();
        for (intent, at) in [
            (Intent::ContactForm, self.contact_form),
            (Intent::DemoRequest, self.demo_request),
            (Intent::PricingView, self.pricing_view),
            (Intent::TrialSignup, self.trial_signup),
        ] {
            if let Some(at) = at {
                intents.insert_at(intent, at);
            }
        }
        Ok(ScoringInput {
            workspace_id: ws,
            contact_id: ContactId::from_uuid(self.contact_id),
            employee_count: self
                .employee_count
                .map(u32::try_from)
                .transpose()
                .map_err(|e| corrupt("accounts.employee_count", e))?,
            industry: self.industry,
            annual_revenue,
            opens: self.opens,
            clicks: self.clicks,
            visits: self.visits,
            intents,
        })
    }
}

/// One page of inputs (see `LOAD_INPUTS`).
pub(super) async fn load(
    pool: &PgPool,
    ws: WorkspaceId,
    since: DateTime<Utc>,
    after: Option<ContactId>,
    only: Option<Vec<Uuid>>,
    limit: u32,
) -> Result<Vec<ScoringInput>, StoreError> {
    sqlx::query_as::<_, InputRow>(LOAD_INPUTS)
        .bind(ws.as_uuid())
        .bind(after.map(|id| id.as_uuid()))
        .bind(only)
        .bind(i64::from(limit))
        .bind(since)
        .fetch_all(pool)
        .await
        .map_err(db("scoring_input"))?
        .into_iter()
        .map(|row| row.into_input(ws))
        .collect()
}
