//! Cases for [`ScoringStore`](crm_core::store::ScoringStore).

use chrono::Duration;
use serde_json::json;

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::error::ValidationError;
use crm_core::ids::{ContactId, WorkspaceId};
use crm_core::model::{Activity, ActivityKind, Actor, Contact, NewEvent};
use crm_core::scoring::{
    Behavior, BehavioralFactor, ContactScore, IndustryFactor, Intent, IntentFactor, RangeFactor,
    ScoreOverride, ScoreWritten, ScoringInput, ScoringModel, Tier, Weights, explain,
};
use crm_core::store::Page;

use super::fixtures::{
    account, at, base, contact, events_of, expect_err, new_contact, ok, unique_email,
};

/// A valid version-1 model for `ws` with a few factors of each kind.
pub fn scoring_model(ws: WorkspaceId) -> ScoringModel {
    let weights = Weights {
        firmographic: 30,
        behavioral: 40,
        intent: 30,
    };
    let mut model = ScoringModel::new(ws, weights, base()).expect("valid model");
    model.firmographics.employee_ranges = vec![RangeFactor {
        min: 10,
        max: Some(100),
        points: 50,
    }];
    model.firmographics.industries = vec![IndustryFactor {
        industry: "Software".into(),
        points: 50,
    }];
    model.behavioral = vec![BehavioralFactor {
        behavior: Behavior::Click,
        points: 20,
        max_points: 60,
        decay_days: 30,
    }];
    model.intent = vec![IntentFactor {
        intent: Intent::DemoRequest,
        points: 100,
    }];
    model
}

/// A computed score of `total` points for `contact` (the breakdown is a real one).
fn score(ws: WorkspaceId, contact: ContactId, tier: Tier, total: u8) -> ContactScore {
    let mut input = ScoringInput::empty(ws, contact);
    input.clicks = vec![base()];
    let breakdown = explain(&scoring_model(ws), &input, base());
    let mut score = ContactScore::computed(ws, contact, breakdown, 1, base());
    score.total = total;
    score.tier = tier;
    score
}

fn manual(total: u8, tier: Tier) -> ScoreOverride {
    ScoreOverride {
        total,
        tier,
        reason: "Met them at the fair".into(),
        actor: Actor::System,
        at: base(),
    }
}

/// Models are saved with compare-and-set on the version (first 1, then current + 1),
/// every version stays readable, and invalid models are refused.
pub async fn scoring_model_versions_compare_and_set(store: &DynStore) {
    let ws = WorkspaceId::new();
    assert_eq!(
        ok(
            store.current_scoring_model(ws).await,
            "current_scoring_model"
        ),
        None,
        "no model before the first save"
    );
    let mut v2 = scoring_model(ws).next_version(at(5));
    expect_err(
        store.save_scoring_model(&v2).await,
        Kind::VersionConflict,
        "the first model must be version 1",
    );
    let v1 = ok(
        store.save_scoring_model(&scoring_model(ws)).await,
        "save v1",
    );
    assert_eq!(v1, scoring_model(ws), "save returns the model as given");
    expect_err(
        store.save_scoring_model(&scoring_model(ws)).await,
        Kind::VersionConflict,
        "saving version 1 twice conflicts",
    );
    v2.weights.firmographic = 50;
    v2.weights.behavioral = 20;
    ok(store.save_scoring_model(&v2).await, "save v2");
    assert_eq!(
        ok(store.current_scoring_model(ws).await, "current").as_ref(),
        Some(&v2),
        "the current model is the newest version"
    );
    assert_eq!(
        ok(store.get_scoring_model(ws, 1).await, "get v1"),
        v1,
        "old versions stay readable"
    );
    expect_err(
        store.get_scoring_model(ws, 3).await,
        Kind::NotFound,
        "an unsaved version is not found",
    );
    let mut bad = v2.next_version(at(6));
    bad.weights.intent = 31;
    expect_err(
        store.save_scoring_model(&bad).await,
        Kind::Invalid,
        "weights must sum to 100",
    );
    let other = WorkspaceId::new();
    assert_eq!(
        ok(
            store.current_scoring_model(other).await,
            "current of another workspace"
        ),
        None,
        "models are per workspace"
    );
    expect_err(
        store.get_scoring_model(other, 1).await,
        Kind::NotFound,
        "another workspace's model is invisible",
    );
}

/// Rewriting a score whose computed fields (total, tier, breakdown, model version) are
/// the same leaves the stored row alone, `computed_at` included; a changed field
/// rewrites it. Both report the tiers as usual, and an override is kept either way.
pub async fn contact_scores_unchanged_are_not_rewritten(store: &DynStore) {
    let ws = WorkspaceId::new();
    let a = contact(store, ws).await;
    let first = score(ws, a.id, Tier::Warm, 55);
    ok(
        store
            .upsert_contact_scores(ws, std::slice::from_ref(&first))
            .await,
        "first",
    );
    let mut same = first.clone();
    same.computed_at = at(60);
    let written = ok(store.upsert_contact_scores(ws, &[same]).await, "same");
    assert_eq!(
        written,
        vec![ScoreWritten {
            contact_id: a.id,
            previous: Some(Tier::Warm),
            current: Tier::Warm
        }],
        "an unchanged score still reports its tier"
    );
    assert_eq!(
        ok(store.get_contact_score(ws, a.id).await, "get").map(|s| s.computed_at),
        Some(first.computed_at),
        "an unchanged score keeps the time it was computed"
    );
    ok(
        store
            .set_score_override(ws, a.id, Some(&manual(95, Tier::SalesReady)))
            .await,
        "override",
    );
    let mut newer = first.clone();
    newer.model_version = 2;
    newer.computed_at = at(120);
    let written = ok(store.upsert_contact_scores(ws, &[newer]).await, "newer");
    assert_eq!(
        (written[0].previous, written[0].current),
        (Some(Tier::SalesReady), Tier::SalesReady),
        "the override's tier is in force before and after"
    );
    let stored = ok(store.get_contact_score(ws, a.id).await, "get").expect("scored");
    assert_eq!(
        (stored.model_version, stored.computed_at),
        (2, at(120)),
        "a new model version rewrites the row"
    );
    assert!(stored.manual_override.is_some(), "the override is kept");
}

/// Scores written with their events: the events are derived from the outcome (the
/// previous tier is seen), land in the log with the scores, and are not doubled by a
/// retry; when deriving or checking the events fails, neither scores nor events are
/// written.
pub async fn contact_scores_with_events_are_atomic(store: &DynStore) {
    let ws = WorkspaceId::new();
    let a = contact(store, ws).await;
    let b = contact(store, ws).await;
    let derive = |written: &[ScoreWritten]| {
        written
            .iter()
            .map(|w| {
                NewEvent::new(
                    ws,
                    "contact.scored",
                    w.contact_id.to_string(),
                    json!({ "previous": w.previous, "tier": w.current }),
                    format!("scored:{}:{:?}", w.contact_id, w.current),
                    base(),
                )
            })
            .collect()
    };
    let first = [score(ws, a.id, Tier::Warm, 55)];
    let written = ok(
        store
            .upsert_contact_scores_with_events(ws, &first, &derive)
            .await,
        "with events",
    );
    assert_eq!(written[0].previous, None);
    let again = ok(
        store
            .upsert_contact_scores_with_events(ws, &first, &derive)
            .await,
        "retry",
    );
    assert_eq!(
        again[0].previous,
        Some(Tier::Warm),
        "the retry sees the write"
    );
    let log = events_of(store, ws, "contact.scored").await;
    assert_eq!(log.len(), 1, "a retried key is not appended twice");
    assert_eq!(log[0].payload["previous"], json!(null));
    assert_eq!(log[0].payload["tier"], json!("warm"));

    let refuse = |_: &[ScoreWritten]| Err(ValidationError::new("event", "refused"));
    expect_err(
        store
            .upsert_contact_scores_with_events(ws, &[score(ws, b.id, Tier::Hot, 75)], &refuse)
            .await,
        Kind::Invalid,
        "an error deriving the events",
    );
    let clash = |_: &[ScoreWritten]| {
        // Two events with one id and different keys: the log refuses the pair.
        let one = NewEvent::new(ws, "x", "s", json!({}), "clash:1", base())?;
        let mut two = NewEvent::new(ws, "x", "s", json!({}), "clash:2", base())?;
        two.id = one.id;
        Ok(vec![one, two])
    };
    expect_err(
        store
            .upsert_contact_scores_with_events(ws, &[score(ws, b.id, Tier::Hot, 75)], &clash)
            .await,
        Kind::Conflict,
        "events the log refuses fail the write",
    );
    assert_eq!(
        ok(store.get_contact_score(ws, b.id).await, "get"),
        None,
        "no score is written when its events are not"
    );
    assert_eq!(
        events_of(store, ws, "contact.scored").await.len(),
        1,
        "and no event either"
    );
    assert_eq!(
        events_of(store, ws, crm_core::events::kinds::SCORE_CHANGED)
            .await
            .len(),
        1,
        "only the first write changed a score"
    );
}

/// A batch upsert writes every score, reports the tier before and after, replaces on
/// the second write, and is all-or-nothing on bad rows.
pub async fn contact_scores_batch_upsert(store: &DynStore) {
    let ws = WorkspaceId::new();
    let a = contact(store, ws).await;
    let b = contact(store, ws).await;
    let first = [
        score(ws, a.id, Tier::Warm, 55),
        score(ws, b.id, Tier::Cold, 10),
    ];
    let written = ok(store.upsert_contact_scores(ws, &first).await, "upsert");
    assert_eq!(
        written,
        vec![
            ScoreWritten {
                contact_id: a.id,
                previous: None,
                current: Tier::Warm
            },
            ScoreWritten {
                contact_id: b.id,
                previous: None,
                current: Tier::Cold
            },
        ],
        "first writes have no previous tier, in input order"
    );
    assert_eq!(
        ok(store.get_contact_score(ws, a.id).await, "get").as_ref(),
        Some(&first[0]),
        "a score reads back as written, breakdown included"
    );
    let again = [score(ws, a.id, Tier::Hot, 75)];
    let written = ok(
        store.upsert_contact_scores(ws, &again).await,
        "upsert again",
    );
    assert_eq!(
        written[0].previous,
        Some(Tier::Warm),
        "the old tier is reported"
    );
    assert_eq!(
        ok(store.get_contact_score(ws, a.id).await, "get").map(|s| s.total),
        Some(75),
        "the second write replaces the first"
    );

    let missing = [
        score(ws, b.id, Tier::Hot, 80),
        score(ws, ContactId::new(), Tier::Hot, 80),
    ];
    expect_err(
        store.upsert_contact_scores(ws, &missing).await,
        Kind::InvalidReference,
        "every contact must exist in the workspace",
    );
    assert_eq!(
        ok(store.get_contact_score(ws, b.id).await, "get").map(|s| s.total),
        Some(10),
        "a refused batch writes nothing"
    );
    let twice = [
        score(ws, b.id, Tier::Hot, 80),
        score(ws, b.id, Tier::Hot, 81),
    ];
    expect_err(
        store.upsert_contact_scores(ws, &twice).await,
        Kind::Invalid,
        "a contact appears at most once per batch",
    );
    expect_err(
        store.upsert_contact_scores(ws, &[]).await,
        Kind::Invalid,
        "a batch has 1 to 1000 rows",
    );
    let too_many: Vec<ContactScore> = (0..1001)
        .map(|_| score(ws, ContactId::new(), Tier::Cold, 0))
        .collect();
    expect_err(
        store.upsert_contact_scores(ws, &too_many).await,
        Kind::Invalid,
        "a batch has at most 1000 rows",
    );
    let ids: Vec<ContactId> = too_many.iter().map(|s| s.contact_id).collect();
    expect_err(
        store.scoring_inputs_for(ws, &ids, base()).await,
        Kind::Invalid,
        "inputs are read for at most 1000 contacts at once",
    );
    let mut over = score(ws, b.id, Tier::Hot, 80);
    over.total = 101;
    expect_err(
        store.upsert_contact_scores(ws, &[over]).await,
        Kind::Invalid,
        "totals are 0 to 100",
    );
}

/// An override decides the effective tier, survives recomputation, and is cleared.
pub async fn score_override_survives_recompute(store: &DynStore) {
    let ws = WorkspaceId::new();
    let a = contact(store, ws).await;
    expect_err(
        store
            .set_score_override(ws, a.id, Some(&manual(95, Tier::SalesReady)))
            .await,
        Kind::NotFound,
        "an unscored contact cannot be overridden",
    );
    ok(
        store
            .upsert_contact_scores(ws, &[score(ws, a.id, Tier::Warm, 55)])
            .await,
        "upsert",
    );
    let written = ok(
        store
            .set_score_override(ws, a.id, Some(&manual(95, Tier::SalesReady)))
            .await,
        "set override",
    );
    assert_eq!(
        (written.previous, written.current),
        (Some(Tier::Warm), Tier::SalesReady),
        "the override decides the effective tier"
    );
    let written = ok(
        store
            .upsert_contact_scores(ws, &[score(ws, a.id, Tier::Cold, 5)])
            .await,
        "recompute",
    );
    assert_eq!(
        (written[0].previous, written[0].current),
        (Some(Tier::SalesReady), Tier::SalesReady),
        "a recomputation keeps the override"
    );
    let stored = ok(store.get_contact_score(ws, a.id).await, "get").expect("scored");
    assert_eq!(stored.manual_override, Some(manual(95, Tier::SalesReady)));
    assert_eq!(
        (stored.total, stored.tier),
        (5, Tier::Cold),
        "computed fields update"
    );
    let listed = ok(
        store
            .list_scores_by_tier(ws, Tier::SalesReady, Page::first(10))
            .await,
        "list by tier",
    );
    assert_eq!(listed.len(), 1, "listing by tier uses the effective tier");
    let mut bad = manual(50, Tier::Warm);
    bad.reason = "  ".into();
    expect_err(
        store.set_score_override(ws, a.id, Some(&bad)).await,
        Kind::Invalid,
        "an override needs a reason",
    );
    let cleared = ok(store.set_score_override(ws, a.id, None).await, "clear");
    assert_eq!(
        cleared.current,
        Tier::Cold,
        "clearing restores the computed tier"
    );
}

/// Listing by tier pages ascending by contact id.
pub async fn scores_list_by_tier_pages(store: &DynStore) {
    let ws = WorkspaceId::new();
    let mut hot = Vec::new();
    let mut rows = Vec::new();
    for n in 0..5 {
        let c = contact(store, ws).await;
        let tier = if n % 2 == 0 { Tier::Hot } else { Tier::Cold };
        if tier == Tier::Hot {
            hot.push(c.id);
        }
        rows.push(score(
            ws,
            c.id,
            tier,
            if tier == Tier::Hot { 75 } else { 5 },
        ));
    }
    ok(store.upsert_contact_scores(ws, &rows).await, "upsert");
    hot.sort();
    let first = ok(
        store
            .list_scores_by_tier(ws, Tier::Hot, Page::first(2))
            .await,
        "page 1",
    );
    let rest = ok(
        store
            .list_scores_by_tier(ws, Tier::Hot, Page::after(first[1].contact_id, 2))
            .await,
        "page 2",
    );
    let got: Vec<_> = first.iter().chain(&rest).map(|s| s.contact_id).collect();
    assert_eq!(got, hot, "only the tier's scores, ascending by contact id");
    expect_err(
        store
            .list_scores_by_tier(ws, Tier::Hot, Page::first(0))
            .await,
        Kind::Invalid,
        "limit is 1 to 1000",
    );
}

/// Scores of one workspace are invisible to another.
pub async fn scores_tenant_isolation(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let a = contact(store, ws).await;
    ok(
        store
            .upsert_contact_scores(ws, &[score(ws, a.id, Tier::Hot, 75)])
            .await,
        "upsert",
    );
    assert_eq!(ok(store.get_contact_score(other, a.id).await, "get"), None);
    expect_err(
        store
            .set_score_override(other, a.id, Some(&manual(1, Tier::Cold)))
            .await,
        Kind::NotFound,
        "another workspace's score cannot be overridden",
    );
    assert!(
        ok(
            store
                .list_scores_by_tier(other, Tier::Hot, Page::first(10))
                .await,
            "list"
        )
        .is_empty()
    );
    expect_err(
        store
            .upsert_contact_scores(other, &[score(other, a.id, Tier::Hot, 75)])
            .await,
        Kind::InvalidReference,
        "a contact of another workspace cannot be scored",
    );
    expect_err(
        store
            .upsert_contact_scores(ws, &[score(other, a.id, Tier::Hot, 75)])
            .await,
        Kind::Invalid,
        "every row belongs to the batch's workspace",
    );
    assert!(
        ok(
            store.scoring_inputs_for(other, &[a.id], base()).await,
            "inputs for another workspace"
        )
        .is_empty()
    );
}

fn signal(ws: WorkspaceId, c: ContactId, name: &str, minutes: i64) -> Activity {
    Activity::for_contact(ws, c, ActivityKind::Note, "Web signal", at(minutes))
        .expect("activity")
        .with_details(json!({ "signal": name }))
}

/// Inputs come from the account and the activities since the cut-off, exactly as
/// `ScoringInput::from_records` derives them; pages ascend by contact id.
pub async fn scoring_inputs_match_the_reference(store: &DynStore) {
    let ws = WorkspaceId::new();
    let acct = account(store, ws).await;
    let mut with_account: Contact = new_contact(ws, &unique_email());
    with_account.account_id = Some(acct.id);
    let with_account = ok(store.insert_contact(&with_account).await, "insert contact");
    let bare = contact(store, ws).await;
    let c = with_account.id;
    let activities = vec![
        Activity::for_contact(ws, c, ActivityKind::Opened, "Opened", at(10)).expect("a"),
        Activity::for_contact(ws, c, ActivityKind::Clicked, "Clicked", at(11)).expect("a"),
        Activity::for_contact(ws, c, ActivityKind::Clicked, "Clicked", at(-5)).expect("a"),
        Activity::for_contact(ws, c, ActivityKind::MeetingBooked, "Booked", at(12)).expect("a"),
        signal(ws, c, "visit", 13),
        signal(ws, c, "pricing_view", 14),
        signal(ws, c, "nonsense", 15),
        Activity::for_contact(ws, bare.id, ActivityKind::Opened, "Opened", at(16)).expect("a"),
        signal(ws, c, "demo_request", 17),
    ];
    for a in &activities {
        ok(store.record_activity(a).await, "record activity");
    }
    let since = base();
    let recent: Vec<Activity> = activities
        .iter()
        .filter(|a| a.occurred_at >= since)
        .cloned()
        .collect();
    let mut expected = vec![
        ScoringInput::from_records(&with_account, Some(&acct), &recent),
        ScoringInput::from_records(&bare, None, &recent),
    ];
    expected.sort_by_key(|i| i.contact_id);
    assert_eq!(
        expected[if c < bare.id { 0 } else { 1 }].clicks.len(),
        1,
        "fixture sanity"
    );
    let first = ok(
        store.list_scoring_inputs(ws, since, Page::first(1)).await,
        "page 1",
    );
    let rest = ok(
        store
            .list_scoring_inputs(ws, since, Page::after(first[0].contact_id, 10))
            .await,
        "page 2",
    );
    let got: Vec<_> = first.into_iter().chain(rest).collect();
    assert_eq!(got, expected, "inputs follow the reference derivation");
    let mine = got.iter().find(|i| i.contact_id == c).expect("contact");
    assert_eq!(
        (
            mine.intents.latest(Intent::DemoRequest),
            mine.intents.latest(Intent::PricingView)
        ),
        (Some(at(17)), Some(at(14))),
        "each intent keeps its latest time (intent decay counts from it)"
    );
    let one = ok(
        store
            .scoring_inputs_for(ws, &[bare.id, ContactId::new()], since)
            .await,
        "inputs for",
    );
    assert_eq!(one.len(), 1, "missing contacts are left out");
    assert_eq!(one[0].opens, vec![at(16)]);
    let all = ok(
        store
            .scoring_inputs_for(ws, &[c], since - Duration::days(1))
            .await,
        "inputs with an earlier cut-off",
    );
    assert_eq!(
        all[0].clicks,
        vec![at(-5), at(11)],
        "the cut-off decides what counts"
    );
    assert!(
        ok(
            store
                .list_scoring_inputs(WorkspaceId::new(), since, Page::first(10))
                .await,
            "other workspace"
        )
        .is_empty(),
        "another workspace's contacts are invisible"
    );
}

/// Concurrent saves of the same next version: exactly one wins, the others get
/// `VersionConflict`, and the stored model is the winner's.
pub async fn concurrent_model_saves_one_version_wins(store: &DynStore) {
    let ws = WorkspaceId::new();
    ok(
        store.save_scoring_model(&scoring_model(ws)).await,
        "save v1",
    );
    let outcomes = super::fixtures::race(8, |i| async move {
        let mut v2 = scoring_model(ws).next_version(at(1));
        v2.thresholds.warm = u8::try_from(10 + i).expect("small");
        store.save_scoring_model(&v2).await
    })
    .await;
    let winners: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one save of version 2 wins");
    for outcome in &outcomes {
        if let Err(err) = outcome {
            assert_eq!(
                err.kind(),
                Kind::VersionConflict,
                "losers see a version conflict"
            );
        }
    }
    assert_eq!(
        ok(store.current_scoring_model(ws).await, "current").as_ref(),
        Some(winners[0]),
        "the winner's model is stored"
    );
}
