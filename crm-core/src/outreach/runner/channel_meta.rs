//! What a step's channel adapter needs in the message metadata, written by the runner
//! so adapters never read the store: WhatsApp's template, the 24-hour window's last
//! inbound time, a Cal.com step's booking link.

use serde_json::{Map, Value, json};

use crate::error::StoreError;
use crate::ids::{ContactId, WorkspaceId};
use crate::model::{ActivityKind, Channel, SequenceStep};
use crate::outreach::settings::WorkspaceSettings;
use crate::outreach::template::{MergeContext, TemplateError, render};
use crate::store::{ActivityFilter, ActivityStore};

/// The [`ChannelConfig`](crate::model::ChannelConfig) parameter of a workspace's
/// Cal.com channel holding its booking link, used by `{{booking_link}}` when the step
/// has none of its own.
pub const BOOKING_LINK_PARAM: &str = "booking_url";

/// The booking link `{{booking_link}}` renders to in `step`: the step's own, else the
/// workspace's Cal.com booking link ([`BOOKING_LINK_PARAM`]).
#[must_use]
pub fn step_booking_link(step: &SequenceStep, settings: &WorkspaceSettings) -> Option<String> {
    let non_blank = |s: &String| {
        let t = s.trim();
        (!t.is_empty()).then(|| t.to_owned())
    };
    step.options
        .booking_link
        .as_ref()
        .and_then(non_blank)
        .or_else(|| workspace_booking_link(settings))
}

/// The workspace's Cal.com booking link, if configured.
#[must_use]
pub fn workspace_booking_link(settings: &WorkspaceSettings) -> Option<String> {
    settings
        .channels
        .get(&Channel::CalCom)
        .and_then(|c| c.params.get(BOOKING_LINK_PARAM))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The channel's metadata fields for a message of `step` to `contact_id`, or the
/// template error of a WhatsApp template variable.
pub(super) async fn channel_metadata(
    store: &dyn ActivityStore,
    workspace_id: WorkspaceId,
    step: &SequenceStep,
    contact_id: ContactId,
    ctx: &MergeContext<'_>,
    booking_link: Option<&str>,
) -> Result<Result<Map<String, Value>, TemplateError>, StoreError> {
    let mut meta = Map::new();
    if step.channel == Channel::WhatsApp
        && let Some(template) = &step.options.whatsapp_template
    {
        let mut variables = Map::new();
        for (name, text) in &template.variables {
            match render(text, ctx) {
                Ok(value) => {
                    variables.insert(name.clone(), Value::String(value));
                }
                Err(error) => return Ok(Err(error)),
            }
        }
        meta.insert("content_sid".into(), json!(template.content_sid.trim()));
        meta.insert("content_variables".into(), Value::Object(variables));
    }
    if matches!(step.channel, Channel::WhatsApp | Channel::Instagram)
        && let Some(at) = last_inbound_at(store, workspace_id, contact_id, step.channel).await?
    {
        meta.insert(
            "last_inbound_at".into(),
            json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        );
    }
    if step.channel == Channel::CalCom
        && let Some(link) = booking_link
    {
        meta.insert("booking_url".into(), json!(link));
    }
    Ok(Ok(meta))
}

/// The contact's latest inbound message on `channel` (a `ReplyReceived` activity).
async fn last_inbound_at(
    store: &dyn ActivityStore,
    workspace_id: WorkspaceId,
    contact_id: ContactId,
    channel: Channel,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
    let filter = ActivityFilter {
        contact_id: Some(contact_id),
        kinds: vec![ActivityKind::ReplyReceived],
        channel: Some(channel),
        ..ActivityFilter::default()
    };
    let latest = store.list_activities(workspace_id, &filter, 1).await?;
    Ok(latest.first().map(|a| a.occurred_at))
}
