//! The scheduler thread: ready queue, timer wheel (retries and callback deadlines), slot
//! accounting and pacing. It decides which INITIATED call to dial next and asks the writer to
//! commit it PROCESSING; only the committed result (an event) hands a dial job to the workers.
//!
//! Invariants:
//! * **Never exceed the limit.** A slot is reserved before the dispatch command is sent and held
//!   until the call leaves PROCESSING, so calls in flight ≤ `max_concurrent_calls` (and ≤ the
//!   campaign's own cap), including right after boot, when every PROCESSING call keeps its slot.
//! * **Never block on the writer.** Commands to it are `try_send`; what does not fit is kept and
//!   resent next turn, so the writer (which blocks on our event inbox) cannot deadlock with us.
//! * **Provider trouble holds calls, it does not burn them.** While the provider's circuit
//!   breaker is open no dial starts (calls stay queued); when it may try again one probe goes
//!   out. A throttling provider lowers the dial pace, which recovers gradually.
//! * Everything here is derived from the store and rebuilt by `Scheduler::recover` at boot.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::core::clock::SharedClock;
use crate::core::model::{CallChange, CallId, CampaignId, CampaignStatus, Millis, Placement};
use crate::core::timer_wheel::TimerWheel;
use crate::service::dispatch::{Gate, ProviderHealth};
use crate::service::events::{CampaignInfo, DialJob, Event, LookupJob};
use crate::service::stats::{Gauges, LiveStats, Rate};
use crate::service::store::Recovered;
use crate::service::writer::{Command, WriterHandle};

/// The longest the loop sleeps, so heartbeats and clock checks happen at least this often.
const IDLE_WAKE_MS: u64 = 250;
/// How soon to try again when the writer's inbox was full.
const BACKOFF_WAKE_MS: u64 = 5;
/// Calls asked for in one dispatch command.
const DISPATCH_BATCH_MAX: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Timer {
    Retry(CallId),
    Deadline(CallId),
    /// A queued call held by a dialling gate until this timer fires.
    Hold(CallId),
}

#[derive(Default)]
struct CampaignQueue {
    status: Option<CampaignStatus>,
    cap: Option<u32>,
    in_flight: u32,
    /// INITIATED calls by queue position.
    ready: BTreeMap<u64, CallId>,
    /// The key under which this campaign sits in `Scheduler::eligible`, if it does.
    eligible_at: Option<u64>,
}

impl CampaignQueue {
    fn dialable(&self) -> bool {
        self.status == Some(CampaignStatus::Active) && !self.ready.is_empty() && self.cap.is_none_or(|cap| self.in_flight < cap)
    }
}

/// The lowest fraction of `max_calls_per_second` a throttling provider can push the pace to.
const PACE_FACTOR_MIN: f64 = 1.0 / 64.0;
/// How long the pace takes to climb back from its lowest to the configured rate (linearly).
const PACE_RECOVERY_MS: f64 = 60_000.0;
/// Throttling signals closer together than this count once (several workers hear the same 429).
const PACE_HALVING_MIN_GAP_MS: Millis = 1_000;
/// The longest pause a provider's `Retry-After` can impose on new dials.
const THROTTLE_PAUSE_MAX_MS: Millis = 60_000;

/// Dials per second with bursts of up to one second's worth. A throttling provider halves the
/// pace (down to `PACE_FACTOR_MIN` of the configured rate) and may pause new dials for its
/// `Retry-After`; the pace then climbs back linearly over `PACE_RECOVERY_MS`.
struct TokenBucket {
    base_per_second: f64,
    /// Fraction of the configured rate in force when it was last changed, at `factor_at`.
    factor: f64,
    factor_at: Millis,
    /// No dial before this instant (the provider's `Retry-After`).
    paused_until: Millis,
    tokens: f64,
    last_ms: Millis,
}

impl TokenBucket {
    fn new(per_second: f64, now: Millis) -> TokenBucket {
        TokenBucket { base_per_second: per_second, factor: 1.0, factor_at: now, paused_until: i64::MIN, tokens: per_second.max(1.0), last_ms: now }
    }
    /// The fraction of the configured rate in force at `now`.
    fn factor_at(&self, now: Millis) -> f64 {
        (self.factor + (now - self.factor_at).max(0) as f64 / PACE_RECOVERY_MS).min(1.0)
    }
    fn rate_per_ms(&self, now: Millis) -> f64 {
        self.base_per_second * self.factor_at(now) / 1000.0
    }
    /// The dial pace in force, calls per second.
    fn per_second(&self, now: Millis) -> f64 {
        self.base_per_second * self.factor_at(now)
    }
    fn capacity(&self, now: Millis) -> f64 {
        self.per_second(now).max(1.0)
    }
    fn refill(&mut self, now: Millis) {
        if now > self.last_ms {
            self.tokens = (self.tokens + (now - self.last_ms) as f64 * self.rate_per_ms(now)).min(self.capacity(now));
            self.last_ms = now;
        }
    }
    fn try_take(&mut self, now: Millis) -> bool {
        if now < self.paused_until {
            return false;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
    /// Gives back a token taken for a dial that did not happen.
    fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.base_per_second.max(1.0));
    }
    fn ms_until_token(&self, now: Millis) -> u64 {
        let pause = self.paused_until.saturating_sub(now).max(0) as u64;
        let token = if self.tokens >= 1.0 { 0 } else { ((1.0 - self.tokens) / self.rate_per_ms(now)).ceil() as u64 };
        pause.max(token)
    }
    /// The provider throttled a dial request: halve the pace (once per burst of signals), drop
    /// the saved burst, and pause new dials for `retry_after_ms` when given.
    fn throttle(&mut self, now: Millis, retry_after_ms: Option<u64>) {
        self.refill(now);
        if now - self.factor_at >= PACE_HALVING_MIN_GAP_MS || self.factor_at(now) >= 1.0 {
            self.factor = (self.factor_at(now) / 2.0).max(PACE_FACTOR_MIN);
            self.factor_at = now;
        }
        self.tokens = self.tokens.min(1.0);
        if let Some(wait) = retry_after_ms {
            self.paused_until = self.paused_until.max(now + (wait as Millis).min(THROTTLE_PAUSE_MAX_MS));
        }
    }
}

pub struct SchedulerSettings {
    pub max_concurrent_calls: u32,
    pub max_calls_per_second: f64,
    pub retry_release_max: usize,
    /// How long an attempt waits for its outcome (to tell, after a restart, when a recovered
    /// call's attempt started from its deadline).
    pub callback_timeout_ms: Millis,
}

pub struct Scheduler {
    clock: SharedClock,
    writer: WriterHandle,
    dial: Sender<DialJob>,
    /// Status lookups go to the workers on their own channel, which they take after dials.
    lookups: Option<Sender<LookupJob>>,
    health: Arc<ProviderHealth>,
    gauges: Arc<Gauges>,
    stats: Arc<LiveStats>,
    settings: SchedulerSettings,
    bucket: TokenBucket,
    campaigns: HashMap<CampaignId, CampaignQueue>,
    /// Campaigns that could dial now, by the queue position of their first call (global acceptance order).
    eligible: BTreeSet<(u64, CampaignId)>,
    /// PROCESSING calls (committed), with when their attempt started waiting for its outcome,
    /// and calls asked for but not yet committed: each holds a slot.
    in_flight: HashMap<CallId, (CampaignId, Millis)>,
    /// `in_flight` by the instant each started waiting: the oldest awaiting an outcome first.
    awaiting: BTreeSet<(Millis, CallId)>,
    /// Calls that were in flight when the service started and still are.
    recovered: HashSet<CallId>,
    reserved: HashMap<CallId, CampaignId>,
    callback_timeout_ms: Millis,
    wheel: TimerWheel<Timer>,
    queued_total: u64,
    retrying_total: u64,
    held_total: u64,
    /// Commands the writer had no room for yet.
    unsent: VecDeque<Command>,
    /// Dial jobs the workers had no room for yet (cannot happen while the channel holds `max_concurrent_calls`).
    undelivered: VecDeque<DialJob>,
    /// Lookup jobs the workers had no room for yet: they wait behind every dial.
    undelivered_lookups: VecDeque<LookupJob>,
    /// More overdue timers than one turn releases: come back soon.
    timers_backlog: bool,
    stopping: bool,
}

impl Scheduler {
    /// Rebuilds the scheduler's memory from the store's recovery scan.
    #[allow(clippy::too_many_arguments)]
    pub fn recover(
        recovered: Recovered,
        clock: SharedClock,
        writer: WriterHandle,
        dial: Sender<DialJob>,
        health: Arc<ProviderHealth>,
        gauges: Arc<Gauges>,
        stats: Arc<LiveStats>,
        settings: SchedulerSettings,
    ) -> Scheduler {
        let now = clock.now_ms();
        let mut scheduler = Scheduler {
            bucket: TokenBucket::new(settings.max_calls_per_second, now),
            clock,
            writer,
            dial,
            lookups: None,
            health,
            gauges,
            stats,
            callback_timeout_ms: settings.callback_timeout_ms,
            settings,
            campaigns: HashMap::new(),
            eligible: BTreeSet::new(),
            in_flight: HashMap::new(),
            awaiting: BTreeSet::new(),
            recovered: HashSet::new(),
            reserved: HashMap::new(),
            wheel: TimerWheel::with_capacity(now.max(0) as u64, recovered.in_flight.len() + recovered.retrying.len() + recovered.held.len()),
            queued_total: 0,
            retrying_total: 0,
            held_total: 0,
            unsent: VecDeque::new(),
            undelivered: VecDeque::new(),
            undelivered_lookups: VecDeque::new(),
            timers_backlog: false,
            stopping: false,
        };
        for campaign in &recovered.campaigns {
            scheduler.campaign_changed(CampaignInfo { id: campaign.id, status: campaign.status, max_concurrent_calls: campaign.max_concurrent_calls });
        }
        for (seq, call_id, campaign_id) in recovered.ready {
            scheduler.apply_change(CallChange { call_id, campaign_id, before: Placement::Nowhere, after: Placement::Queued { seq } });
        }
        for (until, seq, call_id, campaign_id) in recovered.held {
            scheduler.apply_change(CallChange { call_id, campaign_id, before: Placement::Nowhere, after: Placement::Held { seq, until } });
        }
        for (deadline, call_id, campaign_id) in recovered.in_flight {
            scheduler.apply_change(CallChange { call_id, campaign_id, before: Placement::Nowhere, after: Placement::InFlight { deadline } });
            scheduler.recovered.insert(call_id);
        }
        for (at, call_id, campaign_id) in recovered.retrying {
            scheduler.apply_change(CallChange { call_id, campaign_id, before: Placement::Nowhere, after: Placement::Waiting { at } });
        }
        scheduler.publish(now);
        scheduler
    }

    /// Where status lookups go (the workers take them after dials); without it (a provider that
    /// cannot be asked) none are made.
    pub fn with_lookups(mut self, lookups: Sender<LookupJob>) -> Scheduler {
        self.lookups = Some(lookups);
        self
    }

    /// Runs until `Event::Wake` arrives with stopping set via `stop_signal`, or the event inbox closes.
    pub fn run(mut self, events: Receiver<Event>, stop: Receiver<()>) {
        loop {
            let timeout = self.next_wake_ms();
            crossbeam_channel::select! {
                recv(events) -> event => match event {
                    Ok(event) => self.handle(event),
                    Err(_) => break,
                },
                recv(stop) -> _ => self.stopping = true,
                default(Duration::from_millis(timeout)) => {}
            }
            // Drain what else is waiting, boundedly, so timers and dispatch still get their turn.
            for _ in 0..4096 {
                match events.try_recv() {
                    Ok(event) => self.handle(event),
                    Err(_) => break,
                }
            }
            if self.stopping {
                break;
            }
            self.turn(self.clock.now_ms());
        }
        tracing::debug!(in_flight = self.in_flight.len(), queued = self.queued_total, "scheduler stopped");
    }

    /// One turn of the loop at `now`: due timers become commands, free slots are filled, and
    /// what is ready goes out to the writer and the workers (what does not fit waits).
    pub fn turn(&mut self, now: Millis) {
        self.fire_timers(now);
        self.flush();
        self.fill(now);
        self.flush();
        self.publish(now);
    }

    fn next_wake_ms(&mut self) -> u64 {
        let now = self.clock.now_ms();
        if !self.unsent.is_empty() || !self.undelivered.is_empty() || !self.undelivered_lookups.is_empty() || self.timers_backlog {
            return BACKOFF_WAKE_MS;
        }
        match self.next_work_at(now) {
            Some(at) => ((at - now).max(0) as u64).min(IDLE_WAKE_MS),
            None => IDLE_WAKE_MS,
        }
    }

    /// The next instant a turn has work without any new event: a timer falls due, or the pace
    /// allows the next dial of a waiting call. `None`: only an event can bring work.
    pub fn next_work_at(&mut self, now: Millis) -> Option<Millis> {
        let timer = self.wheel.next_wakeup_ms().map(|at| at as Millis);
        let pace = if !self.eligible.is_empty() && self.slots_used() < self.settings.max_concurrent_calls as usize {
            match self.health.gate(now) {
                Gate::Hold { until } => Some(until.max(now + 1)),
                Gate::Dial | Gate::ProbeOne => {
                    self.bucket.refill(now);
                    Some(now + self.bucket.ms_until_token(now).max(1) as Millis)
                }
            }
        } else {
            None
        };
        match (timer, pace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn slots_used(&self) -> usize {
        self.in_flight.len() + self.reserved.len()
    }

    pub fn handle(&mut self, event: Event) {
        match event {
            Event::Calls(changes) => {
                for change in changes {
                    self.apply_change(change);
                }
            }
            Event::Dial(jobs) => {
                self.stats.record(self.clock.now_ms(), Rate::Dials, jobs.len() as u64);
                self.stats.record_campaign_dials(jobs.iter().map(|job| job.campaign_id));
                self.undelivered.extend(jobs);
            }
            Event::Lookups(jobs) => self.undelivered_lookups.extend(jobs),
            Event::ProviderThrottled { retry_after_ms } => self.bucket.throttle(self.clock.now_ms(), retry_after_ms),
            Event::DialRefused(refused) => {
                for (call_id, campaign_id, requeue) in refused {
                    if self.reserved.remove(&call_id).is_some() {
                        self.release_slot(campaign_id);
                        self.bucket.refund();
                    }
                    if let Some(seq) = requeue {
                        self.enqueue(campaign_id, seq, call_id);
                    }
                    self.refresh(campaign_id);
                }
            }
            Event::Campaign(info) => self.campaign_changed(info),
            Event::Wake => {}
        }
    }

    fn campaign_changed(&mut self, info: CampaignInfo) {
        let queue = self.campaigns.entry(info.id).or_default();
        queue.status = Some(info.status);
        queue.cap = info.max_concurrent_calls;
        self.refresh(info.id);
    }

    fn enqueue(&mut self, campaign_id: CampaignId, seq: u64, call_id: CallId) {
        if self.campaigns.entry(campaign_id).or_default().ready.insert(seq, call_id).is_none() {
            self.queued_total += 1;
        }
    }

    fn release_slot(&mut self, campaign_id: CampaignId) {
        if let Some(queue) = self.campaigns.get_mut(&campaign_id) {
            queue.in_flight = queue.in_flight.saturating_sub(1);
        }
    }

    /// Mirrors one committed placement change.
    fn apply_change(&mut self, change: CallChange) {
        let CallChange { call_id, campaign_id, before, after } = change;
        if let (Placement::InFlight { .. }, Placement::InFlight { deadline }) = (before, after) {
            // Still the same attempt in flight with a new deadline (a status lookup): it keeps its slot.
            self.wheel.cancel(&Timer::Deadline(call_id));
            self.wheel.insert(Timer::Deadline(call_id), deadline.max(0) as u64);
            return;
        }
        match before {
            Placement::Nowhere => {}
            Placement::Queued { seq } => {
                if let Some(queue) = self.campaigns.get_mut(&campaign_id)
                    && queue.ready.remove(&seq).is_some()
                {
                    self.queued_total -= 1;
                }
            }
            Placement::InFlight { .. } => {
                if let Some((_, started)) = self.in_flight.remove(&call_id) {
                    self.awaiting.remove(&(started, call_id));
                    self.release_slot(campaign_id);
                }
                self.recovered.remove(&call_id);
                self.wheel.cancel(&Timer::Deadline(call_id));
            }
            Placement::Held { .. } => {
                if self.wheel.cancel(&Timer::Hold(call_id)).is_some() {
                    self.held_total -= 1;
                }
            }
            Placement::Waiting { .. } => {
                if self.wheel.cancel(&Timer::Retry(call_id)).is_some() {
                    self.retrying_total -= 1;
                }
            }
        }
        match after {
            Placement::Nowhere => {}
            Placement::Queued { seq } => self.enqueue(campaign_id, seq, call_id),
            Placement::InFlight { deadline } => {
                // A reserved slot becomes a held one; a recovered call takes its slot now.
                if self.reserved.remove(&call_id).is_none() {
                    self.campaigns.entry(campaign_id).or_default().in_flight += 1;
                }
                // The attempt started waiting one callback timeout before its deadline.
                let started = deadline - self.callback_timeout_ms;
                self.in_flight.insert(call_id, (campaign_id, started));
                self.awaiting.insert((started, call_id));
                self.wheel.insert(Timer::Deadline(call_id), deadline.max(0) as u64);
            }
            Placement::Held { until, .. } => {
                self.wheel.insert(Timer::Hold(call_id), until.max(0) as u64);
                self.held_total += 1;
            }
            Placement::Waiting { at } => {
                self.wheel.insert(Timer::Retry(call_id), at.max(0) as u64);
                self.retrying_total += 1;
            }
        }
        self.refresh(campaign_id);
    }

    /// Puts a campaign in or out of the eligible set after anything about it changed.
    fn refresh(&mut self, campaign_id: CampaignId) {
        let Some(queue) = self.campaigns.get_mut(&campaign_id) else { return };
        let want = if queue.dialable() { queue.ready.keys().next().copied() } else { None };
        if queue.eligible_at != want {
            if let Some(old) = queue.eligible_at {
                self.eligible.remove(&(old, campaign_id));
            }
            if let Some(new) = want {
                self.eligible.insert((new, campaign_id));
            }
            queue.eligible_at = want;
        }
    }

    fn fire_timers(&mut self, now: Millis) {
        let mut expired = Vec::new();
        self.timers_backlog = self.wheel.advance_limited(now.max(0) as u64, self.settings.retry_release_max, &mut expired);
        let mut retries = Vec::new();
        let mut timeouts = Vec::new();
        let mut holds = Vec::new();
        for (timer, at) in expired {
            match timer {
                Timer::Retry(call_id) => {
                    self.retrying_total -= 1;
                    retries.push((call_id, at as Millis));
                }
                Timer::Deadline(call_id) => timeouts.push((call_id, at as Millis)),
                Timer::Hold(call_id) => {
                    self.held_total -= 1;
                    holds.push((call_id, at as Millis));
                }
            }
        }
        if !holds.is_empty() {
            self.unsent.push_back(Command::HoldsExpired { due: holds });
        }
        if !retries.is_empty() {
            self.unsent.push_back(Command::RetriesDue { due: retries });
        }
        if !timeouts.is_empty() {
            self.unsent.push_back(Command::CallbackTimeouts { due: timeouts });
        }
    }

    /// Reserves slots for the next calls in acceptance order, within the limits and the pace.
    fn fill(&mut self, now: Millis) {
        let max = self.settings.max_concurrent_calls as usize;
        if self.eligible.is_empty() || self.slots_used() >= max {
            return;
        }
        // While the provider is unreachable no dial starts; when it may be tried again, one does.
        let batch_max = match self.health.gate(now) {
            Gate::Hold { .. } => return,
            Gate::ProbeOne => 1,
            Gate::Dial => DISPATCH_BATCH_MAX,
        };
        let mut batch = Vec::new();
        while self.slots_used() < max && batch.len() < batch_max {
            let Some(&(_, campaign_id)) = self.eligible.first() else { break };
            if !self.bucket.try_take(now) {
                break;
            }
            let queue = self.campaigns.get_mut(&campaign_id).expect("eligible campaigns exist");
            let (_, call_id) = queue.ready.pop_first().expect("eligible campaigns have a call");
            queue.in_flight += 1;
            self.queued_total -= 1;
            self.reserved.insert(call_id, campaign_id);
            self.refresh(campaign_id);
            batch.push(call_id);
        }
        if batch_max == 1
            && let Some(&probe) = batch.first()
        {
            self.health.probe_dispatched(probe, now);
        }
        if !batch.is_empty() {
            self.unsent.push_back(Command::Dispatch { call_ids: batch });
        }
    }

    fn flush(&mut self) {
        while let Some(command) = self.unsent.pop_front() {
            if let Err(command) = self.writer.try_send(command) {
                self.unsent.push_front(*command);
                break;
            }
        }
        while let Some(job) = self.undelivered.pop_front() {
            match self.dial.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(job)) => {
                    self.undelivered.push_front(job);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.undelivered.clear();
                    break;
                }
            }
        }
        match &self.lookups {
            None => {
                if !self.undelivered_lookups.is_empty() {
                    tracing::warn!(jobs = self.undelivered_lookups.len(), "status lookups without a lookup channel: dropped");
                    self.undelivered_lookups.clear();
                }
            }
            Some(lookups) => {
                while let Some(job) = self.undelivered_lookups.pop_front() {
                    match lookups.try_send(job) {
                        Ok(()) => {}
                        Err(TrySendError::Full(job)) => {
                            self.undelivered_lookups.push_front(job);
                            break;
                        }
                        Err(TrySendError::Disconnected(_)) => {
                            self.undelivered_lookups.clear();
                            break;
                        }
                    }
                }
            }
        }
    }

    fn publish(&self, now: Millis) {
        let g = &self.gauges;
        g.in_flight.store(self.slots_used() as u64, Ordering::Relaxed);
        g.queue_depth.store(self.queued_total, Ordering::Relaxed);
        g.retrying.store(self.retrying_total, Ordering::Relaxed);
        let held: u64 = self.campaigns.values().filter(|q| q.status != Some(CampaignStatus::Active)).map(|q| q.ready.len() as u64).sum();
        g.held_paused.store(held, Ordering::Relaxed);
        g.held_by_gates.store(self.held_total, Ordering::Relaxed);
        for (id, queue) in &self.campaigns {
            if queue.in_flight > 0 || g.campaign_in_flight(*id) > 0 {
                g.set_campaign_in_flight(*id, queue.in_flight);
            }
        }
        let oldest = self.awaiting.first().map(|(started, _)| *started);
        g.set_awaiting(self.in_flight.len() as u64, oldest, self.recovered.len() as u64);
        self.health.publish_pace(self.bucket.per_second(now), self.bucket.paused_until);
        g.scheduler_heartbeat(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_paces_and_bursts_one_second() {
        let mut bucket = TokenBucket::new(10.0, 0);
        let burst = (0..20).filter(|_| bucket.try_take(0)).count();
        assert_eq!(burst, 10);
        assert_eq!(bucket.ms_until_token(0), 100);
        assert!(!bucket.try_take(99));
        assert!(bucket.try_take(100));
    }

    #[test]
    fn throttling_halves_the_pace_pauses_and_recovers_gradually() {
        let mut bucket = TokenBucket::new(100.0, 0);
        bucket.throttle(0, Some(2_000));
        assert_eq!(bucket.per_second(0), 50.0);
        assert!(!bucket.try_take(1_999), "paused for the provider's Retry-After");
        assert_eq!(bucket.ms_until_token(1_000), 1_000);
        assert!(bucket.try_take(2_000));
        // Several workers hearing the same 429 halve the pace once.
        bucket.throttle(2_100, None);
        bucket.throttle(2_200, None);
        let after_burst = bucket.per_second(2_200);
        assert!((after_burst - 100.0 * (0.5 + 2_100.0 / PACE_RECOVERY_MS) / 2.0).abs() < 0.5, "{after_burst}");
        // Repeated throttling bottoms out; then the pace climbs back linearly to the configured rate.
        for i in 0..20 {
            bucket.throttle(3_000 + i * PACE_HALVING_MIN_GAP_MS, None);
        }
        let low_at = 3_000 + 19 * PACE_HALVING_MIN_GAP_MS;
        assert!(bucket.per_second(low_at) <= 100.0 * PACE_FACTOR_MIN * 2.0);
        let halfway = bucket.per_second(low_at + PACE_RECOVERY_MS as Millis / 2);
        assert!(halfway > 40.0 && halfway < 60.0, "{halfway}");
        assert_eq!(bucket.per_second(low_at + PACE_RECOVERY_MS as Millis), 100.0);
    }
}
