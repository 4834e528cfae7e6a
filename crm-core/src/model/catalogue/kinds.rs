//! The kinds of the catalogue, as constants, so routes and tests never misspell one.

/// A contact was inserted.
pub const CONTACT_CREATED: &str = "contact.created";
/// A contact was updated.
pub const CONTACT_UPDATED: &str = "contact.updated";
/// Intake merged a record into an existing contact.
pub const CONTACT_MERGED: &str = "contact.merged";
/// Enrichment results were written back to a contact.
pub const CONTACT_ENRICHED: &str = "contact.enriched";
/// An account was inserted.
pub const ACCOUNT_CREATED: &str = "account.created";
/// An account was updated.
pub const ACCOUNT_UPDATED: &str = "account.updated";
/// A deal was inserted.
pub const DEAL_CREATED: &str = "deal.created";
/// A deal was updated.
pub const DEAL_UPDATED: &str = "deal.updated";
/// A deal moved to another stage.
pub const DEAL_STAGE_CHANGED: &str = "deal.stage_changed";
/// An activity was recorded.
pub const ACTIVITY_LOGGED: &str = "activity.logged";
/// A sequence was inserted.
pub const SEQUENCE_CREATED: &str = "sequence.created";
/// A sequence was updated (edited, paused, resumed, archived).
pub const SEQUENCE_UPDATED: &str = "sequence.updated";
/// A contact finished a sequence (with `enrollment.completed`).
pub const SEQUENCE_COMPLETED: &str = "sequence.completed";
/// A contact was enrolled.
pub const ENROLLMENT_ENROLLED: &str = "enrollment.enrolled";
/// A step's message was sent.
pub const ENROLLMENT_STEP_SENT: &str = "enrollment.step_sent";
/// An enrollment was paused.
pub const ENROLLMENT_PAUSED: &str = "enrollment.paused";
/// A paused enrollment runs again.
pub const ENROLLMENT_RESUMED: &str = "enrollment.resumed";
/// The contact replied.
pub const ENROLLMENT_REPLIED: &str = "enrollment.replied";
/// The contact's address bounced.
pub const ENROLLMENT_BOUNCED: &str = "enrollment.bounced";
/// The contact unsubscribed.
pub const ENROLLMENT_UNSUBSCRIBED: &str = "enrollment.unsubscribed";
/// The enrollment ran to its end.
pub const ENROLLMENT_COMPLETED: &str = "enrollment.completed";
/// The enrollment failed.
pub const ENROLLMENT_FAILED: &str = "enrollment.failed";
/// The enrollment was stopped (by hand, by an account-level stop, by a booking).
pub const ENROLLMENT_STOPPED: &str = "enrollment.stopped";
/// A message was handed to its provider.
pub const OUTBOX_SENT: &str = "outbox.sent";
/// A message failed permanently.
pub const OUTBOX_FAILED: &str = "outbox.failed";
/// A message ran out of retries.
pub const OUTBOX_DEAD_LETTERED: &str = "outbox.dead_lettered";
/// A message was withdrawn before sending.
pub const OUTBOX_CANCELLED: &str = "outbox.cancelled";
/// An approval item was created.
pub const APPROVAL_REQUESTED: &str = "approval.requested";
/// An approval item was approved or rejected.
pub const APPROVAL_DECIDED: &str = "approval.decided";
/// An approval item expired undecided.
pub const APPROVAL_EXPIRED: &str = "approval.expired";
/// An anomaly opened.
pub const ANOMALY_RAISED: &str = "anomaly.raised";
/// An anomaly was resolved.
pub const ANOMALY_RESOLVED: &str = "anomaly.resolved";
/// A contact's score or tier changed.
pub const SCORE_CHANGED: &str = "score.changed";
