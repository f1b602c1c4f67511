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
//! * Everything here is derived from the store and rebuilt by `Scheduler::recover` at boot.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::core::clock::SharedClock;
use crate::core::model::{CallChange, CallId, CampaignId, CampaignStatus, Millis, Placement};
use crate::core::timer_wheel::TimerWheel;
use crate::service::events::{CampaignInfo, DialJob, Event};
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

/// Dials per second with bursts of up to one second's worth.
struct TokenBucket {
    rate_per_ms: f64,
    capacity: f64,
    tokens: f64,
    last_ms: Millis,
}

impl TokenBucket {
    fn new(per_second: f64, now: Millis) -> TokenBucket {
        let capacity = per_second.max(1.0);
        TokenBucket { rate_per_ms: per_second / 1000.0, capacity, tokens: capacity, last_ms: now }
    }
    fn refill(&mut self, now: Millis) {
        if now > self.last_ms {
            self.tokens = (self.tokens + (now - self.last_ms) as f64 * self.rate_per_ms).min(self.capacity);
            self.last_ms = now;
        }
    }
    fn try_take(&mut self, now: Millis) -> bool {
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
        self.tokens = (self.tokens + 1.0).min(self.capacity);
    }
    fn ms_until_token(&self) -> u64 {
        if self.tokens >= 1.0 { 0 } else { ((1.0 - self.tokens) / self.rate_per_ms).ceil() as u64 }
    }
}

pub struct SchedulerSettings {
    pub max_concurrent_calls: u32,
    pub max_calls_per_second: f64,
    pub retry_release_max: usize,
}

pub struct Scheduler {
    clock: SharedClock,
    writer: WriterHandle,
    dial: Sender<DialJob>,
    gauges: Arc<Gauges>,
    stats: Arc<LiveStats>,
    settings: SchedulerSettings,
    bucket: TokenBucket,
    campaigns: HashMap<CampaignId, CampaignQueue>,
    /// Campaigns that could dial now, by the queue position of their first call (global acceptance order).
    eligible: BTreeSet<(u64, CampaignId)>,
    /// PROCESSING calls (committed) and calls asked for but not yet committed: each holds a slot.
    in_flight: HashMap<CallId, CampaignId>,
    reserved: HashMap<CallId, CampaignId>,
    wheel: TimerWheel<Timer>,
    queued_total: u64,
    retrying_total: u64,
    held_total: u64,
    /// Commands the writer had no room for yet.
    unsent: VecDeque<Command>,
    /// Dial jobs the workers had no room for yet (cannot happen while the channel holds `max_concurrent_calls`).
    undelivered: VecDeque<DialJob>,
    /// More overdue timers than one turn releases: come back soon.
    timers_backlog: bool,
    stopping: bool,
}

impl Scheduler {
    /// Rebuilds the scheduler's memory from the store's recovery scan.
    pub fn recover(
        recovered: Recovered,
        clock: SharedClock,
        writer: WriterHandle,
        dial: Sender<DialJob>,
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
            gauges,
            stats,
            settings,
            campaigns: HashMap::new(),
            eligible: BTreeSet::new(),
            in_flight: HashMap::new(),
            reserved: HashMap::new(),
            wheel: TimerWheel::with_capacity(now.max(0) as u64, recovered.in_flight.len() + recovered.retrying.len() + recovered.held.len()),
            queued_total: 0,
            retrying_total: 0,
            held_total: 0,
            unsent: VecDeque::new(),
            undelivered: VecDeque::new(),
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
        }
        for (at, call_id, campaign_id) in recovered.retrying {
            scheduler.apply_change(CallChange { call_id, campaign_id, before: Placement::Nowhere, after: Placement::Waiting { at } });
        }
        scheduler.publish(now);
        scheduler
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
        if !self.unsent.is_empty() || !self.undelivered.is_empty() || self.timers_backlog {
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
            self.bucket.refill(now);
            Some(now + self.bucket.ms_until_token().max(1) as Millis)
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
                self.undelivered.extend(jobs);
            }
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
                if self.in_flight.remove(&call_id).is_some() {
                    self.release_slot(campaign_id);
                }
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
                self.in_flight.insert(call_id, campaign_id);
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
        let mut batch = Vec::new();
        while self.slots_used() < max && batch.len() < DISPATCH_BATCH_MAX {
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
        assert_eq!(bucket.ms_until_token(), 100);
        assert!(!bucket.try_take(99));
        assert!(bucket.try_take(100));
    }
}
