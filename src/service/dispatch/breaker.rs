//! The provider's health: a circuit breaker (pure: [`Breaker`]) and the counters the metrics
//! show, shared by the workers (who report every send and ask before each one) and the
//! scheduler (which starts no new dial while the breaker is open, and one probe when it may try
//! again). Time is passed in; nothing here reads a clock or does I/O besides logging changes.
//!
//! States: **closed** (dials go out; consecutive transport failures are counted), **open** after
//! `failures_to_open` of them in a row (no dial starts, none is resent: the calls go back to the
//! queue, their attempts unused), **half-open** once `cooldown` has passed (the scheduler lets one
//! call through as a probe; only its worker may send). Any successful exchange with the provider
//! closes it; a failure while half-open opens it again for another cooldown. A probe that never
//! reports (held at its turn, or lost) is replaced after a cooldown.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::model::{CallId, Millis};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Millis,
    },
    /// `probe`: the call let through to try the provider again, and when.
    HalfOpen {
        probe: Option<(CallId, Millis)>,
    },
}

/// What the scheduler may do about new dials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Dial as the slots and the pace allow.
    Dial,
    /// Dial exactly one call (the probe) and report it with [`Breaker::probe_dispatched`].
    ProbeOne,
    /// Start no dial; look again at `until`.
    Hold { until: Millis },
}

/// A change worth telling the operator about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Opened { failures: u32 },
    Reopened,
    Closed,
}

#[derive(Clone, Debug)]
pub struct Breaker {
    failures_to_open: u32,
    cooldown_ms: Millis,
    state: State,
    consecutive_failures: u32,
    /// When the current state began.
    since: Millis,
}

/// The breaker as the metrics show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerView {
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    pub consecutive_failures: u32,
    pub since: Millis,
    /// When an open breaker lets a probe through.
    pub probe_at: Option<Millis>,
}

impl Breaker {
    pub fn new(failures_to_open: u32, cooldown_ms: Millis) -> Breaker {
        Breaker { failures_to_open: failures_to_open.max(1), cooldown_ms: cooldown_ms.max(1), state: State::Closed, consecutive_failures: 0, since: 0 }
    }

    /// A send reached the provider and it answered (accepted, refused or throttled).
    pub fn record_success(&mut self, now: Millis) -> Option<Change> {
        self.consecutive_failures = 0;
        if self.state == State::Closed {
            return None;
        }
        self.state = State::Closed;
        self.since = now;
        Some(Change::Closed)
    }

    /// A send failed in transport (no connection, timeout, reset, 5xx).
    pub fn record_failure(&mut self, now: Millis) -> Option<Change> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        match self.state {
            State::Closed if self.consecutive_failures >= self.failures_to_open => {
                self.state = State::Open { until: now + self.cooldown_ms };
                self.since = now;
                Some(Change::Opened { failures: self.consecutive_failures })
            }
            State::HalfOpen { .. } => {
                self.state = State::Open { until: now + self.cooldown_ms };
                self.since = now;
                Some(Change::Reopened)
            }
            State::Closed | State::Open { .. } => None,
        }
    }

    /// May the scheduler start dials now? Moves an open breaker whose cooldown passed to half-open.
    pub fn gate(&mut self, now: Millis) -> Gate {
        if let State::Open { until } = self.state {
            if now < until {
                return Gate::Hold { until };
            }
            self.state = State::HalfOpen { probe: None };
            self.since = now;
        }
        match self.state {
            State::Closed => Gate::Dial,
            State::HalfOpen { probe: Some((_, at)) } if now < at + self.cooldown_ms => Gate::Hold { until: at + self.cooldown_ms },
            State::HalfOpen { .. } => Gate::ProbeOne,
            State::Open { until } => Gate::Hold { until },
        }
    }

    /// The scheduler let `call_id` through as the probe.
    pub fn probe_dispatched(&mut self, call_id: CallId, now: Millis) {
        if let State::HalfOpen { .. } = self.state {
            self.state = State::HalfOpen { probe: Some((call_id, now)) };
        }
    }

    /// May a worker send (or resend) the dial request of `call_id` now?
    pub fn may_send(&self, call_id: CallId) -> bool {
        match self.state {
            State::Closed => true,
            State::HalfOpen { probe: Some((probe, _)) } => probe == call_id,
            State::HalfOpen { probe: None } | State::Open { .. } => false,
        }
    }

    pub fn view(&self) -> BreakerView {
        let (state, probe_at) = match self.state {
            State::Closed => ("closed", None),
            State::Open { until } => ("open", Some(until)),
            State::HalfOpen { .. } => ("half_open", None),
        };
        BreakerView { state, consecutive_failures: self.consecutive_failures, since: self.since, probe_at }
    }
}

/// The provider's health shared by the workers, the scheduler and the metrics.
pub struct ProviderHealth {
    breaker: Mutex<Breaker>,
    /// Sends answered 429 or 503.
    pub throttled: AtomicU64,
    /// Dial requests whose fate is unknown (Twilio: timeout, reset, 5xx), left to the status callback.
    pub ambiguous: AtomicU64,
    /// Dials handed back to the queue unsent (breaker open, throttled beyond the budget).
    pub not_sent: AtomicU64,
    /// The dial pace in force (calls per second × 1000), published by the scheduler.
    pace_milli_per_second: AtomicU64,
    /// Until when the scheduler pauses dialling because the provider asked it to (Retry-After).
    throttled_until_ms: std::sync::atomic::AtomicI64,
}

impl ProviderHealth {
    pub fn new(failures_to_open: u32, cooldown_ms: Millis) -> ProviderHealth {
        ProviderHealth {
            breaker: Mutex::new(Breaker::new(failures_to_open, cooldown_ms)),
            throttled: AtomicU64::new(0),
            ambiguous: AtomicU64::new(0),
            not_sent: AtomicU64::new(0),
            pace_milli_per_second: AtomicU64::new(0),
            throttled_until_ms: std::sync::atomic::AtomicI64::new(0),
        }
    }

    fn log(change: Option<Change>, cooldown_ms: Millis) -> bool {
        match change {
            Some(Change::Opened { failures }) => {
                tracing::warn!(
                    failures,
                    "provider unreachable: circuit breaker open; no new dial for {} ms (calls stay queued, attempts are not used up)",
                    cooldown_ms
                );
                true
            }
            Some(Change::Reopened) => {
                tracing::warn!("provider still unreachable: the probe dial failed; circuit breaker open again for {} ms", cooldown_ms);
                true
            }
            Some(Change::Closed) => {
                tracing::info!("provider reachable again: circuit breaker closed");
                true
            }
            None => false,
        }
    }

    /// Records a send's result; true when the breaker changed state.
    pub fn record(&self, now: Millis, reached_provider: bool) -> bool {
        let mut breaker = self.breaker.lock().unwrap();
        let change = if reached_provider { breaker.record_success(now) } else { breaker.record_failure(now) };
        Self::log(change, breaker.cooldown_ms)
    }

    pub fn gate(&self, now: Millis) -> Gate {
        self.breaker.lock().unwrap().gate(now)
    }

    pub fn probe_dispatched(&self, call_id: CallId, now: Millis) {
        tracing::info!(call_id = %call_id, "circuit breaker half-open: one probe dial goes out");
        self.breaker.lock().unwrap().probe_dispatched(call_id, now);
    }

    pub fn may_send(&self, call_id: CallId) -> bool {
        self.breaker.lock().unwrap().may_send(call_id)
    }

    pub fn breaker(&self) -> BreakerView {
        self.breaker.lock().unwrap().view()
    }

    pub fn publish_pace(&self, per_second: f64, paused_until_ms: Millis) {
        self.pace_milli_per_second.store((per_second * 1000.0).round().max(0.0) as u64, Ordering::Relaxed);
        self.throttled_until_ms.store(paused_until_ms, Ordering::Relaxed);
    }

    /// The dial pace in force, calls per second.
    pub fn pace_per_second(&self) -> f64 {
        self.pace_milli_per_second.load(Ordering::Relaxed) as f64 / 1000.0
    }

    pub fn paused_until_ms(&self) -> Millis {
        self.throttled_until_ms.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Millis = 30_000;

    #[test]
    fn opens_after_a_run_of_failures_and_a_success_resets_the_run() {
        let mut breaker = Breaker::new(3, COOLDOWN);
        assert_eq!(breaker.record_failure(1), None);
        assert_eq!(breaker.record_failure(2), None);
        assert_eq!(breaker.record_success(3), None, "a success breaks the run");
        assert_eq!(breaker.record_failure(4), None);
        assert_eq!(breaker.record_failure(5), None);
        assert_eq!(breaker.gate(5), Gate::Dial);
        assert_eq!(breaker.record_failure(6), Some(Change::Opened { failures: 3 }));
        assert_eq!(breaker.gate(7), Gate::Hold { until: 6 + COOLDOWN });
        assert!(!breaker.may_send(CallId(1)), "no resend while open");
        assert_eq!(breaker.view().state, "open");
    }

    #[test]
    fn after_the_cooldown_one_probe_goes_out_and_its_result_decides() {
        let mut breaker = Breaker::new(1, COOLDOWN);
        breaker.record_failure(0);
        assert_eq!(breaker.gate(COOLDOWN - 1), Gate::Hold { until: COOLDOWN });
        assert_eq!(breaker.gate(COOLDOWN), Gate::ProbeOne);
        breaker.probe_dispatched(CallId(7), COOLDOWN);
        assert_eq!(breaker.gate(COOLDOWN + 1), Gate::Hold { until: 2 * COOLDOWN }, "one probe at a time");
        assert!(breaker.may_send(CallId(7)) && !breaker.may_send(CallId(8)), "only the probe's worker sends");
        // The probe fails: open again for a whole cooldown.
        assert_eq!(breaker.record_failure(COOLDOWN + 10), Some(Change::Reopened));
        assert_eq!(breaker.gate(COOLDOWN + 11), Gate::Hold { until: 2 * COOLDOWN + 10 });
        // The next probe gets through: closed, everyone dials.
        assert_eq!(breaker.gate(2 * COOLDOWN + 10), Gate::ProbeOne);
        breaker.probe_dispatched(CallId(9), 2 * COOLDOWN + 10);
        assert_eq!(breaker.record_success(2 * COOLDOWN + 20), Some(Change::Closed));
        assert_eq!(breaker.gate(2 * COOLDOWN + 21), Gate::Dial);
        assert!(breaker.may_send(CallId(8)));
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced_after_a_cooldown() {
        let mut breaker = Breaker::new(1, COOLDOWN);
        breaker.record_failure(0);
        assert_eq!(breaker.gate(COOLDOWN), Gate::ProbeOne);
        breaker.probe_dispatched(CallId(1), COOLDOWN);
        assert_eq!(breaker.gate(2 * COOLDOWN - 1), Gate::Hold { until: 2 * COOLDOWN });
        assert_eq!(breaker.gate(2 * COOLDOWN), Gate::ProbeOne);
    }
}
