//! Scoring inputs in one query per page: contacts, their accounts, and their recent
//! activities aggregated per behavior and intent (with each intent's latest time),
//! following `crm_core::model::scoring::{behavior_of, intent_of}` exactly.

use chrono::{DateTime, Utc};
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::model::scoring::{Intent, IntentSet, ScoringInput};
use crm_core::{Currency, Money, StoreError};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{corrupt, db, parse_text};

// $1 workspace, $2 after (keyset), $3 only these contacts (NULL: all), $4 limit,
// $5 activities at or after. Activity kinds `opened`/`clicked` are behaviors by kind,
// every other kind by `details.signal`; a booked meeting is a demo request.
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
       coalesce(x.visits, '{}') AS visits, coalesce(y.intents, '{}') AS intents,
       coalesce(y.intent_times, '{}') AS intent_times
FROM page p
LEFT JOIN accounts a ON a.workspace_id = $1 AND a.id = p.account_id
LEFT JOIN LATERAL (
    SELECT
        array_agg(occurred_at ORDER BY occurred_at) FILTER (WHERE kind = 'opened'
            OR (kind NOT IN ('opened', 'clicked') AND details ->> 'signal' = 'open')) AS opens,
        array_agg(occurred_at ORDER BY occurred_at) FILTER (WHERE kind = 'clicked'
            OR (kind NOT IN ('opened', 'clicked') AND details ->> 'signal' = 'click')) AS clicks,
        array_agg(occurred_at ORDER BY occurred_at) FILTER (WHERE
            kind NOT IN ('opened', 'clicked') AND details ->> 'signal' = 'visit') AS visits
    FROM activities act
    WHERE act.workspace_id = $1 AND act.contact_id = p.id AND act.occurred_at >= $5
) x ON true
LEFT JOIN LATERAL (
    SELECT array_agg(i.intent ORDER BY i.intent) AS intents,
           array_agg(i.last_at ORDER BY i.intent) AS intent_times
    FROM (
        SELECT CASE WHEN kind = 'meeting_booked' THEN 'demo_request'
                    ELSE details ->> 'signal' END AS intent,
               max(occurred_at) AS last_at
        FROM activities act
        WHERE act.workspace_id = $1 AND act.contact_id = p.id AND act.occurred_at >= $5
          AND (kind = 'meeting_booked' OR details ->> 'signal' IN
                ('demo_request', 'pricing_view', 'trial_signup', 'contact_form'))
        GROUP BY 1
    ) i
) y ON true
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
    intents: Vec<String>,
    /// The latest occurrence of each of `intents`, index for index.
    intent_times: Vec<DateTime<Utc>>,
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
        for (name, at) in self.intents.iter().zip(&self.intent_times) {
            intents.insert_at(parse_text::<Intent>(name)?, *at);
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
