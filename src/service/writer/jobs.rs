//! Work that spans several transactions, so that one huge campaign does not stall every other
//! command: each job advances by one bounded chunk per batch. `start` queues a campaign's
//! numbers; stopping a campaign or listing numbers as do-not-call cancels their waiting calls.

use std::collections::VecDeque;

use super::calls::Blocked;
use super::campaigns::StartSummary;
use super::dnc::DncScope;
use super::{CommandError, Outbox, Reply, Writer};
use crate::core::machine::Event;
use crate::core::model::{CallId, CampaignId, CampaignStatus, CancelReason, Millis, Status};
use crate::service::store::{StoreError, WriteTables};

pub(super) enum LongJob {
    /// `POST campaigns/{id}/start/`: one call per campaign number, `after` the last one done.
    Start { campaign_id: CampaignId, after: Option<String>, summary: StartSummary, reply: Reply<StartSummary> },
    /// A stopped campaign's waiting calls become CANCELLED.
    CancelCampaign { campaign_id: CampaignId, after: Option<CallId> },
    /// Listed numbers' waiting calls (in the scope's campaigns) become CANCELLED.
    CancelListed { scope: DncScope, numbers: VecDeque<String>, after: Option<CallId> },
}

impl Writer {
    /// A stop whose cancel sweep was cut short by a crash continues at boot. (A do-not-call
    /// sweep needs no resuming: the dial-time gate cancels a listed number's call at its turn.)
    pub(super) fn resume_interrupted_jobs(&mut self) -> Result<(), StoreError> {
        let reader = self.store.read()?;
        for campaign in reader.all_campaigns()? {
            if campaign.status == CampaignStatus::Stopped {
                let counts = reader.status_counts(campaign.id)?;
                let waiting: u64 = counts.iter().filter(|(s, _)| matches!(s, Status::Initiated | Status::Retrying)).map(|(_, n)| n).sum();
                if waiting > 0 {
                    self.jobs.push_back(LongJob::CancelCampaign { campaign_id: campaign.id, after: None });
                }
            }
        }
        Ok(())
    }

    /// Advances each long job by one chunk.
    pub(super) fn run_jobs(&mut self, t: &mut WriteTables<'_>, now: Millis, out: &mut Outbox) -> Result<(), StoreError> {
        for _ in 0..self.jobs.len() {
            let Some(job) = self.jobs.pop_front() else { break };
            if let Some(next) = self.advance(t, job, now, out)? {
                self.jobs.push_back(next);
            }
        }
        Ok(())
    }

    /// One chunk of `job`; returns what is left of it.
    fn advance(&mut self, t: &mut WriteTables<'_>, job: LongJob, now: Millis, out: &mut Outbox) -> Result<Option<LongJob>, StoreError> {
        let chunk = self.settings.cancel_chunk_max;
        match job {
            LongJob::CancelCampaign { campaign_id, after } => {
                let ids = t.campaign_calls_in(campaign_id, &[Status::Initiated, Status::Retrying], after, chunk)?;
                for &call_id in &ids {
                    self.cancel(t, call_id, CancelReason::CampaignStopped, now, out)?;
                }
                if ids.len() == chunk {
                    return Ok(Some(LongJob::CancelCampaign { campaign_id, after: ids.last().copied() }));
                }
                tracing::info!(campaign_id, "campaign stopped: its waiting calls are cancelled");
                Ok(None)
            }
            LongJob::CancelListed { scope, mut numbers, after } => {
                let mut budget = chunk;
                let mut after = after;
                while let Some(e164) = numbers.front().cloned() {
                    let ids = t.calls_to(&e164, after, budget)?;
                    for &call_id in &ids {
                        if let Some(call) = t.call(call_id)?
                            && (scope == DncScope::Global || scope == DncScope::Campaign(call.campaign_id))
                        {
                            self.cancel(t, call_id, CancelReason::DoNotCall, now, out)?;
                        }
                    }
                    budget -= ids.len().min(budget);
                    if budget == 0 {
                        // The chunk is used up: continue this number after its last call next time.
                        return Ok(Some(LongJob::CancelListed { scope, numbers, after: ids.last().copied() }));
                    }
                    numbers.pop_front();
                    after = None;
                    // Each number costs at least one lookup, so long lists also take turns.
                    budget -= 1;
                    if budget == 0 && !numbers.is_empty() {
                        return Ok(Some(LongJob::CancelListed { scope, numbers, after: None }));
                    }
                }
                Ok(None)
            }
            LongJob::Start { campaign_id, after, mut summary, reply } => {
                let campaign = match self.campaigns.load(t, campaign_id)? {
                    Some(c) if c.status != CampaignStatus::Stopped => c.clone(),
                    _ => {
                        out.reply(reply, Err(CommandError::Conflict("Campaign was stopped while starting".into())));
                        return Ok(None);
                    }
                };
                let chunk = self.settings.items_max;
                let page = t.numbers_page(campaign_id, after.as_deref(), chunk)?;
                let last = page.last().map(|(e164, _)| e164.clone());
                for (e164, _) in page.iter() {
                    match self.create_unless_blocked(t, &campaign, e164.clone(), now, out)? {
                        Ok(_) => summary.queued += 1,
                        Err(Blocked::DoNotCall(_)) => summary.skipped_dnc += 1,
                        Err(Blocked::Duplicate(_)) => summary.skipped_duplicates += 1,
                    }
                }
                if page.len() == chunk {
                    return Ok(Some(LongJob::Start { campaign_id, after: last, summary, reply }));
                }
                tracing::info!(
                    campaign_id,
                    queued = summary.queued,
                    skipped = summary.skipped_duplicates,
                    skipped_dnc = summary.skipped_dnc,
                    "campaign started"
                );
                out.reply(reply, Ok(summary));
                Ok(None)
            }
        }
    }

    fn cancel(&mut self, t: &mut WriteTables<'_>, call_id: CallId, reason: CancelReason, now: Millis, out: &mut Outbox) -> Result<(), StoreError> {
        if let Some(call) = t.call(call_id)?
            && let Ok(transition) = self.step(t, &call, Event::Cancel { reason }, now)?
        {
            self.commit_transition(t, &call, transition, now, out)?;
        }
        Ok(())
    }
}
