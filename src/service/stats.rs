//! Live, in-memory operational figures that are not worth a commit: per-second rates of the
//! last minutes, provider latency, recent provider errors, and the scheduler's gauges. Written
//! by the writer, scheduler and workers; read by the metrics endpoints. Lost on restart by design
//! (the daily counters in the store are the durable figures).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use crate::core::model::{CampaignId, Millis, Outcome};

/// Seconds of per-second history kept for rates and sparklines.
pub const HISTORY_SECONDS: usize = 600;
/// Provider latencies kept for the recent p50/p99.
const RECENT_LATENCIES_MAX: usize = 2048;
/// Provider errors kept for the dashboard.
const RECENT_ERRORS_MAX: usize = 20;
/// Upper bounds (ms) of the provider latency histogram buckets (Prometheus `le`).
pub const LATENCY_BUCKETS_MS: [u64; 13] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecondCounts {
    pub accepted: u64,
    pub dials: u64,
    pub outcomes: u64,
    /// Calls that completed: PICKED or FAILED (cancellations are counted apart).
    pub finals: u64,
    pub cancelled: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    Accepted = 0,
    Dials = 1,
    Outcomes = 2,
    Finals = 3,
    Cancelled = 4,
}

struct History {
    /// (unix second, counts), oldest first.
    seconds: VecDeque<(i64, SecondCounts)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderError {
    pub at: Millis,
    pub message: String,
}

/// Slot and queue gauges, published by the scheduler.
#[derive(Default)]
pub struct Gauges {
    pub max_concurrent_calls: AtomicU64,
    pub in_flight: AtomicU64,
    pub queue_depth: AtomicU64,
    pub retrying: AtomicU64,
    pub held_paused: AtomicU64,
    /// Queued calls held by a dialling gate (calling hours, contact limits).
    pub held_by_gates: AtomicU64,
    /// Attempts in flight waiting for their outcome, and when the oldest started waiting
    /// (`i64::MIN`: none).
    pub awaiting_outcome: AtomicU64,
    awaiting_oldest_started_ms: AtomicI64,
    /// Of those, the calls that were already in flight when the service started.
    pub recovered_in_flight: AtomicU64,
    per_campaign_in_flight: Mutex<HashMap<CampaignId, u32>>,
    writer_heartbeat_ms: AtomicI64,
    scheduler_heartbeat_ms: AtomicI64,
    /// Recovery finished and the API may answer (`/readyz`).
    pub ready: AtomicBool,
}

impl Gauges {
    pub fn new(max_concurrent_calls: u32) -> Gauges {
        let gauges = Gauges::default();
        gauges.max_concurrent_calls.store(max_concurrent_calls as u64, Ordering::Relaxed);
        gauges.awaiting_oldest_started_ms.store(i64::MIN, Ordering::Relaxed);
        gauges
    }

    pub fn set_awaiting(&self, count: u64, oldest_started: Option<Millis>, recovered: u64) {
        self.awaiting_outcome.store(count, Ordering::Relaxed);
        self.awaiting_oldest_started_ms.store(oldest_started.unwrap_or(i64::MIN), Ordering::Relaxed);
        self.recovered_in_flight.store(recovered, Ordering::Relaxed);
    }

    /// Seconds the oldest attempt in flight has waited for its outcome at `now` (0 when none).
    pub fn awaiting_oldest_seconds(&self, now: Millis) -> u64 {
        match self.awaiting_oldest_started_ms.load(Ordering::Relaxed) {
            i64::MIN => 0,
            started => ((now - started).max(0) / 1000) as u64,
        }
    }

    /// Slots a campaign could take right now.
    pub fn free_slots(&self, campaign_id: CampaignId, campaign_cap: Option<u32>) -> u64 {
        let global = self.max_concurrent_calls.load(Ordering::Relaxed).saturating_sub(self.in_flight.load(Ordering::Relaxed));
        match campaign_cap {
            None => global,
            Some(cap) => {
                let used = self.per_campaign_in_flight.lock().unwrap().get(&campaign_id).copied().unwrap_or(0);
                global.min(cap.saturating_sub(used) as u64)
            }
        }
    }

    pub fn set_campaign_in_flight(&self, campaign_id: CampaignId, n: u32) {
        let mut map = self.per_campaign_in_flight.lock().unwrap();
        if n == 0 {
            map.remove(&campaign_id);
        } else {
            map.insert(campaign_id, n);
        }
    }

    pub fn campaign_in_flight(&self, campaign_id: CampaignId) -> u32 {
        self.per_campaign_in_flight.lock().unwrap().get(&campaign_id).copied().unwrap_or(0)
    }

    pub fn writer_heartbeat(&self, now: Millis) {
        self.writer_heartbeat_ms.store(now, Ordering::Relaxed);
    }

    pub fn scheduler_heartbeat(&self, now: Millis) {
        self.scheduler_heartbeat_ms.store(now, Ordering::Relaxed);
    }

    /// The scheduler loops at least once a second; a much older heartbeat means it is stuck.
    pub fn scheduler_alive(&self, now: Millis, tolerance_ms: i64) -> bool {
        now - self.scheduler_heartbeat_ms.load(Ordering::Relaxed) <= tolerance_ms
    }

    pub fn writer_heartbeat_ms(&self) -> Millis {
        self.writer_heartbeat_ms.load(Ordering::Relaxed)
    }
}

/// One campaign's dials and outcomes since start (the per-campaign Prometheus counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CampaignCounts {
    pub dials: u64,
    /// Indexed like `Outcome::ALL`.
    pub outcomes: [u64; 4],
}

pub struct LiveStats {
    history: Mutex<History>,
    /// Totals since start, for Prometheus counters, indexed by `Rate`.
    totals: [AtomicU64; 5],
    /// Outcomes applied since start, indexed like `Outcome::ALL`.
    outcomes: [AtomicU64; 4],
    /// Dials and outcomes since start per campaign. One entry per campaign dialled since start
    /// (a few dozen bytes each); the exposition shows only a bounded set of them.
    per_campaign: Mutex<HashMap<CampaignId, CampaignCounts>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    latency_sum_ms: AtomicU64,
    latency_count: AtomicU64,
    recent_latencies: Mutex<VecDeque<u32>>,
    pub provider_transport_errors: AtomicU64,
    pub provider_refusals: AtomicU64,
    recent_errors: Mutex<VecDeque<ProviderError>>,
    pub started_at: Millis,
}

impl LiveStats {
    pub fn new(started_at: Millis) -> LiveStats {
        LiveStats {
            history: Mutex::new(History { seconds: VecDeque::with_capacity(HISTORY_SECONDS + 1) }),
            totals: Default::default(),
            outcomes: Default::default(),
            per_campaign: Mutex::new(HashMap::new()),
            latency_buckets: Default::default(),
            latency_sum_ms: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
            recent_latencies: Mutex::new(VecDeque::with_capacity(RECENT_LATENCIES_MAX)),
            provider_transport_errors: AtomicU64::new(0),
            provider_refusals: AtomicU64::new(0),
            recent_errors: Mutex::new(VecDeque::new()),
            started_at,
        }
    }

    pub fn record(&self, now: Millis, rate: Rate, n: u64) {
        if n == 0 {
            return;
        }
        self.totals[rate as usize].fetch_add(n, Ordering::Relaxed);
        let second = now.div_euclid(1000);
        let mut history = self.history.lock().unwrap();
        if history.seconds.back().is_none_or(|(s, _)| *s < second) {
            history.seconds.push_back((second, SecondCounts::default()));
            while history.seconds.len() > HISTORY_SECONDS {
                history.seconds.pop_front();
            }
        }
        // A clock step backwards lands in the newest second rather than rewriting history.
        let counts = &mut history.seconds.back_mut().expect("just ensured").1;
        match rate {
            Rate::Accepted => counts.accepted += n,
            Rate::Dials => counts.dials += n,
            Rate::Outcomes => counts.outcomes += n,
            Rate::Finals => counts.finals += n,
            Rate::Cancelled => counts.cancelled += n,
        }
    }

    /// A call reached a final status: a completion (PICKED, FAILED) or a cancellation.
    pub fn record_final(&self, now: Millis, status: crate::core::model::Status) {
        let rate = if status == crate::core::model::Status::Cancelled { Rate::Cancelled } else { Rate::Finals };
        self.record(now, rate, 1);
    }

    /// Dials committed, one campaign id each (their share of `Rate::Dials`, recorded apart).
    pub fn record_campaign_dials(&self, campaigns: impl Iterator<Item = CampaignId>) {
        let mut per_campaign = self.per_campaign.lock().unwrap();
        for campaign_id in campaigns {
            per_campaign.entry(campaign_id).or_default().dials += 1;
        }
    }

    /// An attempt's outcome applied: counts it under `Rate::Outcomes`, by outcome, and for its campaign.
    pub fn record_outcome(&self, now: Millis, campaign_id: CampaignId, outcome: Outcome) {
        self.record(now, Rate::Outcomes, 1);
        let index = Outcome::ALL.iter().position(|o| *o == outcome).expect("every outcome is in ALL");
        self.outcomes[index].fetch_add(1, Ordering::Relaxed);
        self.per_campaign.lock().unwrap().entry(campaign_id).or_default().outcomes[index] += 1;
    }

    /// Outcomes applied since start, by outcome.
    pub fn outcome_totals(&self) -> [(Outcome, u64); 4] {
        std::array::from_fn(|i| (Outcome::ALL[i], self.outcomes[i].load(Ordering::Relaxed)))
    }

    /// A campaign's dials and outcomes since start (zeros when it has none).
    pub fn campaign_counts(&self, campaign_id: CampaignId) -> CampaignCounts {
        self.per_campaign.lock().unwrap().get(&campaign_id).copied().unwrap_or_default()
    }

    pub fn total(&self, rate: Rate) -> u64 {
        self.totals[rate as usize].load(Ordering::Relaxed)
    }

    /// Per-second counts for the `seconds` whole seconds before `now`, oldest first (gaps are zeros).
    pub fn series(&self, now: Millis, seconds: usize) -> Vec<SecondCounts> {
        let current = now.div_euclid(1000);
        let history = self.history.lock().unwrap();
        let mut out = vec![SecondCounts::default(); seconds];
        for (second, counts) in history.seconds.iter() {
            let age = current - 1 - second;
            if age >= 0 && (age as usize) < seconds {
                out[seconds - 1 - age as usize] = *counts;
            }
        }
        out
    }

    pub fn provider_latency(&self, millis: u64) {
        let bucket = LATENCY_BUCKETS_MS.iter().position(|&b| millis <= b).unwrap_or(LATENCY_BUCKETS_MS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ms.fetch_add(millis, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let mut recent = self.recent_latencies.lock().unwrap();
        if recent.len() == RECENT_LATENCIES_MAX {
            recent.pop_front();
        }
        recent.push_back(millis.min(u32::MAX as u64) as u32);
    }

    /// (bucket counts, cumulative per `le`, with +Inf last; sum ms; count).
    pub fn latency_histogram(&self) -> (Vec<u64>, u64, u64) {
        let mut cumulative = Vec::with_capacity(self.latency_buckets.len());
        let mut running = 0;
        for bucket in &self.latency_buckets {
            running += bucket.load(Ordering::Relaxed);
            cumulative.push(running);
        }
        (cumulative, self.latency_sum_ms.load(Ordering::Relaxed), self.latency_count.load(Ordering::Relaxed))
    }

    /// p50 and p99 of the most recent provider latencies, in ms.
    pub fn recent_latency_percentiles(&self) -> Option<(u32, u32)> {
        let mut samples: Vec<u32> = self.recent_latencies.lock().unwrap().iter().copied().collect();
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5), at(0.99)))
    }

    pub fn provider_error(&self, now: Millis, message: String, refusal: bool) {
        let counter = if refusal { &self.provider_refusals } else { &self.provider_transport_errors };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut recent = self.recent_errors.lock().unwrap();
        if recent.len() == RECENT_ERRORS_MAX {
            recent.pop_front();
        }
        recent.push_back(ProviderError { at: now, message });
    }

    pub fn recent_errors(&self) -> Vec<ProviderError> {
        self.recent_errors.lock().unwrap().iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_places_counts_by_age_and_fills_gaps() {
        let stats = LiveStats::new(0);
        stats.record(10_100, Rate::Dials, 2);
        stats.record(12_900, Rate::Dials, 5);
        stats.record(12_950, Rate::Finals, 1);
        let series = stats.series(13_000, 4);
        assert_eq!(series.iter().map(|s| s.dials).collect::<Vec<_>>(), vec![0, 2, 0, 5]);
        assert_eq!(series[3].finals, 1);
    }

    #[test]
    fn outcomes_count_in_total_by_outcome_and_per_campaign() {
        let stats = LiveStats::new(0);
        stats.record_outcome(1_000, 7, Outcome::Rnr);
        stats.record_outcome(1_000, 7, Outcome::Picked);
        stats.record_outcome(1_000, 8, Outcome::Rnr);
        stats.record_campaign_dials([7, 7, 7].into_iter());
        assert_eq!(stats.total(Rate::Outcomes), 3);
        assert_eq!(stats.outcome_totals(), [(Outcome::Picked, 1), (Outcome::Disconnected, 0), (Outcome::Rnr, 2), (Outcome::Failed, 0)]);
        assert_eq!(stats.campaign_counts(7), CampaignCounts { dials: 3, outcomes: [1, 0, 1, 0] });
        assert_eq!(stats.campaign_counts(9), CampaignCounts::default());
    }

    #[test]
    fn latency_histogram_is_cumulative() {
        let stats = LiveStats::new(0);
        for ms in [1, 3, 3, 700, 20_000] {
            stats.provider_latency(ms);
        }
        let (cumulative, sum, count) = stats.latency_histogram();
        assert_eq!((cumulative[0], cumulative[2], *cumulative.last().unwrap()), (1, 3, 5));
        assert_eq!((sum, count), (20_707, 5));
        assert_eq!(stats.recent_latency_percentiles(), Some((3, 20_000)));
    }
}
