//! Approval policies and the human-in-the-loop approval inbox.
//!
//! - [`GraduatedRules`]: an [`ApprovalPolicy`](crate::ApprovalPolicy) that
//!   auto-approves sends matching a workspace's opt-in rules (step number, minimum
//!   confidence, a template approved N times in a row without edits, a daily cap); with
//!   no enabled rule it is [`ManualApproval`](crate::ManualApproval). Its pure core is
//!   [`rule_matches`]; [`GraduatedRules::preview_rule`] shows which pending items a rule
//!   would approve.
//! - [`ApprovalInbox`]: people approve, edit-then-approve, reject with a reason, or
//!   batch approve pending items; [`ApprovalInbox::expire_due`] expires old ones. Who
//!   may decide is an [`ApproverDirectory`]'s answer.
//! - [`ExpireApprovalsHandler`]: the periodic job
//!   ([`EXPIRE_APPROVALS`](crate::jobs::EXPIRE_APPROVALS)) that runs
//!   [`ApprovalInbox::expire_due`].
//! - [`approval_request`] and the `META_*` keys: what the dispatcher asks the policy
//!   about a message, read from its metadata.
//! - [`notify_if_needed`] tells a [`Notifier`](crate::approval::Notifier) that an item
//!   waits; a failing notifier never loses the item. [`RecordingNotifier`] records
//!   calls for tests.
//!
//! No policy and no decision overrides suppression or the allowlist: the dispatcher
//! checks both after approval, on every send.

mod decision;
mod expire;
mod graduated;
mod inbox;
mod notify;
mod permissions;
mod request;
mod rules;

pub use decision::InboxError;
pub use expire::ExpireApprovalsHandler;
pub use graduated::{GraduatedRules, RulePreview, STEP_REQUIRES_APPROVAL, rule_cap_key};
pub use inbox::{ApprovalInbox, ExpiryReport, Submitted};
pub use notify::{Announcement, RecordingNotifier, notify_if_needed};
pub use permissions::{ApproverDirectory, StaticApprovers};
pub use request::{
    META_CONFIDENCE, META_CONTEXT, META_REQUIRES_APPROVAL, META_TEMPLATE_KEY, approval_request,
    confidence_of, context_of, template_key_of,
};
pub use rules::{NotMatched, RuleFacts, rule_matches};
