//! Enrichment state: the lookup cache, usage records, the monthly spend counter and
//! the spend reservations that keep concurrent lookups inside the budget.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::error::{StoreError, ValidationError};
pub use crate::ids::SpendReservationId;
use crate::ids::WorkspaceId;
use crate::money::{Currency, Money};

pub use crate::model::enrichment::{
    CachedEnrichment, EnrichmentDataType, EnrichmentUsage, SpendTotals, month_of, validate_month,
};

/// A request to hold `amount` of a month's enrichment budget for one provider call,
/// made before the call ([`EnrichmentStore::reserve_enrichment_spend`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendReservation {
    /// Names the reservation for the later settle or release.
    pub id: SpendReservationId,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// The spend period (a first day of month).
    pub month: NaiveDate,
    /// The most the call may cost; its currency is the budget's.
    pub amount: Money,
    /// The month's budget in minor units of `amount`'s currency; `None` for no cap
    /// (the reservation is always granted, spend is only counted).
    pub cap: Option<i64>,
    /// When the reservation stops counting if it was neither settled nor released
    /// (the caller died mid-call): it no longer holds budget from this instant on.
    pub expires_at: DateTime<Utc>,
}

impl SpendReservation {
    /// The month must be a first day of month, the cap not negative.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_month(self.month)?;
        if self.cap.is_some_and(|c| c < 0) {
            return Err(ValidationError::new(
                "enrichment_reservation.cap",
                "must not be negative",
            ));
        }
        Ok(())
    }
}

/// Checks that `usage` may settle a reservation of `amount` in `month`: the same
/// month and currency, and a cost of at most `amount` (stores call this before
/// settling, so both reject the same inputs).
pub fn validate_settlement(
    month: NaiveDate,
    amount: Money,
    usage: &EnrichmentUsage,
) -> Result<(), ValidationError> {
    usage.validate()?;
    if usage.month() != month {
        return Err(ValidationError::new(
            "enrichment_usage.at",
            "is not in the reserved month",
        ));
    }
    if usage.cost.currency() != amount.currency() {
        return Err(ValidationError::new(
            "enrichment_usage.cost",
            "is not in the reserved currency",
        ));
    }
    if usage.cost.minor_units() > amount.minor_units() {
        return Err(ValidationError::new(
            "enrichment_usage.cost",
            "exceeds the reserved amount",
        ));
    }
    Ok(())
}

/// The answer of [`EnrichmentStore::reserve_enrichment_spend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReserveOutcome {
    /// The amount is held against the budget until settled, released or expired.
    Reserved,
    /// The budget cannot hold the amount; nothing was reserved.
    Refused {
        /// The month's settled spend, in minor units.
        spent: i64,
        /// The amount held by other live reservations, in minor units.
        reserved: i64,
    },
}

/// The enrichment cache, usage log and monthly spend.
///
/// # Contract
/// Tenant scoping as for [`ContactStore`](crate::store::ContactStore). The cache never
/// judges freshness: it returns what it holds, and the engine applies the TTL.
#[async_trait]
pub trait EnrichmentStore: Send + Sync + Debug {
    /// The cached entry for (workspace, `data_type`, `subject`), fresh or not; `None`
    /// if there is none.
    async fn get_cached_enrichment(
        &self,
        workspace_id: WorkspaceId,
        data_type: EnrichmentDataType,
        subject: &str,
    ) -> Result<Option<CachedEnrichment>, StoreError>;

    /// Stores `entry`, replacing any entry with the same key (last write wins).
    /// `Invalid` for a blank subject or provider.
    async fn put_cached_enrichment(&self, entry: &CachedEnrichment) -> Result<(), StoreError>;

    /// Appends `usage` and adds its cost to the workspace's spend for its month
    /// ([`EnrichmentUsage::month`]) in its currency, in one atomic step, and returns the
    /// totals just before and after. MUST be atomic: under any number of racing
    /// callers, each sees a distinct `before`, the `after`s are the running sums, and
    /// no cost is counted twice or lost. `Invalid` for a blank provider.
    async fn record_enrichment_usage(
        &self,
        usage: &EnrichmentUsage,
    ) -> Result<SpendTotals, StoreError>;

    /// The workspace's spend in `currency` for `month` (a first day of month, else
    /// `Invalid`); zero if nothing was recorded.
    async fn enrichment_spend(
        &self,
        workspace_id: WorkspaceId,
        month: NaiveDate,
        currency: Currency,
    ) -> Result<Money, StoreError>;

    /// Holds `reservation.amount` of the month's budget, atomically with the check:
    /// refused when the month's settled spend (in the amount's currency) has reached
    /// the cap, or when settled spend + the amounts of the live reservations + this
    /// amount would exceed it. Live means neither settled nor released and
    /// `expires_at > now`. MUST be atomic: under any number of racing reservations and
    /// settlements, settled spend + live reservations never exceed the cap through
    /// this call. Without a cap the reservation is always granted. `Conflict` if the
    /// id is already in use in the workspace; `Invalid` per
    /// [`SpendReservation::validate`].
    async fn reserve_enrichment_spend(
        &self,
        reservation: &SpendReservation,
        now: DateTime<Utc>,
    ) -> Result<ReserveOutcome, StoreError>;

    /// Ends reservation `id` and records `usage` (its actual cost) in one atomic step,
    /// as [`record_enrichment_usage`](Self::record_enrichment_usage) does, returning
    /// the settled totals just before and after. The difference between the reserved
    /// amount and `usage.cost` is released. A reservation that expired is still
    /// settled: the call happened, so its cost counts (this is the only way settled
    /// spend can pass the cap). `NotFound` if the workspace holds no open reservation
    /// `id` (unknown, already settled or released); `Invalid` if `usage` is of another
    /// workspace, month or currency than the reservation, or costs more than it.
    async fn settle_enrichment_spend(
        &self,
        id: SpendReservationId,
        usage: &EnrichmentUsage,
    ) -> Result<SpendTotals, StoreError>;

    /// Ends reservation `id` without spending (the call failed or was not made), so
    /// its amount stops counting at once. Idempotent: an unknown or already ended
    /// reservation is left alone.
    async fn release_enrichment_spend(
        &self,
        workspace_id: WorkspaceId,
        id: SpendReservationId,
    ) -> Result<(), StoreError>;

    /// The usage records of `month` (a first day of month, else `Invalid`), oldest
    /// first (in recording order for equal times), at most `limit` (1 to 1000).
    async fn list_enrichment_usage(
        &self,
        workspace_id: WorkspaceId,
        month: NaiveDate,
        limit: u32,
    ) -> Result<Vec<EnrichmentUsage>, StoreError>;
}
