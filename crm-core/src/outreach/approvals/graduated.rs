//! [`GraduatedRules`]: opt-in auto-approval per workspace and channel.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::ManualApproval;
use crate::approval::{ApprovalDecision, ApprovalPolicy, ApprovalRequest, PolicyError};
use crate::clock::Clock;
use crate::error::{StoreError, ValidationError};
use crate::ids::{ApprovalItemId, ApprovalRuleId, WorkspaceId};
use crate::model::{ApprovalRule, ApprovalStatus, Channel};
use crate::outreach::settings::SettingsProvider;
use crate::store::{GraduatedRulesStore, Page, QuotaDecision, QuotaKey};

use super::rules::{NotMatched, RuleFacts, rule_matches};

/// The reason given when the sequence step itself demands a person.
pub const STEP_REQUIRES_APPROVAL: &str = "the sequence step requires human approval";

/// The quota key counting a rule's auto-approvals on one local `day`.
#[must_use]
pub fn rule_cap_key(rule: ApprovalRuleId, day: NaiveDate) -> QuotaKey {
    QuotaKey::new(format!("approval_rule:{rule}"), day)
}

/// Graduated auto-approval: the workspace's enabled rules for the message's channel,
/// read from the store on every decision.
///
/// # Behaviour
/// - `step_requires_approval` in the request always asks a person, whatever the rules.
/// - A workspace and channel with no enabled rule behaves exactly like
///   [`ManualApproval`]: opting in means adding a rule.
/// - Otherwise the enabled rules are tried in id order; the first one whose conditions
///   all hold (see [`rule_matches`]) and whose daily cap is not used up approves. A rule
///   whose cap is used up is skipped. If none approves, a person is asked, and the
///   reason names, per rule, the condition that failed.
/// - The daily cap counts auto-approvals per rule and local day (the workspace's
///   default time zone) with [`QuotaStore::try_consume_quota`](crate::store::QuotaStore):
///   a unit is consumed only when the rule approves. A consumed unit is not given back
///   if the send later fails or is suppressed: the cap bounds how many sends were let
///   through without a person, not how many were delivered.
/// - Never [`ApprovalDecision::Reject`]s, and never overrides suppression or the
///   allowlist: the dispatcher checks those after any approval.
#[derive(Debug, Clone)]
pub struct GraduatedRules {
    store: Arc<dyn GraduatedRulesStore>,
    clock: Arc<dyn Clock>,
    settings: Arc<dyn SettingsProvider>,
}

/// What [`GraduatedRules::preview_rule`] found: the pending items a rule would approve.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RulePreview {
    /// Pending, unexpired items of the rule's channel that the rule's conditions
    /// approve, ascending by id.
    pub would_approve: Vec<ApprovalItemId>,
    /// The other pending, unexpired items of the rule's channel, with the condition
    /// that failed, ascending by id.
    pub not_matched: Vec<(ApprovalItemId, NotMatched)>,
    /// Auto-approvals the rule has left today under its daily cap (`None`: no cap).
    /// Only that many of `would_approve` would actually go through today.
    pub daily_cap_remaining: Option<u32>,
}

impl GraduatedRules {
    /// Rules from `store`, timed by `clock` (for previews; a decision is taken at its
    /// request's `now`); the local day of daily caps uses each workspace's default time
    /// zone from `settings`.
    #[must_use]
    pub fn new(
        store: Arc<dyn GraduatedRulesStore>,
        clock: Arc<dyn Clock>,
        settings: Arc<dyn SettingsProvider>,
    ) -> Self {
        Self {
            store,
            clock,
            settings,
        }
    }

    /// The workspace's time zone, which its local days (of daily caps) are counted in.
    /// A failed settings read is an error, never UTC: a wrong day would reopen caps.
    async fn zone(&self, workspace_id: WorkspaceId) -> Result<Tz, PolicyError> {
        let settings =
            self.settings
                .settings(workspace_id)
                .await
                .map_err(|e| PolicyError::Settings {
                    retryable: e.is_retryable(),
                    source: Box::new(e),
                })?;
        Ok(settings.default_time_zone)
    }

    /// Lists which pending items in the inbox `rule` would approve at the clock's now,
    /// with the failed condition for the others. Changes nothing and consumes no cap.
    ///
    /// The rule is evaluated as if enabled, so a draft can be previewed before it is
    /// switched on; items of other channels and items already due to expire (at or
    /// before now) are left out. The items do not record whether their sequence step
    /// demands a person, so the preview cannot exclude those.
    ///
    /// # Errors
    /// `Store(Invalid)` when `rule` belongs to another workspace; store failures.
    pub async fn preview_rule(
        &self,
        workspace_id: WorkspaceId,
        rule: &ApprovalRule,
    ) -> Result<RulePreview, PolicyError> {
        let now = self.clock.now();
        if rule.workspace_id != workspace_id {
            return Err(StoreError::from(ValidationError::new(
                "approval_rule.workspace_id",
                "must be the previewed workspace",
            ))
            .into());
        }
        let mut draft = rule.clone();
        draft.enabled = true;
        let needs_streak = draft.conditions.min_clean_approvals.is_some();
        let mut streaks: HashMap<String, u32> = HashMap::new();
        let mut preview = RulePreview::default();
        let mut after = None;
        loop {
            let page = Page {
                after,
                limit: Page::<ApprovalItemId>::MAX_LIMIT,
            };
            let items = self
                .store
                .list_approvals(workspace_id, Some(ApprovalStatus::Pending), page)
                .await?;
            let Some(last) = items.last() else { break };
            after = Some(last.id);
            for item in &items {
                if item.channel != draft.channel || item.expires_at <= now {
                    continue;
                }
                let streak = match (&item.template_key, needs_streak) {
                    (Some(key), true) => Some(self.streak(workspace_id, key, &mut streaks).await?),
                    _ => None,
                };
                match rule_matches(&draft, &RuleFacts::of_item(item, streak)) {
                    Ok(()) => preview.would_approve.push(item.id),
                    Err(why) => preview.not_matched.push((item.id, why)),
                }
            }
        }
        if let Some(cap) = draft.daily_cap {
            let day = now
                .with_timezone(&self.zone(workspace_id).await?)
                .date_naive();
            let key = rule_cap_key(draft.id, day);
            let used = self.store.quota_usage(workspace_id, &key).await?;
            preview.daily_cap_remaining = Some(cap.saturating_sub(used));
        }
        Ok(preview)
    }

    /// The template's clean streak, read once per template.
    async fn streak(
        &self,
        workspace_id: WorkspaceId,
        template_key: &str,
        cache: &mut HashMap<String, u32>,
    ) -> Result<u32, StoreError> {
        if let Some(streak) = cache.get(template_key) {
            return Ok(*streak);
        }
        let streak = self
            .store
            .clean_approval_streak(workspace_id, template_key)
            .await?;
        cache.insert(template_key.to_owned(), streak);
        Ok(streak)
    }
}

/// What one call of [`GraduatedRules::decide_many`] reads once: per workspace and
/// channel its enabled rules (sorted by id), per workspace and template its clean
/// streak, per workspace its time zone.
#[derive(Default)]
struct Reads {
    rules: HashMap<(WorkspaceId, Channel), Arc<Vec<ApprovalRule>>>,
    streaks: HashMap<(WorkspaceId, String), u32>,
    zones: HashMap<WorkspaceId, Tz>,
}

impl GraduatedRules {
    /// The enabled rules of the workspace and channel, sorted by id.
    async fn rules(
        &self,
        ws: WorkspaceId,
        channel: Channel,
    ) -> Result<Arc<Vec<ApprovalRule>>, StoreError> {
        let mut rules: Vec<ApprovalRule> = self
            .store
            .list_approval_rules(ws, Some(channel))
            .await?
            .into_iter()
            .filter(|r| r.enabled && r.workspace_id == ws && r.channel == channel)
            .collect();
        rules.sort_by_key(|r| r.id);
        Ok(Arc::new(rules))
    }

    /// The decision for `request`, reading through `reads`.
    async fn decide_read(
        &self,
        request: &ApprovalRequest,
        reads: &mut Reads,
    ) -> Result<ApprovalDecision, PolicyError> {
        if request.step_requires_approval {
            return Ok(ApprovalDecision::RequireHuman {
                reason: STEP_REQUIRES_APPROVAL.to_owned(),
            });
        }
        let message = &request.message;
        let ws = message.workspace_id;
        let rules = match reads.rules.get(&(ws, message.channel)) {
            Some(rules) => rules.clone(),
            None => {
                let rules = self.rules(ws, message.channel).await?;
                reads.rules.insert((ws, message.channel), rules.clone());
                rules
            }
        };
        if rules.is_empty() {
            return ManualApproval.decide(request).await;
        }
        let needs_streak = rules
            .iter()
            .any(|r| r.conditions.min_clean_approvals.is_some());
        let streak = match (&request.template_key, needs_streak) {
            (Some(key), true) => match reads.streaks.get(&(ws, key.clone())) {
                Some(streak) => Some(*streak),
                None => {
                    let streak = self.store.clean_approval_streak(ws, key).await?;
                    reads.streaks.insert((ws, key.clone()), streak);
                    Some(streak)
                }
            },
            _ => None,
        };
        let facts = RuleFacts::of_request(request, streak);
        let mut refusals = Vec::with_capacity(rules.len());
        for rule in rules.iter() {
            if let Err(why) = rule_matches(rule, &facts) {
                refusals.push(format!("rule \"{}\": {why}", rule.name));
                continue;
            }
            let Some(cap) = rule.daily_cap else {
                tracing::debug!(workspace = %ws, message = %message.id, rule = %rule.id, "auto-approved by rule");
                return Ok(ApprovalDecision::AutoApprove { rule: rule.id });
            };
            let tz = match reads.zones.get(&ws) {
                Some(tz) => *tz,
                None => {
                    let tz = self.zone(ws).await?;
                    reads.zones.insert(ws, tz);
                    tz
                }
            };
            let today = request.now.with_timezone(&tz).date_naive();
            match self
                .store
                .try_consume_quota(ws, &rule_cap_key(rule.id, today), cap, 1)
                .await?
            {
                QuotaDecision::Granted { used, .. } => {
                    tracing::debug!(workspace = %ws, message = %message.id, rule = %rule.id, used, cap, "auto-approved by rule");
                    return Ok(ApprovalDecision::AutoApprove { rule: rule.id });
                }
                QuotaDecision::Exhausted { .. } => refusals.push(format!(
                    "rule \"{}\": its daily cap of {cap} auto-approvals is used up",
                    rule.name
                )),
            }
        }
        Ok(ApprovalDecision::RequireHuman {
            reason: format!("no auto-approval rule applies: {}", refusals.join("; ")),
        })
    }
}

#[async_trait]
impl ApprovalPolicy for GraduatedRules {
    async fn decide(&self, request: &ApprovalRequest) -> Result<ApprovalDecision, PolicyError> {
        self.decide_read(request, &mut Reads::default()).await
    }

    /// Reads each workspace's rules once for the whole call (all at once), each
    /// template's streak and each workspace's time zone once; daily caps are still
    /// consumed one approval at a time, in order.
    async fn decide_many(
        &self,
        requests: &[ApprovalRequest],
    ) -> Vec<Result<ApprovalDecision, PolicyError>> {
        let mut keys: Vec<(WorkspaceId, Channel)> = requests
            .iter()
            .filter(|r| !r.step_requires_approval)
            .map(|r| (r.message.workspace_id, r.message.channel))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let read = futures::future::join_all(keys.iter().map(|&(ws, c)| self.rules(ws, c))).await;
        let mut reads = Reads::default();
        // A failed read is not cached: its requests read again and answer the error.
        for (key, rules) in keys.into_iter().zip(read) {
            if let Ok(rules) = rules {
                reads.rules.insert(key, rules);
            }
        }
        let mut out = Vec::with_capacity(requests.len());
        for request in requests {
            out.push(self.decide_read(request, &mut reads).await);
        }
        out
    }
}
