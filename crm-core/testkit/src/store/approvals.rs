//! Cases for [`ApprovalStore`]: the approval inbox and graduated rules.

use chrono::Duration;

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::{ApprovalItemId, ApprovalRuleId, OutboxMessageId, UserId, WorkspaceId};
use crm_core::model::{ApprovalItem, ApprovalRule, ApprovalStatus, Channel, OutboxMessage};
use crm_core::store::{Page, Scope};

use super::fixtures::{
    approval, assert_pagination, at, awaiting_message, base, created, era, existing, expect_err,
    ids, new_approval, new_rule, ok, sorted,
};

/// `item` approved by a person at `at(5)`.
fn approved(item: &ApprovalItem) -> ApprovalItem {
    let mut item = item.clone();
    item.status = ApprovalStatus::Approved;
    item.decided_by = Some(UserId::new());
    item.decided_at = Some(at(5));
    item.edited_body = Some("Edited text".into());
    item.updated_at = at(5);
    item
}

/// insert_approval round trip; one item per outbox message; the message must exist in
/// the workspace; version 1 and valid fields.
pub async fn approval_one_item_per_message(store: &DynStore) {
    let ws = WorkspaceId::new();
    let message = awaiting_message(store, ws).await;
    let mut item = new_approval(&message, at(60));
    item.confidence = Some(0.75);
    item.template_key = Some("intro".into());
    item.step_index = Some(0);
    item.context = serde_json::json!({ "previous": [] });
    item.reason = Some("manual policy".into());
    let stored = created(store.insert_approval(&item).await, "insert_approval");
    assert_eq!(stored, item, "insert_approval returns the row as stored");
    assert_eq!(
        ok(store.get_approval(ws, item.id).await, "get"),
        item,
        "get_approval round trip"
    );
    let same = existing(
        store.insert_approval(&new_approval(&message, at(90))).await,
        "a second item for the same message",
    );
    assert_eq!(same, item, "the existing item is returned unchanged");

    let foreign: OutboxMessage = awaiting_message(store, WorkspaceId::new()).await;
    let mut cross = new_approval(&foreign, at(60));
    cross.workspace_id = ws;
    expect_err(
        store.insert_approval(&cross).await,
        Kind::InvalidReference,
        "an item for another workspace's message",
    );
    let mut unknown = new_approval(&message, at(60));
    unknown.outbox_message_id = OutboxMessageId::new();
    expect_err(
        store.insert_approval(&unknown).await,
        Kind::InvalidReference,
        "an item for an unknown message",
    );
    let fresh = awaiting_message(store, ws).await;
    let mut v2 = new_approval(&fresh, at(60));
    v2.version = 2;
    expect_err(
        store.insert_approval(&v2).await,
        Kind::Invalid,
        "insert_approval with version 2",
    );
    let mut unsure = new_approval(&fresh, at(60));
    unsure.confidence = Some(1.5);
    expect_err(
        store.insert_approval(&unsure).await,
        Kind::Invalid,
        "insert_approval with confidence 1.5",
    );
    expect_err(
        store.get_approval(ws, ApprovalItemId::new()).await,
        Kind::NotFound,
        "get_approval of an unknown id",
    );
}

/// update_approval is compare-and-set; list_approvals filters by status and pages by id.
pub async fn approval_update_and_list(store: &DynStore) {
    let ws = WorkspaceId::new();
    let items = [
        approval(store, ws, at(60)).await,
        approval(store, ws, at(60)).await,
        approval(store, ws, at(60)).await,
    ];
    let decision = approved(&items[1]);
    let updated = ok(store.update_approval(&decision).await, "update_approval");
    let mut expected = decision.clone();
    expected.version = 2;
    assert_eq!(
        updated, expected,
        "update_approval stores the decision with version + 1"
    );
    assert_eq!(
        ok(store.get_approval(ws, decision.id).await, "get"),
        expected,
        "get_approval sees it"
    );
    expect_err(
        store.update_approval(&decision).await,
        Kind::VersionConflict,
        "update_approval with a stale version",
    );
    let mut blank = updated.clone();
    blank.original_body = " ".into();
    expect_err(
        store.update_approval(&blank).await,
        Kind::Invalid,
        "update_approval failing validation",
    );

    let pending = ok(
        store
            .list_approvals(ws, Some(ApprovalStatus::Pending), Page::first(10))
            .await,
        "list",
    );
    assert_eq!(
        ids(&pending, |i| i.id),
        sorted(vec![items[0].id, items[2].id]),
        "list_approvals(Pending)"
    );
    let done = ok(
        store
            .list_approvals(ws, Some(ApprovalStatus::Approved), Page::first(10))
            .await,
        "list",
    );
    assert_eq!(done, vec![expected], "list_approvals(Approved)");
    assert_pagination(
        "list_approvals(None)",
        ids(&items, |i| i.id),
        |i: &ApprovalItem| i.id,
        |page| store.list_approvals(ws, None, page),
    )
    .await;
}

/// expire_approvals expires exactly the Pending items with expires_at <= now (version + 1,
/// updated_at = now) and returns them.
pub async fn approval_expire_only_due_pending(store: &DynStore) {
    let ws = WorkspaceId::new();
    let overdue = approval(store, ws, at(10)).await;
    let exactly = approval(store, ws, at(20)).await;
    let later = approval(store, ws, at(30)).await;
    let decided = approval(store, ws, at(5)).await;
    let decided = ok(
        store.update_approval(&approved(&decided)).await,
        "update_approval",
    );

    let expired = ok(
        store.expire_approvals(Scope::Workspace(ws), at(20)).await,
        "expire_approvals",
    );
    let mut returned = expired.clone();
    returned.sort_by_key(|i| i.id);
    let mut expected: Vec<ApprovalItem> = [overdue, exactly]
        .into_iter()
        .map(|mut i| {
            i.status = ApprovalStatus::Expired;
            i.version += 1;
            i.updated_at = at(20);
            i
        })
        .collect();
    expected.sort_by_key(|i| i.id);
    assert_eq!(
        returned, expected,
        "expired: Pending with expires_at <= now, version + 1, updated_at = now"
    );
    for item in &expected {
        assert_eq!(
            &ok(store.get_approval(ws, item.id).await, "get"),
            item,
            "the expiry is stored"
        );
    }
    assert_eq!(
        ok(store.get_approval(ws, later.id).await, "get"),
        later,
        "a pending item not yet due stays"
    );
    assert_eq!(
        ok(store.get_approval(ws, decided.id).await, "get"),
        decided,
        "a decided item never expires"
    );
    let again = ok(
        store.expire_approvals(Scope::Workspace(ws), at(20)).await,
        "expire_approvals",
    );
    assert!(again.is_empty(), "expired items are not expired twice");
}

/// expire_approvals with Scope::All covers every workspace (worked in era 2005).
pub async fn approval_expire_across_all_workspaces(store: &DynStore) {
    let now = era(2005);
    let (ws1, ws2) = (WorkspaceId::new(), WorkspaceId::new());
    let mut mine = Vec::new();
    for ws in [ws1, ws2] {
        let message = awaiting_message(store, ws).await;
        mine.push(created(
            store.insert_approval(&new_approval(&message, now)).await,
            "insert_approval",
        ));
    }
    let message = awaiting_message(store, ws1).await;
    let not_due = created(
        store
            .insert_approval(&new_approval(&message, now + Duration::days(1)))
            .await,
        "insert_approval",
    );
    for item in ok(
        store.expire_approvals(Scope::All, now).await,
        "expire_approvals(Scope::All)",
    ) {
        assert_eq!(
            item.status,
            ApprovalStatus::Expired,
            "returned items are Expired"
        );
        assert!(item.expires_at <= now, "only due items are expired");
    }
    for item in &mine {
        let got = ok(store.get_approval(item.workspace_id, item.id).await, "get");
        assert_eq!(
            got.status,
            ApprovalStatus::Expired,
            "Scope::All expires due items of every workspace"
        );
    }
    let got = ok(store.get_approval(ws1, not_due.id).await, "get");
    assert_eq!(
        got.status,
        ApprovalStatus::Pending,
        "an item not yet due stays Pending"
    );
}

/// Approval rules: round trip, list by channel ascending by id, compare-and-set, rules.
pub async fn approval_rules_round_trip(store: &DynStore) {
    let ws = WorkspaceId::new();
    let mut rules = Vec::new();
    for channel in [Channel::Email, Channel::WhatsApp, Channel::Email] {
        let rule = new_rule(ws, channel);
        let stored = ok(
            store.insert_approval_rule(&rule).await,
            "insert_approval_rule",
        );
        assert_eq!(
            stored, rule,
            "insert_approval_rule returns the row as stored"
        );
        assert_eq!(
            ok(store.get_approval_rule(ws, rule.id).await, "get"),
            rule,
            "get_approval_rule round trip"
        );
        rules.push(rule);
    }
    let all = ok(
        store.list_approval_rules(ws, None).await,
        "list_approval_rules",
    );
    assert_eq!(
        ids(&all, |r| r.id),
        sorted(ids(&rules, |r| r.id)),
        "list_approval_rules: all, ascending by id"
    );
    let email = ok(
        store.list_approval_rules(ws, Some(Channel::Email)).await,
        "list_approval_rules",
    );
    assert_eq!(
        ids(&email, |r| r.id),
        sorted(vec![rules[0].id, rules[2].id]),
        "list_approval_rules(Email)"
    );

    let mut change: ApprovalRule = rules[0].clone();
    change.enabled = false;
    change.daily_cap = Some(25);
    change.updated_at = at(3);
    let updated = ok(
        store.update_approval_rule(&change).await,
        "update_approval_rule",
    );
    let mut expected = change.clone();
    expected.version = 2;
    assert_eq!(
        updated, expected,
        "update_approval_rule stores the change with version + 1"
    );
    expect_err(
        store.update_approval_rule(&change).await,
        Kind::VersionConflict,
        "stale update_approval_rule",
    );
    let mut blank = updated.clone();
    blank.name = " ".into();
    expect_err(
        store.update_approval_rule(&blank).await,
        Kind::Invalid,
        "update_approval_rule with a blank name",
    );

    let mut same_id = new_rule(ws, Channel::Sms);
    same_id.id = rules[1].id;
    expect_err(
        store.insert_approval_rule(&same_id).await,
        Kind::Conflict,
        "insert_approval_rule with a reused id",
    );
    let mut v2 = new_rule(ws, Channel::Sms);
    v2.version = 2;
    expect_err(
        store.insert_approval_rule(&v2).await,
        Kind::Invalid,
        "insert_approval_rule with version 2",
    );
    let mut blank = new_rule(ws, Channel::Sms);
    blank.name = String::new();
    expect_err(
        store.insert_approval_rule(&blank).await,
        Kind::Invalid,
        "insert_approval_rule with a blank name",
    );
    expect_err(
        store.get_approval_rule(ws, ApprovalRuleId::new()).await,
        Kind::NotFound,
        "unknown rule id",
    );
}

/// Another workspace can neither read, list, update nor expire items, nor see rules.
pub async fn approval_tenant_isolation(store: &DynStore) {
    let ws = WorkspaceId::new();
    let other = WorkspaceId::new();
    let item = approval(store, ws, base()).await;
    let rule = ok(
        store
            .insert_approval_rule(&new_rule(ws, Channel::Email))
            .await,
        "insert_approval_rule",
    );
    expect_err(
        store.get_approval(other, item.id).await,
        Kind::NotFound,
        "get_approval from another workspace",
    );
    assert!(
        ok(
            store.list_approvals(other, None, Page::first(10)).await,
            "list"
        )
        .is_empty(),
        "list_approvals scoped"
    );
    let mut hijack = approved(&item);
    hijack.workspace_id = other;
    expect_err(
        store.update_approval(&hijack).await,
        Kind::NotFound,
        "update_approval from another workspace",
    );
    let expired = ok(
        store
            .expire_approvals(Scope::Workspace(other), at(600))
            .await,
        "expire_approvals",
    );
    assert!(
        expired.is_empty(),
        "expire_approvals never expires another workspace's items"
    );
    assert_eq!(
        ok(store.get_approval(ws, item.id).await, "get"),
        item,
        "the item is untouched"
    );

    expect_err(
        store.get_approval_rule(other, rule.id).await,
        Kind::NotFound,
        "get_approval_rule from another workspace",
    );
    assert!(
        ok(store.list_approval_rules(other, None).await, "list").is_empty(),
        "list_approval_rules is scoped"
    );
    let mut hijack = rule.clone();
    hijack.workspace_id = other;
    expect_err(
        store.update_approval_rule(&hijack).await,
        Kind::NotFound,
        "update_approval_rule from another workspace",
    );
    assert_eq!(
        ok(store.get_approval_rule(ws, rule.id).await, "get"),
        rule,
        "the rule is untouched"
    );
}
