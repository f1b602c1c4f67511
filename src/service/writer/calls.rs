//! Call commands from clients: create one or many calls (duplicate window, open calls and the
//! do-not-call list refuse), apply the provider's outcome callback, replay a dead letter.

use super::{CommandError, Outbox, WriteError, Writer};
use crate::core::machine::{self, CallbackAnswer, Event};
use crate::core::model::{Call, CallId, Campaign, CampaignId, CampaignStatus, Millis, Outcome};
use crate::service::stats::Rate;
use crate::service::store::{StoreError, WriteTables};

/// The numbers of a bulk request: validated by the API (`Err` = refused with its reason), or the campaign's list.
#[derive(Clone, Debug)]
pub enum BulkSource {
    Numbers(Vec<Result<String, (String, String)>>),
    CampaignNumbers,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkSummary {
    pub total_requested: u64,
    pub accepted: Vec<CallId>,
    pub immediate_processed: u64,
    pub failed_numbers: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct CallbackInput {
    pub call_id: CallId,
    pub outcome: Outcome,
    pub attempt: Option<u32>,
    pub external_call_id: Option<String>,
    pub duration_seconds: Option<u64>,
}

/// What a callback answers: the call and what the outcome did to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackReply {
    pub call_id: CallId,
    pub answer: CallbackAnswer,
}

/// What a bulk dead-letter replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub replayed: u64,
    /// Already replayed, or refused now (the call is no longer FAILED, its campaign stopped, …).
    pub skipped: u64,
}

/// Why a number cannot get a new call now.
pub(super) enum Blocked {
    DoNotCall(String),
    Duplicate(CommandError),
}

impl Blocked {
    pub(super) fn into_error(self) -> CommandError {
        match self {
            Blocked::DoNotCall(phone_number) => CommandError::DoNotCall { phone_number },
            Blocked::Duplicate(error) => error,
        }
    }
}

impl Writer {
    /// A campaign that accepts new calls: it exists and is not stopped (a paused one accepts and holds them).
    fn accepting_campaign(&mut self, t: &WriteTables<'_>, id: CampaignId) -> Result<Campaign, WriteError> {
        match self.campaigns.load(t, id)? {
            Some(c) if c.status != CampaignStatus::Stopped => Ok(c.clone()),
            _ => Err(CommandError::NotFound("Campaign not found or inactive".into()).into()),
        }
    }

    /// Why the number may not get a new call in this campaign now: listed, or a call to it is
    /// still open here, or one was accepted less than `duplicate_window` ago anywhere.
    fn blocked(&self, t: &WriteTables<'_>, campaign_id: CampaignId, e164: &str, now: Millis) -> Result<Option<Blocked>, StoreError> {
        if t.do_not_call(campaign_id, e164)? {
            return Ok(Some(Blocked::DoNotCall(e164.to_string())));
        }
        if let Some(open) = t.open_call(campaign_id, e164)? {
            return Ok(Some(Blocked::Duplicate(CommandError::Duplicate {
                call_id: open,
                message: "An earlier call to this number in this campaign is not final yet".into(),
                retry_after_seconds: None,
            })));
        }
        let window_ms = self.settings.duplicate_window.as_millis() as i64;
        if window_ms > 0
            && let Some(last) = t.last_call_to(e164)?
            && let Some(call) = t.call(last)?
            && now - call.created_at < window_ms
        {
            let left_ms = window_ms - (now - call.created_at);
            return Ok(Some(Blocked::Duplicate(CommandError::Duplicate {
                call_id: last,
                message: format!("A call to this number was accepted less than {} ago", crate::config::fmt_duration(self.settings.duplicate_window)),
                retry_after_seconds: Some((left_ms as u64).div_ceil(1000)),
            })));
        }
        Ok(None)
    }

    fn new_call_id(&mut self, now: Millis) -> CallId {
        let secs = now.div_euclid(1000).max(0) as u64;
        let nanos = (now.rem_euclid(1000) * 1_000_000) as u32;
        let ts = uuid::Timestamp::from_unix(&self.uuid_context, secs, nanos);
        CallId(uuid::Uuid::new_v7(ts).as_u128())
    }

    pub(super) fn create_call(
        &mut self,
        t: &mut WriteTables<'_>,
        campaign: &Campaign,
        e164: String,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<Call, StoreError> {
        let timezone = t.number(campaign.id, &e164)?.and_then(|n| n.timezone);
        let max_attempts = campaign.max_attempts.unwrap_or_else(|| self.rules.default_max_attempts());
        let call_id = self.new_call_id(now);
        let queue_seq = t.next_queue_seq()?;
        let call = machine::new_call(call_id, campaign.id, e164, timezone, max_attempts, now, queue_seq);
        out.note_change(t.put_call(None, &call)?);
        t.bump(crate::core::counters::day_of(now), crate::core::counters::Counter::Initiated, 1)?;
        self.stats.record(now, Rate::Accepted, 1);
        Ok(call)
    }

    /// Creates a call unless the number is blocked; `Ok(Err(why))` says why not.
    pub(super) fn create_unless_blocked(
        &mut self,
        t: &mut WriteTables<'_>,
        campaign: &Campaign,
        e164: String,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<Result<Call, Blocked>, StoreError> {
        match self.blocked(t, campaign.id, &e164, now)? {
            Some(why) => Ok(Err(why)),
            None => Ok(Ok(self.create_call(t, campaign, e164, now, out)?)),
        }
    }

    pub(super) fn initiate(
        &mut self,
        t: &mut WriteTables<'_>,
        campaign_id: CampaignId,
        e164: String,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<Call, WriteError> {
        let campaign = self.accepting_campaign(t, campaign_id)?;
        self.create_unless_blocked(t, &campaign, e164, now, out)?.map_err(|why| why.into_error().into())
    }

    pub(super) fn bulk_initiate(
        &mut self,
        t: &mut WriteTables<'_>,
        campaign_id: CampaignId,
        source: BulkSource,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<BulkSummary, WriteError> {
        let campaign = self.accepting_campaign(t, campaign_id)?;
        let items: Vec<Result<String, (String, String)>> = match source {
            BulkSource::Numbers(items) => items,
            BulkSource::CampaignNumbers => {
                let page = t.numbers_page(campaign_id, None, self.settings.items_max + 1)?;
                if page.len() > self.settings.items_max {
                    return Err(CommandError::Invalid {
                        field: "use_campaign_numbers".into(),
                        message: format!(
                            "Campaign has more than {} numbers (limits.batch_max); use POST /api/v1/campaigns/{campaign_id}/start/ instead",
                            self.settings.items_max
                        ),
                    }
                    .into());
                }
                page.into_iter().map(|(e164, _)| Ok(e164)).collect()
            }
        };
        let mut summary = BulkSummary { total_requested: items.len() as u64, accepted: Vec::new(), immediate_processed: 0, failed_numbers: Vec::new() };
        for item in items {
            match item {
                Err(refused) => summary.failed_numbers.push(refused),
                Ok(e164) => match self.create_unless_blocked(t, &campaign, e164.clone(), now, out)? {
                    Ok(call) => summary.accepted.push(call.call_id),
                    Err(why) => summary.failed_numbers.push((e164, why.into_error().to_string())),
                },
            }
        }
        if campaign.status == CampaignStatus::Active {
            let free = self.gauges.free_slots(campaign.id, campaign.max_concurrent_calls);
            summary.immediate_processed = (summary.accepted.len() as u64).min(free);
        }
        Ok(summary)
    }

    pub(super) fn callback(&mut self, t: &mut WriteTables<'_>, input: CallbackInput, now: Millis, out: &mut Outbox) -> Result<CallbackReply, WriteError> {
        let call = t.call(input.call_id)?.ok_or_else(|| CommandError::NotFound("Call not found".into()))?;
        let event = Event::Callback {
            outcome: input.outcome,
            attempt: input.attempt,
            external_call_id: input.external_call_id.as_deref(),
            duration_seconds: input.duration_seconds,
        };
        let transition = self.step(t, &call, event, now)?.map_err(|refusal| CommandError::Conflict(refusal.to_string()))?;
        let answer = transition.answer.expect("a callback step says what it applied");
        if transition.changed {
            tracing::info!(
                call_id = %call.call_id,
                attempt = answer.attempt,
                outcome = %answer.outcome.as_str(),
                status = %answer.result.status.as_str(),
                "callback applied"
            );
        }
        self.commit_transition(t, &call, transition, now, out)?;
        Ok(CallbackReply { call_id: call.call_id, answer })
    }

    /// Replays each dead letter that can still be replayed; the others are skipped (idempotent).
    pub(super) fn replay_many(&mut self, t: &mut WriteTables<'_>, ids: Vec<u64>, now: Millis, out: &mut Outbox) -> Result<ReplaySummary, WriteError> {
        let mut summary = ReplaySummary::default();
        for id in ids {
            match self.replay(t, id, now, out) {
                Ok(_) => summary.replayed += 1,
                Err(WriteError::Refused(_)) => summary.skipped += 1,
                Err(storage) => return Err(storage),
            }
        }
        Ok(summary)
    }

    pub(super) fn replay(&mut self, t: &mut WriteTables<'_>, id: u64, now: Millis, out: &mut Outbox) -> Result<Call, WriteError> {
        let mut letter = t.dead_letter(id)?.ok_or_else(|| CommandError::NotFound("Dead letter not found".into()))?;
        if letter.replayed_at.is_some() {
            return Err(CommandError::Conflict("Dead letter was already replayed".into()).into());
        }
        let call = t.call(letter.call_id)?.ok_or_else(|| CommandError::NotFound("Call not found".into()))?;
        if let Some(open) = t.open_call(call.campaign_id, &call.phone_number)?
            && open != call.call_id
        {
            return Err(CommandError::Conflict(format!("Cannot replay: call {open} to this number is not final yet")).into());
        }
        if t.do_not_call(call.campaign_id, &call.phone_number)? {
            return Err(CommandError::DoNotCall { phone_number: call.phone_number.clone() }.into());
        }
        // Refusals are decided before anything is written; the queue position is taken after.
        if let Err(refusal) = self.step(t, &call, Event::Replay { queue_seq: 0 }, now)? {
            return Err(CommandError::Conflict(refusal.to_string()).into());
        }
        let queue_seq = t.next_queue_seq()?;
        let transition = self.step(t, &call, Event::Replay { queue_seq }, now)?.map_err(|refusal| CommandError::Conflict(refusal.to_string()))?;
        let call = self.commit_transition(t, &call, transition, now, out)?;
        letter.replayed_at = Some(now);
        t.put_dead_letter(&letter)?;
        tracing::info!(dead_letter = id, call_id = %call.call_id, attempt = call.attempt_count, "dead letter replayed");
        Ok(call)
    }
}
