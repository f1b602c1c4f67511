//! Commands from the scheduler and the workers: dispatch (the dialling gates, then PROCESSING and
//! a dial job), the provider's answer to a dial request, status lookups and progress reports, and
//! the timers (callback deadlines, due retries, ended holds).
//!
//! The writer remembers which dial requests are still with a worker (`outstanding_dials`). A
//! callback deadline that passes while one is out waits for the worker's report (the machine
//! refuses it with `DialInProgress`), and the worker is told to stop resending: so the slot is
//! never given to another call while this attempt may still be dialled, even when
//! `callback_timeout` is shorter than the send budget.

use super::{CommandError, Outbox, WriteError, Writer};
use crate::core::machine::{Event, LookupAnswer, LookupReason, NumberFacts, Refusal};
use crate::core::model::{CallId, Millis, Outcome};
use crate::service::events::DialJob;
use crate::service::store::{StoreError, WriteTables};

/// How the provider answered one dial request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderResult {
    Accepted {
        external_call_id: Option<String>,
    },
    Refused {
        reason: String,
    },
    TransportFailed {
        reason: String,
    },
    /// It may or may not have created the call, and the protocol cannot resend safely.
    Ambiguous {
        reason: String,
    },
    /// It surely did not receive the request (circuit open, throttled beyond the budget, or the
    /// attempt ended before the request went out).
    NotSent {
        reason: String,
    },
}

/// What the provider said when asked about an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupResult {
    Final { outcome: Outcome, duration_seconds: Option<u64>, external_call_id: String, status: String },
    Pending { status: String },
    Unknown { reason: String },
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
            let (campaign_name, caller_id) = match self.campaigns.load(t, call.campaign_id)? {
                Some(c) => (c.name.as_str().into(), c.caller_id.as_deref().map(Into::into)),
                None => ("".into(), None),
            };
            self.outstanding_dials.insert(call_id, call.attempt_count);
            out.dial.push(DialJob {
                call_id,
                attempt: call.attempt_count,
                phone_number: call.phone_number.clone(),
                campaign_id: call.campaign_id,
                campaign_name,
                callback_url: self.settings.callback_url.clone(),
                caller_id,
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
        if self.outstanding_dials.get(&call_id) == Some(&attempt) {
            self.outstanding_dials.remove(&call_id);
        }
        out.sends_done.push((call_id, attempt));
        let Some(call) = t.call(call_id)? else { return Ok(()) };
        let queue_seq = match result {
            ProviderResult::NotSent { .. } => t.next_queue_seq()?,
            _ => 0,
        };
        let event = match &result {
            ProviderResult::Accepted { external_call_id } => Event::ProviderAccepted { attempt, external_call_id: external_call_id.as_deref() },
            ProviderResult::Refused { reason } => Event::ProviderRefused { attempt, reason },
            ProviderResult::TransportFailed { reason } => Event::TransportFailed { attempt, reason },
            ProviderResult::Ambiguous { reason } => Event::ProviderAmbiguous { attempt, reason },
            ProviderResult::NotSent { reason } => Event::DialNotSent { attempt, reason, queue_seq },
        };
        if let Ok(transition) = self.step(t, &call, event, now)? {
            if let ProviderResult::NotSent { reason } = &result {
                tracing::info!(call_id = %call_id, attempt, %reason, "dial request not sent: the call is queued again, its attempt not used up");
            }
            self.commit_transition(t, &call, transition, now, out)?;
        }
        // A deadline that passed while the request was out applies now.
        if let Some(armed_for) = self.deferred_timeouts.remove(&call_id) {
            self.callback_timeout(t, call_id, armed_for, now, out)?;
        }
        Ok(())
    }

    pub(super) fn callback_timeouts(&mut self, t: &mut WriteTables<'_>, due: Vec<(CallId, Millis)>, now: Millis, out: &mut Outbox) -> Result<(), StoreError> {
        for (call_id, armed_for) in due {
            self.callback_timeout(t, call_id, armed_for, now, out)?;
        }
        Ok(())
    }

    fn callback_timeout(&mut self, t: &mut WriteTables<'_>, call_id: CallId, armed_for: Millis, now: Millis, out: &mut Outbox) -> Result<(), StoreError> {
        let timeout = crate::config::fmt_duration(self.settings.callback_timeout);
        let Some(call) = t.call(call_id)? else { return Ok(()) };
        let dial_in_progress = self.outstanding_dials.get(&call_id) == Some(&call.attempt_count);
        let lookup_budget_ms = self.settings.lookup_budget.map(|d| d.as_millis() as Millis);
        match self.step(t, &call, Event::CallbackTimeout { armed_for, timeout: &timeout, dial_in_progress, lookup_budget_ms }, now)? {
            Ok(transition) => {
                if transition.lookup.is_some() {
                    tracing::info!(call_id = %call_id, attempt = call.attempt_count, "no callback within {timeout}: asking the provider about the call");
                } else {
                    tracing::info!(call_id = %call_id, attempt = call.attempt_count, "no callback within {timeout}: the attempt counts as FAILED");
                }
                self.commit_transition(t, &call, transition, now, out)?;
            }
            Err(Refusal::DialInProgress) => {
                tracing::info!(call_id = %call_id, attempt = call.attempt_count, "no callback within {timeout} while the dial request is still being sent: stopping it; the timeout applies when its worker reports");
                self.deferred_timeouts.insert(call_id, armed_for);
                out.stop_sends.push((call_id, call.attempt_count));
            }
            Err(_) => {}
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn lookup_answered(
        &mut self,
        t: &mut WriteTables<'_>,
        call_id: CallId,
        attempt: u32,
        reason: LookupReason,
        answer: super::LookupResult,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<(), StoreError> {
        let Some(call) = t.call(call_id)? else { return Ok(()) };
        let timeout = crate::config::fmt_duration(self.settings.callback_timeout);
        let answer = match &answer {
            LookupResult::Final { outcome, duration_seconds, external_call_id, status } => {
                LookupAnswer::Final { outcome: *outcome, duration_seconds: *duration_seconds, external_call_id, status }
            }
            LookupResult::Pending { status } => LookupAnswer::Pending { status },
            LookupResult::Unknown { reason } => LookupAnswer::Unknown { reason },
        };
        if let Ok(transition) = self.step(t, &call, Event::StatusLookedUp { attempt, reason, answer, timeout: &timeout }, now)? {
            tracing::info!(call_id = %call_id, attempt, answer = ?answer, status = %transition.call.status().as_str(), "status lookup applied");
            self.commit_transition(t, &call, transition, now, out)?;
        }
        Ok(())
    }

    pub(super) fn reconcile_recovered(&mut self, t: &mut WriteTables<'_>, call_ids: Vec<CallId>, now: Millis, out: &mut Outbox) -> Result<(), StoreError> {
        for call_id in call_ids {
            let Some(call) = t.call(call_id)? else { continue };
            if let Ok(transition) = self.step(t, &call, Event::Recovered, now)? {
                self.commit_transition(t, &call, transition, now, out)?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn provider_progress(
        &mut self,
        t: &mut WriteTables<'_>,
        call_id: CallId,
        attempt: u32,
        status: &str,
        external_call_id: Option<&str>,
        now: Millis,
        out: &mut Outbox,
    ) -> Result<(), WriteError> {
        let call = t.call(call_id)?.ok_or_else(|| CommandError::NotFound("Call not found".into()))?;
        if let Ok(transition) = self.step(t, &call, Event::ProviderProgress { attempt, status, external_call_id }, now)? {
            self.commit_transition(t, &call, transition, now, out)?;
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
