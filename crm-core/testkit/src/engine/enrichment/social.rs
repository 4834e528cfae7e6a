//! Social links outlive the contact data they came with (90 days against 30).

use std::sync::Arc;

use chrono::Duration;

use crate::enrichment::{CallLog, Script};
use crm_core::DynStore;
use crm_core::clock::Clock;
use crm_core::enrichment::{LookupKind, Source};
use crm_core::ids::WorkspaceId;

use super::{chain, clock, enricher, query};

/// A contact hit caches its LinkedIn link as social links: served without any lookup
/// until 90 days, after the contact data expired at 30 days; gone at 90 days.
pub async fn social_links_outlive_contact_data(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let log = CallLog::new();
    let (waterfall, _p) = chain(&log, LookupKind::Contact, &[("p", Script::Hit)], 0);
    let clock = clock();
    let start = clock.now();
    let enricher = enricher(&store, &clock, waterfall);
    let q = query();
    assert_eq!(
        enricher.social_links(ws, &q).await.expect("links"),
        None,
        "nothing known before a lookup"
    );
    let got = enricher.enrich_contact(ws, &q).await.expect("enrich");
    assert_eq!(got.source, Source::Provider("p"));

    clock.set(start + Duration::days(30));
    let links = enricher.social_links(ws, &q).await.expect("links");
    assert_eq!(
        links.and_then(|l| l.linkedin_url).as_deref(),
        Some("https://www.linkedin.com/in/p"),
        "social links still fresh when the contact data expires"
    );
    clock.set(start + Duration::days(90) - Duration::seconds(1));
    assert!(
        enricher
            .social_links(ws, &q)
            .await
            .expect("links")
            .is_some()
    );
    clock.set(start + Duration::days(90));
    assert_eq!(
        enricher.social_links(ws, &q).await.expect("links"),
        None,
        "expired at 90 days"
    );
    assert_eq!(
        enricher
            .social_links(WorkspaceId::new(), &q)
            .await
            .expect("links"),
        None,
        "per workspace"
    );
    assert_eq!(
        log.names(),
        vec!["p"],
        "reading social links asks no provider"
    );
}
