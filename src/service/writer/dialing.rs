//! Commands from the scheduler and the workers: dispatch (the dialling gates, then PROCESSING and
//! a dial job), the provider's answer to a dial request, and the timers (callback deadlines,
//! due retries, ended holds).

use super::{Outbox, Writer};
use crate::core::machine::{Event, NumberFacts, Refusal};
use crate::core::model::{CallId, Millis};
use crate::service::events::DialJob;
use crate::service::store::{StoreError, WriteTables};

/// How the provider answered one dial request.
#[derive(Clone, Debug)]
pub enum ProviderResult {
    Accepted { external_call_id: Option<String> },
    Refused { reason: String },
    TransportFailed { reason: String },
}

impl Writer {
    pub(super) fn dispatch(&mut self, t: &mut WriteTables<'_>, call_ids: Vec<CallId>, now: Millis, out: &mut Outbox) -> Result<(), StoreError> {
        let contact_window_ms = self.rules.contact_limits().map(|l| l.window.as_millis() as Millis);
        for call_id in call_ids {
            let Some(call) = t.call(call_id)? else { continue };
            let do_not_call = t.do_not_call(call.campaign_id, &call.phone_number)?;
            let recent_dials = match contact_window_ms {
                Some(window) => t.recent_dials(&call.phone_number, now - window)?,
                None => Vec::new(),
            };
            let event = Event::Dispatch { number: NumberFacts { do_not_call, recent_dials: &recent_dials } };
            let transition = match self.step(t, &call, event, now)? {
                Ok(transition) => transition,
                Err(refusal) => {
                    // A paused campaign's call goes back to its place in the queue.
                    let requeue = match (refusal, call.placement()) {
                        (Refusal::CampaignPaused, crate::core::model::Placement::Queued { seq }) => Some(seq),
                        _ => None,
                    };
                    out.refused.push((call_id, call.campaign_id, requeue));
                    continue;
                }
            };
            let dials = transition.dials(&call);
            let call = self.commit_transition(t, &call, transition, now, out)?;
            if !dials {
                // Held or cancelled at its turn: its reserved slot is free again.
                out.refused.push((call_id, call.campaign_id, None));
                continue;
            }
            if let Some(window) = contact_window_ms {
                t.record_dial(&call.phone_number, now, call_id, now - window)?;
            }
            let campaign_name = self.campaigns.load(t, call.campaign_id)?.map(|c| c.name.as_str().into()).unwrap_or_else(|| "".into());
            out.dial.push(DialJob {
                call_id,
                attempt: call.attempt_count,
                phone_number: call.phone_number.clone(),
                campaign_id: call.campaign_id,
                campaign_name,
                callback_url: self.settings.callback_url.clone(),
            });
        }
        Ok(())
    }

    pub(super) fn provider_answered(
        &mut self,
        t: &mut WriteTables<'_>,
        call_id: CallId,
        attempt: u32,
        result: ProviderResult,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        let Some(call) = t.call(call_id)? else { return Ok(()) };
        let event = match &result {
            ProviderResult::Accepted { external_call_id } => Event::ProviderAccepted { attempt, external_call_id: external_call_id.as_deref() },
            ProviderResult::Refused { reason } => Event::ProviderRefused { attempt, reason },
            ProviderResult::TransportFailed { reason } => Event::TransportFailed { attempt, reason },
        };
        if let Ok(transition) = self.step(t, &call, event, now)? {
            self.commit_transition(t, &call, transition, now, out)?;
        }
        Ok(())
    }

    pub(super) fn callback_timeouts(&mut self, t: &mut WriteTables<'_>, due: Vec<(CallId, Millis)>, now: Millis, out: &mut Outbox) -> Result<(), StoreError> {
        let timeout = crate::config::fmt_duration(self.settings.callback_timeout);
        for (call_id, armed_for) in due {
            let Some(call) = t.call(call_id)? else { continue };
            if let Ok(transition) = self.step(t, &call, Event::CallbackTimeout { armed_for, timeout: &timeout }, now)? {
                tracing::info!(call_id = %call_id, attempt = call.attempt_count, "no callback within {timeout}: the attempt counts as FAILED");
                self.commit_transition(t, &call, transition, now, out)?;
            }
        }
        Ok(())
    }

    pub(super) fn retries_due(&mut self, t: &mut WriteTables<'_>, due: Vec<(CallId, Millis)>, now: Millis, out: &mut Outbox) -> Result<(), StoreError> {
        for (call_id, armed_for) in due {
            let Some(call) = t.call(call_id)? else { continue };
            let queue_seq = t.next_queue_seq()?;
            if let Ok(transition) = self.step(t, &call, Event::RetryDue { armed_for, queue_seq }, now)? {
                self.commit_transition(t, &call, transition, now, out)?;
            }
        }
        Ok(())
    }

    pub(super) fn holds_expired(&mut self, t: &mut WriteTables<'_>, due: Vec<(CallId, Millis)>, now: Millis, out: &mut Outbox) -> Result<(), StoreError> {
        for (call_id, armed_for) in due {
            let Some(call) = t.call(call_id)? else { continue };
            if let Ok(transition) = self.step(t, &call, Event::HoldExpired { armed_for }, now)? {
                self.commit_transition(t, &call, transition, now, out)?;
            }
        }
        Ok(())
    }
}
