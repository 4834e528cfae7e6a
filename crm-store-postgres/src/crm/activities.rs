//! The timeline: activities and their filtered listing and count.

use async_trait::async_trait;
use crm_core::StoreError;
use crm_core::events;
use crm_core::ids::WorkspaceId;
use crm_core::model::Activity;
use crm_core::store::{ActivityFilter, ActivityStore, validate_limit};

use super::{CONTACT, DEAL};
use crate::PostgresStore;
use crate::error::{Ref, db, db_refs};
use crate::queue::insert_events_in;
use crate::rows::{ActivityRow, IntoEntity, entities};

const ACTIVITY: &str = "activity";

// Every present filter condition must hold; absent ones are NULL (or an empty array).
macro_rules! activity_filter {
    () => {
        "workspace_id = $1
           AND ($2::uuid IS NULL OR contact_id = $2)
           AND ($3::uuid IS NULL OR deal_id = $3)
           AND (cardinality($4::text[]) = 0 OR kind = ANY($4))
           AND ($5::text IS NULL OR channel = $5)
           AND ($6::timestamptz IS NULL OR occurred_at >= $6)
           AND ($7::timestamptz IS NULL OR occurred_at < $7)"
    };
}

const LIST_ACTIVITIES: &str = concat!(
    "SELECT * FROM activities WHERE ",
    activity_filter!(),
    " ORDER BY occurred_at DESC, id DESC LIMIT $8"
);

const COUNT_ACTIVITIES: &str =
    concat!("SELECT count(*) FROM activities WHERE ", activity_filter!());

/// The filter's values, bound as `$1` to `$7` of `activity_filter!`.
fn bind_filter<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    workspace_id: WorkspaceId,
    f: &ActivityFilter,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    let kinds: Vec<String> = f.kinds.iter().map(|k| k.as_str().to_owned()).collect();
    q.bind(workspace_id.as_uuid())
        .bind(f.contact_id.map(|id| id.as_uuid()))
        .bind(f.deal_id.map(|id| id.as_uuid()))
        .bind(kinds)
        .bind(f.channel.map(|c| c.as_str()))
        .bind(f.since)
        .bind(f.until)
}

#[async_trait]
impl ActivityStore for PostgresStore {
    async fn record_activity(&self, activity: &Activity) -> Result<Activity, StoreError> {
        activity.validate()?;
        let refs = [
            Ref::new(
                "activities_contact_fk",
                CONTACT,
                activity.contact_id.map(|id| id.as_uuid()),
            ),
            Ref::new(
                "activities_deal_fk",
                DEAL,
                activity.deal_id.map(|id| id.as_uuid()),
            ),
        ];
        let mut tx = self.pool.begin().await.map_err(db(ACTIVITY))?;
        let stored = sqlx::query_as::<_, ActivityRow>(
            "INSERT INTO activities (workspace_id, id, contact_id, deal_id, kind, channel,
                 outbox_message_id, summary, details, occurred_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
        )
        .bind(activity.workspace_id.as_uuid())
        .bind(activity.id.as_uuid())
        .bind(activity.contact_id.map(|id| id.as_uuid()))
        .bind(activity.deal_id.map(|id| id.as_uuid()))
        .bind(activity.kind.as_str())
        .bind(activity.channel.map(|c| c.as_str()))
        .bind(activity.outbox_message_id.map(|id| id.as_uuid()))
        .bind(activity.summary.clone())
        .bind(activity.details.clone())
        .bind(activity.occurred_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_refs(ACTIVITY, &refs))?
        .into_entity()?;
        insert_events_in(&mut tx, &[events::activity_logged(&stored)?]).await?;
        tx.commit().await.map_err(db(ACTIVITY))?;
        Ok(stored)
    }

    async fn list_activities(
        &self,
        workspace_id: WorkspaceId,
        filter: &ActivityFilter,
        limit: u32,
    ) -> Result<Vec<Activity>, StoreError> {
        validate_limit(limit)?;
        let rows = bind_filter(
            sqlx::query_as::<_, ActivityRow>(LIST_ACTIVITIES),
            workspace_id,
            filter,
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db(ACTIVITY))?;
        entities(rows)
    }

    async fn count_activities(
        &self,
        workspace_id: WorkspaceId,
        filter: &ActivityFilter,
    ) -> Result<u64, StoreError> {
        let (count,): (i64,) = bind_filter(sqlx::query_as(COUNT_ACTIVITIES), workspace_id, filter)
            .fetch_one(&self.pool)
            .await
            .map_err(db(ACTIVITY))?;
        u64::try_from(count).map_err(crate::error::backend)
    }
}
