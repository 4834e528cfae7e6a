//! The forecast's reads, each cached for the walk: compliance per contact and channel,
//! rendering problems, the cap used per day and the touches sent per contact and day.

use chrono::NaiveDate;
use chrono_tz::Tz;

use super::HoldReason;
use super::sim::Sim;
use crate::error::StoreError;
use crate::model::{Channel, ConsentStatus, Contact};
use crate::outreach::runner::{contact_address, extra_values, touches_today};
use crate::outreach::schedule::local_day;
use crate::outreach::settings::send_quota_key;
use crate::outreach::template::{MergeContext, render};
use crate::store::ComplianceStoreExt;

impl Sim<'_> {
    /// Why the contact cannot get messages on `channel`, if it cannot.
    pub(super) async fn compliance(
        &mut self,
        contact: &Contact,
        channel: Channel,
    ) -> Result<Option<HoldReason>, StoreError> {
        if channel == Channel::ManualTask {
            return Ok(None);
        }
        if let Some(found) = self.compliance.get(&(contact.id, channel)) {
            return Ok(found.clone());
        }
        let ws = self.workspace_id;
        let reason = match contact_address(contact, channel) {
            None => Some(HoldReason::Conflict {
                detail: format!("no {channel} address"),
            }),
            Some(address) => match self.store.find_suppression(ws, channel, &address).await? {
                Some(s) => Some(HoldReason::Suppression {
                    reason: Some(s.reason),
                }),
                None => self
                    .store
                    .current_consent(ws, contact.id, channel)
                    .await?
                    .filter(|c| c.status == ConsentStatus::Withdrawn)
                    .map(|_| HoldReason::Suppression { reason: None }),
            },
        };
        self.compliance
            .insert((contact.id, channel), reason.clone());
        Ok(reason)
    }

    /// Why the template cannot be rendered for the contact (field names only).
    pub(super) async fn render_problem(
        &mut self,
        contact: &Contact,
        template: &crate::model::Template,
    ) -> Result<Option<String>, StoreError> {
        let account = match contact.account_id {
            None => None,
            Some(id) => {
                if !self.accounts.contains_key(&id) {
                    let found = match self.store.get_account(self.workspace_id, id).await {
                        Ok(a) => Some(a),
                        Err(e) if e.kind() == crate::error::StoreErrorKind::NotFound => None,
                        Err(e) => return Err(e),
                    };
                    self.accounts.insert(id, found);
                }
                self.accounts.get(&id).and_then(Option::as_ref)
            }
        };
        let extra = extra_values(self.merge_values, self.workspace_id, contact).await;
        let ctx = MergeContext::new(contact, account).with_extra(&extra);
        let result = render(&template.body, &ctx).and_then(|_| {
            template
                .subject
                .as_deref()
                .map(|s| render(s, &ctx))
                .transpose()
        });
        Ok(result.err().map(|e| e.to_string()))
    }

    pub(super) async fn quota(
        &mut self,
        channel: Channel,
        day: NaiveDate,
    ) -> Result<u32, StoreError> {
        if let Some(used) = self.quota_used.get(&(channel, day)) {
            return Ok(*used);
        }
        let today = local_day(self.settings.default_time_zone, self.now);
        let used = if day == today {
            self.store
                .quota_usage(self.workspace_id, &send_quota_key(channel, day))
                .await?
        } else {
            0
        };
        self.quota_used.insert((channel, day), used);
        Ok(used)
    }

    /// Messages sent to the contact on its local `day` (its `MessageSent` activities
    /// today, then the simulated sends).
    pub(super) async fn sent_on(
        &mut self,
        contact: &Contact,
        tz: Tz,
        day: NaiveDate,
    ) -> Result<u64, StoreError> {
        if let Some(n) = self.sent.get(&(contact.id, day)) {
            return Ok(*n);
        }
        let n = if day == local_day(tz, self.now) {
            touches_today(self.store, self.workspace_id, contact.id, tz, self.now).await?
        } else {
            0
        };
        self.sent.insert((contact.id, day), n);
        Ok(n)
    }
}
