//! A seeded simulation of the whole engine in simulated time: the real writer, scheduler, state
//! machine and store (on an in-memory disk), driven step by step by this test, which plays the
//! clients, a fickle provider and random crashes. Every step checks the invariants:
//!
//! * never more calls in flight than the global limit or a campaign's cap;
//! * never two dials for one (call, attempt);
//! * never a dial outside calling hours;
//! * never a retry scheduled outside its window, and never re-queued outside it (beyond the
//!   one-minute grace for a timer that fires late);
//! * a number listed as do-not-call is never dialled afterwards;
//! * after each crash the recovered indexes agree with the records;
//! * at the end every acknowledged call is final.
//!
//! A failure prints its seed; `SIMULATION_SEED=n cargo test --test it simulation` replays it
//! (`SIMULATION_SEEDS=k` runs k seeds).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use callmgr::config::StorageConfig;
use callmgr::core::clock::{ManualClock, SharedClock};
use callmgr::core::model::{CallChange, CallId, CampaignAction, CampaignId, Millis, Outcome, Placement, Status, to_timestamp};
use callmgr::core::retry::RetryRules;
use callmgr::service::dispatch::{ProviderHealth, SendBoard};
use callmgr::service::events::{DialJob, Event};
use callmgr::service::scheduler::{Scheduler, SchedulerSettings};
use callmgr::service::stats::{Gauges, LiveStats};
use callmgr::service::store::Store;
use callmgr::service::writer::{self, CallbackInput, Command, CommandError, DncScope, NewCampaign, ProviderResult, Reply, Writer, WriterSettings};
use crossbeam_channel::Receiver;

use crate::disk::FaultyDisk;

/// Monday 2026-06-01 00:00 UTC.
const START: Millis = 1_780_272_000_000;
const SECOND: Millis = 1_000;
const MINUTE: Millis = 60 * SECOND;
const HOUR: Millis = 60 * MINUTE;
const DAY: Millis = 24 * HOUR;
const MAX_CONCURRENT: u32 = 12;
const CAMPAIGN_CAP: u32 = 4;
const PHONES: u64 = 400;
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(600);
/// Calls only Monday to Saturday 08:00-20:00; retries on weekdays 09:00-17:00 and Saturdays
/// 10:00-14:00 (UTC), every 30 minutes.
const RULES: &str = "timezone: UTC\n\
    calling_hours: {days: [monday, tuesday, wednesday, thursday, friday, saturday], start_time: \"08:00\", end_time: \"20:00\"}\n\
    defaults: {max_attempts: 3, retry_interval_minutes: 30}\n\
    global_rules:\n\
    \x20 - days: [monday, tuesday, wednesday, thursday, friday]\n\
    \x20   time_slots: [{start_time: \"09:00\", end_time: \"17:00\"}]\n\
    \x20 - days: [saturday]\n\
    \x20   time_slots: [{start_time: \"10:00\", end_time: \"14:00\"}]\n";

/// SplitMix64: small, seeded, good enough to draw a simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn between(&mut self, low: Millis, high: Millis) -> Millis {
        low + self.below((high - low).max(1) as u64) as Millis
    }
}

#[derive(Debug, Clone)]
enum Action {
    Initiate { campaign: CampaignId, phone: String },
    Answer { call: CallId, attempt: u32, result: ProviderResult },
    Callback { call: CallId, attempt: Option<u32>, outcome: Outcome, external: Option<String> },
    Campaign { campaign: CampaignId, action: CampaignAction },
    ListDnc { phone: String },
    Crash,
}

/// A running service, stepped by the simulation instead of by its threads.
struct Node {
    store: Arc<Store>,
    writer: Writer,
    scheduler: Scheduler,
    commands: Receiver<Command>,
    events: Receiver<Event>,
    dials: Receiver<DialJob>,
}

struct Sim {
    seed: u64,
    rng: Rng,
    clock: Arc<ManualClock>,
    rules: Arc<RetryRules>,
    disk: FaultyDisk,
    node: Option<Node>,
    actions: BinaryHeap<Reverse<(Millis, u64)>>,
    pending: HashMap<u64, Action>,
    next_action: u64,
    dialled: HashSet<(CallId, u32)>,
    acknowledged: HashSet<CallId>,
    campaign_of: HashMap<CallId, CampaignId>,
    listed_at: HashMap<String, Millis>,
    stats: BTreeMap<&'static str, u64>,
}

fn storage() -> StorageConfig {
    StorageConfig { quick_repair: false, cache_size_bytes: 8 << 20 }
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let clock = ManualClock::new(START);
        let rules = Arc::new(RetryRules::from_yaml_str(RULES, "simulation rules").unwrap());
        let mut sim = Sim {
            seed,
            rng: Rng(seed),
            clock,
            rules,
            disk: FaultyDisk::new(Vec::new(), None, None),
            node: None,
            actions: BinaryHeap::new(),
            pending: HashMap::new(),
            next_action: 0,
            dialled: HashSet::new(),
            acknowledged: HashSet::new(),
            campaign_of: HashMap::new(),
            listed_at: HashMap::new(),
            stats: BTreeMap::new(),
        };
        sim.boot();
        for (name, cap) in [("capped", Some(CAMPAIGN_CAP)), ("paused now and then", None), ("stopped one day", None)] {
            let input = NewCampaign {
                name: name.into(),
                description: String::new(),
                is_active: true,
                timezone: None,
                max_attempts: None,
                max_concurrent_calls: cap,
                default_region: None,
                caller_id: None,
            };
            sim.ask(|reply| Command::CreateCampaign { input, reply }).unwrap();
        }
        sim
    }

    fn now(&self) -> Millis {
        use callmgr::core::clock::Clock;
        self.clock.now_ms()
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "simulation seed {} failed at {}: {what}\nreplay: SIMULATION_SEED={} cargo test --test it simulation",
            self.seed,
            to_timestamp(self.now()),
            self.seed
        )
    }

    fn count(&mut self, what: &'static str) {
        *self.stats.entry(what).or_default() += 1;
    }

    fn at(&mut self, at: Millis, action: Action) {
        self.next_action += 1;
        self.pending.insert(self.next_action, action);
        self.actions.push(Reverse((at, self.next_action)));
    }

    /// Starts the service on the disk's durable image, as a restart after a crash does.
    fn boot(&mut self) {
        let image = self.disk.crash_image();
        self.disk = FaultyDisk::new(image, None, None);
        let store = Arc::new(Store::open_with_backend(self.disk.clone(), "simulation", &storage()).unwrap());
        let problems = store.read().unwrap().check_indexes().unwrap();
        if !problems.is_empty() {
            self.fail(format!("indexes after recovery: {problems:#?}"));
        }
        let recovered = store.read().unwrap().recover().unwrap();
        let clock: SharedClock = self.clock.clone();
        let (events_tx, events) = crossbeam_channel::unbounded();
        let gauges = Arc::new(Gauges::new(MAX_CONCURRENT));
        let stats = Arc::new(LiveStats::new(self.now()));
        let settings = WriterSettings {
            duplicate_window: Duration::from_secs(60),
            callback_timeout: CALLBACK_TIMEOUT,
            callback_url: "http://sim/api/v1/callback/".into(),
            inbox_max: 1 << 20,
            batch_max: 256,
            items_max: 100,
            cancel_chunk_max: 50,
            timezone_max_candidates: 3,
            lookup_budget: None,
        };
        let board = Arc::new(SendBoard::default());
        let writer = Writer::new(store.clone(), self.rules.clone(), clock.clone(), events_tx, gauges.clone(), stats.clone(), settings, board).unwrap();
        let (handle, commands) = writer::inbox(1 << 20);
        let (dial_tx, dials) = crossbeam_channel::bounded(MAX_CONCURRENT as usize);
        let settings = SchedulerSettings {
            max_concurrent_calls: MAX_CONCURRENT,
            max_calls_per_second: 5.0,
            retry_release_max: 50,
            callback_timeout_ms: CALLBACK_TIMEOUT.as_millis() as i64,
        };
        let health = Arc::new(ProviderHealth::new(u32::MAX, 1_000));
        let scheduler = Scheduler::recover(recovered, clock, handle, dial_tx, health, gauges, stats, settings);
        self.node = Some(Node { store, writer, scheduler, commands, events, dials });
    }

    fn node(&mut self) -> &mut Node {
        self.node.as_mut().expect("running")
    }

    /// A client request, answered after its commit.
    fn ask<T: Send + 'static>(&mut self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, CommandError> {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        self.node().writer.run_batch(vec![make(tx)]).unwrap();
        self.pump();
        rx.try_recv().expect("answered")
    }

    /// Runs the scheduler and the writer until neither has anything left to do at this instant.
    fn pump(&mut self) {
        let now = self.now();
        for _ in 0..10_000 {
            let mut progressed = false;
            let events: Vec<Event> = self.node().events.try_iter().collect();
            for event in events {
                progressed = true;
                self.check_event(&event, now);
                self.node().scheduler.handle(event);
            }
            self.node().scheduler.turn(now);
            let commands: Vec<Command> = self.node().commands.try_iter().collect();
            if !commands.is_empty() || self.node().writer.has_jobs() {
                progressed = true;
                self.node().writer.run_batch(commands).unwrap();
                self.check_slots();
            }
            let jobs: Vec<DialJob> = self.node().dials.try_iter().collect();
            for job in jobs {
                progressed = true;
                self.dial(job);
            }
            if !progressed {
                return;
            }
        }
        self.fail("the engine did not settle within 10,000 rounds".into());
    }

    fn in_window(&self, at: Millis) -> bool {
        self.rules.window_open_at(1, 2, to_timestamp(at), &[]) == Some(to_timestamp(at))
    }

    fn check_event(&mut self, event: &Event, now: Millis) {
        let Event::Calls(changes) = event else { return };
        for CallChange { call_id, before, after, .. } in changes {
            if let Placement::Waiting { at } = after
                && !self.in_window(*at)
            {
                self.fail(format!("call {call_id} scheduled a retry at {} outside its window", to_timestamp(*at)));
            }
            if let Placement::Held { .. } = after {
                self.count("holds");
            }
            if let (Placement::Waiting { at }, Placement::Queued { .. }) = (before, after) {
                let on_time = now - at <= 60 * SECOND && self.in_window(*at);
                if !on_time && !self.in_window(now) {
                    self.fail(format!("call {call_id} due at {} re-queued outside its window", to_timestamp(*at)));
                }
                self.count("retries queued");
            }
        }
    }

    fn check_slots(&mut self) {
        let reader = self.node().store.read().unwrap();
        let processing = |campaign| reader.status_counts(campaign).unwrap().into_iter().find(|(s, _)| *s == Status::Processing).map(|(_, n)| n).unwrap_or(0);
        let (all, capped) = (processing(0), processing(1));
        drop(reader);
        if all > MAX_CONCURRENT as u64 {
            self.fail(format!("{all} calls in flight, limit {MAX_CONCURRENT}"));
        }
        if capped > CAMPAIGN_CAP as u64 {
            self.fail(format!("{capped} calls of the capped campaign in flight, cap {CAMPAIGN_CAP}"));
        }
    }

    /// The provider receives a dial request: it answers, and later calls back (or does not).
    fn dial(&mut self, job: DialJob) {
        let now = self.now();
        self.count("dials");
        if !self.dialled.insert((job.call_id, job.attempt)) {
            self.fail(format!("call {} attempt {} dialled twice", job.call_id, job.attempt));
        }
        if self.rules.calling_hours_open_at(job.campaign_id, &[], to_timestamp(now)) != Some(to_timestamp(now)) {
            self.fail(format!("call {} attempt {} dialled outside calling hours", job.call_id, job.attempt));
        }
        if let Some(listed) = self.listed_at.get(&job.phone_number)
            && *listed <= now
        {
            self.fail(format!("{} dialled after it was put on the do-not-call list", job.phone_number));
        }
        let answer_at = now + self.rng.between(5, 2_000);
        let roll = self.rng.below(100);
        let result = match roll {
            0..=2 => ProviderResult::Refused { reason: "HTTP 400: bad number".into() },
            3..=6 => ProviderResult::TransportFailed { reason: "connection refused (after 3 sends)".into() },
            _ => ProviderResult::Accepted { external_call_id: Some(format!("ext-{}-{}", job.call_id, job.attempt)) },
        };
        let accepted = matches!(result, ProviderResult::Accepted { .. });
        self.at(answer_at, Action::Answer { call: job.call_id, attempt: job.attempt, result });
        if !accepted || self.rng.chance(15) {
            return; // no callback: refused, never reached, or lost (the timeout resolves it)
        }
        let outcome = match self.rng.below(100) {
            0..=39 => Outcome::Picked,
            40..=69 => Outcome::Rnr,
            70..=89 => Outcome::Disconnected,
            _ => Outcome::Failed,
        };
        // The callback may overtake the provider's answer, and may come after the timeout.
        let callback_at = now + self.rng.between(10, 15 * MINUTE);
        let attempt = self.rng.chance(50).then_some(job.attempt);
        let external = self.rng.chance(50).then(|| format!("ext-{}-{}", job.call_id, job.attempt));
        self.at(callback_at, Action::Callback { call: job.call_id, attempt, outcome, external: external.clone() });
        if self.rng.chance(10) {
            // A repeat, later.
            let again = callback_at + self.rng.between(SECOND, HOUR);
            self.at(again, Action::Callback { call: job.call_id, attempt: Some(job.attempt), outcome, external });
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Initiate { campaign, phone } => {
                let phone_number = phone.clone();
                match self.ask(|reply| Command::InitiateCall { campaign_id: campaign, phone_number, reply }) {
                    Ok(call) => {
                        self.acknowledged.insert(call.call_id);
                        self.campaign_of.insert(call.call_id, campaign);
                        self.count("calls accepted");
                    }
                    Err(CommandError::Duplicate { .. } | CommandError::DoNotCall { .. } | CommandError::NotFound(_)) => self.count("calls refused"),
                    Err(other) => self.fail(format!("initiate {phone}: {other}")),
                }
            }
            Action::Answer { call, attempt, result } => {
                self.node().writer.run_batch(vec![Command::ProviderAnswered { call_id: call, attempt, result }]).unwrap();
                self.pump();
            }
            Action::Callback { call, attempt, outcome, external } => {
                let input = CallbackInput { call_id: call, outcome, attempt, external_call_id: external, duration_seconds: Some(self.rng.below(120)) };
                match self.ask(|reply| Command::Callback { input, reply }) {
                    Ok(_) => self.count("callbacks applied"),
                    Err(CommandError::Conflict(_)) => self.count("callbacks refused (409)"),
                    Err(other) => self.fail(format!("callback: {other}")),
                }
            }
            Action::Campaign { campaign, action } => {
                let _ = self.ask(|reply| Command::ChangeCampaign { id: campaign, action, reply });
            }
            Action::ListDnc { phone } => {
                let numbers = vec![phone.clone()];
                let added = self.ask(|reply| Command::AddDnc { scope: DncScope::Global, numbers, reason: None, reply }).unwrap();
                if added.added_count == 1 {
                    let now = self.now();
                    self.listed_at.insert(phone, now);
                    self.count("numbers listed");
                }
            }
            Action::Crash => {
                // Everything committed is on the durable image; what was in memory is gone.
                self.node = None;
                self.count("crashes");
                let down = self.rng.between(SECOND, 10 * MINUTE);
                self.clock.advance_ms(down);
                self.boot();
            }
        }
    }

    /// Client load, campaign changes, listings and crashes over `days`.
    fn plan(&mut self, days: i64) {
        let end = START + days * DAY;
        let mut t = START;
        while t < end {
            t += self.rng.between(SECOND, 4 * MINUTE);
            let campaign = 1 + self.rng.below(3);
            let phone = format!("+1555{:07}", self.rng.below(PHONES));
            self.at(t, Action::Initiate { campaign, phone });
        }
        for day in 0..days {
            let base = START + day * DAY;
            let pause = base + self.rng.between(8 * HOUR, 12 * HOUR);
            self.at(pause, Action::Campaign { campaign: 2, action: CampaignAction::Pause });
            let resume = pause + self.rng.between(MINUTE, 3 * HOUR);
            self.at(resume, Action::Campaign { campaign: 2, action: CampaignAction::Resume });
            for _ in 0..3 {
                let phone = format!("+1555{:07}", self.rng.below(PHONES));
                let at = base + self.rng.between(0, DAY);
                self.at(at, Action::ListDnc { phone });
            }
            for _ in 0..2 {
                let at = base + self.rng.between(0, DAY);
                self.at(at, Action::Crash);
            }
        }
        let stop = START + self.rng.between(DAY, days * DAY);
        self.at(stop, Action::Campaign { campaign: 3, action: CampaignAction::Stop });
    }

    /// Runs until every planned action happened and the engine has nothing left, or `until`.
    fn run(&mut self, until: Millis) {
        for _ in 0..2_000_000 {
            let now = self.now();
            let next_action = self.actions.peek().map(|Reverse((at, _))| *at);
            let next_work = self.node().scheduler.next_work_at(now);
            let next = match (next_action, next_work) {
                (Some(a), Some(w)) => a.min(w),
                (a, w) => match a.or(w) {
                    Some(t) => t,
                    None => return,
                },
            };
            if next > until {
                return;
            }
            self.clock.set_ms(next.max(now));
            while let Some(Reverse((at, id))) = self.actions.peek().copied()
                && at <= self.now()
            {
                self.actions.pop();
                let action = self.pending.remove(&id).expect("planned");
                self.perform(action);
            }
            self.pump();
        }
        self.fail("too many steps".into());
    }

    fn check_all_final(&mut self) {
        let reader = self.node().store.read().unwrap();
        let mut open = Vec::new();
        for id in &self.acknowledged {
            match reader.call(*id).unwrap() {
                None => self.fail(format!("acknowledged call {id} is gone")),
                Some(call) if !call.status().is_final() => open.push(format!("{id} {:?}", call.state)),
                Some(_) => {}
            }
        }
        if !open.is_empty() {
            self.fail(format!("{} acknowledged calls never finished, e.g. {:?}", open.len(), &open[..open.len().min(5)]));
        }
    }
}

fn simulate(seed: u64, days: i64) -> BTreeMap<&'static str, u64> {
    let mut sim = Sim::new(seed);
    sim.plan(days);
    sim.run(START + days * DAY);
    // The load is over: resume what is paused and let every call finish.
    for campaign in [1, 2] {
        sim.perform(Action::Campaign { campaign, action: CampaignAction::Resume });
    }
    sim.run(START + (days + 30) * DAY);
    sim.check_all_final();
    let problems = sim.node().store.read().unwrap().check_indexes().unwrap();
    if !problems.is_empty() {
        sim.fail(format!("indexes at the end: {problems:#?}"));
    }
    sim.stats
}

#[test]
fn simulated_days_with_crashes_keep_every_invariant() {
    let seeds: Vec<u64> = match std::env::var("SIMULATION_SEED") {
        Ok(seed) => vec![seed.parse().expect("SIMULATION_SEED is a number")],
        Err(_) => {
            let count: u64 = std::env::var("SIMULATION_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(2);
            let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            (0..count).map(|i| base.wrapping_mul(31).wrapping_add(i)).collect()
        }
    };
    for seed in seeds {
        let stats = simulate(seed, 3);
        eprintln!("simulation seed {seed}: {stats:?}");
        assert!(
            stats.get("dials").copied().unwrap_or(0) > 500 && stats.get("crashes").copied().unwrap_or(0) >= 4 && stats.get("holds").copied().unwrap_or(0) > 0,
            "seed {seed}: the simulation exercised too little: {stats:?}"
        );
    }
}
