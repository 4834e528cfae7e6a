//! Social links: kept in the cache longer than the contact data they came with.
//!
//! No provider offers a social-links lookup kind yet, so social links are harvested
//! from contact hits: when a contact lookup finds a profile link, the [`Enricher`]
//! caches it again as [`EnrichmentDataType::SocialLinks`], which stays fresh for its
//! own TTL (90 days by default) after the contact data (30 days) has expired.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::enrichment::cache::contact_subject;
use crate::enrichment::{ContactQuery, EnricherError};
use crate::ids::WorkspaceId;
use crate::store::{CachedEnrichment, EnrichmentDataType};

use super::Enricher;

/// A contact's social profile links.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SocialLinks {
    /// LinkedIn profile URL.
    pub linkedin_url: Option<String>,
}

impl SocialLinks {
    /// The links found in a contact payload, if it has any.
    fn from_contact(payload: &Value) -> Option<Self> {
        let linkedin_url = payload
            .get("linkedin_url")
            .and_then(Value::as_str)
            .filter(|url| !url.trim().is_empty())?;
        Some(Self {
            linkedin_url: Some(linkedin_url.to_owned()),
        })
    }
}

impl Enricher {
    /// Caches the social links of a contact hit `contact` (same subject and fetch
    /// time), if it has any.
    pub(super) async fn cache_social_links(
        &self,
        contact: &CachedEnrichment,
    ) -> Result<(), EnricherError> {
        let Some(links) = SocialLinks::from_contact(&contact.payload) else {
            return Ok(());
        };
        let entry = CachedEnrichment {
            data_type: EnrichmentDataType::SocialLinks,
            payload: serde_json::to_value(links).map_err(EnricherError::Data)?,
            ..contact.clone()
        };
        self.store.put_cached_enrichment(&entry).await?;
        Ok(())
    }

    /// The social links known for `query` while fresh under the cache policy's
    /// social-links TTL; `None` if none were found or they expired. Never asks a
    /// provider and costs nothing.
    pub async fn social_links(
        &self,
        workspace_id: WorkspaceId,
        query: &ContactQuery,
    ) -> Result<Option<SocialLinks>, EnricherError> {
        let subject = contact_subject(query)?;
        let data_type = EnrichmentDataType::SocialLinks;
        let entry = self
            .store
            .get_cached_enrichment(workspace_id, data_type, &subject)
            .await?;
        let now = self.clock.now();
        entry
            .filter(|e| self.cache.is_fresh(data_type, e.fetched_at, now))
            .map(|e| serde_json::from_value(e.payload).map_err(EnricherError::Data))
            .transpose()
    }
}
