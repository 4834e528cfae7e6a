//! Scenarios of the approval policies: manual by default, graduated rules opt-in.

use std::sync::Arc;

use chrono::Duration;

use crate::store::fixtures::{at, base, ids, ok, race, sorted};
use crm_core::approval::{ApprovalDecision, ApprovalPolicy, ApprovalRequest};
use crm_core::ids::{UserId, WorkspaceId};
use crm_core::model::{ApprovalStatus, Channel, RuleConditions};
use crm_core::outreach::approvals::{
    GraduatedRules, NotMatched, STEP_REQUIRES_APPROVAL, rule_cap_key,
};
use crm_core::store::{DynStore, Page};
use crm_core::{ManualApproval, PolicyError};

use super::fixtures::{ItemSpec, TIME_ZONE, done, graduated, inbox, pending_item, request, rule};

async fn decide(policy: &dyn ApprovalPolicy, request: &ApprovalRequest) -> ApprovalDecision {
    let result: Result<ApprovalDecision, PolicyError> = policy.decide(request).await;
    match result {
        Ok(decision) => decision,
        Err(e) => panic!("the policy failed: {e:?}"),
    }
}

#[track_caller]
fn human_because(decision: &ApprovalDecision, needle: &str, rule: &str) {
    match decision {
        ApprovalDecision::RequireHuman { reason } => assert!(
            reason.contains(needle),
            "{rule}: the reason should mention {needle:?}, got {reason:?}"
        ),
        other => panic!("{rule}: expected RequireHuman, got {other:?}"),
    }
}

/// `ManualApproval` asks a person for every send, however confident or repeated.
pub async fn manual_policy_always_requires_a_human(_store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    for req in [
        request(ws, Some(0), Some(1.0), Some("intro"), base()),
        request(ws, None, None, None, base()),
        request(ws, Some(7), Some(0.0), None, at(600)),
    ] {
        let decision = decide(&ManualApproval, &req).await;
        assert!(
            matches!(decision, ApprovalDecision::RequireHuman { .. }),
            "manual approval: every send waits for a human, got {decision:?}"
        );
    }
}

/// With no enabled rule for the workspace and channel, graduated rules decide exactly
/// as `ManualApproval`: a disabled rule, a rule of another channel and another
/// workspace's rule change nothing.
pub async fn graduated_without_enabled_rule_is_manual(store: Arc<DynStore>) {
    let policy = graduated(&store);
    let ws = WorkspaceId::new();
    let req = request(ws, Some(0), Some(1.0), None, base());
    let manual = decide(&ManualApproval, &req).await;
    assert_eq!(
        decide(&policy, &req).await,
        manual,
        "no rule at all is manual"
    );

    let mut disabled = rule(&*store, ws, RuleConditions::default(), None).await;
    disabled.enabled = false;
    ok(
        store.update_approval_rule(&disabled).await,
        "disable the rule",
    );
    let mut whatsapp = crm_core::model::ApprovalRule::new(
        ws,
        Channel::WhatsApp,
        "WhatsApp only",
        RuleConditions::default(),
        base(),
    )
    .expect("valid rule");
    whatsapp.daily_cap = None;
    ok(
        store.insert_approval_rule(&whatsapp).await,
        "insert a WhatsApp rule",
    );
    rule(&*store, WorkspaceId::new(), RuleConditions::default(), None).await;
    assert_eq!(
        decide(&policy, &req).await,
        manual,
        "disabled rules, other channels' and other workspaces' rules do not opt in"
    );
}

/// A step rule approves steps up to its maximum, and never a message without a step.
pub async fn graduated_step_rule(store: Arc<DynStore>) {
    let policy = graduated(&store);
    let ws = WorkspaceId::new();
    let conditions = RuleConditions {
        max_step_index: Some(1),
        ..RuleConditions::default()
    };
    let r = rule(&*store, ws, conditions, None).await;
    for step in [0, 1] {
        assert_eq!(
            decide(&policy, &request(ws, Some(step), None, None, base())).await,
            ApprovalDecision::AutoApprove { rule: r.id },
            "step {step} is within the rule's maximum step 1"
        );
    }
    let later = decide(&policy, &request(ws, Some(2), None, None, base())).await;
    human_because(&later, "step 2", "step 2 is later than the rule allows");
    let none = decide(&policy, &request(ws, None, Some(1.0), None, base())).await;
    human_because(
        &none,
        "no sequence step",
        "a message without a step never matches",
    );
}

/// A confidence rule approves known confidences at or above its minimum only.
pub async fn graduated_confidence_rule(store: Arc<DynStore>) {
    let policy = graduated(&store);
    let ws = WorkspaceId::new();
    let conditions = RuleConditions {
        min_confidence: Some(0.8),
        ..RuleConditions::default()
    };
    let r = rule(&*store, ws, conditions, None).await;
    for c in [0.8, 0.95] {
        assert_eq!(
            decide(&policy, &request(ws, Some(3), Some(c), None, base())).await,
            ApprovalDecision::AutoApprove { rule: r.id },
            "confidence {c} reaches the minimum 0.8"
        );
    }
    let low = decide(&policy, &request(ws, Some(0), Some(0.5), None, base())).await;
    human_because(&low, "confidence 0.5", "confidence below the minimum");
    let unknown = decide(&policy, &request(ws, Some(0), None, None, base())).await;
    human_because(&unknown, "unknown", "an unknown confidence never matches");
}

/// A streak rule approves a template once it was approved N times in a row without
/// edits; another template, or none, does not match.
pub async fn graduated_streak_rule(store: Arc<DynStore>) {
    let policy = graduated(&store);
    let ws = WorkspaceId::new();
    let user = UserId::new();
    let (inbox, _clock) = inbox(&store, user, &[ws]);
    let conditions = RuleConditions {
        min_clean_approvals: Some(2),
        ..RuleConditions::default()
    };
    let r = rule(&*store, ws, conditions, None).await;
    let intro = request(ws, Some(0), Some(0.9), Some("intro"), base());
    human_because(
        &decide(&policy, &intro).await,
        "0 times",
        "a template never approved has no streak",
    );
    for _ in 0..2 {
        let item = pending_item(&*store, ws, ItemSpec::default().template("intro")).await;
        done(
            inbox.approve(ws, item.id, user).await,
            "approve an intro item",
        );
    }
    assert_eq!(
        decide(&policy, &intro).await,
        ApprovalDecision::AutoApprove { rule: r.id },
        "two clean approvals in a row reach the rule's minimum"
    );
    let other = request(ws, Some(0), Some(0.9), Some("follow-up"), base());
    human_because(
        &decide(&policy, &other).await,
        "0 times",
        "streaks are per template",
    );
    let untemplated = request(ws, Some(0), Some(0.9), None, base());
    human_because(
        &decide(&policy, &untemplated).await,
        "no template",
        "a message without a template never matches a streak rule",
    );
    let rejected = pending_item(&*store, ws, ItemSpec::default().template("intro")).await;
    done(
        inbox.reject(ws, rejected.id, user, "wrong tone").await,
        "reject an intro item",
    );
    human_because(
        &decide(&policy, &intro).await,
        "0 times",
        "a rejection ends the streak",
    );
}

/// A step that demands approval always asks a person, whatever the rules say.
pub async fn graduated_step_requiring_approval_always_asks(store: Arc<DynStore>) {
    let policy = graduated(&store);
    let ws = WorkspaceId::new();
    rule(&*store, ws, RuleConditions::default(), None).await;
    let mut req = request(ws, Some(0), Some(1.0), None, base());
    assert!(matches!(
        decide(&policy, &req).await,
        ApprovalDecision::AutoApprove { .. }
    ));
    req.step_requires_approval = true;
    human_because(
        &decide(&policy, &req).await,
        STEP_REQUIRES_APPROVAL,
        "step_requires_approval overrides every rule",
    );
}

/// Daily caps count auto-approvals per rule and local day: once a rule's cap is used
/// up it is skipped (the next rule may still approve), refusals consume nothing, and
/// the count starts again on the next day in the workspace's time zone.
pub async fn graduated_daily_cap_stops_and_resets_next_local_day(store: Arc<DynStore>) {
    let policy = graduated(&store);
    let ws = WorkspaceId::new();
    let conditions = RuleConditions {
        min_confidence: Some(0.5),
        ..RuleConditions::default()
    };
    let a = rule(&*store, ws, conditions.clone(), Some(2)).await;
    let b = rule(&*store, ws, conditions, Some(1)).await;
    // 09:00 UTC is 10:00 in Berlin, on Monday 5 January.
    let now = base();
    let today = now.with_timezone(&TIME_ZONE).date_naive();
    let low = decide(&policy, &request(ws, Some(0), Some(0.1), None, now)).await;
    human_because(&low, "below", "a refused send consumes no cap");
    let mut approved_by = Vec::new();
    for _ in 0..3 {
        match decide(&policy, &request(ws, Some(0), Some(0.9), None, now)).await {
            ApprovalDecision::AutoApprove { rule } => approved_by.push(rule),
            other => panic!("three sends fit the caps of two rules (2 + 1), got {other:?}"),
        }
    }
    assert_eq!(sorted(approved_by), sorted(vec![a.id, a.id, b.id]));
    let capped = decide(&policy, &request(ws, Some(0), Some(0.9), None, now)).await;
    human_because(&capped, "daily cap", "every rule's daily cap is used up");
    for (r, cap) in [(&a, 2), (&b, 1)] {
        assert_eq!(
            ok(
                store.quota_usage(ws, &rule_cap_key(r.id, today)).await,
                "quota_usage"
            ),
            cap,
            "the cap counts auto-approvals only"
        );
    }
    // 23:30 UTC is still Monday in UTC, but already Tuesday in Berlin.
    let tomorrow = base() + Duration::minutes(14 * 60 + 30);
    assert!(
        matches!(
            decide(&policy, &request(ws, Some(0), Some(0.9), None, tomorrow)).await,
            ApprovalDecision::AutoApprove { .. }
        ),
        "the cap starts again on the next local day"
    );
}

/// However many decisions race, a rule never auto-approves more than its daily cap.
pub async fn graduated_daily_cap_holds_under_concurrency(store: Arc<DynStore>) {
    let policy = graduated(&store);
    let ws = WorkspaceId::new();
    rule(&*store, ws, RuleConditions::default(), Some(3)).await;
    let decisions = race(12, |_| {
        let policy = &policy;
        async move { decide(policy, &request(ws, Some(0), Some(1.0), None, base())).await }
    })
    .await;
    let approved = decisions
        .iter()
        .filter(|d| matches!(d, ApprovalDecision::AutoApprove { .. }))
        .count();
    assert_eq!(
        approved, 3,
        "exactly the daily cap is auto-approved: {decisions:?}"
    );
}

/// A preview lists exactly the pending, unexpired items of the rule's channel that the
/// rule would approve (with reasons for the rest) and changes nothing.
pub async fn preview_lists_matching_pending_items_and_changes_nothing(store: Arc<DynStore>) {
    let policy: GraduatedRules = graduated(&store);
    let ws = WorkspaceId::new();
    let user = UserId::new();
    let (inbox, _clock) = inbox(&store, user, &[ws]);
    let conditions = RuleConditions {
        min_confidence: Some(0.8),
        ..RuleConditions::default()
    };
    let r = rule(&*store, ws, conditions, Some(5)).await;
    let high = pending_item(&*store, ws, ItemSpec::default().confidence(0.9)).await;
    let higher = pending_item(&*store, ws, ItemSpec::default().confidence(0.99)).await;
    let low = pending_item(&*store, ws, ItemSpec::default().confidence(0.3)).await;
    let unknown = pending_item(&*store, ws, ItemSpec::default()).await;
    let decided = pending_item(&*store, ws, ItemSpec::default().confidence(0.95)).await;
    done(
        inbox.approve(ws, decided.id, user).await,
        "approve one item",
    );
    let whatsapp = ItemSpec::default()
        .confidence(0.95)
        .channel(Channel::WhatsApp);
    pending_item(&*store, ws, whatsapp).await;
    let stale = ItemSpec::default()
        .confidence(0.95)
        .lives(base() - Duration::days(2), Duration::days(1));
    pending_item(&*store, ws, stale).await;
    pending_item(
        &*store,
        WorkspaceId::new(),
        ItemSpec::default().confidence(0.95),
    )
    .await;

    let before = ok(
        store.list_approvals(ws, None, Page::first(100)).await,
        "list",
    );
    let preview = policy
        .preview_rule(ws, &r)
        .await
        .unwrap_or_else(|e| panic!("preview_rule: {e:?}"));
    assert_eq!(
        preview.would_approve,
        sorted(vec![high.id, higher.id]),
        "exactly the matching pending items of the rule's channel and workspace"
    );
    assert_eq!(
        ids(&preview.not_matched, |(id, _)| *id),
        sorted(vec![low.id, unknown.id]),
        "the other pending email items, with reasons"
    );
    for (id, why) in &preview.not_matched {
        let expected_low = *id == low.id;
        assert_eq!(
            matches!(why, NotMatched::ConfidenceTooLow { .. }),
            expected_low,
            "the reason names the failed condition: {why:?}"
        );
    }
    assert_eq!(preview.daily_cap_remaining, Some(5));
    let after = ok(
        store.list_approvals(ws, None, Page::first(100)).await,
        "list",
    );
    assert_eq!(before, after, "a preview changes no item");
    let today = base().with_timezone(&TIME_ZONE).date_naive();
    assert_eq!(
        ok(
            store.quota_usage(ws, &rule_cap_key(r.id, today)).await,
            "usage"
        ),
        0,
        "a preview consumes no cap"
    );
    assert!(
        after
            .iter()
            .filter(|i| i.id != decided.id)
            .all(|i| i.status == ApprovalStatus::Pending),
        "the previewed items stay pending"
    );
}
