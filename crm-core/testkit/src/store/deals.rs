//! Cases for [`DealStore`] (pipelines and deals) and [`ActivityStore`].

use chrono::{DateTime, Utc};

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{ContactId, DealId, PipelineId, WorkspaceId};
use crm_core::model::{Activity, ActivityKind, Channel, Deal, OutboxMessage};
use crm_core::store::{ActivityFilter, Page};

use super::fixtures::{
    account, activity, assert_pagination, at, base, contact, created, eur, expect_err, ids,
    new_deal, new_message, new_pipeline, note, ok, pipeline, sorted,
};

/// insert_pipeline/get_pipeline round trip (stages in order); list_pipelines ascending by id.
pub async fn pipeline_round_trip_and_list(store: &DynStore) {
    let ws = WorkspaceId::new();
    let mut inserted = Vec::new();
    for _ in 0..3 {
        let pipeline = new_pipeline(ws);
        let stored = ok(store.insert_pipeline(&pipeline).await, "insert_pipeline");
        assert_eq!(
            stored, pipeline,
            "insert_pipeline returns the row as stored"
        );
        let got = ok(store.get_pipeline(ws, pipeline.id).await, "get_pipeline");
        assert_eq!(
            got, pipeline,
            "get_pipeline returns the pipeline with its stages in order"
        );
        inserted.push(pipeline.id);
    }
    let listed = ok(store.list_pipelines(ws).await, "list_pipelines");
    assert_eq!(
        ids(&listed, |p| p.id),
        sorted(inserted),
        "list_pipelines lists every pipeline of the workspace ascending by id"
    );
    expect_err(
        store.get_pipeline(ws, PipelineId::new()).await,
        Kind::NotFound,
        "get_pipeline of an unknown id",
    );
    let other = WorkspaceId::new();
    expect_err(
        store.get_pipeline(other, listed[0].id).await,
        Kind::NotFound,
        "get_pipeline from another workspace",
    );
    assert!(
        ok(store.list_pipelines(other).await, "list").is_empty(),
        "list_pipelines is scoped to the workspace"
    );
}

/// insert_pipeline: version 1, a name and a stage (Invalid); a reused id is Conflict.
pub async fn pipeline_insert_rules(store: &DynStore) {
    let ws = WorkspaceId::new();
    let mut v2 = new_pipeline(ws);
    v2.version = 2;
    expect_err(
        store.insert_pipeline(&v2).await,
        Kind::Invalid,
        "insert_pipeline with version 2",
    );
    let mut blank = new_pipeline(ws);
    blank.name = " ".into();
    expect_err(
        store.insert_pipeline(&blank).await,
        Kind::Invalid,
        "insert_pipeline with a blank name",
    );
    let mut empty = new_pipeline(ws);
    empty.stages.clear();
    expect_err(
        store.insert_pipeline(&empty).await,
        Kind::Invalid,
        "insert_pipeline without stages",
    );
    let first = pipeline(store, ws).await;
    let mut same_id = new_pipeline(ws);
    same_id.id = first.id;
    expect_err(
        store.insert_pipeline(&same_id).await,
        Kind::Conflict,
        "insert_pipeline with a reused id",
    );
    assert_eq!(
        ok(store.list_pipelines(ws).await, "list").len(),
        1,
        "rejected pipelines are not stored"
    );
}

/// insert_deal/get_deal round trip; list_deals pages by id, optionally of one pipeline.
pub async fn deal_round_trip_and_list(store: &DynStore) {
    let ws = WorkspaceId::new();
    let p1 = pipeline(store, ws).await;
    let p2 = pipeline(store, ws).await;
    let acme = account(store, ws).await;
    let ada = contact(store, ws).await;
    let mut on_p1 = Vec::new();
    for _ in 0..3 {
        let mut deal = new_deal(&p1);
        deal.account_id = Some(acme.id);
        deal.contact_id = Some(ada.id);
        let stored = ok(store.insert_deal(&deal).await, "insert_deal");
        assert_eq!(stored, deal, "insert_deal returns the row as stored");
        assert_eq!(
            ok(store.get_deal(ws, deal.id).await, "get_deal"),
            deal,
            "get_deal round trip"
        );
        on_p1.push(deal.id);
    }
    let on_p2 = ok(store.insert_deal(&new_deal(&p2)).await, "insert_deal").id;
    let mut all = on_p1.clone();
    all.push(on_p2);
    assert_pagination(
        "list_deals(None)",
        all,
        |d: &Deal| d.id,
        |page| store.list_deals(ws, None, page),
    )
    .await;
    assert_pagination(
        "list_deals(Some(pipeline))",
        on_p1,
        |d: &Deal| d.id,
        |page| store.list_deals(ws, Some(p1.id), page),
    )
    .await;
    expect_err(
        store.get_deal(ws, DealId::new()).await,
        Kind::NotFound,
        "get_deal of an unknown id",
    );
}

/// insert_deal: version 1 (Invalid), stage of the pipeline (Invalid), references in the
/// workspace (InvalidReference).
pub async fn deal_insert_checks_references(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let own = pipeline(store, ws).await;
    let second = pipeline(store, ws).await;
    let mut v2 = new_deal(&own);
    v2.version = 2;
    expect_err(
        store.insert_deal(&v2).await,
        Kind::Invalid,
        "insert_deal with version 2",
    );
    let mut wrong_stage = new_deal(&own);
    wrong_stage.stage_id = second.stages[0].id;
    expect_err(
        store.insert_deal(&wrong_stage).await,
        Kind::Invalid,
        "insert_deal with another pipeline's stage",
    );

    let foreign_pipeline = pipeline(store, other).await;
    let mut deal = new_deal(&foreign_pipeline);
    deal.workspace_id = ws;
    expect_err(
        store.insert_deal(&deal).await,
        Kind::InvalidReference,
        "insert_deal on another workspace's pipeline",
    );
    let mut deal = new_deal(&own);
    deal.pipeline_id = PipelineId::new();
    expect_err(
        store.insert_deal(&deal).await,
        Kind::InvalidReference,
        "insert_deal on an unknown pipeline",
    );
    let mut deal = new_deal(&own);
    deal.account_id = Some(account(store, other).await.id);
    expect_err(
        store.insert_deal(&deal).await,
        Kind::InvalidReference,
        "insert_deal with another workspace's account",
    );
    let mut deal = new_deal(&own);
    deal.contact_id = Some(contact(store, other).await.id);
    expect_err(
        store.insert_deal(&deal).await,
        Kind::InvalidReference,
        "insert_deal with another workspace's contact",
    );
    let mut deal = new_deal(&own);
    deal.contact_id = Some(ContactId::new());
    expect_err(
        store.insert_deal(&deal).await,
        Kind::InvalidReference,
        "insert_deal with an unknown contact",
    );
    let listed = ok(
        store.list_deals(ws, None, Page::first(10)).await,
        "list_deals",
    );
    assert!(listed.is_empty(), "rejected deals are not stored");
}

/// update_deal is compare-and-set with the insert checks; created_at is kept.
pub async fn deal_update_compare_and_set(store: &DynStore) {
    let ws = WorkspaceId::new();
    let sales = pipeline(store, ws).await;
    let other_pipeline = pipeline(store, ws).await;
    let deal = ok(store.insert_deal(&new_deal(&sales)).await, "insert_deal");
    let mut won = deal.clone();
    won.stage_id = sales.stages[2].id;
    won.amount = eur(750_000);
    won.updated_at = at(30);
    won.created_at = at(-30);
    let updated = ok(store.update_deal(&won).await, "update_deal");
    let mut expected = won.clone();
    expected.version = 2;
    expected.created_at = base();
    assert_eq!(
        updated, expected,
        "update_deal stores every field, version + 1, keeps created_at"
    );
    assert_eq!(
        ok(store.get_deal(ws, deal.id).await, "get"),
        expected,
        "get_deal sees the update"
    );
    expect_err(
        store.update_deal(&won).await,
        Kind::VersionConflict,
        "update_deal with a stale version",
    );

    let mut wrong_stage = updated.clone();
    wrong_stage.stage_id = other_pipeline.stages[0].id;
    expect_err(
        store.update_deal(&wrong_stage).await,
        Kind::Invalid,
        "update_deal to another pipeline's stage",
    );
    let mut foreign = updated.clone();
    foreign.contact_id = Some(contact(store, WorkspaceId::new()).await.id);
    expect_err(
        store.update_deal(&foreign).await,
        Kind::InvalidReference,
        "update_deal with another workspace's contact",
    );
    let mut blank = updated.clone();
    blank.name = " ".into();
    expect_err(
        store.update_deal(&blank).await,
        Kind::Invalid,
        "update_deal with a blank name",
    );
    assert_eq!(
        ok(store.get_deal(ws, deal.id).await, "get"),
        expected,
        "refused updates change nothing"
    );
}

/// Another workspace can neither get, list nor update a deal.
pub async fn deal_tenant_isolation(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let sales = pipeline(store, ws).await;
    let deal = ok(store.insert_deal(&new_deal(&sales)).await, "insert_deal");
    expect_err(
        store.get_deal(other, deal.id).await,
        Kind::NotFound,
        "get_deal from another workspace",
    );
    for pipeline_id in [None, Some(sales.id)] {
        let listed = ok(
            store.list_deals(other, pipeline_id, Page::first(10)).await,
            "list",
        );
        assert!(
            listed.is_empty(),
            "list_deals never returns another workspace's deals"
        );
    }
    let mut hijack = deal.clone();
    hijack.workspace_id = other;
    expect_err(
        store.update_deal(&hijack).await,
        Kind::NotFound,
        "update_deal from another workspace",
    );
    assert_eq!(
        ok(store.get_deal(ws, deal.id).await, "get"),
        deal,
        "the row is unchanged"
    );
}

/// record_activity returns the input; list_activities is newest first, ties by greater id,
/// at most `limit`.
pub async fn activity_round_trip_newest_first(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let message: OutboxMessage = created(
        store.enqueue_outbox(&new_message(ws)).await,
        "enqueue_outbox",
    );
    let detailed = note(ws, ada.id, at(10))
        .with_channel(Channel::Email)
        .with_outbox_message(message.id)
        .with_details(serde_json::json!({ "opened": 2 }));
    let recorded = [
        note(ws, ada.id, at(20)),
        detailed,
        note(ws, ada.id, at(30)),
        note(ws, ada.id, at(20)),
        note(ws, ada.id, at(0)),
    ];
    for activity in &recorded {
        let stored = ok(store.record_activity(activity).await, "record_activity");
        assert_eq!(
            &stored, activity,
            "record_activity returns the row as stored"
        );
    }
    let mut expected = recorded.to_vec();
    expected.sort_by(|a, b| b.occurred_at.cmp(&a.occurred_at).then(b.id.cmp(&a.id)));
    let filter = ActivityFilter::default();
    let listed = ok(
        store.list_activities(ws, &filter, 100).await,
        "list_activities",
    );
    assert_eq!(
        listed, expected,
        "list_activities: newest occurred_at first, ties by greater id"
    );
    let top = ok(
        store.list_activities(ws, &filter, 2).await,
        "list_activities",
    );
    assert_eq!(
        top,
        expected[..2],
        "list_activities returns at most `limit` rows"
    );
    let mut same_id = note(ws, ada.id, at(40));
    same_id.id = recorded[0].id;
    expect_err(
        store.record_activity(&same_id).await,
        Kind::Conflict,
        "record_activity with a reused id",
    );
}

/// Every present filter condition must hold (since inclusive, until exclusive); count agrees.
pub async fn activity_filters_and_count(store: &DynStore) {
    let ws = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let grace = contact(store, ws).await;
    let deal = ok(
        store
            .insert_deal(&new_deal(&pipeline(store, ws).await))
            .await,
        "insert_deal",
    );
    let mut deal_only = activity(ws, ada.id, ActivityKind::StageChanged, at(30)).with_deal(deal.id);
    deal_only.contact_id = None;
    let rows = [
        note(ws, ada.id, at(0)).with_channel(Channel::Email),
        activity(ws, ada.id, ActivityKind::MessageSent, at(10)).with_channel(Channel::Email),
        activity(ws, grace.id, ActivityKind::ReplyReceived, at(20)).with_channel(Channel::WhatsApp),
        deal_only,
        activity(ws, ada.id, ActivityKind::Call, at(40)).with_deal(deal.id),
    ];
    for row in &rows {
        ok(store.record_activity(row).await, "record_activity");
    }
    let pick =
        |indexes: &[usize]| -> Vec<&Activity> { indexes.iter().rev().map(|&i| &rows[i]).collect() };
    let span = |since: Option<DateTime<Utc>>, until| ActivityFilter {
        since,
        until,
        ..Default::default()
    };
    let cases: Vec<(&str, ActivityFilter, Vec<&Activity>)> = vec![
        (
            "contact",
            ActivityFilter {
                contact_id: Some(ada.id),
                ..Default::default()
            },
            pick(&[0, 1, 4]),
        ),
        (
            "deal",
            ActivityFilter {
                deal_id: Some(deal.id),
                ..Default::default()
            },
            pick(&[3, 4]),
        ),
        (
            "kinds",
            ActivityFilter {
                kinds: vec![ActivityKind::Note, ActivityKind::Call],
                ..Default::default()
            },
            pick(&[0, 4]),
        ),
        (
            "channel",
            ActivityFilter {
                channel: Some(Channel::Email),
                ..Default::default()
            },
            pick(&[0, 1]),
        ),
        (
            "since (inclusive)",
            span(Some(at(10)), None),
            pick(&[1, 2, 3, 4]),
        ),
        ("until (exclusive)", span(None, Some(at(20))), pick(&[0, 1])),
        (
            "since and until",
            span(Some(at(10)), Some(at(40))),
            pick(&[1, 2, 3]),
        ),
        (
            "contact and kind",
            ActivityFilter {
                contact_id: Some(ada.id),
                kinds: vec![ActivityKind::MessageSent],
                ..Default::default()
            },
            pick(&[1]),
        ),
        (
            "no condition",
            ActivityFilter::default(),
            pick(&[0, 1, 2, 3, 4]),
        ),
    ];
    for (what, filter, expected) in cases {
        let listed = ok(
            store.list_activities(ws, &filter, 100).await,
            "list_activities",
        );
        let expected: Vec<Activity> = expected.into_iter().cloned().collect();
        assert_eq!(
            listed, expected,
            "list_activities filtered by {what}: every condition holds, newest first"
        );
        let count = ok(
            store.count_activities(ws, &filter).await,
            "count_activities",
        );
        assert_eq!(
            count,
            expected.len() as u64,
            "count_activities filtered by {what} agrees with the list"
        );
    }
}

/// record_activity validates the row and its references; list limits are 1 to 1000.
pub async fn activity_insert_rules(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let ada = contact(store, ws).await;
    let foreign = contact(store, other).await;
    expect_err(
        store.record_activity(&note(ws, foreign.id, base())).await,
        Kind::InvalidReference,
        "record_activity about another workspace's contact",
    );
    expect_err(
        store
            .record_activity(&note(ws, ContactId::new(), base()))
            .await,
        Kind::InvalidReference,
        "record_activity about an unknown contact",
    );
    let foreign_deal = ok(
        store
            .insert_deal(&new_deal(&pipeline(store, other).await))
            .await,
        "deal",
    );
    expect_err(
        store
            .record_activity(&note(ws, ada.id, base()).with_deal(foreign_deal.id))
            .await,
        Kind::InvalidReference,
        "record_activity about another workspace's deal",
    );
    let mut blank = note(ws, ada.id, base());
    blank.summary = " ".into();
    expect_err(
        store.record_activity(&blank).await,
        Kind::Invalid,
        "record_activity with a blank summary",
    );
    for limit in [0, 1001] {
        expect_err(
            store
                .list_activities(ws, &ActivityFilter::default(), limit)
                .await,
            Kind::Invalid,
            &format!("list_activities with limit {limit} (1 to 1000)"),
        );
    }
    assert_eq!(
        ok(
            store.count_activities(ws, &ActivityFilter::default()).await,
            "count"
        ),
        0,
        "rejected activities are not stored"
    );
}

/// Another workspace neither lists nor counts a workspace's activities.
pub async fn activity_tenant_isolation(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let ada = contact(store, ws).await;
    ok(
        store.record_activity(&note(ws, ada.id, base())).await,
        "record_activity",
    );
    for filter in [
        ActivityFilter::default(),
        ActivityFilter {
            contact_id: Some(ada.id),
            ..Default::default()
        },
    ] {
        let listed = ok(store.list_activities(other, &filter, 100).await, "list");
        assert!(
            listed.is_empty(),
            "list_activities never returns another workspace's rows"
        );
        let count = ok(store.count_activities(other, &filter).await, "count");
        assert_eq!(
            count, 0,
            "count_activities never counts another workspace's rows"
        );
    }
}
