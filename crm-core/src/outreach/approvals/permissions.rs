//! Who may decide approval items.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use async_trait::async_trait;

use crate::ids::{UserId, WorkspaceId};

/// Answers whether a person may decide (approve, edit, reject) a workspace's approval
/// items. Hosts implement it over their own roles and memberships.
///
/// # Contract
/// - MUST answer `false` for a user who is not a member of `workspace_id`: the inbox
///   relies on it as its only permission check.
/// - SHOULD be cheap; the inbox asks once per decision (once per batch).
/// - A lookup that fails MUST answer `false` (deny by default).
#[async_trait]
pub trait ApproverDirectory: Send + Sync + Debug + 'static {
    /// Whether `user` may decide approvals in `workspace_id`.
    async fn can_approve(&self, workspace_id: WorkspaceId, user: UserId) -> bool;
}

/// A fixed list of approvers per workspace. Nobody is an approver unless listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticApprovers {
    approvers: BTreeMap<WorkspaceId, BTreeSet<UserId>>,
}

impl StaticApprovers {
    /// No approvers anywhere.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `user` decide approvals in `workspace_id`.
    #[must_use]
    pub fn with_approver(mut self, workspace_id: WorkspaceId, user: UserId) -> Self {
        self.approvers.entry(workspace_id).or_default().insert(user);
        self
    }
}

#[async_trait]
impl ApproverDirectory for StaticApprovers {
    async fn can_approve(&self, workspace_id: WorkspaceId, user: UserId) -> bool {
        self.approvers
            .get(&workspace_id)
            .is_some_and(|users| users.contains(&user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_listed_users_approve_and_only_in_their_workspace() {
        let (ws, other_ws) = (WorkspaceId::new(), WorkspaceId::new());
        let (boss, intern) = (UserId::new(), UserId::new());
        let approvers = StaticApprovers::new().with_approver(ws, boss);
        assert!(approvers.can_approve(ws, boss).await);
        assert!(!approvers.can_approve(ws, intern).await);
        assert!(!approvers.can_approve(other_ws, boss).await);
        assert!(!StaticApprovers::new().can_approve(ws, boss).await);
    }
}
