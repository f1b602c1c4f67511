//! The call state machine: one pure function, `step(call, event, now, context)`.
//!
//! Every status change of a call goes through here, and every fact a decision depends on is an
//! argument: the call, the event, `now`, and a resolved [`Context`] (the campaign as stored, the
//! callee's timezones, the rules). Whether a late event still applies (a timer armed for an
//! instant the call has left, a callback for an earlier attempt) is decided here and nowhere
//! else. No I/O, no clock, no storage: it returns the new record and what else must happen.

use jiff::tz::TimeZone;

use crate::core::counters::Counter;
use crate::core::model::{
    Attempt, AttemptResult, Call, CallId, CallState, Campaign, CampaignId, CampaignStatus, CancelReason, Hold, HoldReason, Millis, Outcome, Status,
    to_timestamp,
};
use crate::core::retry::{RetryDecision, RetryQuery, RetryRules};

/// A retry firing later than this after its `next_retry_at` (the service was down) is checked
/// against the retry windows again instead of being dialled outside them.
pub const RETRY_LATE_GRACE_MS: Millis = 60_000;

/// Everything a decision needs besides the call, the event and `now`, resolved by the caller
/// before the call is stepped. A field that was not loaded cannot be passed.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The call's campaign, as committed.
    pub campaign: &'a Campaign,
    /// The callee's timezones, never empty: several when the number is ambiguous, and then an
    /// instant is inside a window only if it is inside in every one of them.
    pub zones: &'a [TimeZone],
    pub rules: &'a RetryRules,
    /// How long an attempt waits for its outcome.
    pub callback_timeout_ms: Millis,
}

/// What the store knows about the callee's number at the moment of dialling.
#[derive(Clone, Copy, Debug, Default)]
pub struct NumberFacts<'a> {
    /// On the do-not-call list, globally or for the call's campaign.
    pub do_not_call: bool,
    /// When this number was dialled (any campaign) within the contact-limit window, oldest first.
    pub recent_dials: &'a [Millis],
}

/// What happened to a call.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// Its turn in the queue came and a slot is reserved: dial it if every gate is open.
    Dispatch { number: NumberFacts<'a> },
    /// The provider answered 2xx to the dial request of `attempt`.
    ProviderAccepted { attempt: u32, external_call_id: Option<&'a str> },
    /// The provider refused the dial request of `attempt` (4xx): final.
    ProviderRefused { attempt: u32, reason: &'a str },
    /// The dial request of `attempt` never got through after every resend: counts as outcome FAILED.
    TransportFailed { attempt: u32, reason: &'a str },
    /// The dial request of `attempt` failed in a way that leaves it unknown whether the provider
    /// created the call (a timeout, a reset, a 5xx, with a provider that has no idempotency key):
    /// it is never resent; the attempt stays in flight and is resolved by its status callback, a
    /// status lookup, or the callback timeout. Only recorded in the attempt's history.
    ProviderAmbiguous { attempt: u32, reason: &'a str },
    /// The dial request of `attempt` was surely not received by the provider (its circuit breaker
    /// was open, or it kept throttling): the call goes back to the queue at `queue_seq` with the
    /// same attempt number, which is not used up.
    DialNotSent { attempt: u32, reason: &'a str, queue_seq: u64 },
    /// A progress report of the provider that is not an outcome (e.g. `ringing`), with the
    /// provider's id for the call when the report names one.
    ProviderProgress { attempt: u32, status: &'a str, external_call_id: Option<&'a str> },
    /// The provider's outcome callback.
    Callback { outcome: Outcome, attempt: Option<u32>, external_call_id: Option<&'a str>, duration_seconds: Option<u64> },
    /// The callback-deadline timer armed for `armed_for` fired (`timeout` is its text, e.g. `10m`).
    /// `dial_in_progress`: a worker is still sending this attempt's dial request (the timeout
    /// waits for it, so that the slot is not given to another call while it may still be dialled).
    /// `lookup_budget_ms`: the provider can be asked about a call (Twilio): an attempt with a
    /// provider id that was not looked up yet is looked up first, for this long, before it is lost.
    CallbackTimeout { armed_for: Millis, timeout: &'a str, dial_in_progress: bool, lookup_budget_ms: Option<Millis> },
    /// What the provider said when asked about `attempt` (see [`LookupReason`]).
    StatusLookedUp { attempt: u32, reason: LookupReason, answer: LookupAnswer<'a>, timeout: &'a str },
    /// The service started with this call in flight (it was PROCESSING at the crash or stop):
    /// look its attempt up at once if the provider can be asked and knows its id.
    Recovered,
    /// The retry timer armed for `armed_for` fired; `queue_seq` is the queue position it gets.
    RetryDue { armed_for: Millis, queue_seq: u64 },
    /// The hold timer armed for `armed_for` fired: the call may be dialled again.
    HoldExpired { armed_for: Millis },
    /// The campaign was stopped, or the number put on the do-not-call list.
    Cancel { reason: CancelReason },
    /// The operator replays the call's dead letter; `queue_seq` is the queue position it gets.
    Replay { queue_seq: u64 },
}

/// Why a status lookup was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupReason {
    /// The callback deadline passed; the call waits for the answer until `deadline` (the lookup's
    /// own, short deadline), then the timeout applies.
    Deadline { deadline: Millis },
    /// The service started with the call in flight.
    Recovered,
}

/// The provider's answer to a status lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupAnswer<'a> {
    /// The call ended: its outcome, as the provider's status maps to one.
    Final { outcome: Outcome, duration_seconds: Option<u64>, external_call_id: &'a str, status: &'a str },
    /// Still queued, ringing or in progress.
    Pending { status: &'a str },
    /// The provider does not know the call, or could not be asked.
    Unknown { reason: &'a str },
}

/// An effect of a step: ask the provider about this attempt (only the writer's workers can).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupRequest {
    pub attempt: u32,
    pub external_call_id: String,
    pub reason: LookupReason,
}

/// Why an event does not apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A callback for a call that is not waiting for an outcome (409).
    NotAwaitingOutcome { status: Status },
    /// A callback for another attempt than the one in flight, by its `attempt` field or by an
    /// `external_call_id` that belongs to that attempt (409).
    WrongAttempt { current: u32, given: u32 },
    /// Any other event that does not fit the call's state (409 where a client asked for it).
    Conflict(String),
    /// Its turn came but its campaign is paused: it stays queued.
    CampaignPaused,
    /// The callback deadline passed while a worker is still sending the attempt's dial request:
    /// the timeout applies once the worker has reported.
    DialInProgress,
    /// A late internal event (a provider answer or a timer for an attempt or instant the call has
    /// left): ignore it.
    Stale,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotAwaitingOutcome { status } => write!(f, "Call is {} and not awaiting an outcome", status.as_str()),
            Refusal::WrongAttempt { current, given } => write!(f, "Callback is for attempt {given} but attempt {current} is the current one"),
            Refusal::Conflict(message) => f.write_str(message),
            Refusal::CampaignPaused => f.write_str("Campaign is paused"),
            Refusal::DialInProgress => f.write_str("The dial request is still being sent"),
            Refusal::Stale => f.write_str("Event is stale"),
        }
    }
}

/// What a callback did to its attempt: the body a repeat answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallbackAnswer {
    pub attempt: u32,
    pub outcome: Outcome,
    pub result: AttemptResult,
}

/// The result of a step that applies.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub call: Call,
    /// False when the event was an idempotent repeat: nothing to write.
    pub changed: bool,
    /// Daily counters to add to.
    pub counters: Vec<(Counter, u64)>,
    /// A dead letter to record, with the error text.
    pub dead_letter: Option<String>,
    /// For callbacks: what to answer (the same for a repeat).
    pub answer: Option<CallbackAnswer>,
    /// Ask the provider about an attempt (after the commit).
    pub lookup: Option<LookupRequest>,
}

impl Transition {
    fn changed(call: Call, counters: Vec<(Counter, u64)>) -> Transition {
        Transition { call, changed: true, counters, dead_letter: None, answer: None, lookup: None }
    }

    /// True when the step put the call in flight: a dial request must be sent.
    pub fn dials(&self, before: &Call) -> bool {
        matches!(self.call.state, CallState::Processing { .. }) && !matches!(before.state, CallState::Processing { .. })
    }
}

/// A new call: queued at `queue_seq`, attempt 1.
pub fn new_call(
    call_id: CallId,
    campaign_id: CampaignId,
    phone_number: String,
    timezone: Option<String>,
    max_attempts: u32,
    now: Millis,
    queue_seq: u64,
) -> Call {
    Call {
        call_id,
        campaign_id,
        phone_number,
        timezone,
        state: CallState::Initiated { queue_seq, hold: None },
        attempt_count: 1,
        max_attempts,
        created_at: now,
        updated_at: now,
        total_call_time: 0,
        error_message: None,
        attempts: Vec::new(),
    }
}

fn outcome_counter(outcome: Outcome) -> Counter {
    match outcome {
        Outcome::Picked => Counter::Picked,
        Outcome::Disconnected => Counter::Disconnected,
        Outcome::Rnr => Counter::Rnr,
        Outcome::Failed => Counter::Failed,
    }
}

pub fn step(call: &Call, event: Event<'_>, now: Millis, context: &Context<'_>) -> Result<Transition, Refusal> {
    let campaign_stopped = context.campaign.status == CampaignStatus::Stopped;
    let in_flight = |attempt: u32| matches!(call.state, CallState::Processing { .. }) && call.attempt_count == attempt;
    let mut next = call.clone();
    next.updated_at = now;
    match event {
        Event::Dispatch { number } => {
            let CallState::Initiated { queue_seq, hold: None } = call.state else { return Err(Refusal::Stale) };
            if campaign_stopped {
                return Ok(cancel(next, CancelReason::CampaignStopped));
            }
            if context.campaign.status == CampaignStatus::Paused {
                return Err(Refusal::CampaignPaused);
            }
            if number.do_not_call {
                return Ok(cancel(next, CancelReason::DoNotCall));
            }
            match context.rules.calling_hours_open_at(call.campaign_id, context.zones, to_timestamp(now)) {
                None => {
                    next.state = CallState::Failed;
                    next.error_message = Some(NO_CALLING_HOURS.into());
                    return Ok(Transition::changed(next, vec![]));
                }
                Some(open) if open.as_millisecond() > now => {
                    return Ok(hold(next, queue_seq, HoldReason::OutsideCallingHours, open.as_millisecond()));
                }
                Some(_) => {}
            }
            if let Some(limits) = context.rules.contact_limits() {
                let window_ms = limits.window.as_millis() as Millis;
                let counted: Vec<Millis> = number.recent_dials.iter().copied().filter(|&at| at > now - window_ms && at <= now).collect();
                if counted.len() as u64 >= limits.max_attempts as u64 {
                    let oldest = counted.iter().copied().min().unwrap_or(now);
                    return Ok(hold(next, queue_seq, HoldReason::ContactCap, (oldest + window_ms).max(now + 1)));
                }
            }
            next.state = CallState::Processing { deadline: now + context.callback_timeout_ms };
            next.attempts.push(Attempt { attempt: call.attempt_count, dialled_at: now, ..Attempt::default() });
            Ok(Transition::changed(next, vec![(Counter::Dialled, 1)]))
        }
        Event::ProviderAccepted { attempt, external_call_id } => {
            // The answer may come after the outcome callback: it still belongs to its attempt.
            let Some(entry) = next.attempt_mut(attempt) else { return Err(Refusal::Stale) };
            if entry.provider_answered_at.is_some() {
                return Err(Refusal::Stale);
            }
            entry.provider_answered_at = Some(now);
            if entry.external_call_id.is_none() {
                entry.external_call_id = external_call_id.map(str::to_string);
            }
            Ok(Transition::changed(next, vec![]))
        }
        Event::ProviderRefused { attempt, reason } => {
            if !in_flight(attempt) {
                return Err(Refusal::Stale);
            }
            let message = format!("Provider refused the call: {reason}");
            let result = AttemptResult { status: Status::Failed, next_retry_at: None };
            end_attempt(&mut next, attempt, now, None, None, Some(message.clone()), Some(result));
            next.state = CallState::Failed;
            next.error_message = Some(message);
            Ok(Transition::changed(next, vec![(Counter::Failed, 1)]))
        }
        Event::TransportFailed { attempt, reason } => {
            if !in_flight(attempt) {
                return Err(Refusal::Stale);
            }
            let mut transition = apply_outcome(next, Outcome::Failed, None, Some(format!("Provider unreachable: {reason}")), now, context);
            transition.dead_letter = Some(reason.to_string());
            transition.counters.push((Counter::DeadLetters, 1));
            Ok(transition)
        }
        Event::ProviderAmbiguous { attempt, reason } => {
            if !in_flight(attempt) {
                return Err(Refusal::Stale);
            }
            let entry = next.attempt_mut(attempt).ok_or(Refusal::Stale)?;
            note(entry, format!("Dial request ambiguous ({reason}): not resent; waiting for the status callback"));
            Ok(Transition::changed(next, vec![]))
        }
        Event::DialNotSent { attempt, reason, queue_seq } => {
            if !in_flight(attempt) {
                return Err(Refusal::Stale);
            }
            let entry = next.attempt_mut(attempt).ok_or(Refusal::Stale)?;
            entry.ended_at = Some(now);
            note(entry, format!("Not sent: {reason}; queued again with the same attempt number"));
            next.state = CallState::Initiated { queue_seq, hold: None };
            Ok(Transition::changed(next, vec![]))
        }
        Event::ProviderProgress { attempt, status, external_call_id } => {
            let Some(entry) = next.attempt_mut(attempt) else { return Err(Refusal::Stale) };
            // A progress report after the outcome (they can arrive out of order) changes nothing.
            let learns_id = entry.external_call_id.is_none() && external_call_id.is_some();
            if entry.is_ended() || (entry.provider_status.as_deref() == Some(status) && !learns_id) {
                return Err(Refusal::Stale);
            }
            entry.provider_status = Some(status.to_string());
            if learns_id {
                entry.external_call_id = external_call_id.map(str::to_string);
            }
            Ok(Transition::changed(next, vec![]))
        }
        Event::Callback { outcome, attempt, external_call_id, duration_seconds } => {
            let by_external_id = external_call_id.and_then(|id| call.attempts.iter().find(|a| a.external_call_id.as_deref() == Some(id))).map(|a| a.attempt);
            let meant = match (attempt, by_external_id) {
                (Some(given), Some(owner)) if given != owner => return Err(Refusal::WrongAttempt { current: owner, given }),
                (Some(given), _) => given,
                (None, Some(owner)) => owner,
                (None, None) => call.attempt_count,
            };
            if let Some(entry) = call.attempt(meant)
                && entry.outcome == Some(outcome)
                && let Some(result) = entry.result
            {
                // An idempotent repeat: same answer, nothing changes.
                let answer = CallbackAnswer { attempt: meant, outcome, result };
                return Ok(Transition { call: call.clone(), changed: false, counters: vec![], dead_letter: None, answer: Some(answer), lookup: None });
            }
            if meant != call.attempt_count {
                return Err(Refusal::WrongAttempt { current: call.attempt_count, given: meant });
            }
            if !matches!(call.state, CallState::Processing { .. }) {
                return Err(Refusal::NotAwaitingOutcome { status: call.status() });
            }
            // An id no attempt has seen is the provider's word: it names the current attempt.
            if let Some(id) = external_call_id
                && let Some(entry) = next.attempt_mut(meant)
            {
                entry.external_call_id = Some(id.to_string());
            }
            Ok(apply_outcome(next, outcome, duration_seconds, None, now, context))
        }
        Event::CallbackTimeout { armed_for, timeout, dial_in_progress, lookup_budget_ms } => {
            if call.state != (CallState::Processing { deadline: armed_for }) {
                return Err(Refusal::Stale);
            }
            if dial_in_progress {
                return Err(Refusal::DialInProgress);
            }
            // Looked up once: at the first deadline of the attempt (a deadline later than
            // `dialled_at + callback_timeout` was set by a lookup), and only with an id to ask about.
            let attempt = call.attempt_count;
            let lookup = match (lookup_budget_ms, call.attempt(attempt)) {
                (Some(budget), Some(entry)) if armed_for <= entry.dialled_at + context.callback_timeout_ms => {
                    entry.external_call_id.clone().map(|id| (budget, id))
                }
                _ => None,
            };
            if let Some((budget, external_call_id)) = lookup {
                let deadline = now + budget;
                next.state = CallState::Processing { deadline };
                let entry = next.attempt_mut(attempt).ok_or(Refusal::Stale)?;
                note(entry, format!("No callback within {timeout}: asking the provider about the call"));
                let mut transition = Transition::changed(next, vec![]);
                transition.lookup = Some(LookupRequest { attempt, external_call_id, reason: LookupReason::Deadline { deadline } });
                return Ok(transition);
            }
            Ok(apply_outcome(next, Outcome::Failed, None, Some(format!("No callback within {timeout}")), now, context))
        }
        Event::StatusLookedUp { attempt, reason, answer, timeout } => {
            if !in_flight(attempt) {
                return Err(Refusal::Stale);
            }
            // A lookup made at the deadline is current only while the call waits for its answer.
            let at_deadline = match reason {
                LookupReason::Deadline { deadline } if call.state != (CallState::Processing { deadline }) => return Err(Refusal::Stale),
                LookupReason::Deadline { .. } => true,
                LookupReason::Recovered => false,
            };
            match answer {
                LookupAnswer::Final { outcome, duration_seconds, external_call_id, status } => {
                    let entry = next.attempt_mut(attempt).ok_or(Refusal::Stale)?;
                    if entry.external_call_id.is_none() {
                        entry.external_call_id = Some(external_call_id.to_string());
                    }
                    entry.provider_status = Some(status.to_string());
                    let mut transition = apply_outcome(next, outcome, duration_seconds, None, now, context);
                    if let Some(entry) = transition.call.attempt_mut(attempt) {
                        note(entry, "Outcome from a status lookup".to_string());
                    }
                    Ok(transition)
                }
                LookupAnswer::Pending { status } => {
                    let entry = next.attempt_mut(attempt).ok_or(Refusal::Stale)?;
                    let same = entry.provider_status.as_deref() == Some(status);
                    entry.provider_status = Some(status.to_string());
                    if at_deadline {
                        // Still ringing or talking: wait once more, as long again.
                        note(entry, format!("Status lookup: still {status}; waiting {timeout} more"));
                        next.state = CallState::Processing { deadline: now + context.callback_timeout_ms };
                    } else if same {
                        return Err(Refusal::Stale);
                    }
                    Ok(Transition::changed(next, vec![]))
                }
                LookupAnswer::Unknown { reason } => {
                    if at_deadline {
                        return Ok(apply_outcome(
                            next,
                            Outcome::Failed,
                            None,
                            Some(format!("No callback within {timeout}; status lookup: {reason}")),
                            now,
                            context,
                        ));
                    }
                    // After a restart the deadline still stands: it decides.
                    let entry = next.attempt_mut(attempt).ok_or(Refusal::Stale)?;
                    note(entry, format!("Status lookup after a restart: {reason}"));
                    Ok(Transition::changed(next, vec![]))
                }
            }
        }
        Event::Recovered => {
            let CallState::Processing { .. } = call.state else { return Err(Refusal::Stale) };
            let attempt = call.attempt_count;
            let external_call_id = call.attempt(attempt).and_then(|a| a.external_call_id.clone()).ok_or(Refusal::Stale)?;
            let mut transition = Transition { call: call.clone(), changed: false, counters: vec![], dead_letter: None, answer: None, lookup: None };
            transition.lookup = Some(LookupRequest { attempt, external_call_id, reason: LookupReason::Recovered });
            Ok(transition)
        }
        Event::RetryDue { armed_for, queue_seq } => {
            if call.state != (CallState::Retrying { next_retry_at: armed_for }) {
                return Err(Refusal::Stale);
            }
            if campaign_stopped {
                return Ok(cancel(next, CancelReason::CampaignStopped));
            }
            if now - armed_for > RETRY_LATE_GRACE_MS {
                // Fell due while the service was down: re-queue now only if its retry window and the
                // calling hours are still open, else wait for the next opening of both.
                match context.rules.window_open_at(call.campaign_id, call.attempt_count + 1, to_timestamp(now), context.zones) {
                    Some(open) if open.as_millisecond() > now => {
                        next.state = CallState::Retrying { next_retry_at: open.as_millisecond() };
                        return Ok(Transition::changed(next, vec![]));
                    }
                    Some(_) => {}
                    None => {
                        next.state = CallState::Failed;
                        next.error_message = Some("No retry window available".into());
                        return Ok(Transition::changed(next, vec![]));
                    }
                }
            }
            next.state = CallState::Initiated { queue_seq, hold: None };
            next.attempt_count += 1;
            Ok(Transition::changed(next, vec![(Counter::Retries, 1)]))
        }
        Event::HoldExpired { armed_for } => {
            let CallState::Initiated { queue_seq, hold: Some(hold) } = call.state else { return Err(Refusal::Stale) };
            if hold.until != armed_for {
                return Err(Refusal::Stale);
            }
            if campaign_stopped {
                return Ok(cancel(next, CancelReason::CampaignStopped));
            }
            next.state = CallState::Initiated { queue_seq, hold: None };
            Ok(Transition::changed(next, vec![]))
        }
        Event::Cancel { reason } => {
            if !matches!(call.state, CallState::Initiated { .. } | CallState::Retrying { .. }) {
                return Err(Refusal::Stale);
            }
            Ok(cancel(next, reason))
        }
        Event::Replay { queue_seq } => {
            if call.state != CallState::Failed {
                return Err(Refusal::Conflict(format!("Call is {}; only a FAILED call can be replayed", call.status().as_str())));
            }
            if campaign_stopped {
                return Err(Refusal::Conflict("Cannot replay: the campaign is stopped".into()));
            }
            next.state = CallState::Initiated { queue_seq, hold: None };
            next.attempt_count += 1;
            next.max_attempts = next.max_attempts.max(next.attempt_count);
            next.error_message = None;
            Ok(Transition::changed(next, vec![(Counter::Retries, 1)]))
        }
    }
}

/// The reason a call fails when its callee can never be called within the search horizon.
pub const NO_CALLING_HOURS: &str = "No calling hours available in the callee's timezone";

fn cancel(mut next: Call, reason: CancelReason) -> Transition {
    next.state = CallState::Cancelled { reason };
    next.error_message = Some(reason.message().into());
    Transition::changed(next, vec![])
}

fn hold(mut next: Call, queue_seq: u64, reason: HoldReason, until: Millis) -> Transition {
    next.state = CallState::Initiated { queue_seq, hold: Some(Hold { reason, until }) };
    Transition::changed(next, vec![])
}

/// Longest text kept in an attempt's `error` notes; older notes give way to newer ones.
const ATTEMPT_NOTES_MAX_CHARS: usize = 1000;

/// Adds a note to an attempt's history (its `error` text), after what it already says.
fn note(entry: &mut Attempt, text: String) {
    let joined = match entry.error.take() {
        Some(before) if !before.is_empty() => format!("{before}; {text}"),
        _ => text,
    };
    let excess = joined.chars().count().saturating_sub(ATTEMPT_NOTES_MAX_CHARS);
    entry.error = Some(if excess == 0 { joined } else { format!("…{}", joined.chars().skip(excess + 1).collect::<String>()) });
}

/// Writes how attempt `n` ended into its history entry.
fn end_attempt(
    call: &mut Call,
    n: u32,
    now: Millis,
    outcome: Option<Outcome>,
    duration_seconds: Option<u64>,
    error: Option<String>,
    result: Option<AttemptResult>,
) {
    if let Some(entry) = call.attempt_mut(n) {
        entry.outcome = outcome;
        entry.call_duration = duration_seconds;
        entry.ended_at = Some(now);
        if let Some(error) = error {
            note(entry, error);
        }
        entry.result = result;
    }
}

/// An attempt ended with `outcome`: PICKED is final; the others retry per the rules or fail; a
/// stopped campaign's call ends CANCELLED whatever the outcome (after it is recorded).
fn apply_outcome(mut next: Call, outcome: Outcome, duration_seconds: Option<u64>, context: Option<String>, now: Millis, ctx: &Context<'_>) -> Transition {
    let mut counters = vec![(outcome_counter(outcome), 1)];
    if let Some(seconds) = duration_seconds {
        next.total_call_time = next.total_call_time.saturating_add(seconds);
        counters.push((Counter::CallDurationSeconds, seconds));
    }
    let attempt = next.attempt_count;
    if outcome == Outcome::Picked {
        next.state = CallState::Picked;
        next.error_message = None;
    } else if ctx.campaign.status == CampaignStatus::Stopped {
        next.state = CallState::Cancelled { reason: CancelReason::CampaignStopped };
        next.error_message = Some(CancelReason::CampaignStopped.message().into());
    } else {
        let query = RetryQuery { outcome, at: to_timestamp(now), attempt, max_attempts: next.max_attempts, campaign_id: next.campaign_id, zones: ctx.zones };
        match ctx.rules.next_retry(&query) {
            RetryDecision::Retry { at, .. } => {
                // A retry is never due before the outcome that caused it.
                next.state = CallState::Retrying { next_retry_at: at.as_millisecond().max(now) };
                next.error_message = context.clone();
            }
            RetryDecision::GiveUp { reason } => {
                next.state = CallState::Failed;
                next.error_message = Some(match &context {
                    Some(context) => format!("{context}; {reason}"),
                    None => reason,
                });
            }
        }
    }
    let result = AttemptResult { status: next.status(), next_retry_at: next.next_retry_at() };
    end_attempt(&mut next, attempt, now, Some(outcome), duration_seconds, context, Some(result));
    Transition { call: next, changed: true, counters, dead_letter: None, answer: Some(CallbackAnswer { attempt, outcome, result }), lookup: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::CampaignStatus;

    const T0: Millis = 1_780_000_000_000;
    const HOUR: Millis = 3_600_000;
    const TIMEOUT: Millis = 600_000;

    fn campaign(status: CampaignStatus) -> Campaign {
        Campaign {
            id: 1,
            name: "c".into(),
            description: String::new(),
            status,
            timezone: None,
            max_attempts: None,
            max_concurrent_calls: None,
            default_region: None,
            caller_id: None,
            created_at: T0,
            updated_at: T0,
        }
    }

    /// A call in `status` at attempt `attempt`, with a consistent history.
    fn call_in(status: Status, attempt: u32) -> Call {
        let mut call = new_call(CallId(42), 1, "+14155550101".into(), None, 3, T0, 1);
        call.attempt_count = attempt;
        let dialled = (1..=attempt).filter(|n| *n < attempt || status != Status::Initiated);
        for n in dialled {
            let ended = n < attempt || status != Status::Processing;
            let outcome = ended.then_some(if status == Status::Picked && n == attempt { Outcome::Picked } else { Outcome::Rnr });
            call.attempts.push(Attempt {
                attempt: n,
                dialled_at: T0,
                outcome,
                ended_at: ended.then_some(T0),
                result: outcome.map(|_| AttemptResult { status: Status::Retrying, next_retry_at: Some(T0 + HOUR) }),
                ..Attempt::default()
            });
        }
        call.state = match status {
            Status::Initiated => CallState::Initiated { queue_seq: 1, hold: None },
            Status::Processing => CallState::Processing { deadline: T0 + TIMEOUT },
            Status::Retrying => CallState::Retrying { next_retry_at: T0 + HOUR },
            Status::Picked => CallState::Picked,
            Status::Failed => CallState::Failed,
            Status::Cancelled => CallState::Cancelled { reason: CancelReason::CampaignStopped },
        };
        call
    }

    /// One step with the permissive rules and an active campaign, checked against the expected
    /// status and error text.
    fn check(call: &Call, event: Event<'_>, expected: Result<(Status, Option<&str>), Refusal>) -> Option<Transition> {
        check_in(CampaignStatus::Active, call, event, expected)
    }

    fn check_in(campaign_status: CampaignStatus, call: &Call, event: Event<'_>, expected: Result<(Status, Option<&str>), Refusal>) -> Option<Transition> {
        let rules = RetryRules::permissive();
        let campaign = campaign(campaign_status);
        let zones = [TimeZone::UTC];
        let context = Context { campaign: &campaign, zones: &zones, rules: &rules, callback_timeout_ms: TIMEOUT };
        let got = step(call, event, T0 + 1000, &context);
        match (&got, expected) {
            (Ok(t), Ok((status, error))) => {
                assert_eq!(t.call.status(), status, "{event:?}");
                assert_eq!(t.call.error_message.as_deref(), error, "{event:?}");
            }
            (Err(r), Err(expected)) => assert_eq!(r, &expected, "{event:?}"),
            (got, expected) => panic!("{event:?}: got {got:?}, expected {expected:?}"),
        }
        got.ok()
    }

    fn callback(outcome: Outcome) -> Event<'static> {
        Event::Callback { outcome, attempt: None, external_call_id: None, duration_seconds: Some(30) }
    }

    const DISPATCH: Event<'static> = Event::Dispatch { number: NumberFacts { do_not_call: false, recent_dials: &[] } };

    #[test]
    fn dispatch_takes_a_queued_call_in_flight_and_starts_its_attempt() {
        let t = check(&call_in(Status::Initiated, 1), DISPATCH, Ok((Status::Processing, None))).unwrap();
        assert_eq!(t.call.state, CallState::Processing { deadline: T0 + 1000 + TIMEOUT });
        assert_eq!(t.call.attempts, vec![Attempt { attempt: 1, dialled_at: T0 + 1000, ..Attempt::default() }]);
        assert_eq!(t.call.last_attempt_at(), Some(T0 + 1000));
        assert!(t.dials(&call_in(Status::Initiated, 1)));
        for status in [Status::Processing, Status::Retrying, Status::Picked, Status::Cancelled] {
            check(&call_in(status, 1), DISPATCH, Err(Refusal::Stale));
        }
    }

    #[test]
    fn dispatch_gates_the_campaign_and_the_do_not_call_list() {
        let queued = call_in(Status::Initiated, 1);
        check_in(CampaignStatus::Paused, &queued, DISPATCH, Err(Refusal::CampaignPaused));
        check_in(CampaignStatus::Stopped, &queued, DISPATCH, Ok((Status::Cancelled, Some("Campaign stopped"))));
        let listed = Event::Dispatch { number: NumberFacts { do_not_call: true, recent_dials: &[] } };
        let t = check(&queued, listed, Ok((Status::Cancelled, Some("Number is on the do-not-call list")))).unwrap();
        assert_eq!(t.call.state, CallState::Cancelled { reason: CancelReason::DoNotCall });
    }

    #[test]
    fn picked_is_final_and_records_the_attempt() {
        let t = check(&call_in(Status::Processing, 1), callback(Outcome::Picked), Ok((Status::Picked, None))).unwrap();
        assert_eq!(t.call.total_call_time, 30);
        assert_eq!(t.call.last_outcome(), Some(Outcome::Picked));
        assert!(t.counters.contains(&(Counter::Picked, 1)) && t.counters.contains(&(Counter::CallDurationSeconds, 30)));
        let attempt = &t.call.attempts[0];
        assert_eq!((attempt.outcome, attempt.call_duration, attempt.ended_at), (Some(Outcome::Picked), Some(30), Some(T0 + 1000)));
        assert_eq!(t.answer.unwrap().result.status, Status::Picked);
    }

    #[test]
    fn retryable_outcomes_retry_until_attempts_run_out() {
        for outcome in [Outcome::Disconnected, Outcome::Rnr, Outcome::Failed] {
            let t = check(&call_in(Status::Processing, 1), callback(outcome), Ok((Status::Retrying, None))).unwrap();
            assert_eq!(t.call.next_retry_at(), Some(T0 + 1000 + HOUR));
            assert_eq!(t.call.last_outcome(), Some(outcome));
            check(&call_in(Status::Processing, 3), callback(outcome), Ok((Status::Failed, Some("Max retry attempts reached (3)"))));
        }
    }

    #[test]
    fn repeated_callback_is_idempotent_and_late_ones_conflict() {
        let first = check(&call_in(Status::Processing, 1), callback(Outcome::Rnr), Ok((Status::Retrying, None))).unwrap();
        let repeat = check(&first.call, callback(Outcome::Rnr), Ok((Status::Retrying, None))).unwrap();
        assert!(!repeat.changed && repeat.counters.is_empty());
        assert_eq!(repeat.answer, first.answer);
        // Another outcome for the same attempt: the call is no longer awaiting one.
        check(&first.call, callback(Outcome::Picked), Err(Refusal::NotAwaitingOutcome { status: Status::Retrying }));
        // After the retry is dialled, a different outcome for attempt 1 is late; its exact repeat
        // still answers the same.
        let second = call_in(Status::Processing, 2);
        let late = Event::Callback { outcome: Outcome::Picked, attempt: Some(1), external_call_id: None, duration_seconds: None };
        check(&second, late, Err(Refusal::WrongAttempt { current: 2, given: 1 }));
        let repeat = Event::Callback { outcome: Outcome::Rnr, attempt: Some(1), external_call_id: None, duration_seconds: None };
        assert!(!check(&second, repeat, Ok((Status::Processing, None))).unwrap().changed);
        check(&call_in(Status::Picked, 1), callback(Outcome::Rnr), Err(Refusal::NotAwaitingOutcome { status: Status::Picked }));
        check(&call_in(Status::Initiated, 1), callback(Outcome::Rnr), Err(Refusal::NotAwaitingOutcome { status: Status::Initiated }));
    }

    #[test]
    fn external_ids_identify_attempts_and_unknown_ones_name_the_current() {
        let mut call = call_in(Status::Processing, 2);
        call.attempts[0].external_call_id = Some("ext-1".into());
        call.attempts[0].outcome = Some(Outcome::Rnr);
        // Attempt 2's dial was not answered yet: an id of attempt 1 is not applied to attempt 2.
        let earlier = Event::Callback { outcome: Outcome::Picked, attempt: None, external_call_id: Some("ext-1"), duration_seconds: None };
        check(&call, earlier, Err(Refusal::WrongAttempt { current: 2, given: 1 }));
        let contradicting = Event::Callback { outcome: Outcome::Picked, attempt: Some(2), external_call_id: Some("ext-1"), duration_seconds: None };
        check(&call, contradicting, Err(Refusal::WrongAttempt { current: 1, given: 2 }));
        // An id nobody has seen (the reference system's clients send their own) is applied and recorded.
        let foreign = Event::Callback { outcome: Outcome::Picked, attempt: None, external_call_id: Some("postman-7"), duration_seconds: None };
        let t = check(&call, foreign, Ok((Status::Picked, None))).unwrap();
        assert_eq!(t.call.attempts[1].external_call_id.as_deref(), Some("postman-7"));
    }

    #[test]
    fn provider_answer_may_come_after_the_callback() {
        let done = check(&call_in(Status::Processing, 1), callback(Outcome::Picked), Ok((Status::Picked, None))).unwrap();
        let t = check(&done.call, Event::ProviderAccepted { attempt: 1, external_call_id: Some("ext") }, Ok((Status::Picked, None))).unwrap();
        assert_eq!(t.call.external_call_id(), Some("ext"));
        assert_eq!(t.call.attempts[0].provider_answered_at, Some(T0 + 1000));
        check(&t.call, Event::ProviderAccepted { attempt: 1, external_call_id: Some("ext") }, Err(Refusal::Stale));
        check(&done.call, Event::ProviderRefused { attempt: 1, reason: "x" }, Err(Refusal::Stale));
        check(&done.call, Event::TransportFailed { attempt: 1, reason: "x" }, Err(Refusal::Stale));
    }

    #[test]
    fn progress_reports_never_reopen_an_ended_attempt() {
        let ringing = Event::ProviderProgress { attempt: 1, status: "ringing", external_call_id: None };
        let t = check(&call_in(Status::Processing, 1), ringing, Ok((Status::Processing, None))).unwrap();
        assert_eq!(t.call.attempts[0].provider_status.as_deref(), Some("ringing"));
        check(&t.call, ringing, Err(Refusal::Stale));
        let done = check(&t.call, callback(Outcome::Picked), Ok((Status::Picked, None))).unwrap();
        check(&done.call, Event::ProviderProgress { attempt: 1, status: "in-progress", external_call_id: Some("CA1") }, Err(Refusal::Stale));
    }

    #[test]
    fn provider_refusal_is_final_and_transport_failure_is_a_failed_outcome_with_a_dead_letter() {
        let t = check(
            &call_in(Status::Processing, 1),
            Event::ProviderRefused { attempt: 1, reason: "400 bad number" },
            Ok((Status::Failed, Some("Provider refused the call: 400 bad number"))),
        )
        .unwrap();
        assert_eq!(t.call.attempts[0].error.as_deref(), Some("Provider refused the call: 400 bad number"));
        let t = check(
            &call_in(Status::Processing, 1),
            Event::TransportFailed { attempt: 1, reason: "connection refused" },
            Ok((Status::Retrying, Some("Provider unreachable: connection refused"))),
        )
        .unwrap();
        assert_eq!(t.dead_letter.as_deref(), Some("connection refused"));
        assert!(t.counters.contains(&(Counter::DeadLetters, 1)) && t.counters.contains(&(Counter::Failed, 1)));
        check(
            &call_in(Status::Processing, 3),
            Event::TransportFailed { attempt: 3, reason: "timeout" },
            Ok((Status::Failed, Some("Provider unreachable: timeout; Max retry attempts reached (3)"))),
        );
        check(&call_in(Status::Processing, 2), Event::ProviderRefused { attempt: 1, reason: "x" }, Err(Refusal::Stale));
    }

    #[test]
    fn callback_timeout_applies_only_to_the_deadline_it_was_armed_for() {
        let timeout = |armed_for| Event::CallbackTimeout { armed_for, timeout: "10m", dial_in_progress: false, lookup_budget_ms: None };
        check(&call_in(Status::Processing, 1), timeout(T0 + TIMEOUT), Ok((Status::Retrying, Some("No callback within 10m"))));
        check(&call_in(Status::Processing, 3), timeout(T0 + TIMEOUT), Ok((Status::Failed, Some("No callback within 10m; Max retry attempts reached (3)"))));
        check(&call_in(Status::Processing, 2), timeout(T0 + TIMEOUT - 1), Err(Refusal::Stale));
        check(&call_in(Status::Picked, 1), timeout(T0 + TIMEOUT), Err(Refusal::Stale));
    }

    #[test]
    fn due_retry_requeues_with_the_next_attempt() {
        let t = check(&call_in(Status::Retrying, 1), Event::RetryDue { armed_for: T0 + HOUR, queue_seq: 9 }, Ok((Status::Initiated, None))).unwrap();
        assert_eq!((t.call.attempt_count, t.call.state.clone()), (2, CallState::Initiated { queue_seq: 9, hold: None }));
        assert!(t.counters.contains(&(Counter::Retries, 1)));
        check(&call_in(Status::Retrying, 1), Event::RetryDue { armed_for: T0, queue_seq: 9 }, Err(Refusal::Stale));
        check(&call_in(Status::Initiated, 1), Event::RetryDue { armed_for: T0 + HOUR, queue_seq: 9 }, Err(Refusal::Stale));
    }

    #[test]
    fn a_stopped_campaign_ends_calls_instead_of_retrying_them() {
        // The outcome of a call in flight when the campaign was stopped is recorded, then the call ends.
        let t = check_in(CampaignStatus::Stopped, &call_in(Status::Processing, 1), callback(Outcome::Rnr), Ok((Status::Cancelled, Some("Campaign stopped"))))
            .unwrap();
        assert_eq!(t.call.attempts[0].outcome, Some(Outcome::Rnr));
        assert_eq!(t.answer.unwrap().result, AttemptResult { status: Status::Cancelled, next_retry_at: None });
        check_in(CampaignStatus::Stopped, &call_in(Status::Processing, 1), callback(Outcome::Picked), Ok((Status::Picked, None)));
        let timeout = Event::CallbackTimeout { armed_for: T0 + TIMEOUT, timeout: "10m", dial_in_progress: false, lookup_budget_ms: None };
        check_in(CampaignStatus::Stopped, &call_in(Status::Processing, 1), timeout, Ok((Status::Cancelled, Some("Campaign stopped"))));
        let due = Event::RetryDue { armed_for: T0 + HOUR, queue_seq: 9 };
        check_in(CampaignStatus::Stopped, &call_in(Status::Retrying, 1), due, Ok((Status::Cancelled, Some("Campaign stopped"))));
    }

    #[test]
    fn a_retry_found_late_outside_its_window_waits_for_the_next_opening() {
        // Weekdays 09:00-17:00 UTC only. 2026-06-05 is a Friday.
        let rules = RetryRules::from_yaml_str(
            "global_rules:\n  - days: [monday, tuesday, wednesday, thursday, friday]\n    time_slots: [{start_time: \"09:00\", end_time: \"17:00\"}]\n",
            "test.yaml",
        )
        .unwrap();
        let campaign = campaign(CampaignStatus::Active);
        let zones = [TimeZone::UTC];
        let context = Context { campaign: &campaign, zones: &zones, rules: &rules, callback_timeout_ms: TIMEOUT };
        let friday_16 = jiff::Timestamp::from_second(1_780_675_200).unwrap().as_millisecond(); // 2026-06-05T16:00:00Z
        let mut call = call_in(Status::Retrying, 1);
        call.state = CallState::Retrying { next_retry_at: friday_16 };
        let due = Event::RetryDue { armed_for: friday_16, queue_seq: 5 };
        // On time: dialled.
        assert_eq!(step(&call, due, friday_16 + 500, &context).unwrap().call.status(), Status::Initiated);
        // Found at 20:00 after downtime: moved to Monday 09:00, still RETRYING.
        let t = step(&call, due, friday_16 + 4 * HOUR, &context).unwrap();
        assert_eq!(t.call.state, CallState::Retrying { next_retry_at: friday_16 + (3 * 24 - 7) * HOUR });
        // Found late but inside the window: dialled at once.
        let t = step(&call, due, friday_16 + HOUR / 2, &context).unwrap();
        assert_eq!((t.call.status(), t.call.attempt_count), (Status::Initiated, 2));
    }

    #[test]
    fn a_held_call_resumes_only_at_the_instant_it_was_held_for() {
        let mut call = call_in(Status::Initiated, 1);
        call.state = CallState::Initiated { queue_seq: 3, hold: Some(Hold { reason: HoldReason::ContactCap, until: T0 + 500 }) };
        check(&call, DISPATCH, Err(Refusal::Stale));
        check(&call, Event::HoldExpired { armed_for: T0 + 400 }, Err(Refusal::Stale));
        let t = check(&call, Event::HoldExpired { armed_for: T0 + 500 }, Ok((Status::Initiated, None))).unwrap();
        assert_eq!(t.call.state, CallState::Initiated { queue_seq: 3, hold: None });
        check_in(CampaignStatus::Stopped, &call, Event::HoldExpired { armed_for: T0 + 500 }, Ok((Status::Cancelled, Some("Campaign stopped"))));
    }

    #[test]
    fn cancel_ends_only_waiting_calls() {
        let stop = Event::Cancel { reason: CancelReason::CampaignStopped };
        check(&call_in(Status::Initiated, 1), stop, Ok((Status::Cancelled, Some("Campaign stopped"))));
        check(
            &call_in(Status::Retrying, 2),
            Event::Cancel { reason: CancelReason::DoNotCall },
            Ok((Status::Cancelled, Some("Number is on the do-not-call list"))),
        );
        for status in [Status::Processing, Status::Picked, Status::Failed] {
            check(&call_in(status, 1), stop, Err(Refusal::Stale));
        }
    }

    #[test]
    fn replay_gives_a_failed_call_one_more_attempt() {
        let t = check(&call_in(Status::Failed, 3), Event::Replay { queue_seq: 8 }, Ok((Status::Initiated, None))).unwrap();
        assert_eq!((t.call.attempt_count, t.call.max_attempts), (4, 4));
        let refused = Err(Refusal::Conflict("Call is RETRYING; only a FAILED call can be replayed".into()));
        check(&call_in(Status::Retrying, 1), Event::Replay { queue_seq: 8 }, refused);
        let stopped = Err(Refusal::Conflict("Cannot replay: the campaign is stopped".into()));
        check_in(CampaignStatus::Stopped, &call_in(Status::Failed, 3), Event::Replay { queue_seq: 8 }, stopped);
    }

    #[test]
    fn an_ambiguous_dial_only_records_and_keeps_the_attempt_in_flight() {
        let ambiguous = Event::ProviderAmbiguous { attempt: 1, reason: "timeout" };
        let t = check(&call_in(Status::Processing, 1), ambiguous, Ok((Status::Processing, None))).unwrap();
        assert!(t.call.attempts[0].error.as_deref().unwrap().contains("ambiguous (timeout)"), "{:?}", t.call.attempts[0]);
        assert_eq!(t.call.attempts[0].ended_at, None);
        assert!(t.counters.is_empty() && t.dead_letter.is_none());
        check(&call_in(Status::Processing, 2), Event::ProviderAmbiguous { attempt: 1, reason: "timeout" }, Err(Refusal::Stale));
        // The status callback still resolves it, and the note stays in the history.
        let done = check(&t.call, callback(Outcome::Picked), Ok((Status::Picked, None))).unwrap();
        assert!(done.call.attempts[0].error.as_deref().unwrap().contains("ambiguous"));
    }

    #[test]
    fn a_dial_that_was_not_sent_goes_back_to_the_queue_with_the_same_attempt() {
        let not_sent = Event::DialNotSent { attempt: 2, reason: "circuit open", queue_seq: 77 };
        let t = check(&call_in(Status::Processing, 2), not_sent, Ok((Status::Initiated, None))).unwrap();
        assert_eq!((t.call.state.clone(), t.call.attempt_count), (CallState::Initiated { queue_seq: 77, hold: None }, 2));
        assert!(t.call.attempts[1].error.as_deref().unwrap().starts_with("Not sent: circuit open"));
        // Dialled again: a new history entry for the same attempt number, which then takes the outcome.
        let again = check(&t.call, DISPATCH, Ok((Status::Processing, None))).unwrap();
        assert_eq!(again.call.attempts.len(), 3);
        let done = check(
            &again.call,
            Event::Callback { outcome: Outcome::Picked, attempt: Some(2), external_call_id: None, duration_seconds: None },
            Ok((Status::Picked, None)),
        )
        .unwrap();
        assert_eq!(done.call.attempts[2].outcome, Some(Outcome::Picked));
        check(&call_in(Status::Retrying, 2), not_sent, Err(Refusal::Stale));
    }

    #[test]
    fn the_callback_timeout_waits_for_a_dial_still_being_sent() {
        let timeout = |dial_in_progress| Event::CallbackTimeout { armed_for: T0 + TIMEOUT, timeout: "10m", dial_in_progress, lookup_budget_ms: None };
        check(&call_in(Status::Processing, 1), timeout(true), Err(Refusal::DialInProgress));
        check(&call_in(Status::Processing, 1), timeout(false), Ok((Status::Retrying, Some("No callback within 10m"))));
    }

    /// A call in flight whose attempt 1 was dialled one callback timeout before T0, with
    /// provider id `CA1`: its deadline, T0, has just passed.
    fn twilio_call() -> Call {
        let mut call = call_in(Status::Processing, 1);
        call.attempts[0].external_call_id = Some("CA1".into());
        call.attempts[0].dialled_at = T0 - TIMEOUT;
        call.state = CallState::Processing { deadline: T0 };
        call
    }

    const BUDGET: Millis = 20_000;
    const NOW: Millis = T0 + 1000;

    fn deadline_timeout(armed_for: Millis) -> Event<'static> {
        Event::CallbackTimeout { armed_for, timeout: "10m", dial_in_progress: false, lookup_budget_ms: Some(BUDGET) }
    }

    fn looked_up(reason: LookupReason, answer: LookupAnswer<'static>) -> Event<'static> {
        Event::StatusLookedUp { attempt: 1, reason, answer, timeout: "10m" }
    }

    #[test]
    fn at_its_deadline_an_attempt_with_a_provider_id_is_looked_up_before_it_is_lost() {
        let t = check(&twilio_call(), deadline_timeout(T0), Ok((Status::Processing, None))).unwrap();
        let deadline = NOW + BUDGET;
        assert_eq!(t.call.state, CallState::Processing { deadline });
        assert_eq!(t.lookup, Some(LookupRequest { attempt: 1, external_call_id: "CA1".into(), reason: LookupReason::Deadline { deadline } }));
        // Without an id there is nothing to ask: the timeout applies.
        let mut without_id = twilio_call();
        without_id.attempts[0].external_call_id = None;
        check(&without_id, deadline_timeout(T0), Ok((Status::Retrying, Some("No callback within 10m"))));
        // The lookup's own deadline passing (no answer) applies the timeout: it is looked up once.
        check(&t.call, deadline_timeout(deadline), Ok((Status::Retrying, Some("No callback within 10m"))));
    }

    #[test]
    fn the_lookups_answer_decides() {
        let waiting = check(&twilio_call(), deadline_timeout(T0), Ok((Status::Processing, None))).unwrap().call;
        let reason = LookupReason::Deadline { deadline: NOW + BUDGET };
        let completed = LookupAnswer::Final { outcome: Outcome::Picked, duration_seconds: Some(31), external_call_id: "CA1", status: "completed" };
        let t = check(&waiting, looked_up(reason, completed), Ok((Status::Picked, None))).unwrap();
        assert_eq!((t.call.total_call_time, t.call.attempts[0].provider_status.as_deref()), (31, Some("completed")));
        // Still ringing: waits once more, a whole callback timeout; its next deadline is final.
        let t = check(&waiting, looked_up(reason, LookupAnswer::Pending { status: "ringing" }), Ok((Status::Processing, None))).unwrap();
        assert_eq!(t.call.state, CallState::Processing { deadline: NOW + TIMEOUT });
        assert!(t.lookup.is_none());
        check(&t.call, deadline_timeout(NOW + TIMEOUT), Ok((Status::Retrying, Some("No callback within 10m"))));
        // Unknown to the provider: the timeout applies now.
        let unknown = LookupAnswer::Unknown { reason: "not found" };
        check(&waiting, looked_up(reason, unknown), Ok((Status::Retrying, Some("No callback within 10m; status lookup: not found"))));
        // An answer for a lookup the call has moved past changes nothing.
        check(&waiting, looked_up(LookupReason::Deadline { deadline: NOW + 1 }, unknown), Err(Refusal::Stale));
        check(&call_in(Status::Picked, 1), looked_up(reason, completed), Err(Refusal::Stale));
    }

    #[test]
    fn after_a_restart_a_call_in_flight_is_looked_up_at_once() {
        let t = check(&twilio_call(), Event::Recovered, Ok((Status::Processing, None))).unwrap();
        assert!(!t.changed);
        assert_eq!(t.lookup, Some(LookupRequest { attempt: 1, external_call_id: "CA1".into(), reason: LookupReason::Recovered }));
        check(&call_in(Status::Processing, 1), Event::Recovered, Err(Refusal::Stale));
        check(&call_in(Status::Retrying, 1), Event::Recovered, Err(Refusal::Stale));
        // A final answer resolves it; a pending one is only noted and the deadline stands.
        let completed = LookupAnswer::Final { outcome: Outcome::Rnr, duration_seconds: Some(0), external_call_id: "CA1", status: "no-answer" };
        check(&twilio_call(), looked_up(LookupReason::Recovered, completed), Ok((Status::Retrying, None)));
        let t =
            check(&twilio_call(), looked_up(LookupReason::Recovered, LookupAnswer::Pending { status: "in-progress" }), Ok((Status::Processing, None))).unwrap();
        assert_eq!(t.call.state, twilio_call().state);
        let t =
            check(&twilio_call(), looked_up(LookupReason::Recovered, LookupAnswer::Unknown { reason: "HTTP 500" }), Ok((Status::Processing, None))).unwrap();
        assert_eq!(t.call.state, twilio_call().state);
    }

    #[test]
    fn a_progress_report_may_name_the_providers_id() {
        let ringing = Event::ProviderProgress { attempt: 1, status: "ringing", external_call_id: Some("CA9") };
        let t = check(&call_in(Status::Processing, 1), ringing, Ok((Status::Processing, None))).unwrap();
        assert_eq!(t.call.attempts[0].external_call_id.as_deref(), Some("CA9"));
        check(&t.call, ringing, Err(Refusal::Stale));
    }
}
