//! The call state machine (DESIGN §2): one pure function, `step(call, input, now, retry)`.
//! Every status change of a call goes through here; handlers never edit a status by hand.
//! No I/O, no clock, no storage: it returns the new record and what else must happen.

use jiff::tz::TimeZone;

use crate::core::model::{AppliedOutcome, Call, CallId, CampaignId, Millis, Outcome, Status, to_timestamp};
use crate::core::retry::{RetryDecision, RetryQuery, RetryRules};
use crate::service::store::Counter;

/// A retry firing later than this after its `next_retry_at` (the service was down) is checked
/// against the retry windows again instead of being dialled outside them.
pub const RETRY_LATE_GRACE_MS: Millis = 60_000;

/// What happened to a call.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// A slot is free and the campaign is active: attempt `attempt_count` goes to the provider.
    Dispatch { callback_deadline: Millis },
    /// The provider answered 2xx to the dial request of `attempt`.
    ProviderAccepted { attempt: u32, external_call_id: Option<&'a str> },
    /// The provider answered 4xx: final.
    ProviderRefused { attempt: u32, reason: &'a str },
    /// The dial request never got through after every resend: counts as outcome FAILED.
    TransportFailed { attempt: u32, reason: &'a str },
    /// The provider's outcome callback.
    Callback { outcome: Outcome, attempt: Option<u32>, external_call_id: Option<&'a str>, duration_seconds: Option<u64> },
    /// No callback for `attempt` within the timeout (`timeout` is its text, e.g. `10m`).
    CallbackTimeout { attempt: u32, timeout: &'a str },
    /// `next_retry_at` has come.
    RetryDue,
    /// The campaign was stopped.
    Cancel,
    /// The operator replays the call's dead letter.
    Replay,
}

/// Why an input does not apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A callback for a call that is not waiting for an outcome (409).
    NotAwaitingOutcome { status: Status },
    /// A callback for another attempt than the one in flight (409).
    WrongAttempt { current: u32, given: u32 },
    /// A callback whose `external_call_id` is not the current attempt's (409).
    WrongExternalId,
    /// Any other input that does not fit the call's state (409 where a client asked for it).
    Conflict(String),
    /// A late internal event (a provider answer or timer for an attempt already resolved): ignore it.
    Stale,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotAwaitingOutcome { status } => write!(f, "Call is {} and not awaiting an outcome", status.as_str()),
            Refusal::WrongAttempt { current, given } => write!(f, "Callback is for attempt {given} but attempt {current} is the current one"),
            Refusal::WrongExternalId => f.write_str("Callback external_call_id does not match the current attempt"),
            Refusal::Conflict(message) => f.write_str(message),
            Refusal::Stale => f.write_str("Event is stale"),
        }
    }
}

/// The result of a step that applies.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub call: Call,
    /// False when the input was an idempotent repeat: nothing to write.
    pub changed: bool,
    /// Daily counters to add to.
    pub counters: Vec<(Counter, u64)>,
    /// A dead letter to record, with the error text.
    pub dead_letter: Option<String>,
    /// For callbacks: what to answer (the same for a repeat).
    pub applied: Option<AppliedOutcome>,
}

/// What the retry decision needs beyond the call itself.
pub struct RetryContext<'a> {
    pub rules: &'a RetryRules,
    /// The callee's timezone: the number's own, else the campaign's; `None` means the rules file's.
    pub timezone: Option<&'a TimeZone>,
}

impl RetryContext<'_> {
    /// The callee's zones as the rules take them: none means the rules file's.
    fn zones(&self) -> &[TimeZone] {
        self.timezone.map(std::slice::from_ref).unwrap_or(&[])
    }
}

/// A new call: INITIATED, attempt 1.
pub fn new_call(call_id: CallId, campaign_id: CampaignId, phone_number: String, timezone: Option<String>, max_attempts: u32, now: Millis) -> Call {
    Call {
        call_id,
        campaign_id,
        phone_number,
        timezone,
        status: Status::Initiated,
        last_outcome: None,
        attempt_count: 1,
        max_attempts,
        created_at: now,
        updated_at: now,
        last_attempt_at: None,
        next_retry_at: None,
        total_call_time: 0,
        external_call_id: None,
        error_message: None,
        queue_seq: None,
        callback_deadline: None,
        last_applied: None,
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

fn changed(call: Call, counters: Vec<(Counter, u64)>) -> Transition {
    Transition { call, changed: true, counters, dead_letter: None, applied: None }
}

pub fn step(call: &Call, input: Input<'_>, now: Millis, retry: &RetryContext<'_>) -> Result<Transition, Refusal> {
    let in_flight = |attempt: u32| call.status == Status::Processing && call.attempt_count == attempt;
    let mut next = call.clone();
    next.updated_at = now;
    match input {
        Input::Dispatch { callback_deadline } => {
            if call.status != Status::Initiated {
                return Err(Refusal::Stale);
            }
            next.status = Status::Processing;
            next.last_attempt_at = Some(now);
            next.callback_deadline = Some(callback_deadline);
            next.external_call_id = None;
            Ok(changed(next, vec![(Counter::Dialled, 1)]))
        }
        Input::ProviderAccepted { attempt, external_call_id } => {
            // The callback may have arrived before this answer: still record the provider's id.
            let same_attempt = call.attempt_count == attempt && call.last_attempt_at.is_some();
            match external_call_id {
                Some(ext) if same_attempt && call.external_call_id.is_none() => {
                    next.external_call_id = Some(ext.to_string());
                    Ok(changed(next, vec![]))
                }
                _ => Err(Refusal::Stale),
            }
        }
        Input::ProviderRefused { attempt, reason } => {
            if !in_flight(attempt) {
                return Err(Refusal::Stale);
            }
            next.status = Status::Failed;
            next.next_retry_at = None;
            next.error_message = Some(format!("Provider refused the call: {reason}"));
            Ok(changed(next, vec![(Counter::Failed, 1)]))
        }
        Input::TransportFailed { attempt, reason } => {
            if !in_flight(attempt) {
                return Err(Refusal::Stale);
            }
            let context = format!("Provider unreachable: {reason}");
            let mut transition = apply_outcome(next, Outcome::Failed, None, Some(context), now, retry);
            transition.dead_letter = Some(reason.to_string());
            transition.counters.push((Counter::DeadLetters, 1));
            Ok(transition)
        }
        Input::CallbackTimeout { attempt, timeout } => {
            if !in_flight(attempt) {
                return Err(Refusal::Stale);
            }
            Ok(apply_outcome(next, Outcome::Failed, None, Some(format!("No callback within {timeout}")), now, retry))
        }
        Input::Callback { outcome, attempt, external_call_id, duration_seconds } => {
            let attempt_meant = attempt.unwrap_or(call.attempt_count);
            if let Some(applied) = &call.last_applied
                && applied.attempt == attempt_meant
                && applied.outcome == outcome
            {
                // An idempotent repeat: same answer, nothing changes.
                return Ok(Transition { call: call.clone(), changed: false, counters: vec![], dead_letter: None, applied: Some(applied.clone()) });
            }
            if call.status != Status::Processing {
                return Err(Refusal::NotAwaitingOutcome { status: call.status });
            }
            if attempt_meant != call.attempt_count {
                return Err(Refusal::WrongAttempt { current: call.attempt_count, given: attempt_meant });
            }
            if let (Some(given), Some(known)) = (external_call_id, call.external_call_id.as_deref())
                && given != known
            {
                return Err(Refusal::WrongExternalId);
            }
            if let Some(ext) = external_call_id {
                next.external_call_id = Some(ext.to_string());
            }
            Ok(apply_outcome(next, outcome, duration_seconds, None, now, retry))
        }
        Input::RetryDue => {
            if call.status != Status::Retrying {
                return Err(Refusal::Stale);
            }
            let due = call.next_retry_at.unwrap_or(now);
            if now - due > RETRY_LATE_GRACE_MS {
                // Fell due while the service was down: dial now only if the window is still open.
                let next_attempt = call.attempt_count + 1;
                match retry.rules.window_open_at(call.campaign_id, next_attempt, to_timestamp(now), retry.zones()) {
                    Some(open) if open.as_millisecond() > now => {
                        next.next_retry_at = Some(open.as_millisecond());
                        return Ok(changed(next, vec![]));
                    }
                    Some(_) => {}
                    None => {
                        next.status = Status::Failed;
                        next.next_retry_at = None;
                        next.error_message = Some("No retry window available".into());
                        return Ok(changed(next, vec![]));
                    }
                }
            }
            next.status = Status::Initiated;
            next.attempt_count += 1;
            Ok(changed(next, vec![(Counter::Retries, 1)]))
        }
        Input::Cancel => {
            if !matches!(call.status, Status::Initiated | Status::Retrying) {
                return Err(Refusal::Stale);
            }
            next.status = Status::Cancelled;
            next.error_message = Some("Campaign stopped".into());
            Ok(changed(next, vec![]))
        }
        Input::Replay => {
            if call.status != Status::Failed {
                return Err(Refusal::Conflict(format!("Call is {}; only a FAILED call can be replayed", call.status.as_str())));
            }
            next.status = Status::Initiated;
            next.attempt_count += 1;
            next.max_attempts = next.max_attempts.max(next.attempt_count);
            next.next_retry_at = None;
            next.error_message = None;
            Ok(changed(next, vec![(Counter::Retries, 1)]))
        }
    }
}

/// An attempt ended with `outcome`: PICKED is final; the others retry per the rules or fail.
fn apply_outcome(
    mut next: Call,
    outcome: Outcome,
    duration_seconds: Option<u64>,
    context: Option<String>,
    now: Millis,
    retry: &RetryContext<'_>,
) -> Transition {
    let mut counters = vec![(outcome_counter(outcome), 1)];
    if let Some(seconds) = duration_seconds {
        next.total_call_time = next.total_call_time.saturating_add(seconds);
        counters.push((Counter::CallDurationSeconds, seconds));
    }
    next.last_outcome = Some(outcome);
    if outcome == Outcome::Picked {
        next.status = Status::Picked;
        next.next_retry_at = None;
        next.error_message = None;
    } else {
        let query = RetryQuery {
            outcome,
            at: to_timestamp(now),
            attempt: next.attempt_count,
            max_attempts: next.max_attempts,
            campaign_id: next.campaign_id,
            zones: retry.zones(),
        };
        match retry.rules.next_retry(&query) {
            RetryDecision::Retry { at, .. } => {
                next.status = Status::Retrying;
                // A retry is never due before the outcome that caused it.
                next.next_retry_at = Some(at.as_millisecond().max(now));
                next.error_message = context;
            }
            RetryDecision::GiveUp { reason } => {
                next.status = Status::Failed;
                next.next_retry_at = None;
                next.error_message = Some(match context {
                    Some(context) => format!("{context}; {reason}"),
                    None => reason,
                });
            }
        }
    }
    let applied = AppliedOutcome { attempt: next.attempt_count, outcome, resulting_status: next.status, next_retry_at: next.next_retry_at };
    next.last_applied = Some(applied.clone());
    Transition { call: next, changed: true, counters, dead_letter: None, applied: Some(applied) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_780_000_000_000;
    const HOUR: Millis = 3_600_000;

    fn rules() -> RetryRules {
        RetryRules::permissive()
    }

    fn call_in(status: Status, attempt: u32) -> Call {
        let mut call = new_call(CallId(42), 1, "+14155550101".into(), None, 3, T0);
        call.status = status;
        call.attempt_count = attempt;
        match status {
            Status::Initiated => call.queue_seq = Some(1),
            Status::Processing => {
                call.last_attempt_at = Some(T0);
                call.callback_deadline = Some(T0 + 600_000);
            }
            Status::Retrying => call.next_retry_at = Some(T0 + HOUR),
            _ => {}
        }
        call
    }

    /// One transition, checked against the expected status and error text.
    fn check(call: &Call, input: Input<'_>, expected: Result<(Status, Option<&str>), Refusal>) -> Option<Transition> {
        let rules = rules();
        let ctx = RetryContext { rules: &rules, timezone: None };
        let got = step(call, input, T0 + 1000, &ctx);
        match (&got, expected) {
            (Ok(t), Ok((status, error))) => {
                assert_eq!(t.call.status, status, "{input:?}");
                assert_eq!(t.call.error_message.as_deref(), error, "{input:?}");
            }
            (Err(r), Err(expected)) => assert_eq!(r, &expected, "{input:?}"),
            (got, expected) => panic!("{input:?}: got {got:?}, expected {expected:?}"),
        }
        got.ok()
    }

    fn callback(outcome: Outcome) -> Input<'static> {
        Input::Callback { outcome, attempt: None, external_call_id: None, duration_seconds: Some(30) }
    }

    #[test]
    fn dispatch_takes_an_initiated_call_to_processing() {
        let t = check(&call_in(Status::Initiated, 1), Input::Dispatch { callback_deadline: T0 + 5 }, Ok((Status::Processing, None))).unwrap();
        assert_eq!(t.call.last_attempt_at, Some(T0 + 1000));
        assert_eq!(t.call.callback_deadline, Some(T0 + 5));
        for status in [Status::Processing, Status::Retrying, Status::Picked, Status::Cancelled] {
            check(&call_in(status, 1), Input::Dispatch { callback_deadline: T0 }, Err(Refusal::Stale));
        }
    }

    #[test]
    fn picked_is_final_and_counts_duration() {
        let t = check(&call_in(Status::Processing, 1), callback(Outcome::Picked), Ok((Status::Picked, None))).unwrap();
        assert_eq!(t.call.total_call_time, 30);
        assert_eq!(t.call.last_outcome, Some(Outcome::Picked));
        assert!(t.counters.contains(&(Counter::Picked, 1)) && t.counters.contains(&(Counter::CallDurationSeconds, 30)));
        assert_eq!(t.applied.unwrap().resulting_status, Status::Picked);
    }

    #[test]
    fn retryable_outcomes_retry_until_attempts_run_out() {
        for outcome in [Outcome::Disconnected, Outcome::Rnr, Outcome::Failed] {
            let t = check(&call_in(Status::Processing, 1), callback(outcome), Ok((Status::Retrying, None))).unwrap();
            assert_eq!(t.call.next_retry_at, Some(T0 + 1000 + HOUR));
            assert_eq!(t.call.last_outcome, Some(outcome));
            check(&call_in(Status::Processing, 3), callback(outcome), Ok((Status::Failed, Some("Max retry attempts reached (3)"))));
        }
    }

    #[test]
    fn repeated_callback_is_idempotent_and_late_ones_conflict() {
        let first = check(&call_in(Status::Processing, 1), callback(Outcome::Rnr), Ok((Status::Retrying, None))).unwrap();
        let repeat = check(&first.call, callback(Outcome::Rnr), Ok((Status::Retrying, None))).unwrap();
        assert!(!repeat.changed && repeat.counters.is_empty());
        assert_eq!(repeat.applied, first.applied);
        // Another outcome for the same attempt: the call is no longer awaiting one.
        check(&first.call, callback(Outcome::Picked), Err(Refusal::NotAwaitingOutcome { status: Status::Retrying }));
        // After the retry is dialled, attempt 1's callback is late.
        let mut second = call_in(Status::Processing, 2);
        second.last_applied = first.call.last_applied.clone();
        let late = Input::Callback { outcome: Outcome::Picked, attempt: Some(1), external_call_id: None, duration_seconds: None };
        check(&second, late, Err(Refusal::WrongAttempt { current: 2, given: 1 }));
        // Final calls refuse new outcomes.
        check(&call_in(Status::Picked, 1), callback(Outcome::Rnr), Err(Refusal::NotAwaitingOutcome { status: Status::Picked }));
        check(&call_in(Status::Initiated, 1), callback(Outcome::Rnr), Err(Refusal::NotAwaitingOutcome { status: Status::Initiated }));
    }

    #[test]
    fn external_call_id_identifies_the_attempt() {
        let mut call = call_in(Status::Processing, 2);
        call.external_call_id = Some("ext-2".into());
        let stale = Input::Callback { outcome: Outcome::Rnr, attempt: None, external_call_id: Some("ext-1"), duration_seconds: None };
        check(&call, stale, Err(Refusal::WrongExternalId));
        let current = Input::Callback { outcome: Outcome::Rnr, attempt: None, external_call_id: Some("ext-2"), duration_seconds: None };
        check(&call, current, Ok((Status::Retrying, None)));
    }

    #[test]
    fn provider_answer_may_come_after_the_callback() {
        let done = check(&call_in(Status::Processing, 1), callback(Outcome::Picked), Ok((Status::Picked, None))).unwrap();
        let t = check(&done.call, Input::ProviderAccepted { attempt: 1, external_call_id: Some("ext") }, Ok((Status::Picked, None))).unwrap();
        assert_eq!(t.call.external_call_id.as_deref(), Some("ext"));
        check(&t.call, Input::ProviderAccepted { attempt: 1, external_call_id: Some("ext") }, Err(Refusal::Stale));
        check(&done.call, Input::ProviderRefused { attempt: 1, reason: "x" }, Err(Refusal::Stale));
        check(&done.call, Input::TransportFailed { attempt: 1, reason: "x" }, Err(Refusal::Stale));
    }

    #[test]
    fn provider_refusal_is_final_and_transport_failure_is_a_failed_outcome_with_a_dead_letter() {
        check(
            &call_in(Status::Processing, 1),
            Input::ProviderRefused { attempt: 1, reason: "400 bad number" },
            Ok((Status::Failed, Some("Provider refused the call: 400 bad number"))),
        );
        let t = check(
            &call_in(Status::Processing, 1),
            Input::TransportFailed { attempt: 1, reason: "connection refused" },
            Ok((Status::Retrying, Some("Provider unreachable: connection refused"))),
        )
        .unwrap();
        assert_eq!(t.dead_letter.as_deref(), Some("connection refused"));
        assert!(t.counters.contains(&(Counter::DeadLetters, 1)) && t.counters.contains(&(Counter::Failed, 1)));
        check(
            &call_in(Status::Processing, 3),
            Input::TransportFailed { attempt: 3, reason: "timeout" },
            Ok((Status::Failed, Some("Provider unreachable: timeout; Max retry attempts reached (3)"))),
        );
        check(&call_in(Status::Processing, 2), Input::ProviderRefused { attempt: 1, reason: "x" }, Err(Refusal::Stale));
    }

    #[test]
    fn callback_timeout_counts_as_failed_outcome() {
        check(&call_in(Status::Processing, 1), Input::CallbackTimeout { attempt: 1, timeout: "10m" }, Ok((Status::Retrying, Some("No callback within 10m"))));
        check(
            &call_in(Status::Processing, 3),
            Input::CallbackTimeout { attempt: 3, timeout: "10m" },
            Ok((Status::Failed, Some("No callback within 10m; Max retry attempts reached (3)"))),
        );
        check(&call_in(Status::Processing, 2), Input::CallbackTimeout { attempt: 1, timeout: "10m" }, Err(Refusal::Stale));
        check(&call_in(Status::Picked, 1), Input::CallbackTimeout { attempt: 1, timeout: "10m" }, Err(Refusal::Stale));
    }

    #[test]
    fn due_retry_requeues_with_the_next_attempt() {
        let t = check(&call_in(Status::Retrying, 1), Input::RetryDue, Ok((Status::Initiated, None))).unwrap();
        assert_eq!(t.call.attempt_count, 2);
        assert!(t.counters.contains(&(Counter::Retries, 1)));
        check(&call_in(Status::Initiated, 1), Input::RetryDue, Err(Refusal::Stale));
    }

    #[test]
    fn a_retry_found_late_outside_its_window_waits_for_the_next_opening() {
        // Weekdays 09:00-17:00 UTC only. 2026-06-05 is a Friday.
        let rules = RetryRules::from_yaml_str(
            "global_rules:\n  - days: [monday, tuesday, wednesday, thursday, friday]\n    time_slots: [{start_time: \"09:00\", end_time: \"17:00\"}]\n",
            "test.yaml",
        )
        .unwrap();
        let ctx = RetryContext { rules: &rules, timezone: None };
        let friday_16 = jiff::Timestamp::from_second(1_780_675_200).unwrap().as_millisecond(); // 2026-06-05T16:00:00Z
        let mut call = call_in(Status::Retrying, 1);
        call.next_retry_at = Some(friday_16);
        // On time: dialled.
        let t = step(&call, Input::RetryDue, friday_16 + 500, &ctx).unwrap();
        assert_eq!(t.call.status, Status::Initiated);
        // Found at 20:00 after downtime: moved to Monday 09:00, still RETRYING.
        let friday_20 = friday_16 + 4 * HOUR;
        let t = step(&call, Input::RetryDue, friday_20, &ctx).unwrap();
        assert_eq!(t.call.status, Status::Retrying);
        assert_eq!(t.call.next_retry_at, Some(friday_16 + (3 * 24 - 7) * HOUR));
        // Found late but inside the window: dialled at once.
        let t = step(&call, Input::RetryDue, friday_16 + HOUR / 2, &ctx).unwrap();
        assert_eq!((t.call.status, t.call.attempt_count), (Status::Initiated, 2));
    }

    #[test]
    fn stop_cancels_only_waiting_calls() {
        check(&call_in(Status::Initiated, 1), Input::Cancel, Ok((Status::Cancelled, Some("Campaign stopped"))));
        check(&call_in(Status::Retrying, 2), Input::Cancel, Ok((Status::Cancelled, Some("Campaign stopped"))));
        for status in [Status::Processing, Status::Picked, Status::Failed] {
            check(&call_in(status, 1), Input::Cancel, Err(Refusal::Stale));
        }
    }

    #[test]
    fn replay_gives_a_failed_call_one_more_attempt() {
        let t = check(&call_in(Status::Failed, 3), Input::Replay, Ok((Status::Initiated, None))).unwrap();
        assert_eq!((t.call.attempt_count, t.call.max_attempts), (4, 4));
        assert!(matches!(step(&call_in(Status::Retrying, 1), Input::Replay, T0, &RetryContext { rules: &rules(), timezone: None }), Err(Refusal::Conflict(_))));
    }
}
