//! Stage 3 for a whole batch: the messages without an approval item are put to the
//! policy in one [`decide_many`](crate::approval::ApprovalPolicy::decide_many), and the
//! auto-approved ones get their approved items (the audit trail naming the rule)
//! stored in one [`insert_approvals`](crate::store::ApprovalStore::insert_approvals),
//! instead of one policy read and one commit per message. Holds, rejections and
//! messages whose item already existed are handled one by one, as before.

use futures::StreamExt;

use super::pipeline::{Decided, Gate, Gated, Screened};
use super::{Dispatcher, Outcome};
use crate::model::ApprovalItem;
use crate::outreach::approvals::approval_request;
use crate::store::Inserted;

/// A screened message with the text its approval let go (`None`: its own body).
pub(super) type Approved<'a> = (Screened<'a>, Option<String>);

impl Dispatcher {
    /// Takes every screened message through stage 3; answers those approved, with
    /// the outcomes of the rest.
    pub(super) async fn approve<'a>(
        &'a self,
        screened: Vec<Screened<'a>>,
    ) -> (Vec<Approved<'a>>, Vec<Outcome>) {
        let mut approved = Vec::with_capacity(screened.len());
        let mut outcomes = Vec::new();
        let mut ask = Vec::new();
        for s in screened {
            match s.approved.clone() {
                Some(body) => approved.push((s, body)),
                None => ask.push(s),
            }
        }
        if ask.is_empty() {
            return (approved, outcomes);
        }
        let requests: Vec<_> = ask
            .iter()
            .map(|s| approval_request(s.attempt.message, s.attempt.now))
            .collect();
        let mut decisions = self.policy.decide_many(&requests).await;
        if decisions.len() != requests.len() {
            tracing::warn!(
                asked = requests.len(),
                answered = decisions.len(),
                "the approval policy did not answer every request; the messages are left to expire"
            );
            outcomes.extend(ask.iter().map(|_| Outcome::LeftToExpire));
            return (approved, outcomes);
        }
        let concurrency = self.config.concurrency();
        let steps: Vec<_> = ask
            .into_iter()
            .zip(requests)
            .zip(decisions.drain(..))
            .map(|((s, request), decision)| async move {
                let decided = s.attempt.on_decision(&request, decision).await;
                (s, decided)
            })
            .collect();
        let mut steps = futures::stream::iter(steps).buffer_unordered(concurrency);
        let mut store = Vec::new();
        while let Some((s, decided)) = steps.next().await {
            let message = s.attempt.message;
            match Gated::of(message, decided) {
                Gated::Done(outcome) => outcomes.push(outcome),
                Gated::Next(decided) => match *decided {
                    Decided::Approved(body) => approved.push((s, body)),
                    Decided::Store(item) => store.push((s, *item)),
                },
            }
        }
        drop(steps);
        let (mut more, stored_outcomes) = self.store_approved(store).await;
        approved.append(&mut more);
        outcomes.extend(stored_outcomes);
        (approved, outcomes)
    }

    /// Stores the auto-approved items in one call (one by one if the call fails, so a
    /// bad item does not hold the others back) and lets their messages on.
    async fn store_approved<'a>(
        &'a self,
        store: Vec<(Screened<'a>, ApprovalItem)>,
    ) -> (Vec<Approved<'a>>, Vec<Outcome>) {
        if store.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let items: Vec<ApprovalItem> = store.iter().map(|(_, item)| item.clone()).collect();
        let inserted: Vec<Gate<Inserted<ApprovalItem>>> = match self
            .store
            .insert_approvals(&items)
            .await
        {
            Ok(inserted) if inserted.len() == items.len() => inserted.into_iter().map(Ok).collect(),
            Ok(_) | Err(_) => {
                tracing::warn!(
                    items = items.len(),
                    "storing a batch of approved items failed; storing them one by one"
                );
                futures::future::join_all(items.iter().map(|item| self.store.insert_approval(item)))
                    .await
                    .into_iter()
                    .map(|r| r.map_err(Into::into))
                    .collect()
            }
        };
        let concurrency = self.config.concurrency();
        let steps: Vec<_> = store
            .into_iter()
            .zip(inserted)
            .map(|((s, _), inserted)| async move {
                let body = match inserted {
                    Ok(inserted) => s.attempt.on_stored(&inserted).await,
                    Err(stop) => Err(stop),
                };
                (s, body)
            })
            .collect();
        let mut steps = futures::stream::iter(steps).buffer_unordered(concurrency);
        let (mut approved, mut outcomes) = (Vec::new(), Vec::new());
        while let Some((s, body)) = steps.next().await {
            match Gated::of(s.attempt.message, body) {
                Gated::Done(outcome) => outcomes.push(outcome),
                Gated::Next(body) => approved.push((s, *body)),
            }
        }
        (approved, outcomes)
    }
}
